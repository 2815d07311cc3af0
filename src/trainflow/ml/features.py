"""Which raw column is what, and how each becomes numbers for the chosen estimator.

Plain functions, frames in and plans out; no MLflow, no store. Three stages:

1. :func:`explain_columns` infers each column's kind (numeric, categorical, text,
   datetime, or dropped) and says why; :func:`listed_columns` does the same for the
   lists in ``model.features``. Either gives a :class:`FeatureSpec`.
2. :func:`plan_features` decides, for one estimator and one training table, how each
   kind is encoded (:class:`FeaturePlan`): tree ensembles get ordinal codes
   (``hist_gradient_boosting`` its native categorical support), linear models one-hot
   with rare levels grouped; a categorical column with more levels than
   ``high_cardinality`` is target-encoded for any estimator; an estimator that needs a
   dense matrix gets text as a few TF-IDF components. It refuses, before any fit, a
   matrix that would be stored densely above ``max_dense_bytes``.
3. :func:`build_preprocessor` turns the plan into the ``ColumnTransformer`` of the
   exported pipeline (its transformers live in ``trainflow_inference``).

:func:`feature_table` reports every column's kind, why, and its encoding.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from trainflow.errors import DataError
from trainflow.ml.data import mostly_dates

# scikit-learn and trainflow_inference (which imports it) are imported inside build_preprocessor: about 0.6 s that
# validating a config (trainflow.config.schema imports trainflow.ml.train in validate) does not pay
# (docs/architecture.md#start-up).

KINDS = ("numeric", "categorical", "text", "datetime")
DROPPED = "dropped"
# Encodings of the categorical columns a plan keeps (not target-encoded)
NATIVE, ORDINAL, ONEHOT = "native", "ordinal", "onehot"
CATEGORICAL_ENCODINGS = ("auto", ONEHOT, ORDINAL)
# hist_gradient_boosting takes at most this many categories per feature (its max_bins
# less one code), so its native columns keep this many levels, the rarest grouped.
NATIVE_MAX_LEVELS = 254
# Estimators that split on values: ordinal codes serve them as well as one-hot (and keep
# the matrix narrow), and scaling changes nothing for them.
_TREE_MODEL = re.compile(r"Forest|Tree|Boost|LGBM|XGB|CatBoost")
# The bytes of one cell of a dense float64 matrix
_CELL = 8


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
class ColumnChoice:
    """One raw column: the kind it was given (or ``dropped``) and why."""

    column: str
    kind: str
    reason: str


@dataclass(frozen=True)
class PreprocessingOptions:
    """``model.features``, as the preprocessing uses it."""

    numeric_imputation: str = "median"
    categorical_imputation: str = "most_frequent"
    categorical_encoding: str = "auto"
    text_max_features: int = 100
    # Dense-input estimators get each text column's TF-IDF reduced to this many components
    text_components: int = 30
    max_categories: int = 50
    high_cardinality: int = 100
    max_dense_bytes: int = 1 << 30


def spec_of(choices: list[ColumnChoice]) -> FeatureSpec:
    """The :class:`FeatureSpec` of the kept columns, in table order."""
    kinds: dict[str, list[str]] = {kind: [] for kind in KINDS}
    for choice in choices:
        if choice.kind in kinds:
            kinds[choice.kind].append(choice.column)
    return FeatureSpec(**kinds)


def explain_columns(
    frame: pd.DataFrame, target: str, max_categories: int = 50, min_text_values: int = 6
) -> list[ColumnChoice]:
    """Each column's kind, guessed from its dtype and values, and why; the target, constant
    and id-like columns are dropped.

    - numbers (not booleans) -> numeric, except integers with over 95% distinct values
      that nearly fill their range (a row number or id), which are dropped; booleans ->
      categorical;
    - strings with a four-digit year that mostly parse as dates -> datetime;
    - strings averaging three or more words, with at least ``min_text_values`` distinct
      values -> text (a few long labels, like species names, are categories);
    - other strings: categorical when they have at most ``max_categories`` distinct values
      or fewer than half their values are distinct; else dropped (an id).
    """
    choices = []
    for column in frame.columns:
        name = str(column)
        if column == target:
            choices.append(ColumnChoice(name, DROPPED, "the target"))
            continue
        values = frame[column].dropna()
        distinct = int(values.nunique())
        if distinct <= 1:
            choices.append(ColumnChoice(name, DROPPED, "empty" if distinct == 0 else "a single value"))
            continue
        ratio = distinct / len(values)
        if pd.api.types.is_bool_dtype(values):
            choices.append(ColumnChoice(name, "categorical", "true/false values"))
        elif pd.api.types.is_numeric_dtype(values):
            if pd.api.types.is_integer_dtype(values) and ratio > 0.95 and _nearly_consecutive(values):
                # A row number or id (an amount, all distinct but spread out, is a feature).
                choices.append(
                    ColumnChoice(name, DROPPED, f"an id: {ratio:.0%} distinct whole numbers filling their range")
                )
            else:
                choices.append(ColumnChoice(name, "numeric", f"numbers ({distinct:,} distinct)"))
        elif pd.api.types.is_datetime64_any_dtype(values) or mostly_dates(values):
            choices.append(
                ColumnChoice(
                    name,
                    "datetime",
                    "dates"
                    if pd.api.types.is_datetime64_any_dtype(values)
                    else "text that parses as dates with a four-digit year",
                )
            )
        elif distinct >= min_text_values and _words_per_value(values) >= 3:
            choices.append(ColumnChoice(name, "text", f"free text ({_words_per_value(values):.1f} words per value)"))
        elif distinct <= max_categories or ratio < 0.5:
            choices.append(ColumnChoice(name, "categorical", f"labels ({distinct:,} levels)"))
        else:
            choices.append(ColumnChoice(name, DROPPED, f"an id: {distinct:,} labels, {ratio:.0%} distinct"))
    return choices


# Words per value are counted on a seeded sample of this many values: the mean is as
# clear from it, and splitting every string of a large table took over a second.
WORD_SAMPLE = 10_000


def _words_per_value(values: pd.Series) -> float:
    sample = values.sample(WORD_SAMPLE, random_state=0) if len(values) > WORD_SAMPLE else values
    return float(sample.astype(str).str.split().str.len().mean())


def infer_features(frame: pd.DataFrame, target: str, max_categories: int = 50, min_text_values: int = 6) -> FeatureSpec:
    """The kept columns of :func:`explain_columns`, by kind."""
    return spec_of(explain_columns(frame, target, max_categories, min_text_values))


KIND_SETTINGS = {
    "numeric": "model.features.numeric",
    "categorical": "model.features.categorical",
    "text": "model.features.text.columns",
    "datetime": "model.features.datetime",
}


def listed_columns(frame: pd.DataFrame, target: str, spec: FeatureSpec) -> list[ColumnChoice]:
    """The choices ``model.features`` made by listing columns: the listed ones as listed,
    every other column dropped."""
    listed = {column: kind for kind, columns in spec.as_dict().items() for column in columns}
    choices = [ColumnChoice(column, kind, f"listed in {KIND_SETTINGS[kind]}") for column, kind in listed.items()]
    for column in frame.columns:
        if str(column) not in listed:
            why = "the target" if column == target else "not listed in model.features (model.features.infer=false)"
            choices.append(ColumnChoice(str(column), DROPPED, why))
    return choices


def _nearly_consecutive(values: pd.Series) -> bool:
    """Whether integers fill their range densely, as row numbers do (in a sample of half
    the rows or more, as a split's part is)."""
    return int(values.max()) - int(values.min()) + 1 <= 2 * len(values)


# -- what the estimator takes -----------------------------------------------------------


@dataclass(frozen=True)
class EstimatorInput:
    """What an estimator can take, which decides how features are encoded for it."""

    native_categorical: bool  # hist_gradient_boosting: categories as codes, told which columns
    trees: bool  # splits on values: ordinal codes, no scaling
    sparse: bool  # accepts a sparse matrix
    allow_nan: bool  # handles missing values itself

    @classmethod
    def of(cls, estimator: Any) -> EstimatorInput:
        """From the (unwrapped) estimator: scikit-learn's input tags; the class name for trees."""
        try:
            tags = estimator.__sklearn_tags__().input_tags
            sparse, allow_nan = bool(tags.sparse), bool(tags.allow_nan)
        except AttributeError:  # an estimator without scikit-learn's tags: assume neither
            sparse, allow_nan = False, False
        name = type(estimator).__name__
        return cls(
            native_categorical="categorical_features" in estimator.get_params()
            and name.startswith("HistGradientBoosting"),
            trees=bool(_TREE_MODEL.search(name)),
            sparse=sparse,
            allow_nan=allow_nan,
        )


@dataclass(frozen=True)
class FeaturePlan:
    """How each kept column becomes numbers for one estimator, and the matrix that makes."""

    spec: FeatureSpec  # the columns encoded
    empty: list[str]  # given columns left out: no value in the training rows
    encoding: str  # native | ordinal | onehot, for categorical columns up to high_cardinality levels
    high_cardinality: list[str]  # target-encoded instead
    levels: dict[str, int]  # distinct values of each categorical column in the training rows
    impute: bool  # numeric and date gaps imputed (the estimator cannot take NaN)
    scale: bool  # numbers standardised (linear models; trees need not)
    text_components: int  # > 0: each text column's TF-IDF reduced to this many dense components
    layout: str  # dense | auto | sparse: ColumnTransformer's output (SPARSE_THRESHOLDS)
    width: int  # columns of the preprocessed matrix (at most)
    rows: int

    @property
    def categorical(self) -> list[str]:
        return [c for c in self.spec.categorical if c not in self.high_cardinality]

    @property
    def dense_bytes(self) -> int:
        return self.rows * self.width * _CELL

    def encodings(self, options: PreprocessingOptions) -> dict[str, str]:
        """Column -> how it is encoded, in words, for the feature table."""
        described: dict[str, str] = {}
        for column in self.spec.numeric:
            described[column] = (
                "as is"
                if not (self.impute or self.scale)
                else (("imputed, " if self.impute else "") + ("scaled" if self.scale else "")).strip(", ")
            )
        for column in self.categorical:
            levels = self.levels[column]
            if self.encoding == ONEHOT:
                kept = min(levels, options.max_categories)
                described[column] = f"one-hot, {kept} of {levels:,} levels" + (
                    " (the rest grouped)" if kept < levels else ""
                )
            else:
                cap = NATIVE_MAX_LEVELS if self.encoding == NATIVE else None
                grouped = f", the {levels - cap + 1:,} rarest grouped" if cap and levels > cap else ""
                what = "native categories" if self.encoding == NATIVE else "ordinal codes"
                described[column] = f"{what}, {levels:,} levels{grouped}"
        for column in self.high_cardinality:
            described[column] = f"target-encoded, {self.levels[column]:,} levels (over model.features.high_cardinality)"
        for column in self.spec.text:
            terms = f"TF-IDF, {options.text_max_features} terms"
            described[column] = f"{terms} -> {self.text_components} components" if self.text_components else terms
        for column in self.spec.datetime:
            described[column] = "days since 1970, month, day of week"
        for column in self.empty:
            described[column] = "left out: no value in the training rows"
        return described


# ColumnTransformer.sparse_threshold per output layout: always dense, its choice, always sparse
SPARSE_THRESHOLDS = {"dense": 0.0, "auto": 0.3, "sparse": 1.0}


def plan_features(
    frame: pd.DataFrame, spec: FeatureSpec, options: PreprocessingOptions, estimator: Any, n_classes: int = 0
) -> FeaturePlan:
    """How ``spec``'s columns are encoded for ``estimator``, trained on ``frame``'s rows
    (``n_classes``: the target's classes, 0 for regression).

    Raises :class:`DataError` when the matrix would be stored densely (the estimator takes
    no sparse input, or no part of it is sparse) above ``options.max_dense_bytes``.
    """
    takes = EstimatorInput.of(estimator)
    # A column with no value in the training rows tells the model nothing, and some
    # estimators fail on it (scikit-learn 1.9's HistGradientBoosting cannot bin it).
    empty = [column for column in spec.columns if not frame[column].notna().any()]
    if empty and len(empty) == len(spec.columns):
        raise DataError(
            f"no feature column has a value in the {len(frame):,} training rows: check the table, or lower "
            "split.val_size and split.test_size if these rows are few"
        )
    spec = FeatureSpec(**{kind: [c for c in columns if c not in empty] for kind, columns in spec.as_dict().items()})
    levels = {column: int(frame[column].nunique()) for column in spec.categorical}
    high = [c for c in spec.categorical if levels[c] > options.high_cardinality]
    encoding = options.categorical_encoding
    if encoding == "auto":
        encoding = NATIVE if takes.native_categorical else ORDINAL if takes.trees else ONEHOT
    elif encoding == ORDINAL and takes.native_categorical:
        encoding = NATIVE
    text_components = options.text_components if not takes.sparse else 0
    width = len(spec.numeric) + 3 * len(spec.datetime)
    width += sum(
        min(levels[c], options.max_categories) + 1 if encoding == ONEHOT else 1
        for c in spec.categorical
        if c not in high
    )
    width += len(high) * (n_classes if n_classes > 2 else 1)
    width += len(spec.text) * (text_components or options.text_max_features)
    sparse_parts = bool(spec.text and not text_components) or (encoding == ONEHOT and len(high) < len(spec.categorical))
    if not takes.sparse or not sparse_parts:
        layout = "dense"
    elif takes.trees:
        layout = "auto"  # trees fit faster on a dense matrix when it is not mostly zeros
    else:
        layout = "sparse"
    plan = FeaturePlan(
        spec=spec,
        empty=empty,
        encoding=encoding,
        high_cardinality=high,
        levels=levels,
        impute=not takes.allow_nan or not (takes.native_categorical or takes.trees),
        scale=not takes.trees,
        text_components=text_components,
        layout=layout,
        width=width,
        rows=len(frame),
    )
    if plan.dense_bytes > options.max_dense_bytes:
        if layout == "auto":  # it may be kept sparse instead
            return dataclasses.replace(plan, layout="sparse")
        raise DataError(_over_budget(plan, options, takes))
    return plan


def _over_budget(plan: FeaturePlan, options: PreprocessingOptions, takes: EstimatorInput) -> str:
    parts = []
    if plan.spec.text:
        parts.append(f"model.features.text.{'components' if plan.text_components else 'max_features'}")
    if plan.encoding == ONEHOT:
        parts.append("model.features.max_categories")
    if not takes.sparse:
        parts.append("an estimator that takes sparse input (logistic_regression, ridge, random_forest)")
    lower = f"lower {' or '.join(parts)}, " if parts else ""
    return (
        f"the preprocessed training matrix would take {plan.dense_bytes / 2**30:.2f} GiB stored densely "
        f"({plan.rows:,} rows x {plan.width:,} columns of 8 bytes), above model.features.max_dense_bytes="
        f"{options.max_dense_bytes:,}: {lower}train on a sample of the rows, or raise model.features.max_dense_bytes "
        "if this machine has several times that in memory"
    )


def build_preprocessor(plan: FeaturePlan, options: PreprocessingOptions) -> Any:
    """The column transformer (``CsrColumnTransformer``) the plan describes. Categorical
    columns come first, so that their positions are ``range(len(plan.categorical))`` for
    :func:`configure_estimator`."""
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler, TargetEncoder

    from trainflow_inference import CsrColumnTransformer, DatetimeFeatures, TextColumn, TextComponents

    def numbers(*steps: tuple[str, Any]) -> Any:
        """``steps``, then imputation and scaling as the plan says (a passthrough if neither)."""
        tail = (
            [("impute", SimpleImputer(strategy=options.numeric_imputation, keep_empty_features=True))]
            if plan.impute
            else []
        )
        tail += [("scale", StandardScaler())] if plan.scale else []
        chain = [*steps, *tail]
        return Pipeline(chain) if chain else "passthrough"

    transformers: list[tuple[str, Any, Any]] = []
    if plan.categorical:
        if plan.encoding == ONEHOT:
            encoder: Any = Pipeline(
                [
                    ("impute", SimpleImputer(strategy=options.categorical_imputation)),
                    (
                        "encode",
                        OneHotEncoder(handle_unknown="infrequent_if_exist", max_categories=options.max_categories),
                    ),
                ]
            )
        else:
            # Missing and unseen values are codes of their own (NaN where the estimator takes it)
            missing = np.nan if plan.encoding == NATIVE else -1
            encoder = OrdinalEncoder(
                handle_unknown="use_encoded_value",
                unknown_value=np.nan if plan.encoding == NATIVE else -2,
                encoded_missing_value=missing,
                max_categories=NATIVE_MAX_LEVELS if plan.encoding == NATIVE else None,
            )
        transformers.append(("categorical", encoder, plan.categorical))
    if plan.high_cardinality:
        # Cross-fitted: each training row's value is learned from the other folds, so the
        # model cannot memorise a level's own rows.
        target = Pipeline([("encode", TargetEncoder()), *([("scale", StandardScaler())] if plan.scale else [])])
        transformers.append(("high_cardinality", target, plan.high_cardinality))
    if plan.spec.numeric:
        transformers.append(("numeric", numbers(), plan.spec.numeric))
    for column in plan.spec.text:
        from sklearn.feature_extraction.text import TfidfVectorizer

        steps: list[tuple[str, Any]] = [
            ("fill", TextColumn()),
            ("tfidf", TfidfVectorizer(max_features=options.text_max_features)),
        ]
        if plan.text_components:
            steps.append(("components", TextComponents(plan.text_components)))
        transformers.append((f"text:{column}", Pipeline(steps), [column]))
    if plan.spec.datetime:
        transformers.append(("datetime", numbers(("parse", DatetimeFeatures())), plan.spec.datetime))
    return CsrColumnTransformer(transformers, remainder="drop", sparse_threshold=SPARSE_THRESHOLDS[plan.layout])


def configure_estimator(estimator: Any, plan: FeaturePlan) -> Any:
    """Tell an estimator with native categorical support which columns hold categories."""
    if plan.encoding == NATIVE and plan.categorical:
        estimator.set_params(categorical_features=list(range(len(plan.categorical))))
    return estimator


def feature_table(choices: list[ColumnChoice], plan: FeaturePlan, options: PreprocessingOptions) -> pd.DataFrame:
    """One row per raw column: its kind, why, and how it is encoded (empty when dropped)."""
    encodings = plan.encodings(options)
    return pd.DataFrame(
        [
            {"column": c.column, "kind": c.kind, "why": c.reason, "encoding": encodings.get(c.column, "")}
            for c in choices
        ],
        columns=["column", "kind", "why", "encoding"],
    )


def format_feature_table(table: pd.DataFrame, width: int = 110) -> str:
    """The table as a compact block: one line per kind, each column with its encoding."""
    lines = []
    for kind in (*KINDS, DROPPED):
        rows = table[table["kind"] == kind]
        if rows.empty:
            continue
        described = [f"{row.column} ({row.encoding if kind != DROPPED else row.why})" for row in rows.itertuples()]
        text = ", ".join(described)
        if len(text) > width:
            text = text[: width - 3].rsplit(", ", 1)[0] + f", ... ({len(rows)} in all)"
        lines.append(f"  {kind:<12} {text}")
    return "\n".join(lines)
