"""Download an official ViT ``.npz`` checkpoint into a local cache, resumably and with its size checked.

The files are large (up to 2.5 GiB) and served by a plain HTTPS bucket, so the download:

* lands in ``<cache>/<bucket path>`` (e.g. ``~/.cache/hf-vit-port/imagenet21k/ViT-B_16.npz``) and a complete cached
  file is returned without touching the network;
* is written to ``<final>.partial`` first and resumed from there with an HTTP ``Range`` request, both by the retries
  of one call (connection resets, timeouts, 5xx) and by the next call after an interruption;
* is refused, and its bytes removed, when its size disagrees with the server's ``Content-Length`` or with the size
  the registry derives from the architecture (`OfficialCheckpoint.check_size`), or when it is not a zip archive
  (every ``.npz`` is one) -- so a cache never holds a complete-looking file that is wrong;
* is moved into place with `os.replace`, atomically, only once every check has passed.

Standard library only, plus ``tqdm`` for the progress bar when it is installed (huggingface_hub depends on it).
"""

from __future__ import annotations

import fcntl
import http.client
import logging
import os
import re
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from .registry import OfficialCheckpoint

__all__ = [
    "CACHE_ENV_VAR",
    "DownloadError",
    "cache_path",
    "default_cache_dir",
    "download_checkpoint",
]

logger = logging.getLogger(__name__)

CACHE_ENV_VAR = "HF_VIT_PORT_CACHE"
"""Environment variable naming the cache directory (takes precedence over ``$XDG_CACHE_HOME/hf-vit-port``)."""

PARTIAL_SUFFIX = ".partial"
CHUNK_SIZE = 1 << 20
DEFAULT_MIN_SPEED = 64 * 1024  # bytes/s: a B/16 file then takes at most ~1.7 hours
ZIP_MAGIC = b"PK"  # np.savez writes a zip archive; anything else (an HTML error page, say) is not a checkpoint
USER_AGENT = "hf-vit-port (+https://github.com/google-research/vision_transformer checkpoints)"

# HTTP statuses worth retrying: the request itself was fine, the server or a proxy was not.
_TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)\s*$", re.IGNORECASE)


class DownloadError(RuntimeError):
    """A checkpoint could not be downloaded (or what was downloaded is not the checkpoint).

    Attributes:
        url: The URL the download was made from.
        resumable: True when a ``.partial`` file was kept and calling again resumes from it.
    """

    def __init__(self, message: str, *, url: str, resumable: bool = False) -> None:
        super().__init__(message)
        self.url = url
        self.resumable = resumable


class _TransientError(Exception):
    """A failure a retry may cure (connection dropped, timeout, 5xx); carries a human-readable reason."""


# -- cache location ------------------------------------------------------------------------------------------------


def default_cache_dir() -> Path:
    """``$HF_VIT_PORT_CACHE`` if set, else ``$XDG_CACHE_HOME/hf-vit-port``, else ``~/.cache/hf-vit-port``."""
    explicit = os.environ.get(CACHE_ENV_VAR)
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "hf-vit-port"


def cache_path(checkpoint: OfficialCheckpoint, cache_dir: Path | None = None) -> Path:
    """Where `checkpoint` is (or will be) cached: ``<cache_dir>/<bucket path>``."""
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return root.joinpath(*checkpoint.path.split("/"))


def _partial_path(final: Path) -> Path:
    return final.with_name(final.name + PARTIAL_SUFFIX)


# -- public entry point --------------------------------------------------------------------------------------------


def download_checkpoint(
    checkpoint: OfficialCheckpoint,
    *,
    base_url: str | None = None,
    cache_dir: Path | None = None,
    progress: bool = True,
    retries: int = 3,
    backoff: float = 1.0,
    timeout: float = 30.0,
    min_speed: float = DEFAULT_MIN_SPEED,
    deadline: float | None = None,
) -> Path:
    """Return the local path of `checkpoint`, downloading it first unless a complete copy is cached.

    Args:
        checkpoint: The registry entry to fetch (`conversion.registry.get_checkpoint`).
        base_url: Root to download from instead of the bucket; None means ``$HF_VIT_PORT_BASE_URL``, else the
            public bucket (see `OfficialCheckpoint.url_for`). A root without a scheme is a local directory.
        cache_dir: Cache root; None means `default_cache_dir`.
        progress: Show a tqdm progress bar (when tqdm is installed).
        retries: How many times a transient failure (connection reset, timeout, HTTP 5xx/429) is retried within this
            call, each retry resuming from the bytes already written. The count restarts after an attempt that
            wrote bytes, so only consecutive failures at the same byte exhaust it.
        backoff: Seconds before the first retry; doubled for each further one.
        timeout: Socket timeout in seconds, for connecting, for the response headers and for each read.
        min_speed: Bytes per second below which an attempt counts as failed (measured after `timeout` seconds), so
            a server that trickles bytes cannot hold the download forever.
        deadline: Seconds after which the download gives up whatever happens (the ``.partial`` file is kept);
            None means the time the file takes at `min_speed`, plus `timeout` per retry.

    Returns:
        ``<cache_dir>/<checkpoint.path>``, a file whose size passed `checkpoint.check_size` and that is a zip archive.

    Raises:
        DownloadError: The file is not on the server (404), the network failed more than `retries` times in a row
            (``resumable`` is then True and the ``.partial`` file is kept), or the bytes are not the checkpoint
            (wrong size, not a zip; nothing is kept).
    """
    final = cache_path(checkpoint, cache_dir)
    if _cached_copy_is_complete(final, checkpoint):
        return final
    url = _fetchable_url(checkpoint.url_for(base_url))
    final.parent.mkdir(parents=True, exist_ok=True)
    if deadline is None:
        deadline = checkpoint.expected_size_range()[1] / min_speed + timeout * (retries + 1)
    limits = _Limits(timeout=timeout, min_speed=min_speed, until=time.monotonic() + deadline, deadline=deadline)
    with _exclusive(final):
        if _cached_copy_is_complete(final, checkpoint):  # another process finished it while we waited
            return final
        partial = _partial_path(final)
        announced = _download_with_retries(checkpoint, url, partial, progress=progress, retries=retries,
                                           backoff=backoff, limits=limits)
        _verify_or_remove(partial, checkpoint, url, announced)
        os.replace(partial, final)
    return final


@dataclass(frozen=True)
class _Limits:
    """How long one download may take: per read, per second on average, and in all."""

    timeout: float
    min_speed: float
    until: float  # time.monotonic() after which it gives up
    deadline: float


@contextmanager
def _exclusive(final: Path) -> Iterator[None]:
    """One process downloads a file at a time: a second one waits for the first (and then finds the file cached)
    instead of writing into the same `.partial` file."""
    with open(final.with_name(final.name + ".lock"), "a+b") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logger.warning("Another process is downloading %s; waiting for it.", final.name)
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _cached_copy_is_complete(final: Path, checkpoint: OfficialCheckpoint) -> bool:
    """Whether `final` exists and passes the size check; a cached file that fails it is removed (it cannot be used,
    and only this module writes files there)."""
    if not final.is_file():
        return False
    size = final.stat().st_size
    if checkpoint.check_size(size) and _is_zip(final):
        return True
    low, high = checkpoint.expected_size_range()
    logger.warning(
        "Cached %s is %d bytes (expected %d to %d) or not a zip archive; downloading it again.", final, size, low, high
    )
    final.unlink()
    return False


def _fetchable_url(url: str) -> str:
    """A URL urllib can open: local directories (a base URL without a scheme) become ``file://`` URLs."""
    if "://" in url:
        return url
    return Path(url).expanduser().resolve().as_uri()


# -- the transfer --------------------------------------------------------------------------------------------------


def _download_with_retries(
    checkpoint: OfficialCheckpoint,
    url: str,
    partial: Path,
    *,
    progress: bool,
    retries: int,
    backoff: float,
    limits: _Limits,
) -> int | None:
    """Fetch `url` into `partial`, retrying transient failures; return the total size the server announced."""
    failures = 0
    while True:
        before, started = _size_of(partial), time.monotonic()
        try:
            return _fetch_once(checkpoint, url, partial, progress=progress, limits=limits)
        except _TransientError as error:
            # An attempt that moved at a useful speed restarts the count, so a flaky but progressing connection
            # still finishes, while one that keeps failing (or trickles) gives up after `retries` retries.
            speed = (_size_of(partial) - before) / max(time.monotonic() - started, 1e-3)
            failures = 1 if speed >= limits.min_speed else failures + 1
            if failures > retries:
                raise _interrupted(checkpoint, url, partial, str(error)) from error
            delay = backoff * 2 ** max(failures - 1, 0)
            if time.monotonic() + delay > limits.until:
                raise _interrupted(checkpoint, url, partial, f"{error}; gave up at the {limits.deadline:.0f} s deadline")
            logger.warning("Download of %s interrupted (%s); resuming in %.1f s.", url, error, delay)
            time.sleep(delay)


def _fetch_once(
    checkpoint: OfficialCheckpoint, url: str, partial: Path, *, progress: bool, limits: _Limits
) -> int | None:
    """One request: resume `partial` (or start it), stream the body into it, return the announced total size.

    Raises `_TransientError` for failures worth retrying, `DownloadError` for the others.
    """
    offset = _size_of(partial)
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        timeout = max(min(limits.timeout, limits.until - time.monotonic()), 0.001)
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as error:
        try:
            total = _handle_http_error(checkpoint, url, partial, error)
        finally:
            error.close()  # the error carries the open response; close the connection it holds
        if partial.exists():
            return total
        # The partial file did not fit the remote file and was removed: start over (no Range now, so no 416 again).
        return _fetch_once(checkpoint, url, partial, progress=progress, limits=limits)
    except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
        reason = getattr(error, "reason", error)
        if isinstance(reason, FileNotFoundError):  # a file:// mirror without the file
            raise _not_found(checkpoint, url) from error
        if isinstance(reason, TimeoutError) or "timed out" in str(reason):
            raise _TransientError(f"no answer within {limits.timeout:g} s") from error
        raise _TransientError(f"cannot connect: {reason}") from error

    with response:
        start, total = _plan_body(response, offset, url)
        _refuse_wrong_announced_size(checkpoint, url, partial, total)
        _stream(response, partial, start=start, total=total, progress=progress, label=checkpoint.filename,
                limits=limits)
    if total is not None and _size_of(partial) < total:
        # http.client stops quietly at a close-delimited end; a short body is an interruption, not the file.
        raise _TransientError(f"connection closed after {_size_of(partial)} of {total} bytes")
    return total


def _handle_http_error(
    checkpoint: OfficialCheckpoint, url: str, partial: Path, error: urllib.error.HTTPError
) -> int | None:
    """Turn an HTTP error status into a result (416: the announced total, see `_handle_unsatisfiable_range`), a retry
    (5xx, 429) or a `DownloadError`."""
    if error.code == 416 and partial.exists():
        return _handle_unsatisfiable_range(url, partial, error)
    if error.code == 404:
        raise _not_found(checkpoint, url) from error
    if error.code in _TRANSIENT_STATUSES:
        raise _TransientError(f"HTTP {error.code} {error.reason}") from error
    raise DownloadError(
        f"Downloading checkpoint {checkpoint.name!r} from {url} failed: HTTP {error.code} {error.reason}.", url=url
    ) from error


def _handle_unsatisfiable_range(url: str, partial: Path, error: urllib.error.HTTPError) -> int | None:
    """HTTP 416: the partial file reaches (or passes) the end of the remote file.

    If the server names the file's size (``Content-Range: bytes */N``) and the partial file is exactly that long, it
    is complete. Otherwise it is not this file: it is removed, and the caller starts over. Without a size the partial
    file is handed to the final checks, which reject it if it is wrong.
    """
    total = _parse_content_range(error.headers.get("Content-Range"))[2]
    size = _size_of(partial)
    if total is None or size == total:
        return total
    logger.info("%s has %d bytes but the remote file %d; downloading from the start.", partial, size, total)
    partial.unlink()
    return None


def _plan_body(response: http.client.HTTPResponse, offset: int, url: str) -> tuple[int, int | None]:
    """From the response status and headers: where the body starts in the file, and the file's total size."""
    status = getattr(response, "status", None)
    length = _int_header(response.headers.get("Content-Length"))
    if status == 206:
        first, _, total = _parse_content_range(response.headers.get("Content-Range"))
        if first != offset:  # a server answering another range than asked would corrupt the file
            raise _TransientError(f"server resumed at byte {first}, asked for {offset}")
        if total is None and length is not None:
            total = offset + length
        return offset, total
    if status in (200, None):  # None: a file:// URL. Either way the whole file follows; Range was ignored.
        if offset:
            logger.info("%s ignored the Range request; downloading from the start.", url)
        return 0, length
    raise _TransientError(f"unexpected HTTP status {status}")


def _stream(
    response: IO[bytes], partial: Path, *, start: int, total: int | None, progress: bool, label: str, limits: _Limits
) -> None:
    """Copy the body into `partial` from byte `start` on (truncating anything after it), with a progress bar; an
    attempt slower than `limits.min_speed` (after a grace period) or past the deadline stops."""
    mode = "ab" if start else "wb"
    # read1 returns what has arrived; read(n) waits for n bytes and loses them all if the connection fails meanwhile.
    read = getattr(response, "read1", response.read)
    from tqdm.auto import tqdm  # a dependency of huggingface_hub

    bar = tqdm(total=total, initial=start, unit="B", unit_scale=True, unit_divisor=1024, desc=label, disable=not progress)
    with open(partial, mode) as sink, bar:
        try:
            began, received = time.monotonic(), 0
            while chunk := read(CHUNK_SIZE):
                sink.write(chunk)
                bar.update(len(chunk))
                received += len(chunk)
                _check_pace(received, time.monotonic() - began, limits)
        except (TimeoutError, socket.timeout) as error:
            raise _TransientError(f"no data for {limits.timeout:g} s") from error
        except (OSError, http.client.HTTPException) as error:
            # Everything written so far stays in the .partial file (flushed when `sink` closes) for the resume.
            raise _TransientError(f"connection lost: {error!r}") from error


def _check_pace(received: int, elapsed: float, limits: _Limits) -> None:
    if time.monotonic() > limits.until:
        raise _TransientError(f"still downloading at the {limits.deadline:.0f} s deadline")
    if elapsed > limits.timeout and received / elapsed < limits.min_speed:
        raise _TransientError(f"{received / elapsed / 1024:.1f} KiB/s is below the minimum of "
                              f"{limits.min_speed / 1024:.0f} KiB/s")


# -- checks --------------------------------------------------------------------------------------------------------


def _refuse_wrong_announced_size(
    checkpoint: OfficialCheckpoint, url: str, partial: Path, total: int | None
) -> None:
    """Refuse before downloading when the server announces a size the checkpoint cannot have (an error page, a
    different file): no point fetching a gigabyte to throw it away."""
    if total is None or checkpoint.check_size(total):
        return
    partial.unlink(missing_ok=True)
    raise DownloadError(_size_message(checkpoint, url, total, "the server announces"), url=url)


def _verify_or_remove(partial: Path, checkpoint: OfficialCheckpoint, url: str, announced: int | None) -> None:
    """Check the finished `partial`; if anything is wrong remove it (so no bad bytes survive) and raise."""
    size = _size_of(partial)
    problem: str | None = None
    if announced is not None and size != announced:
        problem = f"the server announced {announced} bytes but {size} bytes were received"
    elif not checkpoint.check_size(size):
        problem = _size_message(checkpoint, url, size, "the download has")
    elif not _is_zip(partial):
        problem = f"the {size} bytes received are not a zip archive (an .npz file starts with {ZIP_MAGIC!r})"
    if problem is None:
        return
    partial.unlink(missing_ok=True)
    raise DownloadError(
        f"Refusing the download of checkpoint {checkpoint.name!r} from {url}: {problem}. The file was removed.",
        url=url,
    )


def _size_message(checkpoint: OfficialCheckpoint, url: str, got: int, what: str) -> str:
    low, high = checkpoint.expected_size_range()
    return (
        f"{what} {got} bytes for {url}, but checkpoint {checkpoint.name!r} should be {low} to {high} bytes "
        f"(float32 weights of its architecture, plus headers)"
    )


def _is_zip(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(len(ZIP_MAGIC)) == ZIP_MAGIC


# -- errors --------------------------------------------------------------------------------------------------------


def _not_found(checkpoint: OfficialCheckpoint, url: str) -> DownloadError:
    return DownloadError(
        f"Checkpoint {checkpoint.name!r} was not found at {url} (HTTP 404). Check the base URL "
        f"(argument or $HF_VIT_PORT_BASE_URL) or whether the file was moved.",
        url=url,
    )


def _interrupted(checkpoint: OfficialCheckpoint, url: str, partial: Path, reason: str) -> DownloadError:
    size = _size_of(partial)
    kept = (
        f"{size} bytes are kept in {partial}; run the same command again to resume from there."
        if size
        else "Nothing was written; run the same command again to retry."
    )
    return DownloadError(
        f"Downloading checkpoint {checkpoint.name!r} from {url} failed: {reason}. {kept}",
        url=url,
        resumable=bool(size),
    )


# -- small helpers -------------------------------------------------------------------------------------------------


def _size_of(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _int_header(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _parse_content_range(value: str | None) -> tuple[int | None, int | None, int | None]:
    """``"bytes 100-199/1000"`` -> (100, 199, 1000); ``"bytes */1000"`` -> (None, None, 1000); else all None."""
    match = _CONTENT_RANGE.match(value or "")
    if match is None:
        return None, None, None
    first, last, total = match.groups()
    return (
        int(first) if first is not None else None,
        int(last) if last is not None else None,
        int(total) if total not in (None, "*") else None,
    )
