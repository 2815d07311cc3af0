"""Hyperparameter sweeps: Hydra's multirun over the pipeline, one trial per job.

    mlflow run . -P steps=train_model -P hydra_options="model.random_forest.max_depth=5,10,20 -m"
    python main.py -m main.steps=train_model model.random_forest.max_depth=5,10 hydra/launcher=joblib

Hydra expands the sweep into jobs and its launcher runs them (one after another, in
worker processes with ``hydra/launcher=joblib``, or on a Ray cluster with
``hydra/launcher=ray``); each job runs the selected steps as an ordinary pipeline. This
module makes the jobs one sweep:

- :class:`SweepCallback` (``hydra.callbacks.sweep`` in ``config.yaml``) opens the sweep
  before any job starts: a sweep id, the sweep's MLflow run (the one ``mlflow run``
  made, else a new one), one W&B group, and the exact input versions every trial reads.
  It hands them to the trials in the ``TRAINFLOW_SWEEP`` environment variable, which the
  launcher's workers and the components' processes inherit.
- :func:`sweep_trial` wraps one job in ``main.py``: the trial's MLflow run nests under
  the sweep's, its steps tag their runs and artifacts with the sweep id, and a failed
  trial is recorded (``trial.json`` in its job folder) instead of stopping the others.
- After the last job, the callback prints and logs the table of trials and, with
  ``main.select_best=true``, points ``model_export:candidate`` at the best trial's model
  (:func:`select_best`, also ``trainflow sweeps best``).
- :func:`ray_launch` is trainflow's part of ``hydra/launcher=ray`` (Hydra's Ray launcher,
  ``hydra-ray-launcher``, subclassed in ``hydra_plugins.trainflow_ray_launcher``). Each trial
  is a Ray task that gets the driver's ``TRAINFLOW_*``, ``MLFLOW_*`` and ``WANDB_*``
  variables (the sweep's among them), checks that its node sees the sweep's store
  (:func:`trial_problem`) and sends its record back, so that the summary needs no shared path.
  Every trial records the node it ran on (``trainflow.node``).
"""

from __future__ import annotations

import atexit
import contextlib
import fnmatch
import functools
import json
import logging
import math
import os
import secrets
import socket
import sys
import time
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from trainflow.config.schema import resolve_paths, validate
from trainflow.errors import ArtifactNotFound, TrainflowError, exit_on_user_error
from trainflow.logs import prefixed, progress
from trainflow.pipeline.steps import OUTPUT_TAG, STEPS, select_steps
from trainflow.promotion.gate import format_table
from trainflow.store.local import LocalArtifactStore
from trainflow.store.records import ArtifactVersion
from trainflow.store.refs import CANDIDATE_ALIAS
from trainflow.store.wandb_backend import read_store

log = prefixed(__name__, "sweep")
# The bar of trials done, drawn on a terminal by the process that runs them one by one (Hydra's
# basic launcher); joblib's trials run in worker processes, which say each trial's end instead.
_trials_done: Any = None

# mlflow (also through trainflow.tracking) and trainflow.ml.evaluate (pandas) are imported inside the functions
# that use them: about 0.9 s that `python main.py --help`, which imports this module, does not pay
# (docs/architecture.md#start-up).

SWEEP_ENV = "TRAINFLOW_SWEEP"
SWEEP_ID_TAG = "trainflow.sweep_id"
TRIAL_TAG = "trainflow.sweep.trial"
NODE_TAG = "trainflow.node"  # where a trial ran: its Ray node's address (else the host name)
NODE_ID_TAG = "trainflow.node_id"  # its Ray node's id (under Ray only)
ERROR_TAG = "trainflow.error"
MODEL_ARTIFACT = "model_export"
TRIAL_RECORD = "trial.json"
SUMMARY_TEXT = "sweep_summary.txt"
SUMMARY_JSON = "sweep_summary.json"
MULTIRUN_FLAGS = ("-m", "--multirun")
JOBLIB_LAUNCHER = "hydra/launcher=joblib"
N_JOBS_OVERRIDE = "hydra.launcher.n_jobs"


# -- the command line -----------------------------------------------------------------


def hydra_arguments(arguments: Sequence[str]) -> list[str]:
    """Hydra's command line for a sweep, from the overrides and flags a user wrote.

    ``-m`` goes first, because Hydra's parser takes no override after a flag, and
    ``-P hydra_options="a=1,2 -m"`` puts it after ``main.steps``. The joblib launcher
    runs ``sweep.n_jobs`` trials at once unless ``hydra.launcher.n_jobs`` is given (its
    own default, every core, would start one MLflow run per core at once).
    """
    flags = [a for a in arguments if a in MULTIRUN_FLAGS]
    rest = [a for a in arguments if a not in MULTIRUN_FLAGS]
    if any(a.lstrip("+") == JOBLIB_LAUNCHER for a in rest) and not any(
        a.lstrip("+").startswith(f"{N_JOBS_OVERRIDE}=") for a in rest
    ):
        rest.append(f"{N_JOBS_OVERRIDE}=${{sweep.n_jobs}}")
    return flags[:1] + rest


# -- what a sweep hands its trials ----------------------------------------------------


@dataclass(frozen=True)
class SweepContext:
    """The sweep a process belongs to; ``trial`` is set inside one trial."""

    id: str
    parent_run_id: str
    pins: dict[str, str] = field(default_factory=dict)  # artifact name -> the exact version every trial reads
    trial: int | None = None
    params: dict[str, str] = field(default_factory=dict)  # the trial's overrides
    store: str | None = None  # the local store every trial writes to (None: artifacts on W&B)
    node: str | None = None  # inside a trial: where it runs (this_node)
    node_id: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    def metadata(self) -> dict[str, Any]:
        """What an artifact logged by this trial records about it."""
        return {"id": self.id, "trial": self.trial, "params": self.params}


def current_sweep() -> SweepContext | None:
    """The sweep this process runs in (``TRAINFLOW_SWEEP``), if any."""
    raw = os.environ.get(SWEEP_ENV)
    return SweepContext(**json.loads(raw)) if raw else None


def current_trial() -> SweepContext | None:
    """The sweep trial this process runs in, if any."""
    context = current_sweep()
    return context if context is not None and context.trial is not None else None


def trial_run_args() -> dict[str, Any]:
    """Extra ``mlflow.start_run`` arguments for a trial's pipeline run: nested under the
    sweep's run, named and tagged by trial. Empty outside a trial."""
    trial = current_trial()
    if trial is None:
        return {}
    return {
        "parent_run_id": trial.parent_run_id,
        "run_name": f"trial-{trial.trial}",
        "tags": trial_tags(trial),
    }


def trial_tags(trial: SweepContext) -> dict[str, str]:
    tags = {SWEEP_ID_TAG: trial.id, TRIAL_TAG: str(trial.trial)}
    if trial.node:
        tags[NODE_TAG] = trial.node
    if trial.node_id:
        tags[NODE_ID_TAG] = trial.node_id
    return tags


def this_node() -> tuple[str, str | None]:
    """``(address, Ray node id)`` of where this process runs: in a Ray task, its node's IP
    address and id; elsewhere the host name and None."""
    ray = sys.modules.get("ray")  # a Ray worker has imported it; nothing else here imports it
    if ray is not None and ray.is_initialized():
        return str(ray.util.get_node_ip_address()), str(ray.get_runtime_context().get_node_id())
    return socket.gethostname(), None


def trial_params(overrides: Sequence[str]) -> dict[str, str]:
    """``{"model.random_forest.max_depth": "5", ...}`` from a job's overrides; the keys
    that choose what runs (``main.*``) or how the sweep works (``sweep.*``) are left out."""
    params: dict[str, str] = {}
    for override in overrides:
        key, sep, value = override.partition("=")
        key = key.lstrip("+")
        if key.startswith("~"):
            key, value = key[1:], "(deleted)"
        elif not sep:
            continue
        if not key.startswith(("main.", "sweep.")):
            params[key] = value
    return params


# -- one trial ------------------------------------------------------------------------


@dataclass
class TrialRecord:
    """A trial's outcome as its job folder keeps it (``trial.json``) and the summary shows it."""

    trial: int
    params: dict[str, str]
    status: str  # ok | failed | lost (the job started but recorded nothing: its process died)
    error: str | None = None
    run_id: str | None = None  # the trial's MLflow run (the steps' runs nest under it)
    outputs: dict[str, str] = field(default_factory=dict)  # artifact name -> version logged
    seconds: float | None = None
    metric: float | None = None  # filled in by the summary from the model's metadata
    sweep_id: str | None = None  # the sweep that ran it: a reused hydra.sweep.dir holds older sweeps' records
    node: str | None = None  # where it ran (this_node): a Ray node's address, else the host name
    node_id: str | None = None  # its Ray node's id, under Ray

    @property
    def model(self) -> str | None:
        return self.outputs.get(MODEL_ARTIFACT)


def _save_record(record: TrialRecord, job_dir: Path) -> None:
    job_dir.mkdir(parents=True, exist_ok=True)
    staging = job_dir / f".{TRIAL_RECORD}.tmp"
    staging.write_text(json.dumps(asdict(record), indent=2, sort_keys=True))
    staging.replace(job_dir / TRIAL_RECORD)  # whole or absent, even if the process dies here


@contextlib.contextmanager
def sweep_trial() -> Iterator[None]:
    """Run the body as one trial of the current sweep: its runs and artifacts carry the
    trial's number and parameters, and a failure is recorded instead of raised, so the
    launcher goes on with the other trials. Outside a sweep, just run the body.
    """
    sweep = current_sweep()
    if sweep is None or not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        yield
        return
    job = HydraConfig.get()
    node, node_id = this_node()
    trial = replace(
        sweep, trial=int(job.job.num), params=trial_params(list(job.overrides.task)), node=node, node_id=node_id
    )
    shown = " ".join(f"{key}={value}" for key, value in trial.params.items()) or "(defaults)"
    log.info(f"trial {trial.trial}: {shown}")
    os.environ[SWEEP_ENV] = trial.to_json()  # the trial's steps inherit it
    began = time.perf_counter()
    error: str | None = None
    try:
        yield
    except SystemExit as stop:
        # exit_on_user_error already printed the one-line error; it is the exit's context.
        error = _one_line(stop.__context__) if stop.__context__ else f"exit status {stop.code}"
    except Exception as bug:  # a bug in one trial must not stop the others; keep its traceback
        traceback.print_exc()
        error = _one_line(bug)
    finally:
        os.environ[SWEEP_ENV] = sweep.to_json()
        run_id, outputs, step_error = _trial_outcome(trial)
        error = (step_error or error) if error else None
        _save_record(
            TrialRecord(
                trial.trial or 0,
                trial.params,
                "failed" if error else "ok",
                error,
                run_id,
                outputs,
                round(time.perf_counter() - began, 2),
                sweep_id=trial.id,
                node=node,
                node_id=node_id,
            ),
            Path(job.runtime.output_dir),
        )
    if error:
        log.info(f"trial {trial.trial} failed: {error}")
    if _trials_done is not None:
        _trials_done.update(1)


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _trial_outcome(trial: SweepContext) -> tuple[str | None, dict[str, str], str | None]:
    """What MLflow recorded of a trial: its pipeline run, the versions its steps logged
    (their ``trainflow.output.*`` tags, as the runner reads them), and the error a failed
    step recorded (``trainflow.error``), which says more than the runner's "step failed".
    """
    import mlflow

    run_id, outputs, error = None, {}, None
    with contextlib.suppress(Exception):  # no tracking yet (the trial failed at start): nothing recorded
        client = mlflow.MlflowClient()
        experiment = client.get_run(trial.parent_run_id).info.experiment_id
        runs = client.search_runs(
            [experiment], filter_string=f"tags.`{SWEEP_ID_TAG}` = '{trial.id}' and tags.`{TRIAL_TAG}` = '{trial.trial}'"
        )
        for run in sorted(runs, key=lambda r: r.info.start_time):
            tags = run.data.tags
            if tags.get("trainflow.step") == "pipeline":
                run_id = run.info.run_id
            outputs.update({k.removeprefix(OUTPUT_TAG): v for k, v in tags.items() if k.startswith(OUTPUT_TAG)})
            if error is None and ERROR_TAG in tags:
                error = f"{tags.get('trainflow.step', 'step')}: {tags[ERROR_TAG]}"
    return run_id, outputs, error


@contextlib.contextmanager
def error_tagged_run() -> Iterator[None]:
    """Tag the active MLflow run with the error that ends it, in one line, so that a
    sweep's summary can say why a trial failed rather than only which step."""
    import mlflow

    try:
        yield
    except Exception as error:
        text = str(error) if isinstance(error, TrainflowError) else f"{type(error).__name__}: {error}"
        with contextlib.suppress(Exception):  # the error itself matters more than the tag
            mlflow.set_tag(ERROR_TAG, " ".join(text.split())[:500])
        raise


# -- choosing the best trial ----------------------------------------------------------


def metric_value(version: ArtifactVersion, metric: str) -> float | None:
    """The model's validation ``metric`` (``val_`` prefix optional); None when not finite."""
    validation = version.metadata.get("validation") or {}
    name = metric.removeprefix("val_")
    if name not in validation:
        raise TrainflowError(
            f"{version.ref} has no validation metric {name!r}: it has {', '.join(sorted(validation)) or 'none'}; "
            "choose one of them (sweep.metric, or --metric)"
        )
    value = validation[name]
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def _models(store: Any) -> list[ArtifactVersion]:
    """Every ``model_export`` version, oldest first (none yet: empty, on either backend)."""
    try:
        return store.list_versions(MODEL_ARTIFACT)
    except ArtifactNotFound:
        return []


def sweep_models(store: Any, sweep_id: str) -> list[ArtifactVersion]:
    """The ``model_export`` versions the trials of ``sweep_id`` logged, oldest first."""
    return [v for v in _models(store) if (v.metadata.get("sweep") or {}).get("id") == sweep_id]


def rank(
    versions: Sequence[ArtifactVersion], metric: str, higher_is_better: bool
) -> list[tuple[ArtifactVersion, float]]:
    """The versions with a finite ``metric``, best first; ties go to the lower trial number
    (not the model logged first: parallel trials finish in any order), then the older version."""
    scored = [(v, value) for v in versions if (value := metric_value(v, metric)) is not None]
    sign = -1.0 if higher_is_better else 1.0

    def trial(version: ArtifactVersion) -> float:
        number = (version.metadata.get("sweep") or {}).get("trial")
        return number if isinstance(number, int) else math.inf

    return sorted(scored, key=lambda pair: (sign * pair[1], trial(pair[0]), pair[0].version))


def select_best(
    store: Any,
    sweep_id: str,
    metric: str,
    higher_is_better: bool = True,
    alias: str = CANDIDATE_ALIAS,
    only: set[str] | None = None,
) -> tuple[ArtifactVersion, float]:
    """Point ``model_export:<alias>`` at the sweep's best model by validation ``metric``;
    ``only``: the refs to choose among (the models of the trials that succeeded)."""
    models = [v for v in sweep_models(store, sweep_id) if only is None or v.ref in only]
    if not models:
        raise TrainflowError(
            f"no {MODEL_ARTIFACT} version belongs to sweep {sweep_id!r}: `trainflow sweeps list` shows the sweeps "
            "whose trials logged a model"
        )
    ranked = rank(models, metric, higher_is_better)
    if not ranked:
        raise TrainflowError(f"no model of sweep {sweep_id!r} has a finite validation {metric}: nothing to choose")
    best, value = ranked[0]
    return store.set_alias(best.ref, alias), value


def list_sweeps(store: Any) -> list[tuple[str, int, str]]:
    """``(sweep id, models logged, first logged at)`` for every sweep, oldest first."""
    sweeps: dict[str, list[ArtifactVersion]] = {}
    for version in _models(store):
        sweep_id = (version.metadata.get("sweep") or {}).get("id")
        if sweep_id:
            sweeps.setdefault(sweep_id, []).append(version)
    return [(sweep_id, len(found), found[0].created_at) for sweep_id, found in sweeps.items()]


# -- the summary ----------------------------------------------------------------------


def failed_trials_message(sweep_id: str, trials: Sequence[TrialRecord]) -> str:
    """The sweep's error line: how many trials failed, the first one's error, and where the
    rest are (there is no "other trials" to point at when every trial failed)."""
    failed = [t for t in trials if t.status != "ok"]
    first = failed[0]
    where = "the other trials are logged, see the table above" if len(failed) < len(trials) else "see the table above"
    return f"{len(failed)} of {len(trials)} trial(s) of sweep {sweep_id} failed (trial {first.trial}: {first.error}); {where}"


def read_trials(sweep_dir: Path, sweep_id: str | None = None) -> list[TrialRecord]:
    """Every trial the launcher started under ``sweep_dir``: its record, or ``lost`` when
    the job folder exists (Hydra made it before the job ran) but holds no record.

    With ``sweep_id``, records of other sweeps (a ``hydra.sweep.dir`` used again) are left
    out, and so is their job folder unless a job of this sweep started there after them."""
    records: dict[Path, TrialRecord] = {}
    foreign: dict[Path, float] = {}  # job folder -> when another sweep's record was written
    for path in sweep_dir.rglob(TRIAL_RECORD):
        record = TrialRecord(**json.loads(path.read_text()))
        if sweep_id is not None and record.sweep_id not in (None, sweep_id):
            foreign[path.parent] = path.stat().st_mtime
            continue
        records[path.parent] = record
    for overrides in sweep_dir.rglob(".hydra/overrides.yaml"):
        job_dir = overrides.parent.parent
        if job_dir in foreign and overrides.stat().st_mtime <= foreign[job_dir]:
            continue  # an older sweep's job, finished before this sweep started
        if job_dir not in records:
            number = int(job_dir.name) if job_dir.name.isdigit() else -1
            params = trial_params(OmegaConf.to_container(OmegaConf.load(overrides)))  # type: ignore[arg-type]
            records[job_dir] = TrialRecord(number, params, "lost", error=f"no result recorded in {job_dir}")
    return sorted(records.values(), key=lambda record: record.trial)


def summary_rows(trials: Sequence[TrialRecord], metric: str, run_details: bool = True) -> list[tuple[str, ...]]:
    """The table of trials: number, the parameters that vary, the metric, the model; with
    ``run_details``, also status, seconds, the node when trials ran on several (a Ray
    cluster) and (when a trial failed) the errors."""
    keys = list(dict.fromkeys(key for trial in trials for key in trial.params))
    varying = [k for k in keys if len({trial.params.get(k) for trial in trials}) > 1] or keys
    errors = run_details and any(trial.error for trial in trials)
    nodes = run_details and len({trial.node for trial in trials if trial.node}) > 1
    header = ["trial", *(["status"] if run_details else []), *varying, f"val_{metric.removeprefix('val_')}", "model"]
    header += [*(["seconds"] if run_details else []), *(["node"] if nodes else []), *(["error"] if errors else [])]
    rows: list[tuple[str, ...]] = [tuple(header)]
    for trial in trials:
        row = [str(trial.trial), *([trial.status] if run_details else []), *(trial.params.get(k, "-") for k in varying)]
        row += [f"{trial.metric:.4f}" if trial.metric is not None else "-", trial.model or "-"]
        if run_details:
            row.append(f"{trial.seconds:.1f}" if trial.seconds is not None else "-")
        if nodes:
            row.append(trial.node or "-")
        if errors:
            row.append((trial.error or "")[:160])
        rows.append(tuple(row))
    return rows


class SweepCallback(Callback):
    """Opens a sweep before Hydra's first job and closes it after the last (see the module doc)."""

    def __init__(self) -> None:
        self.sweep: SweepContext | None = None
        self.created_run = False  # whether the sweep's MLflow run is ours to finish
        self.closed = False

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        with exit_on_user_error("trainflow"):
            self._open(config)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self.sweep is None:
            return
        with exit_on_user_error("trainflow"):
            self._close(config)

    def _open(self, config: DictConfig) -> None:
        import mlflow

        from trainflow.tracking import experiment_id, use_tracking

        cfg = _task_config(config)
        # What no trial can change (a bad step list, sweep.n_jobs=0 for the launcher) fails
        # here in one line, before the sweep's run exists; swept values are each trial's.
        validate(cfg, estimator_params=False)
        steps = select_steps(cfg.main.steps)
        local = LocalArtifactStore(cfg.artifacts.root, project=cfg.project)
        use_tracking(local.root)
        sweep_id = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)
        client = mlflow.MlflowClient()
        # `mlflow run .` made a run for this process: it becomes the sweep's run, and the
        # trials start their own under it instead of resuming it.
        parent = os.environ.pop("MLFLOW_RUN_ID", None)
        if parent is None:
            experiment = experiment_id(cfg.main.experiment_name, local.root)
            parent = client.create_run(experiment, run_name=f"sweep-{sweep_id}").info.run_id
            self.created_run = True
            # A sweep Hydra stops before its end (a job's config fails to compose, Ctrl-C)
            # never reaches _close: its run must not stay RUNNING.
            atexit.register(self._abandon, client, parent)
        else:
            client.update_run(parent, name=f"sweep-{sweep_id}")  # the UI lists every sweep by its id
        client.set_tag(parent, "trainflow.step", "sweep")
        client.set_tag(parent, SWEEP_ID_TAG, sweep_id)
        os.environ.setdefault("WANDB_RUN_GROUP", cfg.wandb.group or f"sweep-{sweep_id}")
        store = read_store(cfg, local)
        pins = pin_inputs(store, steps)
        # A trial on another host must see this store (trial_problem); W&B artifacts need no path.
        self.sweep = SweepContext(sweep_id, parent, pins, store=str(local.root) if store is local else None)
        os.environ[SWEEP_ENV] = self.sweep.to_json()
        reads = f"; every trial reads {', '.join(pins.values())}" if pins else ""
        log.info(f"{sweep_id}: trials nest under MLflow run {parent}{reads}")
        global _trials_done
        _trials_done = progress(trial_count(list(config.hydra.overrides.task)), "sweep trials", "trial", minimum=2)

    def _close(self, config: DictConfig) -> None:
        import mlflow

        assert self.sweep is not None
        if _trials_done is not None:
            _trials_done.close()
        cfg = _task_config(config)
        from trainflow.ml.evaluate import metric_direction, task_metric

        store = read_store(cfg, LocalArtifactStore(cfg.artifacts.root, project=cfg.project))
        trials = read_trials(Path(str(config.hydra.sweep.dir)), self.sweep.id)
        # sweep.metric=auto is the task's metric; the trials' models say which task the data made it.
        tasks = [store.get(t.model).metadata.get("task") for t in trials if t.model]
        task = next((t for t in tasks if t), cfg.model.task if cfg.model.task != "auto" else "classification")
        metric = task_metric(cfg.sweep.metric, task)
        higher = metric_direction(metric, cfg.sweep.higher_is_better)
        for trial in trials:
            if trial.model:
                # A misspelt metric leaves the column empty here; choosing the best names the problem.
                with contextlib.suppress(TrainflowError):
                    trial.metric = metric_value(store.get(trial.model), metric)
        failed = [t for t in trials if t.status != "ok"]
        client = mlflow.MlflowClient()
        try:
            summary = f"{self.sweep.id}: {len(trials) - len(failed)} of {len(trials)} trial(s) succeeded\n"
            summary += format_table(summary_rows(trials, metric), indent="  ")
            log.info(summary)
            client.log_text(self.sweep.parent_run_id, summary + "\n", SUMMARY_TEXT)
            client.log_dict(
                self.sweep.parent_run_id,
                {
                    "sweep_id": self.sweep.id,
                    "metric": metric,
                    "higher_is_better": higher,
                    "trials": [asdict(t) for t in trials],
                },
                SUMMARY_JSON,
            )
            client.log_metric(self.sweep.parent_run_id, "trials", len(trials))
            client.log_metric(self.sweep.parent_run_id, "failed_trials", len(failed))
            succeeded = {t.model for t in trials if t.status == "ok" and t.model}
            log.info(self._choose(cfg, store, metric, higher, succeeded))
        finally:
            self.closed = True
            if self.created_run:
                client.set_terminated(self.sweep.parent_run_id, "FAILED" if failed else "FINISHED")
        if failed:
            raise TrainflowError(failed_trials_message(self.sweep.id, trials))

    def _abandon(self, client: Any, run_id: str) -> None:
        if not self.closed:
            with contextlib.suppress(Exception):  # exiting anyway
                client.set_terminated(run_id, "FAILED")

    def _choose(self, cfg: DictConfig, store: Any, metric: str, higher: bool, succeeded: set[str]) -> str:
        """With ``main.select_best``, alias the best model as the candidate; else say how."""
        assert self.sweep is not None
        direction = "highest" if higher else "lowest"
        if not cfg.main.select_best:
            return (
                f"  choose the {direction} val_{metric} as model_export:{CANDIDATE_ALIAS} with: "
                f"trainflow sweeps best {self.sweep.id} --metric {metric}"
                + ("" if higher else " --lower-is-better")
                + " (or main.select_best=true next time)"
            )
        # A failed trial's model (a later step of the trial failed) is not a candidate.
        if not any(v.ref in succeeded for v in sweep_models(store, self.sweep.id)):
            return f"  no trial that succeeded logged a model: model_export:{CANDIDATE_ALIAS} is unchanged"
        best, value = select_best(store, self.sweep.id, metric, higher, only=succeeded)
        return (
            f"  best: trial {best.metadata['sweep']['trial']}, {best.ref} ({direction} val_{metric} = {value:.4f})"
            f" -> model_export:{CANDIDATE_ALIAS}; test and promote it with -P steps=test_model,promote_model"
        )


def trial_count(overrides: list[str]) -> int | None:
    """How many trials a sweep's command-line overrides make (the product of each swept key's
    values), or None when they do not say (a range an optimizing sweeper draws from)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    count = 1
    for override in OverridesParser.create().parse_overrides(overrides):
        if override.is_sweep_override():
            if not override.is_discrete_sweep():
                return None
            count *= len(list(override.sweep_iterator()))
    return count


def _task_config(config: DictConfig) -> DictConfig:
    """The application's part of a Hydra config (without ``hydra``), with absolute paths."""
    sources = config.hydra.runtime.config_sources
    project_dir = next(Path(s.path) for s in sources if s.provider == "main")
    task = OmegaConf.masked_copy(config, [str(k) for k in config if k != "hydra"])
    return resolve_paths(task, project_dir)


def pin_inputs(store: Any, steps: Sequence[str]) -> dict[str, str]:
    """The exact version of each ``:latest`` input the selected steps read but do not make,
    so that every trial of a sweep trains on the same data even if another pipeline logs
    a newer version meanwhile. Inputs whose default is configured (``test.model``) may be
    swept, so they are left to each trial.
    """
    made: set[str] = set()
    pins: dict[str, str] = {}
    for step in steps:
        for step_input in STEPS[step].inputs:
            if step_input.chained and step_input.config_key is None and step_input.artifact not in made:
                with contextlib.suppress(ArtifactNotFound):  # absent: the step says so, in its words
                    pins[step_input.artifact] = store.get(f"{step_input.artifact}:latest").ref
        made.update(STEPS[step].outputs)
    return pins


def pinned_ref(artifact: str) -> str:
    """The version a sweep pinned ``artifact`` to, or "" outside a trial or when not pinned."""
    trial = current_trial()
    return trial.pins.get(artifact, "") if trial else ""


def format_sweep(store: Any, sweep_id: str, metric: str, higher_is_better: bool) -> str:
    """The models a sweep's trials logged, best first, as ``trainflow sweeps show`` prints them."""
    models = sweep_models(store, sweep_id)
    if not models:
        raise TrainflowError(f"no {MODEL_ARTIFACT} version belongs to sweep {sweep_id!r}: see `trainflow sweeps list`")
    trials = [
        TrialRecord(
            int(v.metadata["sweep"].get("trial", -1)),
            dict(v.metadata["sweep"].get("params") or {}),
            "ok",
            outputs={MODEL_ARTIFACT: v.ref},
            metric=value,
        )
        for v, value in rank(models, metric, higher_is_better)
    ]
    rows = summary_rows(trials, metric, run_details=False)
    aliases = {v.ref: ", ".join(a for a in v.aliases if a != "latest") or "-" for v in models}
    rows = [(*rows[0], "aliases")] + [(*row, aliases[row[-1]]) for row in rows[1:]]  # the model is the last column
    return format_table(rows, indent="")


# -- trials on a Ray cluster (hydra/launcher=ray) ---------------------------------------

STORE_INDEX = "index.db"  # the local store's index (trainflow.store.local): a store without it is not there
# Never sent to the cluster with the driver's variables: Ray shows a job's environment in its
# dashboard and logs. Credentials belong in each node's environment (that of its `ray start`).
SECRET_WORDS = ("KEY", "TOKEN", "PASSWORD", "SECRET", "CREDENTIAL")
# The driver's variables every trial gets: the store, MLflow tracking, W&B settings, the sweep.
FORWARDED = ("TRAINFLOW_*", "MLFLOW_*", "WANDB_*")


def ray_environment(patterns: Sequence[str], environ: Any = None) -> dict[str, str]:
    """The driver's variables whose names match ``patterns`` (shell patterns), which every
    trial gets whatever its node's environment: the store, the tracking URI, the sweep.
    Names holding a credential word (:data:`SECRET_WORDS`) are left out."""
    environ = os.environ if environ is None else environ
    return {
        name: value
        for name, value in environ.items()
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)
        and not any(word in name.upper() for word in SECRET_WORDS)
    }


def trial_problem(sweep: SweepContext, node: str) -> str | None:
    """Why this node cannot run the sweep's trials, or None. A trial on another host writes
    to the sweep's local store and (unless MLflow tracking is a server) its SQLite MLflow
    database at the driver's paths: without them there it would start an empty store of its
    own, so it stops first, in one line."""
    if sweep.store is not None and not (Path(sweep.store) / STORE_INDEX).is_file():
        return (
            f"the artifact store {sweep.store} is not visible on node {node} (it has no "
            f"{Path(sweep.store) / STORE_INDEX}): trials on other hosts need the store on a path every node shares, "
            "or W&B artifacts (artifacts.backend=wandb)"
        )
    uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        return (
            f"the MLflow database {uri.removeprefix('sqlite:///')} is not visible on node {node}: trials on other "
            "hosts need MLFLOW_TRACKING_URI to name a tracking server every node reaches (or a path every node shares)"
        )
    return None


def ray_trial(task_function: Any, cfg: DictConfig) -> tuple[dict[str, Any], bool] | None:
    """One trial in its Ray task on some node, inside Hydra's ``run_job`` (the Ray launcher
    runs this in place of ``main.py``'s function): check that this node sees the sweep's
    store, run the trial (:func:`sweep_trial` records it and says how it ended), and return
    its record, which the driver keeps when this node's disk is not the driver's, and whether
    the trial ran (else the driver says why it did not: a node's output reaches the driver
    late, or after it exited)."""
    sweep = current_sweep()
    node, node_id = this_node()
    job = HydraConfig.get()
    problem = trial_problem(sweep, node) if sweep is not None else None
    if sweep is not None and problem is not None:  # stop before a run or a step starts an empty store here
        params = trial_params(list(job.overrides.task))
        failed = TrialRecord(int(job.job.num), params, "failed", problem, sweep_id=sweep.id, node=node, node_id=node_id)
        return asdict(failed), False
    task_function(cfg)
    saved = Path(job.runtime.output_dir) / TRIAL_RECORD
    return (json.loads(saved.read_text()), True) if saved.is_file() else None


def _check_reachable(address: str | None) -> None:
    """Fail in one line when nothing answers at the cluster's address: Ray itself would retry
    for minutes. ``auto`` (or none) without RAY_ADDRESS is left to Ray (this machine's cluster)."""
    target = os.environ.get("RAY_ADDRESS", "") if address in (None, "auto") else str(address)
    host, _, port = target.removeprefix("ray://").rpartition(":")
    if not host:
        return
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except (OSError, ValueError) as error:
        raise TrainflowError(f"no Ray cluster answers at {target} ({_one_line(error)}): {START_RAY}") from None


START_RAY = (
    "start one with `ray start --head` from this project's environment and give the address it prints as "
    "hydra.launcher.ray.init.address=HOST:PORT (or RAY_ADDRESS)"
)


def ray_launch(
    launcher: Any, hydra_launch: Any, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
) -> Sequence[Any]:
    """The work of trainflow's Ray launcher around Hydra's (``hydra_launch``, which sends each
    job to the cluster as a Ray task and runs it there with Hydra's ``run_job``): join the
    cluster at ``ray.init.address`` with the driver's variables (:data:`FORWARDED`) in every
    trial's environment, run each trial through :func:`ray_trial`, and write the record of a
    trial whose node wrote it on its own disk (no shared path: W&B artifacts) into its job
    folder here."""
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")  # the trials' messages differ in numbers only: show each
    if not sys.stdout.isatty():  # Ray colours the "(_run_job pid=...)" prefix of the trials' lines in a log too
        os.environ.setdefault("RAY_COLOR_PREFIX", "0")
    with exit_on_user_error("trainflow"):
        if hydra_launch is None:
            raise TrainflowError(
                "hydra/launcher=ray needs Ray and Hydra's Ray launcher: install the ray extra (make setup "
                "EXTRAS=dev,ray, or pip install -c requirements.lock -e '.[ray]')"
            )
        import ray

        joined = _join_ray_cluster(launcher.ray_cfg.init)  # else Hydra's launcher uses the connection there is
        task_function = launcher.task_function
        launcher.task_function = functools.partial(ray_trial, task_function)
        try:
            nodes = sorted(n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"])
            cpus = ray.cluster_resources().get("CPU", 0)
            each = OmegaConf.select(launcher.ray_cfg, "remote.num_cpus", default=1)
            log.info(
                f"Ray cluster at {ray.get_runtime_context().gcs_address}: {len(nodes)} node(s) "
                f"({', '.join(nodes)}), {cpus:g} CPU(s); {len(job_overrides)} trial(s), each with {each} CPU"
            )
            try:
                returns = hydra_launch(job_overrides, initial_job_idx)
            except ray.exceptions.RayError as error:  # a trial's worker died (out of memory, a lost node)
                raise TrainflowError(f"a trial's Ray task did not finish: {_one_line(error)[:300]}") from None
            for job_return in returns:
                if job_return.status == JobStatus.COMPLETED and job_return.return_value is not None:
                    record, ran = job_return.return_value
                    _keep_ray_record(record, ran, Path(str(job_return.hydra_cfg.hydra.runtime.output_dir)))
            return returns
        finally:
            launcher.task_function = task_function
            if joined:
                ray.shutdown()  # ends this sweep's workers on every node


def _join_ray_cluster(init_config: DictConfig) -> bool:
    """``ray.init`` with ``init_config`` (the launcher's ``ray.init``) and the driver's
    variables added to its ``runtime_env``; False when this process had joined one already."""
    import ray

    if ray.is_initialized():
        return False
    init: dict[str, Any] = OmegaConf.to_container(init_config, resolve=True)  # type: ignore[assignment]
    runtime_env = dict(init.pop("runtime_env", None) or {})
    runtime_env["env_vars"] = {**ray_environment(FORWARDED), **(runtime_env.get("env_vars") or {})}
    _check_reachable(init.get("address"))
    try:
        ray.init(**init, runtime_env=runtime_env, logging_level=logging.WARNING)
    except (ConnectionError, RuntimeError, ValueError) as error:
        raise TrainflowError(
            f"cannot join the Ray cluster at {init.get('address')}: {_one_line(error)}; {START_RAY}"
        ) from None
    return True


def _keep_ray_record(record: dict[str, Any], ran: bool, job_dir: Path) -> None:
    """A trial's record (:func:`ray_trial`), saved in its job folder here when its node kept
    it on its own disk; the reason it did not run, said here (its node's output may come late)."""
    if not (job_dir / TRIAL_RECORD).is_file():
        _save_record(TrialRecord(**record), job_dir)
    if not ran:
        log.info(f"trial {record['trial']} failed: {record['error']}")
