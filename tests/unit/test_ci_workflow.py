"""The GitHub Actions workflow users copy: it parses, and every make target, step and
component it names exists, so a rename here cannot silently break users' CI."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import pytest
import yaml
from support.project import PROJECT_DIR

from trainflow.pipeline.steps import STEPS

WORKFLOW = Path(".github") / "workflows" / "ci.yml"


@pytest.fixture(scope="module")
def workflow() -> dict:
    return yaml.safe_load((PROJECT_DIR / WORKFLOW).read_text())


def _commands(job: dict) -> list[list[str]]:
    """Every shell command of a job's `run:` steps, split into words."""
    commands = []
    for step in job["steps"]:
        for line in step.get("run", "").replace("\\\n", " ").splitlines():
            if line.strip():
                commands.append(shlex.split(line))
    return commands


def _make_targets(project_dir: Path) -> set[str]:
    return set(re.findall(r"^([\w-]+):", (project_dir / "Makefile").read_text(), re.MULTILINE))


def test_the_workflow_runs_the_test_suite_on_the_pinned_python(workflow: dict, project_dir: Path) -> None:
    # YAML 1.1 reads the key `on` as True.
    assert {"push", "pull_request"} <= set(workflow.get("on") or workflow[True])
    test = workflow["jobs"]["test"]
    assert ["make", "test"] in _commands(test)
    minor = tomllib.loads((project_dir / "pyproject.toml").read_text())["project"]["requires-python"]
    python = next(s["with"]["python-version"] for s in test["steps"] if "setup-python" in s.get("uses", ""))
    assert minor == f"=={python}.*"


def test_every_make_target_step_and_component_named_exists(workflow: dict, project_dir: Path) -> None:
    targets = _make_targets(project_dir)
    named_steps: list[str] = []
    for name, job in workflow["jobs"].items():
        assert job.get("timeout-minutes", 360) <= 60, name
        for words in _commands(job):
            if words[0] == "make":
                assert set(words[1:]) <= targets, (name, words)
            if words[:2] == ["mlflow", "run"]:
                project = words[2]
                assert project == "." or (project_dir / project / "MLproject").is_file(), (name, words)
                named_steps += [
                    step
                    for flag, value in zip(words, words[1:])
                    if flag == "-P" and value.startswith("steps=")
                    for step in value.removeprefix("steps=").split(",")
                ]
    assert set(named_steps) <= set(STEPS)
    # The example job exercises single steps, test_model among them, as users' CI would.
    assert "test_model" in named_steps and "promote_model" in named_steps
