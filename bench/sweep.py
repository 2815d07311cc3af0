"""An 8-trial sweep of train_model, one trial at a time vs. two at a time, in one run.

    python bench/sweep.py [--trees 100] [--repeat 2]

Prepares one store where split_data ran, then times `python main.py -m` over a 4x2 grid
(max_depth x max_features) on fresh copies of it: Hydra's default launcher, and
`hydra/launcher=joblib` with `sweep.n_jobs=2`. With --repeat N the two alternate
(sequential, parallel, parallel, sequential, ...) so that a change in the machine's
other load does not favour one; the best of each is printed with its CPU time, and their
ratio. Every sweep must log 8 models and leave a sound store.
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

from report import BIN, PROJECT_DIR, store_env

GRID = ["model.random_forest.max_depth=2,4,8,16", "model.random_forest.max_features=sqrt,log2"]


def run(args: list[str], home: Path) -> tuple[float, float]:
    """Wall time and CPU time (user + system, of every process it started) of one command."""
    began, cpu_before = time.perf_counter(), _children_cpu()
    result = subprocess.run(args, cwd=PROJECT_DIR, env=store_env(home), capture_output=True, text=True, check=False)
    if result.returncode != 0:
        sys.exit(f"{' '.join(args)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return time.perf_counter() - began, _children_cpu() - cpu_before


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def check(home: Path) -> None:
    from trainflow.store.local import LocalArtifactStore

    store = LocalArtifactStore(home)
    models = store.list_versions("model_export")
    problems = store.verify().problems
    if len(models) != 8 or problems:
        sys.exit(f"{home}: {len(models)} models (expected 8), store problems: {problems}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trees", type=int, default=100, help="n_estimators of every trial (default 100)")
    parser.add_argument("--repeat", type=int, default=1, help="sweeps of each kind, alternating (default 1)")
    args = parser.parse_args()
    sweep = [
        sys.executable,
        "main.py",
        "-m",
        "main.steps=train_model",
        *GRID,
        f"model.random_forest.n_estimators={args.trees}",
    ]
    with tempfile.TemporaryDirectory(prefix="trainflow-bench-") as scratch:
        base = Path(scratch) / "base"
        run([str(BIN / "trainflow"), "init"], base)
        run([sys.executable, "main.py", "main.steps='fetch_data,check_data,split_data'"], base)
        kinds = {"sequential": [], "parallel, n_jobs=2": ["hydra/launcher=joblib", "sweep.n_jobs=2"]}
        timings: dict[str, list[tuple[float, float]]] = {label: [] for label in kinds}
        for attempt in range(args.repeat):
            order = list(kinds) if attempt % 2 == 0 else list(reversed(kinds))
            for label in order:
                home = Path(scratch) / f"{label.split(',')[0]}-{attempt}"
                shutil.copytree(base, home, ignore=shutil.ignore_patterns("hydra", "checkouts", "tmp"))
                timings[label].append(run(sweep + kinds[label], home))
                check(home)
                shutil.rmtree(home)
    best = {label: min(runs) for label, runs in timings.items()}
    (sequential, _), (parallel, _) = best["sequential"], best["parallel, n_jobs=2"]
    # Other work on the machine competes for the same cores: say how busy it was.
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(
        f"cores: {os.cpu_count()}  trials: 8 (train_model, {args.trees} trees each)  runs of each: {args.repeat}"
        f" (best shown)  load average now: {load}"
    )
    for label, (wall, cpu) in best.items():
        print(f"{label + ':':22s}{wall:6.1f} s wall ({wall / 8:.1f} s per trial), {cpu:6.1f} s CPU")
    print(f"{'speed-up:':22s}{sequential / parallel:6.2f}x")


if __name__ == "__main__":
    main()
