"""One run alone on a device, then k at once through the joblib launcher's jobs_per_gpu: what sharing
one GPU (or this CPU) buys. Prints a table and writes <out>/share.csv.

    python tools/share_device.py --jobs 4 -- dataset=fashion_mnist model=resnet18 image_size=32 \\
        batch_size=512 epochs=2 fidelity=paper_code
    python tools/share_device.py --jobs 2 -- model.name=test_resnet image_size=8 epochs=1   # a CPU try

Each side is one sweep (`-m launcher=joblib hydra.launcher.jobs_per_gpu=<n> seed=0..n-1`, checkpoints
off) of the run the overrides after `--` describe; its wall clock includes the processes' start-up,
as a slice of a study would. Per run, metrics.csv gives the time of its updates alone (train_seconds)
and of the whole run (seconds). The gain is runs per hour with k at once over runs per hour alone.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from statistics import median

import pandas as pd


def sweep(n: int, out: Path, overrides: list[str]) -> dict:
    """n runs (seeds 0..n-1) at once, n jobs per GPU; their wall clock and per-run figures."""
    sweep_dir = out / f"n{n}"
    seeds = ",".join(str(seed) for seed in range(n))
    command = [sys.executable, "-m", "hardsamples.train", "-m", *overrides, f"seed={seeds}", "launcher=joblib",
               f"hydra.launcher.jobs_per_gpu={n}", "record.checkpoint=false", f"sweep_name=share_n{n}",
               f"hydra.sweep.dir={sweep_dir}", "logger.wandb.mode=disabled"]
    started = time.perf_counter()
    with open(out / f"n{n}.log", "w") as log:
        code = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT).returncode
    wall = time.perf_counter() - started
    if code != 0:
        raise SystemExit(f"error: the sweep of {n} run(s) failed (exit {code}): see {out / f'n{n}.log'}")
    runs = [pd.read_csv(path) for path in sorted(sweep_dir.glob("*/metrics.csv"))]
    if len(runs) != n:
        raise SystemExit(f"error: {len(runs)} of {n} runs left a metrics.csv under {sweep_dir}")
    return {"processes": n, "wall_s": round(wall, 2), "runs_per_hour": round(3600 * n / wall, 1),
            "update_ms": round(1e3 * median(m.train_seconds.sum() / m.updates.iloc[-1] for m in runs), 3),
            "run_s": round(median(m.seconds.iloc[-1] for m in runs), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=4, help="runs sharing the device at once (k)")
    parser.add_argument("--out", type=Path, default=Path("results/runs/share_device"), help="records and share.csv")
    parser.add_argument("overrides", nargs="*", help="the run's overrides (after --); no experiment= grid")
    args = parser.parse_args()
    if args.jobs < 2:
        parser.error("--jobs must be at least 2: one run alone is the baseline")
    if any(o.split("=", 1)[0].lstrip("+~") in ("experiment", "seed") for o in args.overrides):
        parser.error("name one run's settings: no experiment= (a grid) and no seed= (the tool sets the seeds)")
    args.out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    rows = [sweep(n, args.out, args.overrides) for n in (1, args.jobs)]
    table = pd.DataFrame(rows)
    table["gain"] = (table.runs_per_hour / table.runs_per_hour.iloc[0]).round(2)
    print(table.to_string(index=False))
    table.to_csv(args.out / "share.csv", index=False)
    print(f"wrote {args.out / 'share.csv'}: {args.jobs} runs at once give {table.gain.iloc[-1]}x the runs per hour")


if __name__ == "__main__":
    main()
