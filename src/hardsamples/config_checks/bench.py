"""The `make bench` settings (conf/bench.yaml composed), checked before the bench builds anything: each
problem refused in one line naming the key and the fix."""

from __future__ import annotations

import timm
from omegaconf import DictConfig, ListConfig, OmegaConf

from hardsamples.config_checks.settings import check_device_name
from hardsamples.config_checks.values import at_least, non_negative, one_of, require_number
from hardsamples.errors import ConfigError
from hardsamples.layout import group_choices


def check_bench_settings(s: DictConfig, delta: float) -> None:
    """Every value the bench reads, before it builds anything (delta: the one it times against 1.0)."""
    for key, minimum, why in (("image_size", 2, ""), ("batch_size", 2, " for BatchNorm (2 samples a batch)"),
                              ("num_batches", int(1 / delta), f" (delta {delta} trains int({delta} N) >= 1 batches)"),
                              ("repeats", 1, ""), ("eval_batch_size", 1, ""), ("native_size", 1, ""),
                              ("projection.image_size", 2, ""), ("projection.batch_size", 2, ""),
                              ("projection.epochs", 1, ""), ("projection.deltas", 1, ""), ("projection.seeds", 1, "")):
        at_least(s, key, minimum, why)
    for key in ("lr", "momentum"):
        non_negative(s, key, "0.005")
    if s.threads is not None:
        at_least(s, "threads", 1, " (null: torch's default)")
    if s.peak_tflops is not None and require_number(s, "peak_tflops", "peak_tflops=989.4") <= 0:
        raise ConfigError(f"peak_tflops={s.peak_tflops} must be positive: a dense bf16 peak in TFLOP/s, or null")
    one_of("compile", s.compile, (False, True))
    check_device_name(s.device)
    if str(s.device) == "mps":  # its timer synchronises CUDA only
        raise ConfigError("device=mps is not a device the bench runs on: use auto, cpu or cuda[:i]")
    if not str(s.out_dir):
        raise ConfigError("out_dir= is empty: name the directory for the table, e.g. out_dir=results/bench")
    check_list(s, "authors_native_sizes", "authors_native_sizes=[8]")
    for i in range(len(s.authors_native_sizes)):
        at_least(s, f"authors_native_sizes.{i}", 1)
    check_list(s, "runtimes", "runtimes=[paper_code,clean]")
    protocols = group_choices("fidelity")
    if not s.runtimes or any(r not in protocols for r in s.runtimes) or len(set(s.runtimes)) < len(s.runtimes):
        raise ConfigError(f"runtimes={list(s.runtimes)} must name each protocol once, from {', '.join(protocols)}:"
                          " e.g. runtimes=[paper_code,clean]")
    check_list(s, "models", "models=[resnet18]")
    if not s.models:
        raise ConfigError("models=[] names no model: name one or more, e.g. models=[resnet18]")
    for where, name in [*(("in models", m) for m in s.models), ("paper_model", s.paper_model)]:
        if not isinstance(name, str) or not timm.is_model(name):
            raise ConfigError(f"{name} ({where}) is not a timm model: use one of conf/model/ (resnet18, ...) or"
                              " any name timm.list_models() lists")
    for dataset in ("cifar10", "stl10"):  # part 3's shapes and part 5's interval are theirs
        if len(OmegaConf.select(s, f"projection.datasets.{dataset}", default=None) or []) != 2:
            raise ConfigError(f"projection.datasets.{dataset} must be [train samples, test samples], e.g. "
                              f"projection.datasets.{dataset}=[50000,10000]")


def check_list(s: DictConfig, key: str, example: str) -> None:
    if not isinstance(s[key], ListConfig):
        raise ConfigError(f"{key}={s[key]} is not a list: write it in brackets, e.g. {example}")
