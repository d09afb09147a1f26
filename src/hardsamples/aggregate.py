"""From the tidy run table to the numbers of every table, as DataFrames (rendering is tables.py's job).

A run enters a mean only when its record says `finished`; running (unfinished), diverged, failed and
unreadable runs stay in the run table with the reason, and every group row counts them. Means and
intervals are over seeds; a row is one (dataset, model, protocol, method and its variant, delta),
where the protocol (fidelity with any switched key, epochs, batch size, image size) keeps records of
different protocols apart.
"""

from __future__ import annotations

import functools
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from hardsamples.convergence import convergence_epoch
from hardsamples.loading import PROTOCOL, run_table
from hardsamples.paper import Paper, model_sort_key
from hardsamples.statistics import best_change_pct, delta_e_pct, t_interval

# variant: the method's options where they differ from conf/method/<method>.yaml (say shape=cosine
# for trimming), so two settings of one method are never averaged together either (_label_settings).
GROUP = ["dataset", "model", *PROTOCOL, "method", "variant", "delta"]
BLOCK = ["dataset", "model", *PROTOCOL]  # what a delta-e or a Table 6 change compares within
DELTA_METHODS = ("standard", "hard_batches")  # the paper's Algorithms 1 and 2: Tables 3-6
CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


def protocol_text(row) -> str:
    return f"{row['fidelity']}, E={row['epochs']:g}, B={row['batch_size']:g}, {row['image_size']:g} px"


def protocol_slug(row) -> str:
    """The protocol in a file name."""
    fidelity = re.sub(r"[^A-Za-z0-9_.]+", "-", str(row["fidelity"])).strip("-")
    return f"{fidelity}_E{row['epochs']:g}_B{row['batch_size']:g}_{row['image_size']:g}px"


def summarise_runs(df: pd.DataFrame, rules: dict) -> pd.DataFrame:
    """One row per run: final metrics, e under every rule, and whether it enters the means (and why not)."""
    runs = run_table(df)
    _label_settings(runs)
    runs["included"] = runs["status"] == "finished"
    runs["note"] = np.where(runs["included"], "", runs["status"].fillna("unreadable"))
    _mark_duplicate_seeds(runs)
    for name, rule in rules.items():
        results = [convergence_epoch(curve, **rule) if included else None
                   for curve, included in zip(runs["train_loss_curve"], runs["included"])]
        runs[f"e_{name}"] = [r.epoch if r else math.nan for r in results]
        runs[f"converged_{name}"] = [r.converged if r else None for r in results]
    return runs


@functools.lru_cache(maxsize=None)
def conf_defaults(group: str, name: str) -> dict:
    """conf/<group>/<name>.yaml as written (interpolations unresolved), its `defaults` parents merged in."""
    path = CONF_DIR / group / f"{name}.yaml"
    if not path.exists():
        return {}
    options = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    merged = {}
    for parent in options.pop("defaults", []):
        if parent != "_self_":
            merged.update(conf_defaults(group, parent))
    return {**merged, **options}


def overrides(group: str, name, options) -> str:
    """The options of a run's method or fidelity that differ from conf/<group>/<name>.yaml, as
    'key=value, ...' (empty when there are none)."""
    if not isinstance(name, str) or not isinstance(options, dict):
        return ""
    defaults = conf_defaults(group, name)
    return ", ".join(f"{k}={v}" for k, v in sorted(options.items())
                     if k != "name" and not k.startswith("tag") and defaults.get(k) != v)


def _label_settings(runs: pd.DataFrame) -> None:
    """A fidelity with a key switched (fidelity.eval_batchnorm=eval) is another protocol, and a method
    with other options (trimming shape=cosine) another variant: both are named, never averaged with
    the defaults. Algorithm 1 (standard) has no variant, whichever method config ran it."""
    configs = [c if isinstance(c, dict) else {} for c in runs["config"]]
    runs["variant"] = ["" if m == "standard" else overrides("method", m, c.get("method"))
                       for m, c in zip(runs["method"], configs)]
    switched = [overrides("fidelity", f, c.get("fidelity")) for f, c in zip(runs["fidelity"], configs)]
    runs["fidelity"] = [f"{f} ({s})" if s else f for f, s in zip(runs["fidelity"], switched)]


def _mark_duplicate_seeds(runs: pd.DataFrame) -> None:
    """Two finished records of one seed in one group (say a run copied into two sweeps) would count a
    seed twice: the latest one is kept and the others are listed as duplicates."""
    finished = runs[runs["included"]].sort_values(["finished_at", "run_dir"], na_position="first")
    for _, same in finished.groupby(GROUP + ["seed"], dropna=False):
        kept = same.index[-1]
        for index in same.index[:-1]:
            runs.loc[index, ["included", "note"]] = [False, f"duplicate of {runs.loc[kept, 'run_dir']}"]


def config_warnings(runs: pd.DataFrame) -> list[str]:
    """Settings outside the row's key (optimizer, dataset, evaluation) that differ between its runs."""
    warnings = []
    for key, same in runs[runs["included"]].groupby(GROUP, dropna=False):
        flat = [pd.json_normalize({k: (c or {}).get(k) for k in ("optimizer", "dataset", "eval")}).iloc[0]
                for c in same["config"]]
        keys = sorted({k for f in flat for k in f.index if any(not _same(f.get(k), g.get(k)) for g in flat)})
        if keys:
            warnings.append(f"{', '.join(map(str, key))}: its runs differ in {', '.join(keys)} (averaged together)")
    return warnings


def _same(a, b) -> bool:
    return (a is None and b is None) or (a == b) or (isinstance(a, float) and isinstance(b, float)
                                                      and math.isnan(a) and math.isnan(b))


def group_rows(runs: pd.DataFrame, rules: dict, rule: str, confidence: float = 0.95) -> pd.DataFrame:
    """Mean and t-interval over seeds for each (dataset, model, protocol, method, delta); Delta-e against
    the block's standard delta = 1.0 row, under the chosen rule and (as e_<rule>, delta_e_<rule>) every rule."""
    rows = []
    identified = runs.dropna(subset=["dataset", "model", "method", "delta"])
    for key, same in identified.groupby(GROUP, dropna=False):
        used = same[same["included"]]
        row = dict(zip(GROUP, key), n_seeds=len(used), n_runs=len(same),
                   not_in_means=_count_text(same.loc[~same["included"], "note"]))
        for metric in ("train_top1", "test_top1", "seconds_per_update"):
            interval = t_interval(used[metric], confidence)
            row.update({f"{metric}_mean": interval.mean, f"{metric}_ci95": interval.half_width})
        for split in ("train", "test"):  # the paper's kind of interval, one per run: their mean over seeds
            row[f"{split}_top1_batch_ci95"] = used[f"{split}_top1_batch_ci95"].mean()
        for name in rules:
            interval = t_interval(used[f"e_{name}"], confidence)
            row.update({f"e_{name}_mean": interval.mean, f"e_{name}_ci95": interval.half_width,
                        f"e_{name}_censored": int((used[f"converged_{name}"] == False).sum())})  # noqa: E712
        rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    is_base = (table["method"] == "standard") & (table["delta"] == 1.0)
    for name in rules:  # the baseline row has no Delta-e of its own, as in the paper
        base = _baseline(table, f"e_{name}_mean")
        table[f"delta_e_{name}_pct"] = [delta_e_pct(b, e) for b, e in zip(base, table[f"e_{name}_mean"])]
        table.loc[is_base, f"delta_e_{name}_pct"] = math.nan
    table["test_top1_vs_standard"] = table["test_top1_mean"] - _baseline(table, "test_top1_mean")
    for part in ("mean", "ci95", "censored"):  # the chosen rule's columns under plain names
        table[f"e_{part}"] = table[f"e_{rule}_{part}"]
    table["delta_e_pct"] = table[f"delta_e_{rule}_pct"]
    return sort_rows(table)


def _baseline(table: pd.DataFrame, column: str) -> pd.Series:
    """The value of `column` in each row's block at method standard, delta = 1.0 (NaN when not run)."""
    base = table[(table["method"] == "standard") & (table["delta"] == 1.0)].set_index(BLOCK)[column]
    base = base[~base.index.duplicated()]
    keys = pd.MultiIndex.from_frame(table[BLOCK])
    return pd.Series(base.reindex(keys).to_numpy(), index=table.index)


def _count_text(notes: pd.Series) -> str:
    counts = notes.map(lambda n: "duplicate" if n.startswith("duplicate") else n).value_counts()
    return ", ".join(f"{n} {status}" for status, n in counts.items())


def sort_rows(table: pd.DataFrame) -> pd.DataFrame:
    """Dataset, protocol, the paper's model order, Algorithms 1 and 2 before other methods, delta 1.0 first."""
    order = table.assign(_model=table["model"].map(model_sort_key))
    by = ["dataset", *PROTOCOL, "_model"]
    if "method" in table:
        order["_method"] = table["method"].map(lambda m: (DELTA_METHODS.index(m) if m in DELTA_METHODS else 2, m))
        by += ["_method"] + (["variant"] if "variant" in table else [])
    if "delta" in table:
        order["_delta"] = -table["delta"]
        by.append("_delta")
    return table.loc[order.sort_values(by).index].reset_index(drop=True)


def delta_table(rows: pd.DataFrame, paper: Paper) -> pd.DataFrame:
    """Tables 3-5 (one dataset each, any dataset): Algorithms 1 and 2 by delta, the paper beside.
    Models run on a paper dataset get a row for each of the paper's deltas, run or not."""
    ours = rows[rows["method"].isin(DELTA_METHODS)]
    wanted = paper.tables[["dataset", "model", "delta"]]
    blocks = ours[BLOCK].drop_duplicates()
    missing = blocks.merge(wanted, on=["dataset", "model"]).merge(ours[BLOCK + ["delta"]], how="left", indicator=True)
    missing = missing[missing["_merge"] == "left_only"].drop(columns="_merge")
    missing = missing.assign(method=np.where(missing["delta"] == 1.0, "standard", "hard_batches"), variant="", n_seeds=0,
                             n_runs=0, not_in_means="not run")
    table = pd.concat([ours, missing], ignore_index=True) if len(missing) else ours.copy()
    reported = paper.tables.rename(columns={c: f"paper_{c}" for c in
                                            ("train_top1", "train_ci95", "test_top1", "test_ci95", "e", "delta_e_pct")})
    table = table.merge(reported[["dataset", "model", "delta", "network"] + [c for c in reported if c.startswith("paper_")]],
                        on=["dataset", "model", "delta"], how="left")
    table["network"] = table["network"].fillna(table["model"])
    for ours_column, paper_column in (("train_top1_mean", "paper_train_top1"), ("test_top1_mean", "paper_test_top1"),
                                      ("e_mean", "paper_e"), ("delta_e_pct", "paper_delta_e_pct")):
        table[f"{ours_column.removesuffix('_mean')}_minus_paper"] = table[ours_column] - table[paper_column]
    return sort_rows(table)


def table6(rows: pd.DataFrame, paper: Paper) -> pd.DataFrame:
    """Best test top-1 over delta < 1 against delta = 1.0: (best - base) / best x 100, the paper beside.
    Algorithm 2 as configured by default only (variant '')."""
    ours = rows[rows["method"].isin(DELTA_METHODS) & (rows["variant"] == "") & (rows["n_seeds"] > 0)]
    out = []
    for key, block in ours.groupby(BLOCK, sort=False):
        base = block.loc[block["delta"] == 1.0, "test_top1_mean"]
        others = block[block["delta"] < 1.0]
        best = others.loc[others["test_top1_mean"].idxmax()] if len(others) else None
        out.append({**dict(zip(BLOCK, key)), "base_test_top1": base.iloc[0] if len(base) else math.nan,
                    "best_delta": best["delta"] if best is not None else math.nan,
                    "best_test_top1": best["test_top1_mean"] if best is not None else math.nan})
    table = pd.DataFrame(out, columns=BLOCK + ["base_test_top1", "best_delta", "best_test_top1"])
    table["change_pct"] = [best_change_pct(b, a) for b, a in zip(table["best_test_top1"], table["base_test_top1"])]
    reported = paper.table6.rename(columns={"test_top1_change_pct": "paper_change_pct"})
    table = table.merge(reported[["dataset", "model", "network", "paper_change_pct"]], on=["dataset", "model"], how="left")
    table["network"] = table["network"].fillna(table["model"])
    table["change_minus_paper"] = table["change_pct"] - table["paper_change_pct"]
    return sort_rows(table)


def table1(rows: pd.DataFrame, paper: Paper) -> pd.DataFrame:
    """Seconds per update for each delta (wall clock of the run over its updates, evaluation included)."""
    ours = rows[rows["method"].isin(DELTA_METHODS) & (rows["n_seeds"] > 0)].copy()
    base = _baseline(ours, "seconds_per_update_mean") if len(ours) else pd.Series(dtype=float)
    ours["ratio_to_delta_1"] = ours["seconds_per_update_mean"] / base
    reported = paper.table1.rename(columns={"seconds_per_iteration": "paper_seconds_per_update"})
    paper_base = reported.loc[reported["delta"] == 1.0, "paper_seconds_per_update"].iloc[0]
    reported = reported.assign(dataset="cifar10",  # the paper timed ResNet-18 on CIFAR-10
                               paper_ratio_to_delta_1=reported["paper_seconds_per_update"] / paper_base)
    ours = ours.merge(reported, on=["dataset", "model", "image_size", "delta"], how="left")
    columns = BLOCK + ["method", "variant", "delta", "n_seeds", "seconds_per_update_mean", "seconds_per_update_ci95",
                       "ratio_to_delta_1", "paper_seconds_per_update", "paper_ratio_to_delta_1"]
    return sort_rows(ours[columns])


def table2(runs: pd.DataFrame, paper: Paper) -> pd.DataFrame:
    """Parameters and FLOPs of each model at the image size, classes and channels it was run with."""
    from hardsamples.models import build_model, count_flops, count_parameters

    keys = ["model", "image_size", "num_classes", "channels"]
    shapes = runs.dropna(subset=keys)[keys].drop_duplicates()
    rows = []
    for _, r in shapes.iterrows():
        model = build_model(r["model"], int(r["num_classes"]), int(r["channels"]))
        rows.append({**r.to_dict(), "params_m": count_parameters(model) / 1e6,
                     "gflops": count_flops(model, int(r["image_size"]), int(r["channels"])) / 1e9})
    table = pd.DataFrame(rows, columns=keys + ["params_m", "gflops"])
    reported = paper.table2.rename(columns={"params_m": "paper_params_m", "gflops": "paper_gflops"})
    table = table.merge(reported.assign(num_classes=10, channels=3), on=keys, how="left")  # what the paper counted
    table["params_m_minus_paper"] = table["params_m"] - table["paper_params_m"]
    table["gflops_minus_paper"] = table["gflops"] - table["paper_gflops"]
    order = table["model"].map(model_sort_key)
    return table.loc[order.sort_values().index].reset_index(drop=True)


def methods_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Every method against standard (delta = 1.0, same dataset, model and protocol)."""
    columns = GROUP + ["n_seeds", "not_in_means", "test_top1_mean", "test_top1_ci95", "test_top1_vs_standard",
                       "e_mean", "e_ci95", "e_censored", "delta_e_pct"]
    blocks = rows.loc[~rows["method"].isin(DELTA_METHODS), BLOCK].drop_duplicates()
    return rows.merge(blocks, on=BLOCK)[columns].pipe(sort_rows)


def sensitivity_table(rows: pd.DataFrame, rules: dict) -> pd.DataFrame:
    """e and Delta-e of every model, dataset and delta under each convergence rule."""
    columns = GROUP + ["n_seeds"] + [c for name in rules for c in (f"e_{name}_mean", f"e_{name}_censored",
                                                                     f"delta_e_{name}_pct")]
    return rows.loc[rows["method"].isin(DELTA_METHODS), columns].reset_index(drop=True)


def sensitivity_summary(sensitivity: pd.DataFrame, rules: dict) -> pd.DataFrame:
    """How the conclusion 'smaller delta converges earlier' moves with the rule: signs of Delta-e."""
    below = sensitivity[sensitivity["delta"] < 1.0]
    out = []
    for name in rules:
        d = below[f"delta_e_{name}_pct"]
        out.append({"rule": name, "rows": int(d.notna().sum()), "earlier (delta-e > 0)": int((d > 0).sum()),
                    "same (= 0)": int((d == 0).sum()), "later (< 0)": int((d < 0).sum()),
                    "mean delta-e %": d.mean(),
                    "censored seeds (all deltas)": int(sensitivity[f"e_{name}_censored"].sum())})
    return pd.DataFrame(out)
