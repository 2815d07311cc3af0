"""Content-addressed files: hashing and copying them, the stamps that say a blob is unchanged
since it was hashed, and checkouts built from the read-only blobs (no index: callers pass
the folders and the stamps)."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import itertools
import os
import secrets
import shutil
import stat
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from trainflow.errors import CorruptArtifact, TrainflowError
from trainflow.store.records import ArtifactVersion, StoredFile

CHUNK = 4 << 20  # read and hashed at a time
_WRITE = 64 << 10  # written at a time (_write_all says why)
_HEAD = 64 << 10
READ_ONLY = 0o444
# os.link fails with these where the file system cannot link the blob into the checkout
# (another file system, no hard links, too many links, links protected): copy instead.
_NO_LINK = frozenset({errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS})
# A stamp taken by a reader is trusted only for a file last modified this long before it
# was hashed: a write in the same tick of the file system's clock would not move the time.
_RACY_NS = 2_000_000_000


# (device, inode, size, modification time in ns) of a blob file when its bytes were hashed
Stamp = tuple[int, int, int, int]


@dataclass
class Stamps:
    """One read's view of the stamps of a version's blobs: those recorded (``known``), and
    those of blobs this read hashed, to record (``fresh``: sha256 -> head digest, stamp)."""

    known: dict[str, Stamp]
    fresh: dict[str, tuple[str, Stamp]] = field(default_factory=dict)


# -- hashing and copying ------------------------------------------------------------


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The sha256 of a file's bytes, as the store names blobs."""
    with open(path, "rb", buffering=0) as reader:
        return hash_stream(reader, bytearray(CHUNK))[0]


def hash_stream(reader: io.RawIOBase, buffer: bytearray) -> tuple[str, int]:
    """The sha256 and length of what is left in an unbuffered ``reader``."""
    digest = hashlib.sha256()
    size = 0
    view = memoryview(buffer)
    while count := reader.readinto(buffer):
        digest.update(view[:count])  # hashlib releases the GIL on large buffers
        size += count
    return digest.hexdigest(), size


def copy_hashing(
    reader: io.RawIOBase,
    fd: int,
    writer: ThreadPoolExecutor,
    buffers: tuple[bytearray, bytearray],
    copied: Callable[[int], object] | None = None,
) -> tuple[str, int]:
    """Copy what is left in ``reader`` to ``fd``; the sha256 and length of the bytes written.

    ``writer`` (one thread) writes each chunk while this thread hashes it and reads the
    next one into the other buffer, so a chunk is hashed exactly as it is written.
    ``copied`` hears each chunk's length (a progress bar).
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
            if copied is not None:
                copied(count)
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


def stamp_of(info: os.stat_result) -> Stamp:
    """The stamp of a file from its ``os.stat`` result."""
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)


def head_digest(fd: int) -> str:
    """The sha256 of a file's first 64 KiB: with its size, what makes it look like a stored blob."""
    return hashlib.sha256(os.pread(fd, _HEAD, 0)).hexdigest()


# -- blobs --------------------------------------------------------------------------


def blob_path(blobs: Path, sha256: str) -> Path:
    """Where the blob of ``sha256`` lives under the store's ``blobs`` folder."""
    return blobs / sha256[:2] / sha256


def holds_blobs(blobs: Path) -> bool:
    """Whether the ``blobs`` folder holds any stored file."""
    return any(path.is_file() for path in blobs.rglob("*"))


def blob_unchanged(blobs: Path, sha: str, stamp: Stamp | None) -> bool:
    """Whether the blob ``sha`` is in place and, by its stamp, unchanged since it was hashed."""
    try:
        return stamp is not None and stamp_of(blob_path(blobs, sha).stat()) == stamp
    except FileNotFoundError:
        return False


def files_to_store(path: Path) -> tuple[str, list[tuple[str, Path]]]:
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


# -- checkouts ------------------------------------------------------------------------


def rebuild_checkout(blobs: Path, tmp: Path, target: Path, version: ArtifactVersion, stamps: Stamps) -> None:
    """Build the checkout in ``tmp/`` and swap it in for whatever is at ``target``."""
    staging = tmp / f"checkout-{secrets.token_hex(8)}"
    staging.mkdir()  # not mkdtemp (0700): the checkout's folders get the umask's modes, like its files
    try:
        for stored in version.files:
            destination = _inside(staging, stored.path, version)
            destination.parent.mkdir(parents=True, exist_ok=True)
            _place(blobs, stored, destination, version, stamps)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            # A stale or edited checkout: move it aside, then swap the fresh one in.
            graveyard = Path(tempfile.mkdtemp(dir=tmp, prefix="stale-"))
            with contextlib.suppress(FileNotFoundError, OSError):
                os.replace(target, graveyard / "old")
            shutil.rmtree(graveyard, ignore_errors=True)
        try:
            os.replace(staging, target)
        except OSError:
            # Another reader put an identical, verified checkout in place first.
            if not (target.is_dir() and checkout_matches(blobs, target, version.files, stamps)):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _place(blobs: Path, stored: StoredFile, destination: Path, version: ArtifactVersion, stamps: Stamps) -> None:
    """Link the blob of ``stored`` to ``destination`` and check it; copy it where linking fails."""
    blob = blob_path(blobs, stored.sha256)
    try:
        os.link(blob, destination)
    except FileNotFoundError:
        raise _damaged(blobs, version, stored, "missing") from None
    except OSError as error:
        if error.errno not in _NO_LINK:
            raise
        _copy_verified(blobs, stored, destination, version)
        return
    if not _intact(blobs, destination, stored, stamps):
        raise _damaged(blobs, version, stored, "modified")


def _intact(blobs: Path, path: Path, stored: StoredFile, stamps: Stamps) -> bool:
    """Whether ``path`` holds the bytes of ``stored``: the blob itself with its stamp
    unchanged, or any file that hashes to its digest. A blob hashed here gets a new stamp
    (``stamps.fresh``) unless it was modified too recently to trust one. Leaves the file
    read-only."""
    info = os.lstat(path)
    if not stat.S_ISREG(info.st_mode) or info.st_size != stored.size:
        return False
    if stamp_of(info) != stamps.known.get(stored.sha256):
        began = time.time_ns()
        with open(path, "rb", buffering=0) as reader:
            if hash_stream(reader, bytearray(CHUNK))[0] != stored.sha256:
                return False
            head = head_digest(reader.fileno())
        with contextlib.suppress(FileNotFoundError):
            is_blob = os.path.samestat(info, blob_path(blobs, stored.sha256).stat())
            if is_blob and stamp_of(os.lstat(path)) == stamp_of(info) and info.st_mtime_ns < began - _RACY_NS:
                stamps.known[stored.sha256] = stamp_of(info)
                stamps.fresh[stored.sha256] = head, stamp_of(info)
    if info.st_mode & 0o222:
        os.chmod(path, READ_ONLY)
    return True


def _damaged(blobs: Path, version: ArtifactVersion, stored: StoredFile, how: str) -> CorruptArtifact:
    problem = (
        f"blob for {stored.path!r} is missing from {blobs}"
        if how == "missing"
        else f"{stored.path!r} does not match its recorded sha256 (the blob was modified on disk)"
    )
    return CorruptArtifact(
        f"{version.ref}: {problem}; run `trainflow artifacts verify` and re-run the step that produced it"
    )


def _copy_verified(blobs: Path, stored: StoredFile, destination: Path, version: ArtifactVersion) -> None:
    """A read-only copy of the blob of ``stored``, hashed as it is written."""
    try:
        with (
            open(blob_path(blobs, stored.sha256), "rb", buffering=0) as reader,
            open(destination, "wb", buffering=0) as copy,
            ThreadPoolExecutor(1, "checkout-writer") as writer,
        ):
            sha, _ = copy_hashing(reader, copy.fileno(), writer, (bytearray(CHUNK), bytearray(CHUNK)))
            os.fchmod(copy.fileno(), READ_ONLY)
    except FileNotFoundError:
        raise _damaged(blobs, version, stored, "missing") from None
    if sha != stored.sha256:
        raise _damaged(blobs, version, stored, "modified")


def checkout_matches(blobs: Path, directory: Path, files: Sequence[StoredFile], stamps: Stamps) -> bool:
    """Whether ``directory`` holds exactly ``files``, each intact (see :func:`_intact`)."""
    present = sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file() or p.is_symlink())
    if present != sorted(f.path for f in files):
        return False
    return all(_intact(blobs, directory / stored.path, stored, stamps) for stored in files)


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
