"""Issue 10: where `fidelity=paper_code` must follow the authors' code (DyBAT 402a3b5, hfassold/mbtrim)
and `clean` keeps its corrected choice: the final +/- rows, trimming's kept count, ties, k, precision,
the resize and the stored loss."""

from __future__ import annotations

import copy
import json
import random

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from PIL import Image

from conftest import CONF, TINY, compose_config, run_cli, train_in_process
from hardsamples.config_checks.settings import check_settings
from hardsamples.data import HostData, load_host_data, to_device
from hardsamples.errors import ConfigError
from hardsamples.loop import build_loop
from hardsamples.models import build_model
from hardsamples.runtime import Runtime, resolve_precision
from hardsamples.policies import TrimmingPolicy, build_policy, hardest_count

CPU = torch.device("cpu")


def protocol(name: str):
    return OmegaConf.load(CONF / "fidelity" / f"{name}.yaml")


# --- 1. the final model's batch accuracies, as metrics.py ----------------------------------------------

# 600 and 100 are not multiples of B = 64: 9 full training batches and one of 24; one test batch and one of 36.
ODD_SIZES = ["epochs=1", "dataset.num_test=100"]


def hand_batch_top1(model, data, images, labels, batch_mode: bool, forward_size: int, batch_size: int) -> list[float]:
    """metrics.py by hand: logits in forward chunks, then top-1 of each batch of B, the partial one too."""
    model.train(batch_mode)
    with torch.no_grad():
        logits = torch.cat([model(data.normalise(images[i:i + forward_size]))
                            for i in range(0, len(labels), forward_size)])
    hits = (logits.argmax(dim=1) == labels).double()
    return [100.0 * float(hits[i:i + batch_size].mean()) for i in range(0, len(labels), batch_size)]


@pytest.mark.parametrize("fidelity", ["paper_code", "clean"])
def test_final_rows_are_every_batch_of_the_final_model_including_the_partial_one(tmp_path, fidelity):
    overrides = [f"fidelity={fidelity}", *ODD_SIZES]
    assert train_in_process(tmp_path, [*overrides, "record.keep_checkpoint=true"]) == "finished"
    cfg = compose_config(TINY + overrides)
    data = to_device(load_host_data(cfg), cfg.image_size, cfg.fidelity.normalization, CPU)
    model = build_model(cfg.model.name, data.num_classes, data.channels)
    model.load_state_dict(torch.load(tmp_path / "checkpoint.pt", weights_only=True)["loop"]["model"])  # the last interval's
    batch_mode = fidelity == "paper_code"  # BatchNorm: batch statistics (paper_code) or running ones (clean)
    forward_size = 64 if batch_mode else cfg.eval.batch_size
    rows = pd.read_csv(tmp_path / "batch_accuracy.csv")
    final = rows.query("evaluation == 'final'")
    for split, images, labels, sizes in (("train", data.train_images, data.train_labels, [64] * 9 + [24]),
                                         ("test", data.test_images, data.test_labels, [64, 36])):
        expected = hand_batch_top1(model, data, images, labels, batch_mode, forward_size, 64)
        assert final.query("split == @split")["top1"].tolist() == expected, split
        assert final.query("split == @split")["samples"].tolist() == sizes, split
    # The final-model top-1 the tables print beside the +/-: the mean of per-batch top-1, as metrics.py.
    test_top1 = final.query("split == 'test'")["top1"].mean()
    assert test_top1 == pytest.approx(np.mean(hand_batch_top1(model, data, data.test_images, data.test_labels,
                                                              batch_mode, forward_size, 64)), abs=1e-12)
    interval = rows.query("evaluation == 'interval' and split == 'test'")
    # paper_code's intervals drop the partial test batch; clean's evaluate every sample, as the final rows.
    assert interval["samples"].tolist() == ([64] if batch_mode else [64, 36])


# --- 2. trimming's kept count ------------------------------------------------------------------------

def mbtrim_kept(m: int, epochs: int, epoch: int, a: float = 1.0, b: float = 0.2) -> int:
    """hfassold/mbtrim's arithmetic, in its order of operations."""
    return max(round(epoch * (b * m - a * m) / (epochs - 1) + a * m), 1)


def test_trimming_keeps_the_authors_count_where_a_fraction_times_m_would_round_otherwise():
    policy = TrimmingPolicy(9, CPU, start=1.0, end=0.2, shape="linear")
    disagree = []
    for m in range(1, 129):
        for epochs in range(2, 41):
            for epoch in range(epochs):
                kept = policy.kept_count(m, epoch, epochs)
                assert kept == mbtrim_kept(m, epochs, epoch), (m, epochs, epoch)
                if kept != max(1, round((1.0 + (0.2 - 1.0) * epoch / (epochs - 1)) * m)):
                    disagree.append((m, epochs, epoch))
    # Found by brute force: the cases where the two ways of writing the schedule round apart.
    assert (41, 25, 15) in disagree and len(disagree) >= 10


def test_trimming_keeps_the_start_fraction_in_a_single_epoch_run():
    assert TrimmingPolicy(9, CPU, start=0.5, end=0.2, shape="linear").kept_count(7, 0, 1) == round(3.5)


# --- 3. ties in the stored losses ----------------------------------------------------------------------

def authors_rounds(round0: list[float], later_loss: float, k: int, rounds: int) -> list[list[int]]:
    """The authors' ranking: a list of [batch, loss] re-sorted, stably, each round as it stood after the last."""
    ranked = [[b, loss] for b, loss in enumerate(round0)]
    chosen = []
    for _ in range(rounds):
        ranked = sorted(ranked, key=lambda entry: -entry[1])  # Python's sort is stable
        chosen.append([b for b, _ in ranked[:k]])
        for entry in ranked[:k]:
            entry[1] = later_loss
    return chosen


def policy_rounds(fidelity: str, round0: list[float], later_loss: float, rounds: int,
                  resume_after: int = 1) -> tuple[int, list[list[int]]]:
    """Drive the project's policy: round 0 observes round0, every later update a constant loss.
    Halfway the policy is checkpointed and rebuilt, as a resumed run rebuilds it."""
    cfg = compose_config(TINY + [f"fidelity={fidelity}", "delta=0.3", "method.round_order=loss"])
    policy = build_policy(cfg, len(round0), CPU)
    ids = policy.next_round(0, 10**6, None)
    policy.observe(ids, torch.tensor(round0)[ids])
    chosen = []
    for r in range(rounds):
        if r == resume_after:
            state = copy.deepcopy(policy.state_dict())
            policy = build_policy(cfg, len(round0), CPU)
            policy.load_state_dict(state)
        ids = policy.next_round(r + 1, 10**6, None)
        chosen.append(ids.tolist())
        policy.observe(ids, torch.full((len(ids),), later_loss))
    return policy.k, chosen


def test_equal_stored_losses_keep_last_rounds_rank_under_paper_code_and_go_to_the_lower_index_under_clean():
    # Round 0 ranks batch 1 above batch 0 (and 5 above 4); once trained, batches reach the same
    # constant loss, so from then on the choice among equal losses is decided by the tie rule alone.
    round0 = [1.0, 2.0, 0.0, 0.5, 1.5, 3.0, 0.2, 0.1, 0.7, 0.9]
    k, paper = policy_rounds("paper_code", round0, later_loss=1.0, rounds=6)
    _, clean = policy_rounds("clean", round0, later_loss=1.0, rounds=6)
    assert k == 3 and paper == authors_rounds(round0, 1.0, k, rounds=6)
    lower_index = []
    stored = list(round0)
    for _ in range(6):
        lower_index.append(sorted(range(len(stored)), key=lambda b: (-stored[b], b))[:k])
        for b in lower_index[-1]:
            stored[b] = 1.0
    assert clean == lower_index
    assert paper != clean  # the scenario separates the two rules


def test_random_ties_follow_the_authors_stable_re_sort_round_after_round():
    """Losses from {0, 1, 2}: ties everywhere, resumed from a checkpoint at a random round."""
    gen = random.Random(0)
    for _ in range(20):
        round0 = [float(gen.randrange(3)) for _ in range(10)]
        later = float(gen.randrange(3))
        k, paper = policy_rounds("paper_code", round0, later, rounds=8, resume_after=gen.randrange(8))
        assert paper == authors_rounds(round0, later, k, rounds=8), (round0, later)


# --- 4. k ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("delta,n,paper,clean", [(0.7, 90, 62, 63), (0.58, 50, 28, 29), (0.2, 10, 2, 2),
                                                (0.5, 9, 4, 4), (0.05, 10, None, 1)])
def test_k_is_int_of_the_float_product_under_paper_code_and_the_decimal_floor_under_clean(delta, n, paper, clean):
    for name, expected in (("paper_code", paper), ("clean", clean)):
        rule = protocol(name).hardest_count
        if expected is None:
            with pytest.raises(ConfigError, match=r"k = int\(0.5\) = 0 .*raise delta to at least 0.1 "):
                hardest_count(delta, n, rule)
        else:
            assert hardest_count(delta, n, rule) == expected, name
    cfg = compose_config(TINY + ["fidelity=clean", f"delta={delta}"])
    assert build_policy(cfg, n, CPU).k == clean


def test_k_of_zero_is_refused_through_the_cli_with_one_line_and_exit_2(tmp_path):
    # N = 9: int(0.1 x 9) = int(0.9) = 0, which the authors' code would train for one epoch only.
    result = run_cli([*TINY, "delta=0.1"], cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: delta=0.1 x N=9 batches gives k = int(0.9) = 0")
    assert "fidelity.hardest_count=decimal_floor" in lines[0]
    assert not list(tmp_path.rglob("run.json"))
    clean = run_cli([*TINY, "delta=0.1", "epochs=1", "fidelity=clean"], cwd=tmp_path)  # k = 1 there
    assert clean.returncode == 0, clean.stderr[-2000:]


# --- 5. numerics: precision, TF32, resize --------------------------------------------------------------

def test_precision_auto_resolves_to_the_protocols_fp32_or_bf16_on_cuda_and_fp32_on_the_cpu():
    paper, clean = protocol("paper_code"), protocol("clean")
    assert resolve_precision("auto", paper.precision, "cuda") == "fp32"
    assert resolve_precision("auto", clean.precision, "cuda") == "bf16"
    assert resolve_precision("bf16", paper.precision, "cuda") == "bf16"  # an explicit choice wins on CUDA
    assert resolve_precision("fp32", clean.precision, "cuda") == "fp32"
    for name in ("paper_code", "clean"):
        assert resolve_precision("auto", protocol(name).precision, "cpu") == "fp32"
        assert resolve_precision("bf16", protocol(name).precision, "cpu") == "fp32"
    # PyTorch 1.13's defaults, which the authors ran, against clean's TF32 everywhere.
    assert (paper.matmul_tf32, paper.cudnn_tf32) == (False, True)
    assert (clean.matmul_tf32, clean.cudnn_tf32) == (True, True)
    for key in ("precision", "fidelity.precision"):  # refused with the config, before a runtime is made
        with pytest.raises(ConfigError, match=rf"^{key}=fp16 is not one of its choices: use auto, bf16, fp32$"):
            check_settings(compose_config([*TINY, f"{key}=fp16"]))


def test_run_json_records_the_resolved_precision_and_tf32_settings(tmp_path):
    assert train_in_process(tmp_path, ["epochs=1"]) == "finished"
    header = json.loads((tmp_path / "run.json").read_text())
    assert (header["precision"], header["matmul_allow_tf32"], header["cudnn_allow_tf32"]) == ("fp32", None, None)
    assert header["config"]["fidelity"]["precision"] == "fp32"


def pil_resize(images: np.ndarray, size: int) -> np.ndarray:
    """torchvision's Resize((S, S)) on a PIL image: PIL's bilinear filter, antialiased by construction."""
    out = []
    for image in images:
        pil = Image.fromarray(image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0))
        resized = np.asarray(pil.resize((size, size), Image.BILINEAR))
        out.append(resized[None] if resized.ndim == 2 else resized.transpose(2, 0, 1))
    return np.stack(out)


@pytest.mark.parametrize("channels,native,size", [(3, 32, 128), (3, 96, 128), (1, 28, 32)])
def test_the_resize_equals_pil_pixel_for_pixel(channels, native, size):
    rng = np.random.default_rng(native)
    images = rng.integers(0, 256, (24, channels, native, native), dtype=np.uint8)
    host = HostData(images, np.zeros(24, np.int64), images[:4], np.zeros(4, np.int64), 10)
    data = to_device(host, size, "imagenet", CPU)
    assert np.array_equal(data.train_images.numpy(), pil_resize(images, size))


# --- the stored per-update loss ---------------------------------------------------------------------------

def test_an_update_stores_the_fused_cross_entropy_mean():
    """reduction='none' then .mean() differs from the fused mean by an ulp in some batches; the update
    must store (and back-propagate) the fused one."""
    torch.manual_seed(0)
    cfg = compose_config(TINY + ["delta=0.5"])
    data = to_device(load_host_data(cfg), cfg.image_size, "imagenet", CPU)
    loop = build_loop(cfg, data, Runtime(CPU, "fp32", torch.contiguous_format))
    batches, model = loop.batches, loop.model
    differs = 0
    for epoch in range(3):
        for ids in batches:
            x, y = loop.stage(ids)
            with torch.no_grad():
                logits = copy.deepcopy(model)(x)
            fused, unfused = F.cross_entropy(logits, y), F.cross_entropy(logits, y, reduction="none").mean()
            loss, kept = loop.update(ids, epoch)
            assert torch.equal(loss, fused) and kept == 64
            differs += not torch.equal(fused, unfused)
    assert differs > 0, "no batch where the two means differ: the check above could not fail"
