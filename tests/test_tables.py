"""The tables from run records the test writes itself, with known curves: no training needed."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from hardsamples.analysis import aggregate
from hardsamples import wandb_mirror
from hardsamples.analysis.loading import load_records, load_wandb
from hardsamples.analysis.paper import MODEL_ORDER, load_paper
from hardsamples.record_files import BATCH_ACCURACY_COLUMNS, METRIC_COLUMNS, write_csv, write_json
from hardsamples.analysis.inference import t_interval
from hardsamples.analysis.columns import DELTA
from hardsamples.analysis.report import build
from hardsamples.tables import compose

RULES = {"relative": {"kind": "relative", "tolerance": 0.01},
         "absolute": {"kind": "absolute", "threshold": 0.05}}


def step_curve(epochs: int, e: int, high: float = 2.0, low: float = 0.01) -> list[float]:
    """Train loss that is `high` until interval e - 1 and `low` from interval e: every rule gives e."""
    return [high if t < e else low for t in range(1, epochs + 1)]


def write_run(root, *, dataset="cifar10", model="resnet18", method=None, delta=1.0, seed=0, fidelity="paper_code",
              epochs=10, e=5, train_top1=90.0, test_top1=60.0, status="finished", intervals=None,
              batch_top1=(50.0, 60.0, 70.0), seconds_per_update=0.01, image_size=32, batch_size=64, losses=None,
              method_options=None, fidelity_options=None, train_seconds=None, final_top1=None, test_curve=None,
              train_curve=None, num_batches=10):
    """One run directory shaped as hardsamples.train writes it. train_seconds (seconds per update of the
    updates alone) and final_top1 (the final-model evaluation's batch top-1s) write the newer record
    format: a train_seconds column, and batch_accuracy.csv rows marked evaluation=interval/final."""
    method = method or ("standard" if delta == 1.0 else "hard_batches")
    name = f"{model}-{dataset}-{method}-d{delta}-s{seed}-{fidelity}-E{epochs}" + "".join(
        f"-{k}{v}" for k, v in {**(method_options or {}), **(fidelity_options or {})}.items())
    run_dir = root / name
    config = {"model": {"name": model}, "dataset": {"name": dataset}, "method": {"name": method, **(method_options or {})},
              "fidelity": {"name": fidelity, **(fidelity_options or {})}, "delta": delta, "seed": seed, "epochs": epochs,
              "batch_size": batch_size, "image_size": image_size, "sweep_name": "test", "run_name": name,
              "optimizer": {"lr": 0.005}}
    write_json(run_dir / "run.json", {
        "status": status, "error": "training loss became nan" if status == "diverged" else None,
        "run_id": name, "run_name": name, "sweep": "test", "model": model, "dataset": dataset, "method": method,
        "delta": delta, "seed": seed, "fidelity": fidelity, "num_batches": num_batches, "k": 10, "epochs": epochs,
        "update_budget": 10 * epochs, "batch_size": batch_size, "image_size": image_size, "num_classes": 10,
        "channels": 3,
        "finished_at": f"2026-01-01T00:00:{seed:02d}+00:00" if status == "finished" else None, "config": config})
    losses = losses or step_curve(epochs, e)
    rows = [{"interval": t, "updates": 10 * t, "train_loss": losses[t - 1],
             "train_top1": train_top1 if train_curve is None else train_curve[t - 1],
             "seen_train_loss": losses[t - 1], "test_loss": 1.0,
             "test_top1": test_top1 if test_curve is None else test_curve[t - 1],
             "seconds": seconds_per_update * 10 * t, "extra_forward_passes": 0}
            for t in range(1, (intervals or epochs) + 1)]
    metric_columns = list(METRIC_COLUMNS)
    if train_seconds is not None:  # the first interval pays a warm-up of 1 s
        metric_columns += [] if "train_seconds" in metric_columns else ["train_seconds"]
        for row in rows:
            row["train_seconds"] = train_seconds * 10 + (1.0 if row["interval"] == 1 else 0.0)
    write_csv(run_dir / "metrics.csv", metric_columns, rows)
    if status == "finished":
        batch_rows = [{"split": split, "batch": i, "samples": 64, "top1": acc}
                      for split in ("train", "test") for i, acc in enumerate(batch_top1)]
        columns = list(BATCH_ACCURACY_COLUMNS)
        if final_top1 is not None:
            columns += [] if "evaluation" in columns else ["evaluation"]
            batch_rows = [{**r, "evaluation": "interval"} for r in batch_rows] + [
                {"split": split, "batch": i, "samples": 64, "top1": acc, "evaluation": "final"}
                for split in ("train", "test") for i, acc in enumerate(final_top1)]
        elif "evaluation" in columns:
            batch_rows = [{**r, "evaluation": "interval"} for r in batch_rows]
        write_csv(run_dir / "batch_accuracy.csv", columns, batch_rows)
    return run_dir


def tables_for(runs_dir, **overrides):
    args = [f"runs={runs_dir}", "table2=false", "figures=false"] + [f"{k}={v}" for k, v in overrides.items()]
    sections, df, runs, rows = build(compose(args))
    return {s.key: s for s in sections}, runs, rows


def test_interval_is_scipys_t_interval():
    values = [61.2, 63.5, 60.1, 64.8]
    low, high = stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=stats.sem(values))
    interval = t_interval(values)
    assert interval.mean == pytest.approx(np.mean(values))
    assert interval.half_width == pytest.approx((high - low) / 2)
    one = t_interval([61.2])
    assert one.n == 1 and math.isnan(one.half_width) and "no CI" in one.text()


def test_group_means_intervals_and_delta_e(tmp_path):
    tops = {0: 60.0, 1: 62.0, 2: 67.0}
    for seed, top in tops.items():
        write_run(tmp_path, delta=1.0, seed=seed, e=8, test_top1=top, train_top1=top + 30)
        write_run(tmp_path, delta=0.5, seed=seed, e=4 + seed, test_top1=top + 1)  # e = 4, 5, 6
    sections, runs, rows = tables_for(tmp_path)
    table = sections["table3_cifar10"].data
    ours = table[table["n_seeds"] > 0].set_index("delta")
    expected = t_interval(list(tops.values()))
    assert ours.loc[1.0, "test_top1_mean"] == pytest.approx(expected.mean)
    assert ours.loc[1.0, "test_top1_ci95"] == pytest.approx(expected.half_width)
    assert ours.loc[0.5, "e_mean"] == pytest.approx(5.0)
    assert ours.loc[0.5, "e_ci95"] == pytest.approx(t_interval([4, 5, 6]).half_width)
    # Delta-e paired by seed: geometric mean of e_1 / e_delta = 8/4, 8/5, 8/6; the paper's way (ratio of
    # the means) beside it
    assert ours.loc[0.5, "delta_e_pct"] == pytest.approx((np.exp(np.mean(np.log([8 / 4, 8 / 5, 8 / 6]))) - 1) * 100)
    assert ours.loc[0.5, "delta_e_of_means_pct"] == pytest.approx((8 - 5) / 5 * 100)
    # the paper's kind of interval: t over one run's per-batch accuracies (50, 60, 70)
    assert ours.loc[1.0, "test_top1_batch_ci95"] == pytest.approx(t_interval([50, 60, 70]).half_width)
    # the paper's numbers beside ours, and the difference
    assert ours.loc[0.5, "paper_e"] == 77 and ours.loc[0.5, "e_minus_paper"] == pytest.approx(5 - 77)
    assert list(table.columns[:4]) == ["dataset", "model", "network", "delta"]
    assert set(DELTA.csv) <= set(table.columns)


def test_table6_follows_its_formula(tmp_path):
    for delta, top in ((1.0, 60.0), (0.8, 58.0), (0.5, 64.0), (0.2, 63.0)):
        write_run(tmp_path, delta=delta, test_top1=top)
    sections, _, _ = tables_for(tmp_path)
    row = sections["table6"].data.iloc[0]
    assert row["best_delta"] == 0.5 and row["base_test_top1"] == 60.0
    assert row["change_pct"] == pytest.approx((64 - 60) / 64 * 100)
    assert row["paper_change_pct"] == pytest.approx(-0.75)


def test_unfinished_and_diverged_runs_are_listed_not_averaged(tmp_path):
    write_run(tmp_path, delta=1.0, seed=0, test_top1=60.0)
    write_run(tmp_path, delta=1.0, seed=1, test_top1=10.0, status="running", intervals=3)
    write_run(tmp_path, delta=1.0, seed=2, test_top1=10.0, status="diverged", intervals=2,
              losses=[2.0, float("nan")] + [0.0] * 8)
    write_run(tmp_path, delta=1.0, seed=3, test_top1=10.0, status="failed", intervals=0)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "run.json").write_text("{not json")
    sections, runs, rows = tables_for(tmp_path)
    row = sections["table3_cifar10"].data.query("delta == 1.0").iloc[0]
    assert row["n_seeds"] == 1 and row["test_top1_mean"] == 60.0 and math.isnan(row["test_top1_ci95"])
    assert row["n_runs"] == 4
    for status in ("running", "diverged", "failed"):
        assert f"1 {status}" in row["not_in_means"]
    listed = sections["runs"].display
    assert set(listed["status"]) == {"running", "diverged", "failed", "unreadable"}
    assert "5 loaded" in sections["runs"].title and "1 enter the means" in sections["runs"].title
    # the Markdown says there is one seed rather than printing an interval
    assert "(1 seed, no CI)" in sections["table3_cifar10"].display.loc[0, "test top-1"]


def test_setups_are_never_averaged_together(tmp_path):
    write_run(tmp_path, fidelity="paper_code", test_top1=60.0)
    write_run(tmp_path, fidelity="clean", test_top1=80.0)
    write_run(tmp_path, fidelity="clean", test_top1=82.0, epochs=12, e=6)
    sections, _, rows = tables_for(tmp_path)
    assert sorted(rows["test_top1_mean"]) == [60.0, 80.0, 82.0]
    tables = [s for key, s in sections.items() if key.startswith("table3_cifar10")]
    assert len(tables) == 3  # one table per setup, each saying which
    assert {t.title.split("setup ")[1].split(",")[0] for t in tables} == {"paper_code", "clean"}


def test_a_switched_fidelity_key_is_another_protocol(tmp_path):
    write_run(tmp_path, fidelity="paper_code", test_top1=60.0)
    write_run(tmp_path, fidelity="paper_code", test_top1=70.0, fidelity_options={"eval_batchnorm": "eval"})
    sections, _, rows = tables_for(tmp_path)
    assert sorted(rows["fidelity"]) == ["paper_code", "paper_code (eval_batchnorm=eval)"]
    assert sorted(rows["test_top1_mean"]) == [60.0, 70.0]
    assert "table3_cifar10_paper_code-eval_batchnorm-eval_E10_B64_32px" in sections


def write_lr_sweep(root, lrs=(0.01, 0.1), seeds=(0, 1)) -> None:
    """An lr sweep (optimizer.lr=0.01,0.1) at delta 1.0 and 0.5: runs that differ only in the lr and
    the seed, in hashed directories as a sweep writes them. lr 0.1 scores 10 points higher."""
    for lr in lrs:
        for seed in seeds:
            for delta in (1.0, 0.5):
                run_dir = write_run(root / f"lr{lr}", delta=delta, seed=seed, test_top1=60.0 + 100 * lr + seed
                                    + (1.0 if delta == 0.5 else 0.0))
                header = json.loads((run_dir / "run.json").read_text())
                header["config"]["optimizer"]["lr"] = lr
                write_json(run_dir / "run.json", header)


def test_a_swept_key_is_a_column_and_each_value_its_own_row(tmp_path):
    write_lr_sweep(tmp_path)
    sections, runs, rows = tables_for(tmp_path)
    assert runs["included"].all() and set(runs["settings"]) == {"optimizer.lr=0.01", "optimizer.lr=0.1"}
    table = sections["table3_cifar10"]
    ours = table.data[table.data["n_seeds"] > 0]
    assert len(ours) == 4 and (ours["n_seeds"] == 2).all()  # one row per lr and delta, 2 seeds each
    by_lr = ours.set_index(["settings", "delta"])
    assert by_lr.loc[("optimizer.lr=0.1", 1.0), "test_top1_mean"] == pytest.approx(70.5)
    assert by_lr.loc[("optimizer.lr=0.01", 1.0), "test_top1_mean"] == pytest.approx(61.5)
    # delta 0.5 is paired with delta 1.0 of its own lr: +1.0 in every seed
    assert by_lr.loc[("optimizer.lr=0.1", 0.5), "test_top1_diff"] == pytest.approx(1.0)
    assert by_lr.loc[("optimizer.lr=0.01", 0.5), "test_top1_diff"] == pytest.approx(1.0)
    display = table.display[table.display["seeds"] > 0]
    assert list(display.columns[:3]) == ["network", "δ", "optimizer.lr"]
    assert list(display["optimizer.lr"]) == ["0.01", "0.01", "0.1", "0.1"]  # numeric order, delta 1 first
    assert len(sections["table6"].data) == 2 and "optimizer.lr" in sections["table6"].display


def test_the_csv_carries_a_column_per_swept_key(tmp_path):
    from hardsamples.tables import main

    write_lr_sweep(tmp_path / "runs")
    assert main([f"runs={tmp_path / 'runs'}", f"out={tmp_path / 'out'}", "table2=false", "figures=false"]) == 0
    table = pd.read_csv(tmp_path / "out" / "table3_cifar10.csv")
    assert "settings" not in table and sorted(table["optimizer.lr"].dropna().unique()) == [0.01, 0.1]
    runs = pd.read_csv(tmp_path / "out" / "runs.csv")
    assert runs["optimizer.lr"].notna().all()


def test_runs_of_one_setting_keep_the_tables_as_they_were(tmp_path):
    write_run(tmp_path, seed=0)
    write_run(tmp_path, seed=1)
    sections, runs, _ = tables_for(tmp_path)
    assert set(runs["settings"]) == {""} and "optimizer.lr" not in sections["table3_cifar10"].display


def test_duplicate_seed_is_counted_once(tmp_path):
    write_run(tmp_path / "sweep_a", seed=0, test_top1=60.0)
    write_run(tmp_path / "sweep_b", seed=0, test_top1=60.0)
    sections, runs, rows = tables_for(tmp_path)
    assert rows.iloc[0]["n_seeds"] == 1 and "1 duplicate" in rows.iloc[0]["not_in_means"]


def test_paper_grid_fills_every_row(tmp_path):
    """Records shaped like the paper's grid (3 datasets x 5 models x 4 deltas x 2 seeds)."""
    paper = load_paper()
    for _, r in paper.tables.iterrows():
        for seed in (0, 1):
            write_run(tmp_path, dataset=r["dataset"], model=r["model"], delta=r["delta"], seed=seed, epochs=20,
                      e=5 + seed + int(10 * r["delta"]), image_size=128, batch_size=512,
                      test_top1=50 + 10 * r["delta"] + seed)
    sections, runs, rows = tables_for(tmp_path)
    for dataset, number in (("cifar10", 3), ("cifar100", 4), ("stl10", 5)):
        table = sections[f"table{number}_{dataset}"].data
        assert list(table["model"].drop_duplicates()) == MODEL_ORDER
        assert len(table) == 20 and (table["n_seeds"] == 2).all()
        assert table[["train_top1_mean", "test_top1_mean", "e_mean", "e_ci95"]].notna().all().all()
        assert table.loc[table["delta"] < 1, "delta_e_pct"].notna().all()
        merged = table.merge(paper.tables, on=["dataset", "model", "delta"])
        assert (merged["paper_e"].fillna(-1) == merged["e"].fillna(-1)).all()
    assert len(sections["table6"].data) == 15 and sections["table6"].data["paper_change_pct"].notna().all()
    assert sections["table1"].data["paper_seconds_per_update"].notna().sum() == 4
    assert len(sections["sensitivity"].data) == 60


def test_methods_table_compares_with_standard(tmp_path):
    for seed in (0, 1):
        write_run(tmp_path, delta=1.0, seed=seed, e=6, test_top1=60.0 + seed)
        write_run(tmp_path, method="trimming", delta=1.0, seed=seed, e=4, test_top1=62.0 + seed)
        write_run(tmp_path, method="random_batches", delta=0.5, seed=seed, e=8, test_top1=59.0)
    sections, _, _ = tables_for(tmp_path)
    methods = sections["methods"].data.set_index("method")
    assert methods.loc["trimming", "delta_e_pct"] == pytest.approx((6 - 4) / 4 * 100)
    assert methods.loc["trimming", "test_top1_vs_standard"] == pytest.approx(2.0)
    assert methods.loc["trimming", "test_top1_diff"] == pytest.approx(2.0)  # paired: the same 2.0 in each seed
    assert methods.loc["random_batches", "delta_e_pct"] == pytest.approx((6 - 8) / 8 * 100)
    assert methods.loc["random_batches", "pairs"] == 2
    assert "table3_cifar10" in sections  # standard still makes its delta table


def test_method_settings_are_never_averaged_together(tmp_path):
    write_run(tmp_path, delta=1.0, e=8)
    write_run(tmp_path, method="trimming", e=4, test_top1=70.0, method_options={"shape": "linear", "end": 0.2})
    write_run(tmp_path, method="trimming", e=2, test_top1=80.0, method_options={"shape": "cosine", "end": 0.2})
    sections, _, _ = tables_for(tmp_path)
    methods = sections["methods"].data.set_index(["method", "variant"])
    assert len(methods) == 3 and (methods["n_seeds"] == 1).all()
    assert methods.loc[("trimming", ""), "test_top1_mean"] == 70.0  # linear to 0.2: conf/method/trimming.yaml
    assert methods.loc[("trimming", "shape=cosine"), "test_top1_mean"] == 80.0
    assert "trimming (shape=cosine)" in set(sections["methods"].display["method"])


def test_no_methods_table_without_other_methods(tmp_path):
    write_run(tmp_path, delta=1.0)
    sections, _, _ = tables_for(tmp_path)
    assert "methods" not in sections


def test_sensitivity_has_every_rule(tmp_path):
    write_run(tmp_path, delta=1.0, e=8)
    write_run(tmp_path, delta=0.5, e=4, losses=step_curve(10, 4, low=0.2))  # never below 0.05: censored
    sections, _, _ = tables_for(tmp_path)
    data = sections["sensitivity"].data.set_index("delta")
    assert data.loc[0.5, "delta_e_relative_pct"] == pytest.approx(100.0)
    # censored: counted, never averaged in as E
    assert data.loc[0.5, "e_absolute_censored"] == 1 and math.isnan(data.loc[0.5, "e_absolute_mean"])
    assert data.loc[0.5, "e_absolute_censored_why"] == "1 never met" and data.loc[0.5, "pairs_censored_absolute"] == 1
    summary = sections["sensitivity_summary"].data.set_index("rule")
    assert set(summary.index) == {"relative", "relative_narrow", "relative_wide", "plateau", "absolute"}


class FakeWandbRun:
    """What load_wandb reads of a wandb.apis.public.Run, made from a run record by the mirror's own
    functions: the config, group, name and summary it gives wandb.init, the rows it logs."""

    def __init__(self, run_dir, flat_keys: bool = False):
        header = json.loads((run_dir / "run.json").read_text())
        self.id, self.state = header["run_id"], "finished"
        self.name, self.group = wandb_mirror.display_name(header, run_dir), wandb_mirror.cell_group(header)
        self.config = wandb_mirror.wandb_config(header)
        self.summary = {**wandb_mirror.summary_fields(header), "status": header["status"]}  # status: at finish
        rows = pd.read_csv(run_dir / "metrics.csv").astype(object).to_dict("records")
        rows = [{k: (None if pd.isna(v) else v) for k, v in row.items()} for row in rows]
        self._history = [{"_step": row["interval"], **wandb_mirror.logged_row(row)} for row in rows]
        if flat_keys:  # as runs were mirrored before: metrics.csv's names, W&B's step as the interval,
            self.group, self.config = header["sweep"], header["config"]  # the sweep as the group
            self._history = [{"_step": row["interval"], **{k: v for k, v in row.items() if k != "interval"}}
                             for row in rows]

    def scan_history(self):
        return iter(self._history)


class FakeApi:
    """wandb.Api's runs(path, filters), with the filters W&B's server would apply to the fake runs."""

    def __init__(self, runs):
        self._runs = runs

    def runs(self, path, filters=None):
        assert path == "me/hard-samples"
        return [run for run in self._runs if filters is None or self._matches(run, filters)]

    def _matches(self, run, query) -> bool:
        for key, wanted in query.items():
            if key == "$or":
                if not any(self._matches(run, part) for part in wanted):
                    return False
            elif key == "group":
                if run.group != wanted:
                    return False
            elif key.startswith("config."):
                if run.config.get(key.removeprefix("config.")) != wanted:
                    return False
            else:
                raise AssertionError(f"the fake W&B API has no filter on {key}")
        return True


@pytest.mark.parametrize("flat_keys", [False, True], ids=["keys logged now", "flat keys logged before"])
def test_wandb_gives_the_same_table(tmp_path, flat_keys):
    for delta, seed in ((1.0, 0), (1.0, 1), (0.5, 0)):
        write_run(tmp_path / "test", delta=delta, seed=seed, e=3 + seed, test_top1=60.0 + seed)
    other = write_run(tmp_path / "other", delta=0.5, seed=0)  # another sweep: not read
    header = json.loads((other / "run.json").read_text())
    write_json(other / "run.json", {**header, "sweep": "other", "config": {**header["config"], "sweep_name": "other"}})
    records = load_records(tmp_path / "test")
    mirror = load_wandb("me", "hard-samples", "test",
                        api=FakeApi([FakeWandbRun(p.parent, flat_keys) for p in sorted(tmp_path.rglob("run.json"))]))
    keys = ["run_id", "dataset", "model", "method", "delta", "seed", "fidelity", "status", "interval"]
    compare = keys + ["run_name", "sweep", "train_loss", "train_top1", "test_loss", "test_top1", "seconds", "updates"]
    left = records[compare].sort_values(keys).reset_index(drop=True)
    right = mirror[compare].sort_values(keys).reset_index(drop=True)
    pd.testing.assert_frame_equal(left, right, check_dtype=False)
    assert [c["config"] for c in mirror.groupby("run_id").head(1).sort_values("run_id").to_dict("records")] == [
        c["config"] for c in records.groupby("run_id").head(1).sort_values("run_id").to_dict("records")]
    runs = aggregate.summarise_runs(mirror, RULES)
    rows = aggregate.group_rows(runs, RULES, "relative")
    assert rows.set_index("delta").loc[1.0, "n_seeds"] == 2


def test_wandb_reads_one_cell_by_its_group(tmp_path):
    for delta, seed in ((1.0, 0), (1.0, 1), (0.5, 0)):
        write_run(tmp_path, delta=delta, seed=seed)
    runs = [FakeWandbRun(p.parent) for p in sorted(tmp_path.rglob("run.json"))]
    cell = "test/resnet18/cifar10/standard/d1.0/paper_code/E10_B64_32px"
    other = "test/resnet18/cifar10/hard_batches/d0.5/paper_code/E10_B64_32px"
    assert sorted(run.group for run in runs) == sorted([cell, cell, other])
    table = load_wandb("me", "hard-samples", cell, api=FakeApi(runs))
    assert sorted(set(table["seed"])) == [0, 1] and set(table["delta"]) == {1.0}


def test_table2_counts_the_model_beside_the_paper(tmp_path):
    write_run(tmp_path, model="mobilenetv3_small_100", image_size=128)
    sections, _, _ = tables_for(tmp_path, table2="true")
    row = sections["table2"].data.iloc[0]
    assert row["params_m"] == pytest.approx(1.528, abs=1e-3) and row["paper_params_m"] == 1.52
    assert row["gflops"] == pytest.approx(0.0377, abs=1e-3) and row["paper_gflops"] == 0.03


def converging_curve(epochs: int, e: int) -> list[float]:
    """Step-shaped as in a converging run: falling from 2.3 to 1.0 until e - 1, at 0.001 from e."""
    return list(np.linspace(2.3, 1.0, e - 1)) + [0.001] * (epochs - e + 1)


def test_paper_shaped_records_give_the_papers_delta_e(tmp_path):
    """Runs converging at the paper's e (2 seeds, E = 100) give the paper's printed Delta-e in every row
    the paper is self-consistent in and whose e leaves the hold window (e <= 91 of 100)."""
    from hardsamples.analysis.consistency import close, consistency_report

    paper = load_paper()
    for _, r in paper.tables.dropna(subset=["e"]).iterrows():
        for seed in (0, 1):
            write_run(tmp_path, dataset=r["dataset"], model=r["model"], delta=r["delta"], seed=seed, epochs=100,
                      losses=converging_curve(100, int(r["e"])), image_size=128, batch_size=512)
    _, _, rows = tables_for(tmp_path, **{"convergence.rules": "{relative: {kind: relative, tolerance: 0.01}}"})
    report = consistency_report(paper).delta_e
    checked = 0
    for _, c in report[report["status"] == "consistent"].iterrows():
        ours = rows[(rows["dataset"] == c["dataset"]) & (rows["model"] == c["model"]) & (rows["delta"] == c["delta"])]
        row = ours.iloc[0]
        if max(c["e_1"], c["e_delta"]) > 91:
            assert row["pairs_censored"] == 2 and math.isnan(row["delta_e_pct"])  # e = 100: cannot be confirmed
            continue
        text = paper.delta_e_text[(paper.tables["dataset"] == c["dataset"]) & (paper.tables["model"] == c["model"])
                                  & (paper.tables["delta"] == c["delta"])].iloc[0]
        assert close(row["delta_e_pct"], c["printed"], text), (c["dataset"], c["network"], c["delta"])
        assert row["delta_e_low"] == pytest.approx(row["delta_e_pct"])  # identical seeds: no spread
        checked += 1
    assert checked >= 20


def test_table1_times_the_updates_alone_when_recorded(tmp_path):
    for seed in (0, 1, 2):  # wall clock says delta = 1.0 is slower (it ran first); train_seconds says 10% faster
        write_run(tmp_path / "new", delta=1.0, seed=seed, seconds_per_update=0.05, train_seconds=0.010)
        write_run(tmp_path / "new", delta=0.5, seed=seed, seconds_per_update=0.02, train_seconds=0.011)
        write_run(tmp_path / "old", delta=1.0, seed=seed, seconds_per_update=0.05)
        write_run(tmp_path / "old", delta=0.5, seed=seed, seconds_per_update=0.02)
    sections, runs, _ = tables_for(tmp_path / "new")
    t1 = sections["table1"].data.set_index("delta")
    assert t1.loc[1.0, "seconds_per_update_mean"] == pytest.approx(0.010)  # warm-up interval left out
    assert t1.loc[0.5, "ratio_to_delta_1"] == pytest.approx(1.1) and t1.loc[0.5, "ratio_pairs"] == 3
    assert set(t1["timing"]) == {"train_seconds"}
    assert any("first interval left out as warm-up" in n for n in sections["table1"].notes)
    sections, _, _ = tables_for(tmp_path / "old")
    t1 = sections["table1"].data.set_index("delta")
    assert t1.loc[0.5, "ratio_to_delta_1"] == pytest.approx(0.4) and set(t1["timing"]) == {"wall clock"}
    assert any("include evaluation" in n for n in sections["table1"].notes)
    assert "wall clock (incl. evaluation, start-up)" in set(sections["table1"].display["timed"])


def test_the_papers_interval_uses_the_final_rows_when_recorded(tmp_path):
    write_run(tmp_path / "new", final_top1=(70.0, 80.0, 90.0, 100.0))
    write_run(tmp_path / "old")
    new = tables_for(tmp_path / "new")[2].iloc[0]
    assert new["test_top1_batch_mean"] == pytest.approx(85.0)
    assert new["test_top1_batch_ci95"] == pytest.approx(t_interval([70, 80, 90, 100]).half_width)
    assert new["batch_evaluation"] == "final"
    old = tables_for(tmp_path / "old")[2].iloc[0]
    assert old["test_top1_batch_mean"] == pytest.approx(60.0) and old["batch_evaluation"].startswith("interval")


def test_methods_paired_by_seed_on_the_studys_shape(tmp_path):
    """Fashion-MNIST study shape: 5 seeds, E = 20, methods against standard (hard_batches at delta = 1)."""
    rng = np.random.default_rng(0)
    for seed in range(5):
        shared = rng.normal(0, 2.0)  # the seed's initial weights move every method alike
        write_run(tmp_path, delta=1.0, seed=seed, epochs=20, e=12, test_top1=90 + shared)
        write_run(tmp_path, method="random_batches", delta=0.2, seed=seed, epochs=20, e=14,
                  test_top1=89.5 + shared + rng.normal(0, 0.2))
        write_run(tmp_path, method="hard_batches_refresh", delta=0.2, seed=seed, epochs=20, e=10 + seed % 2,
                  test_top1=90.3 + shared + rng.normal(0, 0.2))
        write_run(tmp_path, method="trimming", delta=1.0, seed=seed, epochs=20,
                  losses=list(2.3 - 0.1 * np.arange(20)), test_top1=90 + shared)  # still falling: censored
    sections, _, rows = tables_for(tmp_path)
    methods = sections["methods"].data.set_index("method")
    assert (methods.drop("standard")["pairs"] == 5).all()
    random = methods.loc["random_batches"]
    assert random["test_top1_diff"] == pytest.approx(-0.5, abs=0.3) and random["test_top1_diff_high"] < 0
    assert random["test_top1_diff_boot_low"] < random["test_top1_diff"] < random["test_top1_diff_boot_high"]
    assert random["delta_e_pct"] == pytest.approx((12 / 14 - 1) * 100) and random["later"] == 5
    assert methods.drop("standard")["test_top1_diff_p_holm"].notna().all()
    compared = methods.drop("standard")
    assert (compared["test_top1_diff_p_holm"] >= compared["test_top1_diff_p"]).all()
    trimming = methods.loc["trimming"]
    assert trimming["e_censored"] == 5 and trimming["pairs_censored"] == 5 and trimming["later"] == 5
    assert "5 still falling" in trimming["e_censored_why"]
    assert "– (5 of 5 censored: 5 still falling)" in set(sections["methods"].display["e"])


@pytest.mark.parametrize("dataset, setting, reported", [
    ("cifar10", "auto", True), ("digits", "auto", False), ("digits", "true", True), ("cifar10", "false", False)])
def test_the_paper_is_checked_against_itself_only_beside_its_datasets(tmp_path, dataset, setting, reported):
    write_run(tmp_path, dataset=dataset)
    sections, _, _ = tables_for(tmp_path, paper_consistency=setting)
    assert ("consistency_delta_e" in sections) is reported


def test_an_unknown_paper_consistency_is_one_line(tmp_path):
    from hardsamples.errors import ConfigError

    write_run(tmp_path)
    with pytest.raises(ConfigError, match="paper_consistency=sometimes is unknown: use auto"):
        tables_for(tmp_path, paper_consistency="sometimes")
