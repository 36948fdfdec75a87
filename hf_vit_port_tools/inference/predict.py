"""Classifying image files, folders and URLs with a trained model, skipping the images that cannot be read."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass

import torch

from hf_vit_port.images import DEFAULT_MAX_PIXELS, BadImageError, expand_sources, open_image
from hf_vit_port.labels import labels_for_num_classes

_GENERIC_LABEL = re.compile(r"^LABEL_\d+$")


@dataclass
class Prediction:
    """The top classes of one image: `(label words, probability)` pairs, best first."""

    source: str
    top: list[tuple[str, float]]


def label_words(id2label: dict[int, str] | None, num_labels: int) -> list[str]:
    """
    Names of the model's classes in index order. Generic names (`LABEL_0`, ...) of a 1000- or 21843-class model
    are replaced by the ImageNet label words, since that is what those heads score.
    """
    names = [str((id2label or {}).get(i, f"LABEL_{i}")) for i in range(num_labels)]
    if all(_GENERIC_LABEL.match(name) for name in names):
        known = labels_for_num_classes(num_labels)
        if known is not None:
            return [known[i] for i in range(num_labels)]
    return names


@torch.no_grad()
def predict_images(
    sources: Iterable[str | os.PathLike],
    model: torch.nn.Module,
    processor,
    *,
    top_k: int = 5,
    batch_size: int = 16,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    device: str | torch.device | None = None,
    jpeg_decoder: str = "pil",
) -> tuple[list[Prediction], list[BadImageError]]:
    """
    Predictions for each image among `sources` (files, folders — expanded to the images inside — and URLs),
    and the errors of those that could not be read (which are skipped, not fatal). `jpeg_decoder`: see
    `hf_vit_port.images.JPEG_DECODERS`.
    """
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model = model.to(device).eval()
    names = label_words(getattr(model.config, "id2label", None), model.config.num_labels)
    k = max(1, min(top_k, len(names)))
    predictions: list[Prediction] = []
    errors: list[BadImageError] = []
    pending: list[tuple[str, object]] = []

    def flush() -> None:
        if not pending:
            return
        pixels = processor(images=[image for _, image in pending], return_tensors="pt")["pixel_values"]
        probabilities = model(pixel_values=pixels.to(device)).logits.float().softmax(dim=-1).cpu()
        scores, indices = probabilities.topk(k, dim=-1)
        for (source, _), row_scores, row_indices in zip(pending, scores.tolist(), indices.tolist()):
            predictions.append(Prediction(source, [(names[i], s) for i, s in zip(row_indices, row_scores)]))
        pending.clear()

    for source in expand_sources(sources):
        try:
            pending.append((source, open_image(source, max_pixels=max_pixels, jpeg_decoder=jpeg_decoder)))
        except BadImageError as error:
            errors.append(error)
        if len(pending) >= batch_size:
            flush()
    flush()
    return predictions, errors


def format_prediction(prediction: Prediction) -> str:
    """`source` then one `score  label words` line per class."""
    lines = [f"{prediction.source}:"]
    lines += [f"  {score:.4f}  {label}" for label, score in prediction.top]
    return "\n".join(lines)


__all__ = ["Prediction", "format_prediction", "label_words", "predict_images"]
