"""Training a small ViT from scratch: the recipe of the Keras "Image classification with Vision Transformer" example.

The example (Khalid Salama, keras.io, 2021) trains on CIFAR-100: inputs resized to 72x72, 6x6 patches (144
tokens), width 64, 8 blocks of 4 heads with MLP units [128, 64], dropout 0.1, AdamW (learning rate 1e-3, weight
decay 1e-4, constant), batch 256, 10% of the training set held out for validation, the best checkpoint by
validation accuracy evaluated on the test set; augmentation: normalisation with the training set's statistics,
resizing, horizontal flips, rotations up to 0.02 turns and zooms of +-20%. It reports about 55% top-1 and 82%
top-5 test accuracy after 100 epochs. The defaults of `ScratchOptions`, `SCRATCH_TRAINING_DEFAULTS` and
`SCRATCH_DATA_DEFAULTS` are that recipe.

What differs here, because this is the ViT of the paper and not the example's variant (see docs/training.md):
the image is pooled by a CLS token (or "gap") into a single linear head, where the example flattens all 144
tokens into a 2048-1024 MLP head with dropout 0.5; attention heads are 64/4 = 16 wide where Keras' `key_dim=64`
makes each head 64 wide; Trainer's AdamW does not decay biases and LayerNorm scales, Keras' decays everything.
"""

from __future__ import annotations

from typing import Any

from hf_vit_port import ViTPortConfig, ViTPortForImageClassification
from hf_vit_port.processing import make_image_processor

from ..data import ImageClassificationData, channel_statistics, prepare_data
from ..hub.cards import RunDescription
from ..options import SCRATCH_DATA_DEFAULTS, SCRATCH_TRAINING_DEFAULTS, DataOptions, ScratchOptions, TrainingOptions
from .augment import keras_augmentation
from .trainer import TrainingRun, build_run, run_training


def scratch_config(recipe: ScratchOptions, id2label: dict[int, str], **overrides: Any) -> ViTPortConfig:
    """The model configuration of `recipe` for the labels `id2label`; `overrides` change any config field."""
    fields = dict(
        image_size=recipe.image_size,
        patch_size=recipe.patch_size,
        hidden_size=recipe.hidden_size,
        num_hidden_layers=recipe.num_hidden_layers,
        num_attention_heads=recipe.num_attention_heads,
        intermediate_size=recipe.intermediate_size,
        hidden_dropout_prob=recipe.dropout,
        attention_probs_dropout_prob=recipe.dropout,
        classifier=recipe.classifier,
        hidden_act=recipe.hidden_act,
        representation_size=None,
        id2label=dict(id2label),
        label2id={name: index for index, name in id2label.items()},
    )
    config = ViTPortConfig(**{**fields, **overrides})
    config.validate_architecture()
    return config


def recipe_options(output_dir: str, **overrides: Any) -> TrainingOptions:
    """`TrainingOptions` of the Keras recipe: constant learning rate, no warm-up, no gradient clipping."""
    return TrainingOptions(output_dir=output_dir, **{**SCRATCH_TRAINING_DEFAULTS, **overrides})


def recipe_data(**overrides: Any) -> DataOptions:
    """`DataOptions` of the Keras recipe (CIFAR-100, 10% of the training split held out)."""
    return DataOptions(**{**SCRATCH_DATA_DEFAULTS, **overrides})


def prepare_from_scratch(
    recipe: ScratchOptions,
    data_options: DataOptions,
    options: TrainingOptions,
    *,
    data: ImageClassificationData | None = None,
) -> TrainingRun:
    """
    A freshly initialised ViTPort model of `recipe` and its run on the dataset, untrained. The image processor
    resizes to the recipe's size and normalises with the training set's per-channel statistics (the example's
    adapted `Normalization` layer); it is saved with the model, so inference preprocesses the same way.
    """
    if data is None:
        data = prepare_data(data_options, seed=options.seed)
    config = scratch_config(recipe, data.id2label)
    model = ViTPortForImageClassification(config)
    mean, std = channel_statistics(data.train, data.image_column, max_samples=recipe.normalisation_samples,
                                   seed=options.seed)
    processor = make_image_processor(config)
    processor.image_mean, processor.image_std = mean, std
    description = RunDescription(
        title=f"ViT ({config.hidden_size} wide, {config.num_hidden_layers} layers, "
        f"{config.patch_size}px patches) trained from scratch on {data.name}",
        dataset=data.name,
        recipe=(
            'The recipe of the Keras example "Image classification with Vision Transformer": '
            f"{config.image_size}x{config.image_size} inputs, AdamW (lr {options.learning_rate}, weight decay "
            f"{options.weight_decay}, constant), batch {options.batch_size}, normalisation with the training "
            f"set's statistics, {_augmentation_words(recipe)}."
        ),
        notes=[
            f"Classifier: '{config.classifier}' pooling into a linear head (the Keras example flattens all tokens "
            "into an MLP head).",
        ],
    )
    augmentation = keras_augmentation(rotation=recipe.rotation, zoom=recipe.zoom, flip=recipe.flip) if recipe.augment else None
    return build_run(model, processor, data, options, description, tensor_augment=augmentation)


def _augmentation_words(recipe: ScratchOptions) -> str:
    if not recipe.augment:
        return "no augmentation"
    flips = "flips, " if recipe.flip else "no flips, "
    return f"{flips}rotations up to {recipe.rotation} turns and zooms of +-{recipe.zoom:.0%}"


def train_from_scratch(recipe: ScratchOptions, data_options: DataOptions, options: TrainingOptions) -> dict[str, float]:
    """Train `recipe` to a saved repo in `options.output_dir`; returns the scores."""
    return run_training(prepare_from_scratch(recipe, data_options, options))


__all__ = ["prepare_from_scratch", "recipe_data", "recipe_options", "scratch_config", "train_from_scratch"]
