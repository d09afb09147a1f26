"""Every check on what a run is given, one module per moment it runs, each rule stated once:

  command_line  before Hydra composes: overrides readable, keys and choices known ("did you mean"),
                a sweep only in a multirun; `make tables` and `make bench` check theirs here too
  keys          a config's keys as a tree: is a dotted key there, and the closest to a misspelt one
  callback      Hydra's callback, before Hydra writes anything: the composed config (settings), a
                `+key` nobody reads, the run or sweep directory, the disk, the launcher
  settings      the composed run config: types, ranges, limits, choices
  values        the rules for one value that settings and the bench share (a number, a whole number,
                a minimum, a limit, one of its choices)
  bench         the composed `make bench` settings
  tables        the composed `make tables` settings: the source, the convergence rule, paper_consistency
  data          the data once read: what every source must give, the split sizes a run needs
  loop          the built loop: the model takes the images, the optimizer steps, BatchNorm evaluates

A policy adds, as it is built, only the rules its own method has (settings.py says which).

A refusal is one line naming the problem and the fix, and exit code 2 with nothing written: inside a
run a ConfigError (train.main prints it), on the command line and in Hydra's callback `refuse`.
"""

from __future__ import annotations

import sys


def refuse(message: str) -> None:
    """Bad input on a command line or in Hydra's callback (the launchers' too): one line, exit code 2."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)  # passes through Hydra's callback and error handlers: nothing has been written
