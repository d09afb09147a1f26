"""HardBatchSampler and trimmed_mean: Algorithm 2 and trimming in a user's own loop, choosing as the study's loop does."""

from __future__ import annotations

import re
import warnings

import pandas as pd
import pytest
import torch

from conftest import ROOT, train_in_process
from hardsamples import HardBatchSampler, trimmed_mean
from hardsamples.data import make_fixed_batches
from hardsamples.errors import ConfigError
from hardsamples.policies import HardBatchesPolicy, TrimmingPolicy

EXAMPLE_MARKER = "<!-- example: own-loop -->"


def readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    found = re.search(re.escape(EXAMPLE_MARKER) + r"\s*```python\n(.*?)```", text, re.S)
    assert found, f"README.md has no ```python block after {EXAMPLE_MARKER}"
    return found.group(1)


def test_the_readme_example_runs_as_written(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # it saves its history in the working directory
    namespace: dict = {}
    exec(compile(readme_example(), "README.md (own-loop example)", "exec"), namespace)
    sampler = namespace["sampler"]
    assert (sampler.num_batches, sampler.k, len(sampler)) == (8, 2, 40)
    assert sampler.observed == 40 and not sampler.unobserved  # every batch reported its loss
    printed = capsys.readouterr().out.splitlines()  # what it chose, once every N updates
    assert len(printed) == 5 and printed[0].startswith("epoch-equivalent 1: loss ")
    assert printed[0].endswith("last round trained batches [0, 1, 2, 3, 4, 5, 6, 7]")
    history = pd.read_csv(tmp_path / "chosen_batches.csv")
    assert list(history.columns) == ["update", "round", "batch"] and len(history) == 40
    assert history.groupby("round")["batch"].apply(list).tolist() == sampler.history


def test_the_history_is_each_rounds_choice_and_a_new_pass_starts_it_afresh():
    sampler = HardBatchSampler(100, batch_size=10, epochs=3, delta=0.3, shuffle=False)
    ids = run_sampler(sampler, lambda update, batch: float(batch) if update < 10 else -float(update))
    assert sampler.history[0] == list(range(10)) and sampler.history[1] == [7, 8, 9]
    assert [b for round_ids in sampler.history for b in round_ids] == ids  # rounds in the order trained
    assert [len(r) for r in sampler.history] == [10, 3, 3, 3, 3, 3, 3, 2]  # the last round cut to the budget
    run_sampler(sampler, lambda update, batch: 0.0)
    assert sampler.history[0] == list(range(10)) and len(sampler.history) == 8


def test_interval_complete_marks_every_n_updates():
    sampler = HardBatchSampler(40, batch_size=10, epochs=3, delta=0.5, shuffle=False)
    marks = []
    for _ in sampler:
        sampler.observe(torch.tensor(1.0))
        marks.append(sampler.intervals_done if sampler.interval_complete else None)
    assert [m for m in marks if m is not None] == [1, 2, 3] and marks[3] == 1 and marks[7] == 2 and marks[-1] == 3


def test_the_prefetch_warning_points_at_the_users_loop():
    """With num_workers > 0 torch's DataLoader draws ahead; the warning names the line of the user's loop,
    not torch's dataloader.py."""
    from torch.utils.data import DataLoader, TensorDataset

    dataset = TensorDataset(torch.zeros(40, 1), torch.zeros(40))
    sampler = HardBatchSampler(dataset, batch_size=10, epochs=2, delta=0.5, shuffle=False)
    loader = DataLoader(dataset, batch_sampler=sampler, num_workers=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in loader:  # the line the warning must name
            sampler.observe(torch.tensor(1.0))
    prefetch = [w for w in caught if "num_workers=0 for Algorithm 2 exactly" in str(w.message)]
    assert prefetch and all(w.filename == __file__ for w in prefetch), [(w.filename, w.lineno) for w in prefetch]


def run_sampler(sampler: HardBatchSampler, loss_of) -> list[int]:
    """Drive the sampler as a loop would; loss_of(update, batch id) is the loss observed. Returns batch ids."""
    row_of = {tuple(row): i for i, row in enumerate(sampler.batches.tolist())}
    ids = []
    for samples in sampler:
        batch = row_of[tuple(samples)]
        sampler.observe(torch.tensor(loss_of(len(ids), batch)))
        ids.append(batch)
    return ids


def test_round_0_is_every_batch_in_order_then_the_k_highest_stored_losses():
    sampler = HardBatchSampler(100, batch_size=10, epochs=3, delta=0.3, shuffle=False)
    assert (sampler.num_batches, sampler.k, len(sampler)) == (10, 3, 30)

    def loss_of(update: int, batch: int) -> float:
        return float(batch) if update < 10 else -float(update)  # round 0: batch b has loss b; later: ever lower

    ids = run_sampler(sampler, loss_of)
    assert len(ids) == 30  # N x E exactly: 10 + 6 rounds of 3 + a last round cut to 2
    assert ids[:10] == list(range(10))
    # Stored after round 0: b. Trained batches fall below every untrained one, so the rounds walk down.
    assert ids[10:19] == [7, 8, 9, 4, 5, 6, 1, 2, 3]
    # Now 0 (loss 0) and then the batches trained longest ago (7, 8 at -10, -11), in index order.
    assert ids[19:22] == [0, 7, 8]
    assert sampler.batches.tolist()[0] == list(range(10))  # shuffle=False: dataset order


def test_batches_are_the_projects_fixed_batches_and_cover_the_data_once():
    sampler = HardBatchSampler(list(range(70)), batch_size=16, epochs=1, delta=0.5, seed=3, drop_last=False)
    expected = make_fixed_batches(70, 16, drop_last=False, partition="shuffled", seed=3, device=torch.device("cpu"))
    assert torch.equal(sampler.batches, expected)
    drawn = []
    for samples in sampler:  # epochs=1: the budget is round 0, every batch once
        drawn.append(samples)
        sampler.observe(torch.tensor(1.0))
    assert drawn == expected.tolist() and set(sum(drawn, [])) == set(range(70))


def test_choice_matches_hard_batches_policy_on_the_same_losses():
    """Random losses, ties included: the sampler picks exactly what HardBatchesPolicy picks (clean rules)."""
    num_batches, epochs, delta = 13, 6, 0.35
    sampler = HardBatchSampler(num_batches * 8, batch_size=8, epochs=epochs, delta=delta, seed=1)
    losses = torch.randint(0, 5, (num_batches * epochs,), generator=torch.Generator().manual_seed(0)).float()
    got = run_sampler(sampler, lambda update, batch: losses[update].item())

    policy = HardBatchesPolicy(num_batches, delta, "index", torch.device("cpu"),
                               count_rule="decimal_floor", tie_order="batch_index")
    expected, round_index = [], 0
    while len(expected) < num_batches * epochs:
        chosen = policy.next_round(round_index, num_batches * epochs - len(expected), None)
        policy.observe(chosen, losses[len(expected):len(expected) + len(chosen)])
        expected += chosen.tolist()
        round_index += 1
    assert got == expected


def test_choice_matches_the_study_loop_on_its_own_losses(tmp_path):
    """The study's loop trains a tiny run and traces (batch, loss) per update; fed those losses, the
    sampler draws the same batches in the same order."""
    status = train_in_process(tmp_path, ["delta=0.3", "fidelity=clean", "record.trace=true", "record.checkpoint=false"])
    assert status == "finished"
    trace = pd.read_csv(tmp_path / "trace.csv")
    # conftest.TINY: 600 samples, batch 64; clean: dataset order, last batch padded -> N = 10, E = 3.
    sampler = HardBatchSampler(600, batch_size=64, epochs=3, delta=0.3, shuffle=False, drop_last=False)
    got = run_sampler(sampler, lambda update, batch: trace["loss"][update])
    assert len(got) == len(trace) == 30
    assert got == trace["batch"].tolist()
    assert trace["batch"][:10].tolist() == list(range(10)) and trace["batch"].nunique() > 3


def test_round_order_loss_trains_the_hardest_first():
    sampler = HardBatchSampler(40, batch_size=10, epochs=2, delta=0.5, shuffle=False, round_order="loss")
    ids = run_sampler(sampler, lambda update, batch: [1.0, 4.0, 2.0, 3.0][batch] if update < 4 else 0.0)
    assert ids == [0, 1, 2, 3, 1, 3, 2, 0]


def test_observe_takes_the_oldest_batch_drawn_when_the_loader_draws_ahead():
    """A DataLoader with workers draws ahead; observe still pairs each loss with its own batch (FIFO),
    and a round chosen with batches still waiting says so."""
    sampler = HardBatchSampler(40, batch_size=10, epochs=2, delta=0.5, shuffle=False)
    drawn = iter(sampler)
    ahead = [next(drawn) for _ in range(3)]  # batches 0, 1, 2 drawn before any step
    for loss in (5.0, 1.0, 7.0):
        sampler.observe(torch.tensor(loss))
    assert sampler.policy.stored_losses[:3].tolist() == [5.0, 1.0, 7.0] and ahead[2][0] == 20
    next(drawn)
    with pytest.warns(UserWarning, match="num_workers=0 for Algorithm 2 exactly"):
        next(drawn)  # round 1 chosen while batch 3 has no loss yet (NaN: counted hardest)
    sampler.observe(torch.tensor(2.0))
    assert sampler.policy.stored_losses[3].item() == 2.0


def test_misuse_is_refused_clearly():
    sampler = HardBatchSampler(40, batch_size=10, epochs=2, delta=0.5)
    with pytest.raises(RuntimeError, match="more often than batches were drawn"):
        sampler.observe(torch.tensor(1.0))
    with pytest.raises(RuntimeError, match=r"call sampler.observe\(loss\) after each optimizer step"):
        list(sampler)
    for bad in ({"delta": 0.0}, {"epochs": 0}, {"batch_size": 41}):
        with pytest.raises(ValueError):
            HardBatchSampler(40, **{"batch_size": 10, "epochs": 2, "delta": 0.5, **bad})


def test_observe_counts_per_sample_losses_as_their_mean_and_detaches():
    sampler = HardBatchSampler(20, batch_size=10, epochs=1, delta=1.0, shuffle=False)
    next(iter(sampler))
    weights = torch.ones(3, requires_grad=True)
    sampler.observe(weights * torch.tensor([1.0, 2.0, 6.0], dtype=torch.float64))
    assert sampler.policy.stored_losses[0].item() == 3.0
    assert not sampler.policy.stored_losses.requires_grad and sampler.policy.stored_losses.dtype == torch.float32


def test_a_new_pass_starts_training_afresh():
    sampler = HardBatchSampler(40, batch_size=10, epochs=2, delta=0.5, shuffle=False)
    def loss_of(update: int, batch: int) -> float:
        return float(batch) if update < 4 else -1.0

    first = run_sampler(sampler, loss_of)
    second = run_sampler(sampler, loss_of)  # round 0 again, not the budget already spent
    assert first == second == [0, 1, 2, 3, 2, 3, 0, 1]


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_cuda_a_step_costs_no_host_synchronisation():
    sampler = HardBatchSampler(640, batch_size=64, epochs=3, delta=0.3)
    losses = torch.rand(30, device="cuda")
    step = 0
    for _samples in sampler:
        torch.cuda.set_sync_debug_mode("error")  # any synchronising call in observe raises
        try:
            sampler.observe(losses[step] * 2)
        finally:
            torch.cuda.set_sync_debug_mode("default")
        step += 1
    assert sampler.policy.stored_losses.is_cuda and step == 30


def test_trimmed_mean_is_trimming_policys_reduction():
    losses = torch.tensor([0.5, 3.0, 1.0, 2.0, 4.0, 0.0, 6.0, 5.0, 7.0, 8.0, 9.0])
    policy = TrimmingPolicy(1, torch.device("cpu"), 1.0, 0.2, "linear")
    for epoch in range(25):
        assert torch.equal(trimmed_mean(losses, epoch, 25), policy.reduce(losses, epoch, 25)[0])
    assert trimmed_mean(losses, 0, 25) == losses.mean()  # q = 1: the plain mean
    assert trimmed_mean(losses, 24, 25) == (9.0 + 8.0) / 2  # q = 0.2: round(2.2) = 2 hardest
    assert trimmed_mean(losses, 1, 2, start=0.5, end=0.5, shape="step") == losses.topk(round(5.5)).values.mean()
    with pytest.raises(ConfigError, match=r"method.end=0.0 is outside \(0, 1\]"):
        trimmed_mean(losses, 0, 2, end=0.0)


def test_trimmed_mean_back_propagates_through_the_kept_samples_only():
    losses = torch.tensor([1.0, 5.0, 3.0, 2.0, 4.0], requires_grad=True)
    trimmed_mean(losses, 1, 2, start=1.0, end=0.4).backward()  # keeps round(0.4 x 5) = 2: the 5 and the 4
    assert losses.grad.tolist() == [0.0, 0.5, 0.0, 0.0, 0.5]
