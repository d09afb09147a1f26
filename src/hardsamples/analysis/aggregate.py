"""From the tidy run table to the numbers of every table, as DataFrames (rendering is report.py's job).

A run enters a mean only when its record says `finished`; running (unfinished), diverged, failed and
unreadable runs stay in the run table with the reason, and every group row counts them. Means and
intervals are over seeds; a row is one cell (cells.py: dataset, model, setup, method and its variant,
delta, and the settings a sweep varied), so records of different setups or settings stay apart.
"""

from __future__ import annotations

import functools
import math
import re

import numpy as np
import pandas as pd

from hardsamples import cells
from hardsamples.analysis import columns
from hardsamples.analysis.columns import BLOCK, GROUP, RULE_KEYS, for_rule, rule_key
from hardsamples.analysis.convergence import GUARDS, convergence_epoch, epochs_to_reach, reach_target
from hardsamples.analysis.loading import SETUP, run_table
from hardsamples.analysis.paper import Paper, model_sort_key
from hardsamples.analysis.inference import (
    best_change_pct,
    best_of_k_null,
    delta_e_pct,
    holm,
    paired,
    paired_ratio,
    ratio_to_delta_e_pct,
    ratio_to_fewer_epochs_pct,
    residual_sd,
    seeds_needed,
    sign_test,
    t_interval,
)

DELTA_METHODS = ("standard", "hard_batches")  # the paper's Algorithms 1 and 2: Tables 3-6


def setup_slug(row) -> str:
    """The setup in a file name."""
    fidelity = re.sub(r"[^A-Za-z0-9_.]+", "-", str(row["fidelity"])).strip("-")
    return f"{fidelity}_E{row['epochs']:g}_B{row['batch_size']:g}_{row['image_size']:g}px"


def summarise_runs(df: pd.DataFrame, rules: dict) -> pd.DataFrame:
    """One row per run: final metrics, e under every rule, and whether it enters the means (and why not).
    e_<rule> is NaN for a censored run; converged_<rule> and reason_<rule> say so and why."""
    runs = run_table(df)
    _label_cells(runs)
    runs["included"] = runs["status"] == "finished"
    runs["note"] = np.where(runs["included"], "", runs["status"].fillna("unreadable"))
    _mark_duplicate_seeds(runs)
    for name, rule in rules.items():
        results = [convergence_epoch(curve, **rule) if included else None
                   for curve, included in zip(runs["train_loss_curve"], runs["included"])]
        runs[rule_key("e", name)] = [r.epoch if r and r.converged else math.nan for r in results]
        runs[rule_key("converged", name)] = [r.converged if r else None for r in results]
        runs[rule_key("reason", name)] = [r.reason if r else "" for r in results]
    return runs


def _label_cells(runs: pd.DataFrame) -> None:
    """Each run's cell (cells.cells_of): the fidelity named with any switched key, the method's variant
    and the settings its sweep varied, so none is ever averaged with the defaults."""
    headers = runs[["dataset", "model", "fidelity", "epochs", "batch_size", "image_size", "method", "delta",
                    "config"]].to_dict("records")
    for column, values in pd.DataFrame(cells.cells_of(headers), index=runs.index).items():
        runs[column] = values


def _mark_duplicate_seeds(runs: pd.DataFrame) -> None:
    """Two finished records of one seed in one group (say a run copied into two sweeps) would count a
    seed twice: the latest one is kept and the others are listed as duplicates."""
    finished = runs[runs["included"]].sort_values(["finished_at", "run_dir"], na_position="first")
    for _, same in finished.groupby(GROUP + ["seed"], dropna=False):
        kept = same.index[-1]
        for index in same.index[:-1]:
            runs.loc[index, ["included", "note"]] = [False, f"duplicate of {runs.loc[kept, 'run_dir']}"]


# conf/tables.yaml's `statistics` and the reach target, with these defaults when a caller gives none.
SETTINGS = {"bootstrap_min_seeds": 5, "bootstrap_resamples": 9999, "power": 0.8, "detectable_pp": 1.0,
            "reach_target": "best", "smooth": GUARDS["smooth"]}
TOP1 = (0.0, 100.0)  # the scale top-1 intervals are clipped to


def group_rows(runs: pd.DataFrame, rules: dict, rule: str, confidence: float = 0.95,
               settings: dict | None = None) -> pd.DataFrame:
    """Mean and t-interval over seeds for each (dataset, model, setup, method, delta), e over the
    seeds that converged (censored ones counted apart), and every comparison with the block's
    standard delta = 1.0 row paired by seed (paired_columns). The chosen rule's columns also under
    plain names (e_mean, delta_e_pct, ...)."""
    settings = {**SETTINGS, **(settings or {})}
    rows = []
    identified = runs.dropna(subset=["dataset", "model", "method", "delta"])
    for key, same in identified.groupby(GROUP, dropna=False):
        used = same[same["included"]]
        row = dict(zip(GROUP, key), n_seeds=len(used), n_runs=len(same),
                   not_in_means=_count_text(same.loc[~same["included"], "note"]),
                   timing=", ".join(sorted(set(used["timing"].dropna()) - {""})),
                   batch_evaluation=", ".join(sorted(set(used["batch_evaluation"].dropna()))))
        for metric, bounds in (("train_top1", TOP1), ("test_top1", TOP1), ("seconds_per_update", None)):
            row.update(_interval_columns(metric, t_interval(used[metric], confidence, bounds)))
        for split in ("train", "test"):  # the paper's kind of interval, one per run: their mean over seeds
            row[f"{split}_top1_batch_mean"] = used[f"{split}_top1_batch_mean"].mean()
            row[f"{split}_top1_batch_ci95"] = used[f"{split}_top1_batch_ci95"].mean()
        for name in rules:
            row.update(for_rule(_e_columns(used, name, confidence, row["epochs"]), name))
        rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    is_base = (table["method"] == "standard") & (table["delta"] == 1.0)
    for name in rules:  # the paper's way, from the mean e of each row: kept for comparison only
        e_mean, of_means = rule_key("e_mean", name), rule_key("delta_e_of_means_pct", name)
        table[of_means] = [delta_e_pct(b, e) for b, e in zip(_baseline(table, e_mean), table[e_mean])]
        table.loc[is_base, of_means] = math.nan
    table["test_top1_vs_standard"] = table["test_top1_mean"] - _baseline(table, "test_top1_mean")
    table = table.join(paired_columns(runs, table, rules, confidence, settings))
    for column, plain in rule_columns(rule).items():  # the chosen rule under plain names
        table[plain] = table[column] if column in table else math.nan
    return sort_rows(table)


def rule_columns(name: str) -> dict:
    """The columns group_rows writes for one rule, each with its plain name."""
    return {rule_key(plain, name): plain for plain in RULE_KEYS}


def _e_columns(used: pd.DataFrame, name: str, confidence: float, epochs) -> dict:
    """e under one rule over the seeds that converged (it lives on [1, E]); censored seeds counted, with why."""
    e = used[rule_key("e", name)]
    censored = used[used[rule_key("converged", name)] == False]  # noqa: E712
    return {**_interval_columns("e", t_interval(e, confidence, (1, epochs))), "e_n": int(e.notna().sum()),
            "e_censored": len(censored), "e_censored_why": _count_text(censored[rule_key("reason", name)])}


def _interval_columns(name: str, interval) -> dict:
    return {f"{name}_mean": interval.mean, f"{name}_ci95": interval.half_width, f"{name}_low": interval.low,
            f"{name}_high": interval.high, f"{name}_clipped": interval.clipped}


def paired_columns(runs: pd.DataFrame, table: pd.DataFrame, rules: dict, confidence: float,
                   settings: dict) -> pd.DataFrame:
    """For each row but the baseline: every difference to the same block's standard delta = 1.0 runs
    of the same seeds (same initial weights, same first epoch). Rows without a baseline stay empty."""
    used = runs[runs["included"]].dropna(subset=["seed"])
    groups = {key: same.set_index("seed") for key, same in used.groupby(GROUP, dropna=False)}
    out = {}
    for index, row in table.iterrows():
        if row["method"] == "standard" and row["delta"] == 1.0:
            continue
        base = groups.get(tuple(row[BLOCK]) + ("standard", "", 1.0))
        mine = groups.get(tuple(row[GROUP]))
        if base is None or mine is None:
            continue
        seeds = sorted(set(mine.index) & set(base.index))
        out[index] = compare(mine.loc[seeds], base.loc[seeds], rules, confidence, settings)
    return pd.DataFrame.from_dict(out, orient="index")


def compare(mine: pd.DataFrame, base: pd.DataFrame, rules: dict, confidence: float, settings: dict) -> dict:
    """One row's paired comparison: runs of the same seeds, aligned by seed."""
    boot = (settings["bootstrap_min_seeds"], settings["bootstrap_resamples"])
    row = {"pairs": len(mine)}
    for metric in ("test_top1", "train_top1"):
        row.update(_paired_columns(f"{metric}_diff", paired(mine[metric], base[metric], confidence, *boot)))
    row["seeds_needed"] = seeds_needed(row["test_top1_diff_sd"], settings["detectable_pp"], 1 - confidence,
                                       settings["power"])
    for name in rules:
        row.update(for_rule(_delta_e_columns(mine, base, name, confidence, boot), name))
    for metric, higher in (("train_loss", False), ("test_top1", True)):
        row.update(_reach_columns(mine, base, metric, higher, confidence, boot, settings))
    return row


def _paired_columns(name: str, r) -> dict:
    return {name: r.estimate, f"{name}_low": r.low, f"{name}_high": r.high, f"{name}_boot_low": r.boot_low,
            f"{name}_boot_high": r.boot_high, f"{name}_p": r.p_value, f"{name}_dz": r.effect_size,
            f"{name}_sd": r.sd, f"{name}_n": r.n}


def _delta_e_columns(mine, base, name, confidence, boot) -> dict:
    """Delta-e = e_1 / e_delta - 1 from the geometric mean of the per-seed ratios of seeds where both
    converged; censored pairs are counted, and enter the sign test wherever their order is known (a
    converged run is earlier than a censored one of the same seed). Under plain names: compare files
    them under the rule's (for_rule)."""
    e, converged = rule_key("e", name), rule_key("converged", name)
    e_one, e_mine = base[e], mine[e]
    c_one, c_mine = base[converged] == True, mine[converged] == True  # noqa: E712
    both = c_one & c_mine
    earlier = int((both & (e_mine < e_one)).sum() + (c_mine & ~c_one).sum())
    later = int((both & (e_mine > e_one)).sum() + (~c_mine & c_one).sum())
    r = paired_ratio(e_one, e_mine, confidence, *boot)
    return {"delta_e_pct": ratio_to_delta_e_pct(r.estimate), "delta_e_low": ratio_to_delta_e_pct(r.low),
            "delta_e_high": ratio_to_delta_e_pct(r.high), "delta_e_boot_low": ratio_to_delta_e_pct(r.boot_low),
            "delta_e_boot_high": ratio_to_delta_e_pct(r.boot_high), "delta_e_p": r.p_value,
            "fewer_epochs_pct": ratio_to_fewer_epochs_pct(r.estimate), "pairs_converged": r.n,
            "pairs_censored": int((~both).sum()), "earlier": earlier, "later": later,
            "ties": int((both & (e_mine == e_one)).sum()), "unknown": int((~c_one & ~c_mine).sum()),
            "sign_p": sign_test(earlier, later)}


def _reach_columns(mine, base, metric, higher, confidence, boot, settings) -> dict:
    """Epochs for delta to reach the same seed's delta = 1 target (best or final, smoothed), and the
    delta = 1 run's own epochs to it over the same seeds (those where delta reached it); the speed-up
    t_1 / t_delta over those seeds."""
    kind, smooth = settings["reach_target"], settings["smooth"]
    t_one, t_mine = [], []
    for seed in mine.index:
        target = reach_target(base.loc[seed, f"{metric}_curve"], higher, kind, smooth)
        t_one.append(epochs_to_reach(base.loc[seed, f"{metric}_curve"], target, higher, smooth))
        t_mine.append(epochs_to_reach(mine.loc[seed, f"{metric}_curve"], target, higher, smooth))
    t_one, t_mine = (np.array([math.nan if t is None else t for t in ts], dtype=float) for ts in (t_one, t_mine))
    r = paired_ratio(t_one, t_mine, confidence, *boot)
    name = f"reach_{metric}"
    reached = np.isfinite(t_mine)  # the comparator is delta = 1's own time over the same seeds
    return {f"{name}_epochs": np.nanmean(t_mine) if reached.any() else math.nan,
            f"{name}_base_epochs": np.nanmean(t_one[reached]) if np.isfinite(t_one[reached]).any() else math.nan,
            f"{name}_reached": int(np.isfinite(t_mine).sum()), f"{name}_speedup": r.estimate,
            f"{name}_speedup_low": r.low, f"{name}_speedup_high": r.high}


def with_holm(table: pd.DataFrame, by: list[str] | None) -> pd.DataFrame:
    """Holm-adjusted p-values across the cells of each table (`by`: what makes one table; None: all
    rows are one table), for the test top-1 difference and Delta-e."""
    table = table.copy()
    for p in ("test_top1_diff_p", "delta_e_p"):
        if p not in table:
            table[p] = math.nan
        table[f"{p}_holm"] = math.nan
        parts = table.groupby(by, dropna=False) if by else [(None, table)]
        for _, part in parts:
            table.loc[part.index, f"{p}_holm"] = holm(part[p])
    return table


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
    """Dataset, setup, the paper's model order, settings (numbers in order), Algorithms 1 and 2 before
    other methods, delta 1.0 first."""
    order = table.assign(_model=table["model"].map(model_sort_key))
    by = ["dataset", *SETUP, "_model"]
    if "settings" in table:
        order["_settings"] = table["settings"].map(cells.settings_sort_key)
        by.append("_settings")
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
    return sort_rows(with_holm(table, ["dataset", *SETUP]))


def table6(rows: pd.DataFrame, paper: Paper, runs: pd.DataFrame | None = None) -> pd.DataFrame:
    """Best test top-1 over delta < 1 against delta = 1.0: (best - base) / best x 100, the paper beside,
    and what picking the best of k deltas gives when no delta has any effect (best_of_k_null, with the
    seed spread of the block's runs). Algorithm 2 as configured by default only (variant '')."""
    ours = rows[rows["method"].isin(DELTA_METHODS) & (rows["variant"] == "") & (rows["n_seeds"] > 0)]
    out = []
    for key, block in ours.groupby(BLOCK, sort=False):
        base = block.loc[block["delta"] == 1.0, "test_top1_mean"]
        base = base.iloc[0] if len(base) else math.nan
        others = block[block["delta"] < 1.0]
        best = others.loc[others["test_top1_mean"].idxmax()] if len(others) else None
        best_top1 = best["test_top1_mean"] if best is not None else math.nan
        sd, seeds = _residual_sd(runs, dict(zip(BLOCK, key))) if runs is not None else (math.nan, 0)
        null = best_of_k_null(len(others), sd / math.sqrt(seeds) if seeds else math.nan, best_top1 - base)
        out.append({**dict(zip(BLOCK, key)), "base_test_top1": base,
                    "best_delta": best["delta"] if best is not None else math.nan, "best_test_top1": best_top1,
                    "gain_pp": best_top1 - base, "k": len(others), "residual_sd": sd, "seeds_complete": seeds,
                    "null_expected_gain_pp": null.expected_gain, "null_p_best_wins": null.p_best_wins,
                    "null_upper95_pp": null.upper95, "selection_p": null.p_value})
    per_block = columns.TABLE6.csv[:columns.TABLE6.csv.index("selection_p") + 1]  # the rest follow from these
    table = pd.DataFrame(out, columns=list(per_block))
    table["change_pct"] = [best_change_pct(b, a) for b, a in zip(table["best_test_top1"], table["base_test_top1"])]
    table["null_expected_change_pct"] = [best_change_pct(a + g, a) for a, g in
                                         zip(table["base_test_top1"], table["null_expected_gain_pp"])]
    reported = paper.table6.rename(columns={"test_top1_change_pct": "paper_change_pct"})
    table = table.merge(reported[["dataset", "model", "network", "paper_change_pct"]], on=["dataset", "model"], how="left")
    table["network"] = table["network"].fillna(table["model"])
    table["change_minus_paper"] = table["change_pct"] - table["paper_change_pct"]
    return sort_rows(table)[list(columns.TABLE6.csv)]


def _residual_sd(runs: pd.DataFrame, block: dict) -> tuple[float, int]:
    """Run-to-run sd of final test top-1 in one block (Algorithms 1 and 2, default settings), each
    seed's shared part removed: statistics.residual_sd over a delta x seed table."""
    mask = runs["included"] & runs["method"].isin(DELTA_METHODS) & (runs["variant"] == "")
    for column, value in block.items():
        mask &= runs[column] == value
    grid = runs[mask].pivot_table(index="delta", columns="seed", values="test_top1", aggfunc="first")
    return residual_sd(grid)


def table1(rows: pd.DataFrame, paper: Paper, runs: pd.DataFrame | None = None) -> pd.DataFrame:
    """Seconds per update for each delta (loading.update_time says which measurement: `timing`), and
    its ratio to delta = 1.0 paired by seed (geometric mean of per-seed ratios, t-interval on logs)."""
    ours = rows[rows["method"].isin(DELTA_METHODS) & (rows["n_seeds"] > 0)].copy()
    base = _baseline(ours, "seconds_per_update_mean") if len(ours) else pd.Series(dtype=float)
    ours["ratio_of_means"] = ours["seconds_per_update_mean"] / base
    ratios = [_time_ratio(runs, r) if runs is not None else None for _, r in ours.iterrows()]
    for part in ("estimate", "low", "high"):
        ours[f"ratio_to_delta_1{'' if part == 'estimate' else '_' + part}"] = [
            getattr(r, part) if r is not None else math.nan for r in ratios]
    ours["ratio_pairs"] = [r.n if r is not None else 0 for r in ratios]
    reported = paper.table1.rename(columns={"seconds_per_iteration": "paper_seconds_per_update"})
    paper_base = reported.loc[reported["delta"] == 1.0, "paper_seconds_per_update"].iloc[0]
    reported = reported.assign(dataset="cifar10",  # the paper timed ResNet-18 on CIFAR-10
                               paper_ratio_to_delta_1=reported["paper_seconds_per_update"] / paper_base)
    ours = ours.merge(reported, on=["dataset", "model", "image_size", "delta"], how="left")
    return sort_rows(ours[list(columns.TABLE1.csv)])


def _time_ratio(runs: pd.DataFrame, row):
    """Seconds per update of this row's runs over the same seeds' delta = 1.0 runs."""
    if row["method"] == "standard" and row["delta"] == 1.0:
        return None
    used = runs[runs["included"]].dropna(subset=["seed"])
    mask = pd.Series(True, index=used.index)
    for column in BLOCK:
        mask &= used[column] == row[column]
    block = used[mask]
    base = block[(block["method"] == "standard") & (block["delta"] == 1.0)].set_index("seed")["seconds_per_update"]
    mine = block[(block["method"] == row["method"]) & (block["variant"] == row["variant"])
                 & (block["delta"] == row["delta"])].set_index("seed")["seconds_per_update"]
    seeds = sorted(set(base.index) & set(mine.index))
    return paired_ratio(mine.loc[seeds], base.loc[seeds]) if seeds else None


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
    return table.loc[order.sort_values().index, list(columns.TABLE2.csv)].reset_index(drop=True)


def methods_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Every method against standard (delta = 1.0, same dataset, model, setup and seeds), Holm over
    the table's rows."""
    blocks = rows.loc[~rows["method"].isin(DELTA_METHODS), BLOCK].drop_duplicates()
    table = rows.merge(blocks, on=BLOCK)
    return with_holm(table.reindex(columns=list(columns.METHODS.csv)), None).pipe(sort_rows)


def sensitivity_table(rows: pd.DataFrame, rules: dict) -> pd.DataFrame:
    """e and Delta-e (paired, with its interval and censored pairs) of every model, dataset and delta
    under each convergence rule."""
    csv = list(columns.sensitivity(rules).csv)
    return rows.loc[rows["method"].isin(DELTA_METHODS)].reindex(columns=csv).reset_index(drop=True)


def sensitivity_summary(sensitivity: pd.DataFrame, rules: dict) -> pd.DataFrame:
    """How 'smaller delta converges earlier' moves with the rule. Cells (delta < 1 rows) with every
    pair converged are counted by the sign of Delta-e and by whether its interval excludes 0; cells with
    a censored pair are counted apart, never in the signs."""
    below = sensitivity[sensitivity["delta"] < 1.0]
    out = []
    for name in rules:
        key = functools.partial(rule_key, rule=name)
        converged, censored = below[key("pairs_converged")].fillna(0), below[key("pairs_censored")].fillna(0)
        clean = below[(converged > 0) & (censored == 0)]
        d = clean[key("delta_e_pct")]
        out.append({"rule": name, "cells": len(below), "converged_cells": len(clean),
                    "earlier_cells": int((d > 0).sum()), "same_cells": int((d == 0).sum()),
                    "later_cells": int((d < 0).sum()), "above_0_cells": int((clean[key("delta_e_low")] > 0).sum()),
                    "below_0_cells": int((clean[key("delta_e_high")] < 0).sum()),
                    "censored_pair_cells": int(((censored > 0) & (converged > 0)).sum()),
                    "unconverged_cells": int((converged == 0).sum()), "mean_delta_e_pct": d.mean(),
                    "censored_seeds": int(sensitivity[key("e_censored")].sum())})
    return pd.DataFrame(out)
