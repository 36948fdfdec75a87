"""Validate the NumPy reference forward pass and the synthetic .npz factory.

The reference (``conversion.numpy_reference``) is the ground truth for the
port, so it is itself checked against an independent implementation path:
a transformers ``ViTModel`` whose weights are copied in here by hand, with
re-layouts written from first principles (not by the project's converter).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import ViTConfig, ViTModel

from hf_vit_port_tools.conversion.numpy_reference import ReferenceOutput, reference_forward, reference_inputs

try:  # pytest "prepend" import mode puts tests/ itself on sys.path ...
    import npz_factory as factory
except ImportError:  # ... unless tests/ has become a package.
    from tests import npz_factory as factory

ATOL = 1e-5
RTOL = 1e-5


# ---------------------------------------------------------------------------
# Independent torch path: official arrays -> transformers ViTModel
# ---------------------------------------------------------------------------


def _t(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


def _vit_config(params: dict[str, np.ndarray], image_size: tuple[int, int]) -> ViTConfig:
    """Read the architecture off the official array shapes."""
    patch, _, channels, hidden = params["embedding/kernel"].shape
    attn = "Transformer/encoderblock_0/MultiHeadDotProductAttention_1"
    heads = params[f"{attn}/query/kernel"].shape[1]
    mlp = params["Transformer/encoderblock_0/MlpBlock_3/Dense_0/kernel"].shape[1]
    layers = len({k.split("/")[1] for k in factory.block_keys(params)})
    pooler = params["pre_logits/kernel"].shape[1] if "pre_logits/kernel" in params else hidden
    return ViTConfig(
        hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
        intermediate_size=mlp, image_size=list(image_size), patch_size=patch,
        num_channels=channels, hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6,
        qkv_bias=True, pooler_output_size=pooler, pooler_act="tanh",
    )


_QKV = (("query", "q_proj"), ("key", "k_proj"), ("value", "v_proj"))
_LAYER_NORMS = (("LayerNorm_0", "layernorm_before"), ("LayerNorm_2", "layernorm_after"))
_DENSES = (("Dense_0", "fc1"), ("Dense_1", "fc2"))


def _hf_block(params: dict[str, np.ndarray], i: int, hidden: int) -> dict[str, torch.Tensor]:
    """One ``encoderblock_{i}`` as ``layers.{i}.*`` state-dict entries."""
    src, dst = f"Transformer/encoderblock_{i}", f"layers.{i}"
    attn = f"{src}/MultiHeadDotProductAttention_1"
    sd: dict[str, torch.Tensor] = {}
    for flax_name, torch_name in _QKV:
        # [D, H, hd] -> [D, H*hd] (in, out) -> nn.Linear's (out, in)
        kernel = params[f"{attn}/{flax_name}/kernel"].reshape(hidden, -1)
        sd[f"{dst}.attention.{torch_name}.weight"] = _t(kernel.T)
        sd[f"{dst}.attention.{torch_name}.bias"] = _t(params[f"{attn}/{flax_name}/bias"].ravel())
    # [H, hd, D] -> [H*hd, D] (in, out) -> (out, in)
    out_kernel = params[f"{attn}/out/kernel"].reshape(-1, hidden)
    sd[f"{dst}.attention.o_proj.weight"] = _t(out_kernel.T)
    sd[f"{dst}.attention.o_proj.bias"] = _t(params[f"{attn}/out/bias"])
    for flax_ln, torch_ln in _LAYER_NORMS:
        sd[f"{dst}.{torch_ln}.weight"] = _t(params[f"{src}/{flax_ln}/scale"])
        sd[f"{dst}.{torch_ln}.bias"] = _t(params[f"{src}/{flax_ln}/bias"])
    for flax_dense, torch_fc in _DENSES:
        dense = f"{src}/MlpBlock_3/{flax_dense}"
        sd[f"{dst}.mlp.{torch_fc}.weight"] = _t(params[f"{dense}/kernel"].T)
        sd[f"{dst}.mlp.{torch_fc}.bias"] = _t(params[f"{dense}/bias"])
    return sd


def _hf_state_dict(params: dict[str, np.ndarray], hidden: int) -> dict[str, torch.Tensor]:
    """Re-layout official arrays into ViTModel's state dict."""
    patch_proj = "embeddings.patch_embeddings.projection"
    sd = {
        f"{patch_proj}.weight": _t(params["embedding/kernel"].transpose(3, 2, 0, 1)),  # HWIO->OIHW
        f"{patch_proj}.bias": _t(params["embedding/bias"]),
        "embeddings.cls_token": _t(params["cls"]),
        "embeddings.position_embeddings": _t(params[factory.OFFICIAL_POS_KEY]),
        "layernorm.weight": _t(params["Transformer/encoder_norm/scale"]),
        "layernorm.bias": _t(params["Transformer/encoder_norm/bias"]),
    }
    num_layers = len({k.split("/")[1] for k in factory.block_keys(params)})
    for i in range(num_layers):
        sd.update(_hf_block(params, i, hidden))
    if "pre_logits/kernel" in params:
        sd["pooler.dense.weight"] = _t(params["pre_logits/kernel"].T)
        sd["pooler.dense.bias"] = _t(params["pre_logits/bias"])
    else:
        # No pre_logits: ViTPooler always applies tanh, so give it identity
        # weights and compare its output with tanh(pooled).
        sd["pooler.dense.weight"] = torch.eye(hidden)
        sd["pooler.dense.bias"] = torch.zeros(hidden)
    return sd


def _build_hf_model(params: dict[str, np.ndarray], image_size: tuple[int, int]) -> ViTModel:
    config = _vit_config(params, image_size)
    config._attn_implementation = "eager"
    model = ViTModel(config, add_pooling_layer=True).eval()
    model.load_state_dict(_hf_state_dict(params, config.hidden_size), strict=True)
    return model


def _hf_forward(model: ViTModel, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Run ViTModel on NHWC images; returns (last_hidden_state, pooler_output)."""
    pixel_values = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
    with torch.no_grad():
        out = model(pixel_values=pixel_values)
    return out.last_hidden_state.numpy(), out.pooler_output.numpy()


def _assert_close(actual: np.ndarray, expected: np.ndarray) -> None:
    np.testing.assert_allclose(actual, expected, atol=ATOL, rtol=RTOL)


# ---------------------------------------------------------------------------
# transformers layout guard
# ---------------------------------------------------------------------------


def test_transformers_vit_state_dict_layout() -> None:
    """The module names the torch path relies on exist in this transformers."""
    config = ViTConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                       intermediate_size=16, image_size=8, patch_size=4)
    keys = set(ViTModel(config).state_dict())
    expected = {
        "embeddings.cls_token", "embeddings.position_embeddings",
        "embeddings.patch_embeddings.projection.weight",
        "layers.0.attention.q_proj.weight", "layers.0.attention.o_proj.bias",
        "layers.0.layernorm_before.weight", "layers.0.layernorm_after.bias",
        "layers.0.mlp.fc1.weight", "layers.0.mlp.fc2.bias",
        "layernorm.weight", "pooler.dense.weight",
    }
    assert expected <= keys, sorted(expected - keys)


# ---------------------------------------------------------------------------
# Reference vs. transformers
# ---------------------------------------------------------------------------

CASES = {
    "plain": lambda: (factory.make_official_params(), (16, 16)),
    "in21k": lambda: (factory.make_in21k_params(seed=1), (16, 16)),
    "in21k_narrow_repr": lambda: (
        factory.make_in21k_params(representation_size=24, seed=2), (16, 16)
    ),
    "finetuned_384": lambda: (factory.make_finetuned_384_params(seed=3), (24, 24)),
    "augreg": lambda: (factory.make_augreg_params(seed=4, layers=3, heads=2), (16, 16)),
    "non_square": lambda: (factory.make_official_params(image=(16, 24), seed=5), (16, 24)),
    "float64_params": lambda: (factory.make_official_params(dtype=np.float64, seed=6), (16, 16)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_reference_matches_transformers(case: str) -> None:
    params, image_size = CASES[case]()
    images = reference_inputs(image_size, batch=2, seed=0)
    ref = reference_forward(params, images)
    hidden_state, pooler = _hf_forward(_build_hf_model(params, image_size), images)

    grid = (image_size[0] // 4) * (image_size[1] // 4)
    assert ref.last_hidden_state.shape == (2, grid + 1, 32)
    assert ref.last_hidden_state.dtype == np.float64
    _assert_close(hidden_state, ref.last_hidden_state)
    _assert_close(ref.pooled, ref.last_hidden_state[:, 0])
    if "pre_logits/kernel" in params:
        _assert_close(pooler, ref.features)
    else:
        # Identity pooler: ViTModel applies tanh, the reference does not.
        _assert_close(pooler, np.tanh(ref.pooled))
        np.testing.assert_array_equal(ref.features, ref.pooled)

    expected_logits = ref.features @ params["head/kernel"].astype(np.float64) + params["head/bias"]
    assert ref.logits is not None
    np.testing.assert_allclose(ref.logits, expected_logits, rtol=1e-12, atol=1e-12)
    # Outputs must be non-trivial for the comparison to mean anything.
    assert np.std(ref.last_hidden_state) > 0.1
    assert np.std(ref.last_hidden_state[0] - ref.last_hidden_state[1]) > 0.05


def test_factory_makes_layer_norm_eps_observable() -> None:
    """A port using transformers' default eps (1e-12) must fail at 1e-5."""
    params, images = factory.make_official_params(), reference_inputs((16, 16))
    good = reference_forward(params, images, layer_norm_eps=1e-6)
    wrong = reference_forward(params, images, layer_norm_eps=1e-12)
    assert np.abs(good.last_hidden_state - wrong.last_hidden_state).max() > 20 * ATOL


def test_in21k_zero_head_gives_zero_logits() -> None:
    ref = reference_forward(factory.make_in21k_params(), reference_inputs((16, 16)))
    assert ref.logits is not None and not ref.logits.any()
    assert ref.features.shape == (2, 32) and np.abs(ref.features).max() < 1.0


def test_no_head_gives_none_logits() -> None:
    params = factory.make_official_params(num_classes=None)
    assert not any(k.startswith("head/") for k in params)
    assert reference_forward(params, reference_inputs((16, 16))).logits is None


def test_gap_classifier_matches_transformers_layers() -> None:
    """gap has no class token, so drive ViTModel's own modules by hand."""
    params = factory.make_official_params(classifier="gap", seed=7)
    assert "cls" not in params and params[factory.OFFICIAL_POS_KEY].shape == (1, 16, 32)
    images = reference_inputs((16, 16), seed=3)
    ref = reference_forward(params, images, classifier="gap")

    # Borrow a token-model skeleton for its layers; cls/pos are unused.
    token_params = dict(params, cls=np.zeros((1, 1, 32), np.float32))
    token_params[factory.OFFICIAL_POS_KEY] = np.zeros((1, 17, 32), np.float32)
    model = _build_hf_model(token_params, (16, 16))
    pixel_values = torch.from_numpy(images.transpose(0, 3, 1, 2).copy())
    with torch.no_grad():
        x = model.embeddings.patch_embeddings(pixel_values) + _t(params[factory.OFFICIAL_POS_KEY])
        for layer in model.layers:
            x = layer(x)
        x = model.layernorm(x)
    _assert_close(x.numpy(), ref.last_hidden_state)
    _assert_close(x.mean(dim=1).numpy(), ref.pooled)
    assert ref.last_hidden_state.shape == (2, 16, 32)


def test_gap_rejects_class_token_position_rows() -> None:
    params = factory.make_official_params()  # token layout: 17 rows
    with pytest.raises(ValueError, match="gap"):
        reference_forward(params, reference_inputs((16, 16)), classifier="gap")


# ---------------------------------------------------------------------------
# Position-embedding conventions
# ---------------------------------------------------------------------------


def _bv_normalised(params: dict[str, np.ndarray], stacked: bool) -> dict[str, np.ndarray]:
    """big_vision file -> official names, keeping big_vision's patches-only posemb."""
    bv = factory.to_big_vision_layout(params, stacked=stacked)
    official = factory.from_big_vision_layout(bv)
    official[factory.OFFICIAL_POS_KEY] = bv[factory.BIG_VISION_POS_KEY]
    return official


def test_patches_only_posemb_matches_official() -> None:
    params = factory.make_in21k_params(seed=8)
    images = reference_inputs((16, 16), seed=1)
    official = reference_forward(params, images)
    bv_params = _bv_normalised(params, stacked=False)
    assert bv_params[factory.OFFICIAL_POS_KEY].shape == (1, 16, 32)
    for layout in ("auto", "patches_only"):
        out = reference_forward(bv_params, images, posemb_layout=layout)
        np.testing.assert_allclose(out.last_hidden_state, official.last_hidden_state, atol=1e-6)
        np.testing.assert_allclose(out.features, official.features, atol=1e-6)


def test_forced_posemb_layout_must_match_rows() -> None:
    params = factory.make_official_params()
    with pytest.raises(ValueError, match="patches_only"):
        reference_forward(params, reference_inputs((16, 16)), posemb_layout="patches_only")


def test_posemb_row_mismatch_is_reported() -> None:
    params = factory.make_official_params(image=24)  # 37 rows
    with pytest.raises(ValueError, match="pos_embedding"):
        reference_forward(params, reference_inputs((16, 16)))


# ---------------------------------------------------------------------------
# Layout writers round-trip
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("stacked", [False, True])
def test_big_vision_layout_round_trip(stacked: bool) -> None:
    params = factory.make_official_params(layers=3, representation_size=32, seed=9)
    bv = factory.to_big_vision_layout(params, stacked=stacked)

    assert all(k.startswith("params/") for k in bv)
    assert bv["params/pos_embedding"].shape == (1, 16, 32)
    assert "params/Transformer/posembed_input/pos_embedding" not in bv
    np.testing.assert_array_equal(
        bv["params/cls"], params["cls"] + params[factory.OFFICIAL_POS_KEY][:, :1]
    )
    if stacked:
        scale = bv["params/Transformer/encoderblock/LayerNorm_0/scale"]
        assert scale.shape == (3, 32)
        q = bv["params/Transformer/encoderblock/MultiHeadDotProductAttention_0/query/kernel"]
        assert q.shape == (3, 32, 4, 8)
        assert not any("encoderblock_" in k for k in bv)
    else:
        assert "params/Transformer/encoderblock_2/MlpBlock_0/Dense_1/kernel" in bv
        assert "params/Transformer/encoderblock_0/LayerNorm_1/bias" in bv
    assert not any(name in k for k in bv for name in ("_1/query", "LayerNorm_2", "MlpBlock_3"))

    back = factory.from_big_vision_layout(bv)
    assert set(back) == set(params)
    for key, value in params.items():
        if key not in ("cls", factory.OFFICIAL_POS_KEY):
            np.testing.assert_array_equal(back[key], value, err_msg=key)
    # cls/pos are re-split (class row folded into cls) but the function is kept.
    images = reference_inputs((16, 16))
    a, b = reference_forward(params, images), reference_forward(back, images)
    np.testing.assert_allclose(b.last_hidden_state, a.last_hidden_state, atol=1e-6)
    np.testing.assert_allclose(b.logits, a.logits, atol=1e-6)


def test_big_vision_gap_keeps_posemb() -> None:
    params = factory.make_official_params(classifier="gap")
    bv = factory.to_big_vision_layout(params, stacked=True)
    assert "params/cls" not in bv
    np.testing.assert_array_equal(bv["params/pos_embedding"], params[factory.OFFICIAL_POS_KEY])


@pytest.mark.parametrize("with_state", [False, True])
def test_opt_target_layout_round_trip(tmp_path: Path, with_state: bool) -> None:
    params = factory.make_official_params()
    opt = factory.to_opt_target_layout(params, include_optimizer_state=with_state)
    path = factory.write_npz(tmp_path / "old_checkpoint", opt)
    assert path.name == "old_checkpoint"  # no ".npz" appended behind our back
    with np.load(path, allow_pickle=False) as loaded:
        restored = factory.strip_prefix(dict(loaded), "opt/target/")
        has_state = any(k.startswith("opt/state/") for k in loaded.files)
    assert has_state == with_state
    assert set(restored) == set(params)
    for key, value in params.items():
        np.testing.assert_array_equal(restored[key], value)
        assert restored[key].dtype == value.dtype


def test_write_npz_preserves_slash_keys(tmp_path: Path) -> None:
    params = factory.make_in21k_params()
    path = factory.write_npz(tmp_path / "vit.npz", params)
    with np.load(path, allow_pickle=False) as loaded:
        assert set(loaded.files) == set(params)
        key = "Transformer/encoderblock_1/MlpBlock_3/Dense_0/kernel"
        np.testing.assert_array_equal(loaded[key], params[key])


def test_factory_shapes_follow_official_conventions() -> None:
    p = factory.make_official_params(hidden=48, heads=6, mlp=96, patch=8, image=32, layers=1,
                                     representation_size=40, num_classes=7)
    attn = "Transformer/encoderblock_0/MultiHeadDotProductAttention_1"
    assert p["embedding/kernel"].shape == (8, 8, 3, 48)
    assert p["cls"].shape == (1, 1, 48)
    assert p[factory.OFFICIAL_POS_KEY].shape == (1, 17, 48)
    assert p[f"{attn}/query/kernel"].shape == (48, 6, 8)
    assert p[f"{attn}/value/bias"].shape == (6, 8)
    assert p[f"{attn}/out/kernel"].shape == (6, 8, 48)
    assert p["Transformer/encoderblock_0/MlpBlock_3/Dense_1/kernel"].shape == (96, 48)
    assert p["pre_logits/kernel"].shape == (48, 40)
    assert p["head/kernel"].shape == (40, 7)
    assert all(v.dtype == np.float32 for v in p.values())
    # Deterministic per seed, different across seeds.
    again = factory.make_official_params(hidden=48, heads=6, mlp=96, patch=8, image=32, layers=1,
                                         representation_size=40, num_classes=7)
    assert all(np.array_equal(p[k], again[k]) for k in p)
    other = factory.make_official_params(seed=1)
    assert not np.array_equal(other["cls"], factory.make_official_params()["cls"])


def test_hybrid_params_shapes_and_reference_refusal() -> None:
    p = factory.make_hybrid_params(image=32, resnet_width=8, resnet_layers=(1, 2))
    assert p["conv_root/kernel"].shape == (7, 7, 3, 8)
    assert p["gn_root/scale"].shape == (8,)
    assert p["block1/unit1/conv_proj/kernel"].shape == (1, 1, 8, 32)
    assert p["block2/unit1/conv3/kernel"].shape == (1, 1, 16, 64)
    assert "block2/unit2/conv_proj/kernel" not in p
    assert p["embedding/kernel"].shape == (1, 1, 64, 32)  # last stage: 4 * 16 channels
    assert p[factory.OFFICIAL_POS_KEY].shape == (1, 4 * 4 + 1, 32)  # 32px / stride 8
    nested = factory.make_hybrid_params(stem_prefix="embedding/")
    assert "embedding/conv_root/kernel" in nested and "embedding/block1/unit1/gn1/bias" in nested
    with pytest.raises(NotImplementedError, match="hybrid"):
        reference_forward(p, reference_inputs((32, 32)))


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        "Transformer/encoderblock_1/MultiHeadDotProductAttention_1/value/kernel",
        "Transformer/encoderblock_0/LayerNorm_2/scale",
        "Transformer/encoder_norm/bias",
        "embedding/bias",
        "cls",
        "Transformer/posembed_input/pos_embedding",
    ],
)
def test_missing_key_error_names_key(key: str) -> None:
    params = factory.make_official_params()
    del params[key]
    with pytest.raises(KeyError, match=key):
        reference_forward(params, reference_inputs((16, 16)))


def test_missing_middle_block_is_reported() -> None:
    params = factory.make_official_params(layers=3)
    params = {k: v for k, v in params.items() if not k.startswith("Transformer/encoderblock_1/")}
    with pytest.raises(KeyError, match="encoderblock_1"):
        reference_forward(params, reference_inputs((16, 16)))


@pytest.mark.parametrize(
    "key",
    [
        "Transformer/encoderblock_0/MultiHeadDotProductAttention_1/key/kernel",
        "Transformer/encoderblock_1/MultiHeadDotProductAttention_1/out/kernel",
        "Transformer/encoderblock_0/MlpBlock_3/Dense_1/bias",
        "Transformer/encoderblock_1/LayerNorm_0/bias",
        "embedding/bias",
        "cls",
        "head/kernel",
    ],
)
def test_misshaped_key_error_names_key(tmp_path: Path, key: str) -> None:
    params = factory.make_official_params()
    path = factory.write_misshaped_npz(tmp_path / "bad.npz", params, key)
    with np.load(path, allow_pickle=False) as loaded:
        bad = dict(loaded)
    assert bad[key].shape != params[key].shape and bad[key].ndim == params[key].ndim
    with pytest.raises(ValueError, match=key):
        reference_forward(bad, reference_inputs((16, 16)))


def test_num_heads_cross_check() -> None:
    params = factory.make_official_params(heads=4)
    reference_forward(params, reference_inputs((16, 16)), num_heads=4)
    with pytest.raises(ValueError, match="num_heads"):
        reference_forward(params, reference_inputs((16, 16)), num_heads=8)


def test_unknown_classifier_rejected() -> None:
    with pytest.raises(ValueError, match="classifier"):
        reference_forward(
            factory.make_official_params(), reference_inputs((16, 16)), classifier="map"
        )


# ---------------------------------------------------------------------------
# Broken-file writers (for the loader's error tests)
# ---------------------------------------------------------------------------


def test_not_a_zip_is_rejected_by_safe_load(tmp_path: Path) -> None:
    path = factory.write_not_a_zip(tmp_path / "x.npz")
    assert not zipfile.is_zipfile(path)
    with pytest.raises(ValueError):
        np.load(path, allow_pickle=False)


def test_truncated_npz_is_rejected(tmp_path: Path) -> None:
    path = factory.write_truncated_npz(tmp_path / "t.npz", factory.make_official_params())
    assert path.read_bytes()[:4] == b"PK\x03\x04"
    with pytest.raises(zipfile.BadZipFile):
        np.load(path, allow_pickle=False)


def test_object_array_npz_needs_pickle(tmp_path: Path) -> None:
    path = factory.write_object_array_npz(tmp_path / "o.npz", factory.make_official_params())
    with np.load(path, allow_pickle=False) as loaded:
        np.testing.assert_array_equal(loaded["cls"], factory.make_official_params()["cls"])
        with pytest.raises(ValueError, match="allow_pickle"):
            loaded["embedding/bias"]


def test_missing_key_writer(tmp_path: Path) -> None:
    params = factory.make_official_params()
    key = "Transformer/encoderblock_1/MlpBlock_3/Dense_0/bias"
    path = factory.write_missing_key_npz(tmp_path / "m.npz", params, key)
    with np.load(path, allow_pickle=False) as loaded:
        assert set(loaded.files) == set(params) - {key}


# ---------------------------------------------------------------------------
# Test inputs
# ---------------------------------------------------------------------------


def test_reference_inputs_are_deterministic_and_in_range() -> None:
    a = reference_inputs((24, 16), batch=3, seed=0)
    assert a.shape == (3, 24, 16, 3) and a.dtype == np.float32
    assert a.min() >= -1.0 and a.max() <= 1.0
    np.testing.assert_array_equal(a, reference_inputs((24, 16), batch=3, seed=0))
    assert not np.array_equal(a, reference_inputs((24, 16), batch=3, seed=1))
    assert not np.allclose(a[0], a[1])
    # Not saturated: clipping should touch only a small fraction of pixels.
    assert np.mean(np.abs(a) == 1.0) < 0.2


def test_reference_output_type() -> None:
    out = reference_forward(factory.make_official_params(), reference_inputs((16, 16)))
    assert isinstance(out, ReferenceOutput)
