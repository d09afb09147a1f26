"""The columns of every table `make tables` writes, one `Table` per table: its CSV's columns in order,
and the columns the Markdown and LaTeX show, each with the key it prints, its header and how its
cells print. aggregate.py computes the numbers under these keys and keeps the CSV's order; report.py
renders the shown columns. A new column is a line here (and its number in aggregate.py, if new); the
columns of a plan's tables are in plan_columns.py, the same way.

A rule's columns (e, Delta-e and the sign counts under one convergence rule) carry the rule's name
(rule_key); the chosen rule's are also under their plain names (RULE_KEYS), which the tables use.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from hardsamples import cells
from hardsamples.analysis.formatting import (Cells, as_is, bounds, censored_e, delta, delta_e_cell, delta_if_known,
                                             diff_ratio_cell, e_cell, each_row, each_row_of, fixed, interval, mean_pm,
                                             methods, null_gain, of_epochs, p_value, paired_diff, setups, reach_cell,
                                             seconds, sign_cell, text, timing, whole)
from hardsamples.analysis.loading import SETUP
from hardsamples.analysis.paper import TABLE_OF_DATASET

# A row is one cell (cells.py: the setup with the protocol's switched keys, the method's variant, and the settings a
# sweep varied), so runs of two settings are never averaged together. BLOCK is a prefix of GROUP.
GROUP = cells.FIELDS
BLOCK = GROUP[:GROUP.index("settings") + 1]  # what a delta-e or a Table 6 change compares within


@dataclass(frozen=True)
class Column:
    """One shown column: `key` is the column of the table it prints, or the stem of those it prints
    together (train_top1: train_top1_mean, train_top1_ci95, ...)."""
    key: str
    header: str  # in the Markdown and the LaTeX
    cells: Cells = as_is
    shown_if: Callable[[pd.DataFrame], bool] | None = None  # None: in every table of its kind


@dataclass(frozen=True)
class Table:
    csv: tuple[str, ...]  # its CSV's columns, in order (empty: the frame's columns as they are, if a CSV)
    shown: tuple[Column, ...]  # the Markdown's and the LaTeX's columns, in order
    settings_after: str | None = "δ"  # the header the settings a sweep varied follow (None: never shown)

    def render(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The shown columns as text, one row per row of frame, in its order."""
        shown = {c.header: c.cells(frame, c.key) for c in self.shown if c.shown_if is None or c.shown_if(frame)}
        display = pd.DataFrame(shown).reset_index(drop=True)
        return with_settings(display, frame, self.settings_after) if self.settings_after else display

    def headed(self, frame: pd.DataFrame) -> pd.DataFrame:
        """frame, its numbers as they are, with each shown column under its header: a CSV that reads like its
        table (the sensitivity summary's, whose committed CSVs name their columns so)."""
        return frame.rename(columns={c.key: c.header for c in self.shown})


# ---------------------------------------------------------------------------------- the settings a sweep varied

def setting_columns(frame: pd.DataFrame) -> dict[str, list[str]]:
    """One column per setting a sweep varied (cells.py), from the frame's `settings`; none when no
    setting varied (then the tables look as they always did)."""
    if "settings" not in frame:
        return {}
    parsed = [cells.split_settings(written) for written in frame["settings"]]
    keys = list(dict.fromkeys(key for settings in parsed for key in settings))
    return {key: [settings.get(key, "") for settings in parsed] for key in keys}


def with_settings(display: pd.DataFrame, frame: pd.DataFrame, after: str = "δ") -> pd.DataFrame:
    """The display (one row per row of frame, in its order) with a column per varied setting after `after`."""
    settings = setting_columns(frame)
    if not settings:
        return display
    display = display.copy()
    position = display.columns.get_loc(after) + 1 if after in display else len(display.columns)
    for offset, (key, values) in enumerate(settings.items()):
        display.insert(position + offset, key, values)
    display.attrs["settings"] = list(settings)  # row labels, which tables.tex repeats in every part
    return display


def expanded_settings(data: pd.DataFrame) -> pd.DataFrame:
    """A CSV's `settings` column as one column per setting, in its place; dropped when none varied."""
    if "settings" not in data:
        return data
    settings, position = setting_columns(data), data.columns.get_loc("settings")
    data = data.drop(columns="settings")
    for offset, (key, values) in enumerate(settings.items()):
        data.insert(position + offset, key, values)
    return data


def any_variant(frame) -> bool:
    return bool((frame["variant"] != "").any())


def of_paper_dataset(frame) -> bool:
    """The table is of a dataset the paper ran: its numbers stand beside ours."""
    return bool(frame["dataset"].isin(list(TABLE_OF_DATASET)).any())


# ---------------------------------------------------------------------------------- a rule's columns

# The plain names of the columns group_rows writes for each convergence rule.
RULE_KEYS = ("e_mean", "e_ci95", "e_low", "e_high", "e_clipped", "e_n", "e_censored", "e_censored_why",
             "delta_e_pct", "delta_e_low", "delta_e_high", "delta_e_boot_low", "delta_e_boot_high", "delta_e_p",
             "delta_e_of_means_pct", "fewer_epochs_pct", "pairs_converged", "pairs_censored", "earlier", "later",
             "ties", "unknown", "sign_p")
RULE_STEMS = ("delta_e", "fewer_epochs", "e")  # the rule's name goes after these, else at the end


def rule_key(plain: str, rule: str) -> str:
    """A column under one rule: e_mean -> e_<rule>_mean, delta_e_pct -> delta_e_<rule>_pct,
    earlier -> earlier_<rule>; a run's e, converged and reason -> e_<rule>, converged_<rule>, ..."""
    for stem in RULE_STEMS:
        if plain.startswith(f"{stem}_"):
            return f"{stem}_{rule}_{plain.removeprefix(stem + '_')}"
    return f"{plain}_{rule}"


def for_rule(columns: dict, rule: str) -> dict:
    return {rule_key(plain, rule): value for plain, value in columns.items()}


# ---------------------------------------------------------------------------------- the tables

PAPER = of_paper_dataset  # when the paper's own columns are shown
DELTA = Table(  # Tables 3-5: the CSV has the paper's after ours; the display puts each beside ours
    csv=("dataset", "model", "network", "delta", "method", "variant", "settings", *SETUP, "n_seeds", "n_runs",
         "not_in_means", "train_top1_mean", "train_top1_ci95", "train_top1_low", "train_top1_high",
         "train_top1_batch_mean", "train_top1_batch_ci95", "test_top1_mean", "test_top1_ci95", "test_top1_low",
         "test_top1_high", "test_top1_batch_mean", "test_top1_batch_ci95", "batch_evaluation", "pairs",
         "test_top1_diff", "test_top1_diff_low", "test_top1_diff_high", "test_top1_diff_boot_low",
         "test_top1_diff_boot_high", "test_top1_diff_p", "test_top1_diff_p_holm", "test_top1_diff_dz",
         "test_top1_diff_sd", "seeds_needed", "train_top1_diff", "train_top1_diff_low", "train_top1_diff_high",
         "e_mean", "e_ci95", "e_low", "e_high", "e_n", "e_censored", "e_censored_why", "delta_e_pct", "delta_e_low",
         "delta_e_high", "delta_e_boot_low", "delta_e_boot_high", "delta_e_p", "delta_e_p_holm", "fewer_epochs_pct",
         "delta_e_of_means_pct", "pairs_converged", "pairs_censored", "earlier", "later", "ties", "unknown", "sign_p",
         "reach_train_loss_epochs", "reach_train_loss_base_epochs", "reach_train_loss_reached",
         "reach_train_loss_speedup", "reach_train_loss_speedup_low", "reach_train_loss_speedup_high",
         "reach_test_top1_epochs", "reach_test_top1_base_epochs", "reach_test_top1_reached",
         "reach_test_top1_speedup", "reach_test_top1_speedup_low", "reach_test_top1_speedup_high",
         "paper_train_top1", "paper_train_ci95", "paper_test_top1", "paper_test_ci95", "paper_e", "paper_delta_e_pct",
         "train_top1_minus_paper", "test_top1_minus_paper", "e_minus_paper", "delta_e_pct_minus_paper"),
    shown=(Column("network", "network"), Column("delta", "δ", delta),
           Column("variant", "method options", shown_if=any_variant), Column("n_seeds", "seeds", whole),
           *(column for split in ("train", "test") for column in (
               Column(f"{split}_top1", f"{split} top-1", interval),
               Column(f"{split}_top1_batch_mean", f"{split} ±batch", mean_pm(f"{split}_top1_batch_ci95")),
               Column(f"paper_{split}_top1", f"paper {split}", mean_pm(f"paper_{split}_ci95"), PAPER),
               Column(f"{split}_top1_minus_paper", f"diff {split}", fixed(1, True), PAPER))),
           Column("test_top1_diff", "Δtest vs δ=1 (pp)", paired_diff),
           Column("e", "e", each_row(e_cell)),
           Column("paper_e", "paper e", fixed(0), PAPER), Column("e_minus_paper", "diff e", fixed(1, True), PAPER),
           Column("delta_e", "Δe %", each_row_of(delta_e_cell)),
           Column("paper_delta_e_pct", "paper Δe %", fixed(), PAPER),
           Column("delta_e_pct_minus_paper", "diff Δe", fixed(2, True), PAPER),
           Column("not_in_means", "not in means", text)))

PAIRED = Table(  # each delta against delta = 1.0 of the same seeds, after its Table 3-5 (in that CSV)
    csv=(),
    shown=(Column("network", "network"), Column("method", "method", methods), Column("delta", "δ", delta),
           Column("pairs", "pairs", whole), Column("test_top1_diff", "Δtest pp [t 95%]", paired_diff),
           Column("test_top1_diff_boot_low", "bootstrap 95%", bounds("test_top1_diff_boot_high")),
           Column("test_top1_diff_p", "p", p_value), Column("test_top1_diff_p_holm", "p Holm", p_value),
           Column("test_top1_diff_dz", "d_z", fixed()), Column("seeds_needed", "seeds for 1 pp", fixed(0)),
           Column("delta_e", "Δe % [t 95%]", each_row_of(delta_e_cell)),
           Column("fewer_epochs_pct", "fewer epochs %", fixed()), Column("delta_e_p_holm", "Δe p Holm", p_value),
           Column("sign_p", "earlier/later/tie/unknown", each_row(sign_cell)),
           Column("reach_train_loss", "to δ=1's train loss", each_row_of(reach_cell)),
           Column("reach_test_top1", "to δ=1's test top-1", each_row_of(reach_cell))))

METHODS = Table(  # every other method against standard; Holm over the table's rows
    csv=(*GROUP, "n_seeds", "not_in_means", "pairs", "test_top1_mean", "test_top1_ci95", "test_top1_low",
         "test_top1_high", "test_top1_clipped", "test_top1_vs_standard", "seeds_needed", "e_mean", "e_ci95", "e_n",
         "e_censored", "e_censored_why", "pairs_converged", "pairs_censored", "earlier", "later", "ties", "unknown",
         "sign_p", "fewer_epochs_pct", "test_top1_diff", "test_top1_diff_low", "test_top1_diff_high",
         "test_top1_diff_boot_low", "test_top1_diff_boot_high", "test_top1_diff_p", "test_top1_diff_dz", "delta_e_pct",
         "delta_e_low", "delta_e_high", "delta_e_boot_low", "delta_e_boot_high", "delta_e_p",
         "reach_train_loss_epochs", "reach_train_loss_base_epochs", "reach_train_loss_reached",
         "reach_train_loss_speedup", "reach_test_top1_epochs", "reach_test_top1_base_epochs",
         "reach_test_top1_reached", "reach_test_top1_speedup", "test_top1_diff_p_holm", "delta_e_p_holm"),
    shown=(Column("dataset", "dataset"), Column("model", "model"), Column("setup", "setup", setups),
           Column("method", "method", methods), Column("delta", "δ", delta), Column("n_seeds", "seeds", whole),
           Column("test_top1", "test top-1", interval),
           Column("test_top1_diff", "Δtest vs standard pp [95%]", paired_diff),
           Column("test_top1_diff_p_holm", "p Holm", p_value), Column("seeds_needed", "seeds for 1 pp", fixed(0)),
           Column("e", "e", each_row(e_cell)), Column("delta_e", "Δe % vs standard [95%]", each_row_of(delta_e_cell)),
           Column("sign_p", "earlier/later/tie/unknown", each_row(sign_cell)),
           Column("reach_train_loss", "to standard's train loss", each_row_of(reach_cell)),
           Column("reach_test_top1", "to standard's test top-1", each_row_of(reach_cell)),
           Column("not_in_means", "not in means", text)))

TABLE6 = Table(  # the best delta < 1 against delta = 1.0, beside what selection alone gives
    csv=(*BLOCK, "base_test_top1", "best_delta", "best_test_top1", "gain_pp", "k", "residual_sd", "seeds_complete",
         "null_expected_gain_pp", "null_p_best_wins", "null_upper95_pp", "selection_p", "change_pct",
         "null_expected_change_pct", "network", "paper_change_pct", "change_minus_paper"),
    shown=(Column("dataset", "dataset"), Column("network", "network"), Column("setup", "setup", setups),
           Column("base_test_top1", "δ = 1.0 test top-1", fixed()), Column("best_delta", "best δ < 1", fixed(1)),
           Column("best_test_top1", "its test top-1", fixed()), Column("gain_pp", "gain pp", fixed(2, True)),
           Column("null_expected_gain_pp", "no effect: expected gain pp", null_gain("null_upper95_pp")),
           Column("selection_p", "P(gain this large | no effect)", p_value),
           Column("change_pct", "change %", fixed()),
           Column("null_expected_change_pct", "no effect: expected change %", fixed()),
           Column("paper_change_pct", "paper change %", fixed()), Column("change_minus_paper", "diff", fixed(2, True))),
    settings_after="setup")

TABLE1 = Table(  # seconds per update, and its ratio to delta = 1.0 paired by seed
    csv=(*BLOCK, "method", "variant", "delta", "n_seeds", "timing", "seconds_per_update_mean",
         "seconds_per_update_ci95", "ratio_to_delta_1", "ratio_to_delta_1_low", "ratio_to_delta_1_high", "ratio_pairs",
         "ratio_of_means", "paper_seconds_per_update", "paper_ratio_to_delta_1"),
    shown=(Column("dataset", "dataset"), Column("model", "model"), Column("setup", "setup", setups),
           Column("method", "method", methods), Column("delta", "δ", delta), Column("n_seeds", "seeds", whole),
           Column("timing", "timed", timing),
           Column("seconds_per_update_mean", "s / update", seconds("seconds_per_update_ci95", "n_seeds", 5)),
           Column("ratio_to_delta_1", "× δ = 1.0 [95%]", each_row(diff_ratio_cell)),
           Column("paper_seconds_per_update", "paper s / update", fixed(4)),
           Column("paper_ratio_to_delta_1", "paper ×", fixed())))

TABLE2 = Table(  # parameters and FLOPs of each model as run
    csv=("model", "image_size", "num_classes", "channels", "params_m", "gflops", "paper_params_m", "paper_gflops",
         "params_m_minus_paper", "gflops_minus_paper"),
    shown=(Column("model", "model"), Column("image_size", "image size", whole), Column("num_classes", "classes", whole),
           Column("channels", "channels", whole), Column("params_m", "params (M)", fixed()),
           Column("paper_params_m", "paper params (M)", fixed()), Column("gflops", "GFLOPs", fixed(3)),
           Column("paper_gflops", "paper GFLOPs", fixed()),
           Column("params_m_minus_paper", "diff params", fixed(2, True)),
           Column("gflops_minus_paper", "diff GFLOPs", fixed(3, True))),
    settings_after=None)  # a model's shape, whatever the settings

RUNS = Table(  # every run loaded (the CSV, with each rule's e) and those left out of the means (shown)
    csv=("run_dir", "dataset", "model", "method", "delta", "settings", "seed", *SETUP, "status", "included", "note",
         "intervals", "train_top1", "test_top1", "seconds_per_update", "error"),
    shown=(Column("dataset", "dataset"), Column("model", "model"), Column("method", "method"),
           Column("delta", "δ", delta_if_known), Column("seed", "seed"), Column("fidelity", "fidelity"),
           Column("note", "status"), Column("intervals", "intervals", of_epochs), Column("error", "error", text),
           Column("run_dir", "run")))

CONSISTENCY_DELTA_E = Table(  # the paper's printed Delta-e that its own e do not give (consistency.py)
    csv=(),
    shown=(Column("table", "table"), Column("dataset", "dataset"), Column("network", "network"),
           Column("delta", "δ", delta), Column("e_1", "e₁", fixed(0)), Column("e_delta", "e_δ", fixed(0)),
           Column("printed", "printed Δe %", fixed()), Column("recomputed", "(e₁ − e_δ)/e_δ × 100", fixed()),
           Column("status", "status"), Column("hint", "what would fit", text)),
    settings_after=None)

CONSISTENCY_TABLE6 = Table(  # the paper's Table 6 changes that its Tables 3-5 do not give
    csv=(),
    shown=(Column("dataset", "dataset"), Column("network", "network"), Column("printed", "printed %", fixed()),
           Column("recomputed", "recomputed %", fixed()),
           Column("allowed_low", "allowed by rounding", bounds("allowed_high", signed=False)),
           Column("status", "status")),
    settings_after=None)

SENSITIVITY_KEYS = ("e_mean", "e_n", "e_censored", "e_censored_why", "delta_e_pct", "delta_e_low", "delta_e_high",
                    "pairs_converged", "pairs_censored", "earlier", "later")  # of each rule, in the CSV


def sensitivity(rules) -> Table:
    """e and Delta-e of every cell of Algorithms 1 and 2 under each rule."""
    shown = [Column("dataset", "dataset"), Column("model", "model"), Column("setup", "setup", setups),
             Column("method", "method", methods), Column("delta", "δ", delta), Column("n_seeds", "seeds", whole)]
    for rule in rules:
        shown += [Column(rule_key("e_mean", rule), f"{rule}: e", censored_e(rule_key("e_censored", rule))),
                  Column(rule_key("delta_e", rule), f"{rule}: Δe %", rule_delta_e(rule))]  # delta_e_<rule>_pct, ...
    return Table(csv=(*GROUP, "n_seeds", *(rule_key(key, rule) for rule in rules for key in SENSITIVITY_KEYS)),
                 shown=tuple(shown))


SENSITIVITY_SUMMARY = Table(  # the sign of Delta-e for delta < 1 under each rule (aggregate.sensitivity_summary)
    csv=(),  # its CSV: the frame's columns under their headers (headed)
    shown=(Column("rule", "rule"), Column("cells", "cells", whole),
           Column("converged_cells", "all pairs converged", whole),
           Column("earlier_cells", "earlier (Δe > 0)", whole), Column("same_cells", "same (= 0)", whole),
           Column("later_cells", "later (< 0)", whole), Column("above_0_cells", "interval above 0", whole),
           Column("below_0_cells", "interval below 0", whole),
           Column("censored_pair_cells", "cells with censored pairs", whole),
           Column("unconverged_cells", "cells with no converged pair", whole),
           Column("mean_delta_e_pct", "mean Δe % (all-converged cells)", fixed()),
           Column("censored_seeds", "censored seeds (all deltas)", whole)),
    settings_after=None)


def rule_delta_e(rule: str) -> Cells:
    """delta_e_cell of the rule's Delta-e, with its pairs converged and censored."""
    def cells_of(frame, key):
        plain = frame.rename(columns={rule_key(p, rule): p for p in ("pairs_converged", "pairs_censored")})
        return [delta_e_cell(r, key) for _, r in plain.iterrows()]
    return cells_of
