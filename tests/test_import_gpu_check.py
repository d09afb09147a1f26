"""tools/import_gpu_check.py on a folder shaped as gpu_check.sh leaves it: the bench phases merged into
one CSV (part 5's device-hours summed over phases that measured different models), the runs' records
and the test counts copied, the README table printed; a run without CUDA refused over the repository."""

from __future__ import annotations

import subprocess
import sys
import tarfile

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
    folder = tmp_path / "files_at"
    folder.mkdir()
    with tarfile.open(folder / "results.tar.gz", "w:gz") as tar:
        tar.add(work, arcname=".")
    (folder / "summary.txt").write_text("gpu_check: cuda=1\n")
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
