"""Feature inference and per-estimator encoding (trainflow.ml.features), on generated tables
of other shapes than the demo's: fast, no runs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import sparse
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier, RandomForestRegressor
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline as sklearn_pipeline
from support.synthetic import HIGH_CARDINALITY, TARGET, make_table

from trainflow.errors import DataError
from trainflow.ml.features import (
    NATIVE_MAX_LEVELS,
    EstimatorInput,
    FeatureSpec,
    PreprocessingOptions,
    build_preprocessor,
    explain_columns,
    feature_table,
    format_feature_table,
    listed_columns,
    plan_features,
    spec_of,
)


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    """20,000 rows with a 3,000-level string column, dates and text as strings, an id."""
    return make_table(20_000, n_classes=3, seed=3, high_cardinality=3_000)


def kinds(frame: pd.DataFrame, target: str = TARGET) -> dict[str, str]:
    return {c.column: c.kind for c in explain_columns(frame, target)}


def test_every_column_gets_a_kind_and_a_reason(table: pd.DataFrame) -> None:
    frame = table.assign(constant=1, flag=table["signal_1"] > 0)
    choices = {c.column: c for c in explain_columns(frame, TARGET)}
    assert {name: c.kind for name, c in choices.items()} == {
        "row_id": "dropped",
        "signal_1": "numeric",
        "signal_2": "numeric",
        "noise_1": "numeric",
        "noise_2": "numeric",
        "color": "categorical",
        "region": "categorical",
        "notes": "text",
        "event_date": "datetime",
        HIGH_CARDINALITY: "categorical",
        "target": "dropped",
        "constant": "dropped",
        "flag": "categorical",
    }
    assert "an id" in choices["row_id"].reason and "filling their range" in choices["row_id"].reason
    assert choices["constant"].reason == "a single value" and choices["target"].reason == "the target"
    assert "parses as dates" in choices["event_date"].reason
    assert "levels" in choices[HIGH_CARDINALITY].reason and "words per value" in choices["notes"].reason
    assert spec_of(list(choices.values())).categorical == ["color", "region", HIGH_CARDINALITY, "flag"]


def test_listed_columns_are_taken_as_listed_and_the_rest_dropped(table: pd.DataFrame) -> None:
    choices = listed_columns(table, TARGET, FeatureSpec(numeric=["signal_1"], text=["notes"]))
    by_column = {c.column: (c.kind, c.reason) for c in choices}
    assert by_column["signal_1"] == ("numeric", "listed in model.features.numeric")
    assert by_column["notes"] == ("text", "listed in model.features.text.columns")
    assert by_column["color"][0] == "dropped" and "not listed" in by_column["color"][1]
    assert by_column[TARGET] == ("dropped", "the target")


@pytest.mark.parametrize(
    ("estimator", "encoding", "layout", "scaled"),
    [
        (HistGradientBoostingClassifier(), "native", "dense", False),
        (RandomForestClassifier(), "ordinal", "auto", False),
        (LogisticRegression(), "onehot", "sparse", True),
    ],
)
def test_each_estimator_gets_its_own_encoding(
    table: pd.DataFrame, estimator: object, encoding: str, layout: str, scaled: bool
) -> None:
    spec = spec_of(explain_columns(table, TARGET))
    plan = plan_features(table, spec, PreprocessingOptions(), estimator, n_classes=3)
    assert (plan.encoding, plan.layout, plan.scale) == (encoding, layout, scaled)
    # the 3,000-level column is target-encoded for every estimator, the others keep theirs
    assert plan.high_cardinality == [HIGH_CARDINALITY] and plan.categorical == ["color", "region"]
    # a dense-only estimator gets each text column as a few components, the others TF-IDF terms
    assert plan.text_components == (30 if encoding == "native" else 0)


def test_a_high_cardinality_column_never_makes_a_wide_matrix(table: pd.DataFrame) -> None:
    """3,000 levels: not 3,000 columns. Target-encoded it is one column per class; one-hot
    (forced by raising high_cardinality) keeps max_categories levels, the rest grouped."""
    spec = FeatureSpec(categorical=[HIGH_CARDINALITY], numeric=["signal_1"])
    frame, labels = table[spec.columns], table[TARGET]
    for estimator in (LogisticRegression(), HistGradientBoostingClassifier(), RandomForestClassifier()):
        plan = plan_features(frame, spec, PreprocessingOptions(), estimator, n_classes=3)
        matrix = build_preprocessor(plan, PreprocessingOptions()).fit_transform(frame, labels)
        assert matrix.shape == (len(frame), 1 + 3), type(estimator).__name__  # signal_1 + one per class
    onehot = PreprocessingOptions(high_cardinality=10_000, max_categories=40)
    plan = plan_features(frame, spec, onehot, LogisticRegression(), n_classes=3)
    matrix = build_preprocessor(plan, onehot).fit_transform(frame, labels)
    assert sparse.issparse(matrix) and matrix.shape[1] <= 1 + 40 + 1 and plan.width >= matrix.shape[1]


def test_no_dense_matrix_above_the_budget_is_ever_built() -> None:
    """A dense-only estimator whose matrix would pass max_dense_bytes is refused before any
    fit, naming the settings; an estimator that takes sparse input is kept sparse instead."""
    frame = pd.DataFrame({f"x{i}": np.arange(1_000, dtype=float) for i in range(50)})
    spec = FeatureSpec(numeric=list(frame.columns))
    tight = PreprocessingOptions(max_dense_bytes=100_000)  # 1,000 rows x 50 columns x 8 bytes = 400,000
    with pytest.raises(DataError, match=r"model.features.max_dense_bytes=100,000") as refused:
        plan_features(frame, spec, tight, HistGradientBoostingClassifier())
    assert "1,000 rows x 50 columns" in str(refused.value) and "sparse input" in str(refused.value)
    text = pd.DataFrame({"t": [f"word{i % 300} other{i % 7} more words" for i in range(1_000)]})
    small = PreprocessingOptions(max_dense_bytes=100_000)
    plan = plan_features(text, FeatureSpec(text=["t"]), small, RandomForestRegressor())
    assert plan.layout == "sparse"  # 1,000 x 100 TF-IDF terms dense would be 800,000 bytes
    matrix = build_preprocessor(plan, PreprocessingOptions()).fit_transform(text)
    assert sparse.issparse(matrix)


def test_native_categories_are_capped_at_what_boosting_takes() -> None:
    levels = pd.DataFrame({"c": [f"l{i % 90}" for i in range(3_000)] + [f"rare{i}" for i in range(250)]})
    spec = FeatureSpec(categorical=["c"])
    options = PreprocessingOptions(high_cardinality=1_000)
    plan = plan_features(levels, spec, options, HistGradientBoostingClassifier())
    assert plan.encoding == "native" and plan.levels["c"] == 340
    codes = build_preprocessor(plan, options).fit_transform(levels)
    assert np.nanmax(codes) < NATIVE_MAX_LEVELS
    assert "the 87 rarest grouped" in plan.encodings(options)["c"]


@pytest.mark.parametrize("estimator", [HistGradientBoostingClassifier(), LogisticRegression()], ids=["hgb", "logreg"])
def test_a_column_with_no_value_in_the_training_rows_is_left_out_and_said(estimator: object) -> None:
    """Found by `make fuzz`: a numeric column all missing in the train part (the split
    chose its filled rows for validation) crashed scikit-learn 1.9's HistGradientBoosting
    ("window shape cannot be larger than input array shape")."""
    rows = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], "gap": [np.nan] * 6, "when": [None] * 6})
    y = [0, 1, 0, 1, 0, 1]
    spec = FeatureSpec(numeric=["x", "gap"], datetime=["when"])
    options = PreprocessingOptions()
    plan = plan_features(rows, spec, options, estimator, 2)
    assert plan.spec.columns == ["x"] and plan.empty == ["gap", "when"]
    assert plan.encodings(options)["gap"] == "left out: no value in the training rows"
    model = sklearn_pipeline(build_preprocessor(plan, options), estimator).fit(rows, y)
    assert model.predict(rows.assign(gap=7.0)).shape == (6,)
    with pytest.raises(DataError, match="no feature column has a value in the 6 training rows"):
        plan_features(rows, FeatureSpec(numeric=["gap"], datetime=["when"]), options, estimator, 2)


def test_estimator_input_comes_from_scikit_learn_tags() -> None:
    assert EstimatorInput.of(HistGradientBoostingClassifier()) == EstimatorInput(True, True, False, True)
    assert EstimatorInput.of(RandomForestClassifier()) == EstimatorInput(False, True, True, True)
    assert EstimatorInput.of(Ridge()) == EstimatorInput(False, False, True, False)


def test_the_feature_table_says_kind_why_and_encoding(table: pd.DataFrame) -> None:
    choices = explain_columns(table, TARGET)
    plan = plan_features(table, spec_of(choices), PreprocessingOptions(), HistGradientBoostingClassifier(), 3)
    report = feature_table(choices, plan, PreprocessingOptions())
    assert list(report.columns) == ["column", "kind", "why", "encoding"] and len(report) == len(table.columns)
    rows = report.set_index("column")
    assert rows.loc[HIGH_CARDINALITY, "encoding"].startswith("target-encoded")
    assert rows.loc["color", "encoding"] == "native categories, 5 levels"
    assert rows.loc["notes", "encoding"] == "TF-IDF, 100 terms -> 30 components"
    assert rows.loc["row_id", "encoding"] == ""
    block = format_feature_table(report)
    assert block.splitlines()[0].startswith("  numeric ") and "dropped      row_id (an id:" in block
