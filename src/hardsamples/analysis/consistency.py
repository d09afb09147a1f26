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
  text        the text's claims about Tables 3-6, each recomputed from the tables' numbers (the
              abstract's 26.47% "fewer epochs", the introduction's 9.58%, "8.01% decrease in convergence
              time", "lowest accuracy at every delta", "smaller delta gives better accuracy", ...), and
              the Table 6 count beside what picking the best of three gives with no effect at all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from scipy import stats

from hardsamples.analysis.paper import Paper
from hardsamples.analysis.inference import best_change_pct, delta_e_pct

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
    """Each claim of the text, recomputed from the printed tables: consistent or disagrees, with the
    numbers that decide it."""
    claims = _table6_claims(paper) + _convergence_claims(paper) + _accuracy_claims(paper)
    return pd.DataFrame(claims, columns=["where", "claim", "from the tables", "status"])


def _claim(where: str, claim: str, found: str, ok) -> dict:
    status = "cannot check" if ok is None else ("consistent" if ok else "disagrees")
    return {"where": where, "claim": claim, "from the tables": found, "status": status}


def _value(paper: Paper, dataset: str, model: str, delta: float, column: str) -> float:
    t = paper.tables
    row = t[(t["dataset"] == dataset) & (t["model"] == model) & (t["delta"] == delta)]
    return float(row[column].iloc[0]) if len(row) else math.nan


def _table6_claims(paper: Paper) -> list[dict]:
    change = paper.table6["test_top1_change_pct"]
    improved = change[change > 0]
    n, k = len(change), TEXT_CLAIM["of"]
    # Best of three deltas against delta = 1 with no effect: better with probability 3/4 in each cell.
    below = stats.binom.cdf(TEXT_CLAIM["improved"], k, 0.75)
    return [
        _claim("4.4", f"better in {TEXT_CLAIM['improved']} of {k} cases", f"{len(improved)} of {n}",
               len(improved) == TEXT_CLAIM["improved"]),
        _claim("4.4", f"average increase {TEXT_CLAIM['mean_improvement_pct']}%",
               f"{improved.mean():.4f}% (mean of the positive changes)",
               close(improved.mean(), TEXT_CLAIM["mean_improvement_pct"], "3.542")),
        _claim("4.4", "better in 8 of 15 cases, read as an improvement",
               f"the best of 3 deltas beats delta = 1 in 3 of 4 cells by selection alone: {k} x 3/4 = {k * 0.75:g}"
               f" expected with no effect; P(8 or fewer | no effect) = {below:.3f}", TEXT_CLAIM["improved"] > k * 0.75),
        _abstract_accuracy_claim(paper)]


def _abstract_accuracy_claim(paper: Paper) -> dict:
    base, best = _value(paper, "cifar100", "resnet18", 1.0, "test_top1"), _value(paper, "cifar100", "resnet18", 0.2, "test_top1")
    of_best = best_change_pct(best, base)
    return _claim("abstract", "improves the test top-1 by 7.26% in ResNet-18 on CIFAR-100",
                  f"({best} − {base}) / {best} = {of_best:.2f}% of the better value (Table 6's formula); of δ = 1's:"
                  f" {(best - base) / base * 100:.2f}%; {best - base:.1f} pp", close(of_best, 7.26, "7.26"))


def _convergence_claims(paper: Paper) -> list[dict]:
    e1, e2 = _value(paper, "cifar10", "resnet18", 1.0, "e"), _value(paper, "cifar10", "resnet18", 0.2, "e")
    printed = _value(paper, "cifar10", "resnet18", 0.2, "delta_e_pct")
    speed, fewer = delta_e_pct(e1, e2), (e1 - e2) / e1 * 100
    b1, b5 = _value(paper, "stl10", "efficientnet_b4", 1.0, "e"), _value(paper, "stl10", "efficientnet_b4", 0.5, "e")
    stl_fewer = (b1 - b5) / b1 * 100
    rows = [
        _claim("abstract", "generalizes in 26.47% less number of epochs (EfficientNet-B4, STL-10)",
               f"e {b1:g} → {b5:g}: {stl_fewer:.2f}% fewer epochs; 26.47% is the speed ratio e₁ / e_δ − 1 ="
               f" {delta_e_pct(b1, b5):.2f}%", close(stl_fewer, 26.47, "26.47")),
        _claim("1", "δ = 0.2 achieves 9.58% faster convergence (ResNet-18, CIFAR-10)",
               f"Table 3 prints Δe {printed:g}; e {e1:g} → {e2:g} gives {speed:.2f}% (speed ratio) or {fewer:.2f}% fewer"
               " epochs", any(close(v, 9.58, "9.58") for v in (printed, speed, fewer))),
        _claim("4.1", "an 8.01% decrease in convergence time (ResNet-18, CIFAR-10, δ 1.0 → 0.2)",
               f"e {e1:g} → {e2:g}: a {fewer:.2f}% decrease; (e₁ − e_δ) / e_δ = {speed:.2f}%", close(fewer, 8.01, "8.01")),
        _claim("4.2", "for all networks, δ = 0.2 gives a faster convergence epoch (CIFAR-100)",
               *_every(paper, "cifar100", lambda m, d, _: _beats(paper, d, m, "e", 0.2, (1.0,)))),
        _claim("4.2", "smaller δ (0.2 and 0.5) gives faster convergence than δ = 1 (CIFAR-100)",
               *_every(paper, "cifar100", lambda m, d, x: _beats(paper, d, m, "e", x, (1.0,)), (0.5, 0.2))),
        _claim("4.3", "δ = 0.5 converges faster than the other values of δ (STL-10)",
               *_every(paper, "stl10", lambda m, d, _: _beats(paper, d, m, "e", 0.5, (1.0, 0.8, 0.2)))),
        _claim("4.5", "δ = 0.2 converged fastest for CIFAR-10 and CIFAR-100",
               *_every(paper, ("cifar10", "cifar100"), lambda m, d, _: _beats(paper, d, m, "e", 0.2, (1.0, 0.8, 0.5))))]
    return rows


def _accuracy_claims(paper: Paper) -> list[dict]:
    t = paper.tables
    c10 = t[t["dataset"] == "cifar10"]
    lowest = {d: c10.loc[c10.loc[c10["delta"] == d, "test_top1"].idxmin(), "network"] for d in (1.0, 0.8, 0.5, 0.2)}
    highest = {d: c10.loc[c10.loc[c10["delta"] == d, "test_top1"].idxmax(), "network"] for d in (1.0, 0.8)}
    b1, b2 = _value(paper, "cifar10", "resnet18", 1.0, "test_top1"), _value(paper, "cifar10", "resnet18", 0.2, "test_top1")
    e1, e2 = (_value(paper, "cifar10", "efficientnet_b4", d, "test_top1") for d in (1.0, 0.2))
    return [
        _claim("4.1", "only a 0.9% decrease in test accuracy (ResNet-18, CIFAR-10, δ 1.0 → 0.2)",
               f"{b1:g} → {b2:g}: {b1 - b2:.1f} pp ({(b1 - b2) / b1 * 100:.2f}% relative)", close(b1 - b2, 0.9, "0.9")),
        _claim("4.1", "δ 1.0 → 0.2 increases the test accuracy of EfficientNet-B4 (CIFAR-10)", f"{e1:g} → {e2:g}", e2 > e1),
        _claim("4.1", "EfficientNet-B4 has the lowest test top-1 at every δ (CIFAR-10)",
               "lowest: " + ", ".join(f"δ {d:g} {n}" for d, n in lowest.items()),
               all(n == "EfficientNet-B4" for n in lowest.values())),
        _claim("4.1", "ResNet-18 has the highest test top-1 at δ = 1.0 and 0.8 (CIFAR-10)",
               "highest: " + ", ".join(f"δ {d:g} {n}" for d, n in highest.items()),
               all(n == "ResNet-18" for n in highest.values())),
        _claim("4.2", "smaller δ (0.2 and 0.5) gives better test top-1 than δ = 1 (CIFAR-100)",
               *_every(paper, "cifar100", lambda m, d, x: _beats(paper, d, m, "test_top1", x, (1.0,)), (0.5, 0.2)))]


def _beats(paper: Paper, dataset: str, model: str, column: str, delta: float, others) -> bool | None:
    """Whether delta's value is strictly better than every other delta's (lower e, higher top-1); None
    when a cell is empty. A tie is not better."""
    mine = _value(paper, dataset, model, delta, column)
    rest = [_value(paper, dataset, model, d, column) for d in others]
    if math.isnan(mine) or any(math.isnan(v) for v in rest):
        return None
    return all(mine > v for v in rest) if column == "test_top1" else all(mine < v for v in rest)


def _every(paper: Paper, datasets, holds, deltas=(None,)) -> tuple[str, bool | None]:
    """holds(model, dataset, delta) for every network of each dataset (and each of `deltas`): the
    exceptions and the cells that cannot be checked (None), and whether it holds wherever it can be."""
    datasets = (datasets,) if isinstance(datasets, str) else datasets
    failures, unknown = [], []
    for dataset in datasets:
        models = paper.tables.loc[paper.tables["dataset"] == dataset, ["model", "network"]].drop_duplicates()
        for model, network in models.itertuples(index=False):
            for delta in deltas:
                ok = holds(model, dataset, delta)
                label = network + (f" δ {delta:g}" if delta else "") + (f" ({dataset})" if len(datasets) > 1 else "")
                if ok is None or (isinstance(ok, float) and math.isnan(ok)):
                    unknown.append(label)
                elif not ok:
                    failures.append(label)
    found = ("false for " + ", ".join(failures)) if failures else "holds for every network"
    return found + (("; cannot check " + ", ".join(unknown)) if unknown else ""), not failures


def consistency_report(paper: Paper) -> ConsistencyReport:
    return ConsistencyReport(check_delta_e(paper), check_table6(paper), find_repeats(paper), find_gaps(paper),
                             check_text(paper))
