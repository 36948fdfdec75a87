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


def has_classification_head(config: Any) -> bool:
    """Whether the checkpoint holds a trained head: labels, and saved as a classifier (a `ViTModel` repo loaded as a
    classifier gets a random head, whose "predictions" would mean nothing)."""
    architectures = getattr(config, "architectures", None) or []
    saved_as_classifier = not architectures or any("ForImageClassification" in name for name in architectures)
    return config.num_labels > 0 and saved_as_classifier


def no_head_error(source: str | os.PathLike, what: str) -> ValueError:
    return ValueError(
        f"--model {source} has no classification head (num_labels=0, or saved as a base model: e.g. an imagenet21k "
        f"feature extractor), so there is nothing to {what}; `hf-vit-port embed IMAGES --model {source} --output "
        "FILE.parquet` writes its features, `plot-attention` shows where it looks"
    )


__all__ = ["has_classification_head", "load_model", "no_head_error"]
