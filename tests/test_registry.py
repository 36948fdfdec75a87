"""The table of official checkpoints (conversion.registry)."""

from __future__ import annotations

import re

import pytest

from hf_vit_port.presets import OFFICIAL_VARIANTS
from hf_vit_port_tools.conversion import registry
from hf_vit_port_tools.conversion.registry import CHECKPOINTS, DEFAULT_BASE_URL, OfficialCheckpoint, get_checkpoint

# The checkpoints the project must cover (from the issue).
ISSUE_CHECKPOINTS = [
    "imagenet21k/ViT-B_16",
    "imagenet21k/ViT-B_32",
    "imagenet21k/ViT-B_8",
    "imagenet21k/ViT-L_16",
    "imagenet21k/ViT-L_32",
    "imagenet21k/ViT-H_14",
    "imagenet21k+imagenet2012/ViT-B_16",
    "imagenet21k+imagenet2012/ViT-B_32",
    "imagenet21k+imagenet2012/ViT-L_16",
    "imagenet21k+imagenet2012/ViT-L_32",
    "imagenet21k+imagenet2012/ViT-B_16-224",
    "imagenet21k+imagenet2012/ViT-L_16-224",
]

# README "recommended checkpoints" table, plain ViT rows: (variant, upstream stem, fine-tune stem, top-1).
_FT_LR01 = "imagenet2012-steps_20k-lr_0.01-res_384"
_FT_LR03 = "imagenet2012-steps_20k-lr_0.03-res_384"
README_AUGREG = [
    ("L/16", "L_16-i21k-300ep-lr_0.001-aug_strong1-wd_0.1-do_0.0-sd_0.0", _FT_LR01, 85.59),
    ("B/16", "B_16-i21k-300ep-lr_0.001-aug_medium1-wd_0.1-do_0.0-sd_0.0", _FT_LR03, 85.49),
    ("S/16", "S_16-i21k-300ep-lr_0.001-aug_light1-wd_0.03-do_0.0-sd_0.0", _FT_LR03, 83.73),
    ("Ti/16", "Ti_16-i21k-300ep-lr_0.001-aug_none-wd_0.03-do_0.0-sd_0.0", _FT_LR03, 78.22),
    ("B/32", "B_32-i21k-300ep-lr_0.001-aug_light1-wd_0.1-do_0.0-sd_0.0", _FT_LR01, 83.59),
    ("S/32", "S_32-i21k-300ep-lr_0.001-aug_none-wd_0.1-do_0.0-sd_0.0", _FT_LR01, 79.58),
]

# Parameter counts of the 1000-class, 224 px models, from vit_jax/models_test.py (MODEL_SIZES).
PUBLISHED_PARAM_COUNTS = {
    "Ti/16": 5_717_416,
    "S/16": 22_050_664,
    "S/32": 22_878_952,
    "B/8": 86_576_872,
    "B/16": 86_567_656,
    "B/32": 88_224_232,
    "L/16": 304_326_632,
    "L/32": 306_535_400,
    "H/14": 632_045_800,
}

MIB = 1 << 20


@pytest.fixture(autouse=True)
def _no_base_url_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(registry.BASE_URL_ENV_VAR, raising=False)


@pytest.mark.parametrize("name", ISSUE_CHECKPOINTS)
def test_issue_checkpoints_present(name: str) -> None:
    entry = CHECKPOINTS[name]
    assert entry.name == name
    assert entry.path == name + ".npz"
    assert entry.url == f"{DEFAULT_BASE_URL}/{name.replace('+', '%2B')}.npz"


@pytest.mark.parametrize("variant, upstream, finetune, top1", README_AUGREG)
def test_readme_recommended_augreg_present(variant: str, upstream: str, finetune: str, top1: float) -> None:
    up = CHECKPOINTS[upstream]
    ft = CHECKPOINTS[f"{upstream}--{finetune}"]
    assert (up.variant, up.num_classes, up.image_size, up.upstream) == (variant, 21843, 224, None)
    assert (ft.variant, ft.num_classes, ft.image_size, ft.upstream) == (variant, 1000, 384, upstream)
    assert ft.top1 == top1 and "README" in (ft.top1_source or "")
    assert up.top1 is None


def test_required_augreg_variants_covered() -> None:
    augreg = registry.list_checkpoints("augreg")
    for variant in ("Ti/16", "S/16", "B/32", "B/16", "L/16"):
        kinds = {entry.num_classes for entry in augreg if entry.variant == variant}
        assert kinds == {21843, 1000}, variant


@pytest.mark.parametrize("entry", list(CHECKPOINTS.values()), ids=list(CHECKPOINTS))
def test_entry_is_consistent(entry: OfficialCheckpoint) -> None:
    assert entry.variant in OFFICIAL_VARIANTS
    assert entry.path.startswith(entry.collection + "/") and entry.path.endswith(".npz")
    assert entry.url.startswith(DEFAULT_BASE_URL + "/")
    assert entry.url.endswith("/" + entry.filename)
    assert entry.num_classes in (1000, 21843)
    assert entry.label_set == ("imagenet21k" if entry.num_classes == 21843 else "imagenet1k")
    assert entry.image_size % entry.dimensions()[4] == 0
    assert re.fullmatch(r"vit-(ti|s|b|l|h)\d+(-augreg)?-in21k(-in1k-(224|384))?", entry.hub_name), entry.hub_name
    assert (entry.num_classes == 1000) == entry.hub_name.endswith(("-224", "-384"))
    assert entry.hub_name.endswith(f"-{entry.image_size}") or entry.num_classes == 21843
    if entry.upstream is not None:
        parent = CHECKPOINTS[entry.upstream]
        assert (parent.variant, parent.num_classes, parent.collection) == (
            entry.variant,
            21843,
            "imagenet21k" if entry.collection != "augreg" else "augreg",
        )
    if entry.top1 is not None:
        assert entry.top1_source and 50 < entry.top1 < 100
    if entry.listed_size is not None:
        assert entry.listed_size_source


def test_names_and_hub_names_unique() -> None:
    hub_names = [entry.hub_name for entry in CHECKPOINTS.values()]
    assert len(hub_names) == len(set(hub_names))


@pytest.mark.parametrize("variant, count", sorted(PUBLISHED_PARAM_COUNTS.items()))
def test_param_count_formula_matches_published_counts(variant: str, count: int) -> None:
    probe = OfficialCheckpoint(
        name="probe", path="x/probe.npz", collection="x", variant=variant, image_size=224, num_classes=1000,
        has_pre_logits=False, hub_name="probe",
    )
    assert probe.num_params == count


_LISTED = {name: entry for name, entry in CHECKPOINTS.items() if entry.listed_size}


@pytest.mark.parametrize("entry", list(_LISTED.values()), ids=list(_LISTED))
def test_computed_size_agrees_with_listed_size(entry: OfficialCheckpoint) -> None:
    """4 bytes/param plus < 1 MiB of headers falls inside the rounding of the listed size.

    This is what pins image_size and representation_size of each file: a B/16 pre-logits layer is 2.25 MiB, a change
    of resolution moves the position embeddings by more than 1 MiB for every variant checked here.
    """
    low, high = entry.listed_size_range()
    assert low - MIB <= entry.expected_num_bytes <= high
    assert entry.check_size(entry.expected_num_bytes + 64 * 1024)  # weights + headers


def test_size_check_bounds() -> None:
    entry = CHECKPOINTS["imagenet21k/ViT-B_16"]
    low, high = entry.expected_size_range()
    assert low < entry.expected_num_bytes < high
    assert entry.check_size(low) and entry.check_size(high)
    assert not entry.check_size(low - 1) and not entry.check_size(high + 1)
    # the pre-logits-free AugReg B/16 upstream file must not pass for the original one
    augreg_b16 = CHECKPOINTS["B_16-i21k-300ep-lr_0.001-aug_medium1-wd_0.1-do_0.0-sd_0.0"]
    assert not entry.check_size(augreg_b16.expected_num_bytes)
    small = CHECKPOINTS["Ti_16-i21k-300ep-lr_0.001-aug_none-wd_0.03-do_0.0-sd_0.0"]
    assert small.expected_size_range()[1] - small.expected_num_bytes == registry.SIZE_TOLERANCE_MIN_BYTES


def test_listed_size_range_parsing() -> None:
    assert CHECKPOINTS["imagenet21k/ViT-B_16"].listed_size_range() == (
        int(393.685 * MIB),
        int(393.695 * MIB) + 1,
    )
    low, high = CHECKPOINTS["B_16-i21k-300ep-lr_0.001-aug_medium1-wd_0.1-do_0.0-sd_0.0"].listed_size_range()
    assert (low, high) == (int(390.5 * MIB), int(391.5 * MIB) + 1)
    assert CHECKPOINTS["B_8-i21k-300ep-lr_0.001-aug_medium2-wd_0.1-do_0.0-sd_0.0"].listed_size_range() is None


@pytest.mark.parametrize(
    "query, expected",
    [
        ("imagenet21k/ViT-B_16", "imagenet21k/ViT-B_16"),
        ("imagenet21k/ViT-B_16.npz", "imagenet21k/ViT-B_16"),
        ("IMAGENET21K/vit-b_16", "imagenet21k/ViT-B_16"),
        ("  imagenet21k+imagenet2012/ViT-L_16.NPZ ", "imagenet21k+imagenet2012/ViT-L_16"),
        ("imagenet21k+imagenet2012/ViT-B_16-224", "imagenet21k+imagenet2012/ViT-B_16-224"),
        ("vit-l16-in21k-in1k-384", "imagenet21k+imagenet2012/ViT-L_16"),
        ("vit-b16-in21k-in1k-224", "imagenet21k+imagenet2012/ViT-B_16-224"),
        ("VIT-H14-IN21K", "imagenet21k/ViT-H_14"),
        ("vit-b16-augreg-in21k", "B_16-i21k-300ep-lr_0.001-aug_medium1-wd_0.1-do_0.0-sd_0.0"),
        (
            "vit-b16-augreg-in21k-in1k-384",
            "B_16-i21k-300ep-lr_0.001-aug_medium1-wd_0.1-do_0.0-sd_0.0--imagenet2012-steps_20k-lr_0.03-res_384",
        ),
        (
            "augreg/B_16-i21k-300ep-lr_0.001-aug_medium1-wd_0.1-do_0.0-sd_0.0--imagenet2012-steps_20k-lr_0.03-res_384"
            ".npz",
            "B_16-i21k-300ep-lr_0.001-aug_medium1-wd_0.1-do_0.0-sd_0.0--imagenet2012-steps_20k-lr_0.03-res_384",
        ),
        ("gs://vit_models/imagenet21k/ViT-L_32.npz", "imagenet21k/ViT-L_32"),
        (
            "https://storage.googleapis.com/vit_models/imagenet21k%2Bimagenet2012/ViT-B_32.npz",
            "imagenet21k+imagenet2012/ViT-B_32",
        ),
        (
            "https://storage.googleapis.com/vit_models/imagenet21k+imagenet2012/ViT-B_32.npz",
            "imagenet21k+imagenet2012/ViT-B_32",
        ),
    ],
)
def test_names_resolve(query: str, expected: str) -> None:
    assert get_checkpoint(query) is CHECKPOINTS[expected]


@pytest.mark.parametrize("entry", list(CHECKPOINTS.values()), ids=list(CHECKPOINTS))
def test_every_name_and_alias_resolves_to_itself(entry: OfficialCheckpoint) -> None:
    for name in (entry.name, entry.name + ".npz", entry.name.upper(), entry.hub_name, *entry.aliases, entry.url):
        assert get_checkpoint(name) is entry


def test_base_url_override_by_argument() -> None:
    entry = CHECKPOINTS["imagenet21k+imagenet2012/ViT-B_16"]
    mirrored = entry.url_for("https://mirror.example/vit/")
    assert mirrored == "https://mirror.example/vit/imagenet21k%2Bimagenet2012/ViT-B_16.npz"
    assert entry.url_for("/data/vit_models") == "/data/vit_models/imagenet21k+imagenet2012/ViT-B_16.npz"
    assert entry.url_for(None) == f"{DEFAULT_BASE_URL}/imagenet21k%2Bimagenet2012/ViT-B_16.npz"
    with pytest.raises(ValueError):
        entry.url_for("  ")


def test_base_url_override_by_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    entry = CHECKPOINTS["imagenet21k/ViT-B_16"]
    monkeypatch.setenv(registry.BASE_URL_ENV_VAR, "file:///srv/mirror/")
    assert registry.resolve_base_url() == "file:///srv/mirror"
    assert entry.url == "file:///srv/mirror/imagenet21k/ViT-B_16.npz"
    assert entry.url_for("https://other.example") == "https://other.example/imagenet21k/ViT-B_16.npz"  # argument wins
    assert get_checkpoint("file:///srv/mirror/imagenet21k/ViT-B_16.npz") is entry
    monkeypatch.setenv(registry.BASE_URL_ENV_VAR, "")
    assert entry.url == f"{DEFAULT_BASE_URL}/imagenet21k/ViT-B_16.npz"


def test_unknown_name_error_lists_suggestions() -> None:
    with pytest.raises(registry.UnknownCheckpointError) as info:
        get_checkpoint("imagenet21k/ViT-B_61")
    error = info.value
    assert isinstance(error, KeyError)
    assert "imagenet21k/ViT-B_16" in error.suggestions
    assert "'imagenet21k/ViT-B_61'" in str(error) and "imagenet21k/ViT-B_16" in str(error)
    assert not str(error).startswith('"')  # readable message, not KeyError's repr


def test_unknown_augreg_name_suggests_the_recommended_file() -> None:
    # lr_0.01 is the B/16 fine-tune timm picked; the README recommends lr_0.03
    wrong = "B_16-i21k-300ep-lr_0.001-aug_medium1-wd_0.1-do_0.0-sd_0.0--imagenet2012-steps_20k-lr_0.01-res_384.npz"
    with pytest.raises(KeyError) as info:
        get_checkpoint(wrong)
    assert info.value.suggestions[0] == wrong.replace("lr_0.01", "lr_0.03").removesuffix(".npz")


def test_unknown_name_without_close_match() -> None:
    with pytest.raises(KeyError, match="No close match"):
        get_checkpoint("qqqqqqqq")


def test_list_checkpoints() -> None:
    assert len(registry.list_checkpoints()) == len(CHECKPOINTS)
    assert {e.collection for e in registry.list_checkpoints("imagenet21k")} == {"imagenet21k"}
    assert len(registry.list_checkpoints("imagenet21k")) == 6
    with pytest.raises(ValueError):
        registry.list_checkpoints("jft300m")


def test_entries_are_frozen() -> None:
    with pytest.raises(AttributeError):
        CHECKPOINTS["imagenet21k/ViT-B_16"].image_size = 384  # type: ignore[misc]


def test_architectures_come_from_the_presets_table() -> None:
    """One table of variants: the registry's dimensions are the presets'."""
    from hf_vit_port import ViTPortConfig

    for entry in CHECKPOINTS.values():
        hidden, layers, heads, mlp, patch = entry.dimensions()
        config = ViTPortConfig.from_preset(entry.variant)
        assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads) == (hidden, layers, heads)
        assert (config.intermediate_size, config.patch_size) == (mlp, patch)


def test_head_widths_agree_with_the_presets_release_table() -> None:
    """The registry records head widths without importing the plugin (so `list` loads no torch); they must be the
    presets' release facts."""
    from hf_vit_port.presets import DATASETS

    assert registry.IMAGENET21K_CLASSES == DATASETS["imagenet21k"]["num_labels"] == DATASETS["augreg"]["num_labels"]
    assert registry.IMAGENET1K_CLASSES == DATASETS["imagenet21k+imagenet2012"]["num_labels"]
