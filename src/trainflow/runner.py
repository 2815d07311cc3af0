"""The step runner behind ``main.py``: runs components with ``mlflow.run`` in order and
passes each step's exact output versions to the steps after it.

Pinning versions (``trainval_data.parquet:v7``, not ``:latest``) keeps a pipeline
consistent even when another pipeline logs to the same store at the same time.
"""

from __future__ import annotations

import contextlib
import shlex
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from omegaconf import DictConfig

from trainflow.config import resolve_paths, validate
from trainflow.errors import TrainflowError, exit_on_user_error
from trainflow.evaluate import headline
from trainflow.steps import STEPS, select_steps
from trainflow.store import LocalArtifactStore

OPTIONS_FLAG = "--hydra-options"
OUTPUT_TAG = "trainflow.output."
STEPS_FLAG = "--steps"


def expand_mlproject_args(argv: list[str]) -> list[str]:
    """Turn the MLproject's ``--steps S --hydra-options "O"`` into Hydra overrides.

    ``O`` is split like a shell would split it, so quotes and spaces inside overrides
    survive, and an empty ``O`` adds nothing. ``S`` is quoted for Hydra so that a
    comma-separated list stays one string instead of becoming a sweep.
    """
    from trainflow.config import split_overrides

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


class Pipeline:
    """One pipeline run: the parent MLflow run and the step runs nested under it."""

    def __init__(self, cfg: DictConfig, project_dir: Path, overrides: list[str]) -> None:
        self.cfg = resolve_paths(cfg, project_dir)
        validate(self.cfg)
        self.steps = select_steps(self.cfg.main.steps)
        if "promote_model" in self.steps:
            from trainflow.promotion import check_gate_fits_task

            check_gate_fits_task(self.cfg.promote, self.cfg.model.task)
        self.components_dir = Path(self.cfg.main.components_dir)
        missing = [s for s in self.steps if not (self.components_dir / s / "MLproject").is_file()]
        if missing:
            raise TrainflowError(
                f"no MLproject for step(s) {', '.join(missing)} under {self.components_dir}: check main.components_dir"
            )
        # Components compose the same config from these; which steps run is not their concern.
        self.hydra_options = shlex.join(o for o in overrides if not o.startswith("main.steps="))
        self.store = LocalArtifactStore(self.cfg.artifacts.root)
        self.outputs: dict[str, str] = {}  # artifact name -> exact version logged by this pipeline
        self.finished: list[tuple[str, str, float]] = []  # (step, MLflow run id, seconds)
        self.experiment_id = ""  # the parent run's experiment, set by open()

    @classmethod
    @contextlib.contextmanager
    def open(cls, cfg: DictConfig, project_dir: Path) -> Iterator[Pipeline]:
        """Validate everything, open the parent run, yield; then print where results are."""
        import mlflow
        from hydra.core.hydra_config import HydraConfig

        from trainflow.sweeps import trial_run_args
        from trainflow.tracking import start_run_args, use_tracking

        with exit_on_user_error("trainflow"):
            overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
            pipeline = cls(cfg, project_dir, overrides)
            tracking = use_tracking(pipeline.store.root)
            start = start_run_args(pipeline.cfg.main.experiment_name, pipeline.store.root, "pipeline")
            start |= trial_run_args()  # a sweep's trial nests its run under the sweep's (trainflow.sweeps)
            with mlflow.start_run(**start) as parent:
                pipeline.experiment_id = parent.info.experiment_id
                pipeline.announce_backend(parent.info.run_id)
                mlflow.set_tag("trainflow.step", "pipeline")
                mlflow.log_params({"main.steps": ",".join(pipeline.steps), "overrides": pipeline.hydra_options})
                began = time.perf_counter()
                yield pipeline
                pipeline.report(time.perf_counter() - began, tracking)

    def announce_backend(self, pipeline_run_id: str) -> None:
        """Say once which artifact backend the steps will use, and group their W&B runs."""
        import os

        from trainflow.wandb_backend import ANNOUNCED_ENV, choose_backend

        backend, reason = choose_backend(self.cfg.artifacts.backend)
        print(f"[pipeline] artifacts: {backend} ({reason})", flush=True)
        os.environ[ANNOUNCED_ENV] = backend
        # Steps' W&B runs share one group per pipeline unless the user chose one.
        os.environ.setdefault("WANDB_RUN_GROUP", self.cfg.wandb.group or f"pipeline-{pipeline_run_id}")

    def run(self, step: str) -> None:
        """Run one component with ``mlflow.run``; remember the versions it logged."""
        import mlflow
        from mlflow.exceptions import ExecutionException

        spec = STEPS[step]
        parameters = {"hydra_options": self.hydra_options}
        for step_input in spec.inputs:
            parameters[step_input.param] = self.outputs.get(step_input.artifact, "") if step_input.chained else ""
        print(f"[pipeline] {step}: {spec.description}", flush=True)
        began = time.perf_counter()
        try:
            # Synchronous: MLflow waits in this process (an asynchronous run costs an extra
            # `mlflow run` subprocess) and cancels the step on Ctrl-C.
            submitted = mlflow.run(
                str(self.components_dir / step),
                entry_point="main",
                parameters=parameters,
                env_manager=self.cfg.main.env_manager,
                experiment_id=self.experiment_id,
                run_name=step,
            )
        except ExecutionException as error:
            raise TrainflowError(
                f"step {step} failed ({error}) after {time.perf_counter() - began:.1f} s: see its error above; "
                f"after fixing it, resume with -P steps={','.join(self.steps[self.steps.index(step):])}"
            ) from None
        seconds = time.perf_counter() - began
        # Each component tags its run with what it logged, whichever backend holds it.
        tags = mlflow.MlflowClient().get_run(submitted.run_id).data.tags
        for key, ref in tags.items():
            if key.startswith(OUTPUT_TAG):
                self.outputs[key.removeprefix(OUTPUT_TAG)] = ref
        self.finished.append((step, submitted.run_id, seconds))
        print(f"[pipeline] {step} done in {seconds:.1f} s (MLflow run {submitted.run_id})", flush=True)

    def report(self, seconds: float, tracking: str) -> None:
        """The closing lines: what was produced, what is in production, where it all lives."""
        from trainflow.wandb_backend import read_store

        alias = self.cfg.promote.alias
        lines = [f"[pipeline] finished {len(self.finished)} step(s) in {seconds:.1f} s"]
        if self.outputs:
            lines.append(f"  logged: {', '.join(self.outputs.values())}")
        try:
            prod = read_store(self.cfg, self.store).get(f"model_export:{alias}")
        except TrainflowError:
            lines.append(f"  no model has alias {alias!r} yet: run the whole pipeline (-P steps=all)")
        else:
            metrics = (prod.metadata.get("test") or {}).get("metrics", {})
            lines.append(f"  production model: {prod.ref} (alias {alias!r}); test metrics: {headline(metrics)}")
            lines.append(f"  get it with: trainflow artifacts get model_export:{alias} <dir>")
            registered = self.cfg.promote.registered_model_name
            if registered in (prod.metadata.get("registry") or {}):
                lines.append(
                    f"  registry: models:/{registered}@{alias} (version {prod.metadata['registry'][registered]}); "
                    f'serve it with: mlflow models serve -m "models:/{registered}@{alias}" --env-manager local'
                )
        lines.append(f"  artifact store: {self.store.root}")
        lines.append(f"  MLflow tracking: {tracking}")
        print("\n".join(lines), flush=True)


def main_argv(project_dir: Path) -> None:
    """Prepare ``sys.argv`` for Hydra: expand the MLproject's arguments, then check plain
    overrides up front so a bad one fails in one line instead of Hydra's several.
    """
    from trainflow.config import load_config
    from trainflow.sweeps import hydra_arguments

    with exit_on_user_error("trainflow"):
        expanded = expand_mlproject_args(sys.argv)
        sys.argv[:] = expanded[:1] + hydra_arguments(expanded[1:])
        arguments = sys.argv[1:]
        plain = all(not a.startswith("-") and not a.lstrip("+~").startswith("hydra") for a in arguments)
        if plain:  # sweeps (-m) and Hydra's own flags are left to Hydra
            load_config(project_dir, arguments)
