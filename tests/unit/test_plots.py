"""Evaluation plots (trainflow.ml.plots) for fitted pipelines on a synthetic table: which
figures, valid PNGs, a normalised confusion matrix, importance by raw column.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import confusion_matrix
from support.synthetic import INFORMATIVE, TARGET, feature_spec_for_synthetic, make_table

from trainflow.ml.plots import evaluation_figures
from trainflow.ml.train import PreprocessingOptions, TrainResult, train

matplotlib.use("Agg")
import matplotlib.pyplot as plt

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PARAMS = {"n_estimators": 20, "random_state": 0}


def _train(task: str, n_classes: int = 3) -> TrainResult:
    table = make_table(400, task=task, n_classes=n_classes, seed=7)
    return train(
        table,
        TARGET,
        task,
        "random_forest",
        PARAMS,
        feature_spec_for_synthetic(),
        PreprocessingOptions(),
        val_size=0.3,
        random_seed=0,
        stratify_by=TARGET if task == "classification" else None,
    )


def _figures(result: TrainResult) -> dict[str, Any]:
    features, labels = result.validation
    return evaluation_figures(result.pipeline, features, labels, result.task, seed=0)


@pytest.fixture(scope="module")
def classifier() -> TrainResult:
    return _train("classification")


@pytest.fixture(scope="module")
def regressor() -> TrainResult:
    return _train("regression")


@pytest.fixture(scope="module")
def classifier_figures(classifier: TrainResult) -> Iterator[dict[str, Any]]:
    figures = _figures(classifier)
    yield figures
    for figure in figures.values():
        plt.close(figure)


@pytest.fixture(scope="module")
def regressor_figures(regressor: TrainResult) -> Iterator[dict[str, Any]]:
    figures = _figures(regressor)
    yield figures
    for figure in figures.values():
        plt.close(figure)


def _png_bytes(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _y_tick_labels(figure: Any) -> list[str]:
    figure.canvas.draw()  # categorical tick labels are filled in at draw time
    return [label.get_text() for label in figure.axes[0].get_yticklabels()]


def test_classifier_gets_confusion_roc_and_importance(classifier_figures: dict[str, Any]) -> None:
    """A classifier's plots are exactly the confusion matrix, ROC curves and feature importance."""
    assert set(classifier_figures) == {"confusion_matrix.png", "roc_curves.png", "feature_importance.png"}


def test_regressor_gets_residuals_and_importance(regressor_figures: dict[str, Any]) -> None:
    """A regressor's plots are exactly residuals and feature importance."""
    assert set(regressor_figures) == {"residuals.png", "feature_importance.png"}


@pytest.mark.parametrize("which", ["classifier_figures", "regressor_figures"])
def test_every_figure_saves_as_png(which: str, request: pytest.FixtureRequest) -> None:
    """Each figure renders to a non-empty file that starts with the PNG signature."""
    figures: dict[str, Any] = request.getfixturevalue(which)
    for name, figure in figures.items():
        data = _png_bytes(figure)
        assert data.startswith(PNG_MAGIC), name
        assert len(data) > 1000, name  # a real image, not a header


def test_confusion_matrix_is_normalised_by_true_class(
    classifier: TrainResult, classifier_figures: dict[str, Any]
) -> None:
    """The plotted matrix has rows summing to 1 and equals sklearn's true-normalised matrix."""
    shown = np.asarray(classifier_figures["confusion_matrix.png"].axes[0].images[0].get_array(), dtype="float64")
    classes = [str(c) for c in classifier.pipeline.classes_]
    assert shown.shape == (len(classes), len(classes))
    np.testing.assert_allclose(shown.sum(axis=1), 1.0)
    features, labels = classifier.validation
    predicted = classifier.pipeline.predict(features)
    expected = confusion_matrix(labels, predicted, labels=classes, normalize="true")
    np.testing.assert_allclose(shown, expected)
    assert not np.allclose(shown, np.eye(len(classes)))  # an imperfect model, so the check is not trivial


@pytest.mark.parametrize("n_classes", [2, 3])
def test_roc_curves_one_per_class_or_one_for_binary(n_classes: int) -> None:
    """Multi-class: one curve per class; binary: a single curve, for the positive class; plus the chance line."""
    result = _train("classification", n_classes=n_classes)
    figure = _figures(result)["roc_curves.png"]
    try:
        labels = [text.get_text() for text in figure.axes[0].get_legend().get_texts()]
        classes = [str(c) for c in result.pipeline.classes_]
        expected = classes[1:] if n_classes == 2 else classes
        assert [label.split(" (AUC")[0] for label in labels] == expected
        assert len(figure.axes[0].get_lines()) == len(expected) + 1
    finally:
        plt.close("all")


@pytest.mark.parametrize(
    ("which", "result_name"), [("classifier_figures", "classifier"), ("regressor_figures", "regressor")]
)
def test_feature_importance_is_by_raw_column(which: str, result_name: str, request: pytest.FixtureRequest) -> None:
    """Importance bars are the raw input columns, each once (the text column is not split into terms)."""
    figures: dict[str, Any] = request.getfixturevalue(which)
    result: TrainResult = request.getfixturevalue(result_name)
    figure = figures["feature_importance.png"]
    labels = _y_tick_labels(figure)
    raw_columns = list(result.validation[0].columns)
    assert sorted(labels) == sorted(raw_columns)
    assert len(labels) == len(set(labels))
    assert labels.count("notes") == 1
    widths = [bar.get_width() for bar in figure.axes[0].patches]
    assert widths == sorted(widths)  # least to most important, bottom to top
    assert labels[-1] in INFORMATIVE  # the top column carries signal, not noise


def test_residuals_are_actual_minus_predicted(regressor: TrainResult, regressor_figures: dict[str, Any]) -> None:
    """The residual plot's points are (prediction, actual - prediction) for every validation row."""
    features, labels = regressor.validation
    predicted = np.asarray(regressor.pipeline.predict(features), dtype="float64")
    points = np.asarray(regressor_figures["residuals.png"].axes[0].collections[0].get_offsets(), dtype="float64")
    expected = np.column_stack([predicted, np.asarray(labels, dtype="float64") - predicted])
    np.testing.assert_allclose(points, expected)


@pytest.mark.parametrize("result_name", ["classifier", "regressor"])
def test_batched_importance_agrees_with_sklearns_permutation_importance(result_name: str, request) -> None:
    """feature_importance predicts all shuffled copies at once; it measures what
    sklearn.inspection.permutation_importance measures (different shuffles, so close, not equal)."""
    from sklearn.inspection import permutation_importance

    from trainflow.ml.plots import feature_importance

    result: TrainResult = request.getfixturevalue(result_name)
    features, labels = result.validation
    ours = feature_importance(result.pipeline, features, labels, seed=3, n_repeats=10)
    reference = permutation_importance(result.pipeline, features, labels, n_repeats=10, random_state=3)
    theirs = pd.Series(reference.importances_mean, index=[str(c) for c in features.columns])
    assert ours.idxmax() == theirs.idxmax()
    assert (ours - theirs[ours.index]).abs().max() < 0.05
    assert ours.max() > 0.05  # the check is not trivially met by two all-zero results


@pytest.mark.parametrize("result_name", ["classifier", "regressor"])
def test_importance_in_bounded_batches_measures_the_same(result_name: str, request) -> None:
    """Wide tables would need one frame of columns x repeats x rows cells: predicting in
    batches under a cell budget gives exactly the same importances (same shuffles), and no
    call exceeds the budget."""
    from trainflow.ml.plots import feature_importance

    result: TrainResult = request.getfixturevalue(result_name)
    features, labels = result.validation
    calls: list[int] = []

    class Counting:
        def __init__(self, model: Any) -> None:
            self.model = model
            self.classes_ = getattr(model, "classes_", None)
            if self.classes_ is None:
                del self.classes_

        def predict(self, frame: pd.DataFrame) -> Any:
            calls.append(frame.size)
            return self.model.predict(frame)

    budget = features.size * 3
    batched = feature_importance(Counting(result.pipeline), features, labels, seed=5, batch_cells=budget)
    whole = feature_importance(result.pipeline, features, labels, seed=5)
    pd.testing.assert_series_equal(batched, whole)
    assert max(calls) <= budget
    assert len(calls) == 1 + math.ceil(len(features.columns) * 5 / 3)  # the baseline, then batches of 3 copies


def test_the_importance_plot_shows_the_top_columns_of_a_wide_table() -> None:
    from trainflow.ml.plots import importance_figure

    importance = pd.Series(np.arange(50, dtype="float64"), index=[f"c{i}" for i in range(50)])
    figure = importance_figure(importance)
    labels = _y_tick_labels(figure)
    assert labels == [f"c{i}" for i in range(20, 50)]  # the 30 most important, least first
    assert figure.axes[0].get_title().endswith("top 30 of 50")
    small = importance_figure(importance.iloc[:5])
    assert len(_y_tick_labels(small)) == 5 and "top" not in small.axes[0].get_title()
