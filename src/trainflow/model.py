"""The inference pipeline: preprocessing and model in one sklearn ``Pipeline``, built from
config, trained, exported with MLflow and loaded back without any training code.
"""

from __future__ import annotations

import inspect
import re
import warnings
from dataclasses import dataclass, field
from importlib.metadata import version as installed_version
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from trainflow.data import mostly_dates, require_columns
from trainflow.errors import ConfigError, DataError, TrainflowError

TASKS = ("classification", "regression")
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
# Estimators that cannot take the sparse matrices one-hot and TF-IDF produce.
DENSE_INPUT = {"hist_gradient_boosting"}
# Estimators that work on sparse matrices directly: their preprocessed matrix stays sparse
# however dense it is, since a dense copy of it (and of each part before stacking) is the
# largest allocation of a training run on a wide table. Trees keep the column
# transformer's own choice: they fit faster on a dense matrix.
SPARSE_INPUT = {"logistic_regression", "ridge"}
# ColumnTransformer.sparse_threshold per output layout: always dense, its choice, always sparse
SPARSE_THRESHOLDS = {"dense": 0.0, "auto": 0.3, "sparse": 1.0}
NUMERIC_IMPUTATION = ("mean", "median", "most_frequent")
CATEGORICAL_ENCODINGS = ("onehot", "ordinal")
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
# - trainflow_inference.*: our own small transformers, shipped inside the artifact.
SKOPS_TRUSTED_TYPES = [
    "numpy.dtype",
    "numpy.float64",
    "sklearn.tree._tree.Tree",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "trainflow_inference.DatetimeFeatures",
    "trainflow_inference.TextColumn",
    "trainflow_inference.CsrColumnTransformer",
    "trainflow_inference.LabelledProbabilities",
    "trainflow_inference.ServingPipeline",
]

# What the exported model needs at serving time, pinned to the training environment.
MODEL_REQUIREMENTS = ("mlflow", "scikit-learn", "pandas", "numpy", "scipy", "skops")


@dataclass(frozen=True)
class FeatureSpec:
    """Which raw columns feed the pipeline, by kind. Columns not named are dropped."""

    numeric: list[str] = field(default_factory=list)
    categorical: list[str] = field(default_factory=list)
    text: list[str] = field(default_factory=list)
    datetime: list[str] = field(default_factory=list)

    @property
    def columns(self) -> list[str]:
        return self.numeric + self.categorical + self.text + self.datetime

    def as_dict(self) -> dict[str, list[str]]:
        return {"numeric": self.numeric, "categorical": self.categorical, "text": self.text, "datetime": self.datetime}


@dataclass(frozen=True)
class PreprocessingOptions:
    numeric_imputation: str = "median"
    categorical_imputation: str = "most_frequent"
    categorical_encoding: str = "onehot"
    text_max_features: int = 100


def estimator_class(task: str, estimator: str) -> type:
    # Imported by name, not through importlib: trainflow.cache's import walk then sees that
    # this loads no trainflow code. Here, not at module level: sklearn takes a second.
    from sklearn import ensemble, linear_model

    module, _, name = ESTIMATORS[task][estimator].rpartition(".")
    return getattr({"sklearn.ensemble": ensemble, "sklearn.linear_model": linear_model}[module], name)


def validate_model_config(model: DictConfig, target: str, estimator_params: bool = True) -> None:
    """Fail at start on a task/estimator mismatch, an unknown parameter or contradictory features.

    ``estimator_params=False`` skips :func:`validate_estimator_config`, the one check that
    imports scikit-learn, for a caller that makes it later (the pipeline, before real work).
    """
    if model.task not in TASKS:
        raise ConfigError(f"model.task={model.task!r} is not one of {', '.join(TASKS)}")
    choices = ESTIMATORS[model.task]
    if model.estimator not in choices:
        raise ConfigError(
            f"model.estimator={model.estimator!r} does not fit model.task={model.task}: "
            f"choose one of {', '.join(choices)}"
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
    if features.text.max_features < 1:
        raise ConfigError("model.features.text.max_features must be at least 1")
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
    or a value of the wrong type or out of its range."""
    validate_estimator_params(model.task, model.estimator, OmegaConf.to_container(model[model.estimator], resolve=True))


# scikit-learn's message for a bad parameter value: which parameter, and what it must be.
_INVALID_PARAMETER = re.compile(
    r"The '(?P<name>\w+)' parameter of \w+ must be (?P<allowed>.+)\. Got .+ instead\.", re.DOTALL
)


def validate_estimator_params(task: str, estimator: str, params: dict[str, Any]) -> None:
    """Fail at start on a parameter the chosen estimator does not accept, or on a value it
    would refuse at fit (``n_estimators=abc``, ``n_estimators=0``), without fitting."""
    cls = estimator_class(task, estimator)
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
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
        # (requirements.lock), and tests/test_model.py shows when an upgrade changes it.
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
    )


def infer_features(
    frame: pd.DataFrame, target: str, max_categories: int = 50, min_text_values: int = 6
) -> FeatureSpec:
    """Guess each column's kind from its dtype and values; leave out the target, constant
    and id-like columns.

    - numbers (not booleans) -> numeric, except integers with over 95% distinct values
      that nearly fill their range (a row number or id), which are left out; booleans ->
      categorical;
    - strings with a four-digit year that mostly parse as dates -> datetime;
    - strings averaging three or more words, with at least ``min_text_values`` distinct
      values -> text (a few long labels, like species names, are categories);
    - other strings: categorical when they have at most ``max_categories`` distinct values
      or fewer than half their values are distinct; else left out (an id).
    """
    spec = FeatureSpec()
    for column in frame.columns:
        if column == target:
            continue
        values = frame[column].dropna()
        if values.nunique() <= 1:
            continue
        distinct_ratio = values.nunique() / len(values)
        if pd.api.types.is_bool_dtype(values):
            spec.categorical.append(column)
        elif pd.api.types.is_numeric_dtype(values):
            if pd.api.types.is_integer_dtype(values) and distinct_ratio > 0.95 and _nearly_consecutive(values):
                continue  # a row number or id (an amount, all distinct but spread out, is a feature)
            spec.numeric.append(column)
        elif pd.api.types.is_datetime64_any_dtype(values) or mostly_dates(values):
            spec.datetime.append(column)
        elif values.nunique() >= min_text_values and values.astype(str).str.split().str.len().mean() >= 3:
            spec.text.append(column)
        elif values.nunique() <= max_categories or distinct_ratio < 0.5:
            spec.categorical.append(column)
    return spec


def _nearly_consecutive(values: pd.Series) -> bool:
    """Whether integers fill their range densely, as row numbers do (in a sample of half
    the rows or more, as a split's part is)."""
    return int(values.max()) - int(values.min()) + 1 <= 2 * len(values)


def build_preprocessor(spec: FeatureSpec, options: PreprocessingOptions, layout: str = "auto") -> Any:
    """The column transformer (``CsrColumnTransformer``): numeric impute+scale;
    categorical impute+encode; each text column its own TF-IDF; dates to numbers, imputed
    and scaled. ``layout`` (a key of ``SPARSE_THRESHOLDS``) says whether its output is
    dense, sparse, or sparse when mostly zeros."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

    from trainflow_inference import CsrColumnTransformer, DatetimeFeatures, TextColumn

    transformers: list[tuple[str, Any, Any]] = []
    if spec.numeric:
        numeric = Pipeline([("impute", SimpleImputer(strategy=options.numeric_imputation)), ("scale", StandardScaler())])
        transformers.append(("numeric", numeric, spec.numeric))
    if spec.categorical:
        encoder = (
            OneHotEncoder(handle_unknown="ignore")
            if options.categorical_encoding == "onehot"
            else OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1)
        )
        categorical = Pipeline(
            [("impute", SimpleImputer(strategy=options.categorical_imputation)), ("encode", encoder)]
        )
        transformers.append(("categorical", categorical, spec.categorical))
    for column in spec.text:
        text = Pipeline([("fill", TextColumn()), ("tfidf", TfidfVectorizer(max_features=options.text_max_features))])
        transformers.append((f"text:{column}", text, [column]))
    if spec.datetime:
        dates = Pipeline(
            [("parse", DatetimeFeatures()), ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
             ("scale", StandardScaler())]
        )
        transformers.append(("datetime", dates, spec.datetime))
    return CsrColumnTransformer(transformers, remainder="drop", sparse_threshold=SPARSE_THRESHOLDS[layout])


def output_layout(estimator: str) -> str:
    """How the preprocessed matrix is laid out for ``estimator`` (see ``SPARSE_THRESHOLDS``)."""
    return "dense" if estimator in DENSE_INPUT else "sparse" if estimator in SPARSE_INPUT else "auto"


def build_pipeline(
    spec: FeatureSpec, options: PreprocessingOptions, task: str, estimator: str, params: dict[str, Any]
) -> Any:
    """Preprocessing followed by the model; classifiers answer ``predict_proba`` with labelled columns,
    and an empty frame gets an empty answer (``ServingPipeline``)."""
    from trainflow_inference import LabelledProbabilities, ServingPipeline

    try:
        model = estimator_class(task, estimator)(**params)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"model.{estimator}: {error}") from None
    if task == "classification":
        model = LabelledProbabilities(model)
    return ServingPipeline(
        [("preprocess", build_preprocessor(spec, options, layout=output_layout(estimator))), ("model", model)]
    )


@dataclass
class TrainResult:
    pipeline: Any
    task: str
    estimator: str
    target: str
    features: FeatureSpec
    estimator_params: dict[str, Any]
    validation_metrics: dict[str, float]
    train_rows: pd.DataFrame  # raw feature columns of the training rows: signature and input example
    validation: tuple[pd.DataFrame, pd.Series]  # raw validation rows and labels, for plots

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
        }
        if self.task == "classification":
            summary["classes"] = [str(c) for c in self.pipeline.classes_]
        return summary


@dataclass
class TrainingRows:
    """``trainval`` split for a fit: the feature columns and labels of each part."""

    features: FeatureSpec
    train: tuple[pd.DataFrame, pd.Series]
    validation: tuple[pd.DataFrame, pd.Series]


_KIND_SETTINGS = {
    "numeric": "model.features.numeric", "categorical": "model.features.categorical",
    "text": "model.features.text.columns", "datetime": "model.features.datetime",
}


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
            raise DataError(f"{_KIND_SETTINGS[kind]} lists {column!r}, which {problem} (or fix the data)")


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

    ``spec=None`` infers the feature kinds from the data.
    """
    from sklearn.model_selection import train_test_split

    require_columns(trainval, [target] + ([stratify_by] if stratify_by else []), "train_model")
    trainval = trainval.dropna(subset=[target])
    spec = spec or infer_features(trainval, target)
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
            trainval[spec.columns], labels, test_size=val_size, random_state=random_seed,
            stratify=trainval[stratify_by] if stratify_by else None,
        )
    except ValueError as error:
        raise DataError(f"cannot make a validation split: {error}; lower split.val_size") from None
    if len(x_val) < 2:
        raise DataError(
            f"the validation part would have {len(x_val)} row(s) of {len(labels)}: metrics need at least 2; "
            "raise split.val_size or use a larger table"
        )
    return TrainingRows(spec, (x_train, y_train), (x_val, y_val))


def fit(
    rows: TrainingRows,
    target: str,
    task: str,
    estimator: str,
    estimator_params: dict[str, Any],
    options: PreprocessingOptions,
) -> TrainResult:
    """Fit the inference pipeline on the train rows; score it on the validation rows."""
    from trainflow.data import release_unused_arrow_memory
    from trainflow.evaluate import score_predictions

    # A frame the rows were split from, if the caller let it go, has just been freed; its
    # string columns' buffers stay in Arrow's pool unless given back.
    release_unused_arrow_memory()
    pipeline = build_pipeline(rows.features, options, task, estimator, estimator_params)
    pipeline.fit(*rows.train)
    metrics = score_predictions(pipeline, *rows.validation, task)
    return TrainResult(
        pipeline, task, estimator, target, rows.features, dict(estimator_params), metrics, rows.train[0],
        rows.validation,
    )


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
) -> TrainResult:
    """Fit the inference pipeline on a train part of ``trainval``; score it on the rest.

    ``spec=None`` infers the feature kinds from the data.
    """
    rows = split_rows(trainval, target, task, spec, val_size, random_seed, stratify_by)
    del trainval
    return fit(rows, target, task, estimator, estimator_params, options)


def train_from_config(trainval: pd.DataFrame, cfg: DictConfig) -> TrainResult:
    """:func:`train` with the ``data``, ``split`` and ``model`` sections of the config."""
    from trainflow.config import stratify_column

    model = cfg.model
    rows = split_rows(
        trainval,
        target=cfg.data.target,
        task=model.task,
        spec=None if model.features.infer else feature_spec(model),
        val_size=cfg.split.val_size,
        random_seed=cfg.split.random_seed,
        stratify_by=stratify_column(cfg),
    )
    del trainval
    return fit(
        rows,
        target=cfg.data.target,
        task=model.task,
        estimator=model.estimator,
        estimator_params=OmegaConf.to_container(model[model.estimator], resolve=True),
        options=preprocessing_options(model),
    )


def pinned_requirements() -> list[str]:
    return [f"{package}=={installed_version(package)}" for package in MODEL_REQUIREMENTS]


def export(
    result: TrainResult, path: Path, serialization: str = "skops", metadata: dict[str, Any] | None = None
) -> Path:
    """Save the fitted pipeline as an MLflow model: signature on raw input columns, input
    example, pinned requirements, and the inference code it needs (``code_paths``).

    skops is the default and loads only reviewed types; cloudpickle can run arbitrary
    code when loaded and is used only when asked for.
    """
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from mlflow.types.schema import ColSpec, Schema

    import trainflow_inference

    # Numeric features travel as doubles: an integer column without gaps in training
    # would otherwise be typed `long`, and a missing value at serving time refused.
    # The input types are inferred from every training row (a column empty in the first
    # rows is still typed right); the doubles are set on the schema, not by copying them.
    # An integer column listed as categorical (codes) is imputed like any other, so it
    # travels as doubles too (the encoder matches 3.0 to the category 3).
    integers = {c for c in result.train_rows.columns if pd.api.types.is_integer_dtype(result.train_rows[c])}
    numeric = set(result.features.numeric) | integers
    example = result.train_rows.head(100).astype({c: "float64" for c in numeric})
    classifier = result.task == "classification"
    outputs = result.pipeline.predict_proba(example) if classifier else result.pipeline.predict(example)
    with warnings.catch_warnings():
        # MLflow's multi-line hint that integer columns cannot hold gaps: they are typed
        # double just below, so it is only noise.
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer", category=UserWarning)
        signature = infer_signature(result.train_rows, outputs)
    # Every input column is required: the ColumnTransformer needs each one, and a
    # missing column should be MLflow's schema error naming it, not a sklearn error.
    # Missing values inside a column stay allowed.
    signature.inputs = Schema([
        ColSpec(type="double" if c.name in numeric else c.type, name=c.name, required=True)
        for c in signature.inputs.inputs
    ])
    if serialization == "cloudpickle":
        warnings.warn(
            "model.serialization=cloudpickle: loading this artifact can run arbitrary code; "
            "prefer the default skops", UserWarning, stacklevel=2,
        )
    mlflow.sklearn.save_model(
        result.pipeline,
        str(path),
        signature=signature,
        input_example=example.head(5),
        pip_requirements=pinned_requirements(),
        serialization_format=serialization,
        skops_trusted_types=SKOPS_TRUSTED_TYPES if serialization == "skops" else None,
        pyfunc_predict_fn="predict_proba" if classifier else "predict",
        code_paths=[str(Path(trainflow_inference.__file__).parent)],
        metadata={**result.summary(), **(metadata or {})},
    )
    return path


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
            "A model trainflow exported never does this, so it was edited or made elsewhere: re-export it with "
            "train_model, or review those types and add them to SKOPS_TRUSTED_TYPES in trainflow/model.py"
        ) from None
