"""The `Trainer` shared by fine-tuning and training from scratch, and the run that drives it to a Hub-ready repo.

`build_run` wires a model, its processor and an `ImageClassificationData` into a `TrainingRun`: a `ViTPortTrainer`
with augmented training examples, validation on the side, accuracy and top-5 from the local metric module, and the
best checkpoint by validation accuracy, together with what the model card says about the run. `run_training`
trains it (resuming if asked), evaluates, and writes the output directory: model, processor, `*_results.json`
scores, `trainer_state.json`, `training_curves.png` and a model card.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from datasets import Dataset
from transformers import EvalPrediction, PreTrainedModel, Trainer, default_data_collator
from transformers.trainer_utils import get_last_checkpoint

from ..data import ImageClassificationData, with_transform
from ..hub.cards import RunDescription, trained_model_card
from ..hub.push import PushError, push_repo
from ..metrics import load_accuracy_topk
from ..options import TrainingOptions
from .arguments import training_arguments
from .curves import plot_training_curves

logger = logging.getLogger(__name__)

TOP_K = 5
TRAIN_SUBSET_PREFIX = "train_subset"
"""Metric prefix of the training-subset scores logged at each evaluation (`train_subset_accuracy`, ...)."""
TRAINING_LEFTOVERS = ("checkpoint-*", "checkpoint-*/**", "runs/**", "training_args.bin")
"""Files of the output directory that do not belong in a model repo (left out of a push)."""


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


class ViTPortTrainer(Trainer):
    """
    A `Trainer` that, at each periodic evaluation, also scores a fixed subset of the training set (with evaluation
    preprocessing, no augmentation), so that train and validation accuracy can be plotted on the same axes. Those
    scores are logged with the `train_subset_` prefix and never decide the best checkpoint.
    """

    def __init__(self, *args: Any, train_eval_dataset: Dataset | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.train_eval_dataset = train_eval_dataset
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


@dataclass
class TrainingRun:
    """A configured, untrained run: the trainer, the data it trains on, its options, and its card's description."""

    trainer: ViTPortTrainer
    data: ImageClassificationData
    options: TrainingOptions
    description: RunDescription


def build_run(
    model: PreTrainedModel,
    processor: Any,
    data: ImageClassificationData,
    options: TrainingOptions,
    description: RunDescription,
    *,
    image_augment: Callable | None = None,
    tensor_augment: Callable | None = None,
) -> TrainingRun:
    """
    A ready-to-train run. `image_augment` (on PIL images, before the processor) and `tensor_augment` (on pixel
    tensors, after it) apply to the training split only.
    """
    columns = dict(image_column=data.image_column, label_column=data.label_column)
    train = with_transform(data.train, processor, **columns, image_augment=image_augment, tensor_augment=tensor_augment)
    train_eval = None
    if options.train_eval_samples > 0 and len(data.train) > 0:
        count = min(options.train_eval_samples, len(data.train))
        train_eval = with_transform(data.train.shuffle(seed=options.seed).select(range(count)), processor, **columns)
    trainer = ViTPortTrainer(
        model=model,
        args=training_arguments(options),
        train_dataset=train,
        eval_dataset=with_transform(data.validation, processor, **columns),
        data_collator=default_data_collator,
        compute_metrics=make_compute_metrics(),
        processing_class=processor,
        train_eval_dataset=train_eval,
    )
    return TrainingRun(trainer, data, options, description)


def resume_checkpoint(output_dir: str, resume: bool) -> str | None:
    """The checkpoint to resume from: the latest `checkpoint-*` in `output_dir` when `resume` is set."""
    if not resume:
        return None
    last = get_last_checkpoint(output_dir) if Path(output_dir).is_dir() else None
    if last is None:
        logger.warning("--resume: no checkpoint in %s, so training starts from the beginning.", output_dir)
    return last


def run_training(run: TrainingRun) -> dict[str, float]:
    """
    Train (from the last checkpoint if `options.resume`), reload the best checkpoint, evaluate it on the validation
    split (and the test split if the dataset has one), and save everything to the output directory: the model and
    processor, `train/eval/test/all_results.json`, `trainer_state.json`, `training_curves.png` and `README.md`; then
    push if asked. Returns all scores. Only the main process writes files, so this works unchanged under `torchrun`.
    """
    trainer, data, options = run.trainer, run.data, run.options
    checkpoint = resume_checkpoint(options.output_dir, options.resume)
    if checkpoint is not None and trainer.is_world_process_zero():
        print(f"Resuming from {checkpoint}")
    train_metrics = dict(trainer.train(resume_from_checkpoint=checkpoint).metrics, train_samples=len(data.train))
    metrics = _record(trainer, "train", train_metrics)
    metrics.update(_record(trainer, "eval", {**trainer.evaluate(), "eval_samples": len(data.validation)}))
    if data.test is not None and len(data.test) > 0:
        test = with_transform(data.test, trainer.processing_class, data.image_column, data.label_column)
        metrics.update(_record(trainer, "test", {**trainer.evaluate(test, metric_key_prefix="test"),
                                                 "test_samples": len(data.test)}))
    trainer.save_model()  # the best checkpoint (load_best_model_at_end), with the processor beside it
    trainer.save_state()
    if trainer.is_world_process_zero():
        _finish_repo(run, metrics)
    return metrics


def _record(trainer: Trainer, split: str, metrics: dict[str, float]) -> dict[str, float]:
    trainer.log_metrics(split, metrics)
    trainer.save_metrics(split, metrics)
    return metrics


def _finish_repo(run: TrainingRun, metrics: dict[str, float]) -> None:
    """The curves and the card beside the saved model, then the push if asked."""
    output, options = Path(run.options.output_dir), run.options
    plot_training_curves(run.trainer.state.log_history, output / "training_curves.png")
    card = trained_model_card(run.description, metrics, id2label=run.data.id2label, options=options,
                              skipped=len(run.data.skipped))
    card.save(output / "README.md")  # not validated against the Hub here: push_repo validates it
    if options.push_to_hub:
        try:
            result = push_repo(output, options.push_to_hub, private=options.hub_private,
                               commit_message="Upload fine-tuned ViT (hf-vit-port)", ignore_patterns=TRAINING_LEFTOVERS)
        except PushError as error:  # the training is not lost: say where it is and how to push it again
            raise PushError(f"{error} (the trained model is saved in {output}; `hf-vit-port push {output} "
                            f"{options.push_to_hub}` pushes it)") from error
        print(f"Pushed to {result.pr_url or result.commit_url}")


__all__ = [
    "TOP_K",
    "TRAINING_LEFTOVERS",
    "TRAIN_SUBSET_PREFIX",
    "TrainingRun",
    "ViTPortTrainer",
    "build_run",
    "make_compute_metrics",
    "resume_checkpoint",
    "run_training",
]
