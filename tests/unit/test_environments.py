"""One source of truth for versions: pyproject.toml's pins. Every conda.yml and the lock
file must agree with it, and the running environment must be the pinned one."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest
import yaml
from packaging.version import Version

from trainflow.pipeline.steps import STEPS

PIN = re.compile(r"^([A-Za-z0-9_.\-\[\]]+)==([^\s;]+)$")


def _pins(requirements: list[str]) -> dict[str, str]:
    pins = {}
    for requirement in requirements:
        match = PIN.match(requirement.strip())
        assert match, f"{requirement!r} is not pinned with =="
        pins[match.group(1).split("[")[0].lower()] = match.group(2)
    return pins


@pytest.fixture(scope="module")
def pyproject(project_dir: Path) -> dict:
    return tomllib.loads((project_dir / "pyproject.toml").read_text())


@pytest.fixture(scope="module")
def project_dir() -> Path:
    return Path(__file__).resolve().parents[2]


def _conda_files(project_dir: Path) -> list[Path]:
    return [project_dir / "conda.yml"] + [project_dir / "components" / step / "conda.yml" for step in STEPS]


def test_every_dependency_is_pinned(pyproject: dict) -> None:
    runtime = _pins(pyproject["project"]["dependencies"])
    dev = _pins(pyproject["project"]["optional-dependencies"]["dev"])
    assert {"mlflow", "hydra-core", "scikit-learn", "pandas"} <= set(runtime)
    assert "pytest" in dev


def test_conda_files_agree_with_pyproject(pyproject: dict, project_dir: Path) -> None:
    runtime = _pins(pyproject["project"]["dependencies"])
    minor = pyproject["project"]["requires-python"].removeprefix("==").removesuffix(".*")
    for path in _conda_files(project_dir):
        spec = yaml.safe_load(path.read_text())
        dependencies = spec["dependencies"]
        python = next(d for d in dependencies if isinstance(d, str) and d.startswith("python="))
        # A full version: MLflow's virtualenv manager would otherwise ask pyenv for the newest
        # patch release of that minor version and build it from source.
        assert re.fullmatch(rf"python={re.escape(minor)}\.\d+", python), (path, python)
        assert "pip" in dependencies, path
        pip_section = next(d["pip"] for d in dependencies if isinstance(d, dict) and "pip" in d)
        assert _pins(pip_section) == runtime, path


def _declared_pins(pyproject: dict) -> dict[str, str]:
    """Runtime pins and every extra's (dev, torch)."""
    extras = pyproject["project"]["optional-dependencies"].values()
    return _pins(pyproject["project"]["dependencies"] + [requirement for extra in extras for requirement in extra])


def test_every_step_shares_one_environment(project_dir: Path) -> None:
    """MLflow names a conda environment by the sha1 of its file and a virtualenv/uv one by
    the Python version and requirements it parsed; identical files mean one environment,
    built once, for the pipeline and all its steps."""
    from mlflow.utils.environment import _PythonEnv
    from mlflow.utils.virtualenv import _get_virtualenv_name

    paths = _conda_files(project_dir)
    assert len({path.read_bytes() for path in paths}) == 1, "every conda.yml must be the same file"
    names = {_get_virtualenv_name(_PythonEnv.from_conda_yaml(path), path.parent) for path in paths}
    assert len(names) == 1, names


def test_mlflow_reads_the_conda_file_as_a_python_environment(pyproject: dict, project_dir: Path) -> None:
    """What `--env-manager virtualenv|uv` installs: the pinned Python and exactly the pins."""
    from mlflow.utils.environment import _PythonEnv

    python_env = _PythonEnv.from_conda_yaml(project_dir / "conda.yml")
    assert re.fullmatch(r"\d+\.\d+\.\d+", python_env.python)
    assert _pins(python_env.dependencies) == _pins(pyproject["project"]["dependencies"])


def _mlprojects(project_dir: Path) -> list[Path]:
    return [project_dir / "MLproject"] + [project_dir / "components" / step / "MLproject" for step in STEPS]


def test_entry_points_run_the_library_of_their_own_checkout(project_dir: Path, tmp_path: Path) -> None:
    """An MLproject command puts its checkout's src/ first on PYTHONPATH, so a release fetched
    by `mlflow run <git-uri> -v <tag>` runs its own trainflow, not the one installed here."""
    for number, path in enumerate(_mlprojects(project_dir)):
        command = yaml.safe_load(path.read_text())["entry_points"]["main"]["command"]
        prefix, _, _ = command.partition(" python ")
        checkout = tmp_path / f"checkout{number}"
        shutil.copytree(project_dir / "src" / "trainflow", checkout / "src" / "trainflow")
        workdir = checkout / path.parent.relative_to(project_dir)
        workdir.mkdir(parents=True, exist_ok=True)
        probe = f"{prefix} {sys.executable} -c 'import trainflow; print(trainflow.__file__)'"
        result = subprocess.run(["bash", "-c", probe], cwd=workdir, capture_output=True, text=True, check=True)
        assert Path(result.stdout.strip()).is_relative_to(checkout / "src"), (path, result.stdout)


def test_lock_file_agrees_with_pyproject(pyproject: dict, project_dir: Path) -> None:
    lines = [
        line
        for line in (project_dir / "requirements.lock").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    locked = _pins(lines)
    for name, pinned in _declared_pins(pyproject).items():
        assert name in locked, f"{name}: pinned {pinned} in pyproject, missing from requirements.lock"
        # pip freeze records the build's local label (torch 2.13.0+cpu); pyproject pins the release.
        assert Version(locked[name]).public == pinned, f"{name}: pyproject {pinned}, requirements.lock {locked[name]}"


def test_installed_extras_are_the_pinned_ones(pyproject: dict) -> None:
    """Every pinned package that is installed is the pinned version; extras (torch) may be absent."""
    for name, pinned in _declared_pins(pyproject).items():
        try:
            installed = version(name)
        except PackageNotFoundError:
            continue
        assert Version(installed).public == pinned, f"{name} {installed} installed, {pinned} pinned: run `make setup`"


def test_installed_versions_are_the_pinned_ones(pyproject: dict) -> None:
    for name, pinned in _pins(pyproject["project"]["dependencies"]).items():
        assert version(name) == pinned, f"{name} {version(name)} installed, {pinned} pinned: run `make setup`"
