"""Orchestration overhead, measured side by side in one run: `mlflow run .` of the whole
pipeline (env manager local, fresh store) vs. the same work in one plain process.

    python bench/overhead.py [--repeat N]

Prints the wall time of each and their ratio. Both include interpreter start-up and
imports, as a user waiting for either would experience them.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def timed(args: list[str], env: dict[str, str]) -> float:
    began = time.perf_counter()
    subprocess.run(args, cwd=PROJECT_DIR, env=env, check=True, capture_output=True)
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    pipeline_times, single_times = [], []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as home:
            env = dict(os.environ, TRAINFLOW_HOME=home, MLFLOW_TRACKING_URI=f"sqlite:///{home}/mlflow.db",
                       PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
            subprocess.run([str(BIN / "trainflow"), "init"], env=env, check=True, capture_output=True)
            pipeline_times.append(
                timed([str(BIN / "mlflow"), "run", ".", "--env-manager", "local", "--experiment-name", "trainflow"], env)
            )
            single_times.append(timed([sys.executable, str(PROJECT_DIR / "bench" / "single_process.py")], env))
    pipeline, single = min(pipeline_times), min(single_times)
    print(f"cores: {os.cpu_count()}  runs: {args.repeat} (best of each)")
    print(f"mlflow run . (5 steps):      {pipeline:6.1f} s")
    print(f"single process, no tracking: {single:6.1f} s")
    print(f"ratio:                       {pipeline / single:6.2f}x  ({(pipeline - single) / 5:.1f} s per step beyond the work)")


if __name__ == "__main__":
    main()
