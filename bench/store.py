"""The artifact store against a plain file copy, measured side by side in one run: logging
and reading a directory of ~1 GiB (8 files of 128 MiB of random bytes plus 32 small ones),
logging the same content again, and the disk each of these adds.

    python bench/store.py [--smoke] [--repeat N]

Each repeat copies the directory with `cp -r` (then `sync`s the copy, since the store
fsyncs every blob it writes) and logs it into a fresh store, then logs it again, reads it
back twice with `use_artifact`, and logs it with its big files changed near the start and
then further in (same sizes: the cases where the store hashes a file before copying it or
not). A last log into another fresh store runs with fsync patched out, for reference. The
best of the repeats is reported for each row.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from unittest import mock

from report import Section, Target, machine, mebibytes, print_section, ratio, seconds, stopwatch

from trainflow.store.local import LocalArtifactStore

BIG_FILES, BIG_SIZE = 8, 128 * 2**20
SMALL_FILES, SMALL_SIZE = 32, 16 * 2**10
GOAL = 1.5  # the bound: store operations within 1.5x of a plain copy


def make_source(directory: Path, big_files: int, big_size: int) -> int:
    """A directory of random bytes (incompressible, all distinct); returns its size in bytes."""
    (directory / "small").mkdir(parents=True)
    for index in range(big_files):
        with open(directory / f"part-{index}.bin", "wb") as writer:
            for _ in range(0, big_size, 2**24):
                writer.write(os.urandom(min(2**24, big_size)))
    for index in range(SMALL_FILES):
        (directory / "small" / f"meta-{index}.json").write_bytes(os.urandom(SMALL_SIZE))
    return big_files * big_size + SMALL_FILES * SMALL_SIZE


def change(source: Path, offset: int) -> None:
    """New bytes at ``offset`` of each big file: new content of the sizes already stored."""
    for part in sorted(source.glob("part-*.bin")):
        with open(part, "r+b") as writer:
            writer.seek(offset)
            writer.write(os.urandom(16))


def allocated(root: Path) -> int:
    """Bytes of disk the regular files under ``root`` occupy, each inode counted once (a
    hard link adds nothing). Directories are left out: a few KiB of entries."""
    seen: dict[tuple[int, int], int] = {}
    for current, _, names in os.walk(root):
        for name in names:
            info = os.lstat(os.path.join(current, name))
            seen[(info.st_dev, info.st_ino)] = info.st_blocks * 512
    return sum(seen.values())


def release(root: Path) -> None:
    """Write back the files under ``root`` and drop them from the page cache (no root needed),
    so that the next write reuses memory just freed, as each `cp -r` and first log does after
    the previous copy is deleted."""
    os.sync()
    for current, _, names in os.walk(root):
        for name in names:
            fd = os.open(os.path.join(current, name), os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def timed(action: Callable[[], object]) -> float:
    """Seconds ``action`` takes, after writing back what earlier steps left dirty, so that
    no measurement pays for another's writes."""
    os.sync()
    with stopwatch() as elapsed:
        action()
    return elapsed[0]


def copy_with_cp(source: Path, target: Path) -> tuple[float, float]:
    """``cp -r`` alone, and ``cp -r`` followed by ``sync`` of the copied files."""
    os.sync()
    with stopwatch() as durable:
        with stopwatch() as copy:
            subprocess.run(["cp", "-r", str(source), str(target)], check=True)
        subprocess.run(["sync", *(str(path) for path in target.rglob("*") if path.is_file())], check=True)
    return copy[0], durable[0]


def one_repeat(source: Path, scratch: Path, figures: dict[str, list[float]]) -> None:
    scratch.mkdir()
    copy, durable = copy_with_cp(source, scratch / "copy")
    figures["copy bytes"].append(allocated(scratch / "copy"))
    shutil.rmtree(scratch / "copy")

    store = LocalArtifactStore(scratch / "store")
    logged = timed(lambda: store.log_artifact(source, "bench", "dataset"))
    blobs_after_first = allocated(store.blobs)
    again = timed(lambda: store.log_artifact(source, "bench", "dataset"))
    duplicate_bytes = allocated(store.blobs) - blobs_after_first
    before_read = allocated(store.root)
    cold = timed(lambda: store.use_artifact("bench:v0"))
    checkout_bytes = allocated(store.root) - before_read
    warm = timed(lambda: store.use_artifact("bench:v0"))
    change(source, 0)
    release(store.root)
    changed_head = timed(lambda: store.log_artifact(source, "bench", "dataset"))
    change(source, 2**20)
    release(store.root)
    changed_tail = timed(lambda: store.log_artifact(source, "bench", "dataset"))
    fresh = LocalArtifactStore(scratch / "fresh")
    release(store.root)
    with mock.patch("trainflow.store.local.os.fsync"):  # a reference only: what the fsyncs cost a log
        unsynced = timed(lambda: fresh.log_artifact(source, "bench", "dataset"))

    for key, value in [
        ("cp", copy),
        ("cp+sync", durable),
        ("log", logged),
        ("log unsynced", unsynced),
        ("log again", again),
        ("log changed head", changed_head),
        ("log changed tail", changed_tail),
        ("read cold", cold),
        ("read warm", warm),
        ("blob bytes", blobs_after_first),
        ("dup bytes", duplicate_bytes),
        ("checkout bytes", checkout_bytes),
    ]:
        figures[key].append(value)
    shutil.rmtree(scratch)


def measure(smoke: bool, repeat: int | None = None) -> Section:
    """Side-by-side figures; ``smoke`` logs a few MiB once and compares nothing to a target."""
    big_files, big_size = (4, 2**20) if smoke else (BIG_FILES, BIG_SIZE)
    repeat = repeat or (1 if smoke else 3)
    section = Section(
        "5. Artifact store: log and read a directory vs. cp -r",
        ["operation", f"seconds (best of {repeat})", "vs cp -r", "vs cp -r + sync", "disk added"],
    )
    figures: dict[str, list[float]] = {
        key: []
        for key in (
            "cp",
            "cp+sync",
            "log",
            "log unsynced",
            "log again",
            "log changed head",
            "log changed tail",
            "read cold",
            "read warm",
            "blob bytes",
            "dup bytes",
            "checkout bytes",
            "copy bytes",
        )
    }
    notes = [machine()]
    with tempfile.TemporaryDirectory(prefix="trainflow-bench-store-") as scratch:
        source = Path(scratch) / "source"
        total = make_source(source, big_files, big_size)
        for attempt in range(repeat):
            one_repeat(source, Path(scratch) / f"run-{attempt}", figures)
    best = {key: min(values) for key, values in figures.items()}
    worst_bytes = {key: max(figures[key]) for key in ("dup bytes", "checkout bytes")}

    def row(label: str, key: str, added: str = "") -> None:
        value = best[key]
        section.add(label, seconds(value), ratio(value / best["cp"]), ratio(value / best["cp+sync"]), added)

    row("cp -r", "cp", mebibytes(best["copy bytes"]))
    row("cp -r, then sync of the copy", "cp+sync")
    row("log_artifact (new content, fsync per blob)", "log", f"{mebibytes(best['blob bytes'])} of blobs")
    row("log_artifact with fsync patched out (reference)", "log unsynced")
    row("log_artifact again (identical content)", "log again", f"{worst_bytes['dup bytes']:,} bytes of blobs")
    row("log_artifact, big files changed in their first 64 KiB (same sizes)", "log changed head")
    row("log_artifact, big files changed after their first 64 KiB (same sizes)", "log changed tail")
    row("use_artifact, first read (no checkout yet)", "read cold", f"{worst_bytes['checkout bytes']:,} bytes")
    row("use_artifact, again (checkout in place)", "read warm")
    notes += [
        f"source: {total / 2**20:,.1f} MiB in {big_files} files of {big_size / 2**20:g} MiB of random bytes"
        f" and {SMALL_FILES} of {SMALL_SIZE // 1024} KiB, on the file system of {Path(tempfile.gettempdir())}",
        "dropping the page cache needs root, which the bench does not assume, so every row runs with the source (and the blobs) "
        "already cached, the same for cp and the store; before each timed operation `sync` writes back what "
        "earlier ones left dirty",
        "cp -r does not make the copy durable; the store fsyncs each blob before renaming it into place, so "
        "`cp -r` + `sync` is the like-for-like comparison for logging; the reference row shows what the fsyncs cost",
        "the kernel time of writing 1 GiB into the page cache varies from run to run on this machine (a VM), "
        "and is several times larger for large writes (large page-cache folios), which is why the store writes "
        "in 64 KiB pieces as cp does; to keep conditions alike, every timed write follows the release of about "
        "as much page cache: a deleted copy, or the store's files dropped from the cache with posix_fadvise",
        "disk added: allocated blocks of regular files, each inode once (hard links count once); directory "
        "entries are left out",
    ]
    section.notes = notes
    if smoke:
        section.notes.append("smoke run: figures mean nothing and are not compared to targets")
        return section
    section.targets = [
        Target(
            "log a 1 GiB directory",
            f"<= {GOAL}x cp -r + sync",
            ratio(best["log"] / best["cp+sync"]),
            best["log"] <= GOAL * best["cp+sync"],
        ),
        Target(
            "log a 1 GiB directory (literal: vs cp -r without sync)",
            f"<= {GOAL}x cp -r",
            ratio(best["log"] / best["cp"]),
            best["log"] <= GOAL * best["cp"],
        ),
        Target(
            "read it, first use_artifact",
            f"<= {GOAL}x cp -r",
            ratio(best["read cold"] / best["cp"]),
            best["read cold"] <= GOAL * best["cp"],
        ),
        Target(
            "read it, reused checkout",
            f"<= {GOAL}x cp -r",
            ratio(best["read warm"] / best["cp"]),
            best["read warm"] <= GOAL * best["cp"],
        ),
        Target(
            "identical content logged twice",
            "adds 0 bytes of blobs",
            f"{worst_bytes['dup bytes']:,} bytes",
            worst_bytes["dup bytes"] == 0,
        ),
        Target(
            "a checkout", "adds 0 bytes", f"{worst_bytes['checkout bytes']:,} bytes", worst_bytes["checkout bytes"] == 0
        ),
    ]
    return section


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="a few MiB, once: checks that the bench runs")
    parser.add_argument("--repeat", type=int, default=None, help="repeats, best of each row kept (default 3; smoke 1)")
    args = parser.parse_args()
    print_section(measure(args.smoke, args.repeat))


if __name__ == "__main__":
    main()
