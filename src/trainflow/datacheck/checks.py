"""check_data's checks: :func:`check_table` runs the schema, generic and drift checks on a frame into one report
(vectorised: a million rows take seconds, ``bench/datacheck.py``); :func:`validate_data_check_config` checks
the config section. pandera and scipy load when first needed, so importing this for config validation is cheap."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

from trainflow.datacheck.drift import CORRECTIONS, drift_checks
from trainflow.datacheck.expectations import COLUMN_KEYS, schema_checks
from trainflow.datacheck.generic import generic_checks
from trainflow.datacheck.kinds import DTYPES
from trainflow.datacheck.report import DEFAULT_FAIL_ON, GROUPS, SEVERITIES, CheckReport, CheckResult
from trainflow.errors import ConfigError, TrainflowError
from trainflow.store.refs import validate_alias


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
            frame,
            reference,
            float(drift.get("alpha", 0.05)),
            str(drift.get("correction", "sidak")),
            int(drift.get("max_categories", 50)),
            float(drift.get("max_psi", 0.25)),
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


# -- config validation ------------------------------------------------------------------


def validate_data_check_config(section: Mapping[str, Any]) -> None:
    """The checks the schema's types cannot express; raises :class:`ConfigError` naming the key."""
    for group in GROUPS:
        value = (section.get("fail_on") or {}).get(group)
        if value not in SEVERITIES:
            raise ConfigError(f"data_check.fail_on.{group}={value!r} is not one of {', '.join(SEVERITIES)}")
    drift = section.get("drift") or {}
    if drift.get("correction") not in CORRECTIONS:
        raise ConfigError(
            f"data_check.drift.correction={drift.get('correction')!r} is not one of {', '.join(CORRECTIONS)}"
        )
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
            raise ConfigError(
                f"{key}={spec!r} must be a mapping of {', '.join(COLUMN_KEYS)}, e.g. {{dtype: float, min: 0}}"
            )
        unknown = [k for k in spec if k not in COLUMN_KEYS]
        if unknown:
            raise ConfigError(
                f"{key}: unknown key(s) {', '.join(map(str, unknown))}; a column takes {', '.join(COLUMN_KEYS)}"
            )
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
