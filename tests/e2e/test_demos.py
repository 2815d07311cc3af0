"""The two teaching demos run as a user runs them (a subprocess, its own output folder
and MLflow database), and produce what they claim: identical predictions after reloading,
a loadable artifact, unknown categories handled. The PyTorch demo's tests need the
optional torch extra and are skipped, saying so, without it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest
from support.project import PROJECT_DIR, run_command, tracking_at

SKLEARN_DEMO = PROJECT_DIR / "demo" / "sklearn_pipeline" / "run.py"
PYTORCH_DEMO = PROJECT_DIR / "demo" / "pytorch" / "run.py"
TORCH_MISSING = "torch is not installed: it is the optional extra (pip install -e '.[torch]', or make test-torch)"
# Each demo takes well under a minute on 2 cores; the generous bound only stops a hang.
DEMO_TIMEOUT_SECONDS = 180


@dataclass
class DemoRun:
    output_dir: Path
    result: subprocess.CompletedProcess[str]
    env: dict[str, str]


def _run_demo(script: Path, root: Path) -> DemoRun:
    leaked = ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME")
    env = {k: v for k, v in os.environ.items() if k not in leaked}
    env.update(
        MLFLOW_TRACKING_URI=f"sqlite:///{root / 'mlflow.db'}",
        PYTHONUNBUFFERED="1",
        # Surface deprecation warnings (hidden by default outside __main__), in the
        # scoring subprocess too, so the torch export path can be checked for them.
        PYTHONWARNINGS="always::DeprecationWarning",
    )
    output_dir = root / "output"
    command = [sys.executable, str(script), "--output-dir", str(output_dir)]
    result = run_command(command, env=env, timeout=DEMO_TIMEOUT_SECONDS)
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


# ---------------------------------------------------------------- PyTorch demo


@pytest.fixture(scope="module")
def pytorch_demo(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    pytest.importorskip("torch", reason=TORCH_MISSING)
    return _run_demo(PYTORCH_DEMO, tmp_path_factory.mktemp("pytorch_demo"))


@pytest.fixture(scope="module")
def demo_module() -> Iterator[ModuleType]:
    """demo/pytorch/run.py imported as a module (its main() does not run)."""
    pytest.importorskip("torch", reason=TORCH_MISSING)
    sys.path.insert(0, str(PYTORCH_DEMO.parent))  # run.py imports its sibling serving.py
    try:
        spec = importlib.util.spec_from_file_location("pytorch_demo_run", PYTORCH_DEMO)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up while it loads
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path.remove(str(PYTORCH_DEMO.parent))
        sys.modules.pop("pytorch_demo_run", None)
        sys.modules.pop("serving", None)


def test_pytorch_demo_reloaded_model_matches_in_separate_process(pytorch_demo: DemoRun) -> None:
    stdout = pytorch_demo.result.stdout
    parent = re.search(r"\[run\.py, process (\d+)\]", stdout)
    child = re.search(r"\[score\.py, process (\d+)\] loaded (\S+), scored (\d+) raw rows", stdout)
    assert parent and child, stdout
    assert parent.group(1) != child.group(1)
    in_memory = pd.read_parquet(pytorch_demo.output_dir / "predictions_in_memory.parquet")
    reloaded = pd.read_parquet(pytorch_demo.output_dir / "predictions_reloaded.parquet")
    assert int(child.group(3)) == len(in_memory) == len(reloaded)
    assert list(reloaded.columns) == list(in_memory.columns) == ["Adelie", "Chinstrap", "Gentoo"]
    np.testing.assert_allclose(reloaded.to_numpy(), in_memory.to_numpy(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(reloaded.sum(axis=1), 1.0, atol=1e-5)


def test_pytorch_demo_learns(pytorch_demo: DemoRun) -> None:
    accuracy = _printed_number(pytorch_demo.result.stdout, "test accuracy on raw rows")
    assert accuracy >= 0.9  # three well separated species: a working network gets most right


def test_pytorch_demo_logged_model_loads_by_uri_and_checks_its_inputs(pytorch_demo: DemoRun) -> None:
    import mlflow.pyfunc
    from mlflow.exceptions import MlflowException

    model_uri = (pytorch_demo.output_dir / "model_uri.txt").read_text().strip()
    with tracking_at(pytorch_demo.env["MLFLOW_TRACKING_URI"]):
        model = mlflow.pyfunc.load_model(model_uri)
    assert [c.name for c in model.metadata.signature.inputs.inputs] == [
        "bill_length_mm",
        "bill_depth_mm",
        "flipper_length_mm",
        "body_mass_g",
        "island",
        "sex",
    ]
    rows = pd.read_parquet(pytorch_demo.output_dir / "rows.parquet")
    in_memory = pd.read_parquet(pytorch_demo.output_dir / "predictions_in_memory.parquet")
    np.testing.assert_allclose(model.predict(rows).to_numpy(), in_memory.to_numpy(), rtol=0, atol=1e-6)
    # One raw row (the batch size is dynamic down to 1) with an unseen island and gaps.
    single = rows.head(1).assign(island="Atlantis", sex=None, body_mass_g=np.nan)
    answer = model.predict(single)
    assert answer.shape == (1, 3) and np.isfinite(answer.to_numpy()).all()
    with pytest.raises(MlflowException, match="island"):
        model.predict(rows.drop(columns=["island"]))


def test_pytorch_demo_artifact_is_self_contained(pytorch_demo: DemoRun) -> None:
    import mlflow.artifacts

    model_uri = (pytorch_demo.output_dir / "model_uri.txt").read_text().strip()
    with tracking_at(pytorch_demo.env["MLFLOW_TRACKING_URI"]):
        local = Path(mlflow.artifacts.download_artifacts(model_uri, dst_path=str(pytorch_demo.output_dir / "download")))
    assert (local / "serving.py").is_file()
    assert list(local.glob("artifacts/*.pt2"))
    assert "import run" not in (local / "serving.py").read_text()  # the model's code needs no training code
    requirements = (local / "requirements.txt").read_text().split()
    assert "torch==2.13.0" in requirements  # the release, without the local +cpu label


def test_pytorch_demo_has_no_torch_deprecation_warnings(pytorch_demo: DemoRun) -> None:
    """The reason the demo exports with torch.export: TorchScript warns as deprecated."""
    torch_warnings = [
        line
        for line in pytorch_demo.result.stderr.splitlines()
        if "Warning" in line and ("/torch/" in line or "torch.jit" in line)
    ]
    assert not torch_warnings, torch_warnings


def test_lookup_sends_unknown_and_missing_categories_to_the_unknown_bucket(demo_module: ModuleType) -> None:
    import torch
    from serving import category_code

    train = pd.DataFrame({"x": [1.0, 2.0, 3.0], "island": ["Dream", "Biscoe", "Dream"]})
    network = demo_module.TabularNetwork(demo_module.fit_preprocessing(train, ["x"], ["island"]), n_classes=2)
    codes = torch.tensor([[category_code(v)] for v in ["Biscoe", "Dream", "Atlantis", None, "dream"]])
    indices = network.category_indices(codes)[:, 0].tolist()
    # Known values get their place in the sorted vocabulary counting from 1; the rest 0.
    assert indices == [1, 2, 0, 0, 0]


def test_normalisation_uses_training_statistics_only(demo_module: ModuleType) -> None:
    import torch

    train = pd.DataFrame({"x": [10.0, 20.0, 30.0], "island": ["Dream"] * 3})
    later = pd.DataFrame({"x": [1000.0, 2000.0], "island": ["Dream"] * 2})  # a shifted distribution
    preprocessing = demo_module.fit_preprocessing(train, ["x"], ["island"])
    network = demo_module.TabularNetwork(preprocessing, n_classes=2)
    assert network.numeric_mean.tolist() == pytest.approx([20.0])
    assert network.numeric_std.tolist() == pytest.approx([float(np.std([10.0, 20.0, 30.0]))])
    scaled = network.normalise(torch.tensor([[10.0], [20.0], [1000.0], [float("nan")]]))[:, 0].tolist()
    expected_std = float(np.std([10.0, 20.0, 30.0]))
    assert scaled[:3] == pytest.approx([-10.0 / expected_std, 0.0, 980.0 / expected_std])
    assert scaled[3] == 0.0  # a missing number becomes the training mean
    # Statistics do not move when the module sees other data.
    network(*demo_module.encode_raw_rows(later, ["x"], ["island"]))
    assert network.numeric_mean.tolist() == pytest.approx([20.0])


def test_exported_program_matches_the_module_for_any_number_of_rows(demo_module: ModuleType, tmp_path: Path) -> None:
    import torch

    penguins = pd.read_csv(PROJECT_DIR / "data" / "penguins.csv")
    columns = demo_module.NUMERIC + demo_module.CATEGORICAL
    preprocessing = demo_module.fit_preprocessing(penguins, demo_module.NUMERIC, demo_module.CATEGORICAL)
    torch.manual_seed(0)
    network = demo_module.TabularNetwork(preprocessing, n_classes=3).eval()
    path = tmp_path / "network.pt2"
    demo_module.export(network, penguins[columns].head(8), path)
    program = torch.export.load(path).module()
    odd = penguins[columns].head(3).assign(island=["Atlantis", None, "Dream"])
    for rows in (penguins[columns].head(1), odd, penguins[columns]):
        inputs = demo_module.encode_raw_rows(rows, demo_module.NUMERIC, demo_module.CATEGORICAL)
        with torch.no_grad():
            torch.testing.assert_close(program(*inputs), network(*inputs))
