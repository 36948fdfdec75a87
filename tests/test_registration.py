import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from conftest import tiny_config
from PIL import Image
from transformers import AutoConfig, AutoModel, AutoModelForImageClassification, pipeline
from test_modeling import images, randomised

from hf_vit_port import ViTPortConfig, ViTPortForImageClassification, ViTPortModel
from hf_vit_port.processing import make_image_processor


@pytest.fixture
def saved_classifier(tmp_path):
    config = tiny_config(representation_size=24, id2label={i: f"shape {i}" for i in range(5)})
    model = randomised(ViTPortForImageClassification(config))
    model.save_pretrained(tmp_path)
    make_image_processor(config).save_pretrained(tmp_path)
    return tmp_path, model


def test_save_load_round_trip(saved_classifier):
    directory, model = saved_classifier
    again = ViTPortForImageClassification.from_pretrained(directory)
    torch.testing.assert_close(again(images()).logits, model(images()).logits)
    assert (directory / "model.safetensors").exists()


def test_auto_classes_resolve_vit_port(saved_classifier):
    directory, model = saved_classifier
    assert isinstance(AutoConfig.from_pretrained(directory), ViTPortConfig)
    classifier = AutoModelForImageClassification.from_pretrained(directory)
    assert type(classifier) is ViTPortForImageClassification
    torch.testing.assert_close(classifier(images()).logits, model(images()).logits)
    base = AutoModel.from_pretrained(directory)
    assert type(base) is ViTPortModel
    torch.testing.assert_close(base(images()).pooler_output, model.vit(images()).pooler_output)


def test_saved_repo_carries_code_and_auto_map(saved_classifier):
    directory, _ = saved_classifier
    config = json.loads((directory / "config.json").read_text())
    assert config["auto_map"] == {
        "AutoConfig": "configuration_vit_port.ViTPortConfig",
        "AutoModel": "modeling_vit_port.ViTPortModel",
        "AutoModelForImageClassification": "modeling_vit_port.ViTPortForImageClassification",
    }
    for name in ("configuration_vit_port.py", "modeling_vit_port.py", "presets.py", "resample.py"):
        assert (directory / name).exists(), name


def test_pipeline_prints_label_names(saved_classifier):
    directory, model = saved_classifier
    image = Image.fromarray((np.random.default_rng(0).random((20, 24, 3)) * 255).astype(np.uint8))
    predictions = pipeline("image-classification", model=str(directory))(image, top_k=5)
    assert {p["label"] for p in predictions} == {f"shape {i}" for i in range(5)}
    pixels = make_image_processor(model.config)(image, return_tensors="pt").pixel_values
    best = model(pixels).logits.softmax(-1)[0].max().item()
    assert predictions[0]["score"] == pytest.approx(best, abs=1e-5)


def test_processor_scales_to_minus_one_one(saved_classifier):
    directory, model = saved_classifier
    white = Image.new("RGB", (40, 40), (255, 255, 255))
    pixels = make_image_processor(model.config)(white, return_tensors="pt").pixel_values
    assert pixels.shape == (1, 3, 16, 16)
    torch.testing.assert_close(pixels, torch.ones_like(pixels))


def test_trust_remote_code_in_a_process_that_never_imports_the_package(saved_classifier, tmp_path_factory):
    directory, model = saved_classifier
    expected = model(images()).logits
    torch.save(images(), directory / "inputs.pt")
    script = textwrap.dedent(
        f"""
        import sys, torch
        sys.path = [p for p in sys.path if p not in ("", {os.getcwd()!r})]
        from transformers import AutoModelForImageClassification, AutoModel
        model = AutoModelForImageClassification.from_pretrained({str(directory)!r}, trust_remote_code=True)
        base = AutoModel.from_pretrained({str(directory)!r}, trust_remote_code=True)
        assert "hf_vit_port" not in sys.modules, "the plugin was imported"
        assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
        logits = model(torch.load({str(directory / "inputs.pt")!r})).logits
        torch.save(logits, {str(directory / "logits.pt")!r})
        print(type(model).__name__, type(base).__name__)
        """
    )
    home = tmp_path_factory.mktemp("fresh_home")
    env = {**os.environ, "HF_HOME": str(home), "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}
    result = subprocess.run([sys.executable, "-I", "-c", script], env=env, capture_output=True, text=True, cwd=home)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ViTPortForImageClassification ViTPortModel" in result.stdout
    torch.testing.assert_close(torch.load(directory / "logits.pt"), expected)


@pytest.mark.parametrize("enabled", [True, False])
def test_import_leaves_the_garbage_collector_as_it_found_it(enabled):
    # The package pauses collection while transformers' modeling stack is imported; it must restore the caller's state.
    script = f"import gc\nif not {enabled}: gc.disable()\nimport hf_vit_port\nprint(gc.isenabled())"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(enabled)
