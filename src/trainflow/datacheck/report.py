"""The data check report: each check's :class:`CheckResult`, and the :class:`CheckReport` whose
verdict decides which failed checks stop the pipeline; what check_data records and raises."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from trainflow.errors import DataError

GROUPS = ("schema", "generic", "drift")
SEVERITIES = ("error", "warn")
DEFAULT_FAIL_ON = {"schema": "error", "generic": "error", "drift": "error"}


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
    """Every check that ran on one table, with what decides which of them stop the step.

    A failed check fails the step when its own severity is ``error`` and ``fail_on`` says
    ``error`` for its group; otherwise it warns. Checks whose severity is ``warn``:
    ``extra_columns`` when declared so, ``duplicate_rows`` without a bound,
    ``reference_columns`` (which columns a table must have is the expectations' to say), a
    small (or a date column's) drift.
    """

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
                format_number(r.statistic) + ("" if r.p_value is None else f" (p={format_number(r.p_value)})"),
                format_number(r.threshold),
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
    if (
        any(r.name == "min_class_count" for r in failed)
        and target in frame
        and pd.api.types.is_numeric_dtype(frame[target])
    ):
        distinct = frame[target].nunique()
        if distinct > _QUANTITY_LIKE_VALUES:
            hints.append(
                f"the target {target!r} is numeric with {distinct} distinct values: if it is a quantity, "
                "predict it with model.task=regression"
            )
    return hints


def format_number(value: float | None) -> str:
    """A statistic as the report prints it: whole numbers without a decimal point, else 4 significant digits."""
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
