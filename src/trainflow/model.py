"""The inference pipeline: preprocessing and model in one sklearn ``Pipeline``, trained,
exported with MLflow and loaded back without any training code.
"""

from __future__ import annotations

import inspect
import warnings
from dataclasses import dataclass
from importlib.metadata import version as installed_version
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from trainflow.data import require_columns
from trainflow.errors import ConfigError, DataError

# Types the skops loader must accept for the estimators trainflow builds. Each was
# reviewed: numpy.dtype is a plain dtype descriptor; sklearn.tree._tree.Tree holds
# the forest's node arrays, safe for artifacts this project wrote itself (skops flags
# it because a hand-crafted file could carry out-of-range node indices).
SKOPS_TRUSTED_TYPES = ["numpy.dtype", "sklearn.tree._tree.Tree"]

# What the exported model needs at serving time, pinned to the training environment.
MODEL_REQUIREMENTS = ("mlflow", "scikit-learn", "pandas", "numpy", "scipy", "skops")


def _random_forest_class():  # type: ignore[no-untyped-def]
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier


def validate_estimator_params(params: dict[str, Any]) -> None:
    """Fail at start on a parameter RandomForestClassifier does not accept."""
    accepted = set(inspect.signature(_random_forest_class().__init__).parameters) - {"self"}
    unknown = sorted(set(params) - accepted)
    if unknown:
        raise ConfigError(
            f"model.random_forest.{unknown[0]} is not a RandomForestClassifier parameter; "
            f"valid ones: {', '.join(sorted(accepted))}"
        )


def build_pipeline(numeric: list[str], categorical: list[str], estimator_params: dict[str, Any]):  # type: ignore[no-untyped-def]
    """Impute+scale numeric columns, impute+one-hot categorical ones, then the forest.

    Columns not listed are dropped, so production input may carry extra columns.
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    transformers = []
    if numeric:
        transformers.append(
            ("numeric", Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]), list(numeric))
        )
    if categorical:
        transformers.append(
            (
                "categorical",
                Pipeline(
                    [
                        ("impute", SimpleImputer(strategy="most_frequent")),
                        ("onehot", OneHotEncoder(handle_unknown="ignore")),
                    ]
                ),
                list(categorical),
            )
        )
    try:
        estimator = _random_forest_class()(**estimator_params)
    except TypeError as error:
        raise ConfigError(f"model.random_forest: {error}") from None
    return Pipeline([("preprocess", ColumnTransformer(transformers, remainder="drop")), ("model", estimator)])


@dataclass
class TrainResult:
    pipeline: Any
    validation_metrics: dict[str, float]
    features: pd.DataFrame  # the raw feature columns of the training rows, for the signature
    target: str
    estimator_params: dict[str, Any]
    n_train: int
    n_validation: int

    def summary(self) -> dict[str, Any]:
        """What a reader of the exported artifact needs to know, as JSON-friendly metadata."""
        return {
            "target": self.target,
            "classes": [str(c) for c in self.pipeline.classes_],
            "features": [str(c) for c in self.features.columns],
            "estimator": "random_forest",
            "estimator_params": self.estimator_params,
            "rows": {"train": self.n_train, "validation": self.n_validation},
            "validation": self.validation_metrics,
        }


def train(
    trainval: pd.DataFrame,
    target: str,
    numeric: list[str],
    categorical: list[str],
    estimator_params: dict[str, Any],
    val_size: float,
    random_seed: int,
    stratify_by: str | None,
) -> TrainResult:
    """Fit the inference pipeline on a train part of ``trainval``; score it on the rest."""
    from sklearn.model_selection import train_test_split

    from trainflow.evaluate import classification_metrics

    columns = list(numeric) + list(categorical)
    require_columns(trainval, columns + [target] + ([stratify_by] if stratify_by else []), "train_model")
    features, labels = trainval[columns], trainval[target]
    if labels.nunique() < 2:
        raise DataError(f"the target {target!r} has a single class {labels.iloc[0]!r}: nothing to learn")
    try:
        x_train, x_val, y_train, y_val = train_test_split(
            features, labels, test_size=val_size, random_state=random_seed,
            stratify=trainval[stratify_by] if stratify_by else None,
        )
    except ValueError as error:
        raise DataError(f"cannot make a validation split: {error}; lower split.val_size") from None
    pipeline = build_pipeline(numeric, categorical, estimator_params)
    pipeline.fit(x_train, y_train)
    metrics = classification_metrics(y_val, pipeline.predict_proba(x_val), pipeline.classes_)
    return TrainResult(pipeline, metrics, x_train, target, dict(estimator_params), len(x_train), len(x_val))


def train_from_config(trainval: pd.DataFrame, cfg: DictConfig) -> TrainResult:
    """:func:`train` with the ``data``, ``split`` and ``model`` sections of the config."""
    return train(
        trainval,
        target=cfg.data.target,
        numeric=list(cfg.model.features.numeric),
        categorical=list(cfg.model.features.categorical),
        estimator_params=OmegaConf.to_container(cfg.model.random_forest, resolve=True),
        val_size=cfg.split.val_size,
        random_seed=cfg.split.random_seed,
        stratify_by=cfg.split.stratify_by,
    )


def pinned_requirements() -> list[str]:
    return [f"{package}=={installed_version(package)}" for package in MODEL_REQUIREMENTS]


def export(pipeline: Any, features: pd.DataFrame, path: Path, metadata: dict[str, Any] | None = None) -> Path:
    """Save the fitted pipeline as an MLflow model with signature and input example.

    The signature is inferred from raw training rows (missing values included) so
    that MLflow enforces the columns production must send.
    """
    import mlflow.sklearn
    from mlflow.models import infer_signature

    with warnings.catch_warnings():
        # Integer columns without missing values: a hint MLflow prints on every export.
        warnings.filterwarnings("ignore", message=".*Integer columns in Python cannot represent missing values.*")
        signature = infer_signature(features, pipeline.predict(features))
    mlflow.sklearn.save_model(
        pipeline,
        str(path),
        signature=signature,
        input_example=features.head(5),
        pip_requirements=pinned_requirements(),
        serialization_format="skops",
        skops_trusted_types=SKOPS_TRUSTED_TYPES,
        metadata=metadata,
    )
    return path


def load_exported(path: Path) -> Any:
    """Load an exported inference pipeline: MLflow and the artifact only, no training code."""
    import mlflow.sklearn

    return mlflow.sklearn.load_model(str(path))
