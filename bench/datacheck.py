"""How long check_data's checks take on a large table (the step's own work, without
reading the file or logging): schema (pandera), generic and drift checks on synthetic
tables of every feature kind, clean and broken.

    python bench/datacheck.py [--rows 1000000]

Prints the rows, the number of checks and the seconds of each phase.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from report import PROJECT_DIR  # noqa: F401 - importing report puts tests/ (support.synthetic) on sys.path
from support.synthetic import TARGET, make_table

from trainflow.datacheck.checks import check_table
from trainflow.datacheck.drift import drift_checks
from trainflow.datacheck.expectations import infer_expectations, schema_checks
from trainflow.datacheck.generic import generic_checks

SETTINGS = {
    "min_class_count": 10,
    "max_duplicate_fraction": 0.01,
    "drift": {"alpha": 0.05, "correction": "sidak", "max_categories": 50},
    "fail_on": {"schema": "error", "generic": "error", "drift": "warn"},
}


def timed(label: str, function, *args):  # type: ignore[no-untyped-def]
    began = time.perf_counter()
    result = function(*args)
    print(f"  {label:<34} {time.perf_counter() - began:6.2f} s", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()

    began = time.perf_counter()
    reference = make_table(args.rows, seed=1)
    current = make_table(args.rows, seed=2)
    print(f"made two tables of {args.rows:,} rows x {current.shape[1]} columns in {time.perf_counter() - began:.1f} s")
    expectations = infer_expectations(reference, target=TARGET)
    settings = {**SETTINGS, "expectations": expectations}

    print("clean table against the reference:")
    timed("schema checks (pandera)", schema_checks, current, expectations, TARGET)
    timed("generic checks", generic_checks, current, TARGET, "classification", 10, 0.01)
    timed("drift checks (KS, chi-square)", drift_checks, current, reference, 0.05, "sidak", 50)
    report = timed(
        "check_table, everything", check_table, current, TARGET, "classification", settings, reference, "ref"
    )
    print(f"  {len(report.results)} checks, {len(report.failed())} failed, {len(report.warnings())} warnings")

    broken = current.copy()
    rng = np.random.default_rng(3)
    wrong = rng.random(len(broken)) < 0.1
    broken.loc[wrong, "color"] = "ultraviolet"  # 10% unknown categories
    broken.loc[wrong, "signal_1"] = 1e6  # and out of range
    broken = broken.drop(columns=["region"])
    print("broken table (a missing column, 10% unknown categories and out-of-range values):")
    report = timed("check_table, everything", check_table, broken, TARGET, "classification", settings, reference, "ref")
    print(f"  {len(report.results)} checks, {len(report.failed())} failed: {report.summary()}")


if __name__ == "__main__":
    main()
