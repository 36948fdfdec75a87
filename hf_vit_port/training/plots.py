"""Pictures: training curves, an image cut into its patches, and attention rollout overlaid on an image.

All figures are drawn with matplotlib's Agg backend (no display needed) at a fixed size in pixels, so a PNG's
size is known in advance: `CURVES_SIZE`, `PATCHES_SIZE`, `ATTENTION_SIZE` (width, height).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before pyplot: headless servers and tests have no display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from ..configuration_vit_port import to_pair  # noqa: E402

DPI = 100
CURVES_SIZE = (1500, 450)
PATCHES_SIZE = (1000, 500)
ATTENTION_SIZE = (1350, 450)


def _figure(size: tuple[int, int], columns: int) -> tuple[Any, Any]:
    width, height = size
    # Constrained layout keeps titles and legends inside the fixed canvas (tight_layout can push titles off it).
    return plt.subplots(1, columns, figsize=(width / DPI, height / DPI), dpi=DPI, layout="constrained")


def _save(figure: Any, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # No bbox_inches="tight": it would crop the canvas and change the promised pixel size.
    figure.savefig(path, dpi=DPI, format="png")
    plt.close(figure)
    return path


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
    figure, axes = _figure(size, len(CURVE_PANELS))
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
    return _save(figure, path)


def patch_mosaic(
    image: Image.Image, patch_size: int | tuple[int, int], image_size: int | tuple[int, int], *, gap: int | None = None
) -> tuple[np.ndarray, tuple[int, int]]:
    """
    The image resized to `image_size` and cut into patches of `patch_size`, laid out in their grid with white gaps
    between them: `(mosaic uint8 [H, W, 3], (grid_h, grid_w))`. This is how the Keras ViT example shows patches.
    """
    (height, width), (patch_h, patch_w) = to_pair(image_size), to_pair(patch_size)
    if height % patch_h or width % patch_w:
        raise ValueError(f"image size {height}x{width} is not a multiple of the patch size {patch_h}x{patch_w}.")
    pixels = np.asarray(image.convert("RGB").resize((width, height), resample=Image.BILINEAR))
    grid_h, grid_w = height // patch_h, width // patch_w
    gap = max(1, min(patch_h, patch_w) // 8) if gap is None else gap
    mosaic = np.full((grid_h * (patch_h + gap) - gap, grid_w * (patch_w + gap) - gap, 3), 255, dtype=np.uint8)
    for row in range(grid_h):
        for column in range(grid_w):
            top, left = row * (patch_h + gap), column * (patch_w + gap)
            mosaic[top : top + patch_h, left : left + patch_w] = pixels[
                row * patch_h : (row + 1) * patch_h, column * patch_w : (column + 1) * patch_w
            ]
    return mosaic, (grid_h, grid_w)


def plot_patches(
    image: Image.Image,
    path: str | Path,
    *,
    patch_size: int | tuple[int, int] = 16,
    image_size: int | tuple[int, int] = 224,
    size: tuple[int, int] = PATCHES_SIZE,
) -> Path:
    """Save a PNG of the resized image (left) and its patches in their grid (right)."""
    (height, width), (patch_h, patch_w) = to_pair(image_size), to_pair(patch_size)
    mosaic, (grid_h, grid_w) = patch_mosaic(image, (patch_h, patch_w), (height, width))
    figure, (left, right) = _figure(size, 2)
    left.imshow(np.asarray(image.convert("RGB").resize((width, height), resample=Image.BILINEAR)))
    left.set_title(f"Image: {height} x {width}")
    right.imshow(mosaic, interpolation="nearest")
    right.set_title(
        f"{grid_h * grid_w} patches of {patch_h} x {patch_w} ({grid_h} x {grid_w}), {patch_h * patch_w * 3} values each"
    )
    for axis in (left, right):
        axis.axis("off")
    return _save(figure, path)


def relevance_overlay(image: Image.Image, relevance: np.ndarray) -> np.ndarray:
    """The patch relevance `[grid_h, grid_w]` scaled to [0, 1] and upsampled (bilinearly) to the image's size."""
    scaled = relevance - relevance.min()
    scaled = scaled / scaled.max() if scaled.max() > 0 else scaled
    heat = Image.fromarray((scaled * 255).astype(np.uint8), mode="L").resize(image.size, resample=Image.BILINEAR)
    return np.asarray(heat, dtype=np.float32) / 255.0


def plot_attention(
    image: Image.Image,
    relevance: np.ndarray,
    path: str | Path,
    *,
    title: str = "",
    size: tuple[int, int] = ATTENTION_SIZE,
    alpha: float = 0.5,
) -> Path:
    """Save a PNG: the image (titled with `title`, e.g. the prediction), the attention-rollout grid, and the
    upsampled rollout overlaid on the image."""
    image = image.convert("RGB")
    heat = relevance_overlay(image, np.asarray(relevance, dtype=np.float64))
    figure, (original, grid, overlay) = _figure(size, 3)
    original.imshow(np.asarray(image))
    original.set_title(f"image: {title}" if title else "image")
    grid.imshow(relevance, cmap="inferno", interpolation="nearest")
    grid.set_title(f"attention rollout ({relevance.shape[0]} x {relevance.shape[1]} patches)")
    overlay.imshow(np.asarray(image))
    overlay.imshow(heat, cmap="jet", alpha=alpha, vmin=0.0, vmax=1.0)
    overlay.set_title("overlay")
    for axis in (original, grid, overlay):
        axis.axis("off")
    return _save(figure, path)


__all__ = [
    "ATTENTION_SIZE",
    "CURVES_SIZE",
    "CURVE_PANELS",
    "PATCHES_SIZE",
    "patch_mosaic",
    "plot_attention",
    "plot_patches",
    "plot_training_curves",
    "relevance_overlay",
]
