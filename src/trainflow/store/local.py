"""The local artifact store: versioned, aliased artifacts in a SQLite index over
content-addressed files. It needs no account and no network.

Layout under the store root::

    index.db                    SQLite (WAL): artifacts, versions, files, aliases,
                                runs, usages, the alias history, the promotion
                                history (every gate decision and rollback) and the
                                step cache (successful step runs by cache key)
    blobs/<2 hex>/<sha256>      file contents, stored once per digest, read-only (0444)
    checkouts/<name>/v<N>/      what use_artifact hands to consumers: hard links to the
                                blobs (a verified copy where the file system refuses links)
    tmp/                        writes in flight; a crash leaves only garbage here

A version is inserted in one transaction after all its blobs are in place, so a
writer killed at any point leaves no partial version behind. Versions are numbered
``v0, v1, ...`` per name inside that transaction (``BEGIN IMMEDIATE``), so concurrent
writers get unique numbers. ``latest`` names the version logged last, or re-used last
by a cache hit (which moves aliases exactly as the run it stands in for would have);
every other alias is unique per name and moves atomically.

Reads are verified without re-reading the bytes each time: a blob is hashed as it is
written, and ``blob_stamps`` records its inode, size and modification time at that
moment. A read links the blob into the checkout and compares that stamp with the file;
a blob written to since (any write through the file system moves its modification
time) or replaced is hashed again before it is handed out, and refused if its digest
changed. Damage that leaves the stamp intact (a failing disk, a write whose time was
set back on purpose) is found by :meth:`LocalArtifactStore.verify`, which hashes every
blob. Blobs are read-only, so a consumer that opens its checkout for writing gets a
``PermissionError`` instead of changing the store (root is not stopped by permissions:
such a write is then detected as above).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import itertools
import json
import os
import re
import secrets
import shutil
import sqlite3
import stat
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from trainflow.errors import (
    ArtifactNotFound,
    ChampionChanged,
    CorruptArtifact,
    TrainflowError,
    disk_full,
    is_disk_full,
)

LATEST = "latest"
# The model test_model and promote_model take by default (test.model, promote.model):
# train_model nominates every model it trains outside a sweep; a sweep nominates its best.
CANDIDATE_ALIAS = "candidate"
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
# A project (trainflow's, like a W&B project) groups the artifacts of one table and target.
_PROJECT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_ALIAS_RE = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")
_VERSION_RE = re.compile(r"v(\d+)")
_CHUNK = 4 << 20  # read and hashed at a time
_WRITE = 64 << 10  # written at a time (_write_all says why)
_HEAD = 64 << 10
_READ_ONLY = 0o444
# os.link fails with these where the file system cannot link the blob into the checkout
# (another file system, no hard links, too many links, links protected): copy instead.
_NO_LINK = frozenset({errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS})
# A stamp taken by a reader is trusted only for a file last modified this long before it
# was hashed: a write in the same tick of the file system's clock would not move the time.
_RACY_NS = 2_000_000_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id      TEXT PRIMARY KEY,
    step        TEXT NOT NULL,
    git_commit  TEXT,
    params      TEXT NOT NULL DEFAULT '{}',
    created_at  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS versions (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL,
    version     INTEGER NOT NULL,
    type        TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('file', 'dir')),
    digest      TEXT NOT NULL,
    size        INTEGER NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    metadata    TEXT NOT NULL DEFAULT '{}',
    run_id      TEXT REFERENCES runs(run_id),
    created_at  TEXT NOT NULL,
    UNIQUE (name, version)
);
CREATE TABLE IF NOT EXISTS files (
    version_id  INTEGER NOT NULL REFERENCES versions(id),
    path        TEXT NOT NULL,
    sha256      TEXT NOT NULL,
    size        INTEGER NOT NULL,
    PRIMARY KEY (version_id, path)
);
CREATE TABLE IF NOT EXISTS aliases (
    name        TEXT NOT NULL,
    alias       TEXT NOT NULL,
    version_id  INTEGER NOT NULL REFERENCES versions(id),
    PRIMARY KEY (name, alias)
);
CREATE TABLE IF NOT EXISTS alias_history (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL,
    alias       TEXT NOT NULL,
    version_id  INTEGER NOT NULL REFERENCES versions(id),
    previous_id INTEGER REFERENCES versions(id),
    run_id      TEXT,
    at          TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS usages (
    run_id      TEXT NOT NULL,
    version_id  INTEGER NOT NULL REFERENCES versions(id),
    used_at     TEXT NOT NULL,
    PRIMARY KEY (run_id, version_id)
);
CREATE TABLE IF NOT EXISTS promotions (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL,
    alias       TEXT NOT NULL,
    action      TEXT NOT NULL,
    outcome     TEXT NOT NULL,
    candidate_id INTEGER REFERENCES versions(id),
    before_id   INTEGER REFERENCES versions(id),
    after_id    INTEGER REFERENCES versions(id),
    run_id      TEXT,
    actor       TEXT NOT NULL,
    details     TEXT NOT NULL DEFAULT '{}',
    at          TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS step_cache (
    id          INTEGER PRIMARY KEY,
    step        TEXT NOT NULL,
    key         TEXT NOT NULL,
    run_id      TEXT NOT NULL,
    outputs     TEXT NOT NULL DEFAULT '{}',
    parts       TEXT NOT NULL DEFAULT '{}',
    created_at  TEXT NOT NULL,
    UNIQUE (step, key, run_id)
);
CREATE INDEX IF NOT EXISTS versions_by_run ON versions(run_id);
CREATE INDEX IF NOT EXISTS step_cache_by_key ON step_cache(step, key);
CREATE TABLE IF NOT EXISTS blob_stamps (
    sha256      TEXT PRIMARY KEY,
    size        INTEGER NOT NULL,
    head        TEXT NOT NULL,
    device      INTEGER NOT NULL,
    inode       INTEGER NOT NULL,
    mtime_ns    INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS files_by_blob ON files(sha256);
CREATE INDEX IF NOT EXISTS blob_stamps_by_head ON blob_stamps(size, head);
"""


def make_store_folders(root: Path, folders: Sequence[Path] = ()) -> None:
    """Create the store's folder (and ``folders`` in it); one error line if that is impossible."""
    try:
        for directory in (root, *folders):
            directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise TrainflowError(
            f"cannot use {root} as the artifact store ({error.strerror or error}: {error.filename}): "
            "set TRAINFLOW_HOME (or artifacts.root) to a folder you can write"
        ) from None


def _has_index(db: sqlite3.Connection) -> bool:
    """Whether the database holds the store's tables (a new or emptied file does not)."""
    return db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'versions'").fetchone() is not None


# (device, inode, size, modification time in ns) of a blob file when its bytes were hashed
Stamp = tuple[int, int, int, int]


@dataclass(frozen=True)
class ArtifactRef:
    """A parsed reference: ``name`` plus either a version number or an alias."""

    name: str
    version: int | None = None
    alias: str | None = None

    def __str__(self) -> str:
        return f"{self.name}:v{self.version}" if self.version is not None else f"{self.name}:{self.alias}"


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
        raise TrainflowError("'latest' is managed by the store: it names the version a step logged (or re-used from the cache) last")
    validate_alias(alias)


def _refuse_gated_alias(db: sqlite3.Connection, name: str, alias: str, ref: str) -> None:
    """An alias the promotion gate has decided about (``prod``) moves only through the gate or
    a rollback, which check the candidate, keep the history and move the registry's alias too."""
    if db.execute("SELECT 1 FROM promotions WHERE name = ? AND alias = ? LIMIT 1", (name, alias)).fetchone():
        raise TrainflowError(gated_alias_message(name.rpartition("/")[2], alias, ref))


def gated_alias_message(name: str, alias: str, ref: str) -> str:
    """Why ``alias`` cannot be set by hand, and the commands that do move it."""
    return (
        f"{name}:{alias} is moved only by the promotion gate: promote {ref} with "
        f"`mlflow run . -P steps=promote_model -P hydra_options=\"promote.model={ref} promote.alias={alias}\"` "
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


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _digest_manifest(kind: str, files: Sequence[StoredFile]) -> str:
    lines = [kind] + [f"{f.path}\t{f.sha256}\t{f.size}" for f in sorted(files, key=lambda f: f.path)]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


class LocalArtifactStore:
    """Versioned artifacts on local disk, shaped like W&B's artifact API.

    ``project`` scopes every name, as a W&B project does: ``raw_data:v0`` means that
    project's ``raw_data``, kept in the index as ``<project>/raw_data``, so several tables
    share one store without sharing references, champions or drift baselines. A name
    written ``other/raw_data`` reaches another project explicitly. Without a project
    (tools, tests), a name found in exactly one project means that one.
    """

    def __init__(self, root: str | os.PathLike[str], project: str | None = None) -> None:
        self.project = validate_project(project) if project is not None else None
        self.root = Path(root).resolve()
        self.blobs = self.root / "blobs"
        self.checkouts = self.root / "checkouts"
        self.tmp = self.root / "tmp"
        make_store_folders(self.root, (self.blobs, self.checkouts, self.tmp))
        self.index_path = self.root / "index.db"
        try:
            with self._reading() as db:
                if not _has_index(db) and self._holds_blobs():
                    # Starting an empty index here would call every stored file an orphan,
                    # and `verify --repair` would delete them all.
                    raise CorruptArtifact(
                        f"{self.index_path} is missing or empty but {self.blobs} holds stored files: the index "
                        "that names them was lost; restore index.db from a backup (nothing was changed)"
                    )
                db.executescript(f"BEGIN IMMEDIATE;\n{_SCHEMA}\nCOMMIT;")
        except sqlite3.DatabaseError as error:
            if is_disk_full(error):
                raise
            raise CorruptArtifact(
                f"cannot open the store's index {self.index_path} ({error}): if the file is damaged, restore it "
                "from a backup; if it is unreadable, check the folder's permissions"
            ) from None

    def _holds_blobs(self) -> bool:
        return any(path.is_file() for path in self.blobs.rglob("*"))

    # -- connection -----------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.index_path, timeout=60, isolation_level=None)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA busy_timeout = 60000")
        if db.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = FULL")
        db.execute("PRAGMA foreign_keys = ON")
        return db

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that takes the write lock up front (no upgrade deadlocks)."""
        db = self._connect()
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        finally:
            db.close()

    @contextlib.contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        db = self._connect()
        try:
            yield db
        finally:
            db.close()

    # -- projects -------------------------------------------------------------------

    def _qualify(self, db: sqlite3.Connection, name: str) -> str:
        """The index's name for ``name`` in this store's project (see the class docstring)."""
        if "/" in name:
            return name
        if self.project is not None:
            return f"{self.project}/{name}"
        if db.execute("SELECT 1 FROM versions WHERE name = ? LIMIT 1", (name,)).fetchone():
            return name
        found = [r[0] for r in db.execute(
            "SELECT DISTINCT name FROM versions WHERE name LIKE ? ESCAPE '\\' ORDER BY name",
            ("%/" + name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_"),),
        )]
        if len(found) > 1:
            projects = ", ".join(f.rpartition("/")[0] for f in found)
            raise TrainflowError(
                f"{name!r} exists in several projects ({projects}): name one, e.g. {found[0]}:latest or --project"
            )
        return found[0] if found else name

    def projects(self) -> list[str]:
        """The projects that hold artifacts in this store, by name."""
        with self._reading() as db:
            names = [r[0] for r in db.execute("SELECT DISTINCT name FROM versions WHERE name LIKE '%/%'")]
        return sorted({name.rpartition("/")[0] for name in names})

    # -- writing --------------------------------------------------------------------

    def blob_path(self, sha256: str) -> Path:
        return self.blobs / sha256[:2] / sha256

    def _put_blobs(
        self, entries: Sequence[tuple[str, Path]]
    ) -> tuple[list[StoredFile], dict[str, tuple[str, Stamp]]]:
        """Store each ``(relative path, source)`` as a blob; identical bytes are kept once.

        A file is copied to ``tmp/`` while it is hashed (the digest is of the bytes written),
        made read-only, fsynced and only then renamed to its digest, so a blob appears under
        its name only complete. Reading and hashing overlap with writing the previous chunk,
        and a blob's fsync with the next file. A file that looks like a stored blob (same size
        and first 64 KiB) is hashed first and not copied at all if that blob is intact.
        Returns the files and, for each blob written, its head digest and stamp.
        """
        files: list[StoredFile] = []
        finishing: dict[str, Future[tuple[str, Stamp] | None]] = {}
        staged: list[str] = []
        buffers = (bytearray(_CHUNK), bytearray(_CHUNK))
        try:
            with (
                self._reading() as db,
                ThreadPoolExecutor(1, "blob-writer") as writer,
                ThreadPoolExecutor(1, "blob-fsync") as finisher,
            ):
                for relative, source in entries:
                    for future in finishing.values():  # stop at the first failed fsync (a full disk)
                        if future.done():
                            future.result()
                    with open(source, "rb", buffering=0) as reader:
                        duplicate = self._duplicate(db, reader, buffers[0], finishing)
                        if duplicate is not None:
                            files.append(StoredFile(relative, *duplicate))
                            continue
                        fd, staging = tempfile.mkstemp(dir=self.tmp, prefix="blob-")
                        staged.append(staging)
                        try:
                            sha, size = _copy_hashing(reader, fd, writer, buffers)
                        except BaseException:
                            os.close(fd)
                            raise
                    files.append(StoredFile(relative, sha, size))
                    if sha in finishing:  # the same bytes twice in one artifact
                        os.close(fd)
                    else:
                        finishing[sha] = finisher.submit(self._finish_blob, fd, staging, sha)
                written = {sha: result for sha, future in finishing.items() if (result := future.result()) is not None}
        finally:
            for staging in staged:  # renamed into place, or garbage of a failed write
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(staging)
        return files, written

    def _duplicate(
        self, db: sqlite3.Connection, reader: io.RawIOBase, buffer: bytearray, staged: Mapping[str, object]
    ) -> tuple[str, int] | None:
        """``(sha256, size)`` of ``reader``'s file if an intact blob (or one this write staged)
        holds its bytes; else None, with ``reader`` back at the start. Only a file whose size
        and first 64 KiB match a stamped blob's is hashed to find out, so new content is read once."""
        fd = reader.fileno()
        stamps = {
            row[0]: tuple(row[1:])
            for row in db.execute(
                "SELECT sha256, device, inode, size, mtime_ns FROM blob_stamps WHERE size = ? AND head = ?",
                (os.fstat(fd).st_size, _head(fd)),
            )
        }
        if not stamps:
            return None
        sha, size = _hash_stream(reader, buffer)
        if sha in staged or self._unchanged(sha, stamps.get(sha)):
            return sha, size
        reader.seek(0)
        return None

    def _unchanged(self, sha: str, stamp: Stamp | None) -> bool:
        """Whether the blob ``sha`` is in place and, by its stamp, unchanged since it was hashed."""
        try:
            return stamp is not None and _stamp(self.blob_path(sha).stat()) == stamp
        except FileNotFoundError:
            return False

    def _finish_blob(self, fd: int, staging: str, sha: str) -> tuple[str, Stamp] | None:
        """Make a staged blob read-only and durable, then rename it to its digest; its head
        digest and stamp. None if the blob is in place and unchanged already; a blob in place
        that does not match its stamp (damaged, or never stamped) is replaced by this copy."""
        target = self.blob_path(sha)
        try:
            if target.exists():
                with self._reading() as db:
                    row = db.execute(
                        "SELECT device, inode, size, mtime_ns FROM blob_stamps WHERE sha256 = ?", (sha,)
                    ).fetchone()
                if self._unchanged(sha, tuple(row) if row else None):
                    return None
            os.fchmod(fd, _READ_ONLY)
            os.fsync(fd)
            written = _head(fd), _stamp(os.fstat(fd))
        finally:
            os.close(fd)
        target.parent.mkdir(exist_ok=True)
        os.replace(staging, target)
        return written

    @staticmethod
    def _walk(path: Path) -> tuple[str, list[tuple[str, Path]]]:
        """The files to store: ``(kind, [(relative posix path, absolute path)])``."""
        if path.is_symlink():
            raise TrainflowError(f"refusing to log symlink {path}: log the file it points to instead")
        if path.is_file():
            return "file", [(path.name, path)]
        if not path.is_dir():
            raise TrainflowError(f"cannot log {path}: no such file or directory")
        entries: list[tuple[str, Path]] = []
        for current, dirnames, filenames in os.walk(path):
            for name in dirnames + filenames:
                if (Path(current) / name).is_symlink():
                    raise TrainflowError(
                        f"refusing to log symlink {Path(current) / name}: the store keeps only "
                        "regular files; copy the target into the directory instead"
                    )
            for name in filenames:
                absolute = Path(current) / name
                entries.append((absolute.relative_to(path).as_posix(), absolute))
        if not entries:
            raise TrainflowError(f"cannot log {path}: the directory is empty")
        return "dir", sorted(entries)

    def record_run(self, run: RunRecord) -> None:
        """Register a step run once; later calls with the same id keep the first record."""
        with self._transaction() as db:
            self._insert_run(db, run)

    @staticmethod
    def _insert_run(db: sqlite3.Connection, run: RunRecord) -> None:
        db.execute(
            "INSERT OR IGNORE INTO runs (run_id, step, git_commit, params, created_at) VALUES (?, ?, ?, ?, ?)",
            (run.run_id, run.step, run.git_commit, json.dumps(dict(run.params), sort_keys=True), _now()),
        )

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
        """Store a file or directory as the next version of ``name``; return that version.

        ``latest`` moves to the new version; each alias in ``aliases`` moves too.
        """
        [version] = self.log_artifacts([NewVersion(Path(path), name, type, description, metadata, tuple(aliases))], run)
        return version

    def log_artifacts(self, versions: Sequence[NewVersion], run: RunRecord | None = None) -> list[ArtifactVersion]:
        """Store several files or directories as the next versions of their names, all
        visible in one transaction or none: a step that writes two outputs (split_data's
        trainval and test sets) can never leave one ``latest`` ahead of the other."""
        for new in versions:
            validate_name(new.name)
            for alias in new.aliases:
                if alias != LATEST:
                    validate_alias(alias)
        with self._reading() as db:
            names = [self._qualify(db, new.name) for new in versions]
        walked = [self._walk(Path(new.path)) for new in versions]
        stored = []
        with self._space_checked(f"{', '.join(new.name for new in versions)} into the artifact store at {self.root}"):
            for _, entries in walked:
                stored.append(self._put_blobs(entries))
        refs = []
        with self._transaction() as db:
            if run is not None:
                self._insert_run(db, run)
            for new, name, (kind, _), (files, stamps) in zip(versions, names, walked, stored, strict=True):
                self._insert_stamps(db, stamps)
                metadata_json = json.dumps(dict(new.metadata or {}), sort_keys=True)
                refs.append(self._insert_version(db, name, new.type, kind, files, new.description, metadata_json,
                                                 new.aliases, run))
        return [self.get(ref) for ref in refs]

    @contextlib.contextmanager
    def _space_checked(self, where: str) -> Iterator[None]:
        """A full disk becomes one clear error; the blobs already written are orphans that
        ``verify --repair`` removes, and no version refers to them."""
        try:
            yield
        except Exception as error:
            if is_disk_full(error):
                raise disk_full(error, where) from None
            raise

    def _insert_version(
        self,
        db: sqlite3.Connection,
        name: str,
        type: str,
        kind: str,
        files: list[StoredFile],
        description: str,
        metadata_json: str,
        aliases: Sequence[str],
        run: RunRecord | None,
    ) -> str:
        """Insert the next version of ``name`` (as the index names it) over blobs already in
        place, inside the caller's transaction; return its reference."""
        digest = _digest_manifest(kind, files)
        row = db.execute("SELECT COALESCE(MAX(version) + 1, 0) FROM versions WHERE name = ?", (name,)).fetchone()
        number = row[0]
        cursor = db.execute(
            "INSERT INTO versions (name, version, type, kind, digest, size, description, metadata, run_id, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (name, number, type, kind, digest, sum(f.size for f in files), description, metadata_json,
             run.run_id if run else None, _now()),
        )
        version_id = cursor.lastrowid
        db.executemany(
            "INSERT INTO files (version_id, path, sha256, size) VALUES (?, ?, ?, ?)",
            [(version_id, f.path, f.sha256, f.size) for f in files],
        )
        for alias in dict.fromkeys([LATEST, *aliases]):
            if alias != LATEST:
                _refuse_gated_alias(db, name, alias, f"{name.rpartition('/')[2]}:v{number}")
            self._move_alias(db, name, alias, version_id, run.run_id if run else None)
        return f"{name}:v{number}"

    @staticmethod
    def _insert_stamps(db: sqlite3.Connection, stamps: Mapping[str, tuple[str, Stamp]]) -> None:
        """Record ``sha256 -> (head digest, stamp)`` for blobs whose bytes were just hashed."""
        db.executemany(
            "INSERT OR REPLACE INTO blob_stamps (sha256, head, device, inode, size, mtime_ns)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            [(sha, head, *stamp) for sha, (head, stamp) in stamps.items()],
        )

    @staticmethod
    def _move_alias(db: sqlite3.Connection, name: str, alias: str, version_id: int, run_id: str | None) -> None:
        previous = db.execute("SELECT version_id FROM aliases WHERE name = ? AND alias = ?", (name, alias)).fetchone()
        db.execute(
            "INSERT INTO aliases (name, alias, version_id) VALUES (?, ?, ?)"
            " ON CONFLICT (name, alias) DO UPDATE SET version_id = excluded.version_id",
            (name, alias, version_id),
        )
        db.execute(
            "INSERT INTO alias_history (name, alias, version_id, previous_id, run_id, at) VALUES (?, ?, ?, ?, ?, ?)",
            (name, alias, version_id, previous[0] if previous else None, run_id, _now()),
        )

    def set_alias(self, ref: str, alias: str, run_id: str | None = None) -> ArtifactVersion:
        """Point ``alias`` at the version ``ref`` resolves to (moving it from any other)."""
        check_settable(alias)
        with self._transaction() as db:
            version_id = self._resolve_id(db, parse_ref(ref))
            name = db.execute("SELECT name FROM versions WHERE id = ?", (version_id,)).fetchone()[0]
            _refuse_gated_alias(db, name, alias, ref)
            self._move_alias(db, name, alias, version_id, run_id)
        return self.get(ref if parse_ref(ref).version is not None else f"{name}:{alias}")

    def claim_alias(self, ref: str, alias: str, run_id: str | None = None) -> tuple[ArtifactVersion, bool]:
        """Point ``alias`` at ``ref`` only if no version of that name has it yet, atomically.

        Returns the version the alias names afterwards and whether this call set it, so
        two writers racing for a first ``reference`` cannot both win.
        """
        check_settable(alias)
        with self._transaction() as db:
            version_id = self._resolve_id(db, parse_ref(ref))
            name = db.execute("SELECT name FROM versions WHERE id = ?", (version_id,)).fetchone()[0]
            _refuse_gated_alias(db, name, alias, ref)
            existing = db.execute("SELECT version_id FROM aliases WHERE name = ? AND alias = ?", (name, alias)).fetchone()
            if existing is None:
                self._move_alias(db, name, alias, version_id, run_id)
            return self._load(db, version_id if existing is None else existing[0]), existing is None

    def update_metadata(self, ref: str, updates: Mapping[str, Any]) -> ArtifactVersion:
        """Merge ``updates`` into a version's metadata (top-level keys are replaced)."""
        with self._transaction() as db:
            version_id = self._resolve_id(db, parse_ref(ref))
            current = json.loads(db.execute("SELECT metadata FROM versions WHERE id = ?", (version_id,)).fetchone()[0])
            current.update(updates)
            db.execute("UPDATE versions SET metadata = ? WHERE id = ?", (json.dumps(current, sort_keys=True), version_id))
            row = db.execute("SELECT name, version FROM versions WHERE id = ?", (version_id,)).fetchone()
        return self.get(f"{row['name']}:v{row['version']}")

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
        """Append a decision to the promotion history; with ``move``, also point ``alias`` at
        ``candidate``, in the same transaction.

        A move happens only if the alias still names ``expected`` (None: no version), the
        holder the decision was made against; otherwise nothing changes and
        :class:`TrainflowError` says who moved it.
        """
        validate_alias(alias)
        with self._transaction() as db:
            if run is not None:
                self._insert_run(db, run)
            name = self._qualify(db, name)
            row = db.execute("SELECT version_id FROM aliases WHERE name = ? AND alias = ?", (name, alias)).fetchone()
            current_id = row[0] if row else None
            candidate_id = self._resolve_id(db, parse_ref(candidate)) if candidate else None
            after_id = current_id
            if move:
                if alias == LATEST:
                    raise TrainflowError("'latest' is managed by the store: it names the version a step logged (or re-used from the cache) last")
                if candidate_id is None:
                    raise TrainflowError(f"cannot move {name.rpartition('/')[2]}:{alias} without a version to move it to")
                expected_id = self._resolve_id(db, parse_ref(expected)) if expected else None
                if current_id != expected_id:
                    holder = self._ref_of(db, current_id) if current_id is not None else "no version"
                    raise ChampionChanged(
                        f"{name.rpartition('/')[2]}:{alias} changed to {holder} while this decision was made against "
                        f"{expected or 'no version'}: nothing was moved; run the step again"
                    )
                self._move_alias(db, name, alias, candidate_id, run.run_id if run else None)
                after_id = candidate_id
            cursor = db.execute(
                "INSERT INTO promotions (name, alias, action, outcome, candidate_id, before_id, after_id, run_id,"
                " actor, details, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (name, alias, action, outcome, candidate_id, current_id, after_id, run.run_id if run else None,
                 actor, json.dumps(dict(details), sort_keys=True, default=str), _now()),
            )
            return self._promotion(db, cursor.lastrowid)

    @staticmethod
    def _ref_of(db: sqlite3.Connection, version_id: int) -> str:
        """``name:vN`` of a version, within its project."""
        row = db.execute("SELECT name, version FROM versions WHERE id = ?", (version_id,)).fetchone()
        return f"{row[0].rpartition('/')[2]}:v{row[1]}"

    def _promotion(self, db: sqlite3.Connection, entry_id: int) -> PromotionEntry:
        row = db.execute("SELECT * FROM promotions WHERE id = ?", (entry_id,)).fetchone()

        def ref(version_id: int | None) -> str | None:
            return self._ref_of(db, version_id) if version_id is not None else None

        return PromotionEntry(
            id=row["id"], name=row["name"].rpartition("/")[2], alias=row["alias"], action=row["action"], outcome=row["outcome"],
            candidate=ref(row["candidate_id"]), before=ref(row["before_id"]), after=ref(row["after_id"]),
            run_id=row["run_id"], actor=row["actor"], details=json.loads(row["details"]), at=row["at"],
        )

    def promotions(self, name: str | None = None, alias: str | None = None) -> list[PromotionEntry]:
        """The promotion history, oldest first, optionally for one name and alias (of this
        store's project; without a project and a name, of every project)."""
        with self._reading() as db:
            if name is not None:
                name = self._qualify(db, name)
            ids = [
                r[0]
                for r in db.execute(
                    "SELECT id FROM promotions WHERE (? IS NULL OR name = ?) AND (? IS NULL OR alias = ?)"
                    " AND (? IS NULL OR name LIKE ? || '/%') ORDER BY id",
                    (name, name, alias, alias, self.project, self.project),
                )
            ]
            return [self._promotion(db, i) for i in ids]

    # -- the step cache -------------------------------------------------------------

    def record_cached_run(
        self, step: str, key: str, run_id: str, outputs: Mapping[str, str], parts: Mapping[str, Any]
    ) -> CachedRun:
        """Record that ``run_id``, a successful run of ``step``, produced ``outputs`` under ``key``.

        Each output must be a version that run logged, so a record can never point at
        someone else's result; one transaction, like every other write.
        """
        with self._transaction() as db:
            for name, ref in outputs.items():
                version_id = self._resolve_id(db, parse_ref(ref))
                row = db.execute("SELECT name, run_id FROM versions WHERE id = ?", (version_id,)).fetchone()
                if row["name"] != self._qualify(db, name) or row["run_id"] != run_id:
                    raise TrainflowError(f"{ref} was not logged as {name!r} by run {run_id}: not recording it as its output")
            db.execute(
                "INSERT OR IGNORE INTO step_cache (step, key, run_id, outputs, parts, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                (step, key, run_id, json.dumps(dict(outputs), sort_keys=True), json.dumps(dict(parts), sort_keys=True),
                 _now()),
            )
        return self.cached_runs(step, key, run_id=run_id)[0]

    def cached_runs(self, step: str, key: str, run_id: str | None = None) -> list[CachedRun]:
        """Recorded runs of ``step`` under ``key``, newest first."""
        with self._reading() as db:
            rows = db.execute(
                "SELECT * FROM step_cache WHERE step = ? AND key = ? AND (? IS NULL OR run_id = ?) ORDER BY id DESC",
                (step, key, run_id, run_id),
            ).fetchall()
        return [
            CachedRun(r["step"], r["key"], r["run_id"], json.loads(r["outputs"]), json.loads(r["parts"]), r["created_at"])
            for r in rows
        ]

    def reuse_outputs(self, source_run_id: str, refs: Sequence[str], run_id: str) -> list[ArtifactVersion]:
        """Move onto each version in ``refs`` the aliases its producing run ``source_run_id``
        moved onto it (``latest``, and any given at log time), recorded as moves by ``run_id``:
        what a fresh run of the same step would have done with its new versions. One
        transaction; :class:`ArtifactNotFound` if a version is gone.
        """
        with self._transaction() as db:
            ids = [self._resolve_id(db, parse_ref(ref)) for ref in refs]
            for version_id in ids:
                name = db.execute("SELECT name FROM versions WHERE id = ?", (version_id,)).fetchone()[0]
                aliases = [
                    r[0]
                    for r in db.execute(
                        "SELECT DISTINCT alias FROM alias_history WHERE version_id = ? AND run_id = ? ORDER BY alias",
                        (version_id, source_run_id),
                    )
                ]
                for alias in dict.fromkeys([LATEST, *aliases]):
                    holder = db.execute("SELECT version_id FROM aliases WHERE name = ? AND alias = ?", (name, alias)).fetchone()
                    if holder is None or holder[0] != version_id:  # the history keeps moves, not no-ops
                        self._move_alias(db, name, alias, version_id, run_id)
            return [self._load(db, version_id) for version_id in ids]

    def verify_version(self, ref: str) -> str | None:
        """What is wrong with the stored bytes of ``ref`` (a blob missing or not matching its
        sha256), or None when every file verifies. :class:`ArtifactNotFound` if it does not resolve.
        """
        version = self.get(ref)
        for stored in version.files:
            blob = self.blob_path(stored.sha256)
            if not blob.is_file():
                return f"{version.ref}: the blob of {stored.path!r} is missing"
            if blob.stat().st_size != stored.size or file_sha256(blob) != stored.sha256:
                return f"{version.ref}: the blob of {stored.path!r} does not match its sha256"
        return None

    # -- reading --------------------------------------------------------------------

    def _resolve_id(self, db: sqlite3.Connection, ref: ArtifactRef) -> int:
        """The id of the version ``ref`` names, its name taken in this store's project."""
        ref = ArtifactRef(self._qualify(db, ref.name), ref.version, ref.alias)
        if ref.version is not None:
            row = db.execute("SELECT id FROM versions WHERE name = ? AND version = ?", (ref.name, ref.version)).fetchone()
        else:
            row = db.execute("SELECT version_id FROM aliases WHERE name = ? AND alias = ?", (ref.name, ref.alias)).fetchone()
        if row is not None:
            return int(row[0])
        project, _, short = ref.name.rpartition("/")
        known = [
            r[0].rpartition("/")[2] for r in db.execute("SELECT DISTINCT name FROM versions ORDER BY name")
            if r[0].rpartition("/")[0] == project
        ]
        where = f"project {project!r} of {self.root}" if project else str(self.root)
        if short not in known:
            hint = (
                f"known artifacts: {', '.join(known)}" if known
                else "it has none yet: run the step that logs it first"
            )
            raise ArtifactNotFound(f"no artifact named {short!r} in {where} ({hint})")
        versions = [f"v{r[0]}" for r in db.execute("SELECT version FROM versions WHERE name = ? ORDER BY version", (ref.name,))]
        aliases = [r[0] for r in db.execute("SELECT alias FROM aliases WHERE name = ? ORDER BY alias", (ref.name,))]
        raise ArtifactNotFound(
            f"{ArtifactRef(short, ref.version, ref.alias)} does not resolve{f' in project {project!r}' if project else ''}: "
            f"{short} has versions {', '.join(versions)} and aliases "
            f"{', '.join(aliases)}; use one of them or set the alias with `trainflow artifacts alias`"
        )

    def _load(self, db: sqlite3.Connection, version_id: int) -> ArtifactVersion:
        row = db.execute(
            "SELECT v.*, r.step, r.git_commit, r.params FROM versions v LEFT JOIN runs r ON r.run_id = v.run_id"
            " WHERE v.id = ?",
            (version_id,),
        ).fetchone()
        aliases = tuple(r[0] for r in db.execute("SELECT alias FROM aliases WHERE version_id = ? ORDER BY alias", (version_id,)))
        files = tuple(
            StoredFile(r["path"], r["sha256"], r["size"])
            for r in db.execute("SELECT path, sha256, size FROM files WHERE version_id = ? ORDER BY path", (version_id,))
        )
        run = (
            RunRecord(row["run_id"], row["step"], row["git_commit"], json.loads(row["params"]))
            if row["run_id"] is not None
            else None
        )
        project, _, name = row["name"].rpartition("/")
        return ArtifactVersion(
            name=name, project=project or None, version=row["version"], type=row["type"], kind=row["kind"], digest=row["digest"],
            size=row["size"], description=row["description"], metadata=json.loads(row["metadata"]),
            aliases=aliases, created_at=row["created_at"], run=run, files=files,
        )

    def get(self, ref: str) -> ArtifactVersion:
        """The version ``ref`` resolves to; raises :class:`ArtifactNotFound` if none."""
        with self._reading() as db:
            return self._load(db, self._resolve_id(db, parse_ref(ref)))

    def list_names(self) -> list[tuple[str, str, int]]:
        """``(name, type, number of versions)`` for every artifact, by name: this store's
        project's names, or without a project every name as the index keeps it (``project/name``)."""
        with self._reading() as db:
            rows = db.execute(
                "SELECT name, (SELECT type FROM versions w WHERE w.name = v.name ORDER BY version DESC LIMIT 1),"
                " COUNT(*) FROM versions v GROUP BY name ORDER BY name"
            ).fetchall()
        if self.project is None:
            return [(r[0], r[1], r[2]) for r in rows]
        prefix = f"{self.project}/"
        return [(r[0].removeprefix(prefix), r[1], r[2]) for r in rows if r[0].startswith(prefix)]

    def list_versions(self, name: str) -> list[ArtifactVersion]:
        """Every version of ``name``, oldest first (none for an unknown name)."""
        validate_name(name)
        with self._reading() as db:
            name = self._qualify(db, name)
            ids = [r[0] for r in db.execute("SELECT id FROM versions WHERE name = ? ORDER BY version", (name,))]
            return [self._load(db, i) for i in ids]

    def versions_logged_by(self, run_id: str) -> list[ArtifactVersion]:
        with self._reading() as db:
            ids = [r[0] for r in db.execute("SELECT id FROM versions WHERE run_id = ? ORDER BY id", (run_id,))]
            return [self._load(db, i) for i in ids]

    def inputs_of(self, version: ArtifactVersion) -> list[ArtifactVersion]:
        """The versions the producing run of ``version`` consumed."""
        if version.run is None:
            return []
        with self._reading() as db:
            ids = [
                r[0]
                for r in db.execute(
                    "SELECT u.version_id FROM usages u JOIN versions v ON v.id = u.version_id"
                    " WHERE u.run_id = ? ORDER BY v.name, v.version",
                    (version.run.run_id,),
                )
            ]
            return [self._load(db, i) for i in ids]

    def alias_history(self, name: str, alias: str) -> list[tuple[int, int | None, str | None, str]]:
        """``(version, previous version, run id, time)`` for every move of ``name:alias``, oldest first."""
        with self._reading() as db:
            name = self._qualify(db, name)
            rows = db.execute(
                "SELECT v.version, p.version, h.run_id, h.at FROM alias_history h"
                " JOIN versions v ON v.id = h.version_id LEFT JOIN versions p ON p.id = h.previous_id"
                " WHERE h.name = ? AND h.alias = ? ORDER BY h.id",
                (name, alias),
            ).fetchall()
        return [(r[0], r[1], r[2], r[3]) for r in rows]

    def record_usage(self, ref: str, run: RunRecord) -> ArtifactVersion:
        """Resolve ``ref`` and record that ``run`` consumed it (lineage without a download)."""
        with self._transaction() as db:
            version_id = self._resolve_id(db, parse_ref(ref))
            self._insert_run(db, run)
            db.execute(
                "INSERT OR IGNORE INTO usages (run_id, version_id, used_at) VALUES (?, ?, ?)",
                (run.run_id, version_id, _now()),
            )
            return self._load(db, version_id)

    def use_artifact(self, ref: str, run: RunRecord | None = None) -> Path:
        """Resolve ``ref``, record that ``run`` consumed it, and return a verified, read-only
        checkout of it.

        An artifact logged from a file resolves to that file; one logged from a directory
        resolves to the directory. The checkout's files are hard links to the blobs (a copy
        where the file system cannot link them), so the checkout costs no disk and no copying;
        each is checked against its blob's stamp, and hashed when the stamp does not match
        (the module docstring says what that detects). Writing to a checkout's file fails
        with ``PermissionError``: copy it first to change it.
        """
        version = self.record_usage(ref, run) if run is not None else self.get(ref)
        with self._space_checked(f"a checkout of {version.ref} under {self.checkouts}"):
            directory = self._checkout(version)
        return directory / version.files[0].path if version.kind == "file" else directory

    def _checkout(self, version: ArtifactVersion) -> Path:
        """The version's files, each the blob itself (a hard link) or a copy, checked on this read."""
        target = self.checkouts / version.qualified_name / f"v{version.version}"
        stamps = self._stamps(version)
        if not (target.is_dir() and self._matches(target, version.files, stamps)):
            self._rebuild(target, version, stamps)
        if stamps.fresh:
            with self._transaction() as db:
                self._insert_stamps(db, stamps.fresh)
        return target

    def _rebuild(self, target: Path, version: ArtifactVersion, stamps: _Stamps) -> None:
        """Build the checkout in ``tmp/`` and swap it in for whatever is at ``target``."""
        staging = self.tmp / f"checkout-{secrets.token_hex(8)}"
        staging.mkdir()  # not mkdtemp (0700): the checkout's folders get the umask's modes, like its files
        try:
            for stored in version.files:
                destination = _inside(staging, stored.path, version)
                destination.parent.mkdir(parents=True, exist_ok=True)
                self._place(stored, destination, version, stamps)
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.exists():
                # A stale or edited checkout: move it aside, then swap the fresh one in.
                graveyard = Path(tempfile.mkdtemp(dir=self.tmp, prefix="stale-"))
                with contextlib.suppress(FileNotFoundError, OSError):
                    os.replace(target, graveyard / "old")
                shutil.rmtree(graveyard, ignore_errors=True)
            try:
                os.replace(staging, target)
            except OSError:
                # Another reader put an identical, verified checkout in place first.
                if not (target.is_dir() and self._matches(target, version.files, stamps)):
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _place(self, stored: StoredFile, destination: Path, version: ArtifactVersion, stamps: _Stamps) -> None:
        """Link the blob of ``stored`` to ``destination`` and check it; copy it where linking fails."""
        blob = self.blob_path(stored.sha256)
        try:
            os.link(blob, destination)
        except FileNotFoundError:
            raise self._damaged(version, stored, "missing") from None
        except OSError as error:
            if error.errno not in _NO_LINK:
                raise
            self._copy_verified(stored, destination, version)
            return
        if not self._intact(destination, stored, stamps):
            raise self._damaged(version, stored, "modified")

    def _intact(self, path: Path, stored: StoredFile, stamps: _Stamps) -> bool:
        """Whether ``path`` holds the bytes of ``stored``: the blob itself with its stamp
        unchanged, or any file that hashes to its digest. A blob hashed here gets a new stamp
        (``stamps.fresh``) unless it was modified too recently to trust one. Leaves the file
        read-only."""
        info = os.lstat(path)
        if not stat.S_ISREG(info.st_mode) or info.st_size != stored.size:
            return False
        if _stamp(info) != stamps.known.get(stored.sha256):
            began = time.time_ns()
            with open(path, "rb", buffering=0) as reader:
                if _hash_stream(reader, bytearray(_CHUNK))[0] != stored.sha256:
                    return False
                head = _head(reader.fileno())
            with contextlib.suppress(FileNotFoundError):
                is_blob = os.path.samestat(info, self.blob_path(stored.sha256).stat())
                if is_blob and _stamp(os.lstat(path)) == _stamp(info) and info.st_mtime_ns < began - _RACY_NS:
                    stamps.known[stored.sha256] = _stamp(info)
                    stamps.fresh[stored.sha256] = head, _stamp(info)
        if info.st_mode & 0o222:
            os.chmod(path, _READ_ONLY)
        return True

    def _damaged(self, version: ArtifactVersion, stored: StoredFile, how: str) -> CorruptArtifact:
        problem = (
            f"blob for {stored.path!r} is missing from {self.blobs}" if how == "missing"
            else f"{stored.path!r} does not match its recorded sha256 (the blob was modified on disk)"
        )
        return CorruptArtifact(
            f"{version.ref}: {problem}; run `trainflow artifacts verify` and re-run the step that produced it"
        )

    def _stamps(self, version: ArtifactVersion) -> _Stamps:
        with self._reading() as db:
            rows = db.execute(
                "SELECT s.sha256, s.device, s.inode, s.size, s.mtime_ns FROM blob_stamps s"
                " JOIN files f ON f.sha256 = s.sha256 JOIN versions v ON v.id = f.version_id"
                " WHERE v.name = ? AND v.version = ?",
                (version.name, version.version),
            ).fetchall()
        return _Stamps({row[0]: (row[1], row[2], row[3], row[4]) for row in rows})

    def _copy_verified(self, stored: StoredFile, destination: Path, version: ArtifactVersion) -> None:
        """A read-only copy of the blob of ``stored``, hashed as it is written."""
        try:
            with (
                open(self.blob_path(stored.sha256), "rb", buffering=0) as reader,
                open(destination, "wb", buffering=0) as copy,
                ThreadPoolExecutor(1, "checkout-writer") as writer,
            ):
                sha, _ = _copy_hashing(reader, copy.fileno(), writer, (bytearray(_CHUNK), bytearray(_CHUNK)))
                os.fchmod(copy.fileno(), _READ_ONLY)
        except FileNotFoundError:
            raise self._damaged(version, stored, "missing") from None
        if sha != stored.sha256:
            raise self._damaged(version, stored, "modified")

    # -- integrity ------------------------------------------------------------------

    def verify(self, repair: bool = False, grace_seconds: float = 3600.0) -> VerifyReport:
        """Check every blob against its digest and the index against itself; find garbage.

        A blob is written before the transaction that references it, so a blob nobody
        references may belong to a writer still running: orphans younger than
        ``grace_seconds`` are reported but never removed. ``repair`` removes the older
        orphans and stale files under ``tmp/``; it never touches a referenced blob.

        Checkouts are not walked: their files are hard links to the blobs checked here (or
        copies, checked again on every read), and a link adds no orphan. The one thing
        ``verify`` writes without ``repair`` is to forget the stamps of damaged blobs, so that
        reads hash them too, and refuse them, even when the damage left the stamp intact.
        """
        report = VerifyReport()
        with self._reading() as db:
            integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
            if integrity != "ok":
                report.problems.append(f"index.db fails SQLite's integrity check: {integrity}")
            for table, rowid, parent, _ in db.execute("PRAGMA foreign_key_check").fetchall():
                report.problems.append(f"index.db: {table} row {rowid} points at a missing {parent} row")
            versions = db.execute("SELECT id, name, version, kind, digest, size FROM versions").fetchall()
            files_by_version: dict[int, list[StoredFile]] = {}
            for row in db.execute("SELECT version_id, path, sha256, size FROM files"):
                files_by_version.setdefault(row[0], []).append(StoredFile(row[1], row[2], row[3]))
            numbers: dict[str, list[int]] = {}
            for name, number in db.execute("SELECT name, version FROM versions ORDER BY name, version"):
                numbers.setdefault(name, []).append(number)
            for name, found in numbers.items():
                if found != list(range(len(found))):
                    report.problems.append(f"{name}: versions are {found}, expected v0..v{len(found) - 1} without gaps")
            for name, alias, owner in db.execute(
                "SELECT a.name, a.alias, v.name FROM aliases a JOIN versions v ON v.id = a.version_id"
            ):
                if owner != name:
                    report.problems.append(f"{name}:{alias} names a version of {owner}")
        report.versions = len(versions)
        users: dict[str, list[str]] = {}  # blob digest -> "name:vN 'path'" referencing it
        for version_id, name, number, kind, digest, size in versions:
            ref = f"{name}:v{number}"
            files = files_by_version.get(version_id, [])
            if not files or (kind == "file" and len(files) != 1):
                report.problems.append(f"{ref}: the index lists {len(files)} file(s) for a {kind} artifact")
            elif _digest_manifest(kind, files) != digest or sum(f.size for f in files) != size:
                report.problems.append(f"{ref}: its file list does not match its recorded digest and size")
            for stored in files:
                users.setdefault(stored.sha256, []).append(f"{ref} {stored.path!r}")
                if Path(stored.path).is_absolute() or ".." in Path(stored.path).parts:
                    report.problems.append(f"{ref}: recorded file path {stored.path!r} points outside the artifact")
        damaged: list[str] = []
        for sha, referenced_by in sorted(users.items()):
            blob = self.blob_path(sha)
            report.blobs += 1
            try:
                actual = file_sha256(blob)
                report.bytes_checked += blob.stat().st_size
            except FileNotFoundError:
                report.problems.append(f"blob {sha[:12]} is missing: {', '.join(referenced_by)} cannot be read")
                damaged.append(sha)
                continue
            if actual != sha:
                report.problems.append(
                    f"blob {sha[:12]} was modified on disk (its sha256 is now {actual[:12]}): {', '.join(referenced_by)}"
                )
                damaged.append(sha)
        if damaged:  # a damaged blob's stamp may still match it: make the next read hash it (and refuse it)
            with self._transaction() as db:
                db.executemany("DELETE FROM blob_stamps WHERE sha256 = ?", [(sha,) for sha in damaged])
        now = datetime.now(timezone.utc).timestamp()
        for blob in sorted(p for p in self.blobs.rglob("*") if p.is_file() or p.is_symlink()):
            if blob.name in users and blob == self.blob_path(blob.name):
                continue
            recent = now - blob.lstat().st_mtime < grace_seconds
            (report.recent_orphans if recent else report.orphans).append(blob)
        report.stale_tmp = sorted(p for p in self.tmp.iterdir() if now - p.lstat().st_mtime >= grace_seconds)
        if repair:
            for garbage in report.orphans + report.stale_tmp:
                if garbage.is_dir() and not garbage.is_symlink():
                    shutil.rmtree(garbage, ignore_errors=True)
                else:
                    with contextlib.suppress(FileNotFoundError):
                        garbage.unlink()
                report.removed.append(garbage)
        return report

    def _matches(self, directory: Path, files: Sequence[StoredFile], stamps: _Stamps) -> bool:
        """Whether ``directory`` holds exactly ``files``, each intact (see :meth:`_intact`)."""
        present = sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file() or p.is_symlink())
        if present != sorted(f.path for f in files):
            return False
        return all(self._intact(directory / stored.path, stored, stamps) for stored in files)


@dataclass
class _Stamps:
    """One read's view of the stamps of a version's blobs: those recorded (``known``), and
    those of blobs this read hashed, to record (``fresh``: sha256 -> head digest, stamp)."""

    known: dict[str, Stamp]
    fresh: dict[str, tuple[str, Stamp]] = field(default_factory=dict)


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


def _inside(directory: Path, relative: str, version: ArtifactVersion) -> Path:
    """``directory / relative``, refusing a recorded path that would land outside it
    (an index edited to hold ``../`` or an absolute path must not write elsewhere)."""
    candidate = Path(relative)
    resolved = (directory / candidate).resolve()
    if candidate.is_absolute() or ".." in candidate.parts or not resolved.is_relative_to(directory.resolve()):
        raise CorruptArtifact(
            f"{version.ref}: recorded file path {relative!r} points outside the artifact; the index was edited: "
            "run `trainflow artifacts verify` and re-run the step that produced it"
        )
    return directory / candidate


def file_sha256(path: str | os.PathLike[str]) -> str:
    with open(path, "rb", buffering=0) as reader:
        return _hash_stream(reader, bytearray(_CHUNK))[0]


def _hash_stream(reader: io.RawIOBase, buffer: bytearray) -> tuple[str, int]:
    """The sha256 and length of what is left in an unbuffered ``reader``."""
    digest = hashlib.sha256()
    size = 0
    view = memoryview(buffer)
    while count := reader.readinto(buffer):
        digest.update(view[:count])  # hashlib releases the GIL on large buffers
        size += count
    return digest.hexdigest(), size


def _copy_hashing(
    reader: io.RawIOBase, fd: int, writer: ThreadPoolExecutor, buffers: tuple[bytearray, bytearray]
) -> tuple[str, int]:
    """Copy what is left in ``reader`` to ``fd``; the sha256 and length of the bytes written.

    ``writer`` (one thread) writes each chunk while this thread hashes it and reads the
    next one into the other buffer, so a chunk is hashed exactly as it is written.
    """
    digest = hashlib.sha256()
    size = 0
    in_flight: list[Future[None]] = []  # at most two writes, one per buffer
    try:
        for turn in itertools.cycle((0, 1)):
            count = reader.readinto(buffers[turn])  # the write from this buffer two turns ago is done
            if not count:
                break
            chunk = memoryview(buffers[turn])[:count]
            in_flight.append(writer.submit(_write_all, fd, chunk))
            digest.update(chunk)
            size += count
            if len(in_flight) == 2:
                in_flight.pop(0).result()
        for write in in_flight:
            write.result()
    finally:
        wait(in_flight)  # never leave the writer on a buffer or descriptor the caller reuses
    return digest.hexdigest(), size


def _write_all(fd: int, chunk: memoryview) -> None:
    """Write ``chunk`` in pieces of 64 KiB, the size cp's in-kernel copy writes in: a larger
    write makes the kernel allocate larger page-cache folios, which on the VM measured in
    bench/store.py cost four to six times the kernel time per GiB."""
    while chunk:
        chunk = chunk[os.write(fd, chunk[:_WRITE]) :]


def _stamp(info: os.stat_result) -> Stamp:
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)


def _head(fd: int) -> str:
    """The sha256 of a file's first 64 KiB: with its size, what makes it look like a stored blob."""
    return hashlib.sha256(os.pread(fd, _HEAD, 0)).hexdigest()



def lineage(store: LocalArtifactStore, ref: str) -> list[tuple[int, ArtifactVersion]]:
    """The chain of versions behind ``ref``, depth first: ``(depth, version)``, ``ref`` at depth 0."""
    chain: list[tuple[int, ArtifactVersion]] = []
    seen: set[str] = set()

    def visit(version: ArtifactVersion, depth: int) -> None:
        chain.append((depth, version))
        if version.ref in seen:
            return
        seen.add(version.ref)
        for parent in store.inputs_of(version):
            visit(parent, depth + 1)

    visit(store.get(ref), 0)
    return chain
