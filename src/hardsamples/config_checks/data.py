"""The data, checked once they are read and before a model is built or anything written: what every
source must give (torchvision, scikit-learn, generated, an image folder, your own code), and the split
sizes a run's batches need."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from omegaconf import DictConfig, OmegaConf

from hardsamples.errors import ConfigError

if TYPE_CHECKING:
    from hardsamples.data import HostData


def check_host_data(host: HostData, cfg) -> None:
    """What every source must give, whatever produced it: uint8 NCHW images with C in {1, 3} (or the
    configured dataset.channels), H, W >= 1, one image shape for both splits; integer labels, one per
    image, in 0..num_classes-1; at least two classes, both among the training labels, and no more than
    limits.num_classes. Checked once the data are read, before a model is built or anything written."""
    name = cfg.dataset.name
    shapes = []
    for split, images, labels in (("train", host.train_images, host.train_labels),
                                  ("test", host.test_images, host.test_labels)):
        check_images(name, split, images, cfg.dataset.get("channels"))
        if labels.shape != (images.shape[0],) or labels.dtype != np.int64:
            raise ConfigError(f"{name}'s {split} split has labels of shape {labels.shape} for {images.shape[0]}"
                              " images: one integer class id per image")
        if images.shape[0] == 0:
            raise ConfigError(f"{name}'s {split} split is empty: a run needs images to train on and to test")
        bad = labels[(labels < 0) | (labels >= host.num_classes)]
        if bad.size:
            raise ConfigError(f"{name}'s {split} split has label {int(bad[0])}, outside its classes 0.."
                              f"{host.num_classes - 1}: give every split the same classes, numbered from 0")
        shapes.append(images.shape[1:])
    if shapes[0] != shapes[1]:
        raise ConfigError(f"{name}'s train images are {shapes[0]} (C, H, W) and its test images {shapes[1]}: give"
                          " both splits images of one shape")
    limit = OmegaConf.select(cfg, "limits.num_classes")
    if limit is not None and host.num_classes > limit:
        raise ConfigError(f"{name} has {host.num_classes} classes (largest label + 1), above limits.num_classes="
                          f"{limit}: check the labels, or raise the limit deliberately with limits.num_classes=<n>")
    present = np.unique(host.train_labels)
    if host.num_classes < 2 or present.size < 2:
        raise ConfigError(f"{name} has {present.size} class(es) among its training labels: a classifier needs at"
                          " least 2 classes to tell apart (with one, every run would end at loss 0 and top-1 100%)")
    untrained = np.setdiff1d(np.unique(host.test_labels), present)
    if untrained.size:
        raise ConfigError(f"{name}'s test split has label {int(untrained[0])}, which no training image has (a class"
                          " the model could never learn): give every test class training images too")


def check_images(name: str, split: str, images: np.ndarray, channels) -> None:
    """uint8 (N, C, H, W), H and W >= 1, C as configured (dataset.channels) or else 1 or 3."""
    shape = tuple(images.shape)
    if images.dtype != np.uint8 or images.ndim != 4:
        raise ConfigError(f"{name}'s {split} images are {images.dtype} of shape {shape}: uint8 (N, C, H, W) expected")
    _, c, h, w = shape
    allowed = (channels,) if channels is not None else (1, 3)
    if c in allowed and h >= 1 and w >= 1:
        return
    if shape[3] in allowed and c not in allowed:
        raise ConfigError(f"{name}'s {split} images have shape {shape}, channels last (N, H, W, C): give them as"
                          " (N, C, H, W), e.g. x.permute(0, 3, 1, 2) for a tensor or x.transpose(0, 3, 1, 2) for"
                          " a numpy array")
    if h < 1 or w < 1 or c < 1:
        raise ConfigError(f"{name}'s {split} images have shape {shape} (N, C, H, W): every image needs at least one"
                          " channel and one pixel")
    raise ConfigError(f"{name}'s {split} images have {c} channels (shape {shape}, N, C, H, W): give 1 (grey) or 3"
                      f" (RGB) channels, or pass ++dataset.channels={c} if {c} is meant")


def check_split_sizes(cfg: DictConfig, num_train: int, num_test: int) -> None:
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
