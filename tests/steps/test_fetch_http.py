"""trainflow.ml.data.fetch against a real HTTP server on 127.0.0.1, local paths and file://
URIs; and the fetch_data component under a real ``mlflow run``.
"""

from __future__ import annotations

import hashlib
import random
import re
import socket
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from support.project import error_lines, project_store, run_command

from trainflow.errors import DataError
from trainflow.ml.data import fetch

PENGUINS = Path(__file__).resolve().parents[2] / "data" / "penguins.csv"
GOOD_BYTES = PENGUINS.read_bytes()
GARBAGE_BYTES = random.Random(1234).randbytes(8192)
TRUNCATED_SENT = 500
# What `python -m http.server` sends for a folder, and what a login or "view file" page looks like.
LISTING_BYTES = b'<!DOCTYPE HTML>\n<html lang="en">\n<head><title>Directory listing for /</title></head>\n' + (
    b"<body><ul>\n"
    + b"".join(b'<li><a href="f%d.csv">f%d.csv</a></li>\n' % (i, i) for i in range(20))
    + b"</ul></body></html>\n"
)
PAGE_BYTES = b"\n  <html><head><title>Sign in</title></head><body>sign in to download</body></html>\n"
MLFLOW = str(Path(sys.executable).parent / "mlflow")


class _Handler(BaseHTTPRequestHandler):
    """Serves one fixed behaviour per path."""

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - keep test output quiet
        return None

    def _send(
        self, status: int, body: bytes, length: int | None = None, content_type: str = "application/octet-stream"
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        path = self.path.split("?", 1)[0]
        if path == "/penguins.csv":
            self._send(200, GOOD_BYTES)
        elif path == "/empty.csv":
            self._send(200, b"")
        elif path == "/error.csv":
            self._send(500, b"boom")
        elif path == "/truncated.csv":
            # Promise the whole file, send part of it, then drop the connection.
            self.close_connection = True
            self._send(200, GOOD_BYTES[:TRUNCATED_SENT], length=len(GOOD_BYTES))
            self.connection.shutdown(socket.SHUT_RDWR)
        elif path == "/garbage.bin":
            self._send(200, GARBAGE_BYTES)
        elif path == "/listing/":
            self._send(200, LISTING_BYTES, content_type="text/html; charset=utf-8")
        elif path == "/mislabelled-page.csv":
            self._send(200, PAGE_BYTES, content_type="text/csv")
        elif path == "/unsized.csv":
            # No Content-Length: the body ends when the connection closes (HTTP/1.0).
            self.close_connection = True
            self.send_response(200)
            self.send_header("Content-Type", "text/csv")
            self.end_headers()
            self.wfile.write(GOOD_BYTES * 400)
            self.wfile.flush()
        else:
            self.send_error(404, "Not Found")


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    """Base URL of a threaded HTTP server on an ephemeral 127.0.0.1 port, stopped afterwards."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _closed_port() -> int:
    """A 127.0.0.1 port that was just bound and released, so nothing listens on it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _files_in(directory: Path) -> list[str]:
    """Every entry in ``directory`` (hidden partial files included); [] if it does not exist."""
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def test_fetch_good_csv_hash_matches(server_url: str, tmp_path: Path) -> None:
    """The downloaded file has the served bytes and their sha256; the digest then verifies."""
    expected = hashlib.sha256(GOOD_BYTES).hexdigest()
    fetched = fetch(f"{server_url}/penguins.csv", tmp_path / "first")
    assert fetched.path.read_bytes() == GOOD_BYTES
    assert hashlib.sha256(fetched.path.read_bytes()).hexdigest() == expected
    assert fetched.sha256 == expected
    assert fetched.size == len(GOOD_BYTES)
    assert fetched.source == f"{server_url}/penguins.csv"
    assert _files_in(tmp_path / "first") == ["penguins.csv"]

    verified = fetch(f"{server_url}/penguins.csv", tmp_path / "second", expected_sha256=expected)
    assert verified.sha256 == expected
    assert verified.path.read_bytes() == GOOD_BYTES


def test_fetch_accepts_uppercase_digest(server_url: str, tmp_path: Path) -> None:
    """The expected digest is compared case-insensitively."""
    expected = hashlib.sha256(GOOD_BYTES).hexdigest()
    fetched = fetch(f"{server_url}/penguins.csv", tmp_path, expected_sha256=expected.upper())
    assert fetched.sha256 == expected


def test_fetch_wrong_sha256_leaves_nothing(server_url: str, tmp_path: Path) -> None:
    """A digest mismatch is a DataError mentioning sha256, and no file stays behind."""
    wrong = hashlib.sha256(GOOD_BYTES + b"x").hexdigest()
    destination = tmp_path / "download"
    with pytest.raises(DataError, match="sha256") as caught:
        fetch(f"{server_url}/penguins.csv", destination, expected_sha256=wrong)
    assert wrong in str(caught.value)
    assert _files_in(destination) == []


@pytest.mark.parametrize(("path", "status"), [("/missing.csv", 404), ("/error.csv", 500)])
def test_fetch_http_error_names_status(server_url: str, tmp_path: Path, path: str, status: int) -> None:
    """An HTTP error status is a DataError naming the status; nothing is written."""
    with pytest.raises(DataError, match=rf"HTTP {status}\b"):
        fetch(f"{server_url}{path}", tmp_path / "download")
    assert _files_in(tmp_path / "download") == []


def test_fetch_empty_response(server_url: str, tmp_path: Path) -> None:
    """A 200 response with no body is a DataError mentioning 'empty'; nothing is written."""
    with pytest.raises(DataError, match="empty"):
        fetch(f"{server_url}/empty.csv", tmp_path / "download")
    assert _files_in(tmp_path / "download") == []


def test_fetch_truncated_download(server_url: str, tmp_path: Path) -> None:
    """A body shorter than its Content-Length is a DataError ('cut off'); nothing is written."""
    with pytest.raises(DataError, match="cut off") as caught:
        fetch(f"{server_url}/truncated.csv", tmp_path / "download")
    assert str(TRUNCATED_SENT) in str(caught.value)
    assert _files_in(tmp_path / "download") == []


def test_fetch_refuses_a_declared_size_over_the_limit_before_downloading(server_url: str, tmp_path: Path) -> None:
    with pytest.raises(DataError) as caught:
        fetch(f"{server_url}/penguins.csv", tmp_path / "download", max_bytes=1000)
    message = str(caught.value)
    assert (
        f"larger than data.max_bytes=1,000 bytes ({len(GOOD_BYTES):,} bytes" in message
        and "nothing was kept" in message
    )
    assert _files_in(tmp_path / "download") == []


def test_fetch_stops_an_unsized_stream_at_the_limit(server_url: str, tmp_path: Path) -> None:
    """A server that does not say the size: the stream is cut as soon as it passes the limit,
    not read to the end into memory or disk."""
    limit = 2 * 1024 * 1024
    body = len(GOOD_BYTES) * 400
    assert body > limit + 2 * (1 << 20)  # longer than the limit plus two chunks
    with pytest.raises(DataError, match=r"larger than data.max_bytes=2,097,152 bytes") as caught:
        fetch(f"{server_url}/unsized.csv", tmp_path / "download", max_bytes=limit)
    read = int(re.search(r"\(([\d,]+) bytes or more\)", str(caught.value)).group(1).replace(",", ""))
    assert limit < read <= limit + (1 << 20) < body, "stopped within one chunk of the limit"
    assert _files_in(tmp_path / "download") == []
    whole = fetch(f"{server_url}/unsized.csv", tmp_path / "whole")
    assert whole.size == body


def test_fetch_refuses_a_local_file_over_the_limit(tmp_path: Path) -> None:
    source = tmp_path / "big.csv"
    source.write_bytes(b"a,b\n" + b"1,2\n" * 5000)
    with pytest.raises(DataError, match="larger than data.max_bytes=100 bytes"):
        fetch(str(source), tmp_path / "download", max_bytes=100)
    assert _files_in(tmp_path / "download") == []


def test_fetch_garbage_downloads_verbatim(server_url: str, tmp_path: Path) -> None:
    """fetch does not parse: garbage bytes arrive intact with their digest (read_table rejects them)."""
    fetched = fetch(f"{server_url}/garbage.bin", tmp_path)
    assert fetched.path.read_bytes() == GARBAGE_BYTES
    assert fetched.sha256 == hashlib.sha256(GARBAGE_BYTES).hexdigest()


@pytest.mark.parametrize(
    ("path", "evidence"), [("/listing/", "Content-Type text/html"), ("/mislabelled-page.csv", "body")]
)
def test_fetch_refuses_an_html_page(server_url: str, tmp_path: Path, path: str, evidence: str) -> None:
    """A folder listing or a page labelled as CSV is an HTML page, not a table: one error saying
    so and naming the setting to fix, instead of read_table's "1 column" about a file name we made up."""
    with pytest.raises(DataError) as caught:
        fetch(f"{server_url}{path}", tmp_path / "download")
    message = str(caught.value)
    assert f"{server_url}{path} returned an HTML page, not a data file" in message
    assert evidence in message and "point data.uri at the file itself" in message
    assert "raw_data.csv" not in message
    assert _files_in(tmp_path / "download") == []


def test_fetch_errors_name_the_setting_they_were_given(server_url: str, tmp_path: Path) -> None:
    """A caller reading another setting than data.uri (batch_predict.input) gets errors that name it."""
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    for uri in (str(tmp_path / "missing.csv"), f"{server_url}/missing.csv", str(empty), f"{server_url}/listing/"):
        with pytest.raises(DataError) as caught:
            fetch(uri, tmp_path / "download", setting="batch_predict.input")
        assert "batch_predict.input" in str(caught.value) and "data.uri" not in str(caught.value), uri


def test_fetch_unreachable(tmp_path: Path) -> None:
    """A port nobody listens on is a DataError saying it cannot reach the URL."""
    url = f"http://127.0.0.1:{_closed_port()}/penguins.csv"
    with pytest.raises(DataError, match="cannot reach") as caught:
        fetch(url, tmp_path / "download")
    assert url in str(caught.value)
    assert _files_in(tmp_path / "download") == []


def test_fetch_unsupported_scheme(tmp_path: Path) -> None:
    """ftp:// is refused with a DataError naming the scheme."""
    with pytest.raises(DataError, match="'ftp'"):
        fetch("ftp://127.0.0.1/penguins.csv", tmp_path / "download")
    assert _files_in(tmp_path / "download") == []


def test_fetch_missing_local_path(tmp_path: Path) -> None:
    """A local path that does not exist is a DataError naming it."""
    missing = tmp_path / "no_such.csv"
    with pytest.raises(DataError, match="no_such.csv"):
        fetch(str(missing), tmp_path / "download")


def test_fetch_local_path(tmp_path: Path) -> None:
    """A plain local path is copied with its digest; the source is its file:// URI."""
    fetched = fetch(str(PENGUINS), tmp_path / "download")
    assert fetched.path.read_bytes() == GOOD_BYTES
    assert fetched.sha256 == hashlib.sha256(GOOD_BYTES).hexdigest()
    assert fetched.source == PENGUINS.resolve().as_uri()


def test_fetch_file_uri(tmp_path: Path) -> None:
    """A file:// URI (with an escaped space in its path) is copied and hashed."""
    source = tmp_path / "in put" / "penguins copy.csv"
    source.parent.mkdir()
    source.write_bytes(GOOD_BYTES)
    digest = hashlib.sha256(GOOD_BYTES).hexdigest()
    fetched = fetch(source.as_uri(), tmp_path / "download", expected_sha256=digest)
    assert "%20" in source.as_uri()
    assert fetched.path == tmp_path / "download" / "penguins copy.csv"
    assert fetched.path.read_bytes() == GOOD_BYTES
    assert fetched.sha256 == digest


def test_fetch_empty_local_file(tmp_path: Path) -> None:
    """An empty local file is a DataError mentioning 'empty'; nothing is left in the destination."""
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match="empty"):
        fetch(str(empty), tmp_path / "download")
    assert _files_in(tmp_path / "download") == []


# -- the component under `mlflow run` ---------------------------------------------------


def _run_fetch_component(hydra_options: str, env: dict[str, str], project_dir: Path):  # type: ignore[no-untyped-def]
    """fetch_data alone, on a copy of the penguins served over HTTP (the penguins data set's project)."""
    return run_command(
        [
            MLFLOW,
            "run",
            "components/fetch_data",
            "--env-manager",
            "local",
            "-P",
            f"hydra_options=dataset=penguins {hydra_options}",
        ],
        env=env,
        cwd=project_dir,
    )


def test_component_http_404_fails_cleanly(server_url: str, store_env: dict[str, str], project_dir: Path) -> None:
    """A 404 makes `mlflow run` fail with one fetch_data error line naming 404 and no raw_data logged."""
    result = _run_fetch_component(f"data.uri={server_url}/missing.csv", store_env, project_dir)
    assert result.returncode != 0, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if re.search(r"fetch_data: error:", line)]
    assert len(errors) == 1, result.stderr
    assert "404" in errors[0]
    assert errors == [line for line in error_lines(result.stderr) if "fetch_data" in line]
    store = project_store(store_env["TRAINFLOW_HOME"])
    assert "raw_data" not in [name for name, _, _ in store.list_names()]


def test_component_http_success_logs_raw_data(server_url: str, store_env: dict[str, str], project_dir: Path) -> None:
    """Fetching the CSV with its digest exits 0 and logs raw_data:v0 with source URL and sha256."""
    url = f"{server_url}/penguins.csv"
    digest = hashlib.sha256(GOOD_BYTES).hexdigest()
    result = _run_fetch_component(f"data.uri={url} data.sha256={digest}", store_env, project_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    store = project_store(store_env["TRAINFLOW_HOME"])
    version = store.get("raw_data:v0")
    assert version.metadata["source"] == url
    assert version.metadata["sha256"] == digest
    assert version.metadata["size"] == len(GOOD_BYTES)
    assert [v.version for v in store.list_versions("raw_data")] == [0]
    assert store.use_artifact("raw_data:v0").read_bytes() == GOOD_BYTES


def test_component_garbage_fails_cleanly(server_url: str, store_env: dict[str, str], project_dir: Path) -> None:
    """Garbage bytes download but fail to parse: one fetch_data error line, no raw_data logged."""
    result = _run_fetch_component(f"data.uri={server_url}/garbage.bin", store_env, project_dir)
    assert result.returncode != 0, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if "fetch_data: error:" in line]
    assert len(errors) == 1, result.stderr
    assert "garbage.bin" in errors[0]
    store = project_store(store_env["TRAINFLOW_HOME"])
    assert "raw_data" not in [name for name, _, _ in store.list_names()]


# -- the batch_predict component, whose input is batch_predict.input -----------------------

BATCH_PREDICT = Path(__file__).resolve().parents[2] / "components" / "batch_predict"


@pytest.fixture
def prod_env(store_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """A store with a model_export:prod: batch_predict checks out the model before its input,
    and fails on a bad input before loading it, so a stand-in is enough."""
    stand_in = tmp_path / "model"
    stand_in.mkdir()
    (stand_in / "MLmodel").write_text("stand-in: never loaded\n")
    project_store(store_env["TRAINFLOW_HOME"]).log_artifact(stand_in, "model_export", "model_export", aliases=["prod"])
    return store_env


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("{tmp}/missing.csv", "no such file"),
        ("{server}/missing.csv", "HTTP 404"),
        ("{tmp}/empty.csv", "is empty"),
        ("{server}/listing/", "returned an HTML page"),
    ],
)
def test_batch_predict_input_errors_name_batch_predict_input(
    server_url: str, prod_env: dict[str, str], tmp_path: Path, source: str, problem: str
) -> None:
    """A bad batch_predict.input fails with one batch_predict error line naming that setting
    (not data.uri, which batch_predict does not read), and logs no predictions."""
    (tmp_path / "empty.csv").write_bytes(b"")
    table = source.format(tmp=tmp_path, server=server_url)
    result = run_command([sys.executable, "run.py", "--input-table", table], prod_env, cwd=BATCH_PREDICT)
    assert result.returncode == 1, result.stdout + result.stderr
    [line] = error_lines(result.stderr)
    assert line.startswith("batch_predict: error: ") and problem in line and table in line, line
    assert "batch_predict.input" in line and "data.uri" not in line, line
    assert "Traceback" not in result.stderr
    store = project_store(prod_env["TRAINFLOW_HOME"])
    assert [name for name, _, _ in store.list_names()] == ["model_export"]
