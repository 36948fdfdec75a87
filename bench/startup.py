"""Start-up: what `import hf_vit_port` and the commands cost before they do anything, against importing torch and
transformers in the same run.

    python bench/startup.py               # 5 interleaved rounds
    python bench/startup.py --tiny        # one round; what the smoke test runs

Import time is read the way `python -X importtime` reports it (the sum of the top-level imports' cumulative
microseconds), so interpreter start-up and exit are left out; the commands are timed from spawn to exit. The peer is
a fresh `python -c "import torch, transformers"`, which is what any program using the model pays anyway.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys

from common import REPO_ROOT, Figure, Report, base_parser, interleaved, paired_ratio, print_header

PEER = "import torch, transformers"
CLI = [sys.executable, "-m", "hf_vit_port_tools.cli"]
# command name -> argv after the CLI; each must exit quickly without loading a model
COMMANDS = {
    "help": ["--help"],
    "list": ["list"],
    "predict_missing_file": ["predict", "/nonexistent/photo.jpg", "--model", "/nonexistent/model"],
}


def import_microseconds(statement: str) -> float:
    """Seconds of top-level imports in a fresh interpreter, as `-X importtime` counts them."""
    result = subprocess.run([sys.executable, "-X", "importtime", "-c", statement], capture_output=True, text=True,
                            env=child_env(), cwd=REPO_ROOT, check=True)
    total = 0
    for line in result.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            _, cumulative, name = line.split("|")
            if not name[1:].startswith(" ") and cumulative.strip().isdigit():  # nested imports are indented
                total += int(cumulative)
    return total / 1e6


def child_env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}


def run_quietly(argv: list[str]) -> None:
    subprocess.run(argv, capture_output=True, env=child_env(), cwd=REPO_ROOT)


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__)
    args = parser.parse_args(argv)
    if args.code_root:
        parser.error("--code-root cannot swap what a fresh process imports: run this script from a venv where the "
                     "other checkout is installed (pip install -e DIR)")
    report = Report(args, "startup")
    print_header(report)
    repeats = args.repeats or (1 if args.tiny else 5)

    imports: dict[str, list[float]] = {"ours": [], "peer": []}
    interleaved({"ours": lambda: imports["ours"].append(import_microseconds("import hf_vit_port")),
                 "peer": lambda: imports["peer"].append(import_microseconds(PEER))}, repeats, warmup=1)
    report.add(Figure("import_hf_vit_port", "import hf_vit_port", statistics.median(imports["ours"]),
                      "import torch, transformers", statistics.median(imports["peer"]), "s",
                      paired_ratio(imports["ours"], imports["peer"]), "<= 1.1", samples=imports))

    runs = {name: (lambda a=arguments: run_quietly([*CLI, *a])) for name, arguments in COMMANDS.items()}
    runs["peer"] = lambda: run_quietly([sys.executable, "-c", PEER])
    times = interleaved(runs, repeats, warmup=0)
    for name in COMMANDS:
        report.add(Figure(f"command_{name}", f"hf-vit-port {' '.join(COMMANDS[name])}", statistics.median(times[name]),
                          "python -c 'import torch, transformers'", statistics.median(times["peer"]), "s",
                          paired_ratio(times[name], times["peer"]), "",
                          note="whole process, spawn to exit", samples={name: times[name], "peer": times["peer"]}))
    report.write()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
