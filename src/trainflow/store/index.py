"""The store's SQLite index (``index.db``): its schema, and opening it for a read or a write
transaction; what the tables mean is the business of :mod:`trainflow.store.local`."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path

from trainflow.errors import TrainflowError

# Every statement is CREATE ... IF NOT EXISTS, so opening an existing index keeps its rows.
SCHEMA = """
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


def has_index(db: sqlite3.Connection) -> bool:
    """Whether the database holds the store's tables (a new or emptied file does not)."""
    return db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'versions'").fetchone() is not None


def create_tables(db: sqlite3.Connection) -> None:
    """Create the tables and indexes the index lacks, in one transaction (a no-op when all exist)."""
    db.executescript(f"BEGIN IMMEDIATE;\n{SCHEMA}\nCOMMIT;")


def connect(index_path: Path) -> sqlite3.Connection:
    """A connection to the index: autocommit (transactions are explicit), WAL, full sync, foreign keys."""
    db = sqlite3.connect(index_path, timeout=60, isolation_level=None)
    db.row_factory = sqlite3.Row
    db.execute("PRAGMA busy_timeout = 60000")
    if db.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
        db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = FULL")
    db.execute("PRAGMA foreign_keys = ON")
    return db


@contextlib.contextmanager
def transaction(index_path: Path) -> Iterator[sqlite3.Connection]:
    """A write transaction that takes the write lock up front (no upgrade deadlocks)."""
    db = connect(index_path)
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
def reading(index_path: Path) -> Iterator[sqlite3.Connection]:
    """A connection for reads, closed on exit."""
    db = connect(index_path)
    try:
        yield db
    finally:
        db.close()


def inserted_id(cursor: sqlite3.Cursor) -> int:
    """The id of the row the INSERT on ``cursor`` just made (sqlite3 types ``lastrowid`` as
    optional: it is None only on a cursor that inserted nothing)."""
    if cursor.lastrowid is None:
        raise TrainflowError("the store's index inserted no row where one was expected")
    return cursor.lastrowid
