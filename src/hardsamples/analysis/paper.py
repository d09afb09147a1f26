"""The paper's reported numbers (analysis/reference/: layout.PAPER_NUMBERS_DIR) as DataFrames."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from hardsamples.layout import PAPER_NUMBERS_DIR

# The paper's table number of each dataset (Tables 3-5) and its model order.
TABLE_OF_DATASET = {"cifar10": 3, "cifar100": 4, "stl10": 5}
MODEL_ORDER = ["resnet18", "resnet50", "efficientnet_b4", "efficientnetv2_s", "mobilenetv3_small_100"]


@dataclass
class Paper:
    tables: pd.DataFrame  # Tables 3-5: dataset, model, delta, train/test top-1 and their +/-, e, delta_e_pct
    delta_e_text: pd.Series  # delta_e_pct exactly as printed (its decimals are its precision)
    table6: pd.DataFrame  # dataset, model, test_top1_change_pct
    table1: pd.DataFrame  # model, image_size, delta, seconds_per_iteration
    table2: pd.DataFrame  # model, image_size, params_m, gflops
    networks: dict  # timm name -> the paper's name for it


def load_paper(paper_dir=None) -> Paper:
    paper_dir = Path(paper_dir) if paper_dir else PAPER_NUMBERS_DIR
    text = pd.read_csv(paper_dir / "paper_tables.csv", dtype=str, keep_default_na=False)
    tables = pd.read_csv(paper_dir / "paper_tables.csv").rename(columns={"timm_model": "model"})
    table6 = pd.read_csv(paper_dir / "paper_table6.csv").rename(columns={"timm_model": "model"})
    table12 = pd.read_csv(paper_dir / "paper_table1_2.csv").rename(columns={"timm_model": "model"})
    networks = dict(zip(tables["model"], tables["network"]))
    return Paper(
        tables=tables, delta_e_text=text["delta_e_pct"], table6=table6,
        table1=table12.loc[table12["table"] == 1, ["model", "image_size", "delta", "seconds_per_iteration"]],
        table2=table12.loc[table12["table"] == 2, ["model", "image_size", "params_m", "gflops"]],
        networks=networks)


def model_sort_key(model: str) -> tuple:
    """The paper's model order first, any other model after, by name."""
    return (MODEL_ORDER.index(model), "") if model in MODEL_ORDER else (len(MODEL_ORDER), model)
