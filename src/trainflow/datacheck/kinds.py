"""Column kinds: the logical type of a column, which the expectations declare (``dtype``)
and the drift checks choose their test by."""

from __future__ import annotations

import pandas as pd

DTYPES = ("int", "float", "str", "bool", "datetime")


def dtype_kind(series: pd.Series) -> str:
    """The logical type of a column: ``int``, ``float``, ``str``, ``bool``, ``datetime`` or ``other``.

    Logical rather than exact pandas dtypes, because the exact dtype of a column read
    from CSV depends on its values: a float column without gaps or fractions reads as
    int64, so the expectation ``float`` accepts integer columns (``int`` does not
    accept floats).
    """
    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return dtype_kind(pd.Series(dtype.categories))
    if pd.api.types.is_bool_dtype(dtype):
        return "bool"
    if pd.api.types.is_integer_dtype(dtype):
        return "int"
    if pd.api.types.is_float_dtype(dtype):
        return "float"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "datetime"
    if isinstance(dtype, pd.StringDtype):
        return "str"
    if pd.api.types.is_object_dtype(dtype):
        inferred = pd.api.types.infer_dtype(series, skipna=True)
        if inferred in ("string", "empty"):
            return "str"
        if inferred == "boolean":
            return "bool"
    return "other"


def kind_matches(actual: str, expected: str) -> bool:
    """Whether a column of kind ``actual`` meets the expectation ``expected`` (``float`` takes ``int``)."""
    return actual == expected or (expected == "float" and actual == "int")


def is_numeric_kind(kind: str) -> bool:
    """Whether ``kind`` holds numbers: ranges apply to it, and drift tests it with KS."""
    return kind in ("int", "float")
