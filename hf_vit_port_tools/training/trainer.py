"""The `Trainer` shared by fine-tuning and training from scratch, and the run that drives it to a Hub-ready repo.

`build_run` wires a model, its processor and an `ImageClassificationData` into a `TrainingRun`: a `ViTPortTrainer`
with augmented training examples, validation on the side, accuracy and top-5 from the local metric module, and the
best checkpoint by validation accuracy, together with what the model card says about the run. `run_training`
trains it (resuming if asked), evaluates, and writes the output directory: model, processor, `*_results.json`
scores, `trainer_state.json`, `training_curves.png` and a model card.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from datasets import Dataset
from transformers import EvalPrediction, PreTrainedModel, Trainer, TrainerCallback, default_data_collator
from transformers.trainer_utils import get_last_checkpoint

from ..data import ExampleTransform, ImageClassificationData, IndexedSplit, with_transform
from ..hub.cards import RunDescription, trained_model_card
from ..hub.push import PushError, push_repo
from ..metrics import load_accuracy_topk
from ..options import TrainingOptions
from .arguments import training_arguments
from .augment import AugmentationSeed
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


class AugmentationEpoch(TrainerCallback):
    """Tells the augmentation which epoch starts. The Trainer calls this before the epoch's DataLoader iterator (and
    its workers) is made, also when resuming, where `state.epoch` is restored from the checkpoint."""

    def __init__(self, seed: AugmentationSeed):
        self.seed = seed

    def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.seed.epoch = int(state.epoch or 0)


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
    arguments = training_arguments(options)
    seed = AugmentationSeed(options.seed)
    augmenting = image_augment is not None or tensor_augment is not None
    if augmenting and arguments.dataloader_persistent_workers and arguments.dataloader_num_workers > 0:
        raise ValueError("--training-arg dataloader_persistent_workers=true keeps each worker's copy of the "
                         "augmentation's epoch from the first epoch; leave it off when augmenting")
    transform = ExampleTransform(processor, **columns, image_augment=image_augment, tensor_augment=tensor_augment,
                                 randomness=seed)
    train_eval = None
    if options.train_eval_samples > 0 and len(data.train) > 0:
        count = min(options.train_eval_samples, len(data.train))
        train_eval = with_transform(data.train.shuffle(seed=options.seed).select(range(count)), processor, **columns)
    trainer = ViTPortTrainer(
        model=model,
        args=arguments,
        train_dataset=IndexedSplit(data.train, transform),
        eval_dataset=with_transform(data.validation, processor, **columns),
        data_collator=default_data_collator,
        compute_metrics=make_compute_metrics(),
        processing_class=processor,
        train_eval_dataset=train_eval,
        callbacks=[AugmentationEpoch(seed)] if augmenting else None,
    )
    return TrainingRun(trainer, data, options, description)


def resume_checkpoint(output_dir: str, resume_from: str | None) -> str | None:
    """The checkpoint to resume from: `resume_from` itself, or with "last" the latest `checkpoint-*` in `output_dir`."""
    if resume_from is None:
        return None
    if resume_from != "last":
        if not (Path(resume_from) / "trainer_state.json").is_file():
            raise ValueError(f"--resume-from-checkpoint {resume_from}: not a checkpoint directory (no trainer_state.json)")
        return resume_from
    last = get_last_checkpoint(output_dir) if Path(output_dir).is_dir() else None
    if last is None:
        logger.warning("--resume: no checkpoint in %s, so training starts from the beginning.", output_dir)
    return last


def announce_processes(trainer: Trainer) -> None:
    """Say on how many processes the run trains, and warn when a launch meant to be distributed is not: `accelerate
    launch --num_processes N` on CPU (without `--mpirun_hostfile`) starts one plain process, recognisable by the
    MASTER_ADDR it sets with no WORLD_SIZE."""
    world_size = trainer.args.world_size
    if trainer.is_world_process_zero():
        print(f"Training on {world_size} process{'es' if world_size > 1 else ''} ({trainer.args.device.type}).")
    accelerate_single = "ACCELERATE_MIXED_PRECISION" in os.environ and "MASTER_ADDR" in os.environ
    if world_size == 1 and accelerate_single and "WORLD_SIZE" not in os.environ:
        logger.warning("accelerate launch asked for several processes but started this one alone, which trains "
                       "undistributed: on CPU use torchrun (see 'Launchers' in docs/training.md).")


def run_training(run: TrainingRun) -> dict[str, float]:
    """
    Train (resuming if `options.resume_from_checkpoint` says so), reload the best checkpoint, evaluate it on the
    validation split (and the test split if the dataset has one), and save everything to the output directory: the
    model and processor, `train/eval/test/all_results.json`, `trainer_state.json`, `training_curves.png` and
    `README.md`; then push if asked. With `options.eval_only` the model is evaluated as it is and only the scores are
    written. Returns all scores. Only the main process writes files, so this works unchanged under `torchrun`.
    """
    trainer, data, options = run.trainer, run.data, run.options
    metrics: dict[str, float] = {}
    if not options.eval_only:
        checkpoint = resume_checkpoint(options.output_dir, options.resume_from_checkpoint)
        announce_processes(trainer)
        if checkpoint is not None and trainer.is_world_process_zero():
            print(f"Resuming from {checkpoint}")
        train_metrics = dict(trainer.train(resume_from_checkpoint=checkpoint).metrics, train_samples=len(data.train))
        metrics = _record(trainer, "train", train_metrics)
    metrics.update(_record(trainer, "eval", {**trainer.evaluate(), "eval_samples": len(data.validation)}))
    if data.test is not None and len(data.test) > 0:
        test = with_transform(data.test, trainer.processing_class, data.image_column, data.label_column)
        metrics.update(_record(trainer, "test", {**trainer.evaluate(test, metric_key_prefix="test"),
                                                 "test_samples": len(data.test)}))
    if options.eval_only:
        return metrics
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
    "AugmentationEpoch",
    "TOP_K",
    "TRAINING_LEFTOVERS",
    "TRAIN_SUBSET_PREFIX",
    "TrainingRun",
    "ViTPortTrainer",
    "announce_processes",
    "build_run",
    "make_compute_metrics",
    "resume_checkpoint",
    "run_training",
]
