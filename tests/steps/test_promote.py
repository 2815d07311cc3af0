"""promote_model and rollback against a real store and a real MLflow registry (SQLite).

The component runs in this process through its real entry point (``run.py`` as a
script, arguments included), which is what ``mlflow run`` starts, minus the process
start-up; one test goes through the ``trainflow`` command. Models are trained once
per module with the library: penguins forests from weak to strong.
"""

from __future__ import annotations

import json
import runpy
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow.entities import LoggedModelStatus
from support.project import PROJECT_DIR, error_lines, project_store, run_command, tamper

from trainflow.errors import TrainflowError
from trainflow.ml.data import split_dataset
from trainflow.ml.evaluate import score_exported_model
from trainflow.ml.train import FeatureSpec, PreprocessingOptions, export, train
from trainflow.promotion.registry import move_production_alias
from trainflow.store.blobs import file_sha256
from trainflow.store.local import LocalArtifactStore
from trainflow.store.records import RunRecord

TARGET = "species"
NUMERIC = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]
CATEGORICAL = ["island", "sex"]
REGISTERED = "penguins-species"  # promote.registered_model_name: the project's
TRAINFLOW = str(Path(sys.executable).parent / "trainflow")
# Test ROC AUC (ovo) on the default split, for the penguins gate's roc_auc_ovo >= 0.9, margin 0.005:
FORESTS = {
    "weak": {"max_depth": 1, "n_estimators": 3},  # 0.9686: passes the threshold
    "lower": {"max_depth": 1, "n_estimators": 2},  # 0.9346: passes, but does not beat "weak"
    "crippled": {"max_depth": 1, "n_estimators": 1},  # 0.7703: below the threshold
    "strong": {"n_estimators": 30},  # 1.0
}


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each forest trained on penguins' default trainval split and exported; plus two test sets."""
    root = tmp_path_factory.mktemp("exports")
    raw = pd.read_csv(PROJECT_DIR / "data" / "penguins.csv")
    trainval, test = split_dataset(raw, TARGET, 0.2, 42, TARGET)
    paths = {}
    for name, params in FORESTS.items():
        result = train(
            trainval,
            TARGET,
            "classification",
            "random_forest",
            {**params, "random_state": 42},
            FeatureSpec(numeric=NUMERIC, categorical=CATEGORICAL),
            PreprocessingOptions(),
            0.2,
            42,
            TARGET,
        )
        paths[name] = export(result, root / name)
    test.to_parquet(root / "test.parquet", index=False)
    _, other = split_dataset(raw, TARGET, 0.2, 7, TARGET)
    other.to_parquet(root / "other_test.parquet", index=False)
    return {**paths, "test": root / "test.parquet", "other_test": root / "other_test.parquet"}


@dataclass
class Bench:
    """A fresh store and registry, the module's models, and the promote step."""

    store: LocalArtifactStore
    env: dict[str, str]
    exports: dict[str, Path]
    capsys: pytest.CaptureFixture[str]
    refs: dict[str, str] = field(default_factory=dict)

    def log_test_set(self, which: str = "test") -> str:
        return self.store.log_artifact(self.exports[which], "test_data.parquet", "split_data").ref

    def add(self, forest: str, tested_on: str | None = "test_data.parquet:latest") -> str:
        """Log a forest as the next model_export; score it as test_model does unless tested_on is None."""
        version = self.store.log_artifact(self.exports[forest], "model_export", "model_export", description=forest)
        if tested_on is not None:
            self.test(version.ref, tested_on)
        self.refs[forest] = version.ref
        return version.ref

    def test(self, ref: str, test_set: str) -> None:
        test_version = self.store.get(test_set)
        frame = pd.read_parquet(self.store.use_artifact(test_version.ref))
        metrics = score_exported_model(self.store.use_artifact(ref), frame, TARGET)
        self.store.update_metadata(ref, {"test": {"test_data": test_version.ref, "metrics": metrics, "run_id": "t"}})

    def promote(self, ref: str, *overrides: str) -> tuple[int, str, str]:
        """``python components/promote_model/run.py --model-artifact REF --hydra-options ...``."""
        argv = ["run.py", "--model-artifact", ref, "--test-artifact", "", "--hydra-options", " ".join(overrides)]
        saved = sys.argv
        sys.argv = argv
        try:
            runpy.run_path(str(PROJECT_DIR / "components" / "promote_model" / "run.py"), run_name="__main__")
            code = 0
        except SystemExit as exit_:
            code = int(exit_.code or 0)
        finally:
            sys.argv = saved
        captured = self.capsys.readouterr()
        return code, captured.out, captured.err

    def prod(self) -> str | None:
        try:
            return self.store.get("model_export:prod").ref
        except Exception:
            return None

    def registry_prod(self) -> str | None:
        """The store version the registry's prod alias names (from its tags), or None."""
        client = mlflow.MlflowClient(self.env["MLFLOW_TRACKING_URI"])
        try:
            version = client.get_model_version_by_alias(REGISTERED, "prod")
        except mlflow.exceptions.MlflowException:
            return None
        return version.tags["trainflow.artifact"]

    def registry_files(self, tmp: Path) -> dict[str, str]:
        """What ``models:/<name>@prod`` downloads, minus the name/version note MLflow adds on download."""
        from mlflow.store.artifact.models_artifact_repo import REGISTERED_MODEL_META_FILE_NAME

        mlflow.set_tracking_uri(self.env["MLFLOW_TRACKING_URI"])
        local = Path(mlflow.artifacts.download_artifacts(f"models:/{REGISTERED}@prod", dst_path=str(tmp)))
        return {
            p.relative_to(local).as_posix(): file_sha256(p)
            for p in local.rglob("*")
            if p.is_file() and p.name != REGISTERED_MODEL_META_FILE_NAME
        }

    def store_files(self) -> dict[str, str]:
        return {f.path: f.sha256 for f in self.store.get("model_export:prod").files}


@pytest.fixture
def bench(store_env: dict[str, str], exports: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> Bench:
    store = project_store(store_env["TRAINFLOW_HOME"])
    bench = Bench(store, store_env, exports, capsys)
    bench.log_test_set()
    return bench


def test_first_model_goes_to_store_and_registry_with_the_same_bytes(bench: Bench, tmp_path: Path) -> None:
    weak = bench.add("weak")
    code, out, _ = bench.promote(weak)
    assert code == 0
    assert "champion                          none yet" in out and "baseline and bounds decide" in out
    assert "roc_auc_ovo vs baseline" in out
    assert f"promoted {weak} to 'prod'" in out and f"models:/{REGISTERED}@prod" in out
    assert bench.prod() == bench.registry_prod() == weak
    assert bench.registry_files(tmp_path / "registry") == bench.store_files()
    # The registered version carries the artifact, its digest, metrics and lineage; its
    # source is an MLflow LoggedModel whose files are in the store, not a temporary directory
    # (this bench's models were never trained here, so promote_model logged it).
    client = mlflow.MlflowClient(bench.env["MLFLOW_TRACKING_URI"])
    registered = client.get_model_version_by_alias(REGISTERED, "prod")
    assert registered.tags["trainflow.digest"] == bench.store.get(weak).digest
    assert registered.tags["trainflow.test_data"] == "test_data.parquet:v0"
    assert float(registered.tags["trainflow.test.roc_auc_ovo"]) == pytest.approx(0.9686, abs=1e-3)
    assert registered.tags["trainflow.lineage"].startswith(weak)
    assert registered.source.startswith("models:/m-")
    logged = client.get_logged_model(registered.source.removeprefix("models:/"))
    assert json.loads(logged.tags["mlflow.modelVersions"]) == [{"name": REGISTERED, "version": registered.version}]
    assert logged.artifact_location.startswith((bench.store.root / "mlartifacts").as_uri())
    assert logged.status == LoggedModelStatus.READY and logged.tags["trainflow.artifact"] == weak
    assert logged.source_run_id == registered.tags["trainflow.promotion_run"]
    assert registered.tags["trainflow.decision"] == "promoted"
    described = client.get_registered_model(REGISTERED)
    assert "promotion gate" in described.description
    assert described.tags["trainflow.artifact"] == "model_export"
    assert bench.store.get(weak).metadata["registry"] == {REGISTERED: int(registered.version)}
    [entry] = bench.store.promotions("model_export")
    assert (entry.outcome, entry.before, entry.after, entry.details["registry"]["version"]) == (
        "promoted",
        None,
        weak,
        int(registered.version),
    )


def test_below_threshold_is_refused_and_neither_alias_moves(bench: Bench) -> None:
    """Refused on its merits: reported, exit 0 (the pipeline did its job); with
    promote.fail_if_not_promoted=true (CI), exit 1 with the same reason."""
    weak, crippled = bench.add("weak"), bench.add("crippled")
    assert bench.promote(weak)[0] == 0
    code, out, err = bench.promote(crippled)
    assert code == 0, err
    assert f"[promote_model] {crippled} not promoted, 'prod' stays {weak}: roc_auc_ovo is 0.7" in out
    assert "needs >= 0.9" in out
    assert "roc_auc_ovo                              0.7" in out  # the gate's table
    assert bench.prod() == bench.registry_prod() == weak
    code, out, err = bench.promote(crippled, "promote.fail_if_not_promoted=true")
    assert code == 1
    [line] = error_lines(err)
    assert line.startswith(f"promote_model: error: {crippled} not promoted, 'prod' stays {weak}: roc_auc_ovo is 0.7")
    assert "failing because promote.fail_if_not_promoted=true" in line
    assert bench.prod() == bench.registry_prod() == weak
    assert [e.outcome for e in bench.store.promotions()] == ["promoted", "refused", "refused"]


def test_not_beating_the_champion_keeps_it_and_exits_zero_unless_ci_asks(bench: Bench) -> None:
    weak, lower = bench.add("weak"), bench.add("lower")
    assert bench.promote(weak)[0] == 0
    code, out, err = bench.promote(lower)
    assert code == 0, err
    assert f"{lower} not promoted: champion v0 kept ('prod' stays {weak})" in out
    assert f"roc_auc_ovo vs champion {weak}" in out and ">= 0.9736 (champion 0.9686 + 0.005)" in out
    assert bench.prod() == bench.registry_prod() == weak

    code, _, err = bench.promote(lower, "promote.fail_if_not_promoted=true")
    assert code == 1
    [line] = error_lines(err)
    assert f"champion {weak} kept" in line and "promote.fail_if_not_promoted=true" in line
    assert bench.prod() == bench.registry_prod() == weak
    kept = [e for e in bench.store.promotions() if e.outcome == "champion_kept"]
    assert len(kept) == 2 and all(e.before == e.after == weak for e in kept)


def test_untested_model_is_refused(bench: Bench) -> None:
    weak, untested = bench.add("weak"), bench.add("strong", tested_on=None)
    assert bench.promote(weak)[0] == 0
    code, _, err = bench.promote(untested)
    assert code == 1
    [line] = error_lines(err)
    assert "never tested" in line and "run test_model on this model first" in line
    assert bench.prod() == bench.registry_prod() == weak


def test_stale_test_set_is_refused_then_the_champion_is_rescored(bench: Bench) -> None:
    weak = bench.add("weak")
    strong = bench.add("strong")  # tested on test_data.parquet:v0
    assert bench.promote(weak)[0] == 0
    new_test_set = bench.log_test_set("other_test")  # test_data.parquet:v1 becomes current
    code, _, err = bench.promote(strong)
    assert code == 1
    [line] = error_lines(err)
    assert "tested on current test set is test_data.parquet:v0, needs test_data.parquet:v1" in line
    assert bench.prod() == bench.registry_prod() == weak

    bench.test(strong, new_test_set)
    code, out, err = bench.promote(strong)
    assert code == 0, err
    assert f"re-scored champion {weak} on {new_test_set}" in out
    rescored = bench.store.get(weak).metadata["test"]
    assert rescored["test_data"] == new_test_set and rescored["scored_by"] == "promote_model"
    assert bench.prod() == bench.registry_prod() == strong


def test_force_overrides_the_champion_only_and_is_recorded(bench: Bench, tmp_path: Path) -> None:
    strong, lower, crippled = bench.add("strong"), bench.add("lower"), bench.add("crippled")
    assert bench.promote(strong)[0] == 0
    code, out, err = bench.promote(lower, "promote.force=true")
    assert code == 0, err
    assert "FAIL (forced)" in out and f"overrode the comparison with champion {strong}" in out
    assert bench.prod() == bench.registry_prod() == lower
    assert bench.registry_files(tmp_path / "registry") == bench.store_files()
    code, out, _ = bench.promote(crippled, "promote.force=true")
    assert code == 0 and f"{crippled} not promoted" in out  # force skips the champion, not the bounds
    assert bench.prod() == bench.registry_prod() == lower
    history = bench.store.promotions()
    assert [(e.outcome, e.details["forced"]) for e in history] == [
        ("promoted", False),
        ("promoted", True),
        ("refused", False),
    ]


def test_a_candidate_predicting_something_else_is_not_compared_with_the_champion(bench: Bench) -> None:
    """A champion for another target or task cannot be scored on the candidate's test set
    (this was a traceback from scikit-learn): one line, nothing moves; force replaces it."""
    weak, other = bench.add("weak"), bench.add("strong")
    bench.store.update_metadata(weak, {"target": "species", "task": "classification"})
    assert bench.promote(weak)[0] == 0
    bench.test(other, bench.log_test_set("other_test"))  # the champion would need re-scoring on it
    bench.store.update_metadata(other, {"target": "body_mass_g", "task": "classification"})
    code, _, err = bench.promote(other)
    assert code == 1
    [line] = error_lines(err)
    assert f"{other} cannot be compared with the champion {weak}" in line
    assert "(target 'species' vs. 'body_mass_g')" in line
    assert "promote.force=true" in line and "TRAINFLOW_HOME" in line
    assert bench.prod() == bench.registry_prod() == weak
    refused = bench.store.promotions()[-1]  # recorded, as every decision is
    assert (refused.outcome, refused.candidate, refused.before, refused.after) == ("refused", other, weak, weak)
    assert "cannot be compared" in refused.details["reason"]

    code, out, err = bench.promote(other, "promote.force=true")
    assert code == 0, err
    assert f"champion {weak} predicts something else" in out
    assert bench.prod() == bench.registry_prod() == other


def test_a_damaged_champion_can_be_replaced_with_force(bench: Bench) -> None:
    """A champion whose files no longer verify cannot be re-scored on a new test set: one
    line naming force; with promote.force=true the candidate replaces it."""
    weak, strong = bench.add("weak"), bench.add("strong")
    assert bench.promote(weak)[0] == 0
    bench.test(strong, bench.log_test_set("other_test"))
    [skops] = [f for f in bench.store.get(weak).files if f.path.endswith(".skops")]
    tamper(bench.store.blob_path(skops.sha256), b"damaged")
    shutil.rmtree(bench.store.checkouts, ignore_errors=True)
    code, _, err = bench.promote(strong)
    assert code == 1
    [line] = error_lines(err)
    assert f"the champion {weak} cannot be scored" in line and "promote.force=true" in line
    assert bench.prod() == bench.registry_prod() == weak
    assert [e.outcome for e in bench.store.promotions()][-1] == "refused"
    code, out, err = bench.promote(strong, "promote.force=true")
    assert code == 0, err
    assert f"champion {weak} cannot be scored" in out
    assert bench.prod() == bench.registry_prod() == strong


def test_a_registry_alias_that_drifted_from_the_store_is_put_back(bench: Bench) -> None:
    """The store's alias is the record. A registry alias deleted by hand, or left on another
    version by a process killed between the two moves, is realigned by the next promote_model."""
    weak, strong, lower = bench.add("weak"), bench.add("strong"), bench.add("lower")
    assert bench.promote(weak)[0] == 0 and bench.promote(strong)[0] == 0
    client = mlflow.MlflowClient(bench.env["MLFLOW_TRACKING_URI"])
    recorded = bench.store.get(strong).metadata["registry"][REGISTERED]
    for drift in ("moved", "deleted"):
        if drift == "moved":
            client.set_registered_model_alias(REGISTERED, "prod", str(recorded - 1))
        else:
            client.delete_registered_model_alias(REGISTERED, "prod")
        assert bench.registry_prod() != strong
        code, out, err = bench.promote(lower)  # the champion is kept
        assert code == 0, err
        assert f"registry alias {REGISTERED}@prod named" in out and f"moved it back to {recorded}" in out
        assert bench.prod() == bench.registry_prod() == strong


def test_a_registry_alias_left_by_a_first_promotion_killed_midway_is_removed(
    bench: Bench, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A first promotion killed between moving the registry alias and committing the
    store's move leaves models:/...@prod on a version no store version holds as prod. The
    store is the record: the next promote_model removes it, even when it refuses."""
    import trainflow.promotion.registry

    weak, crippled = bench.add("weak"), bench.add("crippled")

    def killed(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("SIGKILL")  # the process is gone: nothing below runs

    with monkeypatch.context() as patch:
        patch.setattr(LocalArtifactStore, "record_promotion", killed)
        patch.setattr(
            trainflow.promotion.registry, "_realign", lambda *args, **kwargs: None
        )  # a dead process realigns nothing
        with pytest.raises(RuntimeError, match="SIGKILL"):
            bench.promote(weak)
    bench.capsys.readouterr()
    assert bench.prod() is None and bench.registry_prod() == weak  # the state the kill left
    code, out, err = bench.promote(crippled)
    assert code == 0, err  # refused on its merits: reported, not failed
    assert f"{crippled} not promoted" in out
    assert f"registry alias {REGISTERED}@prod named version 1, while no model_export version holds 'prod'" in out
    assert bench.prod() is None and bench.registry_prod() is None


def test_rollback_moves_store_and_registry_back_and_is_recorded(bench: Bench, tmp_path: Path) -> None:
    weak, strong = bench.add("weak"), bench.add("strong")
    assert bench.promote(weak)[0] == 0
    weak_files = bench.store_files()
    assert bench.promote(strong)[0] == 0
    assert bench.prod() == bench.registry_prod() == strong

    result = run_command([TRAINFLOW, "rollback"], bench.env)
    assert result.returncode == 0, result.stderr
    assert f"model_export:prod: {strong} -> {weak} (rolled back" in result.stdout
    assert bench.prod() == bench.registry_prod() == weak
    assert bench.registry_files(tmp_path / "registry") == bench.store_files() == weak_files
    history = bench.store.promotions()
    assert [(e.action, e.outcome, e.after) for e in history][-1] == ("rollback", "rolled_back", weak)
    # The weak model was registered once: the rollback re-pointed its registry version.
    assert history[-1].details["registry"]["version"] == history[0].details["registry"]["version"]

    again = run_command([TRAINFLOW, "rollback"], bench.env)
    assert again.returncode == 1
    [line] = error_lines(again.stderr)
    assert line == (
        f"trainflow: error: model_export:prod is {weak}, which has no previous champion to roll back to "
        "(`trainflow promotions --name model_export` shows the history)"
    )
    assert bench.prod() == bench.registry_prod() == weak
    listed = run_command([TRAINFLOW, "promotions"], bench.env)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert len(lines) == 4 and lines[0].split()[:4] == ["#", "at", "(UTC)", "action"]
    assert "rollback  rolled_back" in lines[3] and "prod: v1 -> v0" in lines[3]
    verbose = run_command([TRAINFLOW, "promotions", "--criteria"], bench.env).stdout
    assert "roc_auc_ovo vs champion model_export:v0" in verbose and "previous champion" in verbose
    assert f"registry: alias 'prod' -> models:/{REGISTERED}/1" in verbose


def test_a_move_decided_against_a_stale_champion_moves_neither_alias(bench: Bench) -> None:
    """Another promotion won the race: the store refuses the move and the registry alias is put back."""
    weak, strong = bench.add("weak"), bench.add("strong")
    assert bench.promote(weak)[0] == 0
    mlflow.set_tracking_uri(bench.env["MLFLOW_TRACKING_URI"])
    with mlflow.start_run() as active:
        with pytest.raises(TrainflowError, match=f"model_export:prod changed to {weak} while this decision was made"):
            move_production_alias(
                bench.store,
                bench.store.get(strong),
                "prod",
                expected=None,
                registered_name=REGISTERED,
                model_dir=bench.store.use_artifact(strong),
                action="promote",
                outcome="promoted",
                details={},
                run=RunRecord(active.info.run_id, "promote_model"),
            )
    assert bench.prod() == bench.registry_prod() == weak
    assert [e.outcome for e in bench.store.promotions()] == ["promoted"]


def test_rollback_refuses_an_alias_no_promotion_moved(store_env: dict[str, str], tmp_path: Path) -> None:
    from trainflow.promotion.registry import rollback

    store = project_store(store_env["TRAINFLOW_HOME"])
    for content in ("one", "two"):
        (tmp_path / "m.txt").write_text(content)
        store.log_artifact(tmp_path / "m.txt", "model_export", "model_export", aliases=["candidate"])
    with pytest.raises(TrainflowError, match="no promotion moved model_export:candidate"):
        rollback(store, "model_export", "candidate")
    assert store.promotions() == []
    # train_model and `trainflow sweeps best` can still move it
    assert store.set_alias("model_export:v0", "candidate").ref == "model_export:v0"
