"""Datasets as uint8 tensors on the training device, resized once to the model's image size.

Every dataset, real or generated, yours or a benchmark, ends as a `DeviceData`: images (n, C, S, S) uint8 and labels
(n,) int64 for train and test, on the training device. Batches are index tensors into it, so the
hot loop never touches the CPU: a batch is a gather, a cast and a normalisation.
"""

from __future__ import annotations

import gzip
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from omegaconf import DictConfig

from hardsamples.config_checks.data import check_host_data
from hardsamples.errors import ConfigError, last_line
from hardsamples.registry import Registry

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
NORMALIZATIONS = ("imagenet", "dataset")  # fidelity.normalization: ImageNet's statistics, or the training split's
# The gzipped idx files torchvision's FashionMNIST reads (it wants them unpacked in <root>/FashionMNIST/raw).
FASHION_MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                       "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


@dataclass
class HostData:
    """A dataset as loaded from its source: uint8 NCHW numpy arrays and int64 labels."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    num_classes: int
    hard_mask: np.ndarray | None = None  # synthetic only: which training samples are hard


@dataclass
class DeviceData:
    train_images: torch.Tensor  # (n, C, S, S) uint8
    train_labels: torch.Tensor  # (n,) int64
    test_images: torch.Tensor
    test_labels: torch.Tensor
    num_classes: int
    mean: torch.Tensor  # (1, C, 1, 1) float32, in [0, 1] units
    std: torch.Tensor

    @property
    def channels(self) -> int:
        return self.train_images.shape[1]

    @property
    def num_train(self) -> int:
        return self.train_images.shape[0]

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images -> float32 normalised; runs on the device inside the hot loop.

        In place on a fresh float32 copy: the same three operations as (x / 255 - mean) / std, bit
        for bit, without allocating a batch-sized buffer for each. The layout of `images` is kept.
        """
        return images.to(torch.float32, copy=True).div_(255.0).sub_(self.mean).div_(self.std)


# Where a dataset config's `source` is read from: source -> loader(cfg.dataset, data_dir) -> HostData.
# A new kind of source is a loader registered under its name (@register_source) and a conf/dataset file;
# own_data.py registers `image_folder` and `python` this way.
DATASET_SOURCES = Registry("dataset source", "conf/dataset/<name>.yaml: source")
register_source = DATASET_SOURCES.register  # @register_source(source): a loader (cfg.dataset, data_dir) -> HostData


def load_host_data(cfg) -> HostData:
    """The dataset of cfg.dataset, from whichever source, checked as every source is (config_checks.data)."""
    import hardsamples.own_data  # noqa: F401  registers the image_folder and python sources

    host = DATASET_SOURCES.find(cfg.dataset.source)(cfg.dataset, Path(cfg.data_dir))
    check_host_data(host, cfg)
    return host


@dataclass(frozen=True)
class TorchvisionDataset:
    """A torchvision dataset this package reads: the folder its files sit in under data_dir, and how it
    is read into a HostData (root, download, dataset config)."""

    folder: str
    load: Callable[[Path, bool, DictConfig], HostData]


@register_source("torchvision")
def _load_torchvision(dataset_cfg, root: Path) -> HostData:
    name, download = dataset_cfg.name, bool(dataset_cfg.download)
    try:
        return TORCHVISION[name].load(root, download, dataset_cfg)
    except (RuntimeError, OSError) as err:  # missing files (or, for CIFAR, failing their MD5), or no network
        if download or not _holds_files(root / TORCHVISION[name].folder):
            raise ConfigError(_missing_files_message(dataset_cfg, root, download, err)) from None
        raise ConfigError(_damaged_files_message(name, root, err)) from None
    except Exception as err:  # noqa: BLE001 - files there but not in their format: torchvision parses them blindly
        raise ConfigError(_damaged_files_message(name, root, err)) from None


def _holds_files(folder: Path) -> bool:
    try:
        return any(entry.is_file() for entry in folder.iterdir())
    except OSError:
        return False


def _damaged_files_message(name: str, root: Path, err: Exception) -> str:
    folder = root / TORCHVISION[name].folder
    return (f"{name} files under {folder} cannot be read ({last_line(err)[:200]}): they are missing, damaged, or"
            f" not {name}'s; replace them with the original files (or move them away and pass dataset.download=true on"
            " a machine with network access)")


def _missing_files_message(dataset_cfg, root: Path, download: bool, err: Exception) -> str:
    name = dataset_cfg.name
    action = "could not be downloaded" if download else "not found"
    debian = (f" install Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist, found at"
              f" {dataset_cfg.get('system_dir')}),") if name == "fashion_mnist" else ""
    return (f"{name} files {action} under {root}/{TORCHVISION[name].folder} ({err.__class__.__name__}):{debian}"
            f" set DATA_DIR (or data_dir=...) to a folder that holds them,"
            f" or pass dataset.download=true on a machine with network access")


def _load_cifar(name: str, root: Path, download: bool) -> HostData:
    import torchvision.datasets as tvd

    cls = {"cifar10": tvd.CIFAR10, "cifar100": tvd.CIFAR100}[name]
    train = cls(root, train=True, download=download)
    test = cls(root, train=False, download=download)
    return HostData(_hwc_to_chw(train.data), np.asarray(train.targets, np.int64),
                    _hwc_to_chw(test.data), np.asarray(test.targets, np.int64), len(train.classes))


def _load_stl10(root: Path, download: bool) -> HostData:
    import torchvision.datasets as tvd

    train = tvd.STL10(root, split="train", download=download)
    test = tvd.STL10(root, split="test", download=download)
    return HostData(train.data, np.asarray(train.labels, np.int64),
                    test.data, np.asarray(test.labels, np.int64), 10)


def _load_fashion_mnist(root: Path, download: bool, system_dir: str | None) -> HostData:
    """torchvision's FashionMNIST, fed from Debian's package when the files are not under root yet.

    torchvision cannot take Debian's files as they are: it reads the idx files unpacked, and its
    download step checks MD5 sums of the gzipped originals, which Debian's recompressed copies do not
    match. So they are unpacked once into root/FashionMNIST/raw and torchvision parses them there.
    """
    import torchvision.datasets as tvd

    raw = root / "FashionMNIST" / "raw"
    if system_dir and not download:
        unpack_system_copy(Path(system_dir), raw)
    train = tvd.FashionMNIST(root, train=True, download=download)
    test = tvd.FashionMNIST(root, train=False, download=download)
    return HostData(train.data.numpy()[:, None], train.targets.numpy().astype(np.int64),
                    test.data.numpy()[:, None], test.targets.numpy().astype(np.int64), len(train.classes))


TORCHVISION = {  # dataset.name -> its folder under data_dir and its reader
    "cifar10": TorchvisionDataset("cifar-10-batches-py",
                                  lambda root, download, _: _load_cifar("cifar10", root, download)),
    "cifar100": TorchvisionDataset("cifar-100-python",
                                   lambda root, download, _: _load_cifar("cifar100", root, download)),
    "stl10": TorchvisionDataset("stl10_binary", lambda root, download, _: _load_stl10(root, download)),
    "fashion_mnist": TorchvisionDataset("FashionMNIST/raw", lambda root, download, dataset_cfg: _load_fashion_mnist(
        root, download, dataset_cfg.get("system_dir"))),
}


def unpack_system_copy(system_dir: Path, raw: Path) -> None:
    """Unpack <system_dir>/<file>.gz into raw/<file> for each missing file; a no-op when all are there.

    Each file is written to a temporary name and renamed, so a run killed mid-way, or a second run
    unpacking at the same time, never leaves a half-written file for torchvision to read.
    """
    missing = [f for f in FASHION_MNIST_FILES if not (raw / f).is_file()]
    if not missing or not all((system_dir / f"{f}.gz").is_file() for f in missing):
        return
    raw.mkdir(parents=True, exist_ok=True)
    for name in missing:
        handle, tmp = tempfile.mkstemp(dir=raw, prefix=f".{name}.")
        with os.fdopen(handle, "wb") as out, gzip.open(system_dir / f"{name}.gz", "rb") as src:
            shutil.copyfileobj(src, out)
        os.replace(tmp, raw / name)


def _hwc_to_chw(images: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2))


def _load_digits(dataset_cfg) -> HostData:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[:, None]  # 0..16 -> 0..255
    labels = digits.target.astype(np.int64)
    try:
        x_train, x_test, y_train, y_test = train_test_split(
            images, labels, test_size=dataset_cfg.test_fraction, random_state=dataset_cfg.split_seed, stratify=labels)
    except ValueError as err:  # a split too small to hold every class once
        raise ConfigError(f"dataset.test_fraction={dataset_cfg.test_fraction} cannot split digits' {len(labels)} images"
                          f" ({last_line(err)}): use a fraction that leaves each split at least one image per"
                          " class, e.g. dataset.test_fraction=0.25") from None
    return HostData(x_train, y_train, x_test, y_test, 10)


def make_synthetic(dataset_cfg) -> HostData:
    """Class prototypes are smooth random images; a rare hard fraction sits between two classes.

    Hard samples mix their own prototype with another class's (weight 0.3-0.45 on the other one)
    and carry twice the noise, so they are learnable but stay the highest-loss samples for long.
    """
    cfg = dataset_cfg  # checked (config_checks.settings: hard_fraction in [0, 1])
    gen = torch.Generator().manual_seed(int(cfg.generator_seed))
    size, chans, classes = int(cfg.native_size), int(cfg.channels), int(cfg.num_classes)
    coarse = torch.rand(classes, chans, 4, 4, generator=gen)
    prototypes = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bicubic",
                                                 align_corners=False).clamp(0, 1)

    def draw(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        labels = torch.randint(classes, (n,), generator=gen)
        hard = torch.rand(n, generator=gen) < cfg.hard_fraction
        other = (labels + torch.randint(1, classes, (n,), generator=gen)) % classes
        mix = torch.where(hard, 0.3 + 0.15 * torch.rand(n, generator=gen), torch.zeros(n))
        images = (1 - mix)[:, None, None, None] * prototypes[labels] + mix[:, None, None, None] * prototypes[other]
        noise_scale = cfg.noise * torch.where(hard, 2.0, 1.0)[:, None, None, None]
        images = images + noise_scale * torch.randn(images.shape, generator=gen)
        pixels = (images.clamp(0, 1) * 255).round().to(torch.uint8)
        return pixels.numpy(), labels.numpy().astype(np.int64), hard.numpy()

    x_train, y_train, hard_train = draw(int(cfg.num_train))
    x_test, y_test, _ = draw(int(cfg.num_test))
    return HostData(x_train, y_train, x_test, y_test, classes, hard_mask=hard_train)


# The sources that read no files under data_dir.
register_source("sklearn")(lambda dataset_cfg, data_dir: _load_digits(dataset_cfg))
register_source("generated")(lambda dataset_cfg, data_dir: make_synthetic(dataset_cfg))


def to_device(host: HostData, image_size: int, normalization: str, device: torch.device,
              memory_format: torch.memory_format = torch.contiguous_format) -> DeviceData:
    """Resize once on the CPU, then move to the device (see _resize_then_move).

    The images are stored in the model's memory format: a gathered batch keeps its source's layout,
    so with channels_last the hot loop's `.contiguous(memory_format=...)` copies nothing.
    """
    check_fits(host, image_size, device)
    train = _resize_then_move(host.train_images, image_size, device, memory_format)
    test = _resize_then_move(host.test_images, image_size, device, memory_format)
    mean, std = _normalisation(normalization, train)
    return DeviceData(train, torch.as_tensor(host.train_labels, device=device),
                      test, torch.as_tensor(host.test_labels, device=device),
                      host.num_classes, mean, std)


def check_fits(host: HostData, image_size: int, device: torch.device) -> None:
    """The resized images must fit where they will live: refused in one line before an allocation fails."""
    count = len(host.train_images) + len(host.test_images)
    need = count * host.train_images.shape[1] * image_size * image_size
    free = available_memory(device)
    if free is not None and need > free:
        raise ConfigError(f"{count} images at image_size={image_size} need {need / 2**30:.1f} GiB on {device}, more"
                          f" than its {free / 2**30:.1f} GiB free: use a smaller image_size")


def available_memory(device: torch.device) -> int | None:
    """Bytes free on the device (CUDA) or available on the host (Linux's MemAvailable); None if unknown."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _resize_then_move(images: np.ndarray, size: int, device: torch.device, memory_format: torch.memory_format,
                      chunk: int = 4096) -> torch.Tensor:
    """Bilinear with antialias on CPU uint8 tensors: pixel for pixel PIL's Resize((S, S)), as the authors
    resized (tests/test_fidelity.py checks it): the CPU's uint8 kernel uses PIL's fixed-point
    arithmetic; the CUDA kernel computes in float and is not known to match it, so the resize never
    runs there. Each resized chunk is then copied to the device, so the host holds one chunk at a time."""
    out = torch.empty((len(images), images.shape[1], size, size), dtype=torch.uint8, device=device,
                      memory_format=memory_format)
    for start in range(0, len(images), chunk):
        block = torch.as_tensor(images[start:start + chunk])
        if block.shape[-1] != size or block.shape[-2] != size:
            block = TF.resize(block, [size, size], antialias=True)
        out[start:start + chunk] = block.to(device)
    return out


def _normalisation(kind: str, train_images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    chans = train_images.shape[1]
    device = train_images.device
    if kind == "imagenet":
        mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
        if chans != 3:  # grey images: ImageNet's statistics averaged over its channels
            mean, std = mean.mean().repeat(chans), std.mean().repeat(chans)
    elif kind == "dataset":
        pixels = train_images.float().div_(255.0)
        mean, std = pixels.mean(dim=(0, 2, 3)).cpu(), pixels.std(dim=(0, 2, 3)).cpu()
    else:
        raise ConfigError(f"fidelity.normalization={kind} is unknown: use {' or '.join(NORMALIZATIONS)}")
    return mean.view(1, chans, 1, 1).to(device), std.view(1, chans, 1, 1).to(device)


def train_subset(host: HostData, size: int | None, seed: int) -> HostData:
    """`size` training samples drawn without replacement, stratified by class (the class shares of the
    full split kept), seeded by `seed`, kept in dataset order; the test split untouched. None: all."""
    from sklearn.model_selection import train_test_split

    n = len(host.train_labels)
    if size is None or size >= n:
        return host
    try:
        kept, _ = train_test_split(np.arange(n), train_size=int(size), random_state=int(seed) % 2**32,
                                   stratify=host.train_labels)
    except ValueError as err:  # fewer images than classes, say: scikit-learn says which
        raise ConfigError(f"dataset.subset={size} cannot be drawn from {n} training images ({err}): use a subset"
                          f" of at least as many images as classes") from None
    kept = np.sort(kept)
    mask = host.hard_mask[kept] if host.hard_mask is not None else None
    return HostData(host.train_images[kept], host.train_labels[kept], host.test_images, host.test_labels,
                    host.num_classes, mask)


def make_fixed_batches(num_samples: int, batch_size: int, *, drop_last: bool, partition: str,
                       seed: int, device: torch.device) -> torch.Tensor:
    """The N fixed mini-batches as an (N, B) index tensor on the device.

    dataset_order cuts them from 0..n-1 like a DataLoader with shuffle=False; shuffled cuts them
    from a seeded permutation. With drop_last the last partial batch is dropped (N = floor(n / B));
    without it the last batch is padded from the start of the order, as DistributedSampler pads,
    so every batch has B samples and a few samples appear twice per epoch.
    """
    if partition == "shuffled":  # or dataset_order: the choices are checked with the config (config_checks)
        order = torch.randperm(num_samples, generator=torch.Generator().manual_seed(seed))
    else:
        order = torch.arange(num_samples)
    if drop_last:
        num_batches = num_samples // batch_size
        order = order[: num_batches * batch_size]
    else:
        num_batches = -(-num_samples // batch_size)
        order = torch.cat([order, order[: num_batches * batch_size - num_samples]])
    return order.view(num_batches, batch_size).to(device)


def eval_subset(num_samples: int, subset: int | None) -> torch.Tensor | None:
    """A fixed subset of training indices (the same for every run and seed), or None for all."""
    if subset is None or subset >= num_samples:
        return None
    chosen = torch.randperm(num_samples, generator=torch.Generator().manual_seed(0))[:subset]
    return torch.sort(chosen).values
