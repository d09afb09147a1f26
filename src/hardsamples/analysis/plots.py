"""The paper's Figures 1, 3 and 5 from run records, one figure per model, dataset and setup, as PNG
and PDF, sized to span both columns of a two-column paper.

Top row: train loss and test top-1 against the interval t = updates / N, one line per delta (and per
setting a sweep varied: a cell, cells.py), the mean over finished seeds with its 95% t band. The bands of nearby deltas overlap, so the bottom row shows
what the top row cannot: each line minus the same seed's standard delta = 1.0 run, interval by
interval (mean paired difference, 95% t-interval across seeds), against a zero line."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
from cycler import cycler

from hardsamples import cells
from hardsamples.analysis.aggregate import BLOCK, DELTA_METHODS, setup_slug, sort_rows
from hardsamples.analysis.inference import t_interval

# A figure* spanning both columns of a two-column paper (~7 in text width); 8 pt text stays readable
# when printed at that size. PDF and PS fonts as TrueType (42), not Type 3 (some venues reject Type 3).
FIGURE_SIZE_IN = (7.0, 5.4)
# Okabe and Ito's colour-blind-safe palette (black first: delta = 1, the baseline), and a marker per line,
# so lines are told apart without colour too.
PALETTE = ["#000000", "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442"]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]
MARKED_POINTS = 8  # a longer line marks about this many of its points
FIGURE_STYLE = {"pdf.fonttype": 42, "ps.fonttype": 42, "font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8,
                "xtick.labelsize": 7, "ytick.labelsize": 7, "legend.fontsize": 7, "figure.titlesize": 9,
                "lines.linewidth": 1.2, "lines.markersize": 3.5, "axes.prop_cycle": cycler(color=PALETTE)}
PNG_DPI = 200
BASELINE = {"method": "standard", "variant": "", "delta": 1.0}  # what every paired difference is taken against
PAIR_KEYS = ["seed", "interval"]
FIGURE_BLOCK = [key for key in BLOCK if key != "settings"]  # one figure each; a setting is a line of its own
LINE = ["settings", "method", "variant", "delta"]
# Names in words for the titles; any other name is printed as it is.
DATASET_NAMES = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "stl10": "STL-10", "fashion_mnist": "Fashion-MNIST",
                 "digits": "scikit-learn digits", "synthetic": "synthetic data"}
MODEL_NAMES = {"resnet18": "ResNet-18", "resnet50": "ResNet-50", "efficientnet_b4": "EfficientNet-B4",
               "efficientnetv2_s": "EfficientNetV2-S", "mobilenetv3_small_100": "MobileNetV3-S",
               "test_resnet": "tiny ResNet (timm test_resnet)"}
PROTOCOL_NAMES = {"paper_code": "authors' protocol", "clean": "clean protocol"}
TITLE_CHARACTERS = 90  # a longer title wraps: 7 in at 9 pt holds about 95 characters


def convergence_figures(df: pd.DataFrame, runs: pd.DataFrame, rows: pd.DataFrame, out_dir,
                        confidence: float = 0.95) -> list[Path]:
    """df: the tidy table (one row per run and interval); runs: summarise_runs; rows: group_rows,
    whose e_mean is marked on each loss curve. Returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    used = runs.loc[runs["included"], "run_dir"]
    curves = df[df["run_dir"].isin(used)].dropna(subset=["interval"])
    written = []
    for key, block in curves.groupby(FIGURE_BLOCK, sort=True):
        info = dict(zip(FIGURE_BLOCK, key))
        block = block.merge(runs[["run_dir", "variant", "settings"]], on="run_dir")
        with plt.rc_context(FIGURE_STYLE):  # local: the caller's matplotlib settings stay as they were
            fig = block_figure(plt, block, rows, info, confidence)
            stem = out_dir / figure_stem(info)
            for suffix in (".png", ".pdf"):
                # No creation date in the PDF: a regenerated figure is byte-identical to a committed one.
                fig.savefig(stem.with_suffix(suffix), dpi=PNG_DPI,
                            metadata={"CreationDate": None} if suffix == ".pdf" else None)
                written.append(stem.with_suffix(suffix))
            plt.close(fig)
    return written


def block_figure(plt, block: pd.DataFrame, rows: pd.DataFrame, info: dict, confidence: float):
    """The 2 x 2 figure of one block: curves on top, paired differences to delta = 1.0 below. A line is
    one cell: a delta (and method), and the settings its sweep varied, each paired with its own delta = 1."""
    fig, axes = plt.subplots(2, 2, figsize=FIGURE_SIZE_IN, sharex=True, constrained_layout=True)
    (loss_ax, test_ax), (loss_diff_ax, test_diff_ax) = axes
    # The paper's figures: one line per delta. Other methods or settings: named in the label too.
    only_delta = set(block["method"]) <= set(DELTA_METHODS) and (block["variant"] == "").all()
    extents = {loss_diff_ax: {}, test_diff_ax: {}}  # per difference panel: line label -> (lowest, highest, is delta)
    paired_any = False
    for index, (_, line) in enumerate(sort_rows(block).groupby(LINE, sort=False)):
        settings, method, variant, delta = line.iloc[0][LINE]
        method_part = "" if only_delta else cells.method_text({"method": method, "variant": variant}) + " "
        label = f"{method_part}δ={delta:g}" + (f", {settings.replace(cells.SEPARATOR, ', ')}" if settings else "")
        style = {"color": PALETTE[index % len(PALETTE)], "marker": MARKERS[index % len(MARKERS)]}
        _plot_band(loss_ax, line.groupby("interval")["train_loss"], confidence, style,
                   label=f"{label} (n={line['run_dir'].nunique()})")
        _plot_band(test_ax, line.groupby("interval")["test_top1"], confidence, style, clip=(0.0, 100.0))
        _mark_e(loss_ax, line, rows, {**info, "settings": settings, "method": method, "variant": variant,
                                      "delta": delta}, style["color"])
        base = block[_matches(block, {**BASELINE, "settings": settings})]
        if len(base) and (method, variant, delta) != tuple(BASELINE.values()):
            paired_any = True
            is_delta = method in DELTA_METHODS and not variant
            for ax, metric in ((loss_diff_ax, "train_loss"), (test_diff_ax, "test_top1")):
                extent = _plot_band(ax, paired_differences(line, base, metric), confidence, style)
                extents[ax][label] = (*extent, is_delta)
    for ax, lines in extents.items():
        _fit_to_deltas(ax, lines)
    loss_ax.set(ylabel="train loss", yscale="log", title="Train loss, mean over seeds")
    test_ax.set(ylabel="test top-1 (%)", title="Test top-1, mean over seeds")
    loss_diff_ax.set(ylabel="Δ train loss", title="Train loss minus the same seed's δ = 1 run")
    test_diff_ax.set(ylabel="Δ test top-1 (pp)", title="Test top-1 minus the same seed's δ = 1 run")
    for ax in (loss_diff_ax, test_diff_ax):
        ax.axhline(0.0, color="black", linewidth=0.8, linestyle="--", zorder=1)
        if not paired_any:
            why = "only δ = 1.0 runs: nothing to pair" if _matches(block, BASELINE).any() \
                else "no standard δ = 1.0 runs to pair with"
            ax.text(0.5, 0.5, why, transform=ax.transAxes, ha="center")
        ax.set_xlabel("epoch-equivalent t = updates / N")
    for ax in axes.flat:
        ax.xaxis.get_major_locator().set_params(integer=True)
    handles, labels = loss_ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 4), frameon=False,
               title=f"Bands: {confidence:.0%} t-interval across seeds. Dots: mean e of the seeds that converged.",
               title_fontsize=FIGURE_STYLE["legend.fontsize"])
    fig.suptitle(figure_title(info))
    return fig


def figure_title(info: dict) -> str:
    """'ResNet-18 on CIFAR-10: authors' protocol, 100 epochs, batch 512, 128 × 128 px', wrapped when long."""
    fidelity, _, switched = str(info["fidelity"]).partition(" ")
    model, dataset = MODEL_NAMES.get(info["model"], info["model"]), DATASET_NAMES.get(info["dataset"], info["dataset"])
    title = (f"{model[0].upper()}{model[1:]} on {dataset}: {PROTOCOL_NAMES.get(fidelity, fidelity)}"
             f"{' ' + switched if switched else ''}, {info['epochs']:g} epochs, batch {info['batch_size']:g},"
             f" {info['image_size']:g} × {info['image_size']:g} px")
    return textwrap.fill(title, TITLE_CHARACTERS)


def paired_differences(line: pd.DataFrame, base: pd.DataFrame, metric: str):
    """metric of each run minus the baseline run of the same seed at the same interval, grouped by
    interval (seeds without a baseline run drop out)."""
    pairs = line[PAIR_KEYS + [metric]].merge(base[PAIR_KEYS + [metric]], on=PAIR_KEYS, suffixes=("", "_base"))
    return (pairs[metric] - pairs[f"{metric}_base"]).groupby(pairs["interval"])


def figure_stem(info: dict) -> str:
    return f"{info['dataset']}_{info['model']}_{setup_slug(info)}"


def _matches(table: pd.DataFrame, values: dict) -> pd.Series:
    mask = pd.Series(True, index=table.index)
    for column, value in values.items():
        mask &= table[column] == value
    return mask


def _mark_e(ax, line: pd.DataFrame, rows: pd.DataFrame, row_key: dict, colour) -> None:
    """A dot on the mean loss curve at the row's mean e (when any seed converged)."""
    e = rows.loc[_matches(rows, row_key), "e_mean"]
    if len(e) and np.isfinite(e.iloc[0]):
        mean_loss = line.groupby("interval")["train_loss"].mean()
        ax.plot([e.iloc[0]], [np.interp(e.iloc[0], mean_loss.index, mean_loss.values)], "o", color=colour,
                markersize=4, markeredgecolor="black", markeredgewidth=0.6)


def _fit_to_deltas(ax, lines: dict) -> None:
    """Scale a difference panel to the delta lines (with zero), which it is there to tell apart; another
    method far off (trimming's rising loss) would squash them into one line. Lines left off scale are
    named in the panel."""
    deltas = [(low, high) for low, high, is_delta in lines.values() if is_delta and np.isfinite([low, high]).all()]
    if not deltas or len(deltas) == len(lines):
        return
    low, high = min(0.0, *(lo for lo, _ in deltas)), max(0.0, *(hi for _, hi in deltas))
    margin = 0.08 * (high - low) or 1.0
    low, high = low - margin, high + margin
    off_scale = [label for label, (lo, hi, is_delta) in lines.items() if not is_delta and (lo < low or hi > high)]
    ax.set_ylim(low, high)
    if off_scale:
        ax.text(0.02, 0.97, "off scale: " + ", ".join(off_scale), transform=ax.transAxes, va="top", fontsize=6.5)


def _plot_band(ax, by_interval, confidence: float, style: dict, clip=(None, None), label=None):
    """The mean of each interval's values, with its t-interval as a band; markers on about
    MARKED_POINTS of its points (every point of a short run: one interval is a visible point). Returns
    the lowest and highest value drawn (band or mean)."""
    t = np.array(sorted(by_interval.groups))
    intervals = [t_interval(by_interval.get_group(i), confidence) for i in t]
    mean = np.array([iv.mean for iv in intervals])
    half = np.array([iv.half_width for iv in intervals])
    ax.plot(t, mean, label=label, markevery=math.ceil(len(t) / MARKED_POINTS), **style)
    low, high = mean, mean
    if np.isfinite(half).any():
        low, high = np.clip(mean - half, *clip), np.clip(mean + half, *clip)  # a band past 100% says nothing
        ax.fill_between(t, low, high, color=style["color"], alpha=0.15, linewidth=0)
    drawn = np.concatenate([mean, low, high])
    drawn = drawn[np.isfinite(drawn)]
    return (drawn.min(), drawn.max()) if len(drawn) else (np.nan, np.nan)


def mechanism_figure(rounds: dict[str, list[pd.DataFrame]], min_lift: float, title: str, out_dir,
                     confidence: float = 0.95) -> list[Path]:
    """The mechanism check over training (analysis/mechanism.py): for each probed arm, the lift of its
    chosen batches (their loss on the current model / all batches' loss; 1: what random choice gets) and
    the spread of the batch losses against random batches of the same size, each the mean over seeds
    at each probed interval with its 95% t band. rounds: arm label -> each seed's round_losses.csv rows,
    with the interval t each was measured in (mechanism.probed_rounds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with plt.rc_context(FIGURE_STYLE):
        fig, (left, right) = plt.subplots(1, 2, figsize=(FIGURE_SIZE_IN[0], 2.8), layout="constrained")
        styles = iter([{"color": c, "marker": m} for c, m in zip(PALETTE[1:], MARKERS[1:])])
        for label, tables in rounds.items():
            long = pd.concat(tables, ignore_index=True)
            long["lift"] = long["chosen_fresh_mean"] / long["fresh_mean"]
            long["spread"] = long["fresh_sd"] / long["random_sd"]
            style = next(styles)
            for ax, measure in ((left, "lift"), (right, "spread")):
                _plot_band(ax, long.groupby("interval")[measure], confidence, style, label=label)
        left.axhline(1.0, color="black", linewidth=0.8, label="random choice (1)")
        left.axhline(min_lift, color="black", linewidth=0.8, linestyle=":", label=f"live at ≥ {min_lift:g}")
        right.axhline(1.0, color="black", linewidth=0.8, label="random batches (1)")
        left.set(xlabel="interval t (epoch-equivalents)", ylabel="lift: chosen / all batches' current loss",
                 title="Were the chosen batches harder than random ones?")
        right.set(xlabel="interval t (epoch-equivalents)", ylabel="sd of batch losses / random batches' sd",
                  title="Did the fixed batches differ in hardness?")
        left.legend(loc="best", frameon=False)
        right.legend(loc="best", frameon=False)
        fig.suptitle(textwrap.fill(title, TITLE_CHARACTERS))
        stem = out_dir / "mechanism"
        written = []
        for suffix in (".png", ".pdf"):
            fig.savefig(stem.with_suffix(suffix), dpi=PNG_DPI, metadata={"CreationDate": None} if suffix == ".pdf" else None)
            written.append(stem.with_suffix(suffix))
        plt.close(fig)
    return written
