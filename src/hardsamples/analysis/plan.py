"""A study's analysis plan, written before its runs, and the verdicts it gives on the records.

A plan (a YAML file committed beside the study's records, with PLAN.md saying why) fixes in advance:
the arms (method and delta), the baseline, the comparisons, the endpoints with their equivalence
margins and multiplicity families, the significance level, and the mechanism check that says when a
comparison about hardness was vacuous. `make tables plan=<path>` prints one verdict per comparison
and endpoint, from the records alone:

  equivalent     the paired two one-sided tests (TOST, statsmodels) reject "the effect is at least
                 the margin" after Holm's correction across the endpoint's family: no effect as large
                 as the margin. When the difference test also rejects 0, the effect is real but
                 smaller than the margin, and the verdict says so.
  different      the paired t-test rejects "no difference" after Holm, and TOST does not.
  inconclusive   neither: the interval holds both 0 and an effect as large as the margin.
  censored       more pairs than the plan allows have a run that never reached a reach endpoint's
                 threshold: the arm is not averaged, the counts are given.
  ... (vacuous)  the comparison asks about hardness and the mechanism check found the chosen batches
                 no harder than random ones: whatever the numbers, the test could not see hardness.

Differences are arm minus comparator, paired by seed (the same seed shares data subset, partition
and initial weights across arms). A reach endpoint is compared as the speed ratio t_comparator /
t_arm (> 1: the arm reaches the threshold in fewer epoch-equivalents), on logs, with the margin a
ratio m: equivalence means 1/m < ratio < m.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from hardsamples.analysis import endpoints
from hardsamples.analysis.inference import holm, paired, paired_ratio, tost_paired
from hardsamples.analysis.mechanism import mechanism_table
from hardsamples.errors import ConfigError

KINDS = ("final", "reach", "at_budget")


@dataclass(frozen=True)
class Endpoint:
    name: str
    kind: str  # final | reach | at_budget
    metric: str  # a metrics.csv column with a curve in the run table: train_top1, test_top1, train_loss
    margin: float  # difference: +/- margin in the metric's unit; reach: a speed ratio m > 1
    family: str  # Holm's correction runs over every test of one family
    label: str
    threshold: float = math.nan  # reach
    fraction: float = math.nan  # at_budget
    max_censored_share: float = 0.2  # reach: more censored pairs than this share gives "censored"

    @property
    def is_ratio(self) -> bool:
        return self.kind == "reach"

    def value(self, run) -> float:
        curve = run[f"{self.metric}_curve"]
        if self.kind == "final":
            return endpoints.final_value(curve)
        if self.kind == "reach":
            return endpoints.reach_time(curve, self.threshold, higher_is_better=self.metric != "train_loss")
        return endpoints.at_budget(curve, self.fraction, int(run["epochs"]))


@dataclass(frozen=True)
class Plan:
    name: str
    alpha: float
    where: dict  # run-table columns every run of the study has (dataset, model, image_size, ...)
    arms: dict  # label -> {method, delta}
    baseline: str  # an arm label
    comparisons: list  # (arm, against, asks_about_hardness)
    endpoints: list
    min_pairs: int
    mechanism: dict  # min_lift, random_arm, arms (probed)
    path: str = ""


def load_plan(path) -> Plan:
    """The plan at `path` (YAML), checked: one line naming what is wrong when it is not usable."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"plan={path} is not a file: pass the plan.yaml of a study, e.g."
                          " plan=results/fashion_mnist_memorise/plan.yaml")
    raw = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    try:
        arms = {str(label): {"method": a["method"], "delta": float(a["delta"])} for label, a in raw["arms"].items()}
        comparisons = [(str(c["arm"]), str(c["against"]), bool(c.get("about_hardness", False)))
                       for c in raw["comparisons"]]
        ends = [Endpoint(name=str(name), label=str(e.get("label", name)), kind=e["kind"], metric=e["metric"],
                         margin=float(e["margin"]), family=str(e["family"]),
                         threshold=float(e.get("threshold", math.nan)), fraction=float(e.get("fraction", math.nan)),
                         max_censored_share=float(e.get("max_censored_share", 0.2)))
                for name, e in raw["endpoints"].items()]
        plan = Plan(name=str(raw["name"]), alpha=float(raw["alpha"]), where=dict(raw.get("where") or {}), arms=arms,
                    baseline=str(raw["baseline"]), comparisons=comparisons, endpoints=ends,
                    min_pairs=int(raw["min_pairs"]), mechanism=dict(raw["mechanism"]), path=str(path))
    except (KeyError, TypeError, ValueError) as err:
        raise ConfigError(f"plan {path} cannot be read ({type(err).__name__}: {err}): it needs name, alpha, arms,"
                          " baseline, comparisons, endpoints, min_pairs and mechanism") from None
    _check(plan)
    return plan


def _check(plan: Plan) -> None:
    known = set(plan.arms)
    for arm, against, _ in plan.comparisons:
        for label in (arm, against):
            if label not in known:
                raise ConfigError(f"plan {plan.path}: comparison names arm '{label}', which is not among its arms"
                                  f" ({', '.join(sorted(known))})")
    for e in plan.endpoints:
        if e.kind not in KINDS:
            raise ConfigError(f"plan {plan.path}: endpoint {e.name} has kind {e.kind}: use one of {', '.join(KINDS)}")
        if e.is_ratio and not e.margin > 1:
            raise ConfigError(f"plan {plan.path}: endpoint {e.name} is a ratio: its margin must be > 1 (1.08 = 8%)")


def arm_runs(runs: pd.DataFrame, plan: Plan) -> dict[str, pd.DataFrame]:
    """Each arm's runs that enter means (finished, not duplicates), one per seed, indexed by seed."""
    mask = runs["included"].astype(bool)
    for column, value in plan.where.items():
        mask &= runs[column] == value
    study = runs[mask]
    out = {}
    for label, arm in plan.arms.items():
        same = study[(study["method"] == arm["method"]) & np.isclose(study["delta"], arm["delta"])]
        out[label] = same.drop_duplicates("seed", keep="last").set_index("seed", drop=False).sort_index()
    return out


def endpoint_values(arms: dict[str, pd.DataFrame], plan: Plan) -> pd.DataFrame:
    """One row per (arm, seed) with every endpoint's value (NaN: censored or missing)."""
    rows = []
    for label, table in arms.items():
        for seed, run in table.iterrows():
            rows.append({"arm": label, "seed": seed, **{e.name: e.value(run) for e in plan.endpoints}})
    return pd.DataFrame(rows, columns=["arm", "seed", *[e.name for e in plan.endpoints]])


def verdicts(runs: pd.DataFrame, plan: Plan, confidence: float = 0.95) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The plan's verdict table (one row per comparison and endpoint) and its mechanism table."""
    arms = arm_runs(runs, plan)
    values = endpoint_values(arms, plan)
    mechanism = plan_mechanism(arms, plan, confidence)
    live = dict(zip(mechanism["arm"], mechanism["live"])) if len(mechanism) else {}
    rows = [_compare(values, plan, e, arm, against, hardness, confidence, live)
            for e in plan.endpoints for arm, against, hardness in plan.comparisons]
    table = pd.DataFrame(rows)
    for family, part in table.groupby("family"):
        table.loc[part.index, "p_holm"] = holm(part["p"])
        table.loc[part.index, "p_tost_holm"] = holm(part["p_tost"])
    table["verdict"] = [_verdict(r, plan.alpha) for _, r in table.iterrows()]
    return table, mechanism


def plan_mechanism(arms: dict[str, pd.DataFrame], plan: Plan, confidence: float) -> pd.DataFrame:
    probed = [label for label in plan.mechanism.get("arms", []) if label in arms]
    random_arm = plan.mechanism.get("random_arm")
    labels = probed + ([random_arm] if random_arm in arms and random_arm not in probed else [])
    num_batches = {label: int(arms[label]["num_batches"].iloc[0]) if len(arms[label]) else 0 for label in labels}
    return mechanism_table({label: arms[label] for label in labels}, random_arm, num_batches,
                           float(plan.mechanism["min_lift"]), confidence)


def _compare(values: pd.DataFrame, plan: Plan, e: Endpoint, arm: str, against: str, hardness: bool,
             confidence: float, live: dict) -> dict:
    mine = values[values["arm"] == arm].set_index("seed")[e.name]
    base = values[values["arm"] == against].set_index("seed")[e.name]
    seeds = sorted(set(mine.index) & set(base.index))
    x, y = mine.reindex(seeds).to_numpy(float), base.reindex(seeds).to_numpy(float)
    censored = int((np.isnan(x) | np.isnan(y)).sum())
    row = {"endpoint": e.name, "endpoint_label": e.label, "family": e.family, "arm": arm, "against": against,
           "pairs": len(seeds), "censored_pairs": censored, "arm_censored": int(np.isnan(x).sum()),
           "against_censored": int(np.isnan(y).sum()), "arm_mean": np.nanmean(x) if np.isfinite(x).any() else math.nan,
           "against_mean": np.nanmean(y) if np.isfinite(y).any() else math.nan, "margin": e.margin,
           "ratio": e.is_ratio, "about_hardness": hardness,
           "mechanism_live": live.get(arm, math.nan) if hardness else math.nan}
    if e.is_ratio:  # speed ratio t_against / t_arm: > 1 when the arm is faster
        r = paired_ratio(y, x, confidence)
        p_tost = tost_paired(y, x, 1 / e.margin, e.margin, log_scale=True)
    else:
        r = paired(x, y, confidence)
        p_tost = tost_paired(x, y, -e.margin, e.margin)
    too_censored = len(seeds) and censored > e.max_censored_share * len(seeds)
    row.update(estimate=r.estimate, low=r.low, high=r.high, p=r.p_value, p_tost=p_tost, used_pairs=r.n,
               too_censored=bool(too_censored or r.n < plan.min_pairs))
    return row


def _verdict(row, alpha: float) -> str:
    if row["too_censored"]:
        base = "censored" if row["censored_pairs"] else "too few pairs"
    elif row["p_tost_holm"] < alpha:
        base = "equivalent" + (" (a real difference, inside the margin)" if row["p_holm"] < alpha else "")
    elif row["p_holm"] < alpha:
        base = "different"
    else:
        base = "inconclusive"
    if row["about_hardness"] and not pd.isna(row["mechanism_live"]) and not bool(row["mechanism_live"]):
        return f"{base} (vacuous: the chosen batches were not harder than random ones)"
    return base
