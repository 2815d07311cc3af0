"""trainflow's benchmark suite: every section measured side by side in one run, printed and
written to bench/results.md with the machine and the versions used.

    python bench/run.py                  # everything, full sizes (about 40-60 minutes on 2 cores)
    python bench/run.py --only store inference
    python bench/run.py --smoke --out /tmp/results.md   # tiny sizes: `make test` runs this

Sections (one module each, all exposing ``measure(smoke)``):
1-2. bench/pipeline.py  orchestration overhead vs. one plain process; cached re-runs (and DVC)
3.   bench/scale.py     the pipeline at 10^4, 10^5, 10^6 generated rows: time and peak memory
4.   bench/inference.py pyfunc vs. the raw pipeline on 10^5 rows; REST latency and throughput
5.   bench/store.py     logging and reading a 1 GiB directory vs. `cp`; deduplication
6.   bench/own_table.py a user's own table (340,000 and 10^6 rows, a 4,000-level column): the whole
                        pipeline vs. a plain scikit-learn script doing the same job
7.   bench/front_door.py read_table's checks vs. bare pandas on 10^6 rows; a header of 10^6 names

A smoke run's figures mean nothing (sizes too small to time) and are not held to the targets.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import sys
import time
from importlib.metadata import version
from pathlib import Path

from report import Section, machine, markdown_table

BENCH_DIR = Path(__file__).resolve().parent
SECTIONS = ("pipeline", "scale", "inference", "store", "own_table", "front_door")
VERSIONS = ("trainflow", "mlflow", "scikit-learn", "pandas", "numpy", "hydra-core", "skops")


def run_sections(names: tuple[str, ...], smoke: bool, repeat: int) -> tuple[list[Section], dict[str, float]]:
    sections: list[Section] = []
    took: dict[str, float] = {}
    for name in names:
        began = time.perf_counter()
        module = __import__(name)
        measured = module.measure(smoke, repeat=repeat) if name == "pipeline" else module.measure(smoke)
        sections.extend(measured if isinstance(measured, list) else [measured])
        took[name] = time.perf_counter() - began
        print(f"[bench] {name}: {took[name]:.0f} s", file=sys.stderr, flush=True)
    return sections, took


def document(sections: list[Section], took: dict[str, float], smoke: bool, started: str, load: str) -> str:
    versions = ", ".join(f"{package} {version(package)}" for package in VERSIONS)
    # A smoke run's sizes are too small for its figures to be held to anything.
    targets = [] if smoke else [target for section in sections for target in section.targets]
    lines = [
        "# trainflow benchmark results",
        "",
        f"Written by `python bench/run.py{' --smoke' if smoke else ''}` on {started}. "
        + ("**Smoke run: sizes too small for the figures to mean anything.**" if smoke else ""),
        "",
        f"- machine: {platform.machine()}, {load}, Python {platform.python_version()}",
        f"- versions: {versions}",
        f"- section wall times: {', '.join(f'{name} {seconds:.0f} s' for name, seconds in took.items())}",
        "",
        "## Targets",
        "",
        markdown_table(
            ["target", "goal", "measured", "met"],
            [[t.what, t.goal, t.measured, "yes" if t.met else "**no**"] for t in targets],
        )
        if targets
        else "No target is checked in a smoke run.",
        "",
        *[section.markdown() + "\n" for section in sections],
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one repeat: checks the suite still runs")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--repeat", type=int, default=2, help="repeats of the pipeline runs (best of each)")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "results.md")
    args = parser.parse_args()
    started = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    load = machine()
    sections, took = run_sections(tuple(args.only), args.smoke, 1 if args.smoke else args.repeat)
    text = document(sections, took, args.smoke, started, load)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
