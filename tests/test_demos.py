"""The teaching demos run as a user runs them (a subprocess, its own output folder and
MLflow database), and produce what they claim: identical predictions after reloading, a
loadable artifact, unknown categories handled.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import PROJECT_DIR, run_command

SKLEARN_DEMO = PROJECT_DIR / "demo" / "sklearn_pipeline" / "run.py"
# Each demo takes well under a minute on 2 cores; the generous bound only stops a hang.
DEMO_TIMEOUT_SECONDS = 180


@dataclass
class DemoRun:
    output_dir: Path
    result: subprocess.CompletedProcess[str]
    env: dict[str, str]


def _run_demo(script: Path, root: Path) -> DemoRun:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME")}
    env.update(
        MLFLOW_TRACKING_URI=f"sqlite:///{root / 'mlflow.db'}",
        PYTHONUNBUFFERED="1",
        # Surface deprecation warnings (hidden by default outside __main__), in the
        # scoring subprocess too, so the torch export path can be checked for them.
        PYTHONWARNINGS="always::DeprecationWarning",
    )
    output_dir = root / "output"
    result = run_command([sys.executable, str(script), "--output-dir", str(output_dir)], env=env, timeout=DEMO_TIMEOUT_SECONDS)
    assert result.returncode == 0, f"{script} failed:\n{result.stdout}\n{result.stderr}"
    return DemoRun(output_dir, result, env)


def _printed_number(stdout: str, label: str) -> float:
    match = re.search(rf"{re.escape(label)}\s*:?\s*([0-9.]+)", stdout)
    assert match, f"{label!r} not in the demo's output:\n{stdout}"
    return float(match.group(1))


# ---------------------------------------------------------------- scikit-learn demo


@pytest.fixture(scope="module")
def sklearn_demo(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    return _run_demo(SKLEARN_DEMO, tmp_path_factory.mktemp("sklearn_demo"))


def test_sklearn_demo_shows_what_forgetting_preprocessing_costs(sklearn_demo: DemoRun) -> None:
    stdout = sklearn_demo.result.stdout
    by_hand = _printed_number(stdout, "accuracy, preprocessing repeated by hand at prediction time")
    forgotten = _printed_number(stdout, "accuracy, the same model on raw rows (scaler forgotten)")
    pipeline = _printed_number(stdout, "accuracy, Pipeline on raw rows (missing values included)")
    assert forgotten < by_hand - 0.2, "the demo's point is that skipping the scaler hurts; it does not here"
    assert pipeline >= by_hand - 0.02
    assert "ValueError: Input X contains NaN" in stdout
    assert "same probabilities as Pipeline: True" in stdout
    assert "['simpleimputer', 'standardscaler', 'logisticregression']" in stdout


def test_sklearn_demo_column_transformer_uses_every_kind_of_column(sklearn_demo: DemoRun) -> None:
    stdout = sklearn_demo.result.stdout
    for kind in ("numeric", "categorical", "text"):
        assert re.search(rf"^{kind}\s+\d+ raw column\(s\) ->\s+[1-9]\d* features", stdout, re.MULTILINE), kind
    assert "Atlantis" in stdout  # the row with an island never seen in training was scored


def test_sklearn_demo_export_reloads_with_identical_predictions(sklearn_demo: DemoRun) -> None:
    import mlflow.pyfunc
    import mlflow.sklearn
    from mlflow.models import Model

    assert "identical to the in-memory pipeline: True" in sklearn_demo.result.stdout
    assert "pyfunc flavour (as served): identical: True" in sklearn_demo.result.stdout
    model_dir = sklearn_demo.output_dir / "model"
    rows = pd.read_parquet(sklearn_demo.output_dir / "rows.parquet")
    in_memory = pd.read_parquet(sklearn_demo.output_dir / "predictions.parquet")
    # Loaded here, in another process than the one that trained it.
    np.testing.assert_array_equal(mlflow.sklearn.load_model(str(model_dir)).predict_proba(rows), in_memory.to_numpy())
    np.testing.assert_array_equal(mlflow.pyfunc.load_model(str(model_dir)).predict(rows), in_memory.to_numpy())

    model = Model.load(str(model_dir))
    inputs = model.signature.inputs.inputs
    assert [c.name for c in inputs] == list(rows.columns)
    assert all(c.required for c in inputs)
    assert model.flavors["sklearn"]["serialization_format"] == "skops"
    example = json.loads((model_dir / "input_example.json").read_text())
    assert example["columns"] == list(rows.columns) and example["data"]


def test_sklearn_demo_model_refuses_rows_without_a_required_column(sklearn_demo: DemoRun) -> None:
    import mlflow.pyfunc
    from mlflow.exceptions import MlflowException

    rows = pd.read_parquet(sklearn_demo.output_dir / "rows.parquet")
    served = mlflow.pyfunc.load_model(str(sklearn_demo.output_dir / "model"))
    with pytest.raises(MlflowException, match="Comments"):
        served.predict(rows.drop(columns=["Comments"]))
