"""Class names of the ImageNet label spaces used by Google's original ViT checkpoints.

The data lives in ``hf_vit_port/label_data/`` (see ``SOURCES.md`` there): one ``wnid<TAB>label words`` line per
class, in class-index order, so line ``i`` is the class that logit ``i`` scores.

* ``"imagenet1k"``: the 1000 ILSVRC-2012 classes, sorted by WordNet id (index 0 = n01440764 "tench, Tinca tinca").
* ``"imagenet21k"``: the 21843 classes of Google's ImageNet-21k (fall 2011 release plus n03931044 and n09859684),
  sorted by WordNet id; the label space of every ``gs://vit_models/imagenet21k/`` and AugReg ``i21k`` checkpoint.

The class counts come from `presets`, the project's one table of release facts.
"""

from __future__ import annotations

import functools
import importlib.resources

from .presets import NUM_CLASSES_IMAGENET1K, NUM_CLASSES_IMAGENET21K

__all__ = ["LABEL_SETS", "NUM_CLASSES", "load_labels", "load_synsets", "labels_for_num_classes"]

# label-set name -> file name inside hf_vit_port/label_data/
_FILES: dict[str, str] = {
    "imagenet1k": "imagenet1k.tsv",
    "imagenet21k": "imagenet21k.tsv",
}

LABEL_SETS: tuple[str, ...] = tuple(_FILES)
"""The label-set names that `load_labels` and `load_synsets` accept."""

NUM_CLASSES: dict[str, int] = {"imagenet1k": NUM_CLASSES_IMAGENET1K, "imagenet21k": NUM_CLASSES_IMAGENET21K}
"""Number of classes of each label set (the files are checked against it when read)."""

_BY_NUM_CLASSES: dict[int, str] = {count: name for name, count in NUM_CLASSES.items()}

_DATA_PACKAGE = __package__ or "hf_vit_port"
_DATA_DIR = "label_data"


def _check_name(name: str) -> str:
    if name not in _FILES:
        raise ValueError(f"Unknown label set {name!r}; valid names are: {', '.join(repr(n) for n in LABEL_SETS)}.")
    return name


@functools.lru_cache(maxsize=None)
def _read(name: str) -> tuple[tuple[str, str], ...]:
    """Read one label file as ``((wnid, label words), ...)`` in class-index order, checking its shape."""
    resource = importlib.resources.files(_DATA_PACKAGE).joinpath(_DATA_DIR).joinpath(_FILES[name])
    rows: list[tuple[str, str]] = []
    for line_number, line in enumerate(resource.read_text(encoding="utf-8").splitlines(), start=1):
        if not line:
            continue
        wnid, sep, words = line.partition("\t")
        if not sep or not wnid or not words:
            raise RuntimeError(f"Malformed line {line_number} in label file {_FILES[name]!r}: {line!r}")
        rows.append((wnid, words))
    if len(rows) != NUM_CLASSES[name]:
        raise RuntimeError(
            f"Label file {_FILES[name]!r} has {len(rows)} classes, expected {NUM_CLASSES[name]}; the package data is "
            "damaged or incomplete."
        )
    return tuple(rows)


def load_labels(name: str) -> dict[int, str]:
    """Return ``{class index: label words}`` for the label set `name`.

    Args:
        name: ``"imagenet1k"`` or ``"imagenet21k"``.

    Returns:
        A new dict (safe to modify) mapping each class index to its WordNet lemma string, e.g.
        ``load_labels("imagenet1k")[0] == "tench, Tinca tinca"``. Label words are not unique across classes
        (ImageNet-1k has two "crane" classes); the WordNet ids from `load_synsets` are.

    Raises:
        ValueError: `name` is not one of `LABEL_SETS`.
    """
    return {index: words for index, (_, words) in enumerate(_read(_check_name(name)))}


def load_synsets(name: str) -> list[str]:
    """Return the WordNet ids (``"n01440764"``, ...) of the label set `name`, in class-index order.

    Raises:
        ValueError: `name` is not one of `LABEL_SETS`.
    """
    return [wnid for wnid, _ in _read(_check_name(name))]


def labels_for_num_classes(n: int) -> dict[int, str] | None:
    """Return the labels of the label set with `n` classes: 1000 -> ImageNet-1k, 21843 -> ImageNet-21k.

    Returns None for any other class count (e.g. a checkpoint fine-tuned on CIFAR-10), so callers can fall
    back to generic ``LABEL_i`` names.
    """
    name = _BY_NUM_CLASSES.get(n)
    return None if name is None else load_labels(name)
