"""Conversion: official .npz files become verified, Hub-ready repos."""

import contextlib
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from npz_factory import make_augreg_params, make_in21k_params, make_official_params, write_not_a_zip, write_npz
from PIL import Image
from transformers import pipeline

from hf_vit_port_tools.conversion import verify as verify_module
from hf_vit_port_tools.cli import main as conversion_main
from hf_vit_port_tools.conversion.convert import ConversionError, convert
from hf_vit_port_tools.conversion.numpy_reference import reference_forward, reference_inputs
from hf_vit_port import ViTPortForImageClassification, ViTPortModel

REPO_FILES = {
    "model.safetensors",
    "config.json",
    "preprocessor_config.json",
    "README.md",
    "configuration_vit_port.py",
    "modeling_vit_port.py",
}


@pytest.fixture
def in1k_file(tmp_path):
    """A fine-tuned-style file with 1000 classes, so the ImageNet-1k names apply."""
    return write_npz(tmp_path / "ViT-T_4.npz", make_official_params(num_classes=1000, image=24, seed=3))


def torch_inputs(size):
    return torch.from_numpy(reference_inputs(size)).permute(0, 3, 1, 2)


def test_conversion_writes_a_complete_verified_repo(tmp_path, in1k_file):
    result = convert(in1k_file, tmp_path / "repo")
    files = {p.name for p in (tmp_path / "repo").iterdir()}
    assert REPO_FILES <= files
    assert not any(name.endswith(".bin") for name in files)
    assert result.verification.max_abs_diff_logits < 1e-5
    assert result.verification.reloaded  # the written repo, as from_pretrained loads it, is what was verified
    config = json.loads((tmp_path / "repo" / "config.json").read_text())
    assert config["id2label"]["0"] == "tench, Tinca tinca" and len(config["id2label"]) == 1000
    processor = json.loads((tmp_path / "repo" / "preprocessor_config.json").read_text())
    assert processor["size"] == {"height": 24, "width": 24} and processor["image_mean"] == [0.5] * 3
    assert [p for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging left behind


def test_converted_repo_reloads_and_matches_the_numpy_reference(tmp_path, in1k_file):
    convert(in1k_file, tmp_path / "repo")
    model = ViTPortForImageClassification.from_pretrained(tmp_path / "repo").eval()
    params = dict(np.load(in1k_file))
    expected = reference_forward(params, reference_inputs((24, 24))).logits
    with torch.no_grad():
        got = model(torch_inputs((24, 24))).logits.numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_converted_repo_runs_in_pipeline_with_label_words(tmp_path, in1k_file):
    convert(in1k_file, tmp_path / "repo")
    image = Image.fromarray((np.random.default_rng(0).random((40, 30, 3)) * 255).astype(np.uint8))
    predictions = pipeline("image-classification", model=str(tmp_path / "repo"))(image, top_k=3)
    assert len(predictions) == 3
    assert all(not p["label"].startswith("LABEL_") for p in predictions)
    assert any(c.isalpha() for c in predictions[0]["label"])


def test_card_records_source_sha256_and_measured_difference(tmp_path, in1k_file):
    import hashlib

    from huggingface_hub import ModelCard

    result = convert(in1k_file, tmp_path / "repo", repo_id="org/vit-t4")
    card = ModelCard.load(tmp_path / "repo" / "README.md")
    digest = hashlib.sha256(in1k_file.read_bytes()).hexdigest()
    assert digest in card.text or digest in str(card.data.to_dict())
    assert f"{result.verification.max_abs_diff_logits:.2e}" in card.text
    data = card.data.to_dict()
    # A file outside the registry: its origin, and so its license, is not claimed.
    assert data["license"] == "other" and data["pipeline_tag"] == "image-classification"


def test_in21k_zero_head_file_becomes_a_feature_extractor(tmp_path):
    path = write_npz(tmp_path / "in21k.npz", make_in21k_params())
    with pytest.warns(UserWarning, match="all zeros"):
        result = convert(path, tmp_path / "repo")
    assert result.verification.max_abs_diff_logits is None
    assert result.verification.max_abs_diff_features < 1e-5
    model = ViTPortModel.from_pretrained(tmp_path / "repo")
    expected = reference_forward(dict(np.load(path)), reference_inputs((16, 16))).features
    with torch.no_grad():
        np.testing.assert_allclose(model(torch_inputs((16, 16))).pooler_output.numpy(), expected, atol=1e-5)


def test_overrides_are_applied_and_verified_at_the_native_configuration(tmp_path):
    path = write_npz(tmp_path / "augreg.npz", make_augreg_params())
    result = convert(path, tmp_path / "repo", image_size=32, num_labels=4)
    assert result.verification.max_abs_diff_features < 1e-5
    assert any("own configuration" in note for note in result.notes)
    model = ViTPortForImageClassification.from_pretrained(tmp_path / "repo")
    assert model.config.image_size == 32 and model.config.num_labels == 4


def test_failing_verification_leaves_no_output(tmp_path, in1k_file, monkeypatch):
    monkeypatch.setattr(verify_module, "TOLERANCE", -1.0)
    with pytest.raises(verify_module.VerificationError, match="verification failed"):
        convert(in1k_file, tmp_path / "repo")
    assert list(tmp_path.iterdir()) == [in1k_file]


def test_bad_file_fails_cleanly_through_the_cli(tmp_path, capsys):
    bad = write_not_a_zip(tmp_path / "bad.npz")
    code = conversion_main(["convert", "--npz", str(bad), "--out", str(tmp_path / "repo")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and str(bad) in err and "Traceback" not in err
    assert not (tmp_path / "repo").exists()


def test_existing_output_is_kept_unless_overwrite(tmp_path, in1k_file):
    (tmp_path / "repo").mkdir()
    (tmp_path / "repo" / "keep.txt").write_text("mine")
    with pytest.raises(ConversionError, match="already exists"):
        convert(in1k_file, tmp_path / "repo")
    assert (tmp_path / "repo" / "keep.txt").exists()
    convert(in1k_file, tmp_path / "repo", overwrite=True)
    assert not (tmp_path / "repo" / "keep.txt").exists() and (tmp_path / "repo" / "model.safetensors").exists()


def test_cli_convert_with_no_verify_and_settings(tmp_path, in1k_file, capsys):
    code = conversion_main(["convert", "--npz", str(in1k_file), "--out", str(tmp_path / "repo"), "--no-verify",
                        "--set", "num_labels=3", "--set", "drop_path_rate=0.1"])
    out = capsys.readouterr().out
    assert code == 0 and "not verified (--no-verify)" in out
    config = json.loads((tmp_path / "repo" / "config.json").read_text())
    assert len(config["id2label"]) == 3
    assert config["drop_path_rate"] == 0.1


def run_clean(script: str, home) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HOME": str(home), "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}
    return subprocess.run([sys.executable, "-I", "-c", textwrap.dedent(script)], env=env, capture_output=True,
                          text=True, cwd=home)


def stock_outputs(repo, auto_class: str, output: str, home) -> tuple[str, np.ndarray]:
    """`output` of the stock repo on the reference inputs, computed in a process where hf_vit_port cannot load."""
    np.save(repo.parent / "inputs.npy", reference_inputs((16, 16)))
    script = f"""
        import sys, numpy as np, torch
        from transformers import {auto_class}
        model = {auto_class}.from_pretrained({str(repo)!r}).eval()
        assert "hf_vit_port" not in sys.modules
        print(type(model).__name__)
        pixels = torch.from_numpy(np.load({str(repo.parent / 'inputs.npy')!r})).permute(0, 3, 1, 2)
        with torch.no_grad():
            np.save({str(repo.parent / 'outputs.npy')!r}, model(pixels).{output}.numpy())
    """
    done = run_clean(script, home)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip(), np.load(repo.parent / "outputs.npy")


def test_stock_format_loads_in_plain_transformers_with_equal_logits(tmp_path, tmp_path_factory):
    path = write_npz(tmp_path / "augreg.npz", make_augreg_params())
    result = convert(path, tmp_path / "repo", fmt="stock")
    assert result.verification.max_abs_diff_logits < 1e-5
    assert not (tmp_path / "repo" / "modeling_vit_port.py").exists()
    expected = reference_forward(dict(np.load(path)), reference_inputs((16, 16))).logits
    kind, logits = stock_outputs(tmp_path / "repo", "AutoModelForImageClassification", "logits",
                                 tmp_path_factory.mktemp("home"))
    assert kind == "ViTForImageClassification"
    np.testing.assert_allclose(logits, expected, atol=1e-5)


def test_stock_format_of_an_in21k_file_puts_pre_logits_in_the_pooler(tmp_path, tmp_path_factory):
    path = write_npz(tmp_path / "in21k.npz", make_in21k_params())
    with pytest.warns(UserWarning):
        convert(path, tmp_path / "repo", fmt="stock")
    expected = reference_forward(dict(np.load(path)), reference_inputs((16, 16))).features
    kind, features = stock_outputs(tmp_path / "repo", "AutoModel", "pooler_output", tmp_path_factory.mktemp("home"))
    assert kind == "ViTModel"
    np.testing.assert_allclose(features, expected, atol=1e-5)


def test_stock_format_refuses_what_stock_vit_cannot_hold(tmp_path):
    path = write_npz(tmp_path / "gap.npz", make_official_params(classifier="gap"))
    with pytest.raises(ValueError, match="gap"):
        convert(path, tmp_path / "repo", fmt="stock")
    assert not (tmp_path / "repo").exists()


def test_what_was_written_is_what_is_verified(tmp_path, in1k_file, monkeypatch):
    """Verification loads the staged repo itself: damage done while writing is caught, and nothing is published."""
    from safetensors.torch import load_file, save_file

    import hf_vit_port_tools.conversion.convert as convert_module

    original = convert_module.write_safetensors

    def write_then_damage(path, tensors):
        original(path, tensors)
        weights = load_file(path)
        weights["vit.layernorm.bias"] = weights["vit.layernorm.bias"] + 1e-2
        save_file(weights, path, metadata={"format": "pt"})

    monkeypatch.setattr(convert_module, "write_safetensors", write_then_damage)
    with pytest.raises(verify_module.VerificationError, match="after reloading"):
        convert(in1k_file, tmp_path / "repo")
    assert not (tmp_path / "repo").exists()


@pytest.mark.parametrize("params", [make_official_params(num_classes=1000), make_in21k_params()], ids=["in1k", "in21k"])
def test_the_streamed_repo_is_what_save_pretrained_writes(tmp_path, params):
    """The weights go from the .npz to model.safetensors without a model: the repo must be the one the model's own
    save_pretrained writes (same config, same tensors, same code files)."""
    from safetensors.numpy import load_file

    from hf_vit_port.loading import load_checkpoint

    path = write_npz(tmp_path / "m.npz", params)
    with pytest.warns(UserWarning) if "pre_logits/kernel" in params else contextlib.nullcontext():
        convert(path, tmp_path / "streamed", verify_outputs=False)
        model, _ = load_checkpoint(path)
    model.save_pretrained(tmp_path / "saved")
    streamed, saved = (json.loads((tmp_path / d / "config.json").read_text()) for d in ("streamed", "saved"))
    assert streamed == saved
    a, b = load_file(tmp_path / "streamed" / "model.safetensors"), load_file(tmp_path / "saved" / "model.safetensors")
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    code = {p.name for p in (tmp_path / "saved").glob("*.py")}
    assert code and code <= {p.name for p in (tmp_path / "streamed").glob("*.py")}
