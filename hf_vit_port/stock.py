"""The bridge to transformers' own ViT: its configuration and weight names for a ViTPort model.

Stock `ViTModel` has no pre-logits layer of its own, but its pooler (Dense + tanh on the CLS token) is exactly the
original pre-logits layer, so an ImageNet-21k checkpoint maps onto `ViTModel` with the pooler holding it.
Stock `ViTForImageClassification` has no pooler, so only checkpoints without pre-logits map onto it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch
from transformers import PretrainedConfig

from .configuration_vit_port import ViTPortConfig, to_pair

if TYPE_CHECKING:
    from transformers import ViTConfig

_LAYER_RENAMES = {
    "norm1.": "layernorm_before.",
    "norm2.": "layernorm_after.",
    "attention.proj.": "attention.o_proj.",
}


def stock_config(config: ViTPortConfig, *, for_classification: bool) -> ViTConfig:
    """A `ViTConfig` computing exactly what `config` does (tanh-GELU, eps 1e-6, the pre-logits as pooler)."""
    # Imported here: transformers' ViT package means importing `transformers.models`, whose folder scan an
    # unverified vit_port conversion should not pay for.
    from transformers import ViTConfig

    if config.classifier != "token":
        raise ValueError("transformers' ViT pools the CLS token only; a 'gap' model has no stock equivalent.")
    if for_classification and config.representation_size is not None:
        raise ValueError(
            "transformers' ViTForImageClassification has no pre-logits layer; a model with pre-logits maps onto "
            "ViTModel (its pooler holds the pre-logits layer) instead."
        )
    return ViTConfig(
        image_size=config.image_size if isinstance(config.image_size, int) else list(config.image_size),
        patch_size=config.patch_size if isinstance(config.patch_size, int) else list(config.patch_size),
        num_channels=config.num_channels,
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_attention_heads=config.num_attention_heads,
        num_hidden_layers=config.num_hidden_layers,
        hidden_act=config.hidden_act,
        layer_norm_eps=config.layer_norm_eps,
        hidden_dropout_prob=config.hidden_dropout_prob,
        attention_probs_dropout_prob=config.attention_probs_dropout_prob,
        qkv_bias=config.qkv_bias,
        pooler_output_size=config.representation_size or config.hidden_size,
        pooler_act="tanh",
        id2label=dict(config.id2label) if for_classification else None,
        label2id=dict(config.label2id) if for_classification else None,
    )


def stock_image_processor(config: PretrainedConfig) -> Any:
    """
    transformers' own `ViTImageProcessor` set up as close to the original preprocessing as it goes: bilinear resize
    to the model's resolution, RGB scaled to [-1, 1]. PIL's bilinear filter antialiases when it shrinks, which the
    original pipeline does not (see `ViTPortImageProcessor`); `--format stock` repos carry it all the same, so that
    they need nothing but transformers. The PIL backend is used because torchvision is not a dependency; it saves as
    `ViTImageProcessor`.
    """
    from transformers.models.vit.image_processing_pil_vit import ViTImageProcessorPil

    height, width = to_pair(config.image_size)
    return ViTImageProcessorPil(
        do_resize=True,
        size={"height": height, "width": width},
        resample=2,  # PIL.Image.BILINEAR
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )


def to_stock_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """
    Rename (and split the fused qkv of) a ViTPort state dict into transformers ViT names. Works for both
    `ViTPortModel` keys (giving `ViTModel` keys) and `ViTPortForImageClassification` keys (giving
    `ViTForImageClassification` keys, with the `vit.` prefix).
    """
    stock = {}
    for name, tensor in state_dict.items():
        prefix = "vit." if name.startswith("vit.") else ""
        local = name[len(prefix) :]
        if local.startswith("layers.") and ".attention.qkv." in local:
            head, kind = local.split(".attention.qkv.")
            for part, chunk in zip(("q_proj", "k_proj", "v_proj"), tensor.chunk(3, dim=0)):
                stock[f"{prefix}{head}.attention.{part}.{kind}"] = chunk.clone()
            continue
        if local.startswith("layers."):
            for old, new in _LAYER_RENAMES.items():
                local = local.replace(f".{old}", f".{new}")
        elif local.startswith("embeddings.patch_embeddings."):
            local = local.replace("patch_embeddings.", "patch_embeddings.projection.")
        elif local.startswith("pre_logits."):
            local = local.replace("pre_logits.", "pooler.dense.")
        stock[prefix + local] = tensor
    return stock
