"""How a number, an interval or a comparison prints in a table cell: the text the Markdown shows and
latex.py typesets. One function per kind of cell (a row's, then a column's: Cells), shared by every
table; columns.py says which column uses which."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import pandas as pd

from hardsamples import cells
from hardsamples.analysis.inference import Interval, few_seeds

def format_number(value, digits: int = 2, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    value = round(value, digits) + 0.0  # no "-0.00"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def with_ci(mean, ci, n, digits: int = 2, low=None, high=None, clipped=False) -> str:
    """'mean ± half-width' ('mean [low, high]' when clipped to its scale); with one seed it says so
    instead of printing an interval; fewer than 3 seeds carry a warning."""
    n = 0 if pd.isna(n) else int(n)
    low = math.nan if low is None else low
    high = math.nan if high is None else high
    return Interval(mean, ci, n, low, high, bool(clipped) and not pd.isna(clipped)).text(digits)


def ci_of(table: pd.DataFrame, metric: str, n_column: str = "n_seeds", digits: int = 2) -> list[str]:
    return [with_ci(r[f"{metric}_mean"], r[f"{metric}_ci95"], r[n_column], digits, r.get(f"{metric}_low"),
                    r.get(f"{metric}_high"), r.get(f"{metric}_clipped", False)) for _, r in table.iterrows()]


def diff_cell(estimate, low, high, n, digits: int = 2) -> str:
    """A paired difference: '+1.23 [-0.40, +2.90]', with the few-seeds warning; '' without pairs."""
    if pd.isna(estimate):
        return ""
    if pd.isna(low):
        return f"{format_number(estimate, digits, True)} (1 pair, no CI)"
    return (f"{format_number(estimate, digits, True)} [{format_number(low, digits, True)},"
            f" {format_number(high, digits, True)}]{few_seeds(n)}")


def bounded(value, low, high, digits: int = 2, signed: bool = False) -> str:
    """'1.030 [1.024, 1.036]': the value alone without a low bound (one seed), empty without a value."""
    if pd.isna(value):
        return ""
    number = format_number(value, digits, signed)
    if pd.isna(low):
        return number
    return f"{number} [{format_number(low, digits, signed)}, {format_number(high, digits, signed)}]"


def p_text(p) -> str:
    return "" if pd.isna(p) else ("<0.001" if p < 0.001 else f"{p:.3f}")


def method_labels(table: pd.DataFrame) -> list[str]:
    return [cells.method_text(row) for _, row in table.iterrows()]


def paper_cell(mean, ci) -> str:
    return "" if pd.isna(mean) else (f"{mean:.1f}" if pd.isna(ci) else f"{mean:.1f} ± {ci:.1f}")


def e_cell(row) -> str:
    """Mean e over the seeds that converged, and how many were censored (never averaged in)."""
    censored = 0 if pd.isna(row.get("e_censored")) else int(row["e_censored"])
    converged = row.get("e_n", row["n_seeds"])
    converged = 0 if pd.isna(converged) else int(converged)
    text = (with_ci(row["e_mean"], row["e_ci95"], converged, 1, row.get("e_low"), row.get("e_high"),
                    row.get("e_clipped", False)) if converged else "–")
    why = row.get("e_censored_why") or ""
    return text + (f" ({censored} of {int(row['n_seeds'])} censored{': ' + why if why else ''})" if censored else "")


def delta_e_cell(row, prefix: str = "delta_e") -> str:
    """Paired Delta-e with its interval, and the pairs left out of it because one side was censored."""
    text = diff_cell(row.get(f"{prefix}_pct"), row.get(f"{prefix}_low"), row.get(f"{prefix}_high"),
                     row.get("pairs_converged", 0))
    censored = row.get("pairs_censored")
    if not pd.isna(censored) and censored > 0:
        text = (text + " " if text else "") + f"({int(censored)} censored pair{'s' if censored > 1 else ''})"
    return text


def sign_cell(row) -> str:
    """Order of e within each seed, censored pairs included where their order is known."""
    if pd.isna(row.get("earlier")):
        return ""
    return (f"{int(row['earlier'])}/{int(row['later'])}/{int(row['ties'])}/{int(row['unknown'])}"
            + (f" (p {p_text(row['sign_p'])})" if not pd.isna(row["sign_p"]) else ""))


def reach_cell(row, stem: str) -> str:
    """Epochs for delta to reach the delta = 1 run's target (stem: reach_train_loss, reach_test_top1), of the
    seeds that reached it, and speed-up."""
    reached, pairs = row.get(f"{stem}_reached"), row.get("pairs")
    if pd.isna(reached) or pd.isna(pairs) or not pairs:
        return ""
    if not reached:
        return f"never (0 of {int(pairs)})"
    return (f"{format_number(row[f'{stem}_epochs'], 1)} vs {format_number(row[f'{stem}_base_epochs'], 1)}"
            f" ({int(reached)} of {int(pairs)}), ×{format_number(row[f'{stem}_speedup'])}")


TIMING_TEXT = {"train_seconds": "train seconds (updates only)", "wall clock": "wall clock (incl. evaluation, start-up)"}


def diff_ratio_cell(row) -> str:
    if pd.isna(row["ratio_to_delta_1"]):
        return "1 (reference)" if row["delta"] == 1.0 and row["method"] == "standard" else ""
    if pd.isna(row["ratio_to_delta_1_low"]):
        return f"{format_number(row['ratio_to_delta_1'])} (1 pair, no CI)"
    return (f"{format_number(row['ratio_to_delta_1'])} [{format_number(row['ratio_to_delta_1_low'])},"
            f" {format_number(row['ratio_to_delta_1_high'])}]{few_seeds(row['ratio_pairs'])}")


# ---------------------------------------------------------------------------------- a column's cells

Cells = Callable[[pd.DataFrame, str], Sequence]  # a table's rows and a column's key -> one cell per row


def as_is(frame, key):
    return frame[key]


def whole(frame, key):
    return frame[key].astype(int)


def delta(frame, key):
    return frame[key].map(lambda d: f"{d:g}")


def delta_if_known(frame, key):
    return frame[key].map(lambda d: "" if pd.isna(d) else f"{d:g}")


def of_epochs(frame, key):
    """key / E: how far a run got."""
    return [f"{i}/{'' if pd.isna(e) else int(e)}" for i, e in zip(frame[key], frame["epochs"])]


def text(frame, key):
    return frame[key].fillna("")


def timing(frame, key):
    return frame[key].map(lambda t: TIMING_TEXT.get(t, t))


def p_value(frame, key):
    return frame[key].map(p_text)


def fixed(digits: int = 2, signed: bool = False) -> Cells:
    return lambda frame, key: frame[key].map(lambda v: format_number(v, digits, signed))


def interval(frame, key):
    """key_mean ± key_ci95 over the row's seeds (ci_of)."""
    return ci_of(frame, key)


def mean_pm(ci_key: str) -> Cells:
    """key ± ci_key with one decimal, the way the paper prints it (paper_cell)."""
    return lambda frame, key: [paper_cell(m, c) for m, c in zip(frame[key], frame[ci_key])]


def seconds(ci_key: str, n_key: str, digits: int) -> Cells:
    return lambda frame, key: [with_ci(m, c, n, digits) for m, c, n in zip(frame[key], frame[ci_key], frame[n_key])]


def paired_diff(frame, key):
    """key [key_low, key_high] over the row's pairs (diff_cell)."""
    return [diff_cell(r.get(key), r.get(f"{key}_low"), r.get(f"{key}_high"), r.get("pairs"))
            for _, r in frame.iterrows()]


def bounds(high_key: str, signed: bool = True) -> Cells:
    """[key, high_key] with two decimals; empty without a low bound."""
    return lambda frame, key: [
        f"[{format_number(lo, 2, signed)}, {format_number(hi, 2, signed)}]" if not pd.isna(lo) else ""
        for lo, hi in zip(frame[key], frame[high_key])]


def with_bounds(digits: int = 2, signed: bool = False) -> Cells:
    """key [key_low, key_high] (bounded)."""
    return lambda frame, key: [bounded(v, lo, hi, digits, signed)
                               for v, lo, hi in zip(frame[key], frame[f"{key}_low"], frame[f"{key}_high"])]


def each_row(cell: Callable[[pd.Series], str]) -> Cells:
    """cell(row) for each row: a cell read from several of the row's columns."""
    return lambda frame, key: [cell(r) for _, r in frame.iterrows()]


def each_row_of(cell: Callable[[pd.Series, str], str]) -> Cells:
    """cell(row, key) for each row: a cell read from the row's columns named after the key."""
    return lambda frame, key: [cell(r, key) for _, r in frame.iterrows()]


def methods(frame, key):
    return method_labels(frame)


def setups(frame, key):
    return [cells.setup_text(r) for _, r in frame.iterrows()]


def null_gain(upper_key: str) -> Cells:
    return lambda frame, key: [f"{format_number(g, 2, True)} (95%: ≤ {format_number(u, 2, True)})"
                               if not pd.isna(g) else "n/a" for g, u in zip(frame[key], frame[upper_key])]


def censored_e(censored_key: str) -> Cells:
    return lambda frame, key: [(format_number(e, 1) if not pd.isna(e) else "–")
                               + (f" ({int(c)} cens.)" if c > 0 else "")
                               for e, c in zip(frame[key], frame[censored_key])]
