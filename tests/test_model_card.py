"""`hf_vit_port_tools.hub.cards.converted_model_card`: metadata, model-index, body sections, and round-trips through
huggingface_hub's own card parser (no Hub call: `card.validate()` posts to the Hub and is tested elsewhere)."""

from __future__ import annotations

import pytest
from huggingface_hub import ModelCard

from hf_vit_port_tools.hub.cards import converted_model_card, template_path
from hf_vit_port_tools.conversion.registry import OfficialCheckpoint, get_checkpoint
from hf_vit_port import ViTPortConfig

from conftest import tiny_config

AUGREG_B16_384 = "vit-b16-augreg-in21k-in1k-384"
IN21K_B16 = "vit-b16-in21k"
SHA256 = "0123456789abcdef" * 4
VERIFICATION = {
    "max_abs_diff_logits": 3.2e-6,
    "max_abs_diff_features": 1.7e-6,
    "tolerance": 1e-4,
    "inputs": "2 random images of 384 x 384 in [-1, 1]",
    "reference": "NumPy forward pass of the .npz arrays",
    "reloaded": True,
}


def config_for(checkpoint: OfficialCheckpoint, **overrides) -> ViTPortConfig:
    """The configuration the converter builds for a registry file (in21k files become feature extractors)."""
    kwargs = dict(
        image_size=checkpoint.image_size,
        num_labels=checkpoint.num_classes if checkpoint.classifier_valid else 0,
        representation_size=checkpoint.representation_size,
    )
    return ViTPortConfig.from_preset(checkpoint.variant, **{**kwargs, **overrides})


def source_for(checkpoint: OfficialCheckpoint) -> dict:
    return {"file": checkpoint.filename, "sha256": SHA256, "size": checkpoint.expected_num_bytes + 60_000}


def card_for(name: str, *, verification=VERIFICATION, fmt="vit_port", repo_id="test-user/model", **overrides):
    checkpoint = get_checkpoint(name)
    return converted_model_card(
        config=config_for(checkpoint, **overrides),
        repo_id=repo_id,
        source=source_for(checkpoint),
        verification=verification,
        checkpoint=checkpoint,
        fmt=fmt,
    )


def test_template_exists_and_jinja_is_installed():
    import jinja2  # a declared dependency: rendering the card needs it

    assert jinja2.__version__ and template_path("vit_port.md").is_file() and template_path("trained.md").is_file()


# -- metadata ------------------------------------------------------------------------------------------------------


def test_metadata_of_a_fine_tuned_classifier():
    data = card_for(AUGREG_B16_384).data.to_dict()

    assert data["license"] == "apache-2.0"
    assert data["library_name"] == "transformers"
    assert data["pipeline_tag"] == "image-classification"
    assert data["datasets"] == ["imagenet-21k", "imagenet-1k"]
    assert data["tags"] == ["vision", "image-classification", "vit", "vit_port", "augreg"]


def test_metadata_of_a_feature_extractor():
    data = card_for(IN21K_B16).data.to_dict()

    assert data["pipeline_tag"] == "image-feature-extraction"
    assert data["datasets"] == ["imagenet-21k"]
    assert "image-feature-extraction" in data["tags"] and "imagenet21k" in data["tags"]


def test_release_with_plus_becomes_a_plain_tag():
    tags = card_for("vit-b16-in21k-in1k-224").data.tags
    assert "imagenet21k-imagenet2012" in tags


def test_model_index_holds_the_published_top1():
    card = card_for(AUGREG_B16_384)

    (entry,) = card.data.to_dict()["model-index"]
    assert entry["name"] == "model"
    (result,) = entry["results"]
    assert result["task"]["type"] == "image-classification"
    assert result["dataset"] == {"name": "ImageNet-1k", "type": "imagenet-1k", "split": "validation"}
    assert result["metrics"] == [{"type": "accuracy", "value": 85.49, "name": "Top-1 Accuracy"}]
    assert result["source"]["name"] == "google-research/vision_transformer README.md"
    assert result["source"]["url"].startswith("https://github.com/google-research/vision_transformer/blob/")


def test_model_index_cites_the_augreg_colab_for_b8():
    (result,) = card_for("vit-b8-augreg-in21k-in1k-224").data.to_dict()["model-index"][0]["results"]
    assert result["metrics"][0]["value"] == 85.578
    assert result["source"]["url"].endswith("/vit_jax_augreg.ipynb")


@pytest.mark.parametrize("name", [IN21K_B16, "vit-b16-in21k-in1k-384", "vit-b16-augreg-in21k"])
def test_no_model_index_where_nothing_is_published(name):
    assert get_checkpoint(name).top1 is None
    card = card_for(name)

    assert "model-index" not in card.data.to_dict()
    assert "model-index" not in str(card)
    assert "published no ImageNet-1k accuracy" in card.text


def test_no_model_index_for_a_model_that_is_not_the_published_one():
    card = card_for(AUGREG_B16_384, image_size=224)  # re-gridded: the published number is not this model's

    assert "model-index" not in card.data.to_dict()
    assert "no accuracy is claimed" in card.text and "85.49" in card.text


def test_repo_name_is_the_model_index_name():
    card = card_for(AUGREG_B16_384, repo_id="someone/vit-b16-augreg")
    assert card.data.to_dict()["model-index"][0]["name"] == "vit-b16-augreg"


# -- body ----------------------------------------------------------------------------------------------------------


def test_source_file_and_sha256_appear():
    checkpoint = get_checkpoint(AUGREG_B16_384)
    text = card_for(AUGREG_B16_384).text

    assert f"| File | `{checkpoint.filename}` |" in text
    assert f"| SHA-256 | `{SHA256}` |" in text
    assert f"gs://vit_models/{checkpoint.path}" in text
    assert f"| Fine-tuned from | `{checkpoint.upstream}` |" in text


@pytest.mark.parametrize(
    "row",
    [
        "| Variant | ViT-B/16 |",
        "| Patch size | 16 |",
        "| Hidden size | 768 |",
        "| MLP size | 3072 |",
        "| Attention heads | 12 |",
        "| Layers | 12 |",
        "| Image size | 384 |",
        "| Pre-logits | none |",
        "| Classes | 1000 |",
        f"| Parameters | {get_checkpoint(AUGREG_B16_384).num_params:,} (86.9 M) |",
    ],
)
def test_architecture_table_rows(row):
    assert row in card_for(AUGREG_B16_384).text


def test_architecture_of_a_feature_extractor_with_pre_logits():
    text = card_for(IN21K_B16).text
    assert "| Pre-logits | 768 (Dense + tanh) |" in text
    assert "| Classes | none (features only) |" in text
    assert "classifier head of the original imagenet21k files is not usable" in text


def test_parameter_count_from_source_wins():
    checkpoint = get_checkpoint(AUGREG_B16_384)
    card = converted_model_card(
        config=config_for(checkpoint),
        repo_id=None,
        source={**source_for(checkpoint), "num_parameters": 1_234_567},
        verification=None,
        checkpoint=checkpoint,
    )
    assert "| Parameters | 1,234,567 (1.2 M) |" in card.text


def test_verification_result_appears():
    text = card_for(AUGREG_B16_384).text

    assert "| Logits | 3.20e-06 | 1e-04 | passed |" in text
    assert "| Pooled features | 1.70e-06 | 1e-04 | passed |" in text
    assert "NumPy forward pass of the .npz arrays" in text
    assert "as reloaded from the saved files" in text
    assert "not verified" not in text.lower()


def test_failed_verification_says_so():
    text = card_for(AUGREG_B16_384, verification={**VERIFICATION, "max_abs_diff_logits": 3e-3}).text
    assert "| Logits | 3.00e-03 | 1e-04 | FAILED |" in text


def test_not_verified_without_verification():
    text = card_for(AUGREG_B16_384, verification=None).text
    assert "Not verified (--no-verify)" in text
    assert "| Logits |" not in text


# -- usage snippets ------------------------------------------------------------------------------------------------


def test_vit_port_snippets_load_with_and_without_the_package():
    text = card_for(AUGREG_B16_384, repo_id="test-user/vit-b16").text

    assert "import hf_vit_port" in text
    assert 'AutoModelForImageClassification.from_pretrained("test-user/vit-b16")' in text
    assert 'from_pretrained("test-user/vit-b16", trust_remote_code=True)' in text
    assert 'pipeline("image-classification", model="test-user/vit-b16")' in text


def test_feature_extractor_snippets_use_auto_model():
    text = card_for(IN21K_B16, repo_id="test-user/in21k").text

    assert 'AutoModel.from_pretrained("test-user/in21k")' in text
    assert "pooler_output  # (batch, 768)" in text
    assert 'pipeline("image-feature-extraction", model="test-user/in21k", pool=True)' in text
    assert "image-classification" not in text.split("## Usage")[1]


def test_stock_snippets_do_not_need_hf_vit_port():
    card = card_for(AUGREG_B16_384, fmt="stock", repo_id="test-user/stock")
    text = card.text

    assert "hf_vit_port" not in text and "trust_remote_code" not in text
    assert 'ViTForImageClassification.from_pretrained("test-user/stock")' in text
    assert 'pipeline("image-classification", model="test-user/stock")' in text
    assert "vit_port" not in card.data.tags


def test_stock_model_with_pre_logits_is_a_vit_model():
    card = card_for(IN21K_B16, fmt="stock")
    assert 'ViTModel.from_pretrained("test-user/model")' in card.text
    assert card.data.pipeline_tag == "image-feature-extraction"


def test_local_card_without_repo_id_uses_a_path():
    card = card_for(AUGREG_B16_384, repo_id=None)
    assert f'from_pretrained("path/to/{AUGREG_B16_384}")' in card.text
    assert card.data.to_dict()["model-index"][0]["name"] == AUGREG_B16_384


def test_unknown_format_is_refused():
    with pytest.raises(ValueError, match="stock"):
        card_for(AUGREG_B16_384, fmt="timm")


# -- files outside the registry ------------------------------------------------------------------------------------


def test_card_without_checkpoint():
    card = converted_model_card(
        config=tiny_config(),
        repo_id="test-user/tiny",
        source={"file": "tiny.npz", "sha256": SHA256, "size": 12_345},
        verification=VERIFICATION,
        checkpoint=None,
    )
    data = card.data.to_dict()

    assert "model-index" not in data and "datasets" not in data
    assert data["tags"] == ["vision", "image-classification", "vit", "vit_port"]
    assert "| Variant | custom |" in card.text and "| File | `tiny.npz` |" in card.text


# -- round-trips ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, fmt, verification",
    [
        (AUGREG_B16_384, "vit_port", VERIFICATION),
        (IN21K_B16, "vit_port", None),
        ("vit-l16-in21k-in1k-224", "stock", VERIFICATION),
    ],
)
def test_card_round_trips_through_the_hub_parser(name, fmt, verification):
    card = card_for(name, fmt=fmt, verification=verification)

    reparsed = ModelCard(str(card))

    assert reparsed.data.to_dict() == card.data.to_dict()
    assert reparsed.text == card.text
    assert str(reparsed) == str(card)
    assert type(reparsed.data)(**reparsed.data.to_dict()).to_dict() == card.data.to_dict()
    if card.data.eval_results:
        assert reparsed.data.eval_results == card.data.eval_results


def test_cards_say_which_image_processor_the_repo_carries():
    ported = card_for(AUGREG_B16_384).text.split("## Preprocessing")[1].split("## Usage")[0]
    assert "ViTPortImageProcessor" in ported and "equals TensorFlow's" in ported
    stock = card_for(AUGREG_B16_384, fmt="stock").text.split("## Preprocessing")[1].split("## Usage")[0]
    assert "carries transformers' `ViTImageProcessor`" in stock
    assert "up to 1.17 on the [-1, 1] scale at 224 px" in stock  # how far it is from the original
    assert "ViTPortImageProcessor(size=384)" in stock
