"""Synthetic imagenet21k-style `.npz` files of the exact official shapes for the benchmarks (random weights, the
21843-class zero head of the 2020 releases), written one array at a time by `hf_vit_port_tools.conversion.synthetic`.

    python bench/synthetic.py --variant B/16 --out /tmp/ViT-B_16.npz
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hf_vit_port_tools.conversion.synthetic import write_synthetic_npz
from hf_vit_port import ViTPortConfig

# "tiny" keeps the smoke test fast; the others are the official presets.
TINY = dict(image_size=16, patch_size=4, hidden_size=32, intermediate_size=64, num_attention_heads=4,
            num_hidden_layers=2, num_labels=10, representation_size=32)
VARIANTS = ("tiny", "Ti/16", "S/16", "B/16", "L/16")


def in21k_config(variant: str) -> ViTPortConfig:
    """The imagenet21k release configuration of `variant` (pre-logits as wide as the encoder)."""
    return ViTPortConfig(**TINY) if variant == "tiny" else ViTPortConfig.from_preset(variant, dataset="imagenet21k")


def ensure_in21k_file(variant: str, directory: str | Path, seed: int = 0) -> Path:
    """The synthetic in21k file of `variant` in `directory`, written once and reused."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"ViT-{variant.replace('/', '_')}-in21k-synthetic-seed{seed}.npz"
    if not path.exists():
        write_synthetic_npz(path, in21k_config(variant), seed=seed, zero_head=True)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", choices=VARIANTS, default="B/16")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    path = write_synthetic_npz(args.out, in21k_config(args.variant), seed=args.seed, zero_head=True)
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
