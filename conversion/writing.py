"""Writing a `vit_port` repo without building a model: the weights streamed into `model.safetensors` one tensor at
a time, then the files `save_pretrained` would write beside them (config with `architectures` and `auto_map`, the
modeling and image-processing code for `trust_remote_code`, preprocessor_config.json).

This is the one write path of the `vit_port` format: an unmodified conversion streams the `.npz` arrays straight in
(each transposed, written and freed before the next is read), an adapted one (another size or head) streams the
adapted model's tensors. Nothing here imports transformers' modeling stack, so an unverified conversion does not.
"""

from __future__ import annotations

import json
import mmap
import shutil
import struct
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import NamedTuple

import numpy as np

import hf_vit_port
from hf_vit_port.configuration_vit_port import AUTO_MAP, ViTPortConfig
from hf_vit_port.processing import PROCESSOR_CODE_FILES, preprocessor_config

_DTYPES = {np.dtype(np.float32): "F32"}
# The plugin's files a repo carries for trust_remote_code: the configuration, the model, the image processor, and
# what they import.
_CODE_FILES = ("configuration_vit_port.py", "modeling_vit_port.py", "presets.py", "resample.py",
               *PROCESSOR_CODE_FILES)
_ALIGNMENT = 8  # safetensors pads its header so that the data starts aligned


class Tensor(NamedTuple):
    name: str
    shape: tuple[int, ...]
    make: Callable[[], np.ndarray]  # called once, when the tensor is written


def write_safetensors(path: Path, tensors: Iterable[Tensor]) -> None:
    """A safetensors file of float32 `tensors`, written in order and each made only when its turn comes: the header
    is laid out from the shapes, so at most one tensor is in memory at a time."""
    tensors = list(tensors)
    header, offset = {}, 0
    for tensor in tensors:
        size = int(np.prod(tensor.shape, dtype=np.int64)) * 4
        header[tensor.name] = {"dtype": "F32", "shape": list(tensor.shape), "data_offsets": [offset, offset + size]}
        offset += size
    header["__metadata__"] = {"format": "pt"}
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % _ALIGNMENT)
    with path.open("wb") as stream:
        stream.write(struct.pack("<Q", len(encoded)) + encoded)
        for tensor in tensors:
            array = np.ascontiguousarray(tensor.make(), dtype=np.float32)
            if tuple(array.shape) != tensor.shape:  # the layout promised in the header must hold
                raise ValueError(f"{tensor.name}: made {tuple(array.shape)}, expected {tensor.shape}")
            stream.write(memoryview(array).cast("B"))
            del array


class MappedSafetensors:
    """The float32 tensors of a safetensors file as copy-on-write views of the file mapped into memory: nothing is
    read until used, the pages are the page cache's, and `release` hands a tensor's pages back once it has been used
    (the views stay valid: a later read maps them in again from the unchanged file)."""

    def __init__(self, path: Path) -> None:
        with path.open("rb") as stream:
            (length,) = struct.unpack("<Q", stream.read(8))
            header = json.loads(stream.read(length))
        self._mapped = np.memmap(path, dtype=np.uint8, mode="c")
        self.tensors: dict[str, np.ndarray] = {}
        self._spans: dict[str, tuple[int, int]] = {}
        for name, entry in header.items():
            if name == "__metadata__":
                continue
            if entry["dtype"] != "F32":
                raise ValueError(f"{path}: tensor {name!r} is {entry['dtype']}, expected F32")
            begin, end = (8 + length + offset for offset in entry["data_offsets"])
            self._spans[name] = (begin, end)
            self.tensors[name] = self._mapped[begin:end].view(np.float32).reshape(entry["shape"])

    def release(self, prefix: str) -> None:
        """Drop the pages of every tensor whose name starts with `prefix` from this process's memory."""
        for name, (begin, end) in self._spans.items():
            if name.startswith(prefix):
                start = begin - begin % mmap.PAGESIZE  # madvise wants page-aligned starts
                self._mapped._mmap.madvise(mmap.MADV_DONTNEED, start, end - start)


def write_repo_files(directory: Path, config: ViTPortConfig, architecture: str) -> None:
    """config.json as `save_pretrained` writes it for `architecture`, preprocessor_config.json as
    `ViTPortImageProcessor.save_pretrained` writes it, and the code files for trust_remote_code."""
    config = ViTPortConfig.from_dict(config.to_dict())  # a copy: the caller's config stays as it was
    config.architectures = [architecture]
    config.auto_map = {**AUTO_MAP, **(getattr(config, "auto_map", None) or {})}
    config.dtype = "float32"
    config.to_json_file(directory / "config.json", use_diff=True)
    # Same layout as transformers' to_json_string (sorted, indented), so the file equals what save_pretrained writes.
    processor = json.dumps(preprocessor_config(config), indent=2, sort_keys=True) + "\n"
    (directory / "preprocessor_config.json").write_text(processor, encoding="utf-8")
    package = Path(hf_vit_port.__file__).parent
    for name in _CODE_FILES:
        shutil.copyfile(package / name, directory / name)
