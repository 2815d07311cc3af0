"""Drift against a reference version of the data: ``reference_columns``, then ``ks`` per numeric column
and ``chi_square`` per categorical one as one test family at ``drift.alpha``. On a large table every tiny
shift is significant, so a significant one stops the step only when its PSI is above ``drift.max_psi``."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd

from trainflow.datacheck.kinds import dtype_kind, is_numeric_kind
from trainflow.datacheck.report import CheckResult
from trainflow.ml.data import mostly_dates

# scipy.stats is imported inside drift_checks: about 0.45 s that validating a config (trainflow.config.schema
# imports trainflow.datacheck.checks in validate), so every pipeline run and step, does not pay
# (docs/architecture.md#start-up).

CORRECTIONS = ("sidak", "bonferroni")
MISSING_CATEGORY = "<missing>"


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
        if is_numeric_kind(kind) and is_numeric_kind(ref_kind) or kind == ref_kind == "datetime":
            numeric.append(column)
        elif (
            kind == ref_kind == "str"
            and mostly_dates(frame[column].dropna())
            and mostly_dates(reference[column].dropna())
        ):
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
        part
        for part in (
            f"new columns {added}" if added else "",
            f"columns gone {removed}" if removed else "",
            f"type changed: {', '.join(changed)}" if changed else "",
        )
        if part
    )
    # A changed set of columns is said, not stopped on: which columns a table must have is
    # the expectations' to declare (the schema group).
    results = [
        CheckResult(
            "drift",
            "reference_columns",
            None,
            float(mismatches),
            0.0,
            mismatches == 0,
            severity="warn",
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
            notes.append(
                f"drift: column {column!r} has no values in {'the data' if len(current) == 0 else 'the reference'}; not tested"
            )
            continue
        outcome = stats.ks_2samp(current, previous)
        dates = pd.api.types.is_datetime64_any_dtype(now.dtype)
        median = (lambda v: str(pd.Timestamp(np.median(v)).date())) if dates else (lambda v: f"{np.median(v):.4g}")
        psi = population_stability_index(
            *binned_counts(current, previous, (len(now) - len(current), len(before) - len(previous)))
        )
        tests.append(
            (
                "ks",
                str(column),
                float(outcome.statistic),
                float(outcome.pvalue),
                psi,
                dates,
                f"KS D={outcome.statistic:.4f}; median {median(current)} vs reference {median(previous)}",
            )
        )
    for column in categorical:
        counts = _category_counts(frame[column], max_categories)
        counted_before = _category_counts(reference[column], max_categories) if counts is not None else None
        union = counts.index.union(counted_before.index) if counts is not None and counted_before is not None else None
        if counts is None or counted_before is None or union is None or len(union) > max_categories:
            notes.append(
                f"drift: column {column!r} has more than drift.max_categories={max_categories} categories; not tested"
            )
            continue
        table = np.vstack(
            [counts.reindex(union, fill_value=0).to_numpy(), counted_before.reindex(union, fill_value=0).to_numpy()]
        )
        if len(union) < 2:
            statistic, p_value = 0.0, 1.0
        else:
            outcome = stats.chi2_contingency(table, correction=False)
            statistic, p_value = float(outcome.statistic), float(outcome.pvalue)
        shares = table / table.sum(axis=1, keepdims=True)
        moved = int(np.argmax(np.abs(shares[0] - shares[1])))
        new = [str(c) for c in union[(table[1] == 0) & (table[0] > 0)]]
        tests.append(
            (
                "chi_square",
                str(column),
                statistic,
                p_value,
                population_stability_index(table[0], table[1]),
                False,
                f"chi2={statistic:.4g}; largest move: {union[moved]!r} {shares[1][moved]:.1%} -> {shares[0][moved]:.1%}"
                + (f"; new categories {new}" if new else ""),
            )
        )

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
                "drift",
                name,
                column,
                statistic,
                per_test,
                not significant,
                severity="error" if large else "warn",
                p_value=p_value,
                effect_size=psi,
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
