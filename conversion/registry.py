"""The official ViT ``.npz`` checkpoints of google-research/vision_transformer, as one table.

Every entry names one file in the public bucket ``gs://vit_models`` (served over HTTPS from
``https://storage.googleapis.com/vit_models``), with its architecture, resolution, head, the size the authors
listed for it, the ImageNet top-1 the authors published for that exact file (where they did), and the short name of
the Hub repository this project publishes it under.

Covered:

* ``imagenet21k/``: ViT-B_16, ViT-B_32, ViT-B_8, ViT-L_16, ViT-L_32, ViT-H_14 (224 px, 21843 classes, with the
  pre-logits layer).
* ``imagenet21k+imagenet2012/``: ViT-B_16, ViT-B_32, ViT-L_16, ViT-L_32 (384 px), ViT-B_16-224, ViT-L_16-224
  (224 px), and ViT-B_8 (384 px; see its note).
* ``augreg/``: for the plain ViTs of the README's "recommended checkpoints" table (Ti/16, S/16, S/32, B/16, B/32,
  L/16) the ImageNet-21k upstream file and its recommended ImageNet fine-tune (384 px); for B/8 (added to the bucket
  later, not in the table) the same selection as made by the official AugReg Colab (fine-tune at 224 px). The
  table's hybrid models (R+Ti/16, R26+S/32, R50+L/32) are not plain ViTs and are left out.

Sources (all public; the exact quotes are in the comments next to the numbers):

* ``README``: google-research/vision_transformer ``README.md`` at commit c6de1e5 (2024-05-21).
* ``vit_jax.ipynb``: the official Colab in the same commit; its stored output of
  ``gsutil ls -lh gs://vit_models/imagenet*`` lists every file of ``imagenet21k/`` and
  ``imagenet21k+imagenet2012/`` with its size (rounded by gsutil).
* ``vit_jax_augreg.ipynb``: the official AugReg Colab in the same commit; its stored output lists, per model, the
  best i21k checkpoint by upstream validation accuracy and its best ImageNet fine-tune with ``adapt_final_test``.

Sizes: no public source gives exact byte counts, so each entry carries the size as listed (``listed_size``) and the
check is made against the architecture instead: the files are uncompressed ``np.savez`` archives of float32 arrays,
so a file holds ``4 * num_params`` bytes of weights plus a few hundred bytes of zip/npy headers per array
(about 0.06 MiB for a B model). `OfficialCheckpoint.check_size` accepts ``4 * num_params`` +/- max(1 MiB, 0.5 %),
which a Content-Length or a file on disk can be compared with. The computed sizes agree with every listed size
(``tests/test_registry.py`` checks that), which is also what confirms ``image_size`` and ``representation_size``
for each file.

The architectures come from `hf_vit_port.presets`, the project's one table of variants, read only where dimensions are
needed: this module imports no torch, so `hf-vit-port list` starts fast. The head widths (21843, 1000) are facts
about the files, recorded here per collection; tests check them against the presets' release table.
"""

from __future__ import annotations

import difflib
import os
import posixpath
import re
import urllib.parse
from dataclasses import dataclass


__all__ = [
    "BASE_URL_ENV_VAR",
    "CHECKPOINTS",
    "DEFAULT_BASE_URL",
    "OfficialCheckpoint",
    "UnknownCheckpointError",
    "get_checkpoint",
    "list_checkpoints",
    "resolve_base_url",
]

DEFAULT_BASE_URL = "https://storage.googleapis.com/vit_models"
"""Public HTTPS root of the ``gs://vit_models`` bucket."""

BASE_URL_ENV_VAR = "HF_VIT_PORT_BASE_URL"
"""Environment variable that replaces `DEFAULT_BASE_URL` (e.g. a mirror, or a local directory)."""

SIZE_TOLERANCE_FRACTION = 0.005
SIZE_TOLERANCE_MIN_BYTES = 1 << 20

IMAGENET21K_CLASSES = 21843  # the head of every imagenet21k and AugReg upstream file
IMAGENET1K_CLASSES = 1000  # the head of every ImageNet-1k fine-tune

_SRC_README = "google-research/vision_transformer README.md (commit c6de1e5)"
_SRC_README_TABLE = _SRC_README + ", table of recommended AugReg checkpoints ('Imagenet accuracy' column)"
_SRC_README_SIZES = _SRC_README + ", table of recommended AugReg checkpoints ('Size' column, whole MiB)"
_SRC_README_CHANGELOG = (
    _SRC_README + ", changelog 2020-10-29: the -224 models 'are expected to achieve 81.2% and 82.7% top-1 "
    "accuracies respectively'"
)
_SRC_GSUTIL = "google-research/vision_transformer vit_jax.ipynb (commit c6de1e5), output of `gsutil ls -lh`"
_SRC_AUGREG_COLAB = (
    "google-research/vision_transformer vit_jax_augreg.ipynb (commit c6de1e5), output of the cell selecting the "
    "best i21k checkpoint per model and its best imagenet2012 fine-tune (column adapt_final_test)"
)
_SRC_TIMM_HEAD = "timm 1.0.31 vision_transformer.py: the .orig_in21k weights are marked 'classifier not valid'"


@dataclass(frozen=True)
class OfficialCheckpoint:
    """One official ``.npz`` file of google-research/vision_transformer.

    Attributes:
        name: Registry key, how a user names it: ``"imagenet21k/ViT-B_16"``,
            ``"imagenet21k+imagenet2012/ViT-L_16-224"``, or for AugReg the file name stem.
        path: Object path inside the bucket, unescaped (``"imagenet21k+imagenet2012/ViT-B_16.npz"``).
        collection: Bucket folder: ``"imagenet21k"``, ``"imagenet21k+imagenet2012"`` or ``"augreg"``.
        variant: Architecture, as in the papers (``"B/16"``); see `hf_vit_port.presets`.
        image_size: Resolution the file was trained / fine-tuned at (its position-embedding grid).
        num_classes: Width of the classifier head (21843 ImageNet-21k, 1000 ImageNet-1k).
        has_pre_logits: Whether the file has a pre-logits layer (see `representation_size`).
        hub_name: Short name of the Hub repository this project publishes the file under.
        top1: ImageNet-1k top-1 (%) the authors published for this exact file, else None.
        top1_source: Where `top1` is published.
        listed_size: The file size as the authors listed it (rounded, human-readable), else None.
        listed_size_source: Where `listed_size` is listed.
        upstream: Registry name of the checkpoint this one was fine-tuned from (None for upstream files).
        classifier_valid: False where the file's classifier head is known not to be usable.
        aliases: Other names `get_checkpoint` accepts for this entry (the hub name is always one).
        note: Anything else a user should know about this file.
    """

    name: str
    path: str
    collection: str
    variant: str
    image_size: int
    num_classes: int
    has_pre_logits: bool
    hub_name: str
    top1: float | None = None
    top1_source: str | None = None
    listed_size: str | None = None
    listed_size_source: str | None = None
    upstream: str | None = None
    classifier_valid: bool = True
    aliases: tuple[str, ...] = ()
    note: str = ""

    # -- architecture -------------------------------------------------------------------------------------------

    def dimensions(self) -> tuple[int, int, int, int, int]:
        """(hidden size, layers, heads, MLP size, patch size) of the variant, from the presets table."""
        from hf_vit_port.presets import variant_dimensions  # the plugin loads only when dimensions are needed

        width, patch = variant_dimensions(self.variant)
        return width.hidden_size, width.num_hidden_layers, width.num_attention_heads, width.intermediate_size, patch

    @property
    def representation_size(self) -> int | None:
        """Width of the pre-logits layer (as wide as the encoder), or None when the file has none."""
        return self.dimensions()[0] if self.has_pre_logits else None

    @property
    def label_set(self) -> str:
        """Name of the label set of the head, for ``hf_vit_port.labels.load_labels``."""
        return "imagenet21k" if self.num_classes == IMAGENET21K_CLASSES else "imagenet1k"

    @property
    def num_params(self) -> int:
        """Number of parameters stored in the file (embedding, encoder, pre-logits, head)."""
        d, layers, _, mlp, patch = self.dimensions()
        tokens = (self.image_size // patch) ** 2 + 1
        count = patch * patch * 3 * d + d  # patch embedding (conv kernel + bias)
        count += d + tokens * d  # class token, position embeddings
        block = 2 * 2 * d + 4 * (d * d + d) + (d * mlp + mlp) + (mlp * d + d)  # 2 LayerNorms, q/k/v/out, MLP
        count += layers * block + 2 * d  # blocks, final LayerNorm
        head_in = d
        if self.representation_size is not None:
            count += d * self.representation_size + self.representation_size
            head_in = self.representation_size
        return count + head_in * self.num_classes + self.num_classes

    # -- location -----------------------------------------------------------------------------------------------

    @property
    def filename(self) -> str:
        """File name, ``"ViT-B_16.npz"``."""
        return posixpath.basename(self.path)

    @property
    def url(self) -> str:
        """Download URL under the base URL in effect now (see `url_for`)."""
        return self.url_for()

    @property
    def official_url(self) -> str:
        """The file's URL in the public bucket, whatever mirror it is downloaded from."""
        return self.url_for(DEFAULT_BASE_URL)

    def url_for(self, base_url: str | None = None) -> str:
        """Return where to download this file from.

        Args:
            base_url: Root to use instead of the bucket. None means the ``HF_VIT_PORT_BASE_URL`` environment variable
                if set, else `DEFAULT_BASE_URL`. A root with a scheme (``https://``, ``file://``, ...) gives a URL with
                the path percent-escaped (``+`` becomes ``%2B``); a root without one is taken as a local directory
                and the unescaped path is joined to it.
        """
        base = resolve_base_url(base_url)
        if "://" in base:
            return f"{base}/{urllib.parse.quote(self.path, safe='/')}"
        return posixpath.join(base, self.path)

    # -- size check ---------------------------------------------------------------------------------------------

    @property
    def expected_num_bytes(self) -> int:
        """Bytes of float32 weights in the file: ``4 * num_params`` (headers add a little on top)."""
        return 4 * self.num_params

    def expected_size_range(self) -> tuple[int, int]:
        """Inclusive (low, high) bounds `check_size` accepts: ``4 * num_params`` +/- max(1 MiB, 0.5 %)."""
        center = self.expected_num_bytes
        tolerance = max(SIZE_TOLERANCE_MIN_BYTES, int(center * SIZE_TOLERANCE_FRACTION))
        return center - tolerance, center + tolerance

    def check_size(self, num_bytes: int) -> bool:
        """Whether a download of `num_bytes` (e.g. its Content-Length) is plausibly this file."""
        low, high = self.expected_size_range()
        return low <= num_bytes <= high

    def listed_size_range(self) -> tuple[int, int] | None:
        """Byte bounds implied by `listed_size` and its rounding (``"393.69 MiB"`` -> +/- 0.005 MiB), or None."""
        if self.listed_size is None:
            return None
        match = re.fullmatch(r"\s*(\d+)(?:\.(\d+))?\s*(B|KiB|MiB|GiB)\s*", self.listed_size)
        if match is None:
            raise ValueError(f"Cannot parse listed size {self.listed_size!r} of {self.name}")
        whole, fraction, unit = match.groups()
        scale = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}[unit]
        value = float(f"{whole}.{fraction or '0'}")
        half_step = 0.5 * 10 ** -(len(fraction) if fraction else 0)
        return int((value - half_step) * scale), int((value + half_step) * scale) + 1


class UnknownCheckpointError(KeyError):
    """`get_checkpoint` was given a name that matches no checkpoint; `suggestions` holds the closest names."""

    def __init__(self, name: str, suggestions: list[str]) -> None:
        self.name = name
        self.suggestions = suggestions
        hint = (
            "Did you mean: " + ", ".join(repr(s) for s in suggestions) + "?"
            if suggestions
            else "No close match; list_checkpoints() lists them all."
        )
        self.message = f"Unknown official ViT checkpoint {name!r}. {hint}"
        super().__init__(self.message)

    def __str__(self) -> str:  # KeyError would print the repr of the message
        return self.message


def resolve_base_url(base_url: str | None = None) -> str:
    """Return the root URL (or directory) files are fetched from: `base_url`, else ``$HF_VIT_PORT_BASE_URL``, else
    `DEFAULT_BASE_URL`, without a trailing slash."""
    if base_url is None:
        base_url = os.environ.get(BASE_URL_ENV_VAR) or DEFAULT_BASE_URL
    base_url = base_url.strip()
    if not base_url:
        raise ValueError("The base URL must not be empty.")
    return base_url.rstrip("/") or "/"


# -- the table ------------------------------------------------------------------------------------------------------


def _original(
    collection: str,
    stem: str,
    variant: str,
    image_size: int,
    hub_name: str,
    listed_size: str,
    top1: float | None = None,
    top1_source: str | None = None,
    note: str = "",
) -> OfficialCheckpoint:
    in21k = collection == "imagenet21k"
    return OfficialCheckpoint(
        name=f"{collection}/{stem}",
        path=f"{collection}/{stem}.npz",
        collection=collection,
        variant=variant,
        image_size=image_size,
        num_classes=IMAGENET21K_CLASSES if in21k else IMAGENET1K_CLASSES,
        # The original imagenet21k files keep the pre-logits layer (as wide as the encoder); the fine-tuned files drop
        # it. The listed sizes confirm both (a B model's pre-logits layer is 2.25 MiB).
        has_pre_logits=in21k,
        hub_name=hub_name,
        top1=top1,
        top1_source=top1_source,
        listed_size=listed_size,
        listed_size_source=_SRC_GSUTIL,
        upstream=None if in21k else f"imagenet21k/{stem.removesuffix('-224')}",
        classifier_valid=not in21k,
        aliases=(hub_name,),
        note=(
            "The 21k classifier head of the original imagenet21k files is not usable (" + _SRC_TIMM_HEAD + "); "
            "use the file as a feature extractor / for fine-tuning."
            if in21k
            else note
        ),
    )


def _augreg(
    stem: str,
    variant: str,
    image_size: int,
    hub_name: str,
    upstream: str | None = None,
    top1: float | None = None,
    top1_source: str | None = None,
    listed_size: str | None = None,
    note: str = "",
) -> OfficialCheckpoint:
    return OfficialCheckpoint(
        name=stem,
        path=f"augreg/{stem}.npz",
        collection="augreg",
        variant=variant,
        image_size=image_size,
        num_classes=IMAGENET21K_CLASSES if upstream is None else IMAGENET1K_CLASSES,
        has_pre_logits=False,  # AugReg models have no pre-logits layer (listed sizes confirm it)
        hub_name=hub_name,
        top1=top1,
        top1_source=top1_source,
        listed_size=listed_size,
        listed_size_source=_SRC_README_SIZES if listed_size else None,
        upstream=upstream,
        aliases=(hub_name, f"augreg/{stem}"),
        note=note,
    )


def _augreg_pair(
    upstream_stem: str,
    finetune_suffix: str,
    variant: str,
    short: str,
    image_size: int,
    top1: float | None,
    top1_source: str,
    listed_size: str | None,
    note: str = "",
) -> list[OfficialCheckpoint]:
    upstream = _augreg(upstream_stem, variant, 224, f"vit-{short}-augreg-in21k", listed_size=listed_size, note=note)
    finetune = _augreg(
        f"{upstream_stem}--{finetune_suffix}",
        variant,
        image_size,
        f"vit-{short}-augreg-in21k-in1k-{image_size}",
        upstream=upstream.name,
        top1=top1,
        top1_source=top1_source,
        note=note,
    )
    return [upstream, finetune]


# The README's table of recommended AugReg checkpoints: (upstream stem, fine-tune suffix, variant, short name, top-1,
# listed size); every fine-tune is at 384 px.
_AUGREG_TABLE = (
    ("L_16-i21k-300ep-lr_0.001-aug_strong1-wd_0.1-do_0.0-sd_0.0", "imagenet2012-steps_20k-lr_0.01-res_384", "L/16", "l16", 85.59, "1243 MiB"),
    ("B_16-i21k-300ep-lr_0.001-aug_medium1-wd_0.1-do_0.0-sd_0.0", "imagenet2012-steps_20k-lr_0.03-res_384", "B/16", "b16", 85.49, "391 MiB"),
    ("S_16-i21k-300ep-lr_0.001-aug_light1-wd_0.03-do_0.0-sd_0.0", "imagenet2012-steps_20k-lr_0.03-res_384", "S/16", "s16", 83.73, "115 MiB"),
    ("Ti_16-i21k-300ep-lr_0.001-aug_none-wd_0.03-do_0.0-sd_0.0", "imagenet2012-steps_20k-lr_0.03-res_384", "Ti/16", "ti16", 78.22, "37 MiB"),
    ("B_32-i21k-300ep-lr_0.001-aug_light1-wd_0.1-do_0.0-sd_0.0", "imagenet2012-steps_20k-lr_0.01-res_384", "B/32", "b32", 83.59, "398 MiB"),
    ("S_32-i21k-300ep-lr_0.001-aug_none-wd_0.1-do_0.0-sd_0.0", "imagenet2012-steps_20k-lr_0.01-res_384", "S/32", "s32", 79.58, "118 MiB"),
)

_ENTRIES: list[OfficialCheckpoint] = [
    # gs://vit_models/imagenet21k: 224 px, 21843 classes, pre-logits. Sizes as listed by gsutil in vit_jax.ipynb.
    # No ImageNet-1k top-1 exists for these upstream files.
    _original("imagenet21k", "ViT-B_16", "B/16", 224, "vit-b16-in21k", "393.69 MiB"),
    _original("imagenet21k", "ViT-B_32", "B/32", 224, "vit-b32-in21k", "400.01 MiB"),
    _original("imagenet21k", "ViT-B_8", "B/8", 224, "vit-b8-in21k", "393.72 MiB"),
    _original("imagenet21k", "ViT-L_16", "L/16", 224, "vit-l16-in21k", "1.22 GiB"),
    _original("imagenet21k", "ViT-L_32", "L/32", 224, "vit-l32-in21k", "1.23 GiB"),
    _original("imagenet21k", "ViT-H_14", "H/14", 224, "vit-h14-in21k", "2.46 GiB"),
    # gs://vit_models/imagenet21k+imagenet2012: fine-tuned on ImageNet-1k at 384 px unless the name ends in -224
    # (README changelog 2020-10-29: "-224" models were fine-tuned "at 224x224 resolution (instead of default
    # 384x384)"). The README publishes top-1 only for the two -224 files. The paper's ImageNet numbers (its Tables 2
    # and 5) are not tied to these released files by the README, so the 384 px files carry None.
    _original("imagenet21k+imagenet2012", "ViT-B_16", "B/16", 384, "vit-b16-in21k-in1k-384", "331.4 MiB"),
    _original("imagenet21k+imagenet2012", "ViT-B_32", "B/32", 384, "vit-b32-in21k-in1k-384", "336.89 MiB"),
    _original("imagenet21k+imagenet2012", "ViT-L_16", "L/16", 384, "vit-l16-in21k-in1k-384", "1.14 GiB"),
    _original("imagenet21k+imagenet2012", "ViT-L_32", "L/32", 384, "vit-l32-in21k-in1k-384", "1.14 GiB"),
    _original(
        "imagenet21k+imagenet2012", "ViT-B_16-224", "B/16", 224, "vit-b16-in21k-in1k-224", "330.29 MiB",
        top1=81.2, top1_source=_SRC_README_CHANGELOG,
    ),
    _original(
        "imagenet21k+imagenet2012", "ViT-L_16-224", "L/16", 224, "vit-l16-in21k-in1k-224", "1.13 GiB",
        top1=82.7, top1_source=_SRC_README_CHANGELOG,
    ),
    _original(
        "imagenet21k+imagenet2012", "ViT-B_8", "B/8", 384, "vit-b8-in21k-in1k-384", "334.78 MiB",
        note=(
            "Listed in the bucket (vit_jax.ipynb gsutil output) but not described in the README. Its resolution is "
            "inferred, not documented: the listed 334.78 MiB fits 384 px (334.72 MiB of float32 weights) and rules "
            "out 224 px (330.26 MiB)."
        ),
    ),
    # gs://vit_models/augreg: README "recommended checkpoints" table (plain ViTs). Upstream: 224 px, 21843 classes,
    # sizes from the table's "Size" column. Fine-tune: imagenet2012 at 384 px, "Imagenet accuracy" column
    # (vit_jax_augreg.ipynb shows the same values unrounded: 0.85588, 0.85486, 0.83728, 0.78220, 0.83586, 0.79584).
    *(entry for stem, suffix, variant, short, top1, size in _AUGREG_TABLE
      for entry in _augreg_pair(stem, suffix, variant, short, 384, top1, _SRC_README_TABLE, size)),
    # B/8 was added after the table was written (README changelog 2021-07-29: "Added ViT-B/8 AugReg models (3
    # upstream checkpoints and adaptations with resolution=224)"). Selection and accuracy from the AugReg Colab's
    # stored output (adapt_final_test 0.85578); no size is published.
    *_augreg_pair(
        "B_8-i21k-300ep-lr_0.001-aug_medium2-wd_0.1-do_0.0-sd_0.0", "imagenet2012-steps_20k-lr_0.03-res_224",
        "B/8", "b8", 224, 85.578, _SRC_AUGREG_COLAB, None,
    ),
]

CHECKPOINTS: dict[str, OfficialCheckpoint] = {entry.name: entry for entry in _ENTRIES}
"""Every official checkpoint, by registry name, in table order."""

if len(CHECKPOINTS) != len(_ENTRIES):  # pragma: no cover - guards edits of the table
    raise RuntimeError("Duplicate checkpoint names in the registry table.")


def _key(text: str) -> str:
    return text.strip().lower()


def _build_index() -> dict[str, str]:
    index: dict[str, str] = {}
    for entry in _ENTRIES:
        for key in (entry.name, entry.path.removesuffix(".npz"), entry.hub_name, *entry.aliases):
            previous = index.setdefault(_key(key), entry.name)
            if previous != entry.name:  # pragma: no cover - guards edits of the table
                raise RuntimeError(f"Name {key!r} is claimed by both {previous!r} and {entry.name!r}.")
    return index


_INDEX: dict[str, str] = _build_index()

_URL_PREFIX = re.compile(r"^(?:gs://vit_models/|[a-z][a-z0-9+.-]*://[^?#]*?/vit_models/)", re.IGNORECASE)


def _normalize(name: str, base_url: str | None) -> str:
    text = name.strip()
    base = resolve_base_url(base_url)
    if base != "/" and text.lower().startswith(base.lower() + "/"):
        text = text[len(base) + 1 :]
    else:
        text = _URL_PREFIX.sub("", text)
    text = urllib.parse.unquote(text).strip().strip("/")
    if text.lower().endswith(".npz"):
        text = text[: -len(".npz")]
    return _key(text)


def get_checkpoint(name: str, *, base_url: str | None = None) -> OfficialCheckpoint:
    """Look up an official checkpoint.

    Accepted, case-insensitively, with or without ``.npz``: the registry name (``"imagenet21k/ViT-B_16"``,
    an AugReg file stem), the bucket path (``"augreg/<stem>"``), the hub name (``"vit-b16-in21k"``), and a full
    ``gs://vit_models/...`` or ``https://.../vit_models/...`` URL (or one under `base_url` / the configured base).

    Raises:
        UnknownCheckpointError: (a KeyError) nothing matches; its message and ``suggestions`` list close names.
    """
    key = _normalize(name, base_url)
    found = _INDEX.get(key)
    if found is not None:
        return CHECKPOINTS[found]
    raise UnknownCheckpointError(name, _suggest(key))


def _suggest(key: str, limit: int = 5) -> list[str]:
    suggestions: list[str] = []
    for match in difflib.get_close_matches(key, list(_INDEX), n=limit * 3, cutoff=0.5):
        if _INDEX[match] not in suggestions:
            suggestions.append(_INDEX[match])
    if key:
        for candidate, target in _INDEX.items():
            if key in candidate and target not in suggestions:
                suggestions.append(target)
    return suggestions[:limit]


def list_checkpoints(collection: str | None = None) -> list[OfficialCheckpoint]:
    """All checkpoints in table order, or only those of one bucket folder (``"imagenet21k"``,
    ``"imagenet21k+imagenet2012"``, ``"augreg"``)."""
    collections = {entry.collection for entry in _ENTRIES}
    if collection is not None and collection not in collections:
        raise ValueError(f"Unknown collection {collection!r}; choose one of {', '.join(sorted(collections))}.")
    return [entry for entry in _ENTRIES if collection is None or entry.collection == collection]
