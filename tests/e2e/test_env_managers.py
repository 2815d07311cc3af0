"""The pipeline with every step in an isolated environment built from its conda.yml.

Slow: the first step builds the environment (Python from pyenv, the pinned packages from
PyPI); the other steps reuse it, since all conda.yml files are one file and MLflow names
environments by their contents. The environments live in a fresh ``MLFLOW_ENV_ROOT``, so
this measures a cold build every time.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
from support.project import MLFLOW, pipeline_env, project_store, run_command

# "[pipeline] <step>: ran in N s (MLflow run ...)", the runner's line for each step (a cold store: none is cached)
STEP_DONE = re.compile(r"^\[pipeline\] (\w+): ran in ([\d.]+) s", re.MULTILINE)


@pytest.fixture
def env_root(tmp_path: Path) -> Iterator[Path]:
    """A fresh MLFLOW_ENV_ROOT, removed afterwards: an environment is about 700 MB."""
    yield tmp_path / "envs"
    shutil.rmtree(tmp_path / "envs", ignore_errors=True)


def _isolated_env(home: Path, env_root: Path) -> dict[str, str]:
    env = pipeline_env(home)
    # The interpreter comes from this machine (pyenv); never let uv download one instead.
    env.update(MLFLOW_ENV_ROOT=str(env_root), UV_PYTHON_DOWNLOADS="never")
    return env


def _pipeline(env: dict[str, str], hydra_options: str, steps: str = "all") -> dict[str, float]:
    """Run the pipeline; the seconds each step took, in order."""
    result = run_command(
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
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return {step: float(seconds) for step, seconds in STEP_DONE.findall(result.stdout)}


def _env_managers_of_steps(home: Path) -> dict[str, str]:
    client = mlflow.MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("trainflow").experiment_id])
    return {
        run.info.run_id: run.data.tags.get("mlflow.project.env", "")
        for run in runs
        if run.data.tags.get("trainflow.step", "pipeline") != "pipeline"
    }


@pytest.mark.slow
def test_every_step_runs_in_one_shared_uv_environment_then_virtualenv_reuses_it(
    tmp_path: Path, env_root: Path, record_property: pytest.RecordProperty
) -> None:
    home = tmp_path / "home"
    env = _isolated_env(home, env_root)

    seconds = _pipeline(env, "main.env_manager=uv")
    assert list(seconds) == ["fetch_data", "check_data", "split_data", "train_model", "test_model", "promote_model"]
    assert set(_env_managers_of_steps(home).values()) == {"uv"}
    assert len(list(env_root.iterdir())) == 1, "one environment for all steps"
    assert project_store(home).get("model_export:prod").ref == "model_export:v0"
    cold, *warm = seconds.values()
    timings = f"uv: cold {cold:.1f} s (fetch_data, building the environment), warm steps {', '.join(f'{s:.1f}' for s in warm)} s"
    print(timings)
    record_property("env_timings", timings)
    assert max(warm) < cold, timings

    # virtualenv names environments the same way: it finds the one uv built (pyenv supplies Python 3.11.7).
    again = _pipeline(env, "main.env_manager=virtualenv", steps="test_model")
    assert list(again) == ["test_model"]
    assert sorted(set(_env_managers_of_steps(home).values())) == ["uv", "virtualenv"]
    assert len(list(env_root.iterdir())) == 1


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("conda") is None, reason="conda is not installed on this machine")
def test_a_step_runs_in_a_conda_environment(tmp_path: Path, env_root: Path) -> None:
    home = tmp_path / "home"
    env = _isolated_env(home, env_root)
    seconds = _pipeline(env, "main.env_manager=conda", steps="fetch_data")
    assert list(seconds) == ["fetch_data"]
    assert set(_env_managers_of_steps(home).values()) == {"conda"}
