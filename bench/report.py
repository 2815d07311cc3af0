"""The shape every benchmark section reports in, so that ``bench/run.py`` can print and
write one table per section plus one table of targets met or missed, and the few helpers
the benchmark scripts share.

A section module exposes ``measure(smoke: bool) -> Section``: ``smoke=True`` is the tiny
version ``make test`` runs so the code cannot rot (small sizes, one repeat); its figures
mean nothing and are never compared to a target.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # the environment whose `mlflow` and `trainflow` the benchmarks run
# The seeded synthetic tables and the local-server helpers the benchmarks share with the
# tests live in tests/support (not in the trainflow package: no user needs them).
sys.path.insert(0, str(PROJECT_DIR / "tests"))


@dataclass(frozen=True)
class Target:
    """A goal from the issue next to what this run measured."""

    what: str
    goal: str
    measured: str
    met: bool


@dataclass
class Section:
    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *cells: object) -> None:
        if len(cells) != len(self.columns):
            raise ValueError(f"{self.title}: row {cells!r} has {len(cells)} cells for {len(self.columns)} columns")
        self.rows.append([str(c) for c in cells])

    def markdown(self) -> str:
        lines = [f"## {self.title}", "", markdown_table(self.columns, self.rows)]
        lines.extend(["", *[f"- {note}" for note in self.notes]] if self.notes else [])
        return "\n".join(lines)


def print_section(section: Section) -> None:
    """A section as a script run alone prints it: its table, then each target met or missed."""
    print(section.markdown())
    if section.targets:
        print()
    for target in section.targets:
        print(f"- {'met' if target.met else 'MISSED'}: {target.what}: {target.goal}, measured {target.measured}")


def markdown_table(columns: list[str], rows: list[list[str]]) -> str:
    header = "| " + " | ".join(columns) + " |"
    rule = "| " + " | ".join("---" for _ in columns) + " |"
    return "\n".join([header, rule, *("| " + " | ".join(row) + " |" for row in rows)])


def seconds(value: float) -> str:
    return f"{value:.2f} s"


def ratio(value: float) -> str:
    return f"{value:.2f}x"


def mebibytes(value: float) -> str:
    return f"{value / 2**20:,.0f} MiB"


@contextmanager
def stopwatch() -> Iterator[list[float]]:
    """``with stopwatch() as elapsed: ...`` then ``elapsed[0]`` holds the wall seconds."""
    elapsed: list[float] = []
    began = time.perf_counter()
    try:
        yield elapsed
    finally:
        elapsed.append(time.perf_counter() - began)


def machine() -> str:
    return f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start"


def store_env(home: Path) -> dict[str, str]:
    """The environment of a user whose artifact store and MLflow database live in ``home``."""
    return dict(
        os.environ,
        TRAINFLOW_HOME=str(home),
        MLFLOW_TRACKING_URI=f"sqlite:///{home}/mlflow.db",
        PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}",
    )
