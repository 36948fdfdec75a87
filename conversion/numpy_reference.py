"""Independent NumPy forward pass of Google's original Vision Transformer.

This module is the ground truth that converted transformers models are checked
against.  It reads parameters directly in the *official* google-research
``vision_transformer`` key naming (the names inside the released ``.npz``
files, after any ``opt/target/`` or ``params/`` prefix has been stripped) and
re-implements the Flax forward pass with nothing but NumPy, so that it shares
no code, no weight re-layout and no framework with the PyTorch port it
validates.

Numerics: every parameter and activation is cast to float64 at the point of
use.  The port under test runs in float32 and is compared with tolerances of
about 1e-5; computing the reference in float64 makes its own rounding error
(~1e-15 relative) negligible, so any disagreement is the port's, not the
reference's.  Deep models (ViT-L, 24 blocks) accumulate float32 error of the
same order as the tolerance, which would otherwise be split between the two
sides.  Parameters are cast one tensor at a time (never the whole tree) so a
ViT-L checkpoint does not triple in memory.

Supported checkpoint semantics:

* classifier ``"token"`` (prepend ``cls``, pool token 0) and ``"gap"`` (no
  ``cls``; mean over all tokens after ``encoder_norm``);
* position embeddings either in the official layout (``[1, 1 + N, D]``, row 0
  belongs to the class token, added after concatenating it) or in big_vision's
  layout (``[1, N, D]``, patches only, added *before* the class token is
  prepended).  The layout is inferred from the row count unless forced; see
  :func:`reference_forward`;
* optional ``pre_logits`` (``tanh(x W + b)``) and optional ``head``.

Not supported (callers must convert first): big_vision block names
(``MultiHeadDotProductAttention_0`` ...), stacked/scan block layouts,
bfloat16 arrays stored by NumPy as raw ``|V2`` void data, hybrid ResNet stems
(``conv_root`` / ``block1/unit1/...``) and MAP-head pooling.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Literal

import numpy as np

__all__ = ["ReferenceOutput", "reference_forward", "reference_inputs"]

PosembLayout = Literal["auto", "official", "patches_only"]

# Official key names.  Block sub-module numbering (_0, _1, _2, _3) comes from
# the pre-linen Flax auto-naming used when the checkpoints were trained.
EMBED_KERNEL = "embedding/kernel"
EMBED_BIAS = "embedding/bias"
CLS = "cls"
POS_EMBEDDING = "Transformer/posembed_input/pos_embedding"
ENCODER_NORM = "Transformer/encoder_norm"
PRE_LOGITS = "pre_logits"
HEAD = "head"
BLOCK = "Transformer/encoderblock_{index}"
LN_ATTN = "LayerNorm_0"
ATTENTION = "MultiHeadDotProductAttention_1"
LN_MLP = "LayerNorm_2"
MLP = "MlpBlock_3"

_BLOCK_INDEX = re.compile(r"^Transformer/encoderblock_(\d+)/")
# Keys that only exist in R50+ViT hybrid checkpoints (ResNet stem).
_HYBRID_MARKERS = ("conv_root/kernel", "gn_root/scale")


@dataclasses.dataclass(frozen=True)
class ReferenceOutput:
    """Outputs of :func:`reference_forward`, all float64.

    Attributes:
        last_hidden_state: ``[B, T, D]`` tokens after ``encoder_norm``
            (``T = 1 + N`` for the token classifier, ``N`` for gap).
        pooled: ``[B, D]`` token 0 (``"token"``) or token mean (``"gap"``),
            i.e. the input of ``pre_logits``.
        features: ``[B, R]`` output of ``tanh(pre_logits)`` when the checkpoint
            has ``pre_logits``, else identical to ``pooled``.
        logits: ``[B, C]`` head output, or ``None`` if there is no head.
    """

    last_hidden_state: np.ndarray
    pooled: np.ndarray
    features: np.ndarray
    logits: np.ndarray | None


# ---------------------------------------------------------------------------
# Parameter access
# ---------------------------------------------------------------------------


def _get(
    params: Mapping[str, np.ndarray],
    key: str,
    shape: tuple[int, ...] | None = None,
) -> np.ndarray:
    """Fetch ``key`` as float64, with errors that name the offending key.

    ``shape`` (if given) is checked exactly: a reference must never rely on
    NumPy broadcasting to paper over a mis-shaped tensor.
    """
    if key not in params:
        raise KeyError(
            f"reference_forward: required parameter {key!r} is missing "
            f"(checkpoint has {len(params)} keys)"
        )
    array = np.asarray(params[key])
    if array.dtype.kind not in "fiu":
        # bfloat16 saved by np.savez shows up as void ('V2'); object arrays
        # would need pickle.  Neither is a plain float tensor.
        raise TypeError(
            f"reference_forward: parameter {key!r} has dtype {array.dtype}; "
            "expected a real numeric array (convert bfloat16/void data first)"
        )
    if shape is not None and array.shape != shape:
        raise ValueError(
            f"reference_forward: parameter {key!r} has shape {array.shape}, "
            f"expected {shape}"
        )
    return array.astype(np.float64)


def _has(params: Mapping[str, np.ndarray], prefix: str) -> bool:
    """True if the checkpoint holds ``prefix/kernel`` (an optional Dense)."""
    return f"{prefix}/kernel" in params


def _num_layers(params: Mapping[str, np.ndarray]) -> int:
    """Depth = highest ``encoderblock_{i}`` index + 1.

    Using the maximum (not the count) means a missing middle block surfaces
    as a missing-key error naming that block instead of being silently
    skipped.
    """
    indices = [
        int(match.group(1))
        for key in params
        if (match := _BLOCK_INDEX.match(key)) is not None
    ]
    if not indices:
        raise KeyError(
            "reference_forward: no 'Transformer/encoderblock_{i}/...' keys "
            "found; is this an official-layout ViT checkpoint?"
        )
    return max(indices) + 1


# ---------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------


def _layer_norm(
    x: np.ndarray, scale: np.ndarray, bias: np.ndarray, eps: float
) -> np.ndarray:
    """Flax LayerNorm over the last axis (biased variance, eps inside sqrt)."""
    mean = x.mean(axis=-1, keepdims=True)
    var = np.square(x - mean).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * scale + bias


def _gelu_tanh(x: np.ndarray) -> np.ndarray:
    """``flax.linen.gelu`` default (``approximate=True``), the ViT MLP act.

    Written with products and in-place updates: ``x**3`` goes through the generic ``pow`` and costs 10x the rest.
    """
    inner = x * x
    inner *= 0.044715 * x
    inner += x
    inner *= np.sqrt(2.0 / np.pi)
    np.tanh(inner, out=inner)
    inner += 1.0
    inner *= 0.5 * x
    return inner


def _softmax(x: np.ndarray) -> np.ndarray:
    """Numerically stable softmax over the last axis."""
    shifted = x - x.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def _embed_patches(params: Mapping[str, np.ndarray], images: np.ndarray) -> np.ndarray:
    """Patchify conv (kernel = stride = patch, VALID padding) -> ``[B, N, D]``.

    A stride-p conv with a p x p kernel is a matmul over non-overlapping
    patches.  The HWIO kernel flattens in (h, w, c) order, so patches are
    flattened the same way.  Flax convs are cross-correlations (no kernel
    flip), which is exactly what this matmul computes.
    """
    kernel = _get(params, EMBED_KERNEL)
    if kernel.ndim != 4:
        raise ValueError(
            f"reference_forward: {EMBED_KERNEL!r} must be an HWIO conv kernel, "
            f"got shape {kernel.shape}"
        )
    ph, pw, in_ch, hidden = kernel.shape
    bias = _get(params, EMBED_BIAS, (hidden,))
    batch, height, width, channels = images.shape
    if channels != in_ch:
        raise ValueError(
            f"reference_forward: images have {channels} channels but "
            f"{EMBED_KERNEL!r} expects {in_ch}"
        )
    gh, gw = height // ph, width // pw
    # VALID padding: trailing pixels that do not fill a whole patch are
    # dropped, as in the original Flax model.
    cropped = images[:, : gh * ph, : gw * pw, :]
    patches = cropped.reshape(batch, gh, ph, gw, pw, channels)
    patches = patches.transpose(0, 1, 3, 2, 4, 5).reshape(batch, gh * gw, -1)
    return patches @ kernel.reshape(ph * pw * in_ch, hidden) + bias


def _resolve_posemb_layout(
    rows: int, num_patches: int, classifier: str, layout: PosembLayout
) -> Literal["official", "patches_only"]:
    """Decide whether the pos embedding includes a class-token row."""
    if classifier == "gap":
        # No class token: both conventions coincide and need N rows.
        if rows != num_patches:
            raise ValueError(
                f"reference_forward: {POS_EMBEDDING!r} has {rows} rows; a 'gap' "
                f"model with {num_patches} patches needs exactly {num_patches}"
            )
        return "patches_only"
    expected = {"official": num_patches + 1, "patches_only": num_patches}
    if layout == "auto":
        for name, count in expected.items():
            if rows == count:
                return name  # type: ignore[return-value]
        raise ValueError(
            f"reference_forward: {POS_EMBEDDING!r} has {rows} rows; with "
            f"{num_patches} patches expected {num_patches + 1} (official, with "
            f"class-token row) or {num_patches} (big_vision, patches only)"
        )
    if rows != expected[layout]:
        raise ValueError(
            f"reference_forward: {POS_EMBEDDING!r} has {rows} rows; layout "
            f"{layout!r} with {num_patches} patches needs {expected[layout]}"
        )
    return layout


def _embed(
    params: Mapping[str, np.ndarray],
    images: np.ndarray,
    classifier: str,
    posemb_layout: PosembLayout,
) -> np.ndarray:
    """Patch embedding + optional class token + position embedding."""
    x = _embed_patches(params, images)
    batch, num_patches, hidden = x.shape
    pos = _get(params, POS_EMBEDDING)
    if pos.ndim != 3 or pos.shape[0] != 1 or pos.shape[2] != hidden:
        raise ValueError(
            f"reference_forward: parameter {POS_EMBEDDING!r} has shape "
            f"{pos.shape}, expected (1, T, {hidden})"
        )
    layout = _resolve_posemb_layout(pos.shape[1], num_patches, classifier, posemb_layout)
    if classifier == "gap":
        return x + pos
    cls = np.broadcast_to(_get(params, CLS, (1, 1, hidden)), (batch, 1, hidden))
    if layout == "official":
        # vision_transformer: concat [cls] first, then add 1+N embeddings.
        return np.concatenate([cls, x], axis=1) + pos
    # big_vision: add N patch embeddings first, then prepend a bare [cls].
    return np.concatenate([cls, x + pos], axis=1)


def _input_kernel(params: Mapping[str, np.ndarray], key: str, hidden: int, output_axes: str) -> np.ndarray:
    """A kernel whose first axis is the `hidden` input, followed by `output_axes` (named for the message)."""
    kernel = _get(params, key)
    if kernel.ndim != 1 + len(output_axes.split(",")) or kernel.shape[0] != hidden:
        raise ValueError(
            f"reference_forward: parameter {key!r} has shape {kernel.shape}, expected ({hidden}, {output_axes})"
        )
    return kernel


def _attention(
    params: Mapping[str, np.ndarray],
    prefix: str,
    y: np.ndarray,
    num_heads: int | None,
) -> np.ndarray:
    """Flax ``MultiHeadDotProductAttention`` self-attention on ``[B, T, D]``."""
    hidden = y.shape[-1]
    q_kernel = _input_kernel(params, f"{prefix}/query/kernel", hidden, "heads, head_dim")
    heads, head_dim = q_kernel.shape[1:]
    if num_heads is not None and num_heads != heads:
        raise ValueError(
            f"reference_forward: num_heads={num_heads} but {prefix}/query/kernel "
            f"has {heads} heads (shape {q_kernel.shape})"
        )

    def project(name: str, kernel: np.ndarray | None = None) -> np.ndarray:
        """``y @ W + b`` for q/k/v, returned as ``[B, H, T, hd]``."""
        if kernel is None:
            kernel = _get(params, f"{prefix}/{name}/kernel", (hidden, heads, head_dim))
        bias = _get(params, f"{prefix}/{name}/bias", (heads, head_dim))
        out = y @ kernel.reshape(hidden, heads * head_dim) + bias.reshape(-1)
        return out.reshape(*y.shape[:2], heads, head_dim).transpose(0, 2, 1, 3)

    q = project("query", q_kernel)
    k = project("key")
    v = project("value")
    # Flax scales the query by 1/sqrt(head_dim) before the dot product.
    weights = _softmax((q / np.sqrt(head_dim)) @ k.transpose(0, 1, 3, 2))
    context = (weights @ v).transpose(0, 2, 1, 3)  # [B, T, H, hd]
    out_kernel = _get(params, f"{prefix}/out/kernel", (heads, head_dim, hidden))
    out_bias = _get(params, f"{prefix}/out/bias", (hidden,))
    # The out projection contracts over both heads and head_dim.
    flat = context.reshape(*context.shape[:2], heads * head_dim)
    return flat @ out_kernel.reshape(heads * head_dim, hidden) + out_bias


def _mlp(params: Mapping[str, np.ndarray], prefix: str, y: np.ndarray) -> np.ndarray:
    """``Dense_1(gelu_tanh(Dense_0(y)))``."""
    hidden = y.shape[-1]
    w0 = _input_kernel(params, f"{prefix}/Dense_0/kernel", hidden, "mlp_dim")
    mlp_dim = w0.shape[1]
    b0 = _get(params, f"{prefix}/Dense_0/bias", (mlp_dim,))
    w1 = _get(params, f"{prefix}/Dense_1/kernel", (mlp_dim, hidden))
    b1 = _get(params, f"{prefix}/Dense_1/bias", (hidden,))
    return _gelu_tanh(y @ w0 + b0) @ w1 + b1


def _norm(
    params: Mapping[str, np.ndarray], prefix: str, x: np.ndarray, eps: float
) -> np.ndarray:
    """Apply the LayerNorm whose ``scale``/``bias`` live under ``prefix``."""
    hidden = x.shape[-1]
    scale = _get(params, f"{prefix}/scale", (hidden,))
    bias = _get(params, f"{prefix}/bias", (hidden,))
    return _layer_norm(x, scale, bias, eps)


def _encoder_block(
    params: Mapping[str, np.ndarray],
    index: int,
    x: np.ndarray,
    num_heads: int | None,
    eps: float,
) -> np.ndarray:
    """Pre-LN transformer block: ``x + Attn(LN0(x))`` then ``x + MLP(LN2(x))``."""
    prefix = BLOCK.format(index=index)
    y = _norm(params, f"{prefix}/{LN_ATTN}", x, eps)
    x = x + _attention(params, f"{prefix}/{ATTENTION}", y, num_heads)
    y = _norm(params, f"{prefix}/{LN_MLP}", x, eps)
    return x + _mlp(params, f"{prefix}/{MLP}", y)


def _dense(params: Mapping[str, np.ndarray], prefix: str, x: np.ndarray) -> np.ndarray:
    """Optional classifier-side Dense layer (``pre_logits`` or ``head``)."""
    kernel = _get(params, f"{prefix}/kernel")
    if kernel.ndim != 2 or kernel.shape[0] != x.shape[-1]:
        raise ValueError(
            f"reference_forward: parameter {prefix + '/kernel'!r} has shape "
            f"{kernel.shape}, expected ({x.shape[-1]}, out_features)"
        )
    bias = _get(params, f"{prefix}/bias", (kernel.shape[1],))
    return x @ kernel + bias


# ---------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------


def reference_forward(
    params: Mapping[str, np.ndarray],
    images: np.ndarray,
    *,
    num_heads: int | None = None,
    classifier: str = "token",
    layer_norm_eps: float = 1e-6,
    posemb_layout: PosembLayout = "auto",
) -> ReferenceOutput:
    """Run the original ViT forward pass in float64 NumPy.

    Args:
        params: flat ``{official key: array}`` mapping (e.g. ``dict(np.load(f))``
            after stripping an ``opt/target/`` prefix).  Extra keys are ignored.
        images: ``[B, H, W, C]`` NHWC pixels already normalised to ``[-1, 1]``.
        num_heads: optional cross-check; the head count is always read from
            the query kernel shape ``[D, H, head_dim]``.
        classifier: ``"token"`` (class token, pool token 0) or ``"gap"``
            (no class token, pool the mean of all tokens).
        layer_norm_eps: epsilon of every LayerNorm (Flax default ``1e-6``).
        posemb_layout: ``"official"`` (``[1, 1+N, D]``, added after the class
            token is prepended), ``"patches_only"`` (big_vision: ``[1, N, D]``
            added to the patches before the class token is prepended), or
            ``"auto"`` to decide from the row count.  Irrelevant for ``"gap"``.

    Returns:
        A :class:`ReferenceOutput` of float64 arrays.

    Raises:
        KeyError: a required parameter is missing (the message names it).
        ValueError: a parameter or the input has an inconsistent shape.
        TypeError: a parameter is not a real numeric array.
        NotImplementedError: hybrid (ResNet-stem) checkpoints.
    """
    if classifier not in ("token", "gap"):
        raise ValueError(
            f"reference_forward: classifier must be 'token' or 'gap', got {classifier!r}"
        )
    if any(marker in params for marker in _HYBRID_MARKERS):
        raise NotImplementedError(
            "reference_forward: hybrid R50+ViT checkpoints (conv_root/gn_root "
            "ResNet stem) are not supported by the NumPy reference"
        )
    images = np.asarray(images, dtype=np.float64)
    if images.ndim != 4:
        raise ValueError(f"reference_forward: images must be NHWC, got shape {images.shape}")

    x = _embed(params, images, classifier, posemb_layout)
    for index in range(_num_layers(params)):
        x = _encoder_block(params, index, x, num_heads, layer_norm_eps)
    hidden_state = _norm(params, ENCODER_NORM, x, layer_norm_eps)

    pooled = hidden_state[:, 0] if classifier == "token" else hidden_state.mean(axis=1)
    features = np.tanh(_dense(params, PRE_LOGITS, pooled)) if _has(params, PRE_LOGITS) else pooled
    logits = _dense(params, HEAD, features) if _has(params, HEAD) else None
    return ReferenceOutput(
        last_hidden_state=hidden_state, pooled=pooled, features=features, logits=logits
    )


def reference_inputs(
    image_size: tuple[int, int], batch: int = 2, seed: int = 0
) -> np.ndarray:
    """Deterministic NHWC test images in ``[-1, 1]``, dtype float32.

    Each image mixes smooth structure (linear ramps and a low-frequency
    sinusoid, different per channel and per sample) with Gaussian noise whose
    strength alternates between samples, so both low- and high-frequency
    paths through the patch embedding are exercised and samples in a batch
    differ.  float32 is returned because that is what a float32 port is fed;
    the reference casts to float64 itself, so both sides see identical
    pixel values.
    """
    height, width = image_size
    rng = np.random.default_rng(seed)
    ys, xs = np.meshgrid(
        np.linspace(-1.0, 1.0, height), np.linspace(-1.0, 1.0, width), indexing="ij"
    )
    images = np.empty((batch, height, width, 3), dtype=np.float64)
    for b in range(batch):
        ramp_x, ramp_y = rng.uniform(-0.6, 0.6, size=(2, 3))
        freq = rng.uniform(0.5, 2.5, size=(3, 2))
        phase = rng.uniform(0.0, 2 * np.pi, size=3)
        noise_level = 0.15 if b % 2 == 0 else 0.6
        for c in range(3):
            smooth = ramp_x[c] * xs + ramp_y[c] * ys
            smooth += 0.4 * np.sin(np.pi * (freq[c, 0] * xs + freq[c, 1] * ys) + phase[c])
            images[b, :, :, c] = smooth
        images[b] += noise_level * rng.standard_normal((height, width, 3))
    return np.clip(images, -1.0, 1.0).astype(np.float32)
