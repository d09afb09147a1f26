"""Own data without editing the package: a folder of images (dataset=image_folder) and a user's function
(dataset=custom, hydra.utils.instantiate); both train any timm model, and bad input stops in one line."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import TINY_RUN, compose_config, run_cli, train_in_process
from hardsamples.data import load_host_data
from hardsamples.errors import ConfigError

CLASSES = ("cat", "dog", "owl")
# 24 training and 12 test images, each batch of 8 a mix of classes once shuffled; tiny model, tiny images.
OWN_RUN = [*TINY_RUN, "batch_size=8", "epochs=2", "record.checkpoint=false"]


def write_image_folder(root: Path, per_class: dict[str, int], size=(10, 14), mode="RGB") -> Path:
    """root/<split>/<class>/<i>.png: random images of a non-square size, so decoding must resize."""
    rng = np.random.default_rng(0)
    shape = (*size, 3) if mode == "RGB" else size  # (H, W, 3) is saved as RGB, (H, W) as grey
    for split, count in per_class.items():
        for name in CLASSES:
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(folder / f"{i}.png")
    return root


@pytest.fixture
def image_root(tmp_path) -> Path:
    return write_image_folder(tmp_path / "images", {"train": 8, "test": 4})


def load_folder(root: Path, *extra: str):
    return load_host_data(compose_config(["dataset=image_folder", f"dataset.root={root}", "image_size=16", *extra]))


def test_image_folder_decodes_once_with_pils_resize_at_native_size(image_root):
    host = load_folder(image_root, "dataset.native_size=12", "dataset.shuffle_seed=null")
    assert host.train_images.shape == (24, 3, 12, 12) and host.train_images.dtype == np.uint8
    assert host.test_images.shape == (12, 3, 12, 12) and host.num_classes == 3
    assert host.train_labels.tolist() == [0] * 8 + [1] * 8 + [2] * 8  # folder order: classes sorted by name
    first = Image.open(image_root / "train" / "cat" / "0.png").convert("RGB").resize((12, 12), Image.BILINEAR)
    assert np.array_equal(host.train_images[0], np.asarray(first).transpose(2, 0, 1))


def test_image_folder_shuffles_each_split_once_the_same_way_every_time(image_root):
    ordered = load_folder(image_root, "dataset.shuffle_seed=null")
    shuffled, again = load_folder(image_root), load_folder(image_root)
    assert np.array_equal(shuffled.train_images, again.train_images)
    assert shuffled.train_labels[:8].tolist() != [0] * 8  # mixed classes, so dataset-order batches mix them
    assert sorted(shuffled.train_labels.tolist()) == ordered.train_labels.tolist()
    assert shuffled.train_images.shape[2:] == (16, 16)  # native_size defaults to image_size: one resize


def test_image_folder_reads_grey_and_other_split_names(tmp_path):
    root = write_image_folder(tmp_path / "grey", {"train": 3, "val": 2}, mode="L")
    host = load_folder(root, "dataset.channels=1", "dataset.test_dir=val")
    assert host.train_images.shape == (9, 1, 16, 16) and host.test_images.shape == (6, 1, 16, 16)


def test_a_timm_model_trains_on_an_image_folder(image_root, tmp_path):
    run_dir = tmp_path / "run"
    status = train_in_process(run_dir, ["dataset=image_folder", f"dataset.root={image_root}", "delta=0.5"], OWN_RUN)
    assert status == "finished"
    record = json.loads((run_dir / "run.json").read_text())
    assert (record["num_train"], record["num_test"], record["num_classes"], record["channels"]) == (24, 12, 3, 3)
    assert (record["model"], record["num_batches"], record["k"], record["update_budget"]) == ("test_resnet", 3, 1, 6)


@pytest.mark.parametrize("overrides,message", [
    ([], r"dataset=image_folder needs the folder of your images: pass dataset.root=/path/to/folder"),
    (["dataset.root=/nonexistent"], r"dataset.root=/nonexistent is not a folder: pass the folder that holds train/"),
    (["dataset.root={root}", "dataset.test_dir=none"], r"{root}/none is not a folder: lay the images out as .*"
                                                         r" dataset.test_dir at the split's folder"),
    (["dataset.root={root}", "dataset.test_dir=train/cat"], r"{root}/train/cat holds no class folders: lay the"),
    (["dataset.root={root}", "dataset.native_size=0"], r"dataset.native_size=0 is not a whole number >= 1"),
    (["dataset.root={root}", "dataset.channels=2"], r"dataset.channels=2 is not 1 or 3"),
    (["dataset.root={root}", "dataset.channels=true"], r"dataset.channels=True is not 1 or 3"),
], ids=["no root", "root missing", "split missing", "no class folders", "native size", "channels", "channels true"])
def test_image_folder_refuses_bad_input_in_one_line(image_root, overrides, message):
    overrides = [o.format(root=image_root) for o in overrides]
    with pytest.raises(ConfigError, match=message.format(root=image_root)) as err:
        load_host_data(compose_config(["dataset=image_folder", *overrides]))
    assert "\n" not in str(err.value)


def test_image_folder_refuses_splits_with_different_classes(image_root):
    (image_root / "test" / "emu").mkdir()
    Image.new("RGB", (4, 4)).save(image_root / "test" / "emu" / "0.png")
    with pytest.raises(ConfigError, match=r"differ .*\(only in train: none, only in test: \['emu'\]"):
        load_folder(image_root)


@pytest.mark.parametrize("workers", [0, 1])
def test_an_undecodable_file_is_named_in_one_line(image_root, workers):
    (image_root / "train" / "dog" / "9.png").write_bytes(b"not a png")
    with pytest.raises(ConfigError, match=r"an image under .* cannot be read .*dog/9.png.*: remove or replace it") as err:
        load_folder(image_root, f"dataset.decode_workers={workers}")
    assert "\n" not in str(err.value)


MODULE = '''
import numpy as np
import torch
from torch.utils.data import TensorDataset


def make_data(size=8, classes=4):
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (60, 3, size, size), dtype=torch.uint8, generator=gen)
    y = torch.arange(60) % classes
    return (x[:40], y[:40]), (x[40:].numpy(), y[40:].numpy())


def as_datasets():
    (x, y), (xt, yt) = make_data()
    return TensorDataset(x, y), TensorDataset(torch.as_tensor(xt), torch.as_tensor(yt))


def float_images():
    (x, y), test = make_data()
    return (x.float() / 255, y), test


def three_things():
    return 1, 2, 3


def float_labels():
    (x, y), test = make_data()
    return (x, y.float()), test


class Ragged(torch.utils.data.Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, i):
        return torch.zeros(3, 4 + i, 4, dtype=torch.uint8), 0


def ragged():
    return Ragged(), Ragged()
'''


@pytest.fixture
def user_module(tmp_path, monkeypatch, request) -> str:
    """A module of the user's, outside the package, importable from tmp_path; a name of its own per test."""
    name = "user_data_" + re.sub(r"\W", "_", request.node.name)
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def load_custom(*overrides: str):
    return load_host_data(compose_config(["dataset=custom", *overrides]))


def test_a_users_function_gives_the_data_with_its_keyword_arguments(user_module):
    host = load_custom(f"dataset.data._target_={user_module}.make_data")
    assert host.train_images.shape == (40, 3, 8, 8) and host.test_images.shape == (20, 3, 8, 8)
    assert host.num_classes == 4 and host.train_labels.dtype == np.int64 and host.test_images.dtype == np.uint8
    host = load_custom(f"dataset.data._target_={user_module}.make_data", "++dataset.data.size=6",
                       "++dataset.data.classes=7")
    assert host.train_images.shape == (40, 3, 6, 6) and host.num_classes == 7


def test_a_users_function_may_return_datasets(user_module):
    host = load_custom(f"dataset.data._target_={user_module}.as_datasets")
    direct = load_custom(f"dataset.data._target_={user_module}.make_data")
    assert np.array_equal(host.train_images, direct.train_images) and np.array_equal(host.test_labels, direct.test_labels)


@pytest.mark.parametrize("function,message", [
    ("float_images", r"returned train images of shape \(40, 3, 8, 8\) and dtype torch.float32: return \(train_images"),
    ("three_things", r"returned a tuple of 3: return \(train_images, train_labels\), \(test_images, test_labels\)"),
    ("float_labels", r"returned train labels of shape \(40,\) and dtype torch.float32 for 40 images"),
    ("ragged", r"returned train a Dataset whose items do not stack \(RuntimeError: stack expects each tensor"),
    ("no_such_function", r"cannot be imported: module user_data_\w+ has no 'no_such_function': check the spelling"),
])
def test_a_wrong_return_is_refused_in_one_line(user_module, function, message):
    with pytest.raises(ConfigError, match=rf"dataset.data._target_={user_module}.{function} {message}") as err:
        load_custom(f"dataset.data._target_={user_module}.{function}")
    assert "\n" not in str(err.value)


def test_custom_without_a_target_says_what_to_pass():
    with pytest.raises(ConfigError, match=r"dataset=custom needs your function: pass dataset.data._target_="):
        load_custom()


def user_env(tmp_path: Path) -> dict:
    return {"PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}


def test_the_cli_trains_a_timm_model_on_a_users_function(user_module, tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli([*OWN_RUN, "dataset=custom", f"dataset.data._target_={user_module}.make_data",
                      "++dataset.data.classes=5", "dataset.name=mine", "delta=0.5", f"hydra.run.dir={run_dir}"],
                     env=user_env(tmp_path))
    assert result.returncode == 0, result.stderr
    record = json.loads((run_dir / "run.json").read_text())
    assert (record["status"], record["dataset"], record["num_train"], record["num_classes"]) == ("finished", "mine", 40, 5)
    assert record["config"]["dataset"]["data"] == {"_target_": f"{user_module}.make_data", "classes": 5}


def test_the_cli_refuses_a_bad_return_with_exit_2_and_one_line(user_module, tmp_path):
    result = run_cli([*OWN_RUN, "dataset=custom", f"dataset.data._target_={user_module}.float_images",
                      f"hydra.run.dir={tmp_path / 'run'}"], env=user_env(tmp_path))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: dataset.data._target_={user_module}.float_images returned"
                                                   " train images of shape (40, 3, 8, 8) and dtype torch.float32"), lines


def test_a_missing_module_is_named_with_the_folder_python_looked_in(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"dataset.data._target_=no_such_module.make_data cannot be imported: Python"
                                          r" finds no module no_such_module: there is no no_such_module.py in the"
                                          rf" working directory \({re.escape(str(tmp_path))}\) or on PYTHONPATH"):
        load_custom("dataset.data._target_=no_such_module.make_data")


def console_script(name: str) -> Path:
    """The installed console script beside this interpreter (the editable install's, or the wheel's)."""
    return Path(sys.executable).parent / name


def test_the_console_script_finds_a_module_in_the_working_directory_as_python_m_does(tmp_path):
    """hardsamples-train from the folder that holds my_data.py, with no PYTHONPATH: as `python -m`."""
    (tmp_path / "my_data_here.py").write_text(textwrap.dedent(MODULE))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([str(console_script("hardsamples-train")), *OWN_RUN, "dataset=custom",
                             "dataset.data._target_=my_data_here.make_data", "dataset.name=mine"],
                            cwd=tmp_path, env={**env, "HYDRA_FULL_ERROR": "0"}, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    (record,) = (tmp_path / "results" / "runs").rglob("run.json")
    assert json.loads(record.read_text())["status"] == "finished"
