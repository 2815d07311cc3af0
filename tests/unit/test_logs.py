"""trainflow's messages (trainflow.logs): the prefix users read, the streams, the levels, the bars."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from trainflow.logs import ConsoleHandler, level_from_flags, prefixed, progress, set_level
from trainflow.ml.data import fetch


@pytest.fixture
def console() -> Iterator[ConsoleHandler]:
    """A console handler on a logger of this test only (the session's is on the root logger)."""
    handler = ConsoleHandler()
    logger = logging.getLogger("trainflow.tests_logs")
    logger.addHandler(handler)
    logger.propagate = False
    set_level("INFO")
    yield handler
    logger.removeHandler(handler)
    set_level("INFO")


def test_messages_name_who_says_them_and_warnings_go_to_stderr(
    console: ConsoleHandler, capsys: pytest.CaptureFixture[str]
) -> None:
    prefixed("trainflow.tests_logs", "train_model").info("logged model_export:v3")
    logging.getLogger("trainflow.tests_logs").info("no prefix given: the logger's last name")
    prefixed("trainflow.tests_logs", "").info("the CLI's own message, as it always read")
    prefixed("trainflow.tests_logs", "check_data").warning("2 failed check(s)")
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        "[train_model] logged model_export:v3",
        "[tests_logs] no prefix given: the logger's last name",
        "the CLI's own message, as it always read",
    ]
    assert err.splitlines() == ["[check_data] warning: 2 failed check(s)"]


def test_the_level_of_trainflow_s_loggers_decides_what_is_said(
    console: ConsoleHandler, capsys: pytest.CaptureFixture[str]
) -> None:
    log = prefixed("trainflow.tests_logs", "pipeline")
    set_level(level_from_flags(verbose=0, quiet=1))
    log.info("quiet: not said")
    log.warning("quiet: not said either")
    log.error("an error is said")
    set_level(level_from_flags(verbose=1, quiet=0))
    log.debug("verbose: said")
    out, err = capsys.readouterr()
    assert (out, err) == ("[pipeline] verbose: said\n", "[pipeline] an error is said\n")
    assert level_from_flags(0, 0) == "INFO" and level_from_flags(2, 2) == "INFO"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_progress_bar_is_drawn_only_on_a_terminal_and_for_long_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = tmp_path / "big.csv"
    table.write_bytes(b"a,b\n" + b"1,2\n" * 300_000)  # 1.2 MB
    monkeypatch.setattr("trainflow.logs.PROGRESS_MIN_BYTES", 1 << 20)
    screen = Terminal()
    monkeypatch.setattr("sys.stderr", screen)
    fetched = fetch(str(table), tmp_path / "fetched")
    assert fetched.size == table.stat().st_size
    drawn = screen.getvalue()
    assert "copying big.csv:" in drawn and "/1.14M" in drawn and drawn.endswith("\r")  # cleared when done

    small = tmp_path / "small.csv"
    small.write_bytes(b"a,b\n1,2\n")
    screen.seek(0)
    screen.truncate()
    fetch(str(small), tmp_path / "fetched")
    assert screen.getvalue() == ""  # too short to be worth a bar

    pipe = io.StringIO()  # not a terminal: a log file, CI's output
    monkeypatch.setattr("sys.stderr", pipe)
    fetch(str(table), tmp_path / "again")
    assert pipe.getvalue() == ""
    set_level("ERROR")  # -q: no bar either
    try:
        monkeypatch.setattr("sys.stderr", screen)
        assert progress(10 << 20, "storing").disable
    finally:
        set_level("INFO")
