"""Faults a flaky machine and a busy team produce, through real `mlflow run` processes:
a step SIGKILLed while it logs an artifact (20 times, at different moments), and four
pipelines sharing one store and one MLflow database at once. Slow: `make test-slow`
and CI run them.
"""

from __future__ import annotations

import collections
import contextlib
import os
import queue
import random
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from support.project import MLFLOW, PROJECT_DIR, pipeline_env, project_store, run_command

pytestmark = pytest.mark.slow

KILLS = 20


def big_table(path: Path, rows: int = 1_500_000) -> Path:
    """A penguins-shaped CSV of ~90 MB, so that logging it takes long enough to be interrupted."""
    penguins = pd.read_csv(PROJECT_DIR / "data" / "penguins.csv")
    picks = np.random.default_rng(0).integers(0, len(penguins), rows)
    penguins.iloc[picks].to_csv(path, index=False)
    return path


def assert_store_whole(home: Path) -> list[int]:
    """The store opens, verifies clean, and every version reads back; returns raw_data's versions."""
    store = project_store(home)
    report = store.verify()
    assert report.ok, report.problems
    versions = [v.version for v in store.list_versions("raw_data")] if store.list_names() else []
    assert versions == list(range(len(versions))), f"version numbers have a gap: {versions}"
    if versions:
        assert store.get("raw_data:latest").version == versions[-1]
    return versions


def test_a_step_killed_while_logging_leaves_no_partial_version(tmp_path: Path) -> None:
    """SIGKILL `mlflow run components/fetch_data` (and its step process) at 20 moments
    around the artifact write: each time the store stays whole, and the next run works."""
    home = tmp_path / "home"
    env = pipeline_env(home)
    source = big_table(tmp_path / "big.csv")
    command = [
        MLFLOW,
        "run",
        str(PROJECT_DIR / "components" / "fetch_data"),
        "--env-manager",
        "local",
        "--experiment-name",
        "trainflow",
        "-P",
        f"hydra_options=dataset=penguins data.uri={source}",
    ]

    def start() -> tuple[subprocess.Popen[str], queue.Queue[tuple[float, str]]]:
        process = subprocess.Popen(
            command,
            cwd=PROJECT_DIR,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        lines: queue.Queue[tuple[float, str]] = queue.Queue()
        threading.Thread(
            target=lambda: [lines.put((time.monotonic(), line)) for line in process.stdout], daemon=True
        ).start()
        return process, lines

    def wait_for(lines: queue.Queue[tuple[float, str]], prefix: str) -> float:
        deadline = time.monotonic() + 180
        while True:
            at, line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            if line.startswith(prefix):
                return at

    # Calibrate: how long the step spends between having the table and having logged it.
    process, lines = start()
    fetched = wait_for(lines, "[fetch_data] fetched")
    window = wait_for(lines, "[fetch_data] logged") - fetched
    assert process.wait(timeout=120) == 0
    rng = random.Random(20)
    delays = sorted(rng.uniform(0.0, 1.3 * window) for _ in range(KILLS))
    outcomes: list[str] = []
    for delay in delays:
        before = assert_store_whole(home)
        process, lines = start()
        wait_for(lines, "[fetch_data] fetched")  # the step has the table and is about to log it
        time.sleep(delay)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        after = assert_store_whole(home)
        assert len(after) - len(before) in (0, 1)
        killed = process.returncode == -signal.SIGKILL
        outcomes.append(("killed" if killed else "finished") + (", committed" if len(after) > len(before) else ""))
    assert sum(o.startswith("killed") for o in outcomes) >= KILLS // 2, f"most runs ended before the kill: {outcomes}"
    survivor = run_command(command, env)
    assert survivor.returncode == 0, survivor.stdout[-2000:] + survivor.stderr[-2000:]
    final = assert_store_whole(home)
    assert final[-1] == 1 + sum(o.endswith("committed") for o in outcomes)
    store = project_store(home)
    assert store.get("raw_data:latest").metadata["rows"] == 1_500_000
    leftovers = [p for p in store.tmp.iterdir()]
    repaired = store.verify(repair=True, grace_seconds=0)
    assert repaired.ok and not any(p.exists() for p in leftovers), "killed writers' garbage is removable"
    print(
        f"write window {window:.2f} s; kills: {dict(collections.Counter(outcomes))}; "
        f"garbage removed: {len(repaired.removed)}"
    )


def test_four_pipelines_share_one_store_and_one_mlflow_database(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = pipeline_env(home)
    pipelines = 4
    processes = [
        subprocess.Popen(
            [
                MLFLOW,
                "run",
                ".",
                "--env-manager",
                "local",
                "--experiment-name",
                "trainflow",
                # main.cache=false: every pipeline writes every step, so the writers really race
                "-P",
                f"hydra_options=model.random_forest.n_estimators={10 + index} split.random_seed={index} main.cache=false",
            ],
            cwd=PROJECT_DIR,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for index in range(pipelines)
    ]
    outputs = [process.communicate(timeout=1200) for process in processes]
    for process, (stdout, stderr) in zip(processes, outputs):
        assert process.returncode == 0, stdout[-2000:] + stderr[-3000:]

    store = project_store(home)
    assert store.verify().ok
    for name in ("raw_data", "data_check_report", "trainval_data.parquet", "test_data.parquet", "model_export"):
        versions = [v.version for v in store.list_versions(name)]
        assert versions == list(range(pipelines)), f"{name}: {versions}"
    # Each pipeline used its own versions end to end: the models it logged are all distinct.
    logged = [re.search(r"logged: (.*)", stdout).group(1).split(", ") for stdout, _ in outputs]
    models = [next(ref for ref in refs if ref.startswith("model_export:")) for refs in logged]
    assert len(set(models)) == pipelines
    for refs in logged:
        model = store.get(next(ref for ref in refs if ref.startswith("model_export:")))
        trained_on = {v.ref for v in store.inputs_of(model)}
        assert trained_on & set(refs), f"{model.ref} was trained on another pipeline's data: {trained_on}"
    # Aliases end consistent: prod names a model whose latest decision promoted it.
    prod = store.get("model_export:prod")
    decisions = store.promotions("model_export", "prod")
    assert len(decisions) >= pipelines
    moved = [d for d in decisions if d.after != d.before]
    assert moved and moved[-1].after == prod.ref
    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name("trainflow").experiment_id
    runs = client.search_runs([experiment], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("trainflow.step") == "pipeline"]
    assert len(parents) == pipelines and all(r.info.status == "FINISHED" for r in runs)
    assert len(runs) == pipelines * 7  # a parent and six steps each


@pytest.mark.parametrize("how", ["ctrl-c on mlflow run", "sigterm to python main.py"])
def test_an_interrupted_pipeline_closes_its_runs_and_says_so_in_one_line(tmp_path: Path, how: str) -> None:
    """Ctrl-C on `mlflow run .` reaches main.py as SIGINT and, at once, as MLflow's SIGTERM
    (its cancel); a CI job or `docker stop` sends SIGTERM alone. Either way the step's and
    the pipeline's MLflow runs end (none left RUNNING), the step's temporary folder goes,
    and the process says it stopped in one line, not a traceback."""
    home = tmp_path / "home"
    env = pipeline_env(home)
    if how.startswith("ctrl-c"):
        command, sent = [MLFLOW, "run", ".", "--env-manager", "local", "--experiment-name", "trainflow"], signal.SIGINT
    else:
        command, sent = [str(Path(MLFLOW).parent / "python"), "main.py"], signal.SIGTERM
    process = subprocess.Popen(
        command,
        cwd=PROJECT_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    output: list[str] = []
    reached = threading.Event()

    def read() -> None:
        for line in process.stdout:
            output.append(line)
            if line.startswith("[train_model] using"):
                reached.set()

    threading.Thread(target=read, daemon=True).start()
    assert reached.wait(180), "".join(output)[-3000:]
    time.sleep(0.3)
    if sent == signal.SIGINT:
        os.killpg(process.pid, sent)  # the terminal sends Ctrl-C to the whole foreground group
    else:
        os.kill(process.pid, sent)
    process.wait(timeout=60)
    time.sleep(0.5)
    text = "".join(output)
    assert "Traceback" not in text, text[-3000:]
    assert "trainflow: interrupted; nothing partial was kept" in text, text[-3000:]
    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name("trainflow").experiment_id
    runs = client.search_runs([experiment])
    assert runs and not [(r.info.run_name, r.info.status) for r in runs if r.info.status == "RUNNING"]
    store = project_store(home)
    assert list(store.tmp.iterdir()) == [] and store.verify().ok
