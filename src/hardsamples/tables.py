"""`make tables`: the paper's Tables 1-6 and Figures 1, 3, 5 from run records, the paper beside.

    python -m hardsamples.tables                                  # results/runs -> results/tables
    python -m hardsamples.tables runs=results/runs/demo out=results/demo
    python -m hardsamples.tables convergence.rule=plateau         # another rule for e
    python -m hardsamples.tables source=wandb wandb.entity=me wandb.group=table3

Options are Hydra overrides of conf/tables.yaml (composed with Hydra's compose API: no outputs/
directory, no logging set-up). Writes tables.md (also printed), tables.tex, one CSV per table and the
figures; see conf/tables.yaml for where.
"""

from __future__ import annotations

import functools
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from hardsamples import aggregate
from hardsamples.aggregate import protocol_slug, protocol_text
from hardsamples.consistency import ConsistencyReport, consistency_report
from hardsamples.errors import ConfigError
from hardsamples.loading import PROTOCOL, load_records, load_wandb
from hardsamples.paper import TABLE_OF_DATASET, Paper, load_paper
from hardsamples.statistics import Interval

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
DEFAULT_OUT = "results/tables"
# Columns of the Tables 3-5 CSV, in this order (the paper's after ours).
DELTA_CSV = ["dataset", "model", "network", "delta", "method", "variant", *PROTOCOL, "n_seeds", "n_runs", "not_in_means",
             "train_top1_mean", "train_top1_ci95", "train_top1_batch_ci95", "test_top1_mean", "test_top1_ci95",
             "test_top1_batch_ci95", "e_mean", "e_ci95", "e_censored", "delta_e_pct", "paper_train_top1",
             "paper_train_ci95", "paper_test_top1", "paper_test_ci95", "paper_e", "paper_delta_e_pct",
             "train_top1_minus_paper", "test_top1_minus_paper", "e_minus_paper", "delta_e_pct_minus_paper"]


@dataclass
class Section:
    key: str  # file stem of its CSV
    title: str
    display: pd.DataFrame  # strings, for Markdown and LaTeX
    data: pd.DataFrame | None = None  # numbers, for the CSV
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------- formatting

def number(value, digits: int = 2, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    value = round(value, digits) + 0.0  # no "-0.00"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def with_ci(mean, ci, n, digits: int = 2) -> str:
    """'mean ± half-width'; with one seed it says so instead of printing an interval."""
    return Interval(mean, ci, int(n)).text(digits)


def method_labels(table: pd.DataFrame) -> list[str]:
    return [m + (f" ({v})" if v else "") for m, v in zip(table["method"], table["variant"])]


def paper_cell(mean, ci) -> str:
    return "" if pd.isna(mean) else (f"{mean:.1f}" if pd.isna(ci) else f"{mean:.1f} ± {ci:.1f}")


def e_cell(row) -> str:
    text = with_ci(row["e_mean"], row["e_ci95"], row["n_seeds"], 1)
    return text + (f" ({int(row['e_censored'])} censored)" if row.get("e_censored", 0) > 0 else "")


# ---------------------------------------------------------------------------------- sections

def delta_sections(table: pd.DataFrame, rule_text: str) -> list[Section]:
    """Tables 3-5 (and the same for any other dataset): one per dataset and protocol."""
    sections = []
    for (dataset, *protocol), part in sorted(table.groupby(["dataset", *PROTOCOL]),
                                             key=lambda kv: (TABLE_OF_DATASET.get(kv[0][0], 99), kv[0])):
        number_ = TABLE_OF_DATASET.get(dataset)
        info = dict(zip(PROTOCOL, protocol))
        key = f"table{number_}_{dataset}" if number_ else f"delta_{dataset}"
        if table.loc[table["dataset"] == dataset, PROTOCOL].drop_duplicates().shape[0] > 1:
            key += f"_{protocol_slug(info)}"
        name = f"Table {number_}: {dataset}" if number_ else f"Per-delta table: {dataset} (not in the paper)"
        sections.append(Section(
            key, f"{name} — protocol {protocol_text(info)}", delta_display(part, with_paper=bool(number_)),
            part[[c for c in DELTA_CSV if c in part]].reset_index(drop=True),
            notes=["Top-1 in %: mean ± 95% Student-t interval over seeds (n − 1 df); ±batch: the paper's kind of"
                   " interval (t over the per-batch top-1 of one run's final model), averaged over seeds.",
                   f"e: the interval t = updates / N at which the train loss converges, rule {rule_text};"
                   " 'censored': seeds whose loss never met the rule (e = E, a lower bound).",
                   "Δe % = (e₁ − e_δ) / e_δ × 100 from the mean e of δ and of δ = 1.0 (positive: converges earlier)."
                   + (" Paper: its printed values; diff = ours − paper." if number_ else "")]))
    return sections


def delta_display(part: pd.DataFrame, with_paper: bool) -> pd.DataFrame:
    """Ours, then (for the paper's datasets) the paper's value and ours minus the paper's, per quantity."""
    def ci_cells(metric):
        return [with_ci(m, c, n) for m, c, n in zip(part[f"{metric}_mean"], part[f"{metric}_ci95"], part["n_seeds"])]

    columns = {"network": part["network"], "δ": part["delta"].map(lambda d: f"{d:g}")}
    if (part["variant"] != "").any():
        columns["method options"] = part["variant"]
    columns["seeds"] = part["n_seeds"].astype(int)
    for split in ("train", "test"):
        columns[f"{split} top-1"] = ci_cells(f"{split}_top1")
        columns[f"{split} ±batch"] = part[f"{split}_top1_batch_ci95"].map(number)
        if with_paper:
            columns[f"paper {split}"] = [paper_cell(m, c) for m, c in
                                         zip(part[f"paper_{split}_top1"], part[f"paper_{split}_ci95"])]
            columns[f"diff {split}"] = part[f"{split}_top1_minus_paper"].map(lambda v: number(v, 1, True))
    columns["e"] = [e_cell(r) for _, r in part.iterrows()]
    if with_paper:
        columns["paper e"] = part["paper_e"].map(lambda v: number(v, 0))
        columns["diff e"] = part["e_minus_paper"].map(lambda v: number(v, 1, True))
    columns["Δe %"] = part["delta_e_pct"].map(number)
    if with_paper:
        columns["paper Δe %"] = part["paper_delta_e_pct"].map(number)
        columns["diff Δe"] = part["delta_e_pct_minus_paper"].map(lambda v: number(v, 2, True))
    columns["not in means"] = part["not_in_means"].fillna("")
    return pd.DataFrame(columns).reset_index(drop=True)


def table6_section(t6: pd.DataFrame) -> Section:
    display = pd.DataFrame({
        "dataset": t6["dataset"], "network": t6["network"], "protocol": [protocol_text(r) for _, r in t6.iterrows()],
        "δ = 1.0 test top-1": t6["base_test_top1"].map(number), "best δ < 1": t6["best_delta"].map(lambda d: number(d, 1)),
        "its test top-1": t6["best_test_top1"].map(number), "change %": t6["change_pct"].map(number),
        "paper change %": t6["paper_change_pct"].map(number), "diff": t6["change_minus_paper"].map(lambda v: number(v, 2, True))})
    return Section("table6", "Table 6: best test top-1 over δ < 1 against δ = 1.0", display, t6,
                   notes=["change % = (best − base) / best × 100, from the mean test top-1 over seeds of each δ."])


def table1_section(t1: pd.DataFrame) -> Section:
    display = pd.DataFrame({
        "dataset": t1["dataset"], "model": t1["model"], "protocol": [protocol_text(r) for _, r in t1.iterrows()],
        "method": method_labels(t1),
        "δ": t1["delta"].map(lambda d: f"{d:g}"), "seeds": t1["n_seeds"].astype(int),
        "s / update": [with_ci(m, c, n, 4) for m, c, n in zip(t1["seconds_per_update_mean"], t1["seconds_per_update_ci95"], t1["n_seeds"])],
        "× δ = 1.0": t1["ratio_to_delta_1"].map(number), "paper s / update": t1["paper_seconds_per_update"].map(lambda v: number(v, 4)),
        "paper ×": t1["paper_ratio_to_delta_1"].map(number)})
    return Section("table1", "Table 1: seconds per update", display, t1,
                   notes=["Wall clock of the whole run (evaluation and checkpoints included) over its N × E updates,"
                          " from metrics.csv; `make bench` times the update loop alone. The paper timed ResNet-18 on"
                          " CIFAR-10 at 128 px."])


def table2_section(t2: pd.DataFrame) -> Section:
    display = pd.DataFrame({
        "model": t2["model"], "image size": t2["image_size"].astype(int), "classes": t2["num_classes"].astype(int),
        "channels": t2["channels"].astype(int), "params (M)": t2["params_m"].map(number),
        "paper params (M)": t2["paper_params_m"].map(number), "GFLOPs": t2["gflops"].map(lambda v: number(v, 3)),
        "paper GFLOPs": t2["paper_gflops"].map(number), "diff params": t2["params_m_minus_paper"].map(lambda v: number(v, 2, True)),
        "diff GFLOPs": t2["gflops_minus_paper"].map(lambda v: number(v, 3, True))})
    return Section("table2", "Table 2: parameters and FLOPs", display, t2,
                   notes=["Computed with timm's model at the image size, classes and channels of the runs;"
                          " FLOPs = 2 × multiply-adds of one forward pass of one image (torch FlopCounterMode)."
                          " The paper's values stand beside the rows it counted: 10 classes, 3 channels, 128 px."])


def methods_section(methods: pd.DataFrame) -> Section:
    display = pd.DataFrame({
        "dataset": methods["dataset"], "model": methods["model"],
        "protocol": [protocol_text(r) for _, r in methods.iterrows()],
        "method": method_labels(methods),
        "δ": methods["delta"].map(lambda d: f"{d:g}"), "seeds": methods["n_seeds"].astype(int),
        "test top-1": [with_ci(m, c, n) for m, c, n in zip(methods["test_top1_mean"], methods["test_top1_ci95"], methods["n_seeds"])],
        "vs standard (pp)": methods["test_top1_vs_standard"].map(lambda v: number(v, 2, True)),
        "e": [e_cell(r) for _, r in methods.iterrows()], "Δe % vs standard": methods["delta_e_pct"].map(number),
        "not in means": methods["not_in_means"].fillna("")})
    return Section("methods", "Methods: each against standard (δ = 1.0, same dataset, model and protocol)", display, methods,
                   notes=["Mean ± 95% t-interval over seeds; Δe % = (e_standard − e_method) / e_method × 100."])


def sensitivity_sections(sensitivity: pd.DataFrame, summary: pd.DataFrame, rules: dict, chosen: str) -> list[Section]:
    display = pd.DataFrame({"dataset": sensitivity["dataset"], "model": sensitivity["model"],
                            "protocol": [protocol_text(r) for _, r in sensitivity.iterrows()],
                            "method": method_labels(sensitivity),
                            "δ": sensitivity["delta"].map(lambda d: f"{d:g}"), "seeds": sensitivity["n_seeds"].astype(int)})
    for name in rules:
        censored = sensitivity[f"e_{name}_censored"]
        display[f"{name}: e"] = [number(e, 1) + (f" ({int(c)} cens.)" if c > 0 else "")
                                 for e, c in zip(sensitivity[f"e_{name}_mean"], censored)]
        display[f"{name}: Δe %"] = sensitivity[f"delta_e_{name}_pct"].map(number)
    rule_lines = [f"{name}: {describe_rule(rule)}" + (" (the default here)" if name == chosen else "")
                  for name, rule in rules.items()]
    summary_display = summary.assign(**{"mean delta-e %": summary["mean delta-e %"].map(number)})
    return [Section("sensitivity", "Sensitivity: e and Δe % under each convergence rule", display, sensitivity,
                    notes=["Rules: " + "; ".join(rule_lines) + "."]),
            Section("sensitivity_summary", "Sensitivity summary: the sign of Δe for δ < 1 under each rule",
                    summary_display, summary)]


def consistency_sections(report: ConsistencyReport) -> list[Section]:
    d = report.delta_e[report.delta_e["status"] != "consistent"]
    delta_e = pd.DataFrame({"table": d["table"], "dataset": d["dataset"], "network": d["network"],
                            "δ": d["delta"].map(lambda v: f"{v:g}"), "e₁": d["e_1"].map(lambda v: number(v, 0)),
                            "e_δ": d["e_delta"].map(lambda v: number(v, 0)), "printed Δe %": d["printed"].map(number),
                            "(e₁ − e_δ)/e_δ × 100": d["recomputed"].map(number), "status": d["status"],
                            "what would fit": d["hint"].fillna("")})
    t = report.table6[report.table6["status"] != "consistent"]
    table6 = pd.DataFrame({"dataset": t["dataset"], "network": t["network"], "printed %": t["printed"].map(number),
                           "recomputed %": t["recomputed"].map(number),
                           "allowed by rounding": [f"[{number(lo)}, {number(hi)}]" if pd.notna(lo) else ""
                                                   for lo, hi in zip(t["allowed_low"], t["allowed_high"])],
                           "status": t["status"]})
    n_bad = (report.delta_e["status"] == "disagrees").sum()
    n_bad6 = (report.table6["status"] == "disagrees").sum()
    return [
        Section("consistency_delta_e", f"Paper consistency: {n_bad} of {report.delta_e['printed'].notna().sum()}"
                " printed Δe values do not follow from the paper's own e", delta_e.reset_index(drop=True), report.delta_e,
                notes=["Accepted within one unit of the printed last decimal (the paper truncates in places)."]),
        Section("consistency_table6", f"Paper consistency: {n_bad6} of {len(report.table6)} Table 6 changes do not"
                " follow from Tables 3-5", table6.reset_index(drop=True), report.table6,
                notes=["Recomputed as (best − base) / best × 100; the range allows the ±0.05 rounding of Tables 3-5."]),
        Section("consistency_repeats", "Paper consistency: numbers repeated between tables", report.repeats, report.repeats),
        Section("consistency_gaps", "Paper consistency: empty cells", report.gaps, report.gaps),
        Section("consistency_text", "Paper consistency: the text's claims on Table 6", report.text, report.text),
    ]


def status_sections(runs: pd.DataFrame, warnings: list[str]) -> list[Section]:
    counts = runs["status"].fillna("unreadable").value_counts()
    left_out = runs[~runs["included"]]
    display = pd.DataFrame({
        "dataset": left_out["dataset"], "model": left_out["model"], "method": left_out["method"],
        "δ": left_out["delta"].map(lambda d: "" if pd.isna(d) else f"{d:g}"), "seed": left_out["seed"],
        "fidelity": left_out["fidelity"], "status": left_out["note"],
        "intervals": [f"{i}/{'' if pd.isna(e) else int(e)}" for i, e in zip(left_out["intervals"], left_out["epochs"])],
        "error": left_out["error"].fillna(""), "run": left_out["run_dir"]})
    title = (f"Runs: {len(runs)} loaded ({', '.join(f'{n} {s}' for s, n in counts.items())}); "
             f"{int(runs['included'].sum())} enter the means")
    notes = (["The runs in this table are counted in the tables' 'not in means' column and never averaged in."]
             if len(left_out) else ["Every run finished and enters the means."])
    notes += [f"Warning: {w}" for w in warnings]
    columns = ["run_dir", "dataset", "model", "method", "delta", "seed", *PROTOCOL, "status", "included", "note",
               "intervals", "train_top1", "test_top1", "seconds_per_update", "error"]
    return [Section("runs", title, display.reset_index(drop=True), runs[[c for c in columns if c in runs] +
                    [c for c in runs if c.startswith(("e_", "converged_"))]], notes=notes)]


def describe_rule(rule: dict) -> str:
    return rule["kind"] + " (" + ", ".join(f"{k}={v}" for k, v in rule.items() if k != "kind") + ")"


# ---------------------------------------------------------------------------------- output

def markdown(section: Section) -> str:
    body = section.display.to_markdown(index=False, disable_numparse=True) if len(section.display) else "(none)"
    notes = "".join(f"\n{note}" for note in section.notes)
    return f"## {section.title}\n\n{body}\n{notes}\n"


def latex(section: Section) -> str:
    if not len(section.display):
        return ""
    text = section.display.to_latex(index=False, escape=True, caption=section.title.replace("_", r"\_").replace("%", r"\%"),
                                    label=f"tab:{section.key}")
    for plain, tex in (("±", r"$\pm$"), ("δ", r"$\delta$"), ("Δ", r"$\Delta$"), ("×", r"$\times$"), ("−", "-"),
                       ("₁", r"$_1$")):
        text = text.replace(plain, tex)
    return text


def write_outputs(sections: list[Section], out: Path, header: str) -> str:
    out.mkdir(parents=True, exist_ok=True)
    document = header + "\n" + "\n".join(markdown(s) for s in sections)
    (out / "tables.md").write_text(document)
    (out / "tables.tex").write_text("% Generated by `make tables`; needs \\usepackage{booktabs}.\n\n"
                                    + "\n".join(latex(s) for s in sections))
    for section in sections:
        if section.data is not None:
            section.data.to_csv(out / f"{section.key}.csv", index=False)
    return document


def figures_dir(cfg: DictConfig) -> Path:
    if cfg.figures_dir:
        return Path(cfg.figures_dir)
    return Path("results/figures") if Path(cfg.out) == Path(DEFAULT_OUT) else Path(cfg.out) / "figures"


def load(cfg: DictConfig) -> pd.DataFrame:
    if cfg.source == "records":
        if not cfg.runs:
            raise ConfigError("runs= is empty: expected a directory of run records, e.g. RUNS=results/runs")
        return load_records(cfg.runs, cfg.confidence)
    if cfg.source == "wandb":
        return load_wandb(cfg.wandb.entity, cfg.wandb.project, cfg.wandb.group)
    raise ConfigError(f"source={cfg.source} is unknown: use records (the run records) or wandb (the W&B mirror)")


def rules_of(cfg: DictConfig) -> dict:
    rules = OmegaConf.to_container(cfg.convergence.rules, resolve=True)
    if cfg.convergence.rule not in rules:
        raise ConfigError(f"convergence.rule={cfg.convergence.rule} is not one of convergence.rules:"
                          f" {', '.join(rules)} (conf/tables.yaml)")
    return rules


def build(cfg: DictConfig) -> tuple[list[Section], pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    rules = rules_of(cfg)
    df = load(cfg)
    paper, report = paper_and_report(cfg.paper_dir)
    runs = aggregate.summarise_runs(df, rules)
    rows = aggregate.group_rows(runs, rules, cfg.convergence.rule, cfg.confidence)
    sections = status_sections(runs, aggregate.config_warnings(runs))
    if len(rows):
        rule_text = f"{cfg.convergence.rule} = {describe_rule(rules[cfg.convergence.rule])}"
        sections += delta_sections(aggregate.delta_table(rows, paper), rule_text)
        sections.append(table6_section(aggregate.table6(rows, paper)))
        sections.append(table1_section(aggregate.table1(rows, paper)))
        if cfg.table2:
            sections.append(table2_section(aggregate.table2(runs, paper)))
        if (~rows["method"].isin(aggregate.DELTA_METHODS)).any():
            sections.append(methods_section(aggregate.methods_table(rows)))
        sensitivity = aggregate.sensitivity_table(rows, rules)
        sections += sensitivity_sections(sensitivity, aggregate.sensitivity_summary(sensitivity, rules), rules,
                                         cfg.convergence.rule)
    sections += consistency_sections(report)
    return sections, df, runs, rows


@functools.lru_cache(maxsize=2)
def paper_and_report(paper_dir: str | None) -> tuple[Paper, ConsistencyReport]:
    """The paper's numbers and what they say of themselves: the same for every call (read-only)."""
    paper = load_paper(paper_dir)
    return paper, consistency_report(paper)


def run(cfg: DictConfig) -> int:
    sections, df, runs, rows = build(cfg)
    out = Path(cfg.out)
    source = cfg.runs if cfg.source == "records" else f"W&B {cfg.wandb.entity or ''}/{cfg.wandb.project} group {cfg.wandb.group}"
    header = f"# Tables from {source}\n\nGenerated by `make tables` (python -m hardsamples.tables).\n"
    document = write_outputs(sections, out, header)
    print(document)
    written = []
    if cfg.figures and len(rows):
        from hardsamples.plots import convergence_figures

        written = convergence_figures(df, runs, rows, figures_dir(cfg), cfg.confidence)
    print(f"wrote {out}/tables.md, tables.tex and {sum(s.data is not None for s in sections)} CSV files"
          + (f"; {len(written)} figure files under {figures_dir(cfg)}" if written else ""))
    return 0


def compose(overrides: list[str]) -> DictConfig:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra_compose(config_name="tables", overrides=overrides)


def main(argv: list[str] | None = None) -> int:
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    argv = sys.argv[1:] if argv is None else argv
    try:
        return run(compose(argv))
    except (HydraException, OmegaConfBaseException) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        print(f"error: {first} (options: conf/tables.yaml)", file=sys.stderr)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
