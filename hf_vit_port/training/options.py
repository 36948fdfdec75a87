"""The knobs of a training run, and how they become `transformers.TrainingArguments`."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from transformers import TrainingArguments

Precision = Literal["auto", "bf16", "fp16", "fp32"]


def default_num_workers() -> int:
    """
    DataLoader workers per process: the CPU cores left after the training processes on this machine (as many as
    `torchrun`'s LOCAL_WORLD_SIZE), shared among them, at most 8 each. Decoding and augmenting images is CPU work.
    """
    processes = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    spare = (os.cpu_count() or 1) - processes
    return min(8, max(0, spare // processes))


@dataclass
class TrainingOptions:
    """
    Everything about a run that is not the model or the data. The defaults suit fine-tuning; the from-scratch
    recipe overrides them (see `scratch.KERAS_CIFAR100`).
    """

    output_dir: str
    epochs: float = 3.0
    max_steps: int = -1  # > 0 stops after that many optimiser steps, whatever `epochs` says
    learning_rate: float = 1e-4
    batch_size: int = 32  # per device; the effective batch is batch_size x devices x gradient_accumulation_steps
    eval_batch_size: int | None = None  # defaults to batch_size
    weight_decay: float = 0.0
    warmup: float = 0.0  # an int >= 1 is a number of steps, a float in [0, 1) a fraction of the run
    lr_scheduler: str = "cosine"
    gradient_accumulation_steps: int = 1
    max_grad_norm: float = 1.0  # the original ViT recipes clip the global gradient norm at 1
    optimizer: str = "adamw_torch"
    adam_epsilon: float = 1e-8
    label_smoothing: float = 0.0
    seed: int = 42
    precision: Precision = "auto"
    eval_strategy: Literal["epoch", "steps"] = "epoch"
    eval_steps: int | None = None  # with eval_strategy="steps": evaluate (and save) every so many steps
    logging_steps: int = 10
    save_total_limit: int | None = 2  # checkpoints kept on disk; the best one is never deleted
    num_workers: int = field(default_factory=default_num_workers)
    train_eval_samples: int = 512  # training examples scored at each evaluation for the train-accuracy curve
    gradient_checkpointing: bool = False
    resume: bool = False
    push_to_hub: str | None = None
    hub_private: bool = False
    report_to: str = "none"
    disable_tqdm: bool | None = None
    extra_arguments: dict[str, Any] = field(default_factory=dict)  # passed to TrainingArguments as they are


def resolve_precision(precision: Precision) -> tuple[bool, bool]:
    """(bf16, fp16) for `precision`: "auto" picks bf16 on GPUs that support it and full precision otherwise."""
    import torch

    if precision == "bf16":
        return True, False
    if precision == "fp16":
        if not torch.cuda.is_available():
            raise ValueError("fp16 mixed precision needs a CUDA GPU; use --bf16 or full precision on CPU.")
        return False, True
    if precision == "auto":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported()), False
    if precision == "fp32":
        return False, False
    raise ValueError(f"precision must be auto, bf16, fp16 or fp32, got {precision!r}.")


def training_arguments(options: TrainingOptions) -> TrainingArguments:
    """
    `TrainingArguments` for `options`: evaluation and checkpointing on the same schedule, the best checkpoint by
    validation accuracy reloaded at the end, and the columns left alone (the transform makes the model inputs).
    """
    import torch
    from transformers import TrainingArguments

    bf16, fp16 = resolve_precision(options.precision)
    warmup: float | int = options.warmup
    if warmup >= 1:
        warmup = int(warmup)
    step_schedule = options.eval_strategy == "steps"
    if step_schedule and not options.eval_steps:
        raise ValueError("eval_strategy='steps' needs eval_steps.")
    arguments: dict[str, Any] = dict(
        output_dir=options.output_dir,
        num_train_epochs=options.epochs,
        max_steps=options.max_steps,
        learning_rate=options.learning_rate,
        per_device_train_batch_size=options.batch_size,
        per_device_eval_batch_size=options.eval_batch_size or options.batch_size,
        weight_decay=options.weight_decay,
        warmup_steps=warmup,
        lr_scheduler_type=options.lr_scheduler,
        gradient_accumulation_steps=options.gradient_accumulation_steps,
        max_grad_norm=options.max_grad_norm,
        optim=options.optimizer,
        adam_epsilon=options.adam_epsilon,
        label_smoothing_factor=options.label_smoothing,
        seed=options.seed,
        bf16=bf16,
        fp16=fp16,
        eval_strategy=options.eval_strategy,
        save_strategy=options.eval_strategy,
        logging_strategy="steps",
        logging_steps=options.logging_steps,
        logging_first_step=True,
        load_best_model_at_end=True,
        metric_for_best_model="accuracy",
        greater_is_better=True,
        save_total_limit=options.save_total_limit,
        remove_unused_columns=False,
        dataloader_num_workers=options.num_workers,
        report_to=options.report_to,
        disable_tqdm=options.disable_tqdm,
    )
    # Pinned host memory only helps copies to a GPU (and warns on every DataLoader without one).
    arguments["dataloader_pin_memory"] = torch.cuda.is_available()
    if not _has_accelerator():
        # Said explicitly, CPU-only machines can train in bf16 and run distributed (gloo) under torchrun.
        arguments["use_cpu"] = True
    if options.gradient_checkpointing:
        # transformers 5 renamed the argument; use whichever this version has.
        name = (
            "activation_checkpointing" if "activation_checkpointing" in _argument_names() else "gradient_checkpointing"
        )
        arguments[name] = True
    if step_schedule:
        arguments.update(eval_steps=options.eval_steps, save_steps=options.eval_steps)
    arguments.update(options.extra_arguments)
    return TrainingArguments(**arguments)


def _has_accelerator() -> bool:
    import torch

    accelerator = getattr(torch, "accelerator", None)
    if accelerator is not None:
        return bool(accelerator.is_available())
    return torch.cuda.is_available()


def _argument_names() -> set[str]:
    import dataclasses

    from transformers import TrainingArguments

    return {f.name for f in dataclasses.fields(TrainingArguments)}


__all__ = ["Precision", "TrainingOptions", "default_num_workers", "resolve_precision", "training_arguments"]
