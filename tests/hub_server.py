"""A stdlib-only fake of the Hugging Face Hub HTTP protocol, for tests.

`HubServer` runs a `ThreadingHTTPServer` on 127.0.0.1 (random free port) in a daemon thread and speaks the
subset of the Hub protocol that the *real* `huggingface_hub` client (v1.x / 2.x, legacy LFS path) uses to
create repos, upload, commit, inspect and download.  Nothing is mocked on the client side: tests drive the
genuine client over real HTTP.  All state is kept in memory.

    with HubServer(tokens={"hf_test_write": "write", "hf_test_read": "read"}) as hub:
        patch_hf_client(monkeypatch, hub.url, token="hf_test_write", hf_home=tmp_path / "hf")
        HfApi().create_repo("test-user/vit")
        ...
        assert hub.commits("test-user/vit")[0].message == "Upload folder using huggingface_hub"

Pointing the client at the server
---------------------------------
* **Subprocesses**: set the env vars before the child starts: ``env = {**os.environ, **hub.env(token, hf_home)}``
  and remove ``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE`` from it unless offline mode is wanted.
  ``HF_HUB_DISABLE_XET=1`` is mandatory: with hf_xet installed the client would otherwise upload through
  the Xet CAS protocol (and `upload_folder` through a multi-commit pipeline), which this server does not speak.
* **In-process**: `huggingface_hub` copies HF_ENDPOINT, HF_HUB_DISABLE_XET, HF_HUB_OFFLINE, HF_HOME & co into
  `huggingface_hub.constants` *at import time*, so setting env vars in a test is not enough.  Use
  `patch_hf_client(monkeypatch, hub.url, token=..., hf_home=...)`: it sets the env vars (inherited by
  subprocesses), patches the already-imported constants, re-points the module-level `huggingface_hub.hf_api.api`
  instance (behind `huggingface_hub.upload_file`, `create_repo`, ... and `ModelCard.push_to_hub`, whose endpoint
  was frozen at import) and resets transformers' shared `HfApi`.  `HfApi` objects built *before* the patch
  keep their old endpoint: build them afterwards or pass ``endpoint=hub.url``.  The token itself is read from
  ``HF_TOKEN`` at call time, so the env var is enough for it.

Protocol notes (what the server answers, mirroring the Hub)
----------------------------------------------------------
* A new repo gets an "initial commit" holding `.gitattributes`, as on the Hub.
* Upload mode (preupload): "lfs" for paths matching `lfs_patterns` (fnmatch on the basename, on the full path if
  the pattern has a '/'), for files larger than `lfs_threshold` (10 MiB), and for binary samples (NUL byte),
  "regular" otherwise.  The answer carries the remote file's `oid` (sha256 for LFS, git blob sha1 otherwise) so
  the client skips unchanged files; if nothing changed the client sends no commit at all.  Set
  `report_remote_oids=False` to make the client send identical files: the server then still creates a commit
  and flags it `CommitRecord.is_noop`.
* LFS batch answers "basic" upload actions pointing to ``/__lfs/upload/<key>`` (the client PUTs there without
  credentials, like a pre-signed S3 URL; sha256 and size are checked) plus a verify action.
* Commits are atomic: everything is validated first (revision, parentCommit -> 412, missing LFS objects -> 422,
  deleting a missing path -> 404) and the repo only changes if all checks pass.
* Error answers carry ``{"error": msg}``, ``X-Error-Message`` and, where the Hub sets it, ``X-Error-Code``
  (RepoNotFound / RevisionNotFound / EntryNotFound), which the client maps to its exception types.
* Auth: an unknown bearer token -> 401 "Invalid credentials in Authorization header" on any endpoint; writes
  without a token -> 401; writes with a "read" token -> 403; private repos read without a token -> 404.

Fault injection: `fail_next`, `drop_next`, `delay_next` match ``re.search(path_regex, unquoted_url_path)``;
every request is logged in `requests` as ``RequestRecord(method, path, status, query)`` before its answer is
written, so a test can assert on it as soon as the client returns.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import itertools
import json
import os
import re
import secrets
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import parse_qs, unquote, urlsplit

if TYPE_CHECKING:
    import pytest

WRITE_TOKEN = "hf_test_write"
READ_TOKEN = "hf_test_read"
DEFAULT_TOKENS: Mapping[str, str] = MappingProxyType({WRITE_TOKEN: "write", READ_TOKEN: "read"})
DEFAULT_USER = "test-user"

# The patterns of the Hub's default `.gitattributes` (the file of a new repo's initial commit).
DEFAULT_LFS_PATTERNS: tuple[str, ...] = (
    "*.7z", "*.arrow", "*.bin", "*.bz2", "*.ckpt", "*.ftz", "*.gz", "*.h5", "*.joblib", "*.lfs.*",
    "*.mlmodel", "*.model", "*.msgpack", "*.npy", "*.npz", "*.onnx", "*.ot", "*.parquet", "*.pb",
    "*.pickle", "*.pkl", "*.pt", "*.pth", "*.rar", "*.safetensors", "saved_model/**/*", "*.tar.*",
    "*.tar", "*.tflite", "*.tgz", "*.wasm", "*.xz", "*.zip", "*.zst", "*tfevents*",
)  # fmt: skip
LFS_SIZE_THRESHOLD = 10 * 1024 * 1024  # the Hub refuses regular (non-LFS) files above 10 MB

# License ids accepted in model card metadata (subset of the Hub's list; "other" covers custom licenses).
KNOWN_LICENSES = frozenset(
    """apache-2.0 mit openrail bigscience-openrail-m creativeml-openrail-m bigscience-bloom-rail-1.0
    bigcode-openrail-m afl-3.0 artistic-2.0 bsl-1.0 bsd bsd-2-clause bsd-3-clause bsd-3-clause-clear c-uda cc
    cc0-1.0 cc-by-2.0 cc-by-2.5 cc-by-3.0 cc-by-4.0 cc-by-sa-3.0 cc-by-sa-4.0 cc-by-nc-2.0 cc-by-nc-3.0
    cc-by-nc-4.0 cc-by-nd-4.0 cc-by-nc-nd-3.0 cc-by-nc-nd-4.0 cc-by-nc-sa-2.0 cc-by-nc-sa-3.0 cc-by-nc-sa-4.0
    cdla-sharing-1.0 cdla-permissive-1.0 cdla-permissive-2.0 wtfpl ecl-2.0 epl-1.0 epl-2.0 etalab-2.0
    eupl-1.1 eupl-1.2 agpl-3.0 gfdl gpl gpl-2.0 gpl-3.0 lgpl lgpl-2.1 lgpl-3.0 isc h-research intel-research
    lppl-1.3c ms-pl apple-ascl apple-amlr mpl-2.0 odc-by odbl openrail++ osl-3.0 postgresql ofl-1.1 ncsa
    unlicense zlib pddl lgpl-lr deepfloyd-if-license llama2 llama3 llama3.1 llama3.2 llama3.3 llama4 gemma
    unknown other""".split()
)

_DEFAULT_BRANCH = "main"
_PLURAL_TO_TYPE = {"models": "model", "datasets": "dataset", "spaces": "space"}
_URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
_REPO_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}")
_COMMIT_PREFIX = re.compile(r"[0-9a-f]{7,40}")
_NO_METADATA_WARNING = "empty or missing yaml metadata in repo card"
_UNAUTHENTICATED = "Invalid username or password."
_INVALID_TOKEN = "Invalid credentials in Authorization header"


# --------------------------------------------------------------------------------------------------------------
# Errors answered to the client
# --------------------------------------------------------------------------------------------------------------


class HubError(Exception):
    """An HTTP error answer: status, message and the Hub's `X-Error-Code` when it sets one."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})


def _repo_not_found() -> HubError:
    return HubError(404, "Repository not found", code="RepoNotFound")


def _revision_not_found(revision: str) -> HubError:
    return HubError(404, f"Invalid rev id: {revision}", code="RevisionNotFound")


def _entry_not_found(path: str, commit_oid: str) -> HubError:
    # The client caches the non-existence of the file under `.no_exist/<X-Repo-Commit>/`.
    return HubError(404, "Entry not found", code="EntryNotFound", headers={"X-Repo-Commit": commit_oid})


# --------------------------------------------------------------------------------------------------------------
# Repository model
# --------------------------------------------------------------------------------------------------------------


def _git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _now_iso() -> str:
    # The client's `parse_datetime` only accepts this exact format.
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())


@dataclass(frozen=True)
class _Blob:
    """File content as stored in a commit, and whether git tracks it through an LFS pointer."""

    data: bytes = field(repr=False)
    lfs: bool

    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @cached_property
    def pointer(self) -> bytes:
        return f"version https://git-lfs.github.com/spec/v1\noid sha256:{self.sha256}\nsize {len(self.data)}\n".encode()

    @cached_property
    def git_oid(self) -> str:
        """The git blob id (tree listings' `oid`): git stores the pointer, not the content, for LFS files."""
        return _git_blob_sha1(self.pointer if self.lfs else self.data)

    @property
    def content_oid(self) -> str:
        """What the client compares in preupload to skip unchanged files: sha256 for LFS, git sha1 otherwise."""
        return self.sha256 if self.lfs else self.git_oid

    @property
    def etag(self) -> str:
        return self.sha256 if self.lfs else self.git_oid


@dataclass(frozen=True)
class _Commit:
    oid: str
    message: str
    description: str
    parents: tuple[str, ...]
    files: Mapping[str, _Blob] = field(repr=False)
    changed_paths: tuple[str, ...]
    author: str
    date: str


@dataclass(frozen=True)
class CommitRecord:
    """Public view of a commit, as returned by `HubServer.commits`."""

    oid: str
    message: str  # the summary line (the client's `commit_message`)
    description: str
    parents: tuple[str, ...]
    changed_paths: tuple[str, ...]  # paths added, modified or deleted relative to the first parent
    author: str
    date: str

    @property
    def is_noop(self) -> bool:
        """True when the commit did not change any file (the server still creates it, as the Hub does)."""
        return not self.changed_paths


@dataclass
class _Repo:
    repo_type: str
    repo_id: str
    private: bool
    created_at: str
    refs: dict[str, str] = field(default_factory=dict)  # "main", "dev", "refs/pr/1" -> commit oid
    commits: dict[str, _Commit] = field(default_factory=dict)
    lfs_objects: dict[str, bytes] = field(default_factory=dict)  # sha256 -> content, committed or not
    pr_count: int = 0

    @property
    def key(self) -> tuple[str, str]:
        return (self.repo_type, self.repo_id)


class _Op(NamedTuple):
    """One commit operation: kind is "add", "delete_file" or "delete_folder"."""

    kind: str
    path: str
    blob: _Blob | None = None


def _apply_operations(files: Mapping[str, _Blob], ops: Iterable[_Op]) -> dict[str, _Blob]:
    """Return the new file set; raise (leaving `files` untouched) if an operation is invalid."""
    result = dict(files)
    for op in ops:
        if op.kind == "add":
            assert op.blob is not None
            result[op.path] = op.blob
        elif op.kind == "delete_file":
            if result.pop(op.path, None) is None:
                raise HubError(404, f"A file with this name doesn't exist: {op.path}", code="EntryNotFound")
        else:
            prefix = op.path.rstrip("/") + "/"
            doomed = [path for path in result if path.startswith(prefix)]
            if not doomed:
                raise HubError(404, f"A folder with this name doesn't exist: {op.path}", code="EntryNotFound")
            for path in doomed:
                del result[path]
    return result


def _changed_paths(old: Mapping[str, _Blob], new: Mapping[str, _Blob]) -> tuple[str, ...]:
    return tuple(sorted(path for path in old.keys() | new.keys() if old.get(path) != new.get(path)))


class _Store:
    """All repositories, guarded by one lock so that validate-then-apply is atomic."""

    def __init__(self, gitattributes: bytes) -> None:
        self.lock = threading.RLock()
        self._repos: dict[tuple[str, str], _Repo] = {}
        self._gitattributes = gitattributes
        self._sequence = itertools.count()  # makes commit ids unique even for identical content

    def create_repo(self, repo_type: str, repo_id: str, *, private: bool, author: str) -> _Repo:
        with self.lock:
            if (repo_type, repo_id) in self._repos:
                raise HubError(409, f"You already created this {repo_type} repo")
            repo = _Repo(repo_type, repo_id, private, _now_iso())
            initial = {".gitattributes": _Blob(self._gitattributes, lfs=False)}
            repo.refs[_DEFAULT_BRANCH] = self._add_commit(repo, None, initial, "initial commit", "", author).oid
            self._repos[repo.key] = repo
            return repo

    def get(self, repo_type: str, repo_id: str) -> _Repo:
        with self.lock:
            repo = self._repos.get((repo_type, repo_id))
        if repo is None:
            raise _repo_not_found()
        return repo

    def exists(self, repo_type: str, repo_id: str) -> bool:
        with self.lock:
            return (repo_type, repo_id) in self._repos

    def delete_repo(self, repo_type: str, repo_id: str) -> None:
        with self.lock:
            if self._repos.pop((repo_type, repo_id), None) is None:
                raise _repo_not_found()

    def resolve(self, repo: _Repo, revision: str) -> _Commit:
        """Resolve a branch, PR ref (`refs/pr/N`), `refs/heads/x` or (abbreviated) commit id."""
        with self.lock:
            name = revision.removeprefix("refs/heads/")
            oid = repo.refs.get(name)
            if oid is None and _COMMIT_PREFIX.fullmatch(revision):
                candidates = [candidate for candidate in repo.commits if candidate.startswith(revision)]
                oid = candidates[0] if len(candidates) == 1 else None
            if oid is None:
                raise _revision_not_found(revision)
            return repo.commits[oid]

    def history(self, repo: _Repo, revision: str) -> list[_Commit]:
        """First-parent history, newest first (like `git log --first-parent`)."""
        with self.lock:
            commit: _Commit | None = self.resolve(repo, revision)
            history = []
            while commit is not None:
                history.append(commit)
                commit = repo.commits[commit.parents[0]] if commit.parents else None
            return history

    def commit(
        self,
        repo: _Repo,
        *,
        revision: str,
        ops: list[_Op],
        message: str,
        description: str,
        parent_commit: str | None,
        create_pr: bool,
        author: str,
    ) -> tuple[_Commit, str]:
        """Validate everything, then apply: returns the new commit and the ref it was written to."""
        with self.lock:
            base = self._commit_base(repo, revision, parent_commit, create_pr)
            files = _apply_operations(base.files, ops)
            # Nothing below can fail: the repo is only mutated once all checks passed.
            ref = self._open_pull_request(repo) if create_pr else revision
            commit = self._add_commit(repo, base.oid, files, message, description, author)
            repo.refs[ref] = commit.oid
            return commit, ref

    def create_branch(self, repo: _Repo, branch: str, starting_point: str | None) -> None:
        with self.lock:
            if branch.startswith("refs/") or not branch:
                raise HubError(400, f"Invalid branch name: {branch}")
            if branch in repo.refs:
                raise HubError(409, f"Reference already exists: refs/heads/{branch}")
            repo.refs[branch] = self.resolve(repo, starting_point or _DEFAULT_BRANCH).oid

    def _commit_base(self, repo: _Repo, revision: str, parent_commit: str | None, create_pr: bool) -> _Commit:
        """The commit the new one builds upon, checking `parentCommit` (optimistic concurrency)."""
        if revision not in repo.refs:
            if _COMMIT_PREFIX.fullmatch(revision) and any(oid.startswith(revision) for oid in repo.commits):
                raise HubError(400, "Can only commit to a branch or a pull request ref, not to a commit id")
            raise _revision_not_found(revision)
        head = repo.commits[repo.refs[revision]]
        if parent_commit is None:
            return head
        if create_pr:  # the client documents that a PR is opened *from* parent_commit
            return self.resolve(repo, parent_commit)
        if not head.oid.startswith(parent_commit.lower()):
            raise HubError(412, "A commit has happened since. Please refresh and try again.")
        return head

    def _open_pull_request(self, repo: _Repo) -> str:
        repo.pr_count += 1
        return f"refs/pr/{repo.pr_count}"

    def _add_commit(
        self, repo: _Repo, parent: str | None, files: dict[str, _Blob], message: str, description: str, author: str
    ) -> _Commit:
        parent_files = repo.commits[parent].files if parent else {}
        tree = "\n".join(f"{path} {blob.git_oid}" for path, blob in sorted(files.items()))
        seed = f"{next(self._sequence)}\0{parent}\0{message}\0{description}\0{tree}"
        commit = _Commit(
            oid=hashlib.sha1(seed.encode()).hexdigest(),
            message=message,
            description=description,
            parents=(parent,) if parent else (),
            files=MappingProxyType(files),
            changed_paths=_changed_paths(parent_files, files),
            author=author,
            date=_now_iso(),
        )
        repo.commits[commit.oid] = commit
        for blob in files.values():
            if blob.lfs:  # seeded LFS files must be referencable by later `lfsFile` operations too
                repo.lfs_objects.setdefault(blob.sha256, blob.data)
        return commit


# --------------------------------------------------------------------------------------------------------------
# Model card metadata validation (stdlib only: a YAML *subset* check, enough to catch malformed front matter)
# --------------------------------------------------------------------------------------------------------------

_YAML_BLOCK = re.compile(r"^(\s*---(?:\r\n|\r|\n))([\S\s]*?)((?:\r\n|\r|\n)---[ \t]*(\r\n|\n|$))")
_TOP_LEVEL_KEY = re.compile(r"""^(?:"([^"]+)"|'([^']+)'|([^\s:#'"\-][^:#]*?))\s*:(?:[ \t]+(.*))?$""")


def validate_card_metadata(content: str) -> tuple[list[str], list[str]]:
    """Return (errors, warnings) for the YAML front matter of a README, like `/api/validate-yaml`.

    Checks that the front matter is a mapping of `key: value` lines without duplicated keys, and that a scalar
    `license` is a license id known to the Hub.  Indented lines and `- item` lines (values of the previous key)
    are not inspected.
    """
    match = _YAML_BLOCK.search(content)
    if match is None:
        return [], [_NO_METADATA_WARNING]
    errors: list[str] = []
    keys: set[str] = set()
    for line_number, line in enumerate(match.group(2).splitlines(), start=2):
        if not line.strip() or line.lstrip().startswith("#") or line[0] in " \t":
            continue
        if line == "-" or line.startswith("- "):
            if not keys:  # a top-level sequence: the whole front matter is a list
                return [f"line {line_number}: metadata must be a mapping, not a list"], []
            continue  # an item of the previous key's block sequence
        key_match = _TOP_LEVEL_KEY.match(line)
        if key_match is None:
            errors.append(f"line {line_number}: invalid YAML, expected 'key: value' but got {line!r}")
            continue
        key = next(group for group in key_match.groups()[:3] if group)
        if key in keys:
            errors.append(f'line {line_number}: duplicated mapping key "{key}"')
        keys.add(key)
        value = (key_match.group(4) or "").split(" #")[0].strip().strip("'\"")
        if key == "license" and value and not value.startswith("[") and value not in KNOWN_LICENSES:
            errors.append(f'"license" must be one of the license ids supported by the Hub, got "{value}"')
    warnings = [] if keys or errors else [_NO_METADATA_WARNING]
    return errors, warnings


# --------------------------------------------------------------------------------------------------------------
# HTTP plumbing
# --------------------------------------------------------------------------------------------------------------


class RequestRecord(NamedTuple):
    """One handled request.  `path` is URL-unquoted; `status` is None for dropped connections."""

    method: str
    path: str
    status: int | None
    query: str = ""


@dataclass
class _Request:
    method: str
    path: str  # raw (still quoted) URL path, used for routing
    query: dict[str, list[str]]
    headers: Mapping[str, str]
    body: bytes
    base_url: str

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"{}")
        except ValueError as exc:
            raise HubError(400, f"Invalid JSON body: {exc}") from exc

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None

    def flag(self, name: str) -> bool:
        return (self.param(name) or "").lower() in ("1", "true")


@dataclass
class _Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(
        cls, payload: Any, status: int = 200, headers: Mapping[str, str] | None = None, content_type: str = ""
    ) -> _Response:
        all_headers = {"Content-Type": content_type or "application/json", **(headers or {})}
        return cls(status, json.dumps(payload).encode(), all_headers)


def _header_safe(text: str) -> str:
    """HTTP header values must be latin-1 on one line; paths and revisions in messages may be anything."""
    return " ".join(text.encode("ascii", "backslashreplace").decode().split())


def _error_response(error: HubError) -> _Response:
    headers = {"X-Error-Message": _header_safe(error.message), **error.headers}
    if error.code:
        headers["X-Error-Code"] = error.code
    return _Response.json({"error": error.message, **error.extra}, error.status, headers)


@dataclass
class _Fault:
    kind: str  # "fail", "drop" or "delay"
    method: str
    pattern: re.Pattern[str]
    remaining: int
    status: int = 500
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    def matches(self, method: str, path: str) -> bool:
        return self.remaining > 0 and self.method in ("*", method) and self.pattern.search(path) is not None


class _FaultQueue:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[_Fault] = []

    def add(self, fault: _Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def take(self, method: str, path: str) -> tuple[float, _Fault | None]:
        """Consume the faults matching a request: (total delay, first matching fail/drop fault)."""
        with self._lock:
            delay = 0.0
            for fault in self._faults:
                if fault.kind == "delay" and fault.matches(method, path):
                    fault.remaining -= 1
                    delay += fault.seconds
            outcome = next((f for f in self._faults if f.kind != "delay" and f.matches(method, path)), None)
            if outcome is not None:
                outcome.remaining -= 1
            self._faults = [fault for fault in self._faults if fault.remaining > 0]
            return delay, outcome


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True  # a client keeping a pooled connection open must not block shutdown

    def __init__(self, address: tuple[str, int], hub: HubServer) -> None:
        self.hub = hub
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the client pools connections
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        self.server.hub._track_connection(self.connection, open_=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.hub._track_connection(self.connection, open_=False)

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: test output should not be flooded (and nothing here may ever print a token)."""

    def do_GET(self) -> None:
        self._serve()

    do_HEAD = do_POST = do_PUT = do_DELETE = do_GET

    def _serve(self) -> None:
        hub = self.server.hub
        body = self._read_body()
        url = urlsplit(self.path)
        readable_path = unquote(url.path)
        delay, fault = hub._faults.take(self.command, readable_path)
        if delay:
            time.sleep(delay)
        if fault is not None and fault.kind == "drop":
            hub._record(RequestRecord(self.command, readable_path, None, url.query))
            self.close_connection = True  # the connection closes without any answer
            return
        if fault is not None:
            response = _Response(fault.status, fault.body, {"Content-Type": "application/json", **fault.headers})
        else:
            request = _Request(
                method=self.command,
                path=url.path,
                query=parse_qs(url.query, keep_blank_values=True),
                headers=self.headers,  # type: ignore[arg-type]  # email.message.Message: case-insensitive get
                body=body,
                base_url=f"http://{self.headers.get('Host') or hub.url.removeprefix('http://')}",
            )
            response = hub._api.handle(request)
        hub._record(RequestRecord(self.command, readable_path, response.status, url.query))
        self._write(response)

    def _read_body(self) -> bytes:
        # httpx streams file objects with `Transfer-Encoding: chunked` when it cannot tell their size.
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while (size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)) > 0:
                chunks.append(self.rfile.read(size))
                self.rfile.readline()  # CRLF closing the chunk
            while self.rfile.readline().strip():  # optional trailers, then the final empty line
                pass
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _write(self, response: _Response) -> None:
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        # For HEAD too: the client reads the file size from Content-Length.
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)


# --------------------------------------------------------------------------------------------------------------
# The Hub API
# --------------------------------------------------------------------------------------------------------------

_TYPE = r"(?P<type>models|datasets|spaces)"
_REPO = r"(?P<ns>[^/]+)/(?P<name>[^/]+?)"
_PREFIX = r"(?:(?P<prefix>datasets|spaces)/)?"
_Handler_T = Callable[[_Request, dict[str, str]], _Response]


class _Api:
    """Endpoint implementations: translate the Hub's wire format to `_Store` operations."""

    def __init__(self, hub: HubServer) -> None:
        self._hub = hub
        self._store = hub._store
        self._uploads: dict[str, tuple[tuple[str, str], str, int]] = {}  # key -> (repo key, sha256, size)
        routes: list[tuple[str, str, _Handler_T]] = [
            ("POST", r"/api/repos/create", self.create_repo),
            ("DELETE", r"/api/repos/delete", self.delete_repo),
            ("POST", r"/api/validate-yaml", self.validate_yaml),
            ("GET", r"/api/whoami-v2", self.whoami),
            ("GET", r"/api/agent-harnesses", self.agent_harnesses),
            ("GET", rf"/api/{_TYPE}/{_REPO}(?:/revision/(?P<rev>[^/]+))?", self.repo_info),
            ("GET", rf"/api/{_TYPE}/{_REPO}/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?", self.tree),
            ("GET", rf"/api/{_TYPE}/{_REPO}/refs", self.refs),
            ("GET", rf"/api/{_TYPE}/{_REPO}/commits/(?P<rev>[^/]+)", self.list_commits),
            ("POST", rf"/api/{_TYPE}/{_REPO}/preupload/(?P<rev>[^/]+)", self.preupload),
            ("POST", rf"/api/{_TYPE}/{_REPO}/commit/(?P<rev>[^/]+)", self.commit),
            ("POST", rf"/api/{_TYPE}/{_REPO}/branch/(?P<branch>[^/]+)", self.create_branch),
            ("POST", rf"/{_PREFIX}{_REPO}\.git/info/lfs/objects/batch", self.lfs_batch),
            ("PUT", r"/__lfs/upload/(?P<key>[0-9a-f]+)", self.lfs_upload),
            ("POST", r"/__lfs/verify/(?P<key>[0-9a-f]+)", self.lfs_verify),
            ("GET", rf"/{_PREFIX}{_REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)", self.resolve),
            ("HEAD", rf"/{_PREFIX}{_REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)", self.resolve),
        ]
        self._routes = [(method, re.compile(pattern), handler) for method, pattern, handler in routes]

    def handle(self, request: _Request) -> _Response:
        try:
            for method, pattern, handler in self._routes:
                match = pattern.fullmatch(request.path)
                if match and method == request.method:
                    params = {name: unquote(value) for name, value in match.groupdict().items() if value is not None}
                    return handler(request, params)
            raise HubError(404, f"Not found: {request.method} {request.path}")
        except HubError as error:
            return _error_response(error)
        except Exception:  # a bug in the fake: answer 500 and keep the traceback for the test to show
            self._hub.errors.append(traceback.format_exc())
            return _error_response(HubError(500, "Internal server error (see HubServer.errors)"))

    # ---- auth -------------------------------------------------------------------------------------------------

    def _role(self, request: _Request) -> str | None:
        """The caller's token role, None if anonymous; an unknown token is a 401 everywhere (as on the Hub)."""
        header = request.headers.get("Authorization")
        if header is None:
            return None
        scheme, _, token = header.partition(" ")
        role = self._hub.tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        if role is None:
            raise HubError(401, _INVALID_TOKEN)
        return role

    def _require_write(self, request: _Request) -> None:
        role = self._role(request)
        if role is None:
            raise HubError(401, _UNAUTHENTICATED)
        if role != "write":
            raise HubError(403, "You don't have the rights to write with this token (read-only access token)")

    def _readable_repo(self, request: _Request, params: dict[str, str]) -> _Repo:
        role = self._role(request)
        repo = self._store.get(*_repo_key(params))
        if repo.private and role is None:
            raise _repo_not_found()  # private repos do not exist for anonymous callers
        return repo

    def _writable_repo(self, request: _Request, params: dict[str, str]) -> _Repo:
        self._require_write(request)
        return self._store.get(*_repo_key(params))

    # ---- account & repos ----------------------------------------------------------------------------------------

    def whoami(self, request: _Request, params: dict[str, str]) -> _Response:
        role = self._role(request)
        if role is None:
            raise HubError(401, _UNAUTHENTICATED)
        user = self._hub.user
        return _Response.json(
            {
                "type": "user",
                "id": hashlib.sha1(user.encode()).hexdigest()[:24],
                "name": user,
                "fullname": user,
                "email": f"{user}@example.com",
                "emailVerified": True,
                "isPro": False,
                "orgs": [],
                "auth": {"type": "access_token", "accessToken": {"displayName": f"{role} token", "role": role}},
            }
        )

    def agent_harnesses(self, request: _Request, params: dict[str, str]) -> _Response:
        # Fetched once per process by the client while building its user-agent header.
        return _Response.json({"standardEnvVars": [], "harnesses": {}})

    def create_repo(self, request: _Request, params: dict[str, str]) -> _Response:
        self._require_write(request)
        payload = request.json()
        name, namespace = payload.get("name") or "", payload.get("organization") or self._hub.user
        repo_type = payload.get("type") or "model"
        if repo_type not in _URL_PREFIX:
            raise HubError(400, f"Invalid repo type: {repo_type}")
        if not _REPO_NAME.fullmatch(name) or "--" in name or ".." in name or name.endswith(".git"):
            raise HubError(400, f"Invalid repo name: {name!r}")
        repo_id = f"{namespace}/{name}"
        url = f"{request.base_url}/{_URL_PREFIX[repo_type]}{repo_id}"
        private = payload.get("visibility") == "private" or bool(payload.get("private"))
        try:
            self._store.create_repo(repo_type, repo_id, private=private, author=self._hub.user)
        except HubError as error:
            error.extra["url"] = url  # with exist_ok=True, the client reads `url` from the 409 answer
            raise
        return _Response.json({"url": url, "name": repo_id, "id": repo_id})

    def delete_repo(self, request: _Request, params: dict[str, str]) -> _Response:
        self._require_write(request)
        payload = request.json()
        namespace = payload.get("organization") or self._hub.user
        self._store.delete_repo(payload.get("type") or "model", f"{namespace}/{payload.get('name') or ''}")
        return _Response.json({})

    def validate_yaml(self, request: _Request, params: dict[str, str]) -> _Response:
        self._role(request)  # anonymous is fine (ModelCard.validate sends no token), a bad token is not
        errors, warnings = validate_card_metadata(str(request.json().get("content", "")))
        status = 400 if errors else 200
        if "text/plain" in request.headers.get("Accept", ""):
            # ModelCard.validate asks for text and raises ValueError(response.text) on 400.
            text = "\n".join(errors or warnings) or "OK"
            return _Response(status, text.encode(), {"Content-Type": "text/plain; charset=utf-8"})
        return _Response.json(
            {"errors": [{"message": m} for m in errors], "warnings": [{"message": m} for m in warnings]}, status
        )

    def repo_info(self, request: _Request, params: dict[str, str]) -> _Response:
        repo = self._readable_repo(request, params)
        commit = self._store.resolve(repo, params.get("rev", _DEFAULT_BRANCH))
        with_blobs = request.flag("blobs")
        namespace = repo.repo_id.split("/")[0]
        return _Response.json(
            {
                "_id": hashlib.sha1(repo.repo_id.encode()).hexdigest()[:24],
                "id": repo.repo_id,
                "author": namespace,
                "sha": commit.oid,
                "lastModified": commit.date,
                "createdAt": repo.created_at,
                "private": repo.private,
                "gated": False,
                "disabled": False,
                "downloads": 0,
                "likes": 0,
                "tags": [],
                "siblings": [_sibling(path, blob, with_blobs) for path, blob in sorted(commit.files.items())],
                "usedStorage": sum(len(blob.data) for blob in commit.files.values()),
            }
        )

    def tree(self, request: _Request, params: dict[str, str]) -> _Response:
        repo = self._readable_repo(request, params)
        commit = self._store.resolve(repo, params["rev"])
        folder = params.get("path", "").strip("/")
        entries = _tree_entries(commit.files, folder, recursive=request.flag("recursive"))
        if folder and not entries:
            raise _entry_not_found(folder, commit.oid)
        return _Response.json(entries)

    def refs(self, request: _Request, params: dict[str, str]) -> _Response:
        repo = self._readable_repo(request, params)
        with self._store.lock:
            refs = dict(repo.refs)
        branches = [
            {"name": name, "ref": f"refs/heads/{name}", "targetCommit": oid}
            for name, oid in sorted(refs.items())
            if not name.startswith("refs/")
        ]
        pulls = [
            {"name": name, "ref": name, "targetCommit": oid}
            for name, oid in sorted(refs.items())
            if name.startswith("refs/pr/")
        ]
        payload = {"branches": branches, "converts": [], "tags": []}
        if request.flag("include_prs"):
            payload["pullRequests"] = pulls
        return _Response.json(payload)

    def list_commits(self, request: _Request, params: dict[str, str]) -> _Response:
        repo = self._readable_repo(request, params)
        return _Response.json(
            [
                {
                    "id": commit.oid,
                    "title": commit.message,
                    "message": commit.description,
                    "authors": [{"user": commit.author, "avatar": ""}],
                    "date": commit.date,
                }
                for commit in self._store.history(repo, params["rev"])
            ]
        )

    def create_branch(self, request: _Request, params: dict[str, str]) -> _Response:
        repo = self._writable_repo(request, params)
        self._store.create_branch(repo, params["branch"], request.json().get("startingPoint"))
        return _Response.json({})

    # ---- upload ---------------------------------------------------------------------------------------------

    def preupload(self, request: _Request, params: dict[str, str]) -> _Response:
        repo = self._writable_repo(request, params)
        head = self._store.resolve(repo, params["rev"])
        answers = []
        for item in request.json().get("files", []):
            path, size = item["path"], int(item.get("size", 0))
            sample = base64.b64decode(item.get("sample", ""))
            mode = upload_mode(path, size, sample, self._hub.lfs_patterns, self._hub.lfs_threshold)
            answer = {"path": path, "uploadMode": mode, "shouldIgnore": False}
            existing = head.files.get(path)
            if existing is not None and self._hub.report_remote_oids:
                answer["oid"] = existing.content_oid
            answers.append(answer)
        return _Response.json({"files": answers, "commitOid": head.oid})

    def lfs_batch(self, request: _Request, params: dict[str, str]) -> _Response:
        repo = self._writable_repo(request, params)
        payload = request.json()
        if payload.get("operation") != "upload":
            raise HubError(400, "Only the 'upload' LFS batch operation is supported")
        objects = [self._lfs_batch_object(repo, request.base_url, obj) for obj in payload.get("objects", [])]
        return _Response.json(
            {"transfer": "basic", "objects": objects, "hash_algo": "sha256"},
            content_type="application/vnd.git-lfs+json",
        )

    def _lfs_batch_object(self, repo: _Repo, base_url: str, obj: Mapping[str, Any]) -> dict[str, Any]:
        oid, size = str(obj.get("oid", "")), obj.get("size")
        if not re.fullmatch(r"[0-9a-f]{64}", oid) or not isinstance(size, int) or size < 0:
            error = {"code": 422, "message": "Invalid object: oid must be a sha256 and size a positive integer"}
            return {"oid": oid, "size": size if isinstance(size, int) else 0, "error": error}
        with self._store.lock:
            stored = repo.lfs_objects.get(oid)
            if stored is not None and len(stored) == size:
                return {"oid": oid, "size": size}  # no "actions": the client skips the upload
            key = secrets.token_hex(16)  # plays the role of a pre-signed URL: the PUT carries no credentials
            self._uploads[key] = (repo.key, oid, size)
        return {
            "oid": oid,
            "size": size,
            "authenticated": True,
            "actions": {
                "upload": {"href": f"{base_url}/__lfs/upload/{key}", "expires_in": 3600},
                "verify": {"href": f"{base_url}/__lfs/verify/{key}"},
            },
        }

    def _pending_upload(self, key: str) -> tuple[_Repo, str, int]:
        with self._store.lock:
            upload = self._uploads.get(key)
        if upload is None:
            raise HubError(404, "Unknown or expired upload URL")
        repo_key, oid, size = upload
        return self._store.get(*repo_key), oid, size

    def lfs_upload(self, request: _Request, params: dict[str, str]) -> _Response:
        repo, oid, size = self._pending_upload(params["key"])
        if len(request.body) != size:
            raise HubError(400, f"Size mismatch: expected {size} bytes, received {len(request.body)}")
        if hashlib.sha256(request.body).hexdigest() != oid:
            raise HubError(400, "sha256 mismatch: uploaded content does not match the announced oid")
        with self._store.lock:
            repo.lfs_objects[oid] = request.body
        return _Response(200, b"", {"ETag": f'"{hashlib.md5(request.body).hexdigest()}"'})

    def lfs_verify(self, request: _Request, params: dict[str, str]) -> _Response:
        self._require_write(request)
        repo, oid, size = self._pending_upload(params["key"])
        payload = request.json()
        with self._store.lock:
            stored = repo.lfs_objects.get(oid)
            if stored is None or payload.get("oid") != oid or payload.get("size") != len(stored):
                raise HubError(404, f"LFS object {payload.get('oid')} not found")
            self._uploads.pop(params["key"], None)
        return _Response.json({})

    def commit(self, request: _Request, params: dict[str, str]) -> _Response:
        repo = self._writable_repo(request, params)
        header, ops = self._parse_commit_payload(repo, request.body)
        commit, ref = self._store.commit(
            repo,
            revision=params["rev"],
            ops=ops,
            message=str(header["summary"]),
            description=str(header.get("description") or ""),
            parent_commit=header.get("parentCommit"),
            create_pr=request.flag("create_pr"),
            author=self._hub.user,
        )
        repo_url = f"{request.base_url}/{_URL_PREFIX[repo.repo_type]}{repo.repo_id}"
        answer: dict[str, Any] = {
            "success": True,
            "commitOid": commit.oid,
            "commitUrl": f"{repo_url}/commit/{commit.oid}",
            "hookOutput": "",
        }
        if ref.startswith("refs/pr/"):
            answer["pullRequestUrl"] = f"{repo_url}/discussions/{ref.rsplit('/', 1)[1]}"
        return _Response.json(answer)

    def _parse_commit_payload(self, repo: _Repo, body: bytes) -> tuple[dict[str, Any], list[_Op]]:
        """Decode the NDJSON commit body: a `header` line, then one line per operation."""
        try:
            lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        except ValueError as exc:
            raise HubError(400, f"Invalid NDJSON commit payload: {exc}") from exc
        if not lines or lines[0].get("key") != "header" or not lines[0].get("value", {}).get("summary"):
            raise HubError(400, "The commit payload must start with a header holding a summary")
        return lines[0]["value"], [self._parse_operation(repo, line) for line in lines[1:]]

    def _parse_operation(self, repo: _Repo, line: Mapping[str, Any]) -> _Op:
        key, value = line.get("key"), line.get("value") or {}
        path = str(value.get("path", "")).lstrip("/")
        if not path or any(part in ("", ".", "..") for part in path.rstrip("/").split("/")):
            raise HubError(400, f"Invalid path in commit operation: {path!r}")
        if key == "file":
            content = value.get("content", "")
            data = base64.b64decode(content) if value.get("encoding") == "base64" else str(content).encode()
            return _Op("add", path, _Blob(data, lfs=False))
        if key == "lfsFile":
            return _Op("add", path, self._lfs_blob(repo, str(value.get("oid", "")), value.get("size")))
        if key == "deletedFile":
            return _Op("delete_file", path)
        if key == "deletedFolder":
            return _Op("delete_folder", path)
        raise HubError(400, f"Unknown commit operation: {key!r}")

    def _lfs_blob(self, repo: _Repo, oid: str, size: int | None) -> _Blob:
        with self._store.lock:
            data = repo.lfs_objects.get(oid)
        if data is None or (size is not None and size != len(data)):
            raise HubError(
                422, f"Your push was rejected because an LFS pointer pointed to a file that does not exist ({oid})"
            )
        return _Blob(data, lfs=True)

    # ---- download -------------------------------------------------------------------------------------------

    def resolve(self, request: _Request, params: dict[str, str]) -> _Response:
        repo = self._readable_repo(request, params)
        commit = self._store.resolve(repo, params["rev"])
        blob = commit.files.get(params["path"])
        if blob is None:
            raise _entry_not_found(params["path"], commit.oid)
        headers = {
            "Content-Type": "application/octet-stream",
            "Accept-Ranges": "bytes",
            "ETag": f'"{blob.etag}"',
            "X-Repo-Commit": commit.oid,
        }
        if blob.lfs:
            headers["X-Linked-Etag"] = f'"{blob.sha256}"'
            headers["X-Linked-Size"] = str(len(blob.data))
        return _ranged(blob.data, request.headers.get("Range"), headers)


def upload_mode(path: str, size: int, sample: bytes, lfs_patterns: Iterable[str], lfs_threshold: int) -> str:
    """The preupload decision: "lfs" or "regular" for a file, from its path, size and first 512 bytes."""
    if size > lfs_threshold or b"\0" in sample:
        return "lfs"  # the Hub refuses big and binary files as regular git blobs
    basename = path.rsplit("/", 1)[-1]
    for pattern in lfs_patterns:  # .gitattributes semantics: patterns without '/' match the basename
        if fnmatch.fnmatchcase(path if "/" in pattern else basename, pattern):
            return "lfs"
    return "regular"


def _repo_key(params: Mapping[str, str]) -> tuple[str, str]:
    """(repo type, repo id) from route params: `/api/<plural>/...` or an optional `datasets/`|`spaces/` prefix."""
    plural = params.get("type") or params.get("prefix") or "models"
    return _PLURAL_TO_TYPE[plural], f"{params['ns']}/{params['name']}"


def _ranged(data: bytes, range_header: str | None, headers: dict[str, str]) -> _Response:
    """Serve `data`, honouring a single `Range: bytes=a-b` header (used by the client to resume downloads)."""
    match = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", range_header or "")
    if range_header is None or match is None or match.groups() == ("", ""):
        return _Response(200, data, headers)
    total = len(data)
    first, last = match.groups()
    start, end = (int(first), int(last) if last else total - 1) if first else (max(total - int(last), 0), total - 1)
    if start >= total or start > end:
        return _Response(416, b"", {**headers, "Content-Range": f"bytes */{total}"})
    end = min(end, total - 1)
    return _Response(206, data[start : end + 1], {**headers, "Content-Range": f"bytes {start}-{end}/{total}"})


def _sibling(path: str, blob: _Blob, with_blobs: bool) -> dict[str, Any]:
    sibling: dict[str, Any] = {"rfilename": path}
    if with_blobs:  # `model_info(files_metadata=True)` sends `blobs=True`
        sibling.update(size=len(blob.data), blobId=blob.git_oid)
        if blob.lfs:
            sibling["lfs"] = {"size": len(blob.data), "sha256": blob.sha256, "pointerSize": len(blob.pointer)}
    return sibling


def _folders(files: Iterable[str]) -> set[str]:
    return {"/".join(parts[:i]) for parts in (path.split("/") for path in files) for i in range(1, len(parts))}


def _file_entry(path: str, blob: _Blob) -> dict[str, Any]:
    entry: dict[str, Any] = {"type": "file", "oid": blob.git_oid, "size": len(blob.data), "path": path}
    if blob.lfs:
        entry["lfs"] = {"oid": blob.sha256, "size": len(blob.data), "pointerSize": len(blob.pointer)}
    return entry


def _folder_entry(folder: str, files: Mapping[str, _Blob]) -> dict[str, Any]:
    inside = sorted((path, blob.git_oid) for path, blob in files.items() if path.startswith(folder + "/"))
    return {"type": "directory", "oid": hashlib.sha1(repr(inside).encode()).hexdigest(), "size": 0, "path": folder}


def _tree_entries(files: Mapping[str, _Blob], folder: str, *, recursive: bool) -> list[dict[str, Any]]:
    """`list_repo_tree` entries below `folder`: direct children only, or everything when recursive."""
    prefix = f"{folder}/" if folder else ""
    depth = prefix.count("/")

    def wanted(path: str) -> bool:
        return path.startswith(prefix) and (recursive or path.count("/") == depth)

    folders = sorted(path for path in _folders(files) if wanted(path))
    entries = [_folder_entry(path, files) for path in folders]
    return entries + [_file_entry(path, blob) for path, blob in sorted(files.items()) if wanted(path)]


# --------------------------------------------------------------------------------------------------------------
# Public server object
# --------------------------------------------------------------------------------------------------------------


class HubServer:
    """In-memory Hugging Face Hub on 127.0.0.1, for tests; use as a context manager.

    Args:
        tokens: bearer token -> role ("write" or "read"); all tokens belong to `user`.
        user: the account name (`whoami`, default namespace of `create_repo("name")`, commit author).
        lfs_patterns: fnmatch patterns of files uploaded through LFS (also written to `.gitattributes`).
        lfs_threshold: files bigger than this many bytes go through LFS.
        report_remote_oids: answer the remote file oids in preupload, letting the client skip unchanged files.
        host, port: where to listen (port 0 picks a free port).
    """

    def __init__(
        self,
        tokens: Mapping[str, str] | None = None,
        *,
        user: str = DEFAULT_USER,
        lfs_patterns: Iterable[str] = DEFAULT_LFS_PATTERNS,
        lfs_threshold: int = LFS_SIZE_THRESHOLD,
        report_remote_oids: bool = True,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.tokens: dict[str, str] = dict(DEFAULT_TOKENS if tokens is None else tokens)
        if bad_roles := set(self.tokens.values()) - {"read", "write"}:
            raise ValueError(f"token roles must be 'read' or 'write', got {sorted(bad_roles)}")
        self.user = user
        self.lfs_patterns = tuple(lfs_patterns)
        self.lfs_threshold = lfs_threshold
        self.report_remote_oids = report_remote_oids
        self.requests: list[RequestRecord] = []
        self.errors: list[str] = []  # tracebacks of unexpected server-side exceptions (answered as 500)
        self._address = (host, port)
        self._faults = _FaultQueue()
        gitattributes = "".join(f"{pattern} filter=lfs diff=lfs merge=lfs -text\n" for pattern in self.lfs_patterns)
        self._store = _Store(gitattributes.encode())
        self._api = _Api(self)
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle ------------------------------------------------------------------------------------------

    def start(self) -> HubServer:
        if self._httpd is None:
            self._httpd = _HTTPServer(self._address, self)
            self._thread = threading.Thread(
                # A short poll interval keeps `stop()` (which waits for the next poll) fast.
                target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="hub-server", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        with self._lock:
            connections, self._connections = list(self._connections), set()
        for connection in connections:  # unblock handler threads waiting on idle keep-alive connections
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        assert self._thread is not None
        self._thread.join(timeout=5)
        self._httpd = self._thread = None

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Base URL, e.g. `http://127.0.0.1:54321` (the value for HF_ENDPOINT)."""
        if self._httpd is None:
            raise RuntimeError("HubServer is not running: use it as a context manager or call start()")
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def env(self, token: str | None = WRITE_TOKEN, hf_home: str | os.PathLike[str] | None = None) -> dict[str, str]:
        """Environment variables pointing a *subprocess* client at this server."""
        return _client_env(self.url, token, hf_home)

    # ---- fault injection ------------------------------------------------------------------------------------

    def fail_next(
        self,
        method: str,
        path_regex: str,
        status: int = 500,
        times: int = 1,
        body: bytes | str | Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Answer the next `times` matching requests with `status` (default body: a JSON error)."""
        if body is None:
            body = {"error": f"Injected failure ({status})"}
        payload = json.dumps(body).encode() if isinstance(body, Mapping) else body
        payload = payload.encode() if isinstance(payload, str) else payload
        fault = _Fault("fail", method.upper(), re.compile(path_regex), times, status, payload, dict(headers or {}))
        self._faults.add(fault)

    def drop_next(self, method: str, path_regex: str, times: int = 1) -> None:
        """Read the next matching request(s), then close the connection without answering."""
        self._faults.add(_Fault("drop", method.upper(), re.compile(path_regex), times))

    def delay_next(self, method: str, path_regex: str, seconds: float, times: int = 1) -> None:
        """Sleep `seconds` before handling the next matching request(s) (combines with fail/drop)."""
        self._faults.add(_Fault("delay", method.upper(), re.compile(path_regex), times, seconds=seconds))

    # ---- state: seeding and inspection ----------------------------------------------------------------------

    def create_repo(self, repo_id: str, *, repo_type: str = "model", private: bool = False) -> None:
        """Create a repo directly (no HTTP), with the Hub's initial `.gitattributes` commit."""
        self._store.create_repo(repo_type, repo_id, private=private, author=self.user)

    def push(
        self,
        repo_id: str,
        files: Mapping[str, bytes | None],
        message: str = "Seed files",
        *,
        branch: str = _DEFAULT_BRANCH,
        repo_type: str = "model",
    ) -> str:
        """Commit `files` directly (no HTTP; None deletes a path); LFS is decided as in preupload. Returns the oid."""
        repo = self._store.get(repo_type, repo_id)
        ops = [self._seed_operation(path, data) for path, data in files.items()]
        commit, _ = self._store.commit(
            repo,
            revision=branch,
            ops=ops,
            message=message,
            description="",
            parent_commit=None,
            create_pr=False,
            author=self.user,
        )
        return commit.oid

    def _seed_operation(self, path: str, data: bytes | None) -> _Op:
        if data is None:
            return _Op("delete_file", path)
        lfs = upload_mode(path, len(data), data[:512], self.lfs_patterns, self.lfs_threshold) == "lfs"
        return _Op("add", path, _Blob(data, lfs))

    def repo_exists(self, repo_id: str, *, repo_type: str = "model") -> bool:
        return self._store.exists(repo_type, repo_id)

    def is_private(self, repo_id: str, *, repo_type: str = "model") -> bool:
        return self._store.get(repo_type, repo_id).private

    def commits(self, repo_id: str, branch: str = _DEFAULT_BRANCH, *, repo_type: str = "model") -> list[CommitRecord]:
        """First-parent history of `branch` (any revision works), newest first; the last one is the initial commit."""
        repo = self._store.get(repo_type, repo_id)
        return [
            CommitRecord(c.oid, c.message, c.description, c.parents, c.changed_paths, c.author, c.date)
            for c in self._store.history(repo, branch)
        ]

    def files(self, repo_id: str, rev: str = _DEFAULT_BRANCH, *, repo_type: str = "model") -> dict[str, bytes]:
        """Path -> content at a branch, PR ref (`refs/pr/1`) or commit id."""
        commit = self._store.resolve(self._store.get(repo_type, repo_id), rev)
        return {path: blob.data for path, blob in commit.files.items()}

    def lfs_files(self, repo_id: str, rev: str = _DEFAULT_BRANCH, *, repo_type: str = "model") -> set[str]:
        """Paths stored through LFS at `rev`."""
        commit = self._store.resolve(self._store.get(repo_type, repo_id), rev)
        return {path for path, blob in commit.files.items() if blob.lfs}

    def refs(self, repo_id: str, *, repo_type: str = "model") -> dict[str, str]:
        """Branches and PR refs -> commit oid."""
        repo = self._store.get(repo_type, repo_id)
        with self._store.lock:
            return dict(repo.refs)

    # ---- internals used by the handler ----------------------------------------------------------------------

    def _record(self, record: RequestRecord) -> None:
        with self._lock:
            self.requests.append(record)

    def _track_connection(self, connection: socket.socket, *, open_: bool) -> None:
        with self._lock:
            if open_:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)


# --------------------------------------------------------------------------------------------------------------
# Pointing the in-process huggingface_hub client at the server
# --------------------------------------------------------------------------------------------------------------

def _client_env(endpoint: str, token: str | None, hf_home: str | os.PathLike[str] | None) -> dict[str, str]:
    env = {"HF_ENDPOINT": endpoint, "HF_HUB_DISABLE_XET": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
    # Never route the loopback server through a proxy configured for the real Hub.
    env["NO_PROXY"] = ",".join(filter(None, [os.environ.get("NO_PROXY"), "127.0.0.1", "localhost"]))
    if token is not None:
        env["HF_TOKEN"] = token
    if hf_home is not None:
        env["HF_HOME"] = os.fspath(hf_home)
    return env


# Env vars that would leak the developer's setup into tests (offline mode, caches, stored tokens).
_ENV_TO_CLEAR = (
    "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_ASSETS_CACHE",
    "HF_XET_CACHE", "HF_TOKEN_PATH", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_ETAG_TIMEOUT", "HUGGINGFACE_CO_STAGING",
)  # fmt: skip


def patch_hf_client(
    monkeypatch: pytest.MonkeyPatch, endpoint: str, *, token: str | None, hf_home: str | os.PathLike[str]
) -> None:
    """Point the already-imported `huggingface_hub` (and transformers) at `endpoint`, with an isolated HF_HOME.

    Sets the env vars for subprocesses and patches the values `huggingface_hub` froze at import time.  `token`
    None removes HF_TOKEN (anonymous client).  Everything is undone by `monkeypatch` at teardown.
    """
    # Imported lazily: this module must stay importable (and the server usable) without huggingface_hub.
    from huggingface_hub import constants, hf_api
    from huggingface_hub.utils import _http

    hf_home = os.fspath(hf_home)
    for name in _ENV_TO_CLEAR + (("HF_TOKEN",) if token is None else ()):
        monkeypatch.delenv(name, raising=False)
    for name, value in _client_env(endpoint, token, hf_home).items():
        monkeypatch.setenv(name, value)

    hub_cache = os.path.join(hf_home, "hub")
    assets_cache = os.path.join(hf_home, "assets")
    frozen_at_import = {
        "ENDPOINT": endpoint,
        "HUGGINGFACE_CO_URL_TEMPLATE": endpoint + "/{repo_id}/resolve/{revision}/{filename}",
        "HF_URL_HOSTS": constants.HF_URL_HOSTS | {urlsplit(endpoint).hostname or ""},
        "HF_HUB_OFFLINE": False,
        "HF_HUB_DISABLE_XET": True,  # else uploads/downloads go through the Xet protocol
        "HF_HUB_DISABLE_TELEMETRY": True,
        "HF_HOME": hf_home,
        "HF_HUB_CACHE": hub_cache,
        "HUGGINGFACE_HUB_CACHE": hub_cache,
        "HF_ASSETS_CACHE": assets_cache,
        "HUGGINGFACE_ASSETS_CACHE": assets_cache,
        "HF_XET_CACHE": os.path.join(hf_home, "xet"),
        "HF_TOKEN_PATH": os.path.join(hf_home, "token"),
        "HF_STORED_TOKENS_PATH": os.path.join(hf_home, "stored_tokens"),
        "AGENT_HARNESSES_PATH": os.path.join(hf_home, ".agent_harnesses.json"),
    }
    for name, value in frozen_at_import.items():
        if hasattr(constants, name):
            monkeypatch.setattr(constants, name, value)
    # `huggingface_hub.upload_file`, `create_repo`, ... (and `ModelCard.push_to_hub`) are methods of this
    # module-level instance, whose endpoint was copied from HF_ENDPOINT at import.
    monkeypatch.setattr(hf_api.api, "endpoint", endpoint)
    cache_manager = sys.modules.get("huggingface_hub.utils._cache_manager")
    if cache_manager is not None and hasattr(cache_manager, "HF_HUB_CACHE"):
        monkeypatch.setattr(cache_manager, "HF_HUB_CACHE", hub_cache)
    transformers_hub = sys.modules.get("transformers.utils.hub")
    if transformers_hub is not None and hasattr(transformers_hub, "_hf_api"):
        monkeypatch.setattr(transformers_hub, "_hf_api", None)  # rebuilt lazily with the patched endpoint
    # Drop pooled connections (possibly to a previous test's server) and re-read proxy settings.
    _http.close_session()
