"""The step cache as users meet it: real `mlflow run` pipelines on one store.

The module's story runs once (about 90 s): a cold pipeline runs every step; a pipeline
with 20 trees re-runs train_model onwards only, moving model_export:latest to v1; the
unchanged first pipeline is then served from the cache, moving latest back to v0, while
promote_model re-evaluates the gate; main.cache=false runs fetch_data again.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pytest
from support.project import BIN_DIR, pipeline_env, project_store, run_command

from trainflow.store.local import LocalArtifactStore

MLFLOW = str(BIN_DIR / "mlflow")
RUN = [MLFLOW, "run", ".", "--env-manager", "local", "--experiment-name", "trainflow"]
LINE = re.compile(r"^\[pipeline\] (\w+): (ran|cached \(from run (\w+)\)) in (\d+\.\d) s \(MLflow run (\w+)")


@dataclass
class Stage:
    result: subprocess.CompletedProcess[str]
    lines: dict[str, tuple[str, str | None, str]]  # step -> (ran | cached, cached from, this run's MLflow id)
    model_latest: str  # what model_export:latest named after the command
    versions: dict[str, int]  # how many versions each artifact had after the command


def step_lines(stdout: str) -> dict[str, tuple[str, str | None, str]]:
    found = {}
    for line in stdout.splitlines():
        match = LINE.match(line)
        if match:
            step, outcome, source, _, run_id = match.groups()
            found[step] = ("ran" if outcome == "ran" else "cached", source, run_id)
    return found


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str], dict[str, Stage]]:
    home = tmp_path_factory.mktemp("cache") / "home"
    env = pipeline_env(home)
    commands = {
        "cold": RUN,
        "trees20": [*RUN, "-P", "hydra_options=model.random_forest.n_estimators=20"],
        "warm": RUN,
        "forced": [*RUN, "-P", "steps=fetch_data", "-P", "hydra_options=main.cache=false"],
    }
    stages = {}
    for name, command in commands.items():
        result = run_command(command, env)
        assert result.returncode == 0, f"{name}: {result.stdout[-3000:]}{result.stderr[-3000:]}"
        store = project_store(home)
        counts = {artifact: count for artifact, _, count in store.list_names()}
        stages[name] = Stage(result, step_lines(result.stdout), store.get("model_export:latest").ref, counts)
    return home, env, stages


def test_a_cold_pipeline_runs_and_records_every_cacheable_step(story) -> None:
    home, _, stages = story
    cold = stages["cold"].lines
    assert list(cold) == ["fetch_data", "check_data", "split_data", "train_model", "test_model", "promote_model"]
    assert all(outcome == "ran" for outcome, _, _ in cold.values())
    assert "cache: no earlier run with this key" in stages["cold"].result.stdout
    store = project_store(home)
    for step in ("fetch_data", "check_data", "split_data", "train_model", "test_model", "promote_model"):
        run_id = cold[step][2]
        assert any(record.run_id == run_id for record in _records(store, step)), step


def _records(store: LocalArtifactStore, step: str):  # type: ignore[no-untyped-def]
    import sqlite3

    with sqlite3.connect(store.index_path) as db:
        keys = [row[0] for row in db.execute("SELECT DISTINCT key FROM step_cache WHERE step = ?", (step,))]
    return [record for key in keys for record in store.cached_runs(step, key)]


def test_an_unchanged_pipeline_is_served_from_the_cache_and_moves_latest_back(story) -> None:
    home, env, stages = story
    cold, warm = stages["cold"].lines, stages["warm"].lines
    assert stages["trees20"].model_latest == "model_export:v1"
    assert stages["warm"].model_latest == "model_export:v0"  # moved back, as a fresh run would have
    for step in ("fetch_data", "split_data", "train_model", "test_model"):
        assert warm[step][:2] == ("cached", cold[step][2]), step  # from the cold run's own step run
    # The gate's inputs are the cold run's again: the same candidate, test set and settings,
    # and the champion the cold run itself made (trees20's model did not beat it). The cold
    # run was recorded under the key after it, with the alias it moved in place.
    assert warm["promote_model"][:2] == ("cached", cold["promote_model"][2])
    # The cold check_data claimed raw_data:reference, which is in its own key: it was recorded
    # under the key after it (the reference in place), which the later runs find.
    assert warm["check_data"][:2] == ("cached", cold["check_data"][2])
    assert stages["trees20"].lines["check_data"][:2] == ("cached", cold["check_data"][2])
    for stage, reports in (("trees20", 1), ("warm", 1)):
        assert stages[stage].versions == {
            "raw_data": 1,
            "data_check_report": reports,
            "trainval_data.parquet": 1,
            "test_data.parquet": 1,
            "model_export": 2,
        }, stage
    store = project_store(home)
    moves = [move[:3] for move in store.alias_history("model_export", "latest")]
    assert (0, 1, warm["train_model"][2]) in moves  # recorded as a move by the cache hit's run
    # cold promoted v0, trees20 kept it against v1; the warm run's re-used decision adds none
    assert [p.candidate for p in store.promotions()] == ["model_export:v0", "model_export:v1"]
    assert (
        "[pipeline] finished 6 step(s)" in stages["warm"].result.stdout and "(6 cached)" in stages["warm"].result.stdout
    )

    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    cached = client.get_run(warm["train_model"][2])
    assert cached.info.status == "FINISHED"
    assert cached.data.tags["trainflow.cached"] == "true"
    assert cached.data.tags["trainflow.cached_from"] == cold["train_model"][2]
    assert cached.data.tags["trainflow.output.model_export"] == "model_export:v0"
    assert cached.data.tags["trainflow.input.trainval_artifact"] == "trainval_data.parquet:v0"
    assert cached.data.params["model.random_forest.n_estimators"] == "100"
    parent = client.get_run(cached.data.tags["mlflow.parentRunId"])
    assert parent.data.tags["trainflow.step"] == "pipeline"
    assert (
        client.get_run(warm["split_data"][2]).data.tags["trainflow.output.test_data.parquet"] == "test_data.parquet:v0"
    )


def test_a_changed_training_parameter_reruns_train_model_onwards_only(story) -> None:
    home, _, stages = story
    changed, cold = stages["trees20"].lines, stages["cold"].lines
    assert changed["fetch_data"][:2] == ("cached", cold["fetch_data"][2])
    assert changed["split_data"][:2] == ("cached", cold["split_data"][2])
    assert [changed[s][0] for s in ("train_model", "test_model", "promote_model")] == ["ran", "ran", "ran"]
    store = project_store(home)
    model = store.get("model_export:v1")
    assert model.run is not None and model.run.run_id == changed["train_model"][2]
    assert model.metadata["estimator_params"]["n_estimators"] == 20
    assert model.metadata["test"]["test_data"] == "test_data.parquet:v0"  # tested on the re-used split


def test_main_cache_false_runs_the_step_anyway(story) -> None:
    home, _, stages = story
    forced = stages["forced"]
    assert "[pipeline] cache: off (main.cache=false)" in forced.result.stdout
    assert forced.lines["fetch_data"][0] == "ran"
    assert "cache: main.cache=false" in forced.result.stdout
    assert project_store(home).get("raw_data:latest").ref == "raw_data:v1"
