"""One source of truth for versions: pyproject.toml's pins. Every conda.yml and the lock
file must agree with it, and the running environment must be the pinned one."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest
import yaml
from packaging.version import Version

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


def _declared_pins(pyproject: dict) -> dict[str, str]:
    """Runtime pins and every extra's (dev, torch)."""
    extras = pyproject["project"]["optional-dependencies"].values()
    return _pins(pyproject["project"]["dependencies"] + [requirement for extra in extras for requirement in extra])


def test_lock_file_agrees_with_pyproject(pyproject: dict, project_dir: Path) -> None:
    lines = [
        line for line in (project_dir / "requirements.lock").read_text().splitlines() if line and not line.startswith("#")
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
