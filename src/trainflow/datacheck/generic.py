"""Generic checks, always on whatever the expectations: ``non_empty``, ``target_present``,
``two_classes``, ``min_class_count``, ``all_null_columns``, ``duplicate_rows``."""

from __future__ import annotations

import pandas as pd

from trainflow.datacheck.report import CheckResult


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
        CheckResult(
            "generic",
            "non_empty",
            None,
            float(rows),
            1.0,
            rows > 0,
            message=f"{rows:,} rows" if rows else "the table has no rows",
        )
    ]
    labelled = int(frame[target].notna().sum()) if target in frame.columns else 0
    results.append(
        CheckResult(
            "generic",
            "target_present",
            target,
            float(labelled),
            1.0,
            labelled > 0,
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
                "generic",
                "two_classes",
                target,
                float(len(counts)),
                2.0,
                len(counts) >= 2,
                message=(
                    f"{len(counts)} classes"
                    if len(counts) >= 2
                    else f"target {target!r} holds one class only ({counts.index[0]!r}): nothing to learn to tell "
                    "apart; check data.target, or use model.task=regression for a numeric target"
                ),
            )
        )
        rare = counts[counts < min_class_count]
        results.append(
            CheckResult(
                "generic",
                "min_class_count",
                target,
                float(counts.min()),
                float(min_class_count),
                rare.empty,
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
            "generic",
            "all_null_columns",
            None,
            float(len(empty)),
            0.0,
            not empty,
            message=f"column(s) with no value at all: {empty}" if empty else "every column has values",
        )
    )
    duplicated = int(frame.duplicated().sum()) if rows else 0
    fraction = duplicated / rows if rows else 0.0
    counted = f"{duplicated:,} duplicated row(s), {fraction:.2%} of the table"
    if max_duplicate_fraction is None:
        results.append(
            CheckResult(
                "generic",
                "duplicate_rows",
                None,
                fraction,
                None,
                duplicated == 0,
                severity="warn",
                message=f"{counted} (no bound: set data_check.max_duplicate_fraction to stop on them)",
            )
        )
    else:
        results.append(
            CheckResult(
                "generic",
                "duplicate_rows",
                None,
                fraction,
                float(max_duplicate_fraction),
                fraction <= max_duplicate_fraction,
                message=f"{counted} (at most {max_duplicate_fraction:.2%})",
            )
        )
    return results
