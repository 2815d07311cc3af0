"""Where the components come from: ``main.components_repository`` and ``main.components_version``."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from trainflow.config.components import CONFIG_DIR_ENV, ComponentSource, is_repository_uri, prepare_steps
from trainflow.config.schema import load_config, resolve_paths
from trainflow.errors import ConfigError
from trainflow.pipeline.steps import STEPS


@pytest.mark.parametrize(
    "location",
    [
        "https://github.com/my-org/trainflow.git#components",
        "git://127.0.0.1/trainflow",
        "file:///srv/trainflow",
        "ssh://git@host/org/trainflow.git",
        "git@github.com:my-org/trainflow.git",
    ],
)
def test_repository_uris_are_told_from_folders(location: str) -> None:
    assert is_repository_uri(location)


@pytest.mark.parametrize("location", ["components", "../shared/components", "/abs/components", "~/components"])
def test_folders_are_not_repositories(location: str) -> None:
    assert not is_repository_uri(location)


def test_a_folder_gives_each_step_its_subfolder(project_dir: Path) -> None:
    source = ComponentSource(str(project_dir / "components"))
    source.check(STEPS)
    assert source.uri("train_model") == str(project_dir / "components" / "train_model")


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ("https://example.org/trainflow.git#components", "https://example.org/trainflow.git#components/train_model"),
        (
            "https://example.org/trainflow.git#shared/steps/",
            "https://example.org/trainflow.git#shared/steps/train_model",
        ),
        ("https://example.org/trainflow.git", "https://example.org/trainflow.git#components/train_model"),
    ],
)
def test_a_repository_gives_each_step_a_subdirectory_uri(location: str, expected: str) -> None:
    source = ComponentSource(location, "v1.0.0")
    source.check(STEPS)  # nothing to check locally
    assert source.uri("train_model") == expected


def test_a_folder_without_a_step_fails_naming_it(tmp_path: Path) -> None:
    (tmp_path / "fetch_data").mkdir()
    (tmp_path / "fetch_data" / "MLproject").write_text("name: fetch_data\n")
    with pytest.raises(ConfigError, match=r"no MLproject for step\(s\) split_data under .*main.components_repository"):
        ComponentSource(str(tmp_path)).check(["fetch_data", "split_data"])


def test_a_version_needs_a_repository(project_dir: Path) -> None:
    with pytest.raises(ConfigError, match="main.components_version='v1' needs a git repository"):
        ComponentSource(str(project_dir / "components"), "v1").check(STEPS)


def test_a_file_uri_naming_an_existing_folder_cannot_take_a_version(tmp_path: Path) -> None:
    """MLflow would `git init` inside the bare repository; the error says what works instead."""
    bare = tmp_path / "trainflow.git"
    bare.mkdir()
    with pytest.raises(
        ConfigError, match=rf"without its .git suffix \(file://{re.escape(str(tmp_path))}/trainflow, git finds"
    ):
        ComponentSource(f"file://{bare}#components", "v1").check(STEPS)
    ComponentSource(f"file://{tmp_path}/trainflow#components", "v1").check(STEPS)


def test_config_keeps_a_repository_and_resolves_a_folder(project_dir: Path) -> None:
    default = resolve_paths(load_config(project_dir), project_dir)
    assert default.main.components_repository == str(project_dir / "components")
    assert default.main.components_version is None
    uri = "https://example.org/trainflow.git#components"  # Hydra needs the quotes for # and :
    pinned = resolve_paths(
        load_config(project_dir, [f"main.components_repository='{uri}'", "main.components_version=v1.0.0"]), project_dir
    )
    assert (pinned.main.components_repository, pinned.main.components_version) == (uri, "v1.0.0")


def test_steps_inherit_the_config_folder_and_uv_compiles_bytecode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in (CONFIG_DIR_ENV, "UV_COMPILE_BYTECODE"):
        monkeypatch.setenv(name, "")  # so that monkeypatch restores them after prepare_steps sets them
        monkeypatch.delenv(name)
    prepare_steps(tmp_path, "virtualenv")  # pip compiles bytecode on its own
    assert os.environ[CONFIG_DIR_ENV] == str(tmp_path) and "UV_COMPILE_BYTECODE" not in os.environ
    monkeypatch.setenv("UV_COMPILE_BYTECODE", "0")  # a user's choice stands
    prepare_steps(tmp_path, "uv")
    assert os.environ["UV_COMPILE_BYTECODE"] == "0"
    monkeypatch.delenv("UV_COMPILE_BYTECODE")
    prepare_steps(tmp_path, "uv")
    assert os.environ["UV_COMPILE_BYTECODE"] == "1"
