"""The MLflow Model Registry side of a promotion: register a store version, tag it, and
point the registry alias (``prod``) at it, so ``models:/<name>@prod`` serves the same
bytes as the store's ``model_export:prod``.

MLflow 3 deprecates stages; trainflow uses registered model aliases only. A store
version remembers its registry version in its metadata (``registry: {name: version}``),
so a version promoted again, or rolled back to, is not registered twice.
"""

from __future__ import annotations

import getpass
import socket
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

from trainflow.errors import ArtifactNotFound, TrainflowError
from trainflow.promotion.gate import ROLLED_BACK, format_table, metrics_summary, rollback_target, tested_metrics
from trainflow.store.local import LocalArtifactStore, lineage
from trainflow.store.protocol import ArtifactStore
from trainflow.store.records import MLFLOW_MODEL_ID, ArtifactVersion, PromotionEntry, RunRecord

# mlflow (also through trainflow.tracking) and trainflow.ml.evaluate (pandas) are imported inside the functions
# that use them: about 0.9 s that `python main.py --help` and the trainflow CLI do not pay
# (docs/architecture.md#start-up).

TAG_PREFIX = "trainflow."


@dataclass(frozen=True)
class RegisteredVersion:
    name: str
    version: int
    source: str

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


@contextmanager
def _registry_errors(what: str) -> Iterator[None]:
    """MLflow's exceptions as one-line TrainflowErrors (the registry is the user's server or file)."""
    from mlflow.exceptions import MlflowException

    try:
        yield
    except MlflowException as error:
        message = " ".join(str(error.message if hasattr(error, "message") else error).split())[:500]
        raise TrainflowError(f"MLflow Model Registry: cannot {what}: {message}") from None


def version_tags(store: ArtifactStore, version: ArtifactVersion) -> dict[str, str]:
    """What a registered version carries back to the store: the artifact, its digest, its
    test metrics and its lineage down to the raw data's source and sha256.
    """
    test = version.metadata.get("test") or {}
    tags = {
        "artifact": version.ref,
        "digest": version.digest,
        "test_data": str(test.get("test_data", "")),
        "test_run": str(test.get("run_id", "")),
    }
    for metric, value in sorted((test.get("metrics") or {}).items()):
        tags[f"test.{metric}"] = f"{value:.6g}" if isinstance(value, (int, float)) else str(value)
    chain = lineage(store, version.ref)
    tags["lineage"] = " <- ".join(v.ref for _, v in chain)
    trained_on = [v.ref for depth, v in chain if depth == 1]
    if trained_on:
        tags["data"] = ", ".join(trained_on)  # the version(s) of the table the model was trained on
    if version.run is not None:
        tags["train_run"] = version.run.run_id
        if version.run.git_commit:
            tags["git_commit"] = version.run.git_commit
    for _, ancestor in chain:
        if "source" in ancestor.metadata:
            tags["raw_data.source"] = str(ancestor.metadata["source"])
            tags["raw_data.sha256"] = str(ancestor.metadata.get("sha256", ""))
    return {TAG_PREFIX + key: value[:5000] for key, value in tags.items() if value}


def registered_version(name: str, version: ArtifactVersion) -> RegisteredVersion | None:
    """The registry version this store version was registered as under ``name``, if it
    still exists there and still carries the same bytes (its digest tag matches).
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    number = (version.metadata.get("registry") or {}).get(name)
    if number is None:
        return None
    try:
        found = mlflow.MlflowClient().get_model_version(name, str(number))
    except MlflowException:
        return None  # another registry (tracking URI), or deleted there
    if found.tags.get(TAG_PREFIX + "digest") != version.digest:
        return None
    return RegisteredVersion(name, int(found.version), found.source or "")


def register(
    store: ArtifactStore, name: str, version: ArtifactVersion, model_dir: Path, tags: Mapping[str, str]
) -> RegisteredVersion:
    """Register ``version`` under ``name`` (or reuse its earlier registration) and tag it.

    A new registration registers the MLflow LoggedModel train_model logged the version as
    (``models:/<model id>``, the registry's source). A version whose model this tracking
    server does not hold (trained against another server, or before trainflow logged
    models) is logged first as a LoggedModel of the active run, from ``model_dir``.
    """
    import mlflow

    from trainflow.tracking import known_model, logged_model

    existing = registered_version(name, version)
    with _registry_errors(f"register {version.ref} as {name!r}"):
        client = mlflow.MlflowClient()
        if existing is None:
            model_id = known_model(version.metadata.get(MLFLOW_MODEL_ID))
            if model_id is None:
                if mlflow.active_run() is None:
                    raise TrainflowError(f"registering {version.ref} needs an active MLflow run")
                task = str(version.metadata.get("task", ""))
                with logged_model(name, model_dir, task, {}, {TAG_PREFIX + "artifact": version.ref}) as model_id:
                    pass  # the files are model_dir as they are
            created = mlflow.register_model(f"models:/{model_id}", name)
            existing = RegisteredVersion(name, int(created.version), created.source or "")
            client.update_model_version(
                name, str(existing.version), description=f"trainflow {version.ref}: {version.description}"[:5000]
            )
            describe_registered_model(name, version)
        for key, value in {**version_tags(store, version), **tags}.items():
            client.set_model_version_tag(name, str(existing.version), key, value)
    registry = {**(version.metadata.get("registry") or {}), name: existing.version}
    store.update_metadata(version.ref, {"registry": registry})
    return existing


def describe_registered_model(name: str, version: ArtifactVersion) -> None:
    """Give registered model ``name`` trainflow's description (unless it has one: the team's
    words stand) and tags naming the project, target and task of ``version``."""
    import mlflow

    from trainflow.tracking import once_more_on_insert_race

    client = mlflow.MlflowClient()
    target, task = version.metadata.get("target"), version.metadata.get("task")
    if not client.get_registered_model(name).description:
        client.update_registered_model(
            name,
            description=(
                f"trainflow models of project {version.project or name}"
                + (f": {task} of {target!r}" if target and task else "")
                + ". The alias prod names the version that passed the promotion gate last; each version's "
                "trainflow.* tags give its store artifact, data lineage, test metrics and git commit."
            ),
        )
    described = {"project": version.project, "artifact": version.name, "target": target, "task": task}
    for key, value in described.items():
        if value:
            once_more_on_insert_race(client.set_registered_model_tag, name, TAG_PREFIX + key, str(value))


def alias_holder(name: str, alias: str) -> int | None:
    """The registry version ``name@alias`` names now, or None."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        return int(mlflow.MlflowClient().get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def set_alias(name: str, alias: str, version: int | None) -> None:
    """Point ``name@alias`` at ``version``; None removes the alias (undoing a first promotion)."""
    import mlflow

    from trainflow.tracking import once_more_on_insert_race

    with _registry_errors(f"set alias {alias!r} of {name!r}"):
        client = mlflow.MlflowClient()
        if version is None:
            client.delete_registered_model_alias(name, alias)
        else:
            once_more_on_insert_race(client.set_registered_model_alias, name, alias, str(version))


def current_actor() -> str:
    """Who is deciding: ``user@host``, for the promotion history."""
    try:
        user = getpass.getuser()
    except (OSError, KeyError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def move_production_alias(
    store: ArtifactStore,
    target: ArtifactVersion,
    alias: str,
    expected: str | None,
    registered_name: str,
    model_dir: Path,
    action: str,
    outcome: str,
    details: Mapping[str, object],
    run: RunRecord,
) -> tuple[PromotionEntry, RegisteredVersion]:
    """Point ``alias`` at ``target`` in the store and in the registry, and record it.

    Order: register (or reuse) the version, move the registry alias, then move the store
    alias and append the history in one store transaction, which also checks that the
    store alias still names ``expected``. If that transaction fails, the registry alias
    is put back, so a failure leaves both where they were.
    """
    registered = register(
        store,
        registered_name,
        target,
        model_dir,
        {TAG_PREFIX + "promotion_run": run.run_id, TAG_PREFIX + "decision": outcome},
    )
    previous = alias_holder(registered_name, alias)
    set_alias(registered_name, alias, registered.version)
    try:
        entry = store.record_promotion(
            target.name,
            alias,
            action,
            outcome,
            target.ref,
            details={
                **details,
                "registry": {
                    "name": registered_name,
                    "version": registered.version,
                    "previous_version": previous,
                    "source": registered.source,
                },
            },
            actor=current_actor(),
            move=True,
            expected=expected,
            run=run,
        )
    except BaseException:
        _realign(store, target.name, alias, registered_name, fallback=previous)
        raise
    return entry, registered


def _realign(store: ArtifactStore, name: str, alias: str, registered_name: str, fallback: int | None) -> None:
    """After a failed store move, point the registry alias where the store's alias points
    (another promotion may have won the race), else back where it was.
    """
    try:
        holder = store.get(f"{name}:{alias}")
    except ArtifactNotFound:
        set_alias(registered_name, alias, fallback)
        return
    version = (holder.metadata.get("registry") or {}).get(registered_name)
    set_alias(registered_name, alias, version if version is not None else fallback)


def registry_drift(holder: ArtifactVersion, alias: str, registered_name: str) -> tuple[int, int | None] | None:
    """``(the version ``holder`` was registered as, the version the registry alias names
    now)`` when the two disagree, else None; ``holder`` is the version holding ``alias``
    in the store. The store's alias and history are the record; the registry alias can
    drift from them (deleted by hand, or a process killed between moving the registry
    alias and committing the store's move)."""
    recorded = (holder.metadata.get("registry") or {}).get(registered_name)
    if recorded is None:
        return None
    current = alias_holder(registered_name, alias)
    return None if current == int(recorded) else (int(recorded), current)


def orphan_alias(name: str, alias: str, registered_name: str) -> int | None:
    """The registry version ``registered_name@alias`` names when it is a trainflow
    registration of ``name`` (its ``trainflow.artifact`` tag), else None. Called when no
    store version holds ``alias``: such a registry alias was never committed in the store."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        found = mlflow.MlflowClient().get_model_version_by_alias(registered_name, alias)
    except MlflowException:
        return None
    artifact = found.tags.get(TAG_PREFIX + "artifact", "")
    return int(found.version) if artifact.startswith(f"{name}:") else None


def realign_registry(store: ArtifactStore, name: str, alias: str, registered_name: str) -> str | None:
    """Point the registry alias back at the store's holder when they disagree; what was done, or None."""
    try:
        holder = store.get(f"{name}:{alias}")
    except ArtifactNotFound:
        # No store version holds the alias (a first promotion killed between moving the
        # registry alias and committing the store's move): the registry's must not name one.
        orphan = orphan_alias(name, alias, registered_name)
        if orphan is None:
            return None
        set_alias(registered_name, alias, None)
        return (
            f"registry alias {registered_name}@{alias} named version {orphan}, while no {name} version holds "
            f"{alias!r} in the store: removed it"
        )
    drift = registry_drift(holder, alias, registered_name)
    if drift is None:
        return None
    recorded, current = drift
    set_alias(registered_name, alias, recorded)
    return (
        f"registry alias {registered_name}@{alias} named {f'version {current}' if current is not None else 'nothing'}, "
        f"while {name}:{alias} is registered as version {recorded}: moved it back to {recorded}"
    )


def rollback(
    store: LocalArtifactStore,
    name: str,
    alias: str,
    registered_name: str | None = None,
    experiment_name: str = "trainflow",
) -> tuple[PromotionEntry, RegisteredVersion | None, str]:
    """Move ``name:alias`` back to the previous champion, in the store and the registry.

    The previous champion is the holder before the current one's promotion (rollbacks
    pop, see :func:`trainflow.promotion.gate.rollback_target`). The registry is the one the
    current champion was registered in (its metadata), or ``registered_name``. Runs as
    an MLflow run ``rollback`` and is recorded in the promotion history. Returns the
    history entry, the registry version and the criteria table that was printed.
    """
    import mlflow

    from trainflow.ml.evaluate import HEADLINE_METRICS
    from trainflow.tracking import experiment_id, use_tracking

    current = store.get(f"{name}:{alias}")
    history = store.promotions(name, alias)
    if not any(e.action == "promote" and e.outcome == "promoted" for e in history):
        # Only the gate's aliases roll back: a rollback records a decision, after which the
        # store refuses every other move of the alias (train_model's `candidate` included).
        raise TrainflowError(
            f"no promotion moved {name}:{alias}, so there is nothing to roll back: rollback undoes promotions of "
            "the production alias (promote.alias, e.g. --alias prod); move other aliases with `trainflow artifacts alias`"
        )
    rollbacks = {e.run_id for e in history if e.action == "rollback" and e.run_id}
    moves = [(version, previous, run_id) for version, previous, run_id, _ in store.alias_history(name, alias)]
    number = rollback_target(moves, rollbacks)
    if number is None:
        raise TrainflowError(
            f"{name}:{alias} is {current.ref}, which has no previous champion to roll back to "
            f"(`trainflow promotions --name {name}` shows the history)"
        )
    target = store.get(f"{name}:v{number}")
    known = list(current.metadata.get("registry") or {})
    if registered_name is None and len(known) > 1:
        raise TrainflowError(
            f"{current.ref} is registered under {', '.join(known)}: choose one with --registered-model-name"
        )
    registered_name = registered_name or (known[0] if known else None)
    test_set, metrics = tested_metrics(target)
    rows = [
        ("criterion", "value", "bound", "verdict"),
        ("previous champion", target.ref, f"held {alias!r} before {current.ref}", "pass"),
        (
            "its test metrics",
            metrics_summary(metrics, list(chain(*HEADLINE_METRICS.values()))),
            f"on {test_set or 'no test set'}",
            "recorded",
        ),
    ]
    table = format_table(rows)
    details = {
        "outcome": ROLLED_BACK,
        "model": target.ref,
        "champion": current.ref,
        "test_set": test_set,
        "metrics": metrics,
        "criteria": [dict(zip(rows[0], row)) for row in rows[1:]],
    }
    use_tracking(store.root)
    with mlflow.start_run(experiment_id=experiment_id(experiment_name, store.root), run_name="rollback") as active:
        mlflow.set_tags(
            {"trainflow.step": "rollback", "trainflow.rollback.from": current.ref, "trainflow.rollback.to": target.ref}
        )
        mlflow.log_text(table + "\n", "rollback.txt")
        run = RunRecord(active.info.run_id, "rollback", params={"name": name, "alias": alias})
        if registered_name is None:
            entry = store.record_promotion(
                name,
                alias,
                "rollback",
                ROLLED_BACK,
                target.ref,
                details=details,
                actor=current_actor(),
                move=True,
                expected=current.ref,
                run=run,
            )
            return entry, None, table
        entry, registered = move_production_alias(
            store,
            target,
            alias,
            expected=current.ref,
            registered_name=registered_name,
            model_dir=store.use_artifact(target.ref),
            action="rollback",
            outcome=ROLLED_BACK,
            details=details,
            run=run,
        )
        return entry, registered, table
