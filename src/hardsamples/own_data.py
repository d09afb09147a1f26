"""Your own data: a folder of images (dataset=image_folder) or your own Python code (dataset=custom).

Both end as data.HostData and pass the checks every source passes (config_checks.data). What is
particular to them is here: a folder is walked once, following links but never round a loop, and an
entry that cannot be read stops the run in one line rather than being skipped; an error raised by your
code is reported as your code's own exception line, with the file and line where it was raised.
"""

from __future__ import annotations

import os
import sysconfig
import traceback
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

from hardsamples.data import HostData, register_source
from hardsamples.errors import ConfigError, last_line


@register_source("image_folder")
def load_image_folder(dataset_cfg, data_dir: Path | None = None) -> HostData:
    """Your own images in torchvision's ImageFolder layout: <root>/<train_dir>/<class>/<image> and the
    same under <test_dir>; classes are the folder names, sorted, as ImageFolder numbers them.

    Each image is decoded once by ImageFolder's loader (PIL, converted to RGB), made grey when
    channels=1, and resized with PIL's bilinear filter to native_size x native_size, as the authors'
    PIL Resize did; what PIL decodes, this reads (png, jpg, bmp, tif, webp, ...).
    """
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
    if isinstance(dataset_cfg.channels, bool) or dataset_cfg.channels not in (1, 3):
        raise ConfigError(f"dataset.channels={dataset_cfg.channels} is not 1 or 3: use 3 for RGB or 1 for grey")
    steps = [v2.Grayscale(1)] if dataset_cfg.channels == 1 else []
    transform = v2.Compose([*steps, v2.Resize((size, size), antialias=True), v2.PILToTensor()])
    splits = {key: image_split(root / str(dataset_cfg[key]), key, transform) for key in ("train_dir", "test_dir")}
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
    except (OSError, RuntimeError) as err:  # read_image's OSError, re-raised by a DataLoader worker as it was
        raise ConfigError(f"an image under {root} cannot be read ({last_line(err)}): remove or replace"
                          " it") from None
    if dataset_cfg.shuffle_seed is not None:
        # ImageFolder lists the files class by class: batches cut in that order (fidelity.partition=
        # dataset_order) would each hold one class, in training and in a train-mode BatchNorm evaluation.
        gen = torch.Generator().manual_seed(int(dataset_cfg.shuffle_seed))
        train_order = torch.randperm(len(y_train), generator=gen).numpy()
        test_order = torch.randperm(len(y_test), generator=gen).numpy()
        x_train, y_train = x_train[train_order], y_train[train_order]
        x_test, y_test = x_test[test_order], y_test[test_order]
    return HostData(x_train, y_train, x_test, y_test, len(train.classes))


def image_split(folder: Path, key: str, transform):
    """One split's ImageFolder, its files found by walk_images (each folder once, unreadable ones refused)."""
    import torchvision.datasets as tvd

    class WalkedOnce(tvd.ImageFolder):
        def find_classes(self, directory):
            classes = sorted(entry.name for entry in scan(Path(directory)) if entry.is_dir())
            if not classes:
                raise ConfigError(f"{directory} holds no class folders: lay the images out as {directory}/<class>/"
                                  f"<image>, or point dataset.{key} at the split's folder")
            return classes, {name: i for i, name in enumerate(classes)}

        @staticmethod
        def make_dataset(directory, class_to_idx, extensions=None, is_valid_file=None, allow_empty=False):
            return walk_images(Path(directory), class_to_idx, extensions or tvd.folder.IMG_EXTENSIONS)

    if not folder.is_dir():
        raise ConfigError(f"{folder} is not a folder: lay the images out as {folder}/<class>/<image>, or point"
                          f" dataset.{key} at the split's folder")
    return WalkedOnce(folder, transform=transform, loader=read_image)


def scan(folder: Path) -> list[os.DirEntry]:
    try:
        with os.scandir(folder) as entries:
            return list(entries)
    except OSError as err:
        raise ConfigError(f"the folder {folder} cannot be read ({err.strerror}): make it readable (chmod -R u+rX"
                          " on it) or move it out of the dataset") from None


def walk_images(split: Path, class_to_idx: dict[str, int], extensions: tuple[str, ...]) -> list[tuple[str, int]]:
    """(path, class) of every image file under each class folder, in ImageFolder's order (folders sorted by
    path, files by name). Links are followed, but a folder is entered once: a link back to a folder already
    walked (a loop, or a second way into the same folder) is refused, since its images would count twice."""
    samples, seen = [], {}
    for name in sorted(class_to_idx):
        found = []
        pending = [split / name]
        while pending:
            folder = pending.pop()
            stat = folder.stat()
            first = seen.setdefault((stat.st_dev, stat.st_ino), folder)
            if first != folder:
                raise ConfigError(f"{folder} leads back to {first}, a folder already read (a link loop or a second"
                                  f" link to it): remove the link, so each image is read once")
            entries = scan(folder)
            pending += [Path(e.path) for e in entries if e.is_dir()]
            found += [(str(folder), e.name) for e in entries if not e.is_dir() and e.name.lower().endswith(extensions)]
        if not found:
            raise ConfigError(f"the class folder {split / name} holds no images ({', '.join(extensions)}): add its"
                              " images, or remove the folder")
        samples += [(os.path.join(folder, file), class_to_idx[name]) for folder, file in sorted(found)]
    return samples


def read_image(path: str):
    """ImageFolder's loader (PIL, RGB), with the file's name in any error: PIL's messages (a decompression
    bomb, a truncated file) do not always say which file it was."""
    from PIL import Image
    from torchvision.datasets.folder import pil_loader

    try:
        return pil_loader(path)
    except Image.DecompressionBombError as err:
        raise OSError(f"{path} is too large to decode safely ({err})") from None
    except Exception as err:  # noqa: BLE001 - PIL raises many kinds for a damaged file
        reason = err.strerror if isinstance(err, OSError) and err.strerror else f"{type(err).__name__}: {err}"
        raise OSError(f"{path}: {reason}") from None


@register_source("python")
def load_from_python(dataset_cfg, data_dir: Path | None = None) -> HostData:
    """Your own data from your own code: dataset.data._target_ names a function (or class) that
    hydra.utils.instantiate calls, with the other keys of dataset.data as keyword arguments. It returns

        (train_images, train_labels), (test_images, test_labels)

    images uint8 (N, C, H, W) and labels integer class ids 0..classes-1 of shape (N,), as torch tensors
    or numpy arrays; or, for either split, a map-style torch Dataset of (uint8 CHW image, label) pairs.
    The class count is the largest label + 1.
    """
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    spec = dataset_cfg.data
    if OmegaConf.is_missing(spec, "_target_"):
        raise ConfigError("dataset=custom needs your function: pass dataset.data._target_=my_module.make_data"
                          " (my_module importable: in the working directory or on PYTHONPATH)")
    target = str(spec._target_)
    where = f"dataset.data._target_={target}"
    try:
        found = locate(target)
    except Exception as err:  # noqa: BLE001 - importing the user's module ran the user's code
        raise ConfigError(f"{where} cannot be imported: {users_error(err)}: fix that module") from None
    if found is None:
        raise ConfigError(f"{where} cannot be imported: {why_not_found(target)}")
    try:
        returned = instantiate(spec, _convert_="all")
    except InstantiationException as err:  # Hydra's "Error in call to target" wraps the user's own exception
        raise ConfigError(f"{where} raised {users_error(err.__cause__ or err)}: fix your function (or the keyword"
                          " arguments under dataset.data)") from None
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


def users_error(err: BaseException) -> str:
    """The user's exception as one line: its type and message, and the line of the user's own code where it
    was raised (the innermost frame outside Python's installation: not torch's or numpy's, say)."""
    import pydoc

    if isinstance(err, pydoc.ErrorDuringImport):  # locate's wrapper of what the import raised
        err = err.value
    if isinstance(err, SyntaxError) and err.filename:
        return f"SyntaxError: {err.msg} ({err.filename}:{err.lineno})"
    frames = traceback.extract_tb(err.__traceback__)
    installed = (*{sysconfig.get_path(kind) for kind in ("stdlib", "platstdlib", "purelib", "platlib")},
                 str(Path(__file__).parent), "<")
    own = [f for f in frames if not f.filename.startswith(installed)]
    if not own:  # raised before the user's code ran (a keyword argument it does not take): no line of theirs
        return last_line(err)
    frame = own[-1]
    return last_line(err) + f" ({frame.filename}:{frame.lineno}, in {frame.name})"


def split_arrays(part, what: str) -> tuple[np.ndarray, np.ndarray]:
    """One split as the uint8 NCHW images and int64 labels HostData holds; refused in one line otherwise."""
    if isinstance(part, torch.utils.data.Dataset):
        part = stack_users_dataset(part, what)
    if not (isinstance(part, (tuple, list)) and len(part) == 2):
        raise ConfigError(f"{what} as {describe(part)}: {RETURN_SHAPE}")
    try:
        images, labels = (torch.as_tensor(a) for a in part)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ConfigError(f"{what} as something torch.as_tensor cannot read ({last_line(err)}):"
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


def stack_users_dataset(dataset, what: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        return stack_pairs(dataset)
    except ConfigError as err:
        raise ConfigError(f"{what} {err}") from None
    except (TypeError, RuntimeError, ValueError) as err:  # default_collate: not tensors, or not of one size
        if not in_collate(err):
            raise ConfigError(f"{what} a Dataset that raised {users_error(err)}: fix its __getitem__ or"
                              " __len__") from None
        raise ConfigError(f"{what} a Dataset whose items do not stack ({last_line(err)}): each item must be a"
                          " (uint8 CHW image tensor, label) pair, every image of one size") from None
    except Exception as err:  # noqa: BLE001 - the user's __getitem__ or __len__ raised
        raise ConfigError(f"{what} a Dataset that raised {users_error(err)}: fix its __getitem__ or"
                          " __len__") from None


def in_collate(err: BaseException) -> bool:
    """Whether an error came from torch's default_collate stacking items, not from the user's own code."""
    frames = traceback.extract_tb(err.__traceback__)
    return bool(frames) and "collate" in frames[-1].filename


def stack_pairs(dataset, workers: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A map-style Dataset of (uint8 CHW image, label) pairs as two arrays, read once through a DataLoader:
    its default collate stacks them, and workers > 0 decode in parallel, keeping the order."""
    from torch.utils.data import DataLoader

    images, labels = [], []
    for batch in DataLoader(dataset, batch_size=256, num_workers=workers):
        if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
            raise ConfigError(f"a Dataset whose items are not (image, label) pairs (a batch of them is"
                              f" {describe(batch)}): return (uint8 CHW image tensor, label) from __getitem__")
        images.append(batch[0])
        labels.append(batch[1])
    if not images:
        return np.zeros((0, 0, 0, 0), np.uint8), np.zeros(0, np.int64)
    return torch.cat(images).numpy(), torch.cat(labels).numpy().astype(np.int64)


def describe(value) -> str:
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)}"
    return f"a {type(value).__name__}"
