"""The methods compared under one budget: mini-batch trimming, the random-batch control for hardness,
and hard_batches with refreshed losses. Checked from the trace (record.trace=true) and the policy units."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_dir

from conftest import CONF, compose_config, train_in_process
from hardsamples import records
from hardsamples.errors import ConfigError
from hardsamples.loop import UpdateLoop
from hardsamples.policies import HardBatchesPolicy, TrimmingPolicy


def no_refresh() -> torch.Tensor:
    raise AssertionError("this policy must not measure the batches' losses")

# Smaller than TINY to keep this file fast: 288 synthetic 8 x 8 images in batches of B = 32, last
# partial batch dropped -> N = 9. delta = 0.5 gives k = 4; 0.5 x 9 is not whole, so the last round is cut.
N, B, E, K = 9, 32, 3, 4
BASE = ["model.name=test_resnet", "logger.wandb.mode=disabled", "dataset=synthetic", "dataset.num_train=288",
        "dataset.num_test=64", "dataset.native_size=8", "image_size=8", f"batch_size={B}", f"epochs={E}",
        "record.trace=true", "record.checkpoint=false"]
TRIMMING_EPOCHS = 4  # progress 0, 1/3, 2/3, 1: enough points to tell the three shapes apart
RUNS = {
    "standard": ["method=standard"],
    "hard_batches": ["method=hard_batches", "delta=0.5"],
    "random_batches": ["method=random_batches", "delta=0.5"],
    "random_batches_seed1": ["method=random_batches", "delta=0.5", "seed=1"],
    "hard_batches_refresh": ["method=hard_batches", "method.refresh=true", "delta=0.5", "method.round_order=loss"],
    "trimming": ["method=trimming", f"epochs={TRIMMING_EPOCHS}"],
    "trimming_cosine": ["method=trimming", "method.shape=cosine", f"epochs={TRIMMING_EPOCHS}"],
    "trimming_step": ["method=trimming", "method.shape=step", f"epochs={TRIMMING_EPOCHS}"],
}


@dataclass
class Run:
    header: dict
    metrics: pd.DataFrame
    trace: pd.DataFrame
    measured: list[torch.Tensor]  # the losses of every refresh, in order

    def rounds(self) -> dict[int, list[int]]:
        return {r: rows["batch"].tolist() for r, rows in self.trace.groupby("round", sort=True)}


def train(run_dir, overrides: list[str]) -> Run:
    """Train for real, keeping a copy of every set of losses the loop measures for a refresh."""
    measured = []
    measure = UpdateLoop.measure_batch_losses

    def spy(loop):
        losses = measure(loop)
        measured.append(losses.clone())
        return losses

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(UpdateLoop, "measure_batch_losses", spy)
        assert train_in_process(run_dir, overrides, BASE) == "finished"
    return Run(json.loads((run_dir / "run.json").read_text()), pd.read_csv(run_dir / "metrics.csv"),
               pd.read_csv(run_dir / "trace.csv"), measured)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These models are too small to gain from intra-op threads, and on a busy CPU the threads wait
    for each other: one thread runs this module several times faster. Restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Each run of RUNS trained once for the whole module, on first use."""
    done: dict[str, Run] = {}

    def get(name: str) -> Run:
        if name not in done:
            done[name] = train(tmp_path_factory.mktemp(name), RUNS[name])
        return done[name]

    return get


# --- the budget -------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["standard", "hard_batches", "random_batches", "trimming", "hard_batches_refresh"])
def test_every_method_spends_exactly_n_times_e_updates(run, name):
    result = run(name)
    epochs = result.header["epochs"]
    assert result.header["method"] == name  # the names the methods table is keyed on
    assert result.header["num_batches"] == N and result.header["update_budget"] == N * epochs
    assert result.trace["update"].tolist() == list(range(1, N * epochs + 1))
    assert result.metrics["updates"].tolist() == [N * t for t in range(1, epochs + 1)]


# --- trimming ---------------------------------------------------------------------------------------

# round(q x 32) in each epoch-equivalent, q from 1.0 to 0.2 at progress 0, 1/3, 2/3, 1:
# linear q = 1, 0.733, 0.467, 0.2; cosine q = 1, 0.8, 0.4, 0.2; step q = 1, 1, 0.2, 0.2.
KEPT = {"trimming": [32, 23, 15, 6], "trimming_cosine": [32, 26, 13, 6], "trimming_step": [32, 32, 6, 6]}


@pytest.mark.parametrize("name", KEPT)
def test_trimming_keeps_round_q_times_b_samples_following_the_schedule(run, name):
    trace = run(name).trace
    epoch = (trace["update"] - 1) // N
    kept = trace.groupby(epoch)["kept"].unique()
    assert [list(k) for k in kept] == [[k] for k in KEPT[name]]


def test_trimming_back_propagates_the_mean_of_the_highest_losses_only():
    policy = TrimmingPolicy(N, torch.device("cpu"), start=1.0, end=0.2, shape="linear")
    losses = torch.tensor([0.5, 3.0, 0.1, 2.0, 0.4, 0.2, 0.3, 0.6, 0.7, 0.8], requires_grad=True)
    loss, kept = policy.reduce(losses, 3, 4)  # last of 4 epochs, q = 0.2 of 10: the 2 highest
    loss.backward()
    assert kept == 2 and loss.item() == pytest.approx(2.5)
    assert losses.grad.tolist() == [0, 0.5, 0, 0.5, 0, 0, 0, 0, 0, 0]
    full, kept = policy.reduce(losses, 0, 4)
    assert kept == 10 and torch.equal(full, losses.mean())  # q = 1 is exactly the plain mean


@pytest.mark.parametrize("q,batch,kept", [(0.5, 5, 2), (0.5, 7, 4), (0.5, 6, 3), (0.01, 10, 1)],
                         ids=["2.5 rounds to 2", "3.5 rounds to 4", "whole", "at least 1"])
def test_trimming_rounds_half_to_even_like_the_authors_code(q, batch, kept):
    policy = TrimmingPolicy(N, torch.device("cpu"), start=q, end=q, shape="linear")
    assert policy.reduce(torch.rand(batch), 1, 3)[1] == kept


# --- the random control -----------------------------------------------------------------------------

def test_random_control_trains_k_distinct_batches_a_round_drawn_from_the_seed(run):
    rounds = run("random_batches").rounds()
    assert rounds[0] == list(range(N))
    sizes = [len(ids) for ids in rounds.values()]
    assert sizes == [N, K, K, K, K, N * E - N - 4 * K]  # 9 + 4 x 4 + 2 = 27: the last round is cut
    for ids in list(rounds.values())[1:]:
        assert len(set(ids)) == len(ids) and ids == sorted(ids)  # distinct, in index order (the default)
    # The same seed draws the same rounds: a fresh policy seeded alike replays the run's choices.
    replay = HardBatchesPolicy(N, 0.5, "index", torch.device("cpu"), draw="random", seed=0)
    replayed = [replay.next_round(r, N * E, no_refresh).tolist()[: len(ids)] for r, ids in enumerate(rounds.values())]
    assert replayed == list(rounds.values())
    assert run("random_batches_seed1").rounds() != rounds


def test_random_control_resumes_its_draws_from_a_checkpoint(tmp_path):
    cpu = torch.device("cpu")
    first = HardBatchesPolicy(N, 0.5, "index", cpu, draw="random", seed=0)
    first.next_round(0, N * E, no_refresh), first.observe(torch.arange(N), torch.rand(N))
    first.next_round(1, N * E, no_refresh)
    records.save_checkpoint(tmp_path / "policy.pt", first.state_dict())
    resumed = HardBatchesPolicy(N, 0.5, "index", cpu, draw="random", seed=7)
    resumed.load_state_dict(records.load_checkpoint(tmp_path / "policy.pt"))
    for r in range(2, 5):
        assert torch.equal(first.next_round(r, N * E, no_refresh), resumed.next_round(r, N * E, no_refresh))


def test_random_control_in_loss_order_ranks_its_draw_like_hard_batches():
    policy = HardBatchesPolicy(6, 0.5, "loss", torch.device("cpu"), draw="random", seed=0)
    assert policy.name == "random_batches"
    policy.next_round(0, 100, no_refresh)
    stored = torch.tensor([0.3, 0.9, 0.3, 0.1, 0.5, 0.7])
    policy.observe(torch.arange(6), stored)
    chosen = policy.next_round(1, 100, no_refresh).tolist()
    assert sorted(chosen, key=lambda b: (-stored[b].item(), b)) == chosen and len(set(chosen)) == 3


# --- hard_batches with refresh ----------------------------------------------------------------------

@pytest.mark.parametrize("round_order,expected", [("loss", [3, 5, 1]), ("index", [1, 3, 5])])
def test_refresh_chooses_and_orders_by_the_refreshed_losses_not_the_stored_ones(round_order, expected):
    policy = HardBatchesPolicy(6, 0.5, round_order, torch.device("cpu"), refresh=True)
    assert policy.name == "hard_batches_refresh"
    measured = []

    def measure() -> torch.Tensor:
        measured.append(True)
        return torch.tensor([0.1, 0.5, 0.2, 0.9, 0.3, 0.7])

    policy.next_round(0, 100, measure)
    assert not measured  # round 0 measures every batch as it trains it
    policy.observe(torch.arange(6), torch.tensor([9.0, 0.0, 8.0, 0.0, 7.0, 0.0]))  # stale: ignored
    assert policy.next_round(1, 100, measure).tolist() == expected and len(measured) == 1
    plain = HardBatchesPolicy(6, 0.5, round_order, torch.device("cpu"))
    assert plain.name == "hard_batches"
    for r in range(5):
        plain.observe(plain.next_round(r, 100, no_refresh), torch.rand(3 if r else 6))


def test_refresh_measures_all_n_batches_before_every_later_round_and_trains_their_top_k(run):
    result = run("hard_batches_refresh")
    rounds = result.rounds()
    later = [r for r in rounds if r >= 1]
    assert len(result.measured) == len(later)  # one refresh per round after round 0
    for r, losses in zip(later, result.measured):
        ranked = sorted(range(N), key=lambda b: (-losses[b].item(), b))[:K]
        assert rounds[r] == ranked[: len(rounds[r])], f"round {r}"  # round_order=loss: hardest first
        # No update between the refresh and the round's first batch: it trains on the loss just measured.
        first = result.trace[result.trace["round"] == r].iloc[0]
        assert first["loss"] == pytest.approx(losses[int(first["batch"])].item(), rel=1e-5)
    # N extra forward passes for each round started so far, and none counted as updates.
    started = [result.trace.loc[result.trace["update"] <= u, "round"].max() for u in result.metrics["updates"]]
    assert result.metrics["extra_forward_passes"].tolist() == [N * r for r in started]


def test_refresh_runs_never_share_a_directory_with_plain_hard_batches():
    names = {tuple(o): compose_config(["delta=0.5", *o]).run_name for o in
             (["method=hard_batches"], ["method=hard_batches", "method.refresh=true"], ["method=hard_batches_refresh"])}
    assert list(names.values()) == ["resnet18-digits-hard_batches-d0.5-s0", "resnet18-digits-hard_batches_refresh-d0.5-s0",
                                    "resnet18-digits-hard_batches_refresh-d0.5-s0"]


# --- bad input --------------------------------------------------------------------------------------

BAD = {
    "trimming below delta 1": (["method=trimming", "delta=0.5"], r"method=trimming trains every batch: delta must be 1.0, not 0.5"),
    "unknown shape": (["method=trimming", "method.shape=exponential"], r"method.shape=exponential is not one of its choices: use linear, cosine, step"),
    "q end zero": (["method=trimming", "method.end=0"], r"method.end=0 is outside \(0, 1\]"),
    "q start above 1": (["method=trimming", "method.start=1.5"], r"method.start=1.5 is outside \(0, 1\]"),
    "q not a number": (["method=trimming", "method.end=low"], r"method.end=low is outside \(0, 1\]"),
    "refresh not a boolean": (["method=hard_batches", "delta=0.5", "method.refresh=maybe"], r"method.refresh=maybe is not one of its choices: use true, false"),
}


@pytest.mark.parametrize("overrides,message", BAD.values(), ids=BAD.keys())
def test_bad_method_settings_raise_one_clear_line_and_write_no_record(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message) as err:
        train_in_process(tmp_path, overrides, BASE)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "run.json").exists()


# --- the sweeps -------------------------------------------------------------------------------------

@pytest.mark.parametrize("sweep", ["methods_demo", "methods_cifar10"])
def test_method_sweeps_give_each_method_a_delta_it_accepts(sweep):
    expected = {"standard": 1.0, "trimming": 1.0, "hard_batches": 0.2, "hard_batches_refresh": 0.2, "random_batches": 0.2}
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        for method, delta in expected.items():
            cfg = compose(config_name="config", overrides=[f"experiment={sweep}", f"method={method}"])
            assert (cfg.sweep_name, cfg.delta) == (sweep, delta), method


def test_build_policy_takes_a_plain_dict():
    from hardsamples.policies import build_policy

    cfg = {"method": {"name": "hard_batches", "round_order": "index", "refresh": False}, "delta": 0.5, "seed": 0,
           "fidelity": {"hardest_count": "decimal_floor", "tie_order": "batch_index"}}
    policy = build_policy(cfg, 10, torch.device("cpu"))
    assert (policy.name, policy.k) == ("hard_batches", 5)


def test_a_registered_policy_is_built_by_its_method_name(monkeypatch):
    """A new method is a builder registered under its config's name: build_policy needs no edit."""
    from hardsamples.policies import POLICY_BUILDERS, StandardPolicy, build_policy, register_policy

    class EvenBatches(StandardPolicy):
        name = "even_batches"

        def next_round(self, round_index, updates_left, measure_losses=None):
            return torch.arange(0, self.num_batches, 2)[:updates_left]

    monkeypatch.setitem(POLICY_BUILDERS, "even_batches", None)  # taken out again after the test
    register_policy("even_batches")(lambda cfg, n, device: EvenBatches(n, device))
    policy = build_policy({"method": {"name": "even_batches"}, "delta": 1.0, "seed": 0}, 6, torch.device("cpu"))
    assert policy.next_round(1, 100).tolist() == [0, 2, 4]
    with pytest.raises(ConfigError, match=r"unknown method 'mine'.*even_batches"):
        build_policy({"method": {"name": "mine"}, "delta": 1.0, "seed": 0}, 6, torch.device("cpu"))
