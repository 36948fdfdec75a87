"""The README.md model card of a trained model, and the optional push of the output folder to the Hub."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from .images import BadImageError

if TYPE_CHECKING:
    from .options import TrainingOptions
    from .trainer import RunDescription

# Training leftovers that do not belong in a model repo.
PUSH_IGNORE = ["checkpoint-*", "checkpoint-*/**", "runs/**", "training_args.bin"]


def eval_results(dataset: str, metrics: dict[str, float]) -> list[EvalResult]:
    """`model-index` entries for the accuracy and top-5 accuracy of each evaluated split (validation, test)."""
    # A local folder is not a Hub dataset id: record its name, typed as the builder that read it.
    local = Path(dataset).exists()
    dataset_type, dataset_name = ("imagefolder", Path(dataset).name) if local else (dataset, dataset)
    results = []
    for prefix, split in (("eval", "validation"), ("test", "test")):
        for key, metric_type, metric_name in (
            ("accuracy", "accuracy", "Accuracy"),
            ("top5_accuracy", "top_5_accuracy", "Top-5 accuracy"),
        ):
            value = metrics.get(f"{prefix}_{key}")
            if value is None:
                continue
            results.append(
                EvalResult(
                    task_type="image-classification",
                    task_name="Image Classification",
                    dataset_type=dataset_type,
                    dataset_name=dataset_name,
                    dataset_split=split,
                    metric_type=metric_type,
                    metric_name=metric_name,
                    metric_value=round(float(value), 4),
                )
            )
    return results


def build_model_card(
    description: RunDescription,
    metrics: dict[str, float],
    *,
    id2label: dict[int, str],
    options: TrainingOptions | None = None,
    skipped: list[BadImageError] | None = None,
) -> ModelCard:
    """The card: metadata (dataset, base model, `model-index` scores) and a body with the scores and the recipe."""
    local_dataset = Path(description.dataset).exists()
    data = ModelCardData(
        model_name=description.title,
        library_name="transformers",
        pipeline_tag="image-classification",
        tags=["image-classification", "vision", "vit", "vit_port", "hf-vit-port"],
        # The Hub only resolves dataset and model ids; a local folder is named in the body instead.
        datasets=None if local_dataset else [description.dataset],
        base_model=description.base_model
        if description.base_model and not Path(description.base_model).exists()
        else None,
        metrics=["accuracy", "top_5_accuracy"],
        eval_results=eval_results(description.dataset, metrics) or None,
    )
    lines = [
        f"# {description.title}",
        "",
        (f"Fine-tuned from `{description.base_model}`" if description.base_model else "Trained from scratch")
        + f" on `{description.dataset}` ({len(id2label)} classes) with hf-vit-port and "
        "`transformers.Trainer`.",
        "",
        "## Scores",
        "",
        "| split | accuracy | top-5 accuracy | loss |",
        "| --- | --- | --- | --- |",
    ]
    for prefix, split in (("eval", "validation"), ("test", "test")):
        if f"{prefix}_accuracy" in metrics:
            top5 = metrics.get(f"{prefix}_top5_accuracy", float("nan"))
            loss = metrics.get(f"{prefix}_loss", float("nan"))
            lines.append(f"| {split} | {metrics[f'{prefix}_accuracy']:.4f} | {top5:.4f} | {loss:.4f} |")
    lines += ["", "The checkpoint kept is the one with the best validation accuracy.", ""]
    if description.recipe:
        lines += ["## Training", "", description.recipe, ""]
    if options is not None:
        settings = {
            "epochs": options.epochs,
            "max_steps": options.max_steps,
            "learning_rate": options.learning_rate,
            "per_device_batch_size": options.batch_size,
            "gradient_accumulation_steps": options.gradient_accumulation_steps,
            "weight_decay": options.weight_decay,
            "warmup": options.warmup,
            "lr_scheduler": options.lr_scheduler,
            "optimizer": options.optimizer,
            "label_smoothing": options.label_smoothing,
            "seed": options.seed,
        }
        lines += ["```json", json.dumps(settings, indent=2), "```", ""]
    for note in description.notes:
        lines += [f"- {note}"]
    if skipped:
        lines += ["", f"{len(skipped)} unreadable image(s) were left out of the data."]
    lines += ["", "## Labels", "", ", ".join(f"{i}: {name}" for i, name in sorted(id2label.items())), ""]
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines))


def push_to_hub(folder: str | Path, repo_id: str, *, private: bool = False, token: str | None = None) -> str:
    """Publish the model folder (without training checkpoints) in one commit, through the converter's push: the card
    is validated, transient failures retried, errors explained and the token kept out of every message."""
    from conversion.push import push_repo

    result = push_repo(
        folder,
        repo_id,
        private=private,
        token=token,
        commit_message="Upload fine-tuned ViT (hf-vit-port)",
        ignore_patterns=tuple(PUSH_IGNORE),
    )
    return result.pr_url or result.commit_url


__all__ = ["PUSH_IGNORE", "build_model_card", "eval_results", "push_to_hub"]
