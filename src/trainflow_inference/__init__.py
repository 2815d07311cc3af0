"""The code an exported inference artifact runs in production, and nothing else.

Every ``model_export`` carries this package (MLflow ``code_paths``), so the artifact
loads and predicts where trainflow is not installed. It depends on numpy, pandas,
scikit-learn and scipy (which scikit-learn needs) only; keep it that way. Each class
here is on the skops trusted list in ``trainflow.ml.train``: review any change to it as
you would review a deserialiser.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.base import BaseEstimator, ClassifierMixin, MetaEstimatorMixin, TransformerMixin, clone
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_array, check_is_fitted

_EPOCH = pd.Timestamp("1970-01-01")
_DATE_PARTS = ("days_since_1970", "month", "day_of_week")


def _as_frame(values: Any) -> pd.DataFrame:
    return values if isinstance(values, pd.DataFrame) else pd.DataFrame(np.asarray(values, dtype=object))


class DatetimeFeatures(TransformerMixin, BaseEstimator):
    """Raw date/time columns (strings or datetimes) -> days since 1970-01-01, month, day of week.

    Unparseable or missing values become NaN, for an imputer downstream. Parsing happens
    inside the pipeline so production input can stay raw.
    """

    def fit(self, X: Any, y: Any = None) -> DatetimeFeatures:
        frame = _as_frame(X)
        self.columns_ = [str(c) for c in frame.columns]
        self.n_features_in_ = frame.shape[1]
        return self

    def transform(self, X: Any) -> np.ndarray:
        frame = _as_frame(X)
        parts = []
        for column in frame.columns:
            parsed = pd.to_datetime(frame[column], errors="coerce", format="mixed", utc=True).dt.tz_convert(None)
            parts += [
                (parsed - _EPOCH) / pd.Timedelta(days=1),
                parsed.dt.month.astype("float64"),
                parsed.dt.day_of_week.astype("float64"),
            ]
        return np.column_stack([np.asarray(p, dtype="float64") for p in parts]) if parts else np.empty((len(frame), 0))

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        return np.asarray([f"{c}_{part}" for c in self.columns_ for part in _DATE_PARTS], dtype=object)


class InputColumns(TransformerMixin, BaseEstimator):
    """The pipeline's first step: the raw columns as the model expects them.

    Columns that were numbers in training become float64 whatever pandas made of them
    (int64 when a batch has no gaps, float64 with NaN when it has, objects from JSON), so
    the signature can leave their type open and still every step sees the same input.
    Columns that were text stay text: a number or true/false sent for them is read as
    its text ("3"), and a column with no value at all is missing values, not a type
    error. A value that is neither (a list, a mapping) is refused in one line naming the
    column, and so is a missing column.
    """

    def fit(self, X: Any, y: Any = None) -> InputColumns:
        frame = _as_frame(X)
        self.feature_names_in_ = np.asarray([str(c) for c in frame.columns], dtype=object)
        self.n_features_in_ = frame.shape[1]
        self.numeric_ = [str(c) for c in frame.columns if holds_numbers(frame[c])]
        self.text_ = [str(c) for c in frame.columns if holds_text(frame[c])]
        return self

    def transform(self, X: Any) -> pd.DataFrame:
        frame = _as_frame(X)
        missing = [c for c in self.feature_names_in_ if c not in frame.columns]
        if missing:
            raise ValueError(
                f"missing column(s) {', '.join(map(repr, missing))}: the model needs "
                f"{', '.join(map(str, self.feature_names_in_))}"
            )
        casts = {}
        for column in self.numeric_:
            if frame[column].dtype == np.float64:
                continue
            try:
                casts[column] = pd.to_numeric(frame[column], errors="raise").astype("float64")
            except (ValueError, TypeError):
                bad = frame[column][pd.to_numeric(frame[column], errors="coerce").isna() & frame[column].notna()]
                example = f"; got {bad.iloc[0]!r}" if len(bad) else ""
                raise ValueError(f"column {column!r} must hold numbers{example}") from None
        # Models exported before text columns were recorded have no text_.
        for column in getattr(self, "text_", []):
            values = frame[column]
            kind = pd.api.types.infer_dtype(values, skipna=True)
            if kind in ("string", "empty"):
                continue
            nested = values[values.map(lambda v: isinstance(v, (list, tuple, dict, set, np.ndarray)))]
            if len(nested):
                raise ValueError(f"column {column!r} must hold text; got {nested.iloc[0]!r}")
            casts[column] = values.astype(object).where(values.isna(), values.astype(str))
        return frame.assign(**casts) if casts else frame

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        return self.feature_names_in_


def holds_numbers(values: pd.Series) -> bool:
    """A training column :class:`InputColumns` reads as float64 whatever a batch holds:
    numbers, not true/false."""
    return pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)


def holds_text(values: pd.Series) -> bool:
    """A training column :class:`InputColumns` reads as text: anything that is not
    numbers, true/false or dates (strings, objects, categories)."""
    return not (
        pd.api.types.is_numeric_dtype(values)
        or pd.api.types.is_bool_dtype(values)
        or pd.api.types.is_datetime64_any_dtype(values)
    )


class TextComponents(TransformerMixin, BaseEstimator):
    """A text column's TF-IDF matrix as at most ``components`` dense components (truncated
    SVD), for estimators that need a dense matrix: 30 numbers per row instead of a column
    per term. A vocabulary too small to reduce is passed on densely."""

    def __init__(self, components: int = 30) -> None:
        self.components = components

    def fit(self, X: Any, y: Any = None) -> TextComponents:
        from sklearn.decomposition import TruncatedSVD

        self.n_features_in_ = X.shape[1]
        k = min(self.components, X.shape[1] - 1)
        self.svd_ = TruncatedSVD(n_components=k, random_state=0).fit(X) if k >= 1 else None
        return self

    def transform(self, X: Any) -> np.ndarray:
        if self.svd_ is None:
            return X.toarray() if sparse.issparse(X) else np.asarray(X)
        return self.svd_.transform(X)


class TextColumn(TransformerMixin, BaseEstimator):
    """One text column as a 1-D array of strings (missing -> ""), the input TF-IDF expects."""

    def fit(self, X: Any, y: Any = None) -> TextColumn:
        self.n_features_in_ = _as_frame(X).shape[1]
        return self

    def transform(self, X: Any) -> np.ndarray:
        column = _as_frame(X).iloc[:, 0]
        return column.astype(object).where(column.notna(), "").astype(str).to_numpy()


_STACKING_ROWS = 16_384


def stack_as_csr(parts: list[Any]) -> sparse.csr_matrix:
    """The parts (sparse or dense, same rows) side by side, as one CSR matrix.

    Each part is written once into the result, row offsets computed first, a slice of
    rows at a time (a dense part column by column), so that no copy of a part is made.
    Like scipy's, the result stores a dense part's nonzero values and a sparse part's
    stored ones. scipy's ``hstack`` instead copies every part (concatenated, or as COO
    when one is dense) before building the result: at a million rows that copy was the
    largest allocation of a fit.
    """
    parts = [check_array(part, accept_sparse="csr", ensure_all_finite=False, ensure_min_features=0) for part in parts]
    n_rows, n_columns = parts[0].shape[0], sum(part.shape[1] for part in parts)
    per_row = np.zeros(n_rows, dtype=np.int64)
    for part in parts:
        per_row += np.diff(part.indptr) if sparse.issparse(part) else np.count_nonzero(part, axis=1)
    nnz = int(per_row.sum())
    index_dtype = np.int32 if max(nnz, n_columns) < np.iinfo(np.int32).max else np.int64
    indptr = np.zeros(n_rows + 1, dtype=index_dtype)
    np.cumsum(per_row, out=indptr[1:])
    del per_row
    data = np.empty(nnz, dtype=np.result_type(*(part.dtype for part in parts)))
    indices = np.empty(nnz, dtype=index_dtype)
    next_free = indptr[:-1].copy()  # per row: where its next value goes
    first_column = 0
    for part in parts:
        # In slices of rows, so that the index arrays built on the way stay small.
        for start in range(0, n_rows, _STACKING_ROWS):
            stop = min(start + _STACKING_ROWS, n_rows)
            rows = slice(start, stop)
            free = next_free[rows]  # a view: advancing it advances next_free
            if sparse.issparse(part):
                first, last = part.indptr[start], part.indptr[stop]
                count = np.diff(part.indptr[start : stop + 1])
                # The k-th stored value of the part goes to free[its row] + (k - indptr[its row]).
                destination = np.repeat(free - part.indptr[rows], count) + np.arange(first, last)
                data[destination] = part.data[first:last]
                indices[destination] = part.indices[first:last] + first_column
                free += count.astype(index_dtype, copy=False)
            else:
                for column in range(part.shape[1]):
                    values = part[rows, column]
                    nonzero = np.flatnonzero(values)
                    destination = free[nonzero]
                    data[destination] = values[nonzero]
                    indices[destination] = first_column + column
                    free[nonzero] += 1
        first_column += part.shape[1]
    return sparse.csr_matrix((data, indices, indptr), shape=(n_rows, n_columns))


class CsrColumnTransformer(ColumnTransformer):
    """A ``ColumnTransformer`` whose sparse output is stacked by :func:`stack_as_csr`.

    At a million rows, the copy scipy's ``hstack`` makes of the whole result was the
    largest allocation of a fit. Dense output, and everything else, is
    ``ColumnTransformer``'s own; ``_hstack`` is the method scikit-learn documents for
    subclasses to change how the parts are stacked.
    """

    def _hstack(self, Xs: list[Any], *, n_samples: int) -> Any:
        if not self.sparse_output_:
            return super()._hstack(Xs, n_samples=n_samples)
        try:
            return stack_as_csr(Xs)
        except ValueError as error:  # the message ColumnTransformer gives
            raise ValueError(
                "For a sparse output, all columns should be a numeric or convertible to a numeric."
            ) from error


class LabelledProbabilities(ClassifierMixin, MetaEstimatorMixin, BaseEstimator):
    """A classifier whose ``predict_proba`` returns a DataFrame with one column per class.

    MLflow's pyfunc flavour calls ``predict_proba``, so ``mlflow models serve`` answers
    with labelled probabilities instead of a bare array. The wrapped estimator learns
    class codes 0..k-1 (some, like XGBoost's, accept nothing else); the labels are this
    wrapper's ``classes_``, so every estimator answers in the user's own labels.
    """

    def __init__(self, estimator: Any) -> None:
        self.estimator = estimator

    def fit(self, X: Any, y: Any, **fit_params: Any) -> LabelledProbabilities:
        self.classes_, codes = np.unique(np.asarray(y), return_inverse=True)
        self.estimator_ = clone(self.estimator).fit(X, codes, **fit_params)
        self.encoded_ = True
        return self

    def predict(self, X: Any) -> np.ndarray:
        predicted = self.estimator_.predict(X)
        # Artifacts written before the codes (no encoded_) hold an estimator of the labels.
        return self.classes_[np.asarray(predicted, dtype=np.int64)] if getattr(self, "encoded_", False) else predicted

    def predict_proba(self, X: Any) -> pd.DataFrame:
        return self.labelled(self.estimator_.predict_proba(X))

    def labelled(self, probabilities: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame(probabilities, columns=[str(c) for c in self.classes_])


def _final_estimator_has(method: str) -> Any:
    return lambda pipeline: hasattr(pipeline._final_estimator, method)


class ServingPipeline(Pipeline):
    """The exported ``Pipeline``: a frame with no rows gets an answer with no rows.

    scikit-learn's imputers and scalers refuse zero samples, so a client that sends an
    empty batch would get "Found array with 0 sample(s) ... required by SimpleImputer".
    Here it gets what any other batch gets, with no rows: ``predict`` an empty array of
    the labels' (or float) dtype, ``predict_proba`` the labelled columns. The columns
    the pipeline was fitted on are still required, as for a frame with rows.
    """

    @available_if(_final_estimator_has("predict"))
    def predict(self, X: Any, **params: Any) -> np.ndarray:
        if not self._is_empty_frame(X):
            return super().predict(X, **params)
        classes = getattr(self._final_estimator, "classes_", None)
        return np.empty(0, dtype=classes.dtype if classes is not None else "float64")

    @available_if(_final_estimator_has("predict_proba"))
    def predict_proba(self, X: Any, **params: Any) -> Any:
        if not self._is_empty_frame(X):
            return super().predict_proba(X, **params)
        final = self._final_estimator
        probabilities = np.empty((0, len(final.classes_)), dtype="float64")
        return final.labelled(probabilities) if isinstance(final, LabelledProbabilities) else probabilities

    def _is_empty_frame(self, X: Any) -> bool:
        if not isinstance(X, pd.DataFrame) or len(X) > 0:
            return False
        check_is_fitted(self)
        missing = [c for c in getattr(self, "feature_names_in_", []) if c not in X.columns]
        if missing:  # the message the ColumnTransformer gives for a frame with rows
            raise ValueError(f"columns are missing: {set(missing)}")
        return True
