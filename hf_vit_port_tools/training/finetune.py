"""Fine-tuning a ViT checkpoint (a saved repo, a Hub id, or an original `.npz` file) on an image dataset.

`prepare_finetuning` returns the `TrainingRun` (for those who want to customise its trainer before training);
`finetune` runs it to a saved, Hub-ready repo. The model comes through `hf_vit_port.loading.load_checkpoint`, whose
summary says, parameter by parameter, what was loaded, resampled or initialised fresh.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from transformers import PreTrainedModel

from hf_vit_port.configuration_vit_port import to_pair
from hf_vit_port.loading import LOADED, LoadingSummary, load_checkpoint
from hf_vit_port.processing import image_processor_for

from ..data import ImageClassificationData, prepare_data
from ..hub.cards import RunDescription
from ..options import DataOptions, FinetuneOptions, TrainingOptions
from .augment import finetune_augmentation
from .trainer import TrainingRun, build_run, run_training

_logger = logging.getLogger(__name__)


def is_main_process() -> bool:
    """Whether this is rank 0 of a distributed launch (or not distributed at all): only it prints summaries."""
    return os.environ.get("RANK", "0") == "0"


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
    finetuning: FinetuneOptions,
    data_options: DataOptions,
    options: TrainingOptions,
    *,
    data: ImageClassificationData | None = None,
    print_summary: bool = True,
) -> TrainingRun:
    """
    Load the data and the model and return the configured run, untrained. Customise it (callbacks, arguments, the
    model) and then call `run_training(run)`, or `run.trainer.train()` for full control. `data` skips loading the
    dataset when already prepared.
    """
    if data is None:
        data = prepare_data(data_options, seed=options.seed)
    overrides = {"id2label": data.id2label}
    if finetuning.image_size is not None:
        overrides["image_size"] = finetuning.image_size
    model, summary = load_checkpoint(finetuning.model, **overrides)
    if print_summary and is_main_process():
        print(summary.format() if _logger.isEnabledFor(logging.INFO) else _brief(summary))
    model.train()
    trainable = freeze_backbone(model) if finetuning.linear_probe else None
    processor = image_processor_for(finetuning.model, model.config)
    description = RunDescription(
        title=f"{Path(finetuning.model).name} fine-tuned on {Path(data.name).name or data.name}",
        dataset=data.name,
        base_model=finetuning.model,
        recipe=(
            "Fine-tuned with `hf-vit-port finetune`: the checkpoint's image processor, random resized crops "
            f"{'and horizontal flips ' if finetuning.flip else ''}for training, AdamW, and the best checkpoint by "
            f"validation {options.metric_for_best_model}."
            if finetuning.augment
            else "Fine-tuned with `hf-vit-port finetune` without augmentation."
        ),
        notes=_notes(finetuning, trainable),
    )
    image_size = to_pair(model.config.image_size)
    augment = None
    if finetuning.augment:
        augment = finetune_augmentation(image_size, crop_scale=(finetuning.crop_scale_min, 1.0), flip=finetuning.flip)
    return build_run(model, processor, data, options, description, image_augment=augment)


def _brief(summary: LoadingSummary) -> str:
    """The summary's totals, notes and whatever was not loaded as it was (the full table with `-v`)."""
    lines = [f"Loaded {summary.source}: {summary.totals()}"] + [f"  note: {note}" for note in summary.notes]
    lines += [f"  {row['name']}: {row['status']} {row['detail']}".rstrip()
              for row in summary.rows() if row["status"] != LOADED]
    return "\n".join(lines)


def _notes(finetuning: FinetuneOptions, trainable: int | None) -> list[str]:
    notes = []
    if trainable is not None:
        notes.append(f"Linear probe: only the head ({trainable} parameters) was trained.")
    if finetuning.image_size is not None:
        height, width = to_pair(finetuning.image_size)
        notes.append(f"Fine-tuned at {height}x{width} (position embeddings resampled).")
    return notes


def finetune(finetuning: FinetuneOptions, data_options: DataOptions, options: TrainingOptions) -> dict[str, float]:
    """Fine-tune and save the result to `options.output_dir`; returns the scores (also in `*_results.json`)."""
    return run_training(prepare_finetuning(finetuning, data_options, options))


__all__ = ["finetune", "freeze_backbone", "is_main_process", "prepare_finetuning"]
