"""The column lists (analysis/columns.py): the names a rule's columns carry, and what a Table renders."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest

from hardsamples.analysis import columns, plan_columns
from hardsamples.analysis.columns import Column, Table, rule_key
from hardsamples.analysis.formatting import fixed


def test_a_rules_columns_keep_the_names_the_committed_csvs_carry():
    assert {plain: rule_key(plain, "relative") for plain in columns.RULE_KEYS} == {
        "e_mean": "e_relative_mean", "e_ci95": "e_relative_ci95", "e_low": "e_relative_low",
        "e_high": "e_relative_high", "e_clipped": "e_relative_clipped", "e_n": "e_relative_n",
        "e_censored": "e_relative_censored", "e_censored_why": "e_relative_censored_why",
        "delta_e_pct": "delta_e_relative_pct", "delta_e_low": "delta_e_relative_low",
        "delta_e_high": "delta_e_relative_high", "delta_e_boot_low": "delta_e_relative_boot_low",
        "delta_e_boot_high": "delta_e_relative_boot_high", "delta_e_p": "delta_e_relative_p",
        "delta_e_of_means_pct": "delta_e_relative_of_means_pct", "fewer_epochs_pct": "fewer_epochs_relative_pct",
        "pairs_converged": "pairs_converged_relative", "pairs_censored": "pairs_censored_relative",
        "earlier": "earlier_relative", "later": "later_relative", "ties": "ties_relative",
        "unknown": "unknown_relative", "sign_p": "sign_p_relative"}
    assert [rule_key(c, "plateau") for c in ("e", "converged", "reason")] == ["e_plateau", "converged_plateau",
                                                                             "reason_plateau"]


TABLES = {name: value for module in (columns, plan_columns) for name, value in vars(module).items()
          if isinstance(value, Table)}
TABLES["sensitivity"] = columns.sensitivity({"relative": {}, "absolute": {}})


@pytest.mark.parametrize("name", sorted(TABLES))
def test_no_table_names_a_column_twice(name):
    table = TABLES[name]
    assert len(set(table.csv)) == len(table.csv)
    headers = [c.header for c in table.shown]
    assert len(set(headers)) == len(headers)


def test_a_table_shows_its_columns_in_order_with_the_settings_after_delta():
    frame = pd.DataFrame({"delta": [1.0, 0.5], "variant": ["", ""], "gain": [0.123, -1.0],
                          "settings": ["lr=0.1", "lr=0.2"]})
    table = Table(csv=("delta", "gain"), shown=(Column("delta", "δ", columns.delta),
                                                Column("variant", "options", shown_if=columns.any_variant),
                                                Column("gain", "gain pp", fixed(1, True))))
    shown = table.render(frame)
    assert list(shown.columns) == ["δ", "lr", "gain pp"]  # options: no row has one
    assert shown.to_dict("list") == {"δ": ["1", "0.5"], "lr": ["0.1", "0.2"], "gain pp": ["+0.1", "-1.0"]}
    assert shown.attrs["settings"] == ["lr"]
    one_more = dataclasses.replace(table, shown=(*table.shown, Column("gain", "gain, 2 digits", fixed())))
    assert one_more.render(frame)["gain, 2 digits"].tolist() == ["0.12", "-1.00"]
