"""User-facing errors: one readable line naming the problem and the fix."""

from __future__ import annotations

import contextlib
import sys
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


def user_error_line(prefix: str, error: TrainflowError) -> str:
    """``<prefix>: error: <message on one line>``, as every trainflow command reports an error."""
    return f"{prefix}: error: {' '.join(str(error).split())}"


@contextlib.contextmanager
def exit_on_user_error(prefix: str) -> Iterator[None]:
    """Turn a :class:`TrainflowError` into one line on stderr and exit status 1.

    Bugs (any other exception) keep their traceback: they are ours to fix.
    """
    try:
        yield
    except TrainflowError as error:
        print(user_error_line(prefix, error), file=sys.stderr, flush=True)
        raise SystemExit(1) from None
