"""The `hf-vit-port` command: one parser tree, its flags made from the option dataclasses, one dispatch.

Each subcommand names the option dataclasses it takes and the function that runs it ("module:function"). That
module, and with it torch and transformers, is imported only once the arguments have parsed, so `--help`, `list`
and argument errors start in a fraction of a second. Failures print one `error: ...` line and exit 2 (`--debug`
shows the traceback).
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import importlib
import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import options as o
from .flags import add_flags, build
from .output import after_import, quiet_output


@dataclass(frozen=True)
class Command:
    help: str
    options: tuple[type, ...]
    run: str  # "module:function", called with one instance of each options class, returning the exit code
    defaults: Mapping[str, Any] = field(default_factory=dict)  # this command's defaults, by field name
    returns_memory: bool = False  # frees whole copies of the weights between steps (see _return_freed_memory...)
    check: str = ""  # "module:function" checking the inputs before `run`'s module (and torch) is imported


_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number
_CONVERSION = "hf_vit_port_tools.cli.conversion"
_TRAINING = "hf_vit_port_tools.cli.training"
_INFERENCE = "hf_vit_port_tools.cli.inference"
_CHECKS = "hf_vit_port_tools.cli.checks"

COMMANDS: dict[str, Command] = {
    "convert": Command("convert one checkpoint into a repo directory",
                       (o.ConvertOptions, o.OutputOptions, o.DownloadOptions, o.PushOptions), f"{_CONVERSION}:convert",
                       returns_memory=True),
    "push": Command("push a converted repo directory to the Hub in one commit", (o.PushTarget, o.PushOptions),
                    f"{_CONVERSION}:push"),
    "batch": Command("convert and push several official checkpoints to one organisation",
                     (o.BatchOptions, o.OutputOptions, o.DownloadOptions, o.PushOptions), f"{_CONVERSION}:batch",
                     returns_memory=True),
    "list": Command("list the official checkpoints this tool knows", (o.ListOptions,),
                    "hf_vit_port_tools.cli.listing:list_checkpoints"),
    "demo": Command("offline: write an official-layout checkpoint, convert it with verification, classify an image",
                    (o.DemoOptions,), f"{_CONVERSION}:demo"),
    "synthetic": Command("write a checkpoint of random weights in Google's official .npz layout (offline)",
                         (o.SyntheticOptions,), f"{_CONVERSION}:synthetic"),
    "finetune": Command("fine-tune a checkpoint (repo, Hub id or .npz) on an image-classification dataset",
                        (o.FinetuneOptions, o.DataOptions, o.TrainingOptions), f"{_TRAINING}:finetune"),
    "train-from-scratch": Command(
        "train a small ViT from scratch with the Keras CIFAR-100 example's recipe (on any image dataset)",
        (o.ScratchOptions, o.DataOptions, o.TrainingOptions), f"{_TRAINING}:train_from_scratch",
        {**o.SCRATCH_DATA_DEFAULTS, **o.SCRATCH_TRAINING_DEFAULTS},
    ),
    "evaluate": Command("evaluate a classifier on a dataset split: accuracy, top-k, per-class accuracy, confusion",
                        (o.EvaluateOptions, o.DatasetOptions, o.LabelMapOptions), f"{_INFERENCE}:evaluate",
                        check=f"{_CHECKS}:evaluate"),
    "predict": Command("classify images (files, folders, URLs when online) and print the top labels",
                       (o.PredictOptions,), f"{_INFERENCE}:predict", check=f"{_CHECKS}:predict"),
    "embed": Command("write every image's features (the pre-logits vector) to a parquet file; resumable, and "
                     "data-parallel under torchrun / accelerate launch", (o.EmbedOptions,),
                     "hf_vit_port_tools.cli.embedding:embed", check=f"{_CHECKS}:embed"),
    "plot-patches": Command("draw an image cut into its patches, as the Keras ViT example does", (o.PatchesOptions,),
                            f"{_INFERENCE}:plot_patches", check=f"{_CHECKS}:plot_patches"),
    "plot-attention": Command("overlay the attention rollout of a model on an image (a head is not needed)",
                              (o.AttentionOptions,), f"{_INFERENCE}:plot_attention", check=f"{_CHECKS}:plot_attention"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hf-vit-port", description=__doc__.split("\n\n")[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="show the libraries' logs, progress bars and load reports, and full loading summaries")
    subcommands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, command in COMMANDS.items():
        subparser = subcommands.add_parser(name, help=command.help, description=command.help)
        subparser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        subparser.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        for options in command.options:
            add_flags(subparser, options, command.defaults)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = COMMANDS[args.command]
    values = [build(options, args, command.defaults) for options in command.options]
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    if command.returns_memory:
        _return_freed_memory_to_the_system()
    try:
        with quiet_output(args.verbose):
            if command.check:
                _function(command.check)(*values)
            runner = _runner(command.run)
            after_import(args.verbose)
            return runner(*values)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`hf-vit-port list | head`): nothing left to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as error:  # one clear line, not a traceback, unless asked
        if args.debug:
            raise
        print(f"error: {error}", file=sys.stderr)
        return 2


def _return_freed_memory_to_the_system() -> None:
    """glibc serves large blocks from its heap once it has seen them freed (its mmap threshold adapts upwards), and
    keeps freed heap pages resident: a conversion that frees one copy of the weights before loading the next would
    hold both. A fixed threshold of 1 MiB makes every tensor-sized block its own mapping, returned when freed. This
    changes the whole process's allocator (a training loop would pay a page fault per activation), so it is decided
    here, at the entry point, for the commands that convert."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, 1 << 20)
    except (OSError, AttributeError):  # not glibc: nothing to tune
        pass


def _function(path: str) -> Callable[..., Any]:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def _runner(path: str) -> Callable[..., int]:
    """Import the function that runs a command. torch and transformers create millions of long-lived objects on
    import, which the cyclic collector would scan over and over: import with collection off, then freeze them out
    of every later collection (a process-wide choice, so it is made here, at the entry point)."""
    module, _, name = path.partition(":")
    enabled = gc.isenabled()
    gc.disable()
    try:
        function = getattr(importlib.import_module(module), name)
    finally:
        gc.freeze()
        if enabled:
            gc.enable()
    return function
