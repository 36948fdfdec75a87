"""Training step (forward + backward + AdamW) on CPU: ours vs transformers' ViTForImageClassification, same weights.

    python bench/training.py                      # Ti/16 batch 16 and B/16 batch 8, plus memory with checkpointing
    python bench/training.py --configs B/16 --batch-b16 8 --repeats 3
    python bench/training.py --tiny               # seconds; what the smoke test runs

Peak memory is measured in a fresh child process per case (ours/transformers, with/without gradient
checkpointing) holding only that model: the process's peak RSS during one training step after a warm-up step, i.e.
the imported libraries, weights, gradients, AdamW state and the step's largest set of live activations.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from common import (
    Figure, Report, base_parser, images, interleaved, model_pair, model_shape, port_config, print_header,
    run_measured, set_threads, speed_figure, use_code_root,
)

TINY_BATCH = 8


def build(args, variant: str, gradient_checkpointing: bool, sides=("ours", "peer")):
    import torch

    config = port_config(model_shape(args, variant))
    ours, peer = model_pair(config)
    models = {key: model.train() for key, model in (("ours", ours), ("peer", peer)) if key in sides}
    del ours, peer
    if gradient_checkpointing:
        for model in models.values():
            if hasattr(model, "activation_checkpointing_enable"):
                model.activation_checkpointing_enable({"use_reentrant": False})
            else:  # transformers before the rename
                model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    batch = batch_for(args, variant)
    pixels = images(config, batch)
    labels = torch.arange(batch) % config.num_labels
    steps = {}
    for key, model in models.items():
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05)

        def step(model=model, optimizer=optimizer):
            optimizer.zero_grad(set_to_none=True)
            loss = model(pixel_values=pixels, labels=labels).loss
            loss.backward()
            optimizer.step()
            return loss

        steps[key] = step
    return steps, batch


def batch_for(args, variant: str) -> int:
    if args.tiny or variant == "tiny":
        return TINY_BATCH
    return args.batch_b16 if variant == "B/16" else args.batch_small


def memory_child(args) -> int:
    """One case in a fresh process holding only its model: a warm-up step (it allocates the gradients and AdamW's
    state), then one more step whose peak RSS is printed as JSON. The high-water mark is reset just before that step
    (Linux `clear_refs`), after freed heap memory has been handed back to the OS, so it is the step's own peak."""
    import ctypes
    import gc
    import resource

    steps, _ = build(args, args.memory_child_variant, args.memory_child_checkpointing, sides=(args.memory_child,))
    step = steps[args.memory_child]
    step()
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    before = _status().get("VmRSS")
    try:
        Path("/proc/self/clear_refs").write_text("5")
        reset = True
    except OSError:
        reset = False
    step()
    peak_kib = _status()["VmHWM"] if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"peak_kib": peak_kib, "before_step_kib": before, "step_only": reset}))
    return 0


def _status() -> dict[str, int]:
    try:
        lines = Path("/proc/self/status").read_text().splitlines()
    except OSError:
        return {}
    return {line.split(":")[0]: int(line.split()[1]) for line in lines if line.startswith(("VmRSS", "VmHWM"))}


def measure_memory(args, variant: str, side: str, checkpointing: bool) -> float:
    """Peak RSS (GiB) during one training step (after a warm-up step) of a fresh child process holding one model."""
    command = [
        sys.executable, os.path.abspath(__file__), "--memory-child", side, "--memory-child-variant", variant,
        "--threads", str(args.threads or os.cpu_count()), "--batch-small", str(args.batch_small),
        "--batch-b16", str(args.batch_b16),
    ] + (["--memory-child-checkpointing"] if checkpointing else []) + (["--tiny"] if args.tiny else [])
    command += ["--code-root", str(args.code_root)] if args.code_root else []
    stdout, returncode, _ = run_measured(command)
    if returncode:
        raise RuntimeError(f"memory child {command} failed with {returncode}:\n{stdout}")
    result = json.loads([line for line in stdout.splitlines() if line.startswith("{")][-1])
    return result["peak_kib"] / 2**20


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__)
    parser.add_argument("--configs", nargs="+", default=["Ti/16", "B/16"], help="model shapes to train")
    parser.add_argument("--batch-small", type=int, default=16, help="batch of the configurations other than B/16")
    parser.add_argument("--batch-b16", type=int, default=8, help="batch of B/16")
    parser.add_argument("--memory-variant", default="B/16", help="shape whose memory is measured ('none' to skip)")
    parser.add_argument("--memory-child", choices=("ours", "peer"), help=argparse.SUPPRESS)
    parser.add_argument("--memory-child-variant", help=argparse.SUPPRESS)
    parser.add_argument("--memory-child-checkpointing", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    code_root = use_code_root(args.code_root)
    set_threads(args.threads)
    if args.memory_child:
        return memory_child(args)
    repeats = args.repeats or (2 if args.tiny else 5)
    warmup = args.warmup if args.warmup is not None else 1

    report = Report(args, "training")
    print_header(report, code_root)
    variants = ["tiny"] if args.tiny else args.configs
    for variant in variants:
        steps, batch = build(args, variant, gradient_checkpointing=False)
        times = interleaved(steps, repeats, warmup)
        tag = variant.replace("/", "").lower()
        report.add(
            speed_figure(f"train_step_{tag}_bs{batch}", times, "ours", "peer", batch, "img/s", ">= 1.0")
        )
        del steps

    memory_variant = "tiny" if args.tiny else args.memory_variant
    if memory_variant != "none":
        tag = memory_variant.replace("/", "").lower()
        batch = batch_for(args, memory_variant)
        peaks = {
            (side, checkpointing): measure_memory(args, memory_variant, side, checkpointing)
            for checkpointing in (False, True)
            for side in ("ours", "peer")
        }
        report.add(
            Figure(
                f"train_peak_rss_checkpointing_{tag}_bs{batch}", "ours", peaks["ours", True], "transformers",
                peaks["peer", True], "GiB", peaks["ours", True] / peaks["peer", True], "",
                note="both with gradient checkpointing; lower is better",
            )
        )
        report.add(
            Figure(
                f"train_peak_rss_checkpointing_saving_{tag}_bs{batch}", "ours-checkpointing", peaks["ours", True],
                "ours-no-checkpointing", peaks["ours", False], "GiB", peaks["ours", True] / peaks["ours", False], "",
                note=f"transformers: {peaks['peer', True]:.2f} GiB with, {peaks['peer', False]:.2f} GiB without",
            )
        )
    report.write()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
