"""Loading a classifier for inference: any transformers image classifier (a saved repo or a Hub id), or an original
`.npz` file through the port's loader."""

from __future__ import annotations

import os
from typing import Any

from transformers import AutoModelForImageClassification, PreTrainedModel

import hf_vit_port  # noqa: F401  (registers vit_port with the Auto classes)
from hf_vit_port.loading import is_npz, load_checkpoint


def load_model(source: str | os.PathLike, *, attn_implementation: str | None = None) -> PreTrainedModel:
    """A classifier in eval mode, from a saved repo, a Hub id, or a `.npz` file."""
    kwargs: dict[str, Any] = {"attn_implementation": attn_implementation} if attn_implementation else {}
    if is_npz(source):
        model, _ = load_checkpoint(source)
        if attn_implementation is not None:
            model.set_attn_implementation(attn_implementation)
        return model
    try:
        return AutoModelForImageClassification.from_pretrained(str(source), **kwargs).eval()
    except OSError as error:  # transformers' several-line explanations of a missing repo or file: the gist, once
        first = next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)
        raise ValueError(f"--model {source}: {first}") from error


__all__ = ["load_model"]
