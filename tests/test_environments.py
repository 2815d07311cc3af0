"""One source of truth for versions: pyproject.toml's pins. Every conda.yml and the lock
file must agree with it, and the running environment must be the pinned one."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml

from trainflow.steps import STEPS

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
    return Path(__file__).resolve().parents[1]


def _conda_files(project_dir: Path) -> list[Path]:
    return [project_dir / "conda.yml"] + [project_dir / "components" / step / "conda.yml" for step in STEPS]


def test_every_dependency_is_pinned(pyproject: dict) -> None:
    runtime = _pins(pyproject["project"]["dependencies"])
    dev = _pins(pyproject["project"]["optional-dependencies"]["dev"])
    assert {"mlflow", "hydra-core", "scikit-learn", "pandas"} <= set(runtime)
    assert "pytest" in dev


def test_conda_files_agree_with_pyproject(pyproject: dict, project_dir: Path) -> None:
    runtime = _pins(pyproject["project"]["dependencies"])
    python = pyproject["project"]["requires-python"].removeprefix("==").removesuffix(".*")
    for path in _conda_files(project_dir):
        spec = yaml.safe_load(path.read_text())
        dependencies = spec["dependencies"]
        assert f"python={python}" in dependencies, path
        pip_section = next(d["pip"] for d in dependencies if isinstance(d, dict) and "pip" in d)
        assert _pins(pip_section) == runtime, path


def test_lock_file_agrees_with_pyproject(pyproject: dict, project_dir: Path) -> None:
    lines = [
        line for line in (project_dir / "requirements.lock").read_text().splitlines() if line and not line.startswith("#")
    ]
    locked = _pins(lines)
    declared = _pins(pyproject["project"]["dependencies"] + pyproject["project"]["optional-dependencies"]["dev"])
    for name, pinned in declared.items():
        assert locked.get(name) == pinned, f"{name}: pyproject {pinned}, requirements.lock {locked.get(name)}"


def test_installed_versions_are_the_pinned_ones(pyproject: dict) -> None:
    for name, pinned in _pins(pyproject["project"]["dependencies"]).items():
        assert version(name) == pinned, f"{name} {version(name)} installed, {pinned} pinned: run `make setup`"
