"""Selection policies: which fixed batch each update trains on, and which loss it back-propagates.

The interface is two questions the update loop asks:
  next_round()                  -> device LongTensor of batch ids to train, in training order
  observe(batch_ids, losses)    <- the loss each of those batches had when it was trained
and, for policies that drop samples, `reduce(per_sample_losses, progress)` -> the loss to
back-propagate and the number of samples kept.

Everything stays on the device: the stored losses, the sort, the chosen ids. The loop never reads a
Python value from them inside a round, so a round runs without a single host synchronisation.
"""

from __future__ import annotations

import math

import torch

from hardsamples.errors import ConfigError


class StandardPolicy:
    """Algorithm 1: every batch, every round, in index order. A round is an epoch."""

    name = "standard"

    def __init__(self, num_batches: int, device: torch.device):
        self.num_batches = num_batches
        self.device = device
        self.rounds_started = 0

    @property
    def round_size(self) -> int:
        """Updates in the next round (the loop cuts the last round to fit the budget)."""
        return self.num_batches

    def next_round(self) -> torch.Tensor:
        self.rounds_started += 1
        return torch.arange(self.num_batches, device=self.device)

    def observe(self, batch_ids: torch.Tensor, losses: torch.Tensor) -> None:
        pass

    def refreshes_before_round(self, round_index: int) -> bool:
        """Whether the loop should measure every batch's loss (forward only) before this round."""
        return False

    def refresh(self, losses: torch.Tensor) -> None:
        """Fresh losses of all N batches, measured without updating the model."""

    def reduce(self, per_sample_losses: torch.Tensor, progress: float) -> tuple[torch.Tensor, int]:
        return per_sample_losses.mean(), per_sample_losses.shape[0]

    def state_dict(self) -> dict:
        return {"rounds_started": self.rounds_started}

    def load_state_dict(self, state: dict) -> None:
        self.rounds_started = int(state["rounds_started"])


class HardBatchesPolicy(StandardPolicy):
    """Algorithm 2: round 0 trains all N batches; each later round trains the k hardest by stored loss.

    Stored losses are stale by design: a batch's loss is updated only when it is trained.
    Ties go to the lower batch index (a stable sort of the descending losses).
    """

    name = "hard_batches"

    def __init__(self, num_batches: int, delta: float, round_order: str, device: torch.device):
        super().__init__(num_batches, device)
        if round_order not in ("index", "loss"):
            raise ConfigError(f"method.round_order={round_order} is unknown: use index or loss")
        self.k = hardest_count(delta, num_batches)
        self.round_order = round_order
        self.stored_losses = torch.full((num_batches,), float("nan"), device=device)

    @property
    def round_size(self) -> int:
        return self.num_batches if self.rounds_started == 0 else self.k

    def next_round(self) -> torch.Tensor:
        if self.rounds_started == 0:
            return super().next_round()
        self.rounds_started += 1
        return self.order_round(self.choose())

    def choose(self) -> torch.Tensor:
        ranked = torch.argsort(self.stored_losses, descending=True, stable=True)
        return ranked[: self.k]

    def order_round(self, chosen: torch.Tensor) -> torch.Tensor:
        """Index order walks the batches as the authors' loader did; loss order keeps hardest first."""
        return torch.sort(chosen).values if self.round_order == "index" else chosen

    def observe(self, batch_ids: torch.Tensor, losses: torch.Tensor) -> None:
        self.stored_losses[batch_ids] = losses.float()

    def state_dict(self) -> dict:
        return {**super().state_dict(), "stored_losses": self.stored_losses.cpu()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.stored_losses.copy_(state["stored_losses"])


def hardest_count(delta: float, num_batches: int) -> int:
    """k = floor(delta x N), at least 1. The epsilon keeps 0.2 x 10 from flooring to 1 by rounding error."""
    return max(1, math.floor(delta * num_batches + 1e-9))


def build_policy(cfg, num_batches: int, device: torch.device):
    """delta = 1.0 is Algorithm 1 whatever the method; below 1 the method chooses the batches."""
    method = cfg.method.name
    if method == "standard" or (method == "hard_batches" and cfg.delta == 1.0):
        if cfg.delta != 1.0:
            raise ConfigError(f"method=standard trains every batch: delta must be 1.0, not {cfg.delta}")
        return StandardPolicy(num_batches, device)
    if method == "hard_batches":
        return HardBatchesPolicy(num_batches, cfg.delta, cfg.method.round_order, device)
    raise ConfigError(f"unknown method '{method}': use one of conf/method/ (standard, hard_batches, ...)")
