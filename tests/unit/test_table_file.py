"""The front door (trainflow.ml.table_file through read_table): what a file must be before it
is parsed, each refusal in one line naming the problem, the setting and the fix."""

from __future__ import annotations

import decimal
import gzip
import io
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from trainflow.errors import ConfigError, DataError
from trainflow.ml.data import read_table, split_dataset
from trainflow.ml.table_file import TableLimits


def write(path: Path, data: bytes | str) -> Path:
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def refusal(path: Path, **kwargs: object) -> str:
    with pytest.raises(DataError) as caught:
        read_table(path, **kwargs)  # type: ignore[arg-type]
    message = str(caught.value)
    assert "\n" not in message, message
    return message


def test_a_repeated_column_name_is_refused_not_renamed(tmp_path: Path) -> None:
    """pandas would read the second 'price' as 'price.1' and the model would train on a
    column nobody named."""
    message = refusal(write(tmp_path / "t.csv", "price,size,price\n1,2,3\n4,5,6\n"))
    assert "names more than one column 'price'" in message and "unique" in message


def test_a_repeated_name_after_blank_lines_is_still_found(tmp_path: Path) -> None:
    """pandas skips blank lines before the header: the check reads the same header."""
    assert "names more than one column 'a'" in refusal(write(tmp_path / "t.csv", "\n\na,a\n1,2\n"))


def test_a_repeated_column_name_in_parquet_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    pq.write_table(pa.Table.from_arrays([pa.array([1, 2]), pa.array([3, 4])], names=["a", "a"]), path)
    assert "names more than one column 'a'" in refusal(path)


def test_an_unnamed_column_is_refused_with_the_index_hint(tmp_path: Path) -> None:
    """The commonest unnamed column: pandas' index written by to_csv without index=False."""
    frame = pd.DataFrame({"a": [1, 2], "b": [3, 4]})
    message = refusal(write(tmp_path / "t.csv", frame.to_csv()))
    assert "column 1 of 3 has no name" in message and "index=False" in message
    message = refusal(write(tmp_path / "u.csv", "a, ,b\n1,2,3\n"))
    assert "column 2 of 3 has no name" in message and "index=False" not in message


def test_a_header_of_a_million_names_is_refused_before_parsing(tmp_path: Path) -> None:
    """The issue's 2 MB header: pandas' renaming of repeated names is quadratic in them
    (minutes); the header bound refuses it after reading 1 MiB."""
    path = write(tmp_path / "t.csv", ",".join(["c"] * 1_000_000) + "\n" + ",".join(["1"] * 1_000_000) + "\n")
    assert "longer than data.limits.max_header_bytes=1,048,576" in refusal(path)
    # Allowed a longer header, the column count is the next bound, still before any parse.
    message = refusal(path, limits=TableLimits(max_header_bytes=4 << 20))
    assert "1,000,000 columns, more than data.limits.max_columns=10,000" in message


@pytest.mark.parametrize("rows", ["1,2,3\n4,5,6\n", "1,2,\n4,5,\n"])
def test_rows_longer_than_the_header_are_refused_not_shifted(tmp_path: Path, rows: str) -> None:
    """pandas takes the extra first fields of such rows as the index: every column would
    hold its neighbour's values (and a delimiter at the end of each row does the same)."""
    message = refusal(write(tmp_path / "t.csv", "a,b\n" + rows))
    assert message == (
        "t.csv's rows have more fields than its header has names (2): name every column in the "
        "header, or remove the delimiter at the end of each row"
    )


def test_a_long_line_and_too_many_cells_name_their_settings(tmp_path: Path) -> None:
    rows = "\n".join(f"{i},{i}" for i in range(1000))
    path = write(tmp_path / "t.csv", "a,b\n" + rows + "\n" + "x" * 5000 + ",1\n")
    assert "data.limits.max_line_bytes=4,000" in refusal(path, limits=TableLimits(max_line_bytes=4000))
    path = write(tmp_path / "u.csv", "a,b\n" + rows + "\n")
    assert "about 1,000 rows x 2 columns = 2,000 cells" in refusal(path, limits=TableLimits(max_cells=1999))
    assert len(read_table(path, limits=TableLimits(max_cells=2000))) == 1000


def test_a_file_without_line_breaks_is_refused(tmp_path: Path) -> None:
    """A file with no line break past the header bound (a minified JSON export) is not
    parsed as one giant row."""
    path = write(tmp_path / "t.csv", "a,b\n" + "1," * 40_000)
    assert "data.limits.max_line_bytes" in refusal(path, limits=TableLimits(max_line_bytes=50_000))


@pytest.mark.parametrize(
    ("make", "said"),
    [
        (lambda data: gzip.compress(data), "gzip-compressed"),
        (lambda data: _zip(data), "zip archive"),
        (lambda data: _tar(data), "tar archive"),
        (lambda data: b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + data, "Excel 97-2003"),
        (lambda data: b"ARROW1\x00\x00" + data, "Arrow IPC"),
        (lambda data: b"SQLite format 3\x00" + data, "SQLite database"),
        (lambda data: data[:10] + b"\x00\x00" + data, "binary data"),
    ],
)
def test_compressed_archives_and_other_formats_are_named(tmp_path: Path, make, said: str) -> None:  # type: ignore[no-untyped-def]
    message = refusal(write(tmp_path / "t.csv", make(b"a,b\n1,2\n3,4\n")))
    assert said in message and "CSV or Parquet" in message


def _zip(data: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("t.csv", data)
    return buffer.getvalue()


def _tar(data: bytes) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        info = tarfile.TarInfo("t.csv")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_utf8_with_a_byte_order_mark_reads_like_utf8(tmp_path: Path) -> None:
    frame = pd.DataFrame({"größe": [1, 2], "b": ["x", "y"]})
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False, encoding="utf-8-sig")
    pd.testing.assert_frame_equal(read_table(path), frame, check_dtype=False)


@pytest.mark.parametrize(
    ("column", "said"),
    [
        (pa.array([{"x": 1}, {"x": 2}]), "nested (struct<x: int64>) values"),
        (pa.array([[1], [2, 3]]), "lists (list<"),
        (pa.array([b"\x00", b"\x01"], type=pa.binary()), "binary values"),
        (pa.array([1, 2], type=pa.duration("s")), "duration[s] values"),
        (pa.array([{"k": 1}, {"k": 2}], type=pa.map_(pa.string(), pa.int64())), "nested (map<string, int64"),
    ],
)
def test_a_column_that_is_not_flat_values_is_refused_by_name(tmp_path: Path, column: pa.Array, said: str) -> None:
    """Before: a struct column reached check_data and crashed it (unhashable type: 'dict')."""
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"y": [0, 1], "odd": column}), path)
    message = refusal(path)
    assert message.startswith("t.parquet: column 'odd' holds " + said), message


def test_parquet_decimals_are_read_as_floats_and_reported(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    prices = pa.array([decimal.Decimal("1.25"), None, decimal.Decimal("3.50")], type=pa.decimal128(6, 2))
    pq.write_table(pa.table({"price": prices, "y": [0, 1, 0]}), path)
    frame = read_table(path)
    assert frame["price"].dtype == np.float64 and frame["price"].tolist()[::2] == [1.25, 3.5]
    assert frame.attrs["read_notes"] == ["column 'price': decimals; read as float64 (about 16 significant digits)"]


def test_parquet_dates_are_read_as_dates_and_reported(tmp_path: Path) -> None:
    """Found by the fuzzing: a Parquet date column reached the task as text (datetime.date
    objects), so a date target was "200 classes" instead of refused as dates."""
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"day": pa.array([0, 100, None], type=pa.date32()), "y": [0, 1, 0]}), path)
    frame = read_table(path)
    assert pd.api.types.is_datetime64_any_dtype(frame["day"]) and str(frame["day"].iloc[1].date()) == "1970-04-11"
    assert frame.attrs["read_notes"] == ["column 'day': dates; read as datetime64"]


def test_a_column_mixing_numbers_and_text_is_read_as_text_and_reported(tmp_path: Path) -> None:
    """pandas' chunked reader makes the first chunk's numbers ints and the rest strings:
    one column of two types, which sorting encoders refuse. Read again as text, as written
    (007 stays 007)."""
    codes = ["007"] + [str(i) for i in range(1, 300_000)] + ["A12"]
    path = tmp_path / "t.csv"
    pd.DataFrame({"code": codes, "y": range(len(codes))}).to_csv(path, index=False)
    frame = read_table(path)
    assert pd.api.types.infer_dtype(frame["code"]) == "string" and frame["code"].iloc[0] == "007"
    assert frame["code"].iloc[-1] == "A12"
    assert frame.attrs["read_notes"] == ["column 'code': numbers and text mixed; read as text"]


def _text_with_bytes(data: bytes, offsets: list[int]) -> pa.Array:
    """A string array holding ``data`` as it is: pyarrow's writers do not check UTF-8."""
    return pa.Array.from_buffers(
        pa.string(),
        len(offsets) - 1,
        [None, pa.py_buffer(np.array(offsets, dtype=np.int32).tobytes()), pa.py_buffer(data)],
    )


@pytest.mark.parametrize("dictionary", [False, True], ids=["plain", "dictionary"])
def test_parquet_text_that_is_not_utf8_is_refused_at_the_read(tmp_path: Path, dictionary: bool) -> None:
    """Found by the slow fuzzing profile in CI: a damaged Parquet text column was read
    without complaint and failed in check_data's date sniffing with Arrow's raw
    "Wrapping ... failed"."""
    text = _text_with_bytes(b"\xc3(ok\xff", [0, 2, 4, 5])
    column = pa.DictionaryArray.from_arrays(pa.array([0, 1, 2]), text) if dictionary else text
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"y": [0, 1, 0], "q": column}), path)
    message = refusal(path)
    assert "UTF" in message and message.startswith("t.parquet"), message
    if not dictionary:  # pyarrow's own check of dictionary pages names no column
        assert "column 'q' holds text that is not valid UTF-8" in message, message


def test_a_parquet_column_named_with_a_semicolon_is_not_taken_for_a_separator(tmp_path: Path) -> None:
    """Found by the fuzzing: the one-column ';'-separated CSV hint fired on Parquet files."""
    path = tmp_path / "t.parquet"
    pd.DataFrame({"a;b": [1, 2, 3]}).to_parquet(path, index=False)
    assert "has 3 rows and 1 columns" in refusal(path)


def test_a_true_false_target_with_gaps_splits_into_booleans() -> None:
    """Found by the fuzzing: with gaps pandas keeps true/false as objects, and the split's
    labels then mixed with scikit-learn's metrics ("a mix of unknown and binary targets")."""
    frame = pd.DataFrame({"x": range(40), "y": [True, False, None, True] * 10})
    trainval, test = split_dataset(frame, "y", 0.25, 0, "y", classes=True)
    assert trainval["y"].dtype == bool and test["y"].dtype == bool and len(trainval) + len(test) == 30


def test_an_infinite_regression_target_is_one_line() -> None:
    """Found by the fuzzing: scikit-learn's "Input y contains infinity" from deep in the fit."""
    frame = pd.DataFrame({"x": range(20), "y": [1.5] * 19 + [np.inf]})
    with pytest.raises(DataError, match=r"the target 'y' holds 1 infinite value\(s\)"):
        split_dataset(frame, "y", 0.25, 0, None)


def test_the_limits_are_configurable_and_must_be_positive(project_dir: Path) -> None:
    from trainflow.config.schema import load_config, validate

    cfg = load_config(project_dir, ["dataset=penguins", "data.limits.max_columns=20"])
    assert TableLimits.from_config(cfg.data.limits) == TableLimits(max_columns=20)
    with pytest.raises(ConfigError, match=r"data.limits.max_cells=0 must be a positive number"):
        validate(load_config(project_dir, ["dataset=penguins", "data.limits.max_cells=0"]))
