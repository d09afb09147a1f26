"""What a paper takes from `make tables` (issue 14): tables.tex compiles with a real LaTeX engine and
prints what the Markdown says; the figures are two columns wide, TrueType only, and show each delta's
paired difference to delta = 1.0 with its t-interval.

The LaTeX tests need pdflatex with booktabs (Debian: texlive-latex-base texlive-latex-recommended,
which .ci/run installs). Without it they skip, except under CI (CI set), where they fail.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess

import matplotlib
import numpy as np
import pandas as pd
import pytest

from conftest import ROOT
from test_tables import write_run

from hardsamples.analysis.inference import t_interval
from hardsamples.analysis.plots import (FIGURE_BLOCK, FIGURE_SIZE_IN, FIGURE_STYLE, PALETTE, PNG_DPI, block_figure,
                                        convergence_figures)
from hardsamples.analysis.latex import PACKAGES, latex, tex_text
from hardsamples.analysis.report import build
from hardsamples.tables import compose, main

STUDY_RUNS = ROOT / "results" / "fashion_mnist" / "runs"
LATEX_PACKAGES = "texlive-latex-base texlive-latex-recommended"
# An article at 10 pt (text width 345 pt), every tabular measured: its width goes to the log.
DOCUMENT = ("\\documentclass{article}\n" + "".join(f"\\usepackage{{{p}}}\n" for p in PACKAGES)
            + "\\newsavebox{\\measured}\n\\begin{document}\n\\typeout{TEXT WIDTH \\the\\textwidth}\n"
            "\\input{measured.tex}\n\\end{document}\n")
# What pdflatex writes when text-mode input holds math or a character it has no glyph for.
LATEX_ERRORS = ("Missing $", "Unicode character", "Undefined control sequence", "Extra }", "Missing }")
POINTS_PER_INCH = 72


def require_pdflatex() -> str:
    path = shutil.which("pdflatex")
    if path:
        return path
    why = f"pdflatex not found: apt-get install {LATEX_PACKAGES} (Debian; booktabs is in the second)"
    if os.environ.get("CI"):
        pytest.fail(why + "; CI must compile tables.tex")
    pytest.skip(why)


def write_synthetic_records(root) -> None:
    """CIFAR-10 records (the paper's numbers beside ours) with two seeds (intervals carry the few-seeds
    warning), a paired difference to delta = 1.0 that is known, and a control method far off."""
    for seed in (0, 1, 2):
        base = [1.0 / t + 0.01 * seed for t in range(1, 11)]
        write_run(root, delta=1.0, seed=seed, losses=base, test_curve=[60.0 + seed] * 10)
        # delta = 0.5: train loss lower by 0.01 (seed + 1), test top-1 higher by 1 + seed, in every interval
        write_run(root, delta=0.5, seed=seed, losses=[v - 0.01 * (seed + 1) for v in base],
                  test_curve=[61.0 + 2 * seed] * 10)
        write_run(root, method="random_batches", delta=0.5, seed=seed, losses=[v + 5.0 for v in base],
                  test_curve=[40.0] * 10)
    for seed in (0, 1):  # two seeds: the few-seeds warning
        write_run(root, delta=0.2, seed=seed, test_top1=55.0 + 3 * seed)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """`make tables` on the committed Fashion-MNIST records, figures included."""
    out = tmp_path_factory.mktemp("study")
    assert main([f"runs={STUDY_RUNS}", f"out={out}"]) == 0
    return out


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    runs = tmp_path_factory.mktemp("records")
    write_synthetic_records(runs)
    out = tmp_path_factory.mktemp("synthetic")
    assert main([f"runs={runs}", f"out={out}", "table2=false", "figures=false"]) == 0
    return runs, out


def compile_tables(tables_tex, tmp_path) -> str:
    """pdflatex on tables.tex in an article, each tabular measured in a box; fails on any error or on a
    table wider than the text."""
    pdflatex = require_pdflatex()
    text = tables_tex.read_text()
    measured = text.replace("\\begin{tabular}", "\\begin{lrbox}{\\measured}\\begin{tabular}").replace(
        "\\end{tabular}", "\\end{tabular}\\end{lrbox}\\typeout{TABLE WIDTH \\the\\wd\\measured}\\usebox{\\measured}")
    (tmp_path / "measured.tex").write_text(measured)
    (tmp_path / "doc.tex").write_text(DOCUMENT)
    result = subprocess.run([pdflatex, "-halt-on-error", "-interaction=nonstopmode", "doc.tex"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=300)
    log = (tmp_path / "doc.log").read_text(errors="replace")
    assert result.returncode == 0, result.stdout[-3000:]
    assert (tmp_path / "doc.pdf").is_file()
    assert not [error for error in LATEX_ERRORS if error in log], log[-3000:]
    text_width = float(re.search(r"TEXT WIDTH ([\d.]+)pt", log).group(1))
    widths = [float(w) for w in re.findall(r"TABLE WIDTH ([\d.]+)pt", log)]
    assert text_width == pytest.approx(345.0) and len(widths) == text.count("\\begin{tabular}") > 0
    too_wide = [w for w in widths if w > text_width]
    assert not too_wide, f"{len(too_wide)} of {len(widths)} tables are wider than the text ({text_width} pt): {too_wide}"
    assert "Overfull \\hbox" not in log, re.findall(r"Overfull \\hbox.*", log)[:5]
    return log


# ---------------------------------------------------------------------------------- LaTeX

def test_the_study_tables_compile_with_pdflatex(study, tmp_path):
    compile_tables(study / "tables.tex", tmp_path)


def test_tables_with_the_papers_columns_compile_with_pdflatex(synthetic, tmp_path):
    _, out = synthetic
    text = (out / "tables.tex").read_text()
    assert "textbf{!}n=2" in text and "paper" in text  # the few-seeds warning and the paper's columns made it in
    compile_tables(out / "tables.tex", tmp_path)


@pytest.mark.parametrize("which", ["study", "synthetic"])
def test_tables_tex_is_ascii_with_no_bare_comparison_in_text(which, request):
    """OT1 (pdflatex's default) prints a text-mode < > | as ¡ ¿ — without any error, so the log cannot
    catch them: outside $...$ none may remain, nor any non-ASCII character."""
    fixture = request.getfixturevalue(which)
    out = fixture if which == "study" else fixture[1]
    text = (out / "tables.tex").read_text()
    assert text.isascii(), sorted({c for c in text if not c.isascii()})
    printed = re.sub(r"^\\begin\{tabular\}.*$", "", text, flags=re.M)  # a column spec's >{...} is no text
    outside_math = re.sub(r"(?<!\\)\$.*?(?<!\\)\$", "", printed)
    assert not re.search(r"[<>|]", outside_math), re.findall(r".{30}[<>|].{0,10}", outside_math)[:5]
    assert text.count("\\begin{table}") == text.count("\\centering") > 0


@pytest.mark.parametrize("plain, tex", [
    ("p <0.001", r"p $<$0.001"),
    ("P(gain | no effect)", r"P(gain $|$ no effect)"),
    ("88.44 ± 0.40", r"88.44 $\pm$ 0.40"),
    ("[-63.14, +397.36]", r"[$-$63.14, +397.36]"),
    ("x−1", r"x$-$1"),
    ("95%: ≤ +0.42", r"95\%: $\leq$ +0.42"),
    ("Δe % for δ = 1", r"$\Delta$e \% for $\delta$ = 1"),
    ("(e₁ − e_δ) × 100", r"($e_{1}$ $-$ $e_{\delta}$) $\times$ 100"),
    ("d_z of hard_batches", r"$d_{z}$ of hard\_batches"),
    ("×δ", r"$\times \delta$"),  # neighbouring symbols: one formula, never $$ (display math)
    ("7.1 ⚠n=2", r"7.1 \textbf{!}n=2"),
    ("A & B #1 $5 {x} ~^\\", r"A \& B \#1 \$5 \{x\} \textasciitilde{}\textasciicircum{}\textbackslash{}"),
    ("– and — → σ √", r"-- and --- $\rightarrow$ $\sigma$ $\surd$"),
    ("test_resnet-d0.2-s0", r"test\_resnet-d0.2-s0"),  # a hyphen in a name is no minus
])
def test_tex_text_converts_each_character(plain, tex):
    assert tex_text(plain) == tex


def test_numeric_columns_align_right_in_a_centred_booktabs_float():
    display = pd.DataFrame({"network": ["test_resnet", "ResNet-18"], "seeds": [5, 2], "top-1": ["88.44 ± 0.40", "–"],
                            "p": ["<0.001", "0.320"], "Δ": ["[-0.53, +0.15]", ""], "reach": ["16.2 vs 17.8", "never"]})
    text = latex("x_y", "Title with 95% and δ < 1", display)
    assert "\\begin{tabular}{lrrrrl}" in text
    lines = text.splitlines()
    assert lines[:4] == ["\\begin{table}", "\\centering", r"\caption{Title with 95\% and $\delta$ $<$ 1}",
                         "\\label{tab:x_y}"]
    assert [line for line in lines if line.endswith("rule")] == ["\\toprule", "\\midrule", "\\bottomrule"]


def test_a_wide_table_is_split_by_columns_with_its_row_labels_in_every_part():
    values = {f"measure {i}": [f"{i}.123 ± 0.456", f"{i}.5 ± 0.1"] for i in range(12)}
    display = pd.DataFrame({"network": ["ResNet-18", "ResNet-50"], "δ": ["1", "0.5"], "optimizer.lr": ["0.1", "0.1"],
                            **values, "empty": ["", ""]})
    display.attrs["settings"] = ["optimizer.lr"]
    text = latex("wide", "Wide", display, width_pt=345)
    floats = text.split("\\begin{table}")[1:]
    assert len(floats) > 1 and "\\label{tab:wide:2}" in floats[1] and "(continued, part 2 of" in floats[1]
    for part in floats:  # the row labels repeated; the shared setting in the caption; empty columns left out
        header = part.split("\\toprule\n")[1].splitlines()[0]
        assert header.startswith("network & $\\delta$ &") and "optimizer.lr" not in header and "empty" not in header
        assert "(optimizer.lr: 0.1)" in part.split("\n")[2]
    assert sum(part.count("measure") for part in floats) == 12


def test_a_long_cell_wraps_in_a_column_of_fixed_width():
    display = pd.DataFrame({"network": ["a", "b"], "e": ["8.5 ± 6.4 ⚠n=2 (3 of 5 censored: 2 too noisy, 1 still falling)",
                                                         "12.7 [1.0, 20.0]"]})
    text = latex("w", "W", display)
    assert "\\begin{tabular}{l>{\\raggedleft\\arraybackslash}p{120pt}}" in text


@pytest.mark.parametrize("ci", ["1", None])
def test_a_missing_pdflatex_fails_under_ci_and_skips_elsewhere(ci, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    if ci:
        monkeypatch.setenv("CI", ci)
    else:
        monkeypatch.delenv("CI", raising=False)
    outcome = pytest.fail.Exception if ci else pytest.skip.Exception
    with pytest.raises(outcome, match=LATEX_PACKAGES):
        require_pdflatex()


# ---------------------------------------------------------------------------------- figures

def test_study_figures_are_two_columns_wide_with_truetype_fonts_and_no_date(study):
    pdfs = sorted((study / "figures").glob("*.pdf"))
    assert pdfs
    for pdf in pdfs:
        data = pdf.read_bytes()
        assert b"/Type3" not in data, f"{pdf.name} embeds a Type 3 font"
        assert b"/CIDFontType2" in data or b"/TrueType" in data, f"{pdf.name} embeds no TrueType font"
        assert b"/CreationDate" not in data  # regenerating leaves the committed figure unchanged
        width, height = map(float, re.search(rb"/MediaBox \[ *0 +0 +([\d.]+) +([\d.]+) *\]", data).groups())
        assert (width / POINTS_PER_INCH, height / POINTS_PER_INCH) == pytest.approx(FIGURE_SIZE_IN)
        png = pdf.with_suffix(".png").read_bytes()
        assert struct.unpack(">II", png[16:24]) == (round(FIGURE_SIZE_IN[0] * PNG_DPI), round(FIGURE_SIZE_IN[1] * PNG_DPI))
    assert 6.5 <= FIGURE_SIZE_IN[0] <= 7.2, "a figure* spanning both columns of a two-column paper"
    assert FIGURE_STYLE["font.size"] >= 7 and FIGURE_STYLE["xtick.labelsize"] >= 6


def test_the_font_settings_stay_local_to_the_figures(synthetic, tmp_path):
    runs_dir, _ = synthetic
    _, df, runs, rows = build(compose([f"runs={runs_dir}", "table2=false", "figures=false"]))
    before = {key: matplotlib.rcParams[key] for key in FIGURE_STYLE}
    written = convergence_figures(df, runs, rows, tmp_path)
    assert {key: matplotlib.rcParams[key] for key in FIGURE_STYLE} == before
    assert b"/Type3" not in next(p for p in written if p.suffix == ".pdf").read_bytes()


def test_the_difference_panels_show_the_paired_mean_and_its_t_interval(synthetic):
    import matplotlib.pyplot as plt

    runs_dir, _ = synthetic
    _, df, runs, rows = build(compose([f"runs={runs_dir}", "table2=false", "figures=false"]))
    block = df.merge(runs[["run_dir", "variant", "settings"]], on="run_dir")
    info = block.iloc[0][FIGURE_BLOCK].to_dict()
    with plt.rc_context(FIGURE_STYLE):
        fig = block_figure(plt, block, rows, info, 0.95)
    try:
        assert tuple(fig.get_size_inches()) == pytest.approx(FIGURE_SIZE_IN)
        loss_diff_ax, test_diff_ax = fig.axes[2], fig.axes[3]
        # Lines in table order without the baseline: hard_batches 0.5, then 0.2, then random_batches 0.5
        expected = {loss_diff_ax: [-0.01, -0.02, -0.03], test_diff_ax: [1.0, 2.0, 3.0]}
        for ax, differences in expected.items():
            first = ax.lines[0]
            interval = t_interval(differences)
            assert np.allclose(first.get_ydata(), interval.mean)
            band = ax.collections[0].get_paths()[0].vertices[:, 1]
            assert band.min() == pytest.approx(interval.mean - interval.half_width)
            assert band.max() == pytest.approx(interval.mean + interval.half_width)
            assert any(np.allclose(line.get_ydata(), 0.0) and line.get_linestyle() == "--" for line in ax.lines)
            # random_batches is far off: the panel keeps the deltas readable and says what it left out
            low, high = ax.get_ylim()
            assert not low <= ax.lines[2].get_ydata().mean() <= high
            assert [t.get_text() for t in ax.texts] == ["off scale: random_batches δ=0.5"]
        assert "95% t-interval across seeds" in fig.legends[0].get_title().get_text()
        assert [line.get_color() for line in fig.axes[0].lines[:2]] == PALETTE[:2]  # colour-blind safe, δ = 1 black
        assert all(line.get_marker() not in (None, "None", "") for line in fig.axes[0].lines)
        assert fig._suptitle.get_text() == "ResNet-18 on CIFAR-10: authors' protocol, 10 epochs, batch 64, 32 × 32 px"
    finally:
        plt.close(fig)


def test_a_one_interval_run_is_drawn_as_marked_points(tmp_path):
    for seed in (0, 1):
        for delta in (1.0, 0.5):
            write_run(tmp_path / "runs", delta=delta, seed=seed, epochs=1, e=1, losses=[1.0])
    _, df, runs, rows = build(compose([f"runs={tmp_path / 'runs'}", "table2=false", "figures=false"]))
    written = convergence_figures(df, runs, rows, tmp_path / "figures")
    assert written
    import matplotlib.pyplot as plt

    block = df.merge(runs[["run_dir", "variant", "settings"]], on="run_dir")
    with plt.rc_context(FIGURE_STYLE):
        fig = block_figure(plt, block, rows, block.iloc[0][FIGURE_BLOCK].to_dict(), 0.95)
    try:
        for ax in fig.axes:
            drawn = [line for line in ax.lines if line.get_linestyle() != "--"]
            assert drawn and all(len(line.get_xdata()) == 1 and line.get_marker() not in ("None", "") for line in drawn)
    finally:
        plt.close(fig)


@pytest.mark.parametrize("info", [
    {"model": "test_resnet", "dataset": "digits", "fidelity": "paper_code", "epochs": 10, "batch_size": 64, "image_size": 16},
    {"model": "vit_tiny_patch16_224", "dataset": "my_own_flowers_with_a_long_name",
     "fidelity": "paper_code (eval_average=per_sample, eval_batchnorm=eval)", "epochs": 100, "batch_size": 512,
     "image_size": 224}])
def test_the_title_is_in_words_and_fits_the_figure(info):
    import matplotlib.pyplot as plt

    from hardsamples.analysis.plots import figure_title

    with plt.rc_context(FIGURE_STYLE):
        fig = plt.figure(figsize=FIGURE_SIZE_IN)
        title = fig.suptitle(figure_title(info))
        fig.canvas.draw()
        extent = title.get_window_extent()
    try:
        assert 0 <= extent.x0 and extent.x1 <= fig.bbox.width, (extent, fig.bbox.width)
        assert "paper_code" not in title.get_text() and "authors' protocol" in title.get_text()
    finally:
        plt.close(fig)
