"""Fine-tuning a ViT checkpoint (a saved repo, a Hub id, or an original `.npz` file) on an image dataset.

`prepare_finetuning` returns the `Trainer` (for those who want to customise it before training); `finetune` runs
it to a saved, Hub-ready repo. The model comes from `loading.load_for_finetuning`, which prints what is fresh.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from transformers import PreTrainedModel

from ..configuration_vit_port import to_pair
from .augment import finetune_augmentation
from .data import ImageClassificationData, prepare_data
from .loading import load_for_finetuning, load_processor
from .options import TrainingOptions
from .trainer import RunDescription, ViTPortTrainer, build_trainer, run_training


def freeze_backbone(model: PreTrainedModel) -> int:
    """Train the classification head only (a linear probe); returns the number of parameters left trainable."""
    trainable = 0
    for name, parameter in model.named_parameters():
        parameter.requires_grad = name.startswith("classifier.")
        trainable += parameter.numel() if parameter.requires_grad else 0
    if trainable == 0:
        raise ValueError("The model has no classification head to train (num_labels=0?).")
    return trainable


def prepare_finetuning(
    model_id: str | os.PathLike,
    dataset: str,
    options: TrainingOptions,
    *,
    image_column: str | None = None,
    label_column: str | None = None,
    dataset_config: str | None = None,
    image_size: int | tuple[int, int] | None = None,
    linear_probe: bool = False,
    augment: bool = True,
    crop_scale: tuple[float, float] = (0.08, 1.0),
    validation_fraction: float = 0.1,
    check_images: bool = True,
    max_train_samples: int | None = None,
    max_eval_samples: int | None = None,
    data: ImageClassificationData | None = None,
) -> ViTPortTrainer:
    """
    Load the data and the model and return the configured `ViTPortTrainer`, untrained. Customise it (callbacks,
    arguments, the model) and then call `run_training(trainer)`, or `trainer.train()` for full control.
    `data` skips loading the dataset when already prepared.
    """
    if data is None:
        data = prepare_data(
            dataset,
            image_column=image_column,
            label_column=label_column,
            dataset_config=dataset_config,
            validation_fraction=validation_fraction,
            seed=options.seed,
            check_images=check_images,
            max_train_samples=max_train_samples,
            max_eval_samples=max_eval_samples,
        )
    model = load_for_finetuning(model_id, num_labels=data.num_labels, id2label=data.id2label, image_size=image_size)
    processor = load_processor(model_id, model.config)
    notes = []
    if linear_probe:
        trainable = freeze_backbone(model)
        notes.append(f"Linear probe: only the head ({trainable} parameters) was trained.")
    if image_size is not None:
        notes.append(
            f"Fine-tuned at {to_pair(image_size)[0]}x{to_pair(image_size)[1]} (position embeddings resampled)."
        )
    description = RunDescription(
        title=f"{Path(str(model_id)).name} fine-tuned on {Path(data.name).name or data.name}",
        dataset=data.name,
        base_model=str(model_id),
        recipe=(
            "Fine-tuned with `hf-vit-port finetune`: the checkpoint's image processor, random resized crops "
            "and horizontal flips for training, AdamW, and the best checkpoint by validation accuracy."
            if augment
            else "Fine-tuned with `hf-vit-port finetune` without augmentation."
        ),
        notes=notes,
    )
    image_augment = finetune_augmentation(to_pair(model.config.image_size), crop_scale=crop_scale) if augment else None
    return build_trainer(model, processor, data, options, description, image_augment=image_augment)


def finetune(model_id: str | os.PathLike, dataset: str, options: TrainingOptions, **kwargs: Any) -> ViTPortTrainer:
    """Fine-tune `model_id` on `dataset` and save the result to `options.output_dir`; returns the trained Trainer.

    Keyword arguments are those of `prepare_finetuning`. The scores are in `trainer.final_metrics` and in
    `eval_results.json` (and `test_results.json` when the dataset has a test split) in the output directory.
    """
    trainer = prepare_finetuning(model_id, dataset, options, **kwargs)
    trainer.final_metrics = run_training(trainer)
    return trainer


__all__ = ["finetune", "freeze_backbone", "prepare_finetuning"]
