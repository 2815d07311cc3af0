"""`trainflow artifacts verify`: every blob against its digest, the index against itself,
and the garbage a killed writer leaves (orphaned blobs, stale temporary files).
Real SQLite and real files; the CLI runs as a user runs it.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import sys
import time
from pathlib import Path

import pytest
from support.project import BIN_DIR, run_command, tamper

from trainflow.errors import CorruptArtifact, TrainflowError
from trainflow.store.local import LocalArtifactStore

TRAINFLOW = str(BIN_DIR / "trainflow")


def age(path: Path, seconds: float) -> None:
    """Make ``path`` look ``seconds`` old, as garbage from an earlier crash would."""
    then = time.time() - seconds
    os.utime(path, (then, then))


@pytest.fixture
def store(tmp_path: Path) -> LocalArtifactStore:
    store = LocalArtifactStore(tmp_path / "store")
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "MLmodel").write_text("flavors: {}")
    (folder / "weights.bin").write_bytes(os.urandom(50_000))
    store.log_artifact(folder, "model_export", "model_export")
    data = tmp_path / "data.csv"
    data.write_text("a,b\n1,2\n")
    store.log_artifact(data, "raw_data", "raw_data")
    return store


def test_a_healthy_store_verifies_clean(store: LocalArtifactStore) -> None:
    report = store.verify()
    assert report.ok and report.problems == []
    assert report.versions == 2 and report.blobs == 3
    assert report.bytes_checked == 50_000 + len("flavors: {}") + len("a,b\n1,2\n")
    assert report.orphans == [] and report.stale_tmp == []


def test_a_modified_blob_is_a_problem_naming_the_version_and_file(store: LocalArtifactStore) -> None:
    weights = next(f for f in store.get("model_export:v0").files if f.path == "weights.bin")
    tamper(store.blob_path(weights.sha256), os.urandom(50_000))
    report = store.verify()
    assert not report.ok
    [problem] = report.problems
    assert "modified on disk" in problem and "model_export:v0 'weights.bin'" in problem


def test_a_missing_blob_is_a_problem(store: LocalArtifactStore) -> None:
    store.blob_path(store.get("raw_data:v0").files[0].sha256).unlink()
    [problem] = store.verify().problems
    assert "is missing" in problem and "raw_data:v0 'data.csv'" in problem


def test_an_index_that_contradicts_itself_is_a_problem(store: LocalArtifactStore) -> None:
    """A file row edited behind the store's back no longer matches the version's digest."""
    with sqlite3.connect(store.index_path) as db:
        db.execute("UPDATE files SET size = size + 1 WHERE path = 'data.csv'")
    problems = store.verify().problems
    assert any("raw_data:v0: its file list does not match" in p for p in problems)


def test_orphans_are_removed_only_when_old_and_asked(store: LocalArtifactStore) -> None:
    """Old orphans (a killed writer's blob) go with repair; a young one may be a running
    step's blob about to be committed, so it stays."""
    old = store.blobs / "ab" / ("ab" + "0" * 62)
    old.parent.mkdir(exist_ok=True)
    old.write_bytes(b"left by a killed writer")
    age(old, 7200)
    young = store.blobs / "cd" / ("cd" + "1" * 62)
    young.parent.mkdir(exist_ok=True)
    young.write_bytes(b"being written right now")
    staging = store.tmp / "blob-abc123"
    staging.write_bytes(b"half a blob")
    age(staging, 7200)

    report = store.verify()
    assert report.ok, "garbage is not damage"
    assert report.orphans == [old] and report.recent_orphans == [young] and report.stale_tmp == [staging]
    assert old.exists() and staging.exists(), "verify without repair removes nothing"

    repaired = store.verify(repair=True)
    assert set(repaired.removed) == {old, staging}
    assert not old.exists() and not staging.exists() and young.exists()
    assert store.use_artifact("model_export:v0").is_dir(), "referenced blobs are untouched"
    assert store.verify().orphans == []


def test_cli_reports_problems_in_one_error_line_and_exits_1(store: LocalArtifactStore) -> None:
    env = {**os.environ, "TRAINFLOW_HOME": str(store.root)}
    clean = run_command([TRAINFLOW, "artifacts", "verify"], env)
    assert clean.returncode == 0, clean.stderr
    assert "checked 2 version(s), 3 blob(s)" in clean.stdout and "store OK" in clean.stdout

    tamper(store.blob_path(store.get("raw_data:v0").files[0].sha256), b"tampered")
    broken = run_command([TRAINFLOW, "artifacts", "verify"], env)
    assert broken.returncode == 1
    # each problem is an error message (on stderr, said with -q too), then the one error line
    assert "PROBLEM blob" in broken.stderr and "raw_data:v0 'data.csv'" in broken.stderr
    errors = [line for line in broken.stderr.splitlines() if ": error: " in line]
    assert len(errors) == 1 and "1 problem(s) in the store" in errors[0] and "re-run the steps" in errors[0]


def test_cli_repair_removes_old_orphans(store: LocalArtifactStore) -> None:
    orphan = store.blobs / "ef" / ("ef" + "2" * 62)
    orphan.parent.mkdir(exist_ok=True)
    orphan.write_bytes(b"x")
    age(orphan, 7200)
    env = {**os.environ, "TRAINFLOW_HOME": str(store.root)}
    listed = run_command([TRAINFLOW, "artifacts", "verify"], env)
    assert listed.returncode == 0 and "warning:   1 orphaned blob(s)" in listed.stderr and "--repair" in listed.stderr
    repaired = run_command([TRAINFLOW, "artifacts", "verify", "--repair"], env)
    assert repaired.returncode == 0 and "removed 1 orphaned blob(s)" in repaired.stdout
    assert not orphan.exists()


def test_a_recorded_path_that_escapes_is_refused_on_read_and_reported(
    store: LocalArtifactStore, tmp_path: Path
) -> None:
    """An index edited to point a file at ``../`` must not make a checkout write outside the store."""
    with sqlite3.connect(store.index_path) as db:
        db.execute("UPDATE files SET path = '../../../escaped.txt' WHERE path = 'MLmodel'")
    shutil.rmtree(store.checkouts / "model_export", ignore_errors=True)
    with pytest.raises(CorruptArtifact, match="points outside the artifact"):
        store.use_artifact("model_export:v0")
    assert not list(tmp_path.rglob("escaped.txt")), "a file was written outside the checkout"
    assert any("points outside the artifact" in p for p in store.verify().problems)


def _stored_files(store: LocalArtifactStore) -> list[Path]:
    return sorted(p for p in store.blobs.rglob("*") if p.is_file())


@pytest.mark.parametrize("loss", ["emptied", "deleted"])
def test_a_lost_index_is_refused_not_replaced_so_repair_cannot_delete_every_blob(
    store: LocalArtifactStore, loss: str
) -> None:
    """A new index over existing blobs would call them all orphans; the store refuses to start one."""
    blobs = _stored_files(store)
    for blob in blobs:
        age(blob, 7200)  # old enough that `verify --repair` would remove them as orphans
    if loss == "emptied":
        store.index_path.write_bytes(b"")
    else:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{store.index_path}{suffix}").unlink(missing_ok=True)
    with pytest.raises(CorruptArtifact, match="missing or empty.*restore index.db from a backup"):
        LocalArtifactStore(store.root)
    env = {**os.environ, "TRAINFLOW_HOME": str(store.root)}
    repair = run_command([TRAINFLOW, "artifacts", "verify", "--repair"], env)
    assert repair.returncode == 1
    errors = [line for line in repair.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("trainflow: error: "), repair.stderr
    assert _stored_files(store) == blobs, "every stored file is still there"


def test_an_index_that_is_not_a_database_is_one_error_line(store: LocalArtifactStore) -> None:
    for suffix in ("-wal", "-shm"):
        Path(f"{store.index_path}{suffix}").unlink(missing_ok=True)
    store.index_path.write_bytes(b"this is not an SQLite database, it is text " * 100)
    with pytest.raises(CorruptArtifact, match="cannot open the store's index .*restore it from a backup"):
        LocalArtifactStore(store.root)
    env = {**os.environ, "TRAINFLOW_HOME": str(store.root)}
    for command in (["artifacts", "verify"], ["artifacts", "list"]):
        result = run_command([TRAINFLOW, *command], env)
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
        assert [line for line in result.stderr.splitlines() if line.strip()] == [
            line
            for line in result.stderr.splitlines()
            if line.startswith("trainflow: error: cannot open the store's index")
        ]


@pytest.mark.parametrize("where", ["under a regular file", "under /proc"])
def test_a_store_folder_that_cannot_be_made_is_one_error_line(tmp_path: Path, where: str) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    root = blocker / "store" if where == "under a regular file" else Path("/proc/trainflow-store")
    with pytest.raises(TrainflowError, match=f"cannot use {root} as the artifact store .*set TRAINFLOW_HOME"):
        LocalArtifactStore(root)
    env = {**os.environ, "TRAINFLOW_HOME": str(root), "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db"}
    for command in ([TRAINFLOW, "init"], [sys.executable, "main.py", "main.steps=fetch_data"]):
        result = run_command(command, env)
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
        [line] = [line for line in result.stderr.splitlines() if line.strip()]
        assert "cannot use" in line and "set TRAINFLOW_HOME" in line
