"""A user's own tables, first try, through `mlflow run` as a user runs it: each named by
data.uri and data.target alone, in the same store as the demo's runs.

Slow suite (about three minutes on two cores): whole pipelines on 100,000 generated rows.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from support.project import BIN_DIR, MLFLOW, PENGUINS_PROJECT, error_lines, pipeline_env, project_store, run_command
from support.synthetic import HIGH_CARDINALITY, TARGET, make_table

pytestmark = pytest.mark.slow

PIPELINE = [MLFLOW, "run", ".", "--env-manager", "local", "--experiment-name", "trainflow"]


def run_table(env: dict[str, str], table: Path, *more: str):  # type: ignore[no-untyped-def]
    options = " ".join([f"data.uri={table}", f"data.target={TARGET}", *more])
    return run_command([*PIPELINE, "-P", f"hydra_options={options}"], env, timeout=900)


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str], Path, str]:
    """One store: `make run`'s pipeline on the demo, then a user's churn-like table: 100,000
    rows, imbalanced (15% positive), a 4,000-level account column, dates as text, 3% rows
    without a target and 5% repeated rows."""
    root = tmp_path_factory.mktemp("own")
    home = root / "home"
    env = pipeline_env(home)
    assert run_command([str(BIN_DIR / "trainflow"), "init"], env).returncode == 0
    demo = run_command(PIPELINE, env)
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    frame = make_table(
        100_000, n_classes=2, class_weights=(0.85, 0.15), seed=20, high_cardinality=4_000, missing_target_fraction=0.03
    )
    frame = pd.concat([frame, frame.sample(frac=0.05, random_state=0)], ignore_index=True)
    table = root / "churn.csv"
    frame.to_csv(table, index=False)
    result = run_table(env, table)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return home, env, table, result.stdout


def test_the_table_runs_end_to_end_with_generic_settings(shared: tuple[Path, dict[str, str], Path, str]) -> None:
    home, _, table, out = shared
    assert "the demo data set's settings (dataset/penguins.yaml" in out
    assert "task: classification (the target 'target' holds text: 2 classes" in out
    assert "project: churn-target" in out
    store = project_store(home, "churn-target")
    prod = store.get("model_export:prod")
    assert prod.metadata["estimator"] == "hist_gradient_boosting"
    # the 4,000-level column became one target-encoded number, not 4,000 columns
    assert f"{HIGH_CARDINALITY} (target-encoded, " in out and "event_date (days since 1970" in out
    metrics, baseline = prod.metadata["test"]["metrics"], prod.metadata["test"]["baseline_metrics"]
    assert metrics["roc_auc_ovo"] > 0.9 and baseline["roc_auc_ovo"] == 0.5
    # repeated rows warned (no bound for this table); the rows without a target were dropped
    report = store.get("data_check_report:v0").metadata
    assert report["passed"] is True and "generic.duplicate_rows" in report["warnings"]
    split = store.get("trainval_data.parquet:v0").metadata["rows"] + store.get("test_data.parquet:v0").metadata["rows"]
    labelled = int(pd.read_csv(table)[TARGET].notna().sum())
    assert split == labelled < store.get("raw_data:v0").metadata["rows"] == 105_000


def test_several_tables_live_side_by_side_in_one_store(shared: tuple[Path, dict[str, str], Path, str]) -> None:
    """Each table is its own project: its reference, champion and registered model; the
    second table's drift was not measured against the demo's data."""
    home, env, _, _ = shared
    penguins, churn = project_store(home), project_store(home, "churn-target")
    assert penguins.get("model_export:prod").metadata["target"] == "species"
    assert churn.get("model_export:prod").metadata["target"] == TARGET
    assert churn.get("raw_data:reference").ref == "raw_data:v0"  # its own first table
    assert churn.get("data_check_report:v0").metadata["reference"] is None
    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    assert {m.name for m in client.search_registered_models()} == {PENGUINS_PROJECT, "churn-target"}
    listed = run_command([str(BIN_DIR / "trainflow"), "artifacts", "list"], env)
    assert "churn-target/model_export" in listed.stdout and "penguins-species/model_export" in listed.stdout
    ambiguous = run_command([str(BIN_DIR / "trainflow"), "artifacts", "show", "model_export:prod"], env)
    assert ambiguous.returncode == 1 and "several projects" in error_lines(ambiguous.stderr)[0]
    shown = run_command(
        [str(BIN_DIR / "trainflow"), "--project", "churn-target", "artifacts", "show", "model_export:prod"], env
    )
    assert shown.returncode == 0 and "hist_gradient_boosting" in shown.stdout


def test_a_table_moved_far_from_its_reference_stops_before_training(
    shared: tuple[Path, dict[str, str], Path, str], tmp_path: Path
) -> None:
    """The next extract of the same table (same file name: same project) with its main
    signal column moved completely: check_data stops it; prod does not move."""
    home, env, table, _ = shared
    frame = pd.read_csv(table)
    frame["signal_1"] = frame["signal_1"] + 10.0
    moved = tmp_path / "churn.csv"
    frame.to_csv(moved, index=False)
    result = run_table(env, moved)
    assert result.returncode != 0
    [line] = [line for line in error_lines(result.stderr) if line.startswith("check_data: error:")]
    assert "drift.ks[signal_1]" in line and "a large shift" in result.stderr
    assert project_store(home, "churn-target").get("model_export:prod").ref == "model_export:v0"


def test_a_model_no_better_than_guessing_is_reported_not_promoted(tmp_path: Path) -> None:
    """Noise: a target that no column predicts. The gate's baseline refuses the model; the
    pipeline exits 0 and says so, or 1 when CI asks with promote.fail_if_not_promoted."""
    env = pipeline_env(tmp_path / "home")
    rng = np.random.default_rng(1)
    noise = pd.DataFrame(
        {
            "a": rng.normal(size=4_000),
            "b": rng.normal(size=4_000),
            "kind": rng.choice(["x", "y", "z"], 4_000),
            TARGET: rng.choice(["yes", "no"], 4_000),
        }
    )
    table = tmp_path / "noise.csv"
    noise.to_csv(table, index=False)
    result = run_table(env, table)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "model_export:v0 not promoted, no version has 'prod': roc_auc_ovo vs baseline is" in result.stdout
    assert "no model has alias 'prod' yet" in result.stdout
    strict = run_table(env, table, "promote.fail_if_not_promoted=true")
    assert strict.returncode != 0
    [line] = [line for line in error_lines(strict.stderr) if line.startswith("promote_model: error:")]
    assert "roc_auc_ovo vs baseline" in line and "promote.fail_if_not_promoted=true" in line
    store = project_store(tmp_path / "home", "noise-target")
    assert [e.outcome for e in store.promotions()] == ["refused", "refused"]
