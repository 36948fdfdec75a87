"""Google's ViT `.npz` checkpoints: safe reading, layout detection, and the map onto this port's parameter names.

Every layout is first brought to the official google-research/vision_transformer names ("canonical keys"), by a
chain of small, logged fix-ups; only then are arrays transposed into PyTorch's conventions.
"""

import logging
import os
import re
import zipfile
import zlib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from .configuration_vit_port import SIZE_LIMITS

logger = logging.getLogger(__name__)

PREFIXES = ("opt/target/", "params/")
MAX_HEADER_BYTES = 10_000  # numpy's own default bound on a .npy header
READ_CHUNK_BYTES = 16 << 20  # arrays are inflated in chunks of this size into their final buffer
# vision_transformer keeps the R50 stem at the top of the tree (conv_root, gn_root, block{s}/unit{u}); some exports
# nest it under embedding/.
HYBRID_MARKERS = ("conv_root/", "gn_root/", "block1/", "embedding/root/", "embedding/conv_root/", "embedding/block1/")
# big_vision's block names -> the original's.
BIG_VISION_RENAMES = {
    "MultiHeadDotProductAttention_0": "MultiHeadDotProductAttention_1",
    "LayerNorm_1": "LayerNorm_2",
    "MlpBlock_0": "MlpBlock_3",
}
POS_EMBEDDING = "Transformer/posembed_input/pos_embedding"
_BLOCK = re.compile(r"^Transformer/encoderblock_(\d+)/")


class Source(NamedTuple):
    """One array under its canonical name: its shape and dtype (known without reading it) and how to read it."""

    shape: tuple[int, ...]
    dtype: np.dtype
    read: Callable[[], np.ndarray]


class Header(NamedTuple):
    """What a member's .npy header promises: checked against the archive before any data is read."""

    shape: tuple[int, ...]
    dtype: np.dtype
    fortran_order: bool
    data_offset: int  # bytes of magic + header before the data

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize


class NpzFormatError(ValueError):
    """A checkpoint file that cannot be read as a ViT `.npz`; the message names the file and the key at fault."""


class UnsupportedCheckpointError(NpzFormatError):
    """A readable checkpoint of an architecture this port does not implement (e.g. R50+ViT hybrids)."""


class NpzCheckpoint(Mapping):
    """
    Read-only view of an `.npz` file under canonical (official) key names. Arrays are read from the zip on access, one
    at a time, so a large checkpoint is never held twice; `notes` records each fix-up applied to the layout.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.notes: list[str] = []
        self._zip = _open_archive(self.path)
        raw_keys = [name[: -len(".npy")] for name in self._zip.namelist() if name.endswith(".npy")]
        if not raw_keys:
            raise NpzFormatError(f"{self.path}: the archive holds no arrays.")
        headers = {key: self._header(key) for key in raw_keys}
        self._sources: dict[str, Source] = {key: Source(header.shape, header.dtype, self._reader(key, header))
                                            for key, header in headers.items()}
        for fix_up in (_strip_prefix, _reject_hybrid, _rename_big_vision_blocks, _unstack_layers, _move_pos_embedding):
            fix_up(self)

    def _header(self, raw_key: str) -> Header:
        """The member's .npy header, checked against the archive: it holds no Python objects (whose loading would
        need pickle), and its data is exactly as long as the header promises. Reading it reads no
        array data, so inferring the architecture and checking every shape costs nothing."""
        try:
            info = self._zip.getinfo(raw_key + ".npy")
            with self._zip.open(info) as member:
                version = np.lib.format.read_magic(member)
                read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                shape, fortran_order, dtype = read_header(member, max_header_size=MAX_HEADER_BYTES)
                header = Header(tuple(shape), dtype, fortran_order, member.tell())
        except (ValueError, zipfile.BadZipFile, EOFError, OSError, KeyError) as error:
            raise NpzFormatError(f"{self.path}: key {raw_key!r} cannot be read ({error}); the file is damaged.") from error
        _refuse_objects(header.dtype, self.path, raw_key)
        if info.file_size != header.data_offset + header.nbytes:
            raise NpzFormatError(
                f"{self.path}: key {raw_key!r} declares {header.nbytes:,} bytes of data ({header.shape} "
                f"{header.dtype}) but the archive holds {max(info.file_size - header.data_offset, 0):,}; the file is "
                f"truncated or forged."
            )
        return header

    def _reader(self, raw_key: str, header: Header) -> Callable[[], np.ndarray]:
        return lambda: self._read(raw_key, header)

    def _read(self, raw_key: str, header: Header) -> np.ndarray:
        """Exactly the bytes the header promises, in bounded chunks: a member that would inflate to more is never
        inflated further (and its CRC is checked as the last byte is read)."""
        array = np.empty(header.shape, header.dtype, order="F" if header.fortran_order else "C")
        target = memoryview(array.reshape(-1, order="A").view(np.uint8))
        try:
            info = self._zip.getinfo(raw_key + ".npy")
            if info.compress_type == zipfile.ZIP_STORED and hasattr(os, "preadv"):
                self._read_stored(info, header, target)
            else:
                with self._zip.open(info) as member:
                    member.read(header.data_offset)
                    done = 0
                    while done < header.nbytes:
                        count = member.readinto(target[done : done + READ_CHUNK_BYTES])
                        if not count:
                            raise EOFError(f"the data ends after {done:,} of {header.nbytes:,} bytes")
                        done += count
        except (zipfile.BadZipFile, EOFError, OSError, KeyError) as error:
            raise NpzFormatError(f"{self.path}: key {raw_key!r} cannot be read ({error}); the file is damaged.") from error
        return _as_float32(array, self.path, raw_key, self.notes)

    def _read_stored(self, info: zipfile.ZipInfo, header: Header, target: memoryview) -> None:
        """An uncompressed member (the official files' kind) read straight from the file into the array's buffer:
        zipfile would copy every chunk twice on the way. The CRC is checked as zipfile checks it."""
        descriptor = self._zip.fp.fileno()  # positional reads leave zipfile's own file position alone
        local = os.pread(descriptor, 30, info.header_offset)
        if len(local) < 30 or local[:4] != b"PK\x03\x04":
            raise zipfile.BadZipFile("bad local file header")
        name_length, extra_length = int.from_bytes(local[26:28], "little"), int.from_bytes(local[28:30], "little")
        start = info.header_offset + 30 + name_length + extra_length
        crc = zlib.crc32(os.pread(descriptor, header.data_offset, start))
        done = 0
        while done < header.nbytes:
            count = os.preadv(descriptor, [target[done : done + READ_CHUNK_BYTES]], start + header.data_offset + done)
            if not count:
                raise EOFError(f"the data ends after {done:,} of {header.nbytes:,} bytes")
            crc = zlib.crc32(target[done : done + count], crc)
            done += count
        if crc != info.CRC:
            raise zipfile.BadZipFile("bad CRC-32")

    def note(self, message: str) -> None:
        logger.info("%s: %s", self.path.name, message)
        self.notes.append(message)

    def __getitem__(self, key: str) -> np.ndarray:
        if key not in self._sources:
            raise NpzFormatError(f"{self.path}: key {key!r} is missing.")
        return self._sources[key].read()

    def shape(self, key: str) -> tuple[int, ...]:
        """The shape of `key`, without reading its data."""
        if key not in self._sources:
            raise NpzFormatError(f"{self.path}: key {key!r} is missing.")
        return self._sources[key].shape

    def dtype(self, key: str) -> np.dtype:
        """The dtype of `key`, without reading its data."""
        if key not in self._sources:
            raise NpzFormatError(f"{self.path}: key {key!r} is missing.")
        return self._sources[key].dtype

    def __contains__(self, key: object) -> bool:
        return key in self._sources

    def __iter__(self) -> Iterator[str]:
        return iter(self._sources)

    def __len__(self) -> int:
        return len(self._sources)

    def close(self) -> None:
        self._zip.close()

    def __enter__(self) -> "NpzCheckpoint":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _open_archive(path: Path) -> zipfile.ZipFile:
    if not path.exists():
        raise NpzFormatError(f"{path}: no such file.")
    if path.is_dir():
        raise NpzFormatError(f"{path}: is a directory, not an .npz file.")
    if path.stat().st_size == 0:
        raise NpzFormatError(f"{path}: the file is empty (0 bytes).")
    with path.open("rb") as stream:
        magic = stream.read(6)
    if magic == np.lib.format.MAGIC_PREFIX:
        raise NpzFormatError(f"{path}: holds a single .npy array, not an .npz archive of named arrays.")
    try:
        # No upfront testzip(): it would read the whole file once more. Each member's CRC is checked as it is read,
        # and every array is read before anything is written.
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as error:
        raise NpzFormatError(f"{path}: not a readable .npz archive ({error}).") from error


def _refuse_objects(dtype: np.dtype, path: Path, key: str) -> None:
    if dtype.hasobject:  # loading them would need pickle, which can run code
        raise NpzFormatError(
            f"{path}: key {key!r} holds Python objects (pickled data), which are refused; a ViT checkpoint holds only "
            f"numeric arrays."
        )


def _check_float(dtype: np.dtype, path: Path, key: str) -> None:
    if dtype.kind != "f" and not (dtype.kind == "V" and dtype.itemsize == 2):
        raise NpzFormatError(
            f"{path}: key {key!r} has dtype {dtype}; ViT weights must be floating point "
            f"(float32, or float16/bfloat16/float64 which are converted)."
        )


def _as_float32(array: np.ndarray, path: Path, key: str, notes: list[str]) -> np.ndarray:
    """Bring an array (of a dtype `_check_dtype` let through) to float32, refusing NaN and infinities."""
    if array.dtype == np.float32:
        converted = array
    elif array.dtype.kind == "V":
        # bfloat16 saved without ml_dtypes arrives as 2-byte voids: its bits are the top half of a float32.
        converted = (array.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
        notes.append(f"{key}: bfloat16 converted to float32")
    else:
        converted = array.astype(np.float32)
        notes.append(f"{key}: {array.dtype} converted to float32")
    if not np.isfinite(converted).all():
        bad = int(np.size(converted) - np.isfinite(converted).sum())
        raise NpzFormatError(f"{path}: key {key!r} holds {bad} NaN or infinite values.")
    return converted


def _strip_prefix(checkpoint: NpzCheckpoint) -> None:
    if any(key.startswith("opt/target/") for key in checkpoint._sources):
        # Checkpoints saved from a flax optimizer also hold its state (step, moments): not model parameters.
        state = [key for key in checkpoint._sources if key.startswith("opt/") and not key.startswith("opt/target/")]
        for key in state:
            del checkpoint._sources[key]
        if state:
            checkpoint.note(f"ignored {len(state)} optimizer-state arrays under opt/")
    for prefix in PREFIXES:
        if any(key.startswith(prefix) for key in checkpoint._sources):
            checkpoint._sources = {
                key[len(prefix) :] if key.startswith(prefix) else key: source
                for key, source in checkpoint._sources.items()
            }
            checkpoint.note(f"stripped the {prefix!r} prefix")


def _reject_hybrid(checkpoint: NpzCheckpoint) -> None:
    # Root (stem) keys first: they are what identifies a ResNet stem at a glance.
    hybrid = sorted((key for key in checkpoint._sources if key.startswith(HYBRID_MARKERS)), key=lambda k: ("root" not in k, k))
    if hybrid:
        shown = ", ".join(hybrid[:4]) + (f", ... ({len(hybrid)} keys)" if len(hybrid) > 4 else "")
        raise UnsupportedCheckpointError(
            f"{checkpoint.path}: hybrid ResNet+ViT checkpoints (R50+ViT) are not supported; found ResNet stem keys "
            f"{shown}."
        )


def _rename_big_vision_blocks(checkpoint: NpzCheckpoint) -> None:
    renamed = {}
    for key, source in checkpoint._sources.items():
        parts = key.split("/")
        renamed["/".join(BIG_VISION_RENAMES.get(part, part) for part in parts)] = source
    if renamed.keys() != checkpoint._sources.keys():
        checkpoint._sources = renamed
        checkpoint.note("renamed big_vision block names to the original's")


def _unstack_layers(checkpoint: NpzCheckpoint) -> None:
    """big_vision's scanned encoder stores all blocks under one key with a leading depth axis."""
    stacked = [key for key in checkpoint._sources if key.startswith("Transformer/encoderblock/")]
    if not stacked:
        return
    depth = {checkpoint.shape(key)[0] for key in stacked}
    if len(depth) != 1:
        raise NpzFormatError(f"{checkpoint.path}: stacked encoder blocks disagree on the depth: {sorted(depth)}.")
    (num_layers,) = depth
    if num_layers > SIZE_LIMITS["num_hidden_layers"]:
        raise NpzFormatError(f"{checkpoint.path}: stacked encoder blocks declare a depth of {num_layers:,}, beyond any "
                             f"ViT (at most {SIZE_LIMITS['num_hidden_layers']:,}); the file is damaged or forged.")
    reader = _StackedReader()
    for key in stacked:
        source = checkpoint._sources.pop(key)
        suffix = key[len("Transformer/encoderblock/") :]
        for index in range(num_layers):
            checkpoint._sources[f"Transformer/encoderblock_{index}/{suffix}"] = Source(
                source.shape[1:], source.dtype, reader.slice(source.read, index)
            )
    checkpoint.note(f"unstacked {num_layers} scanned encoder blocks")


class _StackedReader:
    """Reads per-block slices of stacked arrays, keeping only the last stacked array read: loading walks the blocks
    in order, so each stacked array is read once per key rather than once per block."""

    def __init__(self) -> None:
        self._source: Callable[[], np.ndarray] | None = None
        self._array: np.ndarray | None = None

    def slice(self, source: Callable[[], np.ndarray], index: int) -> Callable[[], np.ndarray]:
        def read() -> np.ndarray:
            if self._source is not source:
                self._source, self._array = source, source()
            return self._array[index]

        return read


def _move_pos_embedding(checkpoint: NpzCheckpoint) -> None:
    """big_vision keeps `pos_embedding` at the top, for the patches only: the CLS token gets no position."""
    if "pos_embedding" not in checkpoint._sources or POS_EMBEDDING in checkpoint._sources:
        return
    source = checkpoint._sources.pop("pos_embedding")
    if "cls" in checkpoint._sources:
        # A zero position for the CLS token is exactly the big_vision computation in the original layout.
        _, rows, width = source.shape
        checkpoint._sources[POS_EMBEDDING] = Source(
            (1, rows + 1, width), source.dtype,
            lambda: np.concatenate([np.zeros((1, 1, width), np.float32), source.read()], axis=1),
        )
        checkpoint.note("moved the top-level pos_embedding under Transformer/ with a zero row for the CLS token")
    else:
        checkpoint._sources[POS_EMBEDDING] = source
        checkpoint.note("moved the top-level pos_embedding under Transformer/")


def layer_indices(checkpoint: NpzCheckpoint) -> list[int]:
    """Indices of the encoder blocks present, checked to be 0..n-1."""
    indices = sorted({int(match.group(1)) for key in checkpoint if (match := _BLOCK.match(key))})
    if indices != list(range(len(indices))):
        missing = sorted(set(range(max(indices, default=-1) + 1)) - set(indices))
        raise NpzFormatError(
            f"{checkpoint.path}: encoder blocks are not numbered 0..n-1 "
            f"(missing Transformer/encoderblock_{missing[0]})."
        )
    return indices


def _require(checkpoint: NpzCheckpoint, key: str, ndim: int) -> tuple[int, ...]:
    if key not in checkpoint:
        raise NpzFormatError(f"{checkpoint.path}: key {key!r} is missing.")
    shape = checkpoint.shape(key)
    if len(shape) != ndim:
        raise NpzFormatError(
            f"{checkpoint.path}: key {key!r} has shape {shape}; expected {ndim} dimensions."
        )
    return shape


def infer_architecture(checkpoint: NpzCheckpoint) -> dict[str, Any]:
    """The `ViTPortConfig` fields a checkpoint's arrays determine."""
    path = checkpoint.path
    patch_h, patch_w, channels, hidden = _require(checkpoint, "embedding/kernel", 4)
    layers = layer_indices(checkpoint)
    if not layers:
        raise NpzFormatError(f"{path}: no Transformer/encoderblock_* keys; this is not a ViT checkpoint.")
    block = "Transformer/encoderblock_0/"
    _, heads, head_dim = _require(checkpoint, block + "MultiHeadDotProductAttention_1/query/kernel", 3)
    _, intermediate = _require(checkpoint, block + "MlpBlock_3/Dense_0/kernel", 2)
    if heads * head_dim != hidden:
        raise NpzFormatError(
            f"{path}: key {block}MultiHeadDotProductAttention_1/query/kernel has {heads} heads of {head_dim}, "
            f"which does not match the embedding width {hidden}."
        )
    classifier = "token" if "cls" in checkpoint else "gap"
    _, positions, _ = _require(checkpoint, POS_EMBEDDING, 3)
    patches = positions - (1 if classifier == "token" else 0)
    side = int(round(patches**0.5))
    if side * side != patches:
        raise NpzFormatError(f"{path}: key {POS_EMBEDDING!r} has {patches} patch positions, not a square grid.")
    representation = _require(checkpoint, "pre_logits/kernel", 2)[1] if "pre_logits/kernel" in checkpoint else None
    num_labels = _require(checkpoint, "head/kernel", 2)[1] if "head/kernel" in checkpoint else 0
    return {
        "image_size": (side * patch_h, side * patch_w) if patch_h != patch_w else side * patch_h,
        "patch_size": (patch_h, patch_w) if patch_h != patch_w else patch_h,
        "num_channels": channels,
        "hidden_size": hidden,
        "intermediate_size": intermediate,
        "num_attention_heads": heads,
        "num_hidden_layers": len(layers),
        "classifier": classifier,
        "representation_size": representation,
        "num_labels": num_labels,
    }


def expected_shapes(checkpoint: NpzCheckpoint, architecture: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """The shape every canonical key must have in a checkpoint of `architecture` (see `infer_architecture`)."""
    hidden, mlp, heads = architecture["hidden_size"], architecture["intermediate_size"], architecture["num_attention_heads"]
    patch_h, patch_w = checkpoint.shape("embedding/kernel")[:2]
    pooled = architecture["representation_size"] or hidden
    shapes = {
        "embedding/kernel": (patch_h, patch_w, architecture["num_channels"], hidden),
        "embedding/bias": (hidden,),
        POS_EMBEDDING: checkpoint.shape(POS_EMBEDDING)[:1] + (checkpoint.shape(POS_EMBEDDING)[1], hidden),
        "Transformer/encoder_norm/scale": (hidden,),
        "Transformer/encoder_norm/bias": (hidden,),
    }
    if architecture["classifier"] == "token":
        shapes["cls"] = (1, 1, hidden)
    block = {
        "LayerNorm_0/scale": (hidden,), "LayerNorm_0/bias": (hidden,),
        "LayerNorm_2/scale": (hidden,), "LayerNorm_2/bias": (hidden,),
        "MultiHeadDotProductAttention_1/out/kernel": (heads, hidden // heads, hidden),
        "MultiHeadDotProductAttention_1/out/bias": (hidden,),
        "MlpBlock_3/Dense_0/kernel": (hidden, mlp), "MlpBlock_3/Dense_0/bias": (mlp,),
        "MlpBlock_3/Dense_1/kernel": (mlp, hidden), "MlpBlock_3/Dense_1/bias": (hidden,),
    }
    for part in ("query", "key", "value"):
        block[f"MultiHeadDotProductAttention_1/{part}/kernel"] = (hidden, heads, hidden // heads)
        block[f"MultiHeadDotProductAttention_1/{part}/bias"] = (heads, hidden // heads)
    for index in range(architecture["num_hidden_layers"]):
        shapes.update({f"Transformer/encoderblock_{index}/{key}": shape for key, shape in block.items()})
    if architecture["representation_size"]:
        shapes.update({"pre_logits/kernel": (hidden, pooled), "pre_logits/bias": (pooled,)})
    if architecture["num_labels"]:
        shapes.update({"head/kernel": (pooled, architecture["num_labels"]), "head/bias": (architecture["num_labels"],)})
    return shapes


def check_shapes(checkpoint: NpzCheckpoint, architecture: dict[str, Any]) -> None:
    """Every array's header against the architecture, before any data is read: a member that declares more than
    its key holds (a decompression bomb, a forged header) is refused at no cost."""
    expected = expected_shapes(checkpoint, architecture)
    unknown = sorted(set(checkpoint) - set(expected))
    if unknown:
        # An array nothing reads means a layout this port does not understand (a MAP head, a hybrid stem...):
        # loading without it would silently compute something else.
        shown = ", ".join(unknown[:5]) + (f", ... ({len(unknown)} keys)" if len(unknown) > 5 else "")
        raise NpzFormatError(f"{checkpoint.path}: unknown keys {shown}; this is not a checkpoint layout hf-vit-port reads.")
    for key, shape in expected.items():
        if key not in checkpoint:
            raise NpzFormatError(f"{checkpoint.path}: key {key!r} is missing.")
        _check_float(checkpoint.dtype(key), checkpoint.path, key)
        if checkpoint.shape(key) != shape:
            raise NpzFormatError(f"{checkpoint.path}: key {key!r} has shape {checkpoint.shape(key)}; a ViT of this "
                                 f"file's architecture needs {shape}.")


class Parameter(NamedTuple):
    """One parameter of `ViTPortModel` (or `classifier.*`) as the file holds it: the canonical keys it is made of,
    its shape once transposed (known without reading anything), and how to make it."""

    name: str
    keys: list[str]
    shape: tuple[int, ...]
    make: Callable[[], np.ndarray]


# How a Flax array becomes a torch one: (array transform, the same transform on shapes). Several keys (q, k, v) are
# transformed each and concatenated along the first axis.
_TRANSFORMS: dict[str, tuple[Callable[[np.ndarray], np.ndarray], Callable[[tuple[int, ...]], tuple[int, ...]]]] = {
    "copy": (lambda a: a, lambda s: s),
    "conv": (lambda a: a.transpose(3, 2, 0, 1), lambda s: (s[3], s[2], s[0], s[1])),  # HWIO -> OIHW
    "linear": (lambda a: a.T, lambda s: s[::-1]),  # [in, out] -> [out, in]
    "heads_in": (lambda a: _in_out_to_torch(a, 1), lambda s: (s[1] * s[2], s[0])),  # [in, heads, dim] -> [out, in]
    "heads_out": (lambda a: _in_out_to_torch(a, 2), lambda s: (s[2], s[0] * s[1])),  # [heads, dim, out] -> [out, in]
    "flat": (lambda a: a.reshape(-1), lambda s: (int(np.prod(s)),)),
}


def _parameter(checkpoint: NpzCheckpoint, name: str, keys: list[str], kind: str) -> Parameter:
    transform, shape_of = _TRANSFORMS[kind]
    shapes = [shape_of(checkpoint.shape(key)) for key in keys]
    shape = shapes[0] if len(keys) == 1 else (sum(part[0] for part in shapes), *shapes[0][1:])

    def make() -> np.ndarray:
        parts = [transform(checkpoint[key]) for key in keys]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    return Parameter(name, keys, shape, make)


def port_parameters(checkpoint: NpzCheckpoint) -> Iterator[Parameter]:
    """
    The transpose map: every parameter of `ViTPortModel` (and the head, as `classifier.*`) the file holds. Nothing is
    read until a maker is called, so callers hold one tensor at a time; makers may return strided views (callers
    copy them where they need contiguous memory).
    """
    def one(name: str, key: str, kind: str = "copy") -> Parameter:
        return _parameter(checkpoint, name, [key], kind)

    yield one("embeddings.patch_embeddings.weight", "embedding/kernel", "conv")
    yield one("embeddings.patch_embeddings.bias", "embedding/bias")
    if "cls" in checkpoint:
        yield one("embeddings.cls_token", "cls")
    yield one("embeddings.position_embeddings", POS_EMBEDDING)
    for index in layer_indices(checkpoint):
        source, target = f"Transformer/encoderblock_{index}/", f"layers.{index}."
        attention = source + "MultiHeadDotProductAttention_1/"
        qkv = [attention + part for part in ("query", "key", "value")]
        yield one(target + "norm1.weight", source + "LayerNorm_0/scale")
        yield one(target + "norm1.bias", source + "LayerNorm_0/bias")
        yield _parameter(checkpoint, target + "attention.qkv.weight", [key + "/kernel" for key in qkv], "heads_in")
        yield _parameter(checkpoint, target + "attention.qkv.bias", [key + "/bias" for key in qkv], "flat")
        yield one(target + "attention.proj.weight", attention + "out/kernel", "heads_out")
        yield one(target + "attention.proj.bias", attention + "out/bias")
        yield one(target + "norm2.weight", source + "LayerNorm_2/scale")
        yield one(target + "norm2.bias", source + "LayerNorm_2/bias")
        for dense, name in (("Dense_0", "fc1"), ("Dense_1", "fc2")):
            yield one(target + f"mlp.{name}.weight", f"{source}MlpBlock_3/{dense}/kernel", "linear")
            yield one(target + f"mlp.{name}.bias", f"{source}MlpBlock_3/{dense}/bias")
    yield one("layernorm.weight", "Transformer/encoder_norm/scale")
    yield one("layernorm.bias", "Transformer/encoder_norm/bias")
    if "pre_logits/kernel" in checkpoint:
        yield one("pre_logits.weight", "pre_logits/kernel", "linear")
        yield one("pre_logits.bias", "pre_logits/bias")
    if "head/kernel" in checkpoint:
        yield one("classifier.weight", "head/kernel", "linear")
        yield one("classifier.bias", "head/bias")


def _in_out_to_torch(kernel: np.ndarray, input_dims: int) -> np.ndarray:
    """A DenseGeneral kernel whose first `input_dims` axes are inputs, as a torch Linear weight `[out, in]`."""
    inputs = int(np.prod(kernel.shape[:input_dims]))
    return kernel.reshape(inputs, -1).T
