"""Checkouts are hard links to read-only blobs, and logging copies only what is new.

How reads are verified (``trainflow.store.local``'s docstring): a blob is hashed as it is
written and stamped (inode, size, modification time); a read compares the stamp and hashes
only a blob whose stamp changed. So a blob modified through the file system is refused on
read, while damage that keeps the stamp (a disk's bit rot, a write whose time was set
back) is found by ``verify``, after which reads refuse it too. Real files, real SQLite.
"""

from __future__ import annotations

import errno
import os
import shutil
import sqlite3
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.project import tamper

import trainflow.store.blobs
import trainflow.store.local
from trainflow.errors import CorruptArtifact
from trainflow.store.blobs import file_sha256
from trainflow.store.local import LocalArtifactStore

NOBODY = 65534


def write_tree(root: Path, files: dict[str, bytes]) -> Path:
    for relative, content in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(content)
    return root


def allocated(root: Path) -> int:
    """Disk blocks of the regular files under ``root``, each inode once (a link adds nothing)."""
    inodes = {}
    for path in root.rglob("*"):
        info = path.lstat()
        if stat.S_ISREG(info.st_mode):
            inodes[(info.st_dev, info.st_ino)] = info.st_blocks * 512
    return sum(inodes.values())


def open_unprivileged(path: Path, mode: str) -> str:
    """Open ``path`` with ``mode`` (and write a byte if writable) as a user without privileges,
    in a child process dropped to nobody when the tests run as root (root ignores file modes);
    'ok', or the name of the error."""

    def attempt() -> str:
        try:
            with open(path, mode) as handle:
                if mode != "rb":
                    handle.write(b"x")
        except OSError as error:
            return type(error).__name__
        return "ok"

    if os.geteuid() != 0:
        return attempt()
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:  # never return into pytest from here
        try:
            os.close(reader)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            os.write(writer, attempt().encode())
        finally:
            os._exit(0)
    os.close(writer)
    os.waitpid(child, 0)
    with os.fdopen(reader) as pipe:
        return pipe.read()


@pytest.fixture
def store(tmp_path: Path) -> LocalArtifactStore:
    return LocalArtifactStore(tmp_path / "store")


@pytest.fixture
def shared_store() -> Iterator[LocalArtifactStore]:
    """A store in a folder any user may enter (pytest's tmp_path is private to its owner)."""
    folder = Path(tempfile.mkdtemp(prefix="trainflow-links-"))
    folder.chmod(0o755)
    try:
        yield LocalArtifactStore(folder / "store")
    finally:
        shutil.rmtree(folder)


@pytest.fixture
def logged(store: LocalArtifactStore, tmp_path: Path) -> tuple[LocalArtifactStore, dict[str, bytes]]:
    files = {"weights.bin": os.urandom(300_000), "sub/config.json": b'{"k": 1}', "sub/same.json": b'{"k": 1}'}
    store.log_artifact(write_tree(tmp_path / "model", files), "model", "model")
    return store, files


def read_tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_checkout_is_the_blobs_themselves_and_adds_no_disk(logged) -> None:  # type: ignore[no-untyped-def]
    store, files = logged
    blobs = [store.blob_path(f.sha256) for f in store.get("model:v0").files]
    assert all(stat.S_IMODE(blob.stat().st_mode) == 0o444 for blob in blobs), "blobs are read-only from the start"
    before = allocated(store.root)
    checkout = store.use_artifact("model:v0")
    assert read_tree(checkout) == files
    assert allocated(store.root) == before, "a checkout must not copy the blobs"
    for stored in store.get("model:v0").files:
        linked, blob = (checkout / stored.path).stat(), store.blob_path(stored.sha256).stat()
        assert (linked.st_dev, linked.st_ino) == (blob.st_dev, blob.st_ino)
        assert linked.st_nlink >= 2
    # Two paths with the same bytes share one blob: the blob plus two links.
    assert (checkout / "sub" / "same.json").stat().st_nlink == 3


def test_writing_into_a_checkout_is_refused_and_the_store_stays_sound(shared_store: LocalArtifactStore) -> None:
    source = Path(tempfile.mkdtemp(dir=shared_store.root.parent)) / "table.parquet"
    source.write_bytes(os.urandom(100_000))
    shared_store.log_artifact(source, "table.parquet", "dataset")
    checkout = shared_store.use_artifact("table.parquet")

    assert open_unprivileged(checkout, "rb") == "ok", "the reader must be able to reach and read the file"
    assert open_unprivileged(checkout, "r+b") == "PermissionError"
    assert open_unprivileged(checkout, "wb") == "PermissionError", "truncating it must fail too"
    assert checkout.read_bytes() == source.read_bytes()
    assert shared_store.verify().ok
    assert shared_store.use_artifact("table.parquet").read_bytes() == source.read_bytes()


def test_a_forced_write_through_a_checkout_is_refused_on_the_next_read(logged) -> None:  # type: ignore[no-untyped-def]
    """Root, or a step that chmods the file first, writes into the blob itself: the next
    read and ``verify`` both name the damage (re-run the producing step to heal it)."""
    store, _ = logged
    checkout = store.use_artifact("model:v0")
    tamper(checkout / "weights.bin", os.urandom(300_000))
    with pytest.raises(CorruptArtifact, match="'weights.bin' does not match"):
        store.use_artifact("model:v0")
    assert any("modified on disk" in problem and "weights.bin" in problem for problem in store.verify().problems)


def test_a_modified_blob_is_refused_on_read_with_its_checkout_in_place(logged) -> None:  # type: ignore[no-untyped-def]
    store, _ = logged
    store.use_artifact("model:v0")
    weights = next(f for f in store.get("model:v0").files if f.path == "weights.bin")
    tamper(store.blob_path(weights.sha256), os.urandom(300_000))  # same size; its time moves
    with pytest.raises(CorruptArtifact, match="model:v0: 'weights.bin'"):
        store.use_artifact("model:v0")


def test_damage_that_keeps_the_stamp_is_found_by_verify_and_then_refused_on_read(  # type: ignore[no-untyped-def]
    logged,
) -> None:
    """Reads trust an unchanged stamp; ``verify`` hashes every blob, and forgets the stamp
    of a damaged one so that reads hash it (and refuse it) from then on."""
    store, _ = logged
    weights = next(f for f in store.get("model:v0").files if f.path == "weights.bin")
    blob = store.blob_path(weights.sha256)
    before = blob.stat()
    tamper(blob, os.urandom(300_000))
    os.utime(blob, ns=(before.st_atime_ns, before.st_mtime_ns))  # as bit rot would: size and time unchanged

    problems = store.verify().problems
    assert any("modified on disk" in problem for problem in problems)
    with pytest.raises(CorruptArtifact, match="weights.bin"):
        store.use_artifact("model:v0")


def test_reads_hash_nothing_while_the_stamps_hold(  # type: ignore[no-untyped-def]
    logged, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer stamped the blobs it hashed: neither the first read (links) nor a reuse hashes."""
    store, files = logged

    def no_hashing(*args: object) -> None:
        raise AssertionError("a read hashed a blob whose stamp holds")

    monkeypatch.setattr(trainflow.store.blobs, "hash_stream", no_hashing)
    first = store.use_artifact("model:v0")
    assert store.use_artifact("model:v0") == first
    assert read_tree(first) == files


def test_an_unstamped_blob_is_hashed_once_then_stamped_and_made_read_only(  # type: ignore[no-untyped-def]
    logged, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store from before stamps (writable blobs, no stamps): the first read hashes and
    stamps each blob, unless it was modified too recently to trust a stamp."""
    store, files = logged
    blobs = {f.sha256: store.blob_path(f.sha256) for f in store.get("model:v0").files}
    with sqlite3.connect(store.index_path) as db:
        db.execute("DELETE FROM blob_stamps")
    old = time.time() - 3600
    young = blobs.pop(next(f.sha256 for f in store.get("model:v0").files if f.path == "weights.bin"))
    for blob in blobs.values():
        blob.chmod(0o644)
        os.utime(blob, (old, old))

    hashed: list[str] = []
    real = trainflow.store.blobs.hash_stream
    monkeypatch.setattr(
        trainflow.store.blobs, "hash_stream", lambda reader, buffer: hashed.append(reader.name) or real(reader, buffer)
    )
    assert read_tree(store.use_artifact("model:v0")) == files
    assert len(hashed) == 2, "each of the two distinct blobs is hashed once"
    with sqlite3.connect(store.index_path) as db:
        stamped = {row[0] for row in db.execute("SELECT sha256 FROM blob_stamps")}
    assert stamped == set(blobs), "the old blobs are stamped, the just-written one is not (racy)"
    assert all(stat.S_IMODE(blob.stat().st_mode) == 0o444 for blob in blobs.values())

    hashed.clear()
    store.use_artifact("model:v0")
    assert [Path(name).name for name in hashed] == ["weights.bin"], "only the unstamped blob is hashed again"
    assert young.exists()


@pytest.mark.parametrize("refusal", [errno.EXDEV, errno.EMLINK, errno.EPERM])
def test_where_links_fail_the_checkout_is_a_verified_read_only_copy(
    logged,
    monkeypatch: pytest.MonkeyPatch,
    refusal: int,  # type: ignore[no-untyped-def]
) -> None:
    store, files = logged

    def cannot_link(source: object, destination: object) -> None:
        raise OSError(refusal, os.strerror(refusal))

    monkeypatch.setattr(trainflow.store.blobs.os, "link", cannot_link)
    checkout = store.use_artifact("model:v0")
    assert read_tree(checkout) == files
    weights = next(f for f in store.get("model:v0").files if f.path == "weights.bin")
    copied = (checkout / "weights.bin").stat()
    assert copied.st_ino != store.blob_path(weights.sha256).stat().st_ino, "a copy, not a link"
    assert stat.S_IMODE(copied.st_mode) == 0o444
    assert store.use_artifact("model:v0") == checkout, "a sound copy is reused"

    tamper(store.blob_path(weights.sha256), os.urandom(300_000))
    shutil.rmtree(checkout)
    with pytest.raises(CorruptArtifact, match="'weights.bin' does not match"):
        store.use_artifact("model:v0")


def test_logging_identical_content_again_copies_nothing(
    store: LocalArtifactStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = {"a.bin": os.urandom(500_000), "b.bin": os.urandom(500_000), "c.txt": b"c"}
    source = write_tree(tmp_path / "data", files)
    first = store.log_artifact(source, "data", "dataset")
    blobs = allocated(store.blobs)

    copies: list[int] = []
    real = trainflow.store.local.copy_hashing
    monkeypatch.setattr(trainflow.store.local, "copy_hashing", lambda *args: copies.append(1) or real(*args))
    second = store.log_artifact(source, "data", "dataset")
    assert copies == [], "a duplicate is hashed, never copied"
    assert allocated(store.blobs) == blobs
    assert second.digest == first.digest and second.version == 1
    assert list(store.tmp.iterdir()) == []

    # Same size and first 64 KiB, other bytes after: hashed first, then copied as new content.
    changed = bytearray(files["a.bin"])
    changed[400_000] ^= 0xFF
    (source / "a.bin").write_bytes(bytes(changed))
    third = store.log_artifact(source, "data", "dataset")
    assert copies == [1]
    stored = next(f for f in third.files if f.path == "a.bin")
    assert file_sha256(store.blob_path(stored.sha256)) == stored.sha256
    assert read_tree(store.use_artifact(third.ref))["a.bin"] == bytes(changed)
    assert store.verify().ok


def test_logging_the_content_of_a_damaged_blob_again_replaces_it(  # type: ignore[no-untyped-def]
    logged, tmp_path: Path
) -> None:
    """'Re-run the step that produced it' heals the store: the new copy replaces the damaged blob."""
    store, files = logged
    weights = next(f for f in store.get("model:v0").files if f.path == "weights.bin")
    tamper(store.blob_path(weights.sha256), os.urandom(300_000))
    assert not store.verify().ok

    store.log_artifact(write_tree(tmp_path / "again", files), "model", "model")
    assert store.verify().ok
    assert read_tree(store.use_artifact("model:v0")) == files


def test_verify_counts_no_checkout_link_as_an_orphan(logged, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store, files = logged
    store.log_artifact(write_tree(tmp_path / "other", {"x.bin": os.urandom(1000)}), "other", "dataset")
    store.use_artifact("model:v0")
    store.use_artifact("other:v0")
    report = store.verify(grace_seconds=0)
    assert report.ok and report.orphans == [] and report.recent_orphans == [] and report.stale_tmp == []
    assert report.blobs == 3  # weights, the shared json, x.bin
    repaired = store.verify(repair=True, grace_seconds=0)
    assert repaired.removed == []
    assert read_tree(store.use_artifact("model:v0")) == files
