"""Loading checkpoints for training and inference: saved repos, Hub ids and original `.npz` files.

`load_for_finetuning` builds a classifier for new labels (and optionally a new resolution) and says, parameter by
parameter, what was loaded, resampled or initialised fresh. `load_model` and `load_processor` serve evaluation,
prediction and attention maps.
"""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoImageProcessor, AutoModelForImageClassification, PreTrainedModel

from .. import ViTPortForImageClassification
from ..configuration_vit_port import ViTPortConfig, to_pair
from ..npz_loading import FRESH, LOADED, RESAMPLED, UNUSED, LoadingSummary
from ..processing import make_image_processor
from ..resample import resample_position_embeddings

POSITION_EMBEDDINGS = "vit.embeddings.position_embeddings"
_GENERIC_LABEL = re.compile(r"^(LABEL_)?\d+$")


def is_main_process() -> bool:
    """Whether this is rank 0 of a distributed launch (or not distributed at all): only it prints summaries."""
    return os.environ.get("RANK", "0") == "0"


def _meaningful_labels(id2label: dict[int, str] | None) -> bool:
    return bool(id2label) and not all(_GENERIC_LABEL.match(str(name)) for name in id2label.values())


def load_for_finetuning(
    model_id: str | os.PathLike,
    *,
    num_labels: int,
    id2label: dict[int, str],
    image_size: int | tuple[int, int] | None = None,
    print_summary: bool = True,
    **from_pretrained_kwargs: Any,
) -> PreTrainedModel:
    """
    The checkpoint `model_id` as a classifier for `id2label`, ready to fine-tune.

    * A `.npz` file goes through `ViTPortForImageClassification.from_npz`, which resamples the position embeddings
      for `image_size` and starts the head fresh when the number of labels changes.
    * A saved repo or Hub id goes through `from_pretrained(..., ignore_mismatched_sizes=True)`: a head of another
      size starts fresh; a head of the same size but for other (named) labels is also reset, since its rows would
      mean other classes. For a new `image_size` the position embeddings are resampled into a model built at
      that size (`from_pretrained(image_size=...)` alone would just fail on the shapes).

    Either way `model.loading_summary()` tells, for every parameter, whether it was loaded, resampled or
    initialised fresh; with `print_summary` it is printed.
    """
    id2label = {int(k): str(v) for k, v in id2label.items()}
    if len(id2label) != num_labels:
        raise ValueError(f"num_labels is {num_labels} but id2label names {len(id2label)} classes.")
    label2id = {name: index for index, name in id2label.items()}
    path = Path(model_id)
    if path.suffix == ".npz":
        overrides: dict[str, Any] = dict(num_labels=num_labels, id2label=id2label, label2id=label2id)
        if image_size is not None:
            overrides["image_size"] = image_size
        model = ViTPortForImageClassification.from_npz(path, **overrides)
    else:
        model = _load_saved(str(model_id), id2label, label2id, image_size, **from_pretrained_kwargs)
    model.train()
    if print_summary and is_main_process():
        model.loading_summary()
    return model


def _load_saved(
    model_id: str, id2label: dict[int, str], label2id: dict[str, int], image_size: Any, **kwargs: Any
) -> PreTrainedModel:
    old_config = AutoConfig.from_pretrained(model_id, **{k: v for k, v in kwargs.items() if k in ("revision", "token")})
    model, info = AutoModelForImageClassification.from_pretrained(
        model_id,
        id2label=id2label,
        label2id=label2id,
        ignore_mismatched_sizes=True,
        output_loading_info=True,
        **kwargs,
    )
    summary = LoadingSummary(source=str(model_id))
    mismatched = {name: (tuple(old), tuple(new)) for name, old, new in info.get("mismatched_keys", ())}
    missing = set(info.get("missing_keys", ()))
    head = _head_names(model)
    reset_head = (
        not mismatched.keys() & head
        and not missing & head
        and _meaningful_labels(getattr(old_config, "id2label", None))
        and [old_config.id2label[i] for i in sorted(old_config.id2label)] != [id2label[i] for i in sorted(id2label)]
    )
    if reset_head:
        _reset_head(model)
        summary.notes.append("the checkpoint's head was for other labels, so a new head is initialised")
    for name, _ in model.named_parameters():
        if name in mismatched:
            old, new = mismatched[name]
            summary.add(
                name, FRESH, f"shape {old} in the checkpoint, {new} in the model (new head for {len(id2label)} labels)"
            )
        elif name in missing:
            summary.add(name, FRESH, "not in the checkpoint")
        elif reset_head and name in head:
            summary.add(name, FRESH, "new head: the checkpoint's labels differ")
        else:
            summary.add(name, LOADED)
    for name in sorted(info.get("unexpected_keys", ())):
        summary.add(name, UNUSED, "not in this model")
    if image_size is not None and to_pair(image_size) != to_pair(model.config.image_size):
        model = _resample_to(model, image_size, summary)
    model._loading_summary = summary
    return model


def _head_names(model: PreTrainedModel) -> set[str]:
    return {name for name, _ in model.named_parameters() if name.startswith("classifier.")}


def _reset_head(model: PreTrainedModel) -> None:
    classifier = getattr(model, "classifier", None)
    with torch.no_grad():
        if isinstance(model.config, ViTPortConfig):
            # The original ViT zero-initialises the head; so does ViTPortForImageClassification.
            for parameter in classifier.parameters():
                parameter.zero_()
        elif hasattr(classifier, "reset_parameters"):
            classifier.reset_parameters()


def _resample_to(model: PreTrainedModel, image_size: Any, summary: LoadingSummary) -> PreTrainedModel:
    """The same model built for `image_size`, its position embeddings resampled to the new patch grid."""
    if not isinstance(model.config, ViTPortConfig):
        raise ValueError(
            f"Changing the image size is supported for vit_port checkpoints only, not {model.config.model_type!r}."
        )
    config = copy.deepcopy(model.config)
    config.image_size = image_size
    config.validate_architecture()
    resized = type(model)(config)
    state = model.state_dict()
    old = state[POSITION_EMBEDDINGS]
    state[POSITION_EMBEDDINGS] = resample_position_embeddings(
        old,
        old_grid=model.config.grid_size,
        new_grid=config.grid_size,
        num_prefix_tokens=config.num_prefix_tokens,
        mode=config.position_embedding_interpolation,
    )
    resized.load_state_dict(state)
    for entry in summary.entries:
        if entry["name"] == POSITION_EMBEDDINGS and entry["status"] == LOADED:
            entry["status"] = RESAMPLED
            entry["detail"] = f"from {tuple(old.shape)} to {tuple(state[POSITION_EMBEDDINGS].shape)}"
    summary.notes.append(f"image size {model.config.image_size} -> {image_size}")
    return resized


def load_processor(model_id: str | os.PathLike, config: ViTPortConfig | Any) -> Any:
    """
    The checkpoint's own image processor, resized to the model's (possibly new) image size. `.npz` files and repos
    without one get the original releases' preprocessing (`make_image_processor`).
    """
    processor = None
    if Path(model_id).suffix != ".npz":
        try:
            processor = AutoImageProcessor.from_pretrained(str(model_id))
        except (OSError, ValueError):
            processor = None
    if processor is None:
        if not isinstance(config, ViTPortConfig):
            raise ValueError(f"{model_id} has no image processor to preprocess images with.")
        return make_image_processor(config)
    height, width = to_pair(config.image_size)
    processor.size = {"height": height, "width": width}
    return processor


def load_model(model_id: str | os.PathLike, *, attn_implementation: str | None = None) -> PreTrainedModel:
    """A trained classifier for inference (eval mode): a saved repo, a Hub id, or a `.npz` file."""
    if Path(model_id).suffix == ".npz":
        model = ViTPortForImageClassification.from_npz(model_id)
        if attn_implementation is not None:
            model.set_attn_implementation(attn_implementation)
    else:
        kwargs = {"attn_implementation": attn_implementation} if attn_implementation else {}
        model = AutoModelForImageClassification.from_pretrained(str(model_id), **kwargs)
    return model.eval()


__all__ = ["is_main_process", "load_for_finetuning", "load_model", "load_processor"]
