"""check_data through `mlflow run`, as users drive it: a first clean table becomes the
drift reference, a later one is measured against it, and a broken one stops the
pipeline before split_data with every failed check listed.

One clean pipeline (fetch_data, check_data) runs once per module; the other two runs
work on copies of its state.
"""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from support.project import MLFLOW, PROJECT_DIR, copy_of, error_lines, pipeline_env, project_store, run_command

PENGUINS = PROJECT_DIR / "data" / "penguins.csv"


def run_steps(steps: str, env: dict[str, str], hydra_options: str = ""):  # type: ignore[no-untyped-def]
    return run_command(
        [
            MLFLOW,
            "run",
            ".",
            "--env-manager",
            "local",
            "--experiment-name",
            "trainflow",
            "-P",
            f"steps={steps}",
            "-P",
            f"hydra_options={hydra_options}",
        ],
        env,
    )


def step_run(env: dict[str, str], step: str, index: int = 0):  # type: ignore[no-untyped-def]
    """The ``index``-th newest MLflow run of ``step``."""
    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name("trainflow").experiment_id
    runs = client.search_runs(
        [experiment], f"tags.`trainflow.step` = '{step}'", order_by=["attributes.start_time DESC"]
    )
    return client, runs[index]


@pytest.fixture(scope="module")
def checked(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str], str]:
    """A fresh store: fetch and check the embedded penguins."""
    home = tmp_path_factory.mktemp("check_data") / "home"
    env = pipeline_env(home)
    result = run_steps("fetch_data,check_data", env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return home, env, result.stdout


def test_a_clean_first_table_passes_and_becomes_the_reference(checked: tuple[Path, dict[str, str], str]) -> None:
    home, env, stdout = checked
    store = project_store(home)
    assert store.get("raw_data:reference").ref == "raw_data:v0"
    assert "raw_data:v0 is now raw_data:reference" in stdout
    report = store.get("data_check_report:v0")
    assert report.metadata["raw_data"] == "raw_data:v0" and report.metadata["reference"] is None
    assert report.metadata["passed"] is True and report.metadata["became_reference"] is True
    data = json.loads((store.use_artifact("data_check_report:v0") / "data_check_report.json").read_text())
    assert data["passed"] is True and not any(c["group"] == "drift" for c in data["checks"])
    assert any("becomes raw_data:reference" in note for note in data["notes"])
    client, run = step_run(env, "check_data")
    assert run.info.status == "FINISHED" and run.data.metrics["checks_failed"] == 0


def test_a_later_table_is_measured_against_the_reference(
    checked: tuple[Path, dict[str, str], str], tmp_path: Path
) -> None:
    """Slightly longer bills, another extract of the same data set: the KS test flags the
    drift, which is small (PSI under drift.max_psi), so it warns; the reference stays."""
    home, env = copy_of(checked[0], tmp_path)
    shifted = pd.read_csv(PENGUINS)
    shifted["bill_length_mm"] = shifted["bill_length_mm"] + 1.5
    path = tmp_path / "longer_bills.csv"
    shifted.to_csv(path, index=False)
    result = run_steps("fetch_data,check_data", env, f"dataset=penguins data.uri={path}")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "drift measured against raw_data:v0 (raw_data:reference" in result.stdout
    assert "| warn    | drift | ks    | bill_length_mm" in result.stdout
    store = project_store(home)
    assert store.get("raw_data:reference").ref == "raw_data:v0"  # not moved by a later pass
    report = store.get("data_check_report:v1")
    assert report.metadata["raw_data"] == "raw_data:v1" and report.metadata["reference"] == "raw_data:v0"
    assert report.metadata["passed"] is True and report.metadata["warnings"] == ["drift.ks.bill_length_mm"]
    assert report.metadata["drift"]["method"] == "sidak" and report.metadata["drift"]["tests"] == 8
    assert {v.ref for v in store.inputs_of(report)} == {"raw_data:v0", "raw_data:v1"}
    client, run = step_run(env, "check_data")
    assert run.data.tags["trainflow.reference"] == "raw_data:v0"
    metrics = run.data.metrics
    assert metrics["drift.ks.bill_length_mm.p_value"] < metrics["drift.ks.bill_length_mm.threshold"]
    assert metrics["drift.ks.bill_length_mm.passed"] == 0.0 and metrics["drift.ks.body_mass_g.passed"] == 1.0
    assert metrics["drift.ks.bill_length_mm.statistic"] > 0.1
    assert 0.1 < metrics["drift.ks.bill_length_mm.psi"] <= 0.25


def test_a_large_shift_stops_the_pipeline_before_split_data(
    checked: tuple[Path, dict[str, str], str], tmp_path: Path
) -> None:
    """Bills 8 mm longer, every other column as it was: a large shift (PSI well above
    drift.max_psi) stops the pipeline by default, naming the column and the effect size."""
    home, env = copy_of(checked[0], tmp_path)
    shifted = pd.read_csv(PENGUINS)
    shifted["bill_length_mm"] = shifted["bill_length_mm"] + 8.0  # still within the expectations' range
    path = tmp_path / "much_longer_bills.csv"
    shifted.to_csv(path, index=False)
    result = run_steps("fetch_data,check_data,split_data", env, f"dataset=penguins data.uri={path}")
    assert result.returncode != 0
    [line] = [line for line in error_lines(result.stderr) if line.startswith("check_data: error:")]
    assert "1 of" in line and "drift.ks[bill_length_mm]" in line
    assert "a large shift" in result.stderr and "[pipeline] split_data" not in result.stdout
    assert project_store(home).get("raw_data:reference").ref == "raw_data:v0"


def test_a_broken_table_stops_the_pipeline_before_split_data(
    checked: tuple[Path, dict[str, str], str], tmp_path: Path
) -> None:
    """A missing column and an unknown island: both reported, the report logged, nothing split."""
    home, env = copy_of(checked[0], tmp_path)
    broken = pd.read_csv(PENGUINS).drop(columns=["sex"])
    broken.loc[[3, 200], "island"] = "Atlantis"
    path = tmp_path / "broken.csv"
    broken.to_csv(path, index=False)
    result = run_steps("fetch_data,check_data,split_data", env, f"dataset=penguins data.uri={path}")
    assert result.returncode != 0
    [line] = [line for line in error_lines(result.stderr) if line.startswith("check_data: error:")]
    assert "2 of" in line and "schema.columns_present[sex]" in line and "schema.allowed_values[island]" in line
    assert "data_check_report:v1" in line and "trainflow data-schema infer raw_data:v1" in line
    # the table of every failed check, not only the first
    assert "2 failed check(s), stopping before split_data" in result.stderr
    assert "| fail    | schema | columns_present | sex" in result.stderr
    assert "'Atlantis' (2 rows)" in result.stderr
    assert "[pipeline] split_data" not in result.stdout
    store = project_store(home)
    names = {name for name, _, _ in store.list_names()}
    assert "trainval_data.parquet" not in names or store.get("trainval_data.parquet:latest").version == 0
    assert names >= {"raw_data", "data_check_report"}
    report = store.get("data_check_report:v1")
    assert report.metadata["raw_data"] == "raw_data:v1" and report.metadata["passed"] is False
    assert set(report.metadata["failed"]) == {"schema.columns_present.sex", "schema.allowed_values.island"}
    assert store.get("raw_data:reference").ref == "raw_data:v0"  # a failed table never becomes the reference
    markdown = (store.use_artifact("data_check_report:v1") / "data_check_report.md").read_text()
    assert "**FAILED**" in markdown and "columns_present" in markdown
    client, run = step_run(env, "check_data")
    assert run.info.status == "FAILED" and run.data.tags["trainflow.data_check"] == "failed"
    assert run.data.metrics["checks_failed"] == 2.0
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {
        "data_check_report.json",
        "data_check_report.md",
    }
    assert not [r for r in step_run_list(env, "split_data")]
    # the failed table is raw_data:latest now; split_data refuses it however it is asked for
    assert store.get("raw_data:v1").metadata["data_check"] == {"passed": False, "run_id": run.info.run_id}
    assert store.get("raw_data:v1").metadata["data_check_report"] == "data_check_report:v1"
    assert store.get("raw_data:v0").metadata["data_check"]["passed"] is True
    again = run_steps("split_data", env)
    assert again.returncode != 0
    [line] = [line for line in error_lines(again.stderr) if line.startswith("split_data: error:")]
    assert "raw_data:v1 failed check_data (report data_check_report:v1)" in line and "raw_data:reference" in line
    assert "trainval_data.parquet" not in {name for name, _, _ in store.list_names()}


def step_run_list(env: dict[str, str], step: str) -> list:  # type: ignore[type-arg]
    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name("trainflow").experiment_id
    return client.search_runs([experiment], f"tags.`trainflow.step` = '{step}'")


def test_the_front_door_refuses_a_repeated_name_and_reports_a_conversion(
    checked: tuple[Path, dict[str, str], str], tmp_path: Path
) -> None:
    """Through `mlflow run`: a header that repeats a name stops fetch_data in one line and
    logs nothing; a column of numbers and text is read as text, said and recorded."""
    home, env = copy_of(checked[0], tmp_path)
    store = project_store(home)
    before = [v.ref for v in store.list_versions("raw_data")]
    repeated = tmp_path / "repeated.csv"
    repeated.write_text(PENGUINS.read_text().replace("island,", "sex,", 1))
    result = run_steps("fetch_data", env, f"dataset=penguins data.uri={repeated}")
    assert result.returncode != 0
    [line] = error_lines(result.stderr)
    assert (
        line
        == "fetch_data: error: repeated.csv names more than one column 'sex': rename them so that every column name is unique"
    )
    assert [v.ref for v in project_store(home).list_versions("raw_data")] == before and store.verify().ok

    mixed = pd.read_csv(PENGUINS)
    mixed["year"] = mixed["year"].astype(str)
    mixed = pd.concat([mixed] * 800, ignore_index=True)  # past the first 262,144 rows pandas types at once
    mixed.loc[len(mixed) - 1, "year"] = "unknown"
    path = tmp_path / "mixed.csv"
    mixed.to_csv(path, index=False)
    result = run_steps("fetch_data", env, f"dataset=penguins data.uri={path}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "[fetch_data] column 'year': numbers and text mixed; read as text" in result.stdout
    latest = project_store(home).get("raw_data:latest")
    assert latest.metadata["read_notes"] == ["column 'year': numbers and text mixed; read as text"]
