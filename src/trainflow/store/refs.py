"""Artifact names, references (``name``, ``name:vN``, ``name:alias``) and aliases, and their
validation: pure functions on strings, no index and no files."""

from __future__ import annotations

import re
from dataclasses import dataclass

from trainflow.errors import TrainflowError

LATEST = "latest"
# The model test_model and promote_model take by default (test.model, promote.model):
# train_model nominates every model it trains outside a sweep; a sweep nominates its best.
CANDIDATE_ALIAS = "candidate"
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
# A project (trainflow's, like a W&B project) groups the artifacts of one table and target.
_PROJECT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_ALIAS_RE = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")
_VERSION_RE = re.compile(r"v(\d+)")


@dataclass(frozen=True)
class ArtifactRef:
    """A parsed reference: ``name`` plus either a version number or an alias."""

    name: str
    version: int | None = None
    alias: str | None = None

    def __str__(self) -> str:
        return f"{self.name}:v{self.version}" if self.version is not None else f"{self.name}:{self.alias}"


def validate_name(name: str) -> str:
    """An artifact name, optionally qualified by its project: ``name`` or ``project/name``."""
    project, _, short = name.rpartition("/")
    if not _NAME_RE.fullmatch(short) or ".." in name or (project and not _PROJECT_RE.fullmatch(project)):
        raise TrainflowError(
            f"invalid artifact name {name!r}: use letters, digits, '.', '_' and '-' "
            "(no '..', at most 128 characters), optionally after a project and '/', e.g. "
            "'trainval_data.parquet' or 'penguins-species/trainval_data.parquet'"
        )
    return name


def validate_project(project: str) -> str:
    if not _PROJECT_RE.fullmatch(project) or ".." in project:
        raise TrainflowError(
            f"invalid project name {project!r}: use letters, digits, '.', '_' and '-' (at most 64 characters), "
            "e.g. project=churn"
        )
    return project


def validate_alias(alias: str) -> str:
    if not _ALIAS_RE.fullmatch(alias) or _VERSION_RE.fullmatch(alias) or ".." in alias:
        raise TrainflowError(
            f"invalid alias {alias!r}: an alias starts with a letter, uses letters, digits, "
            "'.', '_' and '-', and cannot look like a version (v0, v1, ...), e.g. 'prod'"
        )
    return alias


def check_settable(alias: str) -> None:
    """An alias a caller may move: valid, and not ``latest``, which the store moves itself."""
    if alias == LATEST:
        raise TrainflowError(
            "'latest' is managed by the store: it names the version a step logged (or re-used from the cache) last"
        )
    validate_alias(alias)


def gated_alias_message(name: str, alias: str, ref: str) -> str:
    """Why ``alias`` cannot be set by hand, and the commands that do move it."""
    return (
        f"{name}:{alias} is moved only by the promotion gate: promote {ref} with "
        f'`mlflow run . -P steps=promote_model -P hydra_options="promote.model={ref} promote.alias={alias}"` '
        f"(promote.force=true skips the comparison with the champion), or go back with `trainflow rollback --alias {alias}`"
    )


def parse_ref(ref: str) -> ArtifactRef:
    """Parse ``name``, ``name:vN`` or ``name:alias``; a bare name means ``name:latest``."""
    name, sep, selector = ref.strip().partition(":")
    validate_name(name)
    if not sep:
        return ArtifactRef(name, alias=LATEST)
    match = _VERSION_RE.fullmatch(selector)
    if match:
        return ArtifactRef(name, version=int(match.group(1)))
    return ArtifactRef(name, alias=validate_alias(selector))
