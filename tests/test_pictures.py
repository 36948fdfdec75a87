"""Pictures: training curves, patch grids and attention rollout, checked as real PNG files of the promised size."""

import numpy as np
import pytest
import torch
from PIL import Image
from test_training import cli, save_tiny_repo

from hf_vit_port import ViTPortForImageClassification
from hf_vit_port_tools.inference.attention import attention_maps, attention_rollout, patch_relevance
from hf_vit_port_tools.inference.pictures import ATTENTION_SIZE, PATCHES_SIZE, patch_mosaic
from hf_vit_port_tools.training.curves import CURVES_SIZE, plot_training_curves


def assert_png(path, size):
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size == size
        image.verify()


def photo(tmp_path, size=(50, 40)):
    """A deterministic image with structure (gradients and a square) so patches differ."""
    x = np.linspace(0, 255, size[0])[None, :].repeat(size[1], 0)
    y = np.linspace(0, 255, size[1])[:, None].repeat(size[0], 1)
    pixels = np.stack([x, y, 255 - x], axis=-1).astype(np.uint8)
    pixels[10:20, 10:20] = (255, 255, 0)
    path = tmp_path / "photo.png"
    Image.fromarray(pixels).save(path)
    return path


def subset(loss, accuracy, top5, **where):
    """A log entry of the training-subset scores."""
    return {"train_subset_loss": loss, "train_subset_accuracy": accuracy, "train_subset_top5_accuracy": top5, **where}


def test_training_curves_png_from_a_log_history(tmp_path):
    history = [
        {"loss": 2.0, "epoch": 0.1, "step": 1},
        {"loss": 1.5, "epoch": 0.5, "step": 5},
        {"eval_loss": 1.2, "eval_accuracy": 0.4, "eval_top5_accuracy": 0.9, "epoch": 1.0, "step": 10},
        subset(1.1, 0.5, 0.95, epoch=1.0, step=10),
        {"loss": 1.0, "epoch": 1.5, "step": 15},
        {"eval_loss": 0.9, "eval_accuracy": 0.7, "eval_top5_accuracy": 1.0, "epoch": 2.0, "step": 20},
        subset(0.8, 0.8, 1.0, epoch=2.0, step=20),
        {"eval_loss": 1.2, "eval_accuracy": 0.4, "epoch": 2.0, "step": 20},  # the final re-evaluation: not plotted
    ]
    path = plot_training_curves(history, tmp_path / "curves" / "training_curves.png")
    assert_png(path, CURVES_SIZE)


def test_patch_mosaic_places_each_patch_in_its_grid_cell(tmp_path):
    image = Image.open(photo(tmp_path)).convert("RGB")
    mosaic, grid = patch_mosaic(image, 8, 32, gap=2)
    assert grid == (4, 4) and mosaic.shape == (4 * 8 + 3 * 2, 4 * 8 + 3 * 2, 3)
    resized = np.asarray(image.resize((32, 32), resample=Image.BILINEAR))
    for row in range(4):
        for column in range(4):
            cell = mosaic[row * 10 : row * 10 + 8, column * 10 : column * 10 + 8]
            assert np.array_equal(cell, resized[row * 8 : (row + 1) * 8, column * 8 : (column + 1) * 8])
    assert (mosaic[8:10] == 255).all()  # white gaps between rows
    with pytest.raises(ValueError, match="not a multiple"):
        patch_mosaic(image, 7, 32)


def test_plot_patches_cli_writes_the_png(tmp_path, capsys):
    output = tmp_path / "patches.png"
    assert cli("plot-patches", photo(tmp_path), "--patch-size", "16", "--image-size", "224", "--output", output) == 0
    assert_png(output, PATCHES_SIZE)
    assert str(output) in capsys.readouterr().out


def test_attention_rollout_follows_abnar_and_zuidema():
    torch.manual_seed(0)
    layers = [torch.softmax(torch.randn(2, 3, 5, 5), dim=-1) for _ in range(3)]
    rollout = attention_rollout(layers)
    expected = torch.eye(5, dtype=torch.float64).expand(2, 5, 5)
    for attention in layers:
        mixed = 0.5 * attention.to(torch.float64).mean(dim=1) + 0.5 * torch.eye(5, dtype=torch.float64)
        mixed = mixed / mixed.sum(-1, keepdim=True)
        expected = mixed @ expected
    torch.testing.assert_close(rollout, expected)
    torch.testing.assert_close(rollout.sum(-1), torch.ones(2, 5, dtype=torch.float64))
    # Attention that stays on each token rolls out to the identity.
    identity = attention_rollout([torch.eye(5).expand(1, 2, 5, 5)] * 4)
    torch.testing.assert_close(identity[0], torch.eye(5, dtype=torch.float64))
    # With a CLS token the CLS row over the patches is used; without one, the mean of all rows.
    cls = patch_relevance(rollout, num_prefix_tokens=1, grid_size=(2, 2))
    torch.testing.assert_close(cls, (rollout[:, 0, 1:] / rollout[:, 0, 1:].sum(-1, keepdim=True)).reshape(2, 2, 2))
    gap = patch_relevance(rollout[:, 1:, 1:], num_prefix_tokens=0, grid_size=(2, 2))
    assert gap.shape == (2, 2, 2) and torch.allclose(gap.sum((-1, -2)), torch.ones(2, dtype=torch.float64))


def test_attention_maps_need_eager_attention_and_cover_the_grid(tmp_path):
    model_dir = save_tiny_repo(tmp_path / "model", randomise_head=True)
    pixels = torch.randn(1, 3, 32, 32)
    eager = ViTPortForImageClassification.from_pretrained(model_dir, attn_implementation="eager")
    relevance, logits = attention_maps(eager, pixels)
    assert relevance.shape == (1, 4, 4) and logits.shape == (1, 5)
    assert torch.isclose(relevance.sum(), torch.tensor(1.0)) and (relevance > 0).all()
    fused = ViTPortForImageClassification.from_pretrained(model_dir, attn_implementation="sdpa")
    with pytest.raises(ValueError, match="eager"):
        attention_maps(fused, pixels)


def test_plot_attention_cli_writes_the_overlay(tmp_path, capsys):
    model_dir = save_tiny_repo(tmp_path / "model", randomise_head=True, classifier="gap")
    output = tmp_path / "attention.png"
    assert cli("plot-attention", photo(tmp_path), "--model", model_dir, "--output", output) == 0
    assert_png(output, ATTENTION_SIZE)
    assert str(output) in capsys.readouterr().out
