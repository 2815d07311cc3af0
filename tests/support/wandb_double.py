"""A stand-in for the W&B server, for tests only.

The W&B server cannot be reached here (no account, no network), so this module plays
the part of the ``wandb`` SDK's network side: ``init``, ``Api``, ``Artifact`` and runs
that keep artifacts in a temporary folder and record every call a real W&B run would
receive. trainflow's W&B backend is exercised unchanged against it; only the server
is imitated. Behaviour mirrors W&B's documented semantics: versions v0, v1, ... per
artifact name, ``latest`` on the newest, an alias held by one version at a time,
``use_artifact`` recording lineage on the consuming run, ``link_artifact`` adding a
version to a W&B Registry collection (``wandb-registry-<registry>/<collection>``) once,
with ``latest`` on the newest link and each alias on one linked version at a time.
"""

from __future__ import annotations

import hashlib
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Entry:
    digest: str
    size: int


@dataclass
class Link:
    """A version linked to a W&B Registry collection: the source version and its aliases there."""

    source: str
    aliases: list[str] = field(default_factory=list)


@dataclass
class Manifest:
    entries: dict[str, Entry] = field(default_factory=dict)


class FakeArtifact:
    def __init__(self, server: FakeServer, name: str, type: str, description: str = "", metadata: dict | None = None):
        self._server = server
        self._collection = name
        self.type = type
        self.description = description
        self.metadata = dict(metadata or {})
        self.aliases: list[str] = []
        self.manifest = Manifest()
        self._files: dict[str, Path] = {}
        self.version: str | None = None
        self._producer: FakeRun | None = None
        self.created_at = "2026-01-01T00:00:00"

    @property
    def name(self) -> str:
        return f"{self._collection}:{self.version}" if self.version else self._collection

    @property
    def digest(self) -> str:
        lines = "\n".join(f"{p}:{e.digest}" for p, e in sorted(self.manifest.entries.items()))
        return hashlib.md5(lines.encode()).hexdigest()

    @property
    def size(self) -> int:
        return sum(e.size for e in self.manifest.entries.values())

    def add_file(self, local_path: str, name: str | None = None) -> None:
        self._server.calls.append(("add_file", self._collection, local_path))
        self._add(Path(local_path), name or Path(local_path).name)

    def add_dir(self, local_path: str, name: str | None = None) -> None:
        self._server.calls.append(("add_dir", self._collection, local_path))
        root = Path(local_path)
        for path in sorted(root.rglob("*")):
            if path.is_file():
                self._add(path, path.relative_to(root).as_posix())

    def _add(self, path: Path, name: str) -> None:
        data = path.read_bytes()
        stored = self._server.blobs / hashlib.sha256(data).hexdigest()
        stored.write_bytes(data)
        self._files[name] = stored
        self.manifest.entries[name] = Entry(hashlib.md5(data).hexdigest(), len(data))

    def wait(self, timeout: int | None = None) -> FakeArtifact:
        self._server.calls.append(("wait", self.name))
        return self

    def download(self, root: str | None = None) -> str:
        self._server.calls.append(("download", self.name))
        target = Path(root or self._server.root / "downloads" / self.name.replace(":", "-"))
        target.mkdir(parents=True, exist_ok=True)
        for name, stored in self._files.items():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(stored, target / name)
        return str(target)

    def save(self) -> None:
        self._server.calls.append(("save", self.name, tuple(self.aliases)))
        self._server.claim_aliases(self)

    def logged_by(self) -> FakeRun | None:
        return self._producer


class FakeRun:
    def __init__(self, server: FakeServer, job_type: str | None, config: dict | None, mode: str, group: str | None):
        self._server = server
        self.id = uuid.uuid4().hex[:8]
        self.job_type = job_type
        self.group = group
        self.mode = mode
        self.config = FakeConfig(config or {})
        self.summary: dict[str, Any] = {}
        self.logged: list[dict] = []
        self.exit_code: int | None = None
        self._used: list[FakeArtifact] = []

    def use_artifact(self, name: str) -> FakeArtifact:
        self._server.calls.append(("use_artifact", self.id, name))
        if self.mode == "offline":
            raise TypeError("Cannot use artifact when in offline mode.")
        artifact = self._server.resolve(name)
        self._used.append(artifact)
        return artifact

    def used_artifacts(self) -> list[FakeArtifact]:
        return list(self._used)

    def log_artifact(self, artifact: FakeArtifact, aliases: list[str] | None = None) -> FakeArtifact:
        self._server.calls.append(("log_artifact", self.id, artifact._collection, tuple(aliases or ())))
        return self._server.commit(artifact, self, list(aliases or []))

    def log(self, data: dict) -> None:
        self.logged.append(data)

    def link_artifact(self, artifact: FakeArtifact, target_path: str, aliases: list[str] | None = None) -> FakeArtifact:
        self._server.calls.append(("link_artifact", self.id, artifact.name, target_path, tuple(aliases or ())))
        if self.mode == "offline":
            raise NotImplementedError  # as wandb.Run.link_artifact in offline mode
        if self._server.fail_link is not None:
            raise self._server.fail_link
        if not artifact.version:
            raise ValueError("link_artifact of an artifact that was never logged")  # trainflow links logged versions
        return self._server.link(artifact, target_path, list(aliases or []))

    def finish(self, exit_code: int | None = None) -> None:
        self._server.calls.append(("finish", self.id, exit_code))
        self.exit_code = exit_code


class FakeConfig(dict):
    def update(self, values: dict, allow_val_change: bool = False) -> None:  # type: ignore[override]
        super().update(values)


class FakeApi:
    def __init__(self, server: FakeServer, timeout: int | None = None):
        self._server = server

    def artifact(self, name: str, type: str | None = None) -> FakeArtifact:
        return self._server.resolve(name.split("/")[-1])

    def artifacts(self, type_name: str, name: str) -> list[FakeArtifact]:
        return list(self._server.collections.get(name.split("/")[-1], []))


class FakeServer:
    """What the ``wandb`` module offers trainflow, backed by a folder: pass it as ``sdk``."""

    def __init__(self, root: Path, fail_init: Exception | None = None):
        self.root = root
        self.blobs = root / "blobs"
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.collections: dict[str, list[FakeArtifact]] = {}
        self.calls: list[tuple] = []
        self.runs: list[FakeRun] = []
        self.fail_init = fail_init
        # W&B Registry collections by target path: each linked version ("name:vN") and its aliases
        self.registry: dict[str, list[Link]] = {}
        self.fail_link: Exception | None = None  # set to make every link_artifact raise it

    # the wandb module's surface
    def init(
        self,
        project: str | None = None,
        entity: str | None = None,
        group: str | None = None,
        job_type: str | None = None,
        config: dict | None = None,
        mode: str = "online",
        **_: Any,
    ) -> FakeRun:
        self.calls.append(("init", project, entity, group, job_type, mode))
        if self.fail_init is not None:
            raise self.fail_init
        run = FakeRun(self, job_type, config, mode, group)
        self.runs.append(run)
        return run

    def Settings(self, **kwargs: Any) -> dict:  # noqa: N802 - mirrors wandb.Settings
        return kwargs

    def Api(self, timeout: int | None = None) -> FakeApi:  # noqa: N802 - mirrors wandb.Api
        return FakeApi(self, timeout)

    def Artifact(self, name: str, type: str, description: str = "", metadata: dict | None = None) -> FakeArtifact:  # noqa: N802
        return FakeArtifact(self, name, type, description, metadata)

    # server-side behaviour
    def commit(self, artifact: FakeArtifact, run: FakeRun, aliases: list[str]) -> FakeArtifact:
        versions = self.collections.setdefault(artifact._collection, [])
        artifact.version = f"v{len(versions)}"
        artifact._producer = run
        versions.append(artifact)
        artifact.aliases = list(dict.fromkeys(["latest", *aliases]))
        self.claim_aliases(artifact)
        return artifact

    def claim_aliases(self, artifact: FakeArtifact) -> None:
        for other in self.collections.get(artifact._collection, []):
            if other is not artifact:
                other.aliases = [a for a in other.aliases if a not in artifact.aliases]

    def link(self, artifact: FakeArtifact, target_path: str, aliases: list[str]) -> FakeArtifact:
        # W&B also links to a project's collections; trainflow links only to registries, so any other path is a bug
        if not target_path.startswith("wandb-registry-") or target_path.count("/") != 1:
            raise ValueError(f"invalid registry path {target_path!r}: expected wandb-registry-<registry>/<collection>")
        links = self.registry.setdefault(target_path, [])
        link = next((found for found in links if found.source == artifact.name), None)
        if link is None:  # a version is linked to a collection once; linking it again adds aliases
            link = Link(artifact.name)
            links.append(link)
        link.aliases = list(dict.fromkeys([*link.aliases, *aliases]))
        for other in links:
            other.aliases = [a for a in other.aliases if a != "latest" and (other is link or a not in aliases)]
        links[-1].aliases.insert(0, "latest")
        return artifact

    def resolve(self, ref: str) -> FakeArtifact:
        name, _, selector = ref.partition(":")
        selector = selector or "latest"
        for artifact in self.collections.get(name, []):
            if artifact.version == selector or selector in artifact.aliases:
                return artifact
        raise ValueError(f"artifact '{ref}' not found")
