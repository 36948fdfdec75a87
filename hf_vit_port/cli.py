"""The `hf-vit-port` command line."""

import argparse
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def command(name: str) -> Callable:
    def register(function: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        COMMANDS[name] = function
        return function

    return register


@command("demo")
def run_demo(args: argparse.Namespace) -> int:
    """Build a preset model, save it as a repo with its processor, and classify an image through `pipeline`."""
    import numpy as np
    from PIL import Image
    from transformers import pipeline

    from . import ViTPortConfig, ViTPortForImageClassification
    from .processing import make_image_processor

    config = ViTPortConfig.from_preset(args.variant, dataset="imagenet21k+imagenet2012", image_size=args.image_size)
    model = ViTPortForImageClassification(config)
    with tempfile.TemporaryDirectory() as directory:
        model.save_pretrained(directory)
        make_image_processor(config).save_pretrained(directory)
        gradient = np.linspace(0, 255, args.image_size * args.image_size * 3, dtype=np.float32)
        image = Image.fromarray(gradient.reshape(args.image_size, args.image_size, 3).astype(np.uint8))
        classifier = pipeline("image-classification", model=directory)
        predictions = classifier(image, top_k=3)
    print(f"Built ViT-{args.variant} ({sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters, "
          f"{config.image_size}px, {config.num_labels} classes) and classified a test image through pipeline().")
    print("The weights are freshly initialised (zero head), so every class scores the same until a checkpoint is loaded:")
    for prediction in predictions:
        print(f"  {prediction['score']:.4f}  {prediction['label']}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hf-vit-port", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for name in CONVERSION_COMMANDS:
        commands.add_parser(name, help=f"see `python -m conversion {name} --help`", add_help=False)
    demo = commands.add_parser("demo", help=run_demo.__doc__)
    demo.add_argument("--variant", default="Ti/16", help="preset variant, e.g. Ti/16, B/16 (default: Ti/16)")
    demo.add_argument("--image-size", type=int, default=224, help="input resolution (default: 224)")
    return parser


# Conversion and publishing live in the `conversion` package; `hf-vit-port convert ...` is `python -m conversion convert ...`.
CONVERSION_COMMANDS = ("convert", "push", "batch", "list")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in CONVERSION_COMMANDS:
        from conversion.cli import main as conversion_main

        return conversion_main(argv)
    args = build_parser().parse_args(argv)
    return COMMANDS[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
