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

log = logging.getLogger(__name__)
# What the run record knows beyond the config, kept in the W&B summary so `make tables SOURCE=wandb`
# reads the same identity as the local record.
SUMMARY_FIELDS = ("method", "num_batches", "k", "num_classes", "channels", "update_budget")


def logged_in() -> bool:
    """An API key in the environment or in ~/.netrc for the W&B host, as `wandb login` leaves it."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    try:
        return netrc.netrc().authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def resolve_mode(mode: str) -> str:
    if mode not in ("auto", "online", "offline", "disabled"):
        raise ValueError(f"logger.wandb.mode={mode} is unknown: use auto, online, offline or disabled")
    if mode == "auto":
        return "online" if logged_in() else "offline"
    return mode


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
                dir=str(run_dir), mode=self.mode, reinit="create_new")
            self.run.summary.update({key: header[key] for key in SUMMARY_FIELDS})
            if self.mode == "offline":
                log.info("W&B is offline (not logged in): sync later with `wandb sync %s/wandb/offline-run-*`",
                         run_dir)
        except Exception as err:  # W&B is a mirror: training goes on without it
            log.warning("W&B could not start (%s); training goes on, the local record is complete", err)
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
