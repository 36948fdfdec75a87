"""`conversion.download` against a local HTTP bucket: caching, resuming, retries, and the refusal of wrong files.

Nothing here reaches the internet: `FakeBucket` serves in-memory files on 127.0.0.1 with HTTP Range support and
scripted misbehaviour (dropping the connection after N bytes, ignoring Range, lying about the size, failing with 5xx,
stalling), and records every request it answered.
"""

from __future__ import annotations

import io
import threading
import urllib.parse
from dataclasses import dataclass, field, fields
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from hf_vit_port_tools.conversion.download import (
    CACHE_ENV_VAR,
    DownloadError,
    cache_path,
    default_cache_dir,
    download_checkpoint,
)
from hf_vit_port_tools.conversion.registry import BASE_URL_ENV_VAR, OfficialCheckpoint, get_checkpoint

# A real registry entry whose path has a "+" (escaped as %2B in the URL), so the tests also cover URL quoting.
REAL_ENTRY = "imagenet21k+imagenet2012/ViT-B_16"


# -- the fake bucket -----------------------------------------------------------------------------------------------


@dataclass
class Served:
    """One request the bucket answered."""

    path: str
    range: str | None
    status: int
    bytes_sent: int


@dataclass
class FakeBucket:
    """Files by URL path, and what to do wrong. Lists of per-request behaviour are consumed one per request."""

    files: dict[str, bytes] = field(default_factory=dict)
    drop_after: list[int | None] = field(default_factory=list)  # send this many body bytes, then hang up
    fail_with: list[int] = field(default_factory=list)  # answer the next requests with these error statuses
    stall_after: int | None = None  # send this many body bytes, then stall (until the server stops)
    ignore_range: bool = False  # answer 200 with the whole file even to a Range request
    declared_length: int | None = None  # Content-Length to announce instead of the true one (a lie)
    omit_length: bool = False  # send no Content-Length (close-delimited body)
    served: list[Served] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    url: str = ""  # set once the server listens

    def add(self, checkpoint: OfficialCheckpoint, data: bytes) -> None:
        self.files["/" + checkpoint.path] = data


def _handler_for(bucket: FakeBucket) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # keep pytest output clean
            pass

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            path = urllib.parse.unquote(self.path)
            range_header = self.headers.get("Range")
            if bucket.fail_with:
                self._answer_empty(path, range_header, bucket.fail_with.pop(0))
                return
            data = bucket.files.get(path)
            if data is None:
                self._answer_empty(path, range_header, 404)
                return
            start = 0 if bucket.ignore_range or range_header is None else int(range_header[6:].rstrip("-"))
            if start >= len(data):
                self._answer_empty(path, range_header, 416, {"Content-Range": f"bytes */{len(data)}"})
                return
            status = 206 if start else 200
            self.send_response(status)
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            if not bucket.omit_length:
                self.send_header("Content-Length", str(bucket.declared_length or len(data) - start))
            self.end_headers()
            self._send_body(path, range_header, status, data[start:])

        def _send_body(self, path: str, range_header: str | None, status: int, body: bytes) -> None:
            limit = bucket.drop_after.pop(0) if bucket.drop_after else None
            stall = limit is None and bucket.stall_after is not None
            if stall:
                limit = bucket.stall_after
            # Recorded before sending: the client may be done (and the test asserting) before this thread goes on.
            bucket.served.append(Served(path, range_header, status, len(body) if limit is None else limit))
            self.wfile.write(body if limit is None else body[:limit])
            if stall:
                self.wfile.flush()
                bucket.stop.wait(10)
            self.close_connection = True  # after a short body, the closed connection is the interruption

        def _answer_empty(self, path: str, range_header: str | None, status: int, headers: dict | None = None) -> None:
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", "0")
            bucket.served.append(Served(path, range_header, status, 0))
            self.end_headers()

    return Handler


@pytest.fixture
def bucket():
    """A running `FakeBucket`; its URL is ``bucket.url``."""
    state = FakeBucket()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(state))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    state.stop.set()
    server.shutdown()
    server.server_close()


# -- checkpoints the fake files pass for ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SizedCheckpoint(OfficialCheckpoint):
    """A real registry entry (name, path, URL) whose size check accepts a small test file instead of ~330 MiB."""

    size_range: tuple[int, int] = (0, 0)

    def expected_size_range(self) -> tuple[int, int]:
        return self.size_range


def sized(entry: OfficialCheckpoint, data: bytes, slack: int = 16) -> SizedCheckpoint:
    values = {f.name: getattr(entry, f.name) for f in fields(OfficialCheckpoint)}
    return SizedCheckpoint(**values, size_range=(len(data) - slack, len(data) + slack))


def fake_npz(num_floats: int = 50_000) -> bytes:
    """A small real .npz (a zip archive), large enough for interruptions part-way through."""
    buffer = io.BytesIO()
    rng = np.random.default_rng(0)
    np.savez(buffer, **{"Transformer/encoder_norm/scale": rng.standard_normal(num_floats).astype(np.float32)})
    return buffer.getvalue()


@pytest.fixture
def data() -> bytes:
    return fake_npz()


@pytest.fixture
def checkpoint(bucket: FakeBucket, data: bytes) -> SizedCheckpoint:
    entry = sized(get_checkpoint(REAL_ENTRY), data)
    bucket.add(entry, data)
    return entry


def fetch(checkpoint: OfficialCheckpoint, bucket: FakeBucket, cache: Path, **kwargs) -> Path:
    options = dict(base_url=bucket.url, cache_dir=cache, progress=False, backoff=0.0)
    return download_checkpoint(checkpoint, **{**options, **kwargs})


def partial_of(path: Path) -> Path:
    return path.with_name(path.name + ".partial")


# -- the happy path and the cache ----------------------------------------------------------------------------------


def test_downloads_named_checkpoint_into_cache(bucket, checkpoint, data, tmp_path):
    path = fetch(checkpoint, bucket, tmp_path)

    assert path == tmp_path / "imagenet21k+imagenet2012" / "ViT-B_16.npz"
    assert path.read_bytes() == data
    assert not partial_of(path).exists()
    assert bucket.served == [Served("/imagenet21k+imagenet2012/ViT-B_16.npz", None, 200, len(data))]
    assert np.load(path)["Transformer/encoder_norm/scale"].shape == (50_000,)


def test_cached_file_is_returned_without_a_request(bucket, checkpoint, tmp_path):
    first = fetch(checkpoint, bucket, tmp_path)
    bucket.served.clear()
    bucket.fail_with = [500] * 10  # any request would now fail

    assert fetch(checkpoint, bucket, tmp_path) == first
    assert bucket.served == []


def test_cached_file_of_wrong_size_is_downloaded_again(bucket, checkpoint, data, tmp_path):
    target = cache_path(checkpoint, tmp_path)
    target.parent.mkdir(parents=True)
    target.write_bytes(b"PK truncated")

    assert fetch(checkpoint, bucket, tmp_path).read_bytes() == data
    assert len(bucket.served) == 1


def test_cache_dir_and_base_url_from_environment(bucket, checkpoint, data, tmp_path, monkeypatch):
    monkeypatch.delenv(CACHE_ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "hf-vit-port"

    monkeypatch.setenv(CACHE_ENV_VAR, str(tmp_path / "own"))
    monkeypatch.setenv(BASE_URL_ENV_VAR, bucket.url)
    path = download_checkpoint(checkpoint, progress=False)

    assert path == tmp_path / "own" / checkpoint.path
    assert path.read_bytes() == data


def test_local_directory_as_base_url(checkpoint, data, tmp_path):
    mirror = tmp_path / "mirror"
    (mirror / checkpoint.path).parent.mkdir(parents=True)
    (mirror / checkpoint.path).write_bytes(data)

    path = download_checkpoint(checkpoint, base_url=str(mirror), cache_dir=tmp_path / "cache", progress=False)
    assert path.read_bytes() == data


def test_progress_bar_runs(bucket, checkpoint, data, tmp_path, capsys):
    fetch(checkpoint, bucket, tmp_path, progress=True)
    assert "ViT-B_16.npz" in capsys.readouterr().err


# -- interruptions and resuming ------------------------------------------------------------------------------------


def test_interrupted_download_is_resumed_by_the_next_call(bucket, checkpoint, data, tmp_path):
    cut = 70_000
    bucket.drop_after = [cut]
    with pytest.raises(DownloadError, match="resume") as caught:
        fetch(checkpoint, bucket, tmp_path, retries=0)
    target = cache_path(checkpoint, tmp_path)
    assert caught.value.resumable
    assert not target.exists()
    assert partial_of(target).read_bytes() == data[:cut]

    path = fetch(checkpoint, bucket, tmp_path)

    resumed = bucket.served[-1]
    assert resumed.range == f"bytes={cut}-"
    assert resumed.status == 206
    assert resumed.bytes_sent == len(data) - cut
    assert path.read_bytes() == data
    assert not partial_of(target).exists()


def test_retries_within_one_call_resume_where_they_stopped(bucket, checkpoint, data, tmp_path):
    bucket.drop_after = [30_000, 40_000]

    path = fetch(checkpoint, bucket, tmp_path, retries=1)

    assert [s.range for s in bucket.served] == [None, "bytes=30000-", "bytes=70000-"]
    assert sum(s.bytes_sent for s in bucket.served) == len(data)
    assert path.read_bytes() == data


def test_server_errors_are_retried(bucket, checkpoint, data, tmp_path):
    bucket.fail_with = [503, 502]

    assert fetch(checkpoint, bucket, tmp_path, retries=2).read_bytes() == data
    assert [s.status for s in bucket.served] == [503, 502, 200]


def test_persistent_server_errors_give_up_with_a_resumable_message(bucket, checkpoint, tmp_path):
    bucket.fail_with = [500] * 3

    with pytest.raises(DownloadError, match="HTTP 500.*run the same command again"):
        fetch(checkpoint, bucket, tmp_path, retries=2)
    assert len(bucket.served) == 3


def test_timeout_says_the_download_can_be_resumed(bucket, checkpoint, tmp_path):
    bucket.stall_after = 10_000

    with pytest.raises(DownloadError, match="10000 bytes are kept .* resume") as caught:
        fetch(checkpoint, bucket, tmp_path, retries=0, timeout=0.3)
    assert caught.value.resumable


def test_server_ignoring_range_still_gives_the_right_file(bucket, checkpoint, data, tmp_path):
    bucket.drop_after = [50_000]
    with pytest.raises(DownloadError):
        fetch(checkpoint, bucket, tmp_path, retries=0)
    bucket.ignore_range = True

    path = fetch(checkpoint, bucket, tmp_path)

    assert bucket.served[-1].range == "bytes=50000-"
    assert bucket.served[-1].status == 200
    assert path.read_bytes() == data


def test_complete_partial_file_is_finished_after_416(bucket, checkpoint, data, tmp_path):
    target = cache_path(checkpoint, tmp_path)
    target.parent.mkdir(parents=True)
    partial_of(target).write_bytes(data)

    assert fetch(checkpoint, bucket, tmp_path).read_bytes() == data
    assert [(s.status, s.bytes_sent) for s in bucket.served] == [(416, 0)]


def test_partial_file_longer_than_remote_is_restarted(bucket, checkpoint, data, tmp_path):
    target = cache_path(checkpoint, tmp_path)
    target.parent.mkdir(parents=True)
    partial_of(target).write_bytes(data + b"junk")

    assert fetch(checkpoint, bucket, tmp_path, retries=0).read_bytes() == data  # a restart is not a retry
    assert [(s.range, s.status) for s in bucket.served] == [(f"bytes={len(data) + 4}-", 416), (None, 200)]


# -- refusing wrong files ------------------------------------------------------------------------------------------


def assert_nothing_complete_looking(checkpoint: OfficialCheckpoint, cache: Path) -> None:
    target = cache_path(checkpoint, cache)
    assert not target.exists()
    assert not partial_of(target).exists()


def test_wrong_announced_size_is_refused_before_downloading(bucket, data, tmp_path):
    entry = sized(get_checkpoint(REAL_ENTRY), data)
    wrong = data + bytes(100_000)
    bucket.add(entry, wrong)
    low, high = entry.expected_size_range()

    with pytest.raises(DownloadError) as caught:
        fetch(entry, bucket, tmp_path)

    message = str(caught.value)
    assert "http://127.0.0.1" in message and "imagenet21k%2Bimagenet2012/ViT-B_16.npz" in message
    assert f"{low} to {high} bytes" in message and str(len(wrong)) in message
    assert_nothing_complete_looking(entry, tmp_path)


def test_wrong_size_without_content_length_is_refused_and_removed(bucket, data, tmp_path):
    entry = sized(get_checkpoint(REAL_ENTRY), data)
    bucket.add(entry, data[:-1000])
    bucket.omit_length = True

    with pytest.raises(DownloadError, match=f"{len(data) - 1000} bytes .* removed"):
        fetch(entry, bucket, tmp_path)
    assert_nothing_complete_looking(entry, tmp_path)


def test_length_lie_is_not_taken_for_a_complete_file(bucket, data, tmp_path):
    entry = sized(get_checkpoint(REAL_ENTRY), data)
    bucket.add(entry, data[:-1000])
    bucket.declared_length = len(data)  # plausible size announced, fewer bytes sent

    with pytest.raises(DownloadError, match=f"after {len(data) - 1000} of {len(data)} bytes"):
        fetch(entry, bucket, tmp_path, retries=0)
    assert not cache_path(entry, tmp_path).exists()


def test_file_that_is_not_a_zip_is_refused(bucket, tmp_path):
    html = b"<html>" + bytes(100_000)
    entry = sized(get_checkpoint(REAL_ENTRY), html)
    bucket.add(entry, html)

    with pytest.raises(DownloadError, match="not a zip archive"):
        fetch(entry, bucket, tmp_path)
    assert_nothing_complete_looking(entry, tmp_path)


def test_missing_file_names_checkpoint_and_url(bucket, tmp_path):
    entry = get_checkpoint("vit-b16-augreg-in21k")

    with pytest.raises(DownloadError) as caught:
        fetch(entry, bucket, tmp_path)

    message = str(caught.value)
    assert "404" in message and entry.name in message and entry.url_for(bucket.url) in message
    assert not caught.value.resumable
    assert len(bucket.served) == 1  # a 404 is not retried
    assert_nothing_complete_looking(entry, tmp_path)
