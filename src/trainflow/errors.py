"""User-facing errors: one readable line naming the problem and the fix."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Iterator


class TrainflowError(Exception):
    """An error caused by input, configuration or store state, not by a bug.

    ``str(error)`` is the whole message a user sees: what is wrong and how to fix it.
    """


class ArtifactNotFound(TrainflowError):
    """A reference (``name``, ``name:vN`` or ``name:alias``) does not resolve."""


class CorruptArtifact(TrainflowError):
    """Stored bytes no longer match their recorded digest."""


class DataError(TrainflowError):
    """Input data is unreachable, empty, malformed or lacks a required column."""


class ConfigError(TrainflowError):
    """A configuration value is invalid or contradicts another one."""


class ChampionChanged(TrainflowError):
    """Another promotion moved the production alias while this one was deciding."""


class StepFailed(TrainflowError):
    """A pipeline step failed and printed its own error (one line, or a bug's traceback);
    this says where the pipeline stopped, as a status line, not a second error."""


class DiskFull(TrainflowError):
    """The disk filled up while writing; what was being written was not kept."""


# Out of space, or over a quota: the machine's state, not a bug, so one line, not a traceback.
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def is_disk_full(error: BaseException) -> bool:
    """An OSError for a full disk or quota, or SQLite's "database or disk is full"."""
    if isinstance(error, OSError):
        return error.errno in _NO_SPACE
    return type(error).__name__ == "OperationalError" and "disk is full" in str(error)


def disk_full(error: BaseException, where: str) -> DiskFull:
    return DiskFull(
        f"no space left on the device ({error.__class__.__name__}: {error}) while writing {where}: "
        "nothing partial was kept; free space there, or point TRAINFLOW_HOME at a larger disk, and re-run the step"
    )


def refused_by_tracking_server(error: BaseException) -> TrainflowError | None:
    """The one-line error for an MLflow tracking server's refusal (HTTP 401: no or wrong
    credentials; 403: the account may not do that), None for any other error. MLflow's
    exception is recognised by its HTTP status, as this module imports nothing of MLflow."""
    status = getattr(error, "get_http_status_code", None)
    uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    if not callable(status) or status() not in (401, 403) or not uri.startswith(("http://", "https://")):
        return None
    uri = re.sub(r"//[^/@]*@", "//", uri)  # never print credentials written into the URI
    if status() == 401:
        return TrainflowError(
            f"the MLflow tracking server {uri} refused the request (HTTP 401, not authenticated): set "
            "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD to an account of that server"
        )
    user = os.environ.get("MLFLOW_TRACKING_USERNAME", "")
    return TrainflowError(
        f"the MLflow tracking server {uri} refused the request (HTTP 403, permission denied) to the account "
        f"{user!r}: ask the server's admin for a permission on the experiment or registered model"
    )


def user_error_line(prefix: str, error: TrainflowError) -> str:
    """``<prefix>: error: <message on one line>``, as every trainflow command reports an error."""
    return f"{prefix}: error: {' '.join(str(error).split())}"


@contextlib.contextmanager
def exit_on_user_error(prefix: str) -> Iterator[None]:
    """Turn a :class:`TrainflowError` into one line on stderr and exit status 1.

    Bugs (any other exception) keep their traceback: they are ours to fix.
    """
    try:
        try:
            yield
        except Exception as error:
            if is_disk_full(error):
                raise disk_full(error, getattr(error, "filename", None) or "step output") from None
            refused = refused_by_tracking_server(error)
            if refused is not None:
                raise refused from None
            raise
    except TrainflowError as error:
        line = str(error) if isinstance(error, StepFailed) else user_error_line(prefix, error)
        print(line, file=sys.stderr, flush=True)
        raise SystemExit(1) from None


# Exit status of a process stopped by Ctrl-C or SIGTERM (128 + SIGINT), as shells report it
INTERRUPTED_EXIT = 130
# A second signal this soon after the first is the same stop (`mlflow run` sends SIGTERM
# right behind the terminal's SIGINT): ignored, so it cannot cut the clean-up short.
REPEAT_SIGNAL_SECONDS = 10.0


def interrupt_on_signals() -> None:
    """Turn SIGTERM, like SIGINT, into ``KeyboardInterrupt``, once: the MLflow runs and
    temporary folders this process has open are then closed as failed on the way out,
    instead of being left RUNNING by a process that died at once (SIGTERM's default).
    Call it in a process's ``__main__`` only (it replaces the handlers for the process)."""
    first: list[float] = []

    def handler(signum: int, frame: object) -> None:
        if first and time.monotonic() - first[0] < REPEAT_SIGNAL_SECONDS:
            return
        first[:] = [time.monotonic()]
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        return  # only the main thread may set handlers (and receives the signals)
    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


@contextlib.contextmanager
def exit_on_interrupt(prefix: str) -> Iterator[None]:
    """Ctrl-C (or SIGTERM, see :func:`interrupt_on_signals`) as one line and exit status 130,
    not a traceback; the runs and files open are closed as the exception passes them."""
    try:
        yield
    except KeyboardInterrupt:
        print(
            f"{prefix}: interrupted; nothing partial was kept (`trainflow artifacts verify` checks the store)",
            file=sys.stderr,
            flush=True,
        )
        raise SystemExit(INTERRUPTED_EXIT) from None
