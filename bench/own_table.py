"""Section 6 of the benchmark: a user's own table at real size, named by data.uri and
data.target alone, through the whole pipeline (`mlflow run .`, cold store, every step),
side by side with the same job as a plain single-process scikit-learn script
(bench/plain_sklearn.py: load, split, fit, export, score; no tracking, store, checks or
plots).

The table (support.synthetic.make_table, seeded): a binary target with 15% positives,
4 numeric columns, 2 low-cardinality categoricals, a 4,000-level account column with
skewed frequencies, a short free-text column, dates as text, 5% gaps in every feature and
3% rows without a target.

    python bench/own_table.py [--smoke] [--rows 340000 1000000] [--estimators hist_gradient_boosting random_forest]

Each run gets a fresh store and a fresh interpreter. The pipeline's memory is each step
run's `step_peak_rss_bytes` (the process's peak while that step ran, libraries included);
the script's its own peak (`ru_maxrss`).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from pathlib import Path

from pipeline import PIPELINE, fresh_store, step_metrics, timed
from report import PROJECT_DIR, Section, Target, mebibytes, ratio, seconds
from support.synthetic import TARGET, make_table

FULL = ((340_000, "hist_gradient_boosting"), (1_000_000, "hist_gradient_boosting"), (1_000_000, "random_forest"))
SMOKE = ((4_000, "hist_gradient_boosting"), (4_000, "random_forest"))
MAX_RATIO = 3.0
MAX_PEAK_BYTES = 2 * 2**30
REAL_SIZE = 300_000  # the table the 2 GiB bound is for: at least this many rows


def write_table(rows: int, path: Path) -> None:
    make_table(
        rows,
        n_classes=2,
        class_weights=(0.85, 0.15),
        high_cardinality=min(4_000, rows // 20),
        missing_target_fraction=0.03,
        seed=rows,
    ).to_csv(path, index=False)


def pipeline_side(table: Path, estimator: str, workdir: Path) -> dict[str, object]:
    env = fresh_store(workdir / f"home-{table.stem}-{estimator}")
    options = f"data.uri={table} data.target={TARGET} model.estimator={estimator}"
    run = timed([*PIPELINE, "-P", f"hydra_options={options}"], env)
    metrics = step_metrics(env, [run_id for *_, run_id in run.steps()])
    steps = {step: (wall, metrics[run_id]) for step, _, wall, run_id in run.steps()}
    return {
        "seconds": run.seconds,
        "steps": steps,
        "peak": max(m.get("step_peak_rss_bytes", 0.0) for _, m in steps.values()),
        "auc": steps["test_model"][1].get("test_roc_auc_ovo", float("nan")),
    }


def plain_side(table: Path, estimator: str) -> dict[str, float]:
    run = timed(
        [
            sys.executable,
            str(PROJECT_DIR / "bench" / "plain_sklearn.py"),
            "--table",
            str(table),
            "--estimator",
            estimator,
        ],
        dict(os.environ),
    )
    figures = {k: float(v) for k, v in re.findall(r"^(\S+): ([\d.]+)$", run.stdout, re.MULTILINE)}
    return {"seconds": run.seconds, "peak": figures["peak_rss_bytes"], "auc": figures["test_roc_auc"], **figures}


def measure(smoke: bool, cases: tuple[tuple[int, str], ...] | None = None) -> Section:
    cases = cases or (SMOKE if smoke else FULL)
    section = Section(
        "6. Your own table at real size: the whole pipeline vs. a plain scikit-learn script",
        ["rows", "estimator", "what", "wall time", "peak RSS", "test ROC AUC", "pipeline / script"],
    )
    with tempfile.TemporaryDirectory() as workdir:
        for rows in sorted({rows for rows, _ in cases}):
            table = Path(workdir) / f"table-{rows}.csv"
            write_table(rows, table)
            for estimator in [e for n, e in cases if n == rows]:
                ours, plain = pipeline_side(table, estimator, Path(workdir)), plain_side(table, estimator)
                share = ours["seconds"] / plain["seconds"]
                for step, (wall, metrics) in ours["steps"].items():
                    section.add(
                        f"{rows:,}",
                        estimator,
                        f"step {step}",
                        seconds(wall),
                        mebibytes(metrics.get("step_peak_rss_bytes", float("nan"))),
                        "",
                        "",
                    )
                section.add(
                    f"{rows:,}",
                    estimator,
                    "**`mlflow run .`, every step, cold**",
                    seconds(ours["seconds"]),
                    mebibytes(ours["peak"]),
                    f"{ours['auc']:.4f}",
                    ratio(share),
                )
                section.add(
                    f"{rows:,}",
                    estimator,
                    "plain script (bench/plain_sklearn.py)",
                    seconds(plain["seconds"]),
                    mebibytes(plain["peak"]),
                    f"{plain['auc']:.4f}",
                    ratio(1.0),
                )
                section.notes.append(
                    f"{rows:,} rows, {estimator}: the script's stages "
                    + ", ".join(
                        f"{k.removeprefix('seconds_')} {v:.2f} s" for k, v in plain.items() if k.startswith("seconds_")
                    )
                )
                if smoke:
                    continue
                section.targets.append(
                    Target(
                        f"{rows:,} rows, {estimator}: whole pipeline vs. a plain scikit-learn script",
                        f"<= {MAX_RATIO:.0f}x",
                        f"{ratio(share)} ({ours['seconds']:.1f} s vs. {plain['seconds']:.1f} s)",
                        share <= MAX_RATIO,
                    )
                )
                if rows >= REAL_SIZE and rows < 10**6:
                    section.targets.append(
                        Target(
                            f"{rows:,} rows: peak memory of any step",
                            "<= 2 GiB",
                            mebibytes(ours["peak"]),
                            ours["peak"] <= MAX_PEAK_BYTES,
                        )
                    )
    section.notes.append(
        "both sides: fresh interpreter, imports included; the pipeline also checks the data, draws the plots, fits "
        "and scores the trivial baseline, bootstraps its gap, and writes every artifact to the store and MLflow"
    )
    return section


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--rows", type=int, nargs="*", default=None)
    parser.add_argument("--estimators", nargs="*", default=None)
    args = parser.parse_args()
    cases = None
    if args.rows or args.estimators:
        cases = tuple((n, e) for n in (args.rows or [340_000]) for e in (args.estimators or ["hist_gradient_boosting"]))
    print(measure(args.smoke, cases).markdown())


if __name__ == "__main__":
    main()
