"""Selection policies: which fixed batch each update trains on, and which loss it back-propagates.

The interface is two questions the update loop asks:
  next_round()                  -> device LongTensor of batch ids to train, in training order
  observe(batch_ids, losses)    <- the loss each of those batches had when it was trained
and, for policies that drop samples, `reduce(per_sample_losses, progress)` -> the loss to
back-propagate and the number of samples kept.

The methods, each under the same budget of N x E updates:
  standard        Algorithm 1: every batch every epoch.
  hard_batches    Algorithm 2: after round 0, the k = floor(delta x N) batches with the highest
                  stored (stale) loss. With refresh=true (`hard_batches_refresh`), every stored loss
                  is measured afresh before each round, at N extra forward passes a round.
  random_batches  Algorithm 2's rounds with the k batches drawn at random: the control for hardness.
  trimming        Mini-batch trimming: every batch every epoch, back-propagating only the mean loss
                  of its round(q x B) hardest samples, q falling over training.

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

    Stored losses are stale by design: a batch's loss is updated only when it is trained. With
    refresh, the loop measures all N losses (forward only) before every round after round 0, so the
    choice is made on the current model instead; those passes are counted apart from the updates.
    Ties go to the lower batch index (a stable sort of the descending losses).
    """

    name = "hard_batches"

    def __init__(self, num_batches: int, delta: float, round_order: str, device: torch.device,
                 refresh: bool = False):
        super().__init__(num_batches, device)
        if round_order not in ("index", "loss"):
            raise ConfigError(f"method.round_order={round_order} is unknown: use index or loss")
        if not isinstance(refresh, bool):
            raise ConfigError(f"method.refresh={refresh} is not a boolean: use true or false")
        self.k = hardest_count(delta, num_batches)
        self.round_order = round_order
        self.refreshes = refresh
        if refresh:
            self.name = "hard_batches_refresh"
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

    def refreshes_before_round(self, round_index: int) -> bool:
        return self.refreshes and round_index >= 1  # round 0 measures every batch as it trains it

    def refresh(self, losses: torch.Tensor) -> None:
        self.stored_losses.copy_(losses)

    def state_dict(self) -> dict:
        return {**super().state_dict(), "stored_losses": self.stored_losses.cpu()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.stored_losses.copy_(state["stored_losses"])


class RandomBatchesPolicy(HardBatchesPolicy):
    """The control for hardness: Algorithm 2's rounds, budget and order, but the k batches drawn at random.

    A fresh uniform draw of k distinct batches each round, from a seeded generator on the training
    device (no host synchronisation); its state is checkpointed, so a resumed run draws what the
    uninterrupted one would have. The stored losses are kept only to order a round (round_order=loss).
    """

    name = "random_batches"

    def __init__(self, num_batches: int, delta: float, round_order: str, seed: int, device: torch.device):
        super().__init__(num_batches, delta, round_order, device)
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(int(seed))

    def choose(self) -> torch.Tensor:
        """k random batches, ranked as hard_batches ranks its choice: stored loss, then batch index."""
        drawn = torch.randperm(self.num_batches, generator=self.generator, device=self.device)[: self.k]
        drawn = torch.sort(drawn).values
        return drawn[torch.argsort(self.stored_losses[drawn], descending=True, stable=True)]

    def state_dict(self) -> dict:
        return {**super().state_dict(), "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.generator.set_state(state["generator"])


class TrimmingPolicy(StandardPolicy):
    """Mini-batch trimming: Algorithm 1's batches, each back-propagating only its hardest samples.

    Each update keeps the r = round(q x B) samples of highest loss (at least 1) and back-propagates
    their mean. q follows a schedule in the epoch-equivalent, from `start` in the first to `end` in
    the last; linear 1.0 -> 0.2 is the default of the method's authors (hfassold/mbtrim). cosine and
    step are this study's additions, both with the same mean q as linear: cosine falls slowly at both
    ends, step keeps `start` for the first half of training and `end` for the second.

    round() is Python's, half to even, as in the authors' code (`max(round(r), 1)`): r = 2.5 keeps 2.
    q and r are computed on the host from the loop's progress, so trimming costs no synchronisation.
    """

    name = "trimming"
    shapes = ("linear", "cosine", "step")

    def __init__(self, num_batches: int, device: torch.device, start: float, end: float, shape: str):
        super().__init__(num_batches, device)
        for key, q in (("start", start), ("end", end)):
            if isinstance(q, bool) or not isinstance(q, (int, float)) or not 0.0 < q <= 1.0:
                raise ConfigError(f"method.{key}={q} is outside (0, 1]: q is the fraction of each batch kept")
        if shape not in self.shapes:
            raise ConfigError(f"method.shape={shape} is unknown: use {', '.join(self.shapes)}")
        self.start, self.end, self.shape = float(start), float(end), shape

    def keep_fraction(self, progress: float) -> float:
        """q at progress in [0, 1] (0 in the first epoch-equivalent, 1 in the last)."""
        if self.shape == "linear":
            return self.start + (self.end - self.start) * progress
        if self.shape == "cosine":
            return self.end + (self.start - self.end) * (1.0 + math.cos(math.pi * progress)) / 2.0
        return self.start if progress < 0.5 else self.end

    def reduce(self, per_sample_losses: torch.Tensor, progress: float) -> tuple[torch.Tensor, int]:
        batch_size = per_sample_losses.shape[0]
        kept = max(1, round(self.keep_fraction(progress) * batch_size))
        if kept >= batch_size:  # the plain mean, so q = 1 is exactly Algorithm 1
            return per_sample_losses.mean(), batch_size
        return torch.topk(per_sample_losses, kept, sorted=False).values.mean(), kept


def hardest_count(delta: float, num_batches: int) -> int:
    """k = floor(delta x N), at least 1. The epsilon keeps 0.2 x 10 from flooring to 1 by rounding error."""
    return max(1, math.floor(delta * num_batches + 1e-9))


def build_policy(cfg, num_batches: int, device: torch.device):
    """delta = 1.0 is Algorithm 1 for the batch-choosing methods; below 1 the method chooses the batches.

    Trimming trains every batch and drops samples instead, so it takes delta = 1.0 only.
    """
    method, delta = cfg.method.name, cfg.delta
    if method in ("standard", "trimming") and delta != 1.0:
        raise ConfigError(f"method={method} trains every batch: delta must be 1.0, not {delta}")
    if method == "trimming":
        return TrimmingPolicy(num_batches, device, cfg.method.start, cfg.method.end, cfg.method.shape)
    if method == "standard" or (method in ("hard_batches", "random_batches") and delta == 1.0):
        return StandardPolicy(num_batches, device)
    if method == "hard_batches":
        return HardBatchesPolicy(num_batches, delta, cfg.method.round_order, device, refresh=cfg.method.refresh)
    if method == "random_batches":
        return RandomBatchesPolicy(num_batches, delta, cfg.method.round_order, cfg.seed, device)
    raise ConfigError(f"unknown method '{method}': use one of conf/method/"
                      " (standard, hard_batches, random_batches, trimming)")
