"""The training-curve figure: loss, accuracy and top-5 accuracy against epochs, from the Trainer's log history."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..figures import figure, save

CURVES_SIZE = (1500, 450)


def _series(log_history: Sequence[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    """(epochs, values) of `key` in the Trainer's log history, keeping the first entry logged at each step.

    The final `trainer.evaluate()` of the reloaded best model logs again at the last step; keeping the first entry
    keeps the curve the curve of the run, not a mix with the best checkpoint's score.
    """
    seen: set[int] = set()
    epochs, values = [], []
    for entry in log_history:
        if key not in entry:
            continue
        step = entry.get("step")
        if step in seen:
            continue
        seen.add(step)
        epochs.append(float(entry.get("epoch", step or 0)))
        values.append(float(entry[key]))
    return epochs, values


CURVE_PANELS = (
    (
        "Loss",
        (("loss", "train (running, augmented)"), ("train_subset_loss", "train subset"), ("eval_loss", "validation")),
    ),
    ("Accuracy", (("train_subset_accuracy", "train subset"), ("eval_accuracy", "validation"))),
    ("Top-5 accuracy", (("train_subset_top5_accuracy", "train subset"), ("eval_top5_accuracy", "validation"))),
)
"""Panels of the training-curve figure: (title, ((log key, legend label), ...))."""

_COLOURS = {"train (running, augmented)": "tab:blue", "train subset": "tab:orange", "validation": "tab:green"}


def plot_training_curves(
    log_history: Sequence[dict[str, Any]], path: str | Path, *, size: tuple[int, int] = CURVES_SIZE
) -> Path:
    """
    Plot loss, accuracy and top-5 accuracy against epochs from `trainer.state.log_history` and save a PNG.

    "train (running, augmented)" is the training loss the Trainer logs every `logging_steps` (averaged over those
    steps, on augmented batches); "train subset" is a fixed subset of the training set scored without augmentation
    at each evaluation (see `ViTPortTrainer`); "validation" is the validation split.
    """
    canvas, axes = figure(size, len(CURVE_PANELS))
    for axis, (title, curves) in zip(axes, CURVE_PANELS):
        drawn = 0
        for key, label in curves:
            epochs, values = _series(log_history, key)
            if values:
                axis.plot(
                    epochs,
                    values,
                    marker="o" if len(values) < 30 else None,
                    markersize=3,
                    label=label,
                    color=_COLOURS.get(label),
                )
                drawn += 1
        axis.set_title(title)
        axis.set_xlabel("epoch")
        axis.grid(True, alpha=0.3)
        if drawn:
            axis.legend(fontsize=8)
        else:
            axis.text(0.5, 0.5, "not logged", ha="center", va="center", transform=axis.transAxes)
        if title != "Loss":
            axis.set_ylim(-0.02, 1.02)
    return save(canvas, path)


__all__ = ["CURVES_SIZE", "CURVE_PANELS", "plot_training_curves"]
