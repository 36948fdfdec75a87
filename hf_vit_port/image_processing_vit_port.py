"""The original ViT evaluation preprocessing as a transformers image processor, in torch and NumPy only.

The reference is google-research/vision_transformer's eval input pipeline (and big_vision's
`decode|resize(S)|value_range(-1, 1)`): `tf.image.resize(image, [S, S])`, i.e. bilinear with half-pixel centres and
*no* antialiasing, on the decoded uint8 pixels in float32, then `(x - 127.5) / 127.5`. PIL's bilinear filter (what
transformers' `ViTImageProcessor` uses) antialiases when it shrinks, which moves edges by up to ~1 on the [-1, 1]
scale. The default resize here repeats TensorFlow's arithmetic (equal to its output on the reference photos);
`torch.nn.functional.interpolate(mode="bilinear", align_corners=False)` agrees with it to float32 rounding.

This file is also copied into converted and trained repos, so that `AutoImageProcessor.from_pretrained(repo,
trust_remote_code=True)` works without the package: it imports only torch, NumPy, PIL, transformers and `images.py`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers.image_processing_utils import BaseImageProcessor, BatchFeature
from transformers.processing_utils import ImagesKwargs

from .images import open_image, to_8bit, to_rgb

# Filters by name (as saved in preprocessor_config.json) -> torch's interpolate modes. "nearest" is torch's
# "nearest-exact" (half-pixel centres, as PIL and TensorFlow pick pixels), not its legacy floor-based "nearest".
RESAMPLE_MODES = {"bilinear": "bilinear", "bicubic": "bicubic", "nearest": "nearest-exact"}
# PIL's filter numbers (what ViTImageProcessor saves as `resample`) for the filters above.
_PIL_FILTERS = {0: "nearest", 2: "bilinear", 3: "bicubic"}
_SETTINGS = ("do_resize", "size", "resample", "antialias", "do_rescale", "rescale_factor", "do_normalize",
             "image_mean", "image_std", "do_convert_rgb")


class ViTPortImagesKwargs(ImagesKwargs, total=False):
    antialias: bool | None


class ViTPortImageProcessor(BaseImageProcessor):
    """
    Resize to `size` as the original evaluation pipeline does (bilinear, half-pixel centres, no antialiasing, in
    float32 on the 0-255 pixels), then `(x - 255 * mean) / (255 * std)`: with the default mean and std of 0.5,
    exactly `(x - 127.5) / 127.5`, the [-1, 1] scale the checkpoints were trained on.

    Takes PIL images of any mode, NumPy arrays and torch tensors (HWC or CHW, 2-D for grayscale, 4-D for batches),
    paths, one or a list, in any sizes; returns `pixel_values` of shape (batch, 3, height, width).

    Args:
        size: output `{"height": h, "width": w}` (or an int for a square).
        resample: "bilinear" (the original), "bicubic" or "nearest" (PIL's numbers 2, 3, 0 are accepted).
        antialias: low-pass filter when shrinking, as PIL does. False is the original; True with "bilinear" comes
            close to transformers' `ViTImageProcessor`.
        do_rescale, rescale_factor, do_normalize, image_mean, image_std: as in transformers' processors (pixels
            times `rescale_factor`, then minus mean, divided by std), computed in one step.
        do_convert_rgb: make every input 8-bit RGB first: gray replicated, alpha composited on white, palette, CMYK
            and 16-bit images converted (16-bit scaled down, not clipped).
    """

    model_input_names = ["pixel_values"]
    valid_kwargs = ViTPortImagesKwargs

    def __init__(
        self,
        do_resize: bool = True,
        size: int | Sequence[int] | dict[str, int] | None = None,
        resample: str | int = "bilinear",
        antialias: bool = False,
        do_rescale: bool = True,
        rescale_factor: float = 1 / 255,
        do_normalize: bool = True,
        image_mean: float | Sequence[float] | None = None,
        image_std: float | Sequence[float] | None = None,
        do_convert_rgb: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.do_resize = do_resize
        self.size = size_dict(224 if size is None else size)
        self.resample = resample_name(resample)
        self.antialias = bool(antialias)
        self.do_rescale = do_rescale
        self.rescale_factor = rescale_factor
        self.do_normalize = do_normalize
        self.image_mean = _per_channel(0.5 if image_mean is None else image_mean, "image_mean")
        self.image_std = _per_channel(0.5 if image_std is None else image_std, "image_std")
        self.do_convert_rgb = do_convert_rgb

    def preprocess(
        self,
        images: Any,
        return_tensors: str | None = None,
        input_data_format: str | None = None,
        device: str | torch.device | None = None,
        **overrides: Any,
    ) -> BatchFeature:
        """`pixel_values` for `images`; keyword arguments named like the settings override them for this call.
        `return_tensors` is "pt", "np" or None (a list of arrays); `input_data_format` ("channels_first" or
        "channels_last") settles arrays whose layout is ambiguous."""
        unknown = sorted(set(overrides) - set(_SETTINGS))
        if unknown:
            raise TypeError(f"{type(self).__name__}: unknown argument(s) {unknown}; it takes {list(_SETTINGS)}")
        settings = {name: overrides.get(name, getattr(self, name)) for name in _SETTINGS}
        settings["size"], settings["resample"] = size_dict(settings["size"]), resample_name(settings["resample"])
        arrays = [_to_hwc(image, input_data_format, settings["do_convert_rgb"]) for image in _flatten(images)]
        if not arrays:
            raise ValueError(f"{type(self).__name__}: no images given")
        pixels = self._process(arrays, settings)
        if device is not None:
            pixels = pixels.to(device)
        if return_tensors == "pt":
            return BatchFeature({"pixel_values": pixels})
        if return_tensors in ("np", "numpy"):
            return BatchFeature({"pixel_values": pixels.numpy()})
        if return_tensors is None:
            return BatchFeature({"pixel_values": list(pixels.numpy())})
        raise ValueError(f"{type(self).__name__}: return_tensors must be 'pt', 'np' or None, not {return_tensors!r}")

    def _process(self, arrays: list[np.ndarray], settings: dict[str, Any]) -> torch.Tensor:
        """Each image resized straight into its place in the batch, then the batch rescaled and normalised at once.
        (One at a time costs nothing here: the default resize reads only the source pixels it needs.)"""
        pixels: np.ndarray | None = None
        for index, array in enumerate(arrays):
            image = array[None]
            if settings["do_resize"]:
                image = resize(image, settings["size"], settings["resample"], settings["antialias"])
            if pixels is None:
                pixels = np.empty((len(arrays), *image.shape[1:]), np.float32)
            elif pixels.shape[1:] != image.shape[1:]:
                raise ValueError(f"images of different sizes cannot be batched without resizing: "
                                 f"{pixels.shape[1:3]} and {image.shape[1:3]}")
            pixels[index] = image[0]
        pixels = rescale_and_normalize(pixels, settings)
        return torch.from_numpy(np.ascontiguousarray(pixels.transpose(0, 3, 1, 2)))


def resize(batch: np.ndarray, size: dict[str, int], resample: str | int, antialias: bool) -> np.ndarray:
    """(N, H, W, C) pixels (any dtype) resized to `size`, float32 (N, height, width, C). Bilinear without
    antialiasing is tf.image.resize's arithmetic; the other filters are torch's `interpolate` (half-pixel centres;
    its bicubic uses a = -0.75, where TensorFlow and PIL use -0.5)."""
    target = (size["height"], size["width"])
    mode = RESAMPLE_MODES[resample_name(resample)]
    if mode == "nearest-exact" and antialias:
        raise ValueError("antialias applies to 'bilinear' and 'bicubic' resampling, not 'nearest'")
    if tuple(batch.shape[1:3]) == target:
        return batch.astype(np.float32)  # what TF and torch give at the same size: the pixels themselves
    if mode == "bilinear" and not antialias:
        return _bilinear(batch, target)
    # (N, H, W, C) viewed as (N, C, H, W): channels-last memory, which interpolate handles fastest on CPU.
    tensor = torch.from_numpy(batch if batch.flags.writeable else batch.copy()).permute(0, 3, 1, 2).float()
    extra = {} if mode == "nearest-exact" else {"align_corners": False, "antialias": antialias}
    resized = torch.nn.functional.interpolate(tensor, size=target, mode=mode, **extra)
    return resized.permute(0, 2, 3, 1).numpy()


def _bilinear(batch: np.ndarray, target: tuple[int, int]) -> np.ndarray:
    """TensorFlow's bilinear resize (half-pixel centres, no antialiasing), its arithmetic step for step in float32.

    Without antialiasing an output pixel reads only the 2x2 source pixels around its centre, so those are gathered
    first (still 8-bit) and only they become float: the cost follows the output size, not the photo's. In NumPy,
    single-threaded, because on small arrays torch's threads cost more than they save on a busy machine."""
    count, height, width, channels = batch.shape
    top, bottom, y_lerp = _source_positions(height, target[0])
    left, right, x_lerp = _source_positions(width, target[1])
    # Columns and channels as one axis, so that every step runs over contiguous memory.
    rows = batch.reshape(count, height, width * channels)
    left, right = (np.add.outer(columns * channels, np.arange(channels)).ravel() for columns in (left, right))
    x_lerp, y_lerp = np.repeat(x_lerp, channels), y_lerp.reshape(1, -1, 1)
    upper, lower = rows[:, top], rows[:, bottom]
    upper_row, lower_row = upper[:, :, left].astype(np.float32), lower[:, :, left].astype(np.float32)
    upper_row += (upper[:, :, right] - upper_row) * x_lerp
    lower_row += (lower[:, :, right] - lower_row) * x_lerp
    upper_row += (lower_row - upper_row) * y_lerp
    return upper_row.reshape(count, target[0], target[1], channels)


def _source_positions(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each output row (or column): the source rows below and above its centre and the weight of the upper,
    as TF computes them (float32 scale, centre at (i + 0.5) * scale - 0.5, clamped to the image)."""
    scale = np.float32(in_size) / np.float32(out_size)
    centre = (np.arange(out_size, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5)
    floor = np.floor(centre)
    low = np.maximum(floor, 0).astype(np.intp)
    high = np.minimum(np.ceil(centre), in_size - 1).astype(np.intp)
    return low, high, (centre - floor).astype(np.float32)


def rescale_and_normalize(pixels: np.ndarray, settings: dict[str, Any]) -> np.ndarray:
    """(N, H, W, C) float32: `(x * factor - mean) / std` as `(x - mean / factor) / (std / factor)`; with the
    defaults that is `(x - 127.5) / 127.5`, the very operations of the original pipeline."""
    factor = settings["rescale_factor"] if settings["do_rescale"] else 1.0
    if not settings["do_normalize"]:
        return pixels * np.float32(factor) if settings["do_rescale"] else pixels
    channels = pixels.shape[-1]
    mean = _per_channel(settings["image_mean"], "image_mean", channels)
    std = _per_channel(settings["image_std"], "image_std", channels)
    pixels -= np.array([m / factor for m in mean], dtype=np.float32)
    pixels /= np.array([s / factor for s in std], dtype=np.float32)
    return pixels


def size_dict(size: int | Sequence[int] | dict[str, int]) -> dict[str, int]:
    """`{"height": h, "width": w}` from an int, an (h, w) pair or such a dict."""
    if isinstance(size, dict):
        if set(size) != {"height", "width"}:
            raise ValueError(f"size must have 'height' and 'width' (the output is fixed), got {sorted(size)}")
        return {"height": int(size["height"]), "width": int(size["width"])}
    if isinstance(size, int):
        return {"height": size, "width": size}
    height, width = size
    return {"height": int(height), "width": int(width)}


def resample_name(resample: str | int) -> str:
    """The filter's name from a name or PIL's number for it."""
    if isinstance(resample, str) and resample.lower() in RESAMPLE_MODES:
        return resample.lower()
    if not isinstance(resample, str) and int(resample) in _PIL_FILTERS:
        return _PIL_FILTERS[int(resample)]
    raise ValueError(f"resample must be one of {sorted(RESAMPLE_MODES)} (or PIL's 0, 2, 3), not {resample!r}")


def _per_channel(value: float | Sequence[float], name: str, channels: int = 3) -> list[float]:
    values = [float(value)] * channels if isinstance(value, (int, float)) else [float(v) for v in value]
    if len(values) == 1:
        values = values * channels
    if len(values) != channels:
        raise ValueError(f"{name} has {len(values)} values for {channels} channels")
    return values


def _flatten(images: Any) -> list[Any]:
    """A list of single images from one image, a (nested) list of them, or a 4-D batch array/tensor."""
    if isinstance(images, (list, tuple)):
        return [single for image in images for single in _flatten(image)]
    if isinstance(images, (np.ndarray, torch.Tensor)) and images.ndim == 4:
        return list(images)
    return [images]


def _to_hwc(image: Any, data_format: str | None, convert_rgb: bool) -> np.ndarray:
    """One image as an (H, W, C) array: uint8 0-255 for PIL images and 8-bit arrays, float arrays as given."""
    if isinstance(image, (str, os.PathLike, bytes)):
        image = open_image(image)
    if isinstance(image, Image.Image):
        image = to_rgb(image) if convert_rgb else image
        return np.asarray(image).reshape(image.height, image.width, -1)
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
    if not isinstance(image, np.ndarray):
        raise TypeError(f"expected a PIL image, NumPy array, torch tensor or path, got {type(image).__name__}")
    array = _channels_last(image, data_format)
    return _array_to_rgb(array) if convert_rgb else array


def _channels_last(array: np.ndarray, data_format: str | None) -> np.ndarray:
    if array.ndim == 2:
        return array[:, :, None]
    if array.ndim != 3:
        raise ValueError(f"an image array must have 2 or 3 dimensions, got shape {array.shape}")
    first = data_format == "channels_first" or (data_format is None and array.shape[0] in (1, 2, 3, 4)
                                                and array.shape[-1] not in (1, 2, 3, 4))
    return np.moveaxis(array, 0, -1) if first else array


def _array_to_rgb(array: np.ndarray) -> np.ndarray:
    """RGB from 1-4 channels: gray replicated, alpha composited on white (through PIL for 8-bit arrays, so that
    arrays and PIL images agree), 16-bit integers scaled to 8-bit."""
    if array.dtype == np.uint16:
        array = to_8bit(array, 65535.0)
    channels = array.shape[-1]
    if channels == 3:
        return array
    if array.dtype == np.uint8 and channels in (2, 4):
        mode = "LA" if channels == 2 else "RGBA"
        return np.asarray(to_rgb(Image.fromarray(np.ascontiguousarray(array), mode=mode)))
    if channels in (2, 4):
        white = 1.0 if array.max() <= 1.0 else 255.0
        alpha = array[..., -1:].astype(np.float32) / white
        array = array[..., :-1] * alpha + white * (1.0 - alpha)
    if array.shape[-1] == 1:
        return np.repeat(array, 3, axis=-1)
    return array


ViTPortImageProcessor.register_for_auto_class()

__all__ = ["ViTPortImageProcessor"]
