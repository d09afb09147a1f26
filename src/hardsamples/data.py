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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from omegaconf import OmegaConf

from hardsamples.errors import ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TORCHVISION_FOLDERS = {
    "cifar10": "cifar-10-batches-py",
    "cifar100": "cifar-100-python",
    "stl10": "stl10_binary",
    "fashion_mnist": "FashionMNIST/raw",
}
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


def load_host_data(cfg) -> HostData:
    source = cfg.dataset.source
    if source == "torchvision":
        return _load_torchvision(cfg.dataset, Path(cfg.data_dir))
    if source == "sklearn":
        return _load_digits(cfg.dataset)
    if source == "generated":
        return make_synthetic(cfg.dataset)
    if source == "image_folder":
        return load_image_folder(cfg.dataset)
    if source == "python":
        return load_from_python(cfg.dataset)
    raise ConfigError(f"unknown dataset source '{source}': use torchvision, sklearn, generated, image_folder or python")


def _load_torchvision(dataset_cfg, root: Path) -> HostData:
    name, download = dataset_cfg.name, bool(dataset_cfg.download)
    try:
        if name == "fashion_mnist":
            return _load_fashion_mnist(root, download, dataset_cfg.get("system_dir"))
        if name == "stl10":
            return _load_stl10(root, download)
        return _load_cifar(name, root, download)
    except (RuntimeError, OSError) as err:  # missing files, or a download with no network
        raise ConfigError(_missing_files_message(dataset_cfg, root, download, err)) from err


def _missing_files_message(dataset_cfg, root: Path, download: bool, err: Exception) -> str:
    name = dataset_cfg.name
    action = "could not be downloaded" if download else "not found"
    debian = (f" install Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist, found at"
              f" {dataset_cfg.get('system_dir')}),") if name == "fashion_mnist" else ""
    return (f"{name} files {action} under {root}/{TORCHVISION_FOLDERS[name]} ({err.__class__.__name__}):{debian}"
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
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=dataset_cfg.test_fraction,
        random_state=dataset_cfg.split_seed, stratify=labels)
    return HostData(x_train, y_train, x_test, y_test, 10)


def load_image_folder(dataset_cfg) -> HostData:
    """Your own images in torchvision's ImageFolder layout: <root>/<train_dir>/<class>/<image> and the
    same under <test_dir>; classes are the folder names, sorted, as ImageFolder numbers them.

    Each image is decoded once by ImageFolder's loader (PIL, converted to RGB), made grey when
    channels=1, and resized with PIL's bilinear filter to native_size x native_size, as the authors'
    PIL Resize did; what PIL decodes, this reads (png, jpg, bmp, tif, webp, ...).
    """
    import torchvision.datasets as tvd
    from torchvision.transforms import v2

    if OmegaConf.is_missing(dataset_cfg, "root"):
        raise ConfigError("dataset=image_folder needs the folder of your images: pass dataset.root=/path/to/folder"
                          " (laid out as <root>/train/<class>/*.png and <root>/test/<class>/*.png)")
    root, size = Path(str(dataset_cfg.root)), dataset_cfg.native_size
    if not root.is_dir():
        raise ConfigError(f"dataset.root={root} is not a folder: pass the folder that holds"
                          f" {dataset_cfg.train_dir}/ and {dataset_cfg.test_dir}/")
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ConfigError(f"dataset.native_size={size} is not a whole number >= 1: the side, in pixels, images are"
                          " decoded to, e.g. dataset.native_size=64")
    if dataset_cfg.channels not in (1, 3):
        raise ConfigError(f"dataset.channels={dataset_cfg.channels} is not 1 or 3: use 3 for RGB or 1 for grey")
    steps = [v2.Grayscale(1)] if dataset_cfg.channels == 1 else []
    transform = v2.Compose([*steps, v2.Resize((size, size), antialias=True), v2.PILToTensor()])
    splits = {}
    for key in ("train_dir", "test_dir"):
        folder = root / str(dataset_cfg[key])
        try:
            splits[key] = tvd.ImageFolder(folder, transform=transform)
        except OSError as err:  # no such folder, no class folders, or a class without images
            raise ConfigError(f"{folder} holds no images in ImageFolder's layout ({one_line(err)}): lay them out as"
                              f" {folder}/<class>/<image>, or point dataset.{key} at the split's folder") from None
    train, test = splits["train_dir"], splits["test_dir"]
    if test.classes != train.classes:
        only_train = sorted(set(train.classes) - set(test.classes))
        only_test = sorted(set(test.classes) - set(train.classes))
        raise ConfigError(f"the class folders of {test.root} differ from those of {train.root} (only in train:"
                          f" {only_train or 'none'}, only in test: {only_test or 'none'}): give both splits the same"
                          " class folders, so a label means the same class in both")
    workers = int(dataset_cfg.decode_workers)
    try:
        (x_train, y_train), (x_test, y_test) = (stack_pairs(split, workers) for split in (train, test))
    except OSError as err:  # a file PIL cannot decode; its message names the file
        raise ConfigError(f"an image under {root} cannot be decoded ({one_line(err)}): remove or replace it") from None
    if dataset_cfg.shuffle_seed is not None:
        # ImageFolder lists the files class by class: batches cut in that order (fidelity.partition=
        # dataset_order) would each hold one class, in training and in a train-mode BatchNorm evaluation.
        gen = torch.Generator().manual_seed(int(dataset_cfg.shuffle_seed))
        train_order = torch.randperm(len(y_train), generator=gen).numpy()
        test_order = torch.randperm(len(y_test), generator=gen).numpy()
        x_train, y_train = x_train[train_order], y_train[train_order]
        x_test, y_test = x_test[test_order], y_test[test_order]
    return HostData(x_train, y_train, x_test, y_test, len(train.classes))


def load_from_python(dataset_cfg) -> HostData:
    """Your own data from your own code: dataset.data._target_ names a function (or class) that
    hydra.utils.instantiate calls, with the other keys of dataset.data as keyword arguments. It returns

        (train_images, train_labels), (test_images, test_labels)

    images uint8 (N, C, H, W) and labels integer class ids 0..classes-1 of shape (N,), as torch tensors
    or numpy arrays; or, for either split, a map-style torch Dataset of (uint8 CHW image, label) pairs.
    The class count is the largest label + 1.
    """
    from hydra.utils import instantiate

    spec = dataset_cfg.data
    if OmegaConf.is_missing(spec, "_target_"):
        raise ConfigError("dataset=custom needs your function: pass dataset.data._target_=my_module.make_data"
                          " (my_module importable: in the working directory or on PYTHONPATH)")
    target = str(spec._target_)
    where = f"dataset.data._target_={target}"
    if locate(target) is None:
        raise ConfigError(f"{where} cannot be imported: {why_not_found(target)}")
    returned = instantiate(spec, _convert_="all")  # an error inside your function keeps its traceback
    if not (isinstance(returned, (tuple, list)) and len(returned) == 2):
        raise ConfigError(f"{where} returned {describe(returned)}: {RETURN_SHAPE}")
    (x_train, y_train), (x_test, y_test) = (
        split_arrays(part, f"{where} returned {name}") for name, part in zip(("train", "test"), returned))
    classes = int(max(y_train.max(initial=0), y_test.max(initial=0))) + 1
    return HostData(x_train, y_train, x_test, y_test, classes)


RETURN_SHAPE = ("return (train_images, train_labels), (test_images, test_labels) with uint8 images of shape"
                " (N, C, H, W) and integer labels of shape (N,)")


def locate(path: str):
    """The object at a dotted import path, or None; an error raised while importing its module propagates."""
    import pydoc

    return pydoc.locate(path)


def why_not_found(target: str) -> str:
    """What is missing of a dotted path that does not import, and the fix: the module (named with the
    folders Python looked in first) or the name inside it."""
    import importlib.util

    module, _, name = target.rpartition(".")
    if not module:
        return f"'{target}' names no module: write <module>.<function>, e.g. my_data.make_data"
    try:
        found = importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a package on the way is missing
        found = False
    if found:
        return f"module {module} has no '{name}': check the spelling of the function's name"
    file = module.replace(".", "/") + ".py"
    if Path(file).is_file():  # a caller that left the working directory off sys.path (not our commands)
        return f"{file} is in the working directory, which is not on sys.path here: run with PYTHONPATH=."
    return (f"Python finds no module {module}: there is no {file} in the working directory ({os.getcwd()}) or"
            " on PYTHONPATH; run from the folder that holds it, or add that folder to PYTHONPATH"
            " (PYTHONPATH=/path/to/folder hardsamples-train ...)")


def split_arrays(part, what: str) -> tuple[np.ndarray, np.ndarray]:
    """One split as the uint8 NCHW images and int64 labels HostData holds; refused in one line otherwise."""
    if isinstance(part, torch.utils.data.Dataset):
        try:
            part = stack_pairs(part)
        except (TypeError, RuntimeError, ValueError) as err:  # default_collate: not tensors, or not of one size
            raise ConfigError(f"{what} a Dataset whose items do not stack ({one_line(err)}): each item must be a"
                              " (uint8 CHW image tensor, label) pair, every image of one size") from None
    if not (isinstance(part, (tuple, list)) and len(part) == 2):
        raise ConfigError(f"{what} as {describe(part)}: {RETURN_SHAPE}")
    try:
        images, labels = (torch.as_tensor(a) for a in part)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ConfigError(f"{what} as something torch.as_tensor cannot read ({one_line(err)}):"
                          f" {RETURN_SHAPE}") from None
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise ConfigError(f"{what} images of shape {tuple(images.shape)} and dtype {images.dtype}: {RETURN_SHAPE}"
                          " (e.g. (x * 255).round().to(torch.uint8) for floats in [0, 1])")
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool \
            or tuple(labels.shape) != (images.shape[0],):
        raise ConfigError(f"{what} labels of shape {tuple(labels.shape)} and dtype {labels.dtype} for"
                          f" {images.shape[0]} images: {RETURN_SHAPE}")
    if labels.numel() and labels.min() < 0:
        raise ConfigError(f"{what} a negative label ({int(labels.min())}): labels are class ids 0..classes-1")
    return np.ascontiguousarray(images.cpu().numpy()), labels.cpu().numpy().astype(np.int64)


def stack_pairs(dataset, workers: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A map-style Dataset of (uint8 CHW image, label) pairs as two arrays, read once through a DataLoader:
    its default collate stacks them, and workers > 0 decode in parallel, keeping the order."""
    from torch.utils.data import DataLoader

    images, labels = zip(*DataLoader(dataset, batch_size=256, num_workers=workers))
    return torch.cat(images).numpy(), torch.cat(labels).numpy().astype(np.int64)


def describe(value) -> str:
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)}"
    return f"a {type(value).__name__}"


def one_line(err: BaseException) -> str:
    """An exception's message on one line: its last line, which for an error a DataLoader worker raised
    (and the DataLoader re-raised, after the worker's traceback) is the original message."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return f"{type(err).__name__}: {lines[-1] if lines else ''}"


def make_synthetic(dataset_cfg) -> HostData:
    """Class prototypes are smooth random images; a rare hard fraction sits between two classes.

    Hard samples mix their own prototype with another class's (weight 0.3-0.45 on the other one)
    and carry twice the noise, so they are learnable but stay the highest-loss samples for long.
    """
    cfg = dataset_cfg
    if not 0.0 <= cfg.hard_fraction <= 1.0:
        raise ConfigError(f"dataset.hard_fraction={cfg.hard_fraction} is outside [0, 1]: pick a fraction")
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


def to_device(host: HostData, image_size: int, normalization: str, device: torch.device,
              memory_format: torch.memory_format = torch.contiguous_format) -> DeviceData:
    """Resize once on the CPU, then move to the device (see _resize_then_move).

    The images are stored in the model's memory format: a gathered batch keeps its source's layout,
    so with channels_last the hot loop's `.contiguous(memory_format=...)` copies nothing.
    """
    train = _resize_then_move(host.train_images, image_size, device, memory_format)
    test = _resize_then_move(host.test_images, image_size, device, memory_format)
    mean, std = _normalisation(normalization, train)
    return DeviceData(train, torch.as_tensor(host.train_labels, device=device),
                      test, torch.as_tensor(host.test_labels, device=device),
                      host.num_classes, mean, std)


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
        raise ConfigError(f"fidelity.normalization={kind} is unknown: use imagenet or dataset")
    return mean.view(1, chans, 1, 1).to(device), std.view(1, chans, 1, 1).to(device)


def train_subset(host: HostData, size: int | None, seed: int) -> HostData:
    """`size` training samples drawn without replacement, stratified by class (the class shares of the
    full split kept), seeded by `seed`, kept in dataset order; the test split untouched. None: all."""
    from sklearn.model_selection import train_test_split

    n = len(host.train_labels)
    if size is None or size >= n:
        return host
    kept, _ = train_test_split(np.arange(n), train_size=int(size), random_state=int(seed),
                               stratify=host.train_labels)
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
    if partition == "dataset_order":
        order = torch.arange(num_samples)
    elif partition == "shuffled":
        order = torch.randperm(num_samples, generator=torch.Generator().manual_seed(seed))
    else:
        raise ConfigError(f"fidelity.partition={partition} is unknown: use dataset_order or shuffled")
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
