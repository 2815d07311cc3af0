"""Section 7 of the benchmark: what the front door (trainflow.ml.table_file) costs on an
ordinary table, and what it saves on a pathological one.

- An ordinary CSV of 10^6 rows (support.synthetic.make_table: numbers, categories, a
  4,000-level column, free text, dates as text, gaps) and its Parquet copy:
  ``read_table`` (header parse, one numpy pass for line lengths and cells, the parse, the
  mixed-type check) against a bare ``pd.read_csv`` / ``pd.read_parquet``, interleaved,
  best of three each.
- The issue's pathological header: 2 MB holding 10^6 repeated names. ``read_table``
  refuses it; a bare ``pd.read_csv`` (what trainflow did before) runs in a child process
  stopped after ``PATHOLOGY_TIMEOUT`` seconds.

    python bench/front_door.py [--smoke]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from report import Section, Target, print_section, ratio, seconds, stopwatch
from support.synthetic import make_table

from trainflow.errors import DataError
from trainflow.ml.data import read_table

FULL_ROWS = 1_000_000
SMOKE_ROWS = 2_000
# read_table / bare pandas on an ordinary table. The checks read the file once more (at
# memory speed when it is cached, about 0.6 s per GB here), and pandas' C parser reads a
# plain table barely slower than that: half as much again is what one extra pass costs.
MAX_OVERHEAD = 1.5
PATHOLOGY_TIMEOUT = 120.0
PATHOLOGY_NAMES = 1_000_000


def interleaved(bare, checked, times: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """Best of ``times`` each, alternating, so that load and caches hit both alike."""
    best = [float("inf"), float("inf")]
    for _ in range(times):
        for side, read in enumerate((bare, checked)):
            with stopwatch() as elapsed:
                read()
            best[side] = min(best[side], elapsed[0])
    return best[0], best[1]


def pathology(workdir: Path, names: int) -> tuple[float, float | None]:
    """(seconds read_table takes to refuse the header, seconds a bare pd.read_csv took or
    None when it had not finished within PATHOLOGY_TIMEOUT)."""
    path = workdir / "million_names.csv"
    path.write_text(",".join(["c"] * names) + "\n" + ",".join(["1"] * names) + "\n")
    began = time.perf_counter()
    try:
        read_table(path)
        raise AssertionError("read_table accepted a header of repeated names")
    except DataError:
        refused = time.perf_counter() - began
    began = time.perf_counter()
    try:
        subprocess.run(
            [sys.executable, "-c", f"import pandas; pandas.read_csv({str(path)!r})"],
            check=True,
            timeout=PATHOLOGY_TIMEOUT,
            capture_output=True,
        )
        bare: float | None = time.perf_counter() - began
    except subprocess.TimeoutExpired:
        bare = None
    return refused, bare


def measure(smoke: bool) -> Section:
    rows = SMOKE_ROWS if smoke else FULL_ROWS
    section = Section(
        "7. The front door: read_table's checks vs. bare pandas",
        ["input", "size", "bare pandas", "read_table", "ratio"],
    )
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        table = make_table(
            rows,
            n_classes=2,
            class_weights=(0.85, 0.15),
            high_cardinality=min(4_000, rows // 20),
            missing_target_fraction=0.03,
            seed=rows,
        )
        csv, parquet = workdir / "table.csv", workdir / "table.parquet"
        table.to_csv(csv, index=False)
        table.to_parquet(parquet, index=False)
        del table
        times = 1 if smoke else 3
        for path, bare_read in ((csv, pd.read_csv), (parquet, pd.read_parquet)):
            bare, checked = interleaved(lambda p=path, r=bare_read: r(p), lambda p=path: read_table(p), times)
            size = f"{rows:,} rows, {path.stat().st_size / 2**20:,.0f} MiB"
            section.add(path.suffix.lstrip(".").upper(), size, seconds(bare), seconds(checked), ratio(checked / bare))
            if path is csv:
                section.targets.append(
                    Target(
                        f"read_table on an ordinary {rows:,}-row CSV vs. bare pd.read_csv",
                        f"<= {MAX_OVERHEAD}x",
                        ratio(checked / bare),
                        checked / bare <= MAX_OVERHEAD,
                    )
                )
        names = 2_000 if smoke else PATHOLOGY_NAMES
        refused, bare = pathology(workdir, names)
        shown = seconds(bare) if bare is not None else f"not done after {PATHOLOGY_TIMEOUT:.0f} s"
        section.add(
            f"CSV header of {names:,} repeated names",
            f"{names * 2 / 1e6:.0f} MB",
            shown,
            f"{seconds(refused)} (refused)",
            "-",
        )
        section.notes.append(
            "read_table refuses the header before parsing the table (past data.limits.max_header_bytes, 1 MiB, or "
            "with repeated names); "
            "pandas renames each repeated name by searching those before it, which is quadratic in them."
        )
    return section


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    print_section(measure(args.smoke))


if __name__ == "__main__":
    main()
