"""A 4-trial sweep of train_model on a Ray cluster: one node vs two, side by side in one run.

    python bench/ray_sweep.py [--trees 100] [--repeat 2]

Needs the ray extra (`make setup EXTRAS=dev,ray`). Prepares one store where split_data ran,
then for each layout starts a cluster on loopback addresses (tests/support/ray_cluster.py),
times `python main.py -m ... hydra/launcher=ray` over a 2x2 grid on a fresh copy of the
store, and stops the cluster:

- one node, 1 CPU: the trials one at a time;
- two nodes (127.0.0.2, 127.0.0.3), 1 CPU each: two at a time, one on each node;
- one node, 2 CPUs: two at a time on one node (the same cores as two nodes, one node's memory).
- and, without Ray, Hydra's basic launcher (one at a time) and the joblib launcher (two at a time).

With --repeat N the layouts alternate (forwards, then backwards, ...) and the best wall time
of each is printed with the peak resident memory of that sweep (the driver, the trials'
workers and the cluster's daemons together) and of the idle cluster.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
from pathlib import Path

from report import BIN, PROJECT_DIR  # noqa: F401 - importing report puts tests/ (support) on sys.path
from support.project import copy_of
from support.ray_cluster import ray_cluster, run_measured
from support.sweeps import GRID, make_split_store

# layout -> the cluster's nodes (address, CPUs) and the launcher; no nodes: no cluster
LAYOUTS = {
    "one node, 1 CPU": ([("127.0.0.2", 1)], ["hydra/launcher=ray"]),
    "two nodes, 1 CPU each": ([("127.0.0.2", 1), ("127.0.0.3", 1)], ["hydra/launcher=ray"]),
    "one node, 2 CPUs": ([("127.0.0.2", 2)], ["hydra/launcher=ray"]),
    "no Ray: Hydra's basic": ([], []),
    "no Ray: joblib, 2 jobs": ([], ["hydra/launcher=joblib", "sweep.n_jobs=2"]),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--trees", type=int, default=0, help="n_estimators of every trial (default: the grid's 3 and 8)"
    )
    parser.add_argument("--repeat", type=int, default=1, help="sweeps of each layout, alternating (default 1)")
    args = parser.parse_args()
    grid = GRID.split()
    if args.trees:
        grid = [grid[0], f"model.random_forest.n_estimators={args.trees}", "model.random_forest.max_features=sqrt,log2"]
    results: dict[str, list[tuple[float, int, int]]] = {layout: [] for layout in LAYOUTS}
    with tempfile.TemporaryDirectory(prefix="trainflow-bench-") as scratch:
        base = make_split_store(Path(scratch) / "base")
        for attempt in range(args.repeat):
            for layout in LAYOUTS if attempt % 2 == 0 else reversed(LAYOUTS):
                home, env = copy_of(base, Path(scratch) / f"run-{attempt}-{len(results[layout])}-{layout[:3]}")
                nodes, launcher = LAYOUTS[layout]
                with ray_cluster(nodes) if nodes else contextlib.nullcontext() as cluster:
                    command = [sys.executable, "main.py", "-m", "main.steps=train_model", *grid, *launcher]
                    if cluster is not None:
                        command.append(f"hydra.launcher.ray.init.address={cluster.address}")
                    measured = run_measured(command, env, cluster)
                if measured.result.returncode != 0:
                    sys.exit(
                        f"{layout}: the sweep failed:\n{measured.result.stdout[-2000:]}{measured.result.stderr[-2000:]}"
                    )
                results[layout].append((measured.seconds, measured.peak_bytes, measured.idle_bytes))
                shutil.rmtree(home.parent)
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    trees = args.trees or "3 and 8"
    print(
        f"cores: {os.cpu_count()}  trials: 4 (train_model, {trees} trees)  runs of each: {args.repeat} (best shown)"
        f"  load average now: {load}"
    )
    for layout, runs in results.items():
        seconds, peak, idle = min(runs)
        cluster = f" (the idle cluster {idle / 2**30:.2f} GiB)" if LAYOUTS[layout][0] else ""
        print(f"{layout + ':':24s}{seconds:6.1f} s wall, peak resident {peak / 2**30:5.2f} GiB{cluster}")


if __name__ == "__main__":
    main()
