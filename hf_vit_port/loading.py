"""Building ViTPort models from any checkpoint, into the checkpoint's own configuration or a changed one.

One path for every source. A source — an original `.npz` file, or a saved `vit_port` repo (a directory or a Hub id)
— is first normalised into a `CheckpointSource`: the configuration its weights fix, and its parameters under this
port's names, each read only when needed. The model is then built for the target configuration (the source's,
with overrides) and every parameter is copied, adapted (position embeddings and patch kernels resampled) or left
freshly initialised for a stated reason (a new head, a missing pre-logits layer). Nothing is silently random: the
returned `LoadingSummary` says what happened to each parameter.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers.initialization import no_init_weights

from .configuration_vit_port import ViTPortConfig, to_pair
from .labels import labels_for_num_classes
from .npz_format import NpzCheckpoint, NpzFormatError, check_shapes, infer_architecture, port_parameters
from .resample import resample_patch_kernel, resample_position_embeddings

logger = logging.getLogger(__name__)

LOADED, RESAMPLED, FRESH, UNUSED = "loaded", "resampled", "initialised fresh", "unused in the file"
_GENERIC_LABEL = re.compile(r"^(LABEL_)?\d+$")
WEIGHTS_NAME = "model.safetensors"
# What the original code computes with (flax defaults and the ViT code's choices); an .npz file does not record them.
ORIGINAL_NUMERICS = {"hidden_act": "gelu_pytorch_tanh", "layer_norm_eps": 1e-6, "qkv_bias": True}
# Fields the weights' meaning depends on: a model built with another value would load every array and compute
# something else. The image and patch size, depth, labels, pre-logits and regularisation can change (adapted, fresh
# or reported); these cannot.
FIXED_BY_WEIGHTS = ("num_channels", "hidden_size", "intermediate_size", "num_attention_heads", "hidden_act",
                    "layer_norm_eps", "qkv_bias", "classifier")


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
        return "\n".join(lines + [f"  total: {self.totals()}"])

    def totals(self) -> str:
        return ", ".join(f"{self.count(status)} {status}" for status in (LOADED, RESAMPLED, FRESH, UNUSED))


Maker = Callable[[], torch.Tensor]


class CheckpointSource:
    """A checkpoint normalised for loading: the configuration fields its weights fix, and its parameters."""

    name: str
    notes: list[str]
    label_names: dict[int, str] | None = None  # the classes the checkpoint's head scores, where known

    def architecture(self) -> dict[str, Any]:
        """`ViTPortConfig` fields as the weights were trained."""
        raise NotImplementedError

    def parameters(self) -> Iterator[tuple[str, list[str], Maker]]:
        """(name in `ViTPortModel`, or `classifier.*`; the stored keys it comes from; how to read it)."""
        raise NotImplementedError

    def keys(self) -> set[str]:
        """Every stored key, so that keys no parameter used can be refused."""
        raise NotImplementedError

    def head_is_zero(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def __enter__(self) -> CheckpointSource:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class NpzSource(CheckpointSource):
    """One of Google's `.npz` files, read through `NpzCheckpoint` (canonical key names, safe reading)."""

    def __init__(self, path: str | Path):
        self.checkpoint = NpzCheckpoint(path)
        self.name = str(self.checkpoint.path)
        self.notes = self.checkpoint.notes
        self._architecture = infer_architecture(self.checkpoint)  # from the .npy headers: no data read
        _validated(self._architecture, self.name)
        check_shapes(self.checkpoint, self._architecture)
        self.label_names = labels_for_num_classes(self._architecture["num_labels"])

    def architecture(self) -> dict[str, Any]:
        return {**ORIGINAL_NUMERICS, **self._architecture}

    def parameters(self) -> Iterator[tuple[str, list[str], Maker]]:
        for parameter in port_parameters(self.checkpoint):
            yield parameter.name, parameter.keys, lambda make=parameter.make: torch.from_numpy(make())

    def keys(self) -> set[str]:
        return set(self.checkpoint)

    def head_is_zero(self) -> bool:
        """The 2020 ImageNet-21k releases ship an all-zero head: features only, no classifier."""
        checkpoint = self.checkpoint
        return "head/kernel" in checkpoint and not checkpoint["head/kernel"].any() and not checkpoint["head/bias"].any()

    def close(self) -> None:
        self.checkpoint.close()


class RepoSource(CheckpointSource):
    """A saved `vit_port` repo (a directory or a Hub id): its `config.json` and `model.safetensors`."""

    def __init__(self, repo: str | Path, **hub_kwargs: Any):
        from safetensors import safe_open
        from transformers.utils import cached_file

        self.name, self.notes = str(repo), []
        self.config = ViTPortConfig.from_pretrained(repo, **hub_kwargs)
        weights = cached_file(str(repo), WEIGHTS_NAME, **hub_kwargs)
        self._file = safe_open(weights, framework="pt")
        names = self.config.id2label or {}
        meaningful = names and not all(_GENERIC_LABEL.match(str(label)) for label in names.values())
        self.label_names = dict(names) if meaningful else labels_for_num_classes(self.config.num_labels)

    def architecture(self) -> dict[str, Any]:
        fields = self.config.to_dict()
        for name in ("auto_map", "architectures", "transformers_version", "model_type", "dtype", "torch_dtype"):
            fields.pop(name, None)
        return fields

    def parameters(self) -> Iterator[tuple[str, list[str], Maker]]:
        for key in self._file.keys():
            yield key.removeprefix("vit."), [key], lambda key=key: self._file.get_tensor(key)

    def keys(self) -> set[str]:
        return set(self._file.keys())


def _validated(architecture: dict[str, Any], name: str) -> None:
    """The architecture a file's headers declare, checked for sizes no ViT has before anything is read."""
    try:
        ViTPortConfig(**architecture)
    except (ValueError, TypeError) as error:
        cause = error.__cause__ or error
        raise NpzFormatError(f"{name}: {cause}") from None


def is_npz(source: str | Path) -> bool:
    """Whether `source` names an `.npz` file (else a saved repo or a Hub id)."""
    return Path(str(source)).suffix == ".npz"


def open_source(source: str | Path, **hub_kwargs: Any) -> CheckpointSource:
    """The one place that tells an `.npz` file from a saved repo."""
    return NpzSource(source) if is_npz(source) else RepoSource(source, **hub_kwargs)


def load_checkpoint(
    source: str | Path | CheckpointSource,
    model_class: type | None = None,
    *,
    resample: str = "official",
    keep_zero_head: bool = False,
    **overrides: Any,
) -> tuple[Any, LoadingSummary]:
    """
    Build `model_class` (default `ViTPortForImageClassification`) from `source`, with `overrides` applied to the
    source's configuration (image or patch size, labels, pre-logits, ...). Whatever no longer fits is adapted
    (`resample` names the position-embedding resize) or initialised fresh. Returns the model in eval mode and its
    `LoadingSummary`.
    """
    if model_class is None:
        from .modeling_vit_port import ViTPortForImageClassification as model_class
    if not isinstance(source, CheckpointSource):
        with open_source(source) as opened:
            return load_checkpoint(opened, model_class, resample=resample, keep_zero_head=keep_zero_head, **overrides)
    config, notes = target_config(source, keep_zero_head=keep_zero_head, **overrides)
    # Allocate without the random initialisation: almost every parameter is overwritten from the checkpoint, and
    # the rest get the model's own _init_weights.
    with no_init_weights():
        model = model_class(config)
    summary = LoadingSummary(source=source.name)
    fill_model(model, source, summary, resample=resample)
    summary.notes = list(dict.fromkeys([*source.notes, *notes]))  # after reading: dtype conversions are noted then
    model.eval()
    logger.info(summary.format())
    return model, summary


def target_config(source: CheckpointSource, *, keep_zero_head: bool = False, **overrides: Any) -> tuple[ViTPortConfig, list[str]]:
    """The source's configuration with `overrides` applied; also returns notes on the choices made."""
    fields, notes = source.architecture(), []
    _refuse_meaning_changes(source.name, fields, overrides)
    if "id2label" in overrides:
        overrides["id2label"] = _checked_labels(overrides["id2label"])
    labels_given = "num_labels" in overrides or "id2label" in overrides
    if not keep_zero_head and not labels_given and source.head_is_zero():
        message = (
            f"{Path(source.name).name}: the classification head is all zeros (a 2020 ImageNet-21k release); the "
            f"model is built as a feature extractor without it (--keep-zero-head, keep_zero_head=True, keeps it)."
        )
        warnings.warn(message, stacklevel=3)
        notes.append(message)
        fields["num_labels"] = 0
    if "id2label" in overrides and "num_labels" not in overrides:
        overrides["num_labels"] = len(overrides["id2label"])
    if labels_given:  # the source's label names describe the source's head only
        fields.pop("id2label", None)
        fields.pop("label2id", None)
    num_labels = overrides.get("num_labels", fields.get("num_labels"))
    if "id2label" not in overrides and "id2label" not in fields and (names := labels_for_num_classes(num_labels or 0)):
        overrides["id2label"] = names
    if "id2label" in overrides and "label2id" not in overrides:
        overrides["label2id"] = {label: index for index, label in overrides["id2label"].items()}
    return ViTPortConfig(**{**fields, **overrides}), notes


def _refuse_meaning_changes(name: str, fields: dict[str, Any], overrides: dict[str, Any]) -> None:
    for field_name in FIXED_BY_WEIGHTS:
        if field_name in overrides and field_name in fields and overrides[field_name] != fields[field_name]:
            raise ValueError(
                f"{name}: the checkpoint has {field_name}={fields[field_name]!r}; {field_name}="
                f"{overrides[field_name]!r} would change what its weights compute, so it is refused (the image and "
                f"patch size, depth, labels, pre-logits and dropout can be changed)."
            )


def _checked_labels(id2label: Any) -> dict[int, str]:
    """Label names given by the caller: indices 0..n-1, each name once (label2id would silently lose a class)."""
    if not isinstance(id2label, dict) or not id2label:
        raise ValueError(f"id2label must be a non-empty mapping of class index to name, got {id2label!r}.")
    try:
        labels = {int(index): str(name) for index, name in id2label.items()}
    except (TypeError, ValueError):
        bad = next(index for index in id2label if not str(index).strip().lstrip("-").isdigit())
        raise ValueError(f"id2label: {bad!r} is not a class index (0, 1, 2, ...).") from None
    if sorted(labels) != list(range(len(labels))):
        raise ValueError(f"id2label must name classes 0..{len(labels) - 1}, got indices {sorted(labels)[:10]}.")
    duplicates = sorted(name for name, count in Counter(labels.values()).items() if count > 1)
    if duplicates:
        raise ValueError(f"id2label names {', '.join(map(repr, duplicates))} more than once; each class needs its "
                         f"own name (label2id maps names back to classes).")
    return labels


def fill_model(model: Any, source: CheckpointSource, summary: LoadingSummary, *, resample: str) -> None:
    """Copy, resample or leave freshly initialised every parameter of `model`, recording each decision."""
    prefix = model.base_model_prefix + "." if hasattr(model, model.base_model_prefix) else ""
    targets = dict(model.named_parameters())
    source_config = ViTPortConfig(**source.architecture())
    consumed: set[str] = set()
    filled: set[str] = set()
    fresh: dict[str, str] = {}
    for name, keys, make in source.parameters():
        consumed.update(keys)
        target_name = name if name.startswith("classifier.") else prefix + name
        if target_name not in targets:
            reason = "no classification head in this model" if name.startswith("classifier.") else "not in this model"
            summary.add(", ".join(keys), UNUSED, reason)
            continue
        if name.startswith("classifier.") and _labels_differ(source, model.config):
            fresh[target_name] = "new head: the checkpoint's labels differ"
            continue
        status, detail = _assign_checked(targets[target_name], make, name, keys, source, source_config, model.config, resample)
        if status == FRESH:
            fresh[target_name] = detail
            continue
        summary.add(target_name, status, detail)
        filled.add(target_name)
        targets[target_name]._is_hf_initialized = True  # transformers' init functions now leave it alone
    unknown = sorted(source.keys() - consumed)
    if unknown:
        # An array nothing reads means a layout this port does not understand (a MAP head, a hybrid stem...):
        # loading without it would silently compute something else.
        shown = ", ".join(unknown[:5]) + (f", ... ({len(unknown)} keys)" if len(unknown) > 5 else "")
        raise NpzFormatError(f"{source.name}: unknown keys {shown}; this is not a checkpoint layout hf-vit-port reads.")
    for name in [name for name in targets if name not in filled]:
        summary.add(name, FRESH, fresh.get(name) or _why_missing(name, source))
    _initialise(model, set(targets) - filled)


def _labels_differ(source: CheckpointSource, config: ViTPortConfig) -> bool:
    """A head of the right size trained for other named classes: its rows would score the wrong classes."""
    if not source.label_names or len(source.label_names) != config.num_labels:
        return False
    ours = [str(config.id2label.get(index)) for index in range(config.num_labels)]
    return ours != [str(source.label_names[index]) for index in range(config.num_labels)]


def _assign_checked(target: torch.nn.Parameter, make: Maker, name: str, keys: list[str], source: CheckpointSource,
                    source_config: ViTPortConfig, config: ViTPortConfig, resample: str) -> tuple[str, str]:
    try:
        return _assign(target, make(), name, source_config, config, resample)
    except NpzFormatError:
        raise
    except (ValueError, RuntimeError) as error:
        raise NpzFormatError(f"{source.name}: key {', '.join(keys)} does not fit {name}: {error}") from None


def _initialise(model: Any, names: set[str]) -> None:
    """The model's own initialisation, for the modules owning `names` (the parameters nothing was loaded into)."""
    modules = dict(model.named_modules())
    for owner in sorted({name.rpartition(".")[0] for name in names}):
        model._init_weights(modules[owner])


def _assign(target: torch.nn.Parameter, source: torch.Tensor, name: str, source_config: ViTPortConfig,
            config: ViTPortConfig, resample: str) -> tuple[str, str]:
    with torch.no_grad():
        if tuple(source.shape) == tuple(target.shape):
            target.copy_(source)  # copy_ transposes a strided view itself: no contiguous copy in between
            return LOADED, ""
        adapted = _adapt(source, tuple(target.shape), name, source_config, config, resample)
        if adapted is None:
            return FRESH, _why_reshaped(name, tuple(source.shape), tuple(target.shape), config)
        target.copy_(adapted)
        return RESAMPLED, f"from {tuple(source.shape)} to {tuple(target.shape)}"


def _adapt(source: torch.Tensor, shape: tuple[int, ...], name: str, source_config: ViTPortConfig,
           config: ViTPortConfig, resample: str) -> torch.Tensor | None:
    """Resample what has a spatial meaning; return None where the parameter must start fresh (head, pre-logits)."""
    if name == "embeddings.position_embeddings":
        return resample_position_embeddings(
            source, old_grid=source_config.grid_size, new_grid=config.grid_size,
            num_prefix_tokens=config.num_prefix_tokens, mode=resample,
        )
    if name == "embeddings.patch_embeddings.weight" and source.shape[:2] == shape[:2]:
        return resample_patch_kernel(source, to_pair(config.patch_size))
    if name.startswith(("classifier.", "pre_logits.")):
        return None
    raise ValueError(
        f"cannot adapt {name} from shape {tuple(source.shape)} in the checkpoint to {shape}: only the image size, "
        f"patch size, head and pre-logits can differ from the checkpoint's architecture."
    )


def _why_reshaped(name: str, old: tuple[int, ...], new: tuple[int, ...], config: ViTPortConfig) -> str:
    detail = f"shape {old} in the checkpoint, {new} in the model"
    return f"{detail} (new head for {config.num_labels} labels)" if name.startswith("classifier.") else detail


def _why_missing(name: str, source: CheckpointSource) -> str:
    if name.startswith("classifier."):
        return "the checkpoint has no head"
    if "pre_logits" in name:
        return "the checkpoint has no pre-logits layer"
    if "cls_token" in name:
        return "the checkpoint has no CLS token"
    return "not in the checkpoint"
