"""Model cards (README.md) of the repos this project writes: one module, two entry points.

* `converted_model_card`: a converted official checkpoint. Metadata the Hub indexes (license, library, pipeline tag,
  datasets, tags, and a ``model-index`` with the ImageNet top-1 the original authors published for this exact file,
  none where they published none or where the converted model is no longer that file), the source file (name,
  SHA-256, size, official location), the architecture, usage snippets for the format, and the verification result.
* `trained_model_card`: a fine-tuned or from-scratch run. The dataset, the base model, ``model-index`` scores of
  the evaluated splits, the recipe and the settings of the run (`RunDescription`, `TrainingOptions`).

Both are Jinja templates in ``model_cards/`` (shipped as package data, `hf_vit_port_tools.model_cards`), rendered by
huggingface_hub's `ModelCard.from_template`; the values are prepared here and the templates only lay them out.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from hf_vit_port.configuration_vit_port import ViTPortConfig, to_pair
from hf_vit_port.presets import NUM_CLASSES_IMAGENET1K, NUM_CLASSES_IMAGENET21K, variant_of

if TYPE_CHECKING:  # types only: publishing reads these, it does not depend on conversion or training
    from ..conversion.registry import OfficialCheckpoint
    from ..options import TrainingOptions

__all__ = [
    "FORMATS",
    "RunDescription",
    "converted_model_card",
    "published_eval_results",
    "template_path",
    "trained_model_card",
]

FORMATS = ("vit_port", "stock")
"""Weight formats a card can describe: hf_vit_port's ``vit_port`` model type, or transformers' own ``vit``."""

LICENSE = "apache-2.0"  # google-research/vision_transformer releases code and checkpoints under Apache 2.0
UNKNOWN_LICENSE = "other"  # a file outside the registry: its origin, and so its license, is not known here
IMAGENET_21K = "imagenet-21k"
IMAGENET_1K = "imagenet-1k"

_UPSTREAM_REPO = "https://github.com/google-research/vision_transformer"
_UPSTREAM_COMMIT = "c6de1e5"  # the commit the registry's numbers were read from
# Files of the upstream repository the registry cites as sources, most specific name first ("vit_jax.ipynb" must not
# match the AugReg notebook).
_SOURCE_DOCUMENTS = ("vit_jax_augreg.ipynb", "vit_jax.ipynb", "README.md")
# TrainingOptions fields that say where and how a run was executed, not how the model was trained.
_RUN_ONLY_SETTINGS = frozenset({"output_dir", "num_workers", "resume_from_checkpoint", "eval_only", "push_to_hub",
                                "hub_private", "report_to", "disable_tqdm", "logging_steps", "save_total_limit",
                                "extra_arguments"})


@dataclass
class RunDescription:
    """What the card of a trained model says about the run."""

    title: str
    dataset: str
    base_model: str | None = None  # the checkpoint fine-tuned from; None when trained from scratch
    recipe: str = ""  # a paragraph on how the model was trained
    notes: list[str] = field(default_factory=list)


def template_path(name: str) -> Path:
    """A card template shipped with the package (``model_cards/<name>``)."""
    return Path(str(importlib.resources.files("hf_vit_port_tools.model_cards").joinpath(name)))


# -- public API ----------------------------------------------------------------------------------------------------


def converted_model_card(
    *,
    config: ViTPortConfig,
    repo_id: str | None,
    source: Mapping[str, Any],
    verification: Mapping[str, Any] | None,
    checkpoint: OfficialCheckpoint | None,
    fmt: str = "vit_port",
    name: str | None = None,
    adaptations: list[str] | None = None,
) -> ModelCard:
    """The card of a converted checkpoint.

    Args:
        config: Configuration of the converted model (decides the architecture table, pipeline tag and snippets).
        repo_id: Hub repository the card is for (``"namespace/name"``); None for a local save, in which case the
            snippets load from ``path/to/<name>``.
        source: The ``.npz`` file converted: ``{"file": name, "sha256": hex digest, "size": bytes,
            "num_parameters": count (optional)}``.
        verification: Result of the check against the NumPy reference (`Verification.as_dict()`); None when the
            check was skipped (``--no-verify``).
        checkpoint: The registry entry of the file, or None for a file outside the registry (no release details, no
            accuracy, no official location).
        fmt: ``"vit_port"`` or ``"stock"`` (see `FORMATS`).
        name: The title when there is no ``repo_id`` (the output folder's name); else the registry's repo name.
        adaptations: What the repo changes relative to the file (``"image size 224 -> 384 px"``, ...): the
            verification then covers the file's own model, and the card says so.
    """
    if fmt not in FORMATS:
        raise ValueError(f"Unknown model card format {fmt!r}; choose one of {', '.join(FORMATS)}.")
    model_name = _model_name(repo_id, checkpoint, name)
    pipeline_tag = "image-classification" if _is_classifier(config, fmt) else "image-feature-extraction"
    eval_results = published_eval_results(checkpoint, config)
    card_data = ModelCardData(
        license=LICENSE if checkpoint is not None else UNKNOWN_LICENSE,
        library_name="transformers",
        pipeline_tag=pipeline_tag,
        datasets=_datasets(config, checkpoint),
        tags=_tags(pipeline_tag, "vit_port" if fmt == "vit_port" else None, _tag(checkpoint.collection) if checkpoint else None),
        model_name=model_name if eval_results else None,
        eval_results=eval_results,
    )
    values = _template_values(config, repo_id, model_name, source, verification, checkpoint, fmt)
    values["adaptations"] = list(adaptations or [])
    return ModelCard.from_template(card_data, template_path=str(template_path("vit_port.md")), **values)


def trained_model_card(
    description: RunDescription,
    metrics: Mapping[str, float],
    *,
    id2label: Mapping[int, str],
    options: TrainingOptions | None = None,
    skipped: int = 0,
) -> ModelCard:
    """The card of a trained model: metadata (dataset, base model, ``model-index`` scores) and a body with the
    scores, the recipe and the settings of the run."""
    local_dataset = Path(description.dataset).exists()
    base_model = description.base_model if description.base_model and not Path(description.base_model).exists() else None
    card_data = ModelCardData(
        model_name=description.title,
        library_name="transformers",
        pipeline_tag="image-classification",
        tags=_tags("image-classification", "vit_port", "hf-vit-port"),
        # The Hub only resolves dataset and model ids; a local folder is named in the body instead.
        datasets=None if local_dataset else [description.dataset],
        base_model=base_model,
        metrics=["accuracy", "top_5_accuracy"],
        eval_results=_run_eval_results(description.dataset, metrics) or None,
    )
    settings = {k: v for k, v in dataclasses.asdict(options).items() if k not in _RUN_ONLY_SETTINGS} if options else {}
    values = dict(
        description=description,
        scores=_score_rows(metrics),
        settings=settings,
        num_classes=len(id2label),
        labels=", ".join(f"{index}: {name}" for index, name in sorted(id2label.items())),
        skipped=skipped,
    )
    return ModelCard.from_template(card_data, template_path=str(template_path("trained.md")), **values)


def published_eval_results(checkpoint: OfficialCheckpoint | None, config: ViTPortConfig) -> list[EvalResult] | None:
    """The ImageNet-1k top-1 the original authors published for `checkpoint`, as Hub eval results; None where they
    published none, or where `config` is not the published model (another resolution, head or pre-logits)."""
    if checkpoint is None or checkpoint.top1 is None or not _is_published_model(config, checkpoint):
        return None
    source_name, source_url = _published_source(checkpoint)
    # The percent as published (85.49), as model-index values usually are; not re-measured here.
    return [_eval_result(IMAGENET_1K, "ImageNet-1k", "validation", "accuracy", "Top-1 Accuracy", checkpoint.top1,
                         source_name=source_name, source_url=source_url)]


def _eval_result(dataset_type: str, dataset_name: str, split: str, metric_type: str, metric_name: str, value: float,
                 **source: str) -> EvalResult:
    return EvalResult(
        task_type="image-classification", task_name="Image Classification", dataset_type=dataset_type,
        dataset_name=dataset_name, dataset_split=split, metric_type=metric_type, metric_name=metric_name,
        metric_value=value, **source,
    )


def _run_eval_results(dataset: str, metrics: Mapping[str, float]) -> list[EvalResult]:
    """`model-index` entries for the accuracy and top-5 accuracy of each evaluated split (validation, test)."""
    # A local folder is not a Hub dataset id: record its name, typed as the builder that read it.
    dataset_type, dataset_name = ("imagefolder", Path(dataset).name) if Path(dataset).exists() else (dataset, dataset)
    results = []
    for prefix, split in (("eval", "validation"), ("test", "test")):
        for key, metric_type, metric_name in (("accuracy", "accuracy", "Accuracy"),
                                              ("top5_accuracy", "top_5_accuracy", "Top-5 accuracy")):
            value = metrics.get(f"{prefix}_{key}")
            if value is not None:
                results.append(_eval_result(dataset_type, dataset_name, split, metric_type, metric_name,
                                            round(float(value), 4)))
    return results


def _score_rows(metrics: Mapping[str, float]) -> list[tuple[str, str, str, str]]:
    rows = []
    for prefix, split in (("eval", "validation"), ("test", "test")):
        if f"{prefix}_accuracy" in metrics:
            rows.append((split, *(f"{metrics.get(f'{prefix}_{key}', float('nan')):.4f}"
                                  for key in ("accuracy", "top5_accuracy", "loss"))))
    return rows


# -- metadata ------------------------------------------------------------------------------------------------------


def _model_name(repo_id: str | None, checkpoint: OfficialCheckpoint | None, name: str | None = None) -> str:
    """The repo's name, else the folder's, else the registry's name for the file."""
    if repo_id:
        return repo_id.rsplit("/", 1)[-1]
    if name:
        return name
    return checkpoint.hub_name if checkpoint is not None else "vit-port"


def _is_classifier(config: ViTPortConfig, fmt: str) -> bool:
    """Whether the saved model has a usable head. Stock `ViTForImageClassification` has no pre-logits layer, so a
    stock repo of a model with one is a `ViTModel` (features only) whatever its head."""
    if config.num_labels == 0:
        return False
    return fmt == "vit_port" or config.representation_size is None


def _datasets(config: ViTPortConfig, checkpoint: OfficialCheckpoint | None) -> list[str] | None:
    """Every release was pre-trained on ImageNet-21k; the 1000-class ones were then fine-tuned on ImageNet-1k. For a
    file outside the registry only the head says anything, and only about the last dataset."""
    if checkpoint is not None:
        return [IMAGENET_21K] + ([IMAGENET_1K] if checkpoint.num_classes == NUM_CLASSES_IMAGENET1K else [])
    by_head = {NUM_CLASSES_IMAGENET21K: IMAGENET_21K, NUM_CLASSES_IMAGENET1K: IMAGENET_1K}
    return [by_head[config.num_labels]] if config.num_labels in by_head else None


def _tags(pipeline_tag: str, *extra: str | None) -> list[str]:
    # A stock repo needs nothing from hf_vit_port: it gets no vit_port tag, which would suggest it does.
    return ["vision", pipeline_tag, "vit", *(tag for tag in extra if tag)]


def _tag(text: str) -> str:
    """A Hub-friendly tag: ``"imagenet21k+imagenet2012"`` -> ``"imagenet21k-imagenet2012"``."""
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in text.lower())


def _is_published_model(config: ViTPortConfig, checkpoint: OfficialCheckpoint) -> bool:
    """Whether `config` is the model the file was evaluated as (same resolution, head and pre-logits)."""
    return (
        to_pair(config.image_size) == (checkpoint.image_size, checkpoint.image_size)
        and config.num_labels == checkpoint.num_classes
        and config.representation_size == checkpoint.representation_size
    )


def _published_source(checkpoint: OfficialCheckpoint) -> tuple[str, str]:
    """(name, URL) of the upstream document the registry cites for `checkpoint.top1`."""
    cited = checkpoint.top1_source or ""
    document = next((doc for doc in _SOURCE_DOCUMENTS if doc in cited), "README.md")
    return f"google-research/vision_transformer {document}", f"{_UPSTREAM_REPO}/blob/{_UPSTREAM_COMMIT}/{document}"


# -- template values -----------------------------------------------------------------------------------------------


def _template_values(
    config: ViTPortConfig,
    repo_id: str | None,
    model_name: str,
    source: Mapping[str, Any],
    verification: Mapping[str, Any] | None,
    checkpoint: OfficialCheckpoint | None,
    fmt: str,
) -> dict[str, Any]:
    """Everything the template shows besides the metadata, already formatted."""
    is_classifier = _is_classifier(config, fmt)
    values: dict[str, Any] = {
        "fmt": fmt,
        "title": model_name,
        "summary": _summary(config, source, checkpoint, fmt),
        "checkpoint_note": checkpoint.note if checkpoint is not None else "",
        "source_rows": _source_rows(source, checkpoint),
        "architecture_rows": _architecture_rows(config, source, checkpoint),
        "repo": repo_id or f"path/to/{model_name}",
        "is_classifier": is_classifier,
        "auto_class": "AutoModelForImageClassification" if is_classifier else "AutoModel",
        "stock_class": "ViTForImageClassification" if is_classifier else "ViTModel",
        "pooled_size": config.pooled_size,
        "image_size_value": config.image_size if isinstance(config.image_size, int) else tuple(config.image_size),
        "is_augreg": checkpoint is not None and checkpoint.collection == "augreg",
        "known_origin": checkpoint is not None,
    }
    values.update(_accuracy_values(config, checkpoint))
    values.update(_verification_values(verification))
    return values


def _summary(
    config: ViTPortConfig, source: Mapping[str, Any], checkpoint: OfficialCheckpoint | None, fmt: str
) -> str:
    layout = (
        "hf-vit-port's faithful `vit_port` architecture"
        if fmt == "vit_port"
        else "the layout of transformers' own ViT classes"
    )
    file = f"`{source.get('file') or (checkpoint.filename if checkpoint else 'an .npz file')}`"
    if checkpoint is None:
        return f"A Vision Transformer ({_variant_of(config)}) converted from {file} into {layout}."
    return (
        f"Google's original Vision Transformer ViT-{checkpoint.variant}, {_release_description(checkpoint)}, "
        f"converted from the official checkpoint {file} of "
        f"[google-research/vision_transformer]({_UPSTREAM_REPO}) into {layout}."
    )


def _release_description(checkpoint: OfficialCheckpoint) -> str:
    pretraining = "pre-trained on ImageNet-21k"
    if checkpoint.collection == "augreg":
        pretraining += " with the AugReg recipe (How to train your ViT?)"
    if checkpoint.num_classes == NUM_CLASSES_IMAGENET1K:
        return f"{pretraining} and fine-tuned on ImageNet-1k at {checkpoint.image_size} px"
    return f"{pretraining} at {checkpoint.image_size} px"


def _source_rows(source: Mapping[str, Any], checkpoint: OfficialCheckpoint | None) -> list[tuple[str, str]]:
    rows = [("File", _code(source.get("file") or (checkpoint.filename if checkpoint else "unknown")))]
    if source.get("sha256"):
        rows.append(("SHA-256", _code(source["sha256"])))
    if source.get("size") is not None:
        rows.append(("Size", f"{int(source['size']):,} bytes ({int(source['size']) / 2**20:.2f} MiB)"))
    if checkpoint is not None:  # the file's official location: its SHA-256 above identifies the file itself
        rows.append(("Official URL", checkpoint.official_url))
        rows.append(("Bucket path", _code(f"gs://vit_models/{checkpoint.path}")))
        rows.append(("Release", _code(checkpoint.collection)))
        if checkpoint.upstream:
            rows.append(("Fine-tuned from", _code(checkpoint.upstream)))
    return [(label, _cell(value)) for label, value in rows]


def _architecture_rows(
    config: ViTPortConfig, source: Mapping[str, Any], checkpoint: OfficialCheckpoint | None
) -> list[tuple[str, str]]:
    rows = [
        ("Variant", f"ViT-{checkpoint.variant}" if checkpoint is not None else _variant_of(config)),
        ("Patch size", _size_text(config.patch_size)),
        ("Hidden size", str(config.hidden_size)),
        ("MLP size", str(config.intermediate_size)),
        ("Attention heads", str(config.num_attention_heads)),
        ("Layers", str(config.num_hidden_layers)),
        ("Image size", _size_text(config.image_size)),
        ("Pooling", "CLS token" if config.classifier == "token" else "global average of the patch tokens"),
        ("Pre-logits", f"{config.representation_size} (Dense + tanh)" if config.representation_size else "none"),
        ("Classes", str(config.num_labels) if config.num_labels else "none (features only)"),
        ("Activation", f"`{config.hidden_act}`"),
        ("LayerNorm epsilon", f"{config.layer_norm_eps:g}"),
    ]
    parameters = _parameter_count(config, source, checkpoint)
    if parameters is not None:
        rows.append(("Parameters", f"{parameters:,} ({parameters / 1e6:.1f} M)"))
    return [(label, _cell(value)) for label, value in rows]


def _parameter_count(
    config: ViTPortConfig, source: Mapping[str, Any], checkpoint: OfficialCheckpoint | None
) -> int | None:
    """The count the converter measured, else the registry's count for the file when the model is that file."""
    if source.get("num_parameters") is not None:
        return int(source["num_parameters"])
    if checkpoint is not None and _is_published_model(config, checkpoint):
        return checkpoint.num_params
    return None


def _accuracy_values(config: ViTPortConfig, checkpoint: OfficialCheckpoint | None) -> dict[str, Any]:
    if checkpoint is None or checkpoint.top1 is None:
        return {"accuracy": None, "accuracy_not_applicable": ""}
    if not _is_published_model(config, checkpoint):
        return {
            "accuracy": None,
            "accuracy_not_applicable": (
                f"The original authors published {checkpoint.top1:g} % ImageNet-1k top-1 for the original file "
                f"({checkpoint.image_size} px, {checkpoint.num_classes} classes); this model differs from it "
                f"(resolution, head or pre-logits), so no accuracy is claimed for it."
            ),
        }
    return {
        "accuracy": {"top1": f"{checkpoint.top1:g}", "source": checkpoint.top1_source or "the original authors"},
        "accuracy_not_applicable": "",
    }


def _verification_values(verification: Mapping[str, Any] | None) -> dict[str, Any]:
    if verification is None:
        return {"verified": False}
    tolerance = float(verification["tolerance"])
    rows = []
    for key, label in (("max_abs_diff_logits", "Logits"), ("max_abs_diff_features", "Pooled features")):
        diff = verification.get(key)
        if diff is None:  # e.g. no logits for a feature-only model
            continue
        result = "passed" if float(diff) <= tolerance else "FAILED"
        rows.append((label, f"{float(diff):.2e}", f"{tolerance:.0e}", result))
    return {
        "verified": True,
        "verification_rows": rows,
        "verification_reference": verification.get("reference", "a reference forward pass"),
        "verification_inputs": verification.get("inputs", "test inputs"),
        "verification_reloaded": bool(verification.get("reloaded", False)),
    }


# -- formatting ----------------------------------------------------------------------------------------------------


def _variant_of(config: ViTPortConfig) -> str:
    """The official variant `config` matches (``"ViT-B/16"``), else ``"custom"``."""
    name = variant_of(config.hidden_size, config.num_hidden_layers, config.num_attention_heads,
                      config.intermediate_size, to_pair(config.patch_size))
    return f"ViT-{name}" if name else "custom"


def _size_text(size: int | tuple[int, int] | list[int]) -> str:
    height, width = to_pair(size)
    return str(height) if height == width else f"{height} x {width}"


def _code(text: str) -> str:
    return f"`{text}`"


def _cell(text: str) -> str:
    """A Markdown table cell: a literal pipe would split it."""
    return str(text).replace("|", "\\|")
