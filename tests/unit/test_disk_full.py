"""A disk that fills up while the store writes: one clear error, no partial version, and
the store keeps working once there is room. On a real small tmpfs where the machine lets
the test mount one (CI runs as root), and with ENOSPC raised at the file layer everywhere.
"""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from trainflow.errors import DiskFull, exit_on_user_error
from trainflow.store.local import LocalArtifactStore


def assert_nothing_partial(store: LocalArtifactStore, versions_before: int) -> None:
    assert len(store.list_versions("data")) == versions_before, "a version appeared for a failed write"
    assert store.verify().ok
    assert list(store.tmp.iterdir()) == [], "staging files were left behind"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs, unmounted afterwards."""
    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount_point)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip()}); the simulated ENOSPC test covers this")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_a_real_full_disk_is_one_clear_error_and_nothing_partial(small_disk: Path, tmp_path: Path) -> None:
    store = LocalArtifactStore(small_disk / "store")
    small = tmp_path / "small.bin"
    small.write_bytes(os.urandom(512 * 1024))
    store.log_artifact(small, "data", "dataset")
    big = tmp_path / "big"
    big.mkdir()
    for index in range(3):  # the first part fits, the second fills the disk
        (big / f"part-{index}.bin").write_bytes(os.urandom(2 * 1024 * 1024))

    with pytest.raises(DiskFull) as error:
        store.log_artifact(big, "data", "dataset")
    message = str(error.value)
    assert "no space left on the device" in message and str(store.root) in message and "TRAINFLOW_HOME" in message
    assert_nothing_partial(store, 1)
    # The part that fit is an orphan blob; repair frees it, and then there is room again.
    assert store.verify(grace_seconds=0).orphans
    store.verify(repair=True, grace_seconds=0)
    again = store.log_artifact(small, "data", "dataset")
    assert again.version == 1 and store.use_artifact(again.ref).read_bytes() == small.read_bytes()


def test_enospc_at_the_file_layer_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = LocalArtifactStore(tmp_path / "store")
    source = tmp_path / "data.bin"
    source.write_bytes(os.urandom(100_000))
    store.log_artifact(source, "data", "dataset")

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("trainflow.store.local.os.fsync", full)
    source.write_bytes(os.urandom(100_000))
    with pytest.raises(DiskFull, match="no space left on the device"):
        store.log_artifact(source, "data", "dataset")
    monkeypatch.undo()
    assert_nothing_partial(store, 1)
    assert store.log_artifact(source, "data", "dataset").version == 1


def test_a_step_that_fills_the_disk_exits_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """Outside the store (a component writing its output file), ENOSPC is still one line."""
    with pytest.raises(SystemExit) as exited, exit_on_user_error("split_data"):
        raise OSError(errno.ENOSPC, "No space left on device", "/store/tmp/split/test_data.parquet")
    assert exited.value.code == 1
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("split_data: error: no space left on the device") and "test_data.parquet" in line
