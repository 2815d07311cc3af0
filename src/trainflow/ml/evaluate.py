"""Metrics as plain dicts. No MLflow runs, no store."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from trainflow.errors import ConfigError
from trainflow.ml.data import require_columns
from trainflow.ml.inference import load_exported

# scikit-learn, scipy.stats and mlflow are imported inside the functions that use them: about 1.5 s that
# validating a config (every pipeline run, cached steps included) and `trainflow sweeps` do not pay
# (docs/architecture.md#start-up).

# The metrics a summary line shows first, per task.
HEADLINE_METRICS = {"classification": ("roc_auc_ovo", "accuracy", "f1_macro"), "regression": ("r2", "mae", "rmse")}


# The error metrics trainflow reports: lower is better. Every other one is a score.
LOWER_IS_BETTER = frozenset({"log_loss", "mae", "rmse"})
# promote.metric / sweep.metric "auto": the task's metric. Both are unitless, so that a
# margin (promote.baseline_margin, min_improvement) means the same on every table.
AUTO = "auto"
DEFAULT_METRICS = {"classification": "roc_auc_ovo", "regression": "r2"}


def higher_is_better(name: str) -> bool:
    """Whether a larger value of metric ``name`` is better."""
    return name not in LOWER_IS_BETTER


def task_metric(metric: str, task: str) -> str:
    """``metric`` as configured, with ``auto`` meaning the task's own."""
    return DEFAULT_METRICS[task] if metric == AUTO else metric


def metric_direction(metric: str, higher: bool | None) -> bool:
    """Whether larger is better for ``metric``: as configured, or (None) the metric's own."""
    return higher_is_better(metric.removeprefix("val_")) if higher is None else higher


def check_direction(metric: str, higher: bool | None, setting: str | None) -> None:
    """Refuse comparing an error metric as a score, or a score as an error: the "best"
    model would be the worst. ``metric`` as it was given (a validation metric may carry
    ``val_``); ``higher`` None (the metric's own direction) always fits; ``setting``: the
    config section that holds it and ``higher_is_better`` (``promote``, ``sweep``), or None
    for the command line's ``--lower-is-better``."""
    if higher is None or metric == AUTO:
        return
    better = higher_is_better(metric.removeprefix("val_"))
    if higher == better:
        return
    word = "higher" if better else "lower"
    if setting is None:
        raise ConfigError(f"--metric {metric} is better {word}: {'drop' if better else 'add'} --lower-is-better")
    raise ConfigError(
        f"{setting}.metric={metric} is better {word}: set {setting}.higher_is_better={str(better).lower()} "
        "(or null, the metric's own direction) with it"
    )


def is_task_metric(name: str, task: str) -> bool:
    """Whether ``name`` is a metric trainflow reports for ``task``."""
    if task == "regression":
        return name in HEADLINE_METRICS["regression"]
    return name in (*HEADLINE_METRICS["classification"], "log_loss") or name.startswith(("precision_", "recall_"))


def headline(metrics: dict[str, float]) -> str:
    """``roc_auc_ovo=0.9876 accuracy=...``: the headline metrics present in ``metrics``."""
    keys = [k for names in HEADLINE_METRICS.values() for k in names if k in metrics]
    return " ".join(f"{k}={metrics[k]:.4f}" for k in keys) or "none"


def metric_key(label: Any) -> str:
    """A class label as it can appear in an MLflow metric name."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", str(label))


def classification_metrics(y_true: ArrayLike, probabilities: Any, classes: Sequence[Any]) -> dict[str, float]:
    """ROC AUC (macro one-vs-one; plain AUC for two classes), accuracy, macro F1, log loss,
    and precision and recall per class; F1, precision and recall over the classes present in
    ``y_true`` or predicted (scikit-learn's default).

    ``probabilities`` has one column per entry of ``classes``, in that order, as
    ``predict_proba`` returns them (an array or a labelled DataFrame).
    """
    from sklearn.metrics import accuracy_score, f1_score, log_loss, precision_recall_fscore_support, roc_auc_score

    classes = list(classes)
    probabilities = np.asarray(probabilities, dtype="float64")
    truth = np.asarray(y_true)
    predicted = np.asarray(classes)[np.argmax(probabilities, axis=1)]
    present = set(truth.tolist())
    # A class neither in these rows nor predicted has no F1, precision or recall (0/0): it
    # is left out rather than counted as 0, which would mark a perfect model imperfect.
    scored = [c for c in classes if c in present or c in set(predicted.tolist())]
    metrics = {
        "accuracy": float(accuracy_score(truth, predicted)),
        "f1_macro": float(f1_score(truth, predicted, average="macro", labels=scored, zero_division=0)),
        "log_loss": float(log_loss(truth, probabilities, labels=classes)),
    }
    if len(present) < 2:
        # AUC is undefined on one class; report it as missing rather than as a number.
        metrics["roc_auc_ovo"] = float("nan")
    elif len(classes) == 2:
        metrics["roc_auc_ovo"] = float(roc_auc_score(truth == classes[1], probabilities[:, 1]))
    else:
        metrics["roc_auc_ovo"] = float(
            roc_auc_score(truth, probabilities, multi_class="ovo", average="macro", labels=classes)
        )
    precision, recall, _, _ = precision_recall_fscore_support(truth, predicted, labels=scored, zero_division=0)
    for label, p, r in zip(scored, precision, recall):
        metrics[f"precision_{metric_key(label)}"] = float(p)
        metrics[f"recall_{metric_key(label)}"] = float(r)
    return metrics


def regression_metrics(y_true: ArrayLike, predicted: ArrayLike) -> dict[str, float]:
    """R2, mean absolute error and root mean squared error."""
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    return {
        "r2": float(r2_score(y_true, predicted)),
        "mae": float(mean_absolute_error(y_true, predicted)),
        "rmse": float(np.sqrt(mean_squared_error(y_true, predicted))),
    }


def trivial_baseline(labels: pd.Series, task: str) -> dict[str, Any]:
    """What scikit-learn's trivial baseline learns from training labels, as JSON-friendly
    metadata: ``DummyClassifier(strategy="prior")`` (the class priors; it predicts them
    for every row) or ``DummyRegressor(strategy="mean")`` (the mean)."""
    from sklearn.dummy import DummyClassifier, DummyRegressor

    rows = np.zeros((len(labels), 1))  # a dummy ignores its features
    if task == "classification":
        dummy = DummyClassifier(strategy="prior").fit(rows, labels)
        return {
            "estimator": "DummyClassifier(strategy='prior')",
            "classes": [str(c) for c in dummy.classes_],
            "class_prior": [float(p) for p in dummy.class_prior_],
        }
    dummy = DummyRegressor(strategy="mean").fit(rows, labels)
    return {"estimator": "DummyRegressor(strategy='mean')", "constant": float(np.ravel(dummy.constant_)[0])}


def baseline_outputs(baseline: dict[str, Any], rows: int, classes: Sequence[Any], task: str) -> np.ndarray:
    """What the baseline :func:`trivial_baseline` describes answers for ``rows`` rows, as a
    model with those ``classes`` (its ``classes_``) answers: probabilities, or values."""
    if task == "classification":
        prior = dict(zip(baseline["classes"], baseline["class_prior"], strict=True))
        return np.tile([prior.get(str(c), 0.0) for c in classes], (rows, 1))
    return np.full(rows, baseline["constant"], dtype="float64")


def outputs_of(model: Any, features: pd.DataFrame, task: str) -> np.ndarray:
    """A fitted pipeline's answers on rows: class probabilities, or values."""
    answers = model.predict_proba(features) if task == "classification" else model.predict(features)
    return np.asarray(answers, dtype="float64")


def task_metrics(labels: Any, outputs: np.ndarray, classes: Sequence[Any], task: str) -> dict[str, float]:
    """The task's metrics of answers (:func:`outputs_of`) on labelled rows."""
    if task == "classification":
        return classification_metrics(labels, outputs, classes)
    return regression_metrics(labels, outputs)


def score_predictions(model: Any, features: pd.DataFrame, labels: pd.Series, task: str) -> dict[str, float]:
    """The task's metrics for a fitted pipeline (in memory or loaded back) on labelled rows."""
    return task_metrics(labels, outputs_of(model, features, task), getattr(model, "classes_", []), task)


def metric_value(name: str, labels: Any, outputs: np.ndarray, classes: Sequence[Any], task: str) -> float:
    """One metric of :func:`task_metrics`, computed alone where that is cheap (the
    bootstrap below computes one a few hundred times)."""
    truth = np.asarray(labels)
    if task == "regression" and name in ("r2", "mae", "rmse"):
        errors = truth - outputs
        if name == "mae":
            return float(np.mean(np.abs(errors)))
        if name == "rmse":
            return float(np.sqrt(np.mean(errors**2)))
        return float(1.0 - np.sum(errors**2) / np.sum((truth - truth.mean()) ** 2))
    if task == "classification" and name == "accuracy":
        return float(np.mean(np.asarray(classes)[np.argmax(outputs, axis=1)] == truth))
    if task == "classification" and name == "roc_auc_ovo" and len(set(truth.tolist())) >= 2:
        if len(classes) == 2:
            return _binary_auc(truth == classes[1], outputs[:, 1])
        return _ovo_auc(truth, outputs, classes)
    return task_metrics(truth, outputs, classes, task)[name]


def _binary_auc(positive: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC as the Mann-Whitney statistic over average ranks (ties count half), which is
    what roc_auc_score computes, without its input checks (a few ms a call, and the
    bootstrap calls it hundreds of times)."""
    from scipy.stats import rankdata

    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if not n_pos or not n_neg:
        raise ValueError("only one class present")
    return float((rankdata(scores)[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _ovo_auc(truth: np.ndarray, scores: np.ndarray, classes: Sequence[Any]) -> float:
    """Macro one-vs-one ROC AUC (Hand and Till), as roc_auc_score(multi_class="ovo") defines
    it: per pair of classes, the mean of each one's AUC against the other on their rows."""
    pairs = []
    for a in range(len(classes)):
        for b in range(a + 1, len(classes)):
            rows = (truth == classes[a]) | (truth == classes[b])
            is_a = truth[rows] == classes[a]
            pairs.append((_binary_auc(is_a, scores[rows, a]) + _binary_auc(~is_a, scores[rows, b])) / 2)
    return float(np.mean(pairs))


# The bootstrap that says how surely a model beats its baseline: this many resamples of at
# most this many test rows (larger test sets are resampled m out of n and the spread scaled
# back by sqrt(m/n): a few seconds at most, whatever the test set's size).
BOOTSTRAP_RESAMPLES = 100
BOOTSTRAP_ROWS = 5_000


def baseline_gap(
    metric: str,
    labels: pd.Series,
    outputs: np.ndarray,
    baseline: np.ndarray,
    classes: Sequence[Any],
    task: str,
    seed: int = 0,
) -> dict[str, Any]:
    """How far a model beats its baseline on ``metric`` (in the metric's better direction),
    with a one-sided 95% lower bound on that gap from a bootstrap over the test rows: on a
    small test set a model that learnt nothing can beat the baseline by luck, and the
    bound says so. ``{"metric", "gap", "lower", "resamples", "rows"}``."""
    truth = np.asarray(labels)
    sign = 1.0 if higher_is_better(metric) else -1.0

    def gap(rows: Any) -> float:
        model = metric_value(metric, truth[rows], outputs[rows], classes, task)
        return sign * (model - metric_value(metric, truth[rows], baseline[rows], classes, task))

    observed = gap(slice(None))
    n = len(truth)
    m = min(n, BOOTSTRAP_ROWS)
    random = np.random.default_rng(seed)
    gaps = []
    for _ in range(BOOTSTRAP_RESAMPLES):
        try:
            value = gap(random.integers(0, n, m))
        except (KeyError, ValueError):  # a resample without every class the metric needs
            continue
        if np.isfinite(value):
            gaps.append(value)
    if len(gaps) < BOOTSTRAP_RESAMPLES // 2:
        lower = float("nan")
    else:
        lower = observed - (float(np.mean(gaps)) - float(np.quantile(gaps, 0.05))) * np.sqrt(m / n)
    return {"metric": metric, "gap": float(observed), "lower": float(lower), "resamples": len(gaps), "rows": m}


# test_model's sample of predictions (the MLflow table test_predictions.json, the W&B table
# test_predictions): the first rows of the test set, enough to see what the model answers
# beside the truth, few enough that either UI shows the whole table at once.
PREDICTION_SAMPLE_ROWS = 100


def prediction_sample(
    features: pd.DataFrame,
    labels: pd.Series,
    outputs: np.ndarray,
    classes: Sequence[Any],
    task: str,
    rows: int = PREDICTION_SAMPLE_ROWS,
) -> pd.DataFrame:
    """The first ``rows`` test rows as the model saw them: its input columns, the target
    (named as ``labels``), ``prediction`` and, for classification, ``probability`` (that of
    the predicted class). ``outputs`` are the model's answers on ``features``
    (:func:`outputs_of`); the predicted class is the most probable one, as the metrics take
    it. A name an input column already has gets ``_`` appended."""
    n = min(rows, len(features))
    sample = features.iloc[:n].reset_index(drop=True)
    taken = {str(column) for column in sample.columns}

    def free(name: str) -> str:
        while name in taken:
            name += "_"
        taken.add(name)
        return name

    answers = np.asarray(outputs)[:n]
    sample[free(str(labels.name))] = labels.iloc[:n].reset_index(drop=True)
    if task == "classification":
        best = np.argmax(answers, axis=1)
        sample[free("prediction")] = np.asarray(classes)[best]
        sample[free("probability")] = answers[np.arange(n), best]
    else:
        sample[free("prediction")] = answers
    return sample


@dataclass
class ExportedModel:
    """An exported inference artifact loaded back, with the labelled rows to score it on."""

    model: Any
    task: str
    features: pd.DataFrame
    labels: pd.Series

    @property
    def classes(self) -> list[Any]:
        return list(getattr(self.model, "classes_", []))

    def outputs(self) -> np.ndarray:
        return outputs_of(self.model, self.features, self.task)

    def score(self) -> dict[str, float]:
        return task_metrics(self.labels, self.outputs(), self.classes, self.task)

    def prediction_sample(self, outputs: np.ndarray) -> pd.DataFrame:
        """:func:`prediction_sample` of these rows, given their ``outputs`` (:meth:`outputs`)."""
        return prediction_sample(self.features, self.labels, outputs, self.classes, self.task)


def load_for_scoring(model_dir: Path, table: pd.DataFrame, target: str) -> ExportedModel:
    """Load an exported artifact with MLflow (no training code) and select, from raw rows,
    the input columns its signature names; rows without a target are left out."""
    from mlflow.models import Model

    exported = Model.load(str(model_dir))
    inputs = list(exported.get_input_schema().input_names())
    require_columns(table, inputs + [target], "test_model")
    labelled = table.dropna(subset=[target])
    task = (exported.metadata or {}).get("task", "classification")
    return ExportedModel(load_exported(model_dir), task, labelled[inputs], labelled[target])


def score_exported_model(model_dir: Path, test: pd.DataFrame, target: str) -> dict[str, float]:
    """Load an exported inference artifact and score it on ``test`` (raw rows with the target)."""
    return load_for_scoring(model_dir, test, target).score()
