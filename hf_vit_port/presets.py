"""The official ViT variants and release defaults, decoded from one table.

A variant is named as in the papers and big_vision ("B/16": width B, 16-pixel patches). The official file
names ("ViT-B_16", "ViT-B_16-224") are accepted too, so a preset can be named straight from a checkpoint.
This module is the project's only table of variants: the configuration, the registry of official checkpoints and
the model cards all read it.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple


class Width(NamedTuple):
    """The encoder dimensions a width letter stands for, as published."""

    hidden_size: int
    intermediate_size: int
    num_attention_heads: int
    num_hidden_layers: int


WIDTHS: dict[str, Width] = {
    "Ti": Width(192, 768, 3, 12),
    "S": Width(384, 1536, 6, 12),
    "B": Width(768, 3072, 12, 12),
    "L": Width(1024, 4096, 16, 24),
    "H": Width(1280, 5120, 16, 32),
}

# The variants Google released weights for (S/32 only in AugReg); other letter/patch pairs still decode.
OFFICIAL_VARIANTS = ("Ti/16", "S/16", "S/32", "B/8", "B/16", "B/32", "L/16", "L/32", "H/14")

NUM_CLASSES_IMAGENET21K = 21843
NUM_CLASSES_IMAGENET1K = 1000

# dataset -> defaults of that release. representation_size "hidden" means "as wide as the encoder".
DATASETS: dict[str, dict[str, Any]] = {
    "imagenet21k": {"image_size": 224, "num_labels": NUM_CLASSES_IMAGENET21K, "representation_size": "hidden"},
    "imagenet21k+imagenet2012": {
        "image_size": 384,
        "num_labels": NUM_CLASSES_IMAGENET1K,
        "representation_size": None,
    },
    "augreg": {"image_size": 224, "num_labels": NUM_CLASSES_IMAGENET21K, "representation_size": None},
    "augreg+imagenet2012": {"image_size": 384, "num_labels": NUM_CLASSES_IMAGENET1K, "representation_size": None},
}

_VARIANT_PATTERN = re.compile(r"^(?:ViT-)?(?P<width>Ti|S|B|L|H)[/_](?P<patch>\d+)(?:-(?P<resolution>\d+))?$")


def parse_variant(name: str) -> tuple[str, int, int | None]:
    """Split "B/16", "ViT-B_16" or "ViT-B_16-224" into (width letter, patch size, resolution or None)."""
    match = _VARIANT_PATTERN.match(name.strip())
    if match is None:
        raise ValueError(
            f"Unknown ViT variant {name!r}: expected a width letter ({', '.join(WIDTHS)}) and a patch size, "
            f"like 'B/16' or 'ViT-B_16'; the official variants are {', '.join(OFFICIAL_VARIANTS)}."
        )
    resolution = match.group("resolution")
    return match.group("width"), int(match.group("patch")), int(resolution) if resolution else None


def variant_dimensions(variant: str) -> tuple[Width, int]:
    """(the width's dimensions, patch size) of a variant name."""
    width, patch_size, _ = parse_variant(variant)
    return WIDTHS[width], patch_size


def variant_of(hidden_size: int, num_hidden_layers: int, num_attention_heads: int, intermediate_size: int,
               patch_size: tuple[int, int]) -> str | None:
    """The official variant ("B/16") with these dimensions, or None for a custom shape."""
    dimensions = Width(hidden_size, intermediate_size, num_attention_heads, num_hidden_layers)
    for name in OFFICIAL_VARIANTS:
        width, patch = variant_dimensions(name)
        if width == dimensions and patch_size == (patch, patch):
            return name
    return None


def preset_kwargs(variant: str, dataset: str = "imagenet21k") -> dict[str, Any]:
    """Config keyword arguments for an official variant trained on `dataset`."""
    if dataset not in DATASETS:
        raise ValueError(f"Unknown dataset {dataset!r} for a ViT preset; choose one of {', '.join(DATASETS)}.")
    width, patch_size, resolution = parse_variant(variant)
    defaults = dict(DATASETS[dataset])
    if defaults["representation_size"] == "hidden":
        defaults["representation_size"] = WIDTHS[width].hidden_size
    if resolution is not None:
        defaults["image_size"] = resolution
    return {"patch_size": patch_size, **WIDTHS[width]._asdict(), **defaults}
