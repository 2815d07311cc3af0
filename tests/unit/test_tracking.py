"""The store's MLflow database (SQLite) as several processes and interrupted ones use it."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest

from trainflow.tracking import use_tracking


@pytest.fixture(autouse=True)
def tracking_uri_not_left_set() -> Iterator[None]:
    """use_tracking sets this process's MLflow tracking URI, which outranks the environment
    variable other tests in the worker set: unset it after each test."""
    yield
    mlflow.set_tracking_uri(None)


def test_a_read_left_open_does_not_block_closing_a_run(store_env: dict[str, str]) -> None:
    """A process interrupted in the middle of a query keeps that query's cursor alive in its
    traceback, and with it a read of the database. The writes that then close its runs as
    failed must not wait behind that read (20 s, then "database is locked", in SQLite's
    default journal mode): the store's database is in WAL mode."""
    root = Path(store_env["TRAINFLOW_HOME"])
    use_tracking(root)
    client = mlflow.MlflowClient()
    run = client.create_run("0")
    with contextlib.closing(sqlite3.connect(root / "mlflow.db", timeout=0.1)) as reader:
        assert reader.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        pending = reader.execute("SELECT run_uuid FROM runs UNION ALL SELECT run_uuid FROM runs")
        assert pending.fetchone() is not None  # the statement is still stepping: its read is held
        client.set_terminated(run.info.run_id, "FAILED")
    assert client.get_run(run.info.run_id).info.status == "FAILED"


def test_experiments_are_marked_as_model_training_unless_they_say_a_kind(store_env: dict[str, str]) -> None:
    """MLflow 3's UI opens an untagged experiment on a view it guesses (GenAI's traces);
    trainflow's experiments open on training runs. A kind the user set stays."""
    from trainflow.tracking import EXPERIMENT_KIND_TAG, MODEL_TRAINING, create_store_database, mark_model_training

    root = Path(store_env["TRAINFLOW_HOME"])
    use_tracking(root)
    create_store_database(root, "made_by_init")
    client = mlflow.MlflowClient()
    assert client.get_experiment_by_name("made_by_init").tags[EXPERIMENT_KIND_TAG] == MODEL_TRAINING
    plain = client.create_experiment("made_elsewhere")
    chosen = client.create_experiment("chosen", tags={EXPERIMENT_KIND_TAG: "genai_development"})
    mark_model_training(plain)
    mark_model_training(chosen)
    assert client.get_experiment(plain).tags[EXPERIMENT_KIND_TAG] == MODEL_TRAINING
    assert client.get_experiment(chosen).tags[EXPERIMENT_KIND_TAG] == "genai_development"


def test_a_table_that_another_run_logs_at_the_same_moment_is_logged_all_the_same(
    store_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """MLflow checks for a dataset's row, then inserts it: two runs logging one table at once
    (the trials of a parallel sweep) both insert, and the later fails on the unique key. Its
    second call finds the row the other made."""
    import pandas as pd

    from trainflow.tracking import log_table_input

    root = Path(store_env["TRAINFLOW_HOME"])
    use_tracking(root)
    table = pd.DataFrame({"x": [1.0, 2.0], "y": ["a", "b"]})
    source = root / "table.parquet"
    real, calls = mlflow.log_input, []

    def racing(dataset, context=None):  # type: ignore[no-untyped-def]
        calls.append(context)
        if len(calls) == 1:  # the other run's row went in between this one's check and insert
            with mlflow.start_run(nested=True):
                real(dataset, context=context)
            raise mlflow.exceptions.MlflowException(
                "(sqlite3.IntegrityError) UNIQUE constraint failed: datasets.experiment_id, datasets.name, "
                "datasets.digest"
            )
        real(dataset, context=context)

    monkeypatch.setattr(mlflow, "log_input", racing)
    with mlflow.start_run() as run:
        log_table_input(table, 2, "table.parquet:v0", "0" * 64, source, "training", target="y")
    assert calls == ["training", "training"]
    [logged] = mlflow.MlflowClient().get_run(run.info.run_id).inputs.dataset_inputs
    assert logged.dataset.name == "table.parquet:v0"

    def failing(dataset, context=None):  # type: ignore[no-untyped-def]
        raise mlflow.exceptions.MlflowException("the server is down")

    monkeypatch.setattr(mlflow, "log_input", failing)  # any other error is the step's, at once
    with mlflow.start_run(), pytest.raises(mlflow.exceptions.MlflowException, match="the server is down"):
        log_table_input(table, 2, "table.parquet:v1", "1" * 64, source, "training")
