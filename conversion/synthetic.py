"""Random checkpoints in the exact official `.npz` layout, for demos and benchmarks where the real files are out of
reach (no network). The weights are meaningless; the key names, shapes and dtypes are those of the releases."""

import zipfile
from pathlib import Path

import numpy as np

from hf_vit_port import ViTPortConfig
from hf_vit_port.configuration_vit_port import to_pair


def synthetic_official_arrays(config: ViTPortConfig, *, seed: int = 0, zero_head: bool = False):
    """Yield (official key, float32 array) for `config`, one at a time so large files need little memory.
    `zero_head` gives the all-zero head of the 2020 imagenet21k releases."""
    rng = np.random.default_rng(seed)
    hidden, mlp, heads = config.hidden_size, config.intermediate_size, config.num_attention_heads
    head_dim = hidden // heads
    patch_h, patch_w = to_pair(config.patch_size)

    def normal(*shape: int, scale: float) -> np.ndarray:
        return (rng.standard_normal(shape, dtype=np.float32) * scale).astype(np.float32)

    grid_h, grid_w = config.grid_size
    yield "embedding/kernel", normal(patch_h, patch_w, config.num_channels, hidden, scale=(patch_h * patch_w * 3) ** -0.5)
    yield "embedding/bias", normal(hidden, scale=0.02)
    if config.classifier == "token":
        yield "cls", normal(1, 1, hidden, scale=0.02)
    yield "Transformer/posembed_input/pos_embedding", normal(1, config.num_prefix_tokens + grid_h * grid_w, hidden, scale=0.02)
    for index in range(config.num_hidden_layers):
        block = f"Transformer/encoderblock_{index}/"
        for norm in ("LayerNorm_0", "LayerNorm_2"):
            yield block + norm + "/scale", 1 + normal(hidden, scale=0.05)
            yield block + norm + "/bias", normal(hidden, scale=0.05)
        attention = block + "MultiHeadDotProductAttention_1/"
        for part in ("query", "key", "value"):
            yield attention + part + "/kernel", normal(hidden, heads, head_dim, scale=hidden**-0.5)
            yield attention + part + "/bias", normal(heads, head_dim, scale=0.02)
        yield attention + "out/kernel", normal(heads, head_dim, hidden, scale=hidden**-0.5)
        yield attention + "out/bias", normal(hidden, scale=0.02)
        yield block + "MlpBlock_3/Dense_0/kernel", normal(hidden, mlp, scale=hidden**-0.5)
        yield block + "MlpBlock_3/Dense_0/bias", normal(mlp, scale=0.02)
        yield block + "MlpBlock_3/Dense_1/kernel", normal(mlp, hidden, scale=mlp**-0.5)
        yield block + "MlpBlock_3/Dense_1/bias", normal(hidden, scale=0.02)
    yield "Transformer/encoder_norm/scale", 1 + normal(hidden, scale=0.05)
    yield "Transformer/encoder_norm/bias", normal(hidden, scale=0.05)
    if config.representation_size:
        yield "pre_logits/kernel", normal(hidden, config.representation_size, scale=hidden**-0.5)
        yield "pre_logits/bias", normal(config.representation_size, scale=0.02)
    if config.num_labels:
        head_scale = 0.0 if zero_head else 1.0
        yield "head/kernel", normal(config.pooled_size, config.num_labels, scale=head_scale * config.pooled_size**-0.5)
        yield "head/bias", normal(config.num_labels, scale=head_scale * 0.02)


def write_synthetic_npz(path: str | Path, config: ViTPortConfig, *, seed: int = 0, zero_head: bool = False) -> Path:
    """Write a synthetic checkpoint like `np.savez` does (an uncompressed zip of .npy files), array by array, so a
    ViT-L/16 file needs a few tens of MB of memory; the file appears only once complete."""
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for key, array in synthetic_official_arrays(config, seed=seed, zero_head=zero_head):
            with archive.open(key + ".npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, array, allow_pickle=False)
    partial.replace(path)
    return path
