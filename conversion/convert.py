"""One `.npz` checkpoint -> one verified, Hub-ready repo directory, written atomically.

`convert` runs named steps: open the file (its architecture inferred once, from the array headers), compute the
original's outputs with the NumPy reference, build and verify the model, write it into a staging directory beside
the destination, check what was written, and move the finished repo into place.
"""

from __future__ import annotations

import hashlib
import json
import logging
import struct
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hf_vit_port import ViTPortForImageClassification
from hf_vit_port.configuration_vit_port import to_pair
from hf_vit_port.loading import LoadingSummary, NpzSource, load_checkpoint
from hf_vit_port.npz_format import NpzFormatError
from hf_vit_port.processing import make_image_processor
from hf_vit_port.stock import stock_config, to_stock_state_dict

from ..hub.cards import FORMATS, converted_model_card
from .publish import destination, publish, staging_dir
from .registry import OfficialCheckpoint
from .verify import Reference, Verification, verify

logger = logging.getLogger(__name__)


class ConversionError(RuntimeError):
    """A conversion that cannot be done as asked; the message says why."""


@dataclass
class ConversionResult:
    output_dir: Path
    format: str
    source: dict[str, Any]
    verification: Verification | None
    reload_verification: Verification | None
    summary: LoadingSummary
    notes: list[str] = field(default_factory=list)

    @property
    def max_abs_diff(self) -> float | None:
        """The largest difference from the reference the verification measured (None when not verified)."""
        if self.verification is None:
            return None
        return max(self.verification.max_abs_diff_features, self.verification.max_abs_diff_logits or 0.0)


def sha256_of(path: Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def convert(
    npz_path: str | Path,
    output_dir: str | Path,
    *,
    fmt: str = "vit_port",
    verify_outputs: bool = True,
    overwrite: bool = False,
    checkpoint: OfficialCheckpoint | None = None,
    repo_id: str | None = None,
    resample: str = "official",
    keep_zero_head: bool = False,
    **overrides: Any,
) -> ConversionResult:
    """
    Convert `npz_path` into a repo at `output_dir`: `model.safetensors`, `config.json` with label names,
    `preprocessor_config.json`, the modeling code (vit_port format) and a model card. `checkpoint` is the file's
    registry entry (for the card), `repo_id` the Hub repo the card's snippets name.

    With `verify_outputs`, the model is checked against an independent NumPy forward pass of the file's arrays
    before anything is written, and the written repo is reloaded and checked again. Nothing appears at
    `output_dir` unless every step succeeds.
    """
    npz_path, output_dir = Path(npz_path), Path(output_dir)
    target = _check_request(fmt, output_dir, overwrite)
    # The staging directory comes first: an unwritable or full destination is refused before any work.
    needed = int(npz_path.stat().st_size * 1.1) if npz_path.is_file() else 0
    with staging_dir(target, needed) as staging, NpzSource(npz_path) as source, ThreadPoolExecutor(1) as hashing:
        # The digest (for the model card) is computed alongside the conversion: hashlib releases the GIL, so it
        # costs no wall time on a second core.
        digest = hashing.submit(sha256_of, npz_path)
        reference = _reference(source) if verify_outputs else None
        model, summary, verification = _build_verified(source, reference, resample, keep_zero_head, overrides)
        provenance = {"file": npz_path.name, "sha256": digest.result(), "size": npz_path.stat().st_size}
        port_config, output = model.config, to_format(model, fmt)
        del model  # the stock format holds copies of the weights: the port model's go now
        model_class, reloaded = type(output), _save_checked(output, staging)
        del output  # the reloaded model must not sit beside a second copy of the weights
        reload_verification = _verify_reloaded(model_class, staging, None if overrides else reference, reloaded)
        card = converted_model_card(config=port_config, repo_id=repo_id, source=provenance, checkpoint=checkpoint,
                                    verification=None if verification is None else verification.as_dict(), fmt=fmt)
        card.save(staging / "README.md")
        publish(staging, target, overwrite)
    notes = list(summary.notes)
    if verification is not None and overrides:
        notes.append(f"verified at the checkpoint's own configuration; the repo then applies {sorted(overrides)} "
                     f"(see the loading summary)")
    return ConversionResult(output_dir, fmt, provenance, verification, reload_verification, summary, notes)


def _check_request(fmt: str, output_dir: Path, overwrite: bool) -> Path:
    """Refuse what cannot be done before any work; returns the directory the repo will really be written to."""
    if fmt not in FORMATS:
        raise ConversionError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    target = destination(output_dir)
    if target.exists() and not overwrite:
        raise ConversionError(f"{output_dir} already exists; pass --overwrite to replace it")
    return target


def _reference(source: NpzSource) -> Reference:
    """The original's outputs at the checkpoint's own architecture (what every verification compares with)."""
    architecture = source.architecture()
    try:
        return Reference.compute(source.checkpoint, to_pair(architecture["image_size"]), architecture["classifier"])
    except (KeyError, ValueError, TypeError) as error:
        if isinstance(error, NpzFormatError):
            raise
        # The reference reads every array the model will; its complaint is about the file.
        message = error.args[0] if error.args else str(error)
        raise NpzFormatError(f"{source.name}: {message}") from None


def _build_verified(
    source: NpzSource, reference: Reference | None, resample: str, keep_zero_head: bool, overrides: dict[str, Any]
) -> tuple[ViTPortForImageClassification, LoadingSummary, Verification | None]:
    """The converted model and its summary; verified against `reference` when there is one."""
    verification = None
    if reference is not None and overrides:
        # The overridden model computes something else: verify an unmodified load of the same file, freed before
        # the overridden model is built so that one model at a time is held.
        unmodified, _ = load_checkpoint(source, keep_zero_head=True)
        verification = verify(unmodified, reference)
        del unmodified
    model, summary = load_checkpoint(source, resample=resample, keep_zero_head=keep_zero_head, **overrides)
    if reference is not None and not overrides:
        verification = verify(model, reference)
    return model, summary, verification


def to_format(model: ViTPortForImageClassification, fmt: str) -> torch.nn.Module:
    """The model in the requested repo format: itself, or transformers' own ViT classes with the same weights."""
    if fmt == "vit_port":
        return model
    from transformers import ViTForImageClassification, ViTModel

    config = model.config
    if config.representation_size is None and config.num_labels > 0:
        stock = ViTForImageClassification(stock_config(config, for_classification=True))
        state = to_stock_state_dict(model.state_dict())
    elif config.num_labels > 0:
        raise ConversionError(
            "--format stock cannot hold a head on top of a pre-logits layer (transformers' "
            "ViTForImageClassification has no pre-logits); drop the head with --set num_labels=0 or use the "
            "vit_port format"
        )
    elif config.representation_size is None:
        raise ConversionError("--format stock for a model without head and pre-logits is not supported")
    else:
        stock = ViTModel(stock_config(config, for_classification=False), add_pooling_layer=True)
        state = to_stock_state_dict(model.vit.state_dict())
    missing, unexpected = stock.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ConversionError(f"stock mapping incomplete: missing {missing}, unexpected {unexpected}")
    return stock.eval()


def _save_checked(output: torch.nn.Module, staging: Path) -> torch.nn.Module | None:
    """Save the model and its image processor into `staging` and check the written weights. The stock format is
    checked on what transformers loads back (it renames weights on saving): that reload is returned, for reuse."""
    try:
        output.save_pretrained(staging)
        make_image_processor(output.config).save_pretrained(staging)
    except OSError as error:  # a full or failing disk: say where
        raise ConversionError(f"{staging.parent}: cannot write the repo ({error.strerror or error})") from None
    if type(output) is ViTPortForImageClassification:
        _check_written_weights(staging / "model.safetensors", output)
        return None
    reloaded = type(output).from_pretrained(staging)
    _check_same_weights(reloaded, output, staging)
    return reloaded


def _verify_reloaded(model_class: type, staging: Path, reference: Reference | None,
                     reloaded: torch.nn.Module | None) -> Verification | None:
    """The repo as `from_pretrained` loads it, verified against the reference (None without one)."""
    if reference is None:
        return None
    reloaded = reloaded if reloaded is not None else model_class.from_pretrained(staging)
    return verify(reloaded.eval(), reference, reloaded=True)


def _check_written_weights(path: Path, written: torch.nn.Module) -> None:
    """The safetensors file holds exactly the converted weights, bit for bit (cheap: no forward pass).

    Read with plain reads, one tensor at a time: through `safe_open` the whole file would be mapped, and its pages
    would add the file's size to the process's peak memory.
    """
    expected = written.state_dict()
    with path.open("rb") as stream:
        (header_size,) = struct.unpack("<Q", stream.read(8))
        header = json.loads(stream.read(header_size))
        header.pop("__metadata__", None)
        if set(header) != set(expected):
            raise ConversionError(f"{path} holds {sorted(set(header) ^ set(expected))[:5]} unlike the converted model")
        for name, entry in sorted(header.items(), key=lambda item: item[1]["data_offsets"][0]):
            begin, end = entry["data_offsets"]
            tensor = expected[name].detach().contiguous()
            stream.seek(8 + header_size + begin)
            data = np.frombuffer(stream.read(end - begin), np.uint8)
            if list(entry["shape"]) != list(tensor.shape) or not np.array_equal(data, tensor.view(-1).view(torch.uint8).numpy()):
                raise ConversionError(f"{path}: {name} differs from the converted model's weights")


def _check_same_weights(reloaded: torch.nn.Module, written: torch.nn.Module, directory: Path) -> None:
    expected = written.state_dict()
    for name, tensor in reloaded.state_dict().items():
        if name not in expected or not torch.equal(tensor, expected[name]):
            raise ConversionError(f"{directory}: {name} reloads differently from the converted model's weights")
