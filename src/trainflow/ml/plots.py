"""Evaluation plots as matplotlib figures: confusion matrix, ROC curves, feature
importance, residuals. Pure: data in, figures out; the components log them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

# matplotlib.pyplot (after choosing its Agg backend) and scikit-learn's metrics are imported inside the functions
# that draw: about 0.85 s that train_model and test_model, which import this module, do not pay before their
# config is checked (docs/architecture.md#start-up).

IMPORTANCE_SAMPLE_ROWS = 2000
# The confusion matrix, ROC curves and residuals are drawn from at most this many rows: a
# sample this size draws the same curves, and the metrics are computed on every row anyway,
# so the plots' cost stays a small share of a step on a large table.
PLOT_SAMPLE_ROWS = 20_000
# Shuffled copies are predicted together up to this many cells per call: one call keeps a
# forest's per-call cost to one payment, the bound keeps wide tables (300 columns x 5
# repeats x 2,000 rows would be 900 million cells in one frame) within memory.
IMPORTANCE_BATCH_CELLS = 20_000_000
# The importance plot shows this many columns, the most important ones.
IMPORTANCE_PLOT_COLUMNS = 30


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only: steps run without a display
    import matplotlib.pyplot as plt

    return plt


def confusion_matrix_figure(y_true: Any, predicted: Any, classes: list[str]) -> Any:
    """Confusion matrix normalised over true classes (each row sums to 1)."""
    from sklearn.metrics import ConfusionMatrixDisplay

    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(1.2 * len(classes) + 3, 1.2 * len(classes) + 2.5))
    ConfusionMatrixDisplay.from_predictions(
        np.asarray(y_true).astype(str),
        np.asarray(predicted).astype(str),
        labels=classes,
        normalize="true",
        ax=axes,
        colorbar=False,
        values_format=".2f",
    )
    axes.set_title("Confusion matrix (normalised by true class)")
    figure.tight_layout()
    return figure


def roc_figure(y_true: Any, probabilities: Any, classes: list[str]) -> Any:
    """One-vs-rest ROC curve per class, with its AUC."""
    from sklearn.metrics import auc, roc_curve

    plt = _pyplot()
    probabilities = np.asarray(probabilities, dtype="float64")
    truth = np.asarray(y_true).astype(str)
    figure, axes = plt.subplots(figsize=(6, 5))
    for index, label in enumerate(classes):
        if len(classes) == 2 and index == 0:
            continue  # with two classes one curve says everything
        positives = truth == label
        if positives.all() or not positives.any():
            continue
        fpr, tpr, _ = roc_curve(positives, probabilities[:, index])
        axes.plot(fpr, tpr, label=f"{label} (AUC {auc(fpr, tpr):.3f})")
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1)
    axes.set_xlabel("False positive rate")
    axes.set_ylabel("True positive rate")
    axes.set_title("ROC curves (one vs rest)")
    axes.legend(loc="lower right", fontsize="small")
    figure.tight_layout()
    return figure


def feature_importance(
    model: Any,
    features: pd.DataFrame,
    labels: pd.Series,
    seed: int = 0,
    n_repeats: int = 5,
    batch_cells: int = IMPORTANCE_BATCH_CELLS,
) -> pd.Series:
    """Permutation importance of each raw input column on (a sample of) labelled rows: the
    mean drop in ``model.score`` (accuracy, or R^2) when that column alone is shuffled.

    Measured on raw columns, so a text column's TF-IDF terms count as one feature and a
    categorical column's one-hot columns as one: the grouping users reason in. Works
    for every estimator, with or without ``feature_importances_``.

    The same measure as ``sklearn.inspection.permutation_importance``, but the shuffled
    copies are predicted together, as many per call as ``batch_cells`` allows: a forest's
    per-call cost (about 30 ms for 100 trees, whatever the rows) is paid once per batch
    instead of columns x repeats times.
    """
    from sklearn.metrics import accuracy_score, r2_score

    if len(features) > IMPORTANCE_SAMPLE_ROWS:
        sample = features.sample(IMPORTANCE_SAMPLE_ROWS, random_state=seed).index
        features, labels = features.loc[sample], labels.loc[sample]
    features, truth = features.reset_index(drop=True), np.asarray(labels)
    score = accuracy_score if hasattr(model, "classes_") else r2_score
    random = np.random.RandomState(seed)
    baseline = score(truth, model.predict(features))
    copies_per_call = max(1, batch_cells // max(1, features.size))
    scores: list[float] = []
    batch: list[pd.DataFrame] = []
    for column in features.columns:
        for _ in range(n_repeats):
            copy = features.copy()
            copy[column] = features[column].to_numpy()[random.permutation(len(features))]
            batch.append(copy)
            if len(batch) == copies_per_call:
                scores += _score_copies(model, batch, truth, score)
                batch = []
    if batch:
        scores += _score_copies(model, batch, truth, score)
    drops = (baseline - np.array(scores)).reshape(len(features.columns), n_repeats)
    return pd.Series(drops.mean(axis=1), index=[str(c) for c in features.columns]).sort_values()


def _score_copies(model: Any, copies: list[pd.DataFrame], truth: np.ndarray, score: Any) -> list[float]:
    predicted = model.predict(pd.concat(copies, ignore_index=True))
    return [score(truth, block) for block in np.split(np.asarray(predicted), len(copies))]


def importance_figure(importance: pd.Series, top: int = IMPORTANCE_PLOT_COLUMNS) -> Any:
    """Bars for the ``top`` most important columns, least to most important upwards (a
    300-column table would otherwise make a 10,000-pixel-tall plot)."""
    plt = _pyplot()
    shown = importance.iloc[-top:]
    figure, axes = plt.subplots(figsize=(7, 0.35 * len(shown) + 1.5))
    axes.barh(shown.index, shown.to_numpy())
    axes.set_xlabel("Mean drop in score when the column is shuffled")
    title = "Feature importance (permutation, raw columns)"
    axes.set_title(title if len(shown) == len(importance) else f"{title}: top {len(shown)} of {len(importance)}")
    figure.tight_layout()
    return figure


def residuals_figure(y_true: Any, predicted: Any) -> Any:
    """Residuals against predictions: structure here is signal the model missed."""
    plt = _pyplot()
    predicted = np.asarray(predicted, dtype="float64")
    residuals = np.asarray(y_true, dtype="float64") - predicted
    figure, axes = plt.subplots(figsize=(6, 4.5))
    axes.scatter(predicted, residuals, s=8, alpha=0.5)
    axes.axhline(0.0, color="grey", linestyle="--", linewidth=1)
    axes.set_xlabel("Predicted")
    axes.set_ylabel("Actual - predicted")
    axes.set_title("Residuals")
    figure.tight_layout()
    return figure


def evaluation_figures(
    model: Any, features: pd.DataFrame, labels: pd.Series, task: str, seed: int = 0, max_rows: int = PLOT_SAMPLE_ROWS
) -> dict[str, Any]:
    """Every plot for a fitted pipeline on labelled rows (a seeded sample of ``max_rows``
    of them at most), keyed by PNG file name."""
    if len(features) > max_rows:
        sample = features.sample(max_rows, random_state=seed).index
        features, labels = features.loc[sample], labels.loc[sample]
    figures = {"feature_importance.png": importance_figure(feature_importance(model, features, labels, seed))}
    if task == "classification":
        classes = [str(c) for c in model.classes_]
        probabilities = np.asarray(model.predict_proba(features), dtype="float64")
        predicted = np.asarray(classes)[probabilities.argmax(axis=1)]
        figures["confusion_matrix.png"] = confusion_matrix_figure(labels, predicted, classes)
        figures["roc_curves.png"] = roc_figure(labels, probabilities, classes)
    else:
        figures["residuals.png"] = residuals_figure(labels, model.predict(features))
    return figures
