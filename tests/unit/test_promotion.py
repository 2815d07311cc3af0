"""The promotion gate (pure: constructed versions in, a Decision out), the rollback order,
the promote config checks, and the store's promotion history. No MLflow, no models.
"""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from trainflow.config.schema import load_config, resolve_paths, validate
from trainflow.errors import ConfigError, TrainflowError
from trainflow.promotion.gate import (
    CHAMPION_KEPT,
    PROMOTED,
    REFUSED,
    GatePolicy,
    decide,
    metrics_summary,
    needs_rescore,
    rollback_target,
    validate_promote,
)
from trainflow.store.local import LocalArtifactStore
from trainflow.store.records import ArtifactVersion

TEST_SET = "test_data.parquet:v3"
POLICY = GatePolicy(metric="roc_auc_ovo", thresholds={"roc_auc_ovo": 0.9}, min_improvement=0.005)


def model(
    version: int,
    metrics: dict[str, float] | None = None,
    tested_on: str | None = TEST_SET,
    baseline: dict[str, float] | None = None,
    features: dict[str, list[str]] | None = None,
    gap: dict[str, object] | None = None,
) -> ArtifactVersion:
    """A model_export version as test_model leaves it (no test record when metrics is None),
    with the trivial baseline's metrics beside its own when given."""
    metadata: dict[str, Any] = {}
    if metrics is not None:
        metadata["test"] = {"test_data": tested_on, "metrics": metrics, "run_id": f"run-{version}"}
        if baseline is not None:
            metadata["test"]["baseline_metrics"] = baseline
        if gap is not None:
            metadata["test"]["baseline_gap"] = gap
    if features is not None:
        metadata["features"] = features
    return ArtifactVersion(
        name="model_export",
        version=version,
        type="model_export",
        kind="dir",
        digest=f"d{version}",
        size=1,
        description="",
        metadata=metadata,
        aliases=(),
        created_at="",
        run=None,
        files=(),
    )


def rows(decision) -> dict[str, tuple[str, str, str]]:
    return {c.name: (c.value, c.bound, c.verdict) for c in decision.criteria}


def test_first_model_is_promoted_on_thresholds_alone() -> None:
    decision = decide(model(0, {"roc_auc_ovo": 0.97, "accuracy": 0.95}), TEST_SET, POLICY, champion=None)
    assert decision.outcome == PROMOTED and decision.promote and not decision.forced
    assert rows(decision)["roc_auc_ovo"] == ("0.9700", ">= 0.9", "pass")
    assert rows(decision)["champion"] == ("none yet", "baseline and bounds decide", "pass")
    assert rows(decision)["roc_auc_ovo vs baseline"] == (
        "0.9700",
        "baseline not recorded",
        "-",
    )  # tested before baselines
    table = decision.table()
    assert table.splitlines()[0].split() == ["criterion", "value", "bound", "verdict"]
    assert "roc_auc_ovo" in table and ">= 0.9" in table


GENERIC = GatePolicy(metric="roc_auc_ovo", thresholds={}, min_improvement=0.005, baseline_margin=0.01)


def test_with_no_champion_and_no_bounds_the_baseline_decides() -> None:
    """A generic table's first model: promoted when it beats the trivial baseline (fitted on
    the same rows, scored on the same test set) by the margin, refused when it does not."""
    better = decide(model(0, {"roc_auc_ovo": 0.61}, baseline={"roc_auc_ovo": 0.5}), TEST_SET, GENERIC)
    assert better.outcome == PROMOTED
    assert rows(better)["roc_auc_ovo vs baseline"] == ("0.6100", ">= 0.5100 (baseline 0.5000 + 0.01)", "pass")
    guessing = decide(model(1, {"roc_auc_ovo": 0.505}, baseline={"roc_auc_ovo": 0.5}), TEST_SET, GENERIC)
    assert guessing.outcome == REFUSED and not guessing.ineligible  # a verdict on the model, not an error
    assert "roc_auc_ovo vs baseline is 0.5050, needs >= 0.5100" in guessing.failures()


def test_a_gap_that_chance_could_make_is_not_enough() -> None:
    """Noise on a small test set: 0.5326 against 0.5 observed, but the bootstrap's 95% lower
    bound of the gap is below the margin: refused. The same gap measured surely passes."""
    lucky = model(
        0,
        {"roc_auc_ovo": 0.5326},
        baseline={"roc_auc_ovo": 0.5},
        gap={"metric": "roc_auc_ovo", "gap": 0.0326, "lower": -0.0004, "resamples": 100, "rows": 800},
    )
    decision = decide(lucky, TEST_SET, GENERIC)
    assert decision.outcome == REFUSED
    assert rows(decision)["roc_auc_ovo vs baseline"] == (
        "0.5326, gap +0.0326 (95% lower bound -0.0004)",
        "gap >= 0.01 at 95% (baseline 0.5000)",
        "FAIL",
    )
    sure = model(
        1,
        {"roc_auc_ovo": 0.5326},
        baseline={"roc_auc_ovo": 0.5},
        gap={"metric": "roc_auc_ovo", "gap": 0.0326, "lower": 0.021, "resamples": 100, "rows": 80_000},
    )
    assert decide(sure, TEST_SET, GENERIC).outcome == PROMOTED
    # a gap measured for another metric is not this gate's evidence: the observed gap decides
    other = model(
        2,
        {"roc_auc_ovo": 0.5326},
        baseline={"roc_auc_ovo": 0.5},
        gap={"metric": "accuracy", "gap": 0.1, "lower": -0.2, "resamples": 100, "rows": 800},
    )
    assert decide(other, TEST_SET, GENERIC).outcome == PROMOTED


def test_an_error_metric_beats_its_baseline_downwards() -> None:
    policy = GatePolicy(metric="rmse", higher_is_better=False, thresholds={}, baseline_margin=0.5)
    assert decide(model(0, {"rmse": 3.0}, baseline={"rmse": 4.0}), TEST_SET, policy).outcome == PROMOTED
    worse = decide(model(0, {"rmse": 3.8}, baseline={"rmse": 4.0}), TEST_SET, policy)
    assert worse.outcome == REFUSED and rows(worse)["rmse vs baseline"][1] == "<= 3.5000 (baseline 4.0000 - 0.5)"


def test_the_baseline_holds_even_when_the_champion_is_beaten() -> None:
    champion = model(0, {"roc_auc_ovo": 0.40}, baseline={"roc_auc_ovo": 0.5})
    candidate = model(1, {"roc_auc_ovo": 0.45}, baseline={"roc_auc_ovo": 0.5})
    decision = decide(candidate, TEST_SET, GENERIC, champion=champion)
    assert decision.outcome == REFUSED and rows(decision)["roc_auc_ovo vs baseline"][2] == "FAIL"


def test_differing_input_columns_are_said_in_the_gate_table() -> None:
    champion = model(0, {"roc_auc_ovo": 0.90}, features={"numeric": ["a", "b"], "categorical": ["c"]})
    candidate = model(1, {"roc_auc_ovo": 0.95}, features={"numeric": ["a", "d"], "categorical": ["c"]})
    decision = decide(candidate, TEST_SET, GENERIC, champion=champion)
    assert rows(decision)["input columns vs champion"] == ("+1 (d) -1 (b)", "the champion's", "note")
    assert decision.outcome == PROMOTED  # said, not decided on
    same = decide(model(2, {"roc_auc_ovo": 0.95}, features=champion.metadata["features"]), TEST_SET, GENERIC, champion)
    assert "input columns vs champion" not in rows(same)


def test_the_gate_metric_follows_the_task(project_dir: Path) -> None:
    cfg = load_config(project_dir, ["data.uri=x.csv", "data.target=y"])
    assert GatePolicy.from_config(cfg.promote, "classification").metric == "roc_auc_ovo"
    regression = GatePolicy.from_config(cfg.promote, "regression")
    assert (regression.metric, regression.higher_is_better, regression.thresholds) == ("r2", True, {})
    errors = GatePolicy.from_config(
        load_config(project_dir, ["data.uri=x.csv", "data.target=y", "promote.metric=mae"]).promote
    )
    assert (errors.metric, errors.higher_is_better) == ("mae", False)


def test_below_threshold_is_refused_even_without_champion() -> None:
    decision = decide(model(1, {"roc_auc_ovo": 0.777}), TEST_SET, POLICY)
    assert decision.outcome == REFUSED
    assert rows(decision)["roc_auc_ovo"] == ("0.7770", ">= 0.9", "FAIL")
    assert decision.failures() == "roc_auc_ovo is 0.7770, needs >= 0.9"


def test_not_better_than_champion_keeps_it() -> None:
    champion = model(0, {"roc_auc_ovo": 0.9722})
    decision = decide(model(1, {"roc_auc_ovo": 0.9763}), TEST_SET, POLICY, champion)  # +0.0041 < 0.005
    assert decision.outcome == CHAMPION_KEPT and decision.champion == "model_export:v0"
    value, bound, verdict = rows(decision)["roc_auc_ovo vs champion model_export:v0"]
    assert (value, verdict) == ("0.9763", "FAIL")
    assert bound == ">= 0.9772 (champion 0.9722 + 0.005)"
    assert decision.champion_metrics == {"roc_auc_ovo": 0.9722}


def test_beating_the_champion_by_the_margin_promotes() -> None:
    champion = model(0, {"roc_auc_ovo": 0.97})
    exactly_the_margin = model(1, {"roc_auc_ovo": 0.975})
    assert decide(exactly_the_margin, TEST_SET, POLICY, champion).outcome == PROMOTED
    assert decide(model(1, {"roc_auc_ovo": 1.0}), TEST_SET, POLICY, champion).outcome == PROMOTED


def test_a_tie_never_replaces_the_champion_even_with_zero_margin() -> None:
    policy = GatePolicy(thresholds={}, min_improvement=0.0)
    champion = model(0, {"roc_auc_ovo": 1.0})
    decision = decide(model(1, {"roc_auc_ovo": 1.0}), TEST_SET, policy, champion)
    assert decision.outcome == CHAMPION_KEPT
    assert rows(decision)["roc_auc_ovo vs champion model_export:v0"][1] == "> 1.0000 (champion)"


def test_untested_model_is_refused_and_nothing_else_is_judged() -> None:
    decision = decide(model(2), TEST_SET, POLICY, champion=model(0, {"roc_auc_ovo": 0.97}))
    assert decision.outcome == REFUSED
    assert rows(decision)["tested on current test set"] == ("never tested", TEST_SET, "FAIL")
    assert rows(decision)["roc_auc_ovo"] == ("-", ">= 0.9", "-")
    assert "never tested" in decision.failures()


def test_model_tested_on_another_test_set_is_refused() -> None:
    stale = model(2, {"roc_auc_ovo": 1.0}, tested_on="test_data.parquet:v2")
    decision = decide(stale, TEST_SET, POLICY, champion=None)
    assert decision.outcome == REFUSED
    assert rows(decision)["tested on current test set"] == ("test_data.parquet:v2", TEST_SET, "FAIL")


def test_force_overrides_the_champion_comparison_only() -> None:
    champion = model(0, {"roc_auc_ovo": 1.0})
    forced = GatePolicy(thresholds={"roc_auc_ovo": 0.9}, min_improvement=0.005, force=True)
    decision = decide(model(1, {"roc_auc_ovo": 0.9663}), TEST_SET, forced, champion)
    assert decision.outcome == PROMOTED and decision.forced
    assert rows(decision)["roc_auc_ovo vs champion model_export:v0"][2] == "FAIL (forced)"
    assert decision.as_record()["forced"] is True and decision.as_record()["policy"]["force"] is True
    # Thresholds still hold under force.
    assert decide(model(2, {"roc_auc_ovo": 0.777}), TEST_SET, forced, champion).outcome == REFUSED
    # Force that was not needed is not a forced promotion.
    assert not decide(model(3, {"roc_auc_ovo": 1.0}), TEST_SET, forced, model(0, {"roc_auc_ovo": 0.9})).forced


def test_error_metrics_lower_is_better_and_thresholds_are_maximums() -> None:
    policy = GatePolicy(
        metric="rmse", higher_is_better=False, thresholds={"rmse": 0.5, "mae": 0.4}, min_improvement=0.01
    )
    champion = model(0, {"rmse": 0.30, "mae": 0.2})
    better = decide(model(1, {"rmse": 0.28, "mae": 0.2}), TEST_SET, policy, champion)
    assert better.outcome == PROMOTED
    assert rows(better)["rmse"] == ("0.2800", "<= 0.5", "pass")
    assert rows(better)["rmse vs champion model_export:v0"][1] == "<= 0.2900 (champion 0.3000 - 0.01)"
    assert decide(model(2, {"rmse": 0.295, "mae": 0.2}), TEST_SET, policy, champion).outcome == CHAMPION_KEPT
    assert decide(model(3, {"rmse": 0.6, "mae": 0.2}), TEST_SET, policy, None).outcome == REFUSED


def test_threshold_on_a_metric_the_model_lacks_is_refused() -> None:
    policy = GatePolicy(thresholds={"r2": 0.8})
    decision = decide(model(1, {"roc_auc_ovo": 0.99}), TEST_SET, policy)
    assert decision.outcome == REFUSED and rows(decision)["r2"][0] == "missing"


def test_comparison_metric_missing_is_refused_naming_the_recorded_ones() -> None:
    decision = decide(model(1, {"accuracy": 0.99}), TEST_SET, GatePolicy(metric="log_loss", higher_is_better=False))
    assert decision.outcome == REFUSED
    assert "one of: accuracy" in decision.failures()


def test_non_finite_metric_is_refused() -> None:
    decision = decide(model(1, {"roc_auc_ovo": math.nan, "accuracy": 1.0}), TEST_SET, GatePolicy())
    assert decision.outcome == REFUSED
    assert rows(decision)["test metrics recorded and finite"][2] == "FAIL"


def test_the_metrics_row_names_the_gate_metrics_and_every_non_finite_one() -> None:
    """Per-class precision and recall would make the row hundreds of characters wide: it
    shows the metrics the gate uses and any that fail the finiteness check, and counts the rest."""
    recorded = {
        "roc_auc_ovo": 0.9663,
        "accuracy": 0.7826,
        "precision_Adelie": 0.67,
        "recall_Gentoo": math.inf,
        "log_loss": 0.4992,
    }
    decision = decide(model(1, recorded), TEST_SET, GatePolicy(thresholds={"accuracy": 0.5}))
    value = rows(decision)["test metrics recorded and finite"][0]
    assert value == "roc_auc_ovo=0.9663, accuracy=0.7826, recall_Gentoo=inf (+2 more)"
    assert metrics_summary({"a": 1.0, "b": 2.0}, ["b"]) == "b=2.0000 (+1 more)"
    assert metrics_summary({"a": 1.0}, []) == "1 recorded"
    assert metrics_summary({}, ["a"]) == "none"


def test_the_champion_itself_is_kept() -> None:
    champion = model(0, {"roc_auc_ovo": 0.99})
    decision = decide(champion, TEST_SET, POLICY, champion)
    assert decision.outcome == CHAMPION_KEPT
    assert rows(decision)["champion"] == ("model_export:v0 (this model)", "a different version", "FAIL")


def test_a_champion_scored_on_another_test_set_needs_rescoring_and_is_never_compared() -> None:
    champion = model(0, {"roc_auc_ovo": 0.5}, tested_on="test_data.parquet:v1")
    assert needs_rescore(champion, TEST_SET, POLICY)
    assert not needs_rescore(model(0, {"roc_auc_ovo": 0.5}), TEST_SET, POLICY)
    assert needs_rescore(model(0, {"accuracy": 0.5}), TEST_SET, POLICY)  # lacks the comparison metric
    # Given one anyway, the gate does not compare across test sets: the champion stays.
    assert decide(model(1, {"roc_auc_ovo": 1.0}), TEST_SET, POLICY, champion).outcome == CHAMPION_KEPT


@pytest.mark.parametrize(
    ("moves", "rollbacks", "target"),
    [
        ([], set(), None),
        ([(0, None, "p0")], set(), None),
        ([(0, None, "p0"), (2, 0, "p2")], set(), 0),
        # promote v0, v1, v2; roll back twice: v1, then v0 (a stack, not a toggle)
        ([(0, None, "p0"), (1, 0, "p1"), (2, 1, "p2"), (1, 2, "r1")], {"r1"}, 0),
        ([(0, None, "p0"), (1, 0, "p1"), (2, 1, "p2"), (1, 2, "r1"), (0, 1, "r2")], {"r1", "r2"}, None),
        # a rollback, then a new promotion: rolling back returns to the rolled-back-to version
        ([(0, None, "p0"), (1, 0, "p1"), (0, 1, "r1"), (3, 0, "p3")], {"r1"}, 0),
        # a manual move counts as a promotion
        ([(0, None, "p0"), (4, 0, None)], set(), 0),
    ],
)
def test_rollback_target_pops_the_champions_stack(moves, rollbacks, target) -> None:
    assert rollback_target(moves, rollbacks) == target


def promote_section(**changes: Any) -> dict[str, Any]:
    section = {
        "metric": "roc_auc_ovo",
        "higher_is_better": True,
        "thresholds": {"roc_auc_ovo": 0.9},
        "min_improvement": 0.005,
        "force": False,
        "registered_model_name": "trainflow-model",
        "alias": "prod",
    }
    return {**section, **changes}


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"min_improvement": -0.1}, "promote.min_improvement"),
        ({"metric": ""}, "promote.metric"),
        ({"registered_model_name": "my/model"}, "promote.registered_model_name"),
        ({"registered_model_name": ""}, "promote.registered_model_name"),
        ({"thresholds": {"accuracy": math.inf}}, "promote.thresholds.accuracy"),
    ],
)
def test_invalid_promote_settings_name_the_key(changes: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        validate_promote(promote_section(**changes))


def test_default_config_gate_and_overrides(project_dir: Path) -> None:
    """config.yaml's gate lets the default penguins model (roc_auc_ovo ~1.0) through; keys are typed."""
    cfg = resolve_paths(load_config(project_dir), project_dir)
    validate(cfg)
    policy = GatePolicy.from_config(cfg.promote)
    assert decide(model(0, {"roc_auc_ovo": 1.0, "accuracy": 0.98, "f1_macro": 0.98}), TEST_SET, policy).promote
    assert cfg.batch_predict.model == "model_export:prod"
    cfg = load_config(project_dir, ["+promote.thresholds.accuracy=0.95", "promote.force=true"])
    assert GatePolicy.from_config(cfg.promote).thresholds == {"roc_auc_ovo": 0.9, "accuracy": 0.95}
    with pytest.raises(ConfigError, match="promote.min_improvement"):
        validate(resolve_paths(load_config(project_dir, ["promote.min_improvement=-1"]), project_dir))
    with pytest.raises(ConfigError, match="promote.force"):
        load_config(project_dir, ["promote.force=maybe"])


# -- the store's promotion history ---------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> LocalArtifactStore:
    store = LocalArtifactStore(tmp_path / "store")
    source = tmp_path / "model.bin"
    for content in (b"zero", b"one", b"two"):
        source.write_bytes(content)
        store.log_artifact(source, "model_export", "model_export")
    return store


def test_a_promotion_moves_the_alias_and_appends_history_together(store: LocalArtifactStore) -> None:
    first = store.record_promotion(
        "model_export",
        "prod",
        "promote",
        PROMOTED,
        "model_export:v0",
        {"metrics": {"auc": 0.9}},
        "me@here",
        move=True,
        expected=None,
    )
    assert (first.before, first.after, first.candidate) == (None, "model_export:v0", "model_export:v0")
    kept = store.record_promotion("model_export", "prod", "promote", CHAMPION_KEPT, "model_export:v1", {}, "me@here")
    assert (kept.before, kept.after) == ("model_export:v0", "model_export:v0")
    assert store.get("model_export:prod").version == 0
    history = store.promotions("model_export")
    assert [(e.id, e.outcome, e.actor) for e in history] == [(1, PROMOTED, "me@here"), (2, CHAMPION_KEPT, "me@here")]
    assert history[0].details == {"metrics": {"auc": 0.9}}
    assert store.promotions("other") == [] and store.promotions(alias="staging") == []


def test_a_move_against_a_stale_champion_changes_nothing(store: LocalArtifactStore) -> None:
    store.set_alias("model_export:v1", "prod")
    stale = r"model_export:prod changed to model_export:v1 .* against model_export:v0"
    with pytest.raises(TrainflowError, match=stale):
        store.record_promotion(
            "model_export",
            "prod",
            "promote",
            PROMOTED,
            "model_export:v2",
            {},
            "me",
            move=True,
            expected="model_export:v0",
        )
    assert store.get("model_export:prod").version == 1
    assert store.promotions() == []
    assert [move[0] for move in store.alias_history("model_export", "prod")] == [1]


def test_existing_store_without_the_history_table_gains_it(store: LocalArtifactStore) -> None:
    """A store created before promotions existed keeps working: the table is added on open."""
    store.set_alias("model_export:v0", "prod")
    with sqlite3.connect(store.index_path) as db:
        db.execute("DROP TABLE promotions")
    reopened = LocalArtifactStore(store.root)
    assert reopened.get("model_export:prod").version == 0
    assert reopened.promotions() == []
    entry = reopened.record_promotion("model_export", "prod", "promote", REFUSED, "model_export:v2", {"x": 1}, "me")
    with sqlite3.connect(store.index_path) as db:
        assert json.loads(db.execute("SELECT details FROM promotions").fetchone()[0]) == {"x": 1}
    assert entry.outcome == REFUSED


def test_each_threshold_keeps_its_metrics_direction_whatever_the_comparison_metric() -> None:
    """Comparing by log_loss (lower is better) used to turn roc_auc_ovo >= 0.9 into <= 0.9,
    so a weak model passed the bound and a strong one failed it."""
    policy = GatePolicy(metric="log_loss", higher_is_better=False, thresholds={"roc_auc_ovo": 0.9, "log_loss": 0.5})
    weak = decide(model(1, {"roc_auc_ovo": 0.777, "log_loss": 0.3}), TEST_SET, policy)
    assert weak.outcome == REFUSED and rows(weak)["roc_auc_ovo"] == ("0.7770", ">= 0.9", "FAIL")
    strong = decide(model(2, {"roc_auc_ovo": 1.0, "log_loss": 0.07}), TEST_SET, policy)
    assert strong.outcome == PROMOTED and rows(strong)["log_loss"] == ("0.0700", "<= 0.5", "pass")


@pytest.mark.parametrize(
    ("metric", "higher"), [("log_loss", True), ("rmse", True), ("roc_auc_ovo", False), ("r2", False)]
)
def test_a_comparison_direction_against_the_metric_is_refused(metric: str, higher: bool) -> None:
    with pytest.raises(
        ConfigError, match=f"promote.metric={metric} is better (higher|lower): set promote.higher_is_better="
    ):
        validate_promote(
            {
                "metric": metric,
                "higher_is_better": higher,
                "thresholds": {},
                "min_improvement": 0.0,
                "force": False,
                "registered_model_name": "trainflow-model",
                "alias": "prod",
            }
        )


@pytest.mark.parametrize("alias", ["latest", "candidate"])
def test_an_alias_every_new_model_moves_cannot_be_the_production_alias(alias: str) -> None:
    with pytest.raises(ConfigError, match=f"promote.alias={alias} is moved by every"):
        validate_promote(
            {
                "metric": "roc_auc_ovo",
                "higher_is_better": True,
                "thresholds": {},
                "min_improvement": 0.0,
                "force": False,
                "registered_model_name": "trainflow-model",
                "alias": alias,
            }
        )
