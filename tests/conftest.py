"""Shared fixtures (the helpers they use are in tests/support/project.py). Every test that touches state gets its own store root and its own
MLflow database (``TRAINFLOW_HOME`` and ``MLFLOW_TRACKING_URI`` under ``tmp_path``), so
tests never see each other's runs and can run in parallel.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.project import PROJECT_DIR, pipeline_env

from trainflow.logs import configure as configure_logs

# Two pytest workers share two cores: OpenMP code (histogram boosting, in the tests' own
# process and in every pipeline they start, which inherit this) would run two threads per
# worker and spin while the other worker holds a core; one thread each keeps a fit's time
# that of one core (measured here: a 2.5 s fit took 50-70 s with another process busy).
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture
def project_dir() -> Path:
    return PROJECT_DIR


@pytest.fixture
def store_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """:func:`pipeline_env` for a fresh store under ``tmp_path``, also applied to this
    process for tests that call the library directly."""
    for leaked in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
        monkeypatch.delenv(leaked, raising=False)
    env = pipeline_env(tmp_path / "trainflow_home")
    for key in ("TRAINFLOW_HOME", "MLFLOW_TRACKING_URI"):
        monkeypatch.setenv(key, env[key])
    yield env


@pytest.fixture(scope="session", autouse=True)
def console_logging() -> None:
    """trainflow's messages on the console, as its entry points (main.py, step_main, the CLI) set
    them up: tests that call the library in this process read them from captured stdout."""
    configure_logs("INFO")


@pytest.fixture(scope="session", autouse=True)
def project_dir_stays_clean() -> Iterator[None]:
    """No test may leave MLflow state in the project folder: all of it belongs in a store."""
    strays = ("mlruns", "mlflow.db", "mlartifacts", "outputs", "multirun")
    before = {name for name in strays if (PROJECT_DIR / name).exists()}
    yield
    created = {name for name in strays if (PROJECT_DIR / name).exists()} - before
    assert not created, f"tests wrote {sorted(created)} into the project folder"
