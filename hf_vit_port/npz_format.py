"""Google's ViT `.npz` checkpoints: safe reading, layout detection, and the map onto this port's parameter names.

Every layout is first brought to the official google-research/vision_transformer names ("canonical keys"), by a
chain of small, logged fix-ups; only then are arrays transposed into PyTorch's conventions.
"""

import logging
import re
import zipfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

logger = logging.getLogger(__name__)

PREFIXES = ("opt/target/", "params/")
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
    """One array under its canonical name: its shape (known without reading it) and how to read it."""

    shape: tuple[int, ...]
    read: Callable[[], np.ndarray]


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
        self._archive = _open_archive(self.path)
        raw_keys = list(self._archive.files)
        if not raw_keys:
            raise NpzFormatError(f"{self.path}: the archive holds no arrays.")
        self._sources: dict[str, Source] = {key: Source(self._header_shape(key), self._reader(key)) for key in raw_keys}
        for fix_up in (_strip_prefix, _reject_hybrid, _rename_big_vision_blocks, _unstack_layers, _move_pos_embedding):
            fix_up(self)

    def _header_shape(self, raw_key: str) -> tuple[int, ...]:
        """The array's shape from its .npy header: inferring the architecture reads no array data."""
        try:
            with self._archive.zip.open(raw_key + ".npy") as member:
                version = np.lib.format.read_magic(member)
                read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                return tuple(read_header(member)[0])
        except (ValueError, zipfile.BadZipFile, EOFError, OSError, KeyError) as error:
            raise NpzFormatError(f"{self.path}: key {raw_key!r} cannot be read ({error}); the file is damaged.") from error

    def _reader(self, raw_key: str) -> Callable[[], np.ndarray]:
        return lambda: self._read(raw_key)

    def _read(self, raw_key: str) -> np.ndarray:
        try:
            array = self._archive[raw_key]
        except ValueError as error:  # object arrays need pickle, which we never allow
            raise NpzFormatError(
                f"{self.path}: key {raw_key!r} holds Python objects (pickled data), which are refused; a ViT "
                f"checkpoint holds only numeric arrays."
            ) from error
        except (zipfile.BadZipFile, EOFError, OSError, KeyError) as error:
            raise NpzFormatError(f"{self.path}: key {raw_key!r} cannot be read ({error}); the file is damaged.") from error
        return _as_float32(array, self.path, raw_key, self.notes)

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

    def __contains__(self, key: object) -> bool:
        return key in self._sources

    def __iter__(self) -> Iterator[str]:
        return iter(self._sources)

    def __len__(self) -> int:
        return len(self._sources)

    def close(self) -> None:
        self._archive.close()

    def __enter__(self) -> "NpzCheckpoint":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _open_archive(path: Path) -> Any:
    if not path.exists():
        raise NpzFormatError(f"{path}: no such file.")
    if path.is_dir():
        raise NpzFormatError(f"{path}: is a directory, not an .npz file.")
    if path.stat().st_size == 0:
        raise NpzFormatError(f"{path}: the file is empty (0 bytes).")
    try:
        archive = np.load(path, allow_pickle=False, mmap_mode=None)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
        raise NpzFormatError(f"{path}: not a readable .npz archive ({error}).") from error
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise NpzFormatError(f"{path}: holds a single .npy array, not an .npz archive of named arrays.")
    # No upfront testzip(): it would read the whole file once more. Each member's CRC is checked as it is read,
    # and every array is read before anything is written.
    return archive


def _as_float32(array: np.ndarray, path: Path, key: str, notes: list[str]) -> np.ndarray:
    """Bring an array to float32, refusing what no float checkpoint holds."""
    if array.dtype == np.float32:
        converted = array
    elif array.dtype.kind == "V" and array.dtype.itemsize == 2:
        # bfloat16 saved without ml_dtypes arrives as 2-byte voids: its bits are the top half of a float32.
        converted = (array.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
        notes.append(f"{key}: bfloat16 converted to float32")
    elif array.dtype.kind == "f":
        converted = array.astype(np.float32)
        notes.append(f"{key}: {array.dtype} converted to float32")
    else:
        raise NpzFormatError(
            f"{path}: key {key!r} has dtype {array.dtype}; ViT weights must be floating point "
            f"(float32, or float16/bfloat16/float64 which are converted)."
        )
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
    reader = _StackedReader()
    for key in stacked:
        source = checkpoint._sources.pop(key)
        suffix = key[len("Transformer/encoderblock/") :]
        for index in range(num_layers):
            checkpoint._sources[f"Transformer/encoderblock_{index}/{suffix}"] = Source(
                source.shape[1:], reader.slice(source.read, index)
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
            (1, rows + 1, width),
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


def torch_parameters(checkpoint: NpzCheckpoint) -> Iterator[tuple[str, list[str], Callable[[], np.ndarray]]]:
    """
    The transpose map: yields (parameter name in `ViTPortModel`, canonical keys it is made of, how to make it).
    Nothing is read until a maker is called, so callers hold one tensor at a time.
    """
    def get(key: str) -> Callable[[], np.ndarray]:
        return lambda: checkpoint[key]

    yield "embeddings.patch_embeddings.weight", ["embedding/kernel"], lambda: checkpoint["embedding/kernel"].transpose(3, 2, 0, 1)
    yield "embeddings.patch_embeddings.bias", ["embedding/bias"], get("embedding/bias")
    if "cls" in checkpoint:
        yield "embeddings.cls_token", ["cls"], get("cls")
    yield "embeddings.position_embeddings", [POS_EMBEDDING], get(POS_EMBEDDING)
    for index in layer_indices(checkpoint):
        source, target = f"Transformer/encoderblock_{index}/", f"layers.{index}."
        attention = source + "MultiHeadDotProductAttention_1/"
        qkv = [attention + part for part in ("query", "key", "value")]
        yield from (
            (target + "norm1.weight", [source + "LayerNorm_0/scale"], get(source + "LayerNorm_0/scale")),
            (target + "norm1.bias", [source + "LayerNorm_0/bias"], get(source + "LayerNorm_0/bias")),
            (
                target + "attention.qkv.weight",
                [key + "/kernel" for key in qkv],
                lambda qkv=qkv: np.concatenate([_in_out_to_torch(checkpoint[key + "/kernel"], 1) for key in qkv]),
            ),
            (
                target + "attention.qkv.bias",
                [key + "/bias" for key in qkv],
                lambda qkv=qkv: np.concatenate([checkpoint[key + "/bias"].reshape(-1) for key in qkv]),
            ),
            (
                target + "attention.proj.weight",
                [attention + "out/kernel"],
                lambda attention=attention: _in_out_to_torch(checkpoint[attention + "out/kernel"], 2),
            ),
            (target + "attention.proj.bias", [attention + "out/bias"], get(attention + "out/bias")),
            (target + "norm2.weight", [source + "LayerNorm_2/scale"], get(source + "LayerNorm_2/scale")),
            (target + "norm2.bias", [source + "LayerNorm_2/bias"], get(source + "LayerNorm_2/bias")),
        )
        for dense, name in (("Dense_0", "fc1"), ("Dense_1", "fc2")):
            key = f"{source}MlpBlock_3/{dense}/"
            yield target + f"mlp.{name}.weight", [key + "kernel"], lambda key=key: checkpoint[key + "kernel"].T
            yield target + f"mlp.{name}.bias", [key + "bias"], get(key + "bias")
    yield "layernorm.weight", ["Transformer/encoder_norm/scale"], get("Transformer/encoder_norm/scale")
    yield "layernorm.bias", ["Transformer/encoder_norm/bias"], get("Transformer/encoder_norm/bias")
    if "pre_logits/kernel" in checkpoint:
        yield "pre_logits.weight", ["pre_logits/kernel"], lambda: checkpoint["pre_logits/kernel"].T
        yield "pre_logits.bias", ["pre_logits/bias"], get("pre_logits/bias")
    if "head/kernel" in checkpoint:
        yield "classifier.weight", ["head/kernel"], lambda: checkpoint["head/kernel"].T
        yield "classifier.bias", ["head/bias"], get("head/bias")


def _in_out_to_torch(kernel: np.ndarray, input_dims: int) -> np.ndarray:
    """A DenseGeneral kernel whose first `input_dims` axes are inputs, as a torch Linear weight `[out, in]`."""
    inputs = int(np.prod(kernel.shape[:input_dims]))
    return kernel.reshape(inputs, -1).T
