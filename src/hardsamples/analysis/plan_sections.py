"""The sections `make tables plan=<plan.yaml>` puts first: the plan's verdicts, its mechanism check,
each arm's curve (best interval against final) and the paper's e beside its stability; their shown
columns are in plan_columns.py."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from hardsamples.analysis import endpoints, plan_columns
from hardsamples.analysis.convergence import convergence_epoch
from hardsamples.analysis.inference import paired_ratio, ratio_to_delta_e_pct, t_interval
from hardsamples.analysis.plan import Plan, arm_runs, verdicts
from hardsamples.analysis.report import Section


def plan_sections(runs: pd.DataFrame, plan: Plan, rules: dict, rule: str, confidence: float) -> list:
    table, mechanism = verdicts(runs, plan, confidence)
    arms = arm_runs(runs, plan)
    return [verdict_section(table, plan), mechanism_section(mechanism, plan), curve_section(arms, plan, confidence),
            e_section(arms, plan, rules[rule], rule, confidence)]


def verdict_section(table: pd.DataFrame, plan: Plan):
    notes = [f"Plan {plan.name} ({plan.path}), fixed before the runs. Each comparison is arm minus comparator,"
             " paired by seed (a seed fixes the data subset, the batch partition and the initial weights of every"
             " arm). Differences in percentage points with a 95% t-interval; reach endpoints as the speed ratio"
             " t_comparator / t_arm (> 1: the arm is faster) with a 95% t-interval on logs; means: the arm's and"
             " the comparator's means over the pairs (reach: over runs that reached the threshold).",
             f"Verdicts at α = {plan.alpha:g}: equivalent when TOST (statsmodels ttost_paired, two one-sided paired"
             " t-tests against the margin) rejects after Holm; different when the paired t-test rejects after Holm"
             " and TOST does not; inconclusive when neither; censored when more pairs than the plan allows never"
             " reached a threshold. Holm runs over every test of one family: "
             + "; ".join(f"{f}: {', '.join(e.label for e in plan.endpoints if e.family == f)}"
                         for f in dict.fromkeys(e.family for e in plan.endpoints)) + ".",
             "A verdict marked vacuous asks about hardness where the mechanism check (next table) found the chosen"
             " batches no harder than random ones."]
    return Section("plan_verdicts", f"Plan verdicts: {plan.name}", plan_columns.VERDICTS.render(table), table,
                   notes=notes)


def mechanism_section(mechanism: pd.DataFrame, plan: Plan):
    if mechanism.empty:
        return Section("plan_mechanism", "Mechanism check: no round_losses.csv in the plan's arms",
                       pd.DataFrame(), mechanism,
                       notes=["Run the arms with record.round_losses=true to measure whether the chosen batches"
                              " were harder than random ones; without it no verdict about hardness can be checked."])

    notes = ["From round_losses.csv (record.round_losses=true): at each interval's first round, every fixed batch's"
             " loss on the current model. lift: the chosen batches' mean loss / all batches' mean loss (1 = what a"
             " random choice gets on average), mean over probed rounds, then over seeds [95% t-interval]. spread:"
             " sd of the N batch losses / the sd batches of B samples drawn at random would show (1 = the batches"
             " differ by sampling chance alone). refresh would change: share of the chosen batches not among the k"
             " hardest on the current model. overlap with random: share of the chosen batches the random arm of the"
             " same seed chose in the same round, beside k / N.",
             f"Live when the lift's lower bound is at least {plan.mechanism['min_lift']} and, where a random arm with"
             " the same k ran, the paired difference of lifts is above 0 (its lower bound)."]
    return Section("plan_mechanism", "Mechanism check: were the chosen batches harder than random ones?",
                   plan_columns.MECHANISM.render(mechanism), mechanism, notes=notes)


def curve_section(arms: dict, plan: Plan, confidence: float):
    """Each arm's test top-1: its best interval against its final one, so a collapse shows."""
    rows = []
    for label, table in arms.items():
        if table.empty:
            continue
        best = [endpoints.best_value(c) for c in table["test_top1_curve"]]
        final = [endpoints.final_value(c) for c in table["test_top1_curve"]]
        train_final = [endpoints.final_value(c) for c in table["train_top1_curve"]]
        drop = t_interval(np.array([b for b, _ in best]) - np.array(final), confidence)
        rows.append({"arm": label, "seeds": len(table), "best_test_top1": np.mean([b for b, _ in best]),
                     "best_interval": np.mean([t for _, t in best]), "final_test_top1": np.mean(final),
                     "best_minus_final": drop.mean, "best_minus_final_low": drop.low,
                     "best_minus_final_high": drop.high, "final_train_top1": np.mean(train_final),
                     "epochs": int(table["epochs"].iloc[0])})
    data = pd.DataFrame(rows)
    if data.empty:
        return Section("plan_curves", "Curves: no runs of the plan's arms", pd.DataFrame(), data)
    notes = ["Means over seeds. best: each run's highest test top-1 over its intervals (chosen on the test set, so"
             " optimistic: a description of the curve, not an endpoint); best − final: how much a run lost after its"
             " best interval, [95% t-interval over seeds]."]
    return Section("plan_curves", "Curves: best interval against final (test top-1)", plan_columns.CURVES.render(data),
                   data, notes=notes)


def e_section(arms: dict, plan: Plan, rule: dict, rule_name: str, confidence: float):
    """The paper's e and Δe, descriptive only, with how many calls move when the curve loses its last
    interval or the noise band moves from 2σ to 1.5σ or 2.5σ."""
    base_label = plan.baseline
    calls = {label: [_calls(c, rule) for c in table["train_loss_curve"]] for label, table in arms.items()}
    rows = []
    for label, table in arms.items():
        if table.empty:
            continue
        e = np.array([c["e"] for c in calls[label]], dtype=float)
        interval = t_interval(e[np.isfinite(e)], confidence)
        changed = {k: sum(c[k] != c["e"] and not (math.isnan(c[k]) and math.isnan(c["e"])) for c in calls[label])
                   for k in ("drop_last", "band_1.5", "band_2.5")}
        row = {"arm": label, "seeds": len(table), "e_mean": interval.mean, "e_ci95": interval.half_width,
               "converged": int(np.isfinite(e).sum()), **{f"changed_{k}": v for k, v in changed.items()}}
        if label != base_label and base_label in arms:
            base = dict(zip(arms[base_label]["seed"], (c["e"] for c in calls[base_label])))
            mine = dict(zip(table["seed"], e))
            seeds = sorted(set(base) & set(mine))
            r = paired_ratio([base[s] for s in seeds], [mine[s] for s in seeds], confidence)
            row.update(delta_e_pct=ratio_to_delta_e_pct(r.estimate), delta_e_low=ratio_to_delta_e_pct(r.low),
                       delta_e_high=ratio_to_delta_e_pct(r.high), delta_e_pairs=r.n)
        rows.append(row)
    data = pd.DataFrame(rows)
    notes = [f"Descriptive only (no verdict rests on it): the paper's e under rule {rule_name}, mean ± 95% t over the"
             " seeds that converged; Δe % = (e₁ / e_δ − 1) × 100 over pairs where both converged. A call is the"
             " run's e or its censoring; 'calls changed' counts runs whose call differs when the curve ends one"
             " interval earlier, or when the noise band is 1.5σ or 2.5σ instead of 2σ: where these counts are"
             " large, e is not a stable quantity on these curves."]
    return Section("plan_e", "The paper's e, descriptive, with its stability", plan_columns.PAPER_E.render(data), data,
                   notes=notes)


def _calls(curve, rule: dict) -> dict:
    def call(c, **change):
        result = convergence_epoch(c, **{**rule, **change})
        return float(result.epoch) if result.converged else math.nan

    curve = np.asarray(curve, dtype=float)
    return {"e": call(curve), "drop_last": call(curve[:-1]), "band_1.5": call(curve, noise_band=1.5),
            "band_2.5": call(curve, noise_band=2.5)}
