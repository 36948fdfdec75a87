"""Checks of a command's inputs that run before its module (and torch) is imported: a missing image, folder or model
directory is reported in a fraction of a second, in one line naming the flag, instead of after loading a model or as
a Hub connection error about a name that was meant as a path.

Every function here takes the command's option dataclasses, as its runner does, and raises ValueError.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..options import (
    AttentionOptions,
    DatasetOptions,
    EmbedOptions,
    EvaluateOptions,
    LabelMapOptions,
    PatchesOptions,
    PredictOptions,
)

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_URL_PREFIXES = ("http://", "https://")
_IMAGEFOLDER = "imagefolder:"
_IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm", ".jfif"}
)  # hf_vit_port.images.IMAGE_SUFFIXES, repeated so that this module stays free of PIL and numpy


def model_source(value: str, flag: str = "--model") -> None:
    """A model directory holding config.json, a .npz file, or something shaped like a Hub id (ORG/NAME)."""
    path = Path(value).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ValueError(f"{flag} {value}: the directory holds no config.json (not a saved model repo)")
        return
    if path.is_file():
        if path.suffix != ".npz":
            raise ValueError(f"{flag} {value}: a file, but not a .npz checkpoint; pass a model directory or a .npz")
        return
    if value.endswith(".npz") or not _HUB_ID.match(value) or value.startswith((".", "~", os.sep)):
        raise ValueError(f"{flag} {value}: no such directory or file (and not an ORG/NAME Hub id)")


def image_sources(values: list[str], flag: str = "IMAGE") -> None:
    """Every local path exists, and every folder holds at least one image (URLs are checked when fetched)."""
    for value in values:
        if value.lower().startswith(_URL_PREFIXES):
            continue
        path = Path(value)
        if not path.exists():
            raise ValueError(f"{flag} {value}: no such file or folder")
        if path.is_dir() and not _has_image(path):
            raise ValueError(f"{flag} {value}: the folder holds no image files ({', '.join(sorted(_IMAGE_SUFFIXES))})")


def dataset_source(spec: str, flag: str = "--dataset") -> None:
    """`imagefolder:DIR` names a folder of class sub-folders holding images."""
    if not spec.startswith(_IMAGEFOLDER):
        return
    folder = Path(spec[len(_IMAGEFOLDER) :])
    if not folder.is_dir():
        raise ValueError(f"{flag} {spec}: no such folder {folder}")
    if not _has_image(folder):
        raise ValueError(f"{flag} {spec}: the folder holds no image files (expected DIR/<class>/<image>)")


def _has_image(folder: Path) -> bool:
    return any(p.suffix.lower() in _IMAGE_SUFFIXES and p.is_file() for p in folder.rglob("*"))


def predict(options: PredictOptions) -> None:
    image_sources(options.images)
    model_source(options.model)


def evaluate(options: EvaluateOptions, dataset: DatasetOptions, label_map: LabelMapOptions) -> None:
    dataset_source(dataset.dataset)
    model_source(options.model)


def plot_attention(options: AttentionOptions) -> None:
    image_sources([options.image])
    model_source(options.model)


def plot_patches(options: PatchesOptions) -> None:
    image_sources([options.image])
    if options.patch_size <= 0 or options.image_size % options.patch_size:
        raise ValueError(f"--patch-size {options.patch_size} does not divide --image-size {options.image_size}; "
                         "pick a patch size that does (e.g. 16 for 224)")


def embed(options: EmbedOptions) -> None:
    looks_like_a_path = options.source.startswith((".", "~", os.sep)) or Path(options.source).exists()
    if not options.source.startswith(_IMAGEFOLDER) and looks_like_a_path:
        image_sources([options.source], "SOURCE")
    else:
        dataset_source(options.source, "SOURCE")
    model_source(options.model)
    if options.output.suffix != ".parquet":
        raise ValueError(f"--output {options.output}: name a .parquet file")
