"""Metric modules shipped with the package, loadable by `evaluate` without network access."""

from pathlib import Path

import evaluate

ACCURACY_TOPK_PATH = str(Path(__file__).with_name("accuracy_topk.py"))
"""Path of the accuracy + top-k metric script; pass it to `evaluate.load`."""


def load_accuracy_topk(**kwargs) -> evaluate.EvaluationModule:
    """The accuracy + top-k metric, loaded from the local file (works offline, unlike `evaluate.load("accuracy")`)."""
    return evaluate.load(ACCURACY_TOPK_PATH, **kwargs)


__all__ = ["ACCURACY_TOPK_PATH", "load_accuracy_topk"]
