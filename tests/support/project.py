"""The project as the tests drive it: its folder, the binaries of this environment, a
user's store and environment, running a command and reading its one-line errors."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from trainflow.config.components import CONFIG_DIR_ENV
from trainflow.store.local import LocalArtifactStore
from trainflow.tracking import create_store_database

PROJECT_DIR = Path(__file__).resolve().parents[2]
# The project the default data set's artifacts belong to (dataset/penguins.yaml)
PENGUINS_PROJECT = "penguins-species"
BIN_DIR = Path(sys.executable).parent
MLFLOW = str(BIN_DIR / "mlflow")


def project_store(home: str | Path, project: str = PENGUINS_PROJECT) -> LocalArtifactStore:
    """The store at ``home`` as a pipeline on ``project`` (the default data set's) sees it."""
    return LocalArtifactStore(home, project=project)


def pipeline_env(home: Path) -> dict[str, str]:
    """The environment of a user whose store is ``home``, prepared as `trainflow init`
    (and so `make run`) prepares it: the store's MLflow database and experiment exist."""
    # A pipeline's variables for its steps (a run, an experiment, its config folder) must not leak in.
    leaked = ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME", CONFIG_DIR_ENV)
    env = {k: v for k, v in os.environ.items() if k not in leaked}
    env.update(
        TRAINFLOW_HOME=str(home),
        MLFLOW_TRACKING_URI=f"sqlite:///{home / 'mlflow.db'}",
        PATH=f"{BIN_DIR}{os.pathsep}{env.get('PATH', '')}",
        PYTHONUNBUFFERED="1",
    )
    create_store_database(home, "trainflow")
    return env


def copy_of(home: Path, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A private copy of a finished pipeline's state (store + MLflow database)."""
    target = tmp_path / "home"
    shutil.copytree(home, target, ignore=shutil.ignore_patterns("checkouts", "tmp", "hydra"))
    # The MLflow database records absolute artifact locations; the copy keeps the
    # original's, which is fine for these tests: they read metrics and tags only.
    return target, pipeline_env(target)


@contextlib.contextmanager
def tracking_at(uri: str) -> Iterator[None]:
    """This process's MLflow tracking URI is ``uri`` for the block. Set with
    ``mlflow.set_tracking_uri``, which outranks ``MLFLOW_TRACKING_URI`` (so a URI another
    test in the worker left set cannot win), then unset, leaving the variable as it was."""
    import mlflow

    variable = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(None)
        if variable is not None:
            os.environ["MLFLOW_TRACKING_URI"] = variable


def tamper(path: Path, data: bytes) -> None:
    """Overwrite a store file in place, as a process that forces its way past the read-only
    mode would (blobs and checkouts are 0444; root is not stopped by that anyway)."""
    path.chmod(0o644)
    path.write_bytes(data)


def run_command(
    args: list[str], env: dict[str, str], cwd: Path = PROJECT_DIR, timeout: int = 600
) -> subprocess.CompletedProcess[str]:
    """Run a command as a user would, capturing its output for assertions."""
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def error_lines(stderr: str) -> list[str]:
    """The ``...: error: ...`` lines a failing trainflow command printed."""
    return [line for line in stderr.splitlines() if ": error: " in line]
