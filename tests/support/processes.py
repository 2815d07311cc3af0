"""Local servers started by the tests and the benchmarks (``mlflow models serve``,
``mlflow server``): a free loopback port, waiting until one answers, stopping it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_answering(url: str, process: subprocess.Popen, log: Path, seconds: float = 180) -> None:  # type: ignore[type-arg]
    """Return once ``url`` answers 200; raise ``RuntimeError`` with the end of ``log`` if
    ``process`` exits first or ``seconds`` pass."""
    deadline = time.monotonic() + seconds
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer within {seconds:.0f} s:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)


def stop_process_group(process: subprocess.Popen) -> None:  # type: ignore[type-arg]
    """Stop a server started with ``start_new_session=True`` and its workers: SIGTERM, then SIGKILL."""
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
