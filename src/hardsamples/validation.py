"""The whole config checked before anything is written: types, ranges, choices, and combinations
that could not produce a number. Each problem is refused in one line naming the key and the fix
(ConfigError; the entry points print it and exit with code 2)."""

from __future__ import annotations

import copy
import math

import torch
from omegaconf import DictConfig, OmegaConf

from hardsamples import wandb_mirror
from hardsamples.errors import ConfigError, exception_line
from hardsamples.policies import COUNT_RULES, ROUND_ORDERS, TIE_ORDERS, TrimmingPolicy

WANDB_MODES = wandb_mirror.MODES
# Every protocol key and its choices (conf/fidelity/*.yaml); True/False for the booleans.
FIDELITY_CHOICES = {
    "partition": ("dataset_order", "shuffled"), "drop_last": (True, False), "normalization": ("imagenet", "dataset"),
    "eval_batchnorm": ("train", "eval"), "eval_average": ("per_batch", "per_sample"), "eval_drop_last": (True, False),
    "hardest_count": COUNT_RULES, "tie_order": TIE_ORDERS,
    "precision": ("auto", "bf16", "fp32"), "matmul_tf32": (True, False), "cudnn_tf32": (True, False)}
METHOD_CHOICES = {"round_order": ROUND_ORDERS, "refresh": (True, False), "shape": TrimmingPolicy.shapes}
# Top-level keys and record.* with a fixed set of values: a string such as `no` or `maybe` is truthy in
# Python, so record.checkpoint=no would still write checkpoints and channels_last=maybe would mean true.
RUN_CHOICES = {"channels_last": ("auto", True, False), "compile": (False, True),
               "precision": ("auto", "bf16", "fp32")}
RECORD_CHOICES = {"trace": (False, True), "checkpoint": (True, False), "keep_checkpoint": (False, True),
                  "round_losses": (False, True)}
SEED_RANGE = (-(2**63), 2**64 - 1)  # what torch.manual_seed accepts
PROGRESS = ("auto", "bar", "log", "off")  # conf/config.yaml `progress`
SPLIT_SEED_RANGE = (0, 2**32 - 1)  # what numpy's RandomState (scikit-learn's random_state) accepts


def number(cfg: DictConfig, key: str, example: str) -> float:
    value = OmegaConf.select(cfg, key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{key}={value} is not a number: write a number, e.g. {example}")
    return value


def whole(cfg: DictConfig, key: str, example: str) -> int:
    """A whole number written as one: 32.0 (or 1e9) is refused, since the run would carry the float into
    shapes and counts (and into its recorded config) where an integer belongs."""
    value = OmegaConf.select(cfg, key)
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        raise ConfigError(f"{key}={value} is not written as a whole number: write {key}={int(value)}")
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{key}={value} is not a whole number: write one, e.g. {example}")
    return value


def at_most(cfg: DictConfig, key: str, value: float, limit_key: str) -> None:
    """A size beyond limits.<name> is refused as a likely typo; the limit names how to raise it on purpose."""
    limit = OmegaConf.select(cfg, f"limits.{limit_key}")
    if limit is not None and value > limit:
        raise ConfigError(f"{key}={value} is above limits.{limit_key}={limit} (a run this large is more likely a typo"
                          f" than meant): use a smaller {key}, or raise the limit deliberately with"
                          f" limits.{limit_key}=<value>")


def at_least(cfg: DictConfig, key: str, minimum: int, why: str = "") -> int:
    value = whole(cfg, key, f"{key}={max(minimum, 2 * minimum)}")
    if value < minimum:
        raise ConfigError(f"{key}={value} is too small{why}: use {key}={minimum} or more")
    return value


def check_settings(cfg: DictConfig) -> None:
    """The whole config, before anything is written: types, ranges and choices, each refused in one
    line naming the key and the fix. What depends on the data (split sizes) is checked in check_data."""
    check_limits(cfg)
    delta = number(cfg, "delta", "delta=0.5")
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
        value = number(cfg, key, f"{key}={example}")
        if not math.isfinite(value) or value < 0:
            raise ConfigError(f"{key}={value} is not a finite number >= 0: use e.g. {key}={example}")
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
    if not number(cfg, "progress_every_s", "progress_every_s=60") > 0:
        raise ConfigError(f"progress_every_s={cfg.progress_every_s} must be above 0: e.g. progress_every_s=60")
    check_choices(cfg, "record", RECORD_CHOICES)
    check_top_level_choices(cfg)
    check_device_name(cfg.device)
    mode = OmegaConf.select(cfg, "logger.wandb.mode", default="disabled")
    if mode not in WANDB_MODES:
        raise ConfigError(f"logger.wandb.mode={mode} is unknown: use {', '.join(WANDB_MODES)}")
    check_dataset_settings(cfg)


def check_dataset_settings(cfg: DictConfig) -> None:
    """The keys of the chosen dataset; the data themselves are checked once read (data.check_host_data)."""
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
        if not 0 <= number(cfg, "dataset.noise", "dataset.noise=0.25") < math.inf:
            raise ConfigError(f"dataset.noise={cfg.dataset.noise} is not a finite number >= 0: use e.g."
                              " dataset.noise=0.25")
        if not 0 <= number(cfg, "dataset.hard_fraction", "dataset.hard_fraction=0.1") <= 1:
            raise ConfigError(f"dataset.hard_fraction={cfg.dataset.hard_fraction} is outside [0, 1]: pick a"
                              " fraction, e.g. dataset.hard_fraction=0.1")
        whole(cfg, "dataset.generator_seed", "dataset.generator_seed=0")
    if source == "sklearn":
        fraction = number(cfg, "dataset.test_fraction", "dataset.test_fraction=0.25")
        if not 0 < fraction < 1:
            raise ConfigError(f"dataset.test_fraction={fraction} is outside (0, 1): the share of the images held out"
                              " for testing, e.g. dataset.test_fraction=0.25")
        split_seed = whole(cfg, "dataset.split_seed", "dataset.split_seed=0")
        if not SPLIT_SEED_RANGE[0] <= split_seed <= SPLIT_SEED_RANGE[1]:
            raise ConfigError(f"dataset.split_seed={split_seed} is outside [0, 2^32 - 1], scikit-learn's seeds: pick"
                              " e.g. dataset.split_seed=0")
    if source == "image_folder":  # the folder itself is checked when it is read (data.py)
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
            value = number(cfg, f"limits.{key}", f"limits.{key}=1000")
            if not value > 0:
                raise ConfigError(f"limits.{key}={value} is not a number > 0: raise the limit, or null for none")


def check_top_level_choices(cfg: DictConfig) -> None:
    for key, allowed in RUN_CHOICES.items():
        value = cfg.get(key)
        if not any(value == a and isinstance(value, bool) == isinstance(a, bool) for a in allowed):
            shown = ", ".join(str(a).lower() if isinstance(a, bool) else str(a) for a in allowed)
            raise ConfigError(f"{key}={value} is not one of its choices: use {shown}")


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
        if key not in node:
            continue
        value = node[key]
        if not any(value == a and isinstance(value, bool) == isinstance(a, bool) for a in allowed):
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


def check_loop(cfg: DictConfig, loop) -> None:
    """What only a built model and optimizer can tell, tried on copies before anything is written: the model
    takes the run's images, the user's optimizer can step on it, and BatchNorm can evaluate the last batch."""
    check_model_takes_images(cfg, loop.model, loop.data)
    check_users_optimizer_steps(cfg, loop)
    check_single_sample_batches(cfg, loop.model, loop.data)


def check_model_takes_images(cfg: DictConfig, model: torch.nn.Module, data) -> None:
    """One forward pass of two test images through a copy in eval mode: a model built for another input (a
    ViT made for 224 px at image_size=16) fails here in one line, not at the first update."""
    probe = copy.deepcopy(model).eval()
    try:
        with torch.no_grad():
            probe(data.normalise(data.test_images[:2]))
    except Exception as err:  # noqa: BLE001 - timm's models raise many kinds for an input they cannot take
        shape = tuple(data.test_images.shape[1:])
        raise ConfigError(f"model.name={cfg.model.name} cannot take images of shape {shape} (C, H, W)"
                          f" ({exception_line(err)[:300]}): pick the image_size it is built for (e.g."
                          " image_size=224 for a *_224 model) or another model") from None
    finally:
        del probe


def check_users_optimizer_steps(cfg: DictConfig, loop) -> None:
    """A user's optimizer (optimizer._target_) takes one step on a copy of the model: an optimizer whose step
    needs a closure (LBFGS) or sparse gradients (SparseAdam) fails here in one line, not in the loop. The
    RNG state is restored afterwards, so the run trains exactly as without the probe."""
    if OmegaConf.select(cfg, "optimizer._target_") is None:
        return
    from hardsamples.loop import user_optimizer

    model = copy.deepcopy(loop.model)
    devices = [loop.device] if loop.device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices):
            optimizer = user_optimizer(cfg.optimizer, model)
            x, y = loop.stage(loop.batches[0])
            torch.nn.functional.cross_entropy(model(x).float(), y).backward()
            optimizer.step()
    except ConfigError:
        raise
    except Exception as err:  # noqa: BLE001 - the user's optimizer class raises what it raises
        raise ConfigError(f"optimizer._target_={cfg.optimizer._target_} cannot train this model"
                          f" ({exception_line(err)[:300]}): use an optimizer whose step() needs no closure and"
                          " takes dense gradients, e.g. ++optimizer._target_=torch.optim.AdamW") from None
    finally:
        del model


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
