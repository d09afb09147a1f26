"""The shown columns of the tables `make tables plan=<plan.yaml>` puts first, one `Table` per table, as
columns.py lists the others'. plan.py computes the verdicts, mechanism.py the mechanism check and
plan_sections.py the curves and e; each table's CSV is that frame as it is. A new column is a line here
(and its number there, if new). The cells only these tables print are beside them."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from hardsamples.analysis.columns import Column, Table
from hardsamples.analysis.formatting import (Cells, bounded, diff_cell, each_row, each_row_of, fixed, format_number,
                                             p_value, whole, with_bounds)


# ---------------------------------------------------------------------------------- the verdicts (plan.py)

def versus(other_key: str, text: Callable = str) -> Cells:
    """'key vs other_key', each as text prints it: 'hard 0.2 vs δ=1', '84.53 vs 84.65'."""
    return lambda frame, key: [f"{text(a)} vs {text(b)}" for a, b in zip(frame[key], frame[other_key])]


def pairs_used(frame, key):
    """The pairs a comparison used of those run, and how many it left out as censored: '8 of 10 (2 censored)'."""
    return [f"{int(u)} of {int(p)}" + (f" ({int(c)} censored)" if c else "")
            for u, p, c in zip(frame[key], frame["pairs"], frame["censored_pairs"])]


def estimate_text(row) -> str:
    """A reach endpoint's speed ratio '×1.109 [1.044, 1.177]', else a paired difference (diff_cell)."""
    if pd.isna(row["estimate"]):
        return ""
    if row["ratio"]:
        return "×" + bounded(row["estimate"], row["low"], row["high"], 3)
    return diff_cell(row["estimate"], row["low"], row["high"], row["used_pairs"])


def margin_text(row) -> str:
    """What equivalence allows: a ratio's range '×[0.909, 1.100]', a difference's '±1.00'."""
    if row["ratio"]:
        return f"×[{format_number(1 / row['margin'], 3)}, {format_number(row['margin'], 3)}]"
    return f"±{format_number(row['margin'])}"


VERDICTS = Table(
    csv=(),
    shown=(Column("endpoint_label", "endpoint"), Column("arm", "comparison", versus("against")),
           Column("used_pairs", "pairs", pairs_used),
           Column("arm_mean", "means", versus("against_mean", format_number)),
           Column("estimate", "estimate [95%]", each_row(estimate_text)),
           Column("margin", "margin", each_row(margin_text)),
           Column("p_holm", "p Holm", p_value), Column("p_tost_holm", "p TOST Holm", p_value),
           Column("verdict", "verdict")),
    settings_after=None)  # a plan's arms, not a sweep's settings


# ---------------------------------------------------------------------------------- the mechanism check (mechanism.py)

def with_chance(frame, key):
    """The overlap beside what chance gives (chance_overlap): '0.206 (0.200)'; empty without a random arm."""
    return ["" if pd.isna(o) else f"{format_number(o, 3)} ({format_number(c, 3)})"
            for o, c in zip(frame[key], frame["chance_overlap"])]


def hardness(frame, key):
    return ["live" if live else "vacuous" for live in frame[key]]


MECHANISM = Table(
    csv=(),
    shown=(Column("arm", "arm"), Column("seeds", "seeds", whole), Column("lift", "lift [95%]", with_bounds(3)),
           Column("lift_vs_random", "lift − random arm's [95%]", with_bounds(3, signed=True)),
           Column("spread", "spread / random [95%]", with_bounds(3)),
           Column("refresh_change", "refresh would change [95%]", with_bounds(3)),
           Column("random_overlap", "overlap with random (chance)", with_chance),
           Column("live", "hardness test", hardness)),
    settings_after=None)


# ---------------------------------------------------------------------------------- the curves and e (plan_sections.py)

def interval_of_epochs(frame, key):
    """The mean interval of the best test top-1, of the run's epochs: '27.3 of 30'."""
    return [f"{format_number(t, 1)} of {e}" for t, e in zip(frame[key], frame["epochs"])]


CURVES = Table(
    csv=(),
    shown=(Column("arm", "arm"), Column("seeds", "seeds", whole),
           Column("final_train_top1", "final train top-1", fixed()),
           Column("best_test_top1", "best test top-1", fixed()),
           Column("best_interval", "at interval (mean)", interval_of_epochs),
           Column("final_test_top1", "final test top-1", fixed()),
           Column("best_minus_final", "best − final pp [95%]", with_bounds(2, signed=True))),
    settings_after=None)


def e_of_converged(frame, key):
    """key ± e_ci95 over the seeds that converged, and how many did: '12.3 ± 1.2 (8 of 10)'."""
    return [f"{format_number(m, 1)} ± {format_number(c, 1)} ({n} of {s})" if n else f"– (0 of {s})"
            for m, c, n, s in zip(frame[key], frame["e_ci95"], frame["converged"], frame["seeds"])]


def delta_e_of_pairs(row, key) -> str:
    """key_pct [key_low, key_high] over the key_pairs where both converged (diff_cell); empty for the baseline."""
    return diff_cell(row.get(f"{key}_pct"), row.get(f"{key}_low"), row.get(f"{key}_high"), row.get(f"{key}_pairs", 0))


PAPER_E = Table(
    csv=(),
    shown=(Column("arm", "arm"), Column("e_mean", "e (converged seeds)", e_of_converged),
           Column("delta_e", "Δe % [95%]", each_row_of(delta_e_of_pairs)),
           Column("changed_drop_last", "calls changed: last interval dropped"),
           Column("changed_band_1.5", "band 1.5σ"), Column("changed_band_2.5", "band 2.5σ")),
    settings_after=None)
