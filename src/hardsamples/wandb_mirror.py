"""Weights & Biases mirrors the run record; it never decides whether training goes on.

One W&B run per job, id stored in run.json so a resumed job continues the same W&B run. Each
interval is logged with `step=interval`: W&B drops a step it has already seen, so a resumed run that
logs its rows again cannot duplicate any.
"""

from __future__ import annotations

import logging
import netrc
import os
from urllib.parse import urlparse

from hardsamples.record_schema import WANDB_SUMMARY_FIELDS

log = logging.getLogger(__name__)


# WANDB_MODE values as W&B reads them (run and dryrun are its older names).
ENV_MODES = {"online": "online", "run": "online", "shared": "online", "offline": "offline", "dryrun": "offline",
             "disabled": "disabled"}
INIT_TIMEOUT_S = 10.0  # W&B's own default is 90 s: a W&B that cannot start would hold every run that long


def logged_in() -> bool:
    """Whether W&B has credentials, by W&B's own lookup (environment, .netrc, its settings file) where
    this W&B version offers it, else an API key in the environment or in ~/.netrc for the W&B host."""
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    base_url = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")
    try:
        from wandb.sdk.lib.wbauth import HostUrl
        from wandb.sdk.lib.wbauth.authenticate import _use_system_auth

        return _use_system_auth(host=HostUrl(base_url), source="hardsamples", update_session=False) is not None
    except Exception:  # another W&B version, or credentials it cannot parse: the plain lookup below
        pass
    host = urlparse(base_url).hostname
    try:
        return netrc.netrc(os.environ.get("NETRC")).authenticators(host) is not None
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
    if mode not in ("auto", "online", "offline", "disabled"):
        raise ValueError(f"logger.wandb.mode={mode} is unknown: use auto, online, offline or disabled")
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


class WandbMirror:
    def __init__(self, wandb_cfg, header: dict, run_dir):
        self.run = None
        self.mode = resolve_mode(wandb_cfg.mode)
        if self.mode == "disabled":
            return
        try:
            import wandb

            self.run = wandb.init(
                project=wandb_cfg.project, entity=wandb_cfg.entity, group=wandb_cfg.group,
                name=wandb_cfg.name, id=header["run_id"], resume="allow", config=header["config"],
                dir=str(run_dir), mode=self.mode, reinit="create_new",
                settings=wandb.Settings(init_timeout=init_timeout()))
            self.run.summary.update({key: header[key] for key in WANDB_SUMMARY_FIELDS})
            if self.mode == "offline":
                log.info("W&B is offline (not logged in): sync later with `wandb sync %s/wandb/offline-run-*`",
                         run_dir)
        except Exception as err:  # W&B is a mirror: training goes on without it
            log.warning("W&B could not start within %.0f s (%s); training goes on, the local record is complete",
                        init_timeout(), err)
            self.run = None

    def log_interval(self, row: dict) -> None:
        if self.run is None:
            return
        try:
            self.run.log({k: v for k, v in row.items() if k != "interval"}, step=int(row["interval"]))
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
