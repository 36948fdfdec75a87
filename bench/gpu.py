"""On a GPU: bf16 inference throughput at batch 256 and mixed-precision training throughput, ours vs transformers' ViT
(same weights, SDPA), with the achieved TFLOP/s against the card's dense bf16 peak. Records the device and versions.

    python bench/gpu.py                       # ViT-B/16, 224 px; needs CUDA
    python bench/gpu.py --compile             # also torch.compile'd (reported, no target)
    python bench/gpu.py --tiny --device cpu   # seconds, anywhere; what the smoke test runs (no GPU figures)

Without a CUDA device (and without --device cpu) it prints one line saying so and exits 0.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

from common import Figure, Report, base_parser, images, machine_info, model_pair, model_shape, port_config
from common import paired_ratio, set_threads, use_code_root

# Dense bf16 tensor-core peaks (TFLOP/s, no sparsity) from the vendors' data sheets, matched on the device name.
BF16_PEAK_TFLOPS = (
    ("H200", 989.0),
    ("H100 SXM", 989.0),
    ("H100 NVL", 835.0),
    ("H100 PCIe", 756.0),
    ("H100", 989.0),  # an unqualified "NVIDIA H100 80GB HBM3" is the SXM part
    ("GH200", 989.0),
    ("B200", 2250.0),
    ("A100", 312.0),
    ("L40S", 362.0),
    ("L4", 121.0),
    ("A10G", 70.0),
    ("A10", 125.0),
    ("RTX 4090", 165.0),
)


def peak_tflops(device_name: str) -> float | None:
    for key, value in BF16_PEAK_TFLOPS:
        if key in device_name:
            return value
    return None


def forward_flops(config, batch: int) -> float:
    """Multiply-adds x 2 of one forward pass (matmuls and convolution; elementwise work is not counted)."""
    size = config.image_size if isinstance(config.image_size, int) else config.image_size[0]
    patch = config.patch_size if isinstance(config.patch_size, int) else config.patch_size[0]
    patches = (size // patch) ** 2
    tokens = patches + 1
    hidden, mlp, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    per_layer = 2 * tokens * hidden * 3 * hidden + 2 * 2 * tokens * tokens * hidden + 2 * tokens * hidden * hidden
    per_layer += 2 * 2 * tokens * hidden * mlp
    embed = 2 * patches * config.num_channels * patch * patch * hidden
    head = 2 * hidden * max(config.num_labels, 0)
    return batch * (layers * per_layer + embed + head)


def timed(fn, device, repeats: int, warmup: int, names) -> dict[str, list[float]]:
    import torch

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(warmup):
        for name in names:
            fn[name]()
    sync()
    times = {name: [] for name in names}
    for round_index in range(repeats):
        for name in names if round_index % 2 == 0 else names[::-1]:
            sync()
            start = time.perf_counter()
            fn[name]()
            sync()
            times[name].append(time.perf_counter() - start)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__)
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu (for the smoke test only)")
    parser.add_argument("--variant", default="B/16")
    parser.add_argument("--batch", type=int, default=256, help="inference batch")
    parser.add_argument("--train-batch", type=int, default=128, help="training batch")
    parser.add_argument("--compile", action="store_true", help="also measure torch.compile'd models")
    args = parser.parse_args(argv)
    use_code_root(args.code_root)
    set_threads(args.threads)

    import torch

    report = Report(args, "gpu")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        report.note("gpu: no CUDA device on this machine; nothing measured")
        report.write()
        return 0
    name = describe_device(report, device)
    run = Run(
        report=report, device=device, peak=peak_tflops(name) if device.type == "cuda" else None,
        tag="tiny" if args.tiny else args.variant.replace("/", "").lower(),
        repeats=args.repeats or (2 if args.tiny else 20),
        warmup=args.warmup if args.warmup is not None else (1 if args.tiny else 5),
        config=port_config(model_shape(args, args.variant)),
    )
    ours, peer = model_pair(run.config)
    measure_inference(run, ours, peer, 4 if args.tiny else args.batch, args.compile)
    measure_training(run, ours, peer, 4 if args.tiny else args.train_batch)
    if device.type == "cuda":
        report.note(f"peak GPU memory {torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB")
    report.write()
    return 0


@dataclass
class Run:
    """What every measurement of one run shares."""

    report: Report
    device: object
    peak: float | None
    tag: str
    repeats: int
    warmup: int
    config: object


def describe_device(report: Report, device) -> str:
    """Note the device and software in the report; returns the device name the peak table is keyed by."""
    import torch

    info = machine_info()
    if device.type == "cuda":
        properties = torch.cuda.get_device_properties(device)
        name = properties.name
        report.note(
            f"device {name} (capability {properties.major}.{properties.minor}, "
            f"{properties.total_memory / 2**30:.0f} GiB, {properties.multi_processor_count} SMs), CUDA "
            f"{torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}, driver-visible devices "
            f"{torch.cuda.device_count()}"
        )
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    else:
        name = f"CPU ({info['cpu']})"
        report.note(f"device {name}: smoke run only, the figures mean nothing")
    report.note(f"torch {info['torch']}, transformers {info['transformers']}, python {info['python']}")
    return name


def measure_inference(run: Run, ours, peer, batch: int, compile_too: bool) -> None:
    """bf16 inference, ours vs the peer (and both compiled with --compile)."""
    import torch

    device, config, tag = run.device, run.config, run.tag
    ours16 = ours.to(device=device, dtype=torch.bfloat16).eval()
    peer16 = peer.to(device=device, dtype=torch.bfloat16).eval()
    pixels = images(config, batch).to(device=device, dtype=torch.bfloat16)
    runs = {"ours": lambda: ours16(pixel_values=pixels), "peer": lambda: peer16(pixel_values=pixels)}
    if compile_too:
        compiled_ours, compiled_peer = torch.compile(ours16), torch.compile(peer16)
        runs["ours_compiled"] = lambda: compiled_ours(pixel_values=pixels)
        runs["peer_compiled"] = lambda: compiled_peer(pixel_values=pixels)
    with torch.inference_mode():
        times = timed(runs, device, run.repeats, run.warmup, list(runs))
    flops = forward_flops(config, batch)
    add_pair(run.report, f"gpu_inference_bf16_{tag}_bs{batch}", times, "ours", "peer", batch, "img/s", ">= 1.0")
    add_tflops(run.report, f"gpu_inference_bf16_tflops_{tag}_bs{batch}", times["ours"], flops, run.peak)
    if compile_too:
        add_pair(run.report, f"gpu_inference_bf16_compiled_{tag}_bs{batch}", times, "ours_compiled", "peer_compiled",
                 batch, "img/s", "")
        add_tflops(run.report, f"gpu_inference_bf16_compiled_tflops_{tag}_bs{batch}", times["ours_compiled"], flops,
                   run.peak)
    del ours16, peer16, pixels, runs
    if device.type == "cuda":
        torch.cuda.empty_cache()


def measure_training(run: Run, ours, peer, batch: int) -> None:
    """Training steps with fp32 master weights, bf16 autocast and fused AdamW where available."""
    import torch

    device, config = run.device, run.config
    pixels = images(config, batch).to(device)
    labels = (torch.arange(batch) % config.num_labels).to(device)
    steps = {}
    for key, model in (("ours", ours), ("peer", peer)):
        model = model.to(device=device, dtype=torch.float32).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")

        def step(model=model, optimizer=optimizer):
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=torch.bfloat16):
                loss = model(pixel_values=pixels, labels=labels).loss
            loss.backward()
            optimizer.step()

        steps[key] = step
    times = timed(steps, device, max(run.repeats // 2, 2), max(run.warmup // 2, 1), ["ours", "peer"])
    add_pair(run.report, f"gpu_train_step_bf16_autocast_{run.tag}_bs{batch}", times, "ours", "peer", batch,
             "img/s", ">= 1.0")
    add_tflops(run.report, f"gpu_train_tflops_{run.tag}_bs{batch}", times["ours"], 3 * forward_flops(config, batch),
               run.peak)


def add_pair(report, name, times, ours, peer, items, unit, target) -> None:
    report.add(
        Figure(
            name, "ours", items / statistics.median(times[ours]), "transformers", items / statistics.median(times[peer]),
            unit, paired_ratio(times[peer], times[ours]), target,
        )
    )


def add_tflops(report, name, seconds, flops, peak) -> None:
    achieved = flops / statistics.median(seconds) / 1e12
    if peak:
        report.add(Figure(name, "achieved", achieved, "bf16 peak", peak, "TFLOP/s", achieved / peak, ""))
    else:
        report.note(f"{name}: achieved {achieved:.3g} TFLOP/s (no peak known for this device)")


if __name__ == "__main__":
    raise SystemExit(main())
