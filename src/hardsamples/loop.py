"""The update loop: a budget of N x E updates over fixed batches, chosen round by round by a policy.

Measured (results/bench/amd-epyc-2-cores.csv; `make bench`, one process, median of 5 repeats; no GPU
figure yet): choosing the hardest batches costs nothing per update that a benchmark can see. At
delta = 0.2 with N = 5, the worst case (a device-side sort before every update), an update costs
0.95-1.03x one at delta = 1.0 (median per model, the paper's five; target <= 1.02), the selection
itself 26-74 us (<= 0.17% of an update); an update in this loop costs 0.96-1.02x a bare forward,
backward and step on a staged batch (target <= 1.05). The ranges over repeats (wide on a shared CPU) are in
results/bench/README.md; tests/test_measured_claims.py checks these figures against the CSV.

Inside a round nothing leaves the device: batch ids, losses and the policy's stored losses are
device tensors, and the loop only uses Python integers it already knows (round sizes, positions).
The host waits for the device once per interval (every N updates), when it evaluates and writes the
record. That is also the only place a NaN loss is noticed, so a diverged run costs at most one
interval more.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from hardsamples.data import DeviceData, make_fixed_batches
from hardsamples.errors import ConfigError
from hardsamples.models import build_model
from hardsamples.policies import Policy, build_policy
from hardsamples.runtime import Runtime


@dataclass
class Segment:
    """Updates trained back to back inside one round, kept on the device until the interval ends."""

    first_update: int
    round_index: int
    batch_ids: torch.Tensor
    losses: torch.Tensor
    kept: list[int]


@dataclass
class LoopState:
    updates: int = 0
    rounds: int = 0  # rounds started; the round being trained is rounds - 1
    pending_ids: torch.Tensor | None = None  # the rest of a round cut by an interval boundary
    extra_forward_passes: int = 0  # forward passes that are not updates (policies that refresh)


class UpdateLoop:
    """N x E updates over fixed batches, round by round as the policy chooses; resumable exactly.

    `state_dict()` holds everything a resumed run needs to continue as if never stopped: the model,
    the optimizer, the policy, the loop's position (inside a round too) and the RNG states.
    """

    def __init__(self, model, optimizer, policy: Policy, data: DeviceData, batches: torch.Tensor, epochs: int,
                 autocast: Callable[[], AbstractContextManager], memory_format: torch.memory_format):
        self.model, self.optimizer, self.policy = model, optimizer, policy
        self.forward = model  # torch.compile(model) when compile=true; state lives in self.model
        self.data, self.batches = data, batches
        self.num_batches = batches.shape[0]
        self.device = batches.device
        self.epochs = epochs
        self.budget = self.num_batches * epochs
        self.autocast, self.memory_format = autocast, memory_format
        self.state = LoopState()
        self.on_update: Callable[[int], object] | None = None  # told of each update (a progress bar)
        # told of each round's choice (round, updates so far, chosen ids) before it trains (the probe)
        self.on_round: Callable[[int, int, torch.Tensor], object] | None = None

    def train_interval(self) -> list[Segment]:
        """Run updates until the next multiple of N (or the budget); return what was trained."""
        state, segments = self.state, []
        interval_end = min(self.budget, (state.updates // self.num_batches + 1) * self.num_batches)
        while state.updates < interval_end:
            if state.pending_ids is None:
                state.pending_ids = self.policy.next_round(state.rounds, self.budget - state.updates,
                                                           self.measure_batch_losses)
                if self.on_round is not None:
                    self.on_round(state.rounds, state.updates, state.pending_ids)
                state.rounds += 1
            take = min(state.pending_ids.shape[0], interval_end - state.updates)
            ids, rest = state.pending_ids[:take], state.pending_ids[take:]
            segments.append(self.train_batches(ids, state.rounds - 1))
            state.pending_ids = rest if rest.shape[0] else None
        return segments

    def state_dict(self) -> dict:
        state = self.state
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "policy": self.policy.state_dict(), "updates": state.updates, "rounds": state.rounds,
                "pending_ids": None if state.pending_ids is None else state.pending_ids.cpu(),
                "extra_forward_passes": state.extra_forward_passes, "rng_cpu": torch.get_rng_state(),
                # The training device's CUDA generator only: a resume may see fewer GPUs (a sweep job claims
                # one, a requeue lands on a smaller node), and a CPU run must not initialise CUDA here.
                "rng_cuda": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None}

    def load_state_dict(self, saved: dict) -> None:
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.policy.load_state_dict(saved["policy"])
        pending = saved["pending_ids"]
        self.state = LoopState(updates=saved["updates"], rounds=saved["rounds"],
                               pending_ids=None if pending is None else pending.to(self.device),
                               extra_forward_passes=saved["extra_forward_passes"])
        torch.set_rng_state(saved["rng_cpu"])
        if saved["rng_cuda"] is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(saved["rng_cuda"], self.device)

    def train_batches(self, batch_ids: torch.Tensor, round_index: int) -> Segment:
        """One update per batch id. No host synchronisation: ids and losses stay on the device."""
        first = self.state.updates
        rows = self.batches[batch_ids]
        losses = torch.empty(rows.shape[0], device=rows.device)
        kept = []
        epoch = first // self.num_batches  # 0-based, as Policy.reduce takes it: the record's interval - 1
        for j in range(rows.shape[0]):
            loss, n_kept = self.update(rows[j], epoch)
            losses[j] = loss
            kept.append(n_kept)
            if self.on_update is not None:
                self.on_update(1)
        self.policy.observe(batch_ids, losses)
        self.state.updates += rows.shape[0]
        return Segment(first, round_index, batch_ids, losses, kept)

    def measure_batch_losses(self) -> torch.Tensor:
        """The current loss of every fixed batch: one forward pass each, no update, counted apart."""
        losses = self.current_losses("mean")
        self.state.extra_forward_passes += self.num_batches
        return losses

    def current_losses(self, reduction: str) -> torch.Tensor:
        """Every fixed batch's loss on the current model, (N,) with reduction 'mean' (the fused mean, as
        training computes it) or (N, B) per sample with 'none'. Forward passes only, not counted.

        BatchNorm stays in training mode, as when the stored losses were measured, with its momentum
        set to 0 so the running statistics do not move: the model leaves exactly as it came.
        """
        losses = torch.empty(self.batches.shape if reduction == "none" else self.num_batches, device=self.device)
        with torch.no_grad(), frozen_batchnorm_statistics(self.model), self.autocast():
            for i in range(self.num_batches):
                x, y = self.stage(self.batches[i])
                losses[i] = F.cross_entropy(self.forward(x).float(), y, reduction=reduction)
        return losses

    def stage(self, sample_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A batch's model input and labels: a gather from the device-resident images, normalised there.

        The images are stored in the model's memory format (data.to_device), so the layout call copies
        nothing unless they are not.
        """
        x = self.data.normalise(self.data.train_images[sample_ids]).contiguous(memory_format=self.memory_format)
        return x, self.data.train_labels[sample_ids]

    def update(self, sample_ids: torch.Tensor, epoch: int) -> tuple[torch.Tensor, int]:
        x, y = self.stage(sample_ids)
        with self.autocast():
            logits = self.forward(x)
        if self.policy.per_sample:  # trimming: the per-sample losses, to keep the hardest
            per_sample = F.cross_entropy(logits.float(), y, reduction="none")
            loss, n_kept = self.policy.reduce(per_sample, epoch, self.epochs)
        else:  # the fused mean, as the authors: reduction='none' then .mean() differs by a few ulp
            loss, n_kept = F.cross_entropy(logits.float(), y), y.shape[0]
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.detach(), n_kept


@contextmanager
def frozen_batchnorm_statistics(model: torch.nn.Module):
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    saved = [(m.momentum, m.num_batches_tracked.clone() if m.num_batches_tracked is not None else None)
             for m in norms]
    for m in norms:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, (momentum, tracked) in zip(norms, saved):
            m.momentum = momentum
            if tracked is not None:
                m.num_batches_tracked.copy_(tracked)


def mean_segment_loss(segments: list[Segment]) -> float:
    """The mean loss of the batches trained in the interval: one device read."""
    total = torch.stack([seg.losses.sum() for seg in segments]).sum()
    count = sum(seg.losses.shape[0] for seg in segments)
    return float(total) / count


def build_optimizer(cfg, model: torch.nn.Module, runtime: Runtime) -> torch.optim.Optimizer:
    """SGD with cfg.optimizer's lr, momentum and weight decay (the paper's optimizer), fused on CUDA;
    or, with optimizer._target_ set, the user's optimizer class given the other optimizer keys
    (`++optimizer._target_=torch.optim.AdamW ~optimizer.momentum`)."""
    o = cfg.optimizer
    if "_target_" in o:
        return user_optimizer(o, model)
    return torch.optim.SGD(model.parameters(), lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay,
                           **runtime.optimizer_kwargs())


def user_optimizer(o, model: torch.nn.Module) -> torch.optim.Optimizer:
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    try:
        return instantiate(o, params=model.parameters())
    except InstantiationException as err:
        lines = [line for line in str(err).splitlines() if line.strip() and not line.startswith("full_key")]
        first = lines[-1].strip() if lines else type(err).__name__  # the cause, after "Error in call to target"
        raise ConfigError(f"optimizer._target_={o._target_} cannot be built ({first}): name an importable"
                          " optimizer class and pass only the arguments it takes (e.g. ~optimizer.momentum"
                          " for Adam)") from None


def build_loop(cfg, data: DeviceData, runtime: Runtime, model: torch.nn.Module | None = None) -> UpdateLoop:
    """The update loop of a run config: its fixed batches, model, optimizer and policy, in that order
    (the model's initial weights are drawn from torch's global RNG, seeded by the caller). A model
    passed in is trained as it is (the benchmark times several loops on one model)."""
    batches = make_fixed_batches(data.num_train, cfg.batch_size, drop_last=cfg.fidelity.drop_last,
                                 partition=cfg.fidelity.partition, seed=cfg.seed, device=runtime.device)
    if model is None:
        model = build_model(cfg.model.name, data.num_classes, data.channels)
        model = model.to(runtime.device, memory_format=runtime.memory_format)
    policy = build_policy(cfg, batches.shape[0], runtime.device)
    loop = UpdateLoop(model, build_optimizer(cfg, model, runtime), policy, data, batches, cfg.epochs,
                      runtime.autocast, runtime.memory_format)
    if cfg.compile:
        loop.forward = torch.compile(model)
    return loop


class Stopwatch:
    """Wall-clock seconds of the run, carried across resumes."""

    def __init__(self, already: float = 0.0):
        self.already = already
        self.started = time.perf_counter()

    @property
    def seconds(self) -> float:
        return self.already + time.perf_counter() - self.started


def device_clock(device: torch.device) -> float:
    """perf_counter once the device has finished its queued work, so a difference times that work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()
