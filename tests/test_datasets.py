"""Datasets become uint8 device tensors; torchvision's loaders read files written in the real formats."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.datasets.cifar
import torchvision.datasets.stl10

from conftest import compose_config
from hardsamples.data import load_host_data, make_fixed_batches, to_device
from hardsamples.errors import ConfigError


@pytest.fixture
def skip_md5(monkeypatch):
    """torchvision checks the real archives' MD5 sums; small test files can only match on existence."""
    def exists(fpath, md5=None):
        return Path(fpath).is_file()

    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", exists)
    monkeypatch.setattr(torchvision.datasets.stl10, "check_integrity", exists)


def write_cifar(root: Path, folder: str, files: list[str], label_key: str, meta: str, meta_key: str,
                classes: int, per_file: int = 6) -> None:
    base = root / folder
    base.mkdir(parents=True)
    rng = np.random.default_rng(0)
    labels = rng.integers(0, classes, per_file).tolist()  # one set for every file: each test class is trained
    for name in files:
        entry = {"data": rng.integers(0, 256, (per_file, 3 * 32 * 32), dtype=np.uint8), label_key: labels}
        (base / name).write_bytes(pickle.dumps(entry))
    (base / meta).write_bytes(pickle.dumps({meta_key: [f"class{i}" for i in range(classes)]}))


def load(dataset: str, data_dir: Path, *extra):
    cfg = compose_config([f"dataset={dataset}", f"data_dir={data_dir}", *extra])
    return load_host_data(cfg)


def test_cifar10_reads_the_python_pickle_batches(tmp_path, skip_md5):
    write_cifar(tmp_path, "cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"],
                "labels", "batches.meta", "label_names", 10)
    host = load("cifar10", tmp_path)
    assert host.train_images.shape == (30, 3, 32, 32) and host.train_images.dtype == np.uint8
    assert host.test_images.shape == (6, 3, 32, 32) and host.num_classes == 10
    raw = pickle.loads((tmp_path / "cifar-10-batches-py" / "data_batch_1").read_bytes())
    assert np.array_equal(host.train_images[0].reshape(-1), raw["data"][0])  # CHW order survives
    assert host.train_labels[:6].tolist() == raw["labels"]


def test_cifar100_reads_fine_labels(tmp_path, skip_md5):
    write_cifar(tmp_path, "cifar-100-python", ["train", "test"], "fine_labels", "meta", "fine_label_names", 100)
    host = load("cifar100", tmp_path)
    assert host.train_images.shape == (6, 3, 32, 32) and host.num_classes == 100


def test_stl10_reads_the_labelled_binary_splits(tmp_path, skip_md5):
    base = tmp_path / "stl10_binary"
    base.mkdir()
    rng = np.random.default_rng(0)
    for split, n in (("train", 5), ("test", 4)):
        rng.integers(0, 256, (n, 3, 96, 96), dtype=np.uint8).tofile(base / f"{split}_X.bin")
        np.arange(1, n + 1, dtype=np.uint8).tofile(base / f"{split}_y.bin")  # labels 1..10 on disk
    np.zeros((2, 3, 96, 96), np.uint8).tofile(base / "unlabeled_X.bin")  # part of the real layout
    (base / "class_names.txt").write_text("\n".join(f"c{i}" for i in range(10)))
    host = load("stl10", tmp_path)
    assert host.train_images.shape == (5, 3, 96, 96) and host.test_images.shape == (4, 3, 96, 96)
    assert host.train_labels.tolist() == [0, 1, 2, 3, 4]


def test_missing_files_name_the_folder_and_the_fix(tmp_path):
    with pytest.raises(ConfigError, match=r"cifar10 files not found under .*cifar-10-batches-py.*DATA_DIR.*download=true"):
        load("cifar10", tmp_path)


def test_digits_is_a_fixed_stratified_split_of_real_images():
    host = load("digits", Path("."))
    assert host.train_images.shape[1:] == (1, 8, 8) and len(host.train_images) + len(host.test_images) == 1797
    assert host.train_images.max() == 255
    again = load("digits", Path("."), "seed=5")
    assert np.array_equal(host.test_labels, again.test_labels), "the split must not follow the run seed"


def test_synthetic_has_the_requested_shape_and_hard_fraction():
    host = load("synthetic", Path("."), "dataset.num_train=4000", "dataset.channels=1", "dataset.native_size=20",
                "dataset.num_classes=7", "dataset.hard_fraction=0.25")
    assert host.train_images.shape == (4000, 1, 20, 20) and host.num_classes == 7
    assert set(np.unique(host.train_labels)) == set(range(7))
    assert host.hard_mask.mean() == pytest.approx(0.25, abs=0.03)
    again = load("synthetic", Path("."), "dataset.num_train=4000", "dataset.channels=1", "dataset.native_size=20",
                 "dataset.num_classes=7", "dataset.hard_fraction=0.25", "seed=9")
    assert np.array_equal(host.train_images, again.train_images), "images depend on generator_seed only"


def test_images_are_resized_once_and_stay_uint8_on_the_device():
    host = load("digits", Path("."))
    data = to_device(host, 16, "imagenet", torch.device("cpu"))
    assert data.train_images.dtype == torch.uint8 and data.train_images.shape[-2:] == (16, 16)
    batch = data.normalise(data.train_images[:4])
    assert batch.dtype == torch.float32 and batch.shape == (4, 1, 16, 16)


def test_fixed_batches_drop_or_pad_the_last_partial_batch():
    dropped = make_fixed_batches(10, 4, drop_last=True, partition="dataset_order", seed=0, device=torch.device("cpu"))
    assert dropped.tolist() == [[0, 1, 2, 3], [4, 5, 6, 7]]
    padded = make_fixed_batches(10, 4, drop_last=False, partition="dataset_order", seed=0, device=torch.device("cpu"))
    assert padded.tolist() == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 0, 1]]
    shuffled = make_fixed_batches(10, 4, drop_last=False, partition="shuffled", seed=0, device=torch.device("cpu"))
    assert sorted(set(shuffled.flatten().tolist())) == list(range(10)) and shuffled.tolist() != padded.tolist()


def test_a_registered_source_is_loaded_by_its_config_and_checked_as_every_source(monkeypatch):
    """A new kind of source is a loader registered under its name: load_host_data needs no edit.
    (That what it returns is checked as every source is: tests/test_honest_records.py.)"""
    import hardsamples.data as data

    monkeypatch.setitem(data.DATASET_SOURCES, "my_source", None)  # taken out again after the test
    digits = load_host_data(compose_config(["dataset=digits"]))

    @data.register_source("my_source")
    def load_mine(dataset_cfg, data_dir):
        return digits

    cfg = compose_config(["dataset=digits"])
    cfg.dataset.source = "my_source"
    assert load_host_data(cfg) is digits
    cfg.dataset.source = "nowhere"
    with pytest.raises(ConfigError, match=r"unknown dataset source 'nowhere': use torchvision, .*my_source"):
        load_host_data(cfg)
