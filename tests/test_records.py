"""The run record: what run.json and the CSVs hold, divergence, and the W&B mirror in offline mode."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
import torch

from conftest import read_metrics, train_in_process
from hardsamples.record_files import BATCH_ACCURACY_COLUMNS, METRIC_COLUMNS, METRIC_WANDB_KEYS, TRACE_COLUMNS


def test_a_finished_run_writes_the_documented_record(tmp_path):
    assert train_in_process(tmp_path, ["delta=0.5", "record.trace=true"]) == "finished"
    header = json.loads((tmp_path / "run.json").read_text())
    for key in ("model", "dataset", "method", "delta", "seed", "fidelity", "num_batches", "k", "update_budget",
                "versions", "git_commit", "config", "run_id", "started_at", "finished_at", "precision",
                "matmul_allow_tf32", "cudnn_allow_tf32"):
        assert key in header, key
    assert (header["status"], header["error"], header["method"]) == ("finished", None, "hard_batches")
    assert header["config"]["optimizer"]["lr"] == 0.005 and header["fidelity"] == "paper_code"
    metrics = read_metrics(tmp_path)
    assert list(metrics.columns) == METRIC_COLUMNS
    # train_seconds: each interval's updates alone, a part of the run's wall clock (which adds evaluation).
    assert (metrics["train_seconds"] > 0).all()
    assert metrics["train_seconds"].sum() < metrics["seconds"].iloc[-1]
    assert list(pd.read_csv(tmp_path / "trace.csv").columns) == TRACE_COLUMNS
    batches = pd.read_csv(tmp_path / "batch_accuracy.csv")
    assert list(batches.columns) == BATCH_ACCURACY_COLUMNS
    assert set(batches["split"]) == {"train", "test"} and set(batches["evaluation"]) == {"interval", "final"}
    # paper_code, interval kind: the final model's accuracy on each full batch of 64 (last partial dropped).
    interval = batches.query("evaluation == 'interval'")
    assert (interval["samples"] == 64).all() and len(interval.query("split == 'test'")) == 128 // 64
    # final kind (metrics.py): every sample, the last partial batch of 600 - 9 x 64 = 24 its own batch.
    final_train = batches.query("evaluation == 'final' and split == 'train'")
    assert final_train["samples"].tolist() == [64] * 9 + [24]
    assert not list(tmp_path.glob(".*.tmp*")) and not list(tmp_path.glob(".run.json.*"))


def test_paper_code_metrics_are_means_of_batch_values_and_clean_ones_exact(tmp_path):
    train_in_process(tmp_path / "paper", ["epochs=1"])
    train_in_process(tmp_path / "clean", ["epochs=1", "fidelity=clean"])
    for protocol in ("paper", "clean"):
        final = read_metrics(tmp_path / protocol).iloc[-1]
        batches = pd.read_csv(tmp_path / protocol / "batch_accuracy.csv")
        batches = batches.query("split == 'test' and evaluation == 'interval'")
        if protocol == "paper":  # the mean of per-batch accuracies, full batches only
            assert final["test_top1"] == pytest.approx(batches["top1"].mean())
        else:  # every sample, weighted by batch size
            assert batches["samples"].sum() == 128
            assert final["test_top1"] == pytest.approx((batches["top1"] * batches["samples"]).sum() / 128)


def test_a_train_subset_is_evaluated_each_interval_and_the_whole_set_at_the_end(tmp_path):
    assert train_in_process(tmp_path, ["epochs=1", "fidelity=clean", "eval.train_subset=200"]) == "finished"
    batches = pd.read_csv(tmp_path / "batch_accuracy.csv").query("split == 'train'")
    # clean: every training sample in the final batch accuracies, of both kinds
    assert batches.groupby("evaluation")["samples"].sum().to_dict() == {"final": 600, "interval": 600}
    header = json.loads((tmp_path / "run.json").read_text())
    assert header["config"]["eval"]["train_subset"] == 200


def test_a_nan_loss_ends_the_run_as_diverged_with_a_message(tmp_path):
    assert train_in_process(tmp_path, ["optimizer.lr=1e12", "limits.lr=null"]) == "diverged"
    header = json.loads((tmp_path / "run.json").read_text())
    assert header["status"] == "diverged"
    assert "training loss became" in header["error"] and "lower optimizer.lr" in header["error"]
    assert len(read_metrics(tmp_path)) >= 1


def test_wandb_offline_mirrors_the_run_without_a_server(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))  # not logged in: auto means offline
    monkeypatch.setenv("WANDB_SILENT", "true")
    assert train_in_process(tmp_path, ["epochs=1", "logger.wandb.mode=auto"]) == "finished"
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb")), "an offline W&B run file to sync later"
    run_id = json.loads((tmp_path / "run.json").read_text())["run_id"]
    assert runs[0].name.endswith(run_id)


def test_a_finished_run_deletes_its_checkpoint_unless_asked_to_keep_it(tmp_path):
    assert train_in_process(tmp_path / "gone", ["epochs=1"]) == "finished"
    assert not (tmp_path / "gone" / "checkpoint.pt").exists()
    assert train_in_process(tmp_path / "kept", ["epochs=1", "record.keep_checkpoint=true"]) == "finished"
    assert (tmp_path / "kept" / "checkpoint.pt").exists()
    header = json.loads((tmp_path / "gone" / "run.json").read_text())
    assert header["threads"] == torch.get_num_threads() and header["cpu"]


def test_a_run_resumed_under_another_commit_says_so(tmp_path, caplog):
    run_dir = tmp_path / "run"
    assert train_in_process(run_dir, ["epochs=1", "record.keep_checkpoint=true"]) == "finished"
    header = json.loads((run_dir / "run.json").read_text())
    header.update(status="running", git_commit="0123abc")  # as if killed, under older code
    (run_dir / "run.json").write_text(json.dumps(header))
    with caplog.at_level("WARNING", logger="hardsamples"):
        assert train_in_process(run_dir, ["epochs=1"]) == "finished"
    assert "started by the code at commit 0123abc" in caplog.text


def test_torch_threads_follow_the_slurm_allocation(monkeypatch):
    from hardsamples.runtime import threads_from_allocation

    before = torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "1")
    try:
        torch.set_num_threads(2)
        threads_from_allocation()
        assert torch.get_num_threads() == 1
        monkeypatch.setenv("OMP_NUM_THREADS", "2")  # the user's explicit choice wins
        torch.set_num_threads(2)
        threads_from_allocation()
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_the_record_files_and_the_tables_load_without_torch_or_wandb():
    """`make tables` reads records where torch is not installed: the record's files, the W&B mirror's names and
    analysis/ import neither torch nor wandb."""
    probe = ("import sys, hardsamples.record_files, hardsamples.wandb_mirror, hardsamples.analysis.loading,"
             " hardsamples.analysis.report, hardsamples.tables;"
             " print(sorted(name for name in ('torch', 'wandb') if name in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"


def test_every_metrics_column_has_one_wandb_key():
    assert list(METRIC_WANDB_KEYS) == METRIC_COLUMNS
    assert len(set(METRIC_WANDB_KEYS.values())) == len(METRIC_COLUMNS)
