"""The step cache as plain functions: what goes into a key (trainflow.pipeline.cache), the records
and re-use in the store, and the runner's recording rules. No MLflow run is started here;
tests/e2e/test_cache_pipeline.py drives the cache through `mlflow run`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
import sqlite3
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from omegaconf import DictConfig, OmegaConf
from support.project import PROJECT_DIR, tamper

import trainflow.pipeline.cache as cache
from trainflow.config.schema import load_config, resolve_paths
from trainflow.errors import TrainflowError
from trainflow.pipeline.cache import (
    CACHE_POLICIES,
    CacheKey,
    Uncacheable,
    cache_policy,
    library_modules,
    reusable_run,
    step_key,
)
from trainflow.pipeline.runner import Pipeline
from trainflow.pipeline.steps import STEPS
from trainflow.store.blobs import file_sha256
from trainflow.store.local import LocalArtifactStore
from trainflow.store.records import ArtifactVersion, RunRecord

PENGUINS = PROJECT_DIR / "data" / "penguins.csv"


@pytest.fixture(scope="module")
def base_cfg() -> DictConfig:
    return resolve_paths(load_config(PROJECT_DIR), PROJECT_DIR)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the components and the library, free to edit byte by byte."""
    root = tmp_path / "project"
    shutil.copytree(PROJECT_DIR / "components", root / "components", ignore=shutil.ignore_patterns("__pycache__"))
    for package in ("trainflow", "trainflow_inference"):
        shutil.copytree(
            PROJECT_DIR / "src" / package, root / "src" / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    return root


@pytest.fixture
def store(tmp_path: Path) -> LocalArtifactStore:
    return LocalArtifactStore(tmp_path / "store")


def packages_of(project: Path) -> dict[str, Path]:
    return {name: project / "src" / name for name in ("trainflow", "trainflow_inference")}


def log(
    store: LocalArtifactStore, tmp_path: Path, name: str, content: bytes, run_id: str = "producer"
) -> ArtifactVersion:
    source = tmp_path / "logged" / name
    source.parent.mkdir(exist_ok=True)
    source.write_bytes(content)
    # train_model marks each model it trains outside a sweep as the candidate test_model takes
    aliases = ["candidate"] if name == "model_export" else []
    return store.log_artifact(source, name, type="test", aliases=aliases, run=RunRecord(run_id, "test_step"))


@pytest.fixture
def inputs(store: LocalArtifactStore, tmp_path: Path) -> dict[str, ArtifactVersion]:
    """One version of every artifact a step reads, by the step's input parameter."""
    raw = log(store, tmp_path, "raw_data", PENGUINS.read_bytes())
    trainval = log(store, tmp_path, "trainval_data.parquet", b"trainval rows")
    test = log(store, tmp_path, "test_data.parquet", b"test rows")
    model = log(store, tmp_path, "model_export", b"a fitted pipeline")
    return {"raw_artifact": raw, "trainval_artifact": trainval, "model_artifact": model, "test_artifact": test}


def key_of(
    step: str,
    cfg: DictConfig,
    project: Path,
    inputs: dict[str, ArtifactVersion],
    env_manager: str = "local",
) -> CacheKey:
    spec = STEPS[step]
    versions = {i.param: inputs[i.param] for i in spec.inputs}
    return step_key(spec, cfg, versions, project / "components" / step, env_manager, packages_of(project))


def with_overrides(cfg: DictConfig, **values: object) -> DictConfig:
    changed = OmegaConf.create(OmegaConf.to_container(cfg))
    for key, value in values.items():
        OmegaConf.update(changed, key.replace("__", "."), value)
    return changed


def append_byte(path: Path) -> None:
    path.write_bytes(path.read_bytes() + b"\n")


# -- what the key holds -----------------------------------------------------------------


@pytest.mark.parametrize("step", ["fetch_data", "split_data", "train_model", "test_model"])
def test_nothing_changed_gives_the_same_key(step: str, base_cfg: DictConfig, project: Path, inputs) -> None:
    first = key_of(step, base_cfg, project, inputs)
    again = key_of(step, with_overrides(base_cfg), project, dict(inputs))
    assert first.digest == again.digest and len(first.digest) == 64
    assert first.parts == again.parts


@pytest.mark.parametrize("file", ["run.py", "MLproject", "conda.yml"])
def test_a_byte_in_a_component_file_changes_the_key(file: str, base_cfg, project: Path, inputs) -> None:
    before = key_of("train_model", base_cfg, project, inputs)
    append_byte(project / "components" / "train_model" / file)
    after = key_of("train_model", base_cfg, project, inputs)
    assert after.digest != before.digest
    assert after.parts["code"][f"component/{file}"] != before.parts["code"][f"component/{file}"]


def test_a_new_file_in_the_component_folder_changes_the_key(base_cfg, project: Path, inputs) -> None:
    before = key_of("split_data", base_cfg, project, inputs)
    (project / "components" / "split_data" / "helper.py").write_text("X = 1\n")
    assert key_of("split_data", base_cfg, project, inputs).digest != before.digest


@pytest.mark.parametrize(
    "module",
    [
        "trainflow/ml/data.py",  # imported by split_data's run.py
        "trainflow/store/local.py",  # through run_context
        "trainflow/ml/train.py",  # only inside config.validate, a function-level import
        "trainflow/__init__.py",  # runs on every trainflow import
        "trainflow_inference/__init__.py",  # through model.py
    ],
)
def test_a_byte_in_library_code_the_step_imports_changes_the_key(module: str, base_cfg, project: Path, inputs) -> None:
    before = key_of("split_data", base_cfg, project, inputs)
    append_byte(project / "src" / module)
    after = key_of("split_data", base_cfg, project, inputs)
    assert after.digest != before.digest
    assert after.parts["code"][module] != before.parts["code"][module]


@pytest.mark.parametrize("new_file", ["vocab.json", "helpers.py"])
def test_any_new_file_in_the_package_an_export_carries_whole_changes_the_key(
    new_file: str, base_cfg, project: Path, inputs
) -> None:
    """model.export ships all of trainflow_inference (code_paths), imported or not."""
    before = key_of("train_model", base_cfg, project, inputs)
    (project / "src" / "trainflow_inference" / new_file).write_text("{}\n")
    after = key_of("train_model", base_cfg, project, inputs)
    assert after.digest != before.digest and f"trainflow_inference/{new_file}" in after.parts["code"]


@pytest.mark.parametrize(
    "module",
    ["trainflow/cli/main.py", "trainflow/pipeline/cache.py", "trainflow/pipeline/runner.py", "trainflow/ml/plots.py"],
)
def test_library_code_the_step_cannot_import_leaves_its_key_alone(module: str, base_cfg, project: Path, inputs) -> None:
    before = key_of("split_data", base_cfg, project, inputs)
    append_byte(project / "src" / module)
    assert key_of("split_data", base_cfg, project, inputs).digest == before.digest
    assert module not in before.parts["code"]


def test_plots_belong_to_the_steps_that_draw_them(base_cfg, project: Path, inputs) -> None:
    train, split = key_of("train_model", base_cfg, project, inputs), key_of("split_data", base_cfg, project, inputs)
    append_byte(project / "src" / "trainflow" / "ml" / "plots.py")
    assert key_of("train_model", base_cfg, project, inputs).digest != train.digest
    assert key_of("split_data", base_cfg, project, inputs).digest == split.digest


def test_a_dynamic_import_makes_the_walk_take_whole_packages(tmp_path: Path) -> None:
    package = tmp_path / "src" / "trainflow"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "loader.py").write_text(
        "import importlib\n\ndef load(name):\n    return importlib.import_module(name)\n"
    )
    (package / "unrelated.py").write_text("X = 1\n")
    (package / "named.py").write_text("Y = 2\n")
    entry = tmp_path / "run.py"
    packages = {"trainflow": package}

    entry.write_text("from trainflow.loader import load\n")
    assert library_modules(entry, packages) is None  # cannot say which module `name` is
    component = tmp_path / "component"
    component.mkdir()
    shutil.copy(entry, component / "run.py")
    assert "trainflow/unrelated.py" in cache.code_digests(component, packages)

    entry.write_text("import importlib\nimportlib.import_module('trainflow.named')\n")
    assert library_modules(entry, packages) == [package / "__init__.py", package / "named.py"]


def test_relative_imports_inside_the_library_are_followed(tmp_path: Path) -> None:
    package = tmp_path / "trainflow"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("from . import leaf\n")
    (package / "sub" / "leaf.py").write_text("from ..top import value\n")
    (package / "top.py").write_text("value = 1\n")
    entry = tmp_path / "run.py"
    entry.write_text("import trainflow.sub\n")
    found = library_modules(entry, {"trainflow": package})
    assert found is not None and {p.relative_to(package).as_posix() for p in found} == {
        "__init__.py",
        "sub/__init__.py",
        "sub/leaf.py",
        "top.py",
    }


def test_a_parameter_of_the_step_changes_its_key_and_not_others(base_cfg, project: Path, inputs) -> None:
    changed = with_overrides(base_cfg, model__random_forest__n_estimators=50)
    assert (
        key_of("train_model", changed, project, inputs).digest
        != key_of("train_model", base_cfg, project, inputs).digest
    )
    for step in ("fetch_data", "split_data", "test_model"):
        assert key_of(step, changed, project, inputs).digest == key_of(step, base_cfg, project, inputs).digest, step


def test_new_content_under_the_same_alias_changes_the_key(
    base_cfg, project: Path, inputs, store, tmp_path: Path
) -> None:
    before = key_of("train_model", base_cfg, project, inputs)
    newer = log(store, tmp_path, "trainval_data.parquet", b"other trainval rows")
    assert store.get("trainval_data.parquet:latest").ref == newer.ref
    after = key_of(
        "train_model", base_cfg, project, {**inputs, "trainval_artifact": store.get("trainval_data.parquet:latest")}
    )
    assert after.digest != before.digest
    assert after.parts["inputs"]["trainval_artifact"]["digest"] == newer.digest


def test_same_content_in_a_new_version_keeps_the_key_unless_the_step_records_on_it(
    base_cfg, project: Path, inputs, store, tmp_path: Path
) -> None:
    """split_data's result depends on bytes only; test_model's result is a record on the exact
    model version naming the exact test set version, which content alone does not give."""
    same_raw = log(store, tmp_path, "raw_data", PENGUINS.read_bytes())
    same_test = log(store, tmp_path, "test_data.parquet", b"test rows")
    assert same_raw.version == 1 and same_test.version == 1
    split = key_of("split_data", base_cfg, project, inputs)
    assert key_of("split_data", base_cfg, project, {**inputs, "raw_artifact": same_raw}).digest == split.digest
    tested = key_of("test_model", base_cfg, project, inputs)
    assert key_of("test_model", base_cfg, project, {**inputs, "test_artifact": same_test}).digest != tested.digest


def test_metadata_a_step_reads_is_in_its_key(base_cfg, project: Path, inputs, store) -> None:
    """A step whose result depends on a record on its input (reads_metadata) misses when it changes."""
    spec = STEPS["split_data"]
    policy = dataclasses.replace(CACHE_POLICIES["split_data"], reads_metadata=(("raw_artifact", "verdict"),))
    versions = {"raw_artifact": inputs["raw_artifact"]}
    component = project / "components" / "split_data"

    def key() -> CacheKey:
        current = {"raw_artifact": store.get(inputs["raw_artifact"].ref)}
        return step_key(spec, base_cfg, current, component, "local", packages_of(project), policy=policy)

    unchecked = key()
    assert unchecked.parts["inputs"]["raw_artifact"]["metadata"] == {"verdict": None}
    store.update_metadata(versions["raw_artifact"].ref, {"verdict": {"passed": False}})
    assert key().digest != unchecked.digest
    store.update_metadata(versions["raw_artifact"].ref, {"unrelated": 1})
    failed = key()
    store.update_metadata(versions["raw_artifact"].ref, {"another": 2})
    assert key().digest == failed.digest  # other metadata is not the step's business


def check_data_key(cfg: DictConfig, project: Path, store: LocalArtifactStore, raw: ArtifactVersion) -> CacheKey:
    from trainflow.pipeline.cache import alias_state

    spec = STEPS["check_data"]
    return step_key(
        spec,
        cfg,
        {"raw_artifact": store.get(raw.ref)},
        project / "components" / "check_data",
        "local",
        packages_of(project),
        aliases=alias_state(store, cfg, spec),
    )


def test_check_data_is_keyed_by_its_expectations_and_its_reference(
    base_cfg, project: Path, inputs, store, tmp_path
) -> None:
    """check_data reads more than its params: the expectations (not logged as MLflow params)
    and the version raw_data:reference names; each change is a miss, and only the split's
    verdict (not the run that reached it) reaches split_data's key."""
    raw = inputs["raw_artifact"]
    unreferenced = check_data_key(base_cfg, project, store, raw)
    assert unreferenced.parts["aliases"] == {"raw_data:reference": None}
    assert "data_check.expectations" not in unreferenced.parts["params"]
    stricter = with_overrides(base_cfg, data_check__expectations__row_count__min=301)
    assert check_data_key(stricter, project, store, raw).digest != unreferenced.digest

    store.set_alias(raw.ref, "reference")
    itself = check_data_key(base_cfg, project, store, raw)
    assert itself.digest != unreferenced.digest
    assert itself.parts["aliases"] == {"raw_data:reference": f"{raw.ref} {raw.digest}"}
    other = log(store, tmp_path, "raw_data", b"species,island\nAdelie,Dream\n")
    store.set_alias(other.ref, "reference")
    assert check_data_key(base_cfg, project, store, raw).digest not in (itself.digest, unreferenced.digest)
    # the same content as another version: the report names the version compared with, so a miss too
    twin = store.log_artifact(store.use_artifact(raw.ref), "raw_data", "raw_data")
    assert twin.digest == raw.digest and twin.ref != raw.ref
    store.set_alias(twin.ref, "reference")
    assert check_data_key(base_cfg, project, store, raw).digest != itself.digest

    split_before = key_of("split_data", base_cfg, project, {**inputs, "raw_artifact": store.get(raw.ref)})
    store.update_metadata(raw.ref, {"data_check": {"passed": True, "run_id": "first"}})
    passed = key_of("split_data", base_cfg, project, {**inputs, "raw_artifact": store.get(raw.ref)})
    assert passed.digest != split_before.digest
    store.update_metadata(raw.ref, {"data_check": {"passed": True, "run_id": "second"}})
    assert (
        key_of("split_data", base_cfg, project, {**inputs, "raw_artifact": store.get(raw.ref)}).digest == passed.digest
    )


def test_the_environment_spec_is_in_the_key(base_cfg, project: Path, inputs, monkeypatch: pytest.MonkeyPatch) -> None:
    local = key_of("train_model", base_cfg, project, inputs)
    assert local.parts["environment"]["packages"]["scikit-learn"] == "1.9.1"
    assert key_of("train_model", base_cfg, project, inputs, env_manager="virtualenv").digest != local.digest
    # With `local` the installed packages are the environment: another scikit-learn is another one.
    real = cache._installed_version
    monkeypatch.setattr(cache, "_installed_version", lambda name: "0.0" if name == "scikit-learn" else real(name))
    assert key_of("train_model", base_cfg, project, inputs).digest != local.digest


def test_a_pin_in_conda_yml_changes_the_key(base_cfg, project: Path, inputs) -> None:
    conda = project / "components" / "train_model" / "conda.yml"
    before = key_of("train_model", base_cfg, project, inputs)
    conda.write_text(conda.read_text().replace("scikit-learn==1.9.1", "scikit-learn==1.9.0"))
    assert key_of("train_model", base_cfg, project, inputs).digest != before.digest


# -- sources outside the store ------------------------------------------------------------


def test_a_changed_local_data_file_changes_the_fetch_key(base_cfg, project: Path, inputs, tmp_path: Path) -> None:
    data = tmp_path / "penguins.csv"
    shutil.copy(PENGUINS, data)
    cfg = with_overrides(base_cfg, data__uri=str(data))
    before = key_of("fetch_data", cfg, project, inputs)
    assert before.parts["sources"] == [{"uri": str(data), "sha256": hashlib.sha256(PENGUINS.read_bytes()).hexdigest()}]
    append_byte(data)
    assert key_of("fetch_data", cfg, project, inputs).digest != before.digest


class _Validators:
    """What the test server says about /data.csv; tests change it between requests."""

    etag: str | None = '"v1"'
    last_modified: str | None = "Wed, 01 Jan 2026 00:00:00 GMT"
    heads = 0


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - keep test output quiet
        return None

    def _headers(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(PENGUINS.read_bytes())))
        if _Validators.etag:
            self.send_header("ETag", _Validators.etag)
        if _Validators.last_modified:
            self.send_header("Last-Modified", _Validators.last_modified)
        self.end_headers()

    def do_HEAD(self) -> None:  # noqa: N802 - http.server's naming
        _Validators.heads += 1
        self._headers()

    def do_GET(self) -> None:  # noqa: N802
        self._headers()
        self.wfile.write(PENGUINS.read_bytes())


@pytest.fixture
def data_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Validators.etag, _Validators.last_modified, _Validators.heads = '"v1"', "Wed, 01 Jan 2026 00:00:00 GMT", 0
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/data.csv"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_a_url_without_a_pin_is_fetched_every_time(base_cfg, project: Path, inputs, data_url: str) -> None:
    with pytest.raises(Uncacheable, match="fetched on every run without data.sha256 set or data.cache_remote=true"):
        key_of("fetch_data", with_overrides(base_cfg, data__uri=data_url), project, inputs)
    assert _Validators.heads == 0  # not even asked


def test_a_declared_sha256_keys_a_url_without_asking_it(base_cfg, project: Path, inputs, data_url: str) -> None:
    digest = hashlib.sha256(PENGUINS.read_bytes()).hexdigest()
    key = key_of("fetch_data", with_overrides(base_cfg, data__uri=data_url, data__sha256=digest), project, inputs)
    assert key.parts["sources"] == [{"uri": data_url, "sha256": digest}]
    assert _Validators.heads == 0
    other = with_overrides(base_cfg, data__uri=data_url, data__sha256="0" * 64)
    assert key_of("fetch_data", other, project, inputs).digest != key.digest


def test_cache_remote_keys_a_url_by_its_etag_and_last_modified(base_cfg, project: Path, inputs, data_url: str) -> None:
    cfg = with_overrides(base_cfg, data__uri=data_url, data__cache_remote=True)
    first = key_of("fetch_data", cfg, project, inputs)
    assert first.parts["sources"][0]["validators"] == {"ETag": '"v1"', "Last-Modified": "Wed, 01 Jan 2026 00:00:00 GMT"}
    assert key_of("fetch_data", cfg, project, inputs).digest == first.digest
    assert _Validators.heads == 2
    _Validators.etag = '"v2"'
    assert key_of("fetch_data", cfg, project, inputs).digest != first.digest
    _Validators.etag = None
    assert key_of("fetch_data", cfg, project, inputs).parts["sources"][0]["validators"] == {
        "Last-Modified": "Wed, 01 Jan 2026 00:00:00 GMT"
    }
    _Validators.last_modified = None
    with pytest.raises(Uncacheable, match="no ETag or Last-Modified"):
        key_of("fetch_data", cfg, project, inputs)


def test_cache_remote_with_an_unreachable_server_is_a_miss_not_an_error(base_cfg, project: Path, inputs) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cfg = with_overrides(base_cfg, data__uri=f"http://127.0.0.1:{port}/x.csv", data__cache_remote=True)
    with pytest.raises(Uncacheable, match="cannot ask"):
        key_of("fetch_data", cfg, project, inputs)


# -- records, verification and re-use in the store ----------------------------------------


@pytest.fixture
def recorded(store: LocalArtifactStore, tmp_path: Path) -> tuple[ArtifactVersion, ArtifactVersion]:
    """split_data's two outputs, logged by run 'split-1' and recorded under key 'k'."""
    trainval = log(store, tmp_path, "trainval_data.parquet", b"trainval rows", run_id="split-1")
    test = log(store, tmp_path, "test_data.parquet", b"test rows", run_id="split-1")
    store.record_cached_run("split_data", "k", "split-1", {trainval.name: trainval.ref, test.name: test.ref}, {"p": 1})
    return trainval, test


def test_a_recorded_run_with_intact_outputs_is_reused(store: LocalArtifactStore, recorded) -> None:
    found, why = reusable_run(store, STEPS["split_data"], CacheKey("k", {}), {})
    assert found is not None and why == ""
    assert found.run_id == "split-1"
    assert found.outputs == {
        "trainval_data.parquet": "trainval_data.parquet:v0",
        "test_data.parquet": "test_data.parquet:v0",
    }
    assert found.parts == {"p": 1}
    missing, why = reusable_run(store, STEPS["split_data"], CacheKey("other", {}), {})
    assert missing is None and why == "no earlier run with this key"
    assert reusable_run(store, STEPS["train_model"], CacheKey("k", {}), {})[0] is None  # keys are per step


@pytest.mark.parametrize("damage", ["delete", "corrupt"])
def test_a_deleted_or_corrupted_output_forces_a_run(store: LocalArtifactStore, recorded, damage: str) -> None:
    _, test = recorded
    blob = store.blob_path(test.files[0].sha256)
    if damage == "delete":
        blob.unlink()
    else:
        tamper(blob, b"tampered")
    found, why = reusable_run(store, STEPS["split_data"], CacheKey("k", {}), {})
    assert found is None
    assert "test_data.parquet:v0" in why and ("missing" if damage == "delete" else "does not match") in why


def test_an_older_intact_record_is_used_when_the_newest_is_damaged(
    store: LocalArtifactStore, recorded, tmp_path: Path
) -> None:
    newer = log(store, tmp_path, "trainval_data.parquet", b"trainval rows, again", run_id="split-2")
    other_test = log(store, tmp_path, "test_data.parquet", b"test rows, again", run_id="split-2")
    store.record_cached_run("split_data", "k", "split-2", {newer.name: newer.ref, other_test.name: other_test.ref}, {})
    store.blob_path(newer.files[0].sha256).unlink()
    found, _ = reusable_run(store, STEPS["split_data"], CacheKey("k", {}), {})
    assert found is not None and found.run_id == "split-1"


def test_a_version_number_reused_by_another_run_is_not_served(
    store: LocalArtifactStore, recorded, tmp_path: Path
) -> None:
    """Deleting a version by hand frees its number (versions are numbered max + 1): the
    record then names another run's version, which must not stand in for its own."""
    trainval, _ = recorded
    with sqlite3.connect(store.index_path) as db:  # as by hand, with the sqlite3 shell
        version_id = db.execute("SELECT id FROM versions WHERE name = ? AND version = 0", (trainval.name,)).fetchone()[
            0
        ]
        for table in ("aliases", "alias_history", "usages", "files"):
            db.execute(f"DELETE FROM {table} WHERE version_id = ?", (version_id,))
        db.execute("DELETE FROM versions WHERE id = ?", (version_id,))
    impostor = log(store, tmp_path, "trainval_data.parquet", b"other rows", run_id="split-9")
    assert impostor.ref == trainval.ref  # the same name:v0, another run's content
    found, why = reusable_run(store, STEPS["split_data"], CacheKey("k", {}), {})
    assert found is None and f"its output {trainval.ref} is now another run's version" in why


def test_a_record_needs_outputs_the_run_logged(store: LocalArtifactStore, recorded) -> None:
    trainval, _ = recorded
    with pytest.raises(TrainflowError, match="was not logged"):
        store.record_cached_run("split_data", "k2", "someone-else", {trainval.name: trainval.ref}, {})
    with pytest.raises(TrainflowError, match="was not logged"):
        store.record_cached_run("split_data", "k2", "split-1", {"test_data.parquet": trainval.ref}, {})
    assert store.cached_runs("split_data", "k2") == []


def test_a_test_record_replaced_on_the_model_invalidates_test_model(store: LocalArtifactStore, inputs) -> None:
    model = inputs["model_artifact"]
    store.update_metadata(model.ref, {"test": {"test_data": "test_data.parquet:v0", "run_id": "test-1"}})
    store.record_cached_run("test_model", "k", "test-1", {}, {})
    versions = {"model_artifact": model, "test_artifact": inputs["test_artifact"]}
    assert reusable_run(store, STEPS["test_model"], CacheKey("k", {}), versions)[0] is not None
    store.update_metadata(model.ref, {"test": {"test_data": "test_data.parquet:v9", "run_id": "promote-7"}})
    found, why = reusable_run(store, STEPS["test_model"], CacheKey("k", {}), versions)
    assert found is None and "model_export:v0's 'test' record is not run test-1's" in why


def test_reuse_moves_aliases_as_the_producing_run_did(store: LocalArtifactStore, tmp_path: Path) -> None:
    first = store.log_artifact(
        _file(tmp_path, "a"), "model_export", "m", aliases=["candidate"], run=RunRecord("train-1", "t")
    )
    store.log_artifact(_file(tmp_path, "b"), "model_export", "m", aliases=["candidate"], run=RunRecord("train-2", "t"))
    store.set_alias("model_export:v1", "prod")
    [reused] = store.reuse_outputs("train-1", [first.ref], run_id="cached-3")
    assert reused.ref == "model_export:v0"
    assert set(reused.aliases) == {"latest", "candidate"}
    assert store.get("model_export:prod").ref == "model_export:v1"  # not moved by train-1, so not moved now
    assert store.alias_history("model_export", "latest")[-1][:3] == (0, 1, "cached-3")
    # Re-using it again moves nothing: the history keeps moves, not no-ops.
    store.reuse_outputs("train-1", [first.ref], run_id="cached-4")
    assert len(store.alias_history("model_export", "latest")) == 3


def _file(tmp_path: Path, content: str) -> Path:
    path = tmp_path / f"file-{content}"
    path.write_text(content)
    return path


# -- the runner's rules: what it records --------------------------------------------------


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh store root for a Pipeline whose `execute` the test replaces: no MLflow needed."""
    monkeypatch.setenv("TRAINFLOW_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def pipeline(home: Path) -> Pipeline:
    return Pipeline(load_config(PROJECT_DIR, ["artifacts.backend=local"]), PROJECT_DIR, overrides=[])


def fake_fetch(pipeline: Pipeline, run_ids: list[str], fail: bool = False):  # type: ignore[no-untyped-def]
    """An `execute` that logs raw_data as fetch_data would (or fails like a crashed step)."""

    def execute(spec, parameters, began):  # type: ignore[no-untyped-def]
        run_id = f"fetch-{len(run_ids)}"
        run_ids.append(run_id)
        if fail:
            raise TrainflowError("step fetch_data failed")
        version = pipeline.store.log_artifact(PENGUINS, "raw_data", "raw_data", run=RunRecord(run_id, "fetch_data"))
        return run_id, {"raw_data": version.ref}

    return execute


def test_a_failed_run_is_never_a_cache_source(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    runs: list[str] = []
    monkeypatch.setattr(pipeline, "execute", fake_fetch(pipeline, runs, fail=True))
    with pytest.raises(TrainflowError):
        pipeline.run("fetch_data")
    key = pipeline.plan(STEPS["fetch_data"]).key
    assert key is not None and pipeline.store.cached_runs("fetch_data", key.digest) == []
    monkeypatch.setattr(pipeline, "execute", fake_fetch(pipeline, runs))
    pipeline.run("fetch_data")
    assert runs == ["fetch-0", "fetch-1"]  # the failure did not stand in for the second run
    assert [r.run_id for r in pipeline.store.cached_runs("fetch_data", key.digest)] == ["fetch-1"]


def test_a_step_run_in_process_after_its_library_changed_on_disk_is_not_recorded(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """An in-process step runs the modules imported at the pipeline's start; an edit made
    since is in its key (read from disk) but not in what ran, so the run is not recorded."""
    loaded = cache.library_as_loaded()
    monkeypatch.setattr(
        cache, "library_as_loaded", lambda: {**loaded, "trainflow/ml/data.py": "old", "trainflow/cli/main.py": "old"}
    )
    runs: list[str] = []
    monkeypatch.setattr(pipeline, "execute", fake_fetch(pipeline, runs))
    pipeline.run("fetch_data")
    key = pipeline.plan(STEPS["fetch_data"]).key
    assert key is not None and pipeline.store.cached_runs("fetch_data", key.digest) == []
    assert (
        "run not recorded: trainflow/ml/data.py changed after this process loaded the library"
        in capsys.readouterr().out
    )
    # cli.py alone is not code fetch_data runs: that run is recorded
    monkeypatch.setattr(cache, "library_as_loaded", lambda: {**loaded, "trainflow/cli/main.py": "old"})
    pipeline.run("fetch_data")
    assert [r.run_id for r in pipeline.store.cached_runs("fetch_data", key.digest)] == ["fetch-1"]


def test_library_changes_are_seen_against_the_first_look(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "trainflow"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "data.py").write_text("SEED = 1\n")
    monkeypatch.setattr(cache, "package_dirs", lambda: {"trainflow": package})
    cache.library_as_loaded.cache_clear()
    try:
        cache.library_as_loaded()

        def key_code() -> dict[str, str]:  # a key's code part, as code_digests names it
            files = {f"trainflow/{path.name}": file_sha256(path) for path in package.glob("*.py")}
            return {**files, "component/run.py": "digest of the component's own file"}

        assert cache.changed_since_loaded(key_code()) == []
        (package / "data.py").write_text("SEED = 2\n")
        (package / "new.py").write_text("")
        assert cache.changed_since_loaded(key_code()) == ["trainflow/data.py", "trainflow/new.py"]
    finally:
        cache.library_as_loaded.cache_clear()


def test_a_sweep_trial_neither_uses_nor_feeds_the_cache(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A trial's model carries its sweep's metadata and no candidate alias: re-used by a
    pipeline run, it would leave model_export:candidate on an older model."""
    from trainflow.pipeline.sweeps import SWEEP_ENV, SweepContext

    monkeypatch.setenv(SWEEP_ENV, SweepContext("s1", "parent", trial=0).to_json())
    trial = Pipeline(load_config(PROJECT_DIR, ["artifacts.backend=local"]), PROJECT_DIR, [])
    assert trial.cache_policy() == (False, False, "a sweep trial: every trial trains and logs its own model")
    runs: list[str] = []
    monkeypatch.setattr(trial, "execute", fake_fetch(trial, runs))
    trial.run("fetch_data")
    assert runs == ["fetch-0"] and trial.plan(STEPS["fetch_data"]).key is None  # no key: nothing to look up or record
    monkeypatch.delenv(SWEEP_ENV)
    outside = Pipeline(load_config(PROJECT_DIR, ["artifacts.backend=local"]), PROJECT_DIR, [])
    key = outside.plan(STEPS["fetch_data"]).key
    assert key is not None and outside.store.cached_runs("fetch_data", key.digest) == []


@pytest.mark.parametrize("in_process", [True, False])
def test_the_key_hashes_the_library_copy_the_step_will_run(
    home: Path, project: Path, monkeypatch: pytest.MonkeyPatch, in_process: bool
) -> None:
    """A component started by mlflow.run imports components/../src (its MLproject's
    PYTHONPATH); an in-process step runs what this process imported. They can differ
    (a clone run with another checkout's editable install): each is keyed by its own."""
    cfg = load_config(
        PROJECT_DIR,
        [
            "artifacts.backend=local",
            f"main.components_repository={project / 'components'}",
            f"main.in_process={str(in_process).lower()}",
        ],
    )
    pipeline = Pipeline(cfg, PROJECT_DIR, [])
    runs: list[str] = []
    monkeypatch.setattr(pipeline, "execute", fake_fetch(pipeline, runs))
    pipeline.run("fetch_data")
    before = pipeline.plan(STEPS["split_data"]).key
    append_byte(project / "src" / "trainflow" / "ml" / "data.py")  # only the component's copy
    after = pipeline.plan(STEPS["split_data"]).key
    assert before is not None and after is not None
    assert (after.digest != before.digest) is (not in_process)


def test_main_cache_false_runs_the_step_and_still_records_it(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    pipeline = Pipeline(load_config(PROJECT_DIR, ["main.cache=false", "artifacts.backend=local"]), PROJECT_DIR, [])
    runs: list[str] = []
    monkeypatch.setattr(pipeline, "execute", fake_fetch(pipeline, runs))
    pipeline.run("fetch_data")
    pipeline.run("fetch_data")
    assert runs == ["fetch-0", "fetch-1"]
    key = pipeline.plan(STEPS["fetch_data"]).key
    assert key is not None and [r.run_id for r in pipeline.store.cached_runs("fetch_data", key.digest)] == [
        "fetch-1",
        "fetch-0",
    ]
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[pipeline] fetch_data: ran")]
    assert len(lines) == 2 and all("cache: main.cache=false" in line for line in lines)


def test_a_deleted_output_makes_the_step_run_again(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    runs: list[str] = []
    monkeypatch.setattr(pipeline, "execute", fake_fetch(pipeline, runs))
    pipeline.run("fetch_data")
    [stored] = pipeline.store.get("raw_data:v0").files
    pipeline.store.blob_path(stored.sha256).unlink()  # e.g. someone cleaned blobs/
    pipeline.run("fetch_data")
    assert runs == ["fetch-0", "fetch-1"]
    second = capsys.readouterr().out.strip().splitlines()[-1]
    assert (
        second.startswith("[pipeline] fetch_data: ran in")
        and "raw_data:v0: the blob of 'penguins.csv' is missing" in second
    )


def test_a_cache_hit_interrupted_midway_leaves_no_run_running(
    store_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hit's MLflow run is made with the client, not mlflow.start_run: Ctrl-C (or an
    error) while the outputs are re-used must still end it, as FAILED."""
    import mlflow

    pipeline = Pipeline(load_config(PROJECT_DIR, ["artifacts.backend=local"]), PROJECT_DIR, [])
    client = mlflow.MlflowClient()
    pipeline.experiment_id = client.get_experiment_by_name("trainflow").experiment_id
    pipeline.parent_run_id = client.create_run(pipeline.experiment_id).info.run_id
    runs: list[str] = []
    monkeypatch.setattr(pipeline, "execute", fake_fetch(pipeline, runs))
    pipeline.run("fetch_data")  # recorded: the next run is a hit

    def interrupted(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline.store, "reuse_outputs", interrupted)
    with pytest.raises(KeyboardInterrupt):
        pipeline.run("fetch_data")
    hits = client.search_runs([pipeline.experiment_id], "tags.`trainflow.cached` = 'true'")
    assert [run.info.status for run in hits] == ["FAILED"]


def test_with_wandb_artifacts_the_cache_is_off_and_says_why(home: Path) -> None:
    pipeline = Pipeline(load_config(PROJECT_DIR, ["artifacts.backend=wandb"]), PROJECT_DIR, [])
    assert (pipeline.cache_records, pipeline.cache_lookup) == (False, False)
    assert pipeline.cache_off_reason.startswith("artifacts on W&B")
    plan = pipeline.plan(STEPS["train_model"])
    assert plan.key is None and plan.parameters["trainval_artifact"] == ""  # resolved by the step, on W&B


def test_a_key_that_changed_while_the_step_ran_is_not_recorded(pipeline: Pipeline, monkeypatch, tmp_path: Path) -> None:
    data = tmp_path / "penguins.csv"
    shutil.copy(PENGUINS, data)
    pipeline.cfg.data.uri = str(data)
    runs: list[str] = []
    fetch = fake_fetch(pipeline, runs)

    def edit_while_running(spec, parameters, began):  # type: ignore[no-untyped-def]
        result = fetch(spec, parameters, began)
        append_byte(data)
        return result

    key = pipeline.plan(STEPS["fetch_data"]).key
    monkeypatch.setattr(pipeline, "execute", edit_while_running)
    pipeline.run("fetch_data")
    assert key is not None and pipeline.store.cached_runs("fetch_data", key.digest) == []


def fake_check(pipeline: Pipeline, claim_by: str | None):  # type: ignore[no-untyped-def]
    """An `execute` standing in for check_data: records its verdict on the raw version and,
    when none exists, has raw_data:reference set, by itself or (claim_by) by another run."""

    def execute(spec, parameters, began):  # type: ignore[no-untyped-def]
        run_id = "check-0"
        raw = parameters["raw_artifact"]
        pipeline.store.update_metadata(raw, {"data_check": {"passed": True, "run_id": run_id}})
        pipeline.store.claim_alias(raw, "reference", run_id=claim_by or run_id)
        return run_id, {}

    return execute


@pytest.mark.parametrize("claimed_by_itself", [True, False])
def test_a_run_that_moved_an_alias_in_its_own_key_is_recorded_under_the_key_after_it(
    pipeline: Pipeline, monkeypatch, claimed_by_itself: bool
) -> None:
    """check_data claims the first raw_data:reference, which its key reads: it is recorded
    for the state it left (so the next run is a hit), not the one it found. A move by any
    other run while it ran is a change it did not see: not recorded."""
    raw = pipeline.store.log_artifact(PENGUINS, "raw_data", "raw_data", run=RunRecord("fetch", "fetch_data"))
    pipeline.outputs["raw_data"] = raw.ref
    before = pipeline.plan(STEPS["check_data"]).key
    assert before is not None and before.parts["aliases"] == {"raw_data:reference": None}
    monkeypatch.setattr(
        pipeline, "execute", fake_check(pipeline, claim_by=None if claimed_by_itself else "another-run")
    )
    pipeline.run("check_data")
    after = pipeline.plan(STEPS["check_data"]).key
    assert after is not None and after.parts["aliases"] == {"raw_data:reference": f"{raw.ref} {raw.digest}"}
    assert pipeline.store.cached_runs("check_data", before.digest) == []
    recorded = [r.run_id for r in pipeline.store.cached_runs("check_data", after.digest)]
    assert recorded == (["check-0"] if claimed_by_itself else [])


def test_a_cacheable_step_is_given_exact_versions(pipeline: Pipeline, monkeypatch) -> None:
    runs: list[str] = []
    monkeypatch.setattr(pipeline, "execute", fake_fetch(pipeline, runs))
    pipeline.run("fetch_data")
    pipeline.outputs.clear()  # as if split_data ran alone: its input is raw_data:latest
    plan = pipeline.plan(STEPS["split_data"])
    assert plan.parameters["raw_artifact"] == "raw_data:v0"
    assert plan.key is not None and plan.key.parts["inputs"]["raw_artifact"]["artifact"] == "raw_data"
    predict = pipeline.plan(STEPS["batch_predict"])
    assert predict.key is None and predict.parameters["model_artifact"] == ""  # never cached: resolved by the step


def test_every_component_names_its_step_function_after_the_step() -> None:
    """The runner finds the function of a step it runs in its own process by the step's name."""
    import ast

    for name in STEPS:
        tree = ast.parse((PROJECT_DIR / "components" / name / "run.py").read_text())
        functions = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
        assert name in functions, name


def test_caching_is_opt_in_per_step(base_cfg, project: Path, inputs) -> None:
    """A new step is never cached by accident: the key would not see what else it reads.
    Only the steps in the cache's own table are keyed; the step table says nothing of it."""
    assert set(CACHE_POLICIES) == set(STEPS) - {"batch_predict"}
    assert cache_policy(STEPS["batch_predict"]) is None
    new_step = dataclasses.replace(STEPS["split_data"], name="new_step")
    assert cache_policy(new_step) is None
    with pytest.raises(Uncacheable, match="new_step is not in the cache's table"):
        step_key(new_step, base_cfg, inputs, project / "components" / "split_data", "local", packages_of(project))


def test_a_run_whose_record_was_overwritten_meanwhile_is_not_recorded(
    pipeline: Pipeline, monkeypatch, tmp_path
) -> None:
    model = log(pipeline.store, tmp_path, "model_export", b"a fitted pipeline")
    log(pipeline.store, tmp_path, "test_data.parquet", b"test rows")

    def test_then_overwritten(spec, parameters, began):  # type: ignore[no-untyped-def]
        pipeline.store.update_metadata(model.ref, {"test": {"run_id": "test-1"}})
        pipeline.store.update_metadata(model.ref, {"test": {"run_id": "a-concurrent-rescore"}})
        return "test-1", {}

    monkeypatch.setattr(pipeline, "execute", test_then_overwritten)
    pipeline.run("test_model")
    key = pipeline.plan(STEPS["test_model"]).key
    assert key is not None and pipeline.store.cached_runs("test_model", key.digest) == []

    def test_in_place(spec, parameters, began):  # type: ignore[no-untyped-def]
        pipeline.store.update_metadata(model.ref, {"test": {"run_id": "test-2"}})
        return "test-2", {}

    monkeypatch.setattr(pipeline, "execute", test_in_place)
    pipeline.run("test_model")
    assert [r.run_id for r in pipeline.store.cached_runs("test_model", key.digest)] == ["test-2"]


def test_an_in_process_step_hands_its_outputs_back_directly(store_env: dict[str, str], monkeypatch) -> None:
    """A step run in the pipeline's process returns what it logged to the runner: the
    tracking database records the run, it is not the channel the outputs come back by."""
    import mlflow

    cfg = resolve_paths(load_config(PROJECT_DIR, ["artifacts.backend=local", "main.steps=fetch_data"]), PROJECT_DIR)
    with Pipeline.open(cfg, project_dir=PROJECT_DIR) as pipeline:
        assert pipeline.runs_here(STEPS["fetch_data"])
        with monkeypatch.context() as patched:

            def no_channel(*args, **kwargs):  # type: ignore[no-untyped-def]
                raise AssertionError("the runner read a step's outputs back from the tracking database")

            patched.setattr(mlflow.MlflowClient, "get_run", no_channel)
            pipeline.run("fetch_data")
        assert pipeline.outputs == {"raw_data": "raw_data:v0"}


def test_import_scans_are_kept_across_processes_by_the_sources_digest(tmp_path: Path, monkeypatch) -> None:
    """The next process reads what a module imports from the file instead of parsing it;
    an edited module (another digest) is parsed afresh."""
    path = tmp_path / "cache" / "import_scans.json"
    source = b"import trainflow.ml.data\nfrom . import store\n"
    first = cache.ImportScans(path)
    found = first.imports_of(source, "trainflow")
    assert {"trainflow.ml.data", "trainflow.store"} <= found.names and not found.dynamic
    first.save()
    assert path.is_file() and not list(path.parent.glob(".*partial"))

    def no_parsing(source: bytes, package: str):  # type: ignore[no-untyped-def]
        raise AssertionError("parsed again")

    monkeypatch.setattr(cache, "_imports_of", no_parsing)
    later = cache.ImportScans(path)  # as the next process opens it
    assert later.imports_of(source, "trainflow") == found and not later.added
    with pytest.raises(AssertionError, match="parsed again"):
        later.imports_of(source + b"import trainflow.ml.train\n", "trainflow")
