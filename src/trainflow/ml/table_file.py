"""What a table file must be before it is parsed, and what its columns must be after.

A CSV or Parquet file from anywhere reaches pandas only once cheap checks bounded by its
size say it can be parsed in time and memory proportional to that size: its kind (not
compressed, not an archive, not a wide-Unicode or binary file), its header (length,
number of columns, every column named, no name twice), its longest line and its number
of cells, and for Parquet its schema (flat columns of types a model can take). Each
refusal is a :class:`DataError` of one line naming the problem, the limit's setting
(``data.limits.*``) where there is one, and the fix.

After the parse, what has one safe reading is converted and reported (a note), never
silently: a CSV column that mixes numbers and text is read as text, Parquet decimals as
floats. Plain functions: no MLflow, no store.
"""

from __future__ import annotations

import codecs
import csv
import io
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from trainflow.errors import DataError

# Enough of a file's start to recognise its kind, or an HTML page instead of a data file
# (a tar header's magic sits at byte 257).
SNIFF_BYTES = 512
_SCAN_CHUNK = 8 << 20


@dataclass(frozen=True)
class TableLimits:
    """``data.limits``: what a table file may hold before trainflow parses it.

    The defaults take any table a machine with 16 GB of memory can train on and refuse,
    in well under a second per GB, the files that would make the parse itself the
    problem (a header of a million names, one line of a gigabyte).
    """

    # Wide tables of a few thousand features are ordinary; past 10,000 columns pandas'
    # per-column cost dominates and the features need selecting anyway.
    max_columns: int = 10_000
    # 10,000 names of ~100 bytes. The header is parsed before the table, within this bound.
    max_header_bytes: int = 1 << 20
    # A long text document per cell fits; a file with no line breaks (a minified JSON,
    # one huge quoted field) does not.
    max_line_bytes: int = 16 << 20
    # 500 million cells are 4 GB as float64; training needs a few times the table.
    max_cells: int = 500_000_000

    @classmethod
    def from_config(cls, limits: object | None) -> TableLimits:
        """From ``cfg.data.limits`` (absent keys keep their defaults)."""
        if limits is None:
            return cls()
        return cls(**{key: int(limits[key]) for key in cls.__dataclass_fields__ if key in limits})  # type: ignore[index,operator]


def _setting(name: str) -> str:
    return f"data.limits.{name}"


# Magic numbers of what is not a table file trainflow reads: (prefix, what it is, the fix).
_DECOMPRESS = "decompress it first (e.g. {tool} -k {name}) or save the table as Parquet, which compresses its columns"
_NOT_TABLES: tuple[tuple[bytes, str, str], ...] = (
    (b"\x1f\x8b", "gzip-compressed", _DECOMPRESS.replace("{tool}", "gunzip")),
    (b"BZh", "bzip2-compressed", _DECOMPRESS.replace("{tool}", "bunzip2")),
    (b"\xfd7zXZ\x00", "xz-compressed", _DECOMPRESS.replace("{tool}", "unxz")),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed", _DECOMPRESS.replace("{tool}", "unzstd")),
    (
        b"PK\x03\x04",
        "a zip archive (or an Excel/OpenDocument workbook)",
        "extract the table and save it as CSV or Parquet",
    ),
    (b"PK\x05\x06", "an empty zip archive", "extract the table and save it as CSV or Parquet"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive", "extract the table and save it as CSV or Parquet"),
    (b"Rar!\x1a\x07", "a RAR archive", "extract the table and save it as CSV or Parquet"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an Excel 97-2003 (OLE) file", "save it as CSV or Parquet"),
    (b"ARROW1", "an Arrow IPC (Feather) file", "save it as Parquet (pandas: pd.read_feather(f).to_parquet(out))"),
    (b"ORC", "an ORC file", "save it as Parquet (pyarrow.orc.read_table(f) then pyarrow.parquet.write_table)"),
    (b"SQLite format 3\x00", "an SQLite database", "export the table as CSV or Parquet"),
    (b"%PDF", "a PDF document", "export the table as CSV or Parquet"),
)

# UTF-32's little-endian BOM begins with UTF-16's, so it is tried first.
_UNICODE_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
# Without a BOM, ASCII text in a wide encoding still shows where its NULs fall in each
# 4 bytes: (byte 0, 1, 2, 3 of every 4 is NUL) -> codec.
_NUL_PATTERNS: dict[tuple[bool, ...], str] = {
    (False, True, False, True): "utf-16-le",
    (True, False, True, False): "utf-16-be",
    (False, True, True, True): "utf-32-le",
    (True, True, True, False): "utf-32-be",
}


def _wide_unicode(head: bytes) -> str | None:
    """The Python codec of UTF-16/UTF-32 text starting with ``head``, or None for anything else."""
    for bom, codec in _UNICODE_BOMS:
        if head.startswith(bom):
            return codec
    words = len(head) // 4
    if words < 4:
        return None
    # 90%, not all: a character past U+00FF fills a byte that is NUL for ASCII ones.
    pattern = tuple(head[i : words * 4 : 4].count(0) >= 0.9 * words for i in range(4))
    return _NUL_PATTERNS.get(pattern)


def file_kind(path: Path, head: bytes, setting: str) -> str:
    """``"parquet"`` or ``"csv"`` from the file's first bytes; anything else is refused by name."""
    if head[:4] == b"PAR1":
        return "parquet"
    for magic, what, fix in _NOT_TABLES:
        if head.startswith(magic):
            raise DataError(
                f"{path.name} is {what}, not a CSV or Parquet file: {fix.format(name=path.name)}; "
                f"or point {setting} at another file"
            )
    if head[257:262] == b"ustar":
        raise DataError(
            f"{path.name} is a tar archive, not a CSV or Parquet file: extract the table "
            f"(tar -xf {path.name}) and point {setting} at it"
        )
    wide = _wide_unicode(head)
    if wide is not None:
        # pandas would stop at the first byte that is not UTF-8, and a guessed 8-bit
        # encoding would "succeed" with a NUL beside every character.
        raise DataError(
            f"{path.name} is {wide.upper()} text, not UTF-8; trainflow reads UTF-8 CSV: re-save it as UTF-8 "
            f"(e.g. pandas: pd.read_csv(f, encoding={wide!r}).to_csv(out, index=False)) or as Parquet"
        )
    if b"\x00" in head:
        raise DataError(
            f"{path.name} holds binary data (NUL bytes in its first {len(head)} bytes), not a CSV or "
            f"Parquet file: point {setting} at the table itself"
        )
    return "csv"


def not_utf8(path: Path, error: UnicodeDecodeError) -> DataError:
    return DataError(
        f"{path.name} is not UTF-8 text (byte {error.object[error.start : error.start + 1]!r} at offset "
        f"{error.start}): save it as UTF-8 (e.g. pandas: pd.read_csv(f, encoding='latin-1').to_csv(out, "
        "index=False)) or as Parquet"
    )


def csv_header(path: Path, limits: TableLimits) -> list[str]:
    """The column names of a CSV file's first record, read within ``max_header_bytes``."""
    with open(path, "rb") as reader:
        raw = reader.read(limits.max_header_bytes + 1)
    whole = len(raw) <= limits.max_header_bytes
    raw = raw[: limits.max_header_bytes]
    text = codecs.getincrementaldecoder("utf-8-sig")(errors="strict")
    try:
        decoded = text.decode(raw, final=whole)  # a character cut at the bound waits for more
    except UnicodeDecodeError as error:
        raise not_utf8(path, error) from None
    consumed: list[str] = []

    def lines() -> Iterator[str]:
        for line in io.StringIO(decoded, newline=""):
            consumed.append(line)
            yield line

    # A quoted name may hold anything up to the bound: the csv module's own cap is 128 KiB.
    csv.field_size_limit(max(csv.field_size_limit(), limits.max_header_bytes))
    try:
        # pandas skips blank lines before the header; so does this.
        names = next((row for row in csv.reader(lines()) if row), [])
    except csv.Error as error:
        raise DataError(f"{path.name}'s header is not valid CSV ({error}): fix the first line") from None
    ended = bool(consumed) and consumed[-1].endswith(("\n", "\r"))
    if not ended and not whole:
        raise DataError(
            f"{path.name}'s header (first line) is longer than {_setting('max_header_bytes')}="
            f"{limits.max_header_bytes:,} bytes: is it a CSV table? If so, raise {_setting('max_header_bytes')}"
        )
    return names


def _first_few(items: list[str], shown: int = 5) -> str:
    """``items`` joined, the first ``shown`` of them and how many more."""
    more = len(items) - shown
    return ", ".join(items[:shown]) + (f" and {more:,} more" if more > 0 else "")


def check_column_names(names: list[str], file_name: str) -> None:
    """Every column named, and no name twice: a reader would otherwise rename them
    (``Unnamed: 3``, ``price.1``) and the model would learn from columns nobody named."""
    empty = [i + 1 for i, name in enumerate(names) if not str(name).strip()]
    if empty:
        where = _first_few([str(i) for i in empty])
        index_hint = (
            " (pandas' to_csv writes its index as an unnamed first column: save with index=False)"
            if empty == [1]
            else ""
        )
        raise DataError(
            f"{file_name}: column {where} of {len(names):,} has no name{index_hint}; name every column in the header"
        )
    repeated = [name for name, count in Counter(names).items() if count > 1]
    if repeated:
        shown = _first_few([repr(name) for name in repeated])
        raise DataError(
            f"{file_name} names more than one column {shown}: rename them so that every column name is unique"
        )


def _check_columns_count(count: int, file_name: str, limits: TableLimits) -> None:
    if count > limits.max_columns:
        raise DataError(
            f"{file_name} has {count:,} columns, more than {_setting('max_columns')}={limits.max_columns:,}: "
            f"keep the columns you need, or raise {_setting('max_columns')}"
        )


def _check_cells(rows: int, columns: int, file_name: str, limits: TableLimits) -> None:
    if rows * columns > limits.max_cells:
        raise DataError(
            f"{file_name} has about {rows:,} rows x {columns:,} columns = {rows * columns:,} cells, more than "
            f"{_setting('max_cells')}={limits.max_cells:,}: sample rows, keep fewer columns, or raise "
            f"{_setting('max_cells')} on a machine with the memory for it"
        )


def csv_layout(path: Path, limits: TableLimits) -> list[str]:
    """The header's names (checked), after a scan that refuses a line longer than
    ``max_line_bytes`` and more than ``max_cells`` cells; linear in the file's size, in
    chunks of at most 8 MiB."""
    names = csv_header(path, limits)
    _check_columns_count(len(names), path.name, limits)
    check_column_names(names, path.name)
    # With chunks no larger than the bound, a line inside one chunk is within it: only a
    # line that crosses chunk boundaries needs measuring, from memchr-speed bytes methods.
    chunk_size = min(_SCAN_CHUNK, limits.max_line_bytes)
    newlines, line_start, offset = 0, 0, 0
    with open(path, "rb") as reader:
        while chunk := reader.read(chunk_size):
            first = chunk.find(b"\n")
            end = offset + (first if first >= 0 else len(chunk))
            if end - line_start > limits.max_line_bytes:
                raise DataError(
                    f"{path.name} has a line (line {newlines + 1:,}) longer than {_setting('max_line_bytes')}="
                    f"{limits.max_line_bytes:,} bytes: is it a CSV table with a line break after every row? "
                    f"If so, raise {_setting('max_line_bytes')}"
                )
            if first >= 0:
                newlines += chunk.count(b"\n")
                line_start = offset + chunk.rfind(b"\n") + 1
            offset += len(chunk)
    lines = newlines + (1 if offset > line_start else 0) - 1
    _check_cells(max(lines, 0), len(names), path.name, limits)
    return names


def _flat_type_problem(arrow_type: object) -> str | None:
    """Why a Parquet column of this Arrow type cannot be a model's input, or None if it can."""
    t = pa.types
    if t.is_dictionary(arrow_type):
        return _flat_type_problem(arrow_type.value_type)  # type: ignore[attr-defined]
    if t.is_struct(arrow_type) or t.is_map(arrow_type) or t.is_union(arrow_type):
        return (
            f"nested ({arrow_type}) values: flatten it into one column per field (pyarrow: Table.flatten()) or drop it"
        )
    if (
        t.is_list(arrow_type)
        or t.is_large_list(arrow_type)
        or t.is_fixed_size_list(arrow_type)
        or getattr(t, "is_list_view", lambda _: False)(arrow_type)
    ):
        return f"lists ({arrow_type}): turn them into one column per position or summary (a count, a mean) or drop it"
    if t.is_binary(arrow_type) or t.is_large_binary(arrow_type) or t.is_fixed_size_binary(arrow_type):
        return f"binary values ({arrow_type}): decode them into text or numbers, or drop the column"
    if t.is_time(arrow_type) or t.is_duration(arrow_type) or t.is_interval(arrow_type):
        return f"{arrow_type} values: turn them into a number (e.g. seconds) or a full timestamp"
    if isinstance(arrow_type, pa.ExtensionType):
        return f"an extension type ({arrow_type}): store its values as plain numbers or text"
    known = (
        t.is_integer,
        t.is_floating,
        t.is_boolean,
        t.is_string,
        t.is_large_string,
        t.is_null,
        t.is_timestamp,
        t.is_date,
        t.is_decimal,
        getattr(t, "is_string_view", lambda _: False),
    )
    if any(check(arrow_type) for check in known):
        return None
    return f"{arrow_type} values, which trainflow cannot use: store them as numbers, text or timestamps"


def parquet_layout(path: Path, limits: TableLimits, setting: str = "data.uri") -> list[str]:
    """The Parquet file's column names, after refusing a schema too large to read
    (``max_header_bytes``), too many columns or cells, unnamed or repeated names and
    columns that are not flat values. Reads the footer only."""
    size = path.stat().st_size
    with open(path, "rb") as reader:
        if size < 12:
            raise DataError(
                f"{path.name} starts like Parquet but is only {size} bytes: the file is cut short; "
                f"write it again or check {setting}"
            )
        reader.seek(size - 8)
        tail = reader.read(8)
    footer = int.from_bytes(tail[:4], "little")
    if tail[4:] != b"PAR1" or footer > size - 12:
        raise DataError(
            f"{path.name} starts like Parquet but has no Parquet footer (cut short or damaged): "
            f"write it again or check {setting}"
        )
    if footer > limits.max_header_bytes:
        raise DataError(
            f"{path.name}'s Parquet schema and metadata take {footer:,} bytes, more than "
            f"{_setting('max_header_bytes')}={limits.max_header_bytes:,}: raise {_setting('max_header_bytes')} "
            "if the table really has that many columns or row groups"
        )
    try:
        parquet = pq.ParquetFile(path)
        schema = parquet.schema_arrow
        rows = parquet.metadata.num_rows
    except (OSError, ValueError, pa.ArrowException) as error:  # pyarrow's kinds of damaged metadata
        raise DataError(
            f"{path.name} is not a readable Parquet file ({error.__class__.__name__}: "
            f"{str(error).splitlines()[0] if str(error) else ''}): write it again or check {setting}"
        ) from None
    names = [field.name for field in schema if not _is_pandas_index(field.name)]
    _check_columns_count(len(names), path.name, limits)
    check_column_names(names, path.name)
    for field in schema:
        problem = _flat_type_problem(field.type)
        if problem is not None:
            raise DataError(f"{path.name}: column {field.name!r} holds {problem}")
    _check_cells(rows, len(names), path.name, limits)
    return names


def _is_pandas_index(name: str) -> bool:
    # pandas writes an index it cannot store as a range as a column named like this; the
    # reader puts it back as the frame's index.
    return name.startswith("__index_level_") and name.endswith("__")


# pandas' names for object columns whose values are not all of one kind
_MIXED = ("mixed", "mixed-integer", "mixed-integer-float")


def _object_columns(frame: pd.DataFrame, kinds: tuple[str, ...]) -> dict[str, list[str]]:
    """For each of ``kinds`` (pandas' ``infer_dtype`` names), the object columns whose
    values are of that kind; each column's values are looked at once."""
    found: dict[str, list[str]] = {kind: [] for kind in kinds}
    for column in frame.columns:
        if frame[column].dtype == object:
            kind = pd.api.types.infer_dtype(frame[column], skipna=True)
            if kind in found:
                found[kind].append(column)
    return found


def mixed_columns(frame: pd.DataFrame) -> list[str]:
    """Object columns whose values are of several kinds (numbers and text): what pandas'
    chunked CSV reader makes of a column whose type changes part way down the file."""
    return [column for columns in _object_columns(frame, _MIXED).values() for column in columns]


def read_csv_checked(path: Path, names: list[str], notes: list[str]) -> pd.DataFrame:
    """``pd.read_csv`` of a file whose header :func:`csv_layout` checked (``names``). A
    column that mixes numbers and text is read again as text, the one reading that keeps
    every value as written, and the conversion is added to ``notes``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pd.errors.DtypeWarning)  # found and fixed below
        frame = pd.read_csv(path)
    if not frame.index.equals(pd.RangeIndex(len(frame))):
        # pandas' rule for rows with more fields than the header has names: the first
        # fields become the index, and every column then holds its neighbour's values.
        raise DataError(
            f"{path.name}'s rows have more fields than its header has names ({len(names):,}): name every column "
            "in the header, or remove the delimiter at the end of each row"
        )
    mixed = mixed_columns(frame)
    if mixed:
        as_text = pd.read_csv(path, usecols=mixed, dtype="str")
        for column in mixed:
            frame[column] = as_text[column]
        notes.append(_conversion_note(mixed, "numbers and text mixed", "text"))
    return frame


def _conversion_note(columns: list[str], what: str, result: str) -> str:
    shown = _first_few([repr(c) for c in columns])
    plural = "column" if len(columns) == 1 else "columns"
    return f"{plural} {shown}: {what}; read as {result}"


def check_parquet_text(frame: pd.DataFrame, file_name: str) -> None:
    """Refuse a text column whose bytes are not UTF-8. Parquet's reader does not check
    them; pandas would fail later, wherever the column is first looked at, with Arrow's
    "Wrapping ... failed" and no column named."""
    for column in frame.columns:
        if isinstance(frame[column].dtype, pd.StringDtype) and frame[column].dtype.storage == "pyarrow":
            try:
                pa.array(frame[column]).validate(full=True)
            except pa.ArrowInvalid as error:
                raise DataError(
                    f"{file_name}: column {column!r} holds text that is not valid UTF-8 ({error}): the file is "
                    "damaged or was written from undecoded bytes; decode the column to text and write the file again"
                ) from None


def normalise_parquet_columns(frame: pd.DataFrame, notes: list[str]) -> pd.DataFrame:
    """Parquet decimals (pandas gives Python ``Decimal`` objects, which no estimator takes)
    as float64, and dates as datetime64, reported in ``notes``."""
    found = _object_columns(frame, ("decimal", "date"))
    decimals, dates = found["decimal"], found["date"]
    for column in decimals:
        frame[column] = pd.to_numeric(frame[column].astype("float64"))
    if decimals:
        notes.append(_conversion_note(decimals, "decimals", "float64 (about 16 significant digits)"))
    # Parquet dates (no time of day) come as Python date objects, which pandas takes for
    # text: as datetime64 they are dates to the checks, the task and the features.
    for column in dates:
        frame[column] = pd.to_datetime(frame[column])
    if dates:
        notes.append(_conversion_note(dates, "dates", "datetime64"))
    return frame
