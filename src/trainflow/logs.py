"""trainflow's messages: Python ``logging``, one logger per module, shown as ``[step] message``.

Every message names who says it, the prefix users read (``[pipeline]``, ``[train_model]``,
``[sweep]``): the ``prefix`` a call gives (:func:`prefixed`), else the logger's last name;
the ``trainflow`` CLI's own messages have none.
Messages go to stdout, warnings and errors to stderr. Under Hydra (``main.py``),
``config.yaml``'s ``hydra.job_logging`` installs the same console handler and a file
handler, so each run's and each sweep trial's ``<hydra output dir>/main.log`` holds its
messages with their time; elsewhere (a component run alone, the ``trainflow`` CLI)
:func:`configure` installs the console handler. ``main.log_level`` (the pipeline) and
``-v``/``-q`` (the CLI) set the level of the ``trainflow`` loggers.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

ROOT = "trainflow"
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class Prefix(logging.Filter):
    """Gives a record without a ``prefix`` its logger's last name (``hydra.core.utils`` -> ``utils``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "prefix"):
            record.prefix = record.name.rsplit(".", 1)[-1]
        return True


class PrefixFormatter(logging.Formatter):
    """``[prefix] message`` (``[prefix] warning: message`` for a warning); without ``[prefix]``
    for an empty one (the ``trainflow`` CLI's own messages)."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        message, prefix = record.getMessage(), getattr(record, "prefix", "")
        if record.levelno == logging.WARNING:
            message = f"warning: {message}"
        return f"[{prefix}] {message}" if prefix else message


class ConsoleHandler(logging.Handler):
    """Messages to ``sys.stdout``, warnings and errors to ``sys.stderr``, both looked up at
    each message (so a redirected or captured stream receives them), flushed at once."""

    def __init__(self, level: int | str = logging.NOTSET) -> None:
        super().__init__(level)
        self.addFilter(Prefix())
        self.setFormatter(PrefixFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        try:
            stream = sys.stderr if record.levelno >= logging.WARNING else sys.stdout
            bars = sys.modules.get("tqdm")
            if bars is not None and getattr(bars.tqdm, "_instances", None):
                bars.tqdm.write(self.format(record), file=stream)  # above the bars being drawn, not through them
            else:
                stream.write(self.format(record) + "\n")
                stream.flush()
        except Exception:
            self.handleError(record)


def prefixed(name: str, prefix: str) -> logging.LoggerAdapter[logging.Logger]:
    """The logger ``name`` whose messages say ``[prefix]``."""
    return logging.LoggerAdapter(logging.getLogger(name), {"prefix": prefix})


def _has_console(logger: logging.Logger) -> bool:
    streams = (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__)
    return any(
        isinstance(handler, ConsoleHandler)
        or (isinstance(handler, logging.StreamHandler) and handler.stream in streams)
        for handler in logger.handlers
    )


def configure(level: str | int = "INFO") -> None:
    """Show trainflow's messages at ``level`` and above on the console: installs the console
    handler on the root logger unless one is there (Hydra's job logging put it there)."""
    root = logging.getLogger()
    if not _has_console(root):
        root.addHandler(ConsoleHandler())
    set_level(level)


def set_level(level: str | int) -> None:
    """The level of every ``trainflow`` logger (``DEBUG``, ``INFO``, ``WARNING``, ``ERROR``)."""
    logging.getLogger(ROOT).setLevel(level.upper() if isinstance(level, str) else level)


def level_from_flags(verbose: int, quiet: int) -> str:
    """The level ``-v``/``-q`` ask for: INFO by default, DEBUG with ``-v``, ERROR with ``-q``."""
    return "DEBUG" if verbose > quiet else "ERROR" if quiet > verbose else "INFO"


# Work smaller than this finishes before a bar would say anything useful.
PROGRESS_MIN_BYTES = 64 << 20


def progress(total: int | None, description: str, unit: str = "B", minimum: int | None = None) -> Any:
    """A tqdm progress bar on stderr for long work (``.update(n)``, ``.close()``, or ``with``):
    drawn only on a terminal, while trainflow's messages are shown (not with ``-q`` or
    ``main.log_level`` above INFO), and for a ``total`` of at least ``minimum`` (default ``PROGRESS_MIN_BYTES``), or of unknown size."""
    from tqdm.auto import tqdm

    shown = (
        sys.stderr.isatty()
        and logging.getLogger(ROOT).isEnabledFor(logging.INFO)
        and (total is None or total >= (PROGRESS_MIN_BYTES if minimum is None else minimum))
    )
    return tqdm(
        total=total,
        desc=description,
        unit=unit,
        unit_scale=unit == "B",
        unit_divisor=1024 if unit == "B" else 1000,
        leave=False,
        file=sys.stderr,
        disable=not shown,
    )
