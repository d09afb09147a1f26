"""Weights & Biases mirrors the run record; it never decides whether training goes on.

One W&B run per job, its id the record's run_id, so a resumed job continues the same W&B run. What a
researcher finds there:

  group     the cell whose seeds are to be averaged (cells.py), within its sweep:
            <sweep>/<model>/<dataset>/<method>/d<delta>/<fidelity>/E<epochs>_B<batch>_<size>px, plus
            key=value for each key the sweep varies outside these, so W&B's grouped view averages
            seeds and nothing else, as the tables and the sweep's summary do
  name      the run's name, with the recorded method beside it when the name does not show it (a
            hard_batches run at delta = 1 is Algorithm 1 and is recorded as standard)
  job_type  the recorded method;  tags: sweep=, model=, dataset=, method=, delta=, seed=, fidelity=
  config    the resolved Hydra config, and the run's identity under `identity`
  history   each metrics.csv column under its W&B key (record_files.METRICS: train/..., test/..., time/...)
            against `interval`, which is also W&B's step
  summary   the best loss (min) and top-1 (max) beside the last; the record's method, sizes, status

W&B's own environment applies wherever logger.wandb leaves a value null: WANDB_PROJECT,
WANDB_ENTITY, WANDB_RUN_GROUP, WANDB_NAME, WANDB_JOB_TYPE; WANDB_TAGS are added to the run's tags;
WANDB_MODE / WANDB_DISABLED, WANDB_SILENT / WANDB_QUIET, WANDB_DIR and WANDB_INIT_TIMEOUT are
followed; and credentials are found by W&B's own lookup. The console stays quiet: W&B prints nothing
among the run's log lines unless asked (logger.wandb.silent=false, or WANDB_SILENT/WANDB_QUIET set),
and a W&B that cannot start is one warning.

This module imports neither torch nor wandb at load time.
"""

from __future__ import annotations

import logging
import netrc
import os
from pathlib import Path
from urllib.parse import urlparse

from omegaconf import OmegaConf

from hardsamples import cells
from hardsamples.record_files import METRIC_WANDB_KEYS, WANDB_SUMMARY_FIELDS

log = logging.getLogger(__name__)

STEP_METRIC = METRIC_WANDB_KEYS["interval"]
# The summary of a key: the best value beside the last one (W&B's default keeps only the last).
BEST_SUMMARIES = {METRIC_WANDB_KEYS[column]: summary for column, summary in (
    ("train_loss", "min,last"), ("seen_train_loss", "min,last"), ("test_loss", "min,last"),
    ("train_top1", "max,last"), ("test_top1", "max,last"))}
# The run.json fields that say what a run is: its W&B tags, and `identity` in its W&B config.
MODES = ("auto", "online", "offline", "disabled")  # logger.wandb.mode
TAG_FIELDS = ("sweep", "model", "dataset", "method", "delta", "seed", "fidelity")
DEFAULT_PROJECT = "hard-samples"  # where runs go when neither logger.wandb.project nor WANDB_PROJECT says
# logger.wandb key -> the W&B environment variable that supplies it when the key is null.
ENV_VARS = {"project": "WANDB_PROJECT", "entity": "WANDB_ENTITY", "group": "WANDB_RUN_GROUP",
            "name": "WANDB_NAME", "job_type": "WANDB_JOB_TYPE"}
MAX_TAG = 64  # W&B refuses to start a run with a longer tag

# WANDB_MODE values as W&B reads them (run and dryrun are its older names).
ENV_MODES = {"online": "online", "run": "online", "shared": "online", "offline": "offline", "dryrun": "offline",
             "disabled": "disabled"}
INIT_TIMEOUT_S = 10.0  # W&B's own default is 90 s: a W&B that cannot start would hold every run that long


# --- where the run goes, and whether W&B runs at all ----------------------------------------------

def logged_in() -> bool:
    """Whether W&B has credentials for its server, by W&B's own lookup: WANDB_API_KEY,
    WANDB_IDENTITY_TOKEN_FILE, the .netrc file ($NETRC or ~/.netrc) and the api_key of its settings
    files, for the host of WANDB_BASE_URL or the settings.

    W&B's public wandb.login(prompt=False, verify=False) makes the same lookup but is no mere
    question: unless W&B is silent it asks the server who is logged in (a network call no timeout of
    ours bounds), it rewrites W&B's system settings file, and it answers False while any run is open.
    So this asks wandb.sdk.lib.wbauth.authenticate_session (named in that package's __all__, not in
    W&B's documented API) with prompt=False, update_session=False, and falls back to reading the
    environment and .netrc itself when this W&B version lacks it."""
    try:
        from wandb.errors import AuthenticationError
        from wandb.sdk import wandb_setup
        from wandb.sdk.lib import wbauth
    except ImportError:
        return plain_credentials_lookup()
    try:
        settings = wandb_setup.singleton().settings
        host = wbauth.HostUrl(settings.base_url, app_url=settings.app_url)
        found = wbauth.authenticate_session(host=host, source="hardsamples", prompt=False, update_session=False)
    except AuthenticationError as err:  # credentials W&B would refuse (a malformed key, two kinds set)
        log.warning("W&B credentials are unusable (%s): logging offline", err)
        return False
    except Exception:  # another W&B version: the lookup as W&B documents it
        return plain_credentials_lookup()
    return found is not None


def plain_credentials_lookup() -> bool:
    """An API key or identity token file in the environment, or a .netrc entry for the W&B host."""
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    path = os.environ.get("NETRC") or os.path.expanduser("~/.netrc")
    try:
        return netrc.netrc(path).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def environment_mode() -> str | None:
    """What W&B's environment asks for: WANDB_MODE, or WANDB_DISABLED=true."""
    if os.environ.get("WANDB_DISABLED", "").strip().lower() in ("true", "1", "yes"):
        return "disabled"
    return ENV_MODES.get(os.environ.get("WANDB_MODE", "").strip().lower())


def resolve_mode(mode: str) -> str:
    """logger.wandb.mode as W&B will run: auto follows WANDB_MODE when it is set, else online when W&B
    finds credentials, offline otherwise. An explicit mode is kept, except that WANDB_MODE=disabled or
    offline in the environment is never overridden by a wider one (a machine without network, a CI)."""
    env = environment_mode()
    if mode == "auto":
        return env or ("online" if logged_in() else "offline")
    order = ("disabled", "offline", "online")
    if env is not None and order.index(env) < order.index(mode):
        return env
    return mode


def init_timeout() -> float:
    """Seconds W&B may take to start: WANDB_INIT_TIMEOUT when set, else INIT_TIMEOUT_S."""
    try:
        return float(os.environ["WANDB_INIT_TIMEOUT"])
    except (KeyError, ValueError):
        return INIT_TIMEOUT_S


# --- what the W&B run is called and holds (pure: the tests' fake W&B API uses them too) ------------

def swept_keys() -> list[str]:
    """The keys this run's sweep varies: the sweep's launching process lists them (sweep.naming.SWEPT_ENV)."""
    from hardsamples.sweep.naming import env_swept_keys  # torch: only where a run trains

    return env_swept_keys()


def cell_group(header: dict) -> str:
    """The seeds of one cell (cells.py), within the run's sweep: the cell's fields and the settings the
    sweep varies, so that runs differing in one are never averaged together."""
    return cells.group(header["sweep"], cells.cell_of(header, cells.setting_keys(swept_keys())))


def display_name(header: dict, run_dir) -> str:
    """The run directory's name (the run name, with a config hash in a sweep that varies a key the
    name lacks), followed by the recorded method when the name does not show it."""
    directory = Path(run_dir).name
    base = directory if directory.startswith(str(header["run_name"])) else str(header["run_name"])
    method = str(header["method"])
    return base if method in base else f"{base} ({method})"


def run_tags(header: dict, extra=None) -> list[str]:
    """key=value for each identity field, then logger.wandb.tags, then WANDB_TAGS (which W&B would
    drop once tags are passed), each cut to W&B's 64 characters."""
    tags = [f"{key}={header[key]}" for key in TAG_FIELDS] + [str(tag) for tag in extra or []]
    tags += os.environ.get("WANDB_TAGS", "").split(",")
    return list(dict.fromkeys(tag.strip()[:MAX_TAG] for tag in tags if tag.strip()))


def wandb_config(header: dict) -> dict:
    """The W&B run's config: the resolved Hydra config, with the identity at the top (the config's own `method` is the
    method config, which at delta = 1 is not the method recorded)."""
    return {**header["config"], "identity": {key: header[key] for key in TAG_FIELDS}}


def summary_fields(header: dict) -> dict:
    """What the W&B summary keeps of run.json, so `make tables SOURCE=wandb` reads the record's identity."""
    return {key: header[key] for key in WANDB_SUMMARY_FIELDS if key in header}


def logged_row(row: dict) -> dict:
    """A metrics.csv row as logged: W&B keys, empty values left out (a diverged interval has no evaluation)."""
    return {METRIC_WANDB_KEYS.get(column, column): value for column, value in row.items() if value is not None}


def setting(wandb_cfg, key: str, default=None):
    """logger.wandb.<key>; default where it is null or absent."""
    config = wandb_cfg if OmegaConf.is_config(wandb_cfg) else OmegaConf.create(dict(wandb_cfg))
    value = OmegaConf.select(config, key, default=None)
    return default if value is None else value


def configured(wandb_cfg, key: str, ours):
    """logger.wandb.<key> where the user set it; else None when W&B's environment variable sets it (W&B
    then reads it itself); else ours."""
    value = setting(wandb_cfg, key)
    if value is not None:
        return value
    return None if os.environ.get(ENV_VARS[key]) else ours


def init_arguments(wandb_cfg, header: dict, run_dir) -> dict:
    """wandb.init's arguments, less mode and settings."""
    return {
        "project": configured(wandb_cfg, "project", DEFAULT_PROJECT),
        "entity": configured(wandb_cfg, "entity", None),
        "group": configured(wandb_cfg, "group", cell_group(header)),
        "name": configured(wandb_cfg, "name", display_name(header, run_dir)),
        "job_type": configured(wandb_cfg, "job_type", header["method"]),
        "tags": run_tags(header, setting(wandb_cfg, "tags")),
        "config": wandb_config(header),
        "id": header["run_id"],
        "resume": "allow",
        "dir": None if os.environ.get("WANDB_DIR") else str(run_dir),  # None: W&B follows WANDB_DIR
        "reinit": "create_new",  # a sweep's jobs in one process (basic, joblib) are one W&B run each
    }


def settings_arguments(wandb_cfg) -> dict:
    """wandb.Settings' arguments: the bounded start-up wait, and silent unless asked otherwise."""
    arguments = {"init_timeout": init_timeout()}
    silent = setting(wandb_cfg, "silent")
    if silent is None and not (os.environ.get("WANDB_SILENT") or os.environ.get("WANDB_QUIET")):
        silent = True  # no W&B banners among the run's log lines
    if silent is not None:
        arguments["silent"] = bool(silent)
    return arguments


def define_metrics(run) -> None:
    """Every key against `interval`; losses keep their minimum and top-1s their maximum in the summary."""
    run.define_metric(STEP_METRIC)
    run.define_metric("*", step_metric=STEP_METRIC)
    for key, summary in BEST_SUMMARIES.items():
        run.define_metric(key, step_metric=STEP_METRIC, summary=summary)


# --- the mirror ----------------------------------------------------------------------------------

class WandbMirror:
    """Started by train.run_held; every W&B call is guarded, so W&B can only ever warn."""

    def __init__(self, wandb_cfg, header: dict, run_dir):
        self.run = None
        self.next_step = 0  # intervals below it are in W&B already (a resumed online run)
        self.mode = resolve_mode(setting(wandb_cfg, "mode", "auto"))
        if self.mode == "disabled":
            return
        try:
            import wandb

            self.run = wandb.init(mode=self.mode, settings=wandb.Settings(**settings_arguments(wandb_cfg)),
                                  **init_arguments(wandb_cfg, header, run_dir))
            define_metrics(self.run)
            self.run.summary.update(summary_fields(header))
            self.next_step = int(getattr(self.run, "starting_step", 0) or 0)
        except Exception as err:  # W&B is a mirror: training goes on without it
            log.warning("W&B could not start (%s; init timeout %.0f s); training goes on, the local record is"
                        " complete", " ".join(str(err).split()) or type(err).__name__, init_timeout())
            self.abandon()
            return
        self.announce()

    def announce(self) -> None:
        """One line of ours where W&B, silent, prints none: where the run is, or waits to be synced."""
        try:
            if self.mode == "offline":
                log.info("W&B logs offline to %s: `wandb sync` it later", Path(self.run.dir).parent)
            else:
                log.info("W&B run %s (group %s)", self.run.url, self.run.group)
        except Exception as err:
            log.warning("W&B started, but cannot say where (%s)", err)

    def log_interval(self, row: dict) -> None:
        if self.run is None:
            return
        step = int(row["interval"])
        if step < self.next_step:  # a resumed run sends its rows again: W&B has these
            return
        try:
            self.run.log(logged_row(row), step=step, commit=True)
            self.next_step = step + 1
        except Exception as err:
            log.warning("W&B log failed (%s); the local record has the row", err)

    def finish(self, status: str) -> None:
        if self.run is None:
            return
        try:
            self.run.summary["status"] = status
            self.run.finish(exit_code=0 if status == "finished" else 1)
        except Exception as err:
            log.warning("W&B finish failed (%s)", err)
        self.run = None

    def abandon(self) -> None:
        """Close a run that started but could not be set up, so no half-made run stays open."""
        run, self.run = self.run, None
        if run is not None:
            try:
                run.finish(exit_code=1)
            except Exception:
                pass
