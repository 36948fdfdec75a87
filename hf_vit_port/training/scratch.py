"""Training a small ViT from scratch: the recipe of the Keras "Image classification with Vision Transformer" example.

The example (Khalid Salama, keras.io, 2021) trains on CIFAR-100: inputs resized to 72x72, 6x6 patches (144
tokens), width 64, 8 blocks of 4 heads with MLP units [128, 64], dropout 0.1, AdamW (learning rate 1e-3, weight
decay 1e-4, constant), batch 256, 10% of the training set held out for validation, the best checkpoint by
validation accuracy evaluated on the test set; augmentation: normalisation with the training set's statistics,
resizing, horizontal flips, rotations up to 0.02 turns and zooms of +-20%. It reports about 55% top-1 and 82%
top-5 test accuracy after 100 epochs.

What differs here, because this is the ViT of the paper and not the example's variant (see docs/training.md):
the image is pooled by a CLS token (or "gap") into a single linear head, where the example flattens all 144
tokens into a 2048-1024 MLP head with dropout 0.5; attention heads are 64/4 = 16 wide where Keras' `key_dim=64`
makes each head 64 wide; Trainer's AdamW does not decay biases and LayerNorm scales, Keras' decays everything.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ..configuration_vit_port import ViTPortConfig
from ..modeling_vit_port import ViTPortForImageClassification
from ..processing import make_image_processor
from .augment import keras_augmentation
from .data import ImageClassificationData, channel_statistics, prepare_data
from .options import TrainingOptions
from .recipes import DEFAULT_DATASET, KERAS_CIFAR100, ScratchRecipe
from .trainer import RunDescription, ViTPortTrainer, build_trainer, run_training


def scratch_config(recipe: ScratchRecipe, id2label: dict[int, str], **overrides: Any) -> ViTPortConfig:
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


def recipe_options(output_dir: str, recipe: ScratchRecipe = KERAS_CIFAR100, **overrides: Any) -> TrainingOptions:
    """`TrainingOptions` of `recipe`: constant learning rate without warmup or gradient clipping, as in Keras."""
    options = TrainingOptions(
        output_dir=output_dir,
        epochs=recipe.epochs,
        learning_rate=recipe.learning_rate,
        weight_decay=recipe.weight_decay,
        batch_size=recipe.batch_size,
        adam_epsilon=recipe.adam_epsilon,
        lr_scheduler="constant",
        warmup=0.0,
        max_grad_norm=0.0,  # 0 turns clipping off in Trainer; Keras' optimiser does not clip
    )
    return replace(options, **overrides)


def prepare_from_scratch(
    options: TrainingOptions,
    *,
    dataset: str = DEFAULT_DATASET,
    recipe: ScratchRecipe = KERAS_CIFAR100,
    config_overrides: dict[str, Any] | None = None,
    image_column: str | None = None,
    label_column: str | None = None,
    dataset_config: str | None = None,
    check_images: bool = True,
    max_train_samples: int | None = None,
    max_eval_samples: int | None = None,
    data: ImageClassificationData | None = None,
) -> ViTPortTrainer:
    """
    A freshly initialised ViTPort model of `recipe` and its `ViTPortTrainer` on `dataset`, untrained. The image
    processor resizes to the recipe's size and normalises with the training set's per-channel statistics (the
    example's adapted `Normalization` layer); it is saved with the model, so inference preprocesses the same way.
    """
    if data is None:
        data = prepare_data(
            dataset,
            image_column=image_column,
            label_column=label_column,
            dataset_config=dataset_config,
            validation_fraction=recipe.validation_fraction,
            seed=options.seed,
            check_images=check_images,
            max_train_samples=max_train_samples,
            max_eval_samples=max_eval_samples,
        )
    config = scratch_config(recipe, data.id2label, **(config_overrides or {}))
    model = ViTPortForImageClassification(config)
    mean, std = channel_statistics(
        data.train, data.image_column, max_samples=recipe.normalisation_samples, seed=options.seed
    )
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
            f"set's statistics, flips, rotations up to {recipe.rotation} turns and zooms of +-{recipe.zoom:.0%}."
        ),
        notes=[
            f"Classifier: '{config.classifier}' pooling into a linear head (the Keras example flattens all tokens "
            "into an MLP head).",
        ],
    )
    augmentation = keras_augmentation(rotation=recipe.rotation, zoom=recipe.zoom)
    return build_trainer(model, processor, data, options, description, tensor_augment=augmentation)


def train_from_scratch(options: TrainingOptions, **kwargs: Any) -> ViTPortTrainer:
    """Run `prepare_from_scratch(options, **kwargs)` to a saved repo in `options.output_dir`; returns the Trainer."""
    trainer = prepare_from_scratch(options, **kwargs)
    trainer.final_metrics = run_training(trainer)
    return trainer


__all__ = [
    "DEFAULT_DATASET",
    "KERAS_CIFAR100",
    "ScratchRecipe",
    "prepare_from_scratch",
    "recipe_options",
    "scratch_config",
    "train_from_scratch",
]
