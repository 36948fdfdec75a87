"""Training augmentations in PIL and torch (torchvision is deliberately not a dependency).

Two recipes use them:

* fine-tuning: a random resized crop ("Inception crop") of the original image, then a horizontal flip, both on the
  PIL image before the checkpoint's processor rescales and normalises it;
* the Keras CIFAR-100 example: after normalising and resizing (the processor), a horizontal flip, a small random
  rotation and a random zoom, applied to the pixel tensor with reflected borders as Keras' layers do.

Every random transform takes the `torch.Generator` it draws from (None: torch's global one). During training each
example gets its own generator from `AugmentationSeed`, seeded by (run seed, epoch, example index) alone: the draws
do not depend on the order batches are made in, on DataLoader workers, on the number of processes, or on whether the
run was resumed from a checkpoint (the Trainer restores its RNG state only after the first resumed batch is made).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image


def _uniform(low: float, high: float, generator: torch.Generator | None) -> float:
    return low + (high - low) * torch.rand((), generator=generator).item()


@dataclass
class AugmentationSeed:
    """
    The randomness of a run's augmentation: `seed(index)` is a fresh generator for example `index` in the current
    `epoch`, a function of (seed, epoch, index) only. The trainer sets `epoch` at the start of each epoch, before the
    DataLoader starts its workers (which get a copy of it).
    """

    seed: int
    epoch: int = 0

    def __call__(self, index: int) -> torch.Generator:
        words = np.random.SeedSequence([self.seed % (1 << 64), self.epoch, index]).generate_state(2, np.uint32)
        return torch.Generator().manual_seed((int(words[0]) << 32) | int(words[1]))


@dataclass
class RandomResizedCrop:
    """
    Crop a random region covering `scale` of the image's area with aspect ratio in `ratio` (log-uniform), and resize
    it to `size` (height, width). After 10 failed draws the centre crop of the largest allowed aspect is used.
    """

    size: tuple[int, int]
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    resample: int = Image.BILINEAR

    def crop_box(self, width: int, height: int, generator: torch.Generator | None = None) -> tuple[int, int, int, int]:
        """A (left, top, right, bottom) box drawn as described above."""
        area = width * height
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            target_area = area * _uniform(*self.scale, generator)
            aspect = math.exp(_uniform(*log_ratio, generator))
            crop_w = int(round(math.sqrt(target_area * aspect)))
            crop_h = int(round(math.sqrt(target_area / aspect)))
            if 0 < crop_w <= width and 0 < crop_h <= height:
                left = int(torch.randint(0, width - crop_w + 1, (), generator=generator).item())
                top = int(torch.randint(0, height - crop_h + 1, (), generator=generator).item())
                return left, top, left + crop_w, top + crop_h
        # Fallback: the whole image, trimmed to the allowed aspect range.
        aspect = width / height
        if aspect < min(self.ratio):
            crop_w, crop_h = width, int(round(width / min(self.ratio)))
        elif aspect > max(self.ratio):
            crop_w, crop_h = int(round(height * max(self.ratio))), height
        else:
            crop_w, crop_h = width, height
        left, top = (width - crop_w) // 2, (height - crop_h) // 2
        return left, top, left + crop_w, top + crop_h

    def __call__(self, image: Image.Image, generator: torch.Generator | None = None) -> Image.Image:
        box = self.crop_box(*image.size, generator)
        height, width = self.size
        return image.resize((width, height), resample=self.resample, box=box)


@dataclass
class RandomHorizontalFlip:
    """Mirror a PIL image or a `[..., height, width]` tensor left-right with probability `p`."""

    p: float = 0.5

    def __call__(
        self, image: Image.Image | torch.Tensor, generator: torch.Generator | None = None
    ) -> Image.Image | torch.Tensor:
        if torch.rand((), generator=generator).item() >= self.p:
            return image
        if isinstance(image, torch.Tensor):
            return image.flip(-1)
        return image.transpose(Image.FLIP_LEFT_RIGHT)


@dataclass
class Compose:
    """Apply random transforms in order, all drawing from one generator."""

    transforms: tuple

    def __call__(self, value, generator: torch.Generator | None = None):
        for transform in self.transforms:
            value = transform(value, generator)
        return value


def affine_transform(pixels: torch.Tensor, *, angle: float, zoom: tuple[float, float]) -> torch.Tensor:
    """
    Rotate a `[channels, height, width]` image by `angle` radians and zoom it by (height, width)
    factors about its centre, bilinearly, with borders filled by reflection.

    A zoom factor above 1 zooms out (each output pixel reads from farther from the centre), as in Keras'
    `RandomZoom`, whose positive factors zoom out.
    """
    channels, height, width = pixels.shape
    cos, sin = math.cos(angle), math.sin(angle)
    zoom_h, zoom_w = zoom
    # In pixel units about the centre: input = R(angle) @ diag(zoom_w, zoom_h) @ output. affine_grid works in
    # coordinates normalised to [-1, 1] per axis, so conjugate by the per-axis half-sizes to keep non-square images
    # from being sheared.
    half_w, half_h = width / 2.0, height / 2.0
    theta = torch.tensor(
        [
            [cos * zoom_w, -sin * zoom_h * half_h / half_w, 0.0],
            [sin * zoom_w * half_w / half_h, cos * zoom_h, 0.0],
        ],
        dtype=torch.float32,
    )
    batch = pixels.unsqueeze(0).to(torch.float32)
    grid = F.affine_grid(theta.unsqueeze(0), list(batch.shape), align_corners=False)
    out = F.grid_sample(batch, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    return out[0].to(pixels.dtype)


@dataclass
class RandomRotationZoom:
    """
    Keras' `RandomRotation(factor=rotation)` followed by `RandomZoom(height_factor=zoom, width_factor=zoom)`:
    an angle uniform in [-rotation, rotation] turns (0.02 = 0.02 * 2 pi radians), independent height and width zoom
    factors uniform in [1 - zoom, 1 + zoom], reflected borders.
    """

    rotation: float = 0.02
    zoom: float = 0.2

    def __call__(self, pixels: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        angle = _uniform(-self.rotation, self.rotation, generator) * 2 * math.pi
        zoom = (_uniform(1 - self.zoom, 1 + self.zoom, generator), _uniform(1 - self.zoom, 1 + self.zoom, generator))
        return affine_transform(pixels, angle=angle, zoom=zoom)


def finetune_augmentation(
    image_size: tuple[int, int], *, crop_scale: tuple[float, float] = (0.08, 1.0), flip: bool = True
) -> Compose:
    """PIL-level fine-tuning augmentation: random resized crop to `image_size`, then (optionally) a horizontal flip."""
    steps = [RandomResizedCrop(tuple(image_size), scale=crop_scale)]
    if flip:
        steps.append(RandomHorizontalFlip())
    return Compose(tuple(steps))


def keras_augmentation(*, rotation: float = 0.02, zoom: float = 0.2, flip: bool = True) -> Compose:
    """Tensor-level augmentation of the Keras ViT example (after normalisation and resizing): flip, rotate, zoom."""
    steps = [RandomHorizontalFlip()] if flip else []
    steps.append(RandomRotationZoom(rotation=rotation, zoom=zoom))
    return Compose(tuple(steps))


__all__ = [
    "AugmentationSeed",
    "Compose",
    "RandomHorizontalFlip",
    "RandomResizedCrop",
    "RandomRotationZoom",
    "affine_transform",
    "finetune_augmentation",
    "keras_augmentation",
]
