"""Sweeps on a Ray cluster: ``hydra/launcher=ray``, Hydra's Ray launcher with trainflow's
additions (``src/hydra_plugins/trainflow_ray_launcher``, ``trainflow.pipeline.sweeps.ray_launch``).

The slow tests start a real cluster on loopback addresses of this machine
(``support.ray_cluster``): a head node on 127.0.0.2 and a worker node on 127.0.0.3, one CPU
each, so that a 4-trial sweep runs two trials at a time, one on each; and a third node on
127.0.0.4 in a mount namespace of its own, where pytest's temporary folder (every store of
these tests) is covered by an empty file system, as on a host without the shared path. It
has no CPU but the cluster's one ``blind`` resource, so a trial goes there only when its sweep asks.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
from support.processes import free_port
from support.project import BIN_DIR, MLFLOW, PROJECT_DIR, copy_of, error_lines, project_store, run_command
from support.ray_cluster import RAY, RayCluster, can_hide_folders, ray_cluster, run_measured
from support.sweeps import GRID, check_grid_sweep, make_split_store, sweep_of

from trainflow.pipeline.sweeps import (
    NODE_ID_TAG,
    NODE_TAG,
    SweepContext,
    TrialRecord,
    ray_environment,
    ray_launch,
    summary_rows,
    trial_problem,
)

HEAD, WORKER, BLIND = "127.0.0.2", "127.0.0.3", "127.0.0.4"
MEASUREMENTS = PROJECT_DIR / ".test-artifacts" / "ray-sweeps" / "measurements.json"


# -- without a cluster ----------------------------------------------------------------------


def test_trials_get_the_drivers_settings_but_never_its_credentials() -> None:
    environ = {
        "TRAINFLOW_HOME": "/shared/store",
        "TRAINFLOW_SWEEP": "{}",
        "MLFLOW_TRACKING_URI": "http://tracking:5000",
        "MLFLOW_TRACKING_PASSWORD": "hunter2",
        "MLFLOW_TRACKING_TOKEN": "t",
        "WANDB_PROJECT": "p",
        "WANDB_API_KEY": "k",
        "AWS_SECRET_ACCESS_KEY": "s",
        "HOME": "/root",
    }
    assert ray_environment(["TRAINFLOW_*", "MLFLOW_*", "WANDB_*"], environ) == {
        "TRAINFLOW_HOME": "/shared/store",
        "TRAINFLOW_SWEEP": "{}",
        "MLFLOW_TRACKING_URI": "http://tracking:5000",
        "WANDB_PROJECT": "p",
    }
    assert ray_environment(["HOME"], environ) == {"HOME": "/root"}


def test_without_the_ray_extra_the_launcher_says_how_to_install_it(capsys: pytest.CaptureFixture[str]) -> None:
    """Without hydra-ray-launcher the plugin module still imports (Hydra imports every plugin
    whenever it starts), and a sweep with hydra/launcher=ray stops in one line."""
    with pytest.raises(SystemExit) as stopped:
        ray_launch(launcher=None, hydra_launch=None, job_overrides=[["a=1"]], initial_job_idx=0)
    assert stopped.value.code == 1
    assert error_lines(capsys.readouterr().err) == [
        "trainflow: error: hydra/launcher=ray needs Ray and Hydra's Ray launcher: install the ray extra (make setup "
        "EXTRAS=dev,ray, or pip install -c requirements.lock -e '.[ray]')"
    ]


def test_the_summary_shows_the_node_only_when_trials_ran_on_several() -> None:
    one = [TrialRecord(t, {"d": str(t)}, "ok", node="host-a", seconds=1.0) for t in range(2)]
    assert "node" not in summary_rows(one, "roc_auc_ovo")[0]
    two = [TrialRecord(t, {"d": str(t)}, "ok", node=f"127.0.0.{2 + t}", seconds=1.0) for t in range(2)]
    rows = summary_rows(two, "roc_auc_ovo")
    column = rows[0].index("node")
    assert [row[column] for row in rows[1:]] == ["127.0.0.2", "127.0.0.3"]


def test_a_node_without_the_sweeps_store_or_mlflow_database_is_named_with_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = tmp_path / "store"
    (store / "hydra").mkdir(parents=True)  # Hydra makes a trial's job folder there: the store is its index
    sweep = SweepContext("s1", "run", store=str(store))
    assert trial_problem(sweep, "10.0.0.7") == (
        f"the artifact store {store} is not visible on node 10.0.0.7 (it has no {store / 'index.db'}): trials on "
        "other hosts need the store on a path every node shares, or W&B artifacts (artifacts.backend=wandb)"
    )
    (store / "index.db").touch()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'elsewhere' / 'mlflow.db'}")
    assert trial_problem(sweep, "10.0.0.7") == (
        f"the MLflow database {tmp_path / 'elsewhere' / 'mlflow.db'} is not visible on node 10.0.0.7: trials on "
        "other hosts need MLFLOW_TRACKING_URI to name a tracking server every node reaches (or a path every node "
        "shares)"
    )
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking.internal:5000")
    assert trial_problem(sweep, "10.0.0.7") is None
    # W&B artifacts: no store to see
    assert trial_problem(SweepContext("s1", "run", store=None), "10.0.0.7") is None


# -- on a cluster ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayCluster]:
    if not RAY.exists():
        pytest.skip("the ray extra is not installed (make test-slow installs it)")
    blind = (BLIND, tmp_path_factory.getbasetemp()) if can_hide_folders() else None
    with ray_cluster([(HEAD, 1), (WORKER, 1)], blind=blind) as started:
        yield started


@pytest.fixture(scope="module")
def split_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_split_store(tmp_path_factory.mktemp("ray-sweeps") / "home")


@pytest.mark.slow
def test_a_sweep_through_mlflow_run_runs_its_trials_on_two_ray_nodes(
    cluster: RayCluster, split_store: Path, tmp_path: Path
) -> None:
    home, env = copy_of(split_store, tmp_path)
    options = f"{GRID} hydra/launcher=ray hydra.launcher.ray.init.address={cluster.address} main.select_best=true -m"
    command = [MLFLOW, "run", ".", "--env-manager", "local", "--experiment-name", "trainflow"]
    measured = run_measured([*command, "-P", "steps=train_model", "-P", f"hydra_options={options}"], env, cluster)
    swept = measured.result
    figures = {
        "wall_seconds": round(measured.seconds, 1),
        "peak_rss_mib": round(measured.peak_bytes / 2**20),  # the sweep's processes and the cluster's
        "idle_cluster_rss_mib": round(measured.idle_bytes / 2**20),
    }
    MEASUREMENTS.parent.mkdir(parents=True, exist_ok=True)
    MEASUREMENTS.write_text(json.dumps(figures, indent=2) + "\n")  # kept for a human
    print(f"[ray sweep] 4 trials on 2 nodes: {json.dumps(figures)} ({MEASUREMENTS})")
    assert swept.returncode == 0, swept.stdout[-4000:] + swept.stderr[-4000:]
    output = swept.stdout + swept.stderr
    assert f"Ray cluster at {cluster.address}: {len(cluster.nodes)} node(s)" in output
    # 4 models with their parameters, the best one the candidate, nested FINISHED runs, the
    # summary, each trial's log in its job folder, a sound store (store.verify())
    sweep_id, models = check_grid_sweep(home, env, output)

    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    _, parent_id = sweep_of(output)
    experiment = client.get_run(parent_id).info.experiment_id
    trials = client.search_runs([experiment], f"tags.`mlflow.parentRunId` = '{parent_id}'")
    assert len(trials) == 4 and all(r.info.status == "FINISHED" for r in trials)
    nodes = {r.data.tags["trainflow.sweep.trial"]: r.data.tags[NODE_TAG] for r in trials}
    assert set(nodes.values()) == {HEAD, WORKER}, nodes  # both nodes ran trials, the blind one none
    assert len({r.data.tags[NODE_ID_TAG] for r in trials}) == 2
    # each trial's step runs carry its node too, and so does its record
    steps = client.search_runs(
        [experiment], f"tags.`trainflow.sweep_id` = '{sweep_id}' and tags.`trainflow.step` = 'train_model'"
    )
    assert {(r.data.tags["trainflow.sweep.trial"], r.data.tags[NODE_TAG]) for r in steps} == set(nodes.items())
    records = [json.loads(p.read_text()) for p in (home / "hydra" / "multirun").glob("*/*/trial.json")]
    assert {str(r["trial"]): r["node"] for r in records} == nodes
    assert all(r["status"] == "ok" and r["node_id"] and r["sweep_id"] == sweep_id for r in records)
    header = next(line for line in swept.stdout.splitlines() if line.startswith("  trial  status"))
    assert header.split()[-1] == "node"  # the summary's last column: trials ran on two nodes
    assert project_store(home).verify().problems == []


@pytest.mark.slow
def test_a_trial_on_a_node_that_cannot_see_the_store_fails_at_once_in_one_line(
    cluster: RayCluster, split_store: Path, tmp_path: Path
) -> None:
    if BLIND not in cluster.nodes:
        pytest.skip("this machine cannot start a node in a mount namespace of its own (unshare, as root)")
    home, env = copy_of(split_store, tmp_path)
    swept = run_measured(
        [
            str(BIN_DIR / "python"),
            "main.py",
            "-m",
            "main.steps=train_model",
            "model.random_forest.n_estimators=3,4",
            "hydra/launcher=ray",
            f"hydra.launcher.ray.init.address={cluster.address}",
            # only the node that cannot see the store has this resource
            "hydra.launcher.ray.remote.num_cpus=0",
            "+hydra.launcher.ray.remote.resources.blind=1",
        ],
        env,
        cluster,
    ).result
    assert swept.returncode == 1, swept.stdout[-4000:] + swept.stderr[-4000:]
    sweep_id, _ = sweep_of(swept.stdout + swept.stderr)
    problem = (
        f"the artifact store {home} is not visible on node {BLIND} (it has no {home / 'index.db'}): "
        "trials on other hosts need the store on a path every node shares, or W&B artifacts (artifacts.backend=wandb)"
    )
    assert f"[sweep] trial 0 failed: {problem}" in swept.stdout
    assert error_lines(swept.stderr) == [
        f"trainflow: error: 2 of 2 trial(s) of sweep {sweep_id} failed (trial 0: {problem}); see the table above"
    ]
    records = sorted(
        (json.loads(p.read_text()) for p in (home / "hydra" / "multirun").glob("*/*/trial.json")),
        key=lambda record: record["trial"],
    )
    assert [(r["trial"], r["status"], r["error"], r["node"]) for r in records] == [
        (0, "failed", problem, BLIND),
        (1, "failed", problem, BLIND),
    ]
    # at once: no trial opened a run or ran a step, no model was logged
    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments, f"tags.`trainflow.sweep_id` = '{sweep_id}'")
    assert [r.data.tags["trainflow.step"] for r in runs] == ["sweep"]
    assert "model_export" not in {name for name, _, _ in project_store(home).list_names()}
    assert project_store(home).verify().problems == []


@pytest.mark.slow
def test_a_sweep_without_a_cluster_fails_in_one_line(store_env: dict[str, str]) -> None:
    if not RAY.exists():
        pytest.skip("the ray extra is not installed (make test-slow installs it)")
    address = f"127.0.0.2:{free_port()}"  # nothing listens there: Ray itself would retry for minutes
    result = run_command(
        [str(BIN_DIR / "python"), "main.py", "-m", "main.steps=train_model", "model.random_forest.max_depth=2,3"]
        + ["hydra/launcher=ray", f"hydra.launcher.ray.init.address={address}"],
        store_env,
        timeout=120,
    )
    assert result.returncode == 1
    [line] = error_lines(result.stderr)
    assert line.startswith(f"trainflow: error: no Ray cluster answers at {address} (")
    assert line.endswith("give the address it prints as hydra.launcher.ray.init.address=HOST:PORT (or RAY_ADDRESS)")


@pytest.mark.slow
def test_a_trial_whose_worker_dies_stops_the_sweep_in_one_line(
    cluster: RayCluster, split_store: Path, tmp_path: Path
) -> None:
    """A worker killed mid-trial (as the OOM killer would) is not retried: Hydra's launcher
    stops the sweep, trainflow says so in one line, and the sweep's run is FAILED."""
    home, env = copy_of(split_store, tmp_path)
    command = [str(BIN_DIR / "python"), "main.py", "-m", "main.steps=train_model"]
    command += ["model.random_forest.n_estimators=300,301", "hydra/launcher=ray"]
    command += [f"hydra.launcher.ray.init.address={cluster.address}"]
    sweep = subprocess.Popen(
        command, cwd=PROJECT_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 120
        while not (trials := _running_trials(cluster)) and time.monotonic() < deadline and sweep.poll() is None:
            time.sleep(0.2)
        assert trials, "no trial started"
        os.kill(trials[0], signal.SIGKILL)
        out, err = sweep.communicate(timeout=300)
    finally:
        if sweep.poll() is None:
            sweep.kill()
    assert sweep.returncode == 1, out[-3000:] + err[-3000:]
    [line] = error_lines(err)
    assert line.startswith("trainflow: error: a trial's Ray task did not finish: "), line
    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    experiments = [e.experiment_id for e in client.search_experiments()]
    [run] = client.search_runs(experiments, "tags.`trainflow.step` = 'sweep'")
    assert run.info.status == "FAILED"
    assert project_store(home).verify().problems == []


def _running_trials(cluster: RayCluster) -> list[int]:
    """The cluster's workers running a trial now (Ray titles such a process ``ray::_run_job``)."""
    running = []
    for pid in cluster.processes():
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"ray::_run_job"):
                running.append(pid)
    return running
