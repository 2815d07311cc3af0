"""The records the artifact stores take and return: versions, their files, the runs that
made them, promotion and step-cache entries, and what ``verify`` found."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class PromotionEntry:
    """One promotion decision or rollback, as the history keeps it."""

    id: int
    name: str
    alias: str
    action: str  # promote | rollback
    outcome: str  # promoted | champion_kept | refused | rolled_back
    candidate: str | None  # the version considered (name:vN)
    before: str | None  # the alias's holder before
    after: str | None  # the alias's holder after
    run_id: str | None
    actor: str
    details: dict[str, Any]  # metrics, criteria, policy, registry
    at: str


@dataclass(frozen=True)
class CachedRun:
    """A successful step run recorded under its cache key (trainflow.pipeline.cache)."""

    step: str
    key: str
    run_id: str
    outputs: dict[str, str]  # artifact name -> the exact version the run logged (name:vN)
    parts: dict[str, Any]  # what the key was made of
    created_at: str


@dataclass(frozen=True)
class StoredFile:
    path: str
    sha256: str
    size: int


@dataclass(frozen=True)
class NewVersion:
    """A file or directory to store as the next version of ``name`` (see ``log_artifacts``)."""

    path: Path
    name: str
    type: str
    description: str = ""
    metadata: Mapping[str, Any] | None = None
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class RunRecord:
    """The step run that produced or consumed versions."""

    run_id: str
    step: str
    git_commit: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)


# The metadata key of a model_export version naming the MLflow LoggedModel train_model logged it as.
MLFLOW_MODEL_ID = "mlflow_model_id"


@dataclass(frozen=True)
class ArtifactVersion:
    name: str  # within its project: raw_data, model_export, ...
    version: int
    type: str
    kind: str
    digest: str
    size: int
    description: str
    metadata: dict[str, Any]
    aliases: tuple[str, ...]
    created_at: str
    run: RunRecord | None
    files: tuple[StoredFile, ...]
    project: str | None = None  # None: a store without projects (or W&B, whose project is the API's)

    @property
    def ref(self) -> str:
        """``name:vN``: the reference within its project, as configs and steps use it."""
        return f"{self.name}:v{self.version}"

    @property
    def qualified_name(self) -> str:
        """``project/name`` (``name`` without a project): the name the index keeps."""
        return f"{self.project}/{self.name}" if self.project else self.name

    def as_record(self) -> dict[str, Any]:
        """Every field as plain JSON-ready values, and its ``ref`` (``--json`` output)."""
        return {"ref": self.ref, **dataclasses.asdict(self)}


@dataclass
class VerifyReport:
    """What :meth:`LocalArtifactStore.verify` found: ``problems`` are damage (a missing or
    modified blob, an index that contradicts itself); orphans and stale temporary files
    are only garbage a killed writer left, removed by ``repair``."""

    versions: int = 0
    blobs: int = 0
    bytes_checked: int = 0
    problems: list[str] = field(default_factory=list)
    orphans: list[Path] = field(default_factory=list)
    recent_orphans: list[Path] = field(default_factory=list)
    stale_tmp: list[Path] = field(default_factory=list)
    removed: list[Path] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems
