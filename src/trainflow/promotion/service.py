"""The promote service behind ``promote_model``: decide with the gate, re-score a champion
tested on another test set, move the production alias in the store and the MLflow Model
Registry together, and record every decision (promoted, kept, refused) in the history.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

from omegaconf import DictConfig

from trainflow.errors import ChampionChanged, CorruptArtifact, DataError, TrainflowError
from trainflow.ml.evaluate import score_exported_model
from trainflow.ml.table_file import TableLimits
from trainflow.promotion.gate import (
    PROMOTED,
    REFUSED,
    Decision,
    GatePolicy,
    check_gate_fits_task,
    decide,
    needs_rescore,
    prediction_mismatch,
    tested_metrics,
)
from trainflow.promotion.registry import current_actor, move_production_alias, realign_registry
from trainflow.store.protocol import ArtifactStore
from trainflow.store.records import ArtifactVersion, RunRecord
from trainflow.store.wandb_backend import WandbArtifactStore, registry_path

if TYPE_CHECKING:
    import pandas as pd

# mlflow is imported inside log_decision, the one function that logs to the run: about 1 s
# that importing this module (and so the cache's look at promote_model) does not pay
# (docs/architecture.md#start-up).


class PromotionRun(Protocol):
    """What the service needs of the step's run (trainflow.pipeline.step_run.StepRun has
    it): the config, the store, the run's record, its inputs, and a way to speak and log."""

    cfg: DictConfig
    store: ArtifactStore
    record: RunRecord

    @property
    def run_id(self) -> str: ...

    @property
    def table_limits(self) -> TableLimits: ...

    def say(self, message: str) -> None: ...

    def warn(self, message: str) -> None: ...

    def resolve(self, param: str) -> ArtifactVersion: ...

    def read_table(self, param: str) -> pd.DataFrame: ...

    def log_metrics(self, metrics: Mapping[str, float], prefix: str = "", show: bool = True) -> None: ...


# Decisions tried when concurrent pipelines keep moving the champion first
DECISION_ATTEMPTS = 5


def champion_of(run: PromotionRun, name: str, alias: str) -> ArtifactVersion | None:
    try:
        return run.store.get(f"{name}:{alias}")
    except TrainflowError:
        return None


def rescore(
    run: PromotionRun, model: ArtifactVersion, champion: ArtifactVersion, test_set: ArtifactVersion, force: bool
) -> ArtifactVersion:
    """Score the champion on the current test set and record it on its version, as test_model does."""
    test = run.read_table("test_artifact")
    try:
        # A champion whose files are damaged cannot be compared either: force replaces it.
        model_dir = run.store.use_artifact(champion.ref, run=run.record)
        metrics = score_exported_model(model_dir, test, run.cfg.data.target)
    except (DataError, CorruptArtifact) as error:
        if force:
            run.say(f"champion {champion.ref} cannot be scored on {test_set.ref} ({error}); promote.force=true")
            return champion
        raise refusal(
            run,
            model,
            TrainflowError(
                f"the champion {champion.ref} cannot be scored on the current test set {test_set.ref} to compare it: "
                f"{error}; promote with promote.force=true to replace it without the comparison"
            ),
        ) from None
    run.say(f"re-scored champion {champion.ref} on {test_set.ref} (its metrics were for another test set)")
    run.log_metrics(metrics, prefix="champion_test_")
    return run.store.update_metadata(
        champion.ref,
        {"test": {"test_data": test_set.ref, "metrics": metrics, "run_id": run.run_id, "scored_by": "promote_model"}},
    )


def refuse_mismatch(
    run: PromotionRun, model: ArtifactVersion, champion: ArtifactVersion, mismatch: str, force: bool
) -> None:
    """A champion that predicts something else cannot be scored on the candidate's test set."""
    if force:
        run.say(f"champion {champion.ref} predicts something else ({mismatch}); promote.force=true")
        return
    raise refusal(
        run,
        model,
        TrainflowError(
            f"{model.ref} cannot be compared with the champion {champion.ref}: they predict different things "
            f"({mismatch}); promote with promote.force=true to replace it, or keep this model in its own store "
            "(another TRAINFLOW_HOME)"
        ),
    )


def refusal(run: PromotionRun, model: ArtifactVersion, error: TrainflowError) -> TrainflowError:
    """Record a refusal the gate could not even table (no comparison possible) in the
    promotion history, as every decision is, and return the error to raise."""
    run.store.record_promotion(
        model.name,
        run.cfg.promote.alias,
        "promote",
        REFUSED,
        model.ref,
        details={"reason": str(error)},
        actor=current_actor(),
        run=run.record,
    )
    return error


def log_decision(run: PromotionRun, decision: Decision) -> None:
    """The decision on the step's MLflow run: tags to filter by, the table and the record."""
    import mlflow

    mlflow.set_tags(
        {
            "trainflow.promotion.outcome": decision.outcome,
            "trainflow.promotion.champion": decision.champion or "",
            "trainflow.promotion.forced": str(decision.forced).lower(),
        }
    )
    mlflow.log_dict(decision.as_record(), "promotion_decision.json")
    mlflow.log_text(decision.table() + "\n", "promotion_decision.txt")
    if decision.metrics and decision.test_set and decision.criteria[0].passed:
        run.log_metrics(decision.metrics, prefix="test_")


def link_to_wandb_registry(run: PromotionRun, model: ArtifactVersion, alias: str) -> None:
    """With W&B artifacts, link the version just promoted to the W&B Registry collection
    named as the MLflow registered model (``wandb-registry-<wandb.registry>/<promote.registered_model_name>``)
    with ``alias``. Called once the store's alias and the MLflow Model Registry's have moved:
    the store's alias is the record, so a link that fails is a warning naming the fix and
    leaves the promotion as it is (``prod`` moves on a passed gate, never on a failure)."""
    registry = run.cfg.wandb.get("registry")
    if not registry or not isinstance(run.store, WandbArtifactStore):
        return
    target = registry_path(registry, run.cfg.promote.registered_model_name)
    try:
        run.store.link_to_registry(model.ref, target, [alias])
    except TrainflowError as error:
        run.warn(f"{model.ref} is {alias!r} in the store and the MLflow Model Registry, not yet in W&B's: {error}")
        return
    run.say(f"linked {model.ref} to the W&B Registry: {target} with alias {alias!r}")


def promote(run: PromotionRun) -> None:
    """Decide on the candidate (``model_artifact``) against the champion on the test set
    (``test_artifact``) and move ``promote.alias`` in the store and the registry when the
    gate passes; record every decision. Not promoted on the model's merits is reported, and
    raised only with ``promote.fail_if_not_promoted``."""
    cfg = run.cfg.promote
    model = run.resolve("model_artifact")
    task = model.metadata.get("task", "classification")
    check_gate_fits_task(cfg, task)  # with model.task=auto, the first moment the task is known here
    policy = GatePolicy.from_config(cfg, task)
    test_set = run.resolve("test_artifact")
    alias = cfg.alias
    # The store's alias is the record: a registry alias that drifted from it is put back first.
    realigned = realign_registry(run.store, model.name, alias, cfg.registered_model_name)
    if realigned:
        run.say(realigned)
    # Pipelines promoting at once: the store moves the alias only from the champion this
    # decision was made against; the loser decides again against the new champion.
    for attempt in range(1, DECISION_ATTEMPTS + 1):
        champion = champion_of(run, model.name, alias)
        # The champion is compared on the current test set: re-score it if its metrics are for
        # another one (only for a candidate tested on the current set: others are refused anyway).
        if champion is not None and champion.ref != model.ref and tested_metrics(model)[0] == test_set.ref:
            mismatch = prediction_mismatch(model, champion)
            if mismatch:
                refuse_mismatch(run, model, champion, mismatch, policy.force)
            elif needs_rescore(champion, test_set.ref, policy):
                champion = rescore(run, model, champion, test_set, policy.force)
        decision = decide(model, test_set, policy, champion)
        run.say(
            f"promotion gate for {model.ref} (champion: {champion.ref if champion else 'none'}, "
            f"test set {test_set.ref}): {decision.outcome}\n{decision.table()}"
        )
        log_decision(run, decision)
        record = decision.as_record()
        if decision.outcome != PROMOTED:
            break
        try:
            _, registered = move_production_alias(
                run.store,
                model,
                alias,
                expected=champion.ref if champion else None,
                registered_name=cfg.registered_model_name,
                model_dir=run.store.use_artifact(model.ref),
                action="promote",
                outcome=PROMOTED,
                details=record,
                run=run.record,
            )
        except ChampionChanged as race:
            if attempt == DECISION_ATTEMPTS:
                raise
            run.say(f"{race}; deciding again against the new champion (attempt {attempt + 1} of {DECISION_ATTEMPTS})")
            continue
        forced = ""
        if decision.forced and champion is not None:
            forced = f" (promote.force=true overrode the comparison with champion {champion.ref})"
        run.say(
            f"promoted {model.ref} to {alias!r}{forced}; registered as models:/{registered.name}/{registered.version} "
            f"with alias {alias!r} (serve: models:/{registered.name}@{alias})"
        )
        link_to_wandb_registry(run, model, alias)
        return

    run.store.record_promotion(
        model.name, alias, "promote", decision.outcome, model.ref, details=record, actor=current_actor(), run=run.record
    )
    held = f"{alias!r} stays {champion.ref}" if champion else f"no version has {alias!r}"
    if decision.ineligible:  # not a verdict on the model: something to fix first
        untested = not decision.criteria[0].passed
        fix = (
            "run test_model on this model first (-P steps=test_model,promote_model)"
            if untested
            else "check the test set and test_model's metrics (a metric is missing or not finite)"
        )
        raise TrainflowError(f"{model.ref} not promoted, {held}: {decision.failures()}; {fix}")
    # Not promoted on the model's merits: a reported outcome, not a failure of the pipeline.
    if decision.outcome == REFUSED or champion is None:
        said = f"{model.ref} not promoted, {held}: {decision.failures()}"
        failing = said
    else:  # kept: the champion won the comparison
        said = f"{model.ref} not promoted: champion v{champion.version} kept ({held}): {decision.failures()}"
        failing = f"{model.ref} not promoted: champion {champion.ref} kept ({decision.failures()})"
    run.say(said)
    if cfg.fail_if_not_promoted:
        raise TrainflowError(f"{failing}; failing because promote.fail_if_not_promoted=true")
