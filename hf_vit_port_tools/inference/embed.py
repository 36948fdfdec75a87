"""Image embeddings at scale: every image's pooled features (the pre-logits vector the imagenet21k checkpoints are
known for; the pooled token when a model has no pre-logits layer) written to one parquet file, one row per image.

The work is cut into part files written atomically as it goes (`OUTPUT.parts/`), so an interrupted run loses at most
one part: a rerun skips every image already in a part or in OUTPUT. Under `torchrun` or `accelerate launch`
(RANK/WORLD_SIZE set) each process embeds its own share of the remaining images; once all are done, rank 0 merges
the parts and any earlier OUTPUT into OUTPUT (in the source's order) and removes the parts.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from hf_vit_port.images import DEFAULT_MAX_PIXELS, BadImageError, expand_sources, open_image

from ..options import EmbedOptions

PATH, EMBEDDING, CLS = "path", "embedding", "cls"
_IMAGEFOLDER = "imagefolder:"


@dataclass
class ImageRows:
    """The images to embed: a stable id for each (its path, or SPLIT/INDEX in a dataset) and how to fetch it."""

    ids: list[str]
    cell: Callable[[int], Any]  # position -> what `open_image` accepts


@dataclass
class EmbeddingRun:
    """What a run did (this process's share; `merged` is the row count of OUTPUT when this process wrote it)."""

    embedded: int = 0
    embedded_everywhere: int = 0  # by every process of a distributed launch
    already_done: int = 0
    skipped: list[BadImageError] = field(default_factory=list)
    merged: int | None = None


def image_rows(source: str, *, split: str | None = None, image_column: str | None = None) -> ImageRows:
    """A folder (or `imagefolder:DIR`, or one image file) by path, anything else as a `datasets` dataset."""
    folder = source[len(_IMAGEFOLDER) :] if source.startswith(_IMAGEFOLDER) else source
    if Path(folder).exists():
        ids = list(expand_sources([folder]))
        return ImageRows(ids, ids.__getitem__)
    return _dataset_rows(source, split, image_column)


def _dataset_rows(spec: str, split: str | None, image_column: str | None) -> ImageRows:
    import datasets

    from ..data import IMAGE_COLUMN_NAMES, load_image_dataset, undecoded

    loaded = load_image_dataset(spec)
    if split is not None and split not in loaded:
        raise ValueError(f"--split {split}: {spec} has the splits {', '.join(loaded)}")
    features = next(iter(loaded.values())).features
    candidates = [n for n in features if isinstance(features[n], datasets.Image)] + list(IMAGE_COLUMN_NAMES)
    column = image_column or next((n for n in candidates if n in features), None)
    if column is None or column not in features:
        raise ValueError(f"--image-column: no image column among {', '.join(features)} of {spec}")
    ids: list[str] = []
    where: list[tuple[Any, int]] = []
    for name in [split] if split else list(loaded):
        rows = undecoded(loaded[name], column)
        ids += [f"{name}/{index}" for index in range(len(rows))]
        where += [(rows, index) for index in range(len(rows))]
    return ImageRows(ids, lambda position: where[position][0][where[position][1]][column])


def world() -> tuple[int, int]:
    """(rank, world size) as torchrun and accelerate launch set them; (0, 1) in a plain process."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def parts_folder(output: Path) -> Path:
    return output.with_name(output.name + ".parts")


def done_ids(output: Path, *, cls_token: bool = False) -> set[str]:
    """The ids already embedded: in OUTPUT and in its finished part files (refused if written with another
    `--cls-token` choice than `cls_token`: the rows could not be merged)."""
    files = [output] if output.is_file() else []
    parts = parts_folder(output)
    if parts.is_dir():
        files += sorted(p for p in parts.glob("*.parquet") if not p.name.startswith("."))
    done: set[str] = set()
    for path in files:
        try:
            has_cls = CLS in pq.read_schema(path).names
            done.update(pq.read_table(path, columns=[PATH]).column(PATH).to_pylist())
        except (pa.ArrowException, OSError, KeyError) as error:
            raise ValueError(f"{path}: not a readable embeddings file ({error}); delete it to start over") from error
        if has_cls != cls_token:
            written = "with" if has_cls else "without"
            raise ValueError(f"--cls-token: {path} was written {written} the CLS token; rerun {written} "
                             f"--cls-token, or delete {output} and {parts} to start over")
    return done


def pooled_features(
    model: torch.nn.Module, pixel_values: torch.Tensor, *, cls_token: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(pooled features `[batch, dim]`, final CLS token `[batch, hidden]` or None) of a ViTPort model, head or not."""
    encoder = getattr(model, "vit", model)
    if not hasattr(encoder, "pool"):
        raise ValueError(f"embed needs a vit_port model, not {type(model).__name__}")
    if cls_token and encoder.config.classifier != "token":
        raise ValueError("--cls-token: this model pools the mean of its tokens (classifier 'gap'); it has no CLS token")
    outputs = encoder(pixel_values=pixel_values.to(next(encoder.parameters()).device))
    return outputs.pooler_output, (outputs.last_hidden_state[:, 0] if cls_token else None)


def _vectors(values: np.ndarray) -> pa.Array:
    values = np.ascontiguousarray(values, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), values.shape[1])


def write_part(folder: Path, rank: int, ids: list[str], pooled: np.ndarray, cls: np.ndarray | None) -> Path:
    """One part file, written under a hidden name and renamed into place (a killed run leaves no half part)."""
    columns = {PATH: pa.array(ids, pa.string()), EMBEDDING: _vectors(pooled)}
    if cls is not None:
        columns[CLS] = _vectors(cls)
    folder.mkdir(parents=True, exist_ok=True)
    name = f"rank{rank:05d}-{uuid.uuid4().hex[:12]}.parquet"
    staging = folder / f".{name}.tmp"
    pq.write_table(pa.table(columns), staging)
    os.replace(staging, folder / name)
    return folder / name


def merge(output: Path, order: list[str]) -> int:
    """OUTPUT := earlier OUTPUT + every part, rows in the source's order; the parts are then removed."""
    parts = parts_folder(output)
    new = sorted(p for p in parts.glob("*.parquet") if p.name[0] != ".") if parts.is_dir() else []
    if not new:  # nothing since the last merge
        _remove(parts)
        return pq.read_metadata(output).num_rows if output.is_file() else 0
    files = ([output] if output.is_file() else []) + new
    table = pa.concat_tables([pq.read_table(path) for path in files])  # one schema: checked by `done_ids`
    position = {identifier: index for index, identifier in enumerate(order)}
    keys = [(position.get(identifier, len(order)), identifier) for identifier in table.column(PATH).to_pylist()]
    table = table.take(pa.array(sorted(range(len(keys)), key=keys.__getitem__), pa.int64()))
    staging = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    pq.write_table(table, staging)
    os.replace(staging, output)
    _remove(parts)
    return table.num_rows


def _remove(parts: Path) -> None:
    if parts.is_dir():
        for path in parts.iterdir():
            path.unlink()
        parts.rmdir()


def embed_images(options: EmbedOptions) -> EmbeddingRun:
    """Embed what is left of `options.source` into `options.output` (this process's share, see the module doc)."""
    from hf_vit_port.processing import image_processor_for

    from .models import load_model

    rank, size = world()
    group = _join_group(size)
    rows = image_rows(options.source, split=options.split, image_column=options.image_column)
    done = done_ids(options.output, cls_token=options.cls_token)
    _barrier(size)  # every process has read what is done before any writes a new part
    todo = [position for position, identifier in enumerate(rows.ids) if identifier not in done]
    mine = todo[rank::size]
    model = load_model(options.model).to(_device()).eval()
    processor = image_processor_for(options.model, model.config)
    run = EmbeddingRun(already_done=len(rows.ids) - len(todo))
    max_pixels = options.max_pixels if options.max_pixels is not None else DEFAULT_MAX_PIXELS
    buffer: dict[str, list] = {PATH: [], EMBEDDING: [], CLS: []}
    with _progress(len(mine), shown=rank == 0) as bar:
        for start in range(0, len(mine), options.batch_size):
            batch = _open_batch(rows, mine[start : start + options.batch_size], max_pixels, run.skipped)
            if batch:
                pixels = processor(images=[image for _, image in batch], return_tensors="pt")["pixel_values"]
                with torch.no_grad():
                    pooled, cls = pooled_features(model, pixels, cls_token=options.cls_token)
                buffer[PATH] += [identifier for identifier, _ in batch]
                buffer[EMBEDDING].append(pooled.float().cpu().numpy())
                buffer[CLS].append(None if cls is None else cls.float().cpu().numpy())
                run.embedded += len(batch)
            if len(buffer[PATH]) >= options.rows_per_part:
                _flush(options.output, rank, buffer)
            bar.update(min(options.batch_size, len(mine) - start))
    _flush(options.output, rank, buffer)
    run.embedded_everywhere = _total(run.embedded, size)  # also the barrier after which every part is on disk
    if rank == 0:
        run.merged = merge(options.output, rows.ids)
    if group:
        torch.distributed.destroy_process_group()
    return run


def _open_batch(rows: ImageRows, positions: list[int], max_pixels: int, skipped: list[BadImageError]) -> list:
    batch = []
    for position in positions:
        identifier = rows.ids[position]
        try:
            batch.append((identifier, open_image(rows.cell(position), name=identifier, max_pixels=max_pixels)))
        except BadImageError as error:
            skipped.append(error)
    return batch


def _flush(output: Path, rank: int, buffer: dict[str, list]) -> None:
    if not buffer[PATH]:
        return
    cls = None if buffer[CLS][0] is None else np.concatenate(buffer[CLS])
    write_part(parts_folder(output), rank, buffer[PATH], np.concatenate(buffer[EMBEDDING]), cls)
    for values in buffer.values():
        values.clear()


def _join_group(size: int) -> bool:
    """Join the launcher's process group (gloo: the barriers need no accelerator); True when this call created it."""
    if size <= 1 or not torch.distributed.is_available() or torch.distributed.is_initialized():
        return False
    torch.distributed.init_process_group("gloo")
    return True


def _total(count: int, size: int) -> int:
    """`count` summed over the processes (each waits for all: no part is written after this returns)."""
    if size <= 1 or not torch.distributed.is_initialized():
        return count
    total = torch.tensor([count], dtype=torch.int64)
    torch.distributed.all_reduce(total)
    return int(total.item())


def _barrier(size: int) -> None:
    if size > 1 and torch.distributed.is_initialized():
        torch.distributed.barrier()


def _device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
    return torch.device("cpu")


def _progress(total: int, *, shown: bool) -> Any:
    """A progress bar on an interactive terminal (rank 0 only); nothing in a pipe or a log."""
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="img", disable=not (shown and sys.stderr.isatty()), file=sys.stderr)


__all__ = ["CLS", "EMBEDDING", "PATH", "EmbeddingRun", "ImageRows", "done_ids", "embed_images", "image_rows",
           "merge", "parts_folder", "pooled_features", "world", "write_part"]
