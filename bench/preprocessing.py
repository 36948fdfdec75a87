"""Image-processor throughput: `ViTPortImageProcessor` (the original eval resize, in torch) vs transformers'
`ViTImageProcessor` (PIL, as converted `--format stock` repos carry it), on the same real photos.

    python bench/preprocessing.py            # 224 px; one image per call (as pipelines call it) and batches of 32
    python bench/preprocessing.py --tiny     # seconds; what the smoke test runs

The photos are the five sample files of the preprocessing tests (shipped in the matplotlib and scikit-image wheels;
512x600 to 1000x872, JPEG and PNG), decoded once to RGB PIL images before timing: both processors get the same
images. Each figure is images per second, ours / theirs; a `#` line gives each side's distance from TensorFlow's
output (tests/fixtures/preprocessing/tf_reference.npz).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
from common import REPO_ROOT, Report, base_parser, interleaved, print_header, set_threads, speed_figure, use_code_root

REFERENCE = REPO_ROOT / "tests" / "fixtures" / "preprocessing" / "tf_reference.npz"


def photos(reference: dict[str, np.ndarray]) -> list:
    """The reference photos as decoded RGB PIL images (what a pipeline hands the processor)."""
    from PIL import Image

    from hf_vit_port.images import to_rgb

    images = []
    for name in reference["photos"]:
        package, inside = reference[f"{name}.source"].item().split(":", 1)
        path = Path(importlib.util.find_spec(package).submodule_search_locations[0]) / inside
        images.append(to_rgb(Image.open(path)))
    return images


def distance_from_tensorflow(processor, reference: dict[str, np.ndarray], images: list) -> tuple[float, float]:
    """Max and mean absolute difference from TF's output at 224, over every reference photo's sampled positions."""
    worst, means = 0.0, []
    for name, image in zip(reference["photos"], images):
        pixels = processor(image, return_tensors="np")["pixel_values"][0].transpose(1, 2, 0)
        rows, cols = reference[f"{name}.224.rows"], reference[f"{name}.224.cols"]
        difference = np.abs(pixels[rows, cols] - reference[f"{name}.224.values"])
        worst, means = max(worst, float(difference.max())), [*means, float(difference.mean())]
    return worst, float(np.mean(means))


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__)
    parser.add_argument("--batch", type=int, default=None, help="images per batched call (default 32; tiny 8)")
    args = parser.parse_args(argv)
    code_root = use_code_root(args.code_root)
    set_threads(args.threads)
    repeats = args.repeats or (2 if args.tiny else 15)
    warmup = args.warmup if args.warmup is not None else 1
    batch = args.batch or (8 if args.tiny else 32)

    from hf_vit_port.configuration_vit_port import ViTPortConfig
    from hf_vit_port.processing import make_image_processor
    from hf_vit_port.stock import stock_image_processor

    report = Report(args, "preprocessing")
    print_header(report, code_root)
    reference = dict(np.load(REFERENCE))
    images = photos(reference)
    config = ViTPortConfig(image_size=224)
    ours, theirs = make_image_processor(config), stock_image_processor(config)
    for label, processor in (("ours", ours), ("ViTImageProcessor", theirs)):
        worst, mean = distance_from_tensorflow(processor, reference, images)
        report.note(f"{label} vs TensorFlow's eval preprocessing at 224: max {worst:.2e}, mean {mean:.2e}")

    single = interleaved({"ours": lambda: [ours(image, return_tensors="pt") for image in images],
                          "theirs": lambda: [theirs(image, return_tensors="pt") for image in images]},
                         repeats, warmup)
    report.add(speed_figure("preprocess_224_single", single, "ours", "theirs", len(images), "img/s", ">= 1.0",
                            labels=("ours", "ViTImageProcessor"), note="one image per call, as pipelines call it"))
    batched = [images[i % len(images)] for i in range(batch)]
    many = interleaved({"ours": lambda: ours(batched, return_tensors="pt"),
                        "theirs": lambda: theirs(batched, return_tensors="pt")}, repeats, warmup)
    report.add(speed_figure(f"preprocess_224_bs{batch}", many, "ours", "theirs", batch, "img/s", ">= 1.0",
                            labels=("ours", "ViTImageProcessor")))
    report.write()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
