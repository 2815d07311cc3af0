"""Property-based tests of the front door: any table file ends in a model or one clear line.

Hypothesis generates tables of random shape, column types, names, missing values,
encodings and damage, writes each as CSV or Parquet, and runs the functions the steps
call on it in this process: reading (``read_table``), checking (``check_table``, with
drift against the table's first half),
splitting (``split_dataset``) and training (``train_from_config``, which builds the
features). Each example must either get through or stop with trainflow's one-line user
error (:class:`TrainflowError`), within a time bound; anything else (a raw exception, a
traceback, a message of several lines) fails the test.

The default run is short and derandomised (the same examples every time) for
``make test``; the slow suite runs a longer one, derandomised as well; ``make fuzz``
explores new random examples. Defects the fuzzing found are kept as plain regression
tests (tests/unit/test_table_file.py and the like).
"""

from __future__ import annotations

import functools
import gzip
import io
import math
import os
import string
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf
from support.project import PROJECT_DIR

from trainflow.config.schema import load_config
from trainflow.datacheck.checks import check_table
from trainflow.errors import TrainflowError
from trainflow.ml.data import read_table, resolve_task, split_dataset, stratify_target
from trainflow.ml.table_file import TableLimits
from trainflow.ml.train import train_from_config

# Small limits, so that generated tables reach them too.
LIMITS = TableLimits(max_columns=12, max_header_bytes=8_000, max_line_bytes=2_000, max_cells=2_000)
# Every example is a table of at most 80 rows: far more than this is a hang, not work.
SECONDS_PER_EXAMPLE = 30.0

_NAME_ALPHABET = string.ascii_letters + string.digits + " _.,;\"'\n\t-é中"


@st.composite
def column_names(draw: st.DrawFn, count: int) -> list[str]:
    """Mostly distinct plain names; sometimes an empty, quoted, multi-line or non-ASCII
    one, and sometimes one repeated."""
    plain = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True)
    names = draw(st.lists(plain, min_size=count, max_size=count, unique=True))
    if draw(st.integers(0, 9)) == 0:
        names[draw(st.integers(0, count - 1))] = draw(st.text(alphabet=_NAME_ALPHABET, max_size=12))
    if count > 1 and draw(st.integers(0, 14)) == 0:
        names[-1] = names[0]
    return names


def _values(draw: st.DrawFn, kind: str, rows: int, missing: float) -> list[Any]:
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    if kind == "int":
        values: list[Any] = rng.integers(-1000, 1000, rows).tolist()
    elif kind == "float":
        values = rng.normal(0, 10, rows).tolist()
        if rows and draw(st.booleans()):
            values[0] = draw(st.sampled_from([math.inf, -math.inf, 1e308, -0.0, 5e-324]))
    elif kind == "bool":
        values = rng.integers(0, 2, rows).astype(bool).tolist()
    elif kind == "category":
        levels = draw(
            st.lists(st.text(alphabet=string.ascii_letters + " ,\"'", min_size=1, max_size=5), min_size=1, max_size=4)
        )
        values = [levels[i] for i in rng.integers(0, len(levels), rows)]
    elif kind == "text":
        values = [draw(st.text(max_size=20)) for _ in range(rows)]
    elif kind == "date_text":
        days = rng.integers(0, 20_000, rows)
        values = [str(np.datetime64("1970-01-01") + int(d)) for d in days]
    elif kind == "mixed":
        values = [int(v) if v % 3 else f"x{v}" for v in rng.integers(0, 100, rows)]
    elif kind == "classes":
        values = rng.integers(0, draw(st.integers(1, 4)), rows).tolist()
    else:  # "empty": a column with no value at all
        values = [None] * rows
    return [None if rng.random() < missing else v for v in values]


@st.composite
def tables(draw: st.DrawFn) -> pd.DataFrame:
    rows = draw(st.integers(0, 80))
    count = draw(st.sampled_from([1, 2, 2, 3, 3, 4, 5, 7]))
    kinds = ["int", "float", "bool", "category", "text", "date_text", "mixed", "classes", "empty"]
    names = draw(column_names(count))
    missing = draw(st.sampled_from([0.0, 0.0, 0.0, 0.05, 0.5]))
    columns = {}
    for i, name in enumerate(names):
        kind = draw(st.sampled_from(kinds))
        columns[i] = _values(draw, kind, rows, missing)
    frame = pd.DataFrame(columns)
    frame.columns = names
    return frame


def _damage(draw: st.DrawFn, data: bytes) -> bytes:
    kinds = ["truncate", "flip", "nul", "gzip", "garbage_row", "open_quote", "no_breaks", "trailing_comma"]
    how = draw(st.sampled_from(["none"] * 14 + kinds))
    if how == "truncate" and data:
        return data[: draw(st.integers(0, len(data) - 1))]
    if how == "flip" and data:
        at = draw(st.integers(0, len(data) - 1))
        return data[:at] + bytes([draw(st.integers(0, 255))]) + data[at + 1 :]
    if how == "nul":
        return data[: len(data) // 2] + b"\x00" + data[len(data) // 2 :]
    if how == "gzip":
        return gzip.compress(data)
    if how == "garbage_row":
        return data + b"1,2,3,4,5,6,7,8,9,10,11\n"
    if how == "open_quote":
        return data + b'"never closed,1\n'
    if how == "trailing_comma":  # a delimiter at the end of every row but the header
        header, _, rows = data.partition(b"\n")
        return header + b"\n" + rows.replace(b"\n", b",\n")
    if how == "no_breaks":
        return data.replace(b"\n", b",") * 3
    return data


def _parquet_bytes(draw: st.DrawFn, frame: pd.DataFrame) -> bytes:
    arrays = []
    for name in frame.columns.unique():
        part = frame.loc[:, [c == name for c in frame.columns]]
        for j in range(part.shape[1]):
            try:
                arrays.append(pa.array(part.iloc[:, j], from_pandas=True))
            except (pa.ArrowInvalid, pa.ArrowTypeError):  # mixed values: Parquet holds them as text
                arrays.append(pa.array(part.iloc[:, j].map(lambda v: None if v is None else str(v)), type=pa.string()))
    names = list(frame.columns)
    extra = draw(
        st.sampled_from(
            ["none"] * 10
            + [
                "struct",
                "list",
                "binary",
                "decimal",
                "duration",
                "date",
                "timestamp_tz",
                "dictionary",
                "uint64",
                "float16",
                "null",
                "large_string",
            ]
        )
    )
    rows = len(frame)
    if extra == "struct":
        arrays.append(pa.array([{"a": i} for i in range(rows)]))
    elif extra == "list":
        arrays.append(pa.array([[i, i] for i in range(rows)]))
    elif extra == "binary":
        arrays.append(pa.array([bytes([i % 256]) for i in range(rows)], type=pa.binary()))
    elif extra == "decimal":
        import decimal

        arrays.append(pa.array([decimal.Decimal(i) / 4 for i in range(rows)], type=pa.decimal128(12, 4)))
    elif extra == "duration":
        arrays.append(pa.array(list(range(rows)), type=pa.duration("s")))
    elif extra == "date":
        arrays.append(pa.array([i * 100 for i in range(rows)], type=pa.date32()))
    elif extra == "timestamp_tz":
        arrays.append(pa.array([i * 10**9 for i in range(rows)], type=pa.timestamp("ns", tz="Europe/Paris")))
    elif extra == "dictionary":
        arrays.append(pa.array(["a", "b", None, "c"] * (rows // 4) + ["a"] * (rows % 4)).dictionary_encode())
    elif extra == "uint64":
        arrays.append(pa.array([2**64 - 1 - i for i in range(rows)], type=pa.uint64()))
    elif extra == "float16":
        arrays.append(pa.array(np.arange(rows, dtype=np.float16)))
    elif extra == "null":
        arrays.append(pa.nulls(rows))
    elif extra == "large_string":
        arrays.append(pa.array([f"v{i % 3}" for i in range(rows)], type=pa.large_string()))
    if extra != "none":
        names.append(f"extra_{extra}")
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_arrays(arrays, names=names), buffer)
    return buffer.getvalue()


@st.composite
def table_files(draw: st.DrawFn) -> tuple[bytes, str, str | None]:
    """(file bytes, suffix, target column or None)."""
    frame = draw(tables())
    target = draw(st.sampled_from(list(frame.columns))) if len(frame.columns) else None
    if draw(st.integers(0, 3)) == 0:
        data = _parquet_bytes(draw, frame)
        suffix = ".parquet"
    else:
        encoding = draw(st.sampled_from(["utf-8"] * 10 + ["utf-8-sig", "latin-1", "utf-16"]))
        text = frame.to_csv(index=draw(st.integers(0, 19)) == 0)
        data = text.encode(encoding, errors="replace")
        suffix = ".csv"
    return _damage(draw, data), suffix, target


@functools.cache
def _generic_config() -> Any:
    """The generic configuration (a user's own table), composed once for every example."""
    return load_config(
        PROJECT_DIR,
        [
            "data.uri=table.csv",
            "data.target=placeholder",
            "model.hist_gradient_boosting.max_iter=5",
            # tiny classes reach the split and the fit too (a setting users have)
            "data_check.min_class_count=2",
        ],
    )


def _config(target: str) -> Any:
    """The generic configuration for ``target``."""
    cfg = _generic_config().copy()
    OmegaConf.update(cfg, "data.target", target, force_add=True)
    return cfg


def through_the_front_door(path: Path, target: str | None) -> str:
    """Run what the steps run on the file; return how far it got."""
    frame = read_table(path, limits=LIMITS)
    if target is None or target not in frame.columns:
        return "read"
    cfg = _config(target)
    task, _ = resolve_task(cfg.model.task, frame[target])
    settings_ = OmegaConf.to_container(cfg.data_check, resolve=True)
    # The drift checks too: the table's first half stands for an earlier version of it.
    reference = frame.iloc[: len(frame) // 2] if len(frame) >= 4 else None
    report = check_table(frame, target, task, settings_, reference, "raw_data:v0" if reference is not None else None)
    if report.failed():
        return "refused by check_data"
    stratify = stratify_target(cfg.split.stratify_by, target, task)
    trainval, _test = split_dataset(
        frame, target, cfg.split.test_size, cfg.split.random_seed, stratify, classes=task == "classification"
    )
    train_from_config(trainval, cfg, task)
    return "trained"


def assert_model_or_one_line(tmp_path: Path, case: tuple[bytes, str, str | None]) -> str:
    data, suffix, target = case
    path = tmp_path / f"table{suffix}"
    path.write_bytes(data)
    began = time.perf_counter()
    try:
        outcome = through_the_front_door(path, target)
    except TrainflowError as error:
        message = str(error)
        assert message and "\n" not in message, f"not one line: {message!r}"
        assert "Traceback" not in message
        outcome = "refused"
    seconds = time.perf_counter() - began
    assert seconds < SECONDS_PER_EXAMPLE, f"took {seconds:.1f} s"
    return outcome


FUZZ = settings(
    database=None,  # nothing written into the project folder; failures print their example
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
    deadline=None,  # the bound is SECONDS_PER_EXAMPLE, asserted; Hypothesis' deadline is per call and flaky under load
)


@settings(FUZZ, max_examples=60, derandomize=True)
@given(case=table_files())
def test_any_table_file_ends_in_a_model_or_one_line(tmp_path: Path, case: tuple[bytes, str, str | None]) -> None:
    assert_model_or_one_line(tmp_path, case)


# `make fuzz` explores: new random examples each run (TRAINFLOW_FUZZ_EXAMPLES of them). CI's
# longer profile is derandomised too, so a clean clone passes or fails the same way twice;
# what exploring finds is kept as a regression test (see the module docstring).
EXPLORE = int(os.environ.get("TRAINFLOW_FUZZ_EXAMPLES", "0"))


@pytest.mark.slow
@settings(FUZZ, max_examples=EXPLORE or 600, derandomize=not EXPLORE)
@given(case=table_files())
def test_any_table_file_ends_in_a_model_or_one_line_longer(tmp_path: Path, case: tuple[bytes, str, str | None]) -> None:
    assert_model_or_one_line(tmp_path, case)
