"""A repo directory checked before it goes anywhere: the files a model repo needs, a config that parses, and
safetensors weights whose header is intact, whose data is all there, and (for `vit_port` repos) whose shapes are
the ones the config builds. Cheap: no tensor data is read."""

from __future__ import annotations

import json
import struct
from pathlib import Path

REQUIRED_FILES = ("config.json", "model.safetensors", "README.md")
_ITEM_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}


class RepoCheckError(ValueError):
    """A repo directory that must not be published; the message names the file at fault."""


def check_repo(directory: Path) -> None:
    if not directory.is_dir():
        raise RepoCheckError(f"{directory} is not a directory of a converted repo")
    missing = [name for name in REQUIRED_FILES if not (directory / name).is_file()]
    if missing:
        raise RepoCheckError(f"{directory} is not a complete converted repo: missing {', '.join(missing)}")
    config_path = directory / "config.json"
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise RepoCheckError(f"{config_path}: not a readable JSON config ({error})") from None
    if not isinstance(config, dict) or "model_type" not in config:
        raise RepoCheckError(f"{config_path}: has no model_type; it is not a transformers config")
    shapes = safetensors_shapes(directory / "model.safetensors")
    if config["model_type"] == "vit_port":
        _check_shapes_fit(directory, shapes)


def safetensors_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """The tensors a safetensors file declares, after checking that its header parses and its data is complete."""
    size = path.stat().st_size
    try:
        with path.open("rb") as stream:
            (header_size,) = struct.unpack("<Q", stream.read(8))
            if header_size > size - 8:
                raise ValueError(f"its header claims {header_size:,} bytes of a {size:,}-byte file")
            header = json.loads(stream.read(header_size))
    except (struct.error, ValueError, UnicodeDecodeError) as error:
        raise RepoCheckError(f"{path}: the safetensors header is damaged ({error})") from None
    header.pop("__metadata__", None)
    end = 0
    for name, entry in header.items():
        begin, stop = entry["data_offsets"]
        count = 1
        for dimension in entry["shape"]:
            count *= dimension
        if stop - begin != count * _ITEM_BYTES.get(entry["dtype"], 0):
            raise RepoCheckError(f"{path}: tensor {name} declares {entry['shape']} {entry['dtype']} in "
                                 f"{stop - begin:,} bytes; the file is damaged")
        end = max(end, stop)
    if 8 + header_size + end != size:
        raise RepoCheckError(f"{path}: the header promises {8 + header_size + end:,} bytes, the file holds {size:,}; "
                             f"it is truncated or damaged (convert it again)")
    return {name: tuple(entry["shape"]) for name, entry in header.items()}


def _check_shapes_fit(directory: Path, shapes: dict[str, tuple[int, ...]]) -> None:
    """The weights are the ones the config builds: same names, same shapes (a model built on the meta device)."""
    import torch

    import hf_vit_port
    from hf_vit_port import ViTPortConfig

    config = ViTPortConfig.from_pretrained(directory)
    name = (config.architectures or ["ViTPortForImageClassification"])[0]
    model_class = getattr(hf_vit_port, name, hf_vit_port.ViTPortForImageClassification)
    with torch.device("meta"):
        expected = {key: tuple(value.shape) for key, value in model_class(config).state_dict().items()}
    if expected != shapes:
        differing = sorted(key for key in expected.keys() | shapes.keys() if expected.get(key) != shapes.get(key))
        raise RepoCheckError(f"{directory}: model.safetensors does not fit config.json (first differences: "
                             f"{', '.join(differing[:3])}); convert it again")
