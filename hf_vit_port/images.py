"""Opening images defensively: every readable image becomes 8-bit RGB, every unreadable one a clear `BadImageError`.

Real image collections hold grayscale, RGBA, palette, CMYK and 16-bit files, photos whose EXIF orientation says
they are stored rotated, and also truncated downloads, empty files, files that are not images at all and
decompression bombs (tiny files declaring gigapixel sizes). The first kind is converted here; the second raises
`BadImageError` naming the file, so that a run can report it and skip it instead of dying on it.
"""

from __future__ import annotations

import io
import os
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

DEFAULT_MAX_PIXELS = 89_478_485
"""Pixel limit (width x height) above which an image is refused as a possible decompression bomb (PIL's default)."""

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm", ".jfif"}
)
"""File suffixes treated as images when a folder is expanded."""

URL_TIMEOUT_S = 20.0

JPEG_DECODERS = ("pil", "tf-default")
"""How JPEG files are decoded: "pil" (libjpeg's accurate integer DCT, also TensorFlow's with
dct_method="INTEGER_ACCURATE"), or "tf-default", TensorFlow's default decode (libjpeg's fast integer DCT, as tfds
and the original input pipelines decoded their datasets), bit for bit, through simplejpeg (the `jpeg` extra). The
two differ by up to ~11 grey levels, ~1 on average."""


class BadImageError(ValueError):
    """An image that cannot be used; the message names its source and says why."""

    def __init__(self, source: str, reason: str):
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


def is_url(source: str | os.PathLike) -> bool:
    """Whether `source` is an http(s) URL rather than a local path."""
    return isinstance(source, str) and source.lower().startswith(("http://", "https://"))


def offline() -> bool:
    """Whether the user asked for no network access (the Hugging Face offline switches)."""
    return any(
        os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}
        for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def fetch_url(url: str, *, timeout: float = URL_TIMEOUT_S) -> bytes:
    """Download an image's bytes, refusing when offline mode is on and turning network failures into BadImageError."""
    if offline():
        raise BadImageError(
            url, "cannot download a URL in offline mode (HF_HUB_OFFLINE=1); download it and pass the file"
        )
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (http(s) checked by is_url)
            return response.read()
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise BadImageError(url, f"could not download it ({reason}); check the address and the network") from error


def to_8bit(array: np.ndarray, top: float) -> np.ndarray:
    """`array` (values 0..`top`) scaled and rounded to uint8 0..255: how 16-bit and wider pixels become 8-bit."""
    return np.clip(np.asarray(array, dtype=np.float64) / top * 255.0 + 0.5, 0, 255).astype(np.uint8)


def to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB from any PIL mode: alpha composited on white, 16-bit and float scaled down rather than clipped."""
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        # PIL's own I;16 -> RGB conversion clips at 255, turning most 16-bit images white; scale by the range
        # the mode can hold instead (16-bit for I;16*, the observed maximum for 32-bit int and float images).
        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") else max(float(array.max()), 1.0)
        if image.mode == "F" and top <= 1.0:
            top = 1.0
        return Image.fromarray(to_8bit(array, top), mode="L").convert("RGB")
    if (image.mode == "P" and "transparency" in image.info) or image.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")


def open_image(
    source: str | os.PathLike | bytes | Image.Image | dict[str, Any],
    *,
    name: str | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    jpeg_decoder: str = "pil",
) -> Image.Image:
    """
    Open `source` as an upright 8-bit RGB PIL image, fully decoded.

    `source` is a path, a URL, raw bytes, a PIL image, or a `datasets` image cell (`{"bytes": ..., "path": ...}`).
    `name` is how errors refer to it (defaults to the path or URL). Raises `BadImageError` for anything unreadable:
    missing, empty, truncated or non-image files, and images over `max_pixels` pixels (None disables the check).
    `jpeg_decoder` is one of `JPEG_DECODERS` (it applies to JPEG files and bytes; PIL images are already decoded).
    """
    if jpeg_decoder not in JPEG_DECODERS:
        raise ValueError(f"unknown JPEG decoder {jpeg_decoder!r}; choose one of {', '.join(JPEG_DECODERS)}")
    if isinstance(source, dict):
        data, path = source.get("bytes"), source.get("path")
        name = name or path or "<image bytes>"
        source = data if data is not None else path
        if source is None:
            raise BadImageError(name, "the dataset row has neither image bytes nor a path")
    if isinstance(source, Image.Image):
        return _finish(source, name or "<PIL image>", max_pixels)
    if isinstance(source, (bytes, bytearray)):
        name = name or "<image bytes>"
        if not source:
            raise BadImageError(name, "the image data is empty (0 bytes)")
        return _decode(io.BytesIO(source), name, max_pixels, jpeg_decoder)
    if is_url(source):
        return _decode(io.BytesIO(fetch_url(str(source))), name or str(source), max_pixels, jpeg_decoder)
    path = Path(source)
    name = name or str(path)
    if not path.is_file():
        raise BadImageError(name, "no such file")
    if path.stat().st_size == 0:
        raise BadImageError(name, "the file is empty (0 bytes)")
    with open(path, "rb") as handle:
        return _decode(io.BytesIO(handle.read()), name, max_pixels, jpeg_decoder)


def _decode(stream: io.BytesIO, name: str, max_pixels: int | None, jpeg_decoder: str = "pil") -> Image.Image:
    try:
        # Our limit is the only one that decides (PIL's own would refuse a --max-pixels above it): PIL's check is off
        # while the header is read, and ours runs on the header's size before anything is decoded.
        with _without_pil_pixel_limit():
            image = Image.open(stream)
        _check_pixels(image, name, max_pixels)
        if jpeg_decoder == "tf-default" and image.format == "JPEG" and image.mode in ("L", "RGB"):
            image = _decode_jpeg_like_tensorflow(stream.getvalue(), image)
        image.load()
    except BadImageError:
        raise
    except UnidentifiedImageError as error:
        raise BadImageError(name, "not an image file PIL can read") from error
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        # Truncated files fail here ("image file is truncated"), as do corrupt headers and bad compression data.
        raise BadImageError(name, f"the image is damaged or truncated ({error})") from error
    return _finish(image, name, max_pixels)


def _decode_jpeg_like_tensorflow(data: bytes, header: Image.Image) -> Image.Image:
    """TensorFlow's default JPEG decode (fast integer DCT, fancy chroma upsampling), keeping the EXIF orientation."""
    try:
        import simplejpeg
    except ImportError:
        raise ImportError("the tf-default JPEG decoder needs simplejpeg: pip install 'hf-vit-port[jpeg]'") from None
    try:
        array = simplejpeg.decode_jpeg(data, colorspace="RGB", fastdct=True, fastupsample=False)
    except ValueError as error:  # simplejpeg's complaint about a damaged file
        raise OSError(str(error)) from error
    image = Image.fromarray(array, mode="RGB")
    if "exif" in header.info:
        image.info["exif"] = header.info["exif"]
    return image


@contextmanager
def _without_pil_pixel_limit() -> Iterator[None]:
    limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def _check_pixels(image: Image.Image, name: str, max_pixels: int | None) -> None:
    width, height = image.size
    if width <= 0 or height <= 0:
        raise BadImageError(name, f"the image has no pixels ({width}x{height})")
    if max_pixels is not None and width * height > max_pixels:
        raise BadImageError(
            name,
            f"{width}x{height} = {width * height} pixels exceeds the limit of {max_pixels} "
            "(possible decompression bomb)",
        )


def _finish(image: Image.Image, name: str, max_pixels: int | None) -> Image.Image:
    _check_pixels(image, name, max_pixels)
    try:
        # Cameras store photos unrotated with an EXIF orientation tag; models should see them upright.
        upright = ImageOps.exif_transpose(image)
        return to_rgb(upright if upright is not None else image)
    except (OSError, ValueError, SyntaxError) as error:
        raise BadImageError(name, f"the image could not be converted to RGB ({error})") from error


def expand_sources(sources: Iterable[str | os.PathLike]) -> Iterator[str]:
    """Paths and URLs, with each folder replaced by the image files inside it (recursively, sorted)."""
    for source in sources:
        if is_url(source):
            yield str(source)
            continue
        path = Path(source)
        if path.is_dir():
            for child in sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES):
                yield str(child)
        else:
            yield str(path)


__all__ = [
    "BadImageError",
    "DEFAULT_MAX_PIXELS",
    "IMAGE_SUFFIXES",
    "JPEG_DECODERS",
    "expand_sources",
    "fetch_url",
    "is_url",
    "offline",
    "open_image",
    "to_8bit",
    "to_rgb",
]
