"""Fetching, reading and splitting tables. Plain functions: no MLflow, no store."""

from __future__ import annotations

import hashlib
import http.client
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pandas as pd

from trainflow.errors import DataError
from trainflow.logs import progress
from trainflow.ml.table_file import (
    SNIFF_BYTES,
    TableLimits,
    check_parquet_text,
    csv_layout,
    file_kind,
    normalise_parquet_columns,
    not_utf8,
    parquet_layout,
    read_csv_checked,
)

# scikit-learn is imported inside split_dataset: about 0.6 s that `trainflow data-schema infer` and the steps that
# neither split nor train (fetch_data, check_data) do not pay; every step imports this module, through
# trainflow.pipeline.step_run (docs/architecture.md#start-up).

_CHUNK = 1 << 20
# data.max_bytes' default: a table this size already needs several times as much memory once parsed.
DEFAULT_MAX_BYTES = 2 * 1024**3
HTTP_TIMEOUT_SECONDS = 30


# The HTTP response headers that say whether a remote file changed, as a server sends them.
VALIDATOR_HEADERS = ("ETag", "Last-Modified")


@dataclass(frozen=True)
class FetchedFile:
    path: Path
    source: str
    sha256: str
    size: int
    # ETag / Last-Modified of the response a URL was downloaded from (empty for files)
    validators: dict[str, str] = field(default_factory=dict)


def fetch(
    uri: str,
    destination_dir: Path,
    expected_sha256: str | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    *,
    setting: str = "data.uri",
) -> FetchedFile:
    """Copy or download ``uri`` (local path, ``file://`` or ``http(s)://``) into ``destination_dir``.

    Streams in chunks, hashing on the way; verifies ``expected_sha256`` when given.
    Raises :class:`DataError` for an unreachable source, an HTTP error, an HTML page
    instead of a data file, a truncated download, an empty file, a file over
    ``max_bytes`` (found from Content-Length or the file's size before reading, else
    while streaming) or a digest mismatch. Nothing is left behind on failure.
    ``setting`` is the config key the user gave ``uri`` as: the errors tell them to fix that.
    """
    parsed = urllib.parse.urlparse(uri)
    scheme = parsed.scheme.lower()
    if scheme in ("http", "https"):
        name = Path(urllib.parse.unquote(parsed.path)).name or "raw_data.csv"
        source = uri
    elif scheme in ("", "file"):
        local = Path(urllib.parse.unquote(parsed.path) if scheme == "file" else uri).expanduser()
        if not local.is_file():
            raise DataError(f"no such file {local}; check {setting} (a local path, file:// or http(s):// URL)")
        name = local.name
        source = local.resolve().as_uri()
    else:
        raise DataError(f"unsupported {setting} scheme {scheme!r} in {uri!r}: use a local path, file:// or http(s)://")

    destination_dir.mkdir(parents=True, exist_ok=True)
    target = destination_dir / name
    partial = destination_dir / f".{name}.partial"
    validators: dict[str, str] = {}
    try:
        if scheme in ("http", "https"):
            digest, size, validators = _download(uri, partial, max_bytes, setting)
        else:
            _check_size(uri, local.stat().st_size, max_bytes)
            digest, size = _copy_hashing(local, partial, max_bytes)
        if size == 0:
            raise DataError(f"{uri} is empty (0 bytes): point {setting} at a file with data")
        if expected_sha256 is not None and digest != expected_sha256.lower():
            raise DataError(
                f"sha256 mismatch for {uri}: got {digest}, data.sha256 expects {expected_sha256}; "
                "the file changed or the digest is wrong: fix data.sha256 or the source"
            )
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return FetchedFile(path=target, source=source, sha256=digest, size=size, validators=validators)


def _check_size(uri: str, size: int, max_bytes: int) -> None:
    if size > max_bytes:
        raise DataError(
            f"{uri} is larger than data.max_bytes={max_bytes:,} bytes ({size:,} bytes or more): nothing was kept; "
            "raise data.max_bytes if this machine has several times that in memory, or sample the table"
        )


def _copy_hashing(source: Path, target: Path, max_bytes: int) -> tuple[str, int]:
    with open(source, "rb") as reader, open(target, "wb") as writer:
        return _stream(reader, writer, str(source), max_bytes, source.stat().st_size, f"copying {source.name}")


def _stream(
    reader: BinaryIO, writer: BinaryIO, uri: str, max_bytes: int, total: int | None, what: str
) -> tuple[str, int]:
    """Copy in chunks, hashing; stop as soon as the limit is passed (a server may not say the
    size). A progress bar of ``total`` bytes on a terminal."""
    digest = hashlib.sha256()
    size = 0
    with progress(total, what) as bar:
        while chunk := reader.read(_CHUNK):
            size += len(chunk)
            _check_size(uri, size, max_bytes)
            digest.update(chunk)
            writer.write(chunk)
            bar.update(len(chunk))
    return digest.hexdigest(), size


def _download(url: str, target: Path, max_bytes: int, setting: str) -> tuple[str, int, dict[str, str]]:
    request = urllib.request.Request(url, headers={"User-Agent": "trainflow"})
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_SECONDS) as response:
            if response.headers.get_content_type() == "text/html":
                raise _html_page(url, setting, "Content-Type text/html")
            expected = response.headers.get("Content-Length")
            if expected is not None and expected.isdigit():
                _check_size(url, int(expected), max_bytes)  # before downloading a byte
            validators = _validators(response.headers)
            with open(target, "wb") as writer:
                total = int(expected) if expected is not None and expected.isdigit() else None
                digest, size = _stream(response, writer, url, max_bytes, total, f"downloading {url}")
    except urllib.error.HTTPError as error:
        raise DataError(f"HTTP {error.code} {error.reason} fetching {url}: check {setting}") from None
    except urllib.error.URLError as error:
        raise DataError(f"cannot reach {url} ({error.reason}): check {setting} and the network") from None
    except http.client.IncompleteRead as error:
        raise DataError(
            f"download of {url} was cut off after {len(error.partial)} bytes: retry, or check the server"
        ) from None
    except (TimeoutError, ConnectionError, http.client.HTTPException) as error:
        raise DataError(f"download of {url} failed ({error.__class__.__name__}: {error}): retry") from None
    if expected is not None and expected.isdigit() and int(expected) != size:
        raise DataError(f"download of {url} was cut off: got {size} of {expected} bytes; retry")
    with open(target, "rb") as reader:
        if _starts_like_html(reader.read(SNIFF_BYTES)):  # a server that labels its pages as anything
            raise _html_page(url, setting, "its body starts like HTML")
    return digest, size, validators


def _starts_like_html(head: bytes) -> bool:
    start = head.lstrip().lower()
    return start.startswith((b"<!doctype html", b"<html"))


def _html_page(url: str, setting: str, evidence: str) -> DataError:
    # A link to a page about the file (a folder listing, a repository's file view, a login
    # page) parses as a one-column "table"; saying so beats reporting its shape.
    return DataError(
        f"{url} returned an HTML page, not a data file ({evidence}); point {setting} at the file itself "
        "(its raw or download link)"
    )


def _validators(headers: Mapping[str, str]) -> dict[str, str]:
    return {name: headers[name] for name in VALIDATOR_HEADERS if headers.get(name)}


def remote_validators(url: str, timeout: float = HTTP_TIMEOUT_SECONDS) -> dict[str, str]:
    """The ETag and Last-Modified a server reports for ``url`` now, from one HEAD request.

    Empty when the server sends neither. Raises :class:`DataError` when it cannot be asked.
    """
    request = urllib.request.Request(url, method="HEAD", headers={"User-Agent": "trainflow"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return _validators(response.headers)
    except urllib.error.HTTPError as error:
        raise DataError(f"HTTP {error.code} {error.reason} asking {url} whether it changed") from None
    except (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException) as error:
        raise DataError(f"cannot ask {url} whether it changed ({error.__class__.__name__}: {error})") from None


def read_table(
    path: Path,
    setting: str = "data.uri",
    allow_empty: bool = False,
    limits: TableLimits | None = None,
) -> pd.DataFrame:
    """Read a CSV or Parquet file (chosen by content, not by suffix) into a DataFrame.

    Before the parse, :mod:`trainflow.ml.table_file` refuses in one line what cannot be read
    in time and memory bounded by the file's size (``limits``: ``data.limits``) or would
    be read wrongly (compressed files, archives, other encodings, unnamed or repeated
    columns, nested types). What has one safe reading is converted and reported: the
    frame's ``attrs["read_notes"]`` lists those conversions.
    ``setting`` is what the user named the file with (a config key): the errors tell them to fix that.
    A table to learn from needs rows and two columns; one to score (``allow_empty``) may have no rows.
    """
    path = Path(path)
    limits = limits or TableLimits()
    try:
        with open(path, "rb") as reader:
            head = reader.read(SNIFF_BYTES)
    except OSError as error:
        raise DataError(f"cannot read {path}: {error.strerror}") from None
    if not head:
        raise DataError(f"{path.name} is empty: point {setting} at a file with data")
    notes: list[str] = []
    kind = file_kind(path, head, setting)
    try:
        if kind == "parquet":
            parquet_layout(path, limits, setting)
            frame = pd.read_parquet(path)
            check_parquet_text(frame, path.name)
            frame = normalise_parquet_columns(frame, notes)
        else:
            frame = read_csv_checked(path, csv_layout(path, limits), notes)
    except UnicodeDecodeError as error:
        raise not_utf8(path, error) from None
    except (ValueError, pd.errors.ParserError, OSError) as error:
        raise DataError(
            f"{path.name} is neither a readable CSV nor Parquet file ({error.__class__.__name__}: "
            f"{str(error).splitlines()[0] if str(error) else ''}); check {setting}"
        ) from None
    if kind == "csv" and len(frame.columns) == 1:
        delimiter = next((d for d in (";", "\t", "|") if d in str(frame.columns[0])), None)
        if delimiter is not None:
            raise DataError(
                f"{path.name} looks {delimiter!r}-separated (one column named {str(frame.columns[0])[:60]!r}): "
                f"trainflow reads comma-separated CSV; convert it (pd.read_csv(f, sep={delimiter!r}).to_csv(out, "
                "index=False)) or save it as Parquet"
            )
    if not allow_empty and (frame.empty or len(frame.columns) < 2):
        raise DataError(
            f"{path.name} has {len(frame)} rows and {len(frame.columns)} columns: a training table needs "
            "rows and at least a feature and a target column"
        )
    frame.attrs["read_notes"] = notes
    release_unused_arrow_memory()
    return frame


def release_unused_arrow_memory() -> None:
    """Give back what Arrow's memory pool keeps after a read: the file's decoded buffers,
    as large again as the frame, which the pool would otherwise hold for the rest of the
    step (pandas' string columns live in that pool, so only its unused part goes)."""
    if "pyarrow" in sys.modules:
        sys.modules["pyarrow"].default_memory_pool().release_unused()


def require_columns(frame: pd.DataFrame, columns: list[str], what: str) -> None:
    """Fail with the missing column names if ``frame`` lacks any of ``columns``."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(
            f"{what}: column(s) {', '.join(repr(c) for c in missing)} not in the data, which has "
            f"{', '.join(map(str, frame.columns))}; fix the config or the data"
        )


def split_dataset(
    frame: pd.DataFrame,
    target: str,
    test_size: float,
    random_seed: int,
    stratify_by: str | None,
    classes: bool = False,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split into (trainval, test), stratified by ``stratify_by`` when given.

    Rows without a target value cannot be learned from or scored, so they are dropped.
    With ``classes`` (a classification target), whole-number classes that pandas read as
    floats because of those gaps become integers again: class 1, not 1.0, in the model's
    classes, its metric names and its served columns.
    A caller that hands ``frame`` over without keeping it has it freed before the two
    parts are copied out, and its string buffers given back after.
    """
    from sklearn.model_selection import train_test_split

    require_columns(frame, [target] + ([stratify_by] if stratify_by else []), "split_data")
    labelled = frame.dropna(subset=[target]).reset_index(drop=True)
    del frame
    labelled[target] = class_labels(labelled[target]) if classes else finite_quantity(labelled[target])
    if len(labelled) < 2:
        raise DataError(f"only {len(labelled)} rows have a value in the target column {target!r}: cannot split")
    try:
        trainval, test = train_test_split(
            labelled,
            test_size=test_size,
            random_state=random_seed,
            stratify=labelled[stratify_by] if stratify_by else None,
        )
    except ValueError as error:
        raise DataError(
            f"cannot split on {stratify_by or target!r}: {error}; lower split.test_size or set split.stratify_by=null"
        ) from None
    del labelled
    if len(test) < 2:
        # R2 and AUC need two rows; with one, test_model records NaN and promotion refuses
        # the model as if it were bad.
        raise DataError(
            f"the test set would have {len(test)} row(s) of {len(trainval) + len(test)}: metrics need at least 2; "
            "raise split.test_size or use a larger table"
        )
    release_unused_arrow_memory()
    return trainval.reset_index(drop=True), test.reset_index(drop=True)


def class_labels(values: pd.Series) -> pd.Series:
    """A classification target without gaps, its labels of one type: whole numbers that
    pandas read as floats (because of gaps) as integers, and true/false values that it
    kept as objects (because of gaps) as booleans; scikit-learn's metrics refuse a mix."""
    if _whole_floats(values):
        return values.astype("int64")
    if values.dtype == object and pd.api.types.infer_dtype(values, skipna=True) == "boolean":
        return values.astype(bool)
    return values


def finite_quantity(values: pd.Series) -> pd.Series:
    """A regression target without gaps, refused in one line if any value is infinite."""
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        infinite = int(np.isinf(values.to_numpy(dtype="float64")).sum())
        if infinite:
            raise DataError(
                f"the target {values.name!r} holds {infinite:,} infinite value(s): a quantity to predict must be "
                "finite; fix or drop those rows"
            )
    return values


def _whole_floats(values: pd.Series) -> bool:
    return pd.api.types.is_float_dtype(values) and bool(np.isfinite(values).all()) and bool((values % 1 == 0).all())


def mostly_dates(values: pd.Series) -> bool:
    """Whether a column of strings holds dates: nearly all of a sample parse, each with a
    four-digit year. Feature inference and the drift checks share this test."""
    sample = values.astype(str).head(200)
    # A value without a year ("10:30", "1/5", "1st") parses too, but its missing parts are
    # taken from today: the days since 1970 it becomes would move with the serving date.
    if not sample.str.contains(r"(?<!\d)\d{4}(?!\d)", regex=True).all():
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parsed = pd.to_datetime(sample, errors="coerce", format="mixed")
    return bool(parsed.notna().mean() >= 0.9)


TASKS = ("classification", "regression")
# A target of whole numbers with at most this many distinct values holds classes (grades,
# codes, 0/1); with more, it is a quantity (counts, prices in cents, years).
MAX_WHOLE_NUMBER_CLASSES = 20


def infer_task(labels: pd.Series) -> tuple[str, str]:
    """``(task, why)``: classification or regression, decided from the target's values.

    Text, booleans and categories are classes; numbers with a fractional part are a
    quantity; whole numbers are classes when there are at most
    ``MAX_WHOLE_NUMBER_CLASSES`` distinct ones. ``why`` completes "the target ...".
    """
    values = labels.dropna()
    distinct = int(values.nunique())
    if pd.api.types.is_datetime64_any_dtype(values):
        raise DataError(
            f"the target {labels.name!r} holds dates: predict a number or a class derived from them instead "
            "(e.g. days until an event), or choose another data.target"
        )
    if pd.api.types.is_bool_dtype(values) or not pd.api.types.is_numeric_dtype(values):
        kind = "true/false values" if pd.api.types.is_bool_dtype(values) else "text"
        return "classification", f"holds {kind}: {distinct:,} classes"
    if not pd.api.types.is_integer_dtype(values) and not bool((values % 1 == 0).all()):
        return "regression", f"holds numbers with fractions ({distinct:,} distinct)"
    if distinct <= MAX_WHOLE_NUMBER_CLASSES:
        limit = MAX_WHOLE_NUMBER_CLASSES
        return "classification", f"holds {distinct} distinct whole numbers (at most {limit}: classes)"
    return "regression", f"holds {distinct:,} distinct whole numbers (more than {MAX_WHOLE_NUMBER_CLASSES}: a quantity)"


def resolve_task(configured: str, labels: pd.Series) -> tuple[str, str]:
    """``(task, why)`` for ``model.task``: as set, or (``auto``) inferred from the target."""
    if configured != "auto":
        return configured, f"model.task={configured}"
    task, why = infer_task(labels)
    return task, f"the target {labels.name!r} {why}; set model.task to choose"


def stratify_target(stratify_by: str | None, target: str, task: str) -> str | None:
    """``split.stratify_by`` for a resolved ``task``: ``auto`` is the target for
    classification and nothing for regression."""
    if stratify_by == "auto":
        return target if task == "classification" else None
    return stratify_by


def class_counts(frame: pd.DataFrame, target: str) -> dict[str, int]:
    """Rows per class of ``target``, keyed by the class as text (JSON-friendly)."""
    return {str(label): int(count) for label, count in frame[target].value_counts().sort_index().items()}


def target_summary(frame: pd.DataFrame, target: str, task: str) -> dict[str, object]:
    """How the target is distributed: class counts, or the range and mean of a numeric target."""
    if task == "classification":
        return {"class_counts": class_counts(frame, target)}
    values = pd.to_numeric(frame[target], errors="coerce")
    return {"target_min": float(values.min()), "target_max": float(values.max()), "target_mean": float(values.mean())}


def typing_sample(rows: pd.DataFrame, per_column: int = 20) -> pd.DataFrame:
    """The first rows, and for every column its first rows with a value: enough for MLflow
    to type every column (even one empty in the first rows) without reading the whole table
    (1.5 s at 200,000 rows)."""
    positions = set(range(min(len(rows), 200)))
    for column in rows.columns:
        positions.update(np.flatnonzero(rows[column].notna().to_numpy())[:per_column].tolist())
    return rows.iloc[sorted(positions)]
