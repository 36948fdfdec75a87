"""Figures drawn with matplotlib's Agg backend (no display needed) at a fixed size in pixels, so that a PNG's size
is known in advance."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before pyplot: headless servers and tests have no display

import matplotlib.pyplot as plt  # noqa: E402

DPI = 100


def figure(size: tuple[int, int], columns: int) -> tuple[Any, Any]:
    """A figure of `size` (width, height) pixels with `columns` axes side by side."""
    width, height = size
    # Constrained layout keeps titles and legends inside the fixed canvas (tight_layout can push titles off it).
    return plt.subplots(1, columns, figsize=(width / DPI, height / DPI), dpi=DPI, layout="constrained")


def save(canvas: Any, path: str | Path) -> Path:
    """Write the figure as a PNG of exactly its size, and close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # No bbox_inches="tight": it would crop the canvas and change the promised pixel size.
    canvas.savefig(path, dpi=DPI, format="png")
    plt.close(canvas)
    return path
