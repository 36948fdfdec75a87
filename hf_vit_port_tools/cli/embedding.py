"""Running `embed`: image features into a parquet file (see `inference.embed`)."""

from __future__ import annotations

import sys

from ..inference.embed import embed_images, world
from ..options import EmbedOptions


def embed(options: EmbedOptions) -> int:
    run = embed_images(options)
    for error in run.skipped:
        print(f"skipped {error}", file=sys.stderr)
    if world()[0] == 0:
        earlier = f" ({run.already_done} already there)" if run.already_done else ""
        print(f"Embedded {run.embedded_everywhere} image(s){earlier}; {options.output} holds {run.merged} row(s)")
    return 0
