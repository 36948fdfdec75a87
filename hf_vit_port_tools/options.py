"""What each job takes, declared once: the library's functions take these dataclasses, and the command line makes
its flags from them (`cli.flags`).

This module imports nothing heavy, so that `hf-vit-port --help` and argument errors cost no torch import. A field's
`metadata` carries its help text and, where the flag differs from `--field-name`, how it is spelled.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

Precision = Literal["auto", "bf16", "fp16", "fp32"]
Format = Literal["vit_port", "stock"]
ResampleMode = Literal["official", "bilinear", "bicubic"]
FORMATS: tuple[str, ...] = get_args(Format)
DEFAULT_SCRATCH_DATASET = "uoft-cs/cifar100"
BestModelMetric = Literal["accuracy", "top5_accuracy", "loss"]


def option(default: Any = None, help: str = "", **metadata: Any) -> Any:  # noqa: A002 (argparse's word)
    """A dataclass field with its command-line help (and flag spelling, see `cli.flags`)."""
    if callable(default):  # list, dict, a function: a fresh value per instance
        return field(default_factory=default, metadata={"help": help, **metadata})
    return field(default=default, metadata={"help": help, **metadata})


def required(help: str, **metadata: Any) -> Any:  # noqa: A002
    return field(metadata={"help": help, **metadata})


def parse_warmup(value: str) -> float:
    """A number of steps (a whole number >= 1) or a fraction of the run in [0, 1)."""
    number = float(value)
    if number < 0 or (number >= 1 and not number.is_integer()):
        raise ValueError("warmup is a whole number of steps, or a fraction of the run in [0, 1)")
    return number


def parse_setting(text: str) -> tuple[str, Any]:
    """`KEY=VALUE` with VALUE read as JSON when it parses (numbers, null, lists), else as a string."""
    import json

    key, separator, value = text.partition("=")
    if not separator or not key:
        raise ValueError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def parse_pair(text: str) -> tuple[str, str]:
    """`NAME=OTHER`, both kept as text."""
    key, separator, value = text.partition("=")
    if not separator or not key or not value:
        raise ValueError(f"expected NAME=OTHER, got {text!r}")
    return key, value


def default_num_workers() -> int:
    """
    DataLoader workers per process: the CPU cores left after the training processes on this machine (as many as
    `torchrun`'s LOCAL_WORLD_SIZE), shared among them, at most 8 each. Decoding and augmenting images is CPU work.
    """
    processes = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    spare = (os.cpu_count() or 1) - processes
    return min(8, max(0, spare // processes))


# -- conversion and publishing -------------------------------------------------------------------------------------


@dataclass(kw_only=True)
class DownloadOptions:
    """Where named official checkpoints come from."""

    base_url: str | None = option(None, "where named checkpoints are downloaded from (or $HF_VIT_PORT_BASE_URL)")
    cache_dir: Path | None = option(None, "download cache (default $HF_VIT_PORT_CACHE or ~/.cache/hf-vit-port)")
    read_timeout: float = option(30.0, "seconds to wait for a connection, the response or the next bytes")
    min_speed: float = option(64.0, "KiB/s below which a download attempt counts as failed (a trickling server)")
    download_deadline: float | None = option(
        None, "seconds after which a download gives up (default: the file's size at --min-speed)"
    )

    def download_kwargs(self) -> dict[str, Any]:
        """These options as `download_checkpoint` arguments."""
        return {"base_url": self.base_url, "cache_dir": self.cache_dir, "timeout": self.read_timeout,
                "min_speed": self.min_speed * 1024, "deadline": self.download_deadline}


@dataclass(kw_only=True)
class OutputOptions:
    """The repo format written and whether it is checked against the original math."""

    format: Format = option(
        "vit_port", "vit_port (this plugin, pre-logits kept) or stock (plain transformers ViT)"
    )
    verify: bool = option(True, "skip the comparison with the NumPy reference (and after reloading)",
                          flag="--no-verify")


@dataclass(kw_only=True)
class ConvertOptions:
    """One checkpoint into one repo directory."""

    name: str | None = option(None, "an official checkpoint, e.g. imagenet21k/ViT-B_16 (see `list`)", positional=True)
    npz: Path | None = option(None, "convert this .npz file instead of a named checkpoint")
    out: Path = required("directory to write the repo to")
    overwrite: bool = option(False, "replace --out if it exists")
    image_size: int | None = option(None, "resolution of the converted model (resamples positions)")
    resample: ResampleMode = option(
        "official", "position-embedding resize when the image or patch size changes"
    )
    keep_zero_head: bool = option(False, "keep the all-zero head of the 2020 imagenet21k files instead of dropping it")
    settings: list[tuple[str, Any]] = option(
        list, "any ViTPortConfig field, e.g. --set num_labels=0", flag="--set", metavar="KEY=VALUE",
        parse=parse_setting, repeat=True,
    )
    push_to_hub: str | None = option(None, "push the converted repo to the Hub", metavar="ORG/NAME")


@dataclass(kw_only=True)
class PushOptions:
    """How a repo goes up to the Hub."""

    private: bool = option(False, "create the Hub repo as private")
    revision: str | None = option(None, "branch to push to (created if missing; default main)")
    create_pr: bool = option(False, "open a pull request instead of committing")
    commit_message: str | None = option(None, "message of the commit (a descriptive one by default)")


@dataclass(kw_only=True)
class PushTarget:
    directory: Path = required("a directory written by `convert`", positional=True)
    repo_id: str = required("the Hub repo to push to", positional=True, metavar="ORG/NAME")


@dataclass(kw_only=True)
class BatchOptions:
    names: list[str] = option(list, "official checkpoint names (see `list`)", positional=True, nargs="*")
    all: bool = option(False, "every checkpoint of the registry")
    org: str = required("organisation (or user) to push under")
    work_dir: Path = required("where the repos are written")


@dataclass(kw_only=True)
class ListOptions:
    release: str | None = option(None, "only this release: imagenet21k, imagenet21k+imagenet2012 or augreg")
    json: bool = option(False, "print the entries as JSON (every field of the registry)")


@dataclass(kw_only=True)
class DemoOptions:
    variant: str = option("Ti/16", "preset variant, e.g. Ti/16, B/16")
    image_size: int = option(224, "input resolution")
    out: Path | None = option(None, "keep the .npz and the converted repo in this directory (default: thrown away)")


@dataclass(kw_only=True)
class SyntheticOptions:
    """A checkpoint of random weights in Google's official .npz layout (for trying the tools offline)."""

    output: Path = required("the .npz file to write", positional=True, metavar="FILE.npz")
    variant: str = option("Ti/16", "preset variant, e.g. Ti/16, B/16")
    release: str = option("imagenet21k+imagenet2012", "whose layout and head: imagenet21k (pre-logits, all-zero "
                          "head, as the 2020 files), imagenet21k+imagenet2012, augreg, augreg+imagenet2012")
    image_size: int | None = option(None, "input resolution (default: the release's)")
    seed: int = option(0, "random seed of the weights")


# -- data, training ------------------------------------------------------------------------------------------------


@dataclass(kw_only=True)
class DatasetOptions:
    """Which dataset, and which of its columns hold the images and the labels."""

    dataset: str = required("a Hub dataset id, or imagefolder:DIR for a folder of class sub-folders")
    dataset_config: str | None = option(None, "configuration name of a Hub dataset")
    image_column: str | None = option(None, "image column (default: detected)")
    label_column: str | None = option(None, "label column (default: detected, a ClassLabel)")


@dataclass(kw_only=True)
class DataOptions(DatasetOptions):
    """A dataset prepared for training: its splits, their sizes, and which images are checked."""

    validation_fraction: float = option(0.1, "share of the training split held out when the dataset has no validation split")
    max_train_samples: int | None = option(None, "use only this many training examples")
    max_eval_samples: int | None = option(None, "use only this many validation/test examples")
    check_images: bool = option(True, "skip the pass that opens every image to drop unreadable ones",
                                flag="--no-check-images")


@dataclass(kw_only=True)
class TrainingOptions:
    """
    Everything about a run that is not the model or the data. The defaults suit fine-tuning; the from-scratch
    recipe has its own (`SCRATCH_TRAINING_DEFAULTS`).
    """

    output_dir: str = required("output directory: checkpoints, final model, scores, plots", flag="--output")
    epochs: float = option(3.0, "epochs")
    max_steps: int = option(-1, "stop after this many optimiser steps (overrides --epochs)")
    learning_rate: float = option(1e-4, "peak learning rate")
    batch_size: int = option(32, "per-device batch size; the effective batch is x devices x accumulation")
    eval_batch_size: int | None = option(None, "per-device evaluation batch size (default: --batch-size)")
    weight_decay: float = option(0.0, "AdamW weight decay")
    warmup: float = option(0.0, "linear warm-up: a number of steps, or a fraction of the run below 1", parse=parse_warmup)
    lr_scheduler: str = option("cosine", "transformers scheduler name: cosine, linear, constant, ...")
    gradient_accumulation_steps: int = option(1, "batches per optimiser step")
    max_grad_norm: float = option(1.0, "gradient clipping norm, 0 for none (the original recipes clip at 1)")
    optimizer: str = option("adamw_torch", "transformers optimiser name")
    adam_epsilon: float = option(1e-8, "epsilon of Adam(W)")
    label_smoothing: float = option(0.0, "label smoothing factor")
    seed: int = option(42, "random seed")
    precision: Precision = option("auto", "auto (bf16 on GPUs that support it), bf16, fp16 (CUDA) or fp32")
    eval_strategy: Literal["epoch", "steps"] = option("epoch", "when to evaluate and save")
    eval_steps: int | None = option(None, "with --eval-strategy steps: evaluate and save every N steps")
    logging_steps: int = option(10, "log the training loss every N steps")
    save_total_limit: int | None = option(2, "checkpoints kept on disk; the best is never deleted")
    num_workers: int = option(default_num_workers, "DataLoader workers per process (default: spare CPU cores, at most 8)")
    train_eval_samples: int = option(
        512, "training examples scored at each evaluation for the train-accuracy curve, 0 for none"
    )
    gradient_checkpointing: bool = option(False, "trade compute for memory")
    torch_compile: bool = option(False, "compile the model with torch.compile (TrainingArguments.torch_compile)")
    metric_for_best_model: BestModelMetric = option(
        "accuracy", "validation score that picks the best checkpoint (loss: lower is better)"
    )
    resume_from_checkpoint: str | None = option(
        None, "continue from this checkpoint-* directory, or from the latest in --output with 'last' (--resume alone)",
        aliases=("--resume",), nargs="?", const="last", metavar="PATH|last",
    )
    eval_only: bool = option(False, "only evaluate the model as loaded on the validation (and test) split; no training")
    push_to_hub: str | None = option(None, "upload the final repo to the Hub (one commit)", metavar="ORG/NAME")
    hub_private: bool = option(False, "with --push-to-hub: create the repo private", flag="--private")
    report_to: str = option("none", "Trainer integrations: none, tensorboard, wandb, ...")
    disable_tqdm: bool | None = option(None, "", cli=False)
    extra_arguments: dict[str, Any] = option(
        dict, "any transformers TrainingArguments field, passed as it is (repeatable), e.g. --training-arg "
        "dataloader_drop_last=true", flag="--training-arg", metavar="KEY=VALUE", parse=parse_setting, repeat=True,
    )


@dataclass(kw_only=True)
class AugmentationOptions:
    """Switches for a recipe's training augmentation (evaluation images are never augmented)."""

    augment: bool = option(True, "train without any augmentation", flag="--no-augment")
    flip: bool = option(True, "no random horizontal flips (for data whose orientation matters: digits, text)",
                        flag="--no-flip")


@dataclass(kw_only=True)
class FinetuneOptions(AugmentationOptions):
    """The checkpoint fine-tuned and how; its augmentation is a random resized crop and a flip."""

    model: str = required("ORG/NAME on the Hub, a saved model directory, or a .npz file")
    image_size: int | None = option(None, "fine-tune at this resolution (position embeddings resampled)")
    linear_probe: bool = option(False, "train the classification head only", aliases=("--freeze-backbone",))
    crop_scale_min: float = option(0.08, "smallest area share of the random resized crop")


@dataclass(kw_only=True)
class ScratchOptions(AugmentationOptions):
    """
    Architecture and augmentation of a ViT trained from scratch. The defaults are the Keras "Image classification
    with Vision Transformer" example's CIFAR-100 recipe: 72 px inputs, 6 px patches, width 64, 8 blocks of 4 heads,
    MLP 128, dropout 0.1, flips, rotations up to 0.02 turns and zooms of +-20%.
    """

    image_size: int = option(72, "input resolution")
    patch_size: int = option(6, "patch side")
    hidden_size: int = option(64, "width")
    num_hidden_layers: int = option(8, "blocks", flag="--num-layers")
    num_attention_heads: int = option(4, "attention heads", flag="--num-heads")
    intermediate_size: int = option(128, "MLP width (Keras transformer_units [128, 64])")
    dropout: float = option(0.1, "attention and MLP dropout")
    classifier: Literal["token", "gap"] = option("token", "pooling: CLS token or global average")
    hidden_act: str = option("gelu", "", cli=False)  # keras.activations.gelu is the exact (erf) GELU
    rotation: float = option(0.02, "max rotation in turns")
    zoom: float = option(0.2, "max zoom in/out")
    normalisation_samples: int = option(10_000, "training images used for the normalisation statistics")


SCRATCH_TRAINING_DEFAULTS: dict[str, Any] = dict(
    epochs=100, learning_rate=1e-3, weight_decay=1e-4, batch_size=256, adam_epsilon=1e-7,  # Keras' AdamW
    lr_scheduler="constant", warmup=0.0, max_grad_norm=0.0,  # constant rate, no warm-up, no clipping, as in Keras
)
"""The Keras example's optimisation, as `TrainingOptions` values."""

SCRATCH_DATA_DEFAULTS: dict[str, Any] = dict(dataset=DEFAULT_SCRATCH_DATASET, validation_fraction=0.1)


# -- inference -----------------------------------------------------------------------------------------------------


@dataclass(kw_only=True)
class PredictOptions:
    images: list[str] = required("image files, folders of images, or http(s) URLs", positional=True, nargs="+",
                                 metavar="IMAGE")
    model: str = required("ORG/NAME, a saved model directory, or a .npz file")
    top_k: int = option(5, "labels shown per image")
    batch_size: int = option(16, "images per forward pass")
    max_pixels: int | None = option(None, "refuse images with more pixels (decompression bombs; default: PIL's 89,478,485)")
    jpeg_decoder: Literal["pil", "tf-default"] = option(
        "pil", "JPEG decoding: pil (accurate DCT) or tf-default (TensorFlow's default fast DCT, as the original "
        "pipelines decoded; needs the jpeg extra)")


@dataclass(kw_only=True)
class EvaluateOptions:
    model: str = required("ORG/NAME, a saved model directory, or a .npz file")
    split: str | None = option(None, "split to evaluate (default: test, else validation, else train)")
    batch_size: int = option(64, "batch size")
    num_workers: int = option(0, "DataLoader workers")
    top_k: int = option(5, "k of top-k accuracy")
    max_samples: int | None = option(None, "evaluate N examples only, drawn across the classes in proportion (fixed seed)")
    output: Path | None = option(None, "also write the report as JSON to this file")
    jpeg_decoder: Literal["pil", "tf-default"] = option(
        "pil", "JPEG decoding: pil (accurate DCT) or tf-default (TensorFlow's default fast DCT, as the original "
        "pipelines decoded; needs the jpeg extra)")


@dataclass(kw_only=True)
class LabelMapOptions:
    """How the dataset's class names meet the model's labels."""

    label_map: list[tuple[str, str]] = option(
        list, "dataset class DATASET_NAME is the model's label MODEL_LABEL (repeatable)", flag="--label-map",
        metavar="DATASET_NAME=MODEL_LABEL", parse=parse_pair, repeat=True,
    )


@dataclass(kw_only=True)
class EmbedOptions:
    source: str = required("a folder of images, imagefolder:DIR, or a Hub dataset id", positional=True,
                           metavar="FOLDER_OR_DATASET")
    model: str = required("ORG/NAME, a saved model directory, or a .npz file")
    output: Path = required("the .parquet file to write: one row per image (path, embedding[, cls])")
    split: str | None = option(None, "with a dataset: the split to embed (default: every split)")
    image_column: str | None = option(None, "with a dataset: the image column (default: detected)")
    cls_token: bool = option(False, "also store the final CLS token (before the pre-logits layer)")
    batch_size: int = option(64, "images per forward pass")
    num_workers: int = option(default_num_workers, "threads decoding images (default: spare CPU cores, at most 8)")
    rows_per_part: int = option(4096, "rows per part file written along the way (what a resumed run keeps)")
    max_pixels: int | None = option(None, "refuse images with more pixels (default: PIL's 89,478,485)")


@dataclass(kw_only=True)
class PatchesOptions:
    image: str = required("an image file or URL", positional=True, metavar="IMAGE")
    patch_size: int = option(16, "patch side")
    image_size: int = option(224, "resize the image to this first")
    output: Path = required("PNG file to write")


@dataclass(kw_only=True)
class AttentionOptions:
    image: str = required("an image file or URL", positional=True, metavar="IMAGE")
    model: str = required("ORG/NAME, a saved model directory, or a .npz file")
    head_fusion: Literal["mean", "max", "min"] = option("mean", "how heads are combined per layer (Abnar & Zuidema: mean)")
    output: Path = required("PNG file to write")
