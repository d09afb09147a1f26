"""The whole config checked before anything is written: types, ranges, choices, and combinations
that could not produce a number. Each problem is refused in one line naming the key and the fix
(ConfigError; the entry points print it and exit with code 2)."""

from __future__ import annotations

import copy
import math

import torch
from omegaconf import DictConfig, OmegaConf

from hardsamples import wandb_mirror
from hardsamples.errors import ConfigError
from hardsamples.policies import COUNT_RULES, ROUND_ORDERS, TIE_ORDERS, TrimmingPolicy

WANDB_MODES = wandb_mirror.MODES
# Every protocol key and its choices (conf/fidelity/*.yaml); True/False for the booleans.
FIDELITY_CHOICES = {
    "partition": ("dataset_order", "shuffled"), "drop_last": (True, False), "normalization": ("imagenet", "dataset"),
    "eval_batchnorm": ("train", "eval"), "eval_average": ("per_batch", "per_sample"), "eval_drop_last": (True, False),
    "hardest_count": COUNT_RULES, "tie_order": TIE_ORDERS,
    "precision": ("auto", "bf16", "fp32"), "matmul_tf32": (True, False), "cudnn_tf32": (True, False)}
METHOD_CHOICES = {"round_order": ROUND_ORDERS, "refresh": (True, False), "shape": TrimmingPolicy.shapes}
SEED_RANGE = (-(2**63), 2**64 - 1)  # what torch.manual_seed accepts
PROGRESS = ("auto", "bar", "log", "off")  # conf/config.yaml `progress`


def number(cfg: DictConfig, key: str, example: str) -> float:
    value = OmegaConf.select(cfg, key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{key}={value} is not a number: write a number, e.g. {example}")
    return value


def whole(cfg: DictConfig, key: str, example: str) -> int:
    value = OmegaConf.select(cfg, key)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{key}={value} is not a whole number: write one, e.g. {example}")
    return value


def at_least(cfg: DictConfig, key: str, minimum: int, why: str = "") -> int:
    value = whole(cfg, key, f"{key}={max(minimum, 2 * minimum)}")
    if value < minimum:
        raise ConfigError(f"{key}={value} is too small{why}: use {key}={minimum} or more")
    return value


def check_settings(cfg: DictConfig) -> None:
    """The whole config, before anything is written: types, ranges and choices, each refused in one
    line naming the key and the fix. What depends on the data (split sizes) is checked in check_data."""
    delta = number(cfg, "delta", "delta=0.5")
    if not 0.0 < delta <= 1.0:
        raise ConfigError(f"delta={cfg.delta} is outside (0, 1]: use 1.0 for Algorithm 1 or a fraction such as 0.2")
    if whole(cfg, "epochs", "epochs=10") < 1:
        raise ConfigError(f"epochs={cfg.epochs} must be at least 1: use epochs=1 or more")
    at_least(cfg, "batch_size", 2, " for BatchNorm (it needs 2 samples a batch)")
    at_least(cfg, "image_size", 2, " (images are resized to image_size x image_size)")
    seed = whole(cfg, "seed", "seed=0")
    if not SEED_RANGE[0] <= seed <= SEED_RANGE[1]:
        raise ConfigError(f"seed={seed} is outside [-2^63, 2^64 - 1], torch's seeds: pick a smaller seed, e.g. seed=0")
    users_optimizer = OmegaConf.select(cfg, "optimizer._target_") is not None  # its keys are its own
    for key, example in (("optimizer.lr", "0.005"), ("optimizer.momentum", "0.9"), ("optimizer.weight_decay", "0.0")):
        if users_optimizer and OmegaConf.select(cfg, key) is None:
            continue
        value = number(cfg, key, f"{key}={example}")
        if not math.isfinite(value) or value < 0:
            raise ConfigError(f"{key}={value} is not a finite number >= 0: use e.g. {key}={example}")
    at_least(cfg, "eval.batch_size", 1)
    if OmegaConf.select(cfg, "eval.train_subset") is not None:
        whole(cfg, "eval.train_subset", "eval.train_subset=10000")
        if cfg.eval.train_subset < 1:
            raise ConfigError(f"eval.train_subset={cfg.eval.train_subset} is too small: use a sample count of 1 or"
                              " more, or eval.train_subset=null for every training sample")
    check_choices(cfg, "fidelity", FIDELITY_CHOICES)
    check_choices(cfg, "method", METHOD_CHOICES)
    progress = OmegaConf.select(cfg, "progress", default="auto")
    if progress not in PROGRESS:
        raise ConfigError(f"progress={progress} is unknown: use auto (a bar on a terminal), bar, log (a line with"
                          " the time left every progress_every_s seconds) or off")
    if not number(cfg, "progress_every_s", "progress_every_s=60") > 0:
        raise ConfigError(f"progress_every_s={cfg.progress_every_s} must be above 0: e.g. progress_every_s=60")
    mode = OmegaConf.select(cfg, "logger.wandb.mode", default="disabled")
    if mode not in WANDB_MODES:
        raise ConfigError(f"logger.wandb.mode={mode} is unknown: use {', '.join(WANDB_MODES)}")
    if cfg.dataset.get("source") == "generated":
        at_least(cfg, "dataset.num_train", 1)
        at_least(cfg, "dataset.num_test", 1, " (a run needs test samples to measure)")
        at_least(cfg, "dataset.num_classes", 2, " (at least 2 classes to tell apart)")
        at_least(cfg, "dataset.native_size", 1)
        at_least(cfg, "dataset.channels", 1)
        number(cfg, "dataset.noise", "dataset.noise=0.25")
        number(cfg, "dataset.hard_fraction", "dataset.hard_fraction=0.1")
    if cfg.dataset.get("source") == "image_folder":  # the folder itself is checked when it is read (data.py)
        at_least(cfg, "dataset.decode_workers", 0)
        if OmegaConf.select(cfg, "dataset.shuffle_seed") is not None:
            whole(cfg, "dataset.shuffle_seed", "dataset.shuffle_seed=0")


def check_choices(cfg: DictConfig, group: str, choices: dict) -> None:
    """Each key of the group that is set must hold one of its choices (a boolean must be a boolean)."""
    node = cfg.get(group) or {}
    for key, allowed in choices.items():
        if key not in node:
            continue
        value = node[key]
        if isinstance(value, bool) != isinstance(allowed[0], bool) or value not in allowed:
            shown = ", ".join(str(a).lower() if isinstance(a, bool) else str(a) for a in allowed)
            raise ConfigError(f"{group}.{key}={value} is not one of its choices: use {shown}")


def check_data(cfg: DictConfig, num_train: int, num_test: int) -> None:
    """Combinations that could not produce a number: a split smaller than one evaluation batch under
    fidelity.eval_drop_last (every batch dropped, so its metrics would be NaN), an empty split."""
    if cfg.batch_size > num_train:
        raise ConfigError(f"batch_size={cfg.batch_size} is larger than the {num_train} training"
                          f" samples of {cfg.dataset.name}: pick batch_size <= {num_train}")
    if num_test < 1:
        raise ConfigError(f"the test split of {cfg.dataset.name} is empty: pick a dataset with test samples")
    if not cfg.fidelity.eval_drop_last:
        return
    fix = "or fidelity.eval_drop_last=false to keep the last partial batch"
    if num_test < cfg.batch_size:
        raise ConfigError(f"the test split has {num_test} samples, fewer than one evaluation batch of"
                          f" {cfg.batch_size} under fidelity.eval_drop_last=true (its metrics would be NaN):"
                          f" use batch_size <= {num_test}, {fix}")
    subset = cfg.eval.train_subset
    if subset is not None and subset < min(num_train, cfg.batch_size):
        raise ConfigError(f"eval.train_subset={subset} is fewer than one evaluation batch of {cfg.batch_size}"
                          f" under fidelity.eval_drop_last=true (its metrics would be NaN): use"
                          f" eval.train_subset >= {cfg.batch_size} or null, {fix}")


def check_single_sample_batches(cfg: DictConfig, model: torch.nn.Module, data) -> None:
    """Under eval_batchnorm=train every evaluation batch goes through BatchNorm's batch statistics; a
    last batch of one sample fails there when a BatchNorm layer then sees a single value per channel
    (a small image at a deep stage). Tried once on a copy of the model, before anything is written."""
    if cfg.fidelity.eval_batchnorm != "train":
        return
    size = cfg.batch_size
    splits = [("test split", int(data.test_labels.shape[0])), ("training set", data.num_train)]
    if cfg.eval.train_subset is not None and cfg.eval.train_subset < data.num_train:
        splits.append(("eval.train_subset", int(cfg.eval.train_subset)))
    ones = [name for name, n in splits if n % size == 1]
    if not ones:
        return
    probe = copy.deepcopy(model).train()
    try:
        with torch.no_grad():
            probe(data.normalise(data.test_images[:1]))
    except ValueError as err:
        if "Expected more than 1 value per channel" not in str(err):
            raise
        raise ConfigError(f"the {ones[0]}'s last evaluation batch holds 1 sample, which BatchNorm in train mode"
                          f" (fidelity.eval_batchnorm=train) cannot evaluate at image_size={cfg.image_size}:"
                          f" use a batch_size that leaves more than one sample in the last batch, a larger"
                          f" image_size, or fidelity.eval_batchnorm=eval") from None
    finally:
        del probe
