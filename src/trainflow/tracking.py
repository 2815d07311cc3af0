"""Where MLflow records runs, and which experiment a run belongs to."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
from mlflow.exceptions import MlflowException

from trainflow.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd
    from mlflow.data.dataset import Dataset

# MLflow's SQLAlchemy store is imported inside create_store_database: about 0.5 s that a process tracking to an
# MLflow server (MLFLOW_TRACKING_URI) does not pay; mlflow.data inside log_table_input, for the steps that
# read a table (docs/architecture.md#start-up).

TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
EXPERIMENT_ID_ENV = "MLFLOW_EXPERIMENT_ID"


def tracking_uri(store_root: Path) -> str:
    """``MLFLOW_TRACKING_URI`` when set, else a SQLite database inside the store root.

    ``mlflow run`` always sets the variable for the processes it starts, so the steps
    of one pipeline follow the pipeline's own run and its tree stays whole.
    """
    return os.environ.get(TRACKING_URI_ENV) or f"sqlite:///{store_root / 'mlflow.db'}"


def is_store_database(uri: str, store_root: Path) -> bool:
    return uri == f"sqlite:///{store_root / 'mlflow.db'}"


def use_tracking(store_root: Path) -> str:
    """Point this process, and the processes it starts, at the tracking URI."""
    uri = tracking_uri(store_root)
    os.environ[TRACKING_URI_ENV] = uri
    mlflow.set_tracking_uri(uri)
    if is_store_database(uri, store_root):
        create_store_database(store_root)
    use_wal(uri)
    return uri


def use_wal(uri: str) -> None:
    """Put an SQLite tracking database in WAL mode (the mode is kept in the file).

    Then readers never block writers. Concurrent writers (the trials of a parallel sweep,
    a step beside ``mlflow ui``) wait only for each other's short transactions, which
    MLflow's 20 s busy timeout covers, instead of failing with "database is locked" behind
    a long read. So does a process interrupted in the middle of a query: the cursor its
    traceback keeps alive holds a read, which in SQLite's default (rollback journal) mode
    blocks the writes that close its runs as failed.
    Best effort: a process holding the database open (``mlflow ui``) can keep the old mode.
    """
    if not uri.startswith("sqlite:///"):
        return
    path = Path(uri.removeprefix("sqlite:///"))
    if not path.is_file():
        return
    with contextlib.closing(sqlite3.connect(path, timeout=30)) as db, contextlib.suppress(sqlite3.OperationalError):
        db.execute("PRAGMA journal_mode = WAL")


def create_store_database(store_root: Path, experiment_name: str | None = None) -> None:
    """Create the store's MLflow database and, if named, an experiment, each only if
    absent, with their run artifacts inside the store.

    MLflow gives an experiment ``./mlruns`` of whichever process's working directory
    created it (the Default experiment when the database is made, or the one
    ``mlflow run --experiment-name`` makes); ``trainflow init`` runs this first.
    """
    from mlflow.entities import ExperimentTag
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    if (store_root / "mlflow.db").exists() and experiment_name is None:
        return
    store_root.mkdir(parents=True, exist_ok=True)
    database = SqlAlchemyStore(f"sqlite:///{store_root / 'mlflow.db'}", (store_root / "mlartifacts").as_uri())
    if experiment_name and database.get_experiment_by_name(experiment_name) is None:
        with contextlib.suppress(MlflowException):  # another process created it meanwhile
            database.create_experiment(experiment_name, tags=[ExperimentTag(EXPERIMENT_KIND_TAG, MODEL_TRAINING)])


def experiment_id(name: str, store_root: Path) -> str:
    """The experiment runs join: the one ``mlflow run`` chose, else ``name`` (created if absent).

    An experiment created in the store's own database keeps its run artifacts in the
    store too, so one ``TRAINFLOW_HOME`` holds a project's whole state.
    """
    if os.environ.get(EXPERIMENT_ID_ENV):
        return os.environ[EXPERIMENT_ID_ENV]
    if not name.strip():
        raise ConfigError(
            "the MLflow experiment name is empty: name one, e.g. trainflow (main.experiment_name, --experiment-name)"
        )
    client = mlflow.MlflowClient()
    existing = client.get_experiment_by_name(name)
    if existing is not None:
        return existing.experiment_id
    location = (
        (store_root / "mlartifacts").as_uri() if is_store_database(mlflow.get_tracking_uri(), store_root) else None
    )
    try:
        return client.create_experiment(name, artifact_location=location)
    except mlflow.exceptions.MlflowException:
        # Another process created it between our lookup and our create.
        again = client.get_experiment_by_name(name)
        if again is None:
            raise
        return again.experiment_id


# MLflow 3's UI opens an experiment on the view its kind names; untagged, it may guess the
# GenAI one (traces, token usage), which is empty for trainflow's runs.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING = "custom_model_development"
_marked: set[str] = set()  # experiments this process has seen tagged


def training_runs_address(experiment_id: str, tracking: str) -> str:
    """Where MLflow's UI shows the experiment's training runs. MLflow 3.17's UI does not read
    the experiment's kind tag: a browser opens an experiment on the view it chose last, the
    GenAI one at first, unless the address names the view (``workflowType``)."""
    route = f"#/experiments/{experiment_id}/runs?workflowType=machine_learning"
    if tracking.startswith(("http://", "https://")):
        return f"{tracking.rstrip('/')}/{route}"
    return f"http://127.0.0.1:5000/{route} (after: mlflow ui --backend-store-uri {tracking})"


def mark_model_training(experiment_id: str) -> None:
    """Tag the experiment as model training (``mlflow.experimentKind``) unless it names a
    kind already (the user's choice stands), so that MLflow's UI opens it on training runs."""
    if experiment_id in _marked:
        return
    client = mlflow.MlflowClient()
    if EXPERIMENT_KIND_TAG not in client.get_experiment(experiment_id).tags:
        client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING)
    _marked.add(experiment_id)


def log_table_input(
    sample: pd.DataFrame,
    rows: int,
    name: str,
    digest: str,
    source: Path,
    context: str,
    target: str | None = None,
) -> Dataset:
    """Log a table the step reads as an MLflow dataset input of the active run: the Dataset
    column and the lineage view of MLflow's UI. ``sample`` types the columns (MLflow infers
    its schema from the frame it is given: 8 s for 10^6 rows); ``rows`` is the table's size;
    ``digest`` its content digest in the store, ``source`` its read-only checkout. Returns
    the dataset, for metrics measured on it (:func:`log_metrics`)."""
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.pandas_dataset import PandasDataset

    class _Table(PandasDataset):
        @property
        def profile(self) -> dict[str, int]:
            return {"num_rows": rows, "num_elements": rows * len(sample.columns)}

    with warnings.catch_warnings():
        # MLflow's multi-line hint that integer columns cannot hold gaps: a dataset record only.
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer", category=UserWarning)
        # MLflow registers its local-file source twice ("file" and "local" schemes), and says so.
        warnings.filterwarnings(
            "ignore", message="The specified dataset source can be interpreted", category=UserWarning
        )
        dataset = _Table(
            sample,
            resolve_dataset_source(source.as_uri()),
            targets=target if target in sample.columns else None,
            name=name,
            digest=digest[:16],
        )
        # Runs that log one table at the same moment (a parallel sweep's trials) race on its dataset row.
        once_more_on_insert_race(mlflow.log_input, dataset, context=context)
    return dataset


def once_more_on_insert_race(write: Callable[..., object], *args: object, **kwargs: object) -> None:
    """``write(*args, **kwargs)`` (an MLflow call that looks for a row, then inserts it),
    once more if it fails on a unique key: another process inserted the same row between the
    two (runs logging one dataset, promotions setting one registry tag or alias at once). The
    second call finds that row and updates or reuses it. Any other error is raised at once."""
    try:
        write(*args, **kwargs)
    except MlflowException as error:
        # SQLite: "UNIQUE constraint failed"; PostgreSQL: "duplicate key value violates unique constraint"
        if "unique constraint" not in str(error).lower():
            raise
        write(*args, **kwargs)


def log_metrics(metrics: Mapping[str, float], model_id: str | None = None, dataset: Dataset | None = None) -> None:
    """Metrics of the active run; with ``model_id`` and ``dataset``, also the metrics of that
    LoggedModel on that dataset (the Models tab shows them beside the model)."""
    mlflow.log_metrics(dict(metrics), model_id=model_id, dataset=dataset)


@contextlib.contextmanager
def logged_model(
    name: str, directory: Path, model_type: str, params: Mapping[str, Any], tags: Mapping[str, str]
) -> Iterator[str]:
    """An MLflow 3 LoggedModel made by the active run, yielding its id: the block saves the
    MLflow model into ``directory`` (its MLmodel may name the id); on leaving it the files are
    uploaded and the model is READY, or FAILED if the block raised. The experiment's Models
    tab lists it; the Model Registry registers ``models:/<id>``."""
    from mlflow.entities import LoggedModelOutput, LoggedModelStatus

    active = mlflow.active_run()
    if active is None:
        raise RuntimeError("logging a model needs an active MLflow run")
    client = mlflow.MlflowClient()
    model = client.create_logged_model(
        experiment_id=active.info.experiment_id,
        name=name,
        source_run_id=active.info.run_id,
        params={key: str(value)[:6000] for key, value in params.items()},
        tags=dict(tags),
        model_type=model_type,
    )
    # The run's Models column and the model's "source run".
    client.log_outputs(active.info.run_id, models=[LoggedModelOutput(model.model_id, step=0)])
    try:
        yield model.model_id
        client.log_model_artifacts(model.model_id, str(directory))
    except BaseException:
        client.finalize_logged_model(model.model_id, LoggedModelStatus.FAILED)
        raise
    client.finalize_logged_model(model.model_id, LoggedModelStatus.READY)


def known_model(model_id: str | None) -> str | None:
    """``model_id`` when this tracking server holds that LoggedModel (a model trained against
    another server, or before trainflow logged models, has none here), else None."""
    if not model_id:
        return None
    try:
        mlflow.MlflowClient().get_logged_model(model_id)
    except MlflowException:
        return None
    return model_id


def log_model_input(model_id: str) -> None:
    """Record LoggedModel ``model_id`` as an input of the active run (a step that scores or promotes it)."""
    from mlflow.entities import LoggedModelInput

    active = mlflow.active_run()
    if active is not None:
        mlflow.MlflowClient().log_inputs(active.info.run_id, models=[LoggedModelInput(model_id)])


def start_run_args(experiment_name: str, store_root: Path, run_name: str) -> dict[str, Any]:
    """Arguments for ``mlflow.start_run``: none under ``mlflow run`` (it made the run), else a new run."""
    if os.environ.get("MLFLOW_RUN_ID"):
        return {}
    return {"experiment_id": experiment_id(experiment_name, store_root), "run_name": run_name}


def git_commit(directory: Path) -> str | None:
    """The commit checked out at ``directory``, or None outside a git work tree."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=directory, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if result.returncode != 0:
        return None
    return result.stdout.strip() or None
