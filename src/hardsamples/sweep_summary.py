"""The end of a sweep in a few lines: what each job did, and a failing exit status if any run failed.

A Hydra callback (conf/config.yaml, hydra.callbacks). Every sweep job leaves job.json in its run
directory with a fresh attempt id (hardsamples.launch.JobNote); the callback notes the attempt ids
already there when the sweep starts, so at the end the new ones are exactly this sweep's jobs, on
whatever machines the launcher put them. It runs in the process that launched the sweep.

    sweep results/runs/demo: 12 jobs in 2m05s: 9 finished, 1 resumed, 2 skipped, 0 diverged, 0 failed
      failed    test_resnet-digits-hard_batches-d1.5-s0: ConfigError: delta=1.5 is outside (0, 1]: ...
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from hardsamples.launch import SWEEP_ID_ENV, SWEPT_ENV, read_job_notes, swept_keys

OUTCOMES = ("finished", "resumed", "skipped", "diverged", "failed")


class SweepSummary(Callback):
    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.earlier: dict[Path, str] = {}

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        self.started = time.perf_counter()
        # Before any job starts: jobs (in this process, joblib workers, submitit jobs) inherit it, and
        # a sweep over a key outside the run name gives each job a directory of its own.
        os.environ[SWEPT_ENV] = ",".join(swept_keys(config))
        os.environ[SWEEP_ID_ENV] = uuid.uuid4().hex[:12]  # two jobs of this sweep on one run: two notes
        self.earlier = {d: note.get("attempt") for d, note in read_job_notes(config.hydra.sweep.dir).items()}

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        notes = {d: note for d, note in read_job_notes(config.hydra.sweep.dir).items()
                 if note.get("attempt") != self.earlier.get(d)}
        print(summary_text(Path(config.hydra.sweep.dir), notes, time.perf_counter() - self.started), flush=True)
        if any(outcome_of(note) == "failed" for note in notes.values()):
            sys.exit(1)  # SystemExit passes through Hydra's callback and error handlers: the sweep fails


def summary_text(sweep_dir: Path, notes: dict[Path, dict], seconds: float) -> str:
    """notes: each job's note by its path (<run dir>/job.json or <run dir>/job.refused-*.json)."""
    outcomes = {path: outcome_of(note) for path, note in notes.items()}
    minutes, secs = divmod(round(seconds), 60)
    lines = [f"sweep {sweep_dir}: {len(notes)} jobs in {minutes}m{secs:02d}s: "
             + ", ".join(f"{list(outcomes.values()).count(o)} {o}" for o in OUTCOMES)]
    for path, outcome in sorted(outcomes.items()):
        if outcome in ("diverged", "failed"):
            error = notes[path].get("error") or "the job stopped without closing its job.json (killed?)"
            lines.append(f"  {outcome:<9} {path.parent.name}: {error}")
    return "\n".join(lines)


def outcome_of(note: dict) -> str:
    """A job still `running` when its sweep ends was killed without a word: it failed."""
    return note.get("outcome") if note.get("outcome") in OUTCOMES else "failed"
