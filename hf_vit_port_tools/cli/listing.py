"""`hf-vit-port list`: the registry of official checkpoints, printed without loading torch."""

from __future__ import annotations

import dataclasses
import json

from ..conversion.registry import CHECKPOINTS
from ..options import ListOptions

_COLUMNS = ("checkpoint", "release", "model", "size", "classes", "top-1", "repo name")


def list_checkpoints(options: ListOptions) -> int:
    releases = sorted({checkpoint.collection for checkpoint in CHECKPOINTS.values()})
    if options.release is not None and options.release not in releases:
        raise ValueError(f"--release {options.release}: the releases are {', '.join(releases)}")
    chosen = [c for c in CHECKPOINTS.values() if options.release in (None, c.collection)]
    if options.json:
        print(json.dumps([dataclasses.asdict(checkpoint) for checkpoint in chosen], indent=2))
        return 0
    rows = [_COLUMNS] + [
        (c.name, c.collection, c.variant, f"{c.image_size}px", str(c.num_classes),
         f"{c.top1}%" if c.top1 is not None else "-", c.hub_name)
        for c in chosen
    ]
    widths = [max(len(row[column]) for row in rows) for column in range(len(_COLUMNS))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    return 0
