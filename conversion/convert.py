"""One `.npz` checkpoint -> one verified, Hub-ready repo directory, written atomically.

`convert` runs named steps: open the file (its architecture inferred once, from the array headers), compute the
original's outputs with the NumPy reference, build and verify the model, write it into a staging directory beside
the destination, check what was written, and move the finished repo into place.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from hf_vit_port.configuration_vit_port import ViTPortConfig, to_pair
from hf_vit_port.loading import LOADED, UNUSED, LoadingSummary, NpzSource, load_checkpoint, target_config
from hf_vit_port.npz_format import NpzFormatError, port_parameters
from hf_vit_port.stock import stock_config, stock_image_processor, to_stock_state_dict

from ..hub.cards import FORMATS, converted_model_card
from .publish import destination, publish, staging_dir
from .registry import OfficialCheckpoint
from .verify import Reference, Verification, verify
from .writing import Tensor, write_repo_files, write_safetensors

logger = logging.getLogger(__name__)


class ConversionError(RuntimeError):
    """A conversion that cannot be done as asked; the message says why."""


@dataclass
class ConversionResult:
    output_dir: Path
    format: str
    source: dict[str, Any]
    verification: Verification | None  # of the written repo as reloaded, or (with overrides) of the file's own model
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


def _adaptations(source: NpzSource, overrides: dict[str, Any], resample: str) -> list[str]:
    """What the repo changes relative to the file, in words (for the card)."""
    fields = source.architecture()
    changes = []
    for key, value in sorted(overrides.items()):
        if key in ("id2label", "label2id"):
            continue
        old = fields.get(key)
        if key == "image_size":
            changes.append(f"image size {_px(old)} -> {_px(value)}, position embeddings resampled ({resample})")
        elif old != value:
            changes.append(f"{key} {old} -> {value}")
    return changes


def _px(size: Any) -> str:
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    return f"{height} px" if height == width else f"{height}x{width} px"


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

    The repo is written into a staging directory first. With `verify_outputs` it is then loaded back as
    `from_pretrained` loads it and compared with an independent NumPy forward pass of the file's arrays (with
    `overrides`, which change what the model computes, the file's own model is verified instead). Nothing appears
    at `output_dir` unless every step succeeds.
    """
    npz_path, output_dir = Path(npz_path), Path(output_dir)
    target = _check_request(fmt, output_dir, overwrite)
    # The staging directory comes first: an unwritable or full destination is refused before any work.
    needed = int(npz_path.stat().st_size * 1.1) if npz_path.is_file() else 0
    with staging_dir(target, needed) as staging, NpzSource(npz_path) as source, ThreadPoolExecutor(1) as hashing:
        # The digest (for the model card) is computed alongside the conversion: hashlib releases the GIL, so it
        # costs no wall time on a second core.
        digest = hashing.submit(sha256_of, npz_path)
        if fmt == "vit_port" and not overrides:
            config, summary = _stream(source, staging, keep_zero_head)
            verification = _verify_staged(staging, _reference(source)) if verify_outputs else None
        else:
            config, summary, verification = _write_built(source, staging, fmt, verify_outputs, resample,
                                                         keep_zero_head, overrides)
        if fmt != "vit_port":  # vit_port repos got ViTPortImageProcessor's files with the config
            stock_image_processor(config).save_pretrained(staging)
        provenance = {"file": npz_path.name, "sha256": digest.result(), "size": npz_path.stat().st_size}
        card = converted_model_card(config=config, repo_id=repo_id, source=provenance, checkpoint=checkpoint,
                                    verification=None if verification is None else verification.as_dict(), fmt=fmt,
                                    name=output_dir.name, adaptations=_adaptations(source, overrides, resample))
        card.save(staging / "README.md")
        publish(staging, target, overwrite)
    notes = list(summary.notes)
    if verification is not None and overrides:
        notes.append(f"verified at the checkpoint's own configuration; the repo then applies {sorted(overrides)} "
                     f"(see the loading summary)")
    return ConversionResult(output_dir, fmt, provenance, verification, summary, notes)


def _stream(source: NpzSource, staging: Path, keep_zero_head: bool) -> tuple[ViTPortConfig, LoadingSummary]:
    """The file's arrays, transposed one at a time, straight into the staged `model.safetensors`."""
    config, notes = target_config(source, keep_zero_head=keep_zero_head)
    summary, tensors = LoadingSummary(source=source.name), []
    for parameter in port_parameters(source.checkpoint):
        if parameter.name.startswith("classifier.") and config.num_labels == 0:
            summary.add(", ".join(parameter.keys), UNUSED, "no classification head in this model")
            continue
        name = parameter.name if parameter.name.startswith("classifier.") else "vit." + parameter.name
        tensors.append(Tensor(name, parameter.shape, parameter.make))
        summary.add(name, LOADED)
    _write(staging, lambda: write_safetensors(staging / "model.safetensors", tensors))
    write_repo_files(staging, config, "ViTPortForImageClassification")
    summary.notes = list(dict.fromkeys([*source.notes, *notes]))  # after reading: dtype conversions are noted then
    return config, summary


def _write_built(
    source: NpzSource, staging: Path, fmt: str, verify_outputs: bool, resample: str, keep_zero_head: bool,
    overrides: dict[str, Any],
) -> tuple[ViTPortConfig, LoadingSummary, Verification | None]:
    """A model built in memory (adapted to `overrides`, or mapped onto stock ViT) and written; verified against
    the reference: the file's own model where `overrides` change the computation, else the written repo."""
    reference = _reference(source) if verify_outputs else None
    verification = None
    if reference is not None and overrides:
        # Freed before the adapted model is built, so that one model at a time is held.
        unmodified, _ = load_checkpoint(source, keep_zero_head=True)
        verification = verify(unmodified, reference)
        del unmodified
    model, summary = load_checkpoint(source, resample=resample, keep_zero_head=keep_zero_head, **overrides)
    config, output = model.config, to_format(model, fmt)
    del model  # the stock format holds copies of the weights: the port model's go now
    if fmt == "vit_port":
        tensors = [Tensor(name, tuple(value.shape), value.detach().numpy) for name, value in output.state_dict().items()]
        _write(staging, lambda: write_safetensors(staging / "model.safetensors", tensors))
        write_repo_files(staging, config, type(output).__name__)
        del tensors
    else:
        _write(staging, lambda output=output: output.save_pretrained(staging))
    del output  # the reloaded model must not sit beside a second copy of the weights
    if reference is not None and not overrides:
        verification = _verify_staged(staging, reference, fmt)
    return config, summary, verification


def _write(staging: Path, write: Callable[[], None]) -> None:
    try:
        write()
    except OSError as error:  # a full or failing disk: say where
        raise ConversionError(f"{staging.parent}: cannot write the repo ({error.strerror or error})") from None


def _verify_staged(staging: Path, reference: Reference, fmt: str = "vit_port") -> Verification:
    """The staged repo as `from_pretrained` loads it (memory-mapped), against the reference."""
    if fmt == "vit_port":
        from hf_vit_port import ViTPortForImageClassification as model_class
    else:
        from transformers import AutoConfig, ViTForImageClassification, ViTModel

        stock_classifier = AutoConfig.from_pretrained(staging).architectures == ["ViTForImageClassification"]
        model_class = ViTForImageClassification if stock_classifier else ViTModel
    return verify(model_class.from_pretrained(staging).eval(), reference, reloaded=True)


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


def to_format(model: torch.nn.Module, fmt: str) -> torch.nn.Module:
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
