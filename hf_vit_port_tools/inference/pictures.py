"""Pictures: an image cut into its patches, and attention rollout overlaid on an image, at fixed sizes in pixels
(`PATCHES_SIZE`, `ATTENTION_SIZE`: width, height)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from hf_vit_port.configuration_vit_port import to_pair

from ..figures import figure, save

PATCHES_SIZE = (1000, 500)
ATTENTION_SIZE = (1350, 450)


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
    canvas, (left, right) = figure(size, 2)
    left.imshow(np.asarray(image.convert("RGB").resize((width, height), resample=Image.BILINEAR)))
    left.set_title(f"Image: {height} x {width}")
    right.imshow(mosaic, interpolation="nearest")
    right.set_title(
        f"{grid_h * grid_w} patches of {patch_h} x {patch_w} ({grid_h} x {grid_w}), {patch_h * patch_w * 3} values each"
    )
    for axis in (left, right):
        axis.axis("off")
    return save(canvas, path)


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
    upsampled rollout overlaid on the image. The grid is stretched to the image's aspect (a 14 x 14 grid of a
    landscape photo is drawn landscape, as it lies on the photo); both maps carry a colorbar."""
    image = image.convert("RGB")
    heat = relevance_overlay(image, np.asarray(relevance, dtype=np.float64))
    canvas, (original, grid, overlay) = figure(size, 3)
    original.imshow(np.asarray(image))
    original.set_title(f"image: {title}" if title else "image")
    extent = (0, image.width, image.height, 0)  # the grid over the image's own width and height
    shown = grid.imshow(relevance, cmap="inferno", interpolation="nearest", extent=extent)
    grid.set_title(f"attention rollout ({relevance.shape[0]} x {relevance.shape[1]} patches)")
    canvas.colorbar(shown, ax=grid, shrink=0.8, label="share of the output")
    overlay.imshow(np.asarray(image))
    heat_shown = overlay.imshow(heat, cmap="jet", alpha=alpha, vmin=0.0, vmax=1.0)
    overlay.set_title("overlay")
    canvas.colorbar(heat_shown, ax=overlay, shrink=0.8, label="relative relevance")
    for axis in (original, grid, overlay):
        axis.axis("off")
    return save(canvas, path)


__all__ = ["ATTENTION_SIZE", "PATCHES_SIZE", "patch_mosaic", "plot_attention", "plot_patches", "relevance_overlay"]
