"""How `TrainingOptions` become `transformers.TrainingArguments`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..options import Precision, TrainingOptions

if TYPE_CHECKING:
    from transformers import TrainingArguments


def resolve_precision(precision: Precision) -> tuple[bool, bool]:
    """(bf16, fp16) for `precision`: "auto" picks bf16 on GPUs that support it and full precision otherwise."""
    import torch

    if precision == "bf16":
        return True, False
    if precision == "fp16":
        if not torch.cuda.is_available():
            raise ValueError("fp16 mixed precision needs a CUDA GPU; use --precision bf16 or fp32 on CPU.")
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


__all__ = ["resolve_precision", "training_arguments"]
