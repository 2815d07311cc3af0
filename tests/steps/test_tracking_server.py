"""A team's shared tracking server: `mlflow server` with a SQLite backend and proxied
artifacts on local disk, started on a free port on 127.0.0.1 and stopped by the fixture
whatever happens. The pipeline logs every run, metric and registered model to it, and
the test reads them back over HTTP.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
from support.processes import free_port, stop_process_group, wait_until_answering
from support.project import BIN_DIR, MLFLOW, pipeline_env, run_command

from trainflow.pipeline.steps import STEPS

SERVER_START_SECONDS = 120


@pytest.fixture(scope="module")
def tracking_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """The server's URI and its artifact folder."""
    root = tmp_path_factory.mktemp("server")
    artifacts = root / "artifacts"
    uri = f"http://127.0.0.1:{free_port()}"
    log = root / "server.log"
    command = [
        MLFLOW,
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        uri.rsplit(":", 1)[1],
        "--workers",
        "1",
        "--backend-store-uri",
        f"sqlite:///{root / 'server.db'}",
        "--artifacts-destination",
        str(artifacts),
    ]
    with log.open("wb") as output:
        # Its own process group: the server's workers stop with it.
        server = subprocess.Popen(command, cwd=root, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until_answering(f"{uri}/health", server, log, SERVER_START_SECONDS)
        yield uri, artifacts
    finally:
        stop_process_group(server)


@pytest.mark.slow  # a whole pipeline plus a server: about two minutes on 2 shared cores
def test_the_pipeline_logs_runs_metrics_and_the_registered_model_to_the_server(
    tracking_server: tuple[str, Path], tmp_path: Path
) -> None:
    uri, artifacts = tracking_server
    home = tmp_path / "home"
    env = {**pipeline_env(home), "MLFLOW_TRACKING_URI": uri}
    init = run_command([str(BIN_DIR / "trainflow"), "init"], env)
    assert init.returncode == 0, init.stderr
    assert f"MLflow tracking: {uri} (experiment 'trainflow'" in init.stdout
    result = run_command([MLFLOW, "run", ".", "--env-manager", "local", "--experiment-name", "trainflow"], env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"MLflow tracking: {uri}" in result.stdout

    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name("trainflow")
    runs = client.search_runs([experiment.experiment_id])
    by_step = {run.data.tags.get("trainflow.step"): run for run in runs}
    all_steps = [name for name, spec in STEPS.items() if spec.in_all]
    assert set(by_step) == {"pipeline", *all_steps}
    assert {run.info.status for run in runs} == {"FINISHED"}
    pipeline_id = by_step["pipeline"].info.run_id
    assert all(by_step[step].data.tags["mlflow.parentRunId"] == pipeline_id for step in all_steps)
    assert by_step["test_model"].data.metrics["test_roc_auc_ovo"] >= 0.9
    assert "val_accuracy" in by_step["train_model"].data.metrics
    # Run artifacts went through the server to its --artifacts-destination.
    plots = client.list_artifacts(by_step["test_model"].info.run_id, "plots")
    assert plots and any(artifacts.rglob(Path(plots[0].path).name))

    prod = client.get_model_version_by_alias("penguins-species", "prod")
    assert prod.tags["trainflow.artifact"] == "model_export:v0"
    # The version is train_model's LoggedModel, whose files the server keeps.
    [model] = client.search_logged_models([experiment.experiment_id])
    assert prod.source == f"models:/{model.model_id}" and prod.run_id == by_step["train_model"].info.run_id
    # The registered files, downloaded over HTTP, load as the model.
    downloaded = mlflow.artifacts.download_artifacts(
        artifact_uri=model.artifact_location, dst_path=str(tmp_path / "model"), tracking_uri=uri
    )
    assert mlflow.pyfunc.load_model(downloaded).metadata.signature is not None

    # Nothing went to the store's own database.
    local = mlflow.MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    assert local.search_runs([e.experiment_id for e in local.search_experiments()]) == []
