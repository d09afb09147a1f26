"""Every config in conf/ composes, resolves and passes the run's checks.

The groups and their options are read from the directory, so a yaml file added later is tested
without editing this file: a new option that does not compose, leaves a `???` unfilled, names a
launcher that cannot be built or sets a value check_settings refuses fails here, before any run
trips over it. The grids (sweeps/, the experiment group) are expanded job by job as Hydra's basic sweeper does.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.plugins import Plugins
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

import hardsamples.sweep  # noqa: F401  registers the resolvers the launcher configs use (${visible_gpus_or:2})
from hardsamples.layout import CONF_DIR, group_choices
from hardsamples.config_checks.settings import check_settings

PRIMARY = ("config", "tables", "bench")  # conf/<name>.yaml: the run's, `make tables`' and `make bench`'s
GROUPS = sorted(p.name for p in CONF_DIR.iterdir() if p.is_dir() and any(p.glob("*.yaml")))
OPTIONS = [(group, option) for group in GROUPS for option in group_choices(group)]
EXPERIMENTS = group_choices("experiment")
# The settings shared by the Fashion-MNIST grids (CPU and GPU): files to inherit from, not grids of their own.
NOT_A_GRID = {"fashion_mnist_setup", "fashion_mnist_memorise_setup", "gpu_resnet18_fmnist_setup"}


def composed_each(overrides: list[list[str]], with_hydra: bool = True) -> list[DictConfig]:
    """conf/config.yaml with each list of overrides; with_hydra keeps hydra.* (the launcher and the run
    mode live there). One Hydra initialisation for them all: it costs as much as a compose."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return [compose(config_name="config", overrides=each, return_hydra_config=with_hydra) for each in overrides]


def composed(overrides: list[str]) -> DictConfig:
    return composed_each([overrides])[0]


def check_run_config(cfg: DictConfig) -> None:
    """What a run reads: every interpolation resolves, no `???` is left, and check_settings passes."""
    run_cfg = OmegaConf.masked_copy(cfg, [key for key in cfg if key != "hydra"])  # hydra.* resolves in Hydra
    OmegaConf.to_container(run_cfg, resolve=True, throw_on_missing=True)
    check_settings(run_cfg)


def check_launcher(cfg: DictConfig) -> None:
    """The launcher and callbacks Hydra would build for a sweep, built the way Hydra builds them (its
    plugin registry: a launcher outside hydra_plugins or one that does not import is refused)."""
    for callback in cfg.hydra.callbacks.values():
        instantiate(callback)
    launcher = Plugins.instance().instantiate_launcher(
        hydra_context=HydraContext(config_loader=None, callbacks=None),  # nothing is launched
        task_function=lambda _: None, config=cfg)
    assert isinstance(launcher, Launcher) and launcher.config is cfg


def grid_jobs(cfg: DictConfig) -> list[list[str]]:
    """The overrides of each job of a grid, in the order Hydra's basic sweeper launches them."""
    params = cfg.hydra.sweeper.params or {}
    parsed = OverridesParser.create().parse_overrides([f"{key}={value}" for key, value in params.items()])
    return [job for batch in BasicSweeper.split_arguments(parsed, max_batch_size=None) for job in batch]


def test_every_yaml_file_is_a_primary_config_or_an_option_of_a_group():
    """The parametrisations below see conf/<name>.yaml and conf/<group>/<option>.yaml: a file anywhere
    else (a nested folder, a new primary config) would go untested, so it fails here instead."""
    seen = {CONF_DIR / f"{name}.yaml" for name in PRIMARY}
    seen |= {CONF_DIR / group / f"{option}.yaml" for group, option in OPTIONS}
    # os.walk with followlinks: conf/experiment is a link to sweeps/, which rglob would not enter.
    found = {Path(folder) / name for folder, _, names in os.walk(CONF_DIR, followlinks=True) for name in names}
    untested = sorted(str(path.relative_to(CONF_DIR)) for path in found - seen if path.suffix == ".yaml")
    assert not untested, f"conf/ files no test composes: {untested}"
    assert all(path.is_file() for path in seen)


def test_the_top_level_conf_and_sweeps_are_what_the_package_reads():
    """In a checkout the package reads conf/ and sweeps/ through links: a link replaced by a copy
    would let the two drift apart, so the resolved paths must be the top-level folders."""
    root = Path(__file__).resolve().parents[1]
    if not (root / "sweeps").is_dir():
        pytest.skip("an installed package: its wheel carries the configs as files")
    assert CONF_DIR.resolve() == root / "conf"
    assert (CONF_DIR / "experiment").resolve() == root / "sweeps"
    assert EXPERIMENTS == sorted(p.stem for p in (root / "sweeps").glob("*.yaml"))


def test_the_groups_found_include_every_group_of_the_run_config():
    expected = {"dataset", "model", "method", "fidelity", "logger", "preset", "launcher", "experiment"}
    assert expected <= set(GROUPS)
    assert all(group_choices(group) for group in GROUPS)


# The options that name the user's own data need that name (mandatory ??? in their yaml).
USERS_OWN = {("dataset", "image_folder"): ["dataset.root=/data/my_images"],
             ("dataset", "custom"): ["dataset.data._target_=my_module.make_data"]}


@pytest.mark.parametrize("group,option", OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_option_of_every_group_composes_and_passes_the_run_checks(group, option):
    cfg = composed([f"{group}={option}", *USERS_OWN.get((group, option), [])])
    assert cfg.hydra.runtime.choices[group] == option
    check_run_config(cfg)
    check_launcher(cfg)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_job_of_every_experiment_composes_and_passes_the_run_checks(name):
    jobs = grid_jobs(composed([f"experiment={name}"]))
    assert jobs
    for cfg in composed_each([[f"experiment={name}", *job] for job in jobs], with_hydra=False):
        check_run_config(cfg)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_grid_runs_as_a_sweep_without_dash_m(name):
    """`make sweep SWEEP=<name>` passes no -m: a grid that forgot `hydra.mode: MULTIRUN` would train
    only its first point, as a single run, and report success."""
    cfg = composed([f"experiment={name}"])
    if name in NOT_A_GRID:
        assert cfg.hydra.mode != RunMode.MULTIRUN and not cfg.hydra.sweeper.params
    else:
        assert cfg.hydra.mode == RunMode.MULTIRUN and cfg.hydra.sweeper.params
    check_launcher(cfg)


@pytest.mark.parametrize("name", ["fashion_mnist_memorise", "fashion_mnist_memorise_controls", "gpu_resnet18_fmnist",
                                  "gpu_resnet18_fmnist_controls", "gpu_resnet18_fmnist_128"])
def test_the_studies_record_what_their_mechanism_check_reads(name):
    """A study in the paper's regime must show its chosen batches were harder than random ones
    (analysis/mechanism.py reads round_losses.csv): without the probe its hardness comparisons stand
    untested."""
    assert composed([f"experiment={name}"]).record.round_losses is True


def test_the_tables_config_composes_with_its_rules_and_statistics():
    from hardsamples.analysis.report import rules_of, settings_of
    from hardsamples.tables import compose as compose_tables

    cfg = compose_tables([])
    OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    assert cfg.convergence.rule in rules_of(cfg)
    assert settings_of(cfg)


@pytest.mark.parametrize("profile", list(OmegaConf.load(CONF_DIR / "bench.yaml").profiles))
def test_every_bench_profile_loads(profile):
    from hardsamples.bench.speed import settings as load_settings

    settings = load_settings([f"profile={profile}"])
    OmegaConf.to_container(settings, resolve=True, throw_on_missing=True)
    assert settings.profile == profile and settings.models
