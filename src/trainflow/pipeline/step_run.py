"""The run-context helper every component uses: parse arguments, load the config, open
the step's MLflow run, hand out inputs, log outputs, and turn errors into one line.

A component is then only::

    def train_model(run: StepRun) -> None:  # named after the step: the in-process runner looks it up
        trainval = run.read_table("trainval_artifact")
        ...
        run.log_artifact(export_dir, "model_export", type="model_export", description=...)

    if __name__ == "__main__":
        step_main("train_model", train_model, __file__)
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import dataclasses
import gc
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import DictConfig

from trainflow.config.components import CONFIG_DIR_ENV
from trainflow.config.schema import load_config, resolve_paths, split_overrides, validate
from trainflow.errors import exit_on_interrupt, exit_on_user_error, interrupt_on_signals
from trainflow.logs import configure as configure_logs
from trainflow.ml.data import read_table, release_unused_arrow_memory, typing_sample
from trainflow.ml.table_file import TableLimits
from trainflow.pipeline.steps import PROJECT_TAG, STEPS, StepSpec, step_params
from trainflow.pipeline.sweeps import SweepContext, current_trial, error_tagged_run, pinned_ref, trial_tags
from trainflow.sections import section_dict
from trainflow.store.local import LocalArtifactStore
from trainflow.store.protocol import ArtifactStore
from trainflow.store.records import MLFLOW_MODEL_ID, ArtifactVersion, NewVersion, RunRecord
from trainflow.store.wandb_backend import log_to_run, step_backend

log = logging.getLogger(__name__)

# mlflow (also through trainflow.tracking), matplotlib and wandb are imported inside the functions that use them:
# `import trainflow.pipeline.step_run` pays none of them (a step loads mlflow once step_main has its config),
# and only a step that logs figures or uses W&B pays matplotlib (0.25 s) or wandb (0.3 s)
# (docs/architecture.md#start-up).

# How a step ran: "process" (its own `mlflow run` or `python run.py`) or "in_process"
# (a function call in the pipeline's process, main.in_process)
EXECUTION_TAG = "trainflow.execution"


@dataclass
class StepRun:
    """One running step: its config, its MLflow run, and its view of the artifact store."""

    spec: StepSpec
    cfg: DictConfig
    store: ArtifactStore  # the local store, or W&B's (see wandb_backend.step_backend)
    record: RunRecord
    input_refs: dict[str, str]
    workdir: Path
    wandb_run: Any = None  # the step's W&B run, when W&B records it (see wandb_backend.step_backend)
    sweep: SweepContext | None = None  # the sweep trial this step runs in, if any
    used: dict[str, ArtifactVersion] = field(default_factory=dict)
    logged: dict[str, str] = field(default_factory=dict)  # artifact name -> name:vN this step logged
    datasets: dict[str, Any] = field(default_factory=dict)  # input param -> the MLflow dataset read_table logged

    @property
    def run_id(self) -> str:
        return self.record.run_id

    def say(self, message: str) -> None:
        """A message of the step: ``[<step>] message`` (see :mod:`trainflow.logs`)."""
        log.info(message, extra={"prefix": self.spec.name})

    def warn(self, message: str) -> None:
        """A warning of the step, on stderr: ``[<step>] message``."""
        log.warning(message, extra={"prefix": self.spec.name})

    def resolve(self, param: str) -> ArtifactVersion:
        """Pin the input named by component parameter ``param`` to a version; record the usage."""
        import mlflow

        ref = self.input_refs[param]
        version = self.store.get(ref)
        self.spec.input(param).check_type(self.spec.name, version)
        version = self.store.record_usage(version.ref, self.record)
        self.used[param] = version
        mlflow.set_tag(f"trainflow.input.{param}", version.ref)
        self.say(f"using {version.ref}" + ("" if ref == version.ref else f" (asked for {ref})"))
        return version

    def use(self, param: str) -> Path:
        """The verified, read-only checkout of the input ``param`` (a file, or a directory),
        resolved first unless the step did already."""
        version = self.used.get(param) or self.resolve(param)
        return self.store.use_artifact(version.ref)

    @property
    def table_limits(self) -> TableLimits:
        """``data.limits``: every table a step reads is held to them."""
        return TableLimits.from_config(self.cfg.data.limits)

    def read_table(self, param: str) -> pd.DataFrame:
        """The input table ``param``, also logged as an MLflow dataset of the run."""
        from trainflow.tracking import log_table_input

        path = self.use(param)
        frame = read_table(path, limits=self.table_limits)
        version = self.used[param]
        context = self.spec.input(param).dataset_context or "input"
        self.datasets[param] = log_table_input(
            typing_sample(frame), len(frame), version.ref, version.digest, path, context, self.cfg.data.target
        )
        return frame

    @contextlib.contextmanager
    def logged_model(
        self, directory: Path, model_type: str, params: Mapping[str, Any], data: ArtifactVersion
    ) -> Iterator[str]:
        """An MLflow 3 LoggedModel named after the project, made by this run from ``data``:
        the block saves the model into ``directory`` knowing the yielded id (see
        :func:`trainflow.tracking.logged_model`)."""
        from trainflow.tracking import logged_model

        tags = {PROJECT_TAG: self.cfg.project, "trainflow.data": data.ref}
        if self.record.git_commit:
            tags["mlflow.source.git.commit"] = self.record.git_commit
        with logged_model(self.cfg.project, directory, model_type, params, tags) as model_id:
            yield model_id
        self.say(f"logged MLflow model {model_id} ({self.cfg.project})")

    def input_model(self, param: str) -> str | None:
        """The MLflow LoggedModel id of input ``param`` (``mlflow_model_id`` in its metadata), also
        recorded as an input of this run; None when this tracking server does not hold it."""
        from trainflow.tracking import known_model, log_model_input

        version = self.used.get(param) or self.resolve(param)
        model_id = known_model(version.metadata.get(MLFLOW_MODEL_ID))
        if model_id is not None:
            log_model_input(model_id)
        return model_id

    def log_artifact(
        self,
        path: Path,
        name: str,
        type: str,
        description: str,
        metadata: Mapping[str, Any] | None = None,
        aliases: Sequence[str] = (),
    ) -> ArtifactVersion:
        [version] = self.log_artifacts([NewVersion(path, name, type, description, metadata, tuple(aliases))])
        return version

    def log_artifacts(self, versions: Sequence[NewVersion]) -> list[ArtifactVersion]:
        """Log the step's outputs as new versions, in one store transaction (see
        ``LocalArtifactStore.log_artifacts``); tag the MLflow run with each and say so."""
        import mlflow

        if self.sweep is not None:  # a trial's outputs say which sweep, trial and parameters made them
            sweep = self.sweep.metadata()
            versions = [dataclasses.replace(new, metadata={**(new.metadata or {}), "sweep": sweep}) for new in versions]
        logged = self.store.log_artifacts(versions, run=self.record)
        for new, version in zip(versions, logged, strict=True):
            if self.wandb_run is not None and isinstance(self.store, LocalArtifactStore):
                # An offline W&B run keeps a copy for `wandb sync`; consumers read the local store.
                log_to_run(
                    self.wandb_run, Path(new.path), new.name, new.type, new.description, new.metadata or {}, new.aliases
                )
            mlflow.set_tag(f"trainflow.output.{new.name}", version.ref)
            self.logged[new.name] = version.ref
            self.say(f"logged {version.ref} ({version.size:,} bytes, aliases: {', '.join(version.aliases)})")
        return logged

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Record values the step decided (not configured) as MLflow params."""
        import mlflow

        mlflow.log_params({key: param_value(value) for key, value in params.items()})
        if self.wandb_run is not None:
            self.wandb_run.config.update(dict(params), allow_val_change=True)

    def log_table(self, table: pd.DataFrame, name: str) -> None:
        """A table in the MLflow run (the UI shows it under Artifacts) and as a W&B table."""
        import mlflow

        mlflow.log_table(table, artifact_file=name)
        if self.wandb_run is not None:
            import wandb

            self.wandb_run.log({name.rsplit(".", 1)[0]: wandb.Table(dataframe=table)})

    def log_figures(self, figures: Mapping[str, Any], folder: str = "plots") -> None:
        """Save matplotlib figures as PNGs in the MLflow run (the UI shows them)."""
        import matplotlib.pyplot as plt
        import mlflow

        for name, figure in figures.items():
            mlflow.log_figure(figure, f"{folder}/{name}")
            if self.wandb_run is not None:
                import wandb

                self.wandb_run.log({f"{folder}/{name.removesuffix('.png')}": wandb.Image(figure)})
            plt.close(figure)
        self.say(f"logged plots: {', '.join(figures)}")

    def log_metrics(
        self,
        metrics: Mapping[str, float],
        prefix: str = "",
        show: bool = True,
        model_id: str | None = None,
        dataset: str | None = None,
    ) -> None:
        """MLflow metrics and W&B summary values; ``show=False`` for many values that a
        table printed by the step already shows. With ``model_id`` (a LoggedModel) and
        ``dataset`` (the input param whose table they were measured on), they are that
        model's metrics on that dataset too."""
        from trainflow.tracking import log_metrics

        log_metrics(
            {f"{prefix}{key}": value for key, value in metrics.items()},
            model_id=model_id,
            dataset=self.datasets.get(dataset) if dataset else None,
        )
        if self.wandb_run is not None:
            self.wandb_run.summary.update({f"{prefix}{key}": value for key, value in metrics.items()})
        if not show:
            return
        shown = ", ".join(f"{prefix}{key}={value:.4f}" for key, value in metrics.items())
        self.say(f"metrics: {shown}")


def _parse_args(spec: StepSpec, argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=f"components/{spec.name}/run.py", description=spec.description)
    for step_input in spec.inputs:
        parser.add_argument(
            f"--{step_input.param.replace('_', '-')}",
            dest=step_input.param,
            default="",
            help=f"{step_input.artifact} reference (name:vN or name:alias); empty: the configured default",
        )
    parser.add_argument("--hydra-options", default="", help="Hydra overrides applied to the project's config.yaml")
    return parser.parse_args(argv)


def step_config(project_dir: Path, hydra_options: str) -> DictConfig:
    """The project's config with these overrides, validated, with absolute paths."""
    cfg = resolve_paths(load_config(project_dir, split_overrides(hydra_options)), project_dir)
    validate(cfg)
    return cfg


def component_checkout(component_file: str) -> Path:
    """The checkout a ``components/<step>/run.py`` belongs to (a clone, for a git repository)."""
    return Path(component_file).resolve().parents[2]


def step_config_dir(component_file: str) -> Path:
    """The folder whose ``config.yaml`` a step composes, and relative paths are relative to:
    the pipeline's project when a pipeline started the step (its components may come from
    a git repository), else the component's own checkout."""
    return Path(os.environ.get(CONFIG_DIR_ENV) or component_checkout(component_file))


def step_main(step: str, body: Callable[[StepRun], None], component_file: str) -> None:
    """Run ``body`` as step ``step``: the entry point of every ``components/<step>/run.py``."""
    spec = STEPS[step]
    args = _parse_args(spec, sys.argv[1:])
    interrupt_on_signals()
    with exit_on_interrupt(step), exit_on_user_error(step):
        cfg = step_config(step_config_dir(component_file), args.hydra_options)
        configure_logs(cfg.main.log_level)
        # mlflow (about 1 s) only now: --help, a bad argument or a bad config answer without it.
        from trainflow.tracking import start_run_args, use_tracking

        local = LocalArtifactStore(cfg.artifacts.root, project=cfg.project)
        use_tracking(local.root)
        start = start_run_args(cfg.main.experiment_name, local.root, step)
        run_step(spec, body, cfg, input_refs(spec, cfg, vars(args)), component_checkout(component_file), start, local)


def input_refs(spec: StepSpec, cfg: DictConfig, given: Mapping[str, str]) -> dict[str, str]:
    """Each input's reference: the one given (a component parameter); in a sweep's trial, the
    version the sweep pinned for all its trials; else the configured default."""
    return {i.param: given.get(i.param) or pinned_ref(i.artifact) or i.default_ref(cfg) for i in spec.inputs}


def run_step(
    spec: StepSpec,
    body: Callable[[StepRun], None],
    cfg: DictConfig,
    refs: Mapping[str, str],
    project_dir: Path,
    start: Mapping[str, Any],
    local: LocalArtifactStore,
    in_process: Mapping[str, str] | None = None,
) -> tuple[str, dict[str, str]]:
    """Open the step's MLflow run with ``mlflow.start_run(**start)``, log what it uses, and
    call ``body``; return the run id and the versions the step logged (artifact name ->
    ``name:vN``). A component's process runs its step through here, and so does the
    pipeline's own process (``main.in_process``), which passes the component parameters
    ``mlflow run`` would have logged as ``in_process`` and takes the outputs as returned.

    The run's metrics ``step_seconds`` and ``step_peak_rss_bytes`` say what the step's
    body took: wall time, and the largest resident memory of the process while it ran.
    """
    import mlflow

    from trainflow.tracking import git_commit, mark_model_training

    step = spec.name
    trial = current_trial()
    with mlflow.start_run(**start) as active, tempfile.TemporaryDirectory(dir=local.tmp, prefix=f"{step}-") as tmp:
        mark_model_training(active.info.experiment_id)
        if not start and active.info.run_name != step:  # `mlflow run` of the component named it at random
            mlflow.MlflowClient().update_run(active.info.run_id, name=step)
        params = step_params(cfg, spec)
        commit = active.data.tags.get("mlflow.source.git.commit") or git_commit(project_dir)
        mlflow.set_tags(
            {
                "trainflow.step": step,
                PROJECT_TAG: cfg.project,
                EXECUTION_TAG: "in_process" if in_process is not None else "process",
                **({"trainflow.git_commit": commit} if commit else {}),
                **(trial_tags(trial) if trial else {}),
            }
        )
        mlflow.log_params({k: param_value(v) for k, v in {**(in_process or {}), **params}.items()})
        mlflow.log_dict(section_dict(cfg), "resolved_config.yaml")
        record = RunRecord(active.info.run_id, step, commit, params)
        tracked = {**params, "git_commit": commit, "mlflow_run_id": active.info.run_id}
        if trial:
            tracked.update(sweep_id=trial.id, sweep_trial=trial.trial)
        with error_tagged_run(), step_backend(cfg, step, tracked, local) as (store, wandb_run):
            map_large_allocations()
            reset_peak_rss()
            at_start = memory_status().get("VmRSS")
            began = time.perf_counter()
            step_run = StepRun(spec, cfg, store, record, dict(refs), Path(tmp), wandb_run, trial)
            body(step_run)
            seconds, peak = time.perf_counter() - began, memory_status().get("VmHWM")
            mlflow.log_metrics(
                {
                    "step_seconds": seconds,
                    **({"step_peak_rss_bytes": peak} if peak else {}),
                    **({"step_rss_at_start_bytes": at_start} if at_start else {}),
                }
            )
    return active.info.run_id, dict(step_run.logged)


# glibc's mallopt() parameter for the size from which an allocation gets its own mapping
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 2**20


def map_large_allocations() -> None:
    """Have glibc give every allocation of 1 MiB or more (numpy arrays, the parts of a
    sparse matrix) its own mapping, which goes back to the system as soon as it is freed.

    By default glibc raises that threshold to the size of each such block freed, up to
    32 MiB, and from then on serves a step's large temporaries from its heap, where freed
    memory stays resident. Fixed at 1 MiB, train_model on 800,000 rows peaks 60 MiB lower
    (about 805 -> 745 MiB) for 0.6-0.9 s more system time (fresh pages) in a 22-27 s
    fit. Without glibc this does nothing.
    """
    _call_glibc("mallopt", M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)


def release_memory() -> None:
    """Hand the memory a finished step freed back to the operating system, so that the
    next step run in the same process (main.in_process) starts from the footprint of the
    imports, not of the previous step's data: collect cycles, empty Arrow's pool (pandas'
    string columns live there), and trim glibc's heap."""
    gc.collect()
    # What survived is long-lived (modules, classes, caches): freezing it spares every
    # later collection a walk over it (165 ms each with MLflow and scikit-learn loaded).
    gc.freeze()
    release_unused_arrow_memory()
    _call_glibc("malloc_trim", 0)


def _call_glibc(function: str, *args: int) -> None:
    """Call one of glibc's memory functions; where there is no glibc (macOS, musl), nothing."""
    with contextlib.suppress(OSError, AttributeError):
        getattr(ctypes.CDLL("libc.so.6"), function)(*args)


def reset_peak_rss() -> None:
    """Start this process's peak-memory count (VmHWM) afresh, so that a step run in the
    pipeline's process reports its own peak, not an earlier step's. Linux only; elsewhere
    no memory metrics are logged."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def memory_status() -> dict[str, float]:
    """This process's resident memory now (``VmRSS``) and at its peak since the last
    :func:`reset_peak_rss` (``VmHWM``), in bytes; empty off Linux."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return {}
    fields = (line.split() for line in status.splitlines() if line.startswith(("VmRSS:", "VmHWM:")))
    return {name.rstrip(":"): float(kib) * 1024 for name, kib, *_ in fields}


def param_value(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)
