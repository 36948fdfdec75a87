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
    """The main job, offline: write a checkpoint in Google's official .npz layout, convert it with verification into
    a repo, and classify an image through `pipeline` with real ImageNet label names."""
    import numpy as np
    from PIL import Image
    from transformers import pipeline

    from conversion.cli import report
    from conversion.convert import convert
    from conversion.synthetic import write_synthetic_npz

    from . import ViTPortConfig

    config = ViTPortConfig.from_preset(args.variant, dataset="imagenet21k+imagenet2012", image_size=args.image_size)
    with tempfile.TemporaryDirectory() as directory:
        work = Path(directory)
        name = "ViT-" + args.variant.replace("/", "_")
        npz = write_synthetic_npz(work / f"{name}.npz", config)
        print(f"Wrote {npz.name}: random weights in the official layout (the real files need network access; "
              f"`hf-vit-port convert imagenet21k+imagenet2012/ViT-B_16 --out DIR` downloads and converts one).")
        report(convert(npz, work / "repo", repo_id=f"demo/{name.lower()}"))
        rows, cols = np.mgrid[0 : args.image_size, 0 : args.image_size]
        image = Image.fromarray(np.stack([rows % 256, cols % 256, (rows + cols) % 256], -1).astype(np.uint8))
        predictions = pipeline("image-classification", model=str(work / "repo"))(image, top_k=3)
    print("pipeline('image-classification') on a test image (random weights, so the classes are arbitrary):")
    for prediction in predictions:
        print(f"  {prediction['score']:.4f}  {prediction['label']}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hf-vit-port", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for name in CONVERSION_COMMANDS:
        commands.add_parser(name, help=f"see `python -m conversion {name} --help`", add_help=False)
    from .training.cli_commands import add_subcommands

    COMMANDS.update(add_subcommands(commands))
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
