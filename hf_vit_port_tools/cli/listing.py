"""`hf-vit-port list`: the registry of official checkpoints, printed without loading torch."""

from __future__ import annotations

from ..conversion.registry import CHECKPOINTS


def list_checkpoints() -> int:
    for name, checkpoint in CHECKPOINTS.items():
        top1 = f"{checkpoint.top1}%" if checkpoint.top1 is not None else "-"
        print(f"{name:<110} {checkpoint.variant:<6} {checkpoint.image_size:>4}px {checkpoint.num_classes:>6} "
              f"classes  top-1 {top1}  -> {checkpoint.hub_name}")
    return 0
