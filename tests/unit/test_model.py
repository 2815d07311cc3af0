"""The inference pipeline (trainflow.ml.train) and its metrics (trainflow.ml.evaluate):
building, training on penguins, exporting with MLflow and loading back.
"""

from __future__ import annotations

import json
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import Ridge
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    log_loss,
    precision_score,
    recall_score,
    roc_auc_score,
)
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OrdinalEncoder

from trainflow.config.schema import load_config
from trainflow.errors import ConfigError, DataError
from trainflow.ml.data import split_dataset
from trainflow.ml.evaluate import (
    classification_metrics,
    headline,
    load_for_scoring,
    metric_key,
    regression_metrics,
    score_exported_model,
)
from trainflow.ml.inference import load_exported
from trainflow.ml.train import (
    MODEL_REQUIREMENTS,
    FeatureSpec,
    PreprocessingOptions,
    TrainResult,
    export,
    input_signature,
    pipeline_for,
    train,
    train_from_config,
    validate_estimator_params,
)
from trainflow_inference import LabelledProbabilities

PENGUINS = Path(__file__).resolve().parents[2] / "data" / "penguins.csv"
TARGET = "species"
NUMERIC = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]
CATEGORICAL = ["island", "sex"]
FEATURES = NUMERIC + CATEGORICAL
SPEC = FeatureSpec(numeric=NUMERIC, categorical=CATEGORICAL)
OPTIONS = PreprocessingOptions()
PARAMS: dict[str, Any] = {"n_estimators": 30, "random_state": 0}


def _train(frame: pd.DataFrame, spec: FeatureSpec = SPEC, stratify_by: str | None = TARGET) -> TrainResult:
    return train(frame, TARGET, "classification", "random_forest", PARAMS, spec, OPTIONS, 0.2, 42, stratify_by)


@pytest.fixture(scope="module")
def splits() -> tuple[pd.DataFrame, pd.DataFrame]:
    """(trainval, test) of penguins, stratified by species."""
    return split_dataset(pd.read_csv(PENGUINS), TARGET, 0.2, 42, TARGET)


@pytest.fixture(scope="module")
def trained(splits: tuple[pd.DataFrame, pd.DataFrame]) -> TrainResult:
    """A forest trained on the trainval part with the project's features."""
    trainval, _ = splits
    return _train(trainval)


@pytest.fixture(scope="module")
def exported(trained: TrainResult, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The trained pipeline exported as an MLflow model directory."""
    path = tmp_path_factory.mktemp("export") / "model"
    return export(trained, path, metadata={"note": "from test_model"})


def penguin_pipeline(
    task: str,
    estimator: str,
    params: dict[str, Any],
    spec: FeatureSpec = SPEC,
    options: PreprocessingOptions = OPTIONS,
    frame: pd.DataFrame | None = None,
) -> Pipeline:
    frame = pd.read_csv(PENGUINS) if frame is None else frame
    return pipeline_for(frame, spec, options, task, estimator, params, n_classes=3 if task == "classification" else 0)[
        0
    ]


def test_build_pipeline_structure() -> None:
    """A Pipeline: input casting, a ColumnTransformer 'preprocess' over the given columns, a labelled forest 'model'."""
    pipeline = penguin_pipeline("classification", "random_forest", {"n_estimators": 7, "max_depth": 3})
    assert isinstance(pipeline, Pipeline)
    assert [name for name, _ in pipeline.steps] == ["inputs", "preprocess", "model"]
    preprocess = pipeline.named_steps["preprocess"]
    assert isinstance(preprocess, ColumnTransformer)
    assert {name: cols for name, _, cols in preprocess.transformers} == {"numeric": NUMERIC, "categorical": CATEGORICAL}
    # a forest gets ordinal codes: one column per categorical, as is for numbers (it takes NaN)
    assert isinstance(preprocess.transformers[0][1], OrdinalEncoder) and preprocess.transformers[1][1] == "passthrough"
    model = pipeline.named_steps["model"]
    assert isinstance(model, LabelledProbabilities)
    assert isinstance(model.estimator, RandomForestClassifier)
    assert (model.estimator.n_estimators, model.estimator.max_depth) == (7, 3)


def test_build_pipeline_text_dates_and_options() -> None:
    """Each text column gets its own TF-IDF; dates one transformer; options reach imputer and encoder."""
    spec = FeatureSpec(numeric=["x"], categorical=["c"], text=["title", "body"], datetime=["when", "until"])
    options = PreprocessingOptions(numeric_imputation="mean", categorical_encoding="ordinal", text_max_features=17)
    frame = pd.DataFrame(
        {
            "x": [1.0, 2.0],
            "c": ["a", "b"],
            "title": ["a b c", "d e f"],
            "body": ["x", "y"],
            "when": ["2024-01-01", "2024-02-01"],
            "until": ["2025-01-01", None],
        }
    )
    pipeline = penguin_pipeline("classification", "logistic_regression", {}, spec, options, frame)
    transformers = {name: (step, cols) for name, step, cols in pipeline.named_steps["preprocess"].transformers}
    assert set(transformers) == {"numeric", "categorical", "text:title", "text:body", "datetime"}
    assert transformers["text:title"][1] == ["title"] and transformers["text:body"][1] == ["body"]
    assert transformers["datetime"][1] == ["when", "until"]
    for name in ("text:title", "text:body"):
        tfidf = transformers[name][0].named_steps["tfidf"]
        assert isinstance(tfidf, TfidfVectorizer) and tfidf.max_features == 17
    assert transformers["numeric"][0].named_steps["impute"].strategy == "mean"
    assert isinstance(transformers["categorical"][0], OrdinalEncoder)


def test_build_pipeline_regression_and_dense_estimators() -> None:
    """Regressors are not wrapped; histogram boosting gets a dense matrix and native categories."""
    ridge = penguin_pipeline("regression", "ridge", {"alpha": 2.0})
    assert isinstance(ridge.named_steps["model"], Ridge)
    assert ridge.named_steps["model"].alpha == 2.0
    boosting = penguin_pipeline("regression", "hist_gradient_boosting", {})
    assert boosting.named_steps["preprocess"].sparse_threshold == 0.0
    assert boosting.named_steps["model"].categorical_features == [0, 1]  # island, sex: the first columns out


def test_build_pipeline_bad_param_type() -> None:
    """An unknown keyword reaching the estimator constructor is a ConfigError naming the block."""
    with pytest.raises(ConfigError, match=r"model\.random_forest"):
        penguin_pipeline("classification", "random_forest", {"n_trees": 5})


@pytest.mark.parametrize(
    ("task", "estimator", "params", "named"),
    [
        ("classification", "random_forest", {"n_estimators": 10, "n_trees": 5}, r"model\.random_forest\.n_trees\b"),
        (
            "classification",
            "hist_gradient_boosting",
            {"n_estimators": 5},
            r"model\.hist_gradient_boosting\.n_estimators\b",
        ),
        ("regression", "random_forest", {"class_weight": "balanced"}, r"model\.random_forest\.class_weight\b"),
        ("regression", "ridge", {"alpha": 1.0, "C": 1.0}, r"model\.ridge\.C\b"),
    ],
)
def test_validate_estimator_params_rejects_unknown(
    task: str, estimator: str, params: dict[str, Any], named: str
) -> None:
    """A key the task's estimator does not accept is a ConfigError naming it."""
    with pytest.raises(ConfigError, match=named):
        validate_estimator_params(task, estimator, params)


@pytest.mark.parametrize(
    ("task", "estimator", "params", "named"),
    [
        # the key, the bad value, and what the class allows (scikit-learn's own constraint)
        (
            "classification",
            "random_forest",
            {"n_estimators": "abc"},
            r"^model\.random_forest\.n_estimators='abc' is not valid: .*an int in the range \[1, inf\)$",
        ),
        (
            "classification",
            "random_forest",
            {"n_estimators": 0},
            r"^model\.random_forest\.n_estimators=0 is not valid: .*an int in the range \[1, inf\)$",
        ),
        (
            "regression",
            "random_forest",
            {"n_estimators": 10, "max_features": "bogus"},
            r"^model\.random_forest\.max_features='bogus' is not valid: RandomForestRegressor's .*'sqrt'",
        ),
        (
            "classification",
            "hist_gradient_boosting",
            {"learning_rate": -1},
            r"^model\.hist_gradient_boosting\.learning_rate=-1 is not valid: .*\(0\.0, inf\)",
        ),
        ("classification", "logistic_regression", {"C": 0}, r"^model\.logistic_regression\.C=0 is not valid: "),
        ("regression", "ridge", {"alpha": -1.0}, r"^model\.ridge\.alpha=-1\.0 is not valid: .*\[0\.0, inf\)"),
    ],
)
def test_validate_estimator_params_rejects_bad_values(
    task: str, estimator: str, params: dict[str, Any], named: str
) -> None:
    """A value the estimator would refuse at fit is a ConfigError at start, on one line, naming
    the key, the value and what is allowed."""
    with pytest.raises(ConfigError, match=named) as error:
        validate_estimator_params(task, estimator, params)
    assert "\n" not in str(error.value)


def test_validate_estimator_params_accepts_real() -> None:
    """Real RandomForestClassifier parameters pass."""
    params = {
        "n_estimators": 10,
        "max_depth": None,
        "min_samples_leaf": 2,
        "class_weight": "balanced",
        "random_state": 1,
    }
    assert validate_estimator_params("classification", "random_forest", params) is None


def test_train_penguins_sanity_floors(trained: TrainResult, splits: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    """Penguins is easy: validation ROC AUC > 0.9 and accuracy > 0.85; row counts add up."""
    trainval, _ = splits
    metrics = trained.validation_metrics
    assert metrics["roc_auc_ovo"] > 0.9
    assert metrics["accuracy"] > 0.85
    assert 0.0 <= metrics["f1_macro"] <= 1.0
    n_train, n_validation = len(trained.train_rows), len(trained.validation[0])
    assert n_train + n_validation == len(trainval)
    assert len(trained.validation[1]) == n_validation
    assert list(trained.train_rows.columns) == FEATURES
    assert sorted(trained.pipeline.classes_) == sorted(trainval[TARGET].unique())
    summary = trained.summary()
    assert summary["features"] == SPEC.as_dict()
    assert summary["rows"] == {"train": n_train, "validation": n_validation}
    assert summary["classes"] == [str(c) for c in trained.pipeline.classes_]
    assert summary["validation"] == metrics


def test_train_from_config_uses_the_model_section(project_dir: Path, splits: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    """The config's estimator parameters, feature lists and split reach the trained pipeline."""
    trainval, _ = splits
    cfg = load_config(project_dir, ["model.random_forest.n_estimators=7", "model.features.categorical=[island]"])
    result = train_from_config(trainval, cfg)
    assert result.pipeline.named_steps["model"].estimator_.n_estimators == 7
    assert result.features.as_dict() == FeatureSpec(numeric=NUMERIC, categorical=["island"]).as_dict()
    assert len(result.validation[0]) == round(len(trainval) * cfg.split.val_size)


@pytest.mark.parametrize("entry", ["train", "train_from_config"])
def test_a_frame_handed_over_is_freed_before_the_fit(
    entry: str, project_dir: Path, splits: tuple[pd.DataFrame, pd.DataFrame], monkeypatch: pytest.MonkeyPatch
) -> None:
    """train_model passes the frame it read without keeping it: both entry points let go
    of it once split, so the fit's allocations do not come on top of it."""
    import weakref

    import trainflow.ml.train

    handed: list[weakref.ref[pd.DataFrame]] = []
    alive_at_fit: list[bool] = []
    real_build = trainflow.ml.train.build_pipeline

    def build(*args: Any) -> Any:
        alive_at_fit.append(handed[0]() is not None)
        return real_build(*args)

    def read() -> pd.DataFrame:  # like read_table: the caller holds the only reference
        frame = splits[0].copy()
        handed.append(weakref.ref(frame))
        return frame

    monkeypatch.setattr(trainflow.ml.train, "build_pipeline", build)
    if entry == "train":
        result = train(read(), TARGET, "classification", "random_forest", PARAMS, SPEC, OPTIONS, 0.2, 42, TARGET)
    else:
        result = train_from_config(read(), load_config(project_dir, ["model.random_forest.n_estimators=7"]))
    assert alive_at_fit == [False]
    assert len(result.train_rows) + len(result.validation[0]) == len(splits[0])


def test_train_single_class_is_data_error(splits: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    """A target with one class is a DataError, not an sklearn traceback."""
    trainval, _ = splits
    one_class = trainval[trainval[TARGET] == "Adelie"]
    with pytest.raises(DataError, match="single class"):
        _train(one_class, stratify_by=None)


def test_train_missing_feature_is_data_error(splits: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    """A configured feature absent from the data is a DataError naming it."""
    trainval, _ = splits
    spec = FeatureSpec(numeric=NUMERIC + ["wing_span"], categorical=CATEGORICAL)
    with pytest.raises(DataError, match="'wing_span'"):
        _train(trainval, spec=spec)


def test_regression_on_a_text_target_is_data_error(splits: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    """model.task=regression on a string target is a DataError naming the target."""
    trainval, _ = splits
    with pytest.raises(DataError, match="'species'"):
        train(trainval, TARGET, "regression", "ridge", {}, SPEC, OPTIONS, 0.2, 42, None)


def test_predict_with_nans_and_unseen_category(trained: TrainResult, splits: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    """Rows with missing values and an island never seen in training still get valid, labelled predictions."""
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
    assert isinstance(probabilities, pd.DataFrame)
    assert list(probabilities.columns) == [str(c) for c in trained.pipeline.classes_]
    assert probabilities.shape == (4, len(trained.pipeline.classes_))
    assert np.isfinite(probabilities.to_numpy()).all()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)


def test_export_round_trip_identical(
    trained: TrainResult, exported: Path, splits: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    """The loaded artifact predicts exactly what the in-memory pipeline predicts on held-out rows."""
    _, test = splits
    held_out = test[FEATURES]
    loaded = load_exported(exported)
    assert np.array_equal(loaded.predict(held_out), trained.pipeline.predict(held_out))
    assert np.array_equal(
        np.asarray(loaded.predict_proba(held_out), dtype="float64"),
        np.asarray(trained.pipeline.predict_proba(held_out), dtype="float64"),
    )
    assert list(loaded.classes_) == list(trained.pipeline.classes_)


def test_export_mlmodel_signature_and_example(trained: TrainResult, exported: Path) -> None:
    """MLmodel: signature on the six raw columns (numeric required), labelled outputs, input example, metadata."""
    mlmodel = yaml.safe_load((exported / "MLmodel").read_text())
    inputs = json.loads(mlmodel["signature"]["inputs"])
    assert [column["name"] for column in inputs] == FEATURES
    required = {column["name"]: column.get("required", True) for column in inputs}
    assert all(required[name] for name in NUMERIC), required  # penguins has gaps there, export still requires them
    outputs = json.loads(mlmodel["signature"]["outputs"])
    assert [column["name"] for column in outputs] == [str(c) for c in trained.pipeline.classes_]
    example_info = mlmodel["saved_input_example_info"]
    example_file = exported / example_info["artifact_path"]
    assert example_file.is_file()
    example = json.loads(example_file.read_text())
    assert example["columns"] == FEATURES
    assert len(example["data"]) == 5
    assert mlmodel["flavors"]["sklearn"]["serialization_format"] == "skops"
    assert mlmodel["metadata"]["features"] == SPEC.as_dict()
    assert mlmodel["metadata"]["task"] == "classification"
    assert mlmodel["metadata"]["note"] == "from test_model"


def test_export_requirements_pinned(exported: Path) -> None:
    """requirements.txt pins mlflow and scikit-learn (and the rest) with '=='."""
    lines = [line.strip() for line in (exported / "requirements.txt").read_text().splitlines() if line.strip()]
    pins = dict(line.split("==", 1) for line in lines if "==" in line)
    for package in ("mlflow", "scikit-learn"):
        assert pins.get(package) == version(package), lines
    assert set(MODEL_REQUIREMENTS) <= set(pins), lines


def test_score_exported_model(exported: Path, splits: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    """Scoring the artifact on the test part gives every classification metric, matching sklearn."""
    _, test = splits
    metrics = score_exported_model(exported, test, TARGET)
    model = load_exported(exported)
    classes = [str(c) for c in model.classes_]
    per_class = {f"{kind}_{label}" for label in classes for kind in ("precision", "recall")}
    assert set(metrics) == {"roc_auc_ovo", "accuracy", "f1_macro", "log_loss"} | per_class
    for name, value in metrics.items():
        if name != "log_loss":
            assert 0.0 <= value <= 1.0, name
    probabilities = np.asarray(model.predict_proba(test[FEATURES]), dtype="float64")
    assert metrics["accuracy"] == pytest.approx(accuracy_score(test[TARGET], model.predict(test[FEATURES])))
    assert metrics["log_loss"] == pytest.approx(log_loss(test[TARGET], probabilities, labels=classes))


def test_load_for_scoring_selects_signature_columns_and_labelled_rows(
    exported: Path, splits: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    """Only the signature's columns are passed on, and rows without a target are left out."""
    _, test = splits
    table = test.copy()
    table.loc[[0, 1, 2], TARGET] = np.nan
    loaded = load_for_scoring(exported, table, TARGET)
    assert list(loaded.features.columns) == FEATURES
    assert len(loaded.features) == len(loaded.labels) == len(test) - 3
    assert loaded.task == "classification"


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


def _check_against_sklearn(
    metrics: dict[str, float], y_true: np.ndarray, probabilities: np.ndarray, classes: list[Any]
) -> None:
    """Accuracy, macro F1, log loss and per-class precision/recall as sklearn computes them."""
    predicted = np.asarray(classes)[probabilities.argmax(axis=1)]
    assert metrics["accuracy"] == pytest.approx(accuracy_score(y_true, predicted))
    assert metrics["f1_macro"] == pytest.approx(f1_score(y_true, predicted, average="macro", labels=classes))
    assert metrics["log_loss"] == pytest.approx(log_loss(y_true, probabilities, labels=classes))
    precision = precision_score(y_true, predicted, average=None, labels=classes, zero_division=0)
    recall = recall_score(y_true, predicted, average=None, labels=classes, zero_division=0)
    for label, p, r in zip(classes, precision, recall):
        assert metrics[f"precision_{label}"] == pytest.approx(p)
        assert metrics[f"recall_{label}"] == pytest.approx(r)
    assert metrics["accuracy"] < 1.0  # the case is imperfect, so the match is not trivial


@pytest.mark.parametrize("kind", sorted(BINARY_LABELS))
def test_classification_metrics_binary(kind: str) -> None:
    """Two classes: AUC equals sklearn's on the positive column; the rest match sklearn."""
    classes = BINARY_LABELS[kind]
    y_true, probabilities = _random_case(classes, 60, seed=1)
    metrics = classification_metrics(y_true, probabilities, classes)
    assert metrics["roc_auc_ovo"] == pytest.approx(roc_auc_score(y_true == classes[1], probabilities[:, 1]))
    _check_against_sklearn(metrics, y_true, probabilities, classes)


@pytest.mark.parametrize("kind", sorted(MULTI_LABELS))
def test_classification_metrics_three_classes(kind: str) -> None:
    """Three classes: AUC equals sklearn's macro one-vs-one; the rest match sklearn."""
    classes = MULTI_LABELS[kind]
    y_true, probabilities = _random_case(classes, 90, seed=2)
    metrics = classification_metrics(y_true, probabilities, classes)
    expected_auc = roc_auc_score(y_true, probabilities, multi_class="ovo", average="macro", labels=classes)
    assert metrics["roc_auc_ovo"] == pytest.approx(expected_auc)
    _check_against_sklearn(metrics, y_true, probabilities, classes)


def test_classification_metrics_accepts_labelled_probabilities() -> None:
    """A predict_proba DataFrame (columns = classes) scores the same as the bare array."""
    classes = MULTI_LABELS["strings"]
    y_true, probabilities = _random_case(classes, 90, seed=3)
    labelled = pd.DataFrame(probabilities, columns=classes)
    assert classification_metrics(y_true, labelled, classes) == classification_metrics(y_true, probabilities, classes)


@pytest.mark.parametrize("classes", [["a", "b"], ["a", "b", "c"]])
def test_classification_metrics_perfect_predictor(classes: list[str]) -> None:
    """One-hot probabilities on the true class give accuracy, F1, AUC, precision and recall of 1, log loss ~0."""
    y_true = np.asarray(classes * 5)
    probabilities = (y_true[:, None] == np.asarray(classes)[None, :]).astype(float)
    metrics = classification_metrics(y_true, probabilities, classes)
    ones = {"accuracy", "f1_macro", "roc_auc_ovo"} | {f"{k}_{c}" for c in classes for k in ("precision", "recall")}
    assert set(metrics) == ones | {"log_loss"}
    assert {name: metrics[name] for name in ones} == {name: 1.0 for name in ones}
    assert metrics["log_loss"] == pytest.approx(0.0, abs=1e-9)


def test_classification_metrics_single_class_auc_is_nan() -> None:
    """With one class present AUC is undefined and reported as NaN, accuracy still computed."""
    classes = ["a", "b"]
    y_true = np.asarray(["a", "a", "a"])
    probabilities = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3]])
    metrics = classification_metrics(y_true, probabilities, classes)
    assert np.isnan(metrics["roc_auc_ovo"])
    assert metrics["accuracy"] == pytest.approx(2 / 3)


def test_metric_keys_are_safe_for_mlflow() -> None:
    """Class labels with spaces or slashes become metric-name-safe keys."""
    assert metric_key("Gentoo penguin/x") == "Gentoo_penguin_x"
    metrics = classification_metrics(["a b", "c/d"], np.array([[0.8, 0.2], [0.3, 0.7]]), ["a b", "c/d"])
    assert {"precision_a_b", "recall_c_d"} <= set(metrics)


def test_regression_metrics_match_their_definitions() -> None:
    """R2, MAE and RMSE equal their textbook formulas on a noisy case."""
    rng = np.random.default_rng(4)
    y_true = rng.normal(10.0, 3.0, 200)
    predicted = y_true + rng.normal(0.5, 1.0, 200)
    residuals = y_true - predicted
    metrics = regression_metrics(y_true, predicted)
    assert set(metrics) == {"r2", "mae", "rmse"}
    assert metrics["mae"] == pytest.approx(np.mean(np.abs(residuals)))
    assert metrics["rmse"] == pytest.approx(np.sqrt(np.mean(residuals**2)))
    assert metrics["r2"] == pytest.approx(1 - np.sum(residuals**2) / np.sum((y_true - y_true.mean()) ** 2))
    assert 0.0 < metrics["r2"] < 1.0


def test_headline_lists_present_headline_metrics_in_order() -> None:
    """The summary line shows the headline metrics present, classification's first, four decimals."""
    metrics = {"accuracy": 0.5, "log_loss": 0.7, "roc_auc_ovo": 0.75, "r2": 0.123456}
    assert headline(metrics) == "roc_auc_ovo=0.7500 accuracy=0.5000 r2=0.1235"
    assert headline({"log_loss": 0.7}) == "none"


def test_train_integer_target(splits: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    """A numerically encoded target (0/1/2) trains like the string one: sklearn handles it, so must trainflow."""
    trainval, _ = splits
    codes = {name: code for code, name in enumerate(sorted(trainval[TARGET].unique()))}
    encoded = trainval.assign(**{TARGET: trainval[TARGET].map(codes).astype(int)})
    result = _train(encoded)
    assert result.validation_metrics["accuracy"] > 0.85
    assert result.validation_metrics["roc_auc_ovo"] > 0.9
    assert {"precision_0", "recall_2"} <= set(result.validation_metrics)
    assert list(result.pipeline.predict_proba(encoded[FEATURES].head(3)).columns) == ["0", "1", "2"]


@pytest.mark.parametrize(
    ("estimator", "sparse"),
    [("logistic_regression", True), ("hist_gradient_boosting", False), ("random_forest", False)],
)
def test_the_preprocessed_matrix_is_laid_out_for_the_estimator(estimator: str, sparse: bool) -> None:
    """Linear models get a sparse matrix however dense (no dense copy of a wide table);
    histogram boosting needs a dense one; a forest keeps the column transformer's choice,
    which for this table (dense enough) is dense."""
    import scipy.sparse
    from support.synthetic import TARGET, feature_spec_for_synthetic, make_table

    from trainflow.ml.train import PreprocessingOptions

    table = make_table(300, seed=5)
    features = table.drop(columns=[TARGET])
    pipeline, _ = pipeline_for(
        features, feature_spec_for_synthetic(), PreprocessingOptions(), "classification", estimator, {}, n_classes=3
    )
    matrix = pipeline.named_steps["preprocess"].fit_transform(features, table[TARGET])
    assert scipy.sparse.issparse(matrix) is sparse
    assert matrix.shape[0] == 300


def test_classification_metrics_leave_out_a_class_absent_and_never_predicted() -> None:
    """A class the test rows lack and the model never predicts (a rare class absent from a
    small test split) does not count as an F1, precision and recall of 0."""
    classes = ["a", "b", "c"]
    y_true = np.asarray(["a", "b"] * 5)
    probabilities = np.array([[0.9, 0.05, 0.05] if t == "a" else [0.05, 0.9, 0.05] for t in y_true])
    metrics = classification_metrics(y_true, probabilities, classes)
    assert metrics["accuracy"] == 1.0
    assert metrics["f1_macro"] == pytest.approx(f1_score(y_true, classes_of(probabilities, classes), average="macro"))
    assert metrics["f1_macro"] == 1.0
    assert "precision_c" not in metrics and "recall_c" not in metrics
    assert metrics["precision_a"] == metrics["recall_b"] == 1.0


def classes_of(probabilities: np.ndarray, classes: list[str]) -> np.ndarray:
    return np.asarray(classes)[probabilities.argmax(axis=1)]


@pytest.mark.parametrize(
    ("kind", "column", "message"),
    [
        ("numeric", "island", r"model.features.numeric lists 'island', which holds text"),
        ("categorical", "nothing", r"model.features.categorical lists 'nothing', which has no value"),
        ("text", "bill_depth_mm", r"model.features.text.columns lists 'bill_depth_mm', which holds numbers"),
        ("datetime", "bill_depth_mm", r"model.features.datetime lists 'bill_depth_mm', which holds numbers"),
    ],
)
def test_a_column_listed_under_the_wrong_kind_is_one_data_error(
    splits: tuple[pd.DataFrame, pd.DataFrame], kind: str, column: str, message: str
) -> None:
    """A listed column its transformer cannot take fails before the fit with the key to
    change, not with scikit-learn's traceback (or, for dates, silently)."""
    frame = splits[0].assign(nothing=np.nan)
    lists = {"numeric": ["bill_length_mm"]}
    lists[kind] = lists.get(kind, []) + [column]
    spec = FeatureSpec(**lists)
    with pytest.raises(DataError, match=message):
        _train(frame, spec)


def test_a_validation_part_of_one_row_is_one_data_error() -> None:
    """Four trainval rows leave one validation row (val_size 0.2): one DataError, not NaN metrics."""
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "y": [1.5, 2.5, 2.0, 4.5]})
    with pytest.raises(DataError, match=r"validation part would have 1 row\(s\) of 4.*split.val_size"):
        train(frame, "y", "regression", "ridge", {}, FeatureSpec(numeric=["x"]), PreprocessingOptions(), 0.2, 0, None)


def test_the_baseline_gap_is_sure_only_when_the_test_set_says_so() -> None:
    """A model that learnt nothing (random scores) beats the prior by luck on 800 rows: the
    gap's lower bound is below it; a real signal on the same rows keeps its bound high."""
    from trainflow.ml.evaluate import baseline_gap, baseline_outputs, trivial_baseline

    random = np.random.default_rng(4)
    labels = pd.Series(random.choice(["no", "yes"], 800))
    baseline = trivial_baseline(labels, "classification")
    answers = baseline_outputs(baseline, len(labels), ["no", "yes"], "classification")
    noise = random.random(800)
    guess = np.column_stack([1 - noise, noise])
    lucky = baseline_gap("roc_auc_ovo", labels, guess, answers, ["no", "yes"], "classification")
    assert lucky["resamples"] == 100 and lucky["rows"] == 800
    assert lucky["lower"] < lucky["gap"] and lucky["lower"] < 0.01  # not sure it beats the prior by the margin
    signal = np.clip(np.where(labels == "yes", 0.7, 0.3) + random.normal(0, 0.2, 800), 0.01, 0.99)
    sure = baseline_gap(
        "roc_auc_ovo", labels, np.column_stack([1 - signal, signal]), answers, ["no", "yes"], "classification"
    )
    assert sure["gap"] > 0.3 and sure["lower"] > 0.25
    # an error metric's gap is measured downwards: the mean's rmse minus the model's
    values = pd.Series(random.normal(10, 2, 500))
    mean = baseline_outputs(trivial_baseline(values, "regression"), 500, [], "regression")
    fitted = baseline_gap("rmse", values, values.to_numpy() + random.normal(0, 0.5, 500), mean, [], "regression")
    assert fitted["gap"] > 1.0 and fitted["lower"] > 1.0


def test_a_metric_computed_alone_equals_the_full_set() -> None:
    from trainflow.ml.evaluate import metric_value, task_metrics

    random = np.random.default_rng(9)
    for classes in (["a", "b"], ["a", "b", "c"]):
        labels = random.choice(classes, 300)
        outputs = random.dirichlet(np.ones(len(classes)), 300)
        full = task_metrics(labels, outputs, classes, "classification")
        for name in ("roc_auc_ovo", "accuracy", "f1_macro", "log_loss"):
            assert metric_value(name, labels, outputs, classes, "classification") == pytest.approx(full[name]), name
    values = random.normal(size=200)
    predicted = values + random.normal(scale=0.3, size=200)
    full = task_metrics(values, predicted, [], "regression")
    for name in ("r2", "mae", "rmse"):
        assert metric_value(name, values, predicted, [], "regression") == pytest.approx(full[name]), name


def test_the_signature_leaves_open_exactly_the_columns_the_model_casts() -> None:
    """One rule for both: the columns InputColumns casts (numbers, text, categories) are
    of open type in the signature; true/false and dates keep MLflow's own type. Before,
    a category column was cast as text by the model but typed by MLflow's inference."""
    from mlflow.types.schema import AnyType

    from trainflow_inference import InputColumns

    rows = pd.DataFrame(
        {
            "count": [1, 2, 3],
            "size": [1.5, np.nan, 2.0],
            "name": ["a", "b", None],
            "grade": pd.Categorical(["x", "y", "x"]),
            "flag": [True, False, True],
            "day": pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-03"]),
        }
    )
    signature = input_signature(rows, np.array([0, 1, 0]))
    open_type = {spec.name for spec in signature.inputs.inputs if isinstance(spec.type, AnyType)}
    cast = InputColumns().fit(rows)
    assert open_type == set(cast.numeric_) | set(cast.text_) == {"count", "size", "name", "grade"}
