import json

import pytest
from huggingface_hub.errors import StrictDataclassError

from hf_vit_port import ViTPortConfig
from hf_vit_port.presets import OFFICIAL_VARIANTS, parse_variant


@pytest.mark.parametrize(
    "variant, expected",
    [
        ("Ti/16", (192, 768, 3, 12, 16)),
        ("S/16", (384, 1536, 6, 12, 16)),
        ("B/8", (768, 3072, 12, 12, 8)),
        ("B/16", (768, 3072, 12, 12, 16)),
        ("B/32", (768, 3072, 12, 12, 32)),
        ("L/16", (1024, 4096, 16, 24, 16)),
        ("L/32", (1024, 4096, 16, 24, 32)),
        ("H/14", (1280, 5120, 16, 32, 14)),
    ],
)
def test_presets_decode_the_published_shapes(variant, expected):
    config = ViTPortConfig.from_preset(variant)
    got = (config.hidden_size, config.intermediate_size, config.num_attention_heads, config.num_hidden_layers)
    assert got + (config.patch_size,) == expected
    assert variant in OFFICIAL_VARIANTS


def test_dataset_defaults_of_the_releases():
    in21k = ViTPortConfig.from_preset("B/16", dataset="imagenet21k")
    assert (in21k.image_size, in21k.num_labels, in21k.representation_size) == (224, 21843, 768)
    finetuned = ViTPortConfig.from_preset("L/16", dataset="imagenet21k+imagenet2012")
    assert (finetuned.image_size, finetuned.num_labels, finetuned.representation_size) == (384, 1000, None)
    at_224 = ViTPortConfig.from_preset("ViT-B_16-224", dataset="imagenet21k+imagenet2012")
    assert at_224.image_size == 224
    augreg = ViTPortConfig.from_preset("S/16", dataset="augreg")
    assert augreg.representation_size is None and augreg.num_labels == 21843


def test_original_numerics_are_the_defaults():
    config = ViTPortConfig()
    assert config.hidden_act == "gelu_pytorch_tanh"
    assert config.layer_norm_eps == 1e-6
    assert config.classifier == "token"


def test_any_field_can_be_overridden():
    config = ViTPortConfig.from_preset("B/16", dataset="imagenet21k", image_size=(224, 320), num_labels=7)
    assert config.image_size == (224, 320) and config.grid_size == (14, 20) and config.num_labels == 7


def test_json_round_trip_keeps_every_field(tmp_path):
    config = ViTPortConfig.from_preset("S/16", image_size=(32, 48), classifier="gap", drop_path_rate=0.1)
    config.save_pretrained(tmp_path)
    again = ViTPortConfig.from_pretrained(tmp_path)
    assert again.to_dict() == config.to_dict()
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "vit_port"


def test_no_head_means_zero_labels():
    assert ViTPortConfig(num_labels=0).num_labels == 0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(hidden_size=100, num_attention_heads=12), "divisible by num_attention_heads"),
        (dict(image_size=30, patch_size=16), "not divisible by patch_size"),
        (dict(image_size=(32, 30), patch_size=16), "not divisible by patch_size"),
        (dict(hidden_size=-8), "must be a positive integer"),
        (dict(num_hidden_layers=0), "must be a positive integer"),
        (dict(representation_size=-1), "representation_size"),
        (dict(drop_path_rate=1.5), "drop_path_rate"),
        (dict(classifier="cls"), "classifier"),
        (dict(position_embedding_interpolation="nearest"), "position_embedding_interpolation"),
    ],
)
def test_impossible_configurations_are_refused_with_a_fix(kwargs, message):
    with pytest.raises(StrictDataclassError, match=message):
        ViTPortConfig(**kwargs)


@pytest.mark.parametrize("name", ["X/16", "B16", "B/", "ViT-Q_16"])
def test_unknown_variants_are_refused(name):
    with pytest.raises(ValueError, match="Unknown ViT variant"):
        parse_variant(name)


def test_unknown_dataset_is_refused():
    with pytest.raises(ValueError, match="Unknown dataset"):
        ViTPortConfig.from_preset("B/16", dataset="jft")


def test_unknown_fields_from_a_newer_version_load_with_a_warning(tmp_path, caplog):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "vit_port", "hidden_size": 32,
                                                      "num_attention_heads": 4, "future_field": 1}))
    with caplog.at_level("WARNING", logger="hf_vit_port.configuration_vit_port"):
        config = ViTPortConfig.from_pretrained(tmp_path)
    assert config.future_field == 1 and config.hidden_size == 32
    assert "future_field" in caplog.text and "newer" in caplog.text


def test_fields_transformers_writes_are_not_taken_for_a_newer_version(tmp_path, caplog):
    config = ViTPortConfig.from_preset("Ti/16")
    config.use_cache = False  # what transformers' Trainer sets on every model it trains (TrainingArguments.use_cache)
    config.save_pretrained(tmp_path)
    written = json.loads((tmp_path / "config.json").read_text())
    assert written["use_cache"] is False
    (tmp_path / "config.json").write_text(json.dumps({**written, "future_field": 1}))
    with caplog.at_level("WARNING", logger="hf_vit_port.configuration_vit_port"):
        ViTPortConfig.from_pretrained(tmp_path)
    assert "future_field" in caplog.text and "use_cache" not in caplog.text


def test_known_configs_load_without_warnings(tmp_path, caplog):
    ViTPortConfig.from_preset("Ti/16").save_pretrained(tmp_path)
    with caplog.at_level("WARNING", logger="hf_vit_port.configuration_vit_port"):
        ViTPortConfig.from_pretrained(tmp_path)
    assert caplog.text == ""
