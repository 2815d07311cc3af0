"""The whole workflow as users drive it: real `mlflow run`, real SQLite, real MLflow tracking.

One full pipeline runs once per module (about a minute); the tests that change state
work on a copy of its store, so each stays independent.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow.entities import LoggedModelStatus
from mlflow.models import Model
from support.project import BIN_DIR, MLFLOW, PROJECT_DIR, copy_of, error_lines, pipeline_env, project_store, run_command

from trainflow.store.local import lineage

SECRETS = {
    "WANDB_API_KEY": "local-0123456789abcdef0123456789abcdef01234567",
    "MLFLOW_TRACKING_PASSWORD": "tracking-password-5f1e2d",
    "MLFLOW_TRACKING_TOKEN": "tracking-token-9c8b7a",
}


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str], str]:
    """Run `mlflow run .` once on the embedded default data, as `make run` does."""
    home = tmp_path_factory.mktemp("pipeline") / "home"
    # Credentials a user may have exported: none may end up in anything the run writes
    # (test_no_secret_reaches_logs_params_or_artifacts). WANDB_MODE=offline keeps W&B local.
    env = {**pipeline_env(home), **SECRETS, "WANDB_MODE": "offline"}
    init = run_command([str(BIN_DIR / "trainflow"), "init"], env)
    assert init.returncode == 0, init.stderr
    result = run_command([MLFLOW, "run", ".", "--env-manager", "local", "--experiment-name", "trainflow"], env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (home / "pipeline-output.log").write_text(result.stdout + result.stderr)
    return home, env, result.stdout


def test_no_secret_reaches_logs_params_or_artifacts(pipeline: tuple[Path, dict[str, str], str]) -> None:
    """Every byte the pipeline wrote (store, blobs, MLflow database and artifacts, its
    output) is searched for the credentials in its environment."""
    home, _, _ = pipeline
    files = [path for path in home.rglob("*") if path.is_file()]
    assert len(files) > 20 and any(path.name == "mlflow.db" for path in files)
    leaks = {
        str(path.relative_to(home)): name
        for path in files
        for name, secret in SECRETS.items()
        if secret.encode() in path.read_bytes()
    }
    assert leaks == {}, f"secrets found: {leaks}"


def test_every_step_logged_its_artifacts(pipeline: tuple[Path, dict[str, str], str]) -> None:
    home, _, _ = pipeline
    store = project_store(home)
    names = {name: count for name, _, count in store.list_names()}
    assert names == {
        "raw_data": 1,
        "data_check_report": 1,
        "trainval_data.parquet": 1,
        "test_data.parquet": 1,
        "model_export": 1,
    }
    trainval = pd.read_parquet(store.use_artifact("trainval_data.parquet:latest"))
    test = pd.read_parquet(store.use_artifact("test_data.parquet:latest"))
    raw = pd.read_csv(PROJECT_DIR / "data" / "penguins.csv")
    assert len(trainval) + len(test) == len(raw)
    assert abs(len(test) / len(raw) - 0.2) < 0.01
    assert set(test["species"]) == set(raw["species"])
    raw_version = store.get("raw_data:v0")
    assert raw_version.metadata["source"] == (PROJECT_DIR / "data" / "penguins.csv").as_uri()
    assert raw_version.metadata["rows"] == len(raw)
    # check_data passed the first data this store saw, so it became the drift reference
    assert set(raw_version.aliases) == {"latest", "reference"}
    report = store.get("data_check_report:v0")
    assert report.type == "data_check" and report.metadata["raw_data"] == "raw_data:v0"
    assert report.metadata["passed"] is True and report.metadata["failed"] == [] and report.metadata["became_reference"]
    assert [v.ref for v in store.inputs_of(report)] == ["raw_data:v0"]


def test_model_was_tested_promoted_and_is_servable(pipeline: tuple[Path, dict[str, str], str]) -> None:
    home, _, stdout = pipeline
    store = project_store(home)
    prod = store.get("model_export:prod")
    assert prod.ref == "model_export:v0"
    # train_model nominated it for testing (candidate); promote_model made it the champion (prod)
    assert set(prod.aliases) == {"latest", "prod", "candidate"}
    test_record = prod.metadata["test"]
    assert test_record["test_data"] == "test_data.parquet:v0"
    assert 0.9 <= test_record["metrics"]["roc_auc_ovo"] <= 1.0
    assert 0.85 <= test_record["metrics"]["accuracy"] <= 1.0
    assert prod.metadata["features"] == {
        "numeric": ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"],
        "categorical": ["island", "sex"],
        "text": [],
        "datetime": [],
    }
    assert prod.metadata["task"] == "classification" and prod.metadata["classes"] == ["Adelie", "Chinstrap", "Gentoo"]
    model_dir = store.use_artifact("model_export:prod")
    assert {"MLmodel", "model.skops", "input_example.json", "requirements.txt"} <= {p.name for p in model_dir.iterdir()}
    # The artifact alone predicts raw rows: MLflow's pyfunc, no trainflow code.
    model = mlflow.pyfunc.load_model(str(model_dir))
    rows = pd.read_parquet(store.use_artifact("test_data.parquet:v0")).drop(columns=["species"])
    probabilities = model.predict(rows)
    assert list(probabilities.columns) == ["Adelie", "Chinstrap", "Gentoo"] and len(probabilities) == len(rows)
    assert ((probabilities.sum(axis=1) - 1).abs() < 1e-9).all()
    # The closing lines name the promoted artifact, its metrics and where it is.
    tail = stdout.strip().splitlines()[-6:]
    assert any("model_export:v0 (alias 'prod')" in line and "roc_auc_ovo=" in line for line in tail)
    assert any(str(home) in line for line in tail)


def test_lineage_leads_back_to_the_raw_data(pipeline: tuple[Path, dict[str, str], str]) -> None:
    home, env, _ = pipeline
    store = project_store(home)
    chain = [(depth, version.ref) for depth, version in lineage(store, "model_export:prod")]
    assert chain == [(0, "model_export:v0"), (1, "trainval_data.parquet:v0"), (2, "raw_data:v0")]
    model = store.get("model_export:v0")
    assert model.run is not None and model.run.step == "train_model"
    assert model.run.params["model.random_forest.n_estimators"] == 100
    assert model.run.git_commit is None or len(model.run.git_commit) == 40
    printed = run_command([str(BIN_DIR / "trainflow"), "artifacts", "lineage", "model_export:prod"], env)
    assert printed.returncode == 0, printed.stderr
    assert "raw_data:v0" in printed.stdout and "sha256" in printed.stdout


def test_mlflow_records_one_nested_run_per_step(pipeline: tuple[Path, dict[str, str], str]) -> None:
    home, env, _ = pipeline
    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name("trainflow")
    assert experiment.artifact_location.startswith(home.as_uri())
    runs = client.search_runs([experiment.experiment_id])
    assert all(run.info.status == "FINISHED" for run in runs)
    # MLflow 3's UI opens the experiment on its training runs, not on its GenAI view
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    parents = [run for run in runs if run.data.tags.get("trainflow.step") == "pipeline"]
    assert len(parents) == 1
    # `mlflow run .` made the parent run with a random name: it says the data and the steps
    assert parents[0].info.run_name == "penguins-species: all 6 steps"
    steps = {run.data.tags["trainflow.step"]: run for run in runs if run is not parents[0]}
    assert set(steps) == {"fetch_data", "check_data", "split_data", "train_model", "test_model", "promote_model"}
    for step, run in steps.items():
        assert run.info.run_name == step
        assert run.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        # main.in_process (the default with env manager local): each step ran in the pipeline's
        # process, with the parameters `mlflow run` of its component would have logged
        assert run.data.tags["trainflow.execution"] == "in_process", step
        assert run.data.params["hydra_options"] == "", step
        assert run.data.metrics["step_seconds"] > 0 and run.data.metrics["step_peak_rss_bytes"] > 50 * 2**20, step
    assert steps["train_model"].data.params["trainval_artifact"] == "trainval_data.parquet:v0"

    def datasets(step: str) -> list[tuple[str, str, int]]:  # the MLflow UI's Dataset column
        return [
            (
                logged.dataset.name,
                {tag.key: tag.value for tag in logged.tags}["mlflow.data.context"],
                json.loads(logged.dataset.profile)["num_rows"],
            )
            for logged in steps[step].inputs.dataset_inputs
        ]

    assert datasets("check_data") == [("raw_data:v0", "raw", 344)]
    [(name, context, rows)] = datasets("train_model")
    assert (name, context) == ("trainval_data.parquet:v0", "training") and 200 < rows < 344
    assert [(name, context) for name, context, _ in datasets("test_model")] == [("test_data.parquet:v0", "test")]
    assert datasets("fetch_data") == []  # it reads no store table: it makes one
    assert 0.9 <= steps["test_model"].data.metrics["test_roc_auc_ovo"] <= 1.0
    assert steps["train_model"].data.params["model.random_forest.n_estimators"] == "100"
    assert steps["train_model"].data.tags["trainflow.output.model_export"] == "model_export:v0"
    checked = steps["check_data"].data
    assert checked.tags["trainflow.data_check"] == "passed" and checked.metrics["checks_failed"] == 0
    assert checked.metrics["schema.allowed_values.island.passed"] == 1.0
    assert {a.path for a in client.list_artifacts(steps["check_data"].info.run_id)} >= {
        "data_check_report.json",
        "data_check_report.md",
    }
    for step, expected in (("train_model", "val_log_loss"), ("test_model", "test_precision_Adelie")):
        assert expected in steps[step].data.metrics, step
        plots = {Path(a.path).name for a in client.list_artifacts(steps[step].info.run_id, "plots")}
        assert plots == {"confusion_matrix.png", "roc_curves.png", "feature_importance.png"}, step


def test_train_model_logs_one_mlflow_model_with_its_metrics_and_the_registry_names_it(
    pipeline: tuple[Path, dict[str, str], str],
) -> None:
    """The experiment's Models tab: train_model's LoggedModel, its validation and test metrics
    on their datasets, test_model reading it, the registered version made from it."""
    home, env, _ = pipeline
    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name("trainflow")
    runs = {run.info.run_name: run for run in client.search_runs([experiment.experiment_id])}
    [model] = client.search_logged_models([experiment.experiment_id])
    trained, tested = (client.get_run(runs[step].info.run_id) for step in ("train_model", "test_model"))
    assert (model.name, model.status, model.model_type) == (
        "penguins-species",
        LoggedModelStatus.READY,
        "classification",
    )
    assert model.source_run_id == trained.info.run_id
    assert [output.model_id for output in trained.outputs.model_outputs] == [model.model_id]  # the Models column
    assert [used.model_id for used in tested.inputs.model_inputs] == [model.model_id]
    assert model.params["estimator"] == "random_forest" and model.params["n_estimators"] == "100"
    assert model.tags["trainflow.data"] == "trainval_data.parquet:v0"
    linked = {(metric.key, metric.dataset_name, metric.run_id) for metric in model.metrics}
    assert ("val_log_loss", "trainval_data.parquet:v0", trained.info.run_id) in linked
    assert ("test_roc_auc_ovo", "test_data.parquet:v0", tested.info.run_id) in linked
    assert not any(key.startswith("baseline_") for key, _, _ in linked)  # the baseline's are not the model's
    # The store's version names the model; its MLmodel file does too, as mlflow.sklearn.log_model writes it.
    store = project_store(home)
    exported = store.get("model_export:prod")
    assert exported.metadata["mlflow_model_id"] == model.model_id
    assert Model.load(str(store.use_artifact(exported.ref))).model_id == model.model_id
    registered = client.get_model_version_by_alias("penguins-species", "prod")
    assert registered.source == f"models:/{model.model_id}"
    assert registered.tags["trainflow.decision"] == "promoted" and registered.tags["trainflow.artifact"] == exported.ref
    assert registered.tags["trainflow.data"] == "trainval_data.parquet:v0"
    described = client.get_registered_model("penguins-species")
    assert described.description.startswith("trainflow models of project penguins-species: classification of")
    assert described.tags["trainflow.target"] == "species"
    assert model.artifact_location.startswith((home / "mlartifacts").as_uri())  # its files: in the store


def step_runs(stdout: str) -> dict[str, str]:
    """Step name -> MLflow run id, from the pipeline's `[pipeline] <step>: ran in ...` lines."""
    return dict(re.findall(r"^\[pipeline\] (\w+): ran in .*?MLflow run ([0-9a-f]{32})", stdout, re.MULTILINE))


def test_selected_steps_with_overrides_then_promotion_refuses_untested_model(
    pipeline: tuple[Path, dict[str, str], str], tmp_path: Path
) -> None:
    """`-P steps=... -P hydra_options=...` as in the README; prod never moves to an untested model.
    With main.in_process=false each step is its own `mlflow run` of its component."""
    home, env = copy_of(pipeline[0], tmp_path)
    result = run_command(
        [
            MLFLOW,
            "run",
            ".",
            "--env-manager",
            "local",
            "-P",
            "steps=split_data,train_model",
            "-P",
            "hydra_options=model.random_forest.n_estimators=50 split.test_size=0.25 main.in_process=false",
        ],
        env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    trained = client.get_run(step_runs(result.stdout)["train_model"])
    assert trained.data.tags["trainflow.execution"] == "process"
    assert trained.data.tags["mlflow.source.type"] == "PROJECT"  # started by mlflow.run
    assert trained.data.params["trainval_artifact"] == "trainval_data.parquet:v1"  # the entry point's parameter
    store = project_store(home)
    assert store.get("raw_data:latest").version == 0  # fetch_data did not run
    test = pd.read_parquet(store.use_artifact("test_data.parquet:v1"))
    assert abs(len(test) / 344 - 0.25) < 0.01
    model = store.get("model_export:latest")
    assert model.version == 1 and model.metadata["estimator_params"]["n_estimators"] == 50
    assert "candidate" in model.aliases  # the model promote_model alone considers below
    assert [v.ref for v in store.inputs_of(model)] == ["trainval_data.parquet:v1"]

    refused = run_command([MLFLOW, "run", "components/promote_model", "--env-manager", "local"], env)
    assert refused.returncode != 0
    [line] = error_lines(refused.stderr)
    assert "promote_model: error: model_export:v1 not promoted" in line and "never tested" in line
    assert store.get("model_export:prod").version == 0


def test_single_component_run_as_ci_would(pipeline: tuple[Path, dict[str, str], str], tmp_path: Path) -> None:
    home, env = copy_of(pipeline[0], tmp_path)
    result = run_command(
        [
            MLFLOW,
            "run",
            "components/train_model",
            "--env-manager",
            "local",
            "-P",
            "trainval_artifact=trainval_data.parquet:latest",
            "-P",
            "hydra_options=model.random_forest.n_estimators=20 model.random_forest.max_depth=3",
        ],
        env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    model = project_store(home).get("model_export:latest")
    assert model.version == 1
    assert model.metadata["estimator_params"]["n_estimators"] == 20
    assert model.metadata["estimator_params"]["max_depth"] == 3
    assert model.run is not None and model.run.step == "train_model"


@pytest.mark.parametrize(
    ("command", "refused"),
    [
        # the raw table (the held-out test rows included) as training data
        (
            [MLFLOW, "run", "components/train_model", "--env-manager", "local", "-P", "trainval_artifact=raw_data:v0"],
            "train_model cannot use raw_data:v0 as its trainval_artifact: that is a 'raw_data' artifact",
        ),
        # a dataset as the model to test
        (
            [sys.executable, "main.py", "main.steps=test_model", "test.model=trainval_data.parquet:latest"],
            "test_model cannot use trainval_data.parquet:v0 as its model_artifact: that is a 'split_data' artifact",
        ),
    ],
    ids=["raw-table-as-trainval", "dataset-as-model"],
)
def test_an_input_of_the_wrong_type_is_refused_before_the_step_reads_it(
    pipeline: tuple[Path, dict[str, str], str], tmp_path: Path, command: list[str], refused: str
) -> None:
    home, env = copy_of(pipeline[0], tmp_path)
    before = {name: [v.ref for v in project_store(home).list_versions(name)] for name in ("model_export", "raw_data")}
    result = run_command(command, env)
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
    # one error line, the step's; the pipeline adds where it stopped, not a second error
    [line] = error_lines(result.stderr)
    assert refused in line and "point " in line
    if "main.py" in command:
        assert "[pipeline] stopped: step test_model failed after" in result.stderr
    store = project_store(home)
    assert {name: [v.ref for v in store.list_versions(name)] for name in before} == before
    assert store.get("model_export:prod").ref == "model_export:v0"


def test_plain_hydra_runs_one_step(pipeline: tuple[Path, dict[str, str], str], tmp_path: Path) -> None:
    """`python main.py main.steps=test_model` tests the candidate (the model just trained): served
    from the cache (it was tested on the latest test set); with main.cache=false it tests it
    again and records it."""
    home, env = copy_of(pipeline[0], tmp_path)
    cached = run_command([sys.executable, "main.py", "main.steps=test_model"], env)
    assert cached.returncode == 0, cached.stderr[-3000:]
    assert (
        "[pipeline] finished 1 step(s)" in cached.stdout and "[pipeline] test_model: cached (from run" in cached.stdout
    )
    result = run_command([sys.executable, "main.py", "main.steps=test_model", "main.cache=false"], env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "[pipeline] test_model: ran in" in result.stdout
    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    runs = client.search_runs(
        [client.get_experiment_by_name("trainflow").experiment_id], "tags.`trainflow.step` = 'test_model'"
    )
    tested = [run for run in runs if run.data.tags.get("trainflow.cached") != "true"]
    assert len(runs) == 3 and len(tested) == 2  # the original pipeline's, the cache hit's, the forced one
    metadata = project_store(home).get("model_export:v0").metadata
    assert metadata["test"]["run_id"] == max(tested, key=lambda r: r.info.start_time).info.run_id


def test_log_level_error_prints_only_errors_and_the_log_file_keeps_the_messages(
    pipeline: tuple[Path, dict[str, str], str], tmp_path: Path
) -> None:
    """main.log_level=ERROR: nothing on the console but a failure's error line; the run's Hydra
    log file holds what the steps said at the level asked for."""
    home, env = copy_of(pipeline[0], tmp_path)
    steps = "main.steps='split_data,train_model'"
    quiet = run_command([sys.executable, "main.py", steps, "main.cache=false", "main.log_level=ERROR"], env)
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "", ""), quiet.stderr[-3000:]
    assert project_store(home).get("model_export:latest").version == 1  # it trained all the same
    failing = run_command(
        [sys.executable, "main.py", "main.steps=test_model", "test.model=model_export:v9", "main.log_level=ERROR"], env
    )
    assert failing.returncode == 1 and failing.stdout == ""
    assert error_lines(failing.stderr)[0].startswith("test_model: error: ")
    assert all("error" in line or "stopped" in line for line in failing.stderr.splitlines()), failing.stderr

    said = run_command([sys.executable, "main.py", steps, "main.cache=false"], env)
    assert said.returncode == 0, said.stderr[-3000:]
    [log] = [path for path in (home / "hydra" / "runs").glob("*/main.log") if "[train_model]" in path.read_text()]
    lines = log.read_text().splitlines()
    console = [line for line in said.stdout.splitlines() if line.startswith("[")]
    # every console message is in the file, after its time and level
    assert [line.split(" INFO ", 1)[1] for line in lines if " INFO [" in line] == console
    assert any(" INFO [train_model] logged model_export:v2 " in line for line in lines)


def test_empty_hydra_options_and_quoted_paths_with_spaces(tmp_path: Path) -> None:
    """`-P hydra_options=""` works, and a quoted value with spaces survives intact."""
    env = pipeline_env(tmp_path / "home")
    spaced = tmp_path / "my data" / "penguins copy.csv"
    spaced.parent.mkdir()
    shutil.copy(PROJECT_DIR / "data" / "penguins.csv", spaced)
    empty = run_command(
        [MLFLOW, "run", ".", "--env-manager", "local", "-P", "steps=fetch_data", "-P", "hydra_options="], env
    )
    assert empty.returncode == 0, empty.stderr[-3000:]
    quoted = run_command(
        # another copy of the demo table: dataset=penguins keeps it in the data set's project
        [
            MLFLOW,
            "run",
            ".",
            "--env-manager",
            "local",
            "-P",
            "steps=fetch_data",
            "-P",
            f"hydra_options=dataset=penguins data.uri='{spaced}'",
        ],
        env,
    )
    assert quoted.returncode == 0, quoted.stderr[-3000:]
    store = project_store(tmp_path / "home")
    assert store.get("raw_data:v0").metadata["source"] == (PROJECT_DIR / "data" / "penguins.csv").as_uri()
    assert store.get("raw_data:v1").metadata["source"] == spaced.as_uri()
    # Same bytes under a different name: stored once.
    assert store.get("raw_data:v0").files[0].sha256 == store.get("raw_data:v1").files[0].sha256


def test_unknown_step_through_mlflow_run_lists_valid_steps(tmp_path: Path) -> None:
    env = pipeline_env(tmp_path / "home")
    result = run_command([MLFLOW, "run", ".", "--env-manager", "local", "-P", "steps=fetch_data,trian_model"], env)
    assert result.returncode != 0
    [line] = error_lines(result.stderr)
    assert "'trian_model'" in line and "promote_model" in line
    assert not (tmp_path / "home" / "index.db").exists()


def test_a_messier_table_runs_from_its_uri_and_target_alone(tmp_path: Path) -> None:
    """penguins-raw: a binary target, free text, dates, many gaps; nothing else named: the
    demo data set's settings drop, features and task are inferred, no code change."""
    env = pipeline_env(tmp_path / "home")
    overrides = "data.uri=data/penguins-raw.csv 'data.target=Clutch Completion'"
    result = run_command(
        [
            MLFLOW,
            "run",
            ".",
            "--env-manager",
            "local",
            "--experiment-name",
            "trainflow",
            "-P",
            f"hydra_options={overrides}",
        ],
        env,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "task: classification (the target 'Clutch Completion' holds text: 2 classes" in result.stdout
    assert "project: penguins-raw-clutch-completion" in result.stdout
    store = project_store(tmp_path / "home", "penguins-raw-clutch-completion")
    prod = store.get("model_export:prod")
    features = prod.metadata["features"]
    assert "Comments" in features["text"] and "Date Egg" in features["datetime"]
    assert "Individual ID" not in sum(features.values(), [])  # id-like: left out
    assert prod.metadata["estimator"] == "hist_gradient_boosting"  # config.yaml's generic default
    assert sorted(prod.metadata["classes"]) == ["No", "Yes"]
    metrics, baseline = prod.metadata["test"]["metrics"], prod.metadata["test"]["baseline_metrics"]
    assert metrics["roc_auc_ovo"] >= baseline["roc_auc_ovo"] + 0.01  # promoted: it beat the baseline
    # no expectations for this table: check_data ran its generic checks only, and passed
    report = store.get("data_check_report:v0").metadata
    assert report["passed"] is True and report["checks"] == 6


def test_a_regression_target_runs_end_to_end(tmp_path: Path) -> None:
    """Body mass as the target, named with its table alone: the task (regression), the gate's
    metric (r2) and the baseline (the training mean) follow from it; r2/mae/rmse, residual
    plot, values from pyfunc."""
    env = pipeline_env(tmp_path / "home")
    overrides = "data.uri=data/penguins.csv data.target=body_mass_g"
    result = run_command(
        [
            MLFLOW,
            "run",
            ".",
            "--env-manager",
            "local",
            "--experiment-name",
            "trainflow",
            "-P",
            f"hydra_options={overrides}",
        ],
        env,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert (
        "task: regression (the target 'body_mass_g' holds 94 distinct whole numbers (more than 20: a quantity)"
        in result.stdout
    )
    assert "r2 vs baseline" in result.stdout
    store = project_store(tmp_path / "home", "penguins-body_mass_g")
    prod = store.get("model_export:prod")
    metrics = prod.metadata["test"]["metrics"]
    assert set(metrics) == {"r2", "mae", "rmse"}
    assert 0.5 <= metrics["r2"] <= 1.0 and 0 < metrics["mae"] <= metrics["rmse"]
    assert "class_counts" not in store.get("test_data.parquet:v0").metadata  # no stratification by a number
    rows = pd.read_parquet(store.use_artifact("test_data.parquet:v0"))
    predicted = mlflow.pyfunc.load_model(str(store.use_artifact("model_export:prod"))).predict(rows)
    assert len(predicted) == len(rows) and pd.api.types.is_float_dtype(pd.Series(predicted))
    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    test_run = client.search_runs(
        [client.get_experiment_by_name("trainflow").experiment_id], "tags.`trainflow.step` = 'test_model'"
    )[0]
    assert {Path(a.path).name for a in client.list_artifacts(test_run.info.run_id, "plots")} == {
        "residuals.png",
        "feature_importance.png",
    }
