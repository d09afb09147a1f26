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
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from hardsamples.analysis import aggregate, columns
from hardsamples.analysis.columns import expanded_settings
from hardsamples.analysis.aggregate import setup_slug
from hardsamples.cells import setup_text
from hardsamples.analysis.consistency import ConsistencyReport, consistency_report
from hardsamples.analysis.loading import SETUP, load_records, load_wandb
from hardsamples.analysis.paper import TABLE_OF_DATASET, Paper, load_paper
from hardsamples.analysis.formatting import format_number
from hardsamples.analysis.inference import MIN_SEEDS
from hardsamples.analysis.latex import PACKAGES, TEXT_WIDTH_PT, latex

DEFAULT_OUT = "results/tables"


@dataclass
class Section:
    key: str  # file stem of its CSV
    title: str
    display: pd.DataFrame  # strings, for Markdown and LaTeX
    data: pd.DataFrame | None = None  # numbers, for the CSV
    notes: list[str] = field(default_factory=list)


def seeds_note(table: pd.DataFrame) -> list[str]:
    notes = []
    if ((table["n_seeds"] > 1) & (table["n_seeds"] < MIN_SEEDS)).any():
        notes.append(f"⚠n=2: an interval from 2 seeds is the spread × t(0.975, 1) = 12.71 / √2; from fewer than"
                     f" {MIN_SEEDS} seeds an interval says little.")
    if table["fidelity"].astype(str).str.startswith("paper_code").any():
        notes.append("paper_code: the batches and their order are fixed (the authors' loader), so seeds vary only"
                     " the initial weights; the seed interval leaves out data-order variance and understates"
                     " run-to-run variance.")
    return notes


# ---------------------------------------------------------------------------------- sections

def delta_sections(table: pd.DataFrame, rule_text: str) -> list[Section]:
    """Tables 3-5 (and the same for any other dataset): one per dataset and setup, each followed by
    its paired comparisons with delta = 1.0."""
    sections = []
    for (dataset, *setup), part in sorted(table.groupby(["dataset", *SETUP]),
                                             key=lambda kv: (TABLE_OF_DATASET.get(kv[0][0], 99), kv[0])):
        table_number = TABLE_OF_DATASET.get(dataset)
        info = dict(zip(SETUP, setup))
        key = f"table{table_number}_{dataset}" if table_number else f"delta_{dataset}"
        if table.loc[table["dataset"] == dataset, SETUP].drop_duplicates().shape[0] > 1:
            key += f"_{setup_slug(info)}"
        name = f"Table {table_number}: {dataset}" if table_number else f"Per-delta table: {dataset} (not in the paper)"
        batch_kind = ", ".join(sorted(set(part["batch_evaluation"].dropna()) - {""})) or "none recorded"
        notes = ["Top-1 in %: mean ± 95% Student-t interval over seeds (n − 1 df), cut to [0, 100] where it"
                 " runs past (then printed as [low, high]). ±batch: the paper's kind (mean ± t-interval over the"
                 " per-batch top-1 of one run's final model, n = batches), averaged over seeds; batches used:"
                 f" {batch_kind}.",
                 f"e: the interval t = updates / N at which the train loss converges, rule {rule_text}; mean over"
                 " the seeds that converged; censored seeds (stuck, too noisy, still falling, never met, not confirmed) are counted, never"
                 " averaged.",
                 "Δtest: test top-1 of δ minus δ = 1.0 of the same seed (pp), mean [95% t-interval]. Δe % = (e₁ / e_δ"
                 " − 1) × 100, a speed ratio: geometric mean of the per-seed e₁ / e_δ over seeds where both"
                 " converged, [95% t-interval on log(e₁ / e_δ)]. 'Fewer epochs' (1 − e_δ / e₁) in the paired table."]
        notes += seeds_note(part)
        if table_number:
            notes.append("Paper: its printed values (one run; its ± is the batch kind); diff = ours − paper.")
        sections.append(Section(key, f"{name} — setup {setup_text(info)}", columns.DELTA.render(part),
                                part[[c for c in columns.DELTA.csv if c in part]].reset_index(drop=True), notes=notes))
        compared = part[part["pairs"].fillna(0) > 0] if "pairs" in part else part.iloc[:0]
        if len(compared):
            sections.append(paired_section(compared, f"{key}_paired", f"{name} — paired with δ = 1.0 by seed"))
    return sections


def paired_section(part: pd.DataFrame, key: str, title: str) -> Section:
    """Every difference to delta = 1.0 of one table, paired by seed, with its test and Holm correction."""
    notes = ["Pairs: seeds run at both δ and δ = 1.0 (same seed: same initial weights, same first epoch)."
             " Δtest: mean paired difference, 95% t-interval; bootstrap: scipy.stats.bootstrap BCa on the paired"
             " differences (from 5 pairs); p: paired t-test; p Holm: Holm's correction (statsmodels) over every"
             " cell of this table; d_z = mean / sd of the differences; seeds for 1 pp: pairs a paired t-test needs"
             " to detect 1 pp with power 0.8 at this spread (statsmodels).",
             "Δe % = (e₁ / e_δ − 1) × 100 over pairs where both converged (t-interval on log(e₁ / e_δ));"
             " fewer epochs % = (1 − e_δ / e₁) × 100 of the same ratio. Censored pairs are counted, and enter"
             " earlier/later/tie/unknown where the order is known (a converged run is earlier than a censored"
             " one); p there: sign test (scipy binomtest) on earlier vs later.",
             "To δ=1's target: epoch-equivalents for δ to reach the same seed's δ = 1.0 best train loss / best"
             " test top-1 (running median of 3), mean over the seeds that reached it, vs δ = 1.0's own epochs to it;"
             " ×: geometric-mean speed-up t₁ / t_δ. 'never': censored in every seed."]
    return Section(key, title, columns.PAIRED.render(part), notes=notes + seeds_note(part))


def table6_section(t6: pd.DataFrame) -> Section:
    better = t6["gain_pp"].dropna()
    expected = (t6.loc[better.index, "null_p_best_wins"]).sum()
    notes = ["change % = (best − base) / best × 100, from the mean test top-1 over seeds of each δ.",
             "Picking the best of k δ on the test set favours δ < 1 by itself. 'No effect' is what that selection gives"
             " when every δ has the same distribution: best of k means minus the δ = 1.0 mean, each mean with standard"
             " error σ / √S (σ: run-to-run sd of test top-1 with each seed's shared part removed, two-way δ × seed"
             " residual over the S seeds run at every δ). With k = 3 the best beats δ = 1.0 in 3 of 4 cases by 0.85"
             " standard errors on average; 'P(gain this large | no effect)' is the selection-adjusted p-value"
             " (simulated, 200,000 seeded draws).",
             f"Best δ better than δ = 1.0 here: {int((better > 0).sum())} of {len(better)}; expected with no effect:"
             f" {format_number(expected)}. The paper: 8 of 15, where no effect gives 11.25 (15 × 3/4)."]
    return Section("table6", "Table 6: best test top-1 over δ < 1 against δ = 1.0, beside selection alone",
                   columns.TABLE6.render(t6), t6, notes=notes)


def table1_section(t1: pd.DataFrame) -> Section:
    timings = set(t1["timing"].dropna()) - {""}
    notes = ["× δ = 1.0: geometric mean over seeds of (s / update of δ) / (s / update of δ = 1.0, same seed), 95%"
             " t-interval on the log ratio. `make bench` is the reference for the cost of one update (the update loop"
             " alone, interleaved in one process). The paper timed ResNet-18 on CIFAR-10 at 128 px."]
    if "train_seconds" in timings:
        notes.append("train seconds: median over intervals of train_seconds / updates in the interval (the updates"
                     " alone: no evaluation, checkpoint, W&B or start-up), the first interval left out as warm-up.")
    if "wall clock" in timings:
        notes.append("wall clock (records without train_seconds): the run's cumulative seconds over its updates,"
                     " which include evaluation, checkpoints, process and W&B start-up; in a sweep δ = 1.0 runs first"
                     " and pays the warm-up, so its ratios are an ordering artefact as much as a cost.")
    return Section("table1", "Table 1: seconds per update", columns.TABLE1.render(t1), t1,
                   notes=notes + seeds_note(t1))


def table2_section(t2: pd.DataFrame) -> Section:
    return Section("table2", "Table 2: parameters and FLOPs", columns.TABLE2.render(t2), t2,
                   notes=["Computed with timm's model at the image size, classes and channels of the runs;"
                          " FLOPs = 2 × multiply-adds of one forward pass of one image (torch FlopCounterMode)."
                          " The paper's values stand beside the rows it counted: 10 classes, 3 channels, 128 px."])


def methods_section(methods: pd.DataFrame) -> Section:
    return Section("methods", "Methods: each against standard (δ = 1.0, same dataset, model, setup and seeds)",
                   columns.METHODS.render(methods), methods,
                   notes=["Every difference is paired by seed: mean [95% t-interval]; p Holm: paired t-test, Holm's"
                          " correction over the rows of this table. Δe % = (e_standard / e_method − 1) × 100 over seeds"
                          " where both converged; censored pairs counted (see the Tables 3-5 notes)."]
                   + seeds_note(methods))


def sensitivity_sections(sensitivity: pd.DataFrame, summary: pd.DataFrame, rules: dict, chosen: str,
                         guards: dict | None = None) -> list[Section]:
    rule_lines = [f"{name}: {describe_rule(rule, guards)}" + (" (the default here)" if name == chosen else "")
                  for name, rule in rules.items()]
    guard_text = ", ".join(f"{k}={v}" for k, v in (guards or {}).items())
    return [Section("sensitivity", "Sensitivity: e and Δe % under each convergence rule",
                    columns.sensitivity(rules).render(sensitivity), sensitivity,
                    notes=["Rules: " + "; ".join(rule_lines) + f". Every rule after the same guards ({guard_text}):"
                           " stuck, still-falling and unconfirmed runs are censored."]),
            Section("sensitivity_summary", "Sensitivity summary: the sign of Δe for δ < 1 under each rule",
                    columns.SENSITIVITY_SUMMARY.render(summary), columns.SENSITIVITY_SUMMARY.headed(summary),
                    notes=["Signs and intervals count only cells whose every pair converged; cells with a censored"
                           " pair are counted apart."])]


def consistency_sections(report: ConsistencyReport) -> list[Section]:
    delta_e = columns.CONSISTENCY_DELTA_E.render(report.delta_e[report.delta_e["status"] != "consistent"])
    table6 = columns.CONSISTENCY_TABLE6.render(report.table6[report.table6["status"] != "consistent"])
    n_bad = (report.delta_e["status"] == "disagrees").sum()
    n_bad6 = (report.table6["status"] == "disagrees").sum()
    return [
        Section("consistency_delta_e", f"Paper consistency: {n_bad} of {report.delta_e['printed'].notna().sum()}"
                " printed Δe values do not follow from the paper's own e", delta_e, report.delta_e,
                notes=["Accepted within one unit of the printed last decimal (the paper truncates in places)."]),
        Section("consistency_table6", f"Paper consistency: {n_bad6} of {len(report.table6)} Table 6 changes do not"
                " follow from Tables 3-5", table6, report.table6,
                notes=["Recomputed as (best − base) / best × 100; the range allows the ±0.05 rounding of Tables 3-5."]),
        Section("consistency_repeats", "Paper consistency: numbers repeated between tables", report.repeats, report.repeats),
        Section("consistency_gaps", "Paper consistency: empty cells", report.gaps, report.gaps),
        Section("consistency_text", f"Paper consistency: {(report.text['status'] == 'disagrees').sum()} of"
                f" {len(report.text)} claims of the text disagree with its tables", report.text, report.text,
                notes=["Each claim recomputed from the printed Tables 3-6 (where: the paper's section). Δe as printed"
                       " is a speed ratio, (e₁ − e_δ) / e_δ; 'fewer epochs' or 'decrease in time' is (e₁ − e_δ) / e₁."]),
    ]


def status_sections(runs: pd.DataFrame, rules: dict) -> list[Section]:
    counts = runs["status"].fillna("unreadable").value_counts()
    left_out = runs[~runs["included"]]
    title = (f"Runs: {len(runs)} loaded ({', '.join(f'{n} {s}' for s, n in counts.items())}); "
             f"{int(runs['included'].sum())} enter the means")
    notes = (["The runs in this table are counted in the tables' 'not in means' column and never averaged in."]
             if len(left_out) else ["Every run finished and enters the means."])
    per_rule = [columns.rule_key(plain, rule) for rule in rules for plain in ("e", "converged")]
    csv = [c for c in (*columns.RUNS.csv, *per_rule) if c in runs]
    return [Section("runs", title, columns.RUNS.render(left_out), runs[csv], notes=notes)]


def describe_rule(rule: dict, guards: dict | None = None) -> str:
    """The rule's kind and parameters, and any guard it sets apart from the shared ones (a noise band)."""
    from hardsamples.analysis.convergence import GUARDS

    own = {k: v for k, v in rule.items() if k != "kind" and (k not in GUARDS or (guards and v != guards.get(k)))}
    return rule["kind"] + " (" + ", ".join(f"{k}={v}" for k, v in own.items()) + ")"


# ---------------------------------------------------------------------------------- output

def markdown(section: Section) -> str:
    body = section.display.to_markdown(index=False, disable_numparse=True) if len(section.display) else "(none)"
    notes = "".join(f"\n{note}" for note in section.notes)
    return f"## {section.title}\n\n{body}\n{notes}\n"


def write_outputs(sections: list[Section], out: Path, header: str, latex_width_pt: float = TEXT_WIDTH_PT) -> str:
    out.mkdir(parents=True, exist_ok=True)
    document = header + "\n" + "\n".join(markdown(s) for s in sections)
    (out / "tables.md").write_text(document)
    packages = ", ".join(f"\\usepackage{{{p}}}" for p in PACKAGES)
    (out / "tables.tex").write_text(f"% Generated by `make tables`; needs {packages}. pdflatex-ready (ASCII only)."
                                    f" Every table fits a text width of {latex_width_pt:g} pt (latex_width_pt):"
                                    " a wider one is split by columns into parts; the CSVs hold every column.\n\n"
                                    + "\n".join(latex(s.key, s.title, s.display, latex_width_pt) for s in sections))
    for section in sections:
        if section.data is not None:
            expanded_settings(section.data).to_csv(out / f"{section.key}.csv", index=False)
    return document


def figures_dir(cfg: DictConfig) -> Path:
    if cfg.figures_dir:
        return Path(cfg.figures_dir)
    return Path("results/figures") if Path(cfg.out) == Path(DEFAULT_OUT) else Path(cfg.out) / "figures"


def load(cfg: DictConfig) -> pd.DataFrame:
    """The runs of a checked config (config_checks.tables): from the records, or from W&B."""
    if cfg.source == "records":
        return load_records(cfg.runs, cfg.confidence)
    return load_wandb(cfg.wandb.entity, cfg.wandb.project, cfg.wandb.group)


def settings_of(cfg: DictConfig) -> dict:
    """The statistics settings and the reach measure's target and smoothing, for aggregate.group_rows."""
    return {**OmegaConf.to_container(cfg.statistics, resolve=True), "reach_target": cfg.convergence.reach_target,
            "smooth": cfg.convergence.guards.smooth}


def rules_of(cfg: DictConfig) -> dict:
    """Each rule with the shared guards (a rule may override one)."""
    guards = OmegaConf.to_container(cfg.convergence.guards, resolve=True)
    return {name: {**guards, **rule} for name, rule in
            OmegaConf.to_container(cfg.convergence.rules, resolve=True).items()}


def build(cfg: DictConfig) -> tuple[list[Section], pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    rules = rules_of(cfg)
    df = load(cfg)
    paper, report = paper_and_report(cfg.paper_dir)
    runs = aggregate.summarise_runs(df, rules)
    rows = aggregate.group_rows(runs, rules, cfg.convergence.rule, cfg.confidence, settings_of(cfg))
    sections = status_sections(runs, rules)
    if cfg.get("plan"):  # a study's plan: its verdicts come first
        from hardsamples.analysis.plan import load_plan
        from hardsamples.analysis.plan_sections import plan_sections

        sections = plan_sections(runs, load_plan(cfg.plan), rules, cfg.convergence.rule, cfg.confidence) + sections
    if len(rows):
        rule_text = f"{cfg.convergence.rule} = {describe_rule(rules[cfg.convergence.rule])}"
        sections += delta_sections(aggregate.delta_table(rows, paper), rule_text)
        sections.append(table6_section(aggregate.table6(rows, paper, runs)))
        sections.append(table1_section(aggregate.table1(rows, paper, runs)))
        if cfg.table2:
            sections.append(table2_section(aggregate.table2(runs, paper)))
        if (~rows["method"].isin(aggregate.DELTA_METHODS)).any():
            sections.append(methods_section(aggregate.methods_table(rows)))
        sensitivity = aggregate.sensitivity_table(rows, rules)
        sections += sensitivity_sections(sensitivity, aggregate.sensitivity_summary(sensitivity, rules), rules,
                                         cfg.convergence.rule, OmegaConf.to_container(cfg.convergence.guards))
    if paper_records_wanted(cfg.paper_consistency, runs):
        sections += consistency_sections(report)
    return sections, df, runs, rows


def paper_records_wanted(setting, runs: pd.DataFrame) -> bool:
    """paper_consistency (conf/tables.yaml): auto reports the paper against itself only beside runs of
    the paper's datasets (CIFAR-10, CIFAR-100, STL-10); true always; false never."""
    if setting == "auto":
        return bool(runs["dataset"].isin(list(TABLE_OF_DATASET)).any())
    return setting


@functools.lru_cache(maxsize=2)
def paper_and_report(paper_dir: str | None) -> tuple[Paper, ConsistencyReport]:
    """The paper's numbers and what they say of themselves: the same for every call (read-only)."""
    paper = load_paper(paper_dir)
    return paper, consistency_report(paper)


def plan_figure(runs: pd.DataFrame, cfg: DictConfig) -> list[Path]:
    """The plan's mechanism check over training (figures/mechanism.png), where its arms were probed."""
    from hardsamples.analysis.mechanism import probed_rounds
    from hardsamples.analysis.plan import arm_runs, load_plan
    from hardsamples.analysis.plots import mechanism_figure

    plan = load_plan(cfg.plan)
    arms = arm_runs(runs, plan)
    labels = [*plan.mechanism.get("arms", []), plan.mechanism.get("random_arm")]
    rounds = {label: probed_rounds(arms[label]) for label in labels if label in arms}
    rounds = {label: tables for label, tables in rounds.items() if tables}
    if not rounds:
        return []
    return mechanism_figure(rounds, float(plan.mechanism["min_lift"]), f"Mechanism check of plan {plan.name}",
                            figures_dir(cfg), cfg.confidence)


def run(cfg: DictConfig) -> int:
    sections, df, runs, rows = build(cfg)
    out = Path(cfg.out)
    source = cfg.runs if cfg.source == "records" else f"W&B {cfg.wandb.entity or ''}/{cfg.wandb.project} group {cfg.wandb.group}"
    header = f"# Tables from {source}\n\nGenerated by `make tables` (python -m hardsamples.tables).\n"
    document = write_outputs(sections, out, header, cfg.latex_width_pt)
    if cfg.print_tables:
        print(document)
    written = []
    if cfg.figures and len(rows):
        from hardsamples.analysis.plots import convergence_figures

        written = convergence_figures(df, runs, rows, figures_dir(cfg), cfg.confidence)
        if cfg.get("plan"):
            written += plan_figure(runs, cfg)
    print(f"wrote {out}/tables.md, tables.tex and {sum(s.data is not None for s in sections)} CSV files"
          + (f"; {len(written)} figure files under {figures_dir(cfg)}" if written else ""))
    return 0
