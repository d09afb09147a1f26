"""Does the paper agree with itself? Checks on its printed numbers alone, no runs needed.

  delta-e     each printed Delta-e against (e_1 - e_delta) / e_delta x 100 from the same table's e.
              Accepted within one unit of the printed last decimal: the paper truncates in places
              (17.85 for 17.857), so rounding and truncation both pass. For a row that fails, the
              report says whether (e_1 - e_delta) / e_1 x 100 fits instead, and which e_delta would fit.
  Table 6     each change against (best - base) / best x 100 from Tables 3-5's test top-1. Those are
              printed to 0.1, so the check accepts anything the unrounded values (+/- 0.05) allow.
  repeats     rows of different (dataset, network) whose train and test top-1 and both +/- are all
              identical; and Table 6 values repeated across datasets for one network.
  gaps        cells the paper leaves empty.
  text        the claim under Table 6: better in 8 of 15 cases, mean increase 3.542 %.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from hardsamples.paper import Paper
from hardsamples.statistics import best_change_pct, delta_e_pct

ROUNDING = 0.05  # half a unit of the 0.1 to which Tables 3-5 print top-1
TEXT_CLAIM = {"improved": 8, "of": 15, "mean_improvement_pct": 3.542}  # Section 4.4, under Table 6
ACCURACY = ["train_top1", "train_ci95", "test_top1", "test_ci95"]


@dataclass
class ConsistencyReport:
    delta_e: pd.DataFrame  # one row per printed Delta-e: printed, recomputed, consistent, hints
    table6: pd.DataFrame  # one row per Table 6 cell: printed, recomputed range, consistent
    repeats: pd.DataFrame  # one row per repeated block
    gaps: pd.DataFrame  # one row per empty cell
    text: pd.DataFrame  # the claims of the text under Table 6


def decimals(text: str) -> int:
    return len(text.split(".")[1]) if "." in text else 0


def close(exact: float, printed: float, printed_text: str) -> bool:
    """Within one unit of the printed last decimal: rounding and truncation both pass."""
    return abs(exact - printed) < 10.0 ** -decimals(printed_text) + 1e-9


def delta_e_hint(e_one: float, e_delta: float, printed: float, printed_text: str) -> str:
    """What would make a disagreeing Delta-e follow: a simple slip, found by trying each in turn."""
    hints = []
    exact = delta_e_pct(e_one, e_delta)
    if decimals(printed_text) >= 2 and printed_text.endswith("0") and close(exact, printed, printed_text[:-1]):
        hints.append(f"fits at one decimal fewer ({exact:.3f} printed as {printed_text})")
    if close((e_one - e_delta) / e_one * 100, printed, printed_text):
        hints.append("fits (e_1 - e_delta) / e_1 x 100")
    hints += [f"fits (e_1 - e_delta) / e_1 x 100 with e_1 = {x}" for x in range(1, 201)
              if x != e_one and close((x - e_delta) / x * 100, printed, printed_text)]
    hints += [f"fits with e_delta = {x}" for x in range(1, 201)
              if x != e_delta and close(delta_e_pct(e_one, x), printed, printed_text)]
    if close(-exact, printed, printed_text):
        hints.append("fits with the sign flipped")
    return "; ".join(hints) or "no simple slip fits"


def check_delta_e(paper: Paper) -> pd.DataFrame:
    t = paper.tables.assign(printed_text=paper.delta_e_text)
    rows = []
    for (dataset, model), block in t.groupby(["dataset", "model"], sort=False):
        base = block.loc[block["delta"] == 1.0, "e"]
        e_one = float(base.iloc[0]) if len(base) else math.nan
        for _, r in block[block["delta"] < 1.0].iterrows():
            row = {"table": r["table"], "dataset": dataset, "network": r["network"], "model": model,
                   "delta": r["delta"], "e_1": e_one, "e_delta": r["e"], "printed": r["delta_e_pct"]}
            if math.isnan(e_one) or math.isnan(r["e"]) or r["printed_text"] == "":
                rows.append({**row, "status": "cannot check: empty cell"})
                continue
            exact = delta_e_pct(e_one, r["e"])
            consistent = close(exact, r["delta_e_pct"], r["printed_text"])
            rows.append({**row, "recomputed": round(exact, 3),
                         "status": "consistent" if consistent else "disagrees",
                         "hint": "" if consistent else delta_e_hint(e_one, r["e"], r["delta_e_pct"], r["printed_text"])})
    return pd.DataFrame(rows)


def check_table6(paper: Paper) -> pd.DataFrame:
    text = paper.table6["test_top1_change_pct"].map(lambda v: f"{v:.2f}")  # Table 6 prints two decimals
    rows = []
    for (_, r), printed_text in zip(paper.table6.iterrows(), text):
        block = paper.tables[(paper.tables["dataset"] == r["dataset"]) & (paper.tables["model"] == r["model"])]
        base = block.loc[block["delta"] == 1.0, "test_top1"].dropna()
        others = block.loc[block["delta"] < 1.0].dropna(subset=["test_top1"])
        row = {"dataset": r["dataset"], "network": r["network"], "model": r["model"],
               "printed": r["test_top1_change_pct"]}
        if base.empty or others.empty:
            best = others["test_top1"].max()
            implied = best * (1 - r["test_top1_change_pct"] / 100)
            rows.append({**row, "status": f"cannot check: delta=1.0 test top-1 is empty (the printed change implies"
                                          f" {implied:.1f} from the best {best:.1f})"})
            continue
        base = float(base.iloc[0])
        best_row = others.loc[others["test_top1"].idxmax()]
        low = best_change_pct(others["test_top1"].max() - ROUNDING, base + ROUNDING)
        high = best_change_pct(others["test_top1"].max() + ROUNDING, base - ROUNDING)
        tolerance = 10.0 ** -decimals(printed_text) + 1e-9
        consistent = low - tolerance <= r["test_top1_change_pct"] <= high + tolerance
        rows.append({**row, "best_delta": best_row["delta"], "best": best_row["test_top1"], "base": base,
                     "recomputed": round(best_change_pct(best_row["test_top1"], base), 3),
                     "allowed_low": round(low, 3), "allowed_high": round(high, 3),
                     "status": "consistent" if consistent else "disagrees"})
    return pd.DataFrame(rows)


def find_repeats(paper: Paper) -> pd.DataFrame:
    t = paper.tables.dropna(subset=ACCURACY)
    pairs = {}
    for _, same in t.groupby(ACCURACY):
        if same[["dataset", "model"]].drop_duplicates().shape[0] < 2:
            continue
        first, *rest = same.sort_values("table").to_dict("records")
        for r in rest:
            key = (r["dataset"], r["network"], first["dataset"], first["network"])
            pairs.setdefault(key, []).append((r["delta"], r["e"], first["e"]))
    rows = [{"what": "Tables 3-5 rows", "dataset": d, "network": n, "same_as": f"{d0} {n0}",
             "deltas": ", ".join(f"{x[0]:g}" for x in sorted(v, reverse=True)),
             "detail": "train and test top-1 and both +/- identical; e differs: "
                       + ", ".join(f"{x[1]:g} vs {x[2]:g}" for x in sorted(v, reverse=True))}
            for (d, n, d0, n0), v in pairs.items()]
    for (network, value), same in paper.table6.groupby(["network", "test_top1_change_pct"]):
        if len(same) > 1:
            rows.append({"what": "Table 6", "dataset": ", ".join(same["dataset"]), "network": network,
                         "same_as": "", "deltas": "", "detail": f"the same change {value:.2f}% in each"})
    return pd.DataFrame(rows, columns=["what", "dataset", "network", "same_as", "deltas", "detail"])


def find_gaps(paper: Paper) -> pd.DataFrame:
    columns = ACCURACY + ["e"]
    rows = []
    for _, r in paper.tables.iterrows():
        empty = [c for c in columns if pd.isna(r[c])]
        if empty:
            rows.append({"table": r["table"], "dataset": r["dataset"], "network": r["network"], "delta": r["delta"],
                         "empty": ", ".join(empty)})
    return pd.DataFrame(rows, columns=["table", "dataset", "network", "delta", "empty"])


def check_text(paper: Paper) -> pd.DataFrame:
    change = paper.table6["test_top1_change_pct"]
    improved = change[change > 0]
    return pd.DataFrame([
        {"claim": f"better in {TEXT_CLAIM['improved']} of {TEXT_CLAIM['of']} cases",
         "from Table 6": f"{len(improved)} of {len(change)}",
         "status": "consistent" if len(improved) == TEXT_CLAIM["improved"] else "disagrees"},
        {"claim": f"average increase {TEXT_CLAIM['mean_improvement_pct']}%",
         "from Table 6": f"{improved.mean():.4f}% (mean of the positive changes)",
         "status": "consistent" if close(improved.mean(), TEXT_CLAIM["mean_improvement_pct"], "3.542") else "disagrees"}])


def consistency_report(paper: Paper) -> ConsistencyReport:
    return ConsistencyReport(check_delta_e(paper), check_table6(paper), find_repeats(paper), find_gaps(paper),
                             check_text(paper))
