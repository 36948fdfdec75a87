"""Inference throughput on CPU: ours vs transformers' ViTForImageClassification (SDPA, same weights), fp32 and bf16.

    python bench/inference.py                     # ViT-B/16, 224 px, batch 8
    python bench/inference.py --compile           # also torch.compile (reported, no target)
    python bench/inference.py --tiny              # seconds; what the smoke test runs
"""

from __future__ import annotations

import copy
import time

from common import (
    Figure, Report, base_parser, images, interleaved, model_pair, model_shape, port_config, print_header, set_threads,
    speed_figure, use_code_root,
)

# bf16 keeps 8 bits of mantissa: per-op relative error ~4e-3, accumulated over 12 blocks. The logits of the fp32 model
# are the reference; the bf16 model must stay within this fraction of their largest magnitude.
BF16_RELATIVE_TOLERANCE = 0.05


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__)
    parser.add_argument("--variant", default="B/16", help="model shape (Ti/16, S/16, B/16, L/16)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--no-bf16", dest="bf16", action="store_false", help="skip the bf16 figures")
    parser.add_argument("--compile", action="store_true", help="also measure torch.compile'd models (slow to build)")
    args = parser.parse_args(argv)
    code_root = use_code_root(args.code_root)
    repeats = args.repeats or (2 if args.tiny else 10)
    warmup = args.warmup if args.warmup is not None else (1 if args.tiny else 2)
    set_threads(args.threads)

    import torch

    report = Report(args, "inference")
    print_header(report, code_root)
    shape = model_shape(args, args.variant)
    tag = "tiny" if args.tiny else args.variant.replace("/", "").lower()
    config = port_config(shape)
    ours, peer = model_pair(config)
    pixels = images(config, args.batch)

    runs = {
        "ours_fp32": lambda: ours(pixel_values=pixels),
        "peer_fp32": lambda: peer(pixel_values=pixels),
    }
    if args.bf16:
        ours16 = copy.deepcopy(ours).to(torch.bfloat16)
        peer16 = copy.deepcopy(peer).to(torch.bfloat16)
        pixels16 = pixels.to(torch.bfloat16)
        runs["ours_bf16"] = lambda: ours16(pixel_values=pixels16)
        runs["peer_bf16"] = lambda: peer16(pixel_values=pixels16)

    with torch.inference_mode():
        reference = ours(pixel_values=pixels).logits
        stock = peer(pixel_values=pixels).logits
        report.note(f"fp32 logits ours vs transformers: max |diff| {float((reference - stock).abs().max()):.2e}")
        times = interleaved(runs, repeats, warmup)
        name = f"inference_fp32_{tag}_bs{args.batch}"
        report.add(speed_figure(name, times, "ours_fp32", "peer_fp32", args.batch, "img/s", ">= 1.0", aim=">= 1.15"))
        if args.bf16:
            bf16_figures(report, tag, args.batch, times, reference, ours16(pixel_values=pixels16).logits.float())
        if args.compile:
            models = {"fp32": (ours, pixels)}
            if args.bf16:
                models["bf16"] = (ours16, pixels16)
            compile_figures(report, args, tag, models, runs, repeats, warmup)
    report.write()
    return 0


def bf16_figures(report: Report, tag: str, batch: int, times, reference, logits16) -> None:
    """bf16 speed against our fp32 and transformers' bf16, and how far bf16 logits are from fp32's."""
    report.add(speed_figure(f"inference_bf16_{tag}_bs{batch}", times, "ours_bf16", "ours_fp32", batch, "img/s",
                            ">= 1.8", labels=("ours-bf16", "ours-fp32")))
    report.add(speed_figure(f"inference_bf16_vs_transformers_{tag}_bs{batch}", times, "ours_bf16", "peer_bf16",
                            batch, "img/s", "", labels=("ours-bf16", "transformers-bf16")))
    error = float((logits16 - reference).abs().max())
    scale = float(reference.abs().max())
    agree = int((logits16.argmax(-1) == reference.argmax(-1)).sum())
    report.add(Figure(f"inference_bf16_logits_error_{tag}", "max abs(bf16 - fp32)", error, "max abs(fp32)", scale, "",
                      error / scale, f"<= {BF16_RELATIVE_TOLERANCE}", note=f"top-1 agrees on {agree}/{batch} images"))


def compile_figures(report, args, tag, models, eager_runs, repeats, warmup) -> None:
    """torch.compile'd ours (fp32 and bf16) against eager ours; reported only, no target.

    Inductor's freezing is on: under inference_mode it folds the weights into the graph as constants and prepacks
    them for oneDNN (on this CPU it is what makes compiled bf16 faster than eager bf16).
    """
    import torch
    import torch._inductor.config as inductor_config

    inductor_config.freezing = True

    compiled = {}
    for key, (model, inputs) in models.items():  # the eager models of the figures above, compiled
        try:
            fn = torch.compile(model)
            start = time.perf_counter()
            fn(pixel_values=inputs)
            report.note(f"torch.compile ours {key}: first call (compilation) {time.perf_counter() - start:.1f} s")
        except Exception as error:  # a missing compiler toolchain must not hide the other figures
            report.note(f"torch.compile ours {key} failed: {type(error).__name__}: {str(error).splitlines()[0][:200]}")
            continue
        compiled[key] = (fn, inputs)
    for key, (fn, inputs) in compiled.items():
        runs = {"compiled": lambda fn=fn, inputs=inputs: fn(pixel_values=inputs), "eager": eager_runs[f"ours_{key}"]}
        if key == "bf16":
            runs["eager_fp32"] = eager_runs["ours_fp32"]
        times = interleaved(runs, repeats, warmup)
        report.add(
            speed_figure(
                f"inference_compiled_{key}_{tag}_bs{args.batch}", times, "compiled", "eager", args.batch, "img/s", "",
                labels=(f"ours-compiled-{key}", f"ours-eager-{key}"),
            )
        )
        if key == "bf16":
            report.add(
                speed_figure(
                    f"inference_compiled_bf16_vs_eager_fp32_{tag}_bs{args.batch}", times, "compiled", "eager_fp32",
                    args.batch, "img/s", "", labels=("ours-compiled-bf16", "ours-eager-fp32"),
                )
            )


if __name__ == "__main__":
    raise SystemExit(main())
