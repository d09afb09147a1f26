"""Loss and top-1 of the current model on a split, under either protocol.

paper_code: BatchNorm keeps batch statistics (the authors never call model.eval()), forward passes
in batches of the training batch size, metrics the mean of per-batch values, last partial batch
dropped. clean: eval mode under inference_mode, forward passes in batches of eval.batch_size, exact
sample-weighted metrics over every sample. Both compute per-sample losses and hits on the device and
read them back once.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from hardsamples.data import DeviceData


@dataclass
class EvalSettings:
    batchnorm: str  # train | eval
    average: str  # per_batch | per_sample
    drop_last: bool
    forward_batch_size: int  # paper_code: the training batch size (BatchNorm sees these batches)
    metric_batch_size: int  # the batches whose accuracies give the paper's +/- interval
    autocast: Callable[[], AbstractContextManager]
    memory_format: torch.memory_format


@dataclass
class EvalResult:
    loss: float
    top1: float  # percent
    batch_top1: list[float]  # percent, one per metric batch
    batch_sizes: list[int]


def evaluate(model: torch.nn.Module, data: DeviceData, images: torch.Tensor, labels: torch.Tensor,
             settings: EvalSettings) -> EvalResult:
    n = labels.shape[0]
    if settings.drop_last:
        n -= n % settings.metric_batch_size
    losses = torch.empty(n, device=labels.device)
    hits = torch.empty(n, device=labels.device)
    was_training = model.training
    batch_statistics = settings.batchnorm == "train"
    model.train(batch_statistics)
    # paper_code: no_grad, since BatchNorm in training mode updates its running buffers, and a buffer
    # written under inference_mode could not be used by autograd afterwards. clean (eval mode) writes
    # nothing to the model, so it takes inference_mode: no version counters, no view tracking.
    grad_off = torch.no_grad() if batch_statistics else torch.inference_mode()
    with grad_off, settings.autocast():
        for start in range(0, n, settings.forward_batch_size):
            stop = min(n, start + settings.forward_batch_size)
            x = data.normalise(images[start:stop]).contiguous(memory_format=settings.memory_format)
            logits = model(x).float()
            losses[start:stop] = F.cross_entropy(logits, labels[start:stop], reduction="none")
            hits[start:stop] = (logits.argmax(dim=1) == labels[start:stop]).float()
    model.train(was_training)
    return summarise(losses.double().cpu(), hits.double().cpu(), settings)


def summarise(losses: torch.Tensor, hits: torch.Tensor, settings: EvalSettings) -> EvalResult:
    size = settings.metric_batch_size
    batch_loss = torch.stack([chunk.mean() for chunk in losses.split(size)])
    batch_top1 = torch.stack([chunk.mean() for chunk in hits.split(size)])
    sizes = [len(chunk) for chunk in hits.split(size)]
    if settings.average == "per_batch":
        loss, top1 = batch_loss.mean(), batch_top1.mean()
    else:
        loss, top1 = losses.mean(), hits.mean()
    return EvalResult(float(loss), 100.0 * float(top1), (100.0 * batch_top1).tolist(), sizes)


def eval_settings(cfg, runtime) -> EvalSettings:
    """How a run under cfg evaluates each interval (fidelity.eval_*), on runtime's device."""
    paper_batches = cfg.fidelity.eval_batchnorm == "train"  # BatchNorm then sees the training batch size
    return EvalSettings(
        batchnorm=cfg.fidelity.eval_batchnorm, average=cfg.fidelity.eval_average,
        drop_last=cfg.fidelity.eval_drop_last,
        forward_batch_size=cfg.batch_size if paper_batches else cfg.eval.batch_size,
        metric_batch_size=cfg.batch_size, autocast=runtime.autocast, memory_format=runtime.memory_format)


def final_evaluation(model, data: DeviceData, settings: EvalSettings, train: EvalResult,
                     test: EvalResult) -> tuple[EvalResult, EvalResult]:
    """The final model as the authors' metrics.py evaluated it: every sample in batches of batch_size,
    shuffle=False, the last partial batch its own batch; the paper's +/- is a t-interval over these.
    Without drop_last the interval kind already is exactly that, and is reused."""
    if not settings.drop_last:
        return train, test
    final = replace(settings, average="per_batch", drop_last=False)
    return (evaluate(model, data, data.train_images, data.train_labels, final),
            evaluate(model, data, data.test_images, data.test_labels, final))
