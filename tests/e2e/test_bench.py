"""The benchmark suite's smoke run: bench/run.py at tiny sizes, so that it cannot rot.

Benchmarks are not tests: nothing here looks at a figure. It checks only that every
section ran and that the results file holds their tables.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from support.project import PROJECT_DIR, pipeline_env, run_command

SECTION_TITLES = (
    "1. Overhead",
    "2. Re-run",
    "3. Scale",
    "4. Inference",
    "5. Artifact store",
    "6. Your own table",
    "7. The front door",
)


def test_the_benchmark_suite_runs_and_writes_every_sections_table(tmp_path: Path) -> None:
    out = tmp_path / "results.md"
    env = pipeline_env(tmp_path / "home")  # the sections make their own stores; nothing lands here
    result = run_command(
        [sys.executable, str(PROJECT_DIR / "bench" / "run.py"), "--smoke", "--out", str(out)], env, timeout=1200
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    text = out.read_text()
    assert text == result.stdout.rstrip("\n") + "\n" or text.strip() == result.stdout.strip()
    assert "Smoke run" in text and "versions: trainflow" in text
    for title in SECTION_TITLES:
        body = text.split(f"## {title}", 1)
        assert len(body) == 2, f"section {title!r} missing"
        table = [line for line in body[1].split("\n## ", 1)[0].splitlines() if line.startswith("|")]
        assert re.fullmatch(r"\|( --- \|)+", table[1]), title  # a header, its rule, then rows
        assert len(table) >= 3, title
