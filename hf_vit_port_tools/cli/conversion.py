"""Running `convert`, `push`, `batch` and `demo`: the conversion and publishing library called with the parsed
options, and the report the user asked for."""

from __future__ import annotations

import sys
import tempfile
import warnings
from pathlib import Path

from ..conversion.convert import ConversionResult
from ..conversion.convert import convert as convert_npz
from ..conversion.download import download_checkpoint
from ..conversion.registry import CHECKPOINTS, get_checkpoint
from ..hub.push import check_repo_id, push_repo
from ..options import (
    BatchOptions,
    ConvertOptions,
    DemoOptions,
    DownloadOptions,
    OutputOptions,
    PushOptions,
    PushTarget,
    SyntheticOptions,
)


def convert(options: ConvertOptions, output: OutputOptions, download: DownloadOptions, push_options: PushOptions) -> int:
    if (options.name is None) == (options.npz is None):
        raise ValueError("name one official checkpoint (see `hf-vit-port list`) or pass --npz FILE, not both")
    if options.push_to_hub:
        check_repo_id(options.push_to_hub)  # before the conversion spends any time
    checkpoint, npz_path = None, options.npz
    if options.name:
        checkpoint = get_checkpoint(options.name)
        npz_path = download_checkpoint(checkpoint, **download.download_kwargs())
    overrides = dict(options.settings)
    if options.image_size:
        overrides["image_size"] = options.image_size
    with warnings.catch_warnings(record=True) as caught:  # reported once, with the conversion's notes
        warnings.simplefilter("always")
        result = convert_npz(
            npz_path, options.out, fmt=output.format, verify_outputs=output.verify, overwrite=options.overwrite,
            checkpoint=checkpoint, repo_id=options.push_to_hub, resample=options.resample,
            keep_zero_head=options.keep_zero_head, **overrides,
        )
    report(result, [str(warning.message) for warning in caught])
    if options.push_to_hub:
        _push(result.output_dir, options.push_to_hub, push_options, default_message=commit_message(result))
    return 0


def push(target: PushTarget, options: PushOptions) -> int:
    _push(target.directory, target.repo_id, options)
    return 0


def batch(options: BatchOptions, output: OutputOptions, download: DownloadOptions, push_options: PushOptions) -> int:
    """Convert and push several official checkpoints under one organisation, named by the registry's scheme."""
    names = list(CHECKPOINTS) if options.all else options.names
    if not names:
        raise ValueError("name the checkpoints to convert, or pass --all")
    checkpoints = [get_checkpoint(name) for name in names]  # fail on a typo before any work
    for checkpoint in checkpoints:
        check_repo_id(f"{options.org}/{checkpoint.hub_name}")
    failures = []
    for checkpoint in checkpoints:
        repo_id = f"{options.org}/{checkpoint.hub_name}"
        try:
            path = download_checkpoint(checkpoint, **download.download_kwargs())
            result = convert_npz(path, options.work_dir / checkpoint.hub_name, fmt=output.format,
                                 verify_outputs=output.verify, overwrite=True, checkpoint=checkpoint, repo_id=repo_id)
            report(result)
            _push(result.output_dir, repo_id, push_options, default_message=commit_message(result))
        except Exception as error:  # one bad checkpoint does not stop the batch
            print(f"error: {checkpoint.name}: {error}", file=sys.stderr)
            failures.append(checkpoint.name)
    print(f"{len(checkpoints) - len(failures)} of {len(checkpoints)} checkpoints converted and pushed")
    return 1 if failures else 0


def demo(options: DemoOptions) -> int:
    """The main job, offline: write a checkpoint in Google's official .npz layout, convert it with verification into
    a repo, and classify an image through `pipeline` with real ImageNet label names. `--out DIR` keeps both."""
    if options.out is None:
        with tempfile.TemporaryDirectory() as directory:
            return _demo(options, Path(directory))
    options.out.mkdir(parents=True, exist_ok=True)
    return _demo(options, options.out)


def _demo(options: DemoOptions, work: Path) -> int:
    import numpy as np
    from PIL import Image
    from transformers import pipeline

    from hf_vit_port import ViTPortConfig

    from ..conversion.synthetic import write_synthetic_npz

    config = ViTPortConfig.from_preset(options.variant, dataset="imagenet21k+imagenet2012",
                                       image_size=options.image_size)
    name = "ViT-" + options.variant.replace("/", "_")
    npz = write_synthetic_npz(work / f"{name}.npz", config)
    print(f"Wrote {npz if options.out else npz.name}: random weights in the official layout (the real files need "
          "network access; `hf-vit-port convert imagenet21k+imagenet2012/ViT-B_16 --out DIR` downloads and converts "
          "one).")
    repo = work / name.lower()
    report(convert_npz(npz, repo, repo_id=f"demo/{name.lower()}", overwrite=True))
    rows, cols = np.mgrid[0 : options.image_size, 0 : options.image_size]
    image = Image.fromarray(np.stack([rows % 256, cols % 256, (rows + cols) % 256], -1).astype(np.uint8))
    predictions = pipeline("image-classification", model=str(repo), trust_remote_code=False)(image, top_k=3)
    print("pipeline('image-classification') on a test image (random weights, so the classes are arbitrary):")
    for prediction in predictions:
        print(f"  {prediction['score']:.4f}  {prediction['label']}")
    return 0


def synthetic(options: SyntheticOptions) -> int:
    """A random checkpoint in the official layout of a release (the imagenet21k one with its all-zero head)."""
    from hf_vit_port import ViTPortConfig

    from ..conversion.synthetic import write_synthetic_npz

    if options.output.suffix != ".npz":
        raise ValueError(f"{options.output}: name a .npz file")
    overrides = {"image_size": options.image_size} if options.image_size else {}
    config = ViTPortConfig.from_preset(options.variant, dataset=options.release, **overrides)
    path = write_synthetic_npz(options.output, config, seed=options.seed,
                               zero_head=options.release == "imagenet21k")
    print(f"Wrote {path}: {options.variant} in the {options.release} layout, random weights "
          f"({config.image_size}px, {config.num_labels} classes)")
    return 0


def commit_message(result: ConversionResult) -> str:
    verified = "not verified" if result.max_abs_diff is None else f"verified, max |diff| {result.max_abs_diff:.1e}"
    return (f"Convert {result.source['file']} (sha256 {result.source['sha256'][:12]}) to {result.format} "
            f"safetensors, {verified}")


def _push(directory: Path, repo_id: str, options: PushOptions, default_message: str | None = None) -> None:
    result = push_repo(directory, repo_id, private=options.private, revision=options.revision,
                       create_pr=options.create_pr, commit_message=options.commit_message or default_message)
    if result.pr_url:
        print(f"Opened pull request {result.pr_url}")
    elif result.created_commit:
        print(f"Pushed {directory} to {repo_id} in one commit: {result.commit_url}")
    else:
        print(f"{repo_id} already holds these files; no new commit was made ({result.commit_oid[:12]})")


def report(result: ConversionResult, warned: list[str] = ()) -> None:
    """What a conversion did; `warned` are the warnings it raised, shown once each (most are also notes)."""
    summary = result.summary
    print(f"Converted {result.source['file']} (sha256 {result.source['sha256'][:16]}...) -> {result.output_dir}")
    print(f"  format {result.format}; parameters: {summary.totals()}")
    for note in result.notes:
        print(f"  note: {note}")
    for message in dict.fromkeys(warned):
        if message not in result.notes:
            print(f"  warning: {message}")
    verification = result.verification
    if verification is not None:
        stage = "the written repo, reloaded" if verification.reloaded else "the file's own model, before adapting"
        logits = verification.max_abs_diff_logits
        print(f"  verified {stage}: max |diff| features {verification.max_abs_diff_features:.2e}, logits "
              f"{'n/a (no head)' if logits is None else f'{logits:.2e}'} (tolerance {verification.tolerance:g})")
    if result.verification is None:
        print("  not verified (--no-verify)")
