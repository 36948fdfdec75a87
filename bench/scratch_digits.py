"""From scratch on real images: the `train-from-scratch` recipe on scikit-learn's bundled digits, with and without flips.

    python bench/scratch_digits.py                          # 20 epochs, flip and --no-flip: about 1 h each on 1 core
    python bench/scratch_digits.py --epochs 5 --variants no-flip
    OMP_NUM_THREADS=1 python bench/scratch_digits.py --json-out digits.json

The digits (1,797 8x8 grey images of 10 classes, shipped inside scikit-learn, so no download) are upscaled to 32 px
and written as an image folder with a stratified 20% `test/` split; the recipe holds out 10% of `train/` for
validation, picks the best epoch on it and scores that checkpoint on `test/`. Each variant runs the real command
(`python -m hf_vit_port_tools.cli train-from-scratch`) with the recipe's defaults and only `--epochs` (and
`--no-flip`) given. Digits are not mirror-symmetric, so flipping them teaches the model wrong shapes.
Needs scikit-learn (`pip install -e ".[bench]"`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VARIANTS = {"flip": [], "no-flip": ["--no-flip"]}
UPSCALED = 32
TEST_FRACTION = 0.2


def write_digits_folder(root: Path, seed: int = 0) -> dict[str, int]:
    """root/{train,test}/<digit>/<i>.png, the test split stratified; returns the number of images per split."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    pixels = np.round(digits.images * (255 / 16)).astype(np.uint8)  # values 0..16
    train, test = train_test_split(np.arange(len(pixels)), test_size=TEST_FRACTION, random_state=seed,
                                   stratify=digits.target)
    for split, indices in (("train", train), ("test", test)):
        for index in indices:
            folder = root / split / str(digits.target[index])
            folder.mkdir(parents=True, exist_ok=True)
            image = Image.fromarray(pixels[index], mode="L").resize((UPSCALED, UPSCALED), Image.BICUBIC)
            image.save(folder / f"{index}.png")
    return {"train": len(train), "test": len(test)}


def run_recipe(data: Path, output: Path, epochs: int, extra: list[str]) -> tuple[dict, float, list[str]]:
    """Train with the CLI recipe; (test scores, wall seconds, the command)."""
    command = [sys.executable, "-m", "hf_vit_port_tools.cli", "train-from-scratch", "--dataset", f"imagefolder:{data}",
               "--output", str(output), "--epochs", str(epochs), *extra]
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    return json.loads((output / "test_results.json").read_text()), seconds, command


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=None, help="instead of the recipe's 256 (more steps)")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--work-dir", type=Path, default=None, help="where the folder and runs go (default: a temp dir)")
    parser.add_argument("--json-out", type=Path, default=None)
    args = parser.parse_args()
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="scratch_digits_"))
    counts = write_digits_folder(work / "digits")
    print(f"digits: {counts['train']} train (10% of them held out for validation), {counts['test']} test images, "
          f"{UPSCALED} px; {args.epochs} epochs; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    results = []
    for name in args.variants:
        extra = VARIANTS[name] + (["--batch-size", str(args.batch_size)] if args.batch_size else [])
        scores, seconds, command = run_recipe(work / "digits", work / f"run-{name}", args.epochs, extra)
        results.append({"variant": name, "test_accuracy": scores["test_accuracy"], "wall_s": round(seconds, 1),
                        "command": " ".join(command[1:]).replace(str(work), "$WORK")})
        print(f"scratch_digits_{name.replace('-', '_')}: test accuracy {scores['test_accuracy']:.4f}, "
              f"top-5 {scores['test_top5_accuracy']:.4f}, wall time {seconds:.0f} s")
    if args.json_out:
        args.json_out.write_text(json.dumps({"epochs": args.epochs, "counts": counts, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
