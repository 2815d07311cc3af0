"""The step runner behind ``main.py``: runs the steps in order, inside this process
(``main.in_process``, with env manager ``local``) or each with ``mlflow.run``, and
passes each step's exact output versions to the steps after it.

Pinning versions (``trainval_data.parquet:v7``, not ``:latest``) keeps a pipeline
consistent even when another pipeline logs to the same store at the same time.

Before running a cacheable step, the runner resolves every input to the exact version
the step would use, computes the step's cache key (``trainflow.pipeline.cache``) and, when an
earlier successful run with that key still has its results in place, re-uses them
instead: aliases move as the run would have moved them, and an MLflow run tagged
``trainflow.cached`` records the hit. After a real run, the run is recorded under its key.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import os
import re
import shlex
import sys
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig

from trainflow.config.components import ComponentSource, prepare_steps
from trainflow.config.schema import (
    check_config_groups,
    check_sweep_overrides,
    configured_store_root,
    dataset_choice,
    is_group_override,
    load_config,
    resolve_paths,
    sets_estimator_params,
    split_overrides,
    validate,
)
from trainflow.errors import ArtifactNotFound, StepFailed, TrainflowError, exit_on_user_error, user_error_line
from trainflow.logs import configure as configure_logs
from trainflow.logs import prefixed
from trainflow.pipeline.cache import (
    CacheKey,
    ImportScans,
    Uncacheable,
    alias_state,
    annotations_problem,
    cache_policy,
    changed_since_loaded,
    component_packages,
    library_as_loaded,
    reusable_run,
    step_key,
)
from trainflow.pipeline.steps import OUTPUT_TAG, PROJECT_TAG, STEPS, StepSpec, select_steps
from trainflow.promotion.gate import check_gate_fits_task
from trainflow.promotion.registry import orphan_alias, registry_drift
from trainflow.store.index import make_store_folders
from trainflow.store.local import LocalArtifactStore
from trainflow.store.records import ArtifactVersion, CachedRun
from trainflow.store.wandb_backend import ANNOUNCED_ENV, choose_backend, read_store

log = prefixed(__name__, "pipeline")

# mlflow (also through trainflow.tracking), pandas (trainflow.pipeline.step_run, trainflow.ml) and Hydra
# (trainflow.pipeline.sweeps) are imported inside the methods that use them: about 1 s that `python main.py --help`
# does not pay; Hydra (50 ms) only `import trainflow.pipeline.runner`, as main.py imports it itself. multiprocessing
# (8 ms) is imported inside exit_now, for `python main.py --help` (docs/architecture.md#start-up).

OPTIONS_FLAG = "--hydra-options"
INPUT_TAG = "trainflow.input."
CACHED_TAG = "trainflow.cached"
CACHED_FROM_TAG = "trainflow.cached_from"
CACHE_KEY_TAG = "trainflow.cache_key"
STEPS_FLAG = "--steps"


def expand_mlproject_args(argv: list[str]) -> list[str]:
    """Turn the MLproject's ``--steps S --hydra-options "O"`` into Hydra overrides.

    ``O`` is split like a shell would split it, so quotes and spaces inside overrides
    survive, and an empty ``O`` adds nothing. ``S`` is quoted for Hydra so that a
    comma-separated list stays one string instead of becoming a sweep.
    """
    expanded: list[str] = [argv[0]]
    rest = iter(argv[1:])
    for arg in rest:
        if arg == STEPS_FLAG:
            steps = next(rest, "")
            expanded.append(f"main.steps='{steps}'")
        elif arg == OPTIONS_FLAG:
            expanded.extend(split_overrides(next(rest, "")))
        else:
            expanded.append(arg)
    return expanded


@dataclass
class StepPlan:
    """How a step will be started: its component parameters and, when it can be cached, its key."""

    parameters: dict[str, str]
    versions: dict[str, ArtifactVersion] = field(default_factory=dict)  # input param -> exact version
    key: CacheKey | None = None
    why_not_cached: str = ""  # when key is None, or when an existing record could not be used


class Pipeline:
    """One pipeline run: the parent MLflow run and the step runs nested under it."""

    def __init__(
        self, cfg: DictConfig, project_dir: Path, overrides: list[str], validated: DictConfig | None = None
    ) -> None:
        """``validated``: the config :func:`main_argv` composed and validated in this process,
        if it did; the same config is not validated twice."""
        library_as_loaded()  # main_argv took it already, unless this is a sweep's worker process
        self.cfg = resolve_paths(cfg, project_dir)
        self.project_dir = project_dir
        if validated is None or self.cfg != validated:  # a sweep's trial: each composes its own
            # The estimator's parameter names need scikit-learn, a second of imports: they are
            # checked before the first step that could build an estimator (see before_real_work).
            validate(self.cfg, estimator_params=False)
        self.estimator_checked = False
        self.steps = select_steps(self.cfg.main.steps)
        if "promote_model" in self.steps and self.cfg.model.task != "auto":
            # With model.task=auto the data decides; promote_model checks the gate then.
            check_gate_fits_task(self.cfg.promote, self.cfg.model.task)
        self.components = ComponentSource(self.cfg.main.components_repository, self.cfg.main.components_version)
        self.components.check(self.steps)
        prepare_steps(project_dir, self.cfg.main.env_manager)
        # Components compose the same config from these; which steps run is not their concern.
        self.hydra_options = shlex.join(o for o in overrides if not o.startswith("main.steps="))
        self.store = LocalArtifactStore(self.cfg.artifacts.root, project=self.cfg.project)
        self.outputs: dict[str, str] = {}  # artifact name -> exact version logged (or re-used) by this pipeline
        self.finished: list[tuple[str, str, float, str | None]] = []  # (step, MLflow run id, seconds, cached from)
        self.experiment_id = ""  # the parent run's experiment, set by open()
        self.parent_run_id = ""
        self.cache_records, self.cache_lookup, self.cache_off_reason = self.cache_policy()
        self.import_scans = ImportScans(self.store.root / "cache" / "import_scans.json")

    @classmethod
    @contextlib.contextmanager
    def open(cls, cfg: DictConfig, project_dir: Path, validated: DictConfig | None = None) -> Iterator[Pipeline]:
        """Validate everything (unless ``validated`` is this config, see :meth:`__init__`),
        open the parent run, yield; then print where results are."""
        import mlflow
        from hydra.core.hydra_config import HydraConfig

        from trainflow.pipeline.sweeps import trial_run_args
        from trainflow.tracking import mark_model_training, start_run_args, use_tracking

        with exit_on_user_error("trainflow"):
            overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
            pipeline = cls(cfg, project_dir, overrides, validated)
            configure_logs(pipeline.cfg.main.log_level)
            tracking = use_tracking(pipeline.store.root)
            name = pipeline.run_name()
            start = start_run_args(pipeline.cfg.main.experiment_name, pipeline.store.root, name)
            trial = trial_run_args()  # a sweep's trial nests its run under the sweep's (trainflow.pipeline.sweeps)
            with mlflow.start_run(**(start | trial)) as parent:
                pipeline.experiment_id = parent.info.experiment_id
                pipeline.parent_run_id = parent.info.run_id
                mark_model_training(pipeline.experiment_id)
                if not start and not trial:  # `mlflow run` made the run, with a random name
                    mlflow.MlflowClient().update_run(parent.info.run_id, name=name)
                pipeline.announce_backend(parent.info.run_id)
                mlflow.set_tags({"trainflow.step": "pipeline", PROJECT_TAG: pipeline.cfg.project})
                mlflow.log_params({"main.steps": ",".join(pipeline.steps), "overrides": pipeline.hydra_options})
                began = time.perf_counter()
                yield pipeline
                pipeline.report(time.perf_counter() - began, tracking)

    def run_name(self) -> str:
        """The parent run's name in MLflow: the data's project and the steps it runs."""
        default = select_steps("all")
        steps = f"all {len(default)} steps" if self.steps == default else ", ".join(self.steps)
        return f"{self.cfg.project}: {steps}"

    def announce_backend(self, pipeline_run_id: str) -> None:
        """Say once which artifact backend the steps will use, and group their W&B runs."""
        backend, reason = choose_backend(self.cfg.artifacts.backend)
        log.info(f"artifacts: {backend} ({reason})")
        if self.cache_off_reason:
            log.info(f"cache: off ({self.cache_off_reason})")
        os.environ[ANNOUNCED_ENV] = backend
        # Steps' W&B runs share one group per pipeline unless the user chose one.
        os.environ.setdefault("WANDB_RUN_GROUP", self.cfg.wandb.group or f"pipeline-{pipeline_run_id}")

    def cache_policy(self) -> tuple[bool, bool, str]:
        """``(record successful runs, look up earlier runs, why lookups are off)``. Runs are
        recorded even with ``main.cache=false``, so that a forced run refreshes the cache."""
        if choose_backend(self.cfg.artifacts.backend)[0] != "local":
            # Records, outputs and their digests live in the local store; W&B versions are not checked.
            return False, False, "artifacts on W&B: the cache re-uses and verifies local-store versions only"
        if self.components.is_repository:
            # The key digests the component's files, which here are fetched by mlflow.run.
            return False, False, "components from a git repository: the cache keys on local component code only"
        if not self.cfg.main.cache:
            return True, False, "main.cache=false"
        from trainflow.pipeline.sweeps import current_trial

        if current_trial() is not None:
            # A trial is read back from the model version it logs (metadata.sweep): a hit logs
            # none. Nor is a trial a source: its outputs carry its sweep's metadata and not the
            # aliases a pipeline run sets (model_export:candidate), so a hit would leave them.
            return False, False, "a sweep trial: every trial trains and logs its own model"
        return True, True, ""

    def plan(self, spec: StepSpec) -> StepPlan:
        """The step's component parameters; for a cacheable step, its exact input versions,
        passed to the component as ``name:vN`` so that the key and the run agree, and its key."""
        parameters = {"hydra_options": self.hydra_options}
        for step_input in spec.inputs:
            parameters[step_input.param] = self.outputs.get(step_input.artifact, "") if step_input.chained else ""
        if cache_policy(spec) is None:
            return StepPlan(parameters, why_not_cached="never cached (steps.py says why)")
        if not self.cache_records:
            return StepPlan(parameters, why_not_cached=self.cache_off_reason)
        versions = {}
        for step_input in spec.inputs:
            ref = parameters[step_input.param] or step_input.default_ref(self.cfg)
            try:
                versions[step_input.param] = self.store.get(ref)
            except TrainflowError:
                return StepPlan(parameters, why_not_cached=f"{ref} does not resolve")
            parameters[step_input.param] = versions[step_input.param].ref
        try:
            key = self.key(spec, versions)
        except Uncacheable as reason:
            return StepPlan(parameters, versions, why_not_cached=str(reason))
        return StepPlan(parameters, versions, key)

    def key(self, spec: StepSpec, versions: dict[str, ArtifactVersion]) -> CacheKey:
        component = Path(self.components.location) / spec.name
        # The library the step will run: this process's for an in-process step, else the
        # copy the component's own process imports.
        packages = None if self.runs_here(spec) else component_packages(component)
        key = step_key(
            spec,
            self.cfg,
            versions,
            component,
            self.cfg.main.env_manager,
            packages,
            aliases=alias_state(self.store, self.cfg, spec),
            scans=self.import_scans,
        )
        self.import_scans.save()
        return key

    def run(self, step: str) -> None:
        """Re-use an earlier run of the step when the cache allows, else run it; one line says which."""
        spec = STEPS[step]
        began = time.perf_counter()
        plan = self.plan(spec)
        if plan.key is not None:
            if self.cache_lookup:
                source, plan.why_not_cached = reusable_run(self.store, spec, plan.key, plan.versions)
                if source is not None and self.reuse(spec, plan, source, began):
                    return
            else:
                plan.why_not_cached = self.cache_off_reason
        log.info(f"{step}: {spec.description}")
        self.before_real_work(spec)
        run_id, outputs = self.execute(spec, plan.parameters, began)
        self.outputs.update(outputs)
        if plan.key is not None:
            self.record(spec, plan, run_id, outputs)
        self.finish(step, run_id, began, note=plan.why_not_cached)

    def execute(self, spec: StepSpec, parameters: dict[str, str], began: float) -> tuple[str, dict[str, str]]:
        """Run the step for real: in this process when it is marked so and the environment
        is this one, else as ``mlflow run components/<step>``. Returns its MLflow run id and
        the versions it logged (artifact name -> name:vN)."""
        import mlflow

        if self.runs_here(spec):
            return self.execute_here(spec, parameters, began)
        run_id = self.execute_component(spec, parameters, began)
        # A component's own process says what it logged the one way it can: it tags its MLflow
        # run with each output, whichever backend holds the versions.
        tags = mlflow.MlflowClient().get_run(run_id).data.tags
        return run_id, {key.removeprefix(OUTPUT_TAG): ref for key, ref in tags.items() if key.startswith(OUTPUT_TAG)}

    def runs_here(self, spec: StepSpec) -> bool:
        """Whether the step runs in this process (``main.in_process``): only when this
        process's environment is the one the step would get (env manager local)."""
        # A step from a git repository runs that repository's code: only mlflow.run fetches it.
        return self.cfg.main.in_process and self.cfg.main.env_manager == "local" and not self.components.is_repository

    def execute_component(self, spec: StepSpec, parameters: dict[str, str], began: float) -> str:
        import mlflow
        from mlflow.exceptions import ExecutionException

        try:
            # Synchronous: MLflow waits in this process (an asynchronous run costs an extra
            # `mlflow run` subprocess) and cancels the step on Ctrl-C.
            submitted = mlflow.run(
                self.components.uri(spec.name),
                version=self.components.version,
                entry_point="main",
                parameters=parameters,
                env_manager=self.cfg.main.env_manager,
                experiment_id=self.experiment_id,
                run_name=spec.name,
            )
        except ExecutionException as error:
            # MLflow's message may hold git's multi-line output (a version that does not exist)
            raise self.failed(spec, f"({' '.join(str(error).split())})", began) from None
        return submitted.run_id

    def execute_here(self, spec: StepSpec, parameters: dict[str, str], began: float) -> tuple[str, dict[str, str]]:
        """Run the component's step function in this process, as a run nested under the
        pipeline's, the way its own process would (same helper, same config, same store);
        its run id and outputs come back as the step returns them."""
        from trainflow.pipeline.step_run import input_refs, release_memory, run_step
        from trainflow.pipeline.sweeps import current_trial

        component = Path(self.components.location) / spec.name / "run.py"
        loader = importlib.util.spec_from_file_location(f"trainflow_component_{spec.name}", component)
        assert loader is not None and loader.loader is not None
        module = importlib.util.module_from_spec(loader)
        loader.loader.exec_module(module)
        body = getattr(module, spec.name)  # every component names its step function after the step
        start = {
            "run_name": spec.name,
            "nested": True,
            "experiment_id": self.experiment_id,
            "tags": {"mlflow.source.name": str(component)},
        }
        try:
            return run_step(
                spec,
                body,
                self.cfg,
                input_refs(spec, self.cfg, parameters),
                self.project_dir,
                start,
                self.store,
                in_process=parameters,
            )
        except TrainflowError as error:
            print(user_error_line(spec.name, error), file=sys.stderr, flush=True)
            raise self.failed(spec, "", began) from None
        except Exception:  # a bug, not bad input: the traceback, then the pipeline stops as for a failed process
            traceback.print_exc()
            raise self.failed(spec, "", began) from None
        finally:
            # After the last step the process ends, unless a sweep runs its next trial in it.
            if spec.name != self.steps[-1] or current_trial() is not None:
                release_memory()

    def failed(self, spec: StepSpec, detail: str, began: float) -> StepFailed:
        return StepFailed(
            f"[pipeline] stopped: step {spec.name} failed {detail + ' ' if detail else ''}after "
            f"{time.perf_counter() - began:.1f} s (its error is above); after fixing it, resume with "
            f"-P steps={','.join(self.steps[self.steps.index(spec.name) :])}"
        )

    def before_real_work(self, spec: StepSpec) -> None:
        """Check the estimator's parameters before a step that could build an estimator: one
        that uses the model config, or starts a process of its own (which would check them
        at its start anyway). A pipeline of cache hits and in-process steps never needs them."""
        if self.estimator_checked:
            return
        if not self.runs_here(spec) or "model" in spec.config_sections:
            from trainflow.ml.train import validate_estimator_config

            validate_estimator_config(self.cfg.model)
            self.estimator_checked = True

    def record(self, spec: StepSpec, plan: StepPlan, run_id: str, outputs: dict[str, str]) -> None:
        """Record a successful run under its key, unless the key changed while it ran (a file
        edited, a remote source updated): then nobody knows which state it saw.

        One change is the run's own doing: an alias it reads that it set itself (check_data
        claiming the first ``reference``). The run is then recorded under the key after it,
        the state a re-run would find, in which it reaches the same verdict."""
        assert plan.key is not None
        try:
            after: CacheKey | None = self.key(spec, plan.versions)
        except Uncacheable:
            after = None
        try:
            if after is None or not (after.digest == plan.key.digest or self.moved_only_by(run_id, plan.key, after)):
                raise TrainflowError("its code, environment or source changed while it ran")
            # In this process the step ran the modules as imported when the pipeline started.
            stale = changed_since_loaded(after.parts["code"]) if self.runs_here(spec) else []
            if stale:
                raise TrainflowError(f"{stale[0]} changed after this process loaded the library the step ran")
            overwritten = annotations_problem(self.store, spec, plan.versions, run_id)
            if overwritten:  # another run wrote over it meanwhile: this run's result is not in place
                raise TrainflowError(overwritten)
            self.store.record_cached_run(spec.name, after.digest, run_id, outputs, after.parts)
        except TrainflowError as reason:
            plan.why_not_cached = f"run not recorded: {reason}"

    def moved_only_by(self, run_id: str, before: CacheKey, after: CacheKey) -> bool:
        """Whether the keys differ only in aliases, each now set by ``run_id`` itself."""
        if {k: v for k, v in before.parts.items() if k != "aliases"} != {
            k: v for k, v in after.parts.items() if k != "aliases"
        }:
            return False
        changed = [
            ref
            for ref, digest in after.parts.get("aliases", {}).items()
            if before.parts.get("aliases", {}).get(ref) != digest
        ]
        for ref in changed:
            name, _, alias = ref.rpartition(":")
            history = self.store.alias_history(name, alias)
            if not history or history[-1][2] != run_id:
                return False
        return True

    def reuse(self, spec: StepSpec, plan: StepPlan, source: CachedRun, began: float) -> bool:
        """Stand in for running the step with ``source``'s results: log a cached run under the
        pipeline's, move aliases as the source run did, and take its outputs. False (and
        nothing changed) if an output vanished between the check and the move."""
        from mlflow import MlflowClient
        from mlflow.entities import Param
        from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

        from trainflow.pipeline.step_run import param_value

        assert plan.key is not None
        client = MlflowClient()
        tags = {
            MLFLOW_PARENT_RUN_ID: self.parent_run_id,
            "trainflow.step": spec.name,
            CACHED_TAG: "true",
            CACHED_FROM_TAG: source.run_id,
            CACHE_KEY_TAG: plan.key.digest,
            **{f"{OUTPUT_TAG}{name}": ref for name, ref in source.outputs.items()},
            **{f"{INPUT_TAG}{param}": version.ref for param, version in plan.versions.items()},
        }
        run = client.create_run(self.experiment_id, run_name=spec.name, tags=tags)
        try:
            self.store.reuse_outputs(source.run_id, list(source.outputs.values()), run.info.run_id)
            params = [Param(k, param_value(v)) for k, v in plan.key.parts["params"].items()]
            client.log_batch(run.info.run_id, params=params)
        except ArtifactNotFound as error:
            client.set_tag(run.info.run_id, "trainflow.cache_miss", str(error)[:5000])
            client.set_terminated(run.info.run_id, "FAILED")
            plan.why_not_cached = f"run {source.run_id}'s outputs vanished while being re-used"
            return False
        except BaseException:
            # Not a run of a process (mlflow.start_run would end it): end it here, or it stays
            # RUNNING after Ctrl-C or an error in between.
            with contextlib.suppress(Exception):
                client.set_terminated(run.info.run_id, "FAILED")
            raise
        client.set_terminated(run.info.run_id, "FINISHED")
        self.outputs.update(source.outputs)
        self.finish(spec.name, run.info.run_id, began, cached_from=source.run_id)
        return True

    def finish(self, step: str, run_id: str, began: float, cached_from: str | None = None, note: str = "") -> None:
        """The step's one line: ``ran`` or ``cached (from run <id>)``, with its time."""
        seconds = time.perf_counter() - began
        self.finished.append((step, run_id, seconds, cached_from))
        if cached_from:
            line = f"cached (from run {cached_from}) in {seconds:.1f} s (MLflow run {run_id})"
        else:
            line = f"ran in {seconds:.1f} s (MLflow run {run_id}; cache: {note})"
        log.info(f"{step}: {line}")

    def report(self, seconds: float, tracking: str) -> None:
        """The closing lines: what was produced, what is in production, where it all lives."""
        from trainflow.ml.evaluate import headline
        from trainflow.tracking import training_runs_address

        alias = self.cfg.promote.alias
        cached = sum(1 for *_, cached_from in self.finished if cached_from)
        lines = [
            f"finished {len(self.finished)} step(s) in {seconds:.1f} s ({cached} cached)",
            f"  project: {self.cfg.project} (its artifacts, champion and registered model; `project=` names it)",
        ]
        if self.outputs:
            lines.append(f"  logged: {', '.join(self.outputs.values())}")
        try:
            prod = read_store(self.cfg, self.store).get(f"model_export:{alias}")
        except TrainflowError:
            lines.append(f"  no model has alias {alias!r} yet: run the whole pipeline (-P steps=all)")
            registered = self.cfg.promote.registered_model_name
            orphan = orphan_alias("model_export", alias, registered)
            if orphan is not None:
                lines.append(
                    f"  registry: models:/{registered}@{alias} names version {orphan}, which no promotion "
                    "committed in the store; the next promote_model removes it"
                )
        else:
            metrics = (prod.metadata.get("test") or {}).get("metrics", {})
            lines.append(f"  production model: {prod.ref} (alias {alias!r}); test metrics: {headline(metrics)}")
            lines.append(f"  get it with: trainflow artifacts get model_export:{alias} <dir>")
            registered = self.cfg.promote.registered_model_name
            if registered in (prod.metadata.get("registry") or {}):
                drift = registry_drift(prod, alias, registered)
                if drift is None:
                    lines.append(
                        f"  registry: models:/{registered}@{alias} (version {prod.metadata['registry'][registered]}); "
                        f'serve it with: mlflow models serve -m "models:/{registered}@{alias}" --env-manager local'
                    )
                else:
                    lines.append(
                        f"  registry: models:/{registered}@{alias} names {f'version {drift[1]}' if drift[1] else 'nothing'}, "
                        f"not {prod.ref} (version {drift[0]}); the next promote_model puts it back"
                    )
        lines.append(f"  artifact store: {self.store.root}")
        lines.append(f"  MLflow tracking: {tracking}")
        lines.append(f"  MLflow UI: {training_runs_address(self.experiment_id, tracking)}")
        log.info("\n".join(lines))


def main_argv(project_dir: Path) -> DictConfig | None:
    """Prepare ``sys.argv`` for Hydra: expand the MLproject's arguments, then check plain
    overrides up front so a bad one fails in one line instead of Hydra's several, before
    Hydra makes its run folder and before the pipeline's MLflow run exists.

    Returns the config it composed and validated (paths resolved), for
    :meth:`Pipeline.open` not to validate it again; None when it composed none (a sweep,
    Hydra's own flags). Hydra's app composes the config once more: that composition is
    Hydra's, and a bad override must fail before it, in one line.
    """
    from trainflow.pipeline.sweeps import MULTIRUN_FLAGS, hydra_arguments

    library_as_loaded()  # before any step runs: the code this process's in-process steps execute
    with exit_on_user_error("trainflow"):
        expanded = expand_mlproject_args(sys.argv)
        arguments = hydra_arguments(expanded[1:])
        chosen = dataset_choice(arguments)
        own_table = len(chosen) > len(arguments)
        sys.argv[:] = expanded[:1] + chosen
        arguments = sys.argv[1:]
        # Config group choices (hydra/launcher=joblib) are checked in sweeps (-m) too: a
        # sweep's launcher is one of them. Only when given: the check starts Hydra's search.
        groups = [a for a in arguments if not a.startswith("-") and is_group_override(a)]
        if groups:
            check_config_groups(project_dir, groups)
        keys = [a for a in arguments if not a.startswith("-") and not a.lstrip("+~").startswith("hydra")]
        if any(a in MULTIRUN_FLAGS for a in arguments):
            # A sweep's keys and value types, each swept value once: Hydra would stop the
            # sweep at the first bad job with several lines and no summary.
            check_sweep_overrides(project_dir, [a for a in keys if not is_group_override(a)])
        plain = len(keys) == len(arguments)
        # Sweeps (-m) and Hydra's own flags are left to Hydra. The steps list alone as
        # `mlflow run .` passes it when given no options (a quoted string for a known key)
        # cannot fail to compose: the check, a third of a second, is skipped then. Typed
        # by hand (main.steps=[a,b]) it can, and is checked.
        # Hydra makes its run folder inside the store before the pipeline starts: the store's
        # folder is made first, so that an unusable TRAINFLOW_HOME is one line, not Hydra's
        # traceback. Uncomposed (a sweep), an artifacts.root override is left to Hydra.
        if plain and not all(re.fullmatch(r"main\.steps='[^']*'", a) for a in arguments):
            cfg = resolve_paths(load_config(project_dir, arguments), project_dir)
            # A parameter value the estimator refuses (n_estimators=0) then fails here, not
            # after the steps before train_model have run.
            validate(cfg, estimator_params=sets_estimator_params(arguments))
            make_store_folders(Path(cfg.artifacts.root))
            _say_own_table(own_table, cfg.main.log_level)
            return cfg
        if not any(a.lstrip("+~").startswith("artifacts.root=") for a in arguments):
            make_store_folders(configured_store_root(project_dir))
        _say_own_table(own_table, "INFO")
        return None


def _say_own_table(own_table: bool, level: str) -> None:
    """Before Hydra configures logging: the console, at the config's level when it is known."""
    configure_logs(level)
    if own_table:
        log.info(
            "data.uri/data.target name your own table: the demo data set's settings "
            "(dataset/penguins.yaml: its column expectations, gate bounds) do not apply, config.yaml's "
            "generic ones do; choose a data set's with dataset=NAME"
        )


def exit_now(code: int = 0) -> None:
    """End the pipeline's process once its work is done: flush, run the exit handlers
    (MLflow's, logging's), then leave without the interpreter's teardown of every module
    and object, which takes about a second once MLflow, pandas and scikit-learn are loaded
    and does nothing a finished pipeline needs (every store and MLflow write has committed).

    With child processes alive (a sweep's joblib workers) it exits the normal way: the
    interpreter's shutdown tells them to stop, which the exit handlers then wait for; run
    without it, they waited out their 300 s idle timeout first."""
    import multiprocessing

    if multiprocessing.active_children():
        sys.exit(code)
    sys.stdout.flush()
    sys.stderr.flush()
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
