"""Bad input: one line naming the problem and the fix, a non-zero exit, no record claiming success."""

from __future__ import annotations

import pytest

from conftest import TINY, TINY_RUN, run_cli, train_in_process
from hardsamples.errors import ConfigError

CASES = {
    "delta above 1": (["delta=1.5"], r"delta=1.5 is outside \(0, 1\]: use 1.0 .* or a fraction"),
    "delta zero": (["delta=0"], r"delta=0 is outside \(0, 1\]"),
    "no epochs": (["epochs=0"], r"epochs=0 must be at least 1"),
    "batch larger than the training set": (["batch_size=5000"],
                                           r"batch_size=5000 is larger than the 600 training samples .* pick batch_size <= 600"),
    "unknown timm model": (["model.name=resnet_nonexistent"], r"unknown model 'resnet_nonexistent': .*model.name=<any timm model name>"),
    "missing dataset files": (["dataset=cifar10", "data_dir=/nonexistent"],
                              r"cifar10 files not found under /nonexistent/cifar-10-batches-py .*DATA_DIR.*download=true"),
}


@pytest.mark.parametrize("overrides,message", CASES.values(), ids=CASES.keys())
def test_bad_input_raises_one_clear_line_and_writes_no_record(tmp_path, overrides, message):
    base = TINY_RUN if any(o.startswith("dataset=") for o in overrides) else TINY
    with pytest.raises(ConfigError, match=message) as err:
        train_in_process(tmp_path, overrides, base)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "run.json").exists()


@pytest.mark.parametrize("args,message", [
    (["delta=1.5"], "error: delta=1.5 is outside (0, 1]"),
    (["dataset=imagenet"], "error: unknown dataset 'imagenet': choose one of cifar10, cifar100, custom, digits, fashion_mnist, image_folder, stl10, synthetic"),
    (["model=vgg"], "error: unknown model 'vgg': choose one of"),
    (["dataset=stl10", "data_dir=/nonexistent"], "error: stl10 files not found under /nonexistent/stl10_binary"),
], ids=["delta", "dataset group", "model group", "missing files"])
def test_cli_prints_one_line_and_exits_2(tmp_path, args, message):
    base = TINY_RUN if any(a.startswith("dataset=") for a in args) else TINY
    result = run_cli([*base, *args, f"hydra.run.dir={tmp_path}"])
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), result.stderr
    # Refused before it trains: nothing of the run's is written, not Hydra's config nor the log (the lock
    # the refused process took is all a new directory may hold).
    assert {p.name for p in tmp_path.iterdir()} <= {".lock"}, sorted(p.name for p in tmp_path.iterdir())


def test_a_different_config_in_an_existing_run_directory_is_refused_naming_what_differs(tmp_path):
    assert train_in_process(tmp_path, ["epochs=1"]) == "finished"
    with pytest.raises(ConfigError, match=r"holds a run with a different config \(epochs: 1 there, 2 here; "
                                          r"optimizer.lr: 0.005 there, 0.1 here\): pass run_name="):
        train_in_process(tmp_path, ["epochs=2", "optimizer.lr=0.1"])


def test_config_differences_name_the_changed_keys_and_count_the_rest():
    from hardsamples.record_files import config_differences
    old = {"a": 1, "b": {"c": 2, "d": 3}, "e": 4, "f": 5}
    assert config_differences(old, old) == ""
    assert config_differences(old, {**old, "b": {"c": 2}}) == "b.d: 3 there, unset here"
    new = {"a": 0, "b": {"c": 0, "d": 0}, "e": 0, "f": 5}
    assert config_differences(old, new) == "a: 1 there, 0 here; b.c: 2 there, 0 here; b.d: 3 there, 0 here; and 1 more"
