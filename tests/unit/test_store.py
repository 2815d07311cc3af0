"""Tests for the local artifact store (``trainflow.store.local``) against real SQLite and real files.

Each test builds its own store under ``tmp_path``; the crash and concurrency tests drive
real child processes that write into it.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from support.project import tamper

from trainflow.errors import ArtifactNotFound, CorruptArtifact, TrainflowError
from trainflow.store.blobs import file_sha256
from trainflow.store.local import LocalArtifactStore, lineage
from trainflow.store.records import ArtifactVersion, NewVersion, RunRecord
from trainflow.store.refs import parse_ref

# -- helpers ------------------------------------------------------------------------------


def write_tree(root: Path, files: dict[str, bytes]) -> Path:
    """Create ``files`` (relative posix path -> bytes) under ``root`` and return ``root``."""
    for relative, content in files.items():
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    return root


def read_tree(root: Path) -> dict[str, bytes]:
    """Every regular file under ``root`` as relative posix path -> bytes."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def blob_usage(store: LocalArtifactStore) -> tuple[int, int]:
    """``(number of blob files, total bytes)`` under the store's blob directory."""
    blobs = [p for p in store.blobs.rglob("*") if p.is_file()]
    return len(blobs), sum(p.stat().st_size for p in blobs)


def snapshot(root: Path, exclude: Path | None = None) -> set[str]:
    """Every path under ``root`` (files and directories), optionally ignoring one subtree."""
    paths = set()
    for path in root.rglob("*"):
        if exclude is not None and (path == exclude or exclude in path.parents):
            continue
        paths.add(path.relative_to(root).as_posix())
    return paths


def assert_checkout_matches(store: LocalArtifactStore, version: ArtifactVersion) -> None:
    """use_artifact hands back exactly the recorded files, each with its recorded sha256 and size."""
    checkout = store.use_artifact(version.ref)
    present = sorted(p.relative_to(checkout).as_posix() for p in checkout.rglob("*") if p.is_file())
    assert present == sorted(f.path for f in version.files), f"{version.ref}: file list differs"
    for stored in version.files:
        on_disk = checkout / stored.path
        assert on_disk.stat().st_size == stored.size, f"{version.ref}: {stored.path} has the wrong size"
        assert file_sha256(on_disk) == stored.sha256, f"{version.ref}: {stored.path} has the wrong digest"


@pytest.fixture
def store(tmp_path: Path) -> LocalArtifactStore:
    return LocalArtifactStore(tmp_path / "store")


# -- 1. versioning ------------------------------------------------------------------------


def test_versions_are_numbered_per_name_and_latest_follows_the_newest(
    store: LocalArtifactStore, tmp_path: Path
) -> None:
    """Three logs of one name give v0, v1, v2; latest and the bare name track the newest; vN resolves."""
    source = tmp_path / "data.csv"
    logged = []
    for number in range(3):
        source.write_text(f"a,b\n{number},{number * 2}\n")
        version = store.log_artifact(source, "data.csv", "dataset")
        logged.append(version)
        assert version.version == number
        assert version.ref == f"data.csv:v{number}"
        assert store.get("data.csv:latest").version == number
        assert store.get("data.csv").version == number
        assert "latest" in version.aliases

    assert [v.version for v in store.list_versions("data.csv")] == [0, 1, 2]
    assert store.get("data.csv:v1").digest == logged[1].digest
    assert store.use_artifact("data.csv:v1").read_text() == "a,b\n1,2\n"
    assert store.use_artifact("data.csv").read_text() == "a,b\n2,4\n"
    # Only the newest version holds 'latest'.
    assert [("latest" in v.aliases) for v in store.list_versions("data.csv")] == [False, False, True]


def test_versions_of_different_names_are_numbered_independently(store: LocalArtifactStore, tmp_path: Path) -> None:
    """Logging another name starts at v0 and does not disturb the first name's numbering."""
    source = write_tree(tmp_path / "src", {"x.txt": b"x"}) / "x.txt"
    for _ in range(3):
        store.log_artifact(source, "alpha", "dataset")
    beta = store.log_artifact(source, "beta", "dataset")
    alpha_next = store.log_artifact(source, "alpha", "dataset")

    assert beta.version == 0
    assert alpha_next.version == 3
    assert store.get("beta").version == 0
    assert store.get("alpha").version == 3
    assert store.list_names() == [("alpha", "dataset", 4), ("beta", "dataset", 1)]


def test_parse_ref_forms() -> None:
    """A bare name means name:latest; name:vN is a version; anything else is an alias."""
    assert parse_ref("model") == parse_ref("model:latest")
    assert parse_ref("model").alias == "latest"
    assert parse_ref("model:v12").version == 12
    assert parse_ref("model:v12").alias is None
    assert parse_ref("model:prod").alias == "prod"
    assert str(parse_ref("model:v3")) == "model:v3"


# -- 2. files vs directories --------------------------------------------------------------


def test_file_artifact_resolves_to_a_file_with_the_same_bytes(store: LocalArtifactStore, tmp_path: Path) -> None:
    """A file logged as an artifact comes back as a file of the same name and bytes."""
    content = os.urandom(300_000)
    source = tmp_path / "model.pkl"
    source.write_bytes(content)
    version = store.log_artifact(source, "model", "model")

    path = store.use_artifact("model:v0")
    assert version.kind == "file"
    assert path.is_file()
    assert path.name == "model.pkl"
    assert path.read_bytes() == content
    assert version.size == len(content)


def test_directory_artifact_resolves_to_an_identical_tree(store: LocalArtifactStore, tmp_path: Path) -> None:
    """A directory with nested subdirectories comes back as a directory with the same tree and bytes."""
    files = {
        "top.txt": b"top level",
        "sub/a.bin": os.urandom(70_000),
        "sub/deeper/b.bin": os.urandom(1234),
        "sub/deeper/deepest/c.json": json.dumps({"k": [1, 2, 3]}).encode(),
        "other/empty-file": b"",
    }
    source = write_tree(tmp_path / "split", files)
    version = store.log_artifact(source, "split", "dataset")

    path = store.use_artifact("split:latest")
    assert version.kind == "dir"
    assert path.is_dir()
    assert read_tree(path) == files
    assert sorted(f.path for f in version.files) == sorted(files)
    assert version.size == sum(len(b) for b in files.values())


@pytest.mark.parametrize("layout", ["empty", "only-empty-subdirs"])
def test_empty_directories_are_refused(store: LocalArtifactStore, tmp_path: Path, layout: str) -> None:
    """A directory with no files in it cannot be logged, and nothing is recorded."""
    source = tmp_path / "nothing"
    source.mkdir()
    if layout == "only-empty-subdirs":
        (source / "a" / "b").mkdir(parents=True)
    with pytest.raises(TrainflowError, match="empty"):
        store.log_artifact(source, "nothing", "dataset")
    assert store.list_names() == []


def test_missing_path_is_refused(store: LocalArtifactStore, tmp_path: Path) -> None:
    """Logging a path that does not exist raises TrainflowError naming the path."""
    missing = tmp_path / "does-not-exist.csv"
    with pytest.raises(TrainflowError, match="does-not-exist.csv"):
        store.log_artifact(missing, "ghost", "dataset")
    assert store.list_names() == []


@pytest.mark.parametrize("target_kind", ["file", "directory", "dangling"])
def test_symlinks_inside_a_directory_are_refused(store: LocalArtifactStore, tmp_path: Path, target_kind: str) -> None:
    """A symlink anywhere inside a logged directory is refused and no version is created."""
    outside = write_tree(tmp_path / "outside", {"secret.txt": b"not for the store"})
    source = write_tree(tmp_path / "src", {"real.txt": b"real", "sub/also.txt": b"also"})
    link = source / "sub" / "link"
    if target_kind == "file":
        link.symlink_to(outside / "secret.txt")
    elif target_kind == "directory":
        link.symlink_to(outside, target_is_directory=True)
    else:
        link.symlink_to(tmp_path / "nowhere")
    blobs_before = blob_usage(store)

    with pytest.raises(TrainflowError, match="symlink"):
        store.log_artifact(source, "linked", "dataset")
    assert store.list_names() == []
    assert blob_usage(store) == blobs_before, "the walk must fail before any blob is written"
    assert not any(b"not for the store" == p.read_bytes() for p in store.blobs.rglob("*") if p.is_file())


def test_top_level_symlink_is_refused(store: LocalArtifactStore, tmp_path: Path) -> None:
    """The logged path itself being a symlink is refused too."""
    real = tmp_path / "real.txt"
    real.write_text("real")
    link = tmp_path / "link.txt"
    link.symlink_to(real)
    with pytest.raises(TrainflowError, match="symlink"):
        store.log_artifact(link, "linked", "dataset")
    assert store.list_names() == []


# -- 3. aliases ---------------------------------------------------------------------------


def _three_versions(store: LocalArtifactStore, tmp_path: Path, name: str = "model") -> list[ArtifactVersion]:
    source = tmp_path / f"{name}.bin"
    versions = []
    for number in range(3):
        source.write_bytes(f"{name} weights {number}".encode())
        versions.append(store.log_artifact(source, name, "model"))
    return versions


def test_set_alias_moves_the_alias_so_only_one_version_holds_it(store: LocalArtifactStore, tmp_path: Path) -> None:
    """An alias names exactly one version of a name; setting it again moves it."""
    _three_versions(store, tmp_path)
    assert store.set_alias("model:v0", "prod").version == 0
    assert store.get("model:prod").version == 0

    moved = store.set_alias("model:v1", "prod")
    assert moved.version == 1
    assert store.get("model:prod").version == 1
    holders = [v.version for v in store.list_versions("model") if "prod" in v.aliases]
    assert holders == [1]
    # Setting an alias never touches 'latest'.
    assert store.get("model:latest").version == 2


def test_an_alias_the_gate_decided_about_moves_only_through_the_gate(store: LocalArtifactStore, tmp_path: Path) -> None:
    """Once a promotion decision exists for model:prod, set_alias and claim_alias (the CLI's
    `artifacts alias`, `sweeps best`) refuse it, naming the gate and rollback; other aliases
    and other names stay free."""
    _three_versions(store, tmp_path)
    _three_versions(store, tmp_path, "encoder")
    store.record_promotion("model", "prod", "promote", "promoted", "model:v0", details={}, actor="test", move=True)
    for move in (store.set_alias, lambda ref, alias: store.claim_alias(ref, alias)):
        with pytest.raises(
            TrainflowError, match=r"model:prod is moved only by the promotion gate.*promote_model.*rollback"
        ):
            move("model:v2", "prod")
    assert store.get("model:prod").ref == "model:v0"
    assert [entry.after for entry in store.promotions("model", "prod")] == ["model:v0"]
    assert store.set_alias("model:v2", "staging").ref == "model:v2"
    assert store.set_alias("encoder:v1", "prod").ref == "encoder:v1"
    # nor can a new version take it when logged
    source = tmp_path / "not-a-model.csv"
    source.write_text("a\n1\n")
    with pytest.raises(TrainflowError, match="model:prod is moved only by the promotion gate"):
        store.log_artifact(source, "model", "model", aliases=["prod"])
    assert store.get("model:prod").ref == "model:v0" and store.get("model:latest").ref == "model:v2"


def test_cli_alias_refuses_the_production_alias_in_one_line(store: LocalArtifactStore, tmp_path: Path) -> None:
    _three_versions(store, tmp_path)
    store.record_promotion("model", "prod", "promote", "promoted", "model:v0", details={}, actor="test", move=True)
    env = {**os.environ, "TRAINFLOW_HOME": str(store.root)}
    trainflow = str(Path(sys.executable).parent / "trainflow")
    result = subprocess.run(
        [trainflow, "artifacts", "alias", "model:v2", "prod"], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 1
    assert result.stderr.strip().startswith("trainflow: error: model:prod is moved only by the promotion gate")
    assert len(result.stderr.strip().splitlines()) == 1
    assert store.get("model:prod").ref == "model:v0"


def test_aliases_are_independent_per_name(store: LocalArtifactStore, tmp_path: Path) -> None:
    """The same alias on two names points at each name's own version."""
    _three_versions(store, tmp_path, "model")
    _three_versions(store, tmp_path, "encoder")
    store.set_alias("model:v2", "prod")
    store.set_alias("encoder:v0", "prod")
    assert store.get("model:prod").ref == "model:v2"
    assert store.get("encoder:prod").ref == "encoder:v0"


def test_latest_cannot_be_set_by_hand(store: LocalArtifactStore, tmp_path: Path) -> None:
    """set_alias refuses 'latest' and leaves it on the newest version."""
    _three_versions(store, tmp_path)
    with pytest.raises(TrainflowError, match="latest"):
        store.set_alias("model:v0", "latest")
    assert store.get("model:latest").version == 2


@pytest.mark.parametrize("alias", ["v3", "v0", "v10"])
def test_aliases_that_look_like_versions_are_refused(store: LocalArtifactStore, tmp_path: Path, alias: str) -> None:
    """An alias such as v3 would shadow a version number, so it is refused."""
    _three_versions(store, tmp_path)
    with pytest.raises(TrainflowError, match="version"):
        store.set_alias("model:v0", alias)
    with pytest.raises(TrainflowError):
        store.log_artifact(tmp_path / "model.bin", "model", "model", aliases=[alias])
    assert len(store.list_versions("model")) == 3


def test_alias_history_records_each_move_with_the_previous_version(store: LocalArtifactStore, tmp_path: Path) -> None:
    """alias_history lists every move, oldest first, with the version the alias left."""
    _three_versions(store, tmp_path)
    store.set_alias("model:v0", "prod", run_id="promote-1")
    store.set_alias("model:v2", "prod", run_id="promote-2")
    store.set_alias("model:v1", "prod")

    history = store.alias_history("model", "prod")
    assert [(version, previous, run_id) for version, previous, run_id, _ in history] == [
        (0, None, "promote-1"),
        (2, 0, "promote-2"),
        (1, 2, None),
    ]
    assert all(at for *_, at in history)
    latest = store.alias_history("model", "latest")
    assert [(version, previous) for version, previous, *_ in latest] == [(0, None), (1, 0), (2, 1)]


def test_aliases_given_at_log_time_move_with_the_new_version(store: LocalArtifactStore, tmp_path: Path) -> None:
    """log_artifact(aliases=[...]) points each alias at the new version."""
    source = tmp_path / "m.bin"
    source.write_bytes(b"one")
    store.log_artifact(source, "model", "model", aliases=["candidate"])
    source.write_bytes(b"two")
    second = store.log_artifact(source, "model", "model", aliases=["candidate"])
    assert store.get("model:candidate").version == 1
    assert second.aliases == ("candidate", "latest")
    assert store.get("model:v0").aliases == ()


# -- 4. dedup -----------------------------------------------------------------------------


def test_identical_content_is_stored_once(store: LocalArtifactStore, tmp_path: Path) -> None:
    """Logging the same bytes again, as a new version or under another name, adds no blob bytes."""
    files = {"a.bin": os.urandom(200_000), "nested/b.bin": os.urandom(50_000), "nested/c.txt": b"c"}
    source = write_tree(tmp_path / "src", files)
    empty = blob_usage(store)

    first = store.log_artifact(source, "data", "dataset")
    after_first = blob_usage(store)
    assert after_first == (empty[0] + 3, empty[1] + sum(len(b) for b in files.values()))

    second = store.log_artifact(source, "data", "dataset")
    third = store.log_artifact(source, "copy-of-data", "dataset")
    assert blob_usage(store) == after_first
    assert (second.version, third.version) == (1, 0)
    assert first.digest == second.digest == third.digest
    # Each version still reads back in full.
    assert read_tree(store.use_artifact("data:v1")) == files
    assert read_tree(store.use_artifact("copy-of-data:v0")) == files


def test_a_changed_file_adds_only_its_own_blob(store: LocalArtifactStore, tmp_path: Path) -> None:
    """Changing one file of a directory stores only that file's new bytes."""
    source = write_tree(tmp_path / "src", {"big.bin": os.urandom(500_000), "small.txt": b"v1"})
    store.log_artifact(source, "data", "dataset")
    before = blob_usage(store)
    (source / "small.txt").write_bytes(b"v2!")
    store.log_artifact(source, "data", "dataset")
    assert blob_usage(store) == (before[0] + 1, before[1] + 3)


# -- 5. lineage ---------------------------------------------------------------------------


def _pipeline(store: LocalArtifactStore, tmp_path: Path) -> dict[str, ArtifactVersion]:
    """raw -> split -> model, each produced by its own run that consumed the previous output."""
    download = RunRecord("run-download", "download", git_commit="a" * 40, params={"url": "file:///raw.csv"})
    raw_file = tmp_path / "raw.csv"
    raw_file.write_text("x,y\n1,2\n3,4\n")
    raw = store.log_artifact(raw_file, "raw.csv", "raw_data", metadata={"source": "file:///raw.csv"}, run=download)

    split_run = RunRecord("run-split", "split", params={"test_size": 0.5})
    store.record_usage("raw.csv:latest", split_run)
    split_dir = write_tree(tmp_path / "split", {"train.csv": b"x,y\n1,2\n", "test.csv": b"x,y\n3,4\n"})
    split = store.log_artifact(split_dir, "split", "dataset", run=split_run)

    train_run = RunRecord("run-train", "train")
    checkout = store.use_artifact("split", run=train_run)
    assert (checkout / "train.csv").read_bytes() == b"x,y\n1,2\n"
    model_file = tmp_path / "model.pkl"
    model_file.write_bytes(b"weights")
    model = store.log_artifact(model_file, "model", "model", run=train_run)
    return {"raw": raw, "split": split, "model": model}


def test_inputs_of_returns_what_the_producing_run_consumed(store: LocalArtifactStore, tmp_path: Path) -> None:
    """inputs_of follows the producing run to the versions it used (record_usage and use_artifact)."""
    chain = _pipeline(store, tmp_path)
    assert [v.ref for v in store.inputs_of(chain["model"])] == ["split:v0"]
    assert [v.ref for v in store.inputs_of(chain["split"])] == ["raw.csv:v0"]
    assert store.inputs_of(chain["raw"]) == []
    assert [v.ref for v in store.versions_logged_by("run-split")] == ["split:v0"]
    assert chain["model"].run == RunRecord("run-train", "train", None, {})
    assert chain["raw"].run is not None and chain["raw"].run.params == {"url": "file:///raw.csv"}


def test_lineage_walks_three_levels_with_depths(store: LocalArtifactStore, tmp_path: Path) -> None:
    """lineage(model) is model at depth 0, split at 1, raw at 2, pinned to the versions actually used."""
    _pipeline(store, tmp_path)
    # A newer raw version logged afterwards must not rewrite history.
    newer = tmp_path / "raw.csv"
    newer.write_text("x,y\n9,9\n")
    store.log_artifact(newer, "raw.csv", "raw_data")

    chain = lineage(store, "model:latest")
    assert [(depth, version.ref) for depth, version in chain] == [(0, "model:v0"), (1, "split:v0"), (2, "raw.csv:v0")]
    assert chain[2][1].metadata == {"source": "file:///raw.csv"}
    assert [(depth, version.ref) for depth, version in lineage(store, "split")] == [(0, "split:v0"), (1, "raw.csv:v0")]


def test_recording_the_same_usage_twice_keeps_one_edge(store: LocalArtifactStore, tmp_path: Path) -> None:
    """Using an input twice in one run does not duplicate it in the lineage."""
    chain = _pipeline(store, tmp_path)
    train_run = chain["model"].run
    assert train_run is not None
    store.use_artifact("split:v0", run=train_run)
    store.record_usage("split:latest", train_run)
    assert [v.ref for v in store.inputs_of(chain["model"])] == ["split:v0"]


# -- 6. metadata --------------------------------------------------------------------------


def test_metadata_round_trips_json(store: LocalArtifactStore, tmp_path: Path) -> None:
    """Nested JSON metadata comes back equal, both from log_artifact's result and a fresh get."""
    metadata = {
        "rows": 1234,
        "ratio": 0.25,
        "ok": True,
        "missing": None,
        "columns": ["a", "b", "ç"],
        "nested": {"deep": {"list": [1, {"x": "y"}]}},
        "unicode": "naïve ☃",
    }
    source = tmp_path / "d.txt"
    source.write_text("d")
    logged = store.log_artifact(source, "data", "dataset", description="the data", metadata=metadata)
    assert logged.metadata == metadata
    reopened = LocalArtifactStore(store.root).get("data:v0")
    assert reopened.metadata == metadata
    assert reopened.description == "the data"


def test_update_metadata_merges_top_level_keys(store: LocalArtifactStore, tmp_path: Path) -> None:
    """update_metadata adds new keys, replaces given ones, keeps the rest, and only touches that version."""
    source = tmp_path / "m.bin"
    source.write_bytes(b"m0")
    store.log_artifact(source, "model", "model", metadata={"auc": 0.7, "params": {"depth": 3}, "keep": "me"})
    source.write_bytes(b"m1")
    store.log_artifact(source, "model", "model", metadata={"auc": 0.9})
    store.set_alias("model:v0", "prod")

    updated = store.update_metadata("model:prod", {"auc": 0.75, "params": {"depth": 4}, "evaluated": True})
    assert updated.ref == "model:v0"
    expected = {"auc": 0.75, "params": {"depth": 4}, "keep": "me", "evaluated": True}
    assert updated.metadata == expected
    assert store.get("model:v0").metadata == expected
    assert store.get("model:v1").metadata == {"auc": 0.9}


# -- 7. reference errors ------------------------------------------------------------------


@pytest.fixture
def two_names(store: LocalArtifactStore, tmp_path: Path) -> LocalArtifactStore:
    source = tmp_path / "f.txt"
    for content in ("one", "two"):
        source.write_text(content)
        store.log_artifact(source, "data", "dataset")
    store.log_artifact(source, "model", "model")
    store.set_alias("data:v0", "prod")
    return store


def test_unknown_name_names_the_reference_and_known_artifacts(two_names: LocalArtifactStore) -> None:
    """An unknown name raises ArtifactNotFound listing the names that exist."""
    with pytest.raises(ArtifactNotFound) as caught:
        two_names.get("nosuch:v0")
    message = str(caught.value)
    assert "'nosuch'" in message
    assert "data" in message and "model" in message


def test_unknown_name_in_an_empty_store_says_it_is_empty(store: LocalArtifactStore) -> None:
    """In an empty store the error says so instead of listing nothing."""
    with pytest.raises(ArtifactNotFound, match="empty") as caught:
        store.use_artifact("data")
    assert "'data'" in str(caught.value)


def test_unknown_alias_names_the_reference_and_what_exists(two_names: LocalArtifactStore) -> None:
    """An unknown alias raises ArtifactNotFound listing the name's versions and aliases."""
    with pytest.raises(ArtifactNotFound) as caught:
        two_names.get("data:staging")
    message = str(caught.value)
    assert "data:staging" in message
    assert "v0, v1" in message
    assert "latest" in message and "prod" in message


def test_unknown_version_names_the_reference_and_what_exists(two_names: LocalArtifactStore) -> None:
    """An unknown version raises ArtifactNotFound listing the versions that exist."""
    for call in (two_names.get, two_names.use_artifact):
        with pytest.raises(ArtifactNotFound) as caught:
            call("data:v7")
        message = str(caught.value)
        assert "data:v7" in message
        assert "v0, v1" in message
    with pytest.raises(ArtifactNotFound, match="model:v1"):
        two_names.set_alias("model:v1", "prod")
    with pytest.raises(ArtifactNotFound, match="data:v2"):
        two_names.update_metadata("data:v2", {"x": 1})
    with pytest.raises(ArtifactNotFound, match="data:v5"):
        two_names.record_usage("data:v5", RunRecord("r", "s"))


BAD_NAMES = [
    "../escape",
    "..",
    "a..b",
    "a/b/c",
    "/abs/path",
    "proj..x/name",
    "a;b",
    "x;rm -rf",
    "$(id)",
    "a`id`",
    "a|b",
    "a&b",
    "a>b",
    "has space",
    "-leading-dash",
    "",
    "a" * 129,
]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_parse_ref_refuses_bad_names(name: str) -> None:
    """Names with '..', '/', ';', spaces, a leading '-', empty or too long are refused, with or without a selector."""
    with pytest.raises(TrainflowError, match="invalid artifact name"):
        parse_ref(name)
    with pytest.raises(TrainflowError, match="invalid artifact name"):
        parse_ref(f"{name}:v0")


@pytest.mark.parametrize("name", BAD_NAMES)
def test_log_artifact_refuses_bad_names_and_writes_nothing(tmp_path: Path, name: str) -> None:
    """log_artifact refuses a bad name before writing anything, inside or outside the store root."""
    root = tmp_path / "nest" / "store"
    store = LocalArtifactStore(root)
    source = write_tree(tmp_path / "src", {"f.txt": b"payload", "d/g.txt": b"more"})
    outside_before = snapshot(tmp_path, exclude=root)
    inside_before = snapshot(root)

    for path in (source, source / "f.txt"):
        with pytest.raises(TrainflowError, match="invalid artifact name"):
            store.log_artifact(path, name, "dataset")

    assert snapshot(tmp_path, exclude=root) == outside_before
    assert snapshot(root) == inside_before
    assert not (tmp_path / "nest" / "escape").exists()
    assert store.list_names() == []


def test_log_artifact_refuses_name_with_trailing_newline(store: LocalArtifactStore, tmp_path: Path) -> None:
    """A name with a trailing newline is whitespace in a name and must be refused like a space.

    Accepting it would create an artifact no reference can reach: parse_ref strips the newline.
    """
    source = tmp_path / "f.txt"
    source.write_text("payload")
    with pytest.raises(TrainflowError, match="invalid artifact name"):
        store.log_artifact(source, "data\n", "dataset")
    assert store.list_names() == []


def test_set_alias_refuses_alias_with_trailing_newline(store: LocalArtifactStore, tmp_path: Path) -> None:
    """An alias with a trailing newline must be refused: no reference could ever resolve it."""
    source = tmp_path / "f.txt"
    source.write_text("payload")
    store.log_artifact(source, "data", "dataset")
    with pytest.raises(TrainflowError, match="invalid alias"):
        store.set_alias("data:v0", "prod\n")
    assert store.get("data:v0").aliases == ("latest",)


@pytest.mark.parametrize("alias", ["has space", "a/b", "a;b", "-x", "1abc", "a..b", ""])
def test_bad_aliases_are_refused(two_names: LocalArtifactStore, alias: str) -> None:
    """Aliases follow the same character rules as names and must start with a letter."""
    with pytest.raises(TrainflowError, match="invalid alias"):
        two_names.set_alias("data:v0", alias)
    assert two_names.get("data:v0").aliases == ("prod",)


# -- 8. tampering -------------------------------------------------------------------------


def test_modified_blob_raises_corrupt_artifact(store: LocalArtifactStore, tmp_path: Path) -> None:
    """Once the checkout is gone, a blob whose bytes changed on disk is detected, not handed out."""
    source = write_tree(tmp_path / "src", {"weights.bin": os.urandom(100_000), "config.json": b"{}"})
    version = store.log_artifact(source, "model", "model")
    store.use_artifact("model:v0")
    weights = next(f for f in version.files if f.path == "weights.bin")
    blob = store.blob_path(weights.sha256)
    assert blob.is_file()

    tamper(blob, os.urandom(100_000))  # same size, different bytes
    checkout = store.checkouts / "model" / "v0"
    shutil.rmtree(checkout)

    with pytest.raises(CorruptArtifact) as caught:
        store.use_artifact("model:v0")
    assert "model:v0" in str(caught.value)
    assert "weights.bin" in str(caught.value)
    assert not checkout.exists(), "a failed verification must not leave a checkout behind"
    # It stays corrupt on a second attempt, too.
    with pytest.raises(CorruptArtifact):
        store.use_artifact("model:latest")


def test_missing_blob_raises_corrupt_artifact(store: LocalArtifactStore, tmp_path: Path) -> None:
    """A blob deleted from disk is reported as CorruptArtifact naming the file."""
    source = tmp_path / "model.pkl"
    source.write_bytes(b"weights")
    version = store.log_artifact(source, "model", "model")
    store.blob_path(version.files[0].sha256).unlink()
    with pytest.raises(CorruptArtifact, match="model.pkl"):
        store.use_artifact("model")


def test_replaced_file_checkout_is_rebuilt_from_blobs(store: LocalArtifactStore, tmp_path: Path) -> None:
    """A consumer cannot write into its checkout (tests/unit/test_store_links.py), but it can
    replace the file; the next use_artifact returns the original bytes, from the blob."""
    original = os.urandom(50_000)
    source = tmp_path / "model.pkl"
    source.write_bytes(original)
    store.log_artifact(source, "model", "model")

    first = store.use_artifact("model")
    first.unlink()
    first.write_bytes(b"scribbled over by a consumer")
    second = store.use_artifact("model")
    assert second == first
    assert second.read_bytes() == original
    assert store.verify().ok


def test_edited_directory_checkout_is_rebuilt_from_blobs(store: LocalArtifactStore, tmp_path: Path) -> None:
    """Replaced, added and deleted files in a directory checkout are all undone by the next use_artifact."""
    files = {"a.txt": b"alpha", "sub/b.txt": b"beta", "sub/c.bin": os.urandom(10_000)}
    store.log_artifact(write_tree(tmp_path / "src", files), "split", "dataset")

    checkout = store.use_artifact("split")
    (checkout / "a.txt").unlink()
    (checkout / "a.txt").write_bytes(b"ALPHA")
    (checkout / "sub" / "b.txt").unlink()
    (checkout / "sub" / "extra.txt").write_bytes(b"extra")
    assert store.use_artifact("split") == checkout
    assert read_tree(checkout) == files
    assert store.verify().ok


# -- 9. atomic visibility under SIGKILL ---------------------------------------------------

_CRASH_WRITER = r"""
import sys
from pathlib import Path
from trainflow.store.local import LocalArtifactStore

root, source, tag = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
store = LocalArtifactStore(root)
files = sorted(p for p in source.iterdir() if p.is_file())
print("ready", flush=True)
for iteration in range(100_000):
    stamp = f"{tag:04d}-{iteration:08d}".encode()
    for path in files:  # new bytes every iteration, so every log writes fresh blobs
        with open(path, "r+b") as handle:
            handle.write(stamp)
    version = store.log_artifact(source, "big", "dataset", metadata={"tag": tag, "iteration": iteration})
    print("logged", version.version, flush=True)
"""


def _start_line_reader(process: subprocess.Popen[str]) -> queue.Queue[str]:
    """Stream the child's stdout lines into a queue so the test can wait with a timeout."""
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line.strip())

    threading.Thread(target=pump, daemon=True).start()
    return lines


def _wait_for(lines: queue.Queue[str], prefix: str, process: subprocess.Popen[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            line = lines.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            process.kill()
            raise AssertionError(f"writer never printed {prefix!r}; stderr: {process.communicate()[1]}") from None
        if line.startswith(prefix):
            return


def test_sigkill_mid_write_never_exposes_a_partial_version(tmp_path: Path) -> None:
    """A writer SIGKILLed at varying moments leaves only whole, verifiable, contiguously numbered versions."""
    root = tmp_path / "store"
    source = tmp_path / "big"
    source.mkdir()
    for index in range(30):
        (source / f"part-{index:02d}.bin").write_bytes(os.urandom(2 * 1024 * 1024))

    verified: set[str] = set()
    return_codes = []
    delays = [0.05, 0.2, 0.35, 0.5, 0.6]
    for tag, delay in enumerate(delays):
        process = subprocess.Popen(
            [sys.executable, "-c", _CRASH_WRITER, str(root), str(source), str(tag)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        lines = _start_line_reader(process)
        _wait_for(lines, "ready", process)
        if tag == len(delays) - 1:
            _wait_for(lines, "logged", process)  # make sure at least one writer version exists
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        assert process.stderr is not None
        stderr = process.stderr.read()
        assert process.returncode == -signal.SIGKILL, f"writer ended on its own ({process.returncode}): {stderr}"
        return_codes.append(process.returncode)

        store = LocalArtifactStore(root)
        versions = store.list_versions("big")
        assert [v.version for v in versions] == list(range(len(versions))), "version numbers must be contiguous"
        for version in versions:
            assert len(version.files) == 30, f"{version.ref} is missing files"
            if version.ref not in verified:
                assert_checkout_matches(store, version)
                shutil.rmtree(store.checkouts / "big" / f"v{version.version}")  # keep disk use low
                verified.add(version.ref)
        if versions:
            assert store.get("big:latest").version == len(versions) - 1

        after = store.log_artifact(source, "big", "dataset", metadata={"writer": "test", "after_kill": tag})
        assert after.version == len(versions)
        assert_checkout_matches(store, after)
        shutil.rmtree(store.checkouts / "big" / f"v{after.version}")
        verified.add(after.ref)

    assert return_codes.count(-signal.SIGKILL) >= 1
    final = LocalArtifactStore(root).list_versions("big")
    writer_versions = sum(1 for v in final if "tag" in v.metadata)
    assert writer_versions >= 1, "the killed writers never committed a version"
    assert sum(1 for v in final if v.metadata.get("writer") == "test") == len(delays)
    # Every blob in place is complete: its name is the sha256 of its bytes (partial writes stay in tmp/).
    for blob in LocalArtifactStore(root).blobs.rglob("*"):
        if blob.is_file():
            assert file_sha256(blob) == blob.name, f"partial blob {blob}"


# -- 10. concurrent writers ---------------------------------------------------------------

_CONCURRENT_WRITER = r"""
import sys, time
from pathlib import Path
from trainflow.store.local import LocalArtifactStore

root, scratch, worker, go = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
while not go.exists():
    time.sleep(0.005)
store = LocalArtifactStore(root)
for index in range(5):
    source = scratch / f"worker{worker}-item{index}"
    source.mkdir(parents=True)
    (source / "payload.txt").write_text(f"worker {worker} item {index}\n" * 1000)
    (source / "shared.txt").write_text("identical in every version\n")
    version = store.log_artifact(source, "shared", "dataset", metadata={"worker": worker, "index": index})
    print(version.version, flush=True)
"""


def test_concurrent_writers_get_unique_contiguous_versions(tmp_path: Path) -> None:
    """Four processes logging five versions each into a fresh store lose nothing and share no number."""
    root = tmp_path / "store"
    go = tmp_path / "go"
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _CONCURRENT_WRITER, str(root), str(tmp_path / "scratch"), str(worker), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for worker in range(4)
    ]
    go.touch()  # release all workers at once, so they race to create the store and to write
    reported: list[int] = []
    for process in processes:
        stdout, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr
        reported.extend(int(line) for line in stdout.split())

    store = LocalArtifactStore(root)
    versions = store.list_versions("shared")
    assert [v.version for v in versions] == list(range(20))
    assert sorted(reported) == list(range(20)), "each writer must have been told a distinct version number"
    assert len({v.digest for v in versions}) == 20, "every distinct content must be present"
    assert {(v.metadata["worker"], v.metadata["index"]) for v in versions} == {
        (w, i) for w in range(4) for i in range(5)
    }
    assert store.get("shared:latest").version == 19
    assert [v.version for v in versions if "latest" in v.aliases] == [19]
    assert store.verify().ok
    # Each version's content is the one its writer logged.
    for version in versions:
        payload = (store.use_artifact(version.ref) / "payload.txt").read_text()
        assert payload == f"worker {version.metadata['worker']} item {version.metadata['index']}\n" * 1000
    # Per writer, versions come out in the order that writer logged them.
    for worker in range(4):
        mine = [v for v in versions if v.metadata["worker"] == worker]
        assert [v.metadata["index"] for v in mine] == list(range(5))


# -- 11. integrity check ------------------------------------------------------------------


def _damaged_store(root: Path, damage: str) -> LocalArtifactStore:
    """A small sound store, then one kind of damage done behind the store's back."""
    import sqlite3

    store = LocalArtifactStore(root)
    source = write_tree(root.parent / f"source-{damage}", {"a.txt": b"alpha\n", "sub/b.txt": b"beta\n"})
    first = store.log_artifact(source, "model", "model")
    (source / "a.txt").write_bytes(b"alpha, again\n")
    store.log_artifact(source, "model", "model")
    store.log_artifact(source / "a.txt", "notes", "text")
    blob = store.blob_path(first.files[0].sha256)
    with sqlite3.connect(store.index_path) as db:
        if damage == "modified blob":
            tamper(blob, b"tampered\n")
        elif damage == "missing blob":
            blob.unlink()
        elif damage == "alias across names":
            db.execute(
                "UPDATE aliases SET version_id = (SELECT id FROM versions WHERE name = 'notes')"
                " WHERE alias = 'latest' AND name = 'model'"
            )
        elif damage == "version gap":
            db.execute("UPDATE versions SET version = 5 WHERE name = 'model' AND version = 1")
        elif damage == "manifest":
            db.execute("UPDATE files SET size = size + 1 WHERE path = 'sub/b.txt'")
    return store


def test_verify_passes_a_sound_store(tmp_path: Path) -> None:
    assert _damaged_store(tmp_path / "store", "none").verify().problems == []


@pytest.mark.parametrize(
    ("damage", "named"),
    [
        ("modified blob", "was modified on disk"),
        ("missing blob", "is missing"),
        ("alias across names", "model:latest names a version of notes"),
        ("version gap", "model: versions are [0, 5]"),
        ("manifest", "model:v0: its file list does not match its recorded digest"),
    ],
)
def test_verify_names_each_kind_of_damage(tmp_path: Path, damage: str, named: str) -> None:
    problems = _damaged_store(tmp_path / "store", damage).verify().problems
    assert problems and any(named in problem for problem in problems), problems


def test_verify_command_exits_non_zero_on_damage(tmp_path: Path) -> None:
    store = _damaged_store(tmp_path / "store", "missing blob")
    result = subprocess.run(
        [sys.executable, "-m", "trainflow.cli.main", "--root", str(store.root), "artifacts", "verify"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    assert "is missing" in result.stderr and "trainflow: error: " in result.stderr  # the problem, then the error line


def test_projects_keep_their_names_apart(tmp_path: Path) -> None:
    """Two projects in one store: the same name, versions, aliases and promotion records
    never meet; a store without a project reaches a name that only one project holds."""
    source = tmp_path / "table.csv"
    source.write_text("a,b\n1,2\n")
    churn = LocalArtifactStore(tmp_path / "store", project="churn")
    penguins = LocalArtifactStore(tmp_path / "store", project="penguins")
    churn.log_artifact(source, "raw_data", type="raw_data")
    source.write_text("a,b\n3,4\n")
    first = penguins.log_artifact(source, "raw_data", type="raw_data")
    second = penguins.log_artifact(source, "raw_data", type="raw_data", aliases=("reference",))
    assert (first.ref, first.project, first.qualified_name) == ("raw_data:v0", "penguins", "penguins/raw_data")
    assert second.ref == "raw_data:v1"
    assert [v.ref for v in churn.list_versions("raw_data")] == ["raw_data:v0"]
    assert churn.get("raw_data:latest").digest != penguins.get("raw_data:latest").digest
    with pytest.raises(ArtifactNotFound, match="project 'churn'"):
        churn.get("raw_data:reference")
    # another project's artifact, named explicitly
    assert churn.get("penguins/raw_data:reference").ref == "raw_data:v1"
    assert churn.list_names() == [("raw_data", "raw_data", 1)]
    unbound = LocalArtifactStore(tmp_path / "store")
    assert unbound.projects() == ["churn", "penguins"]
    assert [name for name, _, _ in unbound.list_names()] == ["churn/raw_data", "penguins/raw_data"]
    with pytest.raises(TrainflowError, match="several projects"):
        unbound.get("raw_data:latest")
    # checkouts of the same name and version in two projects do not overwrite each other
    assert churn.use_artifact("raw_data:v0").read_text() == "a,b\n1,2\n"
    assert penguins.use_artifact("raw_data:v0").read_text() == "a,b\n3,4\n"
    penguins.log_artifact(source, "model_export", type="model_export")
    assert unbound.get("model_export:latest").project == "penguins"  # only one project has it


def test_several_versions_are_visible_together_or_not_at_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """split_data's two outputs in one transaction: interrupted while recording the
    second, neither moves, so latest of the two always come from the same split."""
    store = LocalArtifactStore(tmp_path / "store")
    (tmp_path / "a.txt").write_text("trainval 0")
    (tmp_path / "b.txt").write_text("test 0")
    pair = [NewVersion(tmp_path / "a.txt", "trainval", "split"), NewVersion(tmp_path / "b.txt", "test", "split")]
    first = store.log_artifacts(pair, run=RunRecord("run-0", "split_data", None, {}))
    assert [v.ref for v in first] == ["trainval:v0", "test:v0"] and {v.run.run_id for v in first} == {"run-0"}

    (tmp_path / "a.txt").write_text("trainval 1")
    (tmp_path / "b.txt").write_text("test 1")
    insert = LocalArtifactStore._insert_version
    calls = []

    def interrupted_at_the_second(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(args[1])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return insert(self, *args, **kwargs)

    monkeypatch.setattr(LocalArtifactStore, "_insert_version", interrupted_at_the_second)
    with pytest.raises(KeyboardInterrupt):
        store.log_artifacts(pair)
    assert calls == ["trainval", "test"]
    monkeypatch.undo()
    assert store.get("trainval:latest").ref == "trainval:v0" and store.get("test:latest").ref == "test:v0"
    assert [v.ref for v in store.log_artifacts(pair)] == ["trainval:v1", "test:v1"]
