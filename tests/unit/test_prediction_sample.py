"""test_model's sample of predictions (trainflow.ml.evaluate.prediction_sample), on plain
frames and arrays: no MLflow, no model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from trainflow.ml.evaluate import PREDICTION_SAMPLE_ROWS, prediction_sample


def test_classification_rows_hold_inputs_truth_predicted_class_and_its_probability() -> None:
    features = pd.DataFrame({"x": [1.0, 2.0, np.nan], "colour": ["red", None, "blue"]}, index=[10, 11, 12])
    labels = pd.Series(["cat", "dog", "cat"], name="animal", index=[10, 11, 12])
    outputs = np.array([[0.9, 0.1], [0.3, 0.7], [0.4, 0.6]])
    sample = prediction_sample(features, labels, outputs, ["cat", "dog"], "classification")
    assert list(sample.columns) == ["x", "colour", "animal", "prediction", "probability"]
    assert list(sample.index) == [0, 1, 2]
    assert sample["animal"].tolist() == ["cat", "dog", "cat"]
    assert sample["prediction"].tolist() == ["cat", "dog", "dog"]  # the most probable class, as the metrics take it
    assert sample["probability"].tolist() == pytest.approx([0.9, 0.7, 0.6])
    assert features.columns.tolist() == ["x", "colour"]  # the test frame is left as it was


def test_regression_rows_hold_the_predicted_value_and_no_probability() -> None:
    features = pd.DataFrame({"x": [1.0, 2.0]})
    sample = prediction_sample(features, pd.Series([1.5, 2.5], name="y"), np.array([1.4, 2.9]), [], "regression")
    assert list(sample.columns) == ["x", "y", "prediction"]
    assert sample["prediction"].tolist() == pytest.approx([1.4, 2.9])


def test_only_the_first_rows_are_sampled() -> None:
    rows = PREDICTION_SAMPLE_ROWS + 50
    features = pd.DataFrame({"x": np.arange(rows, dtype=float)})
    labels = pd.Series(np.arange(rows) % 3, name="k")
    outputs = np.eye(3)[np.arange(rows) % 3]
    sample = prediction_sample(features, labels, outputs, [0, 1, 2], "classification")
    assert len(sample) == PREDICTION_SAMPLE_ROWS
    assert sample["x"].tolist() == list(range(PREDICTION_SAMPLE_ROWS))
    assert (sample["prediction"] == sample["k"]).all()
    assert len(prediction_sample(features, labels, outputs, [0, 1, 2], "classification", rows=5)) == 5


def test_a_name_an_input_column_has_is_not_overwritten() -> None:
    features = pd.DataFrame({"prediction": [7.0], "probability": [0.5]})
    sample = prediction_sample(
        features, pd.Series(["a"], name="t"), np.array([[0.2, 0.8]]), ["a", "b"], "classification"
    )
    assert list(sample.columns) == ["prediction", "probability", "t", "prediction_", "probability_"]
    assert sample.iloc[0].tolist() == [7.0, 0.5, "a", "b", pytest.approx(0.8)]
