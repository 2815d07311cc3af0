"""One contract for the artifact API, run against every backend: the local store for
real, and the W&B backend against tests/support/wandb_double.py, which stands in for the W&B
server (no account or network here). Then what only W&B has: the calls a real W&B run
receives, backend selection, a real offline run, and failing fast on an unreachable W&B.
"""

from __future__ import annotations

import glob
import socket
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from omegaconf import OmegaConf
from support.wandb_double import FakeServer

from trainflow.errors import ArtifactNotFound, TrainflowError
from trainflow.store.local import LocalArtifactStore, lineage
from trainflow.store.records import RunRecord
from trainflow.store.wandb_backend import WandbArtifactStore, choose_backend, step_backend

# A step: (store to use inside it, the run record the local store needs).
NewStep = Callable[[str], tuple[Any, RunRecord]]


@pytest.fixture(params=["local", "wandb"])
def new_step(request: pytest.FixtureRequest, tmp_path: Path) -> NewStep:
    """Open a step on the backend under test; each call is a new run."""
    if request.param == "local":
        store = LocalArtifactStore(tmp_path / "store")
        counter = iter(range(1000))
        return lambda step: (store, RunRecord(f"run-{next(counter)}", step))
    server = FakeServer(tmp_path / "wandb-server")

    def open_step(step: str) -> tuple[Any, RunRecord]:
        run = server.init(project="p", job_type=step)
        store = WandbArtifactStore(server, server.Api(), "p", None, run, tmp_path / "downloads" / run.id)
        return store, RunRecord(run.id, step)

    return open_step


def test_versions_aliases_and_bytes(new_step: NewStep, tmp_path: Path) -> None:
    """A file logged twice: v0 then v1, latest on v1, bytes identical on the way back."""
    source = tmp_path / "data.csv"
    for content in (b"a,b\n1,2\n", b"a,b\n3,4\n"):
        source.write_bytes(content)
        store, run = new_step("fetch_data")
        logged = store.log_artifact(source, "raw_data", "raw_data", description="rows", metadata={"rows": 1}, run=run)
    assert logged.version == 1 and "latest" in logged.aliases
    reader, run = new_step("split_data")
    assert reader.get("raw_data:latest").version == 1
    assert reader.use_artifact("raw_data:v0", run=run).read_bytes() == b"a,b\n1,2\n"
    assert reader.use_artifact("raw_data", run=run).read_bytes() == b"a,b\n3,4\n"
    assert reader.get("raw_data:v0").metadata == {"rows": 1}


def test_directories_round_trip(new_step: NewStep, tmp_path: Path) -> None:
    model = tmp_path / "model"
    (model / "code").mkdir(parents=True)
    (model / "MLmodel").write_text("flavors: {}")
    (model / "code" / "x.py").write_text("X = 1")
    store, run = new_step("train_model")
    store.log_artifact(model, "model_export", "model_export", run=run)
    reader, run = new_step("test_model")
    copy = reader.use_artifact("model_export:latest", run=run)
    assert copy.is_dir()
    assert {p.relative_to(copy).as_posix() for p in copy.rglob("*") if p.is_file()} == {"MLmodel", "code/x.py"}
    assert (copy / "code" / "x.py").read_text() == "X = 1"


def test_alias_moves_and_metadata_merges(new_step: NewStep, tmp_path: Path) -> None:
    source = tmp_path / "m.txt"
    for content in ("one", "two"):
        source.write_text(content)
        store, run = new_step("train_model")
        store.log_artifact(source, "model_export", "model_export", run=run)
    store, _ = new_step("promote_model")
    store.set_alias("model_export:v0", "prod")
    assert store.get("model_export:prod").version == 0
    store.set_alias("model_export:v1", "prod")
    assert store.get("model_export:prod").version == 1
    assert "prod" not in store.get("model_export:v0").aliases
    store.update_metadata("model_export:v1", {"test": {"auc": 0.9}})
    store.update_metadata("model_export:v1", {"checked": True})
    assert store.get("model_export:v1").metadata == {"test": {"auc": 0.9}, "checked": True}
    assert [v.version for v in store.list_versions("model_export")] == [0, 1]


def test_claim_alias_sets_a_first_alias_only(new_step: NewStep, tmp_path: Path) -> None:
    """check_data's first ``reference``: the first claim wins, a later one leaves it."""
    source = tmp_path / "d.csv"
    for content in ("a\n1\n", "a\n2\n"):
        source.write_text(content)
        store, run = new_step("fetch_data")
        store.log_artifact(source, "raw_data", "raw_data", run=run)
    store, _ = new_step("check_data")
    version, claimed = store.claim_alias("raw_data:v0", "reference")
    assert claimed and version.version == 0
    version, claimed = store.claim_alias("raw_data:v1", "reference")
    assert not claimed and version.version == 0
    assert store.get("raw_data:reference").version == 0 and "reference" not in store.get("raw_data:v1").aliases


def test_unknown_references_fail_clearly(new_step: NewStep, tmp_path: Path) -> None:
    source = tmp_path / "f.txt"
    source.write_text("x")
    store, run = new_step("fetch_data")
    store.log_artifact(source, "raw_data", "raw_data", run=run)
    for ref in ("nothing:latest", "raw_data:prod", "raw_data:v7"):
        with pytest.raises(ArtifactNotFound) as error:
            store.get(ref)
        assert ref.split(":")[0] in str(error.value)
    with pytest.raises(TrainflowError):
        store.log_artifact(source, "../escape", "raw_data", run=run)


def test_lineage_follows_the_producing_run(new_step: NewStep, tmp_path: Path) -> None:
    source = tmp_path / "raw.csv"
    source.write_text("a\n1\n")
    store, run = new_step("fetch_data")
    store.log_artifact(source, "raw_data", "raw_data", run=run)
    store, run = new_step("split_data")
    store.record_usage("raw_data:latest", run)
    (tmp_path / "split.parquet").write_text("split")
    split = store.log_artifact(tmp_path / "split.parquet", "trainval_data.parquet", "split_data", run=run)
    assert split.run is not None and split.run.run_id == run.run_id
    assert [v.ref for v in store.inputs_of(split)] == ["raw_data:v0"]
    assert [(depth, v.ref) for depth, v in lineage(store, split.ref)] == [(0, split.ref), (1, "raw_data:v0")]


def test_promotion_moves_the_alias_only_from_the_expected_holder(new_step: NewStep, tmp_path: Path) -> None:
    source = tmp_path / "m.txt"
    for content in ("one", "two"):
        source.write_text(content)
        store, run = new_step("train_model")
        store.log_artifact(source, "model_export", "model_export", run=run)
    store, run = new_step("promote_model")
    first = store.record_promotion(
        "model_export",
        "prod",
        "promote",
        "promoted",
        "model_export:v0",
        {"m": 1},
        "me",
        move=True,
        expected=None,
        run=run,
    )
    assert (first.before, first.after) == (None, "model_export:v0")
    with pytest.raises(TrainflowError, match="model_export:v0"):
        store.record_promotion(
            "model_export",
            "prod",
            "promote",
            "promoted",
            "model_export:v1",
            {},
            "me",
            move=True,
            expected=None,
            run=run,
        )
    assert store.get("model_export:prod").version == 0  # prod did not move on the refusal
    kept = store.record_promotion(
        "model_export", "prod", "promote", "champion_kept", "model_export:v1", {}, "me", run=run
    )
    assert (kept.before, kept.after) == ("model_export:v0", "model_export:v0")


# What only the W&B backend does ------------------------------------------------------


def wandb_cfg(**artifacts: Any) -> Any:
    return OmegaConf.create(
        {
            "artifacts": {"backend": "wandb", **artifacts},
            "wandb": {"project": "p", "entity": None, "group": "g", "offline_runs": False, "timeout_seconds": 5},
        }
    )


def test_a_step_makes_the_calls_a_real_w_and_b_run_expects(tmp_path: Path) -> None:
    server = FakeServer(tmp_path / "server")
    local = LocalArtifactStore(tmp_path / "store")
    (tmp_path / "raw.csv").write_text("a\n1\n")
    with step_backend(wandb_cfg(), "fetch_data", {"data.uri": "x"}, local, sdk=server) as (store, run):
        store.log_artifact(tmp_path / "raw.csv", "raw_data", "raw_data", description="rows", aliases=["reference"])
    with step_backend(wandb_cfg(), "split_data", {}, local, sdk=server) as (store, run):
        path = store.use_artifact("raw_data:latest")
        assert path.read_text() == "a\n1\n"
    calls = [c[0] for c in server.calls]
    assert calls[0] == "init" and server.calls[0][1:] == ("p", None, "g", "fetch_data", "online")
    assert calls.index("wait") == calls.index("log_artifact") + 1  # upload finished before files go away
    assert ("log_artifact", server.runs[0].id, "raw_data", ("latest", "reference")) in server.calls
    assert calls.index("download") > calls.index("use_artifact")  # consumed through the run: lineage
    assert [run.exit_code for run in server.runs] == [0, 0]
    assert server.runs[0].config["data.uri"] == "x"


def test_a_failing_step_finishes_its_w_and_b_run_as_failed(tmp_path: Path) -> None:
    server = FakeServer(tmp_path / "server")
    with pytest.raises(ArtifactNotFound):
        with step_backend(wandb_cfg(), "split_data", {}, LocalArtifactStore(tmp_path / "s"), sdk=server) as (store, _):
            store.use_artifact("raw_data:latest")
    assert server.runs[0].exit_code == 1
    assert server.collections == {}


def test_offline_runs_cannot_consume_artifacts(tmp_path: Path) -> None:
    """Why the local store exists: W&B's own offline mode refuses use_artifact."""
    server = FakeServer(tmp_path / "server")
    run = server.init(project="p", job_type="split_data", mode="offline")
    store = WandbArtifactStore(server, server.Api(), "p", None, run, tmp_path / "dl")
    with pytest.raises(ArtifactNotFound, match="offline"):
        store.record_usage("raw_data:latest")


def test_init_failure_is_one_clear_error(tmp_path: Path) -> None:
    server = FakeServer(tmp_path / "server", fail_init=PermissionError("401 Unauthorized: invalid API key"))
    with pytest.raises(TrainflowError, match="WANDB_API_KEY") as error:
        with step_backend(wandb_cfg(), "fetch_data", {}, LocalArtifactStore(tmp_path / "s"), sdk=server):
            pass
    assert "401" in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("configured", "env", "netrc", "expected"),
    [
        ("local", {"WANDB_API_KEY": "k" * 40}, False, "local"),
        ("wandb", {}, False, "wandb"),
        ("auto", {"WANDB_API_KEY": "k" * 40}, False, "wandb"),
        ("auto", {"WANDB_API_KEY": "k" * 40, "WANDB_MODE": "offline"}, False, "local"),
        ("auto", {"WANDB_API_KEY": "k" * 40, "WANDB_MODE": "disabled"}, False, "local"),
        ("auto", {}, False, "local"),
        ("auto", {}, True, "wandb"),
    ],
)
def test_auto_picks_wandb_only_with_credentials_and_online(
    configured: str, env: dict[str, str], netrc: bool, expected: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_BASE_URL"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    netrc_file = tmp_path / "netrc"
    netrc_file.write_text("machine api.wandb.ai\n  login user\n  password " + "p" * 40 + "\n" if netrc else "")
    netrc_file.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc_file))
    backend, reason = choose_backend(configured)
    assert backend == expected
    assert reason  # always says why


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_real_sdk_fails_fast_on_an_unreachable_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real wandb SDK against a closed port on 127.0.0.1: one line, bounded by the timeout."""
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    cfg = wandb_cfg()
    cfg.wandb.timeout_seconds = 3
    with pytest.raises(TrainflowError, match="cannot start a W&B run") as error:
        with step_backend(cfg, "fetch_data", {}, LocalArtifactStore(tmp_path / "s")):
            pass
    assert "artifacts.backend=local" in str(error.value)


def _finished_records(run_file: Path, timeout: float = 30.0) -> list[Any]:
    """The run file's records once its exit record is there: `run.finish()` can return
    before W&B's service has flushed an offline run's file (seen empty about one run in
    three when read at once)."""
    deadline = time.monotonic() + timeout
    while True:
        records = _records(run_file)
        if any(r.WhichOneof("record_type") == "exit" for r in records) or time.monotonic() > deadline:
            return records
        time.sleep(0.1)


def _records(run_file: Path) -> list[Any]:
    """Decode a W&B run file (a LevelDB-format log of protobuf records)."""
    from wandb.proto import wandb_internal_pb2

    data, position, records, pending = run_file.read_bytes(), 7, [], b""
    while position + 7 <= len(data):
        left = 32768 - position % 32768
        if left < 7:
            position += left
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + 7])
        if length == 0 and kind == 0:
            position += left
            continue
        payload, position = data[position + 7 : position + 7 + length], position + 7 + length
        if kind in (1, 4):
            records.append(pending + payload)
            pending = b""
        else:
            pending += payload
    parsed = []
    for raw in records:
        record = wandb_internal_pb2.Record()
        record.ParseFromString(raw)
        parsed.append(record)
    return parsed


def test_real_offline_run_records_config_summary_and_artifact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real `wandb` offline run beside the local store, ready for `wandb sync`."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    cfg = wandb_cfg(backend="auto")
    cfg.wandb.offline_runs = True
    local = LocalArtifactStore(tmp_path / "store")
    (tmp_path / "raw.csv").write_text("a\n1\n")
    from trainflow.store.wandb_backend import log_to_run

    with step_backend(cfg, "fetch_data", {"data.uri": "penguins.csv"}, local) as (store, run):
        assert store is local and run is not None
        store.log_artifact(tmp_path / "raw.csv", "raw_data", "raw_data", run=RunRecord("r1", "fetch_data"))
        log_to_run(run, tmp_path / "raw.csv", "raw_data", "raw_data", "rows", {"rows": 1}, ())
        run.summary.update({"rows": 1})
    [run_file] = glob.glob(str(local.root / "wandb" / "offline-run-*" / "run-*.wandb"))
    records = _finished_records(Path(run_file))
    kinds = {r.WhichOneof("record_type") for r in records}
    assert {"run", "summary", "artifact", "exit"} <= kinds
    [run_record] = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert run_record.job_type == "fetch_data"
    assert any(u.key == "data.uri" for u in run_record.config.update)
    [artifact] = [r.artifact for r in records if r.WhichOneof("record_type") == "artifact"]
    assert artifact.name == "raw_data" and [e.path for e in artifact.manifest.contents] == ["raw.csv"]
    summaries = [u.key for r in records if r.WhichOneof("record_type") == "summary" for u in r.summary.update]
    assert "rows" in summaries
    assert local.get("raw_data:latest").version == 0  # the artifact also flowed through the local store
    assert sys.modules.get("wandb") is not None


def test_w_and_b_aliases_follow_the_local_stores_rules(tmp_path: Path) -> None:
    """Against the W&B double (no W&B server here): ``latest`` is not settable, and an alias
    the gate decided about moves only through ``record_promotion``, as in the local store."""
    server = FakeServer(tmp_path / "server")
    runs = []
    for content in ("one", "two"):
        run = server.init(project="p", job_type="train_model")
        runs.append(run)
        (tmp_path / "m.txt").write_text(content)
        WandbArtifactStore(server, server.Api(), "p", None, run, tmp_path / "dl").log_artifact(
            tmp_path / "m.txt", "model_export", "model_export"
        )
    store = WandbArtifactStore(server, server.Api(), "p", None, runs[-1], tmp_path / "dl")
    with pytest.raises(TrainflowError, match="'latest' is managed by the store"):
        store.set_alias("model_export:v0", "latest")
    store.record_promotion(
        "model_export",
        "prod",
        "promote",
        "promoted",
        "model_export:v0",
        {},
        "me",
        move=True,
        expected=None,
        run=RunRecord(runs[-1].id, "promote_model"),
    )
    with pytest.raises(TrainflowError, match="model_export:prod is moved only by the promotion gate"):
        store.set_alias("model_export:v1", "prod")
    assert store.get("model_export:prod").version == 0
    # the gate itself still moves it
    store.record_promotion(
        "model_export",
        "prod",
        "promote",
        "promoted",
        "model_export:v1",
        {},
        "me",
        move=True,
        expected="model_export:v0",
        run=RunRecord(runs[-1].id, "promote_model"),
    )
    assert store.get("model_export:prod").version == 1
