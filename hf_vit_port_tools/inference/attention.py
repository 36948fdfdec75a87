"""Attention rollout (Abnar & Zuidema, 2020): where in the image a ViT's output draws its information from.

Each layer's attention, averaged over heads, is mixed with the identity to account for the residual connection
(`0.5 A + 0.5 I`), its rows renormalised, and the layers multiplied from the first to the last. The row of the
CLS token in that product scores every patch; for "gap" models (no CLS token, the output is the mean of all
tokens) the rows are averaged instead, which is exactly each patch's share of the pooled output.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

from hf_vit_port.configuration_vit_port import to_pair

HeadFusion = Literal["mean", "max", "min"]


def attention_rollout(
    attentions: Sequence[torch.Tensor], *, head_fusion: HeadFusion = "mean", residual_weight: float = 0.5
) -> torch.Tensor:
    """
    The rollout `[batch, tokens, tokens]` of per-layer attention probabilities `[batch, heads, tokens, tokens]`
    (first layer first). Row `i` says how much output token `i` draws from each input token; rows sum to 1.
    """
    if not attentions:
        raise ValueError("attention_rollout needs the attention maps of at least one layer.")
    rollout = None
    for layer in attentions:
        layer = layer.to(torch.float64)
        if head_fusion == "mean":
            fused = layer.mean(dim=1)
        elif head_fusion == "max":
            fused = layer.amax(dim=1)
        elif head_fusion == "min":
            fused = layer.amin(dim=1)
        else:
            raise ValueError(f"head_fusion must be 'mean', 'max' or 'min', got {head_fusion!r}.")
        identity = torch.eye(fused.shape[-1], dtype=fused.dtype, device=fused.device)
        mixed = (1 - residual_weight) * fused + residual_weight * identity
        mixed = mixed / mixed.sum(dim=-1, keepdim=True)
        rollout = mixed if rollout is None else mixed @ rollout
    return rollout


def patch_relevance(rollout: torch.Tensor, *, num_prefix_tokens: int, grid_size: tuple[int, int]) -> torch.Tensor:
    """
    Relevance of each patch `[batch, grid_h, grid_w]`, normalised to sum to 1: the CLS row of the rollout over the
    patch columns, or for models without a CLS token the mean of all rows.
    """
    if num_prefix_tokens > 0:
        scores = rollout[:, 0, num_prefix_tokens:]
    else:
        scores = rollout.mean(dim=1)
    expected = grid_size[0] * grid_size[1]
    if scores.shape[-1] != expected:
        raise ValueError(f"{scores.shape[-1]} patch tokens do not fill a {grid_size[0]}x{grid_size[1]} grid.")
    scores = scores / scores.sum(dim=-1, keepdim=True)
    return scores.reshape(-1, *grid_size)


@torch.no_grad()
def attention_maps(
    model: torch.nn.Module, pixel_values: torch.Tensor, *, head_fusion: HeadFusion = "mean"
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """
    (patch relevance `[batch, grid_h, grid_w]`, logits) of a ViTPort model on `pixel_values`; logits are None for a
    model without a classification head (the rollout needs only the encoder). The model must use eager attention
    (`from_pretrained(..., attn_implementation="eager")`): fused kernels do not return the attention probabilities.
    """
    config = model.config
    if getattr(config, "_attn_implementation", "eager") != "eager":
        raise ValueError(
            "Attention maps need the attention probabilities: load the model with attn_implementation='eager'."
        )
    model.eval()
    headless = getattr(config, "num_labels", 1) == 0 and hasattr(model, "vit")
    outputs = (model.vit if headless else model)(pixel_values=pixel_values, output_attentions=True)
    if not outputs.attentions:
        raise ValueError("The model returned no attention maps.")
    rollout = attention_rollout(outputs.attentions, head_fusion=head_fusion)
    patch_h, patch_w = to_pair(config.patch_size)
    grid = (pixel_values.shape[-2] // patch_h, pixel_values.shape[-1] // patch_w)
    relevance = patch_relevance(rollout, num_prefix_tokens=config.num_prefix_tokens, grid_size=grid)
    return relevance.to(torch.float32), None if headless else outputs.logits


__all__ = ["HeadFusion", "attention_maps", "attention_rollout", "patch_relevance"]
