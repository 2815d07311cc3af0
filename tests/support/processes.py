"""Local servers started by the tests and the benchmarks (``mlflow models serve``,
``mlflow server``): a free loopback port, waiting until one answers or says it is ready,
stopping it, and the peak memory of its processes."""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
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


def wait_for_output(text: str, process: subprocess.Popen, log: Path, seconds: float = 180) -> None:  # type: ignore[type-arg]
    """Return once ``log`` (the output of ``process``) holds ``text``; raise ``RuntimeError``
    with its end if ``process`` exits first or ``seconds`` pass."""
    deadline = time.monotonic() + seconds
    while text not in log.read_text(errors="replace"):
        if process.poll() is not None:
            raise RuntimeError(f"the process exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{text!r} not printed within {seconds:.0f} s:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)


def process_table() -> dict[int, tuple[int, int]]:
    """pid -> (parent, process group) of every live (not zombie) process, from one pass over /proc."""
    table = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            # after "pid (comm)": state ppid pgrp ...
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if fields[0] != "Z":
                table[int(stat.parent.name)] = (int(fields[1]), int(fields[2]))
    return table


def descendants(roots: list[int], table: dict[int, tuple[int, int]] | None = None) -> list[int]:
    """``roots`` and every live process below them."""
    table = process_table() if table is None else table
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in table.items():
        children.setdefault(parent, []).append(pid)
    found, todo = set(), [pid for pid in roots if pid in table]
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo += children.get(pid, [])
    return sorted(found)


def group_members(pgid: int) -> list[int]:
    """The live processes of process group ``pgid``."""
    return [pid for pid, (_, group) in process_table().items() if group == pgid]


def resident_bytes(pids: list[int]) -> int:
    """The resident memory of ``pids`` together (each process's VmRSS: pages two processes
    share count in each, as in ``ps``)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
    return total


class PeakMemory:
    """While entered, samples the resident memory of the processes it watches (by name: a
    process group, or a function listing pids) and of all of them together (``"all"``)
    every ``interval`` seconds in a thread; :meth:`peaks` in bytes."""

    def __init__(self, interval: float = 0.5) -> None:
        self.interval = interval
        self.watched: dict[str, Callable[[], list[int]]] = {}
        self._peaks: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def watch(self, name: str, processes: int | Callable[[], list[int]]) -> None:
        """Watch a process group (its id) or the pids a function lists at each sample."""
        self.watched[name] = processes if callable(processes) else functools.partial(group_members, processes)

    def peaks(self) -> dict[str, int]:
        return dict(self._peaks)

    def _sample(self) -> None:
        while True:
            now = {name: resident_bytes(pids()) for name, pids in list(self.watched.items())}
            for name, value in {**now, "all": sum(now.values())}.items():
                self._peaks[name] = max(self._peaks.get(name, 0), value)
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
