"""Section 3 of the benchmark: the whole pipeline on a generated table of 10^4, 10^5 and
10^6 rows (support.synthetic, in tests/: numeric, categorical, free-text and date columns, like a
genre table of tracks with a title), wall time and peak memory per step, and how each
grows with the rows.

    python bench/scale.py [--smoke] [--rows 10000 100000 1000000]

Each size runs `mlflow run .` (env manager local) on a fresh store. Per step, the time is
its `[pipeline] <step>: ran in N s` line and the memory its run's `step_peak_rss_bytes`
metric: the peak resident memory of the process the step ran in (the pipeline's, with
main.in_process), counted afresh for each step, imported libraries included.
"""

from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path

from pipeline import PIPELINE, fresh_store, step_metrics, timed
from report import Section, Target, mebibytes, ratio, seconds
from support.synthetic import TARGET, make_table

FULL_ROWS = (10**4, 10**5, 10**6)
SMOKE_ROWS = (2_000,)
MAX_PEAK_TO_FRAME = 4.0
# A linear model: the section measures the workflow's handling of the rows (read, check,
# split, store, export, score), which a 100-tree forest's fit would drown at 10^6 rows.
ESTIMATOR = "logistic_regression"


def overrides(table: Path) -> str:
    """The table and its target, as a user names their own; the rest is config.yaml's generic defaults."""
    return f"data.uri={table} data.target={TARGET} model.estimator={ESTIMATOR}"


def run_size(rows: int, workdir: Path) -> dict[str, object]:
    frame = make_table(rows, seed=rows)
    frame_bytes = int(frame.memory_usage(deep=True).sum())
    table = workdir / f"table-{rows}.csv"
    frame.to_csv(table, index=False)
    del frame
    env = fresh_store(workdir / f"home-{rows}")
    result = timed([*PIPELINE, "-P", f"hydra_options={overrides(table)}"], env)
    metrics = step_metrics(env, [run_id for *_, run_id in result.steps()])
    steps = {step: (wall, metrics[run_id]) for step, _, wall, run_id in result.steps()}
    # The largest step's peak, not the process's ru_maxrss: resetting the peak per step resets that too.
    peak = max(measured.get("step_peak_rss_bytes", 0.0) for _, measured in steps.values())
    return {
        "rows": rows,
        "frame_bytes": frame_bytes,
        "file_bytes": table.stat().st_size,
        "seconds": result.seconds,
        "steps": steps,
        "peak_bytes": peak,
    }


def data_added(small: dict[str, object], large: dict[str, object]) -> float:
    """The most any step's peak memory grows from the ``small`` run to the ``large`` one,
    in multiples of the frame's growth: the memory that scales with the data, without the
    libraries a step loads whatever the size."""
    frame_growth = large["frame_bytes"] - small["frame_bytes"]
    return max(
        (metrics.get("step_peak_rss_bytes", 0.0) - small["steps"][step][1].get("step_peak_rss_bytes", 0.0))
        / frame_growth
        for step, (_, metrics) in large["steps"].items()
    )


def growth(values: dict[int, float]) -> str:
    """The exponent k in time ~ rows^k between the two largest sizes (1.0: linear)."""
    sizes = sorted(values)
    if len(sizes) < 2 or min(values[sizes[-1]], values[sizes[-2]]) <= 0:
        return ""
    small, large = sizes[-2], sizes[-1]
    return f"{math.log(values[large] / values[small]) / math.log(large / small):.2f}"


def measure(smoke: bool, rows: tuple[int, ...] | None = None) -> Section:
    sizes = rows or (SMOKE_ROWS if smoke else FULL_ROWS)
    with tempfile.TemporaryDirectory() as workdir:
        results = [run_size(n, Path(workdir)) for n in sorted(sizes)]
    section = Section(
        f"3. Scale: the pipeline on {', '.join(f'{n:,}' for n in sorted(sizes))} generated rows",
        ["rows", "step", "wall time", "peak RSS", "RSS at the step's start", "peak / frame size"],
    )
    for result in results:
        frame_bytes = result["frame_bytes"]
        for step, (wall, metrics) in result["steps"].items():
            peak = metrics.get("step_peak_rss_bytes", float("nan"))
            section.add(
                f"{result['rows']:,}",
                step,
                seconds(wall),
                mebibytes(peak),
                mebibytes(metrics.get("step_rss_at_start_bytes", float("nan"))),
                ratio(peak / frame_bytes),
            )
        section.add(
            f"{result['rows']:,}",
            "whole `mlflow run .`",
            seconds(result["seconds"]),
            mebibytes(result["peak_bytes"]),
            "",
            ratio(result["peak_bytes"] / frame_bytes),
        )
    for result in results:
        section.notes.append(
            f"{result['rows']:,} rows: data frame {mebibytes(result['frame_bytes'])} in memory "
            f"(`memory_usage(deep=True)`), {mebibytes(result['file_bytes'])} as CSV"
        )
    by_step: dict[str, dict[int, float]] = {}
    for result in results:
        for step, (wall, _) in result["steps"].items():
            by_step.setdefault(step, {})[result["rows"]] = wall
    exponents = {step: growth(times) for step, times in by_step.items()}
    if any(exponents.values()):
        section.notes.append(
            "time growth between the two largest sizes (k in time ~ rows^k): "
            + ", ".join(f"{step} {k}" for step, k in exponents.items() if k)
        )
    section.notes.append(
        f"estimator: {ESTIMATOR} (see bench/scale.py for why); features of every kind, TF-IDF on the text column"
    )
    largest, smallest = results[-1], results[0]
    if not smoke and largest["rows"] >= 10**6:
        peak = largest["peak_bytes"]
        base = min(metrics.get("step_rss_at_start_bytes", math.inf) for _, metrics in largest["steps"].values())
        section.targets.append(Target(f"{largest['rows']:,} rows complete on this machine", "yes", "yes", True))
        if smallest["rows"] <= 10**4:
            added = data_added(smallest, largest)
            section.targets.append(
                Target(
                    f"memory the data adds at a step's peak ({largest['rows']:,} vs. {smallest['rows']:,} rows) "
                    "vs. the frame's growth",
                    f"<= {MAX_PEAK_TO_FRAME:.0f}x",
                    ratio(added),
                    added <= MAX_PEAK_TO_FRAME,
                )
            )
            section.notes.append(
                f"what the data adds: per step, its peak at {largest['rows']:,} rows less its peak at "
                f"{smallest['rows']:,} (the libraries it loads, with next to no data), over the frame's growth "
                f"between the two; the largest is {ratio(added)}"
            )
        section.targets += [
            Target(
                f"peak memory at {largest['rows']:,} rows vs. the frame (literal: the whole process, libraries "
                "included)",
                f"<= {MAX_PEAK_TO_FRAME:.0f}x",
                ratio(peak / largest["frame_bytes"]),
                peak <= MAX_PEAK_TO_FRAME * largest["frame_bytes"],
            ),
        ]
        section.notes.append(
            f"of that peak, {mebibytes(base)} is the process before any step's data (interpreter, MLflow, "
            f"pandas, scikit-learn); above it: {ratio((peak - base) / largest['frame_bytes'])} the frame"
        )
    return section


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--rows", type=int, nargs="*", default=None)
    args = parser.parse_args()
    print(measure(args.smoke, tuple(args.rows) if args.rows else None).markdown())


if __name__ == "__main__":
    main()
