"""tools/import_gpu_check.py on a folder shaped as gpu_check.sh leaves it: the bench phases merged into
one CSV (part 5's device-hours summed over phases that measured different models), the runs' records
and the test counts copied, the README table printed; a run without CUDA refused over the repository."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pandas as pd
import pytest

from conftest import ROOT
from hardsamples.bench import speed

TOOL = ROOT / "tools" / "import_gpu_check.py"
JUNIT = """<testsuites><testsuite name="pytest" tests="2" failures="1" errors="0" skipped="0">
<testcase classname="tests.test_cuda" name="test_ok"/>
<testcase classname="tests.test_cuda" name="test_broken"><failure message="x"/></testcase>
</testsuite></testsuites>"""


@pytest.fixture(scope="module")
def bench_table(tmp_path_factory):
    """One real tiny bench table (parts 1-5, test_resnet, this CPU)."""
    out = tmp_path_factory.mktemp("bench")
    tiny = ["profile=cpu", "device=cpu", "models=[test_resnet]", "paper_model=test_resnet", "image_size=16",
            "batch_size=4", "num_batches=5", "repeats=1", "eval_batch_size=8", "authors_native_sizes=[8]",
            "projection.image_size=32", "projection.batch_size=8", f"out_dir={out}", "threads=1"]
    return speed.run(speed.settings(tiny))


def gpu_check_folder(tmp_path, table: pd.DataFrame, cuda: bool):
    """results.tar.gz and summary.txt as gpu_check.sh writes them: phase A measured test_resnet, phase B
    a second model (the same rows renamed), the authors' phase part 3; two run records; junit XML."""
    work = tmp_path / "work"
    second = table.assign(model=table["model"].replace("test_resnet", "second_model"))
    for tag, phase in (("A", table), ("B", second), ("authors", table)):
        (work / f"bench_{tag}").mkdir(parents=True)
        phase.to_csv(work / f"bench_{tag}" / "gpu.csv", index=False)
    (work / "versions.txt").write_text(f"cuda_available {int(cuda)}\npython 3.12.3 | torch 2.11.0\n"
                                       "gpu NVIDIA H200 | SMs 132\n")
    (work / "tests_cuda.xml").write_text(JUNIT)
    for run in ("real/d1.0", "share/s32_n4_0"):
        (work / run).mkdir(parents=True)
        (work / run / "run.json").write_text('{"status": "finished"}\n')
        (work / run / "metrics.csv").write_text("interval,updates\n1,117\n")
        (work / run / ".lock").write_text("")
    (work / "share" / "wall.txt").write_text("size 32 processes 4 wall_ms 1000\n")
    return brought_back(tmp_path, work, "results.tar.gz", "summary.txt")


def brought_back(tmp_path, work, archive: str, summary: str):
    """The folder the device tool's reply names: `work` packed as the script packs it, and its summary."""
    folder = tmp_path / "files_at"
    folder.mkdir()
    with tarfile.open(folder / archive, "w:gz") as tar:
        tar.add(work, arcname=".")
    (folder / summary).write_text("cuda=1\n")
    return folder


def run_tool(*args):
    return subprocess.run([sys.executable, str(TOOL), *map(str, args)], capture_output=True, text=True, cwd=ROOT)


def test_the_phases_become_one_table_records_and_counts(tmp_path, bench_table):
    result = run_tool(gpu_check_folder(tmp_path, bench_table, cuda=True), "--into", tmp_path / "repo")
    assert result.returncode == 0, result.stderr
    device = speed.slug(bench_table["device"].iloc[0])
    merged = pd.read_csv(tmp_path / "repo" / "results" / "bench" / f"{device}.csv")
    assert list(merged.columns) == speed.COLUMNS
    assert {"test_resnet", "second_model"} <= set(merged["model"])
    assert merged[merged["part"] == 3].equals(merged[merged["part"] == 3].drop_duplicates())
    assert len(merged[merged["part"] == 3]) == (bench_table["part"] == 3).sum()  # the authors' phase's, once
    one_phase = bench_table[bench_table["model"] == "all"].set_index("metric")["value"]
    both = merged[merged["model"] == "all"].set_index("metric")["value"]
    assert both.to_dict() == pytest.approx((2 * one_phase).to_dict(), rel=1e-5)  # A's models + B's
    gpu = tmp_path / "repo" / "results" / "gpu" / device
    assert "FAILED tests.test_cuda::test_broken" in (gpu / "tests.txt").read_text()
    assert (gpu / "real" / "d1.0" / "metrics.csv").is_file() and not (gpu / "real" / "d1.0" / ".lock").exists()
    assert (gpu / "share" / "wall.txt").read_text().startswith("size 32 processes 4")
    table_lines = [line for line in result.stdout.splitlines() if line.startswith("| ")]
    assert len(table_lines) == 1 + 2  # the heading, then test_resnet and second_model under clean
    assert "| second_model | clean |" in result.stdout


def test_a_run_without_cuda_is_not_imported_over_the_repository(tmp_path, bench_table):
    before = sorted((ROOT / "results").rglob("*"))
    result = run_tool(gpu_check_folder(tmp_path, bench_table, cuda=False))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "without CUDA" in result.stderr
    assert sorted((ROOT / "results").rglob("*")) == before


# --- the loan's second command: tools/gpu_followup.sh and its import ------------------------------------

def followup_folder(tmp_path, cuda: bool, phases=("cuda", "share", "slice")):
    """followup.tar.gz as gpu_followup.sh packs it: versions and, for the phases that ran, `pytest -m cuda`'s
    junit, share.csv and the slice's runs: two finished (one with a checkpoint and a lock, which a study
    never commits), one stopped at the budget."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "versions.txt").write_text(f"cuda_available {int(cuda)}\npython 3.12.3 | torch 2.11.0\ngpu NVIDIA H200\n")
    if "cuda" in phases:
        (work / "cuda_marked.xml").write_text(JUNIT)
    if "share" in phases:
        (work / "share").mkdir()
        (work / "share" / "share.csv").write_text("processes,wall_s,runs_per_hour,update_ms,run_s,gain\n"
                                                  "1,40.0,90.0,5.0,30.0,1.0\n8,70.0,411.4,9.0,60.0,4.57\n")
    runs = {"resnet18-fashion_mnist-hard_batches-d1.0-s0": "finished", "resnet18-fashion_mnist-hard_batches-d0.2-s0":
            "finished", "resnet18-fashion_mnist-hard_batches-d0.5-s0": "interrupted"}
    for run, status in runs.items() if "slice" in phases else ():
        (work / "slice" / run).mkdir(parents=True)
        for name in ("metrics.csv", "trace.csv", "batch_accuracy.csv", "checkpoint.pt", ".lock"):
            (work / "slice" / run / name).write_text(f"{run} {name}\n")
        (work / "slice" / run / "run.json").write_text(json.dumps({"status": status}))
    return brought_back(tmp_path, work, "followup.tar.gz", "followup_summary.txt")


def test_a_followup_lands_its_tests_sharing_and_new_study_runs(tmp_path):
    repo = tmp_path / "repo"
    runs = repo / "results" / "fashion_mnist_gpu" / "runs"
    (runs / "resnet18-fashion_mnist-hard_batches-d1.0-s0").mkdir(parents=True)
    (runs / "resnet18-fashion_mnist-hard_batches-d1.0-s0" / "run.json").write_text("committed before\n")
    result = run_tool(followup_folder(tmp_path, cuda=True), "--into", repo)
    assert result.returncode == 0, result.stderr
    gpu = repo / "results" / "gpu" / "nvidia-h200"
    assert "FAILED tests.test_cuda::test_broken" in (gpu / "tests_followup.txt").read_text()
    assert pd.read_csv(gpu / "share_followup.csv")["gain"].tolist() == [1.0, 4.57]
    added = runs / "resnet18-fashion_mnist-hard_batches-d0.2-s0"
    assert sorted(p.name for p in added.iterdir()) == ["batch_accuracy.csv", "metrics.csv", "run.json", "trace.csv"]
    assert (runs / "resnet18-fashion_mnist-hard_batches-d1.0-s0" / "run.json").read_text() == "committed before\n"
    assert not (runs / "resnet18-fashion_mnist-hard_batches-d0.5-s0").exists()  # stopped: resumes on a later loan
    assert "1 run(s) added" in result.stdout and "left as they are: resnet18-fashion_mnist-hard_batches-d1.0-s0" in result.stdout


def test_a_followup_of_the_sharing_phase_alone_is_a_followup_still(tmp_path):
    """FOLLOWUP_PHASES=share brings back no junit and no slice: the archive's name, not its contents,
    says which script packed it."""
    result = run_tool(followup_folder(tmp_path, cuda=True, phases=("share",)), "--into", tmp_path / "repo")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "repo" / "results" / "gpu" / "nvidia-h200" / "share_followup.csv").is_file()


def test_a_followup_without_cuda_is_not_imported_over_the_repository(tmp_path):
    before = sorted((ROOT / "results").rglob("*"))
    result = run_tool(followup_folder(tmp_path, cuda=False))
    assert result.returncode == 2 and "without CUDA" in result.stderr
    assert sorted((ROOT / "results").rglob("*")) == before


def write_fashion_mnist(raw, train: int, test: int) -> None:
    """Fashion-MNIST's four idx files (uncompressed, torchvision's raw layout), random images, balanced labels."""
    import numpy as np

    from test_fashion_mnist import idx_bytes
    rng = np.random.default_rng(0)
    raw.mkdir(parents=True)
    for prefix, n in (("train", train), ("t10k", test)):
        for kind, array in (("images-idx3", rng.integers(0, 256, (n, 28, 28))), ("labels-idx1", np.arange(n) % 10)):
            (raw / f"{prefix}-{kind}-ubyte").write_bytes(idx_bytes(array))


@pytest.mark.slow
def test_the_followup_scripts_dry_run_slice_comes_back_as_study_records(tmp_path):
    """gpu_followup.sh without CUDA: the study's grid narrowed to seed 0 at delta 1.0 and 0.2, tiny, on a
    small Fashion-MNIST in the real format; its finished runs packed and imported, nothing left in /tmp."""
    import os
    import shutil
    write_fashion_mnist(tmp_path / "data" / "FashionMNIST" / "raw", train=1200, test=200)
    env = {**os.environ, "OUT": str(tmp_path / "out"), "FOLLOWUP_PHASES": "slice", "FOLLOWUP_BUDGET": "300",
           "DATA_DIR": str(tmp_path / "data"), "OMP_NUM_THREADS": "1",
           "PATH": f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}"}
    temporary = set(Path("/tmp").glob("gpu_followup.*"))
    result = subprocess.run(["bash", str(ROOT / "tools" / "gpu_followup.sh")], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = (tmp_path / "out" / "followup_summary.txt").read_text()
    assert "slice  rc=0" in summary and "slice: 2 finished run(s)" in summary, summary
    assert set(Path("/tmp").glob("gpu_followup.*")) == temporary
    imported = run_tool(tmp_path / "out", "--into", tmp_path / "repo")
    assert imported.returncode == 0, imported.stderr
    runs = sorted((tmp_path / "repo" / "results" / "fashion_mnist_gpu" / "runs").iterdir())
    assert [r.name for r in runs] == ["test_resnet-fashion_mnist-hard_batches-d0.2-s0",
                                      "test_resnet-fashion_mnist-hard_batches-d1.0-s0"]
    for run in runs:
        assert json.loads((run / "run.json").read_text())["status"] == "finished"
        assert (run / "batch_accuracy.csv").is_file() and not (run / "checkpoint.pt").exists()
    shutil.rmtree(tmp_path / "data")


def test_the_followup_spends_no_time_on_a_slice_that_could_not_finish_a_run(tmp_path):
    import os
    env = {**os.environ, "OUT": str(tmp_path / "out"), "FOLLOWUP_PHASES": "slice", "FOLLOWUP_BUDGET": "100",
           "PATH": f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}"}
    result = subprocess.run(["bash", str(ROOT / "tools" / "gpu_followup.sh")], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = (tmp_path / "out" / "followup_summary.txt").read_text()
    assert "SKIP slice:" in summary and "under the 150 s" in summary and "slice: 0 finished run(s)" in summary, summary
