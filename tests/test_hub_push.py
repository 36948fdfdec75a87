"""Publishing converted repos to a Hub and loading them back by name, against a real HTTP Hub server."""

import json
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from huggingface_hub import HfApi
from hub_server import DEFAULT_USER, READ_TOKEN, WRITE_TOKEN, HubServer, patch_hf_client
from npz_factory import make_official_params, write_npz
from PIL import Image
from transformers import AutoModelForImageClassification, pipeline

import hf_vit_port_tools.hub.push as push_module
from hf_vit_port_tools.cli import main as conversion_main
from hf_vit_port_tools.conversion.convert import convert
from hf_vit_port_tools.conversion.numpy_reference import reference_forward, reference_inputs
from hf_vit_port_tools.hub.push import PushError, push_repo
from hf_vit_port import ViTPortForImageClassification

REPO = f"{DEFAULT_USER}/vit-tiny-in1k"


@pytest.fixture
def hub():
    with HubServer(tokens={WRITE_TOKEN: "write", READ_TOKEN: "read"}) as server:
        yield server
        assert not server.errors, "\n".join(server.errors)


@pytest.fixture
def hf_home(hub, tmp_path, monkeypatch):
    home = tmp_path / "hf_home"
    patch_hf_client(monkeypatch, hub.url, token=WRITE_TOKEN, hf_home=home)
    return home


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch):
    monkeypatch.setattr(push_module.time, "sleep", lambda seconds: None)


@pytest.fixture
def npz_file(tmp_path):
    return write_npz(tmp_path / "ViT-T_4.npz", make_official_params(num_classes=1000, seed=5))


@pytest.fixture
def converted(tmp_path, npz_file):
    convert(npz_file, tmp_path / "repo", repo_id=REPO)
    return tmp_path / "repo"


def test_convert_push_and_load_by_name_through_pipeline(hub, hf_home, tmp_path, npz_file, capsys):
    code = conversion_main(["convert", "--npz", str(npz_file), "--out", str(tmp_path / "repo"),
                            "--push-to-hub", REPO])
    assert code == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "in one commit" in out and WRITE_TOKEN not in out
    commits = hub.commits(REPO)
    assert len(commits) == 2  # the repo's initial commit, then ours with every file
    assert commits[0].message.startswith("Convert ViT-T_4.npz (sha256 ") and "verified" in commits[0].message
    assert {"model.safetensors", "config.json", "preprocessor_config.json", "README.md",
            "modeling_vit_port.py"} <= set(hub.files(REPO))
    image = Image.fromarray((np.random.default_rng(1).random((32, 32, 3)) * 255).astype(np.uint8))
    predictions = pipeline("image-classification", model=REPO)(image, top_k=2)
    assert not predictions[0]["label"].startswith("LABEL_")
    model = AutoModelForImageClassification.from_pretrained(REPO)
    assert type(model) is ViTPortForImageClassification
    pixels = reference_inputs((16, 16))
    expected = reference_forward(dict(np.load(npz_file)), pixels).logits
    with torch.no_grad():
        got = model.eval()(torch.from_numpy(pixels).permute(0, 3, 1, 2)).logits.numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_pushing_an_unchanged_repo_again_creates_no_commit(hub, hf_home, converted):
    first = push_repo(converted, REPO)
    again = push_repo(converted, REPO)
    assert first.created_commit and not again.created_commit
    assert again.commit_oid == first.commit_oid and len(hub.commits(REPO)) == 2


def test_revision_pinning_loads_the_pushed_commit(hub, hf_home, converted, tmp_path, npz_file):
    first = push_repo(converted, REPO)
    convert(npz_file, converted, overwrite=True, repo_id=REPO, num_labels=3)
    second = push_repo(converted, REPO, commit_message="three labels")
    assert second.created_commit and hub.commits(REPO)[0].message == "three labels"
    pinned = AutoModelForImageClassification.from_pretrained(REPO, revision=first.commit_oid)
    latest = AutoModelForImageClassification.from_pretrained(REPO)
    assert pinned.config.num_labels == 1000 and latest.config.num_labels == 3


def test_private_repo_branch_and_pull_request(hub, hf_home, converted):
    push_repo(converted, REPO, private=True)
    assert hub.is_private(REPO)
    (converted / "notes.txt").write_text("a change for review\n")
    result = push_repo(converted, REPO, create_pr=True)
    assert result.pr_url and "refs/pr/1" in hub.refs(REPO)
    assert "notes.txt" in hub.files(REPO, "refs/pr/1") and "notes.txt" not in hub.files(REPO, "main")
    branch = push_repo(converted, REPO, revision="experiments")
    assert branch.created_commit and "notes.txt" in hub.files(REPO, "experiments")


def test_wrong_token_is_a_clear_message_without_the_token(hub, hf_home, converted, monkeypatch, capsys):
    bad_token = "hf_this_is_a_secret_wrong_token"
    monkeypatch.setenv("HF_TOKEN", bad_token)
    code = conversion_main(["push", str(converted), REPO])
    err = capsys.readouterr().err
    assert code == 2 and "401" in err and "token" in err
    assert bad_token not in err and "Traceback" not in err
    assert not hub.repo_exists(REPO)


def test_read_only_token_gets_403_explained(hub, hf_home, converted):
    push_repo(converted, REPO)
    with pytest.raises(PushError, match="403") as error:
        push_repo(converted, REPO, token=READ_TOKEN, commit_message="should not land", create_pr=False)
    assert READ_TOKEN not in str(error.value)


def test_transient_server_error_mid_push_is_retried(hub, hf_home, converted):
    hub.create_repo(REPO)
    hub.fail_next("POST", r"/commit/", status=503, times=2)
    result = push_repo(converted, REPO)
    assert result.created_commit and len(hub.commits(REPO)) == 2
    statuses = [r.status for r in hub.requests if r.method == "POST" and "/commit/" in r.path]
    assert statuses == [503, 503, 200]


def test_persistent_failure_leaves_the_remote_repo_as_it_was(hub, hf_home, converted):
    hub.create_repo(REPO)
    before = hub.files(REPO)
    hub.fail_next("POST", r"/commit/", status=500, times=10)
    with pytest.raises(PushError, match="not changed"):
        push_repo(converted, REPO, attempts=3)
    assert hub.files(REPO) == before and len(hub.commits(REPO)) == 1


def test_dropped_connection_mid_upload_is_retried(hub, hf_home, converted):
    hub.create_repo(REPO)
    hub.drop_next("POST", r"/commit/")
    assert push_repo(converted, REPO).created_commit


def test_invalid_card_is_refused_before_anything_is_pushed(hub, hf_home, converted):
    readme = converted / "README.md"
    card, count = re.subn(r"(?m)^license: .*$", "license: not-a-license", readme.read_text(), count=1)
    assert count == 1
    readme.write_text(card)
    with pytest.raises(PushError, match="invalid metadata"):
        push_repo(converted, REPO)
    assert not hub.repo_exists(REPO)


def test_incomplete_directory_is_refused(tmp_path, hf_home):
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_text("{}")
    with pytest.raises(PushError, match="missing model.safetensors"):
        push_repo(tmp_path / "half", REPO)


def run_clean(script, env):
    return subprocess.run([sys.executable, "-I", "-c", textwrap.dedent(script)], env=env, capture_output=True,
                          text=True)


def subprocess_env(hub, hf_home, **extra):
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "PYTHONPATH")}
    return {**env, **hub.env(WRITE_TOKEN, hf_home), **extra}


def test_trust_remote_code_by_name_in_a_clean_process_then_offline(hub, hf_home, converted, tmp_path):
    push_repo(converted, REPO)
    pixels = torch.from_numpy(reference_inputs((16, 16))).permute(0, 3, 1, 2)
    torch.save(pixels, tmp_path / "pixels.pt")
    expected = ViTPortForImageClassification.from_pretrained(converted).eval()(pixels).logits
    script = f"""
        import sys, torch
        from transformers import AutoModelForImageClassification
        model = AutoModelForImageClassification.from_pretrained({REPO!r}, trust_remote_code=True).eval()
        assert "hf_vit_port" not in sys.modules
        with torch.no_grad():
            torch.save(model(torch.load({str(tmp_path / 'pixels.pt')!r})).logits, {str(tmp_path / 'logits.pt')!r})
    """
    online = run_clean(script, subprocess_env(hub, hf_home))
    assert online.returncode == 0, online.stderr[-3000:]
    torch.testing.assert_close(torch.load(tmp_path / "logits.pt"), expected)
    (tmp_path / "logits.pt").unlink()
    requests_before = len(hub.requests)
    offline = run_clean(script, subprocess_env(hub, hf_home, HF_HUB_OFFLINE="1"))
    assert offline.returncode == 0, offline.stderr[-3000:]
    torch.testing.assert_close(torch.load(tmp_path / "logits.pt"), expected)
    assert len(hub.requests) == requests_before  # served from the cache alone


def test_plugin_load_by_name_works_offline_after_a_first_download(hub, hf_home, converted, tmp_path):
    push_repo(converted, REPO)
    script = f"""
        import hf_vit_port
        from transformers import pipeline
        from PIL import Image
        classifier = pipeline("image-classification", model={REPO!r})
        print(classifier(Image.new("RGB", (20, 20), (200, 10, 10)), top_k=1)[0]["label"])
    """
    first = run_clean(script, subprocess_env(hub, hf_home))
    assert first.returncode == 0, first.stderr[-3000:]
    offline = run_clean(script, subprocess_env(hub, hf_home, HF_HUB_OFFLINE="1"))
    assert offline.returncode == 0, offline.stderr[-3000:]
    assert offline.stdout == first.stdout and offline.stdout.strip()


def test_batch_converts_and_pushes_named_checkpoints(hub, hf_home, tmp_path, monkeypatch, capsys):
    """A named checkpoint is downloaded (here from a file base URL standing in for the bucket) and pushed."""
    import dataclasses

    import hf_vit_port_tools.cli.conversion as cli
    from hf_vit_port_tools.conversion.registry import get_checkpoint

    real = get_checkpoint("imagenet21k+imagenet2012/ViT-B_16")
    bucket = tmp_path / "bucket"
    (bucket / real.path).parent.mkdir(parents=True)
    path = write_npz(bucket / real.path, make_official_params(num_classes=1000))

    class Small(type(real)):
        def expected_size_range(self):
            return (path.stat().st_size, path.stat().st_size)

    small = Small(**{f.name: getattr(real, f.name) for f in dataclasses.fields(real)})
    monkeypatch.setattr(cli, "get_checkpoint", lambda name: small)
    code = conversion_main(["batch", real.name, "--org", DEFAULT_USER, "--work-dir", str(tmp_path / "work"),
                            "--base-url", str(bucket), "--cache-dir", str(tmp_path / "cache")])
    assert code == 0, capsys.readouterr().err
    repo = f"{DEFAULT_USER}/{real.hub_name}"
    assert "model.safetensors" in hub.files(repo)
    card = hub.files(repo)["README.md"].decode()
    assert real.filename in card


@pytest.mark.parametrize(
    "status, message",
    [(404, "not found"), (409, "conflict"), (403, "may not write"), (401, "rejected the token")],
)
def test_hub_refusals_become_plain_explanations_and_change_nothing(hub, hf_home, converted, status, message):
    hub.create_repo(REPO)
    hub.fail_next("POST", r"/commit/", status=status)
    with pytest.raises(PushError, match=message) as error:
        push_repo(converted, REPO)
    assert WRITE_TOKEN not in str(error.value) and len(hub.commits(REPO)) == 1


def test_rate_limit_is_retried(hub, hf_home, converted):
    hub.create_repo(REPO)
    hub.fail_next("POST", r"/commit/", status=429, times=1)
    assert push_repo(converted, REPO).created_commit


def test_missing_token_says_how_to_log_in(hub, tmp_path, monkeypatch, converted):
    patch_hf_client(monkeypatch, hub.url, token=None, hf_home=tmp_path / "anonymous")
    with pytest.raises(PushError, match="HF_TOKEN|log"):
        push_repo(converted, REPO)
    assert not hub.repo_exists(REPO)


def test_token_is_never_written_into_the_repo_or_card(hub, hf_home, converted):
    push_repo(converted, REPO)
    assert all(WRITE_TOKEN.encode() not in content for content in hub.files(REPO).values())
    assert all(WRITE_TOKEN.encode() not in path.read_bytes() for path in converted.rglob("*") if path.is_file())


def test_fine_tuned_output_is_pushed_without_its_training_checkpoints(hub, hf_home, converted):
    from hf_vit_port_tools.training.trainer import TRAINING_LEFTOVERS

    (converted / "checkpoint-10").mkdir()
    (converted / "checkpoint-10" / "optimizer.pt").write_bytes(b"state")
    (converted / "training_args.bin").write_bytes(b"args")
    result = push_repo(converted, REPO, ignore_patterns=TRAINING_LEFTOVERS)
    assert REPO in result.commit_url
    files = set(hub.files(REPO))
    assert "model.safetensors" in files and not any(f.startswith("checkpoint-") or f.endswith(".bin") for f in files)


def test_a_server_error_that_echoes_the_env_token_never_shows_it(hub, hf_home, converted, capsys):
    """The token comes from HF_TOKEN (the usual way): it is redacted from what the server says back."""
    assert os.environ["HF_TOKEN"] == WRITE_TOKEN
    hub.create_repo(REPO)
    hub.fail_next("POST", r"/commit/", status=400, body={"error": f"bad request from token {WRITE_TOKEN}"})
    code = conversion_main(["push", str(converted), REPO])
    err = capsys.readouterr().err
    assert code == 2 and "bad request from token ***" in err and WRITE_TOKEN not in err


def test_a_truncated_repo_is_refused_before_anything_remote_happens(hub, hf_home, converted):
    weights = converted / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(PushError, match="model.safetensors: the header promises .* it is truncated"):
        push_repo(converted, REPO)
    assert not hub.repo_exists(REPO) and not [r for r in hub.requests if r.method != "GET"]


def test_weights_that_do_not_fit_the_config_are_refused(hub, hf_home, converted):
    config = json.loads((converted / "config.json").read_text())
    config["intermediate_size"] *= 2
    (converted / "config.json").write_text(json.dumps(config))
    with pytest.raises(PushError, match="does not fit config.json"):
        push_repo(converted, REPO)
    assert not hub.repo_exists(REPO)


def test_a_failed_push_removes_the_repo_it_created(hub, hf_home, converted):
    hub.fail_next("POST", r"/commit/", status=500, times=10)
    with pytest.raises(PushError, match="had created was deleted again"):
        push_repo(converted, REPO, attempts=2)
    assert not hub.repo_exists(REPO)


def test_a_malformed_push_target_is_refused_before_converting(hub, hf_home, npz_file, tmp_path, capsys):
    code = conversion_main(["convert", "--npz", str(npz_file), "--out", str(tmp_path / "out"),
                            "--push-to-hub", "not a repo id!"])
    assert code == 2 and "--push-to-hub 'not a repo id!' is not a Hub repo id" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
