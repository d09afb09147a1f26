"""Selection policies: which fixed batch each update trains on, and which loss it back-propagates.

The interface is two questions the update loop asks:
  next_round()                  -> device LongTensor of batch ids to train, in training order
  observe(batch_ids, losses)    <- the loss each of those batches had when it was trained
and, for policies that drop samples (`per_sample = True`), `reduce(per_sample_losses, epoch, epochs)`
-> the loss to back-propagate and the number of samples kept. The others back-propagate the fused
mean cross-entropy, as the authors' code did.

The methods, each under the same budget of N x E updates:
  standard        Algorithm 1: every batch every epoch.
  hard_batches    Algorithm 2: after round 0, the k batches (about delta x N: fidelity.hardest_count)
                  with the highest stored (stale) loss. With refresh=true (`hard_batches_refresh`),
                  every stored loss is measured afresh before each round, at N extra forward passes a round.
  random_batches  Algorithm 2's rounds with the k batches drawn at random: the control for hardness.
  trimming        Mini-batch trimming: every batch every epoch, back-propagating only the mean loss
                  of its round(q x B) hardest samples, q falling over training.

Everything stays on the device: the stored losses, the sort, the chosen ids. The loop never reads a
Python value from them inside a round, so a round runs without a single host synchronisation.
"""

from __future__ import annotations

import math
from fractions import Fraction

import torch

from hardsamples.errors import ConfigError


class StandardPolicy:
    """Algorithm 1: every batch, every round, in index order. A round is an epoch."""

    name = "standard"
    per_sample = False  # the loop then back-propagates F.cross_entropy's fused mean

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

    def state_dict(self) -> dict:
        return {"rounds_started": self.rounds_started}

    def load_state_dict(self, state: dict) -> None:
        self.rounds_started = int(state["rounds_started"])


class HardBatchesPolicy(StandardPolicy):
    """Algorithm 2: round 0 trains all N batches; each later round trains the k hardest by stored loss.

    Stored losses are stale by design: a batch's loss is updated only when it is trained. With
    refresh, the loop measures all N losses (forward only) before every round after round 0, so the
    choice is made on the current model instead; those passes are counted apart from the updates.
    Ties (equal stored losses) follow fidelity.tie_order: batch_index sends them to the lower batch
    index; previous_rank keeps last round's order, as the authors' stable re-sort of their ranked list.
    """

    name = "hard_batches"

    def __init__(self, num_batches: int, delta: float, round_order: str, device: torch.device,
                 refresh: bool = False, count_rule: str = "decimal_floor", tie_order: str = "batch_index"):
        super().__init__(num_batches, device)
        if round_order not in ("index", "loss"):
            raise ConfigError(f"method.round_order={round_order} is unknown: use index or loss")
        if not isinstance(refresh, bool):
            raise ConfigError(f"method.refresh={refresh} is not a boolean: use true or false")
        if tie_order not in ("batch_index", "previous_rank"):
            raise ConfigError(f"fidelity.tie_order={tie_order} is unknown: use batch_index or previous_rank")
        self.k = hardest_count(delta, num_batches, count_rule)
        self.round_order, self.tie_order = round_order, tie_order
        # The ranking left by the last round; round 0 trains in index order, so it starts as 0..N-1.
        self.ranking = torch.arange(num_batches, device=device)
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
        if self.tie_order == "batch_index":
            return torch.argsort(self.stored_losses, descending=True, stable=True)[: self.k]
        # Stable sort of last round's ranking by its stored losses: equal losses keep their old order.
        order = torch.argsort(self.stored_losses[self.ranking], descending=True, stable=True)
        self.ranking = self.ranking[order]
        return self.ranking[: self.k]

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
        return {**super().state_dict(), "stored_losses": self.stored_losses.cpu(), "ranking": self.ranking.cpu()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.stored_losses.copy_(state["stored_losses"])
        self.ranking.copy_(state["ranking"])


class RandomBatchesPolicy(HardBatchesPolicy):
    """The control for hardness: Algorithm 2's rounds, budget and order, but the k batches drawn at random.

    A fresh uniform draw of k distinct batches each round, from a seeded generator on the training
    device (no host synchronisation); its state is checkpointed, so a resumed run draws what the
    uninterrupted one would have. The stored losses are kept only to order a round (round_order=loss).
    """

    name = "random_batches"

    def __init__(self, num_batches: int, delta: float, round_order: str, seed: int, device: torch.device,
                 count_rule: str = "decimal_floor"):
        super().__init__(num_batches, delta, round_order, device, count_rule=count_rule)
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
    The linear shape is the authors' schedule, so r is computed with their arithmetic under both
    protocols (see kept_count). r is computed on the host from the epoch, so trimming costs no
    synchronisation.
    """

    name = "trimming"
    per_sample = True
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

    def kept_count(self, batch_size: int, epoch: int, epochs: int) -> int:
        """r, the samples kept of a batch of M = batch_size in `epoch` (0-based) of `epochs`.

        linear: mbtrim's r = e (b M - a M) / (E - 1) + a M, in that order of float operations. It
        rounds differently from (a + (b - a) e / (E - 1)) M near halves: M = 41, E = 25, e = 15 gives
        20.500000000000004 -> 21 where the other gives 20.5 -> 20.
        """
        a, b, m = self.start, self.end, batch_size
        if self.shape == "linear":
            r = a * m if epochs == 1 else epoch * (b * m - a * m) / (epochs - 1) + a * m
        else:
            r = self.keep_fraction(0.0 if epochs == 1 else epoch / (epochs - 1)) * m
        return max(1, round(r))

    def reduce(self, per_sample_losses: torch.Tensor, epoch: int, epochs: int) -> tuple[torch.Tensor, int]:
        batch_size = per_sample_losses.shape[0]
        kept = self.kept_count(batch_size, epoch, epochs)
        if kept >= batch_size:  # the plain mean, so q = 1 is exactly Algorithm 1
            return per_sample_losses.mean(), batch_size
        return torch.topk(per_sample_losses, kept, sorted=False).values.mean(), kept


def hardest_count(delta: float, num_batches: int, rule: str) -> int:
    """k, the batches trained per round after round 0.

    float_int: the authors' int(delta * N) in binary floating point (0.7 * 90 = 62.99999999999999 -> 62;
    0.58 * 50 -> 28). A k of 0 is refused: their code would then train only the first epoch.
    decimal_floor: floor(delta x N) of delta as written in decimal (0.7 x 90 = 63, 0.58 x 50 = 29), at
    least 1. Fraction(repr(delta)) is that decimal exactly, so no epsilon is needed.
    """
    if rule == "float_int":
        k = int(delta * num_batches)
        if k == 0:
            least = math.ceil(1e4 / num_batches) / 1e4  # 4 decimals, rounded up so that int(least * N) >= 1
            raise ConfigError(f"delta={delta} x N={num_batches} batches gives k = int({delta * num_batches}) = 0"
                              f" under fidelity.hardest_count=float_int: raise delta to at least {least:g}"
                              " or use fidelity.hardest_count=decimal_floor (k at least 1)")
        return k
    if rule == "decimal_floor":
        return max(1, math.floor(Fraction(repr(delta)) * num_batches))
    raise ConfigError(f"fidelity.hardest_count={rule} is unknown: use float_int or decimal_floor")


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
    count_rule = cfg.fidelity.hardest_count
    if method == "hard_batches":
        return HardBatchesPolicy(num_batches, delta, cfg.method.round_order, device, refresh=cfg.method.refresh,
                                 count_rule=count_rule, tie_order=cfg.fidelity.tie_order)
    if method == "random_batches":
        return RandomBatchesPolicy(num_batches, delta, cfg.method.round_order, cfg.seed, device, count_rule)
    raise ConfigError(f"unknown method '{method}': use one of conf/method/"
                      " (standard, hard_batches, random_batches, trimming)")
