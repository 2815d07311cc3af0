"""What the sweep tests share (tests/e2e/test_sweeps.py, test_ray_sweeps.py): a store where
``split_data`` ran, the 2x2 grid they sweep, and what every such sweep must leave."""

from __future__ import annotations

import re
from itertools import product
from pathlib import Path

import mlflow

from support.project import MLFLOW, PROJECT_DIR, pipeline_env, project_store, run_command
from trainflow.store.records import ArtifactVersion
from trainflow.store.refs import CANDIDATE_ALIAS

DEPTHS, TREES = ("2", "6"), ("3", "8")
GRID = f"model.random_forest.max_depth={','.join(DEPTHS)} model.random_forest.n_estimators={','.join(TREES)}"
SWEEP_LINE = re.compile(r"^\[sweep\] (\d{8}-\d{6}-[0-9a-f]{4}): trials nest under MLflow run ([0-9a-f]{32})", re.M)


def make_split_store(home: Path) -> Path:
    """A store at ``home`` where split_data ran, as a sweep of train_model expects. The raw
    table is logged directly (fetch_data and check_data have their own tests) to keep this quick."""
    env = pipeline_env(home)
    penguins = PROJECT_DIR / "data" / "penguins.csv"
    project_store(home).log_artifact(penguins, "raw_data", "raw_data", metadata={"source": penguins.as_uri()})
    result = run_command(
        [
            MLFLOW,
            "run",
            "components/split_data",
            "--env-manager",
            "local",
            "--experiment-name",
            "trainflow",
            "-P",
            "raw_artifact=raw_data:v0",
        ],
        env,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return home


def sweep_of(output: str) -> tuple[str, str]:
    """The sweep id and its MLflow run, from the line a sweep prints first."""
    found = SWEEP_LINE.search(output)
    assert found, output[-3000:]
    return found.group(1), found.group(2)


def check_grid_sweep(home: Path, env: dict[str, str], output: str) -> tuple[str, list[ArtifactVersion]]:
    """What every 2x2 sweep must leave: 4 trials, 4 models with their parameters and
    metric, the best one as the candidate, nested MLflow runs, a summary, a sound store."""
    sweep_id, parent_id = sweep_of(output)
    store = project_store(home)
    models = store.list_versions("model_export")
    assert len(models) == 4
    assert {m.metadata["sweep"]["id"] for m in models} == {sweep_id}
    assert sorted(m.metadata["sweep"]["trial"] for m in models) == [0, 1, 2, 3]
    assert sorted(
        (
            m.metadata["sweep"]["params"]["model.random_forest.max_depth"],
            m.metadata["sweep"]["params"]["model.random_forest.n_estimators"],
        )
        for m in models
    ) == sorted(product(DEPTHS, TREES))
    for model in models:  # the trial's parameters reached the model, and every trial read the same data
        params = model.metadata["estimator_params"]
        assert str(params["max_depth"]) == model.metadata["sweep"]["params"]["model.random_forest.max_depth"]
        assert [v.ref for v in store.inputs_of(model)] == ["trainval_data.parquet:v0"]
    auc = {m.ref: m.metadata["validation"]["roc_auc_ovo"] for m in models}
    best = min(models, key=lambda m: (-auc[m.ref], m.version))
    assert store.get(f"model_export:{CANDIDATE_ALIAS}").ref == best.ref
    assert f"best: trial {best.metadata['sweep']['trial']}, {best.ref}" in output
    assert store.verify().problems == []

    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    parent = client.get_run(parent_id)
    assert parent.data.tags["trainflow.sweep_id"] == sweep_id and parent.data.tags["trainflow.step"] == "sweep"
    assert parent.info.run_name == f"sweep-{sweep_id}"
    runs = client.search_runs([parent.info.experiment_id], f"tags.`trainflow.sweep_id` = '{sweep_id}'")
    trials = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent_id]
    assert sorted(r.info.run_name for r in trials) == ["trial-0", "trial-1", "trial-2", "trial-3"]
    assert all(r.info.status == "FINISHED" for r in runs)
    steps = [r for r in runs if r.data.tags.get("trainflow.step") == "train_model"]
    assert sorted(r.data.tags["mlflow.parentRunId"] for r in steps) == sorted(r.info.run_id for r in trials)
    summary = mlflow.artifacts.load_dict(f"{parent.info.artifact_uri}/sweep_summary.json")
    assert sorted((t["trial"], t["status"], t["outputs"]["model_export"]) for t in summary["trials"]) == sorted(
        (m.metadata["sweep"]["trial"], "ok", m.ref) for m in models
    )
    assert "database is locked" not in output
    # Hydra's job folders live in the store, not in the project
    assert len(list((home / "hydra" / "multirun").glob("*/*/trial.json"))) == 4
    # Each trial's Hydra log file holds that trial's messages, with their time
    for model in models:
        trial = model.metadata["sweep"]["trial"]
        [log] = (home / "hydra" / "multirun").glob(f"*/{trial}/main.log")
        text = log.read_text()
        assert f"INFO [sweep] trial {trial}: " in text and f"INFO [train_model] logged {model.ref} " in text, text
        others = {m.ref for m in models} - {model.ref}
        assert not any(f"logged {ref} " in text for ref in others)
    return sweep_id, models
