"""The paper's Figures 1, 3 and 5 from run records: train loss and test top-1 against the interval
t = updates / N, one line per delta (mean over finished seeds) with its 95% t band, one figure per
model, dataset and protocol, as PNG and PDF."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from hardsamples.analysis.aggregate import BLOCK, DELTA_METHODS, protocol_slug, protocol_text, sort_rows
from hardsamples.analysis.inference import t_interval


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
        # The paper's figures: one line per delta. Other methods or settings: named in the label too.
        only_delta = set(block["method"]) <= set(DELTA_METHODS) and (block["variant"] == "").all()
        fig, (loss_ax, test_ax) = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
        for _, line in sort_rows(block).groupby(["method", "variant", "delta"], sort=False):
            method, variant, delta = line.iloc[0][["method", "variant", "delta"]]
            label = f"δ={delta:g}" if only_delta else f"{method}{f' ({variant})' if variant else ''} δ={delta:g}"
            n_seeds = line["run_dir"].nunique()
            colour = _plot_band(loss_ax, line, "train_loss", f"{label} (n={n_seeds})", confidence)
            _plot_band(test_ax, line, "test_top1", label, confidence, colour, clip=(0.0, 100.0))
            e = rows.loc[_matches(rows, {**info, "method": method, "variant": variant, "delta": delta}), "e_mean"]
            if len(e) and np.isfinite(e.iloc[0]):
                mean_loss = line.groupby("interval")["train_loss"].mean()
                loss_ax.plot([e.iloc[0]], [np.interp(e.iloc[0], mean_loss.index, mean_loss.values)], "o",
                             color=colour, markersize=6, markeredgecolor="black")
        loss_ax.set(xlabel="interval t = updates / N", ylabel="train loss", yscale="log",
                    title="train loss (dot: mean e of the seeds that converged)")
        test_ax.set(xlabel="interval t = updates / N", ylabel="test top-1 (%)", title="test top-1")
        for ax in (loss_ax, test_ax):
            ax.xaxis.get_major_locator().set_params(integer=True)
        loss_ax.legend(fontsize=8)
        fig.suptitle(f"{info['model']} on {info['dataset']} ({protocol_text(info)}); "
                     f"mean over seeds, {confidence:.0%} t band")
        stem = out_dir / figure_stem(info)
        for suffix in (".png", ".pdf"):
            # No creation date in the PDF: a regenerated figure is byte-identical to a committed one.
            fig.savefig(stem.with_suffix(suffix), dpi=150, metadata={"CreationDate": None} if suffix == ".pdf" else None)
            written.append(stem.with_suffix(suffix))
        plt.close(fig)
    return written


def figure_stem(info: dict) -> str:
    return f"{info['dataset']}_{info['model']}_{protocol_slug(info)}"


def _matches(table: pd.DataFrame, values: dict) -> pd.Series:
    mask = pd.Series(True, index=table.index)
    for column, value in values.items():
        mask &= table[column] == value
    return mask


def _plot_band(ax, line: pd.DataFrame, metric: str, label: str, confidence: float, colour=None,
               clip=(None, None)):
    by_interval = line.groupby("interval")[metric]
    t = np.array(sorted(by_interval.groups))
    intervals = [t_interval(by_interval.get_group(i), confidence) for i in t]
    mean = np.array([iv.mean for iv in intervals])
    half = np.array([iv.half_width for iv in intervals])
    (handle,) = ax.plot(t, mean, label=label, color=colour, linewidth=1.5)
    if np.isfinite(half).any():
        low, high = np.clip(mean - half, *clip), np.clip(mean + half, *clip)  # a band past 100% says nothing
        ax.fill_between(t, low, high, color=handle.get_color(), alpha=0.2, linewidth=0)
    return handle.get_color()
