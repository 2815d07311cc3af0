"""Metrics as plain dicts. No MLflow, no files."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def classification_metrics(y_true: Sequence[Any], probabilities: np.ndarray, classes: Sequence[Any]) -> dict[str, float]:
    """ROC AUC (macro, one-vs-one; plain AUC for two classes), accuracy and macro F1.

    ``probabilities`` has one column per entry of ``classes``, in that order, as
    ``predict_proba`` returns them.
    """
    from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

    classes = list(classes)
    y_true = np.asarray(y_true)
    predicted = np.asarray(classes)[np.argmax(probabilities, axis=1)]
    metrics = {
        "accuracy": float(accuracy_score(y_true, predicted)),
        "f1_macro": float(f1_score(y_true, predicted, average="macro", labels=classes, zero_division=0)),
    }
    present = set(y_true.tolist())
    if len(present) < 2:
        # AUC is undefined on one class; report it as missing rather than as a number.
        metrics["roc_auc_ovo"] = float("nan")
    elif len(classes) == 2:
        metrics["roc_auc_ovo"] = float(roc_auc_score(y_true == classes[1], probabilities[:, 1]))
    else:
        metrics["roc_auc_ovo"] = float(
            roc_auc_score(y_true, probabilities, multi_class="ovo", average="macro", labels=classes)
        )
    return metrics


def score_exported_model(model_dir: Path, test: pd.DataFrame, target: str) -> dict[str, float]:
    """Load an exported inference artifact and score it on ``test`` (raw rows with the target)."""
    from mlflow.models import Model

    from trainflow.data import require_columns
    from trainflow.model import load_exported

    inputs = Model.load(str(model_dir)).get_input_schema()
    require_columns(test, list(inputs.input_names()) + [target], "test_model")
    model = load_exported(model_dir)
    features = test[list(inputs.input_names())]
    return classification_metrics(test[target], model.predict_proba(features), model.classes_)
