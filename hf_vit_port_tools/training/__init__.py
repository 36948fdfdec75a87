"""Fine-tuning and training from scratch with `transformers.Trainer`, `datasets` and `evaluate`.

The names below are imported on first use (PEP 562), so that importing the package loads no Trainer.

    from hf_vit_port_tools.options import DataOptions, FinetuneOptions, TrainingOptions
    from hf_vit_port_tools.training import prepare_finetuning, run_training

    run = prepare_finetuning(FinetuneOptions(model="ORG/NAME"), DataOptions(dataset="imagefolder:photos"),
                             TrainingOptions(output_dir="out"))
    run.trainer.add_callback(...)      # customise
    metrics = run_training(run)        # train, evaluate, save the repo, plot, write the model card
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "arguments": ("resolve_precision", "training_arguments"),
    "augment": ("RandomHorizontalFlip", "RandomResizedCrop", "RandomRotationZoom", "finetune_augmentation",
                "keras_augmentation"),
    "curves": ("plot_training_curves",),
    "finetune": ("finetune", "freeze_backbone", "prepare_finetuning"),
    "scratch": ("prepare_from_scratch", "recipe_data", "recipe_options", "scratch_config", "train_from_scratch"),
    "trainer": ("TrainingRun", "ViTPortTrainer", "build_run", "run_training"),
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
