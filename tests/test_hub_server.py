"""Tests of the fake Hub (`tests/hub_server.py`) driven by the real `huggingface_hub` client over HTTP."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from huggingface_hub import (
    CommitOperationAdd,
    CommitOperationDelete,
    HfApi,
    ModelCard,
    get_hf_file_metadata,
    hf_hub_download,
    hf_hub_url,
    snapshot_download,
)
from huggingface_hub.errors import (
    HfHubHTTPError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from hub_server import DEFAULT_USER, READ_TOKEN, WRITE_TOKEN, HubServer, patch_hf_client, validate_card_metadata

REPO = f"{DEFAULT_USER}/tiny-vit"
CARD = "---\nlicense: apache-2.0\ntags:\n- vision\n---\n# Tiny ViT\n"
WEIGHTS = bytes(range(256)) * 1024  # 256 KiB, binary: small enough to be fast, LFS because of *.safetensors


@pytest.fixture
def hub() -> Iterator[HubServer]:
    with HubServer(tokens={WRITE_TOKEN: "write", READ_TOKEN: "read"}) as server:
        yield server
        assert not server.errors, "the fake Hub crashed:\n" + "\n".join(server.errors)


@pytest.fixture
def hf_home(hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the real client, in this process and in subprocesses, at `hub`, with an isolated cache."""
    home = tmp_path / "hf_home"
    patch_hf_client(monkeypatch, hub.url, token=WRITE_TOKEN, hf_home=home)
    return home


@pytest.fixture
def api(hf_home: Path) -> HfApi:
    return HfApi()  # built after the patch, so it talks to the fake Hub without `endpoint=`


@pytest.fixture
def model_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    (folder / "sub").mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "vit", "hidden_size": 32}))
    (folder / "model.safetensors").write_bytes(WEIGHTS)
    (folder / "README.md").write_text(CARD)
    (folder / "sub" / "notes.txt").write_text("regular text file in a sub folder\n")
    return folder


def folder_contents(folder: Path) -> dict[str, bytes]:
    return {path.relative_to(folder).as_posix(): path.read_bytes() for path in folder.rglob("*") if path.is_file()}


def calls(hub: HubServer) -> list[tuple[str, str]]:
    """(method, path) of the recorded requests, with the random LFS upload keys blanked out."""
    return [(r.method, re.sub(r"/__lfs/(upload|verify)/\w+", r"/__lfs/\1/<key>", r.path)) for r in hub.requests]


# ---- repos -----------------------------------------------------------------------------------------------------


def test_create_repo_conflicts_unless_exist_ok(api: HfApi, hub: HubServer) -> None:
    assert api.create_repo(REPO).repo_id == REPO
    assert hub.repo_exists(REPO)

    with pytest.raises(HfHubHTTPError) as conflict:
        api.create_repo(REPO)
    assert conflict.value.response.status_code == 409
    assert api.create_repo(REPO, exist_ok=True).repo_id == REPO  # the client reads `url` from the 409 answer

    # Like the Hub: an initial commit holding the .gitattributes that declares the LFS patterns.
    (initial,) = hub.commits(REPO)
    assert initial.message == "initial commit" and initial.parents == ()
    assert b"*.safetensors filter=lfs diff=lfs merge=lfs -text" in hub.files(REPO)[".gitattributes"]
    assert api.create_repo("no-namespace").repo_id == f"{DEFAULT_USER}/no-namespace"


def test_private_repo_is_not_found_for_anonymous_reads(api: HfApi, hub: HubServer) -> None:
    api.create_repo(REPO, private=True)
    assert api.model_info(REPO).private is True

    with pytest.raises(RepositoryNotFoundError):
        api.model_info(REPO, token=False)
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download(REPO, ".gitattributes", token=False)


# ---- upload ----------------------------------------------------------------------------------------------------


def test_upload_folder_makes_one_commit_with_lfs_and_regular_files(
    api: HfApi, hub: HubServer, model_folder: Path
) -> None:
    api.create_repo(REPO)
    hub.requests.clear()

    info = api.upload_folder(repo_id=REPO, folder_path=model_folder, commit_message="Add tiny model")

    head, initial = hub.commits(REPO)
    assert info.oid == head.oid and head.parents == (initial.oid,)
    assert head.message == "Add tiny model"
    assert head.changed_paths == ("README.md", "config.json", "model.safetensors", "sub/notes.txt")
    files = hub.files(REPO)
    assert {path: data for path, data in files.items() if path != ".gitattributes"} == folder_contents(model_folder)
    assert hub.lfs_files(REPO) == {"model.safetensors"}
    # README.md is validated twice (folder scan, then create_commit); LFS content goes before the commit.
    assert calls(hub) == [
        ("POST", "/api/validate-yaml"),
        ("POST", "/api/validate-yaml"),
        ("POST", f"/api/models/{REPO}/preupload/main"),
        ("POST", f"/{REPO}.git/info/lfs/objects/batch"),
        ("PUT", "/__lfs/upload/<key>"),
        ("POST", "/__lfs/verify/<key>"),
        ("POST", f"/api/models/{REPO}/commit/main"),
    ]


def test_large_files_go_through_lfs_whatever_their_extension(api: HfApi, hub: HubServer) -> None:
    api.create_repo(REPO)
    hub.lfs_threshold = 1024  # stands for the Hub's 10 MB, to keep the test fast

    api.upload_file(path_or_fileobj=b"x" * 2048, path_in_repo="big.txt", repo_id=REPO)
    api.upload_file(path_or_fileobj=b"small", path_in_repo="small.txt", repo_id=REPO)

    assert hub.lfs_files(REPO) == {"big.txt"}
    assert hub.files(REPO)["big.txt"] == b"x" * 2048


def test_unchanged_files_are_skipped_by_the_client_but_noop_commits_are_flagged(
    api: HfApi, hub: HubServer, model_folder: Path
) -> None:
    api.create_repo(REPO)
    first = api.upload_folder(repo_id=REPO, folder_path=model_folder)

    # The preupload answer carries the remote oids: the client drops unchanged files and sends no commit.
    again = api.upload_folder(repo_id=REPO, folder_path=model_folder)
    assert again.oid == first.oid and len(hub.commits(REPO)) == 2

    # Without them the client re-sends identical files: the server still commits (like the Hub) and flags it.
    hub.report_remote_oids = False
    forced = api.upload_folder(repo_id=REPO, folder_path=model_folder, commit_message="Same again")
    head = hub.commits(REPO)[0]
    assert head.oid == forced.oid != first.oid
    assert head.is_noop and not hub.commits(REPO)[1].is_noop


# ---- inspection ------------------------------------------------------------------------------------------------


def test_model_info_listing_refs_and_branches(api: HfApi, hub: HubServer, model_folder: Path) -> None:
    api.create_repo(REPO)
    api.upload_folder(repo_id=REPO, folder_path=model_folder, commit_message="Add tiny model")

    info = api.model_info(REPO, files_metadata=True)
    assert info.sha == hub.commits(REPO)[0].oid and info.private is False
    siblings = {sibling.rfilename: sibling for sibling in info.siblings}
    assert sorted(siblings) == [".gitattributes", "README.md", "config.json", "model.safetensors", "sub/notes.txt"]
    assert siblings["model.safetensors"].lfs.sha256 == hashlib.sha256(WEIGHTS).hexdigest()
    assert siblings["config.json"].lfs is None

    assert api.list_repo_files(REPO) == sorted(siblings)
    top_level = {entry.path: type(entry).__name__ for entry in api.list_repo_tree(REPO)}
    assert top_level["sub"] == "RepoFolder" and "sub/notes.txt" not in top_level
    assert [entry.path for entry in api.list_repo_tree(REPO, path_in_repo="sub")] == ["sub/notes.txt"]
    assert [commit.title for commit in api.list_repo_commits(REPO)] == ["Add tiny model", "initial commit"]

    api.create_branch(REPO, branch="dev")
    api.create_branch(REPO, branch="dev", exist_ok=True)
    assert {branch.name for branch in api.list_repo_refs(REPO).branches} == {"main", "dev"}
    assert hub.refs(REPO)["dev"] == hub.refs(REPO)["main"]
    assert api.model_info(REPO, revision="dev").sha == info.sha


# ---- download --------------------------------------------------------------------------------------------------


def test_download_round_trips_bytes(api: HfApi, hub: HubServer, model_folder: Path) -> None:
    api.create_repo(REPO)
    api.upload_folder(repo_id=REPO, folder_path=model_folder)
    expected = folder_contents(model_folder)

    for path, data in expected.items():
        assert Path(hf_hub_download(REPO, path)).read_bytes() == data
    snapshot = Path(snapshot_download(REPO))
    assert {path: data for path, data in folder_contents(snapshot).items() if path != ".gitattributes"} == expected

    with pytest.raises(RemoteEntryNotFoundError):
        hf_hub_download(REPO, "missing.bin")
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(REPO, "config.json", revision="no-such-branch")
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download(f"{DEFAULT_USER}/no-such-repo", "config.json")


def test_seeded_repo_with_unicode_paths_and_dataset_type(api: HfApi, hub: HubServer) -> None:
    # Seeding without HTTP, e.g. to stand for an upstream checkpoint that the code under test downloads.
    hub.create_repo("google/vit-upstream")
    hub.push("google/vit-upstream", {"données/é.txt": "é".encode(), "weights.bin": b"\0\1\2", "tmp.txt": b"x"})
    hub.push("google/vit-upstream", {"tmp.txt": None}, message="Remove tmp")

    assert hub.lfs_files("google/vit-upstream") == {"weights.bin"}
    assert Path(hf_hub_download("google/vit-upstream", "données/é.txt")).read_bytes() == "é".encode()
    assert api.list_repo_files("google/vit-upstream") == [".gitattributes", "données/é.txt", "weights.bin"]
    with pytest.raises(RemoteEntryNotFoundError):  # non-ASCII in an error answer must not break its headers
        api.delete_file("données/absent.txt", repo_id="google/vit-upstream")

    dataset = f"{DEFAULT_USER}/images"
    api.create_repo(dataset, repo_type="dataset")
    api.upload_file(path_or_fileobj=b"a,b\n", path_in_repo="data.csv", repo_id=dataset, repo_type="dataset")
    assert hub.files(dataset, repo_type="dataset")["data.csv"] == b"a,b\n"
    assert not hub.repo_exists(dataset)  # repos are keyed by type: no model repo of that name


def test_resolve_answers_hub_headers_and_ranges(api: HfApi, hub: HubServer, model_folder: Path) -> None:
    api.create_repo(REPO)
    commit = api.upload_folder(repo_id=REPO, folder_path=model_folder)
    sha256 = hashlib.sha256(WEIGHTS).hexdigest()

    metadata = get_hf_file_metadata(hf_hub_url(REPO, "model.safetensors"))
    assert (metadata.etag, metadata.size, metadata.commit_hash) == (sha256, len(WEIGHTS), commit.oid)

    url = f"{hub.url}/{REPO}/resolve/main/model.safetensors"
    with urllib.request.urlopen(urllib.request.Request(url, method="HEAD")) as response:
        assert response.headers["ETag"] == f'"{sha256}"' == response.headers["X-Linked-Etag"]
        assert response.headers["X-Linked-Size"] == response.headers["Content-Length"] == str(len(WEIGHTS))
    with urllib.request.urlopen(urllib.request.Request(url, headers={"Range": "bytes=10-19"})) as response:
        assert response.status == 206 and response.read() == WEIGHTS[10:20]
        assert response.headers["Content-Range"] == f"bytes 10-19/{len(WEIGHTS)}"


def test_subprocess_downloads_then_reloads_offline_from_cache(
    api: HfApi, hub: HubServer, hf_home: Path, model_folder: Path
) -> None:
    api.create_repo(REPO)
    api.upload_folder(repo_id=REPO, folder_path=model_folder)
    script = (
        "import hashlib, sys\n"
        "from huggingface_hub import hf_hub_download, snapshot_download\n"
        "path = hf_hub_download(sys.argv[1], 'model.safetensors')\n"
        "snapshot_download(sys.argv[1])\n"
        "print(hashlib.sha256(open(path, 'rb').read()).hexdigest())\n"
    )
    env = {key: value for key, value in os.environ.items() if key not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(hub.env(WRITE_TOKEN, hf_home))

    def run(extra_env: dict[str, str]) -> str:
        done = subprocess.run(
            [sys.executable, "-c", script, REPO], env={**env, **extra_env}, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    assert run({}) == hashlib.sha256(WEIGHTS).hexdigest()  # online: env vars set before import
    requests_so_far = len(hub.requests)
    assert run({"HF_HUB_OFFLINE": "1"}) == hashlib.sha256(WEIGHTS).hexdigest()
    assert len(hub.requests) == requests_so_far  # offline: served from the cache alone


# ---- auth ------------------------------------------------------------------------------------------------------


def test_wrong_or_missing_token_is_401(api: HfApi, hub: HubServer) -> None:
    assert api.whoami()["name"] == DEFAULT_USER
    api.create_repo(REPO)
    wrong = HfApi(token="hf_wrong")

    with pytest.raises(HfHubHTTPError) as invalid:
        wrong.create_repo(f"{DEFAULT_USER}/other")
    assert invalid.value.response.status_code == 401
    assert invalid.value.server_message == "Invalid credentials in Authorization header"
    with pytest.raises(HfHubHTTPError, match="Invalid user token"):
        wrong.whoami()
    with pytest.raises(HfHubHTTPError) as download:  # a bad token is refused even on a public repo
        hf_hub_download(REPO, ".gitattributes", token="hf_wrong")
    assert download.value.response.status_code == 401

    with pytest.raises(HfHubHTTPError) as anonymous:
        HfApi(token=False).create_repo(f"{DEFAULT_USER}/other")
    assert anonymous.value.response.status_code == 401
    assert not hub.repo_exists(f"{DEFAULT_USER}/other")


def test_read_only_token_cannot_write(api: HfApi, hub: HubServer) -> None:
    api.create_repo(REPO)
    reader = HfApi(token=READ_TOKEN)
    assert reader.model_info(REPO).id == REPO

    with pytest.raises(HfHubHTTPError) as create:
        reader.create_repo(f"{DEFAULT_USER}/other")
    assert create.value.response.status_code == 403
    with pytest.raises(HfHubHTTPError) as upload:
        reader.upload_file(path_or_fileobj=b"data", path_in_repo="data.txt", repo_id=REPO)
    assert upload.value.response.status_code == 403
    assert len(hub.commits(REPO)) == 1


# ---- commits: failures, concurrency, pull requests ------------------------------------------------------------


def test_failed_commit_leaves_the_repo_unchanged(api: HfApi, hub: HubServer, model_folder: Path) -> None:
    api.create_repo(REPO)
    before = hub.commits(REPO)
    hub.fail_next("POST", r"/commit/main$", status=500)

    with pytest.raises(HfHubHTTPError) as failure:
        api.upload_folder(repo_id=REPO, folder_path=model_folder)
    assert failure.value.response.status_code == 500
    assert hub.commits(REPO) == before and list(hub.files(REPO)) == [".gitattributes"]
    # The commit POST is not retried by the client (unlike preupload, LFS batch and uploads).
    assert [r.status for r in hub.requests if r.path.endswith("/commit/main")] == [500]

    # A request the server rejects after partial validation is atomic too.
    operations = [
        CommitOperationAdd(path_in_repo="new.txt", path_or_fileobj=b"new"),
        CommitOperationDelete(path_in_repo="missing.txt"),
    ]
    with pytest.raises(RemoteEntryNotFoundError):
        api.create_commit(REPO, operations, commit_message="half valid")
    assert hub.commits(REPO) == before

    api.upload_folder(repo_id=REPO, folder_path=model_folder)
    assert len(hub.commits(REPO)) == 2


def test_stale_parent_commit_is_rejected_with_412(api: HfApi, hub: HubServer) -> None:
    api.create_repo(REPO)
    base = hub.commits(REPO)[0].oid
    api.upload_file(path_or_fileobj=b"1", path_in_repo="a.txt", repo_id=REPO, parent_commit=base)

    with pytest.raises(HfHubHTTPError) as stale:
        api.upload_file(path_or_fileobj=b"2", path_in_repo="b.txt", repo_id=REPO, parent_commit=base)
    assert stale.value.response.status_code == 412
    assert sorted(hub.files(REPO)) == [".gitattributes", "a.txt"]


def test_create_pr_opens_a_pr_ref_and_leaves_main_unchanged(api: HfApi, hub: HubServer, model_folder: Path) -> None:
    api.create_repo(REPO)
    main_before = hub.refs(REPO)["main"]

    info = api.upload_folder(repo_id=REPO, folder_path=model_folder, create_pr=True)

    assert (info.pr_revision, info.pr_num) == ("refs/pr/1", 1)
    assert hub.refs(REPO) == {"main": main_before, "refs/pr/1": info.oid}
    assert list(hub.files(REPO)) == [".gitattributes"]
    assert hub.files(REPO, "refs/pr/1")["model.safetensors"] == WEIGHTS
    assert Path(hf_hub_download(REPO, "config.json", revision="refs/pr/1")).read_bytes() == (
        model_folder / "config.json"
    ).read_bytes()
    assert {r.query for r in hub.requests if "/preupload/" in r.path or "/commit/" in r.path} == {"create_pr=1"}

    second = api.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=REPO, create_pr=True)
    assert second.pr_revision == "refs/pr/2"


# ---- model cards -----------------------------------------------------------------------------------------------


def test_model_card_validate_and_push(api: HfApi, hub: HubServer) -> None:
    api.create_repo(REPO)
    card = ModelCard(CARD)
    card.validate()
    with pytest.raises(ValueError, match="license"):
        ModelCard("---\nlicense: not-a-license\n---\n# Card\n").validate()
    with pytest.raises(ValueError, match="Invalid metadata in README.md"):
        api.upload_file(path_or_fileobj=b"---\nlicense: nope\n---\n", path_in_repo="README.md", repo_id=REPO)

    card.push_to_hub(REPO)  # module-level `upload_file` under the hood: needs the patched `hf_api.api`

    assert hub.files(REPO)["README.md"] == str(card).encode()
    assert ModelCard.load(REPO).data.license == "apache-2.0"


@pytest.mark.parametrize(
    ("content", "errors", "warnings"),
    [
        (CARD, 0, 0),
        ("# no front matter\n", 0, 1),
        ("---\n---\n# empty\n", 0, 1),
        ("---\nlicense: mit\nlicense: mit\n---\n", 1, 0),
        ("---\n- not\n- a mapping\n---\n", 1, 0),
        ("---\nthis is not yaml\n---\n", 1, 0),
        ("---\nlicense: other\nlicense_name: custom\nmodel-index:\n- name: x\n  results: []\n---\n", 0, 0),
    ],
)
def test_card_metadata_validation_rules(content: str, errors: int, warnings: int) -> None:
    found_errors, found_warnings = validate_card_metadata(content)
    assert (len(found_errors), len(found_warnings)) == (errors, warnings), (found_errors, found_warnings)


# ---- fault injection -------------------------------------------------------------------------------------------


def test_dropped_connection_and_delays(api: HfApi, hub: HubServer) -> None:
    api.create_repo(REPO)

    hub.drop_next("POST", r"/commit/")
    with pytest.raises(httpx2.RemoteProtocolError):
        api.upload_file(path_or_fileobj=b"data", path_in_repo="data.txt", repo_id=REPO)
    assert hub.requests[-1].status is None and len(hub.commits(REPO)) == 1

    hub.delay_next("GET", r"/api/whoami-v2$", seconds=0.3)
    started = time.monotonic()
    api.whoami()
    assert time.monotonic() - started >= 0.3


def test_transient_preupload_failure_is_retried_by_the_client(api: HfApi, hub: HubServer) -> None:
    api.create_repo(REPO)
    hub.fail_next("POST", r"/preupload/", status=503)

    api.upload_file(path_or_fileobj=b"data", path_in_repo="data.txt", repo_id=REPO)  # retried after ~1 s

    assert [r.status for r in hub.requests if "/preupload/" in r.path] == [503, 200]
    assert hub.files(REPO)["data.txt"] == b"data"


def test_chunked_request_bodies_are_accepted(hub: HubServer) -> None:
    # httpx sends file objects of unknown size with `Transfer-Encoding: chunked`.
    connection = http.client.HTTPConnection(hub.url.removeprefix("http://"), timeout=5)
    chunks = iter([b'{"content": "---\\nlicense: ', b'mit\\n---\\n"}'])
    connection.request("POST", "/api/validate-yaml", body=chunks, encode_chunked=True)
    response = connection.getresponse()
    assert (response.status, json.loads(response.read())) == (200, {"errors": [], "warnings": []})
    connection.close()


def test_url_requires_a_running_server() -> None:
    server = HubServer()
    with pytest.raises(RuntimeError):
        server.url
    with server:
        assert server.url.startswith("http://127.0.0.1:")
