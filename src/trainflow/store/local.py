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

This module is the store itself; the pieces it is built from live beside it: names and
references in :mod:`trainflow.store.refs`, the records it returns in
:mod:`trainflow.store.records`, the SQLite schema in :mod:`trainflow.store.index`, and
hashing, stamps and checkouts of the blob files in :mod:`trainflow.store.blobs`.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from trainflow.errors import ArtifactNotFound, ChampionChanged, CorruptArtifact, TrainflowError, disk_full, is_disk_full
from trainflow.logs import progress
from trainflow.store.blobs import (
    CHUNK,
    READ_ONLY,
    Stamp,
    Stamps,
    blob_path,
    blob_unchanged,
    checkout_matches,
    copy_hashing,
    file_sha256,
    files_to_store,
    hash_stream,
    head_digest,
    holds_blobs,
    rebuild_checkout,
    stamp_of,
)
from trainflow.store.index import create_tables, has_index, inserted_id, make_store_folders, reading, transaction
from trainflow.store.protocol import ArtifactStore
from trainflow.store.records import (
    ArtifactVersion,
    CachedRun,
    NewVersion,
    PromotionEntry,
    RunRecord,
    StoredFile,
    VerifyReport,
)
from trainflow.store.refs import (
    LATEST,
    ArtifactRef,
    check_settable,
    gated_alias_message,
    parse_ref,
    validate_alias,
    validate_name,
    validate_project,
)


def _refuse_gated_alias(db: sqlite3.Connection, name: str, alias: str, ref: str) -> None:
    """An alias the promotion gate has decided about (``prod``) moves only through the gate or
    a rollback, which check the candidate, keep the history and move the registry's alias too."""
    if db.execute("SELECT 1 FROM promotions WHERE name = ? AND alias = ? LIMIT 1", (name, alias)).fetchone():
        raise TrainflowError(gated_alias_message(name.rpartition("/")[2], alias, ref))


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
                if not has_index(db) and holds_blobs(self.blobs):
                    # Starting an empty index here would call every stored file an orphan,
                    # and `verify --repair` would delete them all.
                    raise CorruptArtifact(
                        f"{self.index_path} is missing or empty but {self.blobs} holds stored files: the index "
                        "that names them was lost; restore index.db from a backup (nothing was changed)"
                    )
                create_tables(db)
        except sqlite3.DatabaseError as error:
            if is_disk_full(error):
                raise
            raise CorruptArtifact(
                f"cannot open the store's index {self.index_path} ({error}): if the file is damaged, restore it "
                "from a backup; if it is unreadable, check the folder's permissions"
            ) from None

    # -- connection -----------------------------------------------------------------
    # Each read and write opens its own connection (trainflow.store.index): a SQLite
    # connection cannot cross threads, and _finish_blob reads the index from the fsync thread.

    def _transaction(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        return transaction(self.index_path)

    def _reading(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        return reading(self.index_path)

    # -- projects -------------------------------------------------------------------

    def _qualify(self, db: sqlite3.Connection, name: str) -> str:
        """The index's name for ``name`` in this store's project (see the class docstring)."""
        if "/" in name:
            return name
        if self.project is not None:
            return f"{self.project}/{name}"
        if db.execute("SELECT 1 FROM versions WHERE name = ? LIMIT 1", (name,)).fetchone():
            return name
        found = [
            r[0]
            for r in db.execute(
                "SELECT DISTINCT name FROM versions WHERE name LIKE ? ESCAPE '\\' ORDER BY name",
                ("%/" + name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_"),),
            )
        ]
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
        """Where the blob of ``sha256`` is in this store (whether or not it exists)."""
        return blob_path(self.blobs, sha256)

    def _put_blobs(self, entries: Sequence[tuple[str, Path]]) -> tuple[list[StoredFile], dict[str, tuple[str, Stamp]]]:
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
        buffers = (bytearray(CHUNK), bytearray(CHUNK))
        try:
            total = sum(source.stat().st_size for _, source in entries)
            with (
                self._reading() as db,
                ThreadPoolExecutor(1, "blob-writer") as writer,
                ThreadPoolExecutor(1, "blob-fsync") as finisher,
                progress(total, f"storing {len(entries)} file(s)") as bar,
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
                            sha, size = copy_hashing(reader, fd, writer, buffers, bar.update)
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
                (os.fstat(fd).st_size, head_digest(fd)),
            )
        }
        if not stamps:
            return None
        sha, size = hash_stream(reader, buffer)
        if sha in staged or blob_unchanged(self.blobs, sha, stamps.get(sha)):
            return sha, size
        reader.seek(0)
        return None

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
                if blob_unchanged(self.blobs, sha, tuple(row) if row else None):
                    return None
            os.fchmod(fd, READ_ONLY)
            os.fsync(fd)
            written = head_digest(fd), stamp_of(os.fstat(fd))
        finally:
            os.close(fd)
        target.parent.mkdir(exist_ok=True)
        os.replace(staging, target)
        return written

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
        walked = [files_to_store(Path(new.path)) for new in versions]
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
                refs.append(
                    self._insert_version(
                        db, name, new.type, kind, files, new.description, metadata_json, new.aliases, run
                    )
                )
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
            (
                name,
                number,
                type,
                kind,
                digest,
                sum(f.size for f in files),
                description,
                metadata_json,
                run.run_id if run else None,
                _now(),
            ),
        )
        version_id = inserted_id(cursor)
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
            existing = db.execute(
                "SELECT version_id FROM aliases WHERE name = ? AND alias = ?", (name, alias)
            ).fetchone()
            if existing is None:
                self._move_alias(db, name, alias, version_id, run_id)
            return self._load(db, version_id if existing is None else existing[0]), existing is None

    def update_metadata(self, ref: str, updates: Mapping[str, Any]) -> ArtifactVersion:
        """Merge ``updates`` into a version's metadata (top-level keys are replaced)."""
        with self._transaction() as db:
            version_id = self._resolve_id(db, parse_ref(ref))
            current = json.loads(db.execute("SELECT metadata FROM versions WHERE id = ?", (version_id,)).fetchone()[0])
            current.update(updates)
            db.execute(
                "UPDATE versions SET metadata = ? WHERE id = ?", (json.dumps(current, sort_keys=True), version_id)
            )
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
                    raise TrainflowError(
                        "'latest' is managed by the store: it names the version a step logged (or re-used from the cache) last"
                    )
                if candidate_id is None:
                    raise TrainflowError(
                        f"cannot move {name.rpartition('/')[2]}:{alias} without a version to move it to"
                    )
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
                (
                    name,
                    alias,
                    action,
                    outcome,
                    candidate_id,
                    current_id,
                    after_id,
                    run.run_id if run else None,
                    actor,
                    json.dumps(dict(details), sort_keys=True, default=str),
                    _now(),
                ),
            )
            return self._promotion(db, inserted_id(cursor))

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
            id=row["id"],
            name=row["name"].rpartition("/")[2],
            alias=row["alias"],
            action=row["action"],
            outcome=row["outcome"],
            candidate=ref(row["candidate_id"]),
            before=ref(row["before_id"]),
            after=ref(row["after_id"]),
            run_id=row["run_id"],
            actor=row["actor"],
            details=json.loads(row["details"]),
            at=row["at"],
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
                    raise TrainflowError(
                        f"{ref} was not logged as {name!r} by run {run_id}: not recording it as its output"
                    )
            db.execute(
                "INSERT OR IGNORE INTO step_cache (step, key, run_id, outputs, parts, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    step,
                    key,
                    run_id,
                    json.dumps(dict(outputs), sort_keys=True),
                    json.dumps(dict(parts), sort_keys=True),
                    _now(),
                ),
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
            CachedRun(
                r["step"], r["key"], r["run_id"], json.loads(r["outputs"]), json.loads(r["parts"]), r["created_at"]
            )
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
                    holder = db.execute(
                        "SELECT version_id FROM aliases WHERE name = ? AND alias = ?", (name, alias)
                    ).fetchone()
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
            row = db.execute(
                "SELECT id FROM versions WHERE name = ? AND version = ?", (ref.name, ref.version)
            ).fetchone()
        else:
            row = db.execute(
                "SELECT version_id FROM aliases WHERE name = ? AND alias = ?", (ref.name, ref.alias)
            ).fetchone()
        if row is not None:
            return int(row[0])
        project, _, short = ref.name.rpartition("/")
        known = [
            r[0].rpartition("/")[2]
            for r in db.execute("SELECT DISTINCT name FROM versions ORDER BY name")
            if r[0].rpartition("/")[0] == project
        ]
        where = f"project {project!r} of {self.root}" if project else str(self.root)
        if short not in known:
            hint = (
                f"known artifacts: {', '.join(known)}" if known else "it has none yet: run the step that logs it first"
            )
            raise ArtifactNotFound(f"no artifact named {short!r} in {where} ({hint})")
        versions = [
            f"v{r[0]}" for r in db.execute("SELECT version FROM versions WHERE name = ? ORDER BY version", (ref.name,))
        ]
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
        aliases = tuple(
            r[0] for r in db.execute("SELECT alias FROM aliases WHERE version_id = ? ORDER BY alias", (version_id,))
        )
        files = tuple(
            StoredFile(r["path"], r["sha256"], r["size"])
            for r in db.execute(
                "SELECT path, sha256, size FROM files WHERE version_id = ? ORDER BY path", (version_id,)
            )
        )
        run = (
            RunRecord(row["run_id"], row["step"], row["git_commit"], json.loads(row["params"]))
            if row["run_id"] is not None
            else None
        )
        project, _, name = row["name"].rpartition("/")
        return ArtifactVersion(
            name=name,
            project=project or None,
            version=row["version"],
            type=row["type"],
            kind=row["kind"],
            digest=row["digest"],
            size=row["size"],
            description=row["description"],
            metadata=json.loads(row["metadata"]),
            aliases=aliases,
            created_at=row["created_at"],
            run=run,
            files=files,
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
        if not (target.is_dir() and checkout_matches(self.blobs, target, version.files, stamps)):
            rebuild_checkout(self.blobs, self.tmp, target, version, stamps)
        if stamps.fresh:
            with self._transaction() as db:
                self._insert_stamps(db, stamps.fresh)
        return target

    def _stamps(self, version: ArtifactVersion) -> Stamps:
        with self._reading() as db:
            rows = db.execute(
                "SELECT s.sha256, s.device, s.inode, s.size, s.mtime_ns FROM blob_stamps s"
                " JOIN files f ON f.sha256 = s.sha256 JOIN versions v ON v.id = f.version_id"
                " WHERE v.name = ? AND v.version = ?",
                (version.name, version.version),
            ).fetchall()
        return Stamps({row[0]: (row[1], row[2], row[3], row[4]) for row in rows})

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


def lineage(store: ArtifactStore, ref: str) -> list[tuple[int, ArtifactVersion]]:
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
