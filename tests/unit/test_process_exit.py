"""runner.exit_now, which ends the pipeline's process: exit handlers run, the exit code
is kept, and worker processes a sweep started are stopped instead of waited out."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = """
import atexit, sys
from pathlib import Path
from trainflow.pipeline.runner import exit_now

atexit.register(lambda: Path(sys.argv[1]).write_text("exit handlers ran"))
if sys.argv[2] == "with-workers":
    # What Hydra's joblib launcher leaves behind: an idle loky worker with a 300 s timeout
    from joblib.externals.loky import get_reusable_executor
    assert get_reusable_executor(max_workers=1, timeout=300).submit(pow, 2, 5).result() == 32
exit_now(3)
"""


@pytest.mark.parametrize("children", ["alone", "with-workers"])
def test_exit_now_runs_the_exit_handlers_and_keeps_the_code(children: str, tmp_path: Path) -> None:
    """Alone, the process leaves without the interpreter's teardown; with a sweep's idle
    worker alive, it shuts the worker down and leaves at once. (Before, it waited out the
    worker's 300 s idle timeout: the timeout below would fail the test.)"""
    marker = tmp_path / "marker"
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(marker), children], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 3, done.stderr
    assert marker.read_text() == "exit handlers ran"
