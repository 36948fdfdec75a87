"""Top-1 and top-k accuracy from logits, as an `evaluate` metric that loads without the Hub.

`evaluate.load("accuracy")` downloads its script from the Hub, which fails offline (and in the tests). This file
is a complete metric module instead: `evaluate.load("/path/to/accuracy_topk.py")` copies it into the local modules
cache and runs it with no network access (checked with `HF_HUB_OFFLINE=1`).

`evaluate` copies this file on its own into its cache, so it must stay self-contained: no imports from
`hf_vit_port`, and one plain `import` per line (evaluate's import scanner misreads `import a, b`).
"""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """
Accuracy (the fraction of examples whose highest-scoring class is the reference) and top-k accuracy (the
fraction whose reference is among the k highest-scoring classes), computed from the model's logits.
When a model has fewer than k classes, top-k is computed over all of them (and is then 1.0).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `list` of `float`): logits (or any scores), one row of `num_classes` per example.
    references (`list` of `int`): the true class index of each example.
    k (`int`, defaults to 5): how many top-scoring classes count as a hit for top-k accuracy.
Returns:
    accuracy (`float`): top-1 accuracy in [0, 1].
    top{k}_accuracy (`float`): top-k accuracy in [0, 1], e.g. `top5_accuracy`.
Examples:
    >>> metric = evaluate.load("hf_vit_port/metrics/accuracy_topk.py")
    >>> metric.compute(predictions=[[0.1, 0.9], [0.8, 0.2]], references=[1, 1], k=1)
    {'accuracy': 0.5, 'top1_accuracy': 0.5}
"""

_CITATION = ""


def top_k_hits(logits: np.ndarray, references: np.ndarray, k: int) -> np.ndarray:
    """Whether each reference is among the `k` highest logits of its row (ties broken by class index)."""
    k = max(1, min(int(k), logits.shape[-1]))
    # argsort on the negated scores is stable, so among equal scores the lower class index ranks first,
    # the same tie rule as argmax.
    top = np.argsort(-logits, axis=-1, kind="stable")[:, :k]
    return (top == references[:, None]).any(axis=-1)


class AccuracyTopK(evaluate.Metric):
    """Top-1 and top-k accuracy from logits."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("float32")),
                    "references": datasets.Value("int64"),
                }
            ),
        )

    def _compute(self, predictions, references, k: int = 5) -> dict:
        logits = np.asarray(predictions, dtype=np.float64)
        labels = np.asarray(references, dtype=np.int64)
        if logits.ndim != 2 or len(logits) != len(labels):
            raise ValueError(
                f"predictions must be [examples, classes] logits matching the {len(labels)} references, "
                f"got shape {logits.shape}"
            )
        if len(labels) == 0:
            return {"accuracy": float("nan"), f"top{k}_accuracy": float("nan")}
        accuracy = float((logits.argmax(axis=-1) == labels).mean())
        return {"accuracy": accuracy, f"top{k}_accuracy": float(top_k_hits(logits, labels, k).mean())}
