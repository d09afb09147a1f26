"""One definition of a cell (cells.py): the sweep's summary, the W&B group and the tables split and join runs
alike; a key a sweep varies is a setting of the cell, a column of the tables and a label of the figures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from test_tables import RULES, tables_for, write_lr_sweep, write_run

from hardsamples import cells, wandb_mirror
from hardsamples.analysis import aggregate
from hardsamples.analysis.loading import load_records
from hardsamples.sweep.naming import SWEPT_ENV
from hardsamples.sweep.summary import cell_lines


def headers(root: Path) -> dict[Path, dict]:
    return {p.parent: json.loads(p.read_text()) for p in sorted(root.rglob("run.json"))}


def partition(labels: dict[Path, str]) -> set[frozenset]:
    """Runs grouped by label: two ways of labelling agree when they group the same runs together."""
    groups: dict[str, set] = {}
    for run_dir, label in labels.items():
        groups.setdefault(label, set()).add(run_dir)
    return {frozenset(group) for group in groups.values()}


@pytest.mark.parametrize("key, setting", [
    ("optimizer.lr", True), ("dataset.root", True), ("++optimizer.betas", True), ("model.drop_rate", True),
    ("model", False), ("model.name", False), ("dataset.name", False), ("method.shape", False), ("fidelity", False),
    ("fidelity.eval_batchnorm", False), ("delta", False), ("seed", False), ("epochs", False), ("run_name", False),
    ("logger.wandb.mode", False), ("record.trace", False), ("hydra.launcher.n_jobs", False), ("progress", False),
])
def test_a_setting_is_any_key_outside_the_cells_own_fields(key, setting):
    assert (cells.setting_keys([key]) != []) is setting


def test_the_settings_are_the_keys_that_vary_within_one_identity():
    config = {"optimizer": {"lr": 0.01, "momentum": 0.9}, "dataset": {"name": "d", "root": "/a"}, "seed": 0}
    runs = [{"dataset": "d", "model": "m", "fidelity": "paper_code", "epochs": 2, "batch_size": 8, "image_size": 16,
             "method": "standard", "delta": 1.0, "config": {**config, "seed": seed, "optimizer": {"lr": lr, "momentum": 0.9}}}
            for lr in (0.01, 0.1) for seed in (0, 1)]
    runs.append({**runs[0], "delta": 0.5, "method": "hard_batches", "config": {**config, "optimizer": {"momentum": 0.9}}})
    found = cells.cells_of(runs)
    assert [c["settings"] for c in found] == ["optimizer.lr=0.01"] * 2 + ["optimizer.lr=0.1"] * 2 + ["optimizer.lr=null"]
    assert cells.label(found[2]) == "m d standard d1.0 paper_code E2 B8 16px optimizer.lr=0.1"
    assert cells.group("s", found[2]) == "s/m/d/standard/d1.0/paper_code/E2_B8_16px/optimizer.lr=0.1"
    assert cells.split_settings("a.b=1; c=[1,2]") == {"a.b": "1", "c": "[1,2]"}
    assert sorted(["x=0.5", "x=0.05", "x=10", "x=9"], key=cells.settings_sort_key) == ["x=0.05", "x=0.5", "x=9", "x=10"]


def test_an_lr_sweep_gives_the_same_cells_in_the_summary_the_w_and_b_groups_and_the_tables(tmp_path, monkeypatch):
    """Two learning rates x two seeds x two deltas: four cells of two seeds each, wherever they are counted."""
    write_lr_sweep(tmp_path)
    runs = headers(tmp_path)
    assert len(runs) == 8

    summary = cell_lines(list(runs))
    assert len(summary) == 1 + 4 and all(": 2 run(s)," in line for line in summary[1:])
    for lr, top1 in (("0.01", "61.50 +/- 0.71"), ("0.1", "70.50 +/- 0.71")):
        line = f"    resnet18 cifar10 standard d1.0 paper_code E10 B64 32px optimizer.lr={lr}: 2 run(s), test top-1 {top1},"
        assert any(summary_line.startswith(line) for summary_line in summary), summary

    monkeypatch.setenv(SWEPT_ENV, "optimizer.lr,seed,delta")  # what the sweep's launching process lists
    groups = {run_dir: wandb_mirror.cell_group(header) for run_dir, header in runs.items()}
    assert groups[next(iter(runs))].endswith("/E10_B64_32px/optimizer.lr=0.01")

    table = aggregate.summarise_runs(load_records(tmp_path), RULES)
    rows = {Path(r["run_dir"]): "|".join(str(r[f]) for f in cells.FIELDS) for _, r in table.iterrows()}
    labels = {run_dir: cells.label(cell) for run_dir, cell in zip(runs, cells.cells_of(list(runs.values())))}
    assert partition(groups) == partition(rows) == partition(labels) and len(partition(rows)) == 4
    assert table["included"].all()  # no lr's run is taken for a duplicate seed of the other's


def test_the_figure_labels_each_line_with_its_setting(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hardsamples.analysis.plots import FIGURE_STYLE, block_figure

    write_lr_sweep(tmp_path)
    _, runs, rows = tables_for(tmp_path)
    df = load_records(tmp_path)
    block = df.merge(runs[["run_dir", "variant", "settings"]], on="run_dir")
    info = {key: block.iloc[0][key] for key in ("dataset", "model", "fidelity", "epochs", "batch_size", "image_size")}
    with plt.rc_context(FIGURE_STYLE):
        fig = block_figure(plt, block, rows, info, 0.95)
    try:
        labels = fig.axes[0].get_legend_handles_labels()[1]
        assert labels == ["δ=1, optimizer.lr=0.01 (n=2)", "δ=0.5, optimizer.lr=0.01 (n=2)",
                          "δ=1, optimizer.lr=0.1 (n=2)", "δ=0.5, optimizer.lr=0.1 (n=2)"]
        assert len(fig.axes[3].lines) == 2 + 1  # each lr's delta 0.5 paired with its own delta 1, and zero
    finally:
        plt.close(fig)


def test_a_method_variant_and_a_switched_protocol_key_are_named_the_same_everywhere(tmp_path):
    cosine = write_run(tmp_path, method="trimming", method_options={"shape": "cosine", "end": 0.2})
    switched = write_run(tmp_path, fidelity_options={"eval_batchnorm": "eval"})
    found = dict(zip(headers(tmp_path), cells.cells_of(list(headers(tmp_path).values()))))
    assert cells.method_text(found[cosine]) == "trimming (shape=cosine)"
    assert found[switched]["fidelity"] == "paper_code (eval_batchnorm=eval)"
    _, runs, _ = tables_for(tmp_path)
    by_dir = runs.set_index("run_dir")
    assert by_dir.loc[str(cosine), "variant"] == "shape=cosine"
    assert by_dir.loc[str(switched), "fidelity"] == "paper_code (eval_batchnorm=eval)"
