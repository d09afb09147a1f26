"""The composed run config, checked before anything is written: types, ranges, limits, choices, and
combinations that could not produce a number. Each problem is refused in one line naming the key and
the fix (ConfigError; the entry points print it and exit with code 2). The builders (runtime, data,
policies, the W&B mirror) take a config checked here and do not check it again; a policy adds only the
rules its own method has (a trimming q in (0, 1], delta = 1 where every batch trains, k >= 1 under
float_int, which needs N)."""

from __future__ import annotations

import torch
from omegaconf import DictConfig, OmegaConf

from hardsamples import wandb_mirror
from hardsamples.config_checks.values import at_least, at_most, non_negative, one_of, require_number, whole
from hardsamples.data import NORMALIZATIONS
from hardsamples.errors import ConfigError
from hardsamples.policies import COUNT_RULES, ROUND_ORDERS, TIE_ORDERS, TrimmingPolicy

WANDB_MODES = wandb_mirror.MODES
PRECISIONS = ("auto", "bf16", "fp32")  # precision and fidelity.precision (runtime.resolve_precision)
PARTITIONS = ("dataset_order", "shuffled")  # fidelity.partition (data.make_fixed_batches)
# Every fidelity key and its choices (conf/fidelity/*.yaml); True/False for the booleans.
FIDELITY_CHOICES = {
    "partition": PARTITIONS, "drop_last": (True, False), "normalization": NORMALIZATIONS,
    "eval_batchnorm": ("train", "eval"), "eval_average": ("per_batch", "per_sample"), "eval_drop_last": (True, False),
    "hardest_count": COUNT_RULES, "tie_order": TIE_ORDERS,
    "precision": PRECISIONS, "matmul_tf32": (True, False), "cudnn_tf32": (True, False)}
METHOD_CHOICES = {"round_order": ROUND_ORDERS, "refresh": (True, False), "shape": TrimmingPolicy.shapes}
# Top-level keys and record.* with a fixed set of values: a string such as `no` or `maybe` is truthy in
# Python, so record.checkpoint=no would still write checkpoints and channels_last=maybe would mean true.
RUN_CHOICES = {"channels_last": ("auto", True, False), "compile": (False, True),
               "precision": PRECISIONS}
RECORD_CHOICES = {"trace": (False, True), "checkpoint": (True, False), "keep_checkpoint": (False, True),
                  "round_losses": (False, True)}
SEED_RANGE = (-(2**63), 2**64 - 1)  # what torch.manual_seed accepts
PROGRESS = ("auto", "bar", "log", "off")  # conf/config.yaml `progress`
SPLIT_SEED_RANGE = (0, 2**32 - 1)  # what numpy's RandomState (scikit-learn's random_state) accepts


def check_settings(cfg: DictConfig) -> None:
    """The whole config, before anything is written: types, ranges and choices, each refused in one
    line naming the key and the fix. What depends on the data is checked once they are read
    (config_checks.data)."""
    check_limits(cfg)
    delta = require_number(cfg, "delta", "delta=0.5")
    if not 0.0 < delta <= 1.0:
        raise ConfigError(f"delta={cfg.delta} is outside (0, 1]: use 1.0 for Algorithm 1 or a fraction such as 0.2")
    if whole(cfg, "epochs", "epochs=10") < 1:
        raise ConfigError(f"epochs={cfg.epochs} must be at least 1: use epochs=1 or more")
    at_most(cfg, "epochs", cfg.epochs, "epochs")
    at_least(cfg, "batch_size", 2, " for BatchNorm (it needs 2 samples a batch)")
    at_most(cfg, "batch_size", cfg.batch_size, "batch_size")
    at_least(cfg, "image_size", 2, " (images are resized to image_size x image_size)")
    at_most(cfg, "image_size", cfg.image_size, "image_size")
    seed = whole(cfg, "seed", "seed=0")
    if not SEED_RANGE[0] <= seed <= SEED_RANGE[1]:
        raise ConfigError(f"seed={seed} is outside [-2^63, 2^64 - 1], torch's seeds: pick a smaller seed, e.g. seed=0")
    users_optimizer = OmegaConf.select(cfg, "optimizer._target_") is not None  # its keys are its own
    for key, example in (("optimizer.lr", "0.005"), ("optimizer.momentum", "0.9"), ("optimizer.weight_decay", "0.0")):
        if users_optimizer and OmegaConf.select(cfg, key) is None:
            continue
        non_negative(cfg, key, example)
    if not users_optimizer and cfg.optimizer.momentum >= 1:  # SGD's velocity then grows without bound
        raise ConfigError(f"optimizer.momentum={cfg.optimizer.momentum} is not below 1 (SGD's steps would grow"
                          " without bound): use a momentum in [0, 1), e.g. optimizer.momentum=0.9")
    if OmegaConf.select(cfg, "optimizer.lr") is not None:
        at_most(cfg, "optimizer.lr", cfg.optimizer.lr, "lr")
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
    if not require_number(cfg, "progress_every_s", "progress_every_s=60") > 0:
        raise ConfigError(f"progress_every_s={cfg.progress_every_s} must be above 0: e.g. progress_every_s=60")
    check_choices(cfg, "record", RECORD_CHOICES)
    check_top_level_choices(cfg)
    check_device_name(cfg.device)
    mode = OmegaConf.select(cfg, "logger.wandb.mode", default="disabled")
    if mode not in WANDB_MODES:
        raise ConfigError(f"logger.wandb.mode={mode} is unknown: use {', '.join(WANDB_MODES)}")
    check_dataset_settings(cfg)


def check_dataset_settings(cfg: DictConfig) -> None:
    """The keys of the chosen dataset; the data themselves are checked once read (config_checks.data)."""
    source = cfg.dataset.get("source")
    if cfg.dataset.get("subset") is not None:  # a stratified share of the training split (data.train_subset)
        at_least(cfg, "dataset.subset", 2, " (a subset keeps at least one image of each class)")
    if cfg.dataset.get("subset_seed") is not None:
        whole(cfg, "dataset.subset_seed", "dataset.subset_seed=0")
    if "download" in cfg.dataset:
        check_choices(cfg, "dataset", {"download": (False, True)})
    if source == "generated":
        for key in ("num_train", "num_test"):
            at_least(cfg, f"dataset.{key}", 1, " (a run needs test samples to measure)" if key == "num_test" else "")
            at_most(cfg, f"dataset.{key}", cfg.dataset[key], "samples")
        at_least(cfg, "dataset.num_classes", 2, " (at least 2 classes to tell apart)")
        at_most(cfg, "dataset.num_classes", cfg.dataset.num_classes, "num_classes")
        at_least(cfg, "dataset.native_size", 1)
        at_most(cfg, "dataset.native_size", cfg.dataset.native_size, "image_size")
        at_least(cfg, "dataset.channels", 1)
        at_most(cfg, "dataset.channels", cfg.dataset.channels, "channels")
        non_negative(cfg, "dataset.noise", "0.25")
        if not 0 <= require_number(cfg, "dataset.hard_fraction", "dataset.hard_fraction=0.1") <= 1:
            raise ConfigError(f"dataset.hard_fraction={cfg.dataset.hard_fraction} is outside [0, 1]: pick a"
                              " fraction, e.g. dataset.hard_fraction=0.1")
        whole(cfg, "dataset.generator_seed", "dataset.generator_seed=0")
    if source == "sklearn":
        fraction = require_number(cfg, "dataset.test_fraction", "dataset.test_fraction=0.25")
        if not 0 < fraction < 1:
            raise ConfigError(f"dataset.test_fraction={fraction} is outside (0, 1): the share of the images held out"
                              " for testing, e.g. dataset.test_fraction=0.25")
        split_seed = whole(cfg, "dataset.split_seed", "dataset.split_seed=0")
        if not SPLIT_SEED_RANGE[0] <= split_seed <= SPLIT_SEED_RANGE[1]:
            raise ConfigError(f"dataset.split_seed={split_seed} is outside [0, 2^32 - 1], scikit-learn's seeds: pick"
                              " e.g. dataset.split_seed=0")
    if source == "image_folder":  # the folder itself is checked when it is read (own_data.py)
        at_least(cfg, "dataset.decode_workers", 0)
        if OmegaConf.select(cfg, "dataset.shuffle_seed") is not None:
            whole(cfg, "dataset.shuffle_seed", "dataset.shuffle_seed=0")
        native = OmegaConf.select(cfg, "dataset.native_size")  # its type and channels: checked as it is read
        if isinstance(native, int) and not isinstance(native, bool):
            at_most(cfg, "dataset.native_size", native, "image_size")
    if source == "python" and OmegaConf.select(cfg, "dataset.channels") is not None:
        at_least(cfg, "dataset.channels", 1)
        at_most(cfg, "dataset.channels", cfg.dataset.channels, "channels")


def check_limits(cfg: DictConfig) -> None:
    """limits.* are themselves whole numbers or numbers (null: no limit)."""
    for key in (OmegaConf.select(cfg, "limits") or {}):
        if OmegaConf.select(cfg, f"limits.{key}") is not None:
            value = require_number(cfg, f"limits.{key}", f"limits.{key}=1000")
            if not value > 0:
                raise ConfigError(f"limits.{key}={value} is not a number > 0: raise the limit, or null for none")


def check_top_level_choices(cfg: DictConfig) -> None:
    for key, allowed in RUN_CHOICES.items():
        one_of(key, cfg.get(key), allowed)


def check_device_name(name) -> None:
    """auto, cpu, cuda or cuda:<i>, mps: what a run can train on (torch also names meta, xla, ... devices)."""
    text = str(name)
    kind, _, index = text.partition(":")
    if not isinstance(name, str) or kind not in ("auto", "cpu", "cuda", "mps") or (index and not index.isdigit()) \
            or (index and kind != "cuda"):
        raise ConfigError(f"device={name} is not a device a run can train on: use auto, cpu, cuda or cuda:<index>")
    if kind == "cuda" and index and torch.cuda.is_available() and int(index) >= torch.cuda.device_count():
        raise ConfigError(f"device={name} but only {torch.cuda.device_count()} CUDA device(s) are visible: use"
                          f" device=cuda:0 .. cuda:{torch.cuda.device_count() - 1}, or device=auto")


def check_choices(cfg: DictConfig, group: str, choices: dict) -> None:
    """Each key of the group that is set must hold one of its choices (a boolean must be a boolean)."""
    node = cfg.get(group) or {}
    for key, allowed in choices.items():
        if key in node:
            one_of(f"{group}.{key}", node[key], allowed)
