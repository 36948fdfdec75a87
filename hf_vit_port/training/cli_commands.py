"""The training, evaluation and picture subcommands of `hf-vit-port`.

`add_subcommands(subparsers)` registers `finetune`, `train-from-scratch`, `evaluate`, `predict`, `plot-patches`
and `plot-attention` on an argparse sub-parser group and returns each command's function (called with the parsed
arguments, returning the exit code). The training stack (Trainer, datasets, matplotlib) is imported inside those
functions only.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import fields
from typing import Any

def _warmup(value: str) -> float:
    number = float(value)
    if number < 0 or (number >= 1 and not number.is_integer()):
        raise argparse.ArgumentTypeError("warmup is a whole number of steps, or a fraction of the run in [0, 1)")
    return number


def _add_data_flags(parser: argparse.ArgumentParser, *, dataset_default: str | None) -> None:
    group = parser.add_argument_group("data")
    group.add_argument(
        "--dataset",
        required=dataset_default is None,
        default=dataset_default,
        help="a Hub dataset id, or imagefolder:DIR for a folder of class sub-folders"
        + (f" (default: {dataset_default})" if dataset_default else ""),
    )
    group.add_argument("--dataset-config", default=None, help="configuration name of a Hub dataset")
    group.add_argument("--image-column", default=None, help="image column (default: detected)")
    group.add_argument("--label-column", default=None, help="label column (default: detected, a ClassLabel)")
    group.add_argument(
        "--validation-fraction",
        type=float,
        default=None,
        help="share of the training split held out when the dataset has no validation split",
    )
    group.add_argument("--max-train-samples", type=int, default=None, help="use only this many training examples")
    group.add_argument("--max-eval-samples", type=int, default=None, help="use only this many validation/test examples")
    group.add_argument(
        "--no-check-images", action="store_true", help="skip the pass that opens every image to drop unreadable ones"
    )


def _add_training_flags(parser: argparse.ArgumentParser, defaults: dict[str, Any]) -> None:
    group = parser.add_argument_group("training")
    group.add_argument("--output", required=True, help="output directory: checkpoints, final model, scores, plots")
    group.add_argument("--epochs", type=float, default=defaults["epochs"], help="epochs (default: %(default)s)")
    group.add_argument(
        "--max-steps", type=int, default=-1, help="stop after this many optimiser steps (overrides --epochs)"
    )
    group.add_argument(
        "--learning-rate",
        type=float,
        default=defaults["learning_rate"],
        help="peak learning rate (default: %(default)s)",
    )
    group.add_argument(
        "--batch-size", type=int, default=defaults["batch_size"], help="per-device batch size (default: %(default)s)"
    )
    group.add_argument(
        "--eval-batch-size", type=int, default=None, help="per-device evaluation batch size (default: --batch-size)"
    )
    group.add_argument(
        "--weight-decay", type=float, default=defaults["weight_decay"], help="AdamW weight decay (default: %(default)s)"
    )
    group.add_argument(
        "--warmup",
        type=_warmup,
        default=defaults["warmup"],
        help="linear warm-up: a number of steps, or a fraction of the run below 1 (default: %(default)s)",
    )
    group.add_argument(
        "--lr-scheduler",
        default=defaults["lr_scheduler"],
        help="transformers scheduler name: cosine, linear, constant, constant_with_warmup, ... (default: %(default)s)",
    )
    group.add_argument(
        "--gradient-accumulation-steps", type=int, default=1, help="batches per optimiser step (default: 1)"
    )
    group.add_argument(
        "--max-grad-norm",
        type=float,
        default=defaults["max_grad_norm"],
        help="gradient clipping norm, 0 for none (default: %(default)s)",
    )
    group.add_argument("--optimizer", default="adamw_torch", help="transformers optimiser name (default: adamw_torch)")
    group.add_argument("--label-smoothing", type=float, default=0.0, help="label smoothing factor (default: 0)")
    group.add_argument("--seed", type=int, default=42, help="random seed (default: 42)")
    group.add_argument(
        "--eval-strategy",
        choices=("epoch", "steps"),
        default="epoch",
        help="when to evaluate and save (default: epoch)",
    )
    group.add_argument(
        "--eval-steps", type=int, default=None, help="with --eval-strategy steps: evaluate and save every N steps"
    )
    group.add_argument(
        "--logging-steps", type=int, default=10, help="log the training loss every N steps (default: 10)"
    )
    group.add_argument(
        "--save-total-limit",
        type=int,
        default=2,
        help="checkpoints kept on disk; the best is never deleted (default: 2)",
    )
    group.add_argument(
        "--num-workers",
        type=int,
        default=None,
        help="DataLoader workers per process (default: spare CPU cores, at most 8)",
    )
    group.add_argument(
        "--train-eval-samples",
        type=int,
        default=512,
        help="training examples scored at each evaluation for the train-accuracy curve, 0 for none (default: 512)",
    )
    group.add_argument("--gradient-checkpointing", action="store_true", help="trade compute for memory")
    group.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --output")
    group.add_argument(
        "--push-to-hub", metavar="ORG/NAME", default=None, help="upload the final repo to the Hub (one commit)"
    )
    group.add_argument("--private", action="store_true", help="with --push-to-hub: create the repo private")
    group.add_argument(
        "--report-to", default="none", help="Trainer integrations: none, tensorboard, wandb, ... (default: none)"
    )
    precision = group.add_mutually_exclusive_group()
    precision.add_argument(
        "--bf16", dest="precision", action="store_const", const="bf16", help="bfloat16 mixed precision"
    )
    precision.add_argument(
        "--fp16", dest="precision", action="store_const", const="fp16", help="float16 mixed precision (CUDA)"
    )
    precision.add_argument(
        "--fp32", dest="precision", action="store_const", const="fp32", help="full precision everywhere"
    )
    parser.set_defaults(precision="auto")


def _options(args: argparse.Namespace, **overrides: Any):
    from .options import TrainingOptions

    values = dict(
        output_dir=args.output,
        epochs=args.epochs,
        max_steps=args.max_steps,
        learning_rate=args.learning_rate,
        batch_size=args.batch_size,
        eval_batch_size=args.eval_batch_size,
        weight_decay=args.weight_decay,
        warmup=args.warmup,
        lr_scheduler=args.lr_scheduler,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        max_grad_norm=args.max_grad_norm,
        optimizer=args.optimizer,
        label_smoothing=args.label_smoothing,
        seed=args.seed,
        precision=args.precision,
        eval_strategy=args.eval_strategy,
        eval_steps=args.eval_steps,
        logging_steps=args.logging_steps,
        save_total_limit=args.save_total_limit,
        train_eval_samples=args.train_eval_samples,
        gradient_checkpointing=args.gradient_checkpointing,
        resume=args.resume,
        push_to_hub=args.push_to_hub,
        hub_private=args.private,
        report_to=args.report_to,
    )
    if args.num_workers is not None:
        values["num_workers"] = args.num_workers
    values.update(overrides)
    return TrainingOptions(**values)


def _data_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return dict(
        image_column=args.image_column,
        label_column=args.label_column,
        dataset_config=args.dataset_config,
        check_images=not args.no_check_images,
        max_train_samples=args.max_train_samples,
        max_eval_samples=args.max_eval_samples,
    )


def _print_scores(metrics: dict[str, float], output: str) -> None:
    shown = {k: v for k, v in metrics.items() if k.endswith(("accuracy", "_loss")) and not k.startswith("train_subset")}
    print(json.dumps(shown, indent=2))
    print(f"Saved the model, processor, scores (*_results.json), training_curves.png and README.md to {output}")


def run_finetune(args: argparse.Namespace) -> int:
    """Fine-tune a checkpoint (repo, Hub id or .npz) on an image-classification dataset."""
    from .finetune import finetune

    kwargs = _data_kwargs(args)
    if args.validation_fraction is not None:
        kwargs["validation_fraction"] = args.validation_fraction
    trainer = finetune(
        args.model,
        args.dataset,
        _options(args),
        image_size=args.image_size,
        linear_probe=args.linear_probe,
        augment=not args.no_augment,
        crop_scale=(args.crop_scale_min, 1.0),
        **kwargs,
    )
    if trainer.is_world_process_zero():
        _print_scores(trainer.final_metrics, args.output)
    return 0


def run_train_from_scratch(args: argparse.Namespace) -> int:
    """Train a small ViT from scratch with the Keras CIFAR-100 example's recipe (on any image dataset)."""
    from .recipes import ScratchRecipe
    from .scratch import train_from_scratch

    recipe = ScratchRecipe(
        image_size=args.image_size,
        patch_size=args.patch_size,
        hidden_size=args.hidden_size,
        num_hidden_layers=args.num_layers,
        num_attention_heads=args.num_heads,
        intermediate_size=args.intermediate_size,
        dropout=args.dropout,
        classifier=args.classifier,
        rotation=args.rotation,
        zoom=args.zoom,
        normalisation_samples=args.normalisation_samples,
        validation_fraction=args.validation_fraction if args.validation_fraction is not None else 0.1,
    )
    options = _options(args, adam_epsilon=recipe.adam_epsilon)
    kwargs = _data_kwargs(args)
    trainer = train_from_scratch(options, dataset=args.dataset, recipe=recipe, **kwargs)
    if trainer.is_world_process_zero():
        _print_scores(trainer.final_metrics, args.output)
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    """Evaluate a classifier on a dataset split: accuracy, top-k, per-class accuracy, confusion matrix."""
    from .evaluation import evaluate_dataset

    report = evaluate_dataset(
        args.model,
        args.dataset,
        split=args.split,
        image_column=args.image_column,
        label_column=args.label_column,
        dataset_config=args.dataset_config,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        k=args.top_k,
        max_samples=args.max_samples,
        output=args.output,
    )
    print(report.format())
    if args.output:
        print(f"\nWrote {args.output}")
    return 0


def run_predict(args: argparse.Namespace) -> int:
    """Classify images (files, folders of images, URLs when online) and print the top labels."""
    from .images import DEFAULT_MAX_PIXELS
    from .loading import load_model, load_processor
    from .predict import format_prediction, predict_images

    model = load_model(args.model)
    processor = load_processor(args.model, model.config)
    max_pixels = args.max_pixels if args.max_pixels is not None else DEFAULT_MAX_PIXELS
    predictions, errors = predict_images(
        args.images, model, processor, top_k=args.top_k, batch_size=args.batch_size, max_pixels=max_pixels
    )
    for prediction in predictions:
        print(format_prediction(prediction))
    for error in errors:
        print(f"skipped {error}", file=sys.stderr)
    if not predictions:
        print("No image could be classified.", file=sys.stderr)
        return 1
    return 0


def run_plot_patches(args: argparse.Namespace) -> int:
    """Draw an image cut into its patches, as the Keras ViT example does."""
    from .images import open_image
    from .plots import plot_patches

    path = plot_patches(open_image(args.image), args.output, patch_size=args.patch_size, image_size=args.image_size)
    print(f"Wrote {path}")
    return 0


def run_plot_attention(args: argparse.Namespace) -> int:
    """Overlay the attention rollout of a classifier on an image."""
    from .attention import attention_maps
    from .images import open_image
    from .loading import load_model, load_processor
    from .plots import plot_attention
    from .predict import label_words

    model = load_model(args.model, attn_implementation="eager")
    processor = load_processor(args.model, model.config)
    image = open_image(args.image)
    pixels = processor(images=[image], return_tensors="pt")["pixel_values"]
    relevance, logits = attention_maps(model, pixels, head_fusion=args.head_fusion)
    title = ""
    if logits.shape[-1] > 0:
        probabilities = logits[0].float().softmax(-1)
        index = int(probabilities.argmax())
        title = f"{label_words(model.config.id2label, model.config.num_labels)[index]} ({probabilities[index]:.2f})"
    path = plot_attention(image, relevance[0].numpy(), args.output, title=title)
    print(f"Wrote {path}")
    return 0


def add_subcommands(subparsers: argparse._SubParsersAction) -> dict[str, Callable[[argparse.Namespace], int]]:
    """Register the subcommands on `subparsers`; returns {name: the function running it}."""
    from .options import TrainingOptions
    from .recipes import DEFAULT_DATASET, KERAS_CIFAR100

    finetune_defaults = {
        f.name: f.default
        for f in fields(TrainingOptions)
        if f.name
        in ("epochs", "learning_rate", "batch_size", "weight_decay", "warmup", "lr_scheduler", "max_grad_norm")
    }
    finetune = subparsers.add_parser("finetune", help=run_finetune.__doc__, description=run_finetune.__doc__)
    finetune.add_argument("--model", required=True, help="ORG/NAME on the Hub, a saved model directory, or a .npz file")
    _add_data_flags(finetune, dataset_default=None)
    _add_training_flags(finetune, finetune_defaults)
    model_group = finetune.add_argument_group("model")
    model_group.add_argument(
        "--image-size",
        type=int,
        default=None,
        help="fine-tune at this resolution (position embeddings resampled; default: the checkpoint's)",
    )
    model_group.add_argument(
        "--linear-probe",
        "--freeze-backbone",
        dest="linear_probe",
        action="store_true",
        help="train the classification head only",
    )
    model_group.add_argument("--no-augment", action="store_true", help="no random crops or flips")
    model_group.add_argument(
        "--crop-scale-min",
        type=float,
        default=0.08,
        help="smallest area share of the random resized crop (default: 0.08)",
    )

    recipe = KERAS_CIFAR100
    scratch_defaults = dict(
        epochs=recipe.epochs,
        learning_rate=recipe.learning_rate,
        batch_size=recipe.batch_size,
        weight_decay=recipe.weight_decay,
        warmup=0.0,
        lr_scheduler="constant",
        max_grad_norm=0.0,
    )
    scratch = subparsers.add_parser(
        "train-from-scratch", help=run_train_from_scratch.__doc__, description=run_train_from_scratch.__doc__
    )
    _add_data_flags(scratch, dataset_default=DEFAULT_DATASET)
    _add_training_flags(scratch, scratch_defaults)
    arch = scratch.add_argument_group("architecture and augmentation (defaults: the Keras example)")
    arch.add_argument(
        "--image-size", type=int, default=recipe.image_size, help="input resolution (default: %(default)s)"
    )
    arch.add_argument("--patch-size", type=int, default=recipe.patch_size, help="patch side (default: %(default)s)")
    arch.add_argument("--hidden-size", type=int, default=recipe.hidden_size, help="width (default: %(default)s)")
    arch.add_argument("--num-layers", type=int, default=recipe.num_hidden_layers, help="blocks (default: %(default)s)")
    arch.add_argument(
        "--num-heads", type=int, default=recipe.num_attention_heads, help="attention heads (default: %(default)s)"
    )
    arch.add_argument(
        "--intermediate-size", type=int, default=recipe.intermediate_size, help="MLP width (default: %(default)s)"
    )
    arch.add_argument("--dropout", type=float, default=recipe.dropout, help="dropout (default: %(default)s)")
    arch.add_argument(
        "--classifier", choices=("token", "gap"), default=recipe.classifier, help="pooling (default: %(default)s)"
    )
    arch.add_argument(
        "--rotation", type=float, default=recipe.rotation, help="max rotation in turns (default: %(default)s)"
    )
    arch.add_argument("--zoom", type=float, default=recipe.zoom, help="max zoom in/out (default: %(default)s)")
    arch.add_argument(
        "--normalisation-samples",
        type=int,
        default=recipe.normalisation_samples,
        help="training images used for the normalisation statistics (default: %(default)s)",
    )

    evaluate = subparsers.add_parser("evaluate", help=run_evaluate.__doc__, description=run_evaluate.__doc__)
    evaluate.add_argument("--model", required=True, help="ORG/NAME, a saved model directory, or a .npz file")
    evaluate.add_argument("--dataset", required=True, help="a Hub dataset id, or imagefolder:DIR")
    evaluate.add_argument(
        "--split", default=None, help="split to evaluate (default: test, else validation, else train)"
    )
    evaluate.add_argument("--dataset-config", default=None, help="configuration name of a Hub dataset")
    evaluate.add_argument("--image-column", default=None, help="image column (default: detected)")
    evaluate.add_argument("--label-column", default=None, help="label column (default: detected)")
    evaluate.add_argument("--batch-size", type=int, default=64, help="batch size (default: 64)")
    evaluate.add_argument("--num-workers", type=int, default=0, help="DataLoader workers (default: 0)")
    evaluate.add_argument("--top-k", type=int, default=5, help="k of top-k accuracy (default: 5)")
    evaluate.add_argument("--max-samples", type=int, default=None, help="evaluate the first N examples only")
    evaluate.add_argument("--output", default=None, help="also write the report as JSON to this file")

    predict = subparsers.add_parser("predict", help=run_predict.__doc__, description=run_predict.__doc__)
    predict.add_argument("images", nargs="+", metavar="IMAGE", help="image files, folders of images, or http(s) URLs")
    predict.add_argument("--model", required=True, help="ORG/NAME, a saved model directory, or a .npz file")
    predict.add_argument("--top-k", type=int, default=5, help="labels shown per image (default: 5)")
    predict.add_argument("--batch-size", type=int, default=16, help="images per forward pass (default: 16)")
    predict.add_argument(
        "--max-pixels",
        type=int,
        default=None,
        help="refuse images with more pixels (decompression bombs; default: PIL's 89,478,485)",
    )

    patches = subparsers.add_parser("plot-patches", help=run_plot_patches.__doc__, description=run_plot_patches.__doc__)
    patches.add_argument("image", metavar="IMAGE", help="an image file or URL")
    patches.add_argument("--patch-size", type=int, default=16, help="patch side (default: 16)")
    patches.add_argument("--image-size", type=int, default=224, help="resize the image to this first (default: 224)")
    patches.add_argument("--output", required=True, help="PNG file to write")

    attention = subparsers.add_parser(
        "plot-attention", help=run_plot_attention.__doc__, description=run_plot_attention.__doc__
    )
    attention.add_argument("image", metavar="IMAGE", help="an image file or URL")
    attention.add_argument("--model", required=True, help="ORG/NAME, a saved model directory, or a .npz file")
    attention.add_argument(
        "--head-fusion",
        choices=("mean", "max", "min"),
        default="mean",
        help="how heads are combined per layer (default: mean, as Abnar & Zuidema)",
    )
    attention.add_argument("--output", required=True, help="PNG file to write")

    return {
        "finetune": run_finetune,
        "train-from-scratch": run_train_from_scratch,
        "evaluate": run_evaluate,
        "predict": run_predict,
        "plot-patches": run_plot_patches,
        "plot-attention": run_plot_attention,
    }


__all__ = ["add_subcommands"]
