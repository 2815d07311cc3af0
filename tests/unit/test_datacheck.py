"""The data checks as plain functions: frames in, a report out. Fast, no runs.

The expectations are the project's own (config.yaml's data_check section, which
describes the embedded penguins table), so these tests also hold the default config to
the data it ships with.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from omegaconf import OmegaConf
from support.project import PROJECT_DIR, project_store, run_command
from support.synthetic import NUMERIC, TARGET, make_table

from trainflow.config.schema import DataCheckConfig, load_config, resolve_paths, validate
from trainflow.datacheck.checks import check_table, validate_data_check_config
from trainflow.datacheck.drift import corrected_alpha, population_stability_index
from trainflow.datacheck.expectations import infer_expectations
from trainflow.datacheck.kinds import dtype_kind
from trainflow.datacheck.report import (
    CheckReport,
    DataCheckFailed,
    failure_hints,
    metric_key,
    refuse_failed_data,
    verdict_metadata,
)
from trainflow.errors import ConfigError
from trainflow.store.local import LocalArtifactStore

PENGUINS = PROJECT_DIR / "data" / "penguins.csv"
PENGUINS_RAW = PROJECT_DIR / "data" / "penguins-raw.csv"


@pytest.fixture(scope="module")
def settings() -> dict[str, Any]:
    """config.yaml's data_check section, as the step receives it."""
    return OmegaConf.to_container(load_config(PROJECT_DIR).data_check, resolve=True)


@pytest.fixture
def penguins() -> pd.DataFrame:
    return pd.read_csv(PENGUINS)


def with_(settings: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A deep copy of ``settings`` with dotted keys changed: with_(s, **{"fail_on.drift": "error"})."""
    copy = json.loads(json.dumps(settings))
    for dotted, value in changes.items():
        node = copy
        *parents, last = dotted.split(".")
        for key in parents:
            node = node[key]
        node[last] = value
    return copy


def check(
    frame: pd.DataFrame,
    settings: dict[str, Any],
    reference: pd.DataFrame | None = None,
    target: str = "species",
    task: str = "classification",
) -> CheckReport:
    return check_table(frame, target, task, settings, reference, "raw_data:v0" if reference is not None else None)


def failed_keys(report: CheckReport) -> set[str]:
    return {r.key for r in report.failed()}


# -- clean data -------------------------------------------------------------------------


def test_the_default_expectations_describe_the_embedded_penguins(
    penguins: pd.DataFrame, settings: dict[str, Any]
) -> None:
    report = check(penguins, settings, reference=penguins)
    assert report.failed() == [] and report.warnings() == [], report.table(report.failed() + report.warnings())
    names = {r.name for r in report.results}
    assert {
        "columns_present",
        "dtype",
        "not_null",
        "allowed_values",
        "value_range",
        "row_count",
        "expected_classes",
        "extra_columns",
        "non_empty",
        "target_present",
        "two_classes",
        "min_class_count",
        "all_null_columns",
        "duplicate_rows",
        "reference_columns",
        "ks",
        "chi_square",
    } <= names
    # every declared column is checked, and every numeric column gets a KS test, every categorical a chi-square
    assert {r.column for r in report.by_name("columns_present")} == set(penguins.columns)
    assert {r.column for r in report.by_name("ks")} == {
        "bill_length_mm",
        "bill_depth_mm",
        "flipper_length_mm",
        "body_mass_g",
        "year",
    }
    assert {r.column for r in report.by_name("chi_square")} == {"species", "island", "sex"}
    assert report.passed


def test_a_large_clean_synthetic_table_passes_against_another_sample(settings: dict[str, Any]) -> None:
    """200,000 rows of every feature kind, against an independent sample of the same distributions."""
    reference = make_table(200_000, seed=11)
    current = make_table(200_000, seed=12)
    synthetic = with_(settings, expectations=infer_expectations(reference, target=TARGET))
    report = check(current, synthetic, reference=reference, target=TARGET)
    assert report.failed() == [], report.table(report.failed())
    assert report.warnings() == [], report.table(report.warnings())
    assert report.rows == 200_000
    assert {r.column for r in report.by_name("allowed_values")} == {"color", "region", TARGET}
    # free text has too many categories for a chi-square test: said, not silently skipped
    assert any("'notes'" in note and "max_categories" in note for note in report.notes)
    # row_id, the four numeric features, and the ISO dates (strings in the table) as dates
    assert {r.column for r in report.by_name("ks")} == {"row_id", *NUMERIC, "event_date"}


# -- each defect fails with its named check ---------------------------------------------


def _missing_column(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns=["sex"])


def _wrong_dtype(frame: pd.DataFrame) -> pd.DataFrame:
    frame["body_mass_g"] = frame["body_mass_g"].map(lambda grams: f"{grams} g")
    return frame


def _unknown_category(frame: pd.DataFrame) -> pd.DataFrame:
    frame.loc[[5, 70], "island"] = "Atlantis"
    return frame


def _out_of_range(frame: pd.DataFrame) -> pd.DataFrame:
    frame.loc[10, "flipper_length_mm"] = 1950.0  # a slipped decimal point
    return frame


def _too_few_rows(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sample(n=200, random_state=0).reset_index(drop=True)


def _missing_class(frame: pd.DataFrame) -> pd.DataFrame:
    frame.loc[frame["species"] == "Chinstrap", "species"] = "Adelie"
    return frame


def _too_many_duplicates(frame: pd.DataFrame) -> pd.DataFrame:
    return pd.concat([frame, frame.iloc[:20]], ignore_index=True)


def _null_in_required_column(frame: pd.DataFrame) -> pd.DataFrame:
    frame.loc[3, "island"] = None
    return frame


@pytest.mark.parametrize(
    ("defect", "expected"),
    [
        (_missing_column, {"schema.columns_present.sex"}),
        (_wrong_dtype, {"schema.dtype.body_mass_g"}),
        (_unknown_category, {"schema.allowed_values.island"}),
        (_out_of_range, {"schema.value_range.flipper_length_mm"}),
        (_too_few_rows, {"schema.row_count"}),
        (_missing_class, {"schema.expected_classes.species"}),
        (_too_many_duplicates, {"generic.duplicate_rows"}),
        (_null_in_required_column, {"schema.not_null.island"}),
    ],
    ids=lambda value: value.__name__.strip("_") if callable(value) else "",
)
def test_each_defect_fails_with_its_named_check(
    penguins: pd.DataFrame, settings: dict[str, Any], defect: Any, expected: set[str]
) -> None:
    report = check(defect(penguins), settings)
    assert failed_keys(report) == expected, report.table(report.failed())
    assert not report.passed


def test_defects_name_the_offending_values(penguins: pd.DataFrame, settings: dict[str, Any]) -> None:
    report = check(_out_of_range(_unknown_category(_wrong_dtype(penguins))), settings)
    [unknown] = [r for r in report.failed() if r.name == "allowed_values"]
    assert unknown.statistic == 2 and "'Atlantis' (2 rows)" in unknown.message
    [outside] = [r for r in report.failed() if r.name == "value_range"]
    assert outside.statistic == 1 and "1950" in outside.message and "[150, 250]" in outside.message
    [dtype] = [r for r in report.failed() if r.name == "dtype"]
    assert "expected float, found str" in dtype.message


def test_a_shifted_distribution_fails_its_ks_check_when_drift_is_an_error(
    penguins: pd.DataFrame, settings: dict[str, Any]
) -> None:
    shifted = penguins.copy()
    shifted["bill_length_mm"] = shifted["bill_length_mm"] + 3.0  # still within the declared range
    report = check(shifted, with_(settings, **{"fail_on.drift": "error"}), reference=penguins)
    assert failed_keys(report) == {"drift.ks.bill_length_mm"}, report.table(report.failed())
    [ks] = report.failed()
    assert ks.p_value is not None and ks.p_value < ks.threshold and ks.statistic > 0.1
    # the other columns are unchanged: their tests pass
    assert all(r.passed for r in report.results if r.group == "drift" and r.column != "bill_length_mm")


def test_dates_read_as_text_are_tested_for_drift_as_dates(penguins: pd.DataFrame, settings: dict[str, Any]) -> None:
    """A CSV's date column arrives as strings with hundreds of distinct values, too many for
    chi-square: it is parsed and KS-tested like a date column, so dates four years later
    drift. New data is later data, so a date column's shift warns and never stops the step."""
    days = pd.Series(pd.date_range("2020-01-01", periods=len(penguins), freq="D"))
    dated = penguins.assign(signup=days.dt.strftime("%Y-%m-%d"))
    later = penguins.assign(signup=(days + pd.DateOffset(years=4)).dt.strftime("%Y-%m-%d"))
    strict = with_(settings, **{"fail_on.drift": "error"})
    report = check(later, strict, reference=dated)
    assert failed_keys(report) == set(), report.table(report.failed())
    [ks] = [r for r in report.warnings() if r.key == "drift.ks.signup"]
    assert "median 2024-06-20 vs reference 2020-06-20" in ks.message, ks.message
    assert ks.effect_size > 0.25 and "a date column" in ks.message
    unchanged = check(dated, strict, reference=dated)
    assert not unchanged.failed() and "drift.ks.signup" in {r.key for r in unchanged.results}


def generic_settings(**changes: Any) -> dict[str, Any]:
    """config.yaml's data_check section for a table given by data.uri/data.target alone."""
    cfg = load_config(PROJECT_DIR, ["data.uri=elsewhere.csv", "data.target=y"])
    return with_(OmegaConf.to_container(cfg.data_check, resolve=True), **changes)


def test_on_a_large_table_a_tiny_shift_warns_and_a_large_one_stops() -> None:
    """Drift is judged by its size as well as its significance: at 200,000 rows a shift of
    0.05 standard deviations is significant but small (it warns); moving the whole column
    is large (it stops the step, by default)."""
    rng = np.random.default_rng(0)
    rows = 200_000

    def table(shift: float, share_b: float) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "x": rng.normal(shift, 1.0, rows),
                "kind": np.where(rng.random(rows) < share_b, "b", "a"),
                "y": rng.integers(0, 2, rows),
            }
        )

    reference = table(0.0, 0.5)
    tiny = check(table(0.05, 0.51), generic_settings(), reference=reference, target="y")
    warned = {r.key: r for r in tiny.warnings()}
    assert {"drift.ks.x", "drift.chi_square.kind"} <= set(warned), tiny.table(tiny.results)
    assert all(not r.passed and r.effect_size < 0.01 for r in warned.values() if r.group == "drift")
    assert "a small shift" in warned["drift.ks.x"].message
    assert not [r for r in tiny.failed() if r.group == "drift"], tiny.table(tiny.failed())

    large = check(table(3.0, 0.9), generic_settings(), reference=reference, target="y")
    assert {"drift.ks.x", "drift.chi_square.kind"} <= failed_keys(large), large.table(large.results)
    [ks] = [r for r in large.failed() if r.key == "drift.ks.x"]
    assert ks.effect_size > 0.25 and "a large shift" in ks.message
    # the same shifts, with large ones allowed to warn only: nothing stops
    lenient = check(table(3.0, 0.9), generic_settings(**{"drift.max_psi": 100.0}), reference=reference, target="y")
    assert not [r for r in lenient.failed() if r.group == "drift"]


def test_the_population_stability_index() -> None:
    assert population_stability_index(np.array([50, 50]), np.array([50, 50])) == 0.0
    # 0.5/0.5 against 0.9/0.1: (0.4 ln 4.5... ) by hand
    expected = (0.5 - 0.9) * np.log(0.5 / 0.9) + (0.5 - 0.1) * np.log(0.5 / 0.1)
    assert population_stability_index(np.array([5, 5]), np.array([90, 10])) == pytest.approx(expected)
    # an empty bin on one side stays finite
    assert np.isfinite(population_stability_index(np.array([10, 0]), np.array([0, 10])))


def test_duplicated_rows_warn_unless_the_data_set_sets_a_bound(
    penguins: pd.DataFrame, settings: dict[str, Any]
) -> None:
    """Survey-coded tables repeat rows legitimately: without a bound (config.yaml's generic
    default) 10% duplicates only warn; the penguins data set bounds them at 1% (an error)."""
    repeated = pd.concat([penguins, penguins.iloc[:35]], ignore_index=True)
    generic = check(repeated, generic_settings(expectations=None))
    [duplicates] = [r for r in generic.results if r.name == "duplicate_rows"]
    assert generic.verdict(duplicates) == "warn" and "35 duplicated row(s)" in duplicates.message
    assert "duplicate_rows" not in {r.name for r in generic.failed()}
    bounded = check(repeated, settings)
    assert "generic.duplicate_rows" in failed_keys(bounded)


def test_a_shifted_category_mix_fails_its_chi_square_check(penguins: pd.DataFrame, settings: dict[str, Any]) -> None:
    biscoe_only = penguins.copy()
    biscoe_only.loc[biscoe_only.index[:150], "island"] = "Biscoe"
    report = check(biscoe_only, with_(settings, **{"fail_on.drift": "error"}), reference=penguins)
    assert "drift.chi_square.island" in failed_keys(report)
    [chi] = [r for r in report.failed() if r.key == "drift.chi_square.island"]
    assert "'Biscoe'" in chi.message


def test_a_doubly_broken_table_reports_every_defect_together(penguins: pd.DataFrame, settings: dict[str, Any]) -> None:
    broken = _too_many_duplicates(_out_of_range(_unknown_category(_missing_column(penguins))))
    broken["bill_depth_mm"] = broken["bill_depth_mm"] + 2.5
    report = check(broken, with_(settings, **{"fail_on.drift": "error"}), reference=penguins)
    expected = {
        "schema.columns_present.sex",
        "schema.allowed_values.island",
        "schema.value_range.flipper_length_mm",
        "generic.duplicate_rows",
        "drift.ks.bill_depth_mm",
    }
    assert expected <= failed_keys(report), report.table(report.failed())
    # the missing column is the schema's failure; against the reference it is said, not stopped on
    assert "drift.reference_columns" in {r.key for r in report.warnings()}
    table = report.table(report.failed())
    for key in expected:
        group, name, *column = key.split(".")
        assert re.search(rf"\| fail +\| {group} +\| {name} +\| {''.join(column)}", table), key
    assert report.summary().startswith(f"{len(report.failed())} of {len(report.results)} data checks failed")


# -- configuration: expectations off, fail_on, severity ---------------------------------


def test_without_expectations_the_generic_and_drift_checks_still_run(settings: dict[str, Any]) -> None:
    raw = pd.read_csv(PENGUINS_RAW)
    loose = with_(settings, expectations=None)
    report = check(raw, loose, reference=raw, target="Clutch Completion")
    assert report.passed, report.table(report.failed())
    assert {r.group for r in report.results} == {"generic", "drift"}
    assert any("expectations is null" in note for note in report.notes)
    # the generic checks still stop bad data
    raw["Comments"] = None
    report = check(raw, loose, target="Clutch Completion")
    assert failed_keys(report) == {"generic.all_null_columns"}
    report = check(raw.drop(columns=["Comments"]), loose, target="Clutch")
    assert failed_keys(report) == {"generic.target_present.Clutch"}
    assert "target column 'Clutch' is missing" in report.failed()[0].message


def test_a_target_with_one_class_fails_two_classes(penguins: pd.DataFrame, settings: dict[str, Any]) -> None:
    adelie = penguins[penguins["species"] == "Adelie"]
    report = check(adelie, with_(settings, expectations=None))
    assert "generic.two_classes.species" in failed_keys(report)
    failure = next(r for r in report.failed() if r.name == "two_classes")
    assert "one class only ('Adelie')" in failure.message and "model.task=regression" in failure.message
    assert next(r for r in check(penguins, settings).results if r.name == "two_classes").passed


def test_too_small_a_class_fails_min_class_count(penguins: pd.DataFrame, settings: dict[str, Any]) -> None:
    report = check(penguins, with_(settings, min_class_count=100))
    assert failed_keys(report) == {"generic.min_class_count.species"}
    assert "'Chinstrap' (68)" in report.failed()[0].message


def test_fail_on_warn_turns_a_groups_failures_into_warnings(penguins: pd.DataFrame, settings: dict[str, Any]) -> None:
    broken = _too_many_duplicates(_unknown_category(penguins))
    strict = check(broken, settings)
    assert failed_keys(strict) == {"schema.allowed_values.island", "generic.duplicate_rows"}
    lenient = check(broken, with_(settings, **{"fail_on.schema": "warn"}))
    assert failed_keys(lenient) == {"generic.duplicate_rows"}
    assert {r.key for r in lenient.warnings()} == {"schema.allowed_values.island"}
    assert lenient.verdict(lenient.warnings()[0]) == "warn"
    # the same report judged under other rules
    assert {r.key for r in strict.failed({"schema": "warn", "generic": "warn", "drift": "warn"})} == set()


def test_extra_columns_warn_or_error_as_declared(penguins: pd.DataFrame, settings: dict[str, Any]) -> None:
    penguins["tag_colour"] = "red"
    warned = check(penguins, settings)
    assert warned.passed and {r.key for r in warned.warnings()} == {"schema.extra_columns"}
    assert "tag_colour" in warned.warnings()[0].message
    stopped = check(penguins, with_(settings, **{"expectations.extra_columns": "error"}))
    assert failed_keys(stopped) == {"schema.extra_columns"}


def test_regression_targets_skip_the_class_checks(penguins: pd.DataFrame, settings: dict[str, Any]) -> None:
    report = check(penguins, settings, target="body_mass_g", task="regression")
    assert report.passed
    assert not report.by_name("expected_classes") and not report.by_name("min_class_count")


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"fail_on.drift": "ignore"}, "data_check.fail_on.drift"),
        ({"drift.correction": "holm"}, "data_check.drift.correction"),
        ({"drift.alpha": 1.5}, "data_check.drift.alpha"),
        ({"max_duplicate_fraction": 2.0}, "data_check.max_duplicate_fraction"),
        ({"reference_alias": "v1"}, "data_check.reference_alias"),
        ({"expectations.extra_columns": "ignore"}, "data_check.expectations.extra_columns"),
        ({"expectations.columns.year.dtype": "integer"}, "data_check.expectations.columns.year.dtype"),
        ({"expectations.columns.year.min": 2010}, "data_check.expectations.columns.year"),
        ({"expectations.columns.year.minimum": 2010}, "unknown key(s) minimum"),
        ({"expectations.row_count.min": 10**6}, "data_check.expectations.row_count"),
    ],
)
def test_invalid_data_check_config_names_the_key(settings: dict[str, Any], changes: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigError) as error:
        validate_data_check_config(with_(settings, **changes))
    assert named in str(error.value)


def test_overrides_reach_the_data_check_section() -> None:
    """Expectations off, a column added or changed from the command line, all validated."""
    off = resolve_paths(load_config(PROJECT_DIR, ["data_check.expectations=null"]), PROJECT_DIR)
    validate(off)
    assert off.data_check.expectations is None
    added = load_config(
        PROJECT_DIR,
        [
            "+data_check.expectations.columns.tag={dtype:str,allowed:[a,b]}",
            "data_check.expectations.columns.island.allowed=[Biscoe]",
        ],
    )
    assert added.data_check.expectations.columns.tag == {"dtype": "str", "allowed": ["a", "b"]}
    assert list(added.data_check.expectations.columns.island.allowed) == ["Biscoe"]
    with pytest.raises(ConfigError, match="data_check.fail_on.schema"):
        validate(resolve_paths(load_config(PROJECT_DIR, ["data_check.fail_on.schema=maybe"]), PROJECT_DIR))


# -- drift statistics -------------------------------------------------------------------


def test_the_family_wise_correction_is_applied_and_stated(penguins: pd.DataFrame, settings: dict[str, Any]) -> None:
    assert corrected_alpha(0.05, 8, "sidak") == pytest.approx(1 - 0.95 ** (1 / 8))
    assert corrected_alpha(0.05, 8, "bonferroni") == pytest.approx(0.05 / 8)
    assert corrected_alpha(0.05, 1, "sidak") == 0.05
    for method, name in (("sidak", "Sidak"), ("bonferroni", "Bonferroni")):
        report = check(penguins, with_(settings, **{"drift.correction": method}), reference=penguins)
        tests = [r for r in report.results if r.name in ("ks", "chi_square")]
        assert report.drift["tests"] == len(tests) == 8
        assert all(r.threshold == pytest.approx(corrected_alpha(0.05, 8, method)) for r in tests)
        assert f"{name} correction" in report.to_markdown() and "family-wise" in report.drift["statement"]


def test_dtype_kinds_are_logical() -> None:
    assert dtype_kind(pd.Series([1, 2])) == "int"
    assert dtype_kind(pd.Series([1.5, None])) == "float"
    assert dtype_kind(pd.Series(["a", None])) == "str"
    assert dtype_kind(pd.Series(["a", None], dtype=object)) == "str"
    assert dtype_kind(pd.Series([True, False])) == "bool"
    assert dtype_kind(pd.Series(pd.to_datetime(["2024-01-01"]))) == "datetime"
    assert dtype_kind(pd.Series(["a", "b"], dtype="category")) == "str"
    assert dtype_kind(pd.Series([{"a": 1}])) == "other"


# -- the report -------------------------------------------------------------------------


def test_the_report_serialises_every_check_with_its_verdict(penguins: pd.DataFrame, settings: dict[str, Any]) -> None:
    broken = _unknown_category(penguins)
    broken["bill_length_mm"] = broken["bill_length_mm"] + 1.5  # drift: significant, but small (PSI about 0.2)
    broken["ring_id"] = range(len(broken))  # a column the expectations do not declare: warns
    report = check(broken, settings, reference=pd.read_csv(PENGUINS))
    data = json.loads(report.to_json())
    assert data["passed"] is False and data["reference"] == "raw_data:v0"
    assert len(data["checks"]) == len(report.results)
    assert {c["verdict"] for c in data["checks"]} == {"pass", "fail", "warn"}
    assert data["summary"]["failed"] == 1 and data["expectations"]["classes"] == ["Adelie", "Chinstrap", "Gentoo"]
    markdown = report.to_markdown()
    assert "**FAILED**" in markdown and "## Failed checks" in markdown and "## All checks" in markdown
    metrics = report.metrics()
    assert metrics["schema.allowed_values.island.passed"] == 0.0
    assert metrics["schema.allowed_values.island.statistic"] == 2.0
    assert metrics["drift.ks.bill_length_mm.p_value"] < metrics["drift.ks.bill_length_mm.threshold"]
    assert metrics["drift.ks.bill_depth_mm.p_value"] == 1.0 and metrics["drift.ks.bill_depth_mm.passed"] == 1.0
    assert metrics["checks_failed"] == 1.0


def test_metric_keys_are_safe_for_mlflow(settings: dict[str, Any]) -> None:
    raw = pd.read_csv(PENGUINS_RAW)
    report = check(
        raw, with_(settings, expectations=infer_expectations(raw)), reference=raw, target="Clutch Completion"
    )
    keys = list(report.metrics())
    assert "schema.value_range.Delta 15 N _o_oo_.statistic" in keys
    assert all(re.fullmatch(r"[\w.\- ]+", key) for key in keys)
    assert metric_key("a/b(c)") == "a_b_c_"


# -- inferring expectations -------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "target"),
    [(PENGUINS, "species"), (PENGUINS_RAW, "Clutch Completion"), (None, TARGET)],
    ids=["penguins", "penguins-raw", "synthetic"],
)
def test_inferred_expectations_accept_the_data_they_came_from(
    source: Path | None, target: str, settings: dict[str, Any]
) -> None:
    frame = pd.read_csv(source) if source else make_table(5_000, seed=3)
    inferred = infer_expectations(frame, target=target)
    # through YAML and the config schema, as a user pasting it into config.yaml would
    text = yaml.safe_dump({"data_check": {"expectations": inferred}}, sort_keys=False)
    pasted = with_(settings, expectations=yaml.safe_load(text)["data_check"]["expectations"])
    merged = OmegaConf.merge(OmegaConf.structured(DataCheckConfig), pasted)
    section = OmegaConf.to_container(merged, resolve=True)
    validate_data_check_config(section)
    report = check(frame, section, target=target)
    assert report.failed() == [] and report.warnings() == [], report.table(report.failed() + report.warnings())
    assert set(inferred["columns"]) == set(map(str, frame.columns))
    assert inferred["classes"] == sorted(frame[target].dropna().unique().tolist())


def test_inferred_expectations_describe_penguins() -> None:
    inferred = infer_expectations(pd.read_csv(PENGUINS), target="species")
    columns = inferred["columns"]
    assert columns["island"] == {"dtype": "str", "nullable": False, "allowed": ["Biscoe", "Dream", "Torgersen"]}
    assert columns["sex"]["nullable"] is True and columns["sex"]["allowed"] == ["female", "male"]
    assert columns["year"] == {"dtype": "int", "nullable": False, "min": 2006, "max": 2010}
    low, high = columns["bill_length_mm"]["min"], columns["bill_length_mm"]["max"]
    assert 29 < low < 32.1 and 59.6 < high < 63  # 32.1..59.6 widened by 10% of the range
    assert inferred["row_count"] == {"min": 172, "max": 3440}
    assert inferred["classes"] == ["Adelie", "Chinstrap", "Gentoo"]


def test_data_schema_infer_command_writes_a_config_section(tmp_path: Path, store_env: dict[str, str]) -> None:
    out = tmp_path / "expectations.yaml"
    result = run_command(
        [
            str(Path(sys.executable).parent / "trainflow"),
            "data-schema",
            "infer",
            str(PENGUINS_RAW),
            "--target",
            "Clutch Completion",
            "--out",
            str(out),
        ],
        store_env,
    )
    assert result.returncode == 0, result.stderr
    written = yaml.safe_load(out.read_text())
    assert written["data_check"]["expectations"]["classes"] == ["No", "Yes"]  # quoted: not YAML booleans
    assert out.read_text().startswith("# data_check.expectations inferred")
    # from the store, by reference, to standard output
    store = project_store(store_env["TRAINFLOW_HOME"])
    store.log_artifact(PENGUINS, "raw_data", type="raw_data")
    printed = run_command(
        [str(Path(sys.executable).parent / "trainflow"), "data-schema", "infer", "raw_data:latest"], store_env
    )
    assert printed.returncode == 0, printed.stderr
    assert "raw_data:v0" in printed.stdout
    assert yaml.safe_load(printed.stdout)["data_check"]["expectations"]["columns"]["species"]["allowed"] == [
        "Adelie",
        "Chinstrap",
        "Gentoo",
    ]
    missing = run_command(
        [str(Path(sys.executable).parent / "trainflow"), "data-schema", "infer", "raw_data:v9"], store_env
    )
    assert missing.returncode == 1 and "raw_data:v9 does not resolve" in missing.stderr


# -- the reference alias ----------------------------------------------------------------


def test_claim_alias_sets_a_first_reference_only(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path / "store")
    first = store.log_artifact(PENGUINS, "raw_data", type="raw_data")
    second = store.log_artifact(PENGUINS_RAW, "raw_data", type="raw_data")
    version, claimed = store.claim_alias(second.ref, "reference")
    assert claimed and version.ref == "raw_data:v1"
    version, claimed = store.claim_alias(first.ref, "reference")
    assert not claimed and version.ref == "raw_data:v1"
    assert store.get("raw_data:reference").ref == "raw_data:v1"
    assert [h[0] for h in store.alias_history("raw_data", "reference")] == [1]
    assert [v.aliases for v in store.list_versions("raw_data")] == [(), ("latest", "reference")]


def test_a_table_that_failed_check_data_is_refused_and_others_pass() -> None:
    refuse_failed_data({}, "raw_data:v0")  # never checked: -P steps=fetch_data,split_data
    refuse_failed_data(verdict_metadata(True, "data_check_report:v1", "run1"), "raw_data:v1")
    with pytest.raises(DataCheckFailed) as error:
        refuse_failed_data(verdict_metadata(False, "data_check_report:v2", "run2"), "raw_data:v2")
    assert "raw_data:v2 failed check_data (report data_check_report:v2)" in str(error.value)


def test_a_numeric_target_failing_as_classes_hints_at_regression(
    penguins: pd.DataFrame, settings: dict[str, Any]
) -> None:
    """body_mass_g as a class label: 95 'classes', most below min_class_count; the line says to regress."""
    report = check(penguins, with_(settings, expectations=None), target="body_mass_g")
    assert "generic.min_class_count.body_mass_g" in failed_keys(report)
    [hint] = failure_hints(report.failed(), penguins, "body_mass_g", "raw_data:v0")
    assert "'body_mass_g' is numeric with 94 distinct values" in hint and "model.task=regression" in hint
    # rare classes of a real label are not taken for a quantity
    rare = pd.concat([penguins, penguins.iloc[:1].assign(species="Emperor")])
    report = check(rare, with_(settings, expectations=None, min_class_count=10))
    assert "generic.min_class_count.species" in failed_keys(report)
    assert failure_hints(report.failed(), rare, "species", "raw_data:v0") == []
