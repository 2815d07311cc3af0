"""What W&B users see of a pipeline, beside what MLflow users see: the real components,
run in this process through their entry points (``run.py`` as a script, as ``mlflow run``
starts them) with ``artifacts.backend=wandb``, against tests/support/wandb_double.py, which
stands in for the W&B server (no account or network here).

One scenario per module: fetch_data, check_data, split_data, a weak forest trained, tested
and promoted while the W&B Registry refuses the link; then a stronger forest trained,
tested and promoted with the link working.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import runpy
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import pytest
import wandb
from support.project import PENGUINS_PROJECT, PROJECT_DIR, pipeline_env
from support.wandb_double import FakeRun, FakeServer

from trainflow.config.components import CONFIG_DIR_ENV
from trainflow.errors import TrainflowError
from trainflow.ml.evaluate import PREDICTION_SAMPLE_ROWS, load_for_scoring
from trainflow.pipeline import step_run
from trainflow.store.wandb_backend import ANNOUNCED_ENV, WandbArtifactStore, step_backend

TARGET = "species"
REGISTRY = f"wandb-registry-model/{PENGUINS_PROJECT}"  # wandb.registry=model, promote.registered_model_name
WEAK = "model.random_forest.max_depth=1 model.random_forest.n_estimators=3"
STRONG = "model.random_forest.n_estimators=30"


@dataclass
class Step:
    code: int
    out: str
    err: str


@dataclass
class Scenario:
    server: FakeServer
    env: dict[str, str]
    steps: dict[str, list[Step]]

    def runs(self, job_type: str) -> list[FakeRun]:
        """The W&B runs of a step, oldest first."""
        return [run for run in self.server.runs if run.job_type == job_type]

    def logged(self, job_type: str, index: int = 0) -> dict[str, Any]:
        """Everything the ``index``-th W&B run of a step logged with ``run.log``, by key."""
        return {key: value for data in self.runs(job_type)[index].logged for key, value in data.items()}

    def mlflow_table(self, job_type: str, name: str, index: int = 0) -> pd.DataFrame:
        """Table ``name`` (``mlflow.log_table``) of the MLflow run of the step's ``index``-th W&B run."""
        client = mlflow.MlflowClient(self.env["MLFLOW_TRACKING_URI"])
        run = client.get_run(str(self.runs(job_type)[index].config["mlflow_run_id"]))
        return client.load_table(run.info.experiment_id, name, run_ids=[run.info.run_id])

    def store(self) -> WandbArtifactStore:
        return WandbArtifactStore(self.server, self.server.Api(), PENGUINS_PROJECT, None)


def run_component(step: str, hydra_options: str) -> Step:
    """``python components/<step>/run.py --hydra-options ...``: inputs are the configured defaults."""
    saved, out, err = sys.argv, io.StringIO(), io.StringIO()
    sys.argv = ["run.py", "--hydra-options", hydra_options]
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            runpy.run_path(str(PROJECT_DIR / "components" / step / "run.py"), run_name="__main__")
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    finally:
        sys.argv = saved
    return Step(code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    root = tmp_path_factory.mktemp("wandb_logging")
    server = FakeServer(root / "wandb-server")
    steps: dict[str, list[Step]] = {}
    with pytest.MonkeyPatch.context() as patch:
        for leaked in (
            "MLFLOW_RUN_ID",
            "MLFLOW_EXPERIMENT_ID",
            "MLFLOW_EXPERIMENT_NAME",
            CONFIG_DIR_ENV,
            ANNOUNCED_ENV,
        ):
            patch.delenv(leaked, raising=False)
        for variable in ("WANDB_PROJECT", "WANDB_ENTITY", "WANDB_RUN_GROUP", "WANDB_MODE"):
            patch.delenv(variable, raising=False)
        env = pipeline_env(root / "home")
        for key in ("TRAINFLOW_HOME", "MLFLOW_TRACKING_URI"):
            patch.setenv(key, env[key])
        # Every step's W&B run and artifacts go to the double instead of the W&B server.
        patch.setattr(step_run, "step_backend", functools.partial(step_backend, sdk=server))

        def run(step: str, options: str = "") -> None:
            result = run_component(step, f"artifacts.backend=wandb {options}")
            assert result.code == 0, f"{step}: {result.out[-3000:]}{result.err[-3000:]}"
            steps.setdefault(step, []).append(result)

        for step in ("fetch_data", "check_data", "split_data"):
            run(step)
        run("train_model", WEAK)
        run("test_model")
        server.fail_link = PermissionError("403 Forbidden: no access to registry 'model'")
        run("promote_model")
        server.fail_link = None
        run("train_model", STRONG)
        run("test_model")
        run("promote_model", "promote.force=true")  # whatever the two forests score: this is about the link
        try:
            yield Scenario(server, env, steps)
        finally:
            mlflow.set_tracking_uri(None)


def test_check_data_logs_its_report_as_a_table_on_w_and_b_and_mlflow(scenario: Scenario) -> None:
    table = scenario.logged("check_data")["data_checks"]
    assert isinstance(table, wandb.Table)
    report = scenario.store().use_artifact("data_check_report:latest")
    checks = json.loads((report / "data_check_report.json").read_text())["checks"]
    assert table.columns == list(checks[0]) and "verdict" in table.columns and "message" in table.columns
    assert len(table.data) == len(checks) > 5
    rows = pd.DataFrame(table.data, columns=table.columns)
    assert rows["name"].tolist() == [check["name"] for check in checks]
    assert set(rows["verdict"]) <= {"pass", "warn"}  # the clean penguins pass
    # The same table in the MLflow run, beside the report's JSON and Markdown
    with_mlflow = scenario.mlflow_table("check_data", "data_checks.json")
    assert list(with_mlflow.columns) == table.columns and len(with_mlflow) == len(checks)
    assert with_mlflow["name"].tolist() == rows["name"].tolist()


def test_test_model_logs_a_sample_of_its_predictions_on_w_and_b_and_mlflow(scenario: Scenario) -> None:
    store = scenario.store()
    model_dir = store.use_artifact("model_export:v0")
    test = pd.read_parquet(store.use_artifact("test_data.parquet:latest"))
    exported = load_for_scoring(model_dir, test, TARGET)
    rows = min(PREDICTION_SAMPLE_ROWS, len(exported.labels))
    table = scenario.logged("test_model")["test_predictions"]
    assert isinstance(table, wandb.Table)
    assert table.columns == [*exported.features.columns, TARGET, "prediction", "probability"]
    assert len(table.data) == rows
    sample = pd.DataFrame(table.data, columns=table.columns)
    # The predictions are the exported model's, on the first test rows, beside the truth.
    head = exported.features.iloc[:rows]
    assert sample["prediction"].tolist() == exported.model.predict(head).tolist()
    assert sample[TARGET].tolist() == exported.labels.iloc[:rows].tolist()
    best = exported.model.predict_proba(head).max(axis=1)
    assert sample["probability"].to_numpy() == pytest.approx(best)
    with_mlflow = scenario.mlflow_table("test_model", "test_predictions.json")
    assert list(with_mlflow.columns) == table.columns and len(with_mlflow) == rows
    assert with_mlflow["prediction"].tolist() == sample["prediction"].tolist()


def test_a_failed_registry_link_warns_and_leaves_the_promotion_as_it_is(scenario: Scenario) -> None:
    """Linking comes after the store's alias and MLflow's moved: a refused link is a
    warning naming the fix, and prod is where the gate put it, in both."""
    [first, _] = scenario.steps["promote_model"]
    assert first.code == 0 and "promoted model_export:v0 to 'prod'" in first.out
    [warning] = [line for line in (first.out + first.err).splitlines() if "warning:" in line]
    assert "model_export:v0 is 'prod' in the store and the MLflow Model Registry, not yet in W&B's" in warning
    assert f"cannot link model_export:v0 to the W&B Registry collection {REGISTRY} (403 Forbidden" in warning
    assert f"wandb.Api().artifact('{PENGUINS_PROJECT}/model_export:v0').link('{REGISTRY}', aliases=['prod'])" in warning
    [promote_run, _] = scenario.runs("promote_model")
    assert ("link_artifact", promote_run.id, "model_export:v0", REGISTRY, ("prod",)) in scenario.server.calls
    assert promote_run.exit_code == 0
    # The first decision, as recorded on the version it promoted: prod moved in the store and MLflow
    [entry] = scenario.store().get("model_export:v0").metadata["promotions"]
    assert (entry["outcome"], entry["before"], entry["after"]) == ("promoted", None, "model_export:v0")
    client = mlflow.MlflowClient(scenario.env["MLFLOW_TRACKING_URI"])
    first_version = entry["details"]["registry"]["version"]
    assert client.get_model_version(PENGUINS_PROJECT, str(first_version)).tags["trainflow.artifact"] == (
        "model_export:v0"
    )


def test_promotion_links_the_production_model_to_the_w_and_b_registry(scenario: Scenario) -> None:
    [_, second] = scenario.steps["promote_model"]
    assert "promoted model_export:v1 to 'prod'" in second.out
    assert f"linked model_export:v1 to the W&B Registry: {REGISTRY} with alias 'prod'" in second.out
    assert "warning:" not in second.out + second.err
    [_, promote_run] = scenario.runs("promote_model")
    assert ("link_artifact", promote_run.id, "model_export:v1", REGISTRY, ("prod",)) in scenario.server.calls
    [link] = scenario.server.registry[REGISTRY]  # the failed first link added nothing
    assert (link.source, link.aliases) == ("model_export:v1", ["latest", "prod"])
    # The registry's prod is the store's prod and the MLflow Model Registry's
    assert scenario.store().get("model_export:prod").ref == "model_export:v1"
    client = mlflow.MlflowClient(scenario.env["MLFLOW_TRACKING_URI"])
    assert client.get_model_version_by_alias(PENGUINS_PROJECT, "prod").tags["trainflow.artifact"] == "model_export:v1"


def test_a_link_from_an_offline_run_fails_in_one_line_naming_the_fix(tmp_path: Path) -> None:
    """W&B cannot link from an offline run (the SDK raises NotImplementedError)."""
    server = FakeServer(tmp_path / "server")
    (tmp_path / "m.txt").write_text("model")
    writer = WandbArtifactStore(server, server.Api(), "p", "team", server.init(project="p"), tmp_path / "dl")
    writer.log_artifact(tmp_path / "m.txt", "model_export", "model_export")
    offline = WandbArtifactStore(server, server.Api(), "p", "team", server.init(mode="offline"), tmp_path / "dl")
    with pytest.raises(TrainflowError) as error:
        offline.link_to_registry("model_export:v0", "wandb-registry-model/p", ["prod"])
    message = str(error.value)
    assert "\n" not in message and "NotImplementedError" in message
    assert "wandb.Api().artifact('team/p/model_export:v0').link('wandb-registry-model/p', aliases=['prod'])" in message
    assert server.registry == {}
