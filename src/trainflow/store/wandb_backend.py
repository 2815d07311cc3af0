"""The W&B backend of the artifact API: the calls of :class:`~trainflow.store.protocol.ArtifactStore`
(as :class:`LocalArtifactStore` has them), served by Weights & Biases artifacts through the
real ``wandb`` SDK.

Each step opens one W&B run (``job_type`` = the step); inputs go through
``run.use_artifact`` (so W&B records lineage), outputs through ``wandb.Artifact`` +
``run.log_artifact`` followed by ``artifact.wait()`` before the step's temporary files
go away. Aliases (``latest``, ``prod``, ``reference``) are W&B aliases; promote_model also
links the version it promotes into a W&B Registry collection (``link_to_registry``).

W&B offline mode cannot consume artifacts (``use_artifact`` raises "Cannot use artifact
when in offline mode"), which is why the local store is the default without an account.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import netrc
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from trainflow.errors import ArtifactNotFound, ChampionChanged, TrainflowError
from trainflow.store.local import LocalArtifactStore
from trainflow.store.protocol import ArtifactStore
from trainflow.store.records import ArtifactVersion, NewVersion, PromotionEntry, RunRecord, StoredFile
from trainflow.store.refs import check_settable, gated_alias_message, parse_ref, validate_alias, validate_name

log = logging.getLogger(__name__)

# wandb is imported inside the functions that use it: about 0.3 s that the trainflow CLI, `python main.py --help`
# and every step on the local backend do not pay (docs/architecture.md#start-up).

_VERSION = re.compile(r"v(\d+)")
# A W&B Registry collection's path is wandb-registry-<registry>/<collection> (wandb.Run.link_artifact)
REGISTRY_PREFIX = "wandb-registry-"
# Set by the pipeline once it has said which backend it uses, so steps do not repeat it.
ANNOUNCED_ENV = "TRAINFLOW_BACKEND_ANNOUNCED"


def credentials_configured() -> bool:
    """Whether W&B would authenticate: ``WANDB_API_KEY`` or a netrc entry for the W&B host."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").split("://")[-1].split("/")[0]
    path = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return netrc.netrc(str(path)).authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def choose_backend(configured: str) -> tuple[str, str]:
    """``(backend, reason)`` for ``artifacts.backend`` = local | wandb | auto."""
    if configured != "auto":
        return configured, f"artifacts.backend={configured}"
    mode = os.environ.get("WANDB_MODE", "").lower()
    if mode in ("offline", "disabled", "dryrun"):
        return "local", f"WANDB_MODE={mode}: W&B offline runs cannot consume artifacts"
    if not credentials_configured():
        return "local", "no W&B credentials (WANDB_API_KEY or a `wandb login` netrc entry)"
    return "wandb", "W&B credentials found and WANDB_MODE is not offline"


def open_api(sdk: Any, timeout: int, instead: str = "use artifacts.backend=local") -> Any:
    """``wandb.Api``, whose construction already authenticates: a missing key or an
    unreachable server is one line saying what to fix, as for a step's ``wandb.init``."""
    try:
        return sdk.Api(timeout=timeout)
    except Exception as error:  # UsageError, AuthenticationError, CommError: all mean the same here
        first = str(error).splitlines()[0] if str(error) else error.__class__.__name__
        raise TrainflowError(
            f"cannot reach W&B ({first}): check WANDB_API_KEY or `wandb login`, WANDB_BASE_URL and the network, "
            f"or {instead}"
        ) from None


class WandbArtifactStore:
    """Artifacts in a W&B project, seen through the local store's API.

    ``run`` is the step's W&B run (None for read-only use, e.g. the CLI); ``api`` a
    ``wandb.Api``; ``sdk`` the ``wandb`` module (tests pass a stand-in for the W&B server).
    """

    def __init__(
        self, sdk: Any, api: Any, project: str, entity: str | None, run: Any = None, download_root: Path | None = None
    ) -> None:
        self.sdk, self.api, self.run = sdk, api, run
        self.project, self.entity = project, entity
        self.root = Path(download_root or Path.cwd() / ".trainflow" / "wandb")

    def _path(self, ref: str) -> str:
        parsed = parse_ref(ref)
        prefix = f"{self.entity}/{self.project}" if self.entity else self.project
        return f"{prefix}/{parsed}"

    def _artifact(self, ref: str) -> Any:
        try:
            return self.api.artifact(self._path(ref))
        except Exception as error:  # the SDK raises CommError/ValueError subclasses by version
            raise ArtifactNotFound(
                f"{ref} does not resolve in W&B project {self.project}: {str(error).splitlines()[0]}; "
                "check the name and alias in the W&B UI or with `trainflow artifacts list`"
            ) from None

    def _require_run(self) -> Any:
        if self.run is None:
            raise TrainflowError("this W&B operation needs a step run; run it inside a component")
        return self.run

    @staticmethod
    def _version(artifact: Any) -> ArtifactVersion:
        name = artifact.name.split(":")[0]
        match = _VERSION.fullmatch(str(artifact.version))
        producer = artifact.logged_by()
        run = None
        if producer is not None:
            config = dict(getattr(producer, "config", {}) or {})
            run = RunRecord(producer.id, producer.job_type or "", config.get("git_commit"), config)
        files = tuple(
            StoredFile(path, str(entry.digest), int(entry.size or 0))
            for path, entry in sorted(artifact.manifest.entries.items())
        )
        return ArtifactVersion(
            name=name,
            version=int(match.group(1)) if match else -1,
            type=artifact.type,
            kind="file" if len(files) == 1 and artifact.metadata.get("trainflow_kind") == "file" else "dir",
            digest=artifact.digest,
            size=int(artifact.size or 0),
            description=artifact.description or "",
            metadata={k: v for k, v in dict(artifact.metadata).items() if k != "trainflow_kind"},
            aliases=tuple(sorted(artifact.aliases)),
            created_at=str(artifact.created_at),
            run=run,
            files=files,
        )

    def get(self, ref: str) -> ArtifactVersion:
        return self._version(self._artifact(ref))

    def _use(self, ref: str) -> Any:
        """``run.use_artifact``: W&B records that this run consumed the version (lineage)."""
        try:
            return self._require_run().use_artifact(str(parse_ref(ref)))
        except TrainflowError:
            raise
        except Exception as error:  # the SDK raises CommError, ValueError or TypeError by cause
            raise ArtifactNotFound(
                f"{ref} cannot be used from W&B project {self.project}: {str(error).splitlines()[0]}"
            ) from None

    def record_usage(self, ref: str, run: RunRecord | None = None) -> ArtifactVersion:
        return self._version(self._use(ref))

    def use_artifact(self, ref: str, run: RunRecord | None = None) -> Path:
        artifact = self._use(ref) if self.run is not None else self._artifact(ref)
        version = self._version(artifact)
        target = self.root / version.name / f"v{version.version}"
        directory = Path(artifact.download(root=str(target)))
        return directory / version.files[0].path if version.kind == "file" else directory

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
        validate_name(name)
        for alias in aliases:
            validate_alias(alias)
        path = Path(path)
        kind = "file" if path.is_file() else "dir"
        artifact = self.sdk.Artifact(
            name, type=type, description=description, metadata={**dict(metadata or {}), "trainflow_kind": kind}
        )
        if kind == "file":
            artifact.add_file(str(path))
        elif path.is_dir():
            artifact.add_dir(str(path))
        else:
            raise TrainflowError(f"cannot log {path}: no such file or directory")
        logged = self._require_run().log_artifact(artifact, aliases=["latest", *aliases])
        logged.wait()  # the upload must finish before the step's temporary files go away
        return self._version(logged)

    def log_artifacts(self, versions: Sequence[NewVersion], run: RunRecord | None = None) -> list[ArtifactVersion]:
        """Each in turn: W&B has no transaction spanning artifacts, so an interrupted step
        can leave the first logged (the local store's ``log_artifacts`` cannot)."""
        return [
            self.log_artifact(new.path, new.name, new.type, new.description, new.metadata, new.aliases, run)
            for new in versions
        ]

    def set_alias(self, ref: str, alias: str, run_id: str | None = None) -> ArtifactVersion:
        """As the local store's: ``latest`` is W&B's own, and an alias the promotion gate
        decided about (a ``promotions`` entry on its holder) moves only through the gate."""
        check_settable(alias)
        artifact = self._artifact(ref)
        name = artifact.name.split(":")[0]
        try:
            holder = self.get(f"{name}:{alias}")
        except ArtifactNotFound:
            holder = None
        if holder is not None and any(
            isinstance(e, Mapping) and e.get("alias") == alias for e in holder.metadata.get("promotions") or []
        ):
            raise TrainflowError(gated_alias_message(name, alias, ref))
        return self._move_alias(artifact, alias)

    def _move_alias(self, artifact: Any, alias: str) -> ArtifactVersion:
        if alias not in artifact.aliases:
            artifact.aliases.append(alias)  # W&B moves the alias off any other version
            artifact.save()
        return self._version(artifact)

    def claim_alias(self, ref: str, alias: str, run_id: str | None = None) -> tuple[ArtifactVersion, bool]:
        """Point ``alias`` at ``ref`` only if no version of that name has it yet.

        W&B has no compare-and-set on aliases, so two writers racing for a first
        ``reference`` could both set it; the later one wins, as in the W&B UI.
        """
        name = parse_ref(ref).name
        try:
            return self.get(f"{name}:{alias}"), False
        except ArtifactNotFound:
            return self.set_alias(ref, alias, run_id), True

    def update_metadata(self, ref: str, updates: Mapping[str, Any]) -> ArtifactVersion:
        artifact = self._artifact(ref)
        artifact.metadata.update(dict(updates))
        artifact.save()
        return self._version(artifact)

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
        """The local store's promotion record, on W&B: with ``move``, point ``alias`` at
        ``candidate`` only if it still names ``expected``; keep the decision in the
        candidate's metadata (``promotions``), where the W&B UI shows it. The history
        commands (`trainflow promotions`, `rollback`) read the local store only.
        """
        try:
            before: str | None = self.get(f"{name}:{alias}").ref
        except ArtifactNotFound:
            before = None
        after = before
        if move and candidate:
            if before != expected:
                raise ChampionChanged(
                    f"{name}:{alias} is {before or 'unset'}, not {expected or 'unset'} as the decision assumed: "
                    "another promotion moved it meanwhile; re-run promote_model"
                )
            after = self._move_alias(self._artifact(candidate), alias).ref
        entry = PromotionEntry(
            id=0,
            name=name,
            alias=alias,
            action=action,
            outcome=outcome,
            candidate=candidate,
            before=before,
            after=after,
            run_id=run.run_id if run else None,
            actor=actor,
            details=dict(details),
            at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        )
        if candidate:
            history = list(self.get(candidate).metadata.get("promotions") or [])
            self.update_metadata(candidate, {"promotions": [*history, dataclasses.asdict(entry)]})
        return entry

    def link_to_registry(self, ref: str, target_path: str, aliases: Sequence[str]) -> None:
        """Link version ``ref`` to the W&B Registry collection ``target_path`` (see
        :func:`registry_path`) with ``aliases``, through the step's run
        (``run.link_artifact``): W&B adds the version to the collection without copying it,
        and moves each alias off the collection's other versions. Any failure is one
        :class:`TrainflowError` saying how to link it by hand."""
        run = self._require_run()
        artifact = self._artifact(ref)
        try:
            run.link_artifact(artifact, target_path, aliases=list(aliases))
        except Exception as error:  # CommError, ValueError, NotImplementedError (offline): all mean the same here
            first = str(error).splitlines()[0] if str(error) else error.__class__.__name__
            raise TrainflowError(
                f"cannot link {ref} to the W&B Registry collection {target_path} ({first}); link it in the W&B UI "
                f"(the version's 'Link to registry'), or with: python -c \"import wandb; "
                f"wandb.Api().artifact('{self._path(ref)}').link('{target_path}', aliases={list(aliases)!r})\""
            ) from None

    def inputs_of(self, version: ArtifactVersion) -> list[ArtifactVersion]:
        producer = self._artifact(version.ref).logged_by()
        return [] if producer is None else [self._version(a) for a in producer.used_artifacts()]

    def list_versions(self, name: str) -> list[ArtifactVersion]:
        validate_name(name)
        latest = self.get(f"{name}:latest")
        prefix = f"{self.entity}/{self.project}" if self.entity else self.project
        versions = [self._version(a) for a in self.api.artifacts(latest.type, f"{prefix}/{name}")]
        return sorted(versions, key=lambda v: v.version)


def registry_path(registry: str, collection: str) -> str:
    """The W&B Registry collection ``collection`` of registry ``registry`` (``model`` is
    W&B's own registry of models): ``wandb-registry-model/penguins-species``."""
    return f"{REGISTRY_PREFIX}{registry.removeprefix(REGISTRY_PREFIX)}/{collection}"


@contextlib.contextmanager
def step_backend(
    cfg: Any, step: str, params: Mapping[str, Any], local: LocalArtifactStore, sdk: Any = None
) -> Iterator[tuple[ArtifactStore, Any]]:
    """``(artifact store, W&B run or None)`` for one step, per ``artifacts.backend``.

    With W&B: ``wandb.init(project, entity, group, job_type=step, config=params)``
    (bounded by ``wandb.timeout_seconds``), artifacts through :class:`WandbArtifactStore`,
    and ``run.finish`` on every exit path, with exit code 1 when the step failed. With the
    local store and ``wandb.offline_runs``, an offline W&B run records config, metrics,
    plots and the logged artifacts for a later ``wandb sync``; inputs still come from the
    local store, because offline runs cannot consume artifacts.
    """
    backend, reason = choose_backend(cfg.artifacts.backend)
    if not os.environ.get(ANNOUNCED_ENV):
        log.info(f"artifacts: {backend} ({reason})", extra={"prefix": step})
    if backend == "local" and not cfg.wandb.offline_runs:
        yield local, None
        return
    if sdk is None:
        import wandb as sdk
    try:
        run = sdk.init(
            project=cfg.wandb.project,
            entity=cfg.wandb.entity,
            group=cfg.wandb.group,
            job_type=step,
            config=dict(params),
            mode="online" if backend == "wandb" else "offline",
            dir=str(local.root),
            settings=sdk.Settings(init_timeout=cfg.wandb.timeout_seconds, silent=True),
        )
    except Exception as error:  # the SDK's errors differ by cause and version; all mean the same here
        raise TrainflowError(
            f"cannot start a W&B run ({str(error).splitlines()[0] if str(error) else error.__class__.__name__}): "
            "check WANDB_API_KEY or `wandb login`, WANDB_ENTITY/WANDB_PROJECT and the network, "
            "or use artifacts.backend=local"
        ) from None
    exit_code = 1
    try:
        if backend == "wandb":
            api = open_api(sdk, cfg.wandb.timeout_seconds)
            yield (
                WandbArtifactStore(sdk, api, cfg.wandb.project, cfg.wandb.entity, run, local.root / "wandb-artifacts"),
                run,
            )
        else:
            yield local, run
        exit_code = 0
    finally:
        run.finish(exit_code=exit_code)


def log_to_run(
    run: Any, path: Path, name: str, type: str, description: str, metadata: Mapping[str, Any], aliases: Sequence[str]
) -> None:
    """Log a file or directory as a W&B artifact of ``run`` (used to mirror outputs into offline runs)."""
    import wandb

    artifact = wandb.Artifact(name, type=type, description=description, metadata=dict(metadata))
    if path.is_dir():
        artifact.add_dir(str(path))
    else:
        artifact.add_file(str(path))
    run.log_artifact(artifact, aliases=["latest", *aliases])


def read_store(cfg: Any, local: LocalArtifactStore) -> Any:
    """A store to read artifacts from outside a step (reports, the CLI), per ``artifacts.backend``."""
    backend, _ = choose_backend(cfg.artifacts.backend)
    if backend == "local":
        return local
    import wandb

    return WandbArtifactStore(
        wandb,
        open_api(wandb, cfg.wandb.timeout_seconds),
        cfg.wandb.project,
        cfg.wandb.entity,
        download_root=local.root / "wandb-artifacts",
    )
