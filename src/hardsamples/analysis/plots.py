"""The paper's Figures 1, 3 and 5 from run records, one figure per model, dataset and protocol, as PNG
and PDF, sized to span both columns of a two-column paper.

Top row: train loss and test top-1 against the interval t = updates / N, one line per delta (mean
over finished seeds) with its 95% t band. The bands of nearby deltas overlap, so the bottom row shows
what the top row cannot: each line minus the same seed's standard delta = 1.0 run, interval by
interval (mean paired difference, 95% t-interval across seeds), against a zero line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from hardsamples.analysis.aggregate import BLOCK, DELTA_METHODS, protocol_slug, protocol_text, sort_rows
from hardsamples.analysis.inference import t_interval

# A figure* spanning both columns of a two-column paper (~7 in text width); 8 pt text stays readable
# when printed at that size. PDF and PS fonts as TrueType (42), not Type 3 (some venues reject Type 3).
FIGURE_SIZE_IN = (7.0, 5.4)
FIGURE_STYLE = {"pdf.fonttype": 42, "ps.fonttype": 42, "font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8,
                "xtick.labelsize": 7, "ytick.labelsize": 7, "legend.fontsize": 7, "figure.titlesize": 8,
                "lines.linewidth": 1.2}
PNG_DPI = 200
BASELINE = {"method": "standard", "variant": "", "delta": 1.0}  # what every paired difference is taken against
PAIR_KEYS = ["seed", "interval"]


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
    for key, block in curves.groupby(BLOCK, sort=True):
        info = dict(zip(BLOCK, key))
        block = block.merge(runs[["run_dir", "variant"]], on="run_dir")
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
    """The 2 x 2 figure of one block: curves on top, paired differences to delta = 1.0 below."""
    fig, axes = plt.subplots(2, 2, figsize=FIGURE_SIZE_IN, sharex=True, constrained_layout=True)
    (loss_ax, test_ax), (loss_diff_ax, test_diff_ax) = axes
    # The paper's figures: one line per delta. Other methods or settings: named in the label too.
    only_delta = set(block["method"]) <= set(DELTA_METHODS) and (block["variant"] == "").all()
    base = block[_matches(block, BASELINE)]
    extents = {loss_diff_ax: {}, test_diff_ax: {}}  # per difference panel: line label -> (lowest, highest, is delta)
    for _, line in sort_rows(block).groupby(["method", "variant", "delta"], sort=False):
        method, variant, delta = line.iloc[0][["method", "variant", "delta"]]
        label = f"δ={delta:g}" if only_delta else f"{method}{f' ({variant})' if variant else ''} δ={delta:g}"
        colour, _ = _plot_band(loss_ax, line.groupby("interval")["train_loss"], confidence,
                               label=f"{label} (n={line['run_dir'].nunique()})")
        _plot_band(test_ax, line.groupby("interval")["test_top1"], confidence, colour, clip=(0.0, 100.0))
        _mark_e(loss_ax, line, rows, {**info, "method": method, "variant": variant, "delta": delta}, colour)
        if len(base) and (method, variant, delta) != tuple(BASELINE.values()):
            is_delta = method in DELTA_METHODS and not variant
            for ax, metric in ((loss_diff_ax, "train_loss"), (test_diff_ax, "test_top1")):
                _, extent = _plot_band(ax, paired_differences(line, base, metric), confidence, colour)
                extents[ax][label] = (*extent, is_delta)
    for ax, lines in extents.items():
        _fit_to_deltas(ax, lines)
    loss_ax.set(ylabel="train loss", yscale="log", title="train loss (dot: mean e of the seeds that converged)")
    test_ax.set(ylabel="test top-1 (%)", title="test top-1")
    band = f"{confidence:.0%} t-interval across seeds"
    loss_diff_ax.set(ylabel="Δ train loss", title="train loss − same seed's δ = 1.0")
    test_diff_ax.set(ylabel="Δ test top-1 (pp)", title="test top-1 − same seed's δ = 1.0")
    for ax in (loss_diff_ax, test_diff_ax):
        ax.axhline(0.0, color="black", linewidth=0.8, linestyle="--", zorder=1)
        if not len(base):
            ax.text(0.5, 0.5, "no standard δ = 1.0 runs to pair with", transform=ax.transAxes, ha="center")
        ax.set_xlabel("interval t = updates / N")
    for ax in axes.flat:
        ax.xaxis.get_major_locator().set_params(integer=True)
    handles, labels = loss_ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 4), frameon=False)
    fig.suptitle(f"{info['model']} on {info['dataset']} ({protocol_text(info)})\nTop: mean over seeds. Bottom: mean"
                 f" paired difference to the same seed's δ = 1.0 run. Bands: {band}.")
    return fig


def paired_differences(line: pd.DataFrame, base: pd.DataFrame, metric: str):
    """metric of each run minus the baseline run of the same seed at the same interval, grouped by
    interval (seeds without a baseline run drop out)."""
    pairs = line[PAIR_KEYS + [metric]].merge(base[PAIR_KEYS + [metric]], on=PAIR_KEYS, suffixes=("", "_base"))
    return (pairs[metric] - pairs[f"{metric}_base"]).groupby(pairs["interval"])


def figure_stem(info: dict) -> str:
    return f"{info['dataset']}_{info['model']}_{protocol_slug(info)}"


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


def _plot_band(ax, by_interval, confidence: float, colour=None, clip=(None, None), label=None):
    """The mean of each interval's values, with its t-interval as a band. Returns the line's colour and
    the lowest and highest value drawn (band or mean)."""
    t = np.array(sorted(by_interval.groups))
    intervals = [t_interval(by_interval.get_group(i), confidence) for i in t]
    mean = np.array([iv.mean for iv in intervals])
    half = np.array([iv.half_width for iv in intervals])
    (handle,) = ax.plot(t, mean, label=label, color=colour)
    low, high = mean, mean
    if np.isfinite(half).any():
        low, high = np.clip(mean - half, *clip), np.clip(mean + half, *clip)  # a band past 100% says nothing
        ax.fill_between(t, low, high, color=handle.get_color(), alpha=0.2, linewidth=0)
    drawn = np.concatenate([mean, low, high])
    drawn = drawn[np.isfinite(drawn)]
    return handle.get_color(), ((drawn.min(), drawn.max()) if len(drawn) else (np.nan, np.nan))
