"""The per-step memory accounting of run_context, with real allocations in this process:
the peak is counted afresh for each step, and a finished step's memory goes back to the
operating system before the next one (main.in_process runs steps in one process)."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest

from trainflow.pipeline.step_run import memory_status, release_memory, reset_peak_rss

MIB = 2**20

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self (Linux)")


def test_the_peak_is_counted_afresh_after_a_reset() -> None:
    block = np.ones(200 * MIB // 8)  # 200 MiB, touched
    del block
    before = memory_status()
    assert before["VmHWM"] >= before["VmRSS"] + 150 * MIB  # the block's peak, gone from the current size
    reset_peak_rss()
    after = memory_status()
    assert after["VmHWM"] < before["VmHWM"] - 150 * MIB


def test_a_finished_steps_string_columns_go_back_to_the_system() -> None:
    """pandas keeps string columns in Arrow's memory pool, which keeps freed memory for
    reuse unless asked to release it."""
    release_memory()
    baseline = memory_status()["VmRSS"]
    frame = pd.DataFrame(
        {"text": pd.array([f"row {i} of a long enough string" for i in range(2_000_000)], dtype="str")}
    )
    grown = memory_status()["VmRSS"]
    assert grown > baseline + 60 * MIB
    del frame
    release_memory()
    assert memory_status()["VmRSS"] < baseline + 0.25 * (grown - baseline)


FRAGMENTING = """
import numpy as np
from trainflow.pipeline.step_run import map_large_allocations, memory_status
if {fixed}:
    map_large_allocations()
np.ones(16 * 2**20 // 8)  # a large block freed: glibc's own threshold rises to 16 MiB
blocks = [np.ones(2 * 2**20 // 8) for _ in range(60)]  # 60 blocks of 2 MiB, touched
held = memory_status()["VmRSS"]
del blocks[::2]  # every other one: freed holes between live blocks
print(int(held - memory_status()["VmRSS"]))
"""


@pytest.mark.parametrize("fixed", [True, False])
def test_large_allocations_go_back_to_the_system_when_freed(fixed: bool) -> None:
    """With the threshold fixed, each 2 MiB block is its own mapping and freeing half of
    them returns 60 MiB at once; glibc's default (the control) serves them from its heap,
    where the holes between live blocks stay resident. A fresh interpreter each, since the
    setting lasts for the process."""
    import subprocess

    returned = int(
        subprocess.run(
            [sys.executable, "-c", FRAGMENTING.format(fixed=fixed)], check=True, capture_output=True, text=True
        ).stdout
    )
    if fixed:
        assert returned >= 50 * MIB
    else:
        assert returned < 20 * MIB
