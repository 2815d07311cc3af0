"""Schema checks from ``data_check.expectations``: a pandera schema, validated lazily so that every failure
is collected (``columns_present``, ``extra_columns``, ``dtype``, ``not_null``, ``allowed_values``,
``value_range``, ``row_count``, ``expected_classes``); :func:`infer_expectations` writes a first version."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from trainflow.datacheck.kinds import dtype_kind, is_numeric_kind, kind_matches
from trainflow.datacheck.report import CheckResult, format_number

# pandera is imported inside the functions that validate a table: about 0.15 s that validating a config (through
# trainflow.datacheck.checks) and `trainflow data-schema infer` do not pay (docs/architecture.md#start-up).

COLUMN_KEYS = ("dtype", "nullable", "allowed", "min", "max")
EXAMPLES = 5  # offending values quoted in a message
# Inferred expectations (trainflow data-schema infer): categories for string columns
# with at most this many distinct values; ranges widened by this fraction of the
# observed range; row count between these multiples of the rows seen.
INFER_MAX_CATEGORIES = 20
INFER_MARGIN = 0.1
INFER_ROWS_MIN_FACTOR = 0.5
INFER_ROWS_MAX_FACTOR = 10


# -- the schema from config -------------------------------------------------------------


def _dtype_check(expected: str) -> Callable[[pd.Series], bool]:
    def check(series: pd.Series) -> bool:
        return kind_matches(dtype_kind(series), expected)

    return check


def _allowed_check(values: Sequence[Any]) -> Callable[[pd.Series], Any]:
    allowed = list(values)

    def check(series: pd.Series) -> Any:
        return series.isin(allowed)

    return check


def _range_check(low: float | None, high: float | None) -> Callable[[pd.Series], Any]:
    def check(series: pd.Series) -> Any:
        if not is_numeric_kind(dtype_kind(series)):
            return True  # not a number: the dtype check reports it
        ok = pd.Series(True, index=series.index)
        if low is not None:
            ok &= series >= low
        if high is not None:
            ok &= series <= high
        return ok

    return check


def _classes_check(classes: Sequence[Any]) -> Callable[[pd.Series], bool]:
    expected = list(classes)

    def check(series: pd.Series) -> bool:
        return bool(pd.Series(expected).isin(series.dropna().unique()).all())

    return check


def _row_count_check(low: int | None, high: int | None) -> Callable[[pd.DataFrame], bool]:
    def check(frame: pd.DataFrame) -> bool:
        return (low is None or len(frame) >= low) and (high is None or len(frame) <= high)

    return check


def build_schema(expectations: Mapping[str, Any], target: str | None = None) -> Any:
    """A pandera ``DataFrameSchema`` from ``data_check.expectations``.

    Each declared column must be present (``column_in_dataframe``) and, as declared,
    of its logical ``dtype``, without nulls (``nullable: false``), within ``allowed``
    values and within ``min``/``max``; columns not declared are reported
    (``strict``); the table's rows must be within ``row_count``. With ``target``, the
    target column must hold every class of ``classes`` (pass None for regression).
    Every check carries the name :func:`schema_checks` reports it under.
    """
    import pandera.pandas as pa

    classes = expectations.get("classes")
    columns: dict[str, Any] = {}
    for name, spec in (expectations.get("columns") or {}).items():
        spec = spec or {}
        checks = []
        if spec.get("dtype"):
            checks.append(pa.Check(_dtype_check(spec["dtype"]), name="dtype", ignore_na=False))
        if spec.get("allowed") is not None:
            checks.append(pa.Check(_allowed_check(spec["allowed"]), name="allowed_values"))
        if spec.get("min") is not None or spec.get("max") is not None:
            checks.append(pa.Check(_range_check(spec.get("min"), spec.get("max")), name="value_range"))
        if name == target and classes:
            checks.append(pa.Check(_classes_check(classes), name="expected_classes", ignore_na=False))
        columns[str(name)] = pa.Column(None, checks=checks, nullable=bool(spec.get("nullable", True)))
    if target is not None and classes and target not in columns:
        columns[target] = pa.Column(
            None, checks=[pa.Check(_classes_check(classes), name="expected_classes", ignore_na=False)], nullable=True
        )
    row_count = expectations.get("row_count") or {}
    frame_checks = []
    if row_count.get("min") is not None or row_count.get("max") is not None:
        frame_checks.append(pa.Check(_row_count_check(row_count.get("min"), row_count.get("max")), name="row_count"))
    return pa.DataFrameSchema(columns, checks=frame_checks, strict=True)


_TABLE = ""  # the "column" of table-level failure cases
# pandera's names for its built-in checks -> ours
_PANDERA_NAMES = {
    "column_in_dataframe": "columns_present",
    "column_in_schema": "extra_columns",
    "not_nullable": "not_null",
}


def _failure_cases(schema: Any, frame: pd.DataFrame) -> pd.DataFrame:
    """pandera's failure cases (``column``, ``check``, ``failure_case``), every one of them."""
    import pandera.errors as pa_errors

    try:
        schema.validate(frame, lazy=True, inplace=True)
    except pa_errors.SchemaErrors as errors:
        cases = errors.failure_cases[["column", "check", "failure_case"]].copy()
    except pa_errors.SchemaError as error:  # raised eagerly for some table-level problems
        cases = pd.DataFrame({"column": [None], "check": [str(error.check)], "failure_case": [str(error)]})
    else:
        return pd.DataFrame({"column": [], "check": [], "failure_case": []})
    checks = cases["check"].astype(str)
    cases["check"] = checks.replace(_PANDERA_NAMES)
    columns = cases["column"].astype(object)
    cases["column"] = columns.where(columns.notna(), _TABLE).astype(str)
    return cases


def _examples(values: pd.Series) -> str:
    """The most frequent offending values with their row counts: ``'Atlantis' (2 rows), ...``."""
    counts = values.value_counts()
    shown = ", ".join(
        f"{value!r} ({count} row{'s' if count != 1 else ''})"
        if isinstance(value, str)
        else f"{value} ({count} row{'s' if count != 1 else ''})"
        for value, count in counts.head(EXAMPLES).items()
    )
    return shown + (f" and {len(counts) - EXAMPLES} more" if len(counts) > EXAMPLES else "")


def _offending_values(
    column: str, check: str, offending: pd.Series, problem: str, fine: str, quote: bool = False
) -> CheckResult:
    """A schema check that passes when no value offends: the count is its statistic, and a
    failure's message counts them (quoting the most frequent when ``quote``)."""
    if offending.empty:
        message = fine
    else:
        message = f"{len(offending)} {problem}" + (f": {_examples(offending)}" if quote else "")
    return CheckResult("schema", check, column, float(len(offending)), 0.0, offending.empty, message=message)


def schema_checks(frame: pd.DataFrame, expectations: Mapping[str, Any], target: str | None = None) -> list[CheckResult]:
    """Validate ``frame`` against the expectations; one result per declared check, passed or not."""
    cases = _failure_cases(build_schema(expectations, target), frame)
    by_key = {
        (str(column), str(check)): group for (column, check), group in cases.groupby(["column", "check"], sort=False)
    }

    def failing(column: str | None, check: str) -> pd.Series:
        group = by_key.get((_TABLE if column is None else column, check))
        return group["failure_case"] if group is not None else pd.Series([], dtype=object)

    results: list[CheckResult] = []
    table_cases = cases[cases["column"] == _TABLE]
    missing = set(table_cases.loc[table_cases["check"] == "columns_present", "failure_case"].astype(str))
    extra = list(table_cases.loc[table_cases["check"] == "extra_columns", "failure_case"].astype(str))
    declared = {str(name): spec or {} for name, spec in (expectations.get("columns") or {}).items()}
    classes = expectations.get("classes")
    if target is not None and classes and target not in declared:
        declared[target] = {}

    for name, spec in declared.items():
        absent = name in missing
        results.append(
            CheckResult(
                "schema",
                "columns_present",
                name,
                float(absent),
                0.0,
                not absent,
                message=f"column {name!r} is missing" if absent else "present",
            )
        )
        if absent:
            continue
        if spec.get("dtype"):
            actual = dtype_kind(frame[name])
            ok = kind_matches(actual, spec["dtype"])
            results.append(
                CheckResult(
                    "schema",
                    "dtype",
                    name,
                    None,
                    None,
                    ok,
                    message=f"expected {spec['dtype']}, found {actual} (pandas dtype {frame[name].dtype})",
                )
            )
        if not spec.get("nullable", True):
            results.append(_offending_values(name, "not_null", failing(name, "not_null"), "null value(s)", "no nulls"))
        if spec.get("allowed") is not None:
            allowed = list(spec["allowed"])
            results.append(
                _offending_values(
                    name,
                    "allowed_values",
                    failing(name, "allowed_values"),
                    f"value(s) not in {allowed}",
                    f"all values in {allowed}",
                    quote=True,
                )
            )
        if spec.get("min") is not None or spec.get("max") is not None:
            bounds = f"[{format_number(spec.get('min')) or '-inf'}, {format_number(spec.get('max')) or 'inf'}]"
            results.append(
                _offending_values(
                    name,
                    "value_range",
                    failing(name, "value_range"),
                    f"value(s) outside {bounds}",
                    f"all values in {bounds}",
                    quote=True,
                )
            )
        if name == target and classes:
            present = set(frame[name].dropna().unique().tolist())
            absent_classes = [c for c in classes if c not in present]
            surplus = sorted(map(str, present - set(classes)))
            results.append(
                CheckResult(
                    "schema",
                    "expected_classes",
                    name,
                    float(len(absent_classes)),
                    0.0,
                    not absent_classes,
                    message=(
                        f"class(es) {absent_classes} missing from target {name!r}"
                        if absent_classes
                        else f"all of {list(classes)} present" + (f"; also {surplus}" if surplus else "")
                    ),
                )
            )

    severity = str(expectations.get("extra_columns") or "warn")
    results.append(
        CheckResult(
            "schema",
            "extra_columns",
            None,
            float(len(extra)),
            0.0,
            not extra,
            severity=severity,
            message=f"column(s) not in the expectations: {extra}" if extra else "no undeclared columns",
        )
    )
    row_count = expectations.get("row_count") or {}
    if row_count.get("min") is not None or row_count.get("max") is not None:
        low, high = row_count.get("min"), row_count.get("max")
        ok = failing(None, "row_count").empty
        threshold = low if (low is not None and len(frame) < low) or high is None else high
        assert threshold is not None  # min or max is set (checked above)
        results.append(
            CheckResult(
                "schema",
                "row_count",
                None,
                float(len(frame)),
                float(threshold),
                ok,
                message=f"{len(frame):,} rows; expected between {low if low is not None else 0} and "
                f"{high if high is not None else 'any number'}",
            )
        )
    known = {
        "columns_present",
        "extra_columns",
        "dtype",
        "not_null",
        "allowed_values",
        "value_range",
        "row_count",
        "expected_classes",
    }
    for (column, check), group in by_key.items():  # anything pandera found that has no name above
        if check not in known:
            results.append(
                CheckResult(
                    "schema",
                    check,
                    column or None,
                    float(len(group)),
                    0.0,
                    False,
                    message=f"pandera check {check}: {_examples(group['failure_case'])}",
                )
            )
    return results


# -- inferring expectations from a table ------------------------------------------------


def infer_expectations(
    frame: pd.DataFrame,
    target: str | None = None,
    max_categories: int = INFER_MAX_CATEGORIES,
    margin: float = INFER_MARGIN,
) -> dict[str, Any]:
    """A starting ``data_check.expectations`` that the table it came from passes.

    Each column gets its logical dtype and ``nullable`` (false when it has no gaps);
    string and boolean columns with at most ``max_categories`` distinct values get
    their ``allowed`` values; numeric columns get ``min``/``max`` widened by ``margin``
    of the observed range (integers rounded outward, never below 0 for a column without
    negative values); the row count is bounded by
    half and ten times the rows seen. A string or boolean ``target`` gets all its values
    as ``classes``; an integer one gets them when it has at most ``max_categories``
    values (more look like a regression target). Review the result: it describes this
    table, not what the data should be.
    """
    columns: dict[str, dict[str, Any]] = {}
    for name in frame.columns:
        series = frame[name]
        kind = dtype_kind(series)
        spec: dict[str, Any] = {}
        if kind != "other":
            spec["dtype"] = kind
        spec["nullable"] = bool(series.isna().any())
        values = series.dropna()
        if kind in ("str", "bool"):
            distinct = values.unique()
            if 0 < len(distinct) <= max_categories:
                spec["allowed"] = sorted(_python(v) for v in distinct)
        elif is_numeric_kind(kind) and len(values):
            low, high = float(values.min()), float(values.max())
            pad = margin * (high - low) if high > low else margin * max(abs(low), 1.0)
            floor = 0.0 if low >= 0 else -math.inf  # a margin does not make a non-negative column signed
            if kind == "int":
                spec["min"], spec["max"] = int(max(floor, math.floor(low - pad))), int(math.ceil(high + pad))
            else:
                spec["min"], spec["max"] = max(floor, _round(low - pad, math.floor)), _round(high + pad, math.ceil)
        columns[str(name)] = spec
    rows = len(frame)
    expectations: dict[str, Any] = {
        "columns": columns,
        "row_count": {"min": int(math.floor(rows * INFER_ROWS_MIN_FACTOR)), "max": int(rows * INFER_ROWS_MAX_FACTOR)},
        "classes": None,
        "extra_columns": "warn",
    }
    if target is not None and target in frame.columns and dtype_kind(frame[target]) in ("str", "bool", "int"):
        classes = frame[target].dropna().unique()
        if dtype_kind(frame[target]) != "int" or len(classes) <= max_categories:
            expectations["classes"] = sorted(_python(v) for v in classes)
    return expectations


def _python(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _round(value: float, direction: Callable[[float], float], digits: int = 4) -> float:
    """``value`` to ``digits`` significant digits, rounded outward by ``direction`` (floor/ceil)."""
    if value == 0 or not math.isfinite(value):
        return float(value)
    scale = 10.0 ** (digits - 1 - math.floor(math.log10(abs(value))))
    return float(direction(value * scale) / scale)
