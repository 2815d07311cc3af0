"""The inference pipeline: preprocessing and model in one sklearn ``Pipeline``, built from
config, trained, exported with MLflow and loaded back without any training code.

Which columns are features and how they are encoded is :mod:`trainflow.ml.features`; this
module chooses the estimator, fits, scores and exports.
"""

from __future__ import annotations

import inspect
import re
import shutil
import warnings
from dataclasses import dataclass
from importlib.metadata import packages_distributions
from importlib.metadata import version as installed_version
from pathlib import Path
from typing import Any

import pandas as pd
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig

from trainflow.errors import ConfigError, DataError
from trainflow.ml.data import (
    TASKS,
    release_unused_arrow_memory,
    require_columns,
    resolve_task,
    stratify_target,
    typing_sample,
)
from trainflow.ml.evaluate import score_predictions, trivial_baseline
from trainflow.ml.features import (
    CATEGORICAL_ENCODINGS,
    KIND_SETTINGS,
    ColumnChoice,
    FeaturePlan,
    FeatureSpec,
    PreprocessingOptions,
    build_preprocessor,
    configure_estimator,
    explain_columns,
    feature_table,
    listed_columns,
    plan_features,
    spec_of,
)
from trainflow.sections import section_dict

# scikit-learn, mlflow and trainflow_inference (scikit-learn) are imported inside the functions that use them:
# about 1.3 s that validating a config (trainflow.config.schema.validate), so every pipeline run, cached steps
# included, does not pay (docs/architecture.md#start-up).

AUTO_TASK = "auto"
# model.estimator=custom: the estimator model.custom names by its _target_ (Hydra's instantiate)
CUSTOM = "custom"
ESTIMATORS: dict[str, dict[str, str]] = {
    "classification": {
        "random_forest": "sklearn.ensemble.RandomForestClassifier",
        "hist_gradient_boosting": "sklearn.ensemble.HistGradientBoostingClassifier",
        "logistic_regression": "sklearn.linear_model.LogisticRegression",
    },
    "regression": {
        "random_forest": "sklearn.ensemble.RandomForestRegressor",
        "hist_gradient_boosting": "sklearn.ensemble.HistGradientBoostingRegressor",
        "ridge": "sklearn.linear_model.Ridge",
    },
}
NUMERIC_IMPUTATION = ("mean", "median", "most_frequent")
SERIALIZATIONS = ("skops", "cloudpickle")

# Types the skops loader may instantiate for the pipelines trainflow builds, beyond
# skops' own defaults (plain sklearn estimators and numpy arrays). Each was reviewed:
# - numpy.dtype, numpy.float64: dtype descriptors and a scalar type (TF-IDF's dtype
#   parameter, encoders' categories); no code runs when they are built.
# - sklearn.tree._tree.Tree: the node arrays of forests; skops flags it because a
#   hand-made file could hold out-of-range node indices. Safe for artifacts this
#   project wrote and stores by digest.
# - sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor and
#   ..._hist_gradient_boosting.binning._BinMapper: the same, for histogram boosting.
# - functools.partial, sklearn.utils.validation.check_array: histogram boosting with
#   native categories keeps its numeric columns' input check as partial(check_array,
#   dtype=..., ensure_all_finite=False). Loading rebuilds the partial object and runs
#   nothing; a partial can wrap only a trusted function, and check_array is the one.
# - trainflow_inference.*: our own small transformers, shipped inside the artifact.
# A custom estimator's own types are trusted only when listed in model.trusted_types.
SKOPS_TRUSTED_TYPES = [
    "numpy.dtype",
    "numpy.float64",
    "sklearn.tree._tree.Tree",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "functools.partial",
    "sklearn.utils.validation.check_array",
    "trainflow_inference.DatetimeFeatures",
    "trainflow_inference.InputColumns",
    "trainflow_inference.TextColumn",
    "trainflow_inference.TextComponents",
    "trainflow_inference.CsrColumnTransformer",
    "trainflow_inference.LabelledProbabilities",
    "trainflow_inference.ServingPipeline",
]

# What the exported model needs at serving time, pinned to the training environment
# (a custom estimator's own package is added: pinned_requirements).
MODEL_REQUIREMENTS = ("mlflow", "scikit-learn", "pandas", "numpy", "scipy", "skops")


def estimator_tasks(estimator: str) -> list[str]:
    """The tasks a built-in estimator name exists for (both, for ``custom``)."""
    return list(TASKS) if estimator == CUSTOM else [task for task in TASKS if estimator in ESTIMATORS[task]]


def estimator_class(task: str, estimator: str) -> type:
    # Imported by name, not through importlib: trainflow.pipeline.cache's import walk then sees that
    # this loads no trainflow code. Here, not at module level: sklearn takes a second.
    from sklearn import ensemble, linear_model

    module, _, name = ESTIMATORS[task][estimator].rpartition(".")
    return getattr({"sklearn.ensemble": ensemble, "sklearn.linear_model": linear_model}[module], name)


def validate_model_config(model: DictConfig, target: str, estimator_params: bool = True) -> None:
    """Fail at start on a task/estimator mismatch, an unknown parameter or contradictory features.

    ``estimator_params=False`` skips :func:`validate_estimator_config`, the one check that
    imports scikit-learn, for a caller that makes it later (the pipeline, before real work).
    """
    if model.task not in (AUTO_TASK, *TASKS):
        raise ConfigError(f"model.task={model.task!r} is not one of {AUTO_TASK}, {', '.join(TASKS)}")
    tasks = estimator_tasks(model.estimator)
    if not tasks:
        names = sorted({name for names in ESTIMATORS.values() for name in names} | {CUSTOM})
        raise ConfigError(f"model.estimator={model.estimator!r} is not one of {', '.join(names)}")
    if model.task != AUTO_TASK and model.task not in tasks:
        raise ConfigError(
            f"model.estimator={model.estimator!r} does not fit model.task={model.task}: "
            f"choose one of {', '.join([*ESTIMATORS[model.task], CUSTOM])}"
        )
    if model.estimator == CUSTOM and not (model.custom or {}).get("_target_"):
        raise ConfigError(
            "model.estimator=custom needs the estimator's import path in model.custom._target_, e.g. "
            "model.custom._target_=sklearn.ensemble.ExtraTreesClassifier"
        )
    if model.serialization not in SERIALIZATIONS:
        raise ConfigError(f"model.serialization={model.serialization!r} is not one of {', '.join(SERIALIZATIONS)}")
    features = model.features
    if features.imputation.numeric not in NUMERIC_IMPUTATION:
        raise ConfigError(
            f"model.features.imputation.numeric={features.imputation.numeric!r} is not one of {', '.join(NUMERIC_IMPUTATION)}"
        )
    if features.imputation.categorical != "most_frequent":
        raise ConfigError("model.features.imputation.categorical supports most_frequent only")
    if features.categorical_encoding not in CATEGORICAL_ENCODINGS:
        raise ConfigError(
            f"model.features.categorical_encoding={features.categorical_encoding!r} is not one of "
            f"{', '.join(CATEGORICAL_ENCODINGS)}"
        )
    for key, value, least in (
        ("text.max_features", features.text.max_features, 1),
        ("text.components", features.text.components, 1),
        ("max_categories", features.max_categories, 2),
        ("high_cardinality", features.high_cardinality, 2),
        ("max_dense_bytes", features.max_dense_bytes, 1),
    ):
        if value < least:
            raise ConfigError(f"model.features.{key}={value} must be at least {least}")
    if estimator_params:
        validate_estimator_config(model)
    if features.infer:
        return
    spec = feature_spec(model)
    if not spec.columns:
        raise ConfigError("model.features lists no column: name some, or set model.features.infer=true")
    seen: dict[str, str] = {}
    for kind, columns in spec.as_dict().items():
        for column in columns:
            if column in seen:
                raise ConfigError(f"column {column!r} is listed as both {seen[column]} and {kind} in model.features")
            seen[column] = kind
    if target in seen:
        raise ConfigError(f"the target {target!r} is also listed as a {seen[target]} feature in model.features")


def validate_estimator_config(model: DictConfig) -> None:
    """Fail on a ``model.<estimator>`` parameter the chosen sklearn class does not accept,
    or a value of the wrong type or out of its range. With ``model.task=auto`` a parameter
    is valid when the estimator of either task accepts it (the data decides the task later).
    A custom estimator is instantiated, which checks its import path and parameters."""
    if model.estimator == CUSTOM:
        instantiate_custom(model.custom)
        return
    params = section_dict(model[model.estimator])
    tasks = estimator_tasks(model.estimator) if model.task == AUTO_TASK else [model.task]
    errors = []
    for task in tasks:
        try:
            validate_estimator_params(task, model.estimator, params)
            return
        except ConfigError as error:
            errors.append(error)
    raise errors[0]


def instantiate_custom(custom: Any) -> Any:
    """The estimator ``model.custom`` describes (Hydra's ``_target_`` and its parameters)."""
    settings = section_dict(custom)
    try:
        estimator = instantiate(settings, _convert_="all")
    except InstantiationException as error:
        cause = error.__cause__ or error
        detail = " ".join(str(cause).split()) or type(cause).__name__
        raise ConfigError(f"model.custom._target_={settings.get('_target_')!r} cannot be built: {detail}") from None
    if not (hasattr(estimator, "fit") and hasattr(estimator, "get_params")):
        raise ConfigError(
            f"model.custom._target_={settings.get('_target_')!r} is not a scikit-learn-compatible estimator "
            "(it needs fit and get_params)"
        )
    return estimator


def make_estimator(task: str, estimator: str, params: dict[str, Any], custom: Any = None) -> Any:
    """The unfitted model for ``task``: a built-in name with its parameters, or the custom one;
    refuses one made for the other task, naming the ones that fit."""
    from sklearn.base import is_classifier, is_regressor

    if estimator == CUSTOM:
        model = instantiate_custom(custom)
        fits = is_classifier(model) if task == "classification" else is_regressor(model)
        if not fits:
            raise ConfigError(
                f"model.custom._target_={type(model).__module__}.{type(model).__name__} is not a "
                f"{'classifier' if task == 'classification' else 'regressor'}, and this is a {task} task: "
                "choose a class for the task (or set model.task)"
            )
        return model
    if estimator not in ESTIMATORS[task]:
        raise ConfigError(
            f"model.estimator={estimator} is for {' and '.join(estimator_tasks(estimator))}, and this is a {task} task: "
            f"choose one of {', '.join(ESTIMATORS[task])} (or set model.task)"
        )
    try:
        return estimator_class(task, estimator)(**params)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"model.{estimator}: {error}") from None


# scikit-learn's message for a bad parameter value: which parameter, and what it must be.
_INVALID_PARAMETER = re.compile(
    r"The '(?P<name>\w+)' parameter of \w+ must be (?P<allowed>.+)\. Got .+ instead\.", re.DOTALL
)


def validate_estimator_params(task: str, estimator: str, params: dict[str, Any]) -> None:
    """Fail at start on a parameter the chosen estimator does not accept, or on a value it
    would refuse at fit (``n_estimators=abc``, ``n_estimators=0``), without fitting."""
    cls = estimator_class(task, estimator)
    accepted = set(inspect.signature(cls).parameters)  # the constructor's, without self
    unknown = sorted(set(params) - accepted)
    if unknown:
        raise ConfigError(
            f"model.{estimator}.{unknown[0]} is not a {cls.__name__} parameter; "
            f"valid ones: {', '.join(sorted(accepted))}"
        )
    from sklearn.utils._param_validation import InvalidParameterError

    try:
        # The same type and range checks fit() starts with (each class's _parameter_constraints),
        # so a bad value fails before any step runs rather than inside train_model with a
        # traceback. _validate_params is underscored, not public API: scikit-learn is pinned
        # (requirements.lock), and tests/unit/test_model.py shows when an upgrade changes it.
        cls(**params)._validate_params()
    except InvalidParameterError as error:
        found = _INVALID_PARAMETER.fullmatch(str(error).strip())
        if found is None or found["name"] not in params:  # a message of another form: pass it on whole
            raise ConfigError(f"model.{estimator}: {' '.join(str(error).split())}") from None
        name = found["name"]
        raise ConfigError(
            f"model.{estimator}.{name}={params[name]!r} is not valid: {cls.__name__}'s {name} must be "
            f"{' '.join(found['allowed'].split())}"
        ) from None


def feature_spec(model: DictConfig) -> FeatureSpec:
    features = model.features
    return FeatureSpec(
        numeric=list(features.numeric),
        categorical=list(features.categorical),
        text=list(features.text.columns),
        datetime=list(features.datetime),
    )


def preprocessing_options(model: DictConfig) -> PreprocessingOptions:
    features = model.features
    return PreprocessingOptions(
        numeric_imputation=features.imputation.numeric,
        categorical_imputation=features.imputation.categorical,
        categorical_encoding=features.categorical_encoding,
        text_max_features=features.text.max_features,
        text_components=features.text.components,
        max_categories=features.max_categories,
        high_cardinality=features.high_cardinality,
        max_dense_bytes=features.max_dense_bytes,
    )


@dataclass
class TrainResult:
    pipeline: Any
    task: str
    estimator: str  # the built-in name, or the custom estimator's import path
    target: str
    features: FeatureSpec
    estimator_params: dict[str, Any]
    validation_metrics: dict[str, float]
    train_rows: pd.DataFrame  # raw feature columns of the training rows: signature and input example
    validation: tuple[pd.DataFrame, pd.Series]  # raw validation rows and labels, for plots
    feature_table: pd.DataFrame  # every raw column: kind, why, encoding (trainflow.ml.features.feature_table)
    baseline: dict[str, Any]  # the trivial baseline fitted on the same rows (trainflow.ml.evaluate.trivial_baseline)

    def summary(self) -> dict[str, Any]:
        """What a reader of the exported artifact needs to know, as JSON-friendly metadata."""
        summary: dict[str, Any] = {
            "task": self.task,
            "target": self.target,
            "estimator": self.estimator,
            "estimator_params": self.estimator_params,
            "features": self.features.as_dict(),
            "rows": {"train": len(self.train_rows), "validation": len(self.validation[0])},
            "validation": self.validation_metrics,
            "baseline": self.baseline,
        }
        if self.task == "classification":
            summary["classes"] = [str(c) for c in self.pipeline.classes_]
        return summary


@dataclass
class TrainingRows:
    """``trainval`` split for a fit: the feature columns and labels of each part, the task
    the target makes it, and each raw column's kind with the reason."""

    features: FeatureSpec
    choices: list[ColumnChoice]
    task: str
    train: tuple[pd.DataFrame, pd.Series]
    validation: tuple[pd.DataFrame, pd.Series]


def check_feature_kinds(frame: pd.DataFrame, spec: FeatureSpec) -> None:
    """Fail in one line on a listed column its transformer cannot take: text as numeric,
    numbers as text or dates, or a categorical or text column without any value."""
    for kind, columns in spec.as_dict().items():
        for column in columns:
            values = frame[column].dropna()
            numbers = pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values)
            if kind == "numeric" and not numbers and len(values):
                problem = f"holds text (e.g. {values.head(1).tolist()[0]!r}), not numbers: list it under model.features.categorical"
            elif kind in ("text", "datetime") and numbers and len(values):
                problem = f"holds numbers (e.g. {values.head(1).tolist()[0]!r}), not {kind}: list it under model.features.numeric"
            elif kind in ("categorical", "text") and not len(values):
                problem = "has no value in the training rows: remove it"
            else:
                continue
            raise DataError(f"{KIND_SETTINGS[kind]} lists {column!r}, which {problem} (or fix the data)")


def split_rows(
    trainval: pd.DataFrame,
    target: str,
    task: str,
    spec: FeatureSpec | None,
    val_size: float,
    random_seed: int,
    stratify_by: str | None,
) -> TrainingRows:
    """The train and validation parts of ``trainval``, with the checks a fit needs first.

    ``task`` ``auto`` is decided from the target; ``spec=None`` infers the feature kinds
    from the data; ``stratify_by`` ``auto`` follows the task (:func:`stratify_target`).
    """
    from sklearn.model_selection import train_test_split

    require_columns(trainval, [target] + ([stratify_by] if stratify_by not in (None, "auto") else []), "train_model")
    trainval = trainval.dropna(subset=[target])
    if not len(trainval):
        raise DataError(f"no row of the training data has a value in the target column {target!r}")
    task, _ = resolve_task(task, trainval[target])
    stratify_by = stratify_target(stratify_by, target, task)
    choices = explain_columns(trainval, target) if spec is None else listed_columns(trainval, target, spec)
    spec = spec_of(choices) if spec is None else spec
    if not spec.columns:
        raise DataError(f"no usable feature column in the data besides the target {target!r}")
    require_columns(trainval, spec.columns, "train_model")
    check_feature_kinds(trainval, spec)
    labels = trainval[target]
    if task == "classification" and labels.nunique() < 2:
        raise DataError(f"the target {target!r} has a single class {labels.iloc[0]!r}: nothing to learn")
    if task == "regression" and not pd.api.types.is_numeric_dtype(labels):
        raise DataError(f"model.task=regression needs a numeric target; {target!r} has dtype {labels.dtype}")
    try:
        x_train, x_val, y_train, y_val = train_test_split(
            trainval[spec.columns],
            labels,
            test_size=val_size,
            random_state=random_seed,
            stratify=trainval[stratify_by] if stratify_by else None,
        )
    except ValueError as error:
        raise DataError(f"cannot make a validation split: {error}; lower split.val_size") from None
    if len(x_val) < 2:
        raise DataError(
            f"the validation part would have {len(x_val)} row(s) of {len(labels)}: metrics need at least 2; "
            "raise split.val_size or use a larger table"
        )
    return TrainingRows(spec, choices, task, (x_train, y_train), (x_val, y_val))


def build_pipeline(plan: FeaturePlan, options: PreprocessingOptions, estimator: Any, task: str) -> Any:
    """Input casting, preprocessing, then the model: classifiers answer ``predict_proba``
    with labelled columns, and an empty frame gets an empty answer (``ServingPipeline``)."""
    from trainflow_inference import InputColumns, LabelledProbabilities, ServingPipeline

    model = configure_estimator(estimator, plan)
    if task == "classification":
        model = LabelledProbabilities(model)
    return ServingPipeline(
        [("inputs", InputColumns()), ("preprocess", build_preprocessor(plan, options)), ("model", model)]
    )


def pipeline_for(
    frame: pd.DataFrame,
    spec: FeatureSpec,
    options: PreprocessingOptions,
    task: str,
    estimator: str,
    params: dict[str, Any],
    custom: Any = None,
    n_classes: int = 0,
) -> tuple[Any, FeaturePlan]:
    """The unfitted pipeline for ``estimator`` on training rows ``frame`` (``n_classes``: the
    target's, 0 for regression), and the feature plan it follows."""
    model = make_estimator(task, estimator, params, custom)
    plan = plan_features(frame, spec, options, model, n_classes)
    return build_pipeline(plan, options, model, task), plan


def fit(
    rows: TrainingRows,
    target: str,
    estimator: str,
    estimator_params: dict[str, Any],
    options: PreprocessingOptions,
    custom: Any = None,
) -> TrainResult:
    """Fit the inference pipeline on the train rows; score it, and the trivial baseline
    fitted on the same rows, on the validation rows."""
    # A frame the rows were split from, if the caller let it go, has just been freed; its
    # string columns' buffers stay in Arrow's pool unless given back.
    release_unused_arrow_memory()
    x_train, y_train = rows.train
    n_classes = int(y_train.nunique()) if rows.task == "classification" else 0
    pipeline, plan = pipeline_for(
        x_train, rows.features, options, rows.task, estimator, estimator_params, custom, n_classes
    )
    pipeline.fit(x_train, y_train)
    metrics = score_predictions(pipeline, *rows.validation, rows.task)
    name = estimator if estimator != CUSTOM else _import_path(_final_estimator(pipeline))
    params = estimator_params if estimator != CUSTOM else {k: v for k, v in dict(custom).items() if k != "_target_"}
    return TrainResult(
        pipeline,
        rows.task,
        name,
        target,
        rows.features,
        dict(params),
        metrics,
        x_train,
        rows.validation,
        feature_table(rows.choices, plan, options),
        trivial_baseline(y_train, rows.task),
    )


def _import_path(estimator: Any) -> str:
    return f"{type(estimator).__module__}.{type(estimator).__qualname__}"


# train() and train_from_config() split, let go of trainval, then fit: a caller that
# passes the frame without keeping it (train_model passes read_table's result straight
# in) has it freed before the fit, which at a million rows is the frame's size less at
# the peak. A wrapper around either would hold the frame through the fit again.
def train(
    trainval: pd.DataFrame,
    target: str,
    task: str,
    estimator: str,
    estimator_params: dict[str, Any],
    spec: FeatureSpec | None,
    options: PreprocessingOptions,
    val_size: float,
    random_seed: int,
    stratify_by: str | None,
    custom: Any = None,
) -> TrainResult:
    """Fit the inference pipeline on a train part of ``trainval``; score it on the rest.

    ``task`` ``auto`` is decided from the target; ``spec=None`` infers the feature kinds.
    """
    rows = split_rows(trainval, target, task, spec, val_size, random_seed, stratify_by)
    del trainval
    return fit(rows, target, estimator, estimator_params, options, custom)


def train_from_config(trainval: pd.DataFrame, cfg: DictConfig, task: str | None = None) -> TrainResult:
    """:func:`train` with the ``data``, ``split`` and ``model`` sections of the config;
    ``task`` overrides ``model.task`` (the one split_data recorded, when it is ``auto``)."""
    model = cfg.model
    rows = split_rows(
        trainval,
        target=cfg.data.target,
        task=task or model.task,
        spec=None if model.features.infer else feature_spec(model),
        val_size=cfg.split.val_size,
        random_seed=cfg.split.random_seed,
        stratify_by=cfg.split.stratify_by,
    )
    del trainval
    custom = model.custom if model.estimator == CUSTOM else None
    return fit(
        rows,
        target=cfg.data.target,
        estimator=model.estimator,
        estimator_params={} if custom is not None else section_dict(model[model.estimator]),
        options=preprocessing_options(model),
        custom=custom,
    )


def pinned_requirements(estimator: Any = None) -> list[str]:
    """The packages the exported model needs, at their installed versions; with a
    ``estimator`` from another package (LightGBM, XGBoost), that package too."""
    packages = list(MODEL_REQUIREMENTS)
    top = type(estimator).__module__.split(".")[0] if estimator is not None else "sklearn"
    if top != "sklearn":
        packages += [d for d in packages_distributions().get(top, [])[:1] if d not in packages]
    return [f"{package}=={installed_version(package)}" for package in packages]


def _final_estimator(pipeline: Any) -> Any:
    model = pipeline.steps[-1][1]
    return getattr(model, "estimator_", model)  # trainflow_inference.LabelledProbabilities


def input_signature(rows: pd.DataFrame, outputs: Any) -> Any:
    """The model's signature: every raw input column required, and columns that are numbers
    or text in training of open type (MLflow's ``any``), so that a batch reaches the model
    as pandas read it: int64 when its numbers have no gaps, float64 when they have, a text
    column with no value as float64. No single MLflow type admits both (``double`` refuses
    int64, ``long`` refuses NaN, ``string`` an empty column); the pipeline's first step
    (``InputColumns``) casts them and refuses in one line what is neither."""
    from mlflow.models import infer_signature
    from mlflow.types.schema import AnyType, ColSpec, Schema

    from trainflow_inference import holds_numbers, holds_text

    # Exactly the columns InputColumns casts: its rule, so the two cannot disagree.
    open_type = {c for c in rows.columns if holds_numbers(rows[c]) or holds_text(rows[c])}
    with warnings.catch_warnings():
        # MLflow's multi-line hint that integer columns cannot hold gaps: they are open just below.
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer", category=UserWarning)
        signature = infer_signature(typing_sample(rows), outputs)
    # Required: a missing column is then MLflow's schema error naming it, not a sklearn error.
    signature.inputs = Schema(
        [
            ColSpec(type=AnyType() if c.name in open_type else c.type, name=c.name, required=True)
            for c in signature.inputs.inputs
        ]
    )
    return signature


def export(
    result: TrainResult,
    path: Path,
    serialization: str = "skops",
    metadata: dict[str, Any] | None = None,
    trusted_types: list[str] | tuple[str, ...] = (),
    model_id: str | None = None,
) -> Path:
    """Save the fitted pipeline as an MLflow model: signature on raw input columns (see
    :func:`input_signature`), input example, pinned requirements, and the inference code it
    needs (``code_paths``); ``model_id``, the MLflow LoggedModel it is saved for, goes into
    its MLmodel file as ``mlflow.sklearn.log_model`` writes it.

    skops is the default and loads only reviewed types: trainflow's (``SKOPS_TRUSTED_TYPES``)
    and ``trusted_types`` (``model.trusted_types``); a model holding any other fails here
    with their names. cloudpickle can run arbitrary code when loaded and is used only when
    asked for.
    """
    import mlflow.sklearn
    from mlflow.exceptions import MlflowException
    from mlflow.models import Model

    import trainflow_inference

    example = result.train_rows.head(5)
    classifier = result.task == "classification"
    outputs = result.pipeline.predict_proba(example) if classifier else result.pipeline.predict(example)
    if serialization == "cloudpickle":
        warnings.warn(
            "model.serialization=cloudpickle: loading this artifact can run arbitrary code; prefer the default skops",
            UserWarning,
            stacklevel=2,
        )
    try:
        mlflow.sklearn.save_model(
            result.pipeline,
            str(path),
            signature=input_signature(result.train_rows, outputs),
            input_example=example,
            pip_requirements=pinned_requirements(_final_estimator(result.pipeline)),
            serialization_format=serialization,
            skops_trusted_types=[*SKOPS_TRUSTED_TYPES, *trusted_types] if serialization == "skops" else None,
            pyfunc_predict_fn="predict_proba" if classifier else "predict",
            code_paths=[str(Path(trainflow_inference.__file__).parent)],
            metadata={**result.summary(), **(metadata or {})},
            mlflow_model=Model(model_id=model_id),
        )
    except MlflowException as error:
        shutil.rmtree(path, ignore_errors=True)  # MLflow leaves the half-written folder behind
        found = re.search(r"Untrusted types found in the file: (\[.*?\])", str(error))
        if found is None:
            raise
        raise ConfigError(
            f"the model holds types trainflow has not reviewed for loading: {found.group(1)}; nothing was exported. "
            "Review them (a type whose loading runs code must not be trusted) and list them in model.trusted_types, "
            "or use model.serialization=cloudpickle"
        ) from None
    return path
