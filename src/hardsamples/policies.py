"""Selection policies: which fixed batches each round trains, and which loss each update back-propagates.

Every policy answers to the `Policy` protocol below; the update loop (loop.py) knows nothing else of it.
The methods, each under the same budget of N x E updates:
  standard        Algorithm 1: every batch every epoch (StandardPolicy).
  hard_batches    Algorithm 2: after round 0, the k batches (about delta x N: fidelity.hardest_count)
                  with the highest stored (stale) loss (HardBatchesPolicy). With refresh=true
                  (`hard_batches_refresh`) every stored loss is measured afresh before each round.
  random_batches  Algorithm 2's rounds with the k batches drawn at random: the control for hardness
                  (HardBatchesPolicy with draw=random).
  trimming        Mini-batch trimming: every batch every epoch, back-propagating only the mean loss
                  of its round(q x B) hardest samples, q falling over training (TrimmingPolicy).

build_policy finds a method's policy by its name in POLICY_BUILDERS (@register_policy).

Everything stays on the device: the stored losses, the sort, the chosen ids. The loop never reads a
Python value from them inside a round, so a round runs without a single host synchronisation.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from fractions import Fraction
from typing import Protocol

import torch
from omegaconf import OmegaConf

from hardsamples.errors import ConfigError
from hardsamples.registry import Registry

# The choices of the policies' options (config_checks.settings checks a config against them before a run).
ROUND_ORDERS = ("index", "loss")  # method.round_order
TIE_ORDERS = ("previous_rank", "batch_index")  # fidelity.tie_order
COUNT_RULES = ("float_int", "decimal_floor")  # fidelity.hardest_count


class Policy(Protocol):
    """What the update loop asks of a selection policy, and what it tells it.

    The loop starts round r (0, 1, ...) by asking `next_round(r, updates_left, measure_losses)` for the
    batch ids to train, in training order: at most `updates_left` of them, so the last round is cut to
    the budget. `measure_losses()` returns the current loss of every one of the N batches (forward
    passes only, counted apart from the updates); a policy calls it only when it wants fresh losses.
    After training a stretch of a round the loop calls `observe(batch_ids, losses)` with the loss each
    batch had when it was trained. Both stay on the device: no host synchronisation.

    When `per_sample` is true the loop hands each update's per-sample losses to
    `reduce(per_sample_losses, epoch, epochs)` (epoch: the 0-based epoch-equivalent, the record's
    interval - 1) and back-propagates the loss it returns (with the number of samples kept); otherwise
    it back-propagates the fused mean cross-entropy, as the authors did.
    `state_dict()` / `load_state_dict()` carry what a resumed run needs to choose as the uninterrupted
    one would have. `name` is the method as recorded in run.json; `k` the batches a round trains after
    round 0 (N for the policies that train every batch).
    """

    name: str
    k: int
    per_sample: bool

    def next_round(self, round_index: int, updates_left: int,
                   measure_losses: Callable[[], torch.Tensor]) -> torch.Tensor: ...

    def observe(self, batch_ids: torch.Tensor, losses: torch.Tensor) -> None: ...

    def reduce(self, per_sample_losses: torch.Tensor, epoch: int, epochs: int) -> tuple[torch.Tensor, int]: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


class StandardPolicy:
    """Algorithm 1: every batch, every round, in index order. A round is an epoch."""

    name = "standard"
    per_sample = False  # the loop then back-propagates F.cross_entropy's fused mean

    def __init__(self, num_batches: int, device: torch.device):
        self.num_batches = self.k = num_batches
        self.device = device

    def next_round(self, round_index: int, updates_left: int, measure_losses=None) -> torch.Tensor:
        return torch.arange(min(self.num_batches, updates_left), device=self.device)

    def observe(self, batch_ids: torch.Tensor, losses: torch.Tensor) -> None:
        pass

    def reduce(self, per_sample_losses: torch.Tensor, epoch: int, epochs: int) -> tuple[torch.Tensor, int]:
        return per_sample_losses.mean(), per_sample_losses.shape[0]

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class HardBatchesPolicy:
    """Algorithm 2, whole: rounds over N fixed batches under the budget of N x E updates.

    Round 0 trains all N batches in index order and stores each batch's loss as it is trained. Every
    later round trains the k batches with the highest stored loss (k = N at delta = 1.0: Algorithm 1,
    recorded as `standard`), in index order as the authors' loader walked them (round_order=index) or
    hardest first (loss). The last round is cut to the updates the budget has left.

    Stored losses are stale by design: a batch's loss is updated only when it is trained. With
    refresh, all N losses are measured afresh (forward only) before every round after round 0, so the
    choice is made on the current model; those passes are counted apart from the updates.
    Ties (equal stored losses) follow fidelity.tie_order: batch_index sends them to the lower batch
    index; previous_rank keeps last round's order, as the authors' stable re-sort of their ranked list.

    draw=random is the control for hardness (method random_batches): the same rounds, budget and
    order, but the k batches drawn uniformly at random each round, from a seeded generator on the
    device whose state is checkpointed, so a resumed run draws what the uninterrupted one would have.
    """

    per_sample = False

    def __init__(self, num_batches: int, delta: float, round_order: str, device: torch.device, *,
                 refresh: bool = False, count_rule: str = "decimal_floor", tie_order: str = "batch_index",
                 draw: str = "hardest", seed: int = 0):
        # round_order, refresh, tie_order and count_rule are checked with the config (config_checks.settings)
        # or, for HardBatchSampler's caller, by the sampler.
        self.num_batches, self.device = num_batches, device
        self.k = hardest_count(delta, num_batches, count_rule)
        self.round_order, self.tie_order, self.refresh, self.draw = round_order, tie_order, refresh, draw
        self.stored_losses = torch.full((num_batches,), float("nan"), device=device)
        # The ranking left by the last round; round 0 trains in index order, so it starts as 0..N-1.
        self.ranking = torch.arange(num_batches, device=device)
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(int(seed))

    @property
    def name(self) -> str:
        if self.k == self.num_batches:
            return "standard"
        if self.draw == "random":
            return "random_batches"
        return "hard_batches_refresh" if self.refresh else "hard_batches"

    def next_round(self, round_index: int, updates_left: int,
                   measure_losses: Callable[[], torch.Tensor]) -> torch.Tensor:
        if round_index == 0 or self.k == self.num_batches:
            return torch.arange(min(self.num_batches, updates_left), device=self.device)
        if self.refresh:
            self.stored_losses.copy_(measure_losses())
        chosen = self.hardest() if self.draw == "hardest" else self.random_draw()
        if self.round_order == "index":  # the authors' loader walked the chosen batches in index order
            chosen = torch.sort(chosen).values
        return chosen[:updates_left]

    def hardest(self) -> torch.Tensor:
        if self.tie_order == "batch_index":
            return torch.argsort(self.stored_losses, descending=True, stable=True)[: self.k]
        # Stable sort of last round's ranking by its stored losses: equal losses keep their old order.
        order = torch.argsort(self.stored_losses[self.ranking], descending=True, stable=True)
        self.ranking = self.ranking[order]
        return self.ranking[: self.k]

    def random_draw(self) -> torch.Tensor:
        """k random batches, ranked as the hardest are: stored loss, then batch index."""
        drawn = torch.randperm(self.num_batches, generator=self.generator, device=self.device)[: self.k]
        drawn = torch.sort(drawn).values
        return drawn[torch.argsort(self.stored_losses[drawn], descending=True, stable=True)]

    def observe(self, batch_ids: torch.Tensor, losses: torch.Tensor) -> None:
        self.stored_losses[batch_ids] = losses.float()

    def reduce(self, per_sample_losses: torch.Tensor, epoch: int, epochs: int) -> tuple[torch.Tensor, int]:
        return per_sample_losses.mean(), per_sample_losses.shape[0]

    def state_dict(self) -> dict:
        return {"stored_losses": self.stored_losses.cpu(), "ranking": self.ranking.cpu(),
                "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.stored_losses.copy_(state["stored_losses"])
        self.ranking.copy_(state["ranking"])
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
    shapes = ("linear", "cosine", "step")  # method.shape: checked with the config, or by sampler.trimmed_mean

    def __init__(self, num_batches: int, device: torch.device, start: float, end: float, shape: str):
        super().__init__(num_batches, device)
        for key, q in (("start", start), ("end", end)):
            if isinstance(q, bool) or not isinstance(q, (int, float)) or not 0.0 < q <= 1.0:
                raise ConfigError(f"method.{key}={q} is outside (0, 1]: q is the fraction of each batch kept")
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
    return max(1, math.floor(Fraction(repr(delta)) * num_batches))  # decimal_floor (rules checked with the config)


# The policy of each method: conf/method/<file>.yaml's `name` -> a function (run config, N, device) ->
# Policy. A new method is its class and its builder, registered below, and its config file.
POLICY_BUILDERS = Registry("method", "conf/method/<name>.yaml")
register_policy = POLICY_BUILDERS.register  # @register_policy(method): runs of that method train with its policy


def build_policy(cfg, num_batches: int, device: torch.device) -> Policy:
    """The policy of cfg.method at cfg.delta (a run config, or a plain dict of the same shape)."""
    if isinstance(cfg, dict):
        cfg = OmegaConf.create(cfg)
    return POLICY_BUILDERS.find(cfg.method.name)(cfg, num_batches, device)


def _every_batch_needs_delta_one(cfg) -> None:
    """Standard and trimming train every batch every round: a delta below 1.0 would go unused."""
    if cfg.delta != 1.0:
        raise ConfigError(f"method={cfg.method.name} trains every batch: delta must be 1.0, not {cfg.delta}")


@register_policy("standard")
def _standard(cfg, num_batches: int, device: torch.device) -> Policy:
    _every_batch_needs_delta_one(cfg)
    return StandardPolicy(num_batches, device)


@register_policy("hard_batches")
def _hard_batches(cfg, num_batches: int, device: torch.device) -> Policy:
    """Algorithm 2 (Algorithm 1 at delta = 1.0)."""
    return HardBatchesPolicy(num_batches, cfg.delta, cfg.method.round_order, device, refresh=cfg.method.refresh,
                             count_rule=cfg.fidelity.hardest_count, tie_order=cfg.fidelity.tie_order,
                             draw="hardest", seed=cfg.seed)


@register_policy("random_batches")
def _random_batches(cfg, num_batches: int, device: torch.device) -> Policy:
    """Algorithm 2's rounds with k batches drawn at random; ties among them go to the lower index."""
    return HardBatchesPolicy(num_batches, cfg.delta, cfg.method.round_order, device, refresh=False,
                             count_rule=cfg.fidelity.hardest_count, tie_order="batch_index",
                             draw="random", seed=cfg.seed)


@register_policy("trimming")
def _trimming(cfg, num_batches: int, device: torch.device) -> Policy:
    _every_batch_needs_delta_one(cfg)
    return TrimmingPolicy(num_batches, device, cfg.method.start, cfg.method.end, cfg.method.shape)
