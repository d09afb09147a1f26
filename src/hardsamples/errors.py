"""How a run ends other than by itself: bad input (ConfigError) and a stop from outside (Terminated)."""


class ConfigError(Exception):
    """Bad input: the message is the single line a user sees, naming the problem and the fix."""


class Terminated(BaseException):
    """SIGTERM (what a cluster or `kill` sends first): the run is recorded as interrupted, then the process ends."""


def stop_reason(err: BaseException) -> str:
    """run.json's error for a run that did not end by itself. A SystemExit inside a run is submitit
    ending a pre-empted or timed-out job it has requeued (or a rerun's business)."""
    reason = f"{type(err).__name__}: {err}"
    if isinstance(err, (SystemExit, KeyboardInterrupt, Terminated)):
        reason += (" (stopped before its end: pre-emption, time limit, cancel or signal); a requeued job or a"
                   " rerun resumes from the last checkpoint")
    return reason


def first_line(err: Exception) -> str:
    """The first line of a Hydra or OmegaConf message (the rest is Hydra's advice or OmegaConf's
    full_key / object_type lines)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return (lines[0] if lines else type(err).__name__).rstrip(".")


def last_line(err: BaseException) -> str:
    """An exception as one line, `Type: message`: its message's last line, which for an error a DataLoader
    worker raised (re-raised with the worker's traceback before it) is the original message."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    last, kind = (lines[-1] if lines else ""), type(err).__name__
    if not last or last.startswith(f"{kind}: "):
        return last or kind
    return f"{kind}: {last}"
