"""Hyperparameter sweeps: Hydra's multirun over the pipeline, one trial per job.

    mlflow run . -P steps=train_model -P hydra_options="model.random_forest.max_depth=5,10,20 -m"
    python main.py -m main.steps=train_model model.random_forest.max_depth=5,10 hydra/launcher=joblib

Hydra expands the sweep into jobs and its launcher runs them (one after another, or in
worker processes with ``hydra/launcher=joblib``); each job runs the selected steps as an
ordinary pipeline. This module makes the jobs one sweep:

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
"""

from __future__ import annotations

import atexit
import contextlib
import json
import math
import os
import secrets
import time
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
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
    return {SWEEP_ID_TAG: trial.id, TRIAL_TAG: str(trial.trial)}


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
    trial = replace(sweep, trial=int(job.job.num), params=trial_params(list(job.overrides.task)))
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
    ``run_details``, also status, seconds and (when a trial failed) the errors."""
    keys = list(dict.fromkeys(key for trial in trials for key in trial.params))
    varying = [k for k in keys if len({trial.params.get(k) for trial in trials}) > 1] or keys
    errors = run_details and any(trial.error for trial in trials)
    header = ["trial", *(["status"] if run_details else []), *varying, f"val_{metric.removeprefix('val_')}", "model"]
    rows: list[tuple[str, ...]] = [(*header, *(["seconds"] if run_details else []), *(["error"] if errors else []))]
    for trial in trials:
        row = [str(trial.trial), *([trial.status] if run_details else []), *(trial.params.get(k, "-") for k in varying)]
        row += [f"{trial.metric:.4f}" if trial.metric is not None else "-", trial.model or "-"]
        if run_details:
            row.append(f"{trial.seconds:.1f}" if trial.seconds is not None else "-")
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
        pins = pin_inputs(read_store(cfg, local), steps)
        self.sweep = SweepContext(sweep_id, parent, pins)
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
