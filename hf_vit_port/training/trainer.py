"""The `Trainer` shared by fine-tuning and training from scratch, and the run that drives it to a Hub-ready repo.

`build_trainer` wires a model, its processor and an `ImageClassificationData` into a `ViTPortTrainer`: augmented
training examples, validation on the side, accuracy and top-5 from the local metric module, and the best
checkpoint by validation accuracy. `run_training` trains it (resuming if asked), evaluates, and writes the output
directory: model, processor, `*_results.json` scores, `trainer_state.json`, `training_curves.png` and a model card.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from datasets import Dataset
from transformers import EvalPrediction, PreTrainedModel, Trainer, default_data_collator
from transformers.trainer_utils import get_last_checkpoint

from ..metrics import load_accuracy_topk
from .data import ImageClassificationData, with_transform
from .options import TrainingOptions, training_arguments

logger = logging.getLogger(__name__)

TOP_K = 5
TRAIN_SUBSET_PREFIX = "train_subset"
"""Metric prefix of the training-subset scores logged at each evaluation (`train_subset_accuracy`, ...)."""


def make_compute_metrics(k: int = TOP_K) -> Callable[[EvalPrediction], dict[str, float]]:
    """`compute_metrics` for the Trainer: accuracy and top-`k` accuracy from the logits, via the local metric file."""
    # In memory and with a unique experiment id: several ranks of a distributed run compute the metric at once,
    # and must not share evaluate's on-disk cache files.
    metric = load_accuracy_topk(keep_in_memory=True, experiment_id=uuid.uuid4().hex)

    def compute_metrics(prediction: EvalPrediction) -> dict[str, float]:
        logits = prediction.predictions
        if isinstance(logits, (tuple, list)):
            logits = logits[0]
        return metric.compute(predictions=np.asarray(logits), references=np.asarray(prediction.label_ids), k=k)

    return compute_metrics


@dataclass
class RunDescription:
    """What the model card says about a run."""

    title: str
    dataset: str
    base_model: str | None = None  # the checkpoint fine-tuned from; None when trained from scratch
    recipe: str = ""  # a paragraph on how the model was trained
    notes: list[str] = field(default_factory=list)


class ViTPortTrainer(Trainer):
    """
    A `Trainer` that, at each periodic evaluation, also scores a fixed subset of the training set (with evaluation
    preprocessing, no augmentation), so that train and validation accuracy can be plotted on the same axes. Those
    scores are logged with the `train_subset_` prefix and never decide the best checkpoint.

    It also carries what `run_training` needs to finish a run: the `data`, the `options` and the `description`
    for the model card (all optional for other uses).
    """

    def __init__(
        self,
        *args: Any,
        train_eval_dataset: Dataset | None = None,
        data: ImageClassificationData | None = None,
        options: TrainingOptions | None = None,
        description: RunDescription | None = None,
        **kwargs: Any,
    ):
        super().__init__(*args, **kwargs)
        self.train_eval_dataset = train_eval_dataset
        self.data = data
        self.options = options
        self.description = description
        self._train_scored_at: int | None = None

    def evaluate(
        self,
        eval_dataset: Dataset | dict[str, Dataset] | None = None,
        ignore_keys: list[str] | None = None,
        metric_key_prefix: str = "eval",
    ) -> dict[str, float]:
        metrics = super().evaluate(eval_dataset, ignore_keys=ignore_keys, metric_key_prefix=metric_key_prefix)
        periodic = eval_dataset is None and metric_key_prefix == "eval"
        if periodic and self.train_eval_dataset is not None and self._train_scored_at != self.state.global_step:
            self._train_scored_at = self.state.global_step
            super().evaluate(self.train_eval_dataset, ignore_keys=ignore_keys, metric_key_prefix=TRAIN_SUBSET_PREFIX)
        return metrics


def build_trainer(
    model: PreTrainedModel,
    processor: Any,
    data: ImageClassificationData,
    options: TrainingOptions,
    description: RunDescription,
    *,
    image_augment: Callable | None = None,
    tensor_augment: Callable | None = None,
    callbacks: list | None = None,
) -> ViTPortTrainer:
    """
    A ready-to-train `ViTPortTrainer`. `image_augment` (on PIL images, before the processor) and `tensor_augment`
    (on pixel tensors, after it) apply to the training split only.
    """
    columns = dict(image_column=data.image_column, label_column=data.label_column)
    train = with_transform(data.train, processor, **columns, image_augment=image_augment, tensor_augment=tensor_augment)
    validation = with_transform(data.validation, processor, **columns)
    train_eval = None
    if options.train_eval_samples > 0 and len(data.train) > 0:
        count = min(options.train_eval_samples, len(data.train))
        subset = data.train.shuffle(seed=options.seed).select(range(count))
        train_eval = with_transform(subset, processor, **columns)
    return ViTPortTrainer(
        model=model,
        args=training_arguments(options),
        train_dataset=train,
        eval_dataset=validation,
        data_collator=default_data_collator,
        compute_metrics=make_compute_metrics(),
        processing_class=processor,
        callbacks=callbacks,
        train_eval_dataset=train_eval,
        data=data,
        options=options,
        description=description,
    )


def resume_checkpoint(output_dir: str, resume: bool) -> str | None:
    """The checkpoint to resume from: the latest `checkpoint-*` in `output_dir` when `resume` is set."""
    if not resume:
        return None
    last = get_last_checkpoint(output_dir) if Path(output_dir).is_dir() else None
    if last is None:
        logger.warning("--resume: no checkpoint in %s, so training starts from the beginning.", output_dir)
    return last


def run_training(trainer: ViTPortTrainer) -> dict[str, float]:
    """
    Train (from the last checkpoint if `trainer.options.resume`), reload the best checkpoint, evaluate it on the
    validation split (and the test split if the dataset has one), and save everything to the output directory:
    the model and processor, `train/eval/test/all_results.json`, `trainer_state.json`, `training_curves.png` and
    `README.md`; then push if asked. Returns all scores. Only the main process writes files, so this works
    unchanged under `torchrun` / `accelerate launch`.
    """
    from .model_card import build_model_card, push_to_hub
    from .plots import plot_training_curves

    data, options, description = trainer.data, trainer.options, trainer.description
    if data is None or options is None or description is None:
        raise ValueError("run_training needs a trainer made by build_trainer (with data, options and description).")
    checkpoint = resume_checkpoint(options.output_dir, options.resume)
    if checkpoint is not None and trainer.is_world_process_zero():
        print(f"Resuming from {checkpoint}")
    train_result = trainer.train(resume_from_checkpoint=checkpoint)
    metrics: dict[str, float] = {}
    train_metrics = dict(train_result.metrics)
    train_metrics["train_samples"] = len(data.train)
    trainer.log_metrics("train", train_metrics)
    trainer.save_metrics("train", train_metrics)
    metrics.update(train_metrics)

    eval_metrics = trainer.evaluate()
    eval_metrics["eval_samples"] = len(data.validation)
    trainer.log_metrics("eval", eval_metrics)
    trainer.save_metrics("eval", eval_metrics)
    metrics.update(eval_metrics)

    if data.test is not None and len(data.test) > 0:
        test = with_transform(data.test, trainer.processing_class, data.image_column, data.label_column)
        test_metrics = trainer.evaluate(test, metric_key_prefix="test")
        test_metrics["test_samples"] = len(data.test)
        trainer.log_metrics("test", test_metrics)
        trainer.save_metrics("test", test_metrics)
        metrics.update(test_metrics)

    trainer.save_model()  # the best checkpoint (load_best_model_at_end), with the processor beside it
    trainer.save_state()
    if trainer.is_world_process_zero():
        output = Path(options.output_dir)
        plot_training_curves(trainer.state.log_history, output / "training_curves.png")
        card = build_model_card(description, metrics, id2label=data.id2label, options=options, skipped=data.skipped)
        card.save(output / "README.md")  # not validated against the Hub: that needs the network
        if options.push_to_hub:
            url = push_to_hub(output, options.push_to_hub, private=options.hub_private)
            print(f"Pushed to {url}")
    return metrics


__all__ = [
    "RunDescription",
    "TOP_K",
    "TRAIN_SUBSET_PREFIX",
    "ViTPortTrainer",
    "build_trainer",
    "make_compute_metrics",
    "resume_checkpoint",
    "run_training",
]
