"""An 8-trial sweep of train_model, one trial at a time vs. two at a time, in one run.

    python bench/sweep.py [--trees 100]

Prepares one store where split_data ran, then times `python main.py -m` over a 4x2 grid
(max_depth x max_features) on two copies of it: Hydra's default launcher, and
`hydra/launcher=joblib` with `sweep.n_jobs=2`. Prints both wall times, their ratio, and
checks that both sweeps logged 8 models and left a sound store.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
GRID = ["model.random_forest.max_depth=2,4,8,16", "model.random_forest.max_features=sqrt,log2"]


def environment(home: Path) -> dict[str, str]:
    return dict(os.environ, TRAINFLOW_HOME=str(home), MLFLOW_TRACKING_URI=f"sqlite:///{home}/mlflow.db",
                PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")


def run(args: list[str], home: Path) -> tuple[float, float]:
    """Wall time and CPU time (user + system, of every process it started) of one command."""
    began, cpu_before = time.perf_counter(), _children_cpu()
    result = subprocess.run(args, cwd=PROJECT_DIR, env=environment(home), capture_output=True, text=True, check=False)
    if result.returncode != 0:
        sys.exit(f"{' '.join(args)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return time.perf_counter() - began, _children_cpu() - cpu_before


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def check(home: Path) -> None:
    from trainflow.store import LocalArtifactStore

    store = LocalArtifactStore(home)
    models = store.list_versions("model_export")
    problems = store.verify().problems
    if len(models) != 8 or problems:
        sys.exit(f"{home}: {len(models)} models (expected 8), store problems: {problems}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trees", type=int, default=100, help="n_estimators of every trial (default 100)")
    args = parser.parse_args()
    sweep = [sys.executable, "main.py", "-m", "main.steps=train_model", *GRID,
             f"model.random_forest.n_estimators={args.trees}"]
    with tempfile.TemporaryDirectory(prefix="trainflow-bench-") as scratch:
        base = Path(scratch) / "base"
        run([str(BIN / "trainflow"), "init"], base)
        run([sys.executable, "main.py", "main.steps='fetch_data,check_data,split_data'"], base)
        timings = {}
        for label, extra in (("sequential", []), ("parallel, n_jobs=2", ["hydra/launcher=joblib", "sweep.n_jobs=2"])):
            home = Path(scratch) / label.split(",")[0]
            shutil.copytree(base, home, ignore=shutil.ignore_patterns("hydra", "checkouts", "tmp"))
            timings[label] = run(sweep + extra, home)
            check(home)
    (sequential, _), (parallel, _) = timings["sequential"], timings["parallel, n_jobs=2"]
    # Other work on the machine competes for the same cores: say how busy it was.
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"cores: {os.cpu_count()}  trials: 8 (train_model, {args.trees} trees each)  load average now: {load}")
    for label, (wall, cpu) in timings.items():
        print(f"{label + ':':22s}{wall:6.1f} s wall ({wall / 8:.1f} s per trial), {cpu:6.1f} s CPU")
    print(f"{'speed-up:':22s}{sequential / parallel:6.2f}x")


if __name__ == "__main__":
    main()
