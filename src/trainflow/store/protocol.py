"""``ArtifactStore``: the calls a step makes on its artifact backend, which the local store
(:class:`~trainflow.store.local.LocalArtifactStore`) and the W&B backend
(:class:`~trainflow.store.wandb_backend.WandbArtifactStore`) both implement."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from trainflow.store.records import ArtifactVersion, NewVersion, PromotionEntry, RunRecord


class ArtifactStore(Protocol):
    """An artifact backend as a step sees it (``StepRun.store``). Only what both backends
    implement with the same parameters belongs here; the local store's other calls (the
    step cache, ``verify``, the promotion history) stay its own. ``tests/unit/test_store_protocol.py``
    checks both classes against this list."""

    def get(self, ref: str) -> ArtifactVersion:
        """The version ``ref`` (``name``, ``name:vN``, ``name:alias``) resolves to;
        :class:`~trainflow.errors.ArtifactNotFound` if none."""
        ...

    def list_versions(self, name: str) -> list[ArtifactVersion]:
        """Every version of ``name``, oldest first."""
        ...

    def inputs_of(self, version: ArtifactVersion) -> list[ArtifactVersion]:
        """The versions the run that produced ``version`` consumed (one step of its lineage)."""
        ...

    # ``run`` is required here though the W&B backend's is optional: a step always has one.
    def record_usage(self, ref: str, run: RunRecord) -> ArtifactVersion:
        """Resolve ``ref`` and record that ``run`` consumed it."""
        ...

    def use_artifact(self, ref: str, run: RunRecord | None = None) -> Path:
        """Resolve ``ref`` (recording the usage when ``run`` is given) and return its files:
        the file for an artifact logged from a file, else the directory."""
        ...

    def log_artifact(
        self,
        path: str | os.PathLike[str],
        name: str,
        type: str,
        description: str = "",
        metadata: Mapping[str, Any] | None = None,
        aliases: Sequence[str] = (),
        run: RunRecord | None = None,
    ) -> ArtifactVersion:
        """Store a file or directory as the next version of ``name``; ``latest`` and ``aliases`` move to it."""
        ...

    def log_artifacts(self, versions: Sequence[NewVersion], run: RunRecord | None = None) -> list[ArtifactVersion]:
        """Store several new versions (atomically in the local store; one by one on W&B)."""
        ...

    def set_alias(self, ref: str, alias: str, run_id: str | None = None) -> ArtifactVersion:
        """Point ``alias`` at the version ``ref`` resolves to; a gated alias (``prod``) is refused."""
        ...

    def claim_alias(self, ref: str, alias: str, run_id: str | None = None) -> tuple[ArtifactVersion, bool]:
        """Point ``alias`` at ``ref`` only if no version of that name holds it yet; the holder
        afterwards and whether this call set it."""
        ...

    def update_metadata(self, ref: str, updates: Mapping[str, Any]) -> ArtifactVersion:
        """Merge ``updates`` into a version's metadata (top-level keys are replaced)."""
        ...

    def record_promotion(
        self,
        name: str,
        alias: str,
        action: str,
        outcome: str,
        candidate: str | None,
        details: Mapping[str, Any],
        actor: str,
        move: bool = False,
        expected: str | None = None,
        run: RunRecord | None = None,
    ) -> PromotionEntry:
        """Record a promotion decision; with ``move``, point ``alias`` at ``candidate`` if it
        still names ``expected`` (:class:`~trainflow.errors.ChampionChanged` otherwise)."""
        ...
