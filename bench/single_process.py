"""The floor the pipeline is measured against: the same work in one plain Python
process with no tracking and no artifact store (load, split, fit, export, score).

    python bench/single_process.py [--out DIR]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from trainflow.config.schema import load_config, resolve_paths
from trainflow.ml.data import read_table, resolve_task, split_dataset, stratify_target
from trainflow.ml.evaluate import score_exported_model
from trainflow.ml.train import export, train_from_config

PROJECT_DIR = Path(__file__).resolve().parents[1]


def run(out_dir: Path) -> dict[str, float]:
    """Run the whole workflow in-process; return its metrics and seconds per stage."""
    cfg = resolve_paths(load_config(PROJECT_DIR), PROJECT_DIR)
    seconds: dict[str, float] = {}
    began = time.perf_counter()
    raw = read_table(Path(cfg.data.uri))
    task, _ = resolve_task(cfg.model.task, raw[cfg.data.target])
    trainval, test = split_dataset(
        raw,
        cfg.data.target,
        cfg.split.test_size,
        cfg.split.random_seed,
        stratify_target(cfg.split.stratify_by, cfg.data.target, task),
    )
    seconds["load+split"] = time.perf_counter() - began
    began = time.perf_counter()
    result = train_from_config(trainval, cfg)
    seconds["fit"] = time.perf_counter() - began
    began = time.perf_counter()
    export(result, out_dir / "model_export", serialization=cfg.model.serialization)
    seconds["export"] = time.perf_counter() - began
    began = time.perf_counter()
    metrics = score_exported_model(out_dir / "model_export", test, cfg.data.target)
    seconds["score"] = time.perf_counter() - began
    return {**metrics, **{f"seconds_{k}": v for k, v in seconds.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=None, help="where to export the model (default: a temp dir)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        figures = run(args.out or Path(tmp))
    for key, value in figures.items():
        print(f"{key}: {value:.4f}")


if __name__ == "__main__":
    main()
