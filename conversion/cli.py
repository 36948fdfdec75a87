"""`python -m conversion`: official ViT checkpoints -> verified Hub repos (also reachable as `hf-vit-port convert`)."""

import argparse
import gc
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .convert import FORMATS, ConversionResult, convert
from .registry import CHECKPOINTS, get_checkpoint

logger = logging.getLogger("conversion")


def parse_setting(text: str) -> tuple[str, Any]:
    """`KEY=VALUE` with VALUE read as JSON when it parses (numbers, null, lists), else as a string."""
    key, separator, value = text.partition("=")
    if not separator or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def add_convert_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("name", nargs="?", help="an official checkpoint, e.g. imagenet21k/ViT-B_16 (see `list`)")
    source.add_argument("--npz", type=Path, help="convert this .npz file instead of a named checkpoint")
    parser.add_argument("--out", type=Path, required=True, help="directory to write the repo to")
    parser.add_argument("--format", choices=FORMATS, default="vit_port",
                        help="vit_port (this plugin, pre-logits kept) or stock (plain transformers ViT)")
    parser.add_argument("--no-verify", dest="verify", action="store_false",
                        help="skip the comparison with the NumPy reference (and after reloading)")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    parser.add_argument("--image-size", type=int, help="resolution of the converted model (resamples positions)")
    parser.add_argument("--resample", choices=("official", "bilinear", "bicubic"), default="official",
                        help="position-embedding resize when the image or patch size changes")
    parser.add_argument("--keep-zero-head", action="store_true",
                        help="keep the all-zero head of the 2020 imagenet21k files instead of dropping it")
    parser.add_argument("--set", dest="settings", type=parse_setting, action="append", default=[],
                        metavar="KEY=VALUE", help="any ViTPortConfig field, e.g. --set num_labels=0")
    parser.add_argument("--base-url", help="where named checkpoints are downloaded from (or $HF_VIT_PORT_BASE_URL)")
    parser.add_argument("--cache-dir", type=Path, help="download cache (default $HF_VIT_PORT_CACHE or ~/.cache)")
    parser.add_argument("--push-to-hub", metavar="ORG/NAME", help="push the converted repo to the Hub")
    add_push_options(parser)


def add_push_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--private", action="store_true", help="create the Hub repo as private")
    parser.add_argument("--revision", help="branch to push to (created if missing; default main)")
    parser.add_argument("--create-pr", action="store_true", help="open a pull request instead of committing")
    parser.add_argument("--commit-message", help="message of the commit (a descriptive one by default)")


def run_convert(args: argparse.Namespace) -> int:
    checkpoint = None
    npz_path = args.npz
    if args.name:
        from .download import download_checkpoint

        checkpoint = get_checkpoint(args.name)
        npz_path = download_checkpoint(checkpoint, base_url=args.base_url, cache_dir=args.cache_dir)
    overrides = dict(args.settings)
    if args.image_size:
        overrides["image_size"] = args.image_size
    result = convert(
        npz_path,
        args.out,
        fmt=args.format,
        verify_outputs=args.verify,
        overwrite=args.overwrite,
        checkpoint=checkpoint,
        repo_id=getattr(args, "push_to_hub", None),
        resample=args.resample,
        keep_zero_head=args.keep_zero_head,
        **overrides,
    )
    report(result)
    if args.push_to_hub:
        _push(result.output_dir, args.push_to_hub, args, default_message=commit_message(result))
    return 0


def commit_message(result: ConversionResult) -> str:
    verified = (
        f"verified, max |diff| {max(result.verification.max_abs_diff_features, result.verification.max_abs_diff_logits or 0):.1e}"
        if result.verification
        else "not verified"
    )
    return f"Convert {result.source['file']} (sha256 {result.source['sha256'][:12]}) to {result.format} safetensors, {verified}"


def _push(directory: Path, repo_id: str, args: argparse.Namespace, default_message: str | None = None) -> None:
    from .push import push_repo

    result = push_repo(
        directory,
        repo_id,
        private=args.private,
        revision=args.revision,
        create_pr=args.create_pr,
        commit_message=args.commit_message or default_message,
    )
    if result.pr_url:
        print(f"Opened pull request {result.pr_url}")
    elif result.created_commit:
        print(f"Pushed {directory} to {repo_id} in one commit: {result.commit_url}")
    else:
        print(f"{repo_id} already holds these files; no new commit was made ({result.commit_oid[:12]})")


def run_push(args: argparse.Namespace) -> int:
    _push(args.directory, args.repo_id, args)
    return 0


def run_batch(args: argparse.Namespace) -> int:
    """Convert and push several official checkpoints under one organisation, named by the registry's scheme."""
    from .download import download_checkpoint

    names = list(CHECKPOINTS) if args.all else args.names
    if not names:
        raise ValueError("name the checkpoints to convert, or pass --all")
    checkpoints = [get_checkpoint(name) for name in names]  # fail on a typo before any work
    failures = []
    for checkpoint in checkpoints:
        repo_id = f"{args.org}/{checkpoint.hub_name}"
        try:
            path = download_checkpoint(checkpoint, base_url=args.base_url, cache_dir=args.cache_dir)
            result = convert(path, args.work_dir / checkpoint.hub_name, fmt=args.format, verify_outputs=args.verify,
                             overwrite=True, checkpoint=checkpoint, repo_id=repo_id)
            report(result)
            _push(result.output_dir, repo_id, args, default_message=commit_message(result))
        except Exception as error:  # one bad checkpoint does not stop the batch
            if args.debug:
                raise
            print(f"error: {checkpoint.name}: {error}", file=sys.stderr)
            failures.append(checkpoint.name)
    print(f"{len(checkpoints) - len(failures)} of {len(checkpoints)} checkpoints converted and pushed")
    return 1 if failures else 0


def report(result: ConversionResult) -> None:
    summary = result.summary
    print(f"Converted {result.source['file']} (sha256 {result.source['sha256'][:16]}...) -> {result.output_dir}")
    print(f"  format {result.format}; parameters: {summary.count('loaded')} loaded, {summary.count('resampled')} "
          f"resampled, {summary.count('initialised fresh')} initialised fresh, "
          f"{summary.count('unused in the file')} arrays unused")
    for note in result.notes:
        print(f"  note: {note}")
    for verification, stage in ((result.verification, "before writing"),
                                (result.reload_verification, "after reloading")):
        if verification is not None:
            print(f"  verified {stage}: max |diff| features {verification.max_abs_diff_features:.2e}, logits "
                  f"{_number(verification.max_abs_diff_logits)} (tolerance {verification.tolerance:g})")
    if result.verification is None:
        print("  not verified (--no-verify)")


def _number(value: float | None) -> str:
    return "n/a (no head)" if value is None else f"{value:.2e}"


def run_list(args: argparse.Namespace) -> int:
    for name, checkpoint in CHECKPOINTS.items():
        top1 = f"{checkpoint.top1}%" if checkpoint.top1 is not None else "-"
        print(f"{name:<110} {checkpoint.variant:<6} {checkpoint.image_size:>4}px {checkpoint.num_classes:>6} "
              f"classes  top-1 {top1}  -> {checkpoint.hub_name}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m conversion", description=__doc__)
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    commands = parser.add_subparsers(dest="command", required=True)
    convert_parser = commands.add_parser("convert", help="convert one checkpoint into a repo directory")
    add_convert_arguments(convert_parser)
    convert_parser.set_defaults(run=run_convert)
    push_parser = commands.add_parser("push", help="push a converted repo directory to the Hub in one commit")
    push_parser.add_argument("directory", type=Path, help="a directory written by `convert`")
    push_parser.add_argument("repo_id", metavar="ORG/NAME", help="the Hub repo to push to")
    add_push_options(push_parser)
    push_parser.set_defaults(run=run_push)
    batch_parser = commands.add_parser("batch", help="convert and push several official checkpoints to one org")
    batch_parser.add_argument("names", nargs="*", help="official checkpoint names (see `list`)")
    batch_parser.add_argument("--all", action="store_true", help="every checkpoint of the registry")
    batch_parser.add_argument("--org", required=True, help="organisation (or user) to push under")
    batch_parser.add_argument("--work-dir", type=Path, required=True, help="where the repos are written")
    batch_parser.add_argument("--format", choices=FORMATS, default="vit_port")
    batch_parser.add_argument("--no-verify", dest="verify", action="store_false")
    batch_parser.add_argument("--base-url")
    batch_parser.add_argument("--cache-dir", type=Path)
    add_push_options(batch_parser)
    batch_parser.set_defaults(run=run_batch)
    list_parser = commands.add_parser("list", help="list the official checkpoints this tool knows")
    list_parser.set_defaults(run=run_list)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    # Everything imported so far lives as long as the process: keep it out of the collections that free the
    # weights between conversion steps (with torch and transformers loaded, each full pass costs ~0.15 s).
    # `python -m conversion` has frozen it already; `hf-vit-port convert` arrives here with it unfrozen.
    gc.freeze()
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print("error: interrupted; nothing was written (a partial download is kept and resumed next time)",
              file=sys.stderr)
        return 130
    except Exception as error:  # one clear line, not a traceback, unless asked
        if args.debug:
            raise
        print(f"error: {error}", file=sys.stderr)
        return 2
