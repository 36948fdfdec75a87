"""Fine-tuning, training from scratch, evaluation, prediction and pictures for ViTPort models.

The names below are imported on first use (PEP 562), so that `hf_vit_port.training.cli_commands` can register the
subcommands without loading the Trainer, `datasets` and matplotlib.

    from hf_vit_port.training import TrainingOptions, prepare_finetuning, run_training

    trainer = prepare_finetuning("ORG/NAME", "imagefolder:photos", TrainingOptions(output_dir="out"))
    trainer.add_callback(...)          # customise
    metrics = run_training(trainer)    # train, evaluate, save the repo, plot, write the model card
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "attention": ("attention_maps", "attention_rollout", "patch_relevance"),
    "augment": (
        "RandomHorizontalFlip",
        "RandomResizedCrop",
        "RandomRotationZoom",
        "finetune_augmentation",
        "keras_augmentation",
    ),
    "data": ("ImageClassificationData", "prepare_data"),
    "evaluation": ("EvaluationReport", "compute_report", "evaluate_dataset"),
    "finetune": ("finetune", "freeze_backbone", "prepare_finetuning"),
    "images": ("BadImageError", "open_image"),
    "loading": ("load_for_finetuning", "load_model", "load_processor"),
    "model_card": ("build_model_card", "push_to_hub"),
    "options": ("TrainingOptions",),
    "plots": ("plot_attention", "plot_patches", "plot_training_curves"),
    "predict": ("Prediction", "predict_images"),
    "recipes": ("KERAS_CIFAR100", "ScratchRecipe"),
    "scratch": ("prepare_from_scratch", "recipe_options", "scratch_config", "train_from_scratch"),
    "trainer": ("RunDescription", "ViTPortTrainer", "build_trainer", "run_training"),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
