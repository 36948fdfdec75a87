"""Synthetic ViT ``.npz`` checkpoints in Google's real on-disk layouts.

Tests cannot download the official checkpoints, so this module writes small
stand-ins that use the *real* key names and shape conventions but tiny widths.
Values are random yet well scaled (fan-in normalised kernels, LayerNorm scales
around 1) so that activations stay O(1) and every output is non-trivial.

Layouts produced (all flat ``{"a/b/c": array}`` dicts, saved with
``np.savez``):

* official google-research ``vision_transformer`` files
  (:func:`make_official_params`), incl. in21k (``pre_logits`` + all-zero
  head), 384px fine-tuned and augreg-style convenience builders;
* big_vision files (:func:`to_big_vision_layout`): ``params/`` prefix,
  renumbered block modules, top-level ``pos_embedding`` covering patches only,
  optional scan-stacked blocks;
* old optimizer checkpoints (:func:`to_opt_target_layout`): ``opt/target/``;
* R50+ViT hybrids (:func:`make_hybrid_params`) with a ResNet stem;
* deliberately broken files for loader error tests (``write_*`` helpers).

Layout facts were checked against google-research/big_vision
``big_vision/models/vit.py`` (``_Model``, ``fix_old_checkpoints``,
``pyloop_to_scan``), ``big_vision/utils.py`` (``load_params``) and
google-research/vision_transformer ``vit_jax/models_vit.py`` /
``models_resnet.py``.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

Params = dict[str, np.ndarray]

# Official per-block module names and their big_vision (linen auto-naming)
# equivalents.  big_vision's fix_old_checkpoints relies on flax's
# convert_pre_linen to perform exactly this renumbering.
BIG_VISION_BLOCK_RENAMES = {
    "LayerNorm_0": "LayerNorm_0",
    "MultiHeadDotProductAttention_1": "MultiHeadDotProductAttention_0",
    "LayerNorm_2": "LayerNorm_1",
    "MlpBlock_3": "MlpBlock_0",
}
OFFICIAL_POS_KEY = "Transformer/posembed_input/pos_embedding"
BIG_VISION_POS_KEY = "params/pos_embedding"
BIG_VISION_PREFIX = "params/"
OPT_TARGET_PREFIX = "opt/target/"

_BLOCK_KEY = re.compile(r"^Transformer/encoderblock_(\d+)/([^/]+)/(.+)$")
_STACKED_BLOCK_KEY = re.compile(r"^Transformer/encoderblock/([^/]+)/(.+)$")


# ---------------------------------------------------------------------------
# Official layout
# ---------------------------------------------------------------------------


def _as_hw(size: int | tuple[int, int]) -> tuple[int, int]:
    """Accept ``16`` or ``(16, 24)`` for image / grid sizes."""
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


class _Init:
    """Deterministic initialisers that keep activations O(1)."""

    def __init__(self, seed: int, dtype: np.dtype) -> None:
        self.rng = np.random.default_rng(seed)
        self.dtype = dtype

    def _cast(self, array: np.ndarray) -> np.ndarray:
        return np.asarray(array, dtype=self.dtype)

    def kernel(self, shape: tuple[int, ...], fan_in: int) -> np.ndarray:
        """Normal(0, 1/fan_in): unit-variance outputs for unit-variance inputs."""
        return self._cast(self.rng.standard_normal(shape) / np.sqrt(fan_in))

    def bias(self, shape: tuple[int, ...], std: float = 0.1) -> np.ndarray:
        """Small non-zero biases so a dropped bias is detectable."""
        return self._cast(self.rng.standard_normal(shape) * std)

    def scale(self, shape: tuple[int, ...]) -> np.ndarray:
        """LayerNorm scale around 1 (but not 1, so a dropped scale shows)."""
        return self._cast(1.0 + 0.1 * self.rng.standard_normal(shape))

    def embedding(self, shape: tuple[int, ...], std: float = 0.5) -> np.ndarray:
        """cls / position embeddings, comparable in size to patch tokens."""
        return self._cast(self.rng.standard_normal(shape) * std)


def _layer_norm_params(init: _Init, prefix: str, hidden: int) -> Params:
    return {f"{prefix}/scale": init.scale((hidden,)), f"{prefix}/bias": init.bias((hidden,))}


def _encoder_block(init: _Init, index: int, hidden: int, heads: int, mlp: int) -> Params:
    """One ``Transformer/encoderblock_{index}`` with official shapes."""
    if hidden % heads:
        raise ValueError(f"hidden={hidden} is not divisible by heads={heads}")
    head_dim = hidden // heads
    block = f"Transformer/encoderblock_{index}"
    attn = f"{block}/MultiHeadDotProductAttention_1"
    params = _layer_norm_params(init, f"{block}/LayerNorm_0", hidden)
    for name in ("query", "key", "value"):
        params[f"{attn}/{name}/kernel"] = init.kernel((hidden, heads, head_dim), hidden)
        params[f"{attn}/{name}/bias"] = init.bias((heads, head_dim))
    params[f"{attn}/out/kernel"] = init.kernel((heads, head_dim, hidden), hidden)
    params[f"{attn}/out/bias"] = init.bias((hidden,))
    params.update(_layer_norm_params(init, f"{block}/LayerNorm_2", hidden))
    mlp_prefix = f"{block}/MlpBlock_3"
    params[f"{mlp_prefix}/Dense_0/kernel"] = init.kernel((hidden, mlp), hidden)
    params[f"{mlp_prefix}/Dense_0/bias"] = init.bias((mlp,))
    params[f"{mlp_prefix}/Dense_1/kernel"] = init.kernel((mlp, hidden), mlp)
    params[f"{mlp_prefix}/Dense_1/bias"] = init.bias((hidden,))
    return params


def _classifier_params(
    init: _Init,
    hidden: int,
    num_classes: int | None,
    representation_size: int | None,
    zero_head: bool,
) -> Params:
    """``pre_logits`` (optional) and ``head`` (optional) Dense layers."""
    params: Params = {}
    features = hidden
    if representation_size is not None:
        params["pre_logits/kernel"] = init.kernel((hidden, representation_size), hidden)
        params["pre_logits/bias"] = init.bias((representation_size,))
        features = representation_size
    if num_classes:
        if zero_head:
            # Released in21k checkpoints ship a head that is entirely zero.
            params["head/kernel"] = np.zeros((features, num_classes), dtype=init.dtype)
            params["head/bias"] = np.zeros((num_classes,), dtype=init.dtype)
        else:
            params["head/kernel"] = init.kernel((features, num_classes), features)
            params["head/bias"] = init.bias((num_classes,))
    return params


def make_official_params(
    *,
    hidden: int = 32,
    layers: int = 2,
    heads: int = 4,
    mlp: int = 64,
    patch: int = 4,
    image: int | tuple[int, int] = 16,
    num_classes: int | None = 10,
    representation_size: int | None = None,
    classifier: str = "token",
    zero_head: bool = False,
    seed: int = 0,
    dtype: np.dtype | type = np.float32,
    in_channels: int = 3,
    token_scale: float = 0.1,
) -> Params:
    """A random ViT in the official google-research ``.npz`` key layout.

    ``classifier="token"`` adds ``cls`` [1,1,D] and a ``1 + N`` row position
    embedding (row 0 = class token, then the patch grid row-major);
    ``classifier="gap"`` has no ``cls`` and ``N`` rows.  ``num_classes=None``
    (or 0) omits the head; ``representation_size`` adds ``pre_logits``.

    ``token_scale`` shrinks the patch-embedding kernel/bias, ``cls`` and the
    position embedding.  Block 0's first LayerNorm then sees a variance of
    roughly 1e-2, where its epsilon matters: a port that keeps transformers'
    default ``layer_norm_eps=1e-12`` instead of Flax's ``1e-6`` is off by
    ~1e-3, far above the 1e-5 comparison tolerance (with ``token_scale=1``
    the difference would hide below it).  Later blocks are O(1) regardless.
    """
    if classifier not in ("token", "gap"):
        raise ValueError(f"classifier must be 'token' or 'gap', got {classifier!r}")
    init = _Init(seed, np.dtype(dtype))
    height, width = _as_hw(image)
    num_patches = (height // patch) * (width // patch)
    fan_in = patch * patch * in_channels
    params: Params = {
        "embedding/kernel": init.kernel((patch, patch, in_channels, hidden), fan_in) * token_scale,
        "embedding/bias": init.bias((hidden,)) * token_scale,
    }
    rows = num_patches
    if classifier == "token":
        params["cls"] = init.embedding((1, 1, hidden)) * token_scale
        rows += 1
    params[OFFICIAL_POS_KEY] = init.embedding((1, rows, hidden)) * token_scale
    for index in range(layers):
        params.update(_encoder_block(init, index, hidden, heads, mlp))
    params.update(_layer_norm_params(init, "Transformer/encoder_norm", hidden))
    params.update(_classifier_params(init, hidden, num_classes, representation_size, zero_head))
    return params


def make_in21k_params(**overrides: object) -> Params:
    """ImageNet-21k pre-training style: ``pre_logits`` and an all-zero head.

    The real files have a 21843-class zero head; a small class count keeps
    the file tiny while preserving the "head is all zeros" property.
    """
    kwargs: dict[str, object] = {
        "representation_size": overrides.get("hidden", 32),
        "zero_head": True,
    }
    kwargs.update(overrides)
    return make_official_params(**kwargs)  # type: ignore[arg-type]


def make_finetuned_384_params(**overrides: object) -> Params:
    """384px fine-tuned style: larger grid than pre-training, no ``pre_logits``.

    The default 24px image with patch 4 gives a 6x6 grid (37 position rows),
    mirroring 384px/16 = 24x24 (577 rows) vs. 224px (197 rows).
    """
    kwargs: dict[str, object] = {"image": 24, "representation_size": None, "zero_head": False}
    kwargs.update(overrides)
    return make_official_params(**kwargs)  # type: ignore[arg-type]


def make_augreg_params(**overrides: object) -> Params:
    """augreg style: official names, a real (non-zero) head, no ``pre_logits``."""
    kwargs: dict[str, object] = {"num_classes": 12, "representation_size": None, "zero_head": False}
    kwargs.update(overrides)
    return make_official_params(**kwargs)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------
# Hybrid R50+ViT
# ---------------------------------------------------------------------------


def _group_norm_params(init: _Init, prefix: str, channels: int) -> Params:
    return {f"{prefix}/scale": init.scale((channels,)), f"{prefix}/bias": init.bias((channels,))}


def _resnet_unit(init: _Init, prefix: str, in_ch: int, features: int, project: bool) -> Params:
    """vit_jax ``ResidualUnit``: bottleneck convs (no bias) + GroupNorms."""
    out_ch = 4 * features
    params: Params = {}
    if project:
        params[f"{prefix}/conv_proj/kernel"] = init.kernel((1, 1, in_ch, out_ch), in_ch)
        params.update(_group_norm_params(init, f"{prefix}/gn_proj", out_ch))
    params[f"{prefix}/conv1/kernel"] = init.kernel((1, 1, in_ch, features), in_ch)
    params.update(_group_norm_params(init, f"{prefix}/gn1", features))
    params[f"{prefix}/conv2/kernel"] = init.kernel((3, 3, features, features), 9 * features)
    params.update(_group_norm_params(init, f"{prefix}/gn2", features))
    params[f"{prefix}/conv3/kernel"] = init.kernel((1, 1, features, out_ch), features)
    params.update(_group_norm_params(init, f"{prefix}/gn3", out_ch))
    return params


def make_hybrid_params(
    *,
    hidden: int = 32,
    layers: int = 2,
    heads: int = 4,
    mlp: int = 64,
    image: int = 32,
    patch: int = 1,
    resnet_width: int = 8,
    resnet_layers: tuple[int, ...] = (1, 1),
    num_classes: int | None = 10,
    representation_size: int | None = None,
    stem_prefix: str = "",
    seed: int = 0,
    dtype: np.dtype | type = np.float32,
) -> Params:
    """A small R50+ViT-style hybrid checkpoint.

    vit_jax names the ResNet stem at the *top level* of the tree:
    ``conv_root/kernel`` (7x7 stride 2, no bias), ``gn_root/{scale,bias}``,
    then ``block{s}/unit{u}/{conv1,gn1,conv2,gn2,conv3,gn3[,conv_proj,gn_proj]}``
    (``unit1`` of every stage projects).  ``stem_prefix`` (e.g.
    ``"embedding/"``) nests those keys instead, for callers that want to test
    a nested variant.  The transformer part is official-layout; the embedding
    conv consumes the last stage's ``4 * width * 2**(stages-1)`` channels and
    the grid is ``image / (4 * 2**(stages-1)) / patch`` (root conv + max-pool
    stride 4, every later stage stride 2).
    """
    init = _Init(seed + 1000, np.dtype(dtype))
    root_kernel = init.kernel((7, 7, 3, resnet_width), 7 * 7 * 3)
    params: Params = {f"{stem_prefix}conv_root/kernel": root_kernel}
    params.update(_group_norm_params(init, f"{stem_prefix}gn_root", resnet_width))
    in_ch = resnet_width
    for stage, units in enumerate(resnet_layers, start=1):
        features = resnet_width * 2 ** (stage - 1)
        for unit in range(1, units + 1):
            prefix = f"{stem_prefix}block{stage}/unit{unit}"
            params.update(_resnet_unit(init, prefix, in_ch, features, project=unit == 1))
            in_ch = 4 * features

    stride = 4 * 2 ** (len(resnet_layers) - 1) * patch
    if image % stride:
        raise ValueError(f"image={image} must be a multiple of the total stride {stride}")
    vit = make_official_params(
        hidden=hidden, layers=layers, heads=heads, mlp=mlp, patch=patch,
        image=image // (stride // patch), num_classes=num_classes,
        representation_size=representation_size, seed=seed, dtype=dtype, in_channels=in_ch,
    )
    params.update(vit)
    return params


# ---------------------------------------------------------------------------
# Alternative layouts
# ---------------------------------------------------------------------------


def to_opt_target_layout(
    params: Mapping[str, np.ndarray], *, include_optimizer_state: bool = False
) -> Params:
    """Old checkpoints saved from a ``flax.optim`` optimizer: ``opt/target/<key>``.

    With ``include_optimizer_state`` the file also carries ``opt/state/step``
    and per-parameter momentum buffers (``opt/state/param_states/<key>/momentum``)
    as a Momentum optimizer would; a loader must ignore them.
    """
    out: Params = {f"{OPT_TARGET_PREFIX}{key}": value for key, value in params.items()}
    if include_optimizer_state:
        out["opt/state/step"] = np.asarray(1000, dtype=np.int64)
        for key, value in params.items():
            out[f"opt/state/param_states/{key}/momentum"] = np.zeros_like(value)
    return out


def _rename_block_module(module: str) -> str:
    if module not in BIG_VISION_BLOCK_RENAMES:
        raise KeyError(f"unexpected encoder-block module {module!r}")
    return BIG_VISION_BLOCK_RENAMES[module]


def to_big_vision_layout(params: Mapping[str, np.ndarray], *, stacked: bool) -> Params:
    """Rewrite an official-layout tree as big_vision would save it.

    * Every key moves under ``params/`` (what ``big_vision.utils.load_params``
      unwraps).
    * Block modules are renumbered (``MultiHeadDotProductAttention_1`` ->
      ``_0``, ``LayerNorm_2`` -> ``LayerNorm_1``, ``MlpBlock_3`` ->
      ``MlpBlock_0``).
    * The position embedding moves to top-level ``params/pos_embedding`` and
      covers the patches only: big_vision adds it *before* prepending
      ``cls``.  Exactly like big_vision's ``fix_old_checkpoints`` the class
      row is folded into the token: ``cls' = cls + pos[:, :1]``, so the
      function computed is unchanged.
    * ``stacked=True`` produces the ``nn.scan`` layout: a single
      ``Transformer/encoderblock/<module>/<param>`` per parameter with a
      leading depth axis (big_vision ``pyloop_to_scan``).
    """
    out: Params = {}
    pos = np.asarray(params[OFFICIAL_POS_KEY])
    cls = params.get("cls")
    if cls is not None:
        out[f"{BIG_VISION_PREFIX}cls"] = (np.asarray(cls) + pos[:, :1]).astype(pos.dtype)
        pos = pos[:, 1:]
    out[BIG_VISION_POS_KEY] = pos

    blocks: dict[str, dict[int, np.ndarray]] = {}
    for key, value in params.items():
        if key in ("cls", OFFICIAL_POS_KEY):
            continue
        match = _BLOCK_KEY.match(key)
        if match is None:
            out[f"{BIG_VISION_PREFIX}{key}"] = value
            continue
        index, module, rest = int(match.group(1)), match.group(2), match.group(3)
        module = _rename_block_module(module)
        if stacked:
            blocks.setdefault(f"{module}/{rest}", {})[index] = value
        else:
            out[f"{BIG_VISION_PREFIX}Transformer/encoderblock_{index}/{module}/{rest}"] = value

    for name, per_layer in blocks.items():
        depth = len(per_layer)
        layers = [per_layer[i] for i in range(depth)]
        out[f"{BIG_VISION_PREFIX}Transformer/encoderblock/{name}"] = np.stack(layers)
    return out


def from_big_vision_layout(params: Mapping[str, np.ndarray]) -> Params:
    """Test-side inverse of :func:`to_big_vision_layout` (not the converter).

    Un-stacks scan blocks, restores official names and re-creates an official
    ``1 + N`` position embedding with a zero class row (the class row was
    folded into ``cls``; ``cls + 0`` reproduces the same sum).
    """
    out: Params = {}
    inverse = {v: k for k, v in BIG_VISION_BLOCK_RENAMES.items()}
    for key, value in params.items():
        if not key.startswith(BIG_VISION_PREFIX):
            raise KeyError(f"big_vision key without 'params/' prefix: {key!r}")
        key = key[len(BIG_VISION_PREFIX):]
        if (match := _STACKED_BLOCK_KEY.match(key)) is not None:
            module, rest = inverse[match.group(1)], match.group(2)
            for index, layer in enumerate(np.asarray(value)):
                out[f"Transformer/encoderblock_{index}/{module}/{rest}"] = layer
        elif (match := _BLOCK_KEY.match(key)) is not None:
            index, module, rest = match.group(1), inverse[match.group(2)], match.group(3)
            out[f"Transformer/encoderblock_{index}/{module}/{rest}"] = value
        elif key != "pos_embedding":
            out[key] = value
    pos = np.asarray(params[BIG_VISION_POS_KEY])
    if "cls" in out:
        pos = np.concatenate([np.zeros_like(pos[:, :1]), pos], axis=1)
    out[OFFICIAL_POS_KEY] = pos
    return out


# ---------------------------------------------------------------------------
# Writers
# ---------------------------------------------------------------------------


def write_npz(path: str | Path, params: Mapping[str, np.ndarray]) -> Path:
    """Save ``params`` with ``np.savez`` (uncompressed, like the releases).

    Writing through an open file handle keeps ``path`` exactly as given;
    ``np.savez(str_path)`` would append ``.npz`` to names lacking it.
    """
    path = Path(path)
    with path.open("wb") as handle:
        np.savez(handle, **dict(params))
    return path


def _npz_bytes(params: Mapping[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **dict(params))
    return buffer.getvalue()


def write_not_a_zip(path: str | Path) -> Path:
    """A file with an ``.npz`` name whose bytes are neither zip nor ``.npy``."""
    path = Path(path)
    path.write_bytes(b"this is not a numpy archive\n" * 8)
    return path


def write_truncated_npz(path: str | Path, params: Mapping[str, np.ndarray]) -> Path:
    """The first half of a valid archive: zip magic present, directory gone.

    Simulates an interrupted download.
    """
    path = Path(path)
    data = _npz_bytes(params)
    path.write_bytes(data[: len(data) // 2])
    return path


def write_object_array_npz(
    path: str | Path,
    params: Mapping[str, np.ndarray],
    key: str = "embedding/bias",
) -> Path:
    """A valid archive whose ``key`` entry is a pickled object array.

    Writing needs pickle; a safe loader (``allow_pickle=False``) must refuse
    to read that entry.
    """
    bad = dict(params)
    bad[key] = np.array([{"not": "a tensor"}, None], dtype=object)
    path = Path(path)
    with path.open("wb") as handle:
        np.savez(handle, allow_pickle=True, **bad)
    return path


def write_missing_key_npz(path: str | Path, params: Mapping[str, np.ndarray], key: str) -> Path:
    """A valid archive with ``key`` removed."""
    if key not in params:
        raise KeyError(f"cannot drop {key!r}: not in params")
    return write_npz(path, {k: v for k, v in params.items() if k != key})


def misshape(array: np.ndarray) -> np.ndarray:
    """Same rank, wrong size: one extra entry along the first axis."""
    array = np.asarray(array)
    if array.ndim == 0:
        return np.zeros((1,), dtype=array.dtype)
    pad = [(0, 1)] + [(0, 0)] * (array.ndim - 1)
    return np.pad(array, pad)


def write_misshaped_npz(
    path: str | Path,
    params: Mapping[str, np.ndarray],
    key: str,
    shape: tuple[int, ...] | None = None,
) -> Path:
    """A valid archive whose ``key`` has the wrong shape.

    ``shape`` picks the replacement shape (zeros); by default the first axis
    grows by one (:func:`misshape`), which keeps the rank so only a real
    shape check catches it.
    """
    if key not in params:
        raise KeyError(f"cannot misshape {key!r}: not in params")
    bad = dict(params)
    original = np.asarray(params[key])
    bad[key] = misshape(original) if shape is None else np.zeros(shape, dtype=original.dtype)
    return write_npz(path, bad)


def strip_prefix(params: Mapping[str, np.ndarray], prefix: str) -> Params:
    """Drop ``prefix`` from keys that carry it; keys without it are dropped."""
    return {k[len(prefix):]: v for k, v in params.items() if k.startswith(prefix)}


def block_keys(params: Iterable[str]) -> list[str]:
    """Sorted official per-block keys, handy for picking a key to break."""
    return sorted(k for k in params if _BLOCK_KEY.match(k))
