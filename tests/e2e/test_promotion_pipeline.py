"""Promotion as users drive it: real `mlflow run`, the real MLflow Model Registry, a real
`mlflow models serve` on 127.0.0.1, and the optional batch_predict step.

The module's story runs once (about 100 s): on a fresh store a first pipeline promotes a
weak-but-sufficient model; a run that scores lower keeps it; a run that scores higher by
the margin replaces it; `trainflow rollback` brings the first one back. The tests check
each stage's outcome, then serve and batch-score the final production model.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import mlflow
import mlflow.sklearn
import pandas as pd
import pytest
from support.processes import free_port, stop_process_group, wait_until_answering
from support.project import BIN_DIR, MLFLOW, PROJECT_DIR, copy_of, pipeline_env, project_store, run_command

from trainflow.store.blobs import file_sha256

TRAINFLOW = str(BIN_DIR / "trainflow")
REGISTERED = "penguins-species"
WEAK = "model.random_forest.max_depth=1 model.random_forest.n_estimators=3"  # test roc_auc_ovo 0.9686
LOWER = "model.random_forest.max_depth=1 model.random_forest.n_estimators=2"  # 0.9346
RETRAIN = ["-P", "steps=train_model,test_model,promote_model"]


@dataclass
class Stage:
    """One command of the story and the state of both production aliases after it."""

    result: subprocess.CompletedProcess[str]
    store_prod: str
    registry_prod: str  # the store version the registry's prod names (its trainflow.artifact tag)
    registry_version: int


def table_rows(stdout: str) -> list[str]:
    """The printed lines with runs of spaces collapsed (column widths depend on the values)."""
    return [" ".join(line.split()) for line in stdout.splitlines()]


def snapshot(result: subprocess.CompletedProcess[str], home: Path, env: dict[str, str]) -> Stage:
    registered = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"]).get_model_version_by_alias(REGISTERED, "prod")
    return Stage(
        result,
        project_store(home).get("model_export:prod").ref,
        registered.tags["trainflow.artifact"],
        int(registered.version),
    )


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str], dict[str, Stage]]:
    home = tmp_path_factory.mktemp("promotion") / "home"
    env = pipeline_env(home)
    assert run_command([TRAINFLOW, "init"], env).returncode == 0
    commands = {
        "first": [
            MLFLOW,
            "run",
            ".",
            "--env-manager",
            "local",
            "--experiment-name",
            "trainflow",
            "-P",
            f"hydra_options={WEAK}",
        ],
        "lower": [MLFLOW, "run", ".", "--env-manager", "local", *RETRAIN, "-P", f"hydra_options={LOWER}"],
        "higher": [MLFLOW, "run", ".", "--env-manager", "local", *RETRAIN],
        "rollback": [TRAINFLOW, "rollback"],
    }
    stages = {}
    for name, command in commands.items():
        result = run_command(command, env)
        assert result.returncode == 0, f"{name}: {result.stdout[-3000:]}{result.stderr[-3000:]}"
        stages[name] = snapshot(result, home, env)
    return home, env, stages


def test_first_pipeline_on_a_fresh_store_promotes_its_model(story) -> None:
    _, _, stages = story
    first = stages["first"]
    assert first.store_prod == first.registry_prod == "model_export:v0"
    out = first.result.stdout
    assert "promotion gate for model_export:v0 (champion: none, test set test_data.parquet:v0): promoted" in out
    assert "roc_auc_ovo 0.9686 >= 0.9 pass" in table_rows(out)
    assert "champion none yet baseline and bounds decide pass" in table_rows(out)
    assert f"registered as models:/{REGISTERED}/1 with alias 'prod'" in out


def test_a_run_that_scores_lower_keeps_the_champion_and_says_so(story) -> None:
    _, _, stages = story
    lower = stages["lower"]
    assert lower.store_prod == lower.registry_prod == "model_export:v0"
    assert lower.registry_version == 1
    out = lower.result.stdout
    assert "model_export:v1 not promoted: champion v0 kept ('prod' stays model_export:v0)" in out
    assert "roc_auc_ovo vs champion model_export:v0 0.9346 >= 0.9736 (champion 0.9686 + 0.005) FAIL" in table_rows(out)


def test_a_run_that_scores_higher_by_the_margin_replaces_it(story) -> None:
    _, _, stages = story
    higher = stages["higher"]
    assert higher.store_prod == higher.registry_prod == "model_export:v2"
    assert higher.registry_version == 2
    assert "roc_auc_ovo vs champion model_export:v0 1.0000 >= 0.9736 (champion 0.9686 + 0.005) pass" in table_rows(
        higher.result.stdout
    )


def test_rollback_restores_the_old_champion_in_store_and_registry(story, tmp_path: Path) -> None:
    home, env, stages = story
    back = stages["rollback"]
    assert back.store_prod == back.registry_prod == "model_export:v0"
    assert back.registry_version == 1  # the version registered at the first promotion, not a new one
    assert "model_export:prod: model_export:v2 -> model_export:v0 (rolled back" in back.result.stdout
    # The registry's prod loads now that every step's process has ended, and it is the store's bytes.
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    store = project_store(home)
    downloaded = Path(mlflow.artifacts.download_artifacts(f"models:/{REGISTERED}@prod", dst_path=str(tmp_path)))
    for stored in store.get("model_export:prod").files:
        assert file_sha256(downloaded / stored.path) == stored.sha256
    served = mlflow.pyfunc.load_model(f"models:/{REGISTERED}@prod")
    rows = pd.read_parquet(store.use_artifact("test_data.parquet:latest")).drop(columns=["species"])
    local = mlflow.pyfunc.load_model(str(store.use_artifact("model_export:prod")))
    assert list(served.predict(rows)) == list(local.predict(rows))
    listed = run_command([TRAINFLOW, "promotions"], env)
    assert [line.split()[3:5] for line in listed.stdout.splitlines()[1:]] == [
        ["promote", "promoted"],
        ["promote", "champion_kept"],
        ["promote", "promoted"],
        ["rollback", "rolled_back"],
    ]


def post(url: str, body: bytes) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_mlflow_models_serve_answers_with_the_promoted_model(story, tmp_path: Path) -> None:
    home, env, _ = story
    store = project_store(home)
    model_dir = store.use_artifact("model_export:prod")
    example = json.loads((model_dir / "serving_input_example.json").read_text())
    port = free_port()
    log = open(tmp_path / "serve.log", "w")  # noqa: SIM115 - closed below
    server = subprocess.Popen(
        [
            MLFLOW,
            "models",
            "serve",
            "-m",
            f"models:/{REGISTERED}@prod",
            "--env-manager",
            "local",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        env=env,
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_answering(f"{base}/ping", server, tmp_path / "serve.log")
        status, answer = post(f"{base}/invocations", json.dumps(example).encode())
        assert status == 200, answer
        split = example["dataframe_split"]
        local = mlflow.pyfunc.load_model(str(model_dir)).predict(pd.DataFrame(split["data"], columns=split["columns"]))
        assert answer == {"predictions": local.to_dict(orient="records")}  # labelled class probabilities
        assert len(answer["predictions"]) == len(split["data"])

        island = split["columns"].index("island")
        missing = {
            "dataframe_split": {
                "columns": [c for c in split["columns"] if c != "island"],
                "data": [[v for i, v in enumerate(row) if i != island] for row in split["data"]],
            }
        }
        status, error = post(f"{base}/invocations", json.dumps(missing).encode())
        assert 400 <= status < 500
        assert error["error_code"] == "INVALID_PARAMETER_VALUE"
        assert "Model is missing inputs ['island']" in error["message"]
    finally:
        stop_process_group(server)
        log.close()


def test_batch_predict_is_optional_and_scores_with_prod(story, tmp_path: Path) -> None:
    """`-P steps=batch_predict` scores the test set with prod (v0), not with the newest model (v2)."""
    home, env = copy_of(story[0], tmp_path)
    result = run_command([MLFLOW, "run", ".", "--env-manager", "local", "-P", "steps=batch_predict"], env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "[pipeline] finished 1 step(s)" in result.stdout
    store = project_store(home)
    logged = store.get("predictions.parquet:latest")
    assert logged.metadata["model"] == "model_export:v0"
    assert logged.metadata["input"] == {"artifact": "test_data.parquet:v0"}
    test = pd.read_parquet(store.use_artifact("test_data.parquet:v0"))
    predictions = pd.read_parquet(store.use_artifact(logged.ref))
    model = mlflow.sklearn.load_model(str(store.use_artifact("model_export:v0")))
    assert list(predictions.columns[: len(test.columns)]) == list(test.columns)
    assert predictions["prediction"].tolist() == list(model.predict(test.drop(columns=["species"])))
    assert {"proba_Adelie", "proba_Chinstrap", "proba_Gentoo"} <= set(predictions.columns)
    assert [v.ref for v in store.inputs_of(logged)] == ["model_export:v0", "test_data.parquet:v0"]
    # In MLflow, the batch run's inputs name the LoggedModel it scored with
    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    batch = client.get_run(logged.run.run_id)
    used = store.get("model_export:v0").metadata["mlflow_model_id"]
    assert [model.model_id for model in batch.inputs.model_inputs] == [used]

    # A file instead of an artifact: a path relative to the project, as the component takes it.
    component = PROJECT_DIR / "components" / "batch_predict"
    by_path = run_command([sys.executable, "run.py", "--input-table", "data/penguins.csv"], env, cwd=component)
    assert by_path.returncode == 0, by_path.stderr[-3000:]
    scored = store.get("predictions.parquet:latest")
    assert scored.version == 1 and scored.metadata["rows"] == len(pd.read_csv(PROJECT_DIR / "data" / "penguins.csv"))
    assert scored.metadata["input"]["source"] == (PROJECT_DIR / "data" / "penguins.csv").as_uri()
