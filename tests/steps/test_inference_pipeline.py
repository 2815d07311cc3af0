"""Every (task, estimator) pair end to end on a synthetic table with every feature kind:
train, export, load back (in this process and in a fresh one that cannot import
trainflow), identical predictions; feature inference; schema enforcement through pyfunc;
serialisation formats; task/estimator validation.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow.exceptions import MlflowException
from support.synthetic import COMMON_WORDS, ID_COLUMN, TARGET, feature_spec_for_synthetic, make_table
from threadpoolctl import threadpool_limits

import trainflow_inference
from trainflow.config.schema import load_config
from trainflow.errors import ConfigError, DataError, TrainflowError
from trainflow.ml.features import FeatureSpec, PreprocessingOptions, infer_features
from trainflow.ml.inference import load_exported, predict_table, prediction_column
from trainflow.ml.train import (
    ESTIMATORS,
    TrainResult,
    export,
    train,
    validate_model_config,
)

PAIRS = [(task, estimator) for task, choices in ESTIMATORS.items() for estimator in choices]
PAIR_IDS = [f"{task}-{estimator}" for task, estimator in PAIRS]
# Small models: the point is the plumbing, not the score.
PARAMS: dict[str, dict[str, Any]] = {
    "random_forest": {"n_estimators": 20, "random_state": 0},
    "hist_gradient_boosting": {"max_iter": 30, "random_state": 0},
    "logistic_regression": {"max_iter": 1000},
    "ridge": {"alpha": 1.0},
}
ROWS = 600
N_CLASSES = 3
TRAIN_SEED = 0
HELD_OUT_SEED = 12345
VAL_SIZE = 0.25
# Floors measured at 0.86-0.95 AUC, 0.70-0.83 accuracy and 0.48-0.78 R2 over eight
# table seeds; a model that learnt nothing sits at 0.5 AUC, 1/3 accuracy and 0 R2.
MIN_ROC_AUC = 0.8
MIN_ACCURACY = 0.55
MIN_R2 = 0.35
SRC_DIR = Path(trainflow_inference.__file__).resolve().parents[1]


@dataclass
class Exported:
    """A trained pair, its MLflow export and the held-out rows it is compared on."""

    result: TrainResult
    path: Path
    held_out: Path  # Parquet file of raw feature columns, never seen in training

    @property
    def task(self) -> str:
        return self.result.task

    def held_out_frame(self) -> pd.DataFrame:
        return pd.read_parquet(self.held_out)


@pytest.fixture(scope="module", autouse=True)
def one_openmp_thread() -> Iterator[None]:
    """Histogram boosting's OpenMP threads crawl when test workers share two cores."""
    with threadpool_limits(limits=1, user_api="openmp"):
        yield


@pytest.fixture(autouse=True)
def restore_sys_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading a pyfunc model prepends its code directory to sys.path: undo it after each test."""
    monkeypatch.setattr(sys, "path", list(sys.path))


def _train(task: str, estimator: str, spec: FeatureSpec | None, table: pd.DataFrame | None = None) -> TrainResult:
    table = make_table(ROWS, task=task, n_classes=N_CLASSES, seed=TRAIN_SEED) if table is None else table
    return train(
        table,
        TARGET,
        task,
        estimator,
        PARAMS[estimator],
        spec,
        PreprocessingOptions(),
        VAL_SIZE,
        random_seed=0,
        stratify_by=TARGET if task == "classification" else None,
    )


class ExportCache:
    """Train and export each pair once per module, on first use."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.cache: dict[tuple[str, str], Exported] = {}

    def get(self, task: str, estimator: str) -> Exported:
        if (task, estimator) not in self.cache:
            result = _train(task, estimator, feature_spec_for_synthetic())
            path = export(result, self.root / f"{task}-{estimator}")
            held_out = self.root / f"held_out-{task}.parquet"
            if not held_out.exists():
                rows = make_table(200, task=task, n_classes=N_CLASSES, seed=HELD_OUT_SEED)
                rows[feature_spec_for_synthetic().columns].to_parquet(held_out)
            self.cache[(task, estimator)] = Exported(result, path, held_out)
        return self.cache[(task, estimator)]


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> ExportCache:
    return ExportCache(tmp_path_factory.mktemp("exports"))


def _in_memory_outputs(exported: Exported, frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """What the fitted in-memory pipeline answers: labels or values, and probabilities."""
    pipeline = exported.result.pipeline
    if exported.task == "classification":
        return {
            "predict": np.asarray(pipeline.predict(frame)).astype(str),
            "proba": np.asarray(pipeline.predict_proba(frame), dtype="float64"),
        }
    return {"predict": np.asarray(pipeline.predict(frame), dtype="float64")}


@pytest.mark.parametrize(("task", "estimator"), PAIRS, ids=PAIR_IDS)
def test_validation_metrics_are_plausible(exports: ExportCache, task: str, estimator: str) -> None:
    """Each pair learns the synthetic signal: AUC and accuracy (or R2) well above chance."""
    exported = exports.get(task, estimator)
    metrics = exported.result.validation_metrics
    if task == "classification":
        assert metrics["roc_auc_ovo"] > MIN_ROC_AUC, metrics
        assert metrics["accuracy"] > max(MIN_ACCURACY, 1 / N_CLASSES), metrics
        assert 0.0 < metrics["log_loss"] < np.log(N_CLASSES), metrics  # better than uniform guessing
    else:
        assert metrics["r2"] > MIN_R2, metrics
        assert 0.0 < metrics["mae"] <= metrics["rmse"], metrics
    assert len(exported.result.validation[0]) == round(ROWS * VAL_SIZE)


@pytest.mark.parametrize(("task", "estimator"), PAIRS, ids=PAIR_IDS)
def test_export_is_skops_and_ships_its_inference_code(exports: ExportCache, task: str, estimator: str) -> None:
    """skops is the default format, and the artifact carries trainflow_inference in code/."""
    path = exports.get(task, estimator).path
    assert (path / "model.skops").is_file()
    assert not (path / "model.pkl").exists()
    assert (path / "code" / "trainflow_inference" / "__init__.py").is_file()
    mlmodel = yaml.safe_load((path / "MLmodel").read_text())
    assert mlmodel["flavors"]["sklearn"]["serialization_format"] == "skops"
    expected_fn = "predict_proba" if task == "classification" else "predict"
    assert mlmodel["flavors"]["python_function"]["predict_fn"] == expected_fn
    assert mlmodel["metadata"]["estimator"] == estimator
    inputs = [column["name"] for column in json.loads(mlmodel["signature"]["inputs"])]
    assert inputs == feature_spec_for_synthetic().columns


@pytest.mark.parametrize(("task", "estimator"), PAIRS, ids=PAIR_IDS)
def test_reloaded_in_process_predicts_identically(exports: ExportCache, task: str, estimator: str) -> None:
    """load_exported and pyfunc give exactly the in-memory predictions on held-out rows."""
    exported = exports.get(task, estimator)
    frame = exported.held_out_frame()
    expected = _in_memory_outputs(exported, frame)
    loaded = load_exported(exported.path)
    pyfunc_output = mlflow.pyfunc.load_model(str(exported.path)).predict(frame)
    if task == "classification":
        classes = [str(c) for c in exported.result.pipeline.classes_]
        assert classes == [f"class_{i}" for i in range(N_CLASSES)]
        assert np.array_equal(np.asarray(loaded.predict(frame)).astype(str), expected["predict"])
        probabilities = loaded.predict_proba(frame)
        assert isinstance(probabilities, pd.DataFrame)
        assert list(probabilities.columns) == classes
        assert np.array_equal(probabilities.to_numpy(dtype="float64"), expected["proba"])
        assert isinstance(pyfunc_output, pd.DataFrame)
        assert list(pyfunc_output.columns) == classes
        assert np.array_equal(pyfunc_output.to_numpy(dtype="float64"), expected["proba"])
        assert len(set(expected["predict"])) > 1  # not a constant model: the comparison means something
    else:
        assert np.array_equal(np.asarray(loaded.predict(frame), dtype="float64"), expected["predict"])
        values = np.asarray(pyfunc_output, dtype="float64")
        assert values.ndim == 1
        assert np.array_equal(values, expected["predict"])
        assert np.std(expected["predict"]) > 0


# Runs in `python -I` with the project's src directory removed from sys.path, so only an
# artifact's own code/ directory can provide trainflow_inference.
FRESH_PROCESS_SCRIPT = r"""
import importlib.util, json, sys
from pathlib import Path

request = json.loads(Path(sys.argv[1]).read_text())
blocked = Path(request["blocked"]).resolve()
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != blocked]
report = {name: importlib.util.find_spec(name) is not None for name in ("trainflow", "trainflow_inference")}
report["models"] = {}

import numpy as np
import pandas as pd
import mlflow.pyfunc
import mlflow.sklearn

for key, item in request["models"].items():
    sys.modules.pop("trainflow_inference", None)  # each artifact must bring its own
    frame = pd.read_parquet(item["inputs"])
    out = Path(item["outputs"])
    out.mkdir()
    pyfunc_output = mlflow.pyfunc.load_model(item["model"]).predict(frame)
    np.save(out / "pyfunc.npy", np.asarray(pyfunc_output, dtype="float64"), allow_pickle=False)
    model = mlflow.sklearn.load_model(item["model"])  # what trainflow.ml.inference.load_exported does
    if item["task"] == "classification":
        np.save(out / "predict.npy", np.asarray(model.predict(frame)).astype(str), allow_pickle=False)
        np.save(out / "proba.npy", np.asarray(model.predict_proba(frame), dtype="float64"), allow_pickle=False)
    else:
        np.save(out / "predict.npy", np.asarray(model.predict(frame), dtype="float64"), allow_pickle=False)
    report["models"][key] = {
        "pyfunc_columns": [str(c) for c in pyfunc_output.columns] if hasattr(pyfunc_output, "columns") else None,
        "inference_module": sys.modules["trainflow_inference"].__file__,
    }
report["trainflow_imported"] = "trainflow" in sys.modules
Path(request["report"]).write_text(json.dumps(report))
"""


@pytest.fixture(scope="module")
def fresh_process(exports: ExportCache, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """Load every pair's artifact in one fresh interpreter that cannot import trainflow; its outputs."""
    work = tmp_path_factory.mktemp("fresh_process")
    models = {}
    for task, estimator in PAIRS:
        exported = exports.get(task, estimator)
        models[f"{task}-{estimator}"] = {
            "task": task,
            "model": str(exported.path),
            "inputs": str(exported.held_out),
            "outputs": str(work / f"{task}-{estimator}"),
        }
    request = work / "request.json"
    request.write_text(json.dumps({"blocked": str(SRC_DIR), "models": models, "report": str(work / "report.json")}))
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    completed = subprocess.run(
        [sys.executable, "-I", "-c", FRESH_PROCESS_SCRIPT, str(request)],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return work, json.loads((work / "report.json").read_text())


def test_fresh_process_cannot_import_trainflow(fresh_process: tuple[Path, dict[str, Any]]) -> None:
    """The fresh interpreter really lacked trainflow and trainflow_inference before loading."""
    _, report = fresh_process
    assert report["trainflow"] is False
    assert report["trainflow_inference"] is False
    assert report["trainflow_imported"] is False


@pytest.mark.parametrize(("task", "estimator"), PAIRS, ids=PAIR_IDS)
def test_reloaded_in_fresh_process_predicts_identically(
    exports: ExportCache, fresh_process: tuple[Path, dict[str, Any]], task: str, estimator: str
) -> None:
    """An interpreter with only the artifact's code/ reproduces the in-memory predictions exactly."""
    work, report = fresh_process
    exported = exports.get(task, estimator)
    key = f"{task}-{estimator}"
    outputs = work / key
    inference_module = Path(report["models"][key]["inference_module"]).resolve()
    assert inference_module == (exported.path / "code" / "trainflow_inference" / "__init__.py").resolve()
    expected = _in_memory_outputs(exported, exported.held_out_frame())
    assert np.array_equal(np.load(outputs / "predict.npy"), expected["predict"])
    if task == "classification":
        assert report["models"][key]["pyfunc_columns"] == [str(c) for c in exported.result.pipeline.classes_]
        assert np.array_equal(np.load(outputs / "proba.npy"), expected["proba"])
        assert np.array_equal(np.load(outputs / "pyfunc.npy"), expected["proba"])
    else:
        assert report["models"][key]["pyfunc_columns"] is None
        pyfunc_values = np.load(outputs / "pyfunc.npy")
        assert pyfunc_values.ndim == 1
        assert np.array_equal(pyfunc_values, expected["predict"])


@pytest.mark.parametrize("task", list(ESTIMATORS))
def test_infer_features_recovers_every_kind(task: str) -> None:
    """Inference finds the numeric, categorical, text and date columns; row_id and the target stay out."""
    table = make_table(ROWS, task=task, n_classes=N_CLASSES, seed=3)
    inferred = infer_features(table, TARGET)
    expected = feature_spec_for_synthetic()
    assert inferred.as_dict() == expected.as_dict()
    assert ID_COLUMN not in inferred.columns
    assert TARGET not in inferred.columns


@pytest.mark.parametrize("task", list(ESTIMATORS))
def test_training_with_inferred_features(task: str) -> None:
    """spec=None infers the features and trains a useful model on them."""
    result = _train(task, "random_forest", spec=None)
    assert result.features.as_dict() == feature_spec_for_synthetic().as_dict()
    assert list(result.train_rows.columns) == feature_spec_for_synthetic().columns
    if task == "classification":
        assert result.validation_metrics["roc_auc_ovo"] > MIN_ROC_AUC
    else:
        assert result.validation_metrics["r2"] > MIN_R2


def test_missing_named_column_is_data_error() -> None:
    """A feature named in the spec but absent from the data is a DataError naming it."""
    table = make_table(ROWS, seed=TRAIN_SEED).drop(columns=["notes"])
    with pytest.raises(DataError, match=r"'notes'"):
        _train("classification", "random_forest", feature_spec_for_synthetic(), table=table)


@pytest.mark.parametrize("task", list(ESTIMATORS))
def test_pyfunc_rejects_a_missing_numeric_column(exports: ExportCache, task: str) -> None:
    """Schema enforcement: a frame without a numeric feature is an MlflowException naming it."""
    exported = exports.get(task, "random_forest")
    model = mlflow.pyfunc.load_model(str(exported.path))
    frame = exported.held_out_frame().drop(columns=["noise_2"])
    with pytest.raises(MlflowException, match=r"missing inputs \['noise_2'\]"):
        model.predict(frame)


def test_pyfunc_rejects_any_missing_feature_column(exports: ExportCache) -> None:
    """Schema enforcement: a frame without a categorical, text or date feature is an MlflowException naming it.

    The pipeline cannot run without any of its columns, so the signature must require
    them all; otherwise the caller gets sklearn's ValueError instead of a schema error.
    """
    exported = exports.get("classification", "random_forest")
    model = mlflow.pyfunc.load_model(str(exported.path))
    frame = exported.held_out_frame()
    spec = feature_spec_for_synthetic()
    not_schema_errors = {}
    for column in spec.categorical + spec.text + spec.datetime:
        try:
            model.predict(frame.drop(columns=[column]))
        except MlflowException as error:
            assert f"missing inputs ['{column}']" in str(error)
        except Exception as error:  # noqa: BLE001 - the wrong kind of failure is the finding
            not_schema_errors[column] = f"{type(error).__name__}: {error}"
        else:
            not_schema_errors[column] = "no error at all"
    assert not not_schema_errors, f"missing columns not caught by the signature: {not_schema_errors}"


def test_integer_feature_may_be_missing_at_serving(tmp_path: Path) -> None:
    """A numeric feature that was all integers in training still accepts missing values through pyfunc.

    The pipeline imputes numeric gaps, so the schema must not refuse them (MLflow types a
    gap-free integer column as ``long``, which cannot hold NaN).
    """
    table = make_table(ROWS, seed=TRAIN_SEED)
    table["visits"] = np.random.default_rng(1).integers(0, 20, len(table))
    spec = FeatureSpec(numeric=["signal_1", "visits"], categorical=["color"])
    result = _train("classification", "random_forest", spec, table=table)
    model = mlflow.pyfunc.load_model(str(export(result, tmp_path / "model")))
    rows = table[spec.columns].head(10).astype({"visits": "float64"})
    rows.loc[0, "visits"] = np.nan
    expected = np.asarray(result.pipeline.predict_proba(rows), dtype="float64")
    assert np.isfinite(expected).all()  # the pipeline itself handles the gap
    assert np.array_equal(np.asarray(model.predict(rows), dtype="float64"), expected)


@pytest.mark.parametrize("task", list(ESTIMATORS))
def test_pyfunc_rejects_strings_in_a_numeric_column(exports: ExportCache, task: str) -> None:
    """Text where a number is expected: the model's first step (the signature leaves a
    numeric column's type open, see trainflow.ml.train.input_signature) names the column and
    the value."""
    exported = exports.get(task, "random_forest")
    model = mlflow.pyfunc.load_model(str(exported.path))
    frame = exported.held_out_frame()
    frame["signal_1"] = frame["signal_1"].map(lambda value: f"about {value}")
    with pytest.raises(ValueError, match=r"column 'signal_1' must hold numbers; got 'about "):
        model.predict(frame)


@pytest.mark.parametrize("task", list(ESTIMATORS))
def test_pyfunc_ignores_extra_columns(exports: ExportCache, task: str) -> None:
    """Columns outside the signature (an id, the target, anything) change nothing."""
    exported = exports.get(task, "random_forest")
    model = mlflow.pyfunc.load_model(str(exported.path))
    frame = exported.held_out_frame()
    extra = frame.assign(row_id=np.arange(len(frame)), target="class_0", unrelated=np.linspace(0, 1, len(frame)))
    extra = extra[["unrelated"] + list(frame.columns[::-1]) + ["row_id", "target"]]  # order shuffled too
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = np.asarray(model.predict(frame), dtype="float64")
        with_extra = np.asarray(model.predict(extra), dtype="float64")
    assert np.array_equal(with_extra, plain)


@pytest.mark.parametrize("task", list(ESTIMATORS))
def test_cloudpickle_export_warns_and_round_trips(exports: ExportCache, task: str, tmp_path: Path) -> None:
    """serialization=cloudpickle warns (UserWarning), writes a pickle and reloads identically."""
    exported = exports.get(task, "random_forest")
    with pytest.warns(UserWarning, match="cloudpickle"):
        path = export(exported.result, tmp_path / "model", serialization="cloudpickle")
    assert (path / "model.pkl").is_file()
    assert not (path / "model.skops").exists()
    mlmodel = yaml.safe_load((path / "MLmodel").read_text())
    assert mlmodel["flavors"]["sklearn"]["serialization_format"] == "cloudpickle"
    frame = exported.held_out_frame()
    expected = _in_memory_outputs(exported, frame)
    loaded = load_exported(path)
    if task == "classification":
        assert np.array_equal(np.asarray(loaded.predict(frame)).astype(str), expected["predict"])
        assert np.array_equal(np.asarray(loaded.predict_proba(frame), dtype="float64"), expected["proba"])
    else:
        assert np.array_equal(np.asarray(loaded.predict(frame), dtype="float64"), expected["predict"])


def test_skops_export_does_not_warn(exports: ExportCache, tmp_path: Path) -> None:
    """The default (skops) export raises no serialisation warning: the warning is specific to cloudpickle."""
    exported = exports.get("classification", "random_forest")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        export(exported.result, tmp_path / "model")
    assert not [w for w in caught if "cloudpickle" in str(w.message)]


@pytest.mark.parametrize(
    ("task", "estimator"),
    [("classification", "ridge"), ("regression", "logistic_regression")],
)
def test_estimator_must_fit_the_task(project_dir: Path, task: str, estimator: str) -> None:
    """validate_model_config refuses an estimator of the other task, naming model.estimator."""
    cfg = load_config(project_dir, [f"model.task={task}", f"model.estimator={estimator}"])
    with pytest.raises(ConfigError, match=r"model\.estimator") as raised:
        validate_model_config(cfg.model, cfg.data.target)
    assert estimator in str(raised.value)


@pytest.mark.parametrize(("task", "estimator"), PAIRS, ids=PAIR_IDS)
def test_every_listed_pair_validates(project_dir: Path, task: str, estimator: str) -> None:
    """The positive control: every pair in ESTIMATORS passes validate_model_config."""
    cfg = load_config(project_dir, [f"model.task={task}", f"model.estimator={estimator}"])
    assert validate_model_config(cfg.model, cfg.data.target) is None


# The synthetic table itself (support.synthetic).


def test_synthetic_table_is_deterministic_per_seed() -> None:
    """The same arguments give the same table; another seed gives different values."""
    first = make_table(300, task="classification", seed=5)
    pd.testing.assert_frame_equal(first, make_table(300, task="classification", seed=5))
    other = make_table(300, task="classification", seed=6)
    for column in ("signal_1", "color", "notes", "event_date", TARGET):
        assert not first[column].equals(other[column]), column
    regression = make_table(300, task="regression", seed=5)
    pd.testing.assert_frame_equal(regression, make_table(300, task="regression", seed=5))
    assert not regression[TARGET].equals(make_table(300, task="regression", seed=6)[TARGET])


@pytest.mark.parametrize("n_classes", [2, 3, 5])
def test_synthetic_classification_columns_and_labels(n_classes: int) -> None:
    """Columns are row_id, the spec's features and target; labels are class_0..class_{k-1}, all present."""
    table = make_table(500, n_classes=n_classes, seed=1)
    assert list(table.columns) == [ID_COLUMN] + feature_spec_for_synthetic().columns + [TARGET]
    assert sorted(table[TARGET].unique()) == [f"class_{i}" for i in range(n_classes)]
    assert table[ID_COLUMN].tolist() == list(range(500))
    assert pd.api.types.is_integer_dtype(table[ID_COLUMN])
    for column in feature_spec_for_synthetic().numeric:
        assert pd.api.types.is_float_dtype(table[column]), column


def test_synthetic_regression_target_is_float_without_gaps() -> None:
    """The regression target is a float column with no missing value and real spread."""
    table = make_table(500, task="regression", seed=2)
    assert pd.api.types.is_float_dtype(table[TARGET])
    assert table[TARGET].notna().all()
    assert table[TARGET].std() > 1.0


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.3])
def test_synthetic_missing_values_follow_the_fraction(fraction: float) -> None:
    """Every feature column has about missing_fraction gaps; row_id and target have none."""
    table = make_table(4000, seed=3, missing_fraction=fraction)
    features = feature_spec_for_synthetic().columns
    rates = table[features].isna().mean()
    assert (abs(rates - fraction) < 0.03).all(), rates.to_dict()
    assert table[[ID_COLUMN, TARGET]].notna().all().all()


def test_synthetic_texts_and_dates_have_the_documented_shape() -> None:
    """Texts have 3-6 words from class-specific vocabularies; dates are ISO strings inside the range."""
    table = make_table(3000, n_classes=3, seed=4, missing_fraction=0.0)
    words = table["notes"].str.split()
    assert words.str.len().between(3, 6).all()
    # Each class's most frequent word outside the shared vocabulary is its own.
    favourites = set()
    for _, texts in words.groupby(table[TARGET]):
        counts = pd.Series([w for ws in texts for w in ws]).value_counts()
        favourites.add(next(word for word in counts.index if word not in COMMON_WORDS))
    assert len(favourites) == 3
    assert table["event_date"].str.fullmatch(r"\d{4}-\d{2}-\d{2}").all()
    parsed = pd.to_datetime(table["event_date"], format="%Y-%m-%d")
    assert parsed.min() >= pd.Timestamp("2020-01-01") and parsed.max() < pd.Timestamp("2023-01-01")


@pytest.mark.parametrize(
    "kwargs",
    [{"task": "ranking"}, {"n_classes": 1}, {"n_rows": 0}, {"missing_fraction": 1.0}],
)
def test_synthetic_rejects_bad_arguments(kwargs: dict[str, Any]) -> None:
    """Impossible requests are a ValueError, not a strange table."""
    arguments: dict[str, Any] = {"n_rows": 10, **kwargs}
    with pytest.raises(ValueError):
        make_table(**arguments)


@pytest.mark.parametrize("task", list(ESTIMATORS))
def test_an_empty_frame_gets_an_empty_answer(exports: ExportCache, task: str) -> None:
    """Zero rows in, zero rows out, shaped like any other answer: pyfunc (as served) gives
    the labelled probability columns or an empty float array; the loaded pipeline's
    predict an empty array of the labels' dtype. Not scikit-learn's "0 sample(s)" error."""
    exported = exports.get(task, "random_forest")
    empty = exported.held_out_frame().head(0)
    served = mlflow.pyfunc.load_model(str(exported.path)).predict(empty)
    loaded = load_exported(exported.path)
    labels = loaded.predict(empty)
    assert isinstance(labels, np.ndarray) and labels.shape == (0,)
    if task == "classification":
        classes = [str(c) for c in exported.result.pipeline.classes_]
        assert isinstance(served, pd.DataFrame)
        assert list(served.columns) == classes and len(served) == 0
        assert (served.dtypes == "float64").all()
        pd.testing.assert_frame_equal(loaded.predict_proba(empty), served)
        assert labels.dtype == exported.result.pipeline.classes_.dtype
    else:
        assert isinstance(served, np.ndarray) and served.shape == (0,) and served.dtype == np.float64
        assert labels.dtype == np.float64
        assert not hasattr(loaded, "predict_proba")  # still only where the estimator has it


@pytest.mark.parametrize("task", list(ESTIMATORS))
def test_an_empty_frame_still_needs_every_column(exports: ExportCache, task: str) -> None:
    """No rows is no excuse for a missing column: the signature (pyfunc) and the pipeline
    (loaded with sklearn) name it, as they do for a frame with rows."""
    exported = exports.get(task, "random_forest")
    empty = exported.held_out_frame().head(0).drop(columns=["noise_2"])
    with pytest.raises(MlflowException, match=r"missing inputs \['noise_2'\]"):
        mlflow.pyfunc.load_model(str(exported.path)).predict(empty)
    with pytest.raises(ValueError, match=r"columns are missing: \{'noise_2'\}"):
        load_exported(exported.path).predict(empty)


@pytest.mark.parametrize("task", list(ESTIMATORS))
def test_the_scoring_server_answers_an_empty_batch_with_no_predictions(exports: ExportCache, task: str) -> None:
    """What `mlflow models serve` does with a dataframe_split body without rows: 200 and
    ``{"predictions": []}`` (its request handler, called in this process)."""
    from mlflow.pyfunc import scoring_server

    exported = exports.get(task, "random_forest")
    model = mlflow.pyfunc.load_model(str(exported.path))
    columns = feature_spec_for_synthetic().columns
    body = json.dumps({"dataframe_split": {"columns": columns, "data": []}})
    answer = scoring_server.invocations(body, "application/json", model, model.metadata.get_input_schema())
    assert answer.status == 200, answer.response
    assert json.loads(answer.response) == {"predictions": []}


@pytest.mark.parametrize("task", list(ESTIMATORS))
def test_predict_table_of_an_empty_frame_has_the_prediction_columns(exports: ExportCache, task: str) -> None:
    """batch scoring of no rows: the input's columns and the prediction columns, no rows."""
    exported = exports.get(task, "random_forest")
    frame = exported.held_out_frame().head(0).assign(row_id=pd.Series(dtype="int64"))
    out = predict_table(exported.path, frame)
    expected = list(frame.columns) + ["prediction"]
    if task == "classification":
        expected += [f"proba_class_{i}" for i in range(N_CLASSES)]
    assert list(out.columns) == expected
    assert len(out) == 0


def test_predict_table_refuses_rows_of_the_wrong_type_in_one_error(exports: ExportCache) -> None:
    """Text in a numeric column fails schema enforcement: a DataError naming the expected
    types (batch_predict prints it as one line), not MLflow's traceback."""
    exported = exports.get("classification", "random_forest")
    frame = exported.held_out_frame().head(3)
    numeric = next(c for c in frame.columns if frame[c].dtype.kind == "f")
    broken = frame.assign(**{numeric: ["abc", "def", "ghi"]})
    with pytest.raises(
        DataError,
        match=rf"the model cannot score these rows \(column '{numeric}' must hold numbers; got 'abc'\).*{numeric}: number",
    ):
        predict_table(exported.path, broken)


def test_the_prediction_column_steps_aside_for_an_input_column_of_that_name(exports: ExportCache) -> None:
    exported = exports.get("classification", "random_forest")
    frame = exported.held_out_frame().head(4).assign(prediction="the user's own")
    out = predict_table(exported.path, frame)
    assert prediction_column(frame.columns) == "prediction_1"
    assert (out["prediction"] == "the user's own").all() and out["prediction_1"].str.startswith("class_").all()


@pytest.mark.parametrize("task", list(ESTIMATORS))
def test_pyfunc_answers_rows_that_are_nan_everywhere_as_the_pipeline_does(exports: ExportCache, task: str) -> None:
    """Every value missing: the exported imputers fill them, exactly as in training."""
    exported = exports.get(task, "random_forest")
    model = mlflow.pyfunc.load_model(str(exported.path))
    frame = exported.held_out_frame().head(3)
    empty = pd.DataFrame(
        {c: pd.Series([np.nan] * 3, dtype="float64" if frame[c].dtype.kind == "f" else object) for c in frame.columns}
    )
    served = np.asarray(model.predict(empty), dtype="float64")
    assert np.isfinite(served).all()
    expected = _in_memory_outputs(exported, empty)["proba" if task == "classification" else "predict"]
    assert np.allclose(served, expected)


def test_a_model_with_unreviewed_types_is_refused(exports: ExportCache, tmp_path: Path) -> None:
    """skops loads only the reviewed types: an export whose MLmodel no longer trusts the
    forest's Tree (as if the file came from elsewhere) is refused, naming the type."""
    import shutil

    exported = exports.get("classification", "random_forest")
    edited = tmp_path / "edited"
    shutil.copytree(exported.path, edited)
    mlmodel = yaml.safe_load((edited / "MLmodel").read_text())
    flavor = mlmodel["flavors"]["sklearn"]
    assert "sklearn.tree._tree.Tree" in flavor["skops_trusted_types"]
    flavor["skops_trusted_types"].remove("sklearn.tree._tree.Tree")
    (edited / "MLmodel").write_text(yaml.safe_dump(mlmodel))
    with pytest.raises(TrainflowError) as error:
        load_exported(edited)
    assert "['sklearn.tree._tree.Tree']" in str(error.value) and "re-export it with train_model" in str(error.value)
    assert load_exported(exported.path) is not None  # the untouched export still loads


def test_batch_predict_accepts_gap_free_integer_features(tmp_path: Path) -> None:
    """A table with an int64 feature column, as the model was trained on, is scored by
    predict_table (batch_predict), although MLflow refuses int64 for the double it is typed."""
    table = make_table(ROWS, seed=TRAIN_SEED)
    table["visits"] = np.random.default_rng(1).integers(0, 20, len(table))
    spec = FeatureSpec(numeric=["signal_1", "visits"], categorical=["color"])
    result = _train("classification", "random_forest", spec, table=table)
    path = export(result, tmp_path / "model")
    rows = table.head(10)
    assert rows["visits"].dtype == np.int64
    scored = predict_table(path, rows)
    expected = np.asarray(result.pipeline.predict_proba(rows[spec.columns]), dtype="float64")
    proba = scored[[f"proba_{c}" for c in result.pipeline.classes_]].to_numpy(dtype="float64")
    assert np.array_equal(proba, expected)
    assert scored["visits"].dtype == np.int64  # the input columns come back untouched


def test_infer_features_keeps_values_without_a_year_out_of_datetime() -> None:
    """Times of day, day/month pairs and ordinals parse as dates only by borrowing today's
    date, so their days-since-1970 would move with the serving date: not datetime."""
    rng = np.random.default_rng(0)
    minutes = rng.integers(0, 24 * 60, 300)
    table = pd.DataFrame(
        {
            "time": [f"{m // 60:02d}:{m % 60:02d}" for m in minutes],
            "day_month": [f"{d}/{m}" for d, m in zip(rng.integers(1, 28, 300), rng.integers(1, 13, 300))],
            "signup": pd.date_range("2020-01-01", periods=300, freq="D").strftime("%Y-%m-%d"),
            "y": rng.choice(["a", "b"], 300),
        }
    )
    inferred = infer_features(table, "y")
    assert inferred.datetime == ["signup"]
    assert "time" not in inferred.datetime and "day_month" not in inferred.datetime


def test_infer_features_keeps_distinct_integer_amounts() -> None:
    """An integer amount with (nearly) every value distinct is a feature; a row number,
    even in a random part of the rows, is not."""
    rng = np.random.default_rng(0)
    table = pd.DataFrame(
        {
            "row": np.arange(1000),
            "income": rng.integers(20_000, 200_000, 1000),
            "age": rng.integers(18, 90, 1000),
        }
    )
    table["y"] = np.where(table["income"] > 100_000, "yes", "no")
    part = table.sample(frac=0.64, random_state=0)  # train rows of a default split
    assert infer_features(part, "y").numeric == ["income", "age"]


def test_export_of_an_integer_feature_gives_no_integer_hint(tmp_path: Path) -> None:
    """MLflow's multi-line 'Integer columns cannot represent missing values' hint is noise
    for a numeric feature, which the export types double."""
    table = make_table(ROWS, seed=TRAIN_SEED)
    table["visits"] = np.random.default_rng(1).integers(0, 20, len(table))
    result = _train("classification", "random_forest", FeatureSpec(numeric=["signal_1", "visits"]), table=table)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        export(result, tmp_path / "model")
    assert not [w for w in caught if "integer column" in str(w.message)]


def test_integer_categorical_may_be_missing_at_serving(tmp_path: Path) -> None:
    """An integer column listed as categorical (codes) accepts a gap through pyfunc, as the
    README promises for every column: the pipeline imputes it."""
    table = make_table(ROWS, seed=TRAIN_SEED)
    table["store"] = np.random.default_rng(2).integers(0, 6, len(table))
    spec = FeatureSpec(numeric=["signal_1"], categorical=["color", "store"])
    result = _train("classification", "random_forest", spec, table=table)
    model = mlflow.pyfunc.load_model(str(export(result, tmp_path / "model")))
    rows = table[spec.columns].head(10).astype({"store": "float64"})
    expected_whole = np.asarray(result.pipeline.predict_proba(table[spec.columns].head(10)), dtype="float64")
    assert np.array_equal(np.asarray(model.predict(rows), dtype="float64"), expected_whole)
    rows.loc[0, "store"] = np.nan
    expected = np.asarray(result.pipeline.predict_proba(rows), dtype="float64")
    assert np.array_equal(np.asarray(model.predict(rows), dtype="float64"), expected)
