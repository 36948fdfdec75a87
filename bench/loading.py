"""`from_pretrained` load time of the converted ViT-B/16 repo vs the same weights as a transformers ViT repo.

    python bench/loading.py                 # converts the synthetic B/16 imagenet21k file twice (once per format)
    python bench/loading.py --tiny          # seconds; what the smoke test runs

Both repos come from `python -m conversion convert` on the same synthetic official-shaped file: ours in the
`vit_port` format (`ViTPortForImageClassification`, pre-logits kept, zero head dropped), the peer in the `stock`
format (transformers' `ViTModel`, its pooler holding the pre-logits), so both hold the same 86.4M parameters.
Loads alternate in one process after a warm-up, from the page cache.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import Figure, Report, base_parser, interleaved, paired_ratio, print_header, set_threads, use_code_root
from converting import child_env, default_work_dir, warm_page_cache
from synthetic import ensure_in21k_file


def convert_once(npz, out, fmt: str, report: Report, code_root) -> None:
    if (out / "model.safetensors").exists() and (out / "config.json").exists():
        return
    start = time.perf_counter()
    command = [sys.executable, "-m", "conversion", "convert", "--npz", str(npz), "--out", str(out), "--overwrite",
               "--format", fmt]
    result = subprocess.run(command, env=child_env(code_root), cwd=code_root, capture_output=True, text=True)
    if result.returncode:
        shutil.rmtree(out, ignore_errors=True)
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")
    report.note(f"converted {npz.name} to the {fmt} format in {time.perf_counter() - start:.1f} s")


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__)
    parser.add_argument("--work-dir", default=None, help="where the synthetic file and the repos go")
    args = parser.parse_args(argv)
    code_root = use_code_root(args.code_root)
    set_threads(args.threads)
    repeats = args.repeats or (2 if args.tiny else 7)
    warmup = args.warmup if args.warmup is not None else 1

    from transformers import ViTModel

    from hf_vit_port import ViTPortForImageClassification

    report = Report(args, "loading")
    print_header(report, code_root)
    work_dir = Path(args.work_dir) if args.work_dir else default_work_dir()
    variant = "tiny" if args.tiny else "B/16"
    tag = variant.replace("/", "").lower()
    npz = ensure_in21k_file(variant, work_dir)
    ours_dir, peer_dir = work_dir / f"repo-{tag}-vit_port", work_dir / f"repo-{tag}-stock"
    convert_once(npz, ours_dir, "vit_port", report, code_root)
    convert_once(npz, peer_dir, "stock", report, code_root)
    for directory in (ours_dir, peer_dir):
        warm_page_cache(directory / "model.safetensors")

    # Each loaded model is dropped as soon as it is made: the next load starts as a fresh process would.
    times = interleaved(
        {
            "ours": lambda: ViTPortForImageClassification.from_pretrained(ours_dir),
            "peer": lambda: ViTModel.from_pretrained(peer_dir),
        },
        repeats, warmup,
    )
    ours = ViTPortForImageClassification.from_pretrained(ours_dir)
    peer = ViTModel.from_pretrained(peer_dir)
    count = (sum(p.numel() for p in ours.parameters()), sum(p.numel() for p in peer.parameters()))
    report.note(f"parameters: ours {count[0]:,}, transformers {count[1]:,}")
    report.add(
        Figure(
            f"from_pretrained_{tag}", "ours", statistics.median(times["ours"]), "transformers",
            statistics.median(times["peer"]), "s", paired_ratio(times["ours"], times["peer"]), "<= 1.1",
            samples={"ours": times["ours"], "transformers": times["peer"]},
        )
    )
    report.write()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
