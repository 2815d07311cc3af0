"""The inference pipeline (trainflow.model) and its metrics (trainflow.evaluate):
building, training on penguins, exporting with MLflow and loading back.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score
from sklearn.pipeline import Pipeline

from trainflow.data import split_dataset
from trainflow.errors import ConfigError, DataError
from trainflow.evaluate import classification_metrics, score_exported_model
from trainflow.model import (
    MODEL_REQUIREMENTS,
    TrainResult,
    build_pipeline,
    export,
    load_exported,
    train,
    validate_estimator_params,
)

PENGUINS = Path(__file__).resolve().parents[1] / "data" / "penguins.csv"
TARGET = "species"
NUMERIC = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]
CATEGORICAL = ["island", "sex"]
FEATURES = NUMERIC + CATEGORICAL
PARAMS: dict[str, Any] = {"n_estimators": 30, "random_state": 0}


@pytest.fixture(scope="module")
def splits() -> tuple[pd.DataFrame, pd.DataFrame]:
    """(trainval, test) of penguins, stratified by species."""
    return split_dataset(pd.read_csv(PENGUINS), TARGET, 0.2, 42, TARGET)


@pytest.fixture(scope="module")
def trained(splits: tuple[pd.DataFrame, pd.DataFrame]) -> TrainResult:
    """A forest trained on the trainval part with the project's features."""
    trainval, _ = splits
    return train(trainval, TARGET, NUMERIC, CATEGORICAL, PARAMS, val_size=0.2, random_seed=42, stratify_by=TARGET)


@pytest.fixture(scope="module")
def exported(trained: TrainResult, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The trained pipeline exported as an MLflow model directory."""
    path = tmp_path_factory.mktemp("export") / "model"
    return export(trained.pipeline, trained.features, path, metadata=trained.summary())


def test_build_pipeline_structure() -> None:
    """A Pipeline of a ColumnTransformer 'preprocess' over the given columns and a forest 'model'."""
    pipeline = build_pipeline(NUMERIC, CATEGORICAL, {"n_estimators": 7, "max_depth": 3})
    assert isinstance(pipeline, Pipeline)
    assert [name for name, _ in pipeline.steps] == ["preprocess", "model"]
    preprocess = pipeline.named_steps["preprocess"]
    assert isinstance(preprocess, ColumnTransformer)
    assert {name: cols for name, _, cols in preprocess.transformers} == {"numeric": NUMERIC, "categorical": CATEGORICAL}
    model = pipeline.named_steps["model"]
    assert isinstance(model, RandomForestClassifier)
    assert (model.n_estimators, model.max_depth) == (7, 3)


def test_build_pipeline_bad_param_type() -> None:
    """An unknown keyword reaching the estimator constructor is a ConfigError."""
    with pytest.raises(ConfigError, match="model.random_forest"):
        build_pipeline(NUMERIC, CATEGORICAL, {"n_trees": 5})


def test_validate_estimator_params_rejects_unknown() -> None:
    """An unknown key is a ConfigError naming it."""
    with pytest.raises(ConfigError, match=r"model\.random_forest\.n_trees\b"):
        validate_estimator_params({"n_estimators": 10, "n_trees": 5})


def test_validate_estimator_params_accepts_real() -> None:
    """Real RandomForestClassifier parameters pass."""
    params = {"n_estimators": 10, "max_depth": None, "min_samples_leaf": 2, "class_weight": "balanced", "random_state": 1}
    assert validate_estimator_params(params) is None


def test_train_penguins_sanity_floors(trained: TrainResult, splits: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    """Penguins is easy: validation ROC AUC > 0.9 and accuracy > 0.85; row counts add up."""
    trainval, _ = splits
    metrics = trained.validation_metrics
    assert metrics["roc_auc_ovo"] > 0.9
    assert metrics["accuracy"] > 0.85
    assert 0.0 <= metrics["f1_macro"] <= 1.0
    assert trained.n_train + trained.n_validation == len(trainval)
    assert list(trained.features.columns) == FEATURES
    assert sorted(trained.pipeline.classes_) == sorted(trainval[TARGET].unique())
    summary = trained.summary()
    assert summary["features"] == FEATURES
    assert summary["rows"] == {"train": trained.n_train, "validation": trained.n_validation}


def test_train_single_class_is_data_error(splits: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    """A target with one class is a DataError, not an sklearn traceback."""
    trainval, _ = splits
    one_class = trainval[trainval[TARGET] == "Adelie"]
    with pytest.raises(DataError, match="single class"):
        train(one_class, TARGET, NUMERIC, CATEGORICAL, PARAMS, 0.2, 42, None)


def test_train_missing_feature_is_data_error(splits: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    """A configured feature absent from the data is a DataError naming it."""
    trainval, _ = splits
    with pytest.raises(DataError, match="'wing_span'"):
        train(trainval, TARGET, NUMERIC + ["wing_span"], CATEGORICAL, PARAMS, 0.2, 42, TARGET)


def test_predict_with_nans_and_unseen_category(trained: TrainResult, splits: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    """Rows with missing values and an island never seen in training still get valid predictions."""
    _, test = splits
    rows = test[FEATURES].head(4).copy()
    rows.loc[0, NUMERIC] = np.nan
    rows.loc[1, "sex"] = np.nan
    rows.loc[2, "island"] = "Atlantis"
    rows.loc[3, FEATURES] = np.nan
    predicted = trained.pipeline.predict(rows)
    probabilities = trained.pipeline.predict_proba(rows)
    assert len(predicted) == 4
    assert set(predicted) <= set(trained.pipeline.classes_)
    assert probabilities.shape == (4, len(trained.pipeline.classes_))
    assert np.isfinite(probabilities).all()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)


def test_export_round_trip_identical(trained: TrainResult, exported: Path, splits: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    """The loaded artifact predicts exactly what the in-memory pipeline predicts on held-out rows."""
    _, test = splits
    held_out = test[FEATURES]
    loaded = load_exported(exported)
    assert np.array_equal(loaded.predict(held_out), trained.pipeline.predict(held_out))
    np.testing.assert_allclose(loaded.predict_proba(held_out), trained.pipeline.predict_proba(held_out), rtol=0, atol=0)
    assert list(loaded.classes_) == list(trained.pipeline.classes_)


def test_export_mlmodel_signature_and_example(exported: Path) -> None:
    """MLmodel carries a signature over the six feature columns and points at an input example."""
    mlmodel = yaml.safe_load((exported / "MLmodel").read_text())
    inputs = json.loads(mlmodel["signature"]["inputs"])
    assert [column["name"] for column in inputs] == FEATURES
    example_info = mlmodel["saved_input_example_info"]
    example_file = exported / example_info["artifact_path"]
    assert example_file.is_file()
    assert example_file.stat().st_size > 0
    assert mlmodel["flavors"]["sklearn"]["serialization_format"] == "skops"
    assert mlmodel["metadata"]["features"] == FEATURES


def test_export_requirements_pinned(exported: Path) -> None:
    """requirements.txt pins mlflow and scikit-learn (and the rest) with '=='."""
    lines = [line.strip() for line in (exported / "requirements.txt").read_text().splitlines() if line.strip()]
    pins = dict(line.split("==", 1) for line in lines if "==" in line)
    from importlib.metadata import version

    for package in ("mlflow", "scikit-learn"):
        assert pins.get(package) == version(package), lines
    assert set(MODEL_REQUIREMENTS) <= set(pins), lines


def test_score_exported_model(exported: Path, splits: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    """Scoring the artifact on the test part gives the three metrics in [0, 1], matching sklearn."""
    _, test = splits
    metrics = score_exported_model(exported, test, TARGET)
    assert set(metrics) == {"roc_auc_ovo", "accuracy", "f1_macro"}
    for name, value in metrics.items():
        assert 0.0 <= value <= 1.0, name
    model = load_exported(exported)
    assert metrics["accuracy"] == pytest.approx(accuracy_score(test[TARGET], model.predict(test[FEATURES])))


def test_score_exported_model_missing_feature(exported: Path, splits: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    """A test frame without a signature column is a DataError naming that column."""
    _, test = splits
    with pytest.raises(DataError, match="'flipper_length_mm'"):
        score_exported_model(exported, test.drop(columns=["flipper_length_mm"]), TARGET)


BINARY_LABELS = {
    "strings": ["no", "yes"],
    "integers": [0, 1],
}
MULTI_LABELS = {
    "strings": ["Adelie", "Chinstrap", "Gentoo"],
    "integers": [0, 1, 2],
}


def _random_case(classes: list[Any], rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from ``classes`` and noisy probability rows, one column per class."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, len(classes), size=rows)
    codes[: len(classes)] = np.arange(len(classes))  # every class present
    scores = rng.random((rows, len(classes)))
    scores[np.arange(rows), codes] += 0.6  # informative but imperfect
    probabilities = scores / scores.sum(axis=1, keepdims=True)
    return np.asarray(classes)[codes], probabilities


@pytest.mark.parametrize("kind", sorted(BINARY_LABELS))
def test_classification_metrics_binary(kind: str) -> None:
    """Two classes: AUC equals sklearn's on the positive column; accuracy and F1 match sklearn."""
    classes = BINARY_LABELS[kind]
    y_true, probabilities = _random_case(classes, 60, seed=1)
    metrics = classification_metrics(y_true, probabilities, classes)
    assert metrics["roc_auc_ovo"] == pytest.approx(roc_auc_score(y_true == classes[1], probabilities[:, 1]))
    predicted = np.asarray(classes)[probabilities.argmax(axis=1)]
    assert metrics["accuracy"] == pytest.approx(accuracy_score(y_true, predicted))
    assert metrics["f1_macro"] == pytest.approx(f1_score(y_true, predicted, average="macro"))
    assert metrics["accuracy"] < 1.0  # the case is imperfect, so the match is not trivial


@pytest.mark.parametrize("kind", sorted(MULTI_LABELS))
def test_classification_metrics_three_classes(kind: str) -> None:
    """Three classes: AUC equals sklearn's macro one-vs-one; accuracy and F1 match sklearn."""
    classes = MULTI_LABELS[kind]
    y_true, probabilities = _random_case(classes, 90, seed=2)
    metrics = classification_metrics(y_true, probabilities, classes)
    expected_auc = roc_auc_score(y_true, probabilities, multi_class="ovo", average="macro", labels=classes)
    assert metrics["roc_auc_ovo"] == pytest.approx(expected_auc)
    predicted = np.asarray(classes)[probabilities.argmax(axis=1)]
    assert metrics["accuracy"] == pytest.approx(accuracy_score(y_true, predicted))
    assert metrics["f1_macro"] == pytest.approx(f1_score(y_true, predicted, average="macro", labels=classes))
    assert metrics["accuracy"] < 1.0


@pytest.mark.parametrize("classes", [["a", "b"], ["a", "b", "c"]])
def test_classification_metrics_perfect_predictor(classes: list[str]) -> None:
    """One-hot probabilities on the true class give accuracy, F1 and AUC of 1.0."""
    y_true = np.asarray(classes * 5)
    probabilities = (y_true[:, None] == np.asarray(classes)[None, :]).astype(float)
    metrics = classification_metrics(y_true, probabilities, classes)
    assert metrics == {"accuracy": 1.0, "f1_macro": 1.0, "roc_auc_ovo": 1.0}


def test_classification_metrics_single_class_auc_is_nan() -> None:
    """With one class present AUC is undefined and reported as NaN, accuracy still computed."""
    classes = ["a", "b"]
    y_true = np.asarray(["a", "a", "a"])
    probabilities = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3]])
    metrics = classification_metrics(y_true, probabilities, classes)
    assert np.isnan(metrics["roc_auc_ovo"])
    assert metrics["accuracy"] == pytest.approx(2 / 3)


def test_train_integer_target(splits: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    """A numerically encoded target (0/1/2) trains like the string one: sklearn handles it, so must trainflow."""
    trainval, _ = splits
    codes = {name: code for code, name in enumerate(sorted(trainval[TARGET].unique()))}
    encoded = trainval.assign(**{TARGET: trainval[TARGET].map(codes).astype(int)})
    result = train(encoded, TARGET, NUMERIC, CATEGORICAL, PARAMS, 0.2, 42, TARGET)
    assert result.validation_metrics["accuracy"] > 0.85
    assert result.validation_metrics["roc_auc_ovo"] > 0.9
