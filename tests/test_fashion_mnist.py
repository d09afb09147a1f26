"""Fashion-MNIST, the study's real data: torchvision's loader fed from Debian's package or DATA_DIR.

Small gzipped idx files written in the real on-disk format test the unpacking and parsing anywhere;
the tests on the real 70,000 images need Debian's dataset-fashion-mnist (CI installs it).
"""

from __future__ import annotations

import gzip
import json
import struct
from pathlib import Path

import numpy as np
import pytest

from conftest import compose_config, run_cli
from hardsamples.data import FASHION_MNIST_FILES, load_host_data
from hardsamples.errors import ConfigError

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
needs_debian_package = pytest.mark.skipif(
    not (DEBIAN_DIR / "train-images-idx3-ubyte.gz").is_file(),
    reason="needs the real Fashion-MNIST: apt-get install dataset-fashion-mnist (Debian's package; CI installs it)")


def idx_bytes(array: np.ndarray) -> bytes:
    """The idx format torchvision reads: magic (0, 0, 0x08 = uint8, ndim), big-endian dims, the bytes."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx_gz(path: Path, array: np.ndarray) -> None:
    path.write_bytes(gzip.compress(idx_bytes(array)))


@pytest.fixture
def small_system_copy(tmp_path) -> tuple[Path, dict]:
    """A folder laid out like Debian's package, with 7 train and 3 test images."""
    rng = np.random.default_rng(0)
    arrays = {"train-images-idx3-ubyte": rng.integers(0, 256, (7, 28, 28)),
              "train-labels-idx1-ubyte": np.array([0, 1, 2, 7, 4, 8, 9]),  # every test class trained
              "t10k-images-idx3-ubyte": rng.integers(0, 256, (3, 28, 28)),
              "t10k-labels-idx1-ubyte": np.array([7, 8, 9])}
    system = tmp_path / "debian"
    system.mkdir()
    for name, array in arrays.items():
        write_idx_gz(system / f"{name}.gz", array)
    return system, arrays


def load(data_dir: Path, system_dir: Path):
    return load_host_data(compose_config(["dataset=fashion_mnist", f"data_dir={data_dir}",
                                          f"dataset.system_dir={system_dir}"]))


def test_a_system_copy_is_unpacked_once_and_read_by_torchvision(tmp_path, small_system_copy):
    system, arrays = small_system_copy
    host = load(tmp_path / "data", system)
    assert host.train_images.shape == (7, 1, 28, 28) and host.test_images.shape == (3, 1, 28, 28)
    assert host.train_images.dtype == np.uint8 and host.num_classes == 10
    assert np.array_equal(host.train_images[:, 0], arrays["train-images-idx3-ubyte"])
    assert host.train_labels.tolist() == [0, 1, 2, 7, 4, 8, 9] and host.test_labels.tolist() == [7, 8, 9]
    raw = tmp_path / "data" / "FashionMNIST" / "raw"
    assert sorted(p.name for p in raw.iterdir()) == sorted(FASHION_MNIST_FILES), "no temporary file left behind"
    stamps = {p.name: p.stat().st_mtime_ns for p in raw.iterdir()}
    load(tmp_path / "data", system)
    assert {p.name: p.stat().st_mtime_ns for p in raw.iterdir()} == stamps, "a second run must not unpack again"


def test_files_already_under_data_dir_win_over_the_system_copy(tmp_path, small_system_copy):
    system, _ = small_system_copy
    load(tmp_path / "data", system)  # unpacks into data/FashionMNIST/raw
    host = load(tmp_path / "data", tmp_path / "no-such-system-dir")
    assert host.train_images.shape == (7, 1, 28, 28)


def test_missing_files_name_both_ways_to_get_them(tmp_path):
    with pytest.raises(ConfigError) as err:
        load(tmp_path / "data", tmp_path / "no-such-system-dir")
    message = str(err.value)
    assert "\n" not in message
    assert "fashion_mnist files not found under" in message and "FashionMNIST/raw" in message
    assert "apt-get install dataset-fashion-mnist" in message and "DATA_DIR" in message
    assert "dataset.download=true" in message


def test_missing_files_through_the_cli_exit_2_with_one_line_and_no_record(tmp_path):
    result = run_cli(["dataset=fashion_mnist", f"data_dir={tmp_path}/data", f"dataset.system_dir={tmp_path}/none",
                      "logger.wandb.mode=disabled", f"hydra.run.dir={tmp_path}/run"], cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and result.stderr.startswith("error: fashion_mnist files not found")
    assert not (tmp_path / "run" / "run.json").exists()


@needs_debian_package
def test_the_real_files_have_the_published_counts_balance_and_mean(tmp_path):
    host = load(tmp_path / "data", DEBIAN_DIR)
    assert host.train_images.shape == (60000, 1, 28, 28) and host.test_images.shape == (10000, 1, 28, 28)
    assert np.bincount(host.train_labels).tolist() == [6000] * 10
    assert np.bincount(host.test_labels).tolist() == [1000] * 10
    assert host.train_images.mean() / 255 == pytest.approx(0.2860, abs=5e-5)


@pytest.mark.slow
@needs_debian_package
def test_a_short_real_run_finishes_with_the_papers_batch_count(tmp_path):
    """One epoch of timm's test ResNet on the 60k real images at batch 512 under paper_code: N = 117."""
    result = run_cli(["dataset=fashion_mnist", f"data_dir={tmp_path}/data", "model.name=test_resnet",
                      "epochs=1", "batch_size=512", "image_size=28", "optimizer.lr=0.05",
                      "logger.wandb.mode=disabled", f"hydra.run.dir={tmp_path}/run"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["status"] == "finished" and record["num_train"] == 60000 and record["num_test"] == 10000
    assert record["num_batches"] == 117 and record["update_budget"] == 117
    metrics = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    assert len(metrics) == 2
    test_top1 = float(metrics[1].split(",")[metrics[0].split(",").index("test_top1")])
    assert test_top1 > 60.0, "one real epoch of a ResNet on Fashion-MNIST learns far above chance (10%)"
