"""Hard mini-batches and mini-batch trimming in your own PyTorch loop.

Algorithm 2 as a batch sampler: three lines change in a plain loop.

    sampler = HardBatchSampler(dataset, batch_size=64, epochs=10, delta=0.2)   # 1
    loader = DataLoader(dataset, batch_sampler=sampler)                          # 2
    for images, labels in loader:                                                # N x E updates in all
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad(); loss.backward(); optimizer.step()
        sampler.observe(loss)                                                    # 3

The choice is HardBatchesPolicy's, the class the study's own loop runs (policies.py), so the two
choose the same batches from the same losses. `sampler.history` keeps the batch ids chosen for each round
(`save_history` writes them as the study's trace.csv columns); `sampler.interval_complete` is True after
every N updates, where the study evaluates. `trimmed_mean` is TrimmingPolicy's reduction, for a loop
that trims its batches instead.
"""

from __future__ import annotations

import csv
import functools
import sys
import warnings
from collections import deque
from collections.abc import Iterator, Sized
from pathlib import Path

import torch
from torch.utils.data import Sampler

from hardsamples.config_checks.values import one_of
from hardsamples.data import make_fixed_batches
from hardsamples.policies import ROUND_ORDERS, HardBatchesPolicy, TrimmingPolicy
from hardsamples.record_files import TRACE_COLUMNS

PREFETCH_WARNING = ("HardBatchSampler: a round was chosen while batches the DataLoader drew ahead (num_workers > 0"
                    " prefetches) had not reported their loss yet; they competed with the loss they had when last"
                    " trained (none yet in round 0: then they count as hardest). Use num_workers=0 for"
                    " Algorithm 2 exactly.")


class HardBatchSampler(Sampler[list[int]]):
    """Algorithm 2 over a dataset of n samples: yields lists of sample indices (a DataLoader's batch_sampler).

    The samples are cut once into N fixed batches of `batch_size` (from a permutation seeded by `seed`,
    or in dataset order with shuffle=False; drop_last=False pads the last batch from the start of the
    order). One pass over the sampler is the whole training: N x `epochs` batches. Round 0 is every
    batch in index order; every later round is the k = floor(delta x N) (at least 1) batches with the
    highest stored loss, in index order (round_order="loss": hardest first); the last round is cut to
    the budget. delta = 1.0 is Algorithm 1: every batch, every round.

    `observe(loss)` after each step stores the loss of the oldest batch drawn and not yet observed: the
    one last yielded in a loop with num_workers=0. A stored loss changes only when its batch is
    trained again, so the choice runs on stale losses, as the paper's. Losses stay on their device
    (the policy moves there at the first observe, or is built on `device`): a step costs no host
    synchronisation; choosing a round costs one, since the DataLoader needs the indices on the host.
    A new pass starts training afresh: round 0 again, no stored losses.
    """

    def __init__(self, data_source: Sized | int, batch_size: int, epochs: int, delta: float, *,
                 shuffle: bool = True, drop_last: bool = True, seed: int = 0, round_order: str = "index",
                 device: torch.device | str | None = None):
        super().__init__()
        num_samples = data_source if isinstance(data_source, int) else len(data_source)
        if not 1 <= batch_size <= num_samples:
            raise ValueError(f"batch_size={batch_size} must be between 1 and the {num_samples} samples")
        if epochs < 1:
            raise ValueError(f"epochs={epochs} must be at least 1")
        if not 0.0 < delta <= 1.0:
            raise ValueError(f"delta={delta} is outside (0, 1]: 1.0 is Algorithm 1, e.g. 0.2 trains the hardest fifth")
        one_of("round_order", round_order, ROUND_ORDERS)
        self.batches = make_fixed_batches(num_samples, batch_size, drop_last=drop_last,
                                          partition="shuffled" if shuffle else "dataset_order", seed=seed,
                                          device=torch.device("cpu"))
        self.num_batches = self.batches.shape[0]
        self.epochs, self.delta, self.round_order = epochs, delta, round_order
        self.budget = self.num_batches * epochs
        self.device = None if device is None else torch.device(device)
        self.sample_lists = self.batches.tolist()
        self.start_training()
        self.k = self.policy.k

    def __len__(self) -> int:
        return self.budget

    @property
    def epoch(self) -> int:
        """The epoch-equivalent (0-based: updates // N) of the batch being trained, the one observe() will
        take: what trimmed_mean's `epoch` wants."""
        return min(self.observed, self.budget - 1) // self.num_batches

    @property
    def interval_complete(self) -> bool:
        """True right after the observe() that completes N updates, 2N, ...: an epoch-equivalent, where the
        study evaluates (`if sampler.interval_complete: evaluate(...)` after observe)."""
        return self.observed > 0 and self.observed % self.num_batches == 0

    @property
    def intervals_done(self) -> int:
        """Epoch-equivalents completed so far: observed updates // N (the study's interval t)."""
        return self.observed // self.num_batches

    def save_history(self, path) -> None:
        """history as a CSV, one row per batch drawn: update (1..), round (0 for the first epoch) and
        batch, the columns of the study's trace.csv; the samples of batch b are sampler.batches[b]."""
        rows = [(update, round_index, batch) for update, (round_index, batch) in
                enumerate(((r, b) for r, ids in enumerate(self.history) for b in ids), start=1)]
        with open(path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(TRACE_COLUMNS[:3])
            writer.writerows(rows)

    def start_training(self) -> None:
        """Round 0, no stored losses: the state a pass over the sampler starts from."""
        self.policy = self.new_policy(self.device or torch.device("cpu"))
        self.unobserved: deque[int] = deque()  # drawn batch ids in order, awaiting their loss
        self.drawn = self.observed = 0
        self.history: list[list[int]] = []  # the batch ids chosen for each round of this pass, in training order

    def new_policy(self, device: torch.device) -> HardBatchesPolicy:
        # clean protocol's rules: k = floor(delta x N) as delta is written, ties to the lower batch index
        policy = HardBatchesPolicy(self.num_batches, self.delta, self.round_order, device,
                                   count_rule="decimal_floor", tie_order="batch_index")
        self.batch_ids = torch.arange(self.num_batches, device=device)  # sliced in observe: no host-to-device copy
        return policy

    def __iter__(self) -> Iterator[list[int]]:
        self.start_training()
        round_index = 0
        while self.drawn < self.budget:
            for batch in self.choose_round(round_index):
                self.unobserved.append(batch)
                self.drawn += 1
                yield list(self.sample_lists[batch])
            round_index += 1

    def choose_round(self, round_index: int) -> list[int]:
        if round_index > 0:
            if self.observed == 0:
                raise RuntimeError("HardBatchSampler: no loss was observed in round 0: call sampler.observe(loss)"
                                   " after each optimizer step")
            if self.unobserved:
                warnings.warn(PREFETCH_WARNING, stacklevel=user_stacklevel())
        chosen = self.policy.next_round(round_index, self.budget - self.drawn, measure_losses=no_fresh_losses)
        self.history.append(chosen.tolist())  # the round's one host read: the DataLoader indexes on the host
        return self.history[-1]

    def observe(self, loss: torch.Tensor) -> None:
        """Store the loss of the oldest drawn batch not yet observed (the one just trained). A vector of
        per-sample losses counts as its mean. Detached; no host synchronisation."""
        if not self.unobserved:
            raise RuntimeError("HardBatchSampler.observe() was called more often than batches were drawn:"
                               " call it once per batch, after its step")
        batch = self.unobserved.popleft()
        loss = loss.detach().float().mean().reshape(1)
        if loss.device != self.policy.stored_losses.device:
            if self.observed == 0 and self.device is None:  # nothing stored yet: follow the loss to its device
                self.device = loss.device
                self.policy = self.new_policy(loss.device)
            else:
                loss = loss.to(self.policy.stored_losses.device)
        self.policy.observe(self.batch_ids[batch:batch + 1], loss)
        self.observed += 1


def user_stacklevel() -> int:
    """warnings.warn's stacklevel, for a warning raised by the caller of this function, that names the
    first frame outside this package and torch: the user's loop over the DataLoader, however deep
    torch's DataLoader calls the sampler from."""
    internal = (str(Path(__file__).resolve().parent), str(Path(torch.__file__).resolve().parent))
    frame, level = sys._getframe(1), 1
    while frame is not None and str(Path(frame.f_code.co_filename).resolve()).startswith(internal):
        frame, level = frame.f_back, level + 1
    return level


def no_fresh_losses() -> torch.Tensor:
    raise NotImplementedError("HardBatchSampler keeps stale losses (refresh=false): it cannot measure them afresh")


def trimmed_mean(per_sample_losses: torch.Tensor, epoch: int, epochs: int, start: float = 1.0, end: float = 0.2,
                 shape: str = "linear") -> torch.Tensor:
    """Mini-batch trimming's loss: the mean of the round(q x B) highest of a batch's B per-sample losses
    (at least 1), q going from `start` in epoch 0 to `end` in epoch epochs - 1 (linear, as the method's
    authors; cosine and step are this study's). The plain mean where q keeps every sample. Differentiable:
    back-propagate it."""
    return trimming(float(start), float(end), shape).reduce(per_sample_losses, epoch, epochs)[0]


@functools.lru_cache(maxsize=16)
def trimming(start: float, end: float, shape: str) -> TrimmingPolicy:
    """TrimmingPolicy holds only the schedule (checked once here: a caller's arguments pass no config check);
    its reduce works on any device."""
    one_of("method.shape", shape, TrimmingPolicy.shapes)
    return TrimmingPolicy(1, torch.device("cpu"), start, end, shape)
