"""The W&B mirror as researchers use it (issue 14), against the real wandb client, offline.

W&B cannot reach its server here, so runs are logged offline and read back from the run's .wandb
file with wandb's own reader (`wandb leet inspect --json`), or checked on the run object in-process.
W&B reads its environment once per process (its settings singleton), so every test starts and ends
with wandb.teardown() and an environment without WANDB_* variables of the machine's own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

pytest.importorskip("wandb")  # the W&B client is optional at run time (a GPU machine may lack it): skip, not error

from conftest import TINY, compose_config
from hardsamples import wandb_mirror
from hardsamples.analysis.loading import load_records, load_wandb
from hardsamples.record_files import METRIC_WANDB_KEYS, WANDB_SUMMARY_FIELDS
from hardsamples.sweep.naming import SWEPT_ENV
from hardsamples.wandb_mirror import WandbMirror, logged_in, resolve_mode

TINY_OFFLINE = [arg for arg in TINY if not arg.startswith("logger.wandb.mode=")] + ["logger.wandb.mode=offline"]
CELL = "demo/test_resnet/synthetic/standard/d1.0/paper_code/E3_B64_16px"  # hard_batches at delta = 1 is recorded standard
NAME = "test_resnet-synthetic-hard_batches-d1.0-s0"


def without_wandb_env() -> dict:
    return {k: v for k, v in os.environ.items() if not k.startswith("WANDB_") and k != SWEPT_ENV}


@pytest.fixture
def clean_wandb(monkeypatch, tmp_path):
    """No WANDB_* variables, W&B's settings files in tmp_path, no .netrc, and a fresh W&B singleton."""
    import wandb

    for key in list(os.environ):
        if key.startswith("WANDB_") or key == SWEPT_ENV:
            monkeypatch.delenv(key)
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    wandb.teardown()
    yield
    wandb.teardown()


def offline_records(run_dir: Path) -> list[dict]:
    """The records of the run's one offline W&B run, as wandb's own reader prints them."""
    (offline,) = (Path(run_dir) / "wandb").glob("offline-run-*")
    out = subprocess.run([sys.executable, "-m", "wandb", "leet", "inspect", "--json", str(offline)],
                         capture_output=True, text=True, check=True, timeout=120, env=without_wandb_env())
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


def of_type(records: list[dict], kind: str) -> list[dict]:
    return [record[kind] for record in records if record["type"] == kind]


@pytest.fixture(scope="module")
def offline_run(tmp_path_factory):
    """One tiny run of sweep `demo`, hard_batches at delta = 1, logged offline, from the command line
    as a researcher starts it: (run directory, its .wandb records, what the process printed)."""
    cwd = tmp_path_factory.mktemp("offline")
    env = {**without_wandb_env(), "WANDB_CONFIG_DIR": str(cwd / "wandb-config"), "NETRC": str(cwd / "no-netrc"),
           "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "0"}
    result = subprocess.run([sys.executable, "-m", "hardsamples.train", *TINY_OFFLINE, "sweep_name=demo",
                             f"hydra.run.dir={cwd / 'run'}"], cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return cwd / "run", offline_records(cwd / "run"), result.stdout + result.stderr


def test_the_run_is_grouped_by_its_cell_and_named_by_the_method_recorded(offline_run):
    run_dir, records, _ = offline_run
    header = json.loads((run_dir / "run.json").read_text())
    (run,) = of_type(records, "run")
    assert run["run_id"] == header["run_id"] and run["project"] == "hard-samples"
    assert run["run_group"] == CELL
    assert run["display_name"] == f"{NAME} (standard)" and run["job_type"] == "standard"
    assert run["tags"] == ["sweep=demo", "model=test_resnet", "dataset=synthetic", "method=standard", "delta=1.0",
                           "seed=0", "fidelity=paper_code"]
    config = run["config"]["update"]
    assert config["identity"] == {"sweep": "demo", "model": "test_resnet", "dataset": "synthetic",
                                  "method": "standard", "delta": 1.0, "seed": 0, "fidelity": "paper_code"}
    assert config["method"]["name"] == "hard_batches" and config["run_name"] == NAME  # the Hydra config as run


def test_every_interval_is_logged_under_its_section_against_interval(offline_run):
    run_dir, records, _ = offline_run
    history = [record["item"] for record in of_type(records, "history")]
    metrics = pd.read_csv(run_dir / "metrics.csv")
    assert len(history) == len(metrics) == 3
    for logged, row in zip(history, metrics.to_dict("records")):
        assert set(logged) == set(METRIC_WANDB_KEYS.values()) | {"_step", "_runtime", "_timestamp"}
        assert logged["_step"] == logged["interval"] == row["interval"]
        assert logged["train/loss"] == row["train_loss"] and logged["test/top1"] == row["test_top1"]
        assert logged["train/seen_loss"] == row["seen_train_loss"] and logged["time/seconds"] == row["seconds"]
        assert logged["time/train_seconds"] == row["train_seconds"]
        assert logged["train/extra_forward_passes"] == row["extra_forward_passes"]


def test_losses_keep_their_minimum_and_top1_its_maximum(offline_run):
    run_dir, records, _ = offline_run
    defined = {m.get("name") or m.get("glob_name"): m for m in of_type(records, "metric")}
    assert defined["*"]["step_metric"] == "interval"
    for key in ("train/loss", "train/seen_loss", "test/loss"):
        assert defined[key]["summary"] == {"min": True, "last": True} and defined[key]["step_metric"] == "interval"
    for key in ("train/top1", "test/top1"):
        assert defined[key]["summary"] == {"max": True, "last": True}
    summary = {}
    for update in of_type(records, "summary"):
        summary.update(update["update"])
    metrics = pd.read_csv(run_dir / "metrics.csv")
    assert summary["test/loss"] == {"min": metrics["test_loss"].min(), "last": metrics["test_loss"].iloc[-1]}
    assert summary["test/top1"] == {"max": metrics["test_top1"].max(), "last": metrics["test_top1"].iloc[-1]}
    header = json.loads((run_dir / "run.json").read_text())
    assert summary["status"] == "finished"
    assert {key: summary[key] for key in WANDB_SUMMARY_FIELDS} == {key: header[key] for key in WANDB_SUMMARY_FIELDS}


def test_the_console_has_no_wandb_banner(offline_run):
    _, _, printed = offline_run
    assert not [line for line in printed.splitlines() if line.startswith("wandb:")], printed[-3000:]
    assert "W&B logs offline to" in printed  # our one line: where the run waits for `wandb sync`


class OfflineApiRun:
    """What wandb.Api().runs() returns for one run, built from the records the run wrote offline."""

    def __init__(self, records: list[dict]):
        (run,) = of_type(records, "run")
        self.id, self.name, self.group, self.state = run["run_id"], run["display_name"], run["run_group"], "finished"
        self.config = {k: v for k, v in run["config"]["update"].items() if k != "_wandb"}
        self.summary = {}
        for update in of_type(records, "summary"):
            self.summary.update(update["update"])
        self._history = [record["item"] for record in of_type(records, "history")]

    def scan_history(self):
        return iter(self._history)


class OfflineApi:
    def __init__(self, runs):
        self._runs = runs

    def runs(self, path, filters=None):
        assert path == "hard-samples" and filters == {"$or": [{"group": "demo"}, {"config.sweep_name": "demo"}]}
        return [run for run in self._runs if run.config["sweep_name"] == "demo"]


def test_tables_from_wandb_read_what_the_mirror_logged(offline_run):
    run_dir, records, _ = offline_run
    mirror = load_wandb(None, "hard-samples", "demo", api=OfflineApi([OfflineApiRun(records)]))
    local = load_records(run_dir)
    columns = ["run_id", "run_name", "sweep", "dataset", "model", "method", "delta", "seed", "fidelity", "epochs",
               "batch_size", "image_size", "num_classes", "channels", "num_batches", "status", "interval", "updates",
               "train_loss", "train_top1", "test_loss", "test_top1", "seconds", "train_seconds"]
    pd.testing.assert_frame_equal(mirror[columns], local[columns], check_dtype=False)
    assert mirror["config"].iloc[0] == local["config"].iloc[0]


# --- W&B's environment ---------------------------------------------------------------------------

def run_header(overrides: list[str] = ()) -> dict:
    """run.json's fields as train.run_header gives them for a tiny config (hard_batches at delta = 0.5)."""
    config = OmegaConf.to_container(compose_config([*TINY, "delta=0.5", *overrides]), resolve=True)
    return {"run_id": uuid.uuid4().hex[:12], "run_name": config["run_name"], "sweep": config["sweep_name"],
            "model": config["model"]["name"], "dataset": config["dataset"]["name"], "method": "hard_batches",
            "delta": config["delta"], "seed": config["seed"], "fidelity": config["fidelity"]["name"],
            "epochs": config["epochs"], "batch_size": config["batch_size"], "image_size": config["image_size"],
            "num_batches": 9, "k": 4, "num_classes": 10, "channels": 3, "update_budget": 27, "config": config}


def wandb_config(**values):
    return OmegaConf.create({"mode": "offline", "project": None, "entity": None, "group": None, "name": None,
                             "job_type": None, "tags": None, "silent": None, **values})


def test_wandb_environment_variables_apply_where_the_config_is_null(clean_wandb, monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_PROJECT", "from-env")
    monkeypatch.setenv("WANDB_RUN_GROUP", "env-group")
    monkeypatch.setenv("WANDB_NAME", "env-name")
    monkeypatch.setenv("WANDB_JOB_TYPE", "env-job")
    monkeypatch.setenv("WANDB_TAGS", "mine,also-mine")
    mirror = WandbMirror(wandb_config(), run_header(), tmp_path)
    run = mirror.run
    assert (run.project, run.group, run.name, run.job_type) == ("from-env", "env-group", "env-name", "env-job")
    assert {"mine", "also-mine", "method=hard_batches", "delta=0.5"} <= set(run.tags)
    mirror.finish("finished")


def test_a_value_set_in_the_config_wins_over_the_environment(clean_wandb, monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_PROJECT", "from-env")
    monkeypatch.setenv("WANDB_RUN_GROUP", "env-group")
    mirror = WandbMirror(wandb_config(project="mine", group="my-group", tags=["extra"]), run_header(), tmp_path)
    run = mirror.run
    assert (run.project, run.group) == ("mine", "my-group")
    assert run.name == "test_resnet-synthetic-hard_batches-d0.5-s0" and run.job_type == "hard_batches"
    assert "extra" in run.tags and "seed=0" in run.tags
    mirror.finish("finished")


def test_without_environment_the_defaults_are_the_cell_and_the_project(clean_wandb, tmp_path):
    mirror = WandbMirror(wandb_config(), run_header(["sweep_name=demo"]), tmp_path)
    assert mirror.run.project == wandb_mirror.DEFAULT_PROJECT
    assert mirror.run.group == "demo/test_resnet/synthetic/hard_batches/d0.5/paper_code/E3_B64_16px"
    assert list((tmp_path / "wandb").glob("offline-run-*"))  # in the run directory, unless WANDB_DIR says
    mirror.finish("finished")


@pytest.mark.parametrize("variable,value", [("WANDB_MODE", "disabled"), ("WANDB_DISABLED", "true")])
def test_wandb_disabled_in_the_environment_beats_an_explicit_online(clean_wandb, monkeypatch, tmp_path,
                                                                    variable, value):
    monkeypatch.setenv(variable, value)
    mirror = WandbMirror(wandb_config(mode="online"), run_header(), tmp_path)
    assert mirror.mode == "disabled" and mirror.run is None and not (tmp_path / "wandb").exists()


def test_a_wandb_that_cannot_start_is_one_warning_and_no_banner(clean_wandb, tmp_path, caplog, capfd):
    """online without credentials: the real client refuses to start (no terminal to ask for a key)."""
    mirror = WandbMirror(wandb_config(mode="online"), run_header(), tmp_path)
    assert mirror.run is None
    assert "W&B could not start" in caplog.text and "No API key configured" in caplog.text
    mirror.log_interval({"interval": 1, "train_loss": 1.0})  # nothing to log to, nothing raised
    mirror.finish("finished")
    assert "wandb:" not in capfd.readouterr().err


def test_silent_unless_the_config_or_wandb_environment_says_otherwise(clean_wandb, monkeypatch):
    assert wandb_mirror.settings_arguments(wandb_config())["silent"] is True
    assert wandb_mirror.settings_arguments(wandb_config(silent=False))["silent"] is False
    monkeypatch.setenv("WANDB_SILENT", "false")
    assert "silent" not in wandb_mirror.settings_arguments(wandb_config())  # W&B reads WANDB_SILENT itself


# --- credentials, as W&B looks them up -----------------------------------------------------------

@pytest.fixture(params=["wandb's lookup", "plain lookup"])
def lookup(request, monkeypatch):
    """Both paths of logged_in: W&B's own, and the fallback for a W&B without it."""
    if request.param == "plain lookup":
        from wandb.sdk.lib import wbauth

        def gone(**kwargs):
            raise AttributeError("authenticate_session")  # as in a W&B version that lacks it
        monkeypatch.setattr(wbauth, "authenticate_session", gone)
    return request.param


def test_no_credentials_means_offline(clean_wandb, lookup):
    assert not logged_in() and resolve_mode("auto") == "offline"


def test_an_identity_token_file_counts_as_logged_in(clean_wandb, lookup, monkeypatch, tmp_path):
    token = tmp_path / "token.jwt"
    token.write_text("header.payload.signature")
    monkeypatch.setenv("WANDB_IDENTITY_TOKEN_FILE", str(token))
    assert logged_in() and resolve_mode("auto") == "online"


def test_a_netrc_entry_for_the_wandb_host_counts_as_logged_in(clean_wandb, lookup, monkeypatch, tmp_path):
    netrc = tmp_path / "netrc"
    netrc.write_text("machine example.com login me password secret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    assert not logged_in()  # another host's entry
    netrc.write_text(f"machine api.wandb.ai login user password {'k' * 40}\n")
    assert logged_in()


def test_an_api_key_in_the_environment_counts_as_logged_in(clean_wandb, lookup, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    assert logged_in()


def test_a_key_wandb_would_refuse_means_offline_with_a_warning(clean_wandb, monkeypatch, caplog):
    monkeypatch.setenv("WANDB_API_KEY", "too-short")
    assert not logged_in() and "W&B credentials are unusable" in caplog.text


# --- names of the group and the run --------------------------------------------------------------

def test_a_swept_key_outside_the_group_splits_the_cells(monkeypatch):
    monkeypatch.setenv(SWEPT_ENV, "optimizer.lr,seed,fidelity.eval_batchnorm")
    header = run_header(["sweep_name=lr", "optimizer.lr=0.01"])
    assert wandb_mirror.cell_group(header) == \
        "lr/test_resnet/synthetic/hard_batches/d0.5/paper_code/E3_B64_16px/optimizer.lr=0.01"


def test_the_name_shows_the_recorded_method_and_the_sweep_directory():
    header = run_header()
    assert wandb_mirror.display_name(header, Path("x") / header["run_name"]) == header["run_name"]
    assert wandb_mirror.display_name(header, Path("x") / f"{header['run_name']}-1a2b3c4d") == \
        f"{header['run_name']}-1a2b3c4d"
    trimming = run_header(["method=trimming", "delta=1.0"]) | {"method": "trimming"}
    assert wandb_mirror.cell_group(trimming).endswith("/trimming/d1.0/paper_code/E3_B64_16px")
    cosine = run_header(["method=trimming", "method.shape=cosine", "delta=1.0"]) | {"method": "trimming"}
    assert "/trimming (shape=cosine)/d1.0/" in wandb_mirror.cell_group(cosine)
    assert wandb_mirror.display_name(trimming, Path("custom-dir")) == trimming["run_name"]
    refresh = run_header(["method=hard_batches_refresh", "delta=1.0"]) | {"method": "standard"}
    assert wandb_mirror.display_name(refresh, Path("d")) == f"{refresh['run_name']} (standard)"
    assert wandb_mirror.cell_group(refresh).endswith("/standard/d1.0/paper_code/E3_B64_16px")
