"""Was the test of hardness live? The mechanism check of a study plan, from round_losses.csv.

A comparison of "hardest batches" against "all batches" or "random batches" can only find an effect
of hardness if the chosen batches really are harder, on the model that trains them, than batches
chosen at random. The probe (probe.py, record.round_losses=true) measured, at each interval's first
round, every batch's loss on the current model. Per run, averaged over its probed rounds:

  lift            chosen batches' mean fresh loss / all batches' mean fresh loss. 1 is what a random
                  choice gets on average; the hardest batches on the current model would give the
                  most any choice of k can.
  spread          sd of the N batch losses / the sd batches of B samples drawn at random would show:
                  near 1 when the fixed batches differ in hardness by sampling chance alone.
  refresh_change  the share of the chosen batches that are not among the k hardest on the current
                  model: how often measuring the losses afresh would have changed the choice.
  random_overlap  (per seed, against the random arm with the same k) the share of chosen batches the
                  random arm chose in the same round, beside k / N, what chance alone gives.

Per arm: each measure's mean over seeds with its t-interval, and the lift's paired difference to the
random arm (same seed: same data, partition and initial weights). An arm's hardness test is live
when its lift's lower bound reaches the plan's `min_lift` and, where a random arm with the same k
exists, the paired difference's lower bound is above 0; otherwise comparisons that ask about hardness
are marked vacuous.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from hardsamples.analysis.inference import paired, t_interval

MEASURES = ("lift", "spread", "refresh_change")


def read_round_losses(run_dir) -> pd.DataFrame | None:
    """A run's round_losses.csv, or None when it has none (record.round_losses was false)."""
    path = Path(run_dir) / "round_losses.csv"
    if not path.exists():
        return None
    try:
        return pd.read_csv(path, dtype={"chosen": str})
    except (OSError, ValueError, pd.errors.ParserError):
        return None


def probed_rounds(runs: pd.DataFrame) -> list[pd.DataFrame]:
    """Each run's round_losses.csv rows, with the interval t = updates // N + 1 each round started in."""
    tables = []
    for run_dir, num_batches in zip(runs["run_dir"], runs["num_batches"]):
        rounds = read_round_losses(run_dir)
        if rounds is not None and len(rounds):
            tables.append(rounds.assign(interval=rounds["updates"] // int(num_batches) + 1))
    return tables


def run_measures(rounds: pd.DataFrame | None) -> dict:
    """lift, spread and refresh_change of one run, each the mean over its probed rounds."""
    if rounds is None or rounds.empty:
        return {**{m: math.nan for m in MEASURES}, "probed_rounds": 0}
    return {"lift": float((rounds["chosen_fresh_mean"] / rounds["fresh_mean"]).mean()),
            "spread": float((rounds["fresh_sd"] / rounds["random_sd"]).mean()),
            "refresh_change": float((1.0 - rounds["fresh_overlap"]).mean()),
            "probed_rounds": len(rounds)}


def chosen_sets(rounds: pd.DataFrame | None) -> dict[int, int]:
    """round -> the chosen batch ids as an integer bit mask (bit i: batch i)."""
    if rounds is None:
        return {}
    return {int(r): int(str(mask), 16) for r, mask in zip(rounds["round"], rounds["chosen"])}


def overlap_with(mine: dict[int, int], other: dict[int, int]) -> float:
    """Mean share of my chosen batches also chosen by the other arm, over the rounds both probed."""
    shares = [bin(mine[r] & other[r]).count("1") / bin(mine[r]).count("1")
              for r in sorted(set(mine) & set(other)) if mine[r]]
    return float(np.mean(shares)) if shares else math.nan


def mechanism_table(arms: dict[str, pd.DataFrame], random_arm: str | None, num_batches: dict[str, int],
                    min_lift: float, confidence: float = 0.95) -> pd.DataFrame:
    """One row per probed arm: each measure over seeds, the overlap with the random arm against chance,
    the lift's paired difference to the random arm, and whether the hardness test is live.
    `arms` maps an arm's label to its runs (one row per seed, with run_dir) ."""
    rounds = {label: {int(s): read_round_losses(d) for s, d in zip(runs["seed"], runs["run_dir"])}
              for label, runs in arms.items()}
    measures = {label: pd.DataFrame({s: run_measures(r) for s, r in by_seed.items()}).T
                for label, by_seed in rounds.items()}
    rows = []
    for label, table in measures.items():
        probed = table[table["probed_rounds"] > 0]
        if probed.empty:
            continue
        row = {"arm": label, "seeds": len(probed), "probed_rounds": int(probed["probed_rounds"].sum())}
        for m in MEASURES:
            interval = t_interval(probed[m], confidence)
            row.update({m: interval.mean, f"{m}_low": interval.low, f"{m}_high": interval.high})
        row.update(_against_random(label, random_arm, measures, rounds, num_batches, confidence))
        row["live"] = bool(row["lift_low"] >= min_lift and (math.isnan(row["lift_vs_random"])
                                                            or row["lift_vs_random_low"] > 0))
        rows.append(row)
    return pd.DataFrame(rows)


def _against_random(label, random_arm, measures, rounds, num_batches, confidence) -> dict:
    empty = {"lift_vs_random": math.nan, "lift_vs_random_low": math.nan, "lift_vs_random_high": math.nan,
             "random_overlap": math.nan, "chance_overlap": math.nan}
    if random_arm is None or label == random_arm or random_arm not in measures:
        return empty
    mine, other = measures[label], measures[random_arm]
    seeds = sorted(set(mine.index[mine["probed_rounds"] > 0]) & set(other.index[other["probed_rounds"] > 0]))
    first = rounds[label][seeds[0]] if seeds else None
    if not seeds or first is None or int(first["k"].iloc[0]) != int(rounds[random_arm][seeds[0]]["k"].iloc[0]):
        return empty  # no random arm with the same k: lift alone decides
    diff = paired(mine.loc[seeds, "lift"], other.loc[seeds, "lift"], confidence)
    overlaps = [overlap_with(chosen_sets(rounds[label][s]), chosen_sets(rounds[random_arm][s])) for s in seeds]
    return {"lift_vs_random": diff.estimate, "lift_vs_random_low": diff.low, "lift_vs_random_high": diff.high,
            "random_overlap": float(np.nanmean(overlaps)),
            "chance_overlap": int(first["k"].iloc[0]) / num_batches[label]}
