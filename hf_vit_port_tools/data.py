"""Image-classification datasets for training and evaluation, through `datasets`.

Any dataset with an image column and a label column works: a Hub id (`uoft-cs/cifar100`) or a local folder of
class sub-folders (`imagefolder:DIR`, read by `datasets`' packaged "imagefolder" builder, which needs no network).
The columns are detected, the label names become the model's `id2label`, a validation split is carved out of
the training split when the dataset has none, and rows whose image cannot be read are dropped with a warning
that lists them.

Images stay undecoded in the dataset (`decode=False`) and are opened by `hf_vit_port.images.open_image` when a batch is
built, so every image goes through the same conversions (EXIF rotation, RGB) whatever its file format.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import datasets
import torch
from datasets import ClassLabel, Dataset, DatasetDict

from hf_vit_port.images import DEFAULT_MAX_PIXELS, BadImageError, open_image

from .options import DataOptions, DatasetOptions

logger = logging.getLogger(__name__)

IMAGEFOLDER_PREFIX = "imagefolder:"
VALIDATION_SPLIT_NAMES = ("validation", "valid", "val", "dev")
IMAGE_COLUMN_NAMES = ("image", "img", "images", "picture", "pixel_values")
LABEL_COLUMN_NAMES = ("label", "labels", "fine_label", "class", "target", "category")


@dataclass
class ImageClassificationData:
    """The splits of an image-classification dataset, ready for training, with their label space."""

    train: Dataset
    validation: Dataset
    test: Dataset | None
    image_column: str
    label_column: str
    id2label: dict[int, str]
    name: str
    skipped: list[BadImageError] = field(default_factory=list)

    @property
    def label2id(self) -> dict[str, int]:
        return {label: index for index, label in self.id2label.items()}

    @property
    def num_labels(self) -> int:
        return len(self.id2label)


def load_image_dataset(spec: str, *, name: str | None = None, cache_dir: str | None = None) -> DatasetDict:
    """
    Load `spec`: `imagefolder:DIR` for a folder of class sub-folders (offline), anything else through
    `datasets.load_dataset` (a Hub id, or a local dataset directory). `name` selects a dataset configuration.
    """
    if spec.startswith(IMAGEFOLDER_PREFIX):
        data_dir = spec[len(IMAGEFOLDER_PREFIX) :]
        loaded = datasets.load_dataset("imagefolder", data_dir=data_dir, cache_dir=cache_dir)
    else:
        loaded = datasets.load_dataset(spec, name, cache_dir=cache_dir)
    if not isinstance(loaded, DatasetDict):
        loaded = DatasetDict({"train": loaded})
    return loaded


def detect_columns(
    features: datasets.Features, image_column: str | None = None, label_column: str | None = None
) -> tuple[str, str]:
    """
    The (image, label) column names: the given ones after checking they exist, else the first `Image` feature (or a
    usual image column name) and a `ClassLabel` feature, preferring the usual label names (so CIFAR-100's
    `fine_label` wins over `coarse_label`).
    """
    names = list(features)
    for given in (image_column, label_column):
        if given is not None and given not in features:
            raise ValueError(f"Column {given!r} is not in the dataset; its columns are {names}.")
    if image_column is None:
        image_columns = [n for n in names if isinstance(features[n], datasets.Image)]
        image_columns += [n for n in IMAGE_COLUMN_NAMES if n in features and n not in image_columns]
        if not image_columns:
            raise ValueError(f"No image column found among {names}; pass --image-column.")
        image_column = image_columns[0]
    if label_column is None:
        class_labels = [n for n in names if isinstance(features[n], ClassLabel)]
        preferred = [n for n in LABEL_COLUMN_NAMES if n in class_labels] or class_labels
        preferred = preferred or [n for n in LABEL_COLUMN_NAMES if n in features]
        if not preferred:
            raise ValueError(f"No label column found among {names}; pass --label-column.")
        label_column = preferred[0]
    return image_column, label_column


def encode_labels(dataset: DatasetDict, label_column: str) -> DatasetDict:
    """
    Make `label_column` a `ClassLabel` in every split. String labels are sorted into classes; plain integers keep
    their values and get names "0", "1", ... so that `id2label` always exists.
    """
    feature = next(iter(dataset.values())).features[label_column]
    if isinstance(feature, ClassLabel):
        return dataset
    values = set()
    for split in dataset.values():
        values.update(split.unique(label_column))
    if all(isinstance(v, (int,)) and not isinstance(v, bool) for v in values):
        if min(values) < 0:
            raise ValueError(f"Integer labels in {label_column!r} must be non-negative, found {min(values)}.")
        names = [str(i) for i in range(max(values) + 1)]
        return dataset.cast_column(label_column, ClassLabel(names=names))
    names = sorted(str(v) for v in values)
    index = {name: i for i, name in enumerate(names)}
    encoded = dataset.map(lambda row: {label_column: index[str(row[label_column])]}, desc="Encoding labels")
    return encoded.cast_column(label_column, ClassLabel(names=names))


def split_dataset(
    dataset: DatasetDict, *, label_column: str, validation_fraction: float = 0.1, seed: int = 42
) -> tuple[Dataset, Dataset, Dataset | None]:
    """
    (train, validation, test): the dataset's own validation split if it has one, else `validation_fraction` of the
    training split, stratified by label where every class has enough examples. The test split, if any, is kept
    apart for a final evaluation, never used to choose the best checkpoint.
    """
    if "train" not in dataset:
        raise ValueError(f"The dataset has no 'train' split (splits: {list(dataset)}).")
    validation_name = next((name for name in VALIDATION_SPLIT_NAMES if name in dataset), None)
    test = dataset["test"] if "test" in dataset else None
    if validation_name is not None:
        return dataset["train"], dataset[validation_name], test
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be in (0, 1), got {validation_fraction}.")
    train = dataset["train"]
    try:
        parts = train.train_test_split(test_size=validation_fraction, seed=seed, stratify_by_column=label_column)
    except ValueError:
        # Stratifying needs at least one example of every class on each side; tiny datasets fall back to random.
        parts = train.train_test_split(test_size=validation_fraction, seed=seed)
    logger.info("No validation split: using %d of %d training examples for validation.", len(parts["test"]), len(train))
    return parts["train"], parts["test"], test


def undecoded(dataset: Dataset, image_column: str) -> Dataset:
    """The dataset with its image column left as `{"bytes", "path"}` cells, so that decoding is ours to do."""
    feature = dataset.features[image_column]
    if isinstance(feature, datasets.Image) and feature.decode:
        return dataset.cast_column(image_column, datasets.Image(decode=False))
    return dataset


def drop_bad_images(
    dataset: Dataset,
    image_column: str,
    *,
    split: str = "train",
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    batch_size: int = 512,
) -> tuple[Dataset, list[BadImageError]]:
    """
    Open every image once and drop the rows whose image is unreadable (truncated, empty, not an image, over the
    pixel limit), warning with the list of them. Returns the filtered dataset and the errors.
    """
    dataset = undecoded(dataset, image_column)
    bad: list[BadImageError] = []
    keep: list[int] = []
    position = 0
    for batch in dataset.select_columns([image_column]).iter(batch_size=batch_size):
        for cell in batch[image_column]:
            label = _cell_name(cell, split, position)
            try:
                open_image(cell, name=label, max_pixels=max_pixels)
                keep.append(position)
            except BadImageError as error:
                bad.append(error)
            position += 1
    if not bad:
        return dataset, bad
    listing = "\n".join(f"  - {error}" for error in bad)
    warnings.warn(f"Skipping {len(bad)} unreadable image(s) in the {split} split:\n{listing}", stacklevel=2)
    return dataset.select(keep), bad


def _cell_name(cell: Any, split: str, position: int) -> str:
    path = cell.get("path") if isinstance(cell, dict) else None
    return f"{split}[{position}] ({path})" if path else f"{split}[{position}]"


def load_columns(options: DatasetOptions) -> tuple[DatasetDict, str, str]:
    """The dataset `options` name, its (image, label) columns, and its labels as `ClassLabel`s."""
    dataset = load_image_dataset(options.dataset, name=options.dataset_config)
    features = next(iter(dataset.values())).features
    image_column, label_column = detect_columns(features, options.image_column, options.label_column)
    return encode_labels(dataset, label_column), image_column, label_column


def prepare_data(
    options: DataOptions, *, seed: int = 42, max_pixels: int | None = DEFAULT_MAX_PIXELS
) -> ImageClassificationData:
    """
    Load, check and split an image-classification dataset (see the module docstring). `max_train_samples` and
    `max_eval_samples` keep only the first examples of the (shuffled) splits, for quick runs.
    """
    dataset, image_column, label_column = load_columns(options)
    train, validation, test = split_dataset(
        dataset, label_column=label_column, validation_fraction=options.validation_fraction, seed=seed
    )
    splits = {
        "train": _subset(train, options.max_train_samples, seed),
        "validation": _subset(validation, options.max_eval_samples, seed),
        "test": _subset(test, options.max_eval_samples, seed) if test is not None else None,
    }
    skipped: list[BadImageError] = []
    for split_name, split in splits.items():
        if split is None:
            continue
        if options.check_images:
            split, errors = drop_bad_images(split, image_column, split=split_name, max_pixels=max_pixels)
            skipped += errors
        splits[split_name] = undecoded(split, image_column)
    spec = options.dataset
    return ImageClassificationData(
        train=splits["train"],
        validation=splits["validation"],
        test=splits["test"],
        image_column=image_column,
        label_column=label_column,
        id2label=dict(enumerate(train.features[label_column].names)),
        name=spec[len(IMAGEFOLDER_PREFIX) :] if spec.startswith(IMAGEFOLDER_PREFIX) else spec,
        skipped=skipped,
    )


def _subset(dataset: Dataset, count: int | None, seed: int) -> Dataset:
    if count is None or count >= len(dataset):
        return dataset
    return dataset.shuffle(seed=seed).select(range(count))


class ExampleTransform:
    """
    The on-the-fly transform of a batch of dataset rows: open each image (converted to RGB, see `open_image`),
    optionally augment the PIL image, run the checkpoint's image processor (resize, rescale, normalise), optionally
    augment the pixel tensor, and return `pixel_values` and `labels`. Module-level and picklable, so DataLoader
    workers can use it. `randomness(index)` gives the generator the augmentations of the row at `index` draw from
    (see `IndexedSplit`); without it they draw from torch's global generator.
    """

    def __init__(
        self,
        processor: Callable,
        image_column: str,
        label_column: str | None,
        *,
        image_augment: Callable | None = None,
        tensor_augment: Callable | None = None,
        randomness: Callable[[int], torch.Generator] | None = None,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        jpeg_decoder: str = "pil",
    ):
        self.processor = processor
        self.jpeg_decoder = jpeg_decoder
        self.image_column = image_column
        self.label_column = label_column
        self.image_augment = image_augment
        self.tensor_augment = tensor_augment
        self.randomness = randomness
        self.max_pixels = max_pixels

    def __call__(self, batch: dict[str, list], indices: Sequence[int] | None = None) -> dict[str, Any]:
        images = [open_image(cell, max_pixels=self.max_pixels, jpeg_decoder=self.jpeg_decoder)
                  for cell in batch[self.image_column]]
        generators = [None] * len(images)
        if self.randomness is not None and indices is not None:
            generators = [self.randomness(index) for index in indices]
        if self.image_augment is not None:
            images = [self.image_augment(image, generator) for image, generator in zip(images, generators)]
        pixels = self.processor(images=images, return_tensors="pt")["pixel_values"]
        if self.tensor_augment is not None:
            pixels = torch.stack([self.tensor_augment(p, generator) for p, generator in zip(pixels, generators)])
        out: dict[str, Any] = {"pixel_values": pixels}
        if self.label_column is not None and self.label_column in batch:
            out["labels"] = torch.as_tensor(batch[self.label_column], dtype=torch.long)
        return out


class IndexedSplit(torch.utils.data.Dataset):
    """
    Rows of a dataset transformed with their indices known, so that each example's augmentation can be a function
    of its index (a `datasets` transform only sees the rows). Batches are fetched whole (`__getitems__`).
    """

    def __init__(self, rows: Dataset, transform: ExampleTransform):
        self.rows = undecoded(rows, transform.image_column)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.rows)

    def __getitems__(self, indices: list[int]) -> list[dict[str, Any]]:
        out = self.transform(self.rows[list(indices)], indices)
        return [{key: value[i] for key, value in out.items()} for i in range(len(indices))]

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.__getitems__([index])[0]


def with_transform(
    dataset: Dataset, processor: Callable, image_column: str, label_column: str | None, **kwargs: Any
) -> Dataset:
    """`dataset` (images undecoded) producing `pixel_values`/`labels` on access through `ExampleTransform`."""
    return undecoded(dataset, image_column).with_transform(
        ExampleTransform(processor, image_column, label_column, **kwargs)
    )


def channel_statistics(
    dataset: Dataset,
    image_column: str,
    *,
    max_samples: int = 10_000,
    seed: int = 0,
) -> tuple[list[float], list[float]]:
    """
    Per-channel mean and standard deviation of the images, in [0, 1] units, over up to `max_samples` of them.
    The Keras recipe normalises with these, as its `Normalization` layer adapted to the training data does.
    """
    dataset = undecoded(dataset, image_column)
    if len(dataset) > max_samples:
        dataset = dataset.shuffle(seed=seed).select(range(max_samples))
    total = torch.zeros(3, dtype=torch.float64)
    total_sq = torch.zeros(3, dtype=torch.float64)
    count = 0
    for batch in dataset.select_columns([image_column]).iter(batch_size=256):
        for cell in batch[image_column]:
            image = open_image(cell)
            pixels = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8).to(torch.float64) / 255.0
            pixels = pixels.view(-1, 3)
            total += pixels.sum(0)
            total_sq += (pixels**2).sum(0)
            count += pixels.shape[0]
    if count == 0:
        raise ValueError("Cannot compute normalisation statistics of an empty dataset.")
    mean = total / count
    std = (total_sq / count - mean**2).clamp_min(1e-12).sqrt()
    return mean.tolist(), std.tolist()


__all__ = [
    "IMAGEFOLDER_PREFIX",
    "ExampleTransform",
    "ImageClassificationData",
    "IndexedSplit",
    "channel_statistics",
    "detect_columns",
    "drop_bad_images",
    "encode_labels",
    "load_columns",
    "load_image_dataset",
    "prepare_data",
    "split_dataset",
    "undecoded",
    "with_transform",
]
