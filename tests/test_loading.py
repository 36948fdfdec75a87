"""One loading path for every source (a saved vit_port repo or an .npz file) into a new head or size, with a
summary that says what happened to each parameter."""

import torch
from npz_factory import make_official_params, write_npz
from test_training import save_tiny_repo

from hf_vit_port import ViTPortForImageClassification
from hf_vit_port.loading import load_checkpoint
from hf_vit_port.processing import image_processor_for
from hf_vit_port.resample import resample_position_embeddings


def rows(summary):
    return {row["name"]: row for row in summary.rows()}


def test_new_head_is_reported_fresh_for_a_saved_repo(tmp_path):
    base = save_tiny_repo(tmp_path / "base")
    model, summary = load_checkpoint(base, id2label={0: "a", 1: "b", 2: "c"})
    printed = summary.format()
    assert "classifier.weight" in printed and "initialised fresh" in printed and "new head for 3 labels" in printed
    assert "30 loaded" in printed
    assert model.config.id2label == {0: "a", 1: "b", 2: "c"} and model.config.label2id == {"a": 0, "b": 1, "c": 2}
    assert rows(summary)["classifier.weight"]["status"] == "initialised fresh"
    assert rows(summary)["vit.layernorm.weight"]["status"] == "loaded"


def test_a_head_for_other_named_labels_is_reset(tmp_path):
    base = save_tiny_repo(tmp_path / "base", randomise_head=True, id2label={0: "x", 1: "y", 2: "z"})
    model, summary = load_checkpoint(base, id2label={0: "a", 1: "b", 2: "c"})
    assert torch.count_nonzero(model.classifier.weight) == 0
    assert "labels differ" in summary.format()
    same, _ = load_checkpoint(base, id2label={0: "x", 1: "y", 2: "z"})
    assert torch.count_nonzero(same.classifier.weight) > 0  # same labels: the head is kept


def test_higher_resolution_resamples_the_position_embeddings(tmp_path):
    base = save_tiny_repo(tmp_path / "base")
    original = ViTPortForImageClassification.from_pretrained(base).vit.embeddings.position_embeddings.detach()
    model, summary = load_checkpoint(base, id2label=dict(enumerate("abc")), image_size=48)
    assert model.config.image_size == 48 and model.config.grid_size == (6, 6)
    resampled = model.vit.embeddings.position_embeddings.detach()
    assert resampled.shape == (1, 1 + 36, 32)
    expected = resample_position_embeddings(original, old_grid=(4, 4), new_grid=(6, 6), num_prefix_tokens=1)
    torch.testing.assert_close(resampled, expected, rtol=0, atol=0)
    assert rows(summary)["vit.embeddings.position_embeddings"]["status"] == "resampled"
    assert model(torch.randn(1, 3, 48, 48)).logits.shape == (1, 3)


def test_a_saved_repo_loads_unchanged_with_nothing_fresh(tmp_path):
    base = save_tiny_repo(tmp_path / "base", randomise_head=True)
    model, summary = load_checkpoint(base)
    reference = ViTPortForImageClassification.from_pretrained(base)
    pixels = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(model(pixels).logits, reference(pixels).logits, rtol=0, atol=0)
    assert summary.count("initialised fresh") == 0 and summary.count("loaded") == len(summary.entries)


def test_npz_checkpoints_get_a_new_head_and_size(tmp_path):
    path = write_npz(tmp_path / "tiny.npz", make_official_params(image=16, patch=4, num_classes=10))
    model, summary = load_checkpoint(path, id2label=dict(enumerate("abc")), image_size=24)
    printed = summary.format()
    assert "Loading summary for" in printed and "initialised fresh" in printed and "resampled" in printed
    assert model.config.num_labels == 3 and model.config.image_size == 24
    assert image_processor_for(path, model.config).size == {"height": 24, "width": 24}
