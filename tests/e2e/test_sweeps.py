"""Hyperparameter sweeps (``trainflow.pipeline.sweeps``): Hydra multirun over the pipeline.

The end-to-end tests sweep ``train_model`` on a copy of one store where ``split_data``
already ran (a module fixture), with tiny forests, through ``mlflow run`` and through
``python main.py``, one after another and with two workers.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict
from pathlib import Path

import mlflow
import pytest
from omegaconf import DictConfig
from support.project import BIN_DIR, MLFLOW, PROJECT_DIR, copy_of, error_lines, project_store, run_command
from support.sweeps import GRID, TREES, check_grid_sweep, make_split_store, sweep_of

from trainflow.config.schema import load_config, resolve_paths, validate
from trainflow.errors import ConfigError, TrainflowError
from trainflow.pipeline.sweeps import (
    SWEEP_ENV,
    SweepCallback,
    TrialRecord,
    failed_trials_message,
    format_sweep,
    hydra_arguments,
    list_sweeps,
    read_trials,
    select_best,
    trial_params,
)
from trainflow.store.local import LocalArtifactStore
from trainflow.store.records import ArtifactVersion, RunRecord
from trainflow.store.refs import CANDIDATE_ALIAS

# -- the command line and the pieces, without running a pipeline --------------------------


def test_multirun_flag_goes_first_and_joblib_takes_n_jobs_from_config() -> None:
    # -P hydra_options="... -m" ends up after main.steps, where Hydra's parser refuses overrides after it.
    assert hydra_arguments(["main.steps='train_model'", "a=1,2", "-m", "b=3"]) == [
        "-m",
        "main.steps='train_model'",
        "a=1,2",
        "b=3",
    ]
    assert hydra_arguments(["a=1,2", "hydra/launcher=joblib", "--multirun"]) == [
        "--multirun",
        "a=1,2",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=${sweep.n_jobs}",
    ]
    explicit = ["-m", "a=1,2", "hydra/launcher=joblib", "hydra.launcher.n_jobs=3"]
    assert hydra_arguments(explicit) == explicit
    assert hydra_arguments(["a=1"]) == ["a=1"]


def test_trial_params_are_the_overrides_that_shape_the_model() -> None:
    overrides = [
        "main.steps='train_model'",
        "model.random_forest.max_depth=5",
        "+model.random_forest.max_samples=0.5",
        "sweep.metric=accuracy",
        "~model.random_forest.bootstrap",
    ]
    assert trial_params(overrides) == {
        "model.random_forest.max_depth": "5",
        "model.random_forest.max_samples": "0.5",
        "model.random_forest.bootstrap": "(deleted)",
    }


def _model(
    store: LocalArtifactStore, tmp_path: Path, sweep: str | None, trial: int, validation: dict
) -> ArtifactVersion:
    """A stand-in model_export version, logged by trial ``trial`` of ``sweep`` (None: no sweep)."""
    source = tmp_path / f"model-{sweep}-{trial}"
    source.mkdir()
    (source / "MLmodel").write_text(f"{sweep} {trial}")
    metadata: dict = {"validation": validation}
    if sweep:
        metadata["sweep"] = {"id": sweep, "trial": trial, "params": {"d": str(trial)}}
    run = RunRecord(f"run-{sweep}-{trial}", "train_model")
    return store.log_artifact(source, "model_export", "model_export", metadata=metadata, run=run)


def test_the_best_model_of_a_sweep_becomes_the_candidate(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path / "store")
    _model(store, tmp_path, None, 0, {"roc_auc_ovo": 1.0, "log_loss": 0.01})  # better, but not in the sweep
    # Logged out of trial order, as parallel (joblib) trials finish: trial 2 logs before trial 1.
    scores = {0: (0.91, 0.30), 2: (0.97, 0.10), 1: (0.97, 0.20), 3: (0.80, 0.50)}
    versions = {
        t: _model(store, tmp_path, "s1", t, {"roc_auc_ovo": auc, "log_loss": loss}) for t, (auc, loss) in scores.items()
    }
    _model(store, tmp_path, "s2", 0, {"roc_auc_ovo": 0.99, "log_loss": 0.05})

    best, value = select_best(store, "s1", "roc_auc_ovo")
    # the tie at 0.97 goes to the lower trial number, though its model was logged later;
    # the better models outside the sweep do not count
    assert (best.ref, value) == (versions[1].ref, 0.97)
    assert store.get(f"model_export:{CANDIDATE_ALIAS}").ref == versions[1].ref
    best, value = select_best(store, "s1", "val_log_loss", higher_is_better=False)
    assert (best.ref, value) == (versions[2].ref, 0.10)
    assert store.get(f"model_export:{CANDIDATE_ALIAS}").ref == versions[2].ref

    with pytest.raises(TrainflowError, match=r"no validation metric 'r2'.*log_loss, roc_auc_ovo"):
        select_best(store, "s1", "r2")
    with pytest.raises(TrainflowError, match="no model_export version belongs to sweep 'nope'"):
        select_best(store, "nope", "roc_auc_ovo")
    assert [(sweep, count) for sweep, count, _ in list_sweeps(store)] == [("s1", 4), ("s2", 1)]
    shown = format_sweep(store, "s1", "roc_auc_ovo", True).splitlines()
    assert shown[0].split() == ["trial", "d", "val_roc_auc_ovo", "model", "aliases"]
    assert [line.split()[0] for line in shown[1:]] == ["1", "2", "0", "3"]  # best first
    assert shown[2].split()[-1] == CANDIDATE_ALIAS


def test_opening_a_sweep_makes_its_run_its_w_and_b_group_and_pins_its_inputs(
    store_env: dict[str, str], tmp_path: Path
) -> None:
    from hydra import compose, initialize_config_dir

    from trainflow.config.schema import register_schema

    home = Path(store_env["TRAINFLOW_HOME"])
    table = tmp_path / "trainval.parquet"
    table.write_bytes(b"PAR1 not really")
    trainval = project_store(home).log_artifact(table, "trainval_data.parquet", "dataset")
    register_schema()
    with initialize_config_dir(config_dir=str(PROJECT_DIR), version_base="1.3"):
        config = compose(
            config_name="config", overrides=["main.steps='train_model,test_model'"], return_hydra_config=True
        )

    callback = SweepCallback()
    saved = dict(os.environ)  # the callback sets the variables its trials inherit
    try:
        for variable in (SWEEP_ENV, "WANDB_RUN_GROUP", "MLFLOW_RUN_ID"):
            os.environ.pop(variable, None)
        callback.on_multirun_start(config)
        environment = dict(os.environ)
    finally:
        os.environ.clear()
        os.environ.update(saved)

    sweep = callback.sweep
    assert sweep is not None and json.loads(environment[SWEEP_ENV])["id"] == sweep.id
    assert environment["WANDB_RUN_GROUP"] == f"sweep-{sweep.id}"
    # train_model's input is pinned; test_model's model comes from train_model, its test set is absent
    assert sweep.pins == {"trainval_data.parquet": trainval.ref}
    run = mlflow.MlflowClient(store_env["MLFLOW_TRACKING_URI"]).get_run(sweep.parent_run_id)
    assert run.data.tags["trainflow.step"] == "sweep" and run.data.tags["trainflow.sweep_id"] == sweep.id
    assert run.info.run_name == f"sweep-{sweep.id}" and run.info.status == "RUNNING"


# -- end to end ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def split_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_split_store(tmp_path_factory.mktemp("sweeps") / "home")


def test_sequential_sweep_through_mlflow_run_then_test_and_promote_the_candidate(
    split_store: Path, tmp_path: Path
) -> None:
    home, env = copy_of(split_store, tmp_path)
    swept = run_command(
        [
            MLFLOW,
            "run",
            ".",
            "--env-manager",
            "local",
            "--experiment-name",
            "trainflow",
            "-P",
            "steps=train_model",
            "-P",
            f"hydra_options={GRID} main.select_best=true -m",
        ],
        env,
    )
    assert swept.returncode == 0, swept.stdout[-4000:] + swept.stderr[-3000:]
    output = swept.stdout + swept.stderr
    _, models = check_grid_sweep(home, env, output)
    assert "Launching 4 jobs locally" in output
    table = output[output.index("4 of 4 trial(s) succeeded") :].splitlines()[1:6]
    assert table[0].split()[:4] == [
        "trial",
        "status",
        "model.random_forest.max_depth",
        "model.random_forest.n_estimators",
    ]
    assert [row.split()[1] for row in table[1:]] == ["ok"] * 4

    # tune -> test -> promote without naming a version: test_model and promote_model take the candidate
    candidate = project_store(home).get(f"model_export:{CANDIDATE_ALIAS}")
    promoted = run_command(
        [
            MLFLOW,
            "run",
            ".",
            "--env-manager",
            "local",
            "--experiment-name",
            "trainflow",
            "-P",
            "steps=test_model,promote_model",
        ],
        env,
    )
    assert promoted.returncode == 0, promoted.stdout[-4000:] + promoted.stderr[-3000:]
    assert f"[test_model] using {candidate.ref}" in promoted.stdout  # the runner pins the alias it resolved
    store = project_store(home)
    assert store.get("model_export:prod").ref == candidate.ref
    assert store.get(candidate.ref).metadata["test"]["test_data"] == "test_data.parquet:v0"
    assert len(store.list_versions("model_export")) == len(models)


def test_parallel_sweep_with_two_workers_through_main_py(split_store: Path, tmp_path: Path) -> None:
    home, env = copy_of(split_store, tmp_path)
    # the same grid in Hydra's range and choice syntax
    grid = ["model.random_forest.max_depth=range(2,7,4)", f"model.random_forest.n_estimators=choice({','.join(TREES)})"]
    swept = run_command(
        [
            str(BIN_DIR / "python"),
            "main.py",
            "-m",
            "main.steps=train_model",
            *grid,
            "hydra/launcher=joblib",
            "main.select_best=true",
        ],
        env,
    )
    assert swept.returncode == 0, swept.stdout[-4000:] + swept.stderr[-3000:]
    output = swept.stdout + swept.stderr
    check_grid_sweep(home, env, output)
    assert "Joblib.Parallel(n_jobs=2," in output  # sweep.n_jobs from config.yaml
    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    _, parent_id = sweep_of(output)
    parent = client.get_run(parent_id)
    # without `mlflow run`, the sweep made its own run and finished it
    assert parent.info.status == "FINISHED"
    trials = client.search_runs([parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent_id}'")
    spans = sorted((r.info.start_time, r.info.end_time) for r in trials)
    assert any(later[0] < earlier[1] for earlier, later in zip(spans, spans[1:])), "no two trials ran at once"


def test_a_failing_trial_is_reported_and_does_not_stop_the_others(split_store: Path, tmp_path: Path) -> None:
    home, env = copy_of(split_store, tmp_path)
    # trial 0 fails (a forest of no trees); trial 1 runs after it all the same
    swept = run_command(
        [str(BIN_DIR / "python"), "main.py", "-m", "main.steps=train_model", "model.random_forest.n_estimators=0,4"],
        env,
    )
    assert swept.returncode == 1, swept.stdout[-4000:] + swept.stderr[-3000:]
    output = swept.stdout + swept.stderr
    sweep_id, parent_id = sweep_of(output)
    assert "1 of 2 trial(s) succeeded" in swept.stdout
    rows = [line.split() for line in swept.stdout.splitlines() if re.match(r"^  [01] ", line)]
    assert [row[:3] for row in rows] == [["0", "failed", "0"], ["1", "ok", "4"]]
    # the bad value fails the trial at its start, before any step of it runs
    assert "RandomForestClassifier's n_estimators must be an int" in " ".join(rows[0])
    assert error_lines(swept.stderr)[-1].startswith(
        f"trainflow: error: 1 of 2 trial(s) of sweep {sweep_id} failed (trial 0: model.random_forest.n_estimators=0 is not valid:"
    )
    store = project_store(home)
    models = store.list_versions("model_export")
    assert [(m.metadata["sweep"]["trial"], m.aliases) for m in models] == [(1, ("latest",))]
    assert f"trainflow sweeps best {sweep_id} --metric roc_auc_ovo" in swept.stdout  # no select_best: a hint
    assert store.verify().problems == []

    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    assert client.get_run(parent_id).info.status == "FAILED"
    failed = client.search_runs(
        [client.get_run(parent_id).info.experiment_id],
        f"tags.`trainflow.sweep_id` = '{sweep_id}' and attributes.status = 'FAILED'",
    )
    # the sweep's own run fails with it: one of its trials failed
    assert sorted(r.info.run_name for r in failed) == [f"sweep-{sweep_id}", "trial-0"]
    record = json.loads(next((home / "hydra" / "multirun").glob("*/0/trial.json")).read_text())
    assert record["status"] == "failed" and record["run_id"] in {r.info.run_id for r in failed}

    chosen = run_command([str(BIN_DIR / "trainflow"), "sweeps", "best", sweep_id, "--metric", "roc_auc_ovo"], env)
    assert chosen.returncode == 0, chosen.stderr
    assert chosen.stdout.startswith(f"model_export:candidate -> {models[0].ref} (trial 1 of sweep {sweep_id}")
    assert project_store(home).get("model_export:candidate").ref == models[0].ref


def _sweep_runs(env: dict[str, str]) -> list:
    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(experiments, "tags.`trainflow.step` = 'sweep'") if experiments else []


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("model.random_forest.max_dept=2,3", "Key 'max_dept' is not in struct"),
        ("split.test_size=0.2,abc", "'abc' of type 'str' could not be converted to Float"),
    ],
)
def test_a_bad_key_or_type_in_a_sweep_fails_in_one_line_before_it_starts(
    store_env: dict[str, str], override: str, expected: str
) -> None:
    result = run_command([str(BIN_DIR / "python"), "main.py", "-m", "main.steps=train_model", override], store_env)
    assert result.returncode == 1
    assert "HYDRA_FULL_ERROR" not in result.stderr and "[sweep]" not in result.stdout
    [line] = error_lines(result.stderr)
    assert line.startswith("trainflow: error: bad configuration override") and expected in line


def test_a_sweep_that_cannot_start_or_is_stopped_leaves_no_running_run(store_env: dict[str, str]) -> None:
    # what no trial can change fails before the sweep's run exists ...
    bad = run_command(
        [str(BIN_DIR / "python"), "main.py", "-m", "main.steps=bogus", "model.random_forest.max_depth=2,3"], store_env
    )
    assert bad.returncode == 1 and error_lines(bad.stderr)[0].startswith("trainflow: error: unknown step 'bogus'")
    no_jobs = run_command(
        [
            str(BIN_DIR / "python"),
            "main.py",
            "-m",
            "main.steps=train_model",
            "model.random_forest.max_depth=2,3",
            "hydra/launcher=joblib",
            "sweep.n_jobs=0",
        ],
        store_env,
    )
    assert no_jobs.returncode == 1 and "Traceback" not in no_jobs.stderr
    assert error_lines(no_jobs.stderr) == [
        "trainflow: error: sweep.n_jobs=0 must be at least 1 (trials at once with hydra/launcher=joblib)"
    ]
    assert _sweep_runs(store_env) == []
    # ... and a sweep Hydra stops half-way (here its launcher refuses to start) fails its run
    stopped = run_command(
        [
            str(BIN_DIR / "python"),
            "main.py",
            "-m",
            "main.steps=train_model",
            "model.random_forest.max_depth=2,3",
            "hydra/launcher=joblib",
            "hydra.launcher.n_jobs=0",
        ],
        store_env,
    )
    assert stopped.returncode == 1
    assert [r.info.status for r in _sweep_runs(store_env)] == ["FAILED"]


def test_an_error_metric_is_never_compared_as_a_score(tmp_path: Path, store_env: dict[str, str]) -> None:
    """Comparing log_loss as a score would crown the worst trial: refused in the config and
    on the command line, each naming the switch that fixes it."""

    def config(*overrides: str) -> DictConfig:
        return resolve_paths(load_config(PROJECT_DIR, list(overrides)), PROJECT_DIR)

    with pytest.raises(ConfigError, match="sweep.metric=log_loss is better lower: set sweep.higher_is_better=false"):
        validate(config("sweep.metric=log_loss", "sweep.higher_is_better=true"), estimator_params=False)
    validate(config("sweep.metric=log_loss", "sweep.higher_is_better=false"), estimator_params=False)
    validate(config("sweep.metric=log_loss"), estimator_params=False)  # null: the metric's own direction

    store = LocalArtifactStore(tmp_path / "store")
    for trial, loss in enumerate((0.3, 0.1)):
        (tmp_path / f"m{trial}").mkdir()
        (tmp_path / f"m{trial}" / "MLmodel").write_text(str(trial))
        store.log_artifact(
            tmp_path / f"m{trial}",
            "model_export",
            "model_export",
            metadata={"validation": {"log_loss": loss}, "sweep": {"id": "s1", "trial": trial, "params": {}}},
        )
    best = [str(BIN_DIR / "trainflow"), "--root", str(store.root), "sweeps", "best", "s1", "--metric", "log_loss"]
    refused = run_command(best, store_env)
    assert refused.returncode == 1
    assert error_lines(refused.stderr) == ["trainflow: error: --metric log_loss is better lower: add --lower-is-better"]
    chosen = run_command([*best, "--lower-is-better", "--json"], store_env)
    assert chosen.returncode == 0, chosen.stderr
    assert store.get("model_export:candidate").ref == "model_export:v1"
    assert json.loads(chosen.stdout) == {
        "alias": "model_export:candidate",
        "version": "model_export:v1",
        "sweep": "s1",
        "trial": 1,
        "metric": "val_log_loss",
        "value": pytest.approx(store.get("model_export:v1").metadata["validation"]["log_loss"]),
    }


def test_a_reused_sweep_folder_reports_only_this_sweeps_trials(tmp_path: Path) -> None:
    folder = tmp_path / "sweep"

    def job(number: int, sweep_id: str) -> None:
        (folder / str(number) / ".hydra").mkdir(parents=True, exist_ok=True)
        (folder / str(number) / ".hydra" / "overrides.yaml").write_text(f"- a={number}\n")
        record = TrialRecord(number, {"a": str(number)}, "ok", sweep_id=sweep_id)
        (folder / str(number) / "trial.json").write_text(json.dumps(asdict(record)))

    for number in range(3):
        job(number, "old")  # an earlier sweep of 3 trials in the same hydra.sweep.dir
    job(0, "new")  # this sweep has one trial
    assert [(t.trial, t.sweep_id) for t in read_trials(folder, "new")] == [(0, "new")]


def test_the_model_of_a_failed_trial_is_not_chosen(split_store: Path, tmp_path: Path) -> None:
    home, env = copy_of(split_store, tmp_path)
    # Both trials train the same model (a tie: the earlier trial would win); trial 0 then fails
    # at promote_model (a bound no model meets, and CI's switch), trial 1 succeeds.
    swept = run_command(
        [
            str(BIN_DIR / "python"),
            "main.py",
            "-m",
            "main.steps='train_model,test_model,promote_model'",
            "model.random_forest.n_estimators=5",
            "promote.thresholds.roc_auc_ovo=1.1,0.5",
            "main.select_best=true",
            "promote.fail_if_not_promoted=true",
        ],
        env,
    )
    assert swept.returncode == 1, swept.stdout[-4000:] + swept.stderr[-3000:]
    assert "1 of 2 trial(s) succeeded" in swept.stdout
    store = project_store(home)
    trial_of = {m.ref: m.metadata["sweep"]["trial"] for m in store.list_versions("model_export")}
    assert trial_of[store.get("model_export:candidate").ref] == 1


def test_the_sweep_error_points_at_other_trials_only_when_some_succeeded() -> None:
    ok, bad = TrialRecord(1, {}, "ok"), TrialRecord(0, {}, "failed", "n_estimators=0 is refused")
    assert failed_trials_message("s1", [bad, ok]) == (
        "1 of 2 trial(s) of sweep s1 failed (trial 0: n_estimators=0 is refused); "
        "the other trials are logged, see the table above"
    )
    every = failed_trials_message("s1", [bad, TrialRecord(1, {}, "lost")])
    assert every.startswith("2 of 2 trial(s) of sweep s1 failed (trial 0:") and "other trials" not in every
