"""Running `evaluate`, `predict`, `plot-patches` and `plot-attention`."""

from __future__ import annotations

import sys

from hf_vit_port.images import DEFAULT_MAX_PIXELS, open_image
from hf_vit_port.processing import image_processor_for

from ..inference.attention import attention_maps
from ..inference.evaluate import evaluate_dataset
from ..inference.models import has_classification_head, load_model, no_head_error
from ..inference.pictures import plot_attention as draw_attention
from ..inference.pictures import plot_patches as draw_patches
from ..inference.predict import format_prediction, label_words, predict_images
from ..options import (
    AttentionOptions,
    DatasetOptions,
    EvaluateOptions,
    LabelMapOptions,
    PatchesOptions,
    PredictOptions,
)


def evaluate(options: EvaluateOptions, dataset: DatasetOptions, label_map: LabelMapOptions) -> int:
    report = evaluate_dataset(options, dataset, label_map)
    print(report.format())
    if options.output:
        print(f"\nWrote {options.output}")
    return 0


def predict(options: PredictOptions) -> int:
    model = load_model(options.model)
    if not has_classification_head(model.config):
        raise no_head_error(options.model, "predict")
    processor = image_processor_for(options.model, model.config)
    max_pixels = options.max_pixels if options.max_pixels is not None else DEFAULT_MAX_PIXELS
    predictions, errors = predict_images(options.images, model, processor, top_k=options.top_k,
                                         batch_size=options.batch_size, max_pixels=max_pixels,
                                         jpeg_decoder=options.jpeg_decoder)
    for prediction in predictions:
        print(format_prediction(prediction))
    for error in errors:
        print(f"skipped {error}", file=sys.stderr)
    if not predictions:
        print("No image could be classified.", file=sys.stderr)
        return 1
    return 0


def plot_patches(options: PatchesOptions) -> int:
    path = draw_patches(open_image(options.image), options.output, patch_size=options.patch_size,
                        image_size=options.image_size)
    print(f"Wrote {path}")
    return 0


def plot_attention(options: AttentionOptions) -> int:
    model = load_model(options.model, attn_implementation="eager")
    processor = image_processor_for(options.model, model.config)
    image = open_image(options.image)
    pixels = processor(images=[image], return_tensors="pt")["pixel_values"]
    relevance, logits = attention_maps(model, pixels, head_fusion=options.head_fusion)
    title = ""
    if logits is not None and has_classification_head(model.config):
        probabilities = logits[0].float().softmax(-1)
        index = int(probabilities.argmax())
        title = f"{label_words(model.config.id2label, model.config.num_labels)[index]} ({probabilities[index]:.2f})"
    path = draw_attention(image, relevance[0].numpy(), options.output, title=title)
    print(f"Wrote {path}")
    return 0
