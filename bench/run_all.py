"""Run every benchmark, one fresh process each, and (re)write bench/RESULTS.md with the figures against their targets.

    python bench/run_all.py                  # the full configuration (about 10 minutes on 2 cores)
    python bench/run_all.py --tiny --output /tmp/RESULTS.md   # seconds; the smoke test's configuration
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import REPO_ROOT, fmt, machine_info

BENCH = Path(__file__).resolve().parent
GPU_NOT_LENT = "not run: no GPU was lent to this task (bench/gpu.py runs where CUDA is available)"


def scripts(args: argparse.Namespace) -> list[tuple[str, list[str]]]:
    tiny = ["--tiny"] if args.tiny else []
    tiny += ["--code-root", str(args.code_root)] if args.code_root else []
    work = ["--work-dir", str(args.work_dir)] if args.work_dir else []
    inference = ["--compile"] if args.compile and not args.tiny else []
    return [
        ("inference", ["inference.py", *tiny, *inference]),
        ("training", ["training.py", *tiny]),
        ("converting", ["converting.py", *tiny, *work]),
        ("loading", ["loading.py", *tiny, *work]),
        ("preprocessing", ["preprocessing.py", *tiny]),
        ("gpu", ["gpu.py", *tiny] + (["--device", "cpu"] if args.tiny else [])),
        ("startup", ["startup.py"] + (["--tiny"] if args.tiny else [])),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="tiny configurations (smoke test)")
    parser.add_argument("--output", type=Path, default=BENCH / "RESULTS.md")
    parser.add_argument("--work-dir", type=Path, default=None, help="synthetic checkpoints and converted repos")
    parser.add_argument("--no-compile", dest="compile", action="store_false", help="skip the torch.compile figures")
    parser.add_argument("--only", nargs="+", help="run only these benchmarks (inference training converting ...)")
    parser.add_argument("--code-root", type=Path, default=None,
                        help="measure another checkout's hf_vit_port/conversion (a proposed change) against the peers")
    args = parser.parse_args(argv)

    import torch

    started = time.time()
    command = "python bench/run_all.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        for name, script in scripts(args):
            if args.only and name not in args.only:
                continue
            if name == "gpu" and not args.tiny and not torch.cuda.is_available():
                print(f"# gpu: {GPU_NOT_LENT}", flush=True)
                results.append({"script": name, "figures": [], "info": [GPU_NOT_LENT], "seconds": 0.0})
                continue
            json_out = Path(scratch) / f"{name}.json"
            full = [sys.executable, str(BENCH / script[0]), *script[1:], "--json-out", str(json_out)]
            print(f"# running {' '.join(shlex.quote(part) for part in full[1:])}", flush=True)
            start = time.perf_counter()
            code = subprocess.call(full, cwd=REPO_ROOT)
            seconds = time.perf_counter() - start
            if code or not json_out.exists():
                results.append({"script": name, "figures": [], "info": [f"FAILED with exit code {code}"],
                                "seconds": seconds})
                continue
            result = json.loads(json_out.read_text())
            result["seconds"] = seconds
            result["command"] = "python bench/" + " ".join(shlex.quote(part) for part in script)
            results.append(result)
    info = machine_info()
    kept = kept_sections(args.output)
    args.output.write_text(render(command, info, results, time.time() - started, args.tiny) + kept)
    print(f"# wrote {args.output} ({(time.time() - started) / 60:.1f} min)")
    failed = [r["script"] for r in results if any(line.startswith("FAILED") for line in r["info"])]
    return 1 if failed else 0


# Sections below this line are measured by scripts run_all does not run (hours-long ones): it keeps them as they are.
KEEP_MARKER = "<!-- run_all.py keeps everything below this line -->"


def kept_sections(path: Path) -> str:
    text = path.read_text() if path.exists() else ""
    return "\n" + text[text.index(KEEP_MARKER):] if KEEP_MARKER in text else ""


def render(command: str, info: dict, results: list[dict], seconds: float, tiny: bool) -> str:
    lines = [
        "# Benchmark results",
        "",
        "Written by `bench/run_all.py`; see `bench/README.md` for what each figure measures and how.",
        "" if not tiny else "**Tiny smoke configuration: these numbers mean nothing.**",
        "",
        f"- Command: `{command.strip()}` (from the repository root, {seconds / 60:.1f} min)",
        f"- Date: {info['date']}",
        f"- Machine: {info['cpu']}, {info['cores']} cores ({info['cpu_capability']}), {info['memory_gib']} GiB RAM, "
        f"{info['platform']}; load average at the end {tuple(round(x, 2) for x in info['load_average'] or ())}",
        f"- Versions: Python {info['python']}, torch {info['torch']} ({info['torch_threads']} threads), transformers "
        f"{info['transformers']}, numpy {info['numpy']}, safetensors {info['safetensors']}",
        *([f"- GPU: {GPU_NOT_LENT}"] if any(GPU_NOT_LENT in text for r in results for text in r["info"]) else []),
        "",
        "Ratios are ours / peer for speeds (higher is better) and for times and memory (lower is better), each the "
        "median over interleaved rounds of the per-round ratio; speeds and times are the medians of each side.",
        "",
        "| Figure | Ours | Peer | Ratio | Target | Met |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for result in results:
        for figure in result["figures"]:
            unit = f" {figure['unit']}" if figure["unit"] else ""
            met = {True: "yes", False: "**no**", None: "-"}[figure["met"]]
            target = figure["target"] + (f" (aim {figure['aim']})" if figure.get("aim") else "") if figure["target"] else "-"
            note = f" ({figure['note']})" if figure.get("note") else ""
            cells = [
                f"`{figure['name']}`{note}", f"{figure['ours_label']} {fmt(figure['ours'])}{unit}",
                f"{figure['peer_label']} {fmt(figure['peer'])}{unit}", f"{figure['ratio']:.2f}", target, met,
            ]
            lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    lines += ["", "## Per benchmark", ""]
    for result in results:
        lines.append(f"### {result['script']}" + (f" ({result['seconds']:.0f} s)" if result.get("seconds") else ""))
        lines.append("")
        if result.get("command"):
            lines.append(f"`{result['command']}`")
            lines.append("")
        lines += [f"- {text}" for text in result["info"]]
        if result["figures"]:
            lines += ["", "```"] + [figure["line"] for figure in result["figures"]] + ["```"]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
