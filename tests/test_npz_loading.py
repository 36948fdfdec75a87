"""Official .npz checkpoints load exactly, into their own configuration or a changed one."""

import numpy as np
import pytest
import torch
from npz_factory import (
    make_augreg_params,
    make_finetuned_384_params,
    make_hybrid_params,
    make_in21k_params,
    make_official_params,
    to_big_vision_layout,
    to_opt_target_layout,
    write_missing_key_npz,
    write_misshaped_npz,
    write_not_a_zip,
    write_npz,
    write_object_array_npz,
    write_truncated_npz,
)
from scipy import ndimage

from hf_vit_port_tools.conversion.numpy_reference import reference_forward, reference_inputs
from hf_vit_port import ViTPortForImageClassification, ViTPortModel
from hf_vit_port.npz_format import NpzFormatError, UnsupportedCheckpointError
from hf_vit_port.loading import FRESH, LOADED, RESAMPLED, UNUSED
from hf_vit_port.resample import resample_position_grid

LAYOUTS = {
    "official": lambda p: p,
    "opt_target": to_opt_target_layout,
    "big_vision": lambda p: to_big_vision_layout(p, stacked=False),
    "big_vision_stacked": lambda p: to_big_vision_layout(p, stacked=True),
}
FILES = {
    "in21k": lambda: make_in21k_params(),
    "finetuned_384": lambda: make_finetuned_384_params(),
    "augreg": lambda: make_augreg_params(),
    "gap": lambda: make_official_params(classifier="gap"),
    "pre_logits_narrower": lambda: make_official_params(representation_size=24),
}


def run(model, params_or_size, *, interpolate=False):
    """Logits and pooled features of `model` on the reference inputs, as float64 arrays."""
    pixels = reference_inputs(params_or_size)
    with torch.no_grad():
        out = model(torch.from_numpy(pixels).permute(0, 3, 1, 2), interpolate_pos_encoding=interpolate)
    return pixels, out


def statuses(model):
    return {row["status"] for row in model.loading_summary(print_summary=False)}


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("kind", FILES)
def test_every_layout_loads_exactly_with_nothing_fresh(tmp_path, layout, kind):
    params = FILES[kind]()
    path = write_npz(tmp_path / "model.npz", LAYOUTS[layout](params))
    model = ViTPortForImageClassification.from_npz(path, keep_zero_head=True)
    assert statuses(model) == {LOADED}
    classifier = "gap" if "cls" not in params else "token"
    pixels = reference_inputs(model.config.image_size if isinstance(model.config.image_size, tuple)
                              else (model.config.image_size,) * 2)
    with torch.no_grad():
        logits = model(torch.from_numpy(pixels).permute(0, 3, 1, 2)).logits.numpy()
    expected = reference_forward(params, pixels, classifier=classifier)
    np.testing.assert_allclose(logits, expected.logits, atol=1e-5, rtol=0)
    with torch.no_grad():
        base = ViTPortModel.from_npz(path)(torch.from_numpy(pixels).permute(0, 3, 1, 2))
    np.testing.assert_allclose(base.pooler_output.numpy(), expected.features, atol=1e-5, rtol=0)
    np.testing.assert_allclose(base.last_hidden_state.numpy(), expected.last_hidden_state, atol=1e-5, rtol=0)


def test_architecture_is_inferred_from_the_arrays(tmp_path):
    params = make_official_params(hidden=48, heads=6, layers=3, mlp=96, patch=8, image=32, num_classes=7,
                                  representation_size=40)
    model = ViTPortForImageClassification.from_npz(write_npz(tmp_path / "m.npz", params))
    config = model.config
    assert (config.hidden_size, config.num_attention_heads, config.num_hidden_layers) == (48, 6, 3)
    assert (config.intermediate_size, config.patch_size, config.image_size) == (96, 8, 32)
    assert (config.num_labels, config.representation_size, config.classifier) == (7, 40, "token")


def test_zero_head_is_detected_and_dropped_with_a_warning(tmp_path):
    path = write_npz(tmp_path / "in21k.npz", make_in21k_params())
    with pytest.warns(UserWarning, match="all zeros"):
        model = ViTPortForImageClassification.from_npz(path)
    assert model.config.num_labels == 0 and not list(model.classifier.parameters())
    rows = model.loading_summary(print_summary=False)
    unused = [row for row in rows if row["status"] == UNUSED]
    assert [row["name"] for row in unused] == ["head/kernel", "head/bias"]
    kept = ViTPortForImageClassification.from_npz(path, keep_zero_head=True)
    assert kept.config.num_labels == 10 and not kept.classifier.weight.any()


def test_resampled_position_embeddings_equal_scipy_zoom(tmp_path):
    params = make_official_params(image=16, patch=4)  # 4x4 grid
    model = ViTPortForImageClassification.from_npz(write_npz(tmp_path / "m.npz", params), image_size=28)
    grid = params["Transformer/posembed_input/pos_embedding"][0, 1:].reshape(4, 4, -1)
    expected = ndimage.zoom(grid.astype(np.float64), (7 / 4, 7 / 4, 1), order=1)
    got = model.vit.embeddings.position_embeddings.detach().numpy()[0]
    np.testing.assert_allclose(got[1:].reshape(7, 7, -1), expected, atol=1e-6)
    np.testing.assert_array_equal(got[0], params["Transformer/posembed_input/pos_embedding"][0, 0])  # CLS row kept
    row = {r["name"]: r for r in model.loading_summary(print_summary=False)}["vit.embeddings.position_embeddings"]
    assert row["status"] == RESAMPLED and "(1, 17, 32)" in row["detail"] and "(1, 50, 32)" in row["detail"]


@pytest.mark.parametrize("mode", ["official", "bilinear", "bicubic"])
def test_resample_modes_and_non_square_grids(tmp_path, mode):
    path = write_npz(tmp_path / "m.npz", make_official_params(image=16, patch=4))
    model = ViTPortForImageClassification.from_npz(path, image_size=(24, 32), resample=mode)
    assert model.vit.embeddings.position_embeddings.shape == (1, 1 + 6 * 8, 32)
    _, out = run(model, (24, 32))
    assert torch.isfinite(out.logits).all()


def test_official_resample_is_the_align_corners_zoom():
    grid = torch.randn(5, 5, 3, dtype=torch.float64)
    expected = ndimage.zoom(grid.numpy(), (9 / 5, 9 / 5, 1), order=1)
    np.testing.assert_allclose(resample_position_grid(grid, (9, 9), "official").numpy(), expected, atol=1e-12)


def test_changed_patch_size_keeps_outputs_close_on_smooth_inputs(tmp_path):
    """FlexiViT's property: resize patches and images together and the pseudo-inverse kernel keeps the outputs."""
    params = make_official_params(image=32, patch=8, num_classes=6)
    path = write_npz(tmp_path / "m.npz", params)
    original = ViTPortForImageClassification.from_npz(path)
    resized = ViTPortForImageClassification.from_npz(path, patch_size=4, image_size=16)
    assert resized.vit.embeddings.patch_embeddings.weight.shape[-2:] == (4, 4)
    ys, xs = np.meshgrid(np.linspace(-1, 1, 32), np.linspace(-1, 1, 32), indexing="ij")
    smooth = np.stack([0.8 * xs, 0.6 * ys, 0.5 * np.sin(np.pi * xs * ys)], axis=-1)[None].astype(np.float32)
    big = torch.from_numpy(smooth).permute(0, 3, 1, 2)
    small = torch.nn.functional.interpolate(big, size=(16, 16), mode="bilinear", antialias=True, align_corners=False)
    with torch.no_grad():
        a, b = original(big).logits, resized(small).logits
    # Without the pseudo-inverse (a plain resize of the kernel) the logits move by far more.
    assert (a - b).abs().max() < 0.1 * a.abs().max()
    naive = ViTPortForImageClassification.from_npz(path)
    naive_kernel = torch.nn.functional.interpolate(naive.vit.embeddings.patch_embeddings.weight, size=(4, 4),
                                                   mode="bilinear", antialias=True)
    assert (resized.vit.embeddings.patch_embeddings.weight - naive_kernel).abs().max() > 1e-3


def test_changed_head_and_pre_logits_start_fresh_and_say_why(tmp_path):
    path = write_npz(tmp_path / "m.npz", make_official_params(representation_size=32, num_classes=10))
    model = ViTPortForImageClassification.from_npz(path, num_labels=3, representation_size=16)
    rows = {row["name"]: row for row in model.loading_summary(print_summary=False)}
    assert rows["classifier.weight"]["status"] == FRESH and "(10, 32)" in rows["classifier.weight"]["detail"]
    assert rows["vit.pre_logits.weight"]["status"] == FRESH
    assert not model.classifier.weight.any()  # fresh heads start at zero, as the original's
    without = ViTPortForImageClassification.from_npz(path, representation_size=None)
    unused = [row["name"] for row in without.loading_summary(print_summary=False) if row["status"] == UNUSED]
    assert unused == ["pre_logits/kernel", "pre_logits/bias"]


def test_labels_override_sets_the_head_size(tmp_path):
    path = write_npz(tmp_path / "m.npz", make_augreg_params())
    model = ViTPortForImageClassification.from_npz(path, id2label={0: "cat", 1: "dog"})
    assert model.config.num_labels == 2 and model.config.label2id == {"cat": 0, "dog": 1}


def test_loading_summary_names_every_parameter_and_prints(tmp_path, capsys):
    model = ViTPortForImageClassification.from_npz(write_npz(tmp_path / "m.npz", make_augreg_params()))
    rows = model.loading_summary()
    assert {row["name"] for row in rows} == {name for name, _ in model.named_parameters()}
    printed = capsys.readouterr().out
    assert "vit.layers.1.attention.qkv.weight" in printed and "total: 32 loaded" in printed


def test_a_model_not_loaded_from_npz_has_no_summary():
    from conftest import tiny_config

    with pytest.raises(ValueError, match="not loaded with from_npz"):
        ViTPortForImageClassification(tiny_config()).loading_summary()


@pytest.mark.parametrize(
    "writer, message",
    [
        (lambda path, params: write_not_a_zip(path), "not a readable .npz"),
        (write_truncated_npz, "not a readable .npz|damaged"),
        (write_object_array_npz, "Python objects"),
        (lambda path, params: write_missing_key_npz(path, params, "Transformer/encoder_norm/scale"),
         "Transformer/encoder_norm/scale"),
        (lambda path, params: write_missing_key_npz(path, params, "embedding/kernel"), "embedding/kernel"),
    ],
)
def test_bad_files_raise_a_clear_error_naming_the_file(tmp_path, writer, message):
    path = tmp_path / "bad.npz"
    writer(path, make_official_params())
    with pytest.raises(NpzFormatError, match=message) as error:
        ViTPortForImageClassification.from_npz(path)
    assert str(path) in str(error.value)


def test_misshaped_key_is_named(tmp_path):
    key = "Transformer/encoderblock_1/MlpBlock_3/Dense_0/kernel"
    path = write_misshaped_npz(tmp_path / "bad.npz", make_official_params(), key)
    with pytest.raises((NpzFormatError, ValueError), match="layers.1.mlp.fc1.weight|Dense_0"):
        ViTPortForImageClassification.from_npz(path)


def test_hybrid_checkpoints_are_refused_naming_the_keys(tmp_path):
    path = write_npz(tmp_path / "r50.npz", make_hybrid_params())
    with pytest.raises(UnsupportedCheckpointError, match="not supported.*conv_root"):
        ViTPortForImageClassification.from_npz(path)


def test_files_are_read_without_pickle(tmp_path, monkeypatch):
    """The reader parses the .npy headers itself and never unpickles anything (nor lets numpy do so)."""
    import pickle

    def forbidden(*args, **kwargs):
        raise AssertionError("pickle was used")

    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(np, "load", forbidden)
    model = ViTPortForImageClassification.from_npz(write_npz(tmp_path / "m.npz", make_augreg_params()))
    assert model.config.num_labels > 0
