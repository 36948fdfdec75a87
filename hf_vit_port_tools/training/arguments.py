"""How `TrainingOptions` become `transformers.TrainingArguments`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..options import Precision, TrainingOptions

if TYPE_CHECKING:
    from transformers import TrainingArguments


# TrainingArguments field -> the TrainingOptions field it takes unchanged (evaluation and checkpointing share one
# schedule, hence eval_strategy twice).
_TAKEN_AS_THEY_ARE = {
    "output_dir": "output_dir", "num_train_epochs": "epochs", "max_steps": "max_steps",
    "learning_rate": "learning_rate", "per_device_train_batch_size": "batch_size", "weight_decay": "weight_decay",
    "lr_scheduler_type": "lr_scheduler", "gradient_accumulation_steps": "gradient_accumulation_steps",
    "max_grad_norm": "max_grad_norm", "optim": "optimizer", "adam_epsilon": "adam_epsilon",
    "label_smoothing_factor": "label_smoothing", "seed": "seed", "eval_strategy": "eval_strategy",
    "save_strategy": "eval_strategy", "eval_steps": "eval_steps", "logging_steps": "logging_steps",
    "metric_for_best_model": "metric_for_best_model", "save_total_limit": "save_total_limit",
    "dataloader_num_workers": "num_workers", "torch_compile": "torch_compile", "report_to": "report_to",
    "disable_tqdm": "disable_tqdm",
}


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


def check_training_options(options: TrainingOptions) -> None:
    """Refuse settings that cannot make `TrainingArguments`, before any data or model is loaded."""
    if options.eval_strategy == "steps" and not options.eval_steps:
        raise ValueError("--eval-strategy steps needs --eval-steps.")
    unknown = sorted(set(options.extra_arguments) - _argument_names())
    if unknown:
        raise ValueError(f"--training-arg: TrainingArguments has no field {', '.join(map(repr, unknown))}.")


def training_arguments(options: TrainingOptions) -> TrainingArguments:
    """
    `TrainingArguments` for `options`: evaluation and checkpointing on the same schedule, the best checkpoint by
    `metric_for_best_model` reloaded at the end, the columns left alone (the transform makes the model inputs), and
    `extra_arguments` (`--training-arg`) applied last, as they are.
    """
    import torch
    from transformers import TrainingArguments

    check_training_options(options)
    bf16, fp16 = resolve_precision(options.precision)
    arguments: dict[str, Any] = {name: getattr(options, field) for name, field in _TAKEN_AS_THEY_ARE.items()}
    arguments.update(
        per_device_eval_batch_size=options.eval_batch_size or options.batch_size,
        warmup_steps=int(options.warmup) if options.warmup >= 1 else options.warmup,
        bf16=bf16,
        fp16=fp16,
        save_steps=options.eval_steps or 500,  # 500: TrainingArguments' own default, unused by epoch schedules
        logging_first_step=True,
        load_best_model_at_end=True,  # by metric_for_best_model: greater is better, except for the loss
        remove_unused_columns=False,
        dataloader_pin_memory=torch.cuda.is_available(),  # pinned memory only helps copies to a GPU
        ddp_find_unused_parameters=False,  # every parameter takes part in the loss: no extra pass to look for others
    )
    if not _has_accelerator():
        # Said explicitly, CPU-only machines can train in bf16 and run distributed (gloo) under torchrun.
        arguments["use_cpu"] = True
    if options.gradient_checkpointing:
        # transformers 5 renamed the argument; use whichever this version has.
        names = _argument_names()
        arguments["activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"] = True
    return TrainingArguments(**{**arguments, **options.extra_arguments})


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


__all__ = ["check_training_options", "resolve_precision", "training_arguments"]
