"""Batch inference with an exported model: the rows in, the rows plus predictions out.

The model is loaded the way ``mlflow models serve`` loads it (pyfunc, the signature
enforced), so batch and online predictions agree. No training code, no MLflow run.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trainflow.errors import DataError, TrainflowError
from trainflow.ml.data import require_columns

# mlflow is imported inside the functions that load models: about 0.65 s that validating a config (through
# trainflow.ml.evaluate) and `trainflow data-schema infer` do not pay (docs/architecture.md#start-up).

PREDICTION = "prediction"


def _free(name: str, taken: set[str]) -> str:
    """``name``, or ``name_1``, ``name_2``... if the input already has such a column."""
    candidate, n = name, 0
    while candidate in taken:
        n += 1
        candidate = f"{name}_{n}"
    return candidate


def prediction_column(input_columns: Iterable[object]) -> str:
    """The name :func:`predict_table` gives the predictions for an input with these columns."""
    return _free(PREDICTION, set(map(str, input_columns)))


def predict_table(model_dir: Path, frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with a ``prediction`` column (and ``proba_<class>`` columns for a classifier).

    The model sees only the columns of its signature; the others (a target column, ids)
    are kept in the output untouched. A missing required column is a :class:`DataError`.
    """
    import mlflow.pyfunc
    from mlflow.exceptions import MlflowException
    from mlflow.models import Model

    repeated = sorted({str(c) for c in frame.columns[frame.columns.duplicated()]})
    if repeated:
        raise DataError(
            f"the rows to score name more than one column {', '.join(map(repr, repeated))}: "
            "give every column a unique name"
        )
    schema = Model.load(str(model_dir)).get_input_schema()
    if schema is not None:
        require_columns(frame, list(schema.required_input_names()), "batch_predict")
        features = frame[[c for c in schema.input_names() if c in frame.columns]]
    else:
        features = frame
    model = mlflow.pyfunc.load_model(str(model_dir))
    try:
        predicted = model.predict(features)
    except (MlflowException, ValueError, TypeError) as error:
        # Schema enforcement (a text where a number belongs) or the pipeline (inf) refusing
        # the rows: the input's fault, so one line that names what the model expects.
        expected = (
            ", ".join(f"{c.name}: {_type_name(c.type)}" for c in schema.inputs)
            if schema is not None
            else "see its MLmodel"
        )
        # MLflow's schema error starts with the whole frame; its reason follows "Error: ".
        reason = " ".join(str(error).rpartition("Error: ")[2].split()) or type(error).__name__
        raise DataError(
            f"the model cannot score these rows ({reason}); give it columns of the types it expects: {expected}"
        ) from None
    out = frame.copy()
    taken = set(map(str, out.columns))

    def add(name: str, values: np.ndarray) -> None:
        column = _free(name, taken)
        out[column] = values
        taken.add(column)

    if isinstance(predicted, pd.DataFrame):
        # A classifier's pyfunc answers with one labelled probability column per class.
        add(PREDICTION, predicted.columns.to_numpy()[predicted.to_numpy().argmax(axis=1)])
        for label in predicted.columns:
            add(f"proba_{label}", predicted[label].to_numpy())
    else:
        values = np.asarray(predicted)
        add(PREDICTION, values[:, 0] if values.ndim > 1 else values)
    return out


def _type_name(kind: object) -> str:
    """A column's type as the signature says it; an open one (MLflow's ``any``) is what
    trainflow leaves open: a number (trainflow.ml.train.input_signature)."""
    name = getattr(kind, "name", None)
    return "number" if name is None or str(name).lower() == "any" else str(name)


# Another project's version: project/name:selector (the selector is what tells it from a path)
_QUALIFIED_REF = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*:[A-Za-z0-9][\w.-]*")


def is_location(value: str) -> bool:
    """Whether a ``batch_predict.input`` value is a path or URL rather than an artifact reference.

    An artifact name has no '/' except after its project, and then a version or alias
    follows (``churn-churned/test_data.parquet:latest``); anything else with a '/'
    (``./new.csv``, ``/data/x.parquet``, ``file://...``, ``https://...``) is a location.
    """
    if "://" not in value and _QUALIFIED_REF.fullmatch(value):
        return False
    return "/" in value or "\\" in value


def load_exported(path: Path) -> Any:
    """Load an exported inference pipeline: MLflow and the artifact only, no training code."""
    import mlflow.sklearn

    try:
        return mlflow.sklearn.load_model(str(path))
    except Exception as error:
        if type(error).__name__ != "UntrustedTypesFoundException":  # skops.io.exceptions
            raise
        untrusted = str(error).splitlines()[0].removeprefix("Untrusted types found in the file: ").rstrip(".")
        raise TrainflowError(
            f"the model at {path} holds types outside its reviewed skops list {untrusted}: it was not loaded. "
            "A model trainflow exported lists every type it holds in its MLmodel, so it was edited or made elsewhere: "
            "re-export it with train_model"
        ) from None
