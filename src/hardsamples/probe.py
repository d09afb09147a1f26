"""The mechanism probe (record.round_losses=true): was a round's choice harder than a random one?

Algorithm 2 can only help if the batches it chooses are harder, on the model that trains them, than
batches chosen at random. Its stored losses are stale (a batch's loss is written when it is trained),
so the choice may be hard on paper only. Once per interval, at the first round that starts in it
(after round 0, and only for policies that choose k < N batches), the probe measures every fixed
batch's loss on the current model, one forward pass each, and writes one row of round_losses.csv
(record_files.ROUND_LOSS_COLUMNS):

  fresh_mean          mean loss of all N batches: what k batches drawn at random get on average
  chosen_fresh_mean   mean loss of the k chosen batches on the same model: above fresh_mean when the
                      choice is harder than random (lift = chosen_fresh_mean / fresh_mean)
  fresh_sd            sd of the N batch losses: how much the fixed batches differ in hardness
  random_sd           the sd batches of B samples drawn at random from the same N x B samples would
                      show: per-sample sd / sqrt(B), with the finite-population correction. fresh_sd
                      near random_sd means the batches differ by sampling chance alone
  stored_mean         mean stored loss of all N batches, as the policy saw them (stale unless it refreshes)
  chosen_stored_mean  mean stored loss of the chosen k
  fresh_overlap       the share of the chosen k that are also among the k highest fresh losses: 1 - this
                      is how often refreshing the losses would have changed the choice
  chosen              the chosen batch ids as a bit mask in hexadecimal (bit i: batch i), so two arms of
                      one seed can be compared round by round

The probe changes nothing the run computes: forward passes only, BatchNorm statistics frozen (as a
refresh measures), no random numbers drawn, and its passes are not counted in extra_forward_passes.
It costs N forward passes per interval, about a third of the interval's updates.
"""

from __future__ import annotations

import math

import torch


class RoundProbe:
    """Measures each interval's first round; `rows` are the round_losses.csv rows not yet written."""

    def __init__(self, loop):
        self.loop = loop
        self.rows: list[dict] = []
        self.last_interval = 0  # the interval whose first round was measured last (0: none yet)

    def __call__(self, round_index: int, updates: int, chosen: torch.Tensor) -> None:
        """The loop's on_round hook: `chosen` are the ids of the round starting after `updates` updates."""
        loop = self.loop
        interval = updates // loop.num_batches + 1
        if round_index == 0 or loop.policy.k >= loop.num_batches or interval <= self.last_interval:
            return
        self.last_interval = interval
        self.rows.append(self.measure(round_index, updates, chosen))

    def measure(self, round_index: int, updates: int, chosen: torch.Tensor) -> dict:
        losses = self.loop.current_losses("none").double()  # (N, B)
        n_batches, batch = losses.shape
        fresh = losses.mean(dim=1)
        total = losses.numel()
        sample_sd = float(losses.std())
        fpc = math.sqrt((total - batch) / (total - 1)) if total > 1 else 0.0
        stored = getattr(self.loop.policy, "stored_losses", None)
        stored = stored.double() if stored is not None else torch.full_like(fresh, math.nan)
        k = int(chosen.shape[0])
        fresh_top = set(torch.argsort(fresh, descending=True, stable=True)[:k].tolist())
        ids = sorted(set(chosen.tolist()))
        return {"round": round_index, "updates": updates, "k": k, "fresh_mean": float(fresh.mean()),
                "chosen_fresh_mean": float(fresh[chosen].mean()), "fresh_sd": float(fresh.std()),
                "random_sd": sample_sd / math.sqrt(batch) * fpc, "stored_mean": float(stored.mean()),
                "chosen_stored_mean": float(stored[chosen].mean()),
                "fresh_overlap": len(fresh_top.intersection(ids)) / k,
                "chosen": format(sum(1 << i for i in ids), "x")}

    def take_rows(self) -> list[dict]:
        rows, self.rows = self.rows, []
        return rows

    def resume_after(self, rows: list[dict]) -> None:
        """A resumed run measures from the interval after the last one its record already holds."""
        self.last_interval = max((int(r["updates"]) // self.loop.num_batches + 1 for r in rows), default=0)
