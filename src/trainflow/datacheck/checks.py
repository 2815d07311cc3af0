"""Data checks: the schema and distribution tests that stop bad data before training.

Plain functions, frames in and a :class:`CheckReport` out; no MLflow, no store. Three
groups of checks, each result a :class:`CheckResult` with a name a user can look up:

``schema`` (the dataset-specific ``data_check.expectations``; a pandera schema built by
:func:`build_schema`, validated lazily so that every failure is collected)
    ``columns_present``, ``extra_columns``, ``dtype``, ``not_null``, ``allowed_values``,
    ``value_range``, ``row_count``, ``expected_classes``
``generic`` (always on)
    ``non_empty``, ``target_present``, ``two_classes``, ``min_class_count``, ``all_null_columns``,
    ``duplicate_rows``
``drift`` (against a reference version of the data)
    ``reference_columns``, ``ks`` per numeric column (two-sample Kolmogorov-Smirnov),
    ``chi_square`` per categorical column (test of homogeneity); the tests form one
    family whose false-alarm rate is held at ``drift.alpha`` by a Sidak or Bonferroni
    correction, stated in the report. Each test also measures how far the column moved,
    as a population stability index (:func:`population_stability_index`): on a large
    table every tiny shift is significant, so a significant shift stops the step only
    when it is also large (PSI above ``drift.max_psi``), and warns otherwise.

Whether a failed check stops the pipeline is decided by :meth:`CheckReport.failed`: a
check fails the step when its own severity is ``error`` and ``fail_on`` says ``error``
for its group; otherwise it warns. Checks whose severity is ``warn``: ``extra_columns``
when declared so, ``duplicate_rows`` without a bound, ``reference_columns`` (which
columns a table must have is the expectations' to say), a small (or a date column's) drift.

Everything is vectorised: a million rows take seconds (``bench/datacheck.py``).
pandera and scipy are imported when first needed, so importing this module (config
validation does) stays cheap.
"""

from __future__ import annotations

import json
import math
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from trainflow.errors import ConfigError, DataError, TrainflowError
from trainflow.ml.data import mostly_dates

GROUPS = ("schema", "generic", "drift")
DTYPES = ("int", "float", "str", "bool", "datetime")
COLUMN_KEYS = ("dtype", "nullable", "allowed", "min", "max")
SEVERITIES = ("error", "warn")
CORRECTIONS = ("sidak", "bonferroni")
DEFAULT_FAIL_ON = {"schema": "error", "generic": "error", "drift": "error"}
MISSING_CATEGORY = "<missing>"
EXAMPLES = 5  # offending values quoted in a message
# Inferred expectations (trainflow data-schema infer): categories for string columns
# with at most this many distinct values; ranges widened by this fraction of the
# observed range; row count between these multiples of the rows seen.
INFER_MAX_CATEGORIES = 20
INFER_MARGIN = 0.1
INFER_ROWS_MIN_FACTOR = 0.5
INFER_ROWS_MAX_FACTOR = 10


class DataCheckFailed(DataError):
    """The data failed checks that stop the pipeline (the message summarises them)."""


def verdict_metadata(passed: bool, report_ref: str, run_id: str) -> dict[str, Any]:
    """What check_data records on the ``raw_data`` version it checked: the verdict and
    the run that reached it (a cache hit of check_data stands in only while it is still
    that run's), and the report. split_data's cache key reads ``data_check.passed`` only,
    which does not change when the same table is checked again."""
    return {"data_check": {"passed": passed, "run_id": run_id}, "data_check_report": report_ref}


def refuse_failed_data(metadata: Mapping[str, Any], ref: str) -> None:
    """Stop a step from using a table that check_data failed (unchecked tables pass:
    ``-P steps=fetch_data,split_data`` skips the check on purpose)."""
    verdict = metadata.get("data_check") or {}
    if verdict.get("passed") is False:
        raise DataCheckFailed(
            f"{ref} failed check_data (report {metadata.get('data_check_report')}): fix the data and run "
            "-P steps=fetch_data,check_data,..., or pass a version that passed, e.g. -P raw_artifact=raw_data:reference"
        )


@dataclass(frozen=True)
class CheckResult:
    """One check on one column (or on the whole table when ``column`` is None).

    ``statistic`` is what was measured (failing values, rows, a fraction, a test
    statistic), ``threshold`` the limit it was held to; for the drift tests the
    threshold applies to ``p_value`` (the corrected per-test alpha).
    """

    group: str
    name: str
    column: str | None
    statistic: float | None
    threshold: float | None
    passed: bool
    severity: str = "error"
    message: str = ""
    p_value: float | None = None
    effect_size: float | None = None  # drift: the population stability index

    @property
    def key(self) -> str:
        return f"{self.group}.{self.name}" + ("" if self.column is None else f".{self.column}")


@dataclass
class CheckReport:
    """Every check that ran on one table, with what decides which of them stop the step."""

    results: list[CheckResult]
    rows: int
    columns: list[str]
    fail_on: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_FAIL_ON))
    reference: str | None = None
    drift: dict[str, Any] = field(default_factory=dict)  # test family: method, alpha, tests, per-test alpha
    notes: list[str] = field(default_factory=list)
    expectations: dict[str, Any] | None = None

    def verdict(self, result: CheckResult, fail_on: Mapping[str, str] | None = None) -> str:
        """``pass``, ``warn`` (failed, but does not stop) or ``fail`` (stops the step)."""
        if result.passed:
            return "pass"
        stops = result.severity == "error" and (fail_on or self.fail_on).get(result.group, "error") == "error"
        return "fail" if stops else "warn"

    def failed(self, fail_on: Mapping[str, str] | None = None) -> list[CheckResult]:
        """The failed checks that stop the step under ``fail_on`` (default: the report's)."""
        return [r for r in self.results if self.verdict(r, fail_on) == "fail"]

    def warnings(self, fail_on: Mapping[str, str] | None = None) -> list[CheckResult]:
        return [r for r in self.results if self.verdict(r, fail_on) == "warn"]

    @property
    def passed(self) -> bool:
        return not self.failed()

    def by_name(self, name: str) -> list[CheckResult]:
        return [r for r in self.results if r.name == name]

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "rows": self.rows,
            "columns": self.columns,
            "fail_on": self.fail_on,
            "reference": self.reference,
            "drift": self.drift,
            "notes": self.notes,
            "summary": {
                "checks": len(self.results),
                "failed": len(self.failed()),
                "warnings": len(self.warnings()),
            },
            "checks": [{**asdict(r), "verdict": self.verdict(r)} for r in self.results],
            "expectations": self.expectations,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=_json_default)

    def metrics(self) -> dict[str, float]:
        """Each check's statistic, threshold, p-value and verdict (1 pass, 0 not), by MLflow-safe key."""
        metrics: dict[str, float] = {
            "checks_total": float(len(self.results)),
            "checks_failed": float(len(self.failed())),
            "checks_warned": float(len(self.warnings())),
        }
        for result in self.results:
            key = metric_key(result.key)
            for suffix, value in (
                ("statistic", result.statistic),
                ("threshold", result.threshold),
                ("p_value", result.p_value),
                ("psi", result.effect_size),
            ):
                if value is not None and math.isfinite(value):
                    metrics[f"{key}.{suffix}"] = float(value)
            metrics[f"{key}.passed"] = 1.0 if result.passed else 0.0
        return metrics

    def table(self, results: Sequence[CheckResult]) -> str:
        """A pipe table of ``results`` (Markdown, and readable in a terminal)."""
        header = ["verdict", "group", "check", "column", "statistic", "threshold", "message"]
        rows = [
            [
                self.verdict(r),
                r.group,
                r.name,
                "" if r.column is None else str(r.column),
                _number(r.statistic) + ("" if r.p_value is None else f" (p={_number(r.p_value)})"),
                _number(r.threshold),
                r.message.replace("|", "\\|"),
            ]
            for r in results
        ]
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]

        def line(cells: list[str]) -> str:
            padded = [cell.ljust(width) for cell, width in zip(cells, widths)] + [cells[-1]]
            return "| " + " | ".join(padded) + " |"

        separator = "|" + "|".join("-" * (w + 2) for w in widths) + "|" + "-" * 9 + "|"
        return "\n".join([line(header), separator, *(line(row) for row in rows)])

    def to_markdown(self, title: str = "Data check report") -> str:
        failed, warned = self.failed(), self.warnings()
        status = "FAILED" if failed else "passed"
        lines = [
            f"# {title}",
            "",
            f"**{status}**: {len(self.results)} checks, {len(failed)} failed, {len(warned)} warnings "
            f"on {self.rows:,} rows x {len(self.columns)} columns.",
            "",
            "fail_on: " + ", ".join(f"{group}={self.fail_on.get(group, 'error')}" for group in GROUPS),
            "",
        ]
        if self.reference:
            lines += [f"Reference: `{self.reference}`.", ""]
        if self.drift.get("tests"):
            lines += [self.drift["statement"], ""]
        if self.notes:
            lines += ["Notes:", "", *(f"- {note}" for note in self.notes), ""]
        for heading, selection in (("Failed checks", failed), ("Warnings", warned)):
            if selection:
                lines += [f"## {heading}", "", self.table(selection), ""]
        lines += ["## All checks", "", self.table(self.results), ""]
        return "\n".join(lines)

    def summary(self) -> str:
        """One line: what failed, for the step's error message."""
        failed = self.failed()
        named = ", ".join(f"{r.group}.{r.name}" + (f"[{r.column}]" if r.column is not None else "") for r in failed[:8])
        more = f" and {len(failed) - 8} more" if len(failed) > 8 else ""
        return f"{len(failed)} of {len(self.results)} data checks failed: {named}{more}"


# A numeric target with more distinct values than this is more likely a quantity than classes.
_QUANTITY_LIKE_VALUES = 20


def failure_hints(failed: Sequence[CheckResult], frame: pd.DataFrame, target: str, ref: str) -> list[str]:
    """What the failed checks most likely mean, as fixes to add to the step's error line."""
    hints = []
    if any(r.name == "columns_present" for r in failed):
        hints.append(
            "if this is another dataset, set data_check.expectations=null or write its own with "
            f"`trainflow data-schema infer {ref} --target {target}`"
        )
    if any(r.name == "min_class_count" for r in failed) and target in frame and pd.api.types.is_numeric_dtype(frame[target]):
        distinct = frame[target].nunique()
        if distinct > _QUANTITY_LIKE_VALUES:
            hints.append(
                f"the target {target!r} is numeric with {distinct} distinct values: if it is a quantity, "
                "predict it with model.task=regression"
            )
    return hints


def _number(value: float | None) -> str:
    if value is None:
        return ""
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.4g}"


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


_METRIC_UNSAFE = re.compile(r"[^\w.\- ]")


def metric_key(key: str) -> str:
    """``key`` with characters MLflow refuses in metric names (``(``, ``/``, ...) replaced by ``_``."""
    return _METRIC_UNSAFE.sub("_", key)


# -- column kinds -----------------------------------------------------------------------


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
    return actual == expected or (expected == "float" and actual == "int")


def _is_numeric_kind(kind: str) -> bool:
    return kind in ("int", "float")


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
        if not _is_numeric_kind(dtype_kind(series)):
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
_PANDERA_NAMES = {"column_in_dataframe": "columns_present", "column_in_schema": "extra_columns", "not_nullable": "not_null"}


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
        f"{value!r} ({count} row{'s' if count != 1 else ''})" if isinstance(value, str) else f"{value} ({count} row{'s' if count != 1 else ''})"
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


def schema_checks(
    frame: pd.DataFrame, expectations: Mapping[str, Any], target: str | None = None
) -> list[CheckResult]:
    """Validate ``frame`` against the expectations; one result per declared check, passed or not."""
    cases = _failure_cases(build_schema(expectations, target), frame)
    by_key = {(str(column), str(check)): group for (column, check), group in cases.groupby(["column", "check"], sort=False)}

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
                "schema", "columns_present", name, float(absent), 0.0, not absent,
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
                    "schema", "dtype", name, None, None, ok,
                    message=f"expected {spec['dtype']}, found {actual} (pandas dtype {frame[name].dtype})",
                )
            )
        if not spec.get("nullable", True):
            results.append(_offending_values(name, "not_null", failing(name, "not_null"), "null value(s)", "no nulls"))
        if spec.get("allowed") is not None:
            allowed = list(spec["allowed"])
            results.append(_offending_values(
                name, "allowed_values", failing(name, "allowed_values"), f"value(s) not in {allowed}",
                f"all values in {allowed}", quote=True,
            ))
        if spec.get("min") is not None or spec.get("max") is not None:
            bounds = f"[{_number(spec.get('min')) or '-inf'}, {_number(spec.get('max')) or 'inf'}]"
            results.append(_offending_values(
                name, "value_range", failing(name, "value_range"), f"value(s) outside {bounds}",
                f"all values in {bounds}", quote=True,
            ))
        if name == target and classes:
            present = set(frame[name].dropna().unique().tolist())
            absent_classes = [c for c in classes if c not in present]
            surplus = sorted(map(str, present - set(classes)))
            results.append(
                CheckResult(
                    "schema", "expected_classes", name, float(len(absent_classes)), 0.0, not absent_classes,
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
            "schema", "extra_columns", None, float(len(extra)), 0.0, not extra, severity=severity,
            message=f"column(s) not in the expectations: {extra}" if extra else "no undeclared columns",
        )
    )
    row_count = expectations.get("row_count") or {}
    if row_count.get("min") is not None or row_count.get("max") is not None:
        low, high = row_count.get("min"), row_count.get("max")
        ok = failing(None, "row_count").empty
        threshold = low if (low is not None and len(frame) < low) or high is None else high
        results.append(
            CheckResult(
                "schema", "row_count", None, float(len(frame)), float(threshold), ok,
                message=f"{len(frame):,} rows; expected between {low if low is not None else 0} and "
                f"{high if high is not None else 'any number'}",
            )
        )
    known = {"columns_present", "extra_columns", "dtype", "not_null", "allowed_values", "value_range",
             "row_count", "expected_classes"}
    for (column, check), group in by_key.items():  # anything pandera found that has no name above
        if check not in known:
            results.append(
                CheckResult("schema", check, column or None, float(len(group)), 0.0,
                            False, message=f"pandera check {check}: {_examples(group['failure_case'])}")
            )
    return results


# -- generic checks ---------------------------------------------------------------------


def generic_checks(
    frame: pd.DataFrame,
    target: str,
    task: str,
    min_class_count: int,
    max_duplicate_fraction: float | None,
) -> list[CheckResult]:
    """Checks that hold for any training table, with or without expectations.

    Duplicated rows stop the step only above ``max_duplicate_fraction``; with None (no
    bound: many tables repeat rows legitimately) any duplicates only warn."""
    rows = len(frame)
    results = [
        CheckResult("generic", "non_empty", None, float(rows), 1.0, rows > 0,
                    message=f"{rows:,} rows" if rows else "the table has no rows")
    ]
    labelled = int(frame[target].notna().sum()) if target in frame.columns else 0
    results.append(
        CheckResult(
            "generic", "target_present", target, float(labelled), 1.0, labelled > 0,
            message=(
                f"target column {target!r} is missing (columns: {', '.join(map(str, frame.columns))}); set data.target"
                if target not in frame.columns
                else f"{labelled:,} of {rows:,} rows have a target value"
            ),
        )
    )
    if task == "classification" and labelled:
        counts = frame[target].value_counts()
        results.append(
            CheckResult(
                "generic", "two_classes", target, float(len(counts)), 2.0, len(counts) >= 2,
                message=(
                    f"{len(counts)} classes" if len(counts) >= 2
                    else f"target {target!r} holds one class only ({counts.index[0]!r}): nothing to learn to tell "
                    "apart; check data.target, or use model.task=regression for a numeric target"
                ),
            )
        )
        rare = counts[counts < min_class_count]
        results.append(
            CheckResult(
                "generic", "min_class_count", target, float(counts.min()), float(min_class_count), rare.empty,
                message=(
                    f"class(es) below {min_class_count} rows: "
                    + ", ".join(f"{label!r} ({count})" for label, count in rare.items())
                    if not rare.empty
                    else f"{len(counts)} classes, the smallest with {int(counts.min())} rows"
                ),
            )
        )
    empty = [str(c) for c in frame.columns[frame.isna().all(axis=0).to_numpy()]] if rows else []
    results.append(
        CheckResult(
            "generic", "all_null_columns", None, float(len(empty)), 0.0, not empty,
            message=f"column(s) with no value at all: {empty}" if empty else "every column has values",
        )
    )
    duplicated = int(frame.duplicated().sum()) if rows else 0
    fraction = duplicated / rows if rows else 0.0
    counted = f"{duplicated:,} duplicated row(s), {fraction:.2%} of the table"
    if max_duplicate_fraction is None:
        results.append(
            CheckResult(
                "generic", "duplicate_rows", None, fraction, None, duplicated == 0, severity="warn",
                message=f"{counted} (no bound: set data_check.max_duplicate_fraction to stop on them)",
            )
        )
    else:
        results.append(
            CheckResult(
                "generic", "duplicate_rows", None, fraction, float(max_duplicate_fraction),
                fraction <= max_duplicate_fraction, message=f"{counted} (at most {max_duplicate_fraction:.2%})",
            )
        )
    return results


# -- drift against a reference ----------------------------------------------------------


def corrected_alpha(alpha: float, tests: int, correction: str) -> float:
    """The per-test significance level that keeps the family-wise error rate at ``alpha``."""
    if tests <= 1:
        return alpha
    if correction == "sidak":
        return 1.0 - (1.0 - alpha) ** (1.0 / tests)
    if correction == "bonferroni":
        return alpha / tests
    raise ValueError(f"correction={correction!r} is not one of {', '.join(CORRECTIONS)}")


# Proportions below this count as this in the PSI, so that a bin empty on one side adds a
# large but finite term instead of an infinite one.
_PSI_FLOOR = 1e-4
PSI_BINS = 10


def population_stability_index(current: np.ndarray, reference: np.ndarray) -> float:
    """``sum((c - r) * ln(c / r))`` over matching bins' shares (counts, each side summing
    to its rows): 0 for the same distribution; by convention under 0.1 is stable, 0.1-0.25
    a moderate shift and above 0.25 a large one."""
    c = np.maximum(np.asarray(current, dtype=float) / max(float(np.sum(current)), 1.0), _PSI_FLOOR)
    r = np.maximum(np.asarray(reference, dtype=float) / max(float(np.sum(reference)), 1.0), _PSI_FLOOR)
    return float(np.sum((c - r) * np.log(c / r)))


def binned_counts(
    current: np.ndarray, reference: np.ndarray, missing: tuple[int, int], bins: int = PSI_BINS
) -> tuple[np.ndarray, np.ndarray]:
    """Both samples' counts over the reference's quantile bins (``bins`` of them, fewer
    where values repeat), plus a bin of missing values (``missing``: each side's count)."""
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1])) if len(reference) else np.array([])
    now = np.bincount(np.searchsorted(edges, current, side="right"), minlength=len(edges) + 1)
    before = np.bincount(np.searchsorted(edges, reference, side="right"), minlength=len(edges) + 1)
    return np.append(now, missing[0]), np.append(before, missing[1])


def _category_counts(series: pd.Series, limit: int) -> pd.Series | None:
    """Rows per category (missing values as ``<missing>``); None when there are more than ``limit``."""
    counts = series.value_counts(dropna=False, sort=False)
    if len(counts) > limit:
        return None
    counts.index = [MISSING_CATEGORY if pd.isna(v) else str(v) for v in counts.index]
    return counts.groupby(level=0).sum()


def drift_checks(
    frame: pd.DataFrame,
    reference: pd.DataFrame,
    alpha: float,
    correction: str,
    max_categories: int,
    max_psi: float = 0.25,
) -> tuple[list[CheckResult], dict[str, Any], list[str]]:
    """Compare each shared column's distribution with the reference's.

    Numeric (and date) columns: two-sample Kolmogorov-Smirnov on the non-null values.
    Categorical columns (strings, booleans) with at most ``max_categories`` categories:
    chi-square test of homogeneity on the category counts, missing values counted as a
    category of their own. All tests form one family: each uses the per-test alpha of
    ``correction`` so that the chance of any false alarm on unchanged data is ``alpha``.

    A test fails when its shift is significant. How much it moved, the population
    stability index over the reference's deciles (numbers; missing values a bin of their
    own) or categories, decides what a failure does: above ``max_psi`` it is an error,
    at or below only a warning. Date columns only warn: new data is later data.

    Returns the results, the description of the test family, and notes on skipped columns.
    """
    from scipy import stats

    notes: list[str] = []
    shared = [c for c in frame.columns if c in reference.columns]
    added = [str(c) for c in frame.columns if c not in reference.columns]
    removed = [str(c) for c in reference.columns if c not in frame.columns]
    changed: list[str] = []
    numeric: list[str] = []
    categorical: list[str] = []
    date_strings: set[str] = set()  # dates read from text (CSV): tested as dates, not as categories
    for column in shared:
        kind, ref_kind = dtype_kind(frame[column]), dtype_kind(reference[column])
        if _is_numeric_kind(kind) and _is_numeric_kind(ref_kind) or kind == ref_kind == "datetime":
            numeric.append(column)
        elif kind == ref_kind == "str" and mostly_dates(frame[column].dropna()) and mostly_dates(reference[column].dropna()):
            numeric.append(column)
            date_strings.add(column)
        elif kind in ("str", "bool") and ref_kind in ("str", "bool"):
            categorical.append(column)
        elif kind != ref_kind:
            changed.append(f"{column} ({ref_kind} -> {kind})")
        else:
            notes.append(f"drift: column {column!r} of type {kind} is not tested")
    mismatches = len(added) + len(removed) + len(changed)
    detail = "; ".join(
        part for part in (
            f"new columns {added}" if added else "",
            f"columns gone {removed}" if removed else "",
            f"type changed: {', '.join(changed)}" if changed else "",
        ) if part
    )
    # A changed set of columns is said, not stopped on: which columns a table must have is
    # the expectations' to declare (the schema group).
    results = [
        CheckResult(
            "drift", "reference_columns", None, float(mismatches), 0.0, mismatches == 0, severity="warn",
            message=detail or "same columns and column types as the reference",
        )
    ]

    # (name, column, statistic, p, PSI, a date column, description)
    tests: list[tuple[str, str, float, float, float, bool, str]] = []
    for column in numeric:
        now, before = frame[column], reference[column]
        if column in date_strings:
            now, before = _parse_dates(now), _parse_dates(before)
        current, previous = _numeric_values(now), _numeric_values(before)
        if len(current) == 0 or len(previous) == 0:
            notes.append(f"drift: column {column!r} has no values in {'the data' if len(current) == 0 else 'the reference'}; not tested")
            continue
        outcome = stats.ks_2samp(current, previous)
        dates = pd.api.types.is_datetime64_any_dtype(now.dtype)
        median = (lambda v: str(pd.Timestamp(np.median(v)).date())) if dates else (lambda v: f"{np.median(v):.4g}")
        psi = population_stability_index(
            *binned_counts(current, previous, (len(now) - len(current), len(before) - len(previous)))
        )
        tests.append((
            "ks", str(column), float(outcome.statistic), float(outcome.pvalue), psi, dates,
            f"KS D={outcome.statistic:.4f}; median {median(current)} vs reference {median(previous)}",
        ))
    for column in categorical:
        current = _category_counts(frame[column], max_categories)
        previous = _category_counts(reference[column], max_categories) if current is not None else None
        union = current.index.union(previous.index) if current is not None and previous is not None else None
        if union is None or len(union) > max_categories:
            notes.append(f"drift: column {column!r} has more than drift.max_categories={max_categories} categories; not tested")
            continue
        table = np.vstack([current.reindex(union, fill_value=0).to_numpy(), previous.reindex(union, fill_value=0).to_numpy()])
        if len(union) < 2:
            statistic, p_value = 0.0, 1.0
        else:
            outcome = stats.chi2_contingency(table, correction=False)
            statistic, p_value = float(outcome.statistic), float(outcome.pvalue)
        shares = table / table.sum(axis=1, keepdims=True)
        moved = int(np.argmax(np.abs(shares[0] - shares[1])))
        new = [str(c) for c in union[(table[1] == 0) & (table[0] > 0)]]
        tests.append((
            "chi_square", str(column), statistic, p_value, population_stability_index(table[0], table[1]), False,
            f"chi2={statistic:.4g}; largest move: {union[moved]!r} {shares[1][moved]:.1%} -> {shares[0][moved]:.1%}"
            + (f"; new categories {new}" if new else ""),
        ))

    per_test = corrected_alpha(alpha, len(tests), correction)
    for name, column, statistic, p_value, psi, dates, description in tests:
        significant = p_value < per_test
        large = psi > max_psi and not dates
        if not significant:
            size = f"PSI={psi:.3f}"
        elif dates:
            size = f"PSI={psi:.3f}, a date column: new data is later data, so it only warns"
        else:
            size = f"PSI={psi:.3f} {'>' if large else '<='} {max_psi:g}: {'a large' if large else 'a small'} shift"
        results.append(
            CheckResult(
                "drift", name, column, statistic, per_test, not significant, severity="error" if large else "warn",
                p_value=p_value, effect_size=psi,
                message=f"{description}; p={p_value:.3g} {'<' if significant else '>='} {per_test:.4g}; {size}",
            )
        )
    family = {
        "method": correction,
        "alpha": alpha,
        "tests": len(tests),
        "per_test_alpha": per_test,
        "statement": (
            f"Drift: {len(tests)} test(s) ({sum(t[0] == 'ks' for t in tests)} Kolmogorov-Smirnov on numeric columns, "
            f"{sum(t[0] == 'chi_square' for t in tests)} chi-square on categorical columns) as one family; "
            f"{'Sidak' if correction == 'sidak' else 'Bonferroni'} correction: each test at "
            f"alpha={per_test:.4g} so that the family-wise false-alarm rate is {alpha}. A significant shift "
            f"stops the pipeline when its population stability index is above {max_psi:g}, else it warns."
        ),
        "max_psi": max_psi,
    }
    return results, family, notes


def _parse_dates(series: pd.Series) -> pd.Series:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # as the exported model's date transformer reads them (trainflow_inference)
        return pd.to_datetime(series, errors="coerce", format="mixed", utc=True).dt.tz_convert(None)


def _numeric_values(series: pd.Series) -> np.ndarray:
    values = series.dropna()
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        return values.to_numpy(dtype="datetime64[ns]").astype(np.int64).astype(float)
    return values.to_numpy(dtype=float)


# -- all of it --------------------------------------------------------------------------


def check_table(
    frame: pd.DataFrame,
    target: str,
    task: str,
    settings: Mapping[str, Any],
    reference: pd.DataFrame | None = None,
    reference_name: str | None = None,
) -> CheckReport:
    """Run every configured check on ``frame``; ``settings`` is the ``data_check`` section.

    Drift checks run when a ``reference`` table is given.
    """
    expectations = settings.get("expectations")
    results: list[CheckResult] = []
    notes: list[str] = []
    if expectations:
        results += schema_checks(frame, expectations, target if task == "classification" else None)
    else:
        notes.append("data_check.expectations is null: no schema checks, only the generic and drift checks")
    duplicates = settings.get("max_duplicate_fraction")
    results += generic_checks(
        frame, target, task, int(settings.get("min_class_count", 1)), None if duplicates is None else float(duplicates)
    )
    family: dict[str, Any] = {}
    if reference is not None:
        drift = settings.get("drift") or {}
        drift_results, family, drift_notes = drift_checks(
            frame, reference, float(drift.get("alpha", 0.05)), str(drift.get("correction", "sidak")),
            int(drift.get("max_categories", 50)), float(drift.get("max_psi", 0.25)),
        )
        results += drift_results
        notes += drift_notes
    fail_on = {**DEFAULT_FAIL_ON, **dict(settings.get("fail_on") or {})}
    return CheckReport(
        results=results,
        rows=len(frame),
        columns=[str(c) for c in frame.columns],
        fail_on=fail_on,
        reference=reference_name,
        drift=family,
        notes=notes,
        expectations=_plain(expectations) if expectations else None,
    )


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


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
        elif _is_numeric_kind(kind) and len(values):
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


# -- config validation ------------------------------------------------------------------


def validate_data_check_config(section: Mapping[str, Any]) -> None:
    """The checks the schema's types cannot express; raises :class:`ConfigError` naming the key."""
    from trainflow.store.local import validate_alias

    for group in GROUPS:
        value = (section.get("fail_on") or {}).get(group)
        if value not in SEVERITIES:
            raise ConfigError(f"data_check.fail_on.{group}={value!r} is not one of {', '.join(SEVERITIES)}")
    drift = section.get("drift") or {}
    if drift.get("correction") not in CORRECTIONS:
        raise ConfigError(f"data_check.drift.correction={drift.get('correction')!r} is not one of {', '.join(CORRECTIONS)}")
    if not 0.0 < float(drift.get("alpha", 0)) < 1.0:
        raise ConfigError(f"data_check.drift.alpha={drift.get('alpha')} must be strictly between 0 and 1, e.g. 0.05")
    if int(drift.get("max_categories", 0)) < 2:
        raise ConfigError(f"data_check.drift.max_categories={drift.get('max_categories')} must be at least 2")
    duplicates = section.get("max_duplicate_fraction")
    if duplicates is not None and not 0.0 <= float(duplicates) <= 1.0:
        raise ConfigError(
            f"data_check.max_duplicate_fraction={duplicates} must be a fraction in [0, 1], "
            "or null (duplicates only warn)"
        )
    max_psi = float(drift.get("max_psi", 0.25))
    if not math.isfinite(max_psi) or max_psi <= 0:
        raise ConfigError(f"data_check.drift.max_psi={drift.get('max_psi')} must be a positive number, e.g. 0.25")
    if int(section.get("min_class_count", -1)) < 0:
        raise ConfigError(f"data_check.min_class_count={section.get('min_class_count')} must be 0 or more")
    try:
        validate_alias(str(section.get("reference_alias")))
    except TrainflowError as error:
        raise ConfigError(f"data_check.reference_alias: {error}") from None
    expectations = section.get("expectations")
    if not expectations:
        return
    if expectations.get("extra_columns") not in SEVERITIES:
        raise ConfigError(
            f"data_check.expectations.extra_columns={expectations.get('extra_columns')!r} is not one of "
            f"{', '.join(SEVERITIES)}"
        )
    for name, spec in (expectations.get("columns") or {}).items():
        key = f"data_check.expectations.columns.{name}"
        if spec is None:
            continue
        if not isinstance(spec, Mapping):
            raise ConfigError(f"{key}={spec!r} must be a mapping of {', '.join(COLUMN_KEYS)}, e.g. {{dtype: float, min: 0}}")
        unknown = [k for k in spec if k not in COLUMN_KEYS]
        if unknown:
            raise ConfigError(f"{key}: unknown key(s) {', '.join(map(str, unknown))}; a column takes {', '.join(COLUMN_KEYS)}")
        if spec.get("dtype") is not None and spec["dtype"] not in DTYPES:
            raise ConfigError(f"{key}.dtype={spec['dtype']!r} is not one of {', '.join(DTYPES)}")
        if not isinstance(spec.get("nullable", True), bool):
            raise ConfigError(f"{key}.nullable={spec['nullable']!r} must be true or false")
        if spec.get("allowed") is not None and not isinstance(spec["allowed"], (list, tuple)):
            raise ConfigError(f"{key}.allowed={spec['allowed']!r} must be a list of values")
        for bound in ("min", "max"):
            value = spec.get(bound)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise ConfigError(f"{key}.{bound}={value!r} must be a number")
        if spec.get("min") is not None and spec.get("max") is not None and spec["min"] > spec["max"]:
            raise ConfigError(f"{key}: min={spec['min']} is above max={spec['max']}")
    row_count = expectations.get("row_count") or {}
    low, high = row_count.get("min"), row_count.get("max")
    if (low is not None and low < 0) or (low is not None and high is not None and low > high):
        raise ConfigError(f"data_check.expectations.row_count: min={low}, max={high} must satisfy 0 <= min <= max")
