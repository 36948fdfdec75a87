"""The model card (README.md) of a converted official ViT checkpoint.

`build_model_card` fills ``model_cards/vit_port.md`` (a Jinja template, rendered by huggingface_hub's
`ModelCard.from_template`) with:

* metadata the Hub indexes, through `ModelCardData`: license, library, pipeline tag, datasets, tags, and a
  ``model-index`` with the ImageNet top-1 the original authors published for this exact file -- and no
  ``model-index`` at all where they published none, or where the converted model is no longer that file (another
  resolution or head), since a self-reported number must not be invented or transferred;
* the source file (name, SHA-256, size, URL), the architecture, usage snippets for the chosen format (``vit_port``:
  hf_vit_port's architecture, loadable with or without the package; ``stock``: transformers' own ViT classes), and
  the result of the conversion check against the NumPy reference.

The values are prepared here and the template only lays them out, so the wording can be edited without touching code.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from hf_vit_port.configuration_vit_port import ViTPortConfig, to_pair
from hf_vit_port.presets import NUM_CLASSES_IMAGENET1K, NUM_CLASSES_IMAGENET21K

from .registry import DEFAULT_BASE_URL, VARIANTS, OfficialCheckpoint

__all__ = [
    "DEFAULT_TEMPLATE",
    "FORMATS",
    "build_card_data",
    "build_model_card",
    "published_eval_results",
]

def _template_location() -> Path:
    # A checkout or editable install reads model_cards/ at the repository root; a wheel installs the templates as
    # data files under <prefix>/share/hf-vit-port/ (see pyproject.toml).
    in_checkout = Path(__file__).resolve().parent.parent / "model_cards" / "vit_port.md"
    installed = Path(sys.prefix) / "share" / "hf-vit-port" / "model_cards" / "vit_port.md"
    return in_checkout if in_checkout.exists() else installed


DEFAULT_TEMPLATE = _template_location()
"""The Jinja template `build_model_card` renders (``model_cards/vit_port.md`` at the repository root)."""

FORMATS = ("vit_port", "stock")
"""Weight formats a card can describe: hf_vit_port's ``vit_port`` model type, or transformers' own ``vit``."""

LICENSE = "apache-2.0"  # google-research/vision_transformer releases code and checkpoints under Apache 2.0
IMAGENET_21K = "imagenet-21k"
IMAGENET_1K = "imagenet-1k"

_UPSTREAM_REPO = "https://github.com/google-research/vision_transformer"
_UPSTREAM_COMMIT = "c6de1e5"  # the commit the registry's numbers were read from
# Files of the upstream repository the registry cites as sources, most specific name first ("vit_jax.ipynb" must not
# match the AugReg notebook).
_SOURCE_DOCUMENTS = ("vit_jax_augreg.ipynb", "vit_jax.ipynb", "README.md")


# -- public API ----------------------------------------------------------------------------------------------------


def build_model_card(
    *,
    config: ViTPortConfig,
    repo_id: str | None,
    source: Mapping[str, Any],
    verification: Mapping[str, Any] | None,
    checkpoint: OfficialCheckpoint | None,
    fmt: str = "vit_port",
    template_path: Path | None = None,
) -> ModelCard:
    """Render the model card of a converted checkpoint.

    Args:
        config: Configuration of the converted model (decides the architecture table, pipeline tag and snippets).
        repo_id: Hub repository the card is for (``"namespace/name"``); None for a local save, in which case the
            snippets load from ``path/to/<name>``.
        source: The ``.npz`` file converted: ``{"file": name, "sha256": hex digest, "size": bytes, "url": where it
            was downloaded from (optional), "num_parameters": count (optional)}``.
        verification: Result of the check against the NumPy reference: ``{"max_abs_diff_logits": float | None,
            "max_abs_diff_features": float | None, "tolerance": float, "inputs": str, "reference": str,
            "reloaded": bool}``; None when the check was skipped (``--no-verify``).
        checkpoint: The registry entry of the file, or None for a file outside the registry (no release details, no
            accuracy).
        fmt: ``"vit_port"`` or ``"stock"`` (see `FORMATS`).
        template_path: Jinja template to render instead of `DEFAULT_TEMPLATE`.

    Returns:
        A `ModelCard` whose ``data`` holds the metadata and whose text is the rendered template.
    """
    if fmt not in FORMATS:
        raise ValueError(f"Unknown model card format {fmt!r}; choose one of {', '.join(FORMATS)}.")
    model_name = _model_name(repo_id, checkpoint)
    card_data = build_card_data(config=config, model_name=model_name, checkpoint=checkpoint, fmt=fmt)
    return ModelCard.from_template(
        card_data,
        template_path=str(template_path or DEFAULT_TEMPLATE),
        **_template_values(config, repo_id, model_name, source, verification, checkpoint, fmt),
    )


def build_card_data(
    *, config: ViTPortConfig, model_name: str, checkpoint: OfficialCheckpoint | None, fmt: str = "vit_port"
) -> ModelCardData:
    """The card's YAML metadata: license, library, pipeline tag, datasets, tags and (where published) model-index."""
    pipeline_tag = "image-classification" if _is_classifier(config, fmt) else "image-feature-extraction"
    eval_results = published_eval_results(checkpoint, config)
    return ModelCardData(
        license=LICENSE,
        library_name="transformers",
        pipeline_tag=pipeline_tag,
        datasets=_datasets(config, checkpoint),
        tags=_tags(pipeline_tag, checkpoint, fmt),
        model_name=model_name if eval_results else None,
        eval_results=eval_results,
    )


def published_eval_results(
    checkpoint: OfficialCheckpoint | None, config: ViTPortConfig
) -> list[EvalResult] | None:
    """The ImageNet-1k top-1 the original authors published for `checkpoint`, as Hub eval results; None where they
    published none, or where `config` is not the published model (another resolution, head or pre-logits)."""
    if checkpoint is None or checkpoint.top1 is None or not _is_published_model(config, checkpoint):
        return None
    source_name, source_url = _published_source(checkpoint)
    return [
        EvalResult(
            task_type="image-classification",
            task_name="Image Classification",
            dataset_type=IMAGENET_1K,
            dataset_name="ImageNet-1k",
            dataset_split="validation",
            metric_type="accuracy",
            metric_name="Top-1 Accuracy",
            # The percent as published (85.49), as model-index values usually are; not re-measured here.
            metric_value=checkpoint.top1,
            source_name=source_name,
            source_url=source_url,
        )
    ]


# -- metadata ------------------------------------------------------------------------------------------------------


def _model_name(repo_id: str | None, checkpoint: OfficialCheckpoint | None) -> str:
    if repo_id:
        return repo_id.rsplit("/", 1)[-1]
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


def _tags(pipeline_tag: str, checkpoint: OfficialCheckpoint | None, fmt: str) -> list[str]:
    tags = ["vision", pipeline_tag, "vit"]
    if fmt == "vit_port":  # a stock repo needs nothing from hf_vit_port; the tag would suggest it does
        tags.append("vit_port")
    if checkpoint is not None:
        tags.append(_tag(checkpoint.collection))
    return tags


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
        "is_augreg": checkpoint is not None and checkpoint.collection == "augreg",
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
    url = source.get("url") or (checkpoint.url_for(DEFAULT_BASE_URL) if checkpoint else None)
    if url:
        rows.append(("URL", str(url)))
    if checkpoint is not None:
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
    shape = (config.hidden_size, config.num_hidden_layers, config.num_attention_heads, config.intermediate_size)
    patch = to_pair(config.patch_size)
    for name, (hidden, layers, heads, mlp, patch_size) in VARIANTS.items():
        if (hidden, layers, heads, mlp) == shape and patch == (patch_size, patch_size):
            return f"ViT-{name}"
    return "custom"


def _size_text(size: int | tuple[int, int] | list[int]) -> str:
    height, width = to_pair(size)
    return str(height) if height == width else f"{height} x {width}"


def _code(text: str) -> str:
    return f"`{text}`"


def _cell(text: str) -> str:
    """A Markdown table cell: a literal pipe would split it."""
    return str(text).replace("|", "\\|")
