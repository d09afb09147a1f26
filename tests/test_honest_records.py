"""No record says `finished` when it should not (issue 22): every source of data passes the checks the
generated data always passed, a folder is walked once, what cannot be read stops the run in one line,
the final model is checked for non-finite values, and booleans, choices and sizes are typed and bounded."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import TINY, TINY_RUN, compose_config, train_in_process
from hardsamples.data import HostData, load_host_data
from hardsamples.errors import ConfigError

OWN = ["image_size=16", "batch_size=8"]


def refused(overrides: list[str], message: str) -> str:
    """load_host_data on the config refuses in one line matching message."""
    with pytest.raises(ConfigError, match=message) as err:
        load_host_data(compose_config(overrides))
    assert "\n" not in str(err.value)
    return str(err.value)


# --- a user's function: every return checked as the generated data are ----------------------------------------

USER_MODULE = '''
import numpy as np
import torch


def split(x, y, n=80):
    return (x[:n], y[:n]), (x[n:], y[n:])


def images(c=3, h=8, w=8, n=120):
    return torch.randint(0, 256, (n, c, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def labels(n=120, classes=4):
    return torch.arange(n) % classes


def good():
    return split(images(), labels())
def one_class():
    return split(images(), labels(classes=1))
def channels_last():
    return split(images().permute(0, 2, 3, 1), labels())
def channels_last_numpy_grey():
    return split(images(c=1).numpy().transpose(0, 2, 3, 1), labels().numpy())
def two_channels():
    return split(images(c=2), labels())
def test_class_never_trained():
    y = labels().clone()
    y[100] = 7
    return split(images(), y)
def labels_up_to_2_40():
    y = labels().clone()
    y[0] = 2**40
    return split(images(), y)
def no_channels():
    return split(images(c=0), labels())
def no_height():
    return split(images(h=0), labels())
def empty_train():
    return split(images(), labels(), n=0)
def test_of_another_size():
    (x, y), _ = good()
    return (x, y), (images(h=6), labels())
def raises():
    return {}["no such key"]


class Broken(torch.utils.data.Dataset):
    def __len__(self):
        return 10

    def __getitem__(self, i):
        raise IndexError("my index is broken")


def broken_dataset():
    return Broken(), Broken()


class Unpaired(torch.utils.data.Dataset):
    def __len__(self):
        return 10

    def __getitem__(self, i):
        return torch.zeros(3, 4, 4, dtype=torch.uint8)


def unpaired_dataset():
    return Unpaired(), Unpaired()
'''


@pytest.fixture
def user_module(tmp_path, monkeypatch, request) -> str:
    name = "honest_" + "".join(c if c.isalnum() else "_" for c in request.node.name)
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(USER_MODULE))
    (tmp_path / f"{name}_import.py").write_text("import no_such_module_anywhere\n")
    (tmp_path / f"{name}_syntax.py").write_text("def f(:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


USER_RETURNS = {
    "one class": ("one_class", r"custom has 1 class\(es\) among its training labels: a classifier needs at least 2"),
    "channels last (torch)": ("channels_last", r"images have shape \(80, 8, 8, 3\), channels last .*x.permute\(0, 3, 1, 2\)"),
    "channels last (numpy, grey)": ("channels_last_numpy_grey", r"shape \(80, 8, 8, 1\), channels last .*transpose"),
    "two channels": ("two_channels", r"have 2 channels .*: give 1 \(grey\) or 3 \(RGB\) channels, or pass"
                                     r" \+\+dataset.channels=2 if 2 is meant"),
    "a test class never trained": ("test_class_never_trained", r"test split has label 7, which no training image has"),
    "labels up to 2**40": ("labels_up_to_2_40", r"1099511627777 classes .* above limits.num_classes=100000: .*raise"),
    "no channels": ("no_channels", r"shape \(80, 0, 8, 8\) .*: every image needs at least one channel and one pixel"),
    "no height": ("no_height", r"shape \(80, 3, 0, 8\) .*: every image needs at least one channel and one pixel"),
    "empty training split": ("empty_train", r"custom's train split is empty"),
    "test images of another size": ("test_of_another_size", r"train images are \(3, 8, 8\) .* test images \(3, 6, 8\)"),
    "the function raises": ("raises", r"raised KeyError: 'no such key' \(.*honest_\w+\.py:\d+, in raises\): fix your"),
    "a Dataset that raises": ("broken_dataset", r"a Dataset that raised IndexError: my index is broken \(.*\.py:\d+,"
                                                r" in __getitem__\)"),
    "a Dataset of images alone": ("unpaired_dataset", r"a Dataset whose items are not \(image, label\) pairs"),
}


@pytest.mark.parametrize("function,message", USER_RETURNS.values(), ids=USER_RETURNS.keys())
def test_a_users_data_that_would_train_wrong_is_refused_in_one_line(user_module, function, message):
    refused([*OWN, "dataset=custom", f"dataset.data._target_={user_module}.{function}"], message)


def test_channels_other_than_1_or_3_are_taken_when_configured(user_module):
    host = load_host_data(compose_config([*OWN, "dataset=custom", f"dataset.data._target_={user_module}.two_channels",
                                          "++dataset.channels=2"]))
    assert host.train_images.shape == (80, 2, 8, 8)


@pytest.mark.parametrize("suffix,message", [
    ("_import.f", r"cannot be imported: ModuleNotFoundError: No module named 'no_such_module_anywhere' \(.*_import.py:1,"),
    ("_syntax.f", r"cannot be imported: SyntaxError: .*_syntax.py:1\)"),
    (".good", None),
], ids=["import error", "syntax error", "a bad keyword argument"])
def test_a_users_module_or_call_that_fails_is_the_users_own_error_line(user_module, suffix, message):
    target = f"dataset.data._target_={user_module}{suffix}"
    if message is None:  # good() takes no keyword: Hydra's "Error in call to target" block, cut to the user's line
        refused([*OWN, "dataset=custom", target, "++dataset.data.size=3"],
                r"raised TypeError: .*good\(\) got an unexpected keyword argument 'size'")
    else:
        refused([*OWN, "dataset=custom", target], message)


# --- every source: the same checks, wherever the data came from --------------------------------------------------

def host(images: np.ndarray, labels: np.ndarray, classes: int) -> HostData:
    return HostData(images, labels, images.copy(), labels.copy(), classes)


BAD_HOST_DATA = {
    "one class": (host(np.zeros((8, 3, 4, 4), np.uint8), np.zeros(8, np.int64), 1), r"1 class\(es\)"),
    "a label above the classes": (host(np.zeros((8, 3, 4, 4), np.uint8), np.arange(8) % 2 + 9, 10), r"label 10, outside"),
    "channels last": (host(np.zeros((8, 4, 4, 3), np.uint8), np.arange(8) % 2, 2), r"channels last"),
    "float images": (host(np.zeros((8, 3, 4, 4), np.float32), np.arange(8) % 2, 2), r"float32 of shape"),
    "three-dimensional images": (host(np.zeros((8, 4, 4), np.uint8), np.arange(8) % 2, 2), r"uint8 \(N, C, H, W\)"),
}


@pytest.mark.parametrize("source", ["torchvision", "sklearn", "generated"])
@pytest.mark.parametrize("bad,message", BAD_HOST_DATA.values(), ids=BAD_HOST_DATA.keys())
def test_every_source_passes_the_same_checks(monkeypatch, source, bad, message):
    """Whatever a loader returns goes through config_checks.data.check_host_data before a model is built: the loaders are
    replaced here by one returning bad data, for CIFAR-10 (torchvision), digits and the generated set."""
    import hardsamples.data as data

    monkeypatch.setitem(data.DATASET_SOURCES, source, lambda *args: bad)
    dataset = {"torchvision": "cifar10", "sklearn": "digits", "generated": "synthetic"}[source]
    refused([*OWN, f"dataset={dataset}"], message)


# --- an image folder: walked once, every entry read or refused --------------------------------------------------

def image_folder(root: Path, classes=("cat", "dog"), per_class: int = 4) -> Path:
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for name in classes:
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return root


def folder_config(root: Path, *extra: str) -> list[str]:
    return [*OWN, "dataset=image_folder", f"dataset.root={root}", *extra]


def test_a_link_loop_in_an_image_folder_is_refused_not_walked_round(tmp_path):
    root = image_folder(tmp_path / "images")
    os.symlink(root / "train" / "cat", root / "train" / "cat" / "again")
    refused(folder_config(root), r"train/cat/again leads back to .*train/cat, a folder already read .*remove the link")


def test_a_second_link_to_a_folder_is_refused_so_no_image_counts_twice(tmp_path):
    root = image_folder(tmp_path / "images")
    os.symlink(root / "train" / "cat", root / "train" / "dog" / "cats")
    refused(folder_config(root), r"leads back to .*train/cat, a folder already read")


def test_a_linked_class_folder_is_still_followed(tmp_path):
    root = image_folder(tmp_path / "images")
    (tmp_path / "elsewhere").mkdir()
    (root / "train" / "dog").rename(tmp_path / "elsewhere" / "dog")
    os.symlink(tmp_path / "elsewhere" / "dog", root / "train" / "dog")
    assert load_host_data(compose_config(folder_config(root))).train_images.shape[0] == 8


def test_one_class_folder_is_refused(tmp_path):
    refused(folder_config(image_folder(tmp_path / "images", classes=("cat",))), r"1 class\(es\) among its training")


def test_an_empty_class_folder_is_refused(tmp_path):
    root = image_folder(tmp_path / "images")
    (root / "train" / "owl").mkdir()
    (root / "test" / "owl").mkdir()
    refused(folder_config(root), r"the class folder .*train/owl holds no images .*: add its images, or remove")


def deny(monkeypatch, path: Path) -> None:
    """os.scandir refused on one folder, as for a user without read permission (the tests may run as root,
    whom chmod does not stop)."""
    real = os.scandir

    def scandir(folder="."):
        if Path(folder) == path:
            raise PermissionError(13, "Permission denied", str(folder))
        return real(folder)

    monkeypatch.setattr(os, "scandir", scandir)


@pytest.mark.parametrize("where", ["a subfolder", "a class folder", "the split folder"])
def test_a_folder_that_cannot_be_read_is_refused_not_skipped(tmp_path, monkeypatch, where):
    root = image_folder(tmp_path / "images")
    denied = {"a subfolder": root / "train" / "dog" / "more", "a class folder": root / "train" / "dog",
              "the split folder": root / "train"}[where]
    denied.mkdir(exist_ok=True)
    deny(monkeypatch, denied)
    refused(folder_config(root), rf"the folder {denied} cannot be read \(Permission denied\): make it readable")


def test_a_decompression_bomb_is_named_in_one_line(tmp_path, monkeypatch):
    root = image_folder(tmp_path / "images")
    Image.new("L", (64, 64)).save(root / "train" / "dog" / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 64 x 64 is then over twice the limit: PIL refuses it
    refused(folder_config(root), r"cannot be read \(.*train/dog/big.png is too large to decode safely")


def test_an_unreadable_image_file_is_named(tmp_path, monkeypatch):
    root = image_folder(tmp_path / "images")
    target = root / "train" / "dog" / "1.png"
    real_open = open

    def opener(file, *args, **kwargs):
        if str(file) == str(target):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr("builtins.open", opener)
    refused(folder_config(root), r"cannot be read \(OSError: .*train/dog/1.png: Permission denied\)")


# --- the final model: a run whose last update diverged is not finished ----------------------------------------

def test_a_last_update_that_diverges_ends_the_run_diverged_not_finished(tmp_path):
    """One batch (N = 1) and one epoch: the only update's loss, measured before it, is finite; the update itself
    makes the weights non-finite. Only the evaluation after it, and the weights, can tell."""
    status = train_in_process(tmp_path, ["epochs=1", "batch_size=512", "dataset.num_test=512", "optimizer.lr=1e30",
                                         "limits.lr=null", "record.checkpoint=false"])
    header = json.loads((tmp_path / "run.json").read_text())
    assert status == "diverged" and header["status"] == "diverged"
    assert "after interval 1: lower optimizer.lr" in header["error"]
    assert not (tmp_path / "batch_accuracy.csv").exists()


def test_non_finite_weights_alone_are_caught(tmp_path):
    from hardsamples.evaluate import EvalResult
    from hardsamples.train import non_finite

    model = torch.nn.Linear(2, 2)
    fine = EvalResult(loss=0.5, top1=50.0, batch_sizes=[], batch_top1=[])
    assert non_finite(model, fine, fine) is None
    with torch.no_grad():
        model.bias[0] = float("inf")
    assert non_finite(model, fine, fine) == "the model's weights became non-finite"
    assert "test loss became nan" in non_finite(torch.nn.Linear(2, 2), fine,
                                                EvalResult(float("nan"), 0.0, [], []))


# --- booleans, choices and sizes: typed and bounded, with a way to raise a bound --------------------------------

TYPED = {
    "channels_last=maybe": (["channels_last=maybe"], r"channels_last=maybe is not one of its choices: use auto, true,"),
    "channels_last=1": (["channels_last=1"], r"channels_last=1 is not one of its choices"),
    "compile=maybe": (["compile=maybe"], r"compile=maybe is not one of its choices: use false, true"),
    "record.checkpoint=no": (["record.checkpoint=no"], r"record.checkpoint=no is not one of its choices: use true,"),
    "record.trace=yes": (["record.trace=yes"], r"record.trace=yes is not one of its choices"),
    "record.keep_checkpoint=1": (["record.keep_checkpoint=1"], r"record.keep_checkpoint=1 is not one of its choices"),
    "precision=fp16": (["precision=fp16"], r"precision=fp16 is not one of its choices: use auto, bf16, fp32"),
    "device=meta": (["device=meta"], r"device=meta is not a device a run can train on"),
    "device=cpu:0": (["device=cpu:0"], r"device=cpu:0 is not a device a run can train on"),
    "device=1": (["device=1"], r"device=1 is not a device"),
    "momentum=5": (["optimizer.momentum=5"], r"optimizer.momentum=5 is not below 1 .*: use a momentum in \[0, 1\)"),
    "momentum=1": (["optimizer.momentum=1.0"], r"optimizer.momentum=1.0 is not below 1"),
    "epochs=10**30": (["epochs=1000000000000000000000000000000"], r"epochs=10{30} is above limits.epochs=10000 .*"
                                                                   r"limits.epochs=<value>"),
    "image_size=100000": (["image_size=100000"], r"image_size=100000 is above limits.image_size=2048"),
    "lr=1e300": (["optimizer.lr=1e300"], r"optimizer.lr=1e\+300 is above limits.lr=10.0"),
    "batch_size=32.0": (["batch_size=32.0"], r"batch_size=32.0 is not written as a whole number: write batch_size=32"),
    "epochs=2.0": (["epochs=2.0"], r"epochs=2.0 is not written as a whole number: write epochs=2"),
    "batch_size=10**6": (["batch_size=1000000"], r"batch_size=1000000 is above limits.batch_size="),
    "num_classes=1e9": (["dataset.num_classes=1e9"], r"dataset.num_classes=1000000000.0 is not written as a whole"),
    "num_classes=10**9": (["dataset.num_classes=1000000000"], r"dataset.num_classes=1000000000 is above"
                                                              r" limits.num_classes"),
    "num_train=10**12": (["dataset.num_train=1000000000000"], r"dataset.num_train=1000000000000 is above limits.samples"),
    "channels=1000": (["dataset.channels=1000"], r"dataset.channels=1000 is above limits.channels"),
    "native_size=10**5": (["dataset.native_size=100000"], r"dataset.native_size=100000 is above limits.image_size"),
    "noise=-1": (["dataset.noise=-1"], r"dataset.noise=-1 is not a finite number >= 0"),
    "hard_fraction=5": (["dataset.hard_fraction=5"], r"dataset.hard_fraction=5 is outside \[0, 1\]"),
    "generator_seed=x": (["dataset.generator_seed=x"], r"dataset.generator_seed=x is not a whole number"),
    "a limit of 0": (["limits.epochs=0"], r"limits.epochs=0 is not a number > 0"),
}


@pytest.mark.parametrize("overrides,message", TYPED.values(), ids=TYPED.keys())
def test_an_untyped_or_unbounded_value_is_refused_before_anything_is_written(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message) as err:
        train_in_process(tmp_path, overrides)
    assert "\n" not in str(err.value) and not (tmp_path / "run.json").exists()


DIGITS = {
    "test_fraction=1.5": (["dataset.test_fraction=1.5"], r"dataset.test_fraction=1.5 is outside \(0, 1\)"),
    "test_fraction=0": (["dataset.test_fraction=0"], r"dataset.test_fraction=0 is outside \(0, 1\)"),
    "test_fraction=0.001": (["dataset.test_fraction=0.001"], r"dataset.test_fraction=0.001 cannot split digits"),
    "split_seed=-1": (["dataset.split_seed=-1"], r"dataset.split_seed=-1 is outside \[0, 2\^32 - 1\]"),
    "split_seed=2**40": (["dataset.split_seed=1099511627776"], r"dataset.split_seed=1099511627776 is outside"),
}


@pytest.mark.parametrize("overrides,message", DIGITS.values(), ids=DIGITS.keys())
def test_digits_split_settings_out_of_range_are_one_line(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        train_in_process(tmp_path, ["dataset=digits", *overrides], TINY_RUN)


def test_a_limit_raised_deliberately_lets_the_size_through():
    from hardsamples.config_checks.settings import check_settings

    check_settings(compose_config([*TINY, "epochs=20000", "limits.epochs=20000"]))
    check_settings(compose_config([*TINY, "optimizer.lr=100", "limits.lr=null"]))
    with pytest.raises(ConfigError):
        check_settings(compose_config([*TINY, "epochs=20000"]))


def test_limits_are_not_part_of_what_a_run_is_compared_by():
    """Raising a limit never makes a finished run look like another config (a rerun still skips it)."""
    from hardsamples.record_files import comparable, recorded_config

    low, high = (recorded_config(compose_config([*TINY, f"limits.epochs={n}"])) for n in (100, 200))
    assert comparable(low) == comparable(high)


# --- what only the built model and optimizer can tell ---------------------------------------------------------

def test_a_model_that_cannot_take_the_images_is_refused_before_training(tmp_path):
    with pytest.raises(ConfigError, match=r"model.name=vit_tiny_patch16_224 cannot take images of shape \(3, 16, 16\)"
                                          r" .*: pick the image_size it is built for"):
        train_in_process(tmp_path, ["model.name=vit_tiny_patch16_224"])
    assert not (tmp_path / "run.json").exists()


@pytest.mark.parametrize("optimizer,message", [
    ("torch.optim.LBFGS", r"TypeError: .*closure"),
    ("torch.optim.SparseAdam", r"RuntimeError: SparseAdam does not support dense gradients"),
])
def test_an_optimizer_that_cannot_step_on_the_model_is_refused_before_training(tmp_path, optimizer, message):
    with pytest.raises(ConfigError, match=rf"optimizer._target_={optimizer} cannot train this model \({message}"):
        train_in_process(tmp_path, [f"++optimizer._target_={optimizer}", "~optimizer.momentum",
                                    "~optimizer.weight_decay"])
    assert not (tmp_path / "run.json").exists()


def test_the_optimizer_probe_changes_nothing_the_run_computes():
    """The probe steps a copy under a forked RNG: the model, its optimizer and the RNG are as before."""
    from hardsamples.data import to_device
    from hardsamples.loop import build_loop
    from hardsamples.runtime import make_runtime
    from hardsamples.config_checks.loop import check_users_optimizer_steps

    cfg = compose_config([*TINY, "++optimizer._target_=torch.optim.AdamW", "~optimizer.momentum"])
    runtime = make_runtime(cfg)
    data = to_device(load_host_data(cfg), cfg.image_size, cfg.fidelity.normalization, runtime.device)
    loop = build_loop(cfg, data, runtime)
    weights = {k: v.clone() for k, v in loop.model.state_dict().items()}
    rng = torch.get_rng_state()
    check_users_optimizer_steps(cfg, loop)
    assert torch.equal(rng, torch.get_rng_state()) and not loop.optimizer.state
    assert all(torch.equal(weights[k], v) for k, v in loop.model.state_dict().items())


@pytest.mark.parametrize("dataset,folder,files", [
    ("fashion_mnist", "FashionMNIST/raw", ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                           "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")),
    ("cifar10", "cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch", "batches.meta")),
])
def test_damaged_dataset_files_are_one_line_not_a_traceback(tmp_path, dataset, folder, files):
    (tmp_path / folder).mkdir(parents=True)
    for name in files:
        (tmp_path / folder / name).write_bytes(os.urandom(1000))
    refused([*OWN, f"dataset={dataset}", f"data_dir={tmp_path}", "dataset.system_dir=null"]
            if dataset == "fashion_mnist" else [*OWN, f"dataset={dataset}", f"data_dir={tmp_path}"],
            rf"{dataset} files under .*{folder} cannot be read \(.*\): they are missing, damaged, or not {dataset}'s")
