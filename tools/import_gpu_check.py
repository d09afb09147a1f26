"""What one `bash .device/gpu_check.sh` brought back from the GPU machine, made into committed results,
and the README's performance table printed from it.

    python tools/import_gpu_check.py <folder>            # the folder the device tool's reply names
    python tools/import_gpu_check.py <folder> --into /tmp/x   # anywhere else (a CPU dry run's output)

<folder> holds summary.txt and results.tar.gz (the bench's CSVs, the runs' records, junit XML,
versions.txt, nvidia-smi samples). Written under --into (default: the repository):
  results/bench/<gpu>.csv   the bench phases' tables in one: parts 1, 2, 4 and 5 of every model,
                            part 3 from the authors' phase, part 5's device-hours summed over the
                            phases' models (each phase projects the grid of the models it measured);
  results/gpu/<gpu>/        versions.txt, summary.txt, tests.txt (each junit file's counts and the
                            failed tests), smi.csv and phases.txt, and the real and sharing runs'
                            records (run.json, metrics.csv, batch_accuracy.csv, train.log).
Then it prints the performance table (markdown) for README.md and results/bench/README.md.

A folder from `bash tools/gpu_followup.sh` (followup.tar.gz, the loan's second command) gives instead:
  results/gpu/<gpu>/tests_followup.txt   `pytest -m cuda`'s counts and failed tests;
  results/gpu/<gpu>/share_followup.csv   tools/share_device.py's one run alone vs eight at once;
  results/fashion_mnist_gpu/runs/<run>/  the slice's runs that are over (finished or diverged), the
                                         files a study commits (a run already there is left as it is,
                                         and named); a run stopped at the budget resumes on a later loan.
A folder from a run without CUDA (a dry run) is imported only with --into, never over the
repository's results.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tarfile
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pandas as pd

from hardsamples.bench.speed import COLUMNS, slug
from hardsamples.record_files import OVER, read_run_json

ROOT = Path(__file__).resolve().parents[1]
BENCH_PHASES = ("A", "B")  # gpu_check.sh's bench phases over the five models; "authors" adds part 3
RECORD_FILES = ("run.json", "metrics.csv", "batch_accuracy.csv", "train.log")
# experiment=gpu_resnet18_fmnist*'s hydra.sweep.dir, and the record files .gitignore lets a study commit.
STUDY_RUNS = Path("results") / "fashion_mnist_gpu" / "runs"
STUDY_FILES = ("run.json", "metrics.csv", "trace.csv", "round_losses.csv", "batch_accuracy.csv")
# The README table's columns: (heading, a regular expression the bench's metric begins with, format).
TABLE = [("s/update d1.0", r"seconds per update in the loop, delta 1\.0", "{:.4f}"),
         ("s/update d0.2", r"seconds per update in the loop, delta 0\.2", "{:.4f}"),
         ("d0.2 / d1.0 (<= 1.02)", r"per-update time, delta 0\.2 / delta 1\.0", "{:.3f}"),
         ("loop / bare (<= 1.05)", r"update in the loop / bare step", "{:.3f}"),
         ("img/s", r"training images per second", "{:,.0f}"),
         ("MFU, datasheet peak", r"model FLOP utilisation, \w+ peak", "{:.1f}%"),  # bf16 (clean) or TF32 (paper_code)
         ("MFU, measured GEMM", r"model FLOP utilisation, measured", "{:.1f}%"),
         ("/ memory floor (<= 1.3)", r"update in the loop / its memory-bandwidth floor", "{:.2f}"),
         ("peak GiB", r"peak memory allocated", "{:.1f}"),
         ("eval / train, paper_code", r"evaluation / training time per interval, paper_code", "{:.3f}"),
         ("eval / train, clean", r"evaluation / training time per interval, clean", "{:.3f}"),
         ("checkpoint / train", r"checkpoint / training time per interval", "{:.4f}")]


def refuse(message: str) -> SystemExit:
    """One line on stderr; the SystemExit (code 2) to raise."""
    print(f"error: {message}", file=sys.stderr)
    return SystemExit(2)


def unpack(folder: Path, into: Path) -> Path:
    """The archive in `folder` (gpu_check.sh's results.tar.gz or gpu_followup.sh's followup.tar.gz)
    unpacked into `into`; its path."""
    archive = next((folder / name for name in ("results.tar.gz", "followup.tar.gz") if (folder / name).is_file()), None)
    if archive is None:
        raise refuse(f"neither results.tar.gz nor followup.tar.gz is in {folder}: pass the folder the device"
                     " tool's reply names (files_at)")
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return archive


def versions(work: Path) -> dict[str, str]:
    """versions.txt's lines as key -> rest ('gpu' -> 'NVIDIA H200 | SMs 132 | ...')."""
    lines = (work / "versions.txt").read_text().splitlines()
    return {line.split(" ", 1)[0]: line.split(" ", 1)[1] for line in lines if " " in line}


def merged_bench(work: Path) -> pd.DataFrame:
    """The bench phases' tables as one: each model's rows from the first phase that measured it, part 3
    from the authors' phase, part 5's device-hours summed over the phases (their models are disjoint;
    where they are not, the first phase's projection alone)."""
    tables = {tag: pd.read_csv(csv) for tag in (*BENCH_PHASES, "authors")
              for csv in sorted((work / f"bench_{tag}").glob("*.csv"))}
    if not tables:
        raise refuse(f"no bench CSV in {work}: the bench phases wrote nothing (see log.txt)")
    per_model = pd.concat([t[(t["part"] != 3) & (t["model"] != "all")] for t in tables.values()])
    per_model = per_model.drop_duplicates(["runtime", "part", "model", "metric"], keep="first")
    part3_source = tables.get("authors", next(iter(tables.values())))
    part3 = part3_source[part3_source["part"] == 3]
    phases = [tag for tag in BENCH_PHASES if tag in tables]
    measured = [set(tables[tag]["model"]) - {"all", "authors' loader"} for tag in phases]
    if sum(map(len, measured)) != len(set().union(*measured)):  # a model in two phases (a dry run): no sum
        phases = phases[:1]
    hours = pd.concat([tables[tag][tables[tag]["model"] == "all"] for tag in phases])
    summed = []
    for (runtime, metric), rows in hours.groupby(["runtime", "metric"], sort=False):
        row = rows.iloc[0].copy()
        row["value"] = rows["value"].sum()
        row["detail"] = f"the sum of {len(rows)} bench phases' projections: " + " | ".join(rows["detail"])
        summed.append(row)
    merged = pd.concat([per_model, part3, pd.DataFrame(summed, columns=per_model.columns)])
    return merged[COLUMNS].sort_values("part", kind="stable").reset_index(drop=True)


def test_counts(work: Path) -> str:
    """Each junit file's counts and its failed tests, one line each."""
    lines = []
    for xml in sorted(work.glob("*.xml")):
        root = ET.parse(xml).getroot()
        suite = root if root.tag == "testsuite" else root.find("testsuite")
        lines.append(f"{xml.name}: {suite.get('tests')} tests, {suite.get('failures')} failures, "
                     f"{suite.get('errors')} errors, {suite.get('skipped')} skipped")
        for case in suite.iter("testcase"):
            if case.find("failure") is not None or case.find("error") is not None:
                lines.append(f"  FAILED {case.get('classname')}::{case.get('name')}")
    return "\n".join(lines) + "\n"


def copy_records(work: Path, target: Path) -> list[str]:
    """The real and sharing runs' record files, and the phases' wall-clock notes."""
    copied = []
    for run_json in sorted(work.glob("*/*/run.json")):
        run = run_json.parent
        destination = target / run.relative_to(work)
        destination.mkdir(parents=True, exist_ok=True)
        for name in RECORD_FILES:
            if (run / name).is_file():
                shutil.copy2(run / name, destination / name)
        copied.append(str(run.relative_to(work)))
    for note in sorted(work.glob("*/wall.txt")):
        (target / note.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy2(note, target / note.relative_to(work))
    return copied


def import_followup(folder: Path, work: Path, into: Path) -> str:
    """gpu_followup.sh's output into results/gpu/<gpu>/ and the study's runs; what was written, in lines."""
    device = versions(work).get("gpu", "cpu").split(" |")[0]
    target = into / "results" / "gpu" / slug(device)
    target.mkdir(parents=True, exist_ok=True)
    counts = test_counts(work)
    (target / "tests_followup.txt").write_text(counts)
    lines = [f"{target}/tests_followup.txt:", counts.rstrip()]
    if (work / "share" / "share.csv").is_file():
        shutil.copy2(work / "share" / "share.csv", target / "share_followup.csv")
        lines += [f"{target}/share_followup.csv:", pd.read_csv(target / "share_followup.csv").to_string(index=False)]
    if (folder / "followup_summary.txt").is_file():
        shutil.copy2(folder / "followup_summary.txt", target / "followup_summary.txt")
    added, kept = [], []
    for run_json in sorted((work / "slice").glob("*/run.json")):
        if read_run_json(run_json)["status"] not in OVER:  # stopped at the budget: it resumes on a later loan
            continue
        destination = into / STUDY_RUNS / run_json.parent.name
        if (destination / "run.json").exists():
            kept.append(destination.name)
            continue
        destination.mkdir(parents=True)
        for name in STUDY_FILES:
            if (run_json.parent / name).is_file():
                shutil.copy2(run_json.parent / name, destination / name)
        added.append(destination.name)
    lines.append(f"{into / STUDY_RUNS}: {len(added)} run(s) added" + "".join(f"\n  {name}" for name in added))
    if kept:
        lines.append(f"  already there, left as they are: {', '.join(kept)}")
    return "\n".join(lines)


def performance_table(bench: pd.DataFrame) -> str:
    """Markdown: a row per model and runtime, the bench's figures in TABLE's columns."""
    rows = bench[(bench["part"].isin([1, 2, 4, 5])) & (bench["model"] != "all")]
    columns = [(heading, pattern, fmt) for heading, pattern, fmt in TABLE if rows["metric"].str.match(pattern).any()]
    lines = ["| model | runtime | " + " | ".join(heading for heading, _, _ in columns) + " |",
             "|---|---|" + "---|" * len(columns)]
    for (model, runtime), group in rows.groupby(["model", "runtime"], sort=False):
        cells = []
        for _, pattern, fmt in columns:
            found = group[group["metric"].str.match(pattern)]
            cells.append(fmt.format(found["value"].iloc[0]) if len(found) else "")
        lines.append(f"| {model} | {runtime} | " + " | ".join(cells) + " |")
    hours = bench[bench["model"] == "all"]
    lines += ["", *(f"- {r.runtime}: {r.metric}: {r.value:.1f} h" for r in hours.itertuples())]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="the folder gpu_check.sh's output was brought back to")
    parser.add_argument("--into", type=Path, default=None, help="where results/ is written (default: the repository)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        archive = unpack(args.folder, work)
        found = versions(work)
        if found.get("cuda_available", "0").strip() != "1" and args.into is None:
            raise refuse(f"{args.folder} comes from a run without CUDA (a dry run): import it with --into <dir>,"
                               " never over the repository's results")
        into = args.into or ROOT
        if archive.name == "followup.tar.gz":
            print(import_followup(args.folder, work, into))
            return 0
        bench = merged_bench(work)
        device = str(bench["device"].iloc[0])
        bench_csv = into / "results" / "bench" / f"{slug(device)}.csv"
        bench_csv.parent.mkdir(parents=True, exist_ok=True)
        bench.to_csv(bench_csv, index=False, float_format="%.6g")
        target = into / "results" / "gpu" / slug(device)
        target.mkdir(parents=True, exist_ok=True)
        for name in ("versions.txt", "smi.csv", "phases.txt", "nvidia-smi.txt"):
            if (work / name).is_file():
                shutil.copy2(work / name, target / name)
        if (args.folder / "summary.txt").is_file():
            shutil.copy2(args.folder / "summary.txt", target / "summary.txt")
        (target / "tests.txt").write_text(test_counts(work))
        runs = copy_records(work, target)
    print(f"wrote {bench_csv} ({len(bench)} rows) and {target}: {len(runs)} run records ({', '.join(runs)})")
    print(f"versions: {found.get('python', '?')}; gpu: {found.get('gpu', 'none')}\n")
    print(performance_table(bench))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
