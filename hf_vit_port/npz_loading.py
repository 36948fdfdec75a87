"""Building ViTPort models from `.npz` checkpoints, into the original configuration or a changed one.

Nothing is silently random: each parameter is loaded, resampled, or initialised fresh for a stated reason, and
each array of the file that no parameter used is listed. `model.loading_summary()` shows it all.
"""

import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers.initialization import no_init_weights

from .configuration_vit_port import ViTPortConfig, to_pair
from .npz_format import NpzCheckpoint, NpzFormatError, head_is_zero, infer_architecture, torch_parameters
from .resample import resample_patch_kernel, resample_position_embeddings

logger = logging.getLogger(__name__)

LOADED, RESAMPLED, FRESH, UNUSED = "loaded", "resampled", "initialised fresh", "unused in the file"


@dataclass
class LoadingSummary:
    """What happened to each parameter of a model built from a checkpoint, and which arrays went unused."""

    source: str
    entries: list[dict[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, name: str, status: str, detail: str = "") -> None:
        self.entries.append({"name": name, "status": status, "detail": detail})

    def rows(self) -> list[dict[str, str]]:
        return [dict(entry) for entry in self.entries]

    def count(self, status: str) -> int:
        return sum(entry["status"] == status for entry in self.entries)

    def format(self) -> str:
        width = max((len(entry["name"]) for entry in self.entries), default=10)
        lines = [f"Loading summary for {self.source}"]
        lines += [f"  note: {note}" for note in self.notes]
        lines += [f"  {entry['name']:<{width}}  {entry['status']}  {entry['detail']}".rstrip() for entry in self.entries]
        counts = ", ".join(f"{self.count(status)} {status}" for status in (LOADED, RESAMPLED, FRESH, UNUSED))
        return "\n".join(lines + [f"  total: {counts}"])


def config_from_npz(
    checkpoint: NpzCheckpoint, *, keep_zero_head: bool = False, **overrides: Any
) -> tuple[ViTPortConfig, list[str]]:
    """The configuration read from the arrays, with `overrides` applied; also returns notes on choices made."""
    inferred = infer_architecture(checkpoint)
    notes = []
    if not keep_zero_head and "num_labels" not in overrides and "id2label" not in overrides and head_is_zero(checkpoint):
        message = (
            f"{checkpoint.path.name}: the classification head is all zeros (a 2020 ImageNet-21k release); the model "
            f"is built as a feature extractor without it. Pass keep_zero_head=True to keep that head."
        )
        warnings.warn(message, stacklevel=3)
        notes.append(message)
        inferred["num_labels"] = 0
    if "id2label" in overrides and "num_labels" not in overrides:
        overrides["num_labels"] = len(overrides["id2label"])
    num_labels = overrides.get("num_labels", inferred["num_labels"])
    if "id2label" not in overrides and (names := imagenet_label_names(num_labels)):
        overrides["id2label"] = names
    return ViTPortConfig(**{**inferred, **overrides}), notes


def imagenet_label_names(num_labels: int) -> dict[int, str] | None:
    """ImageNet-1k/21k class names for heads of 1000/21843 classes, so pipelines print words, not ids."""
    try:
        from .labels import labels_for_num_classes

        return labels_for_num_classes(num_labels)
    except (ImportError, FileNotFoundError):  # copied as remote code, the label files do not travel with it
        return None


def load_npz_model(
    model_class: type, path: str | Path, *, resample: str = "official", keep_zero_head: bool = False, **overrides: Any
) -> Any:
    """Build `model_class` (a ViTPort model) from the checkpoint at `path`; see `ViTPortPreTrainedModel.from_npz`."""
    with NpzCheckpoint(path) as checkpoint:
        return build_from_checkpoint(
            model_class, checkpoint, resample=resample, keep_zero_head=keep_zero_head, **overrides
        )


def build_from_checkpoint(
    model_class: type, checkpoint: NpzCheckpoint, *, resample: str = "official", keep_zero_head: bool = False,
    **overrides: Any,
) -> Any:
    """Build and fill a model from an open checkpoint; the model keeps its `LoadingSummary`."""
    config, notes = config_from_npz(checkpoint, keep_zero_head=keep_zero_head, **overrides)
    # Allocate without the random initialisation: fill_model overwrites almost every parameter from the file and
    # initialises the rest with the model's own _init_weights.
    with no_init_weights():
        model = model_class(config)
    summary = LoadingSummary(source=str(checkpoint.path), notes=checkpoint.notes + notes)
    fill_model(model, checkpoint, summary, resample=resample)
    model.eval()
    model._loading_summary = summary
    logger.info(summary.format())
    return model


def fill_model(model: Any, checkpoint: NpzCheckpoint, summary: LoadingSummary, *, resample: str) -> None:
    """Copy, resample or leave freshly initialised every parameter of `model`, recording each decision."""
    prefix = model.base_model_prefix + "." if hasattr(model, model.base_model_prefix) else ""
    targets = dict(model.named_parameters())
    remaining = set(targets)
    consumed: set[str] = set()
    filled: set[str] = set()
    for name, keys, make in torch_parameters(checkpoint):
        consumed.update(keys)
        target_name = name if name.startswith("classifier.") else prefix + name
        if target_name not in targets:
            reason = "no classification head in this model" if name.startswith("classifier.") else "not in this model"
            summary.add(", ".join(keys), UNUSED, reason)
            continue
        try:
            # copy_ transposes a strided view itself (in parallel): no contiguous NumPy copy in between.
            source = torch.from_numpy(make())
            status, detail = _assign(targets[target_name], source, name, model.config, resample)
        except (ValueError, RuntimeError) as error:
            if isinstance(error, NpzFormatError):
                raise
            raise NpzFormatError(f"{checkpoint.path}: key {', '.join(keys)} does not fit {target_name}: {error}") from None
        summary.add(target_name, status, detail)
        remaining.discard(target_name)
        if status != FRESH:
            filled.add(target_name)
            targets[target_name]._is_hf_initialized = True  # transformers' init functions now leave it alone
    unknown = sorted(set(checkpoint) - consumed)
    if unknown:
        # An array nothing reads means a layout this port does not understand (a MAP head, a hybrid stem...):
        # loading without it would silently compute something else.
        shown = ", ".join(unknown[:5]) + (f", ... ({len(unknown)} keys)" if len(unknown) > 5 else "")
        raise NpzFormatError(f"{checkpoint.path}: unknown keys {shown}; this is not a checkpoint layout hf-vit-port reads.")
    for name in sorted(remaining, key=list(targets).index):
        summary.add(name, FRESH, _why_fresh(name, checkpoint))
    _initialise(model, set(targets) - filled)


def _initialise(model: Any, names: set[str]) -> None:
    """The model's own initialisation, for the modules owning `names` (the parameters nothing was loaded into)."""
    modules = dict(model.named_modules())
    for owner in sorted({name.rpartition(".")[0] for name in names}):
        model._init_weights(modules[owner])


def _assign(target: torch.nn.Parameter, source: torch.Tensor, name: str, config: ViTPortConfig, resample: str) -> tuple[str, str]:
    with torch.no_grad():
        if tuple(source.shape) == tuple(target.shape):
            target.copy_(source)
            return LOADED, ""
        adapted = _adapt(source, tuple(target.shape), name, config, resample)
        if adapted is None:
            return FRESH, f"shape {tuple(source.shape)} in the file, {tuple(target.shape)} in the model"
        target.copy_(adapted)
        return RESAMPLED, f"from {tuple(source.shape)} to {tuple(target.shape)}"


def _adapt(source: torch.Tensor, shape: tuple[int, ...], name: str, config: ViTPortConfig, resample: str) -> torch.Tensor | None:
    """Resample what has a spatial meaning; return None where the parameter must start fresh (head, pre-logits)."""
    if name == "embeddings.position_embeddings":
        prefix = config.num_prefix_tokens
        old_patches = source.shape[1] - prefix
        side = int(round(old_patches**0.5))
        return resample_position_embeddings(
            source, old_grid=(side, side), new_grid=config.grid_size, num_prefix_tokens=prefix, mode=resample
        )
    if name == "embeddings.patch_embeddings.weight" and source.shape[:2] == shape[:2]:
        return resample_patch_kernel(source, to_pair(config.patch_size))
    if name.startswith(("classifier.", "pre_logits.")):
        return None
    raise ValueError(
        f"cannot adapt {name} from shape {tuple(source.shape)} in the checkpoint to {shape}: only the image size, "
        f"patch size, head and pre-logits can differ from the checkpoint's architecture."
    )


def _why_fresh(name: str, checkpoint: NpzCheckpoint) -> str:
    if name.startswith("classifier."):
        if "head/kernel" not in checkpoint:
            return "the file has no head"
        return "new head: the number of labels differs from the file's" if not head_is_zero(checkpoint) else "the file's head is all zeros"
    if "pre_logits" in name:
        return "the file has no pre-logits layer"
    if "cls_token" in name:
        return "the file has no CLS token"
    return "not in the file"
