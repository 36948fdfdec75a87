"""Evaluating a trained classifier on a dataset split: accuracy, top-5, per-class accuracy and confusion matrix.

Accuracy and top-k come from the same local metric module the Trainer uses; the per-class numbers and the
confusion matrix are counted with numpy. The dataset's classes are matched to the model's labels by name (a
model trained on these classes in another order, or a 1000-class model evaluated on some ImageNet classes),
and by index when the model's labels are generic (`LABEL_0`, ...) and the counts agree.
"""

from __future__ import annotations

import json
import re
import uuid
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from datasets import ClassLabel, Dataset
from torch.utils.data import DataLoader
from transformers import default_data_collator

from hf_vit_port.processing import image_processor_for

from ..data import drop_bad_images, load_columns, with_transform
from ..metrics import load_accuracy_topk
from ..options import DatasetOptions, EvaluateOptions, LabelMapOptions
from .models import has_classification_head, load_model, no_head_error

_GENERIC = re.compile(r"^(LABEL_)?\d+$")
SPLIT_PREFERENCE = ("test", "validation", "valid", "val", "train")


@dataclass
class EvaluationReport:
    """The scores of a model on a split. Class lists follow the dataset's class order."""

    accuracy: float
    top_k_accuracy: float
    k: int
    num_examples: int
    class_names: list[str]
    per_class_accuracy: dict[str, float | None]  # None for classes without examples
    support: dict[str, int]
    confusion_matrix: list[list[int]]  # rows: true class; columns: predicted class, then "(other)" if present
    confusion_columns: list[str]
    skipped: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        data = asdict(self)
        data[f"top{self.k}_accuracy"] = data.pop("top_k_accuracy")
        return data

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    def format(self, *, max_matrix_classes: int = 30) -> str:
        lines = [
            f"examples: {self.num_examples}",
            f"accuracy: {self.accuracy:.4f}",
            f"top-{self.k} accuracy: {self.top_k_accuracy:.4f}",
            "",
            "per-class accuracy:",
        ]
        width = max((len(name) for name in self.class_names), default=5)
        for name in self.class_names:
            value = self.per_class_accuracy[name]
            shown = "   n/a" if value is None else f"{value:.4f}"
            lines.append(f"  {name:<{width}}  {shown}  ({self.support[name]} examples)")
        lines.append("")
        if len(self.class_names) > max_matrix_classes:
            lines.append(f"confusion matrix: {len(self.class_names)} classes, not printed (see the --output JSON)")
        else:
            lines.append("confusion matrix (rows: true class, columns: predicted class):")
            longest = max(
                [len(str(v)) for row in self.confusion_matrix for v in row] + [len(n) for n in self.confusion_columns]
            )
            cell = min(longest, 12) + 2
            short = [name[: cell - 2] for name in self.confusion_columns]
            lines.append(" " * (width + 2) + "".join(f"{name:>{cell}}" for name in short))
            for name, row in zip(self.class_names, self.confusion_matrix):
                lines.append(f"  {name:<{width}}" + "".join(f"{v:>{cell}}" for v in row))
        if self.skipped:
            lines += ["", f"skipped {len(self.skipped)} unreadable image(s):"] + [f"  - {s}" for s in self.skipped]
        return "\n".join(lines)


def label_mapping(
    dataset_names: list[str], model_id2label: dict[int, str], renames: dict[str, str] | None = None
) -> np.ndarray:
    """
    For each dataset class index, the model's class index for it: by name (after `renames`, dataset name -> model
    label, from `--label-map`), or by position when the model's labels are generic (`LABEL_0`, ...) and the counts
    agree. Anything else is refused, naming the classes that found no label.
    """
    renames = dict(renames or {})
    model_index = {str(name): int(index) for index, name in model_id2label.items()}
    unknown_targets = sorted(label for label in renames.values() if label not in model_index)
    if unknown_targets:
        raise ValueError(f"--label-map names labels the model does not have: {', '.join(unknown_targets)}")
    names = [renames.get(name, name) for name in dataset_names]
    unmatched = [original for original, name in zip(dataset_names, names) if name not in model_index]
    if not unmatched:
        return np.array([model_index[name] for name in names], dtype=np.int64)
    generic = all(_GENERIC.match(str(label)) for label in model_id2label.values())
    if generic and len(dataset_names) == len(model_id2label):
        warnings.warn(
            "The model's labels are generic (LABEL_0, ...); assuming class i of the dataset (sorted folder names) is "
            f"label i of the model (dataset: {dataset_names[:5]}...).",
            stacklevel=2,
        )
        return np.arange(len(dataset_names), dtype=np.int64)
    shown = ", ".join(unmatched[:10]) + (f" and {len(unmatched) - 10} more" if len(unmatched) > 10 else "")
    examples = ", ".join(sorted(model_index)[:5])
    raise ValueError(
        f"The dataset's classes cannot be matched to the model's {len(model_id2label)} labels: {len(unmatched)} "
        f"class name(s) are not among them ({shown}); the model's labels include {examples}. Map each with "
        "--label-map DATASET_NAME=MODEL_LABEL"
    )


def compute_report(
    logits: np.ndarray,
    labels: np.ndarray,
    class_names: list[str],
    mapping: np.ndarray,
    *,
    k: int = 5,
    skipped: list[str] | None = None,
) -> EvaluationReport:
    """
    The report for model `logits` `[examples, model classes]` and dataset `labels` (dataset class indices), with
    `mapping` sending dataset classes to model classes (see `label_mapping`).
    """
    logits = np.asarray(logits, dtype=np.float64)
    targets = mapping[np.asarray(labels, dtype=np.int64)]
    metric = load_accuracy_topk(keep_in_memory=True, experiment_id=uuid.uuid4().hex)
    scores = metric.compute(predictions=logits, references=targets, k=k)
    predicted = logits.argmax(axis=-1)
    # Columns: the dataset's classes in their order, then one for predictions of any other model class.
    column_of = {int(model_class): column for column, model_class in enumerate(mapping)}
    other = len(class_names)
    columns = np.array([column_of.get(int(p), other) for p in predicted], dtype=np.int64)
    has_other = bool((columns == other).any()) or len(mapping) < logits.shape[-1]
    width = len(class_names) + (1 if has_other else 0)
    matrix = np.zeros((len(class_names), width), dtype=np.int64)
    np.add.at(matrix, (np.asarray(labels, dtype=np.int64), columns), 1)
    support = matrix.sum(axis=1)
    per_class = {name: (float(matrix[i, i] / support[i]) if support[i] else None) for i, name in enumerate(class_names)}
    return EvaluationReport(
        accuracy=float(scores["accuracy"]),
        top_k_accuracy=float(scores[f"top{k}_accuracy"]),
        k=k,
        num_examples=int(len(labels)),
        class_names=list(class_names),
        per_class_accuracy=per_class,
        support={name: int(support[i]) for i, name in enumerate(class_names)},
        confusion_matrix=matrix.tolist(),
        confusion_columns=list(class_names) + (["(other)"] if has_other else []),
        skipped=list(skipped or []),
    )


@torch.no_grad()
def predict_logits(
    model: torch.nn.Module,
    dataset: Dataset,
    *,
    batch_size: int = 64,
    num_workers: int = 0,
    device: str | torch.device | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(logits, labels) of `model` over a transformed dataset (one that yields `pixel_values` and `labels`)."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model = model.to(device).eval()
    loader = DataLoader(dataset, batch_size=batch_size, collate_fn=default_data_collator, num_workers=num_workers)
    all_logits, all_labels = [], []
    for batch in loader:
        output = model(pixel_values=batch["pixel_values"].to(device))
        all_logits.append(output.logits.float().cpu().numpy())
        all_labels.append(batch["labels"].numpy())
    if not all_logits:
        raise ValueError("The split has no (readable) examples to evaluate.")
    return np.concatenate(all_logits), np.concatenate(all_labels)


def choose_split(available: list[str], split: str | None) -> str:
    """`split` if given (and present), else the first of test, validation, train that the dataset has."""
    if split is not None:
        if split not in available:
            raise ValueError(f"The dataset has no split {split!r}; its splits are {available}.")
        return split
    return next(name for name in SPLIT_PREFERENCE + tuple(available) if name in available)


def stratified_sample(labels: list[int], count: int, seed: int = 0) -> list[int]:
    """
    `count` row indices drawn across the classes in proportion to their sizes, the same every time: each class's
    rows in a seeded random order, the k-th row of a class of n ranked at (k + 0.5) / n, the lowest ranks taken (so
    a folder listed class by class is not cut down to its first classes). Returned in dataset order.
    """
    labels_array = np.asarray(labels)
    order = np.random.default_rng(seed).permutation(len(labels_array))
    rank = np.empty(len(labels_array))
    for label in np.unique(labels_array):
        rows = order[labels_array[order] == label]
        rank[rows] = (np.arange(len(rows)) + 0.5) / len(rows)
    chosen = np.lexsort((labels_array, rank))[:count]
    return sorted(chosen.tolist())


def evaluate_dataset(
    options: EvaluateOptions, dataset_options: DatasetOptions, label_map: LabelMapOptions | None = None
) -> EvaluationReport:
    """
    Evaluate the classifier `options.model` on a split of the dataset (see `data.load_image_dataset` for the forms).
    Unreadable images are skipped with a warning and listed in the report; `options.output` writes it as JSON.
    """
    splits, image_column, label_column = load_columns(dataset_options)
    chosen = choose_split(list(splits), options.split)
    data = splits[chosen]
    if options.max_samples is not None and options.max_samples < len(data):
        data = data.select(stratified_sample(list(data[label_column]), options.max_samples))
    data, errors = drop_bad_images(data, image_column, split=chosen)
    feature = data.features[label_column]
    class_names = list(feature.names) if isinstance(feature, ClassLabel) else []
    model = load_model(options.model)
    if not has_classification_head(model.config):
        raise no_head_error(options.model, "evaluate")
    processor = image_processor_for(options.model, model.config)
    mapping = label_mapping(class_names, model.config.id2label, dict(label_map.label_map) if label_map else None)
    transformed = with_transform(data, processor, image_column, label_column, jpeg_decoder=options.jpeg_decoder)
    logits, labels = predict_logits(model, transformed, batch_size=options.batch_size, num_workers=options.num_workers)
    report = compute_report(logits, labels, class_names, mapping, k=options.top_k, skipped=[str(e) for e in errors])
    if options.output is not None:
        report.save(options.output)
    return report


__all__ = [
    "EvaluationReport",
    "choose_split",
    "compute_report",
    "evaluate_dataset",
    "label_mapping",
    "predict_logits",
    "stratified_sample",
]
