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
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers.initialization import no_init_weights

from .configuration_vit_port import ViTPortConfig, to_pair
from .labels import labels_for_num_classes
from .npz_format import NpzCheckpoint, NpzFormatError, infer_architecture, torch_parameters
from .resample import resample_patch_kernel, resample_position_embeddings

logger = logging.getLogger(__name__)

LOADED, RESAMPLED, FRESH, UNUSED = "loaded", "resampled", "initialised fresh", "unused in the file"
_GENERIC_LABEL = re.compile(r"^(LABEL_)?\d+$")
WEIGHTS_NAME = "model.safetensors"


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
        self.label_names = labels_for_num_classes(self._architecture["num_labels"])

    def architecture(self) -> dict[str, Any]:
        return dict(self._architecture)

    def parameters(self) -> Iterator[tuple[str, list[str], Maker]]:
        for name, keys, make in torch_parameters(self.checkpoint):
            yield name, keys, lambda make=make: torch.from_numpy(make())

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
    labels_given = "num_labels" in overrides or "id2label" in overrides
    if not keep_zero_head and not labels_given and source.head_is_zero():
        message = (
            f"{Path(source.name).name}: the classification head is all zeros (a 2020 ImageNet-21k release); the "
            f"model is built as a feature extractor without it. Pass keep_zero_head=True to keep that head."
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
