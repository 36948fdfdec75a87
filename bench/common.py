"""Shared pieces of the benchmarks: models with identical weights, interleaved timing, result lines, machine facts.

Every figure is a ratio against a peer measured in the same process (or, for whole-process figures, in the same
run), so a slow or busy machine moves both sides together. Timings alternate ours/peer in ABBA order after a warm-up;
the ratio printed is the median of the per-round ratios (robust to load that drifts between rounds), the speeds
printed are the medians of each side.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # `python bench/x.py` from anywhere
    sys.path.insert(0, str(REPO_ROOT))

# "tiny" keeps the smoke test fast; every other variant is an official shape from hf_vit_port's presets table.
TINY_MODEL = dict(
    image_size=32, patch_size=8, hidden_size=64, intermediate_size=128, num_attention_heads=4, num_hidden_layers=2
)


@dataclass
class Figure:
    """One benchmark figure: ours against a peer, and the target it is held to."""

    name: str
    ours_label: str
    ours: float
    peer_label: str
    peer: float
    unit: str
    ratio: float
    target: str  # e.g. ">= 1.0" or "<= 1.5"; "" for figures reported without a target
    aim: str = ""  # the stretch goal, when the brief names one
    note: str = ""
    samples: dict[str, list[float]] = field(default_factory=dict)

    @property
    def met(self) -> bool | None:
        return target_met(self.ratio, self.target)

    def line(self) -> str:
        target = f" (target {self.target}" + (f", aim {self.aim}" if self.aim else "") + ")" if self.target else ""
        note = f"; {self.note}" if self.note else ""
        unit = f" {self.unit}" if self.unit else ""
        return (
            f"{self.name}: {self.ours_label} {fmt(self.ours)}{unit}, {self.peer_label} {fmt(self.peer)}{unit}, "
            f"ratio {self.ratio:.2f}{target}{note}"
        )

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "met": self.met, "line": self.line()}


def target_met(value: float, target: str) -> bool | None:
    if not target:
        return None
    op, bound = target.split()
    return value >= float(bound) if op == ">=" else value <= float(bound)


def fmt(value: float) -> str:
    if value == 0 or not math.isfinite(value):
        return str(value)
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 0.01:
        return f"{value:.2f}"
    return f"{value:.2e}"


class Report:
    """Collects a script's figures, prints each line as it comes, and writes them as JSON for `run_all.py`."""

    def __init__(self, args: argparse.Namespace, script: str):
        self.args = args
        self.script = script
        self.figures: list[Figure] = []
        self.info: list[str] = []

    def add(self, figure: Figure) -> Figure:
        self.figures.append(figure)
        print(figure.line(), flush=True)
        return figure

    def note(self, text: str) -> None:
        """A line reported beside the figures (tolerances, skipped parts, environment facts)."""
        self.info.append(text)
        print(f"# {text}", flush=True)

    def write(self) -> None:
        if getattr(self.args, "json_out", None):
            Path(self.args.json_out).write_text(
                json.dumps(
                    {"script": self.script, "figures": [f.as_dict() for f in self.figures], "info": self.info},
                    indent=2,
                )
            )


def base_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--tiny", action="store_true", help="a tiny configuration that runs in seconds (smoke test)")
    parser.add_argument("--repeats", type=int, default=None, help="timed rounds per side (medians are reported)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed rounds per side first")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    parser.add_argument("--json-out", help="also write the figures as JSON here (used by run_all.py)")
    parser.add_argument("--code-root", default=None,
                        help="measure the hf_vit_port plugin of this checkout instead (to try a change); the "
                             "tooling (conversion) maps its folders at install time, so measure another checkout's "
                             "conversion from a venv where that checkout is installed")
    return parser


def use_code_root(code_root: str | Path | None) -> Path:
    """Put another checkout's packages first on sys.path (before anything imports them); returns the root in use."""
    if code_root is None:
        return REPO_ROOT
    root = Path(code_root).resolve()
    sys.path.insert(0, str(root))
    return root


def set_threads(threads: int | None) -> int:
    import torch

    quiet()
    threads = threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    return threads


def quiet() -> None:
    """No progress bars or advisory warnings between the result lines."""
    import warnings

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)


def interleaved(
    runs: dict[str, Callable[[], Any]], repeats: int, warmup: int = 1
) -> dict[str, list[float]]:
    """Seconds per call of each function, alternating the order every round (ABBA...) after `warmup` calls each."""
    names = list(runs)
    for _ in range(warmup):
        for name in names:
            runs[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(repeats):
        order = names if round_index % 2 == 0 else names[::-1]
        for name in order:
            start = time.perf_counter()
            runs[name]()
            times[name].append(time.perf_counter() - start)
    return times


def paired_ratio(numerator: list[float], denominator: list[float]) -> float:
    """Median over rounds of numerator[i] / denominator[i] (both measured in the same round)."""
    return statistics.median(a / b for a, b in zip(numerator, denominator, strict=True))


def speed_figure(
    name: str,
    times: dict[str, list[float]],
    ours: str,
    peer: str,
    items: int,
    unit: str,
    target: str,
    *,
    labels: tuple[str, str] = ("ours", "transformers"),
    aim: str = "",
    note: str = "",
) -> Figure:
    """A throughput figure (items per second); the ratio is ours/peer, higher is better."""
    return Figure(
        name=name,
        ours_label=labels[0],
        ours=items / statistics.median(times[ours]),
        peer_label=labels[1],
        peer=items / statistics.median(times[peer]),
        unit=unit,
        ratio=paired_ratio(times[peer], times[ours]),
        target=target,
        aim=aim,
        note=note,
        samples={labels[0]: times[ours], labels[1]: times[peer]},
    )


def machine_info() -> dict[str, Any]:
    import numpy
    import safetensors
    import torch
    import transformers

    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_gib = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "memory_gib": memory_gib,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "numpy": numpy.__version__,
        "safetensors": safetensors.__version__,
        "platform": platform.platform(),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "cuda": torch.cuda.is_available(),
    }


# ----------------------------------------------------------------------------------------------------------------
# Models with the same weights


def port_config(shape: dict[str, Any], **overrides: Any):
    from hf_vit_port import ViTPortConfig

    kwargs = dict(image_size=224, patch_size=16, num_labels=1000, representation_size=None)
    kwargs.update(shape)
    kwargs.update(overrides)
    return ViTPortConfig(**kwargs)


def model_shape(args: argparse.Namespace, variant: str) -> dict[str, Any]:
    """The encoder shape of `variant` ("B/16") at 224 px, or the tiny one under --tiny."""
    if args.tiny:
        return dict(TINY_MODEL)
    from hf_vit_port.presets import preset_kwargs

    preset = preset_kwargs(variant)
    shape_keys = ("patch_size", "hidden_size", "intermediate_size", "num_attention_heads", "num_hidden_layers")
    return dict(image_size=224, **{key: preset[key] for key in shape_keys})


def randomise(model, seed: int = 0) -> None:
    """Well-scaled random weights everywhere (the original zero-initialises the head, which makes logits trivial)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if parameter.ndim >= 2:
                fan_in = parameter[0].numel()
                parameter.normal_(0.0, fan_in**-0.5, generator=generator)
            elif "norm" in name and name.endswith("weight"):
                parameter.normal_(1.0, 0.1, generator=generator)
            else:
                parameter.normal_(0.0, 0.1, generator=generator)
        if hasattr(model, "vit"):
            embeddings = model.vit.embeddings
            embeddings.position_embeddings.normal_(0.0, 0.05, generator=generator)
            if embeddings.cls_token is not None:
                embeddings.cls_token.normal_(0.0, 0.05, generator=generator)


def model_pair(config, *, attn_implementation: str = "sdpa", seed: int = 0):
    """(ours, transformers' ViTForImageClassification) holding exactly the same weights, both in eval mode."""
    import torch
    from transformers import ViTForImageClassification

    from hf_vit_port import ViTPortForImageClassification
    from hf_vit_port.stock import stock_config, to_stock_state_dict

    config._attn_implementation = attn_implementation
    ours = ViTPortForImageClassification(config)
    randomise(ours, seed)
    peer_config = stock_config(config, for_classification=True)
    peer_config._attn_implementation = attn_implementation
    peer = ViTForImageClassification(peer_config)
    missing, unexpected = peer.load_state_dict(to_stock_state_dict(ours.state_dict()), strict=True)
    assert not missing and not unexpected
    assert ours.config._attn_implementation == peer.config._attn_implementation == attn_implementation
    return ours.eval(), peer.eval()


def images(config, batch: int, seed: int = 0):
    import torch

    size = config.image_size if isinstance(config.image_size, int) else config.image_size[0]
    return torch.empty(batch, config.num_channels, size, size).uniform_(-1, 1, generator=torch.Generator().manual_seed(seed))


def print_header(report: Report, code_root: Path | None = None) -> None:
    """The machine and versions measured on (and the other checkout's plugin, with --code-root)."""
    info = machine_info()
    report.note(
        f"{info['cpu']}, {info['cores']} cores, torch {info['torch']} ({info['torch_threads']} threads, "
        f"{info['cpu_capability']}), transformers {info['transformers']}, load average {info['load_average']}"
    )
    if code_root is not None and Path(code_root).resolve() != REPO_ROOT:
        report.note(f"measuring the hf_vit_port package of {code_root}")


# ----------------------------------------------------------------------------------------------------------------
# Whole processes


def run_measured(command: list[str], *, env: dict[str, str] | None = None, cwd: str | Path | None = None
                 ) -> tuple[str, int, int]:
    """Run `command` as a fresh child; return (its stdout and stderr, exit code, peak RSS in KiB of that child alone).

    The peak comes from `os.wait4` on the child's pid: the rusage of exactly that process (and any descendants it
    waited for), unaffected by other children of this process.
    """
    import subprocess

    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=cwd)
    stdout = process.stdout.read()
    process.stdout.close()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return stdout, process.returncode, usage.ru_maxrss
