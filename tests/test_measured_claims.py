"""The performance claim at the top of loop.py is the committed benchmark's, not a number typed once
and left behind: re-running `make bench` and committing its CSV without updating the claim fails here."""

from __future__ import annotations

import re

import hardsamples.loop
import pandas as pd
from conftest import ROOT

BENCH_CSV = ROOT / "results" / "bench" / "amd-epyc-2-cores.csv"


def claimed_range(text: str, before: str) -> tuple[float, float]:
    """The 'a-bx' range printed right after `before` in the text (whitespace-insensitive)."""
    flat = " ".join(text.split())
    match = re.search(re.escape(before) + r" (\d+\.\d+)-(\d+\.\d+)x", flat)
    assert match, f"loop.py no longer states '{before} a-bx'"
    return float(match[1]), float(match[2])


def measured_range(part: int) -> tuple[float, float]:
    bench = pd.read_csv(BENCH_CSV)
    values = bench.loc[bench["part"].astype(str) == str(part), "value"].astype(float)
    assert len(values) == 5, f"part {part}: one ratio per paper model"
    return round(values.min(), 2), round(values.max(), 2)


def test_loop_docstring_states_the_benchmarks_ratios():
    doc = hardsamples.loop.__doc__
    assert claimed_range(doc, "an update costs") == measured_range(1)  # delta 0.2 / delta 1.0
    assert claimed_range(doc, "an update in this loop costs") == measured_range(2)  # loop / bare step
