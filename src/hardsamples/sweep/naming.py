"""The name of a sweep job's run directory: the run name, plus a config hash when the sweep varies a key
the name does not show (the `${sweep_subdir:}` resolver, registered at import)."""

from __future__ import annotations

import hashlib
import json
import os

from omegaconf import OmegaConf

from hardsamples.record_files import NOT_COMPARED, comparable, recorded_config

# The keys a run's name is made of (conf/config.yaml run_name); a sweep over any other key that
# changes what a run computes gives each job a directory of its own: <run_name>-<config hash>.
NAME_KEYS = ("model", "model.name", "dataset", "dataset.name", "method", "method.name", "delta", "seed", "run_name")
SWEPT_ENV = "HARDSAMPLES_SWEPT_KEYS"  # the keys a sweep varies, set by SweepSummary.on_multirun_start


def compared_keys_swept(swept) -> list[str]:
    """The swept keys that change what a run computes but not its name."""
    return sorted(key for key in swept if key and key not in NAME_KEYS and not key.startswith("hydra")
                  and key.split(".")[0] not in NOT_COMPARED)


def config_hash(config: dict) -> str:
    """A short stable hash of the config a run is compared by (record_files.comparable)."""
    return hashlib.sha256(json.dumps(comparable(config), sort_keys=True, default=str).encode()).hexdigest()[:8]


def run_dir_name(config: dict, swept) -> str:
    """A sweep job's directory: the run name, with the config's hash appended when the sweep varies a
    key the name does not show (optimizer.lr, epochs, fidelity, ...), so no two configs share one.
    Sweeps over model, dataset, method, delta and seed keep the plain run names."""
    if not compared_keys_swept(swept):
        return config["run_name"]
    return f"{config['run_name']}-{config_hash(config)}"


def job_swept_keys(root) -> list[str]:
    """The swept keys as a job sees them: in its config (sweep_env_overrides; Hydra resolves the job's
    directory before it applies env_set), else in the environment (a job started some other way)."""
    listed = OmegaConf.select(root, f"hydra.job.env_set.{SWEPT_ENV}", default=None)
    return env_swept_keys() if listed is None else _key_list(listed)


def env_swept_keys() -> list[str]:
    """The swept keys the sweep's launching process put in the environment."""
    return _key_list(os.environ.get(SWEPT_ENV, ""))


def _key_list(listed) -> list[str]:
    return [key for key in str(listed).split(",") if key]


def _sweep_subdir(*, _root_) -> str:
    """Resolver `${sweep_subdir:}` (hydra.sweep.subdir): the run name, plus a config hash when the
    sweep varies a key the name does not show."""
    swept = job_swept_keys(_root_)
    if not compared_keys_swept(swept):
        return str(_root_.run_name)
    return run_dir_name(recorded_config(_root_), swept)


OmegaConf.register_new_resolver("sweep_subdir", _sweep_subdir, replace=True)
