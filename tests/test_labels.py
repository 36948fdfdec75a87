"""The packaged ImageNet label files and their API (hf_vit_port.labels)."""

from __future__ import annotations

import re

import pytest

from hf_vit_port import labels

WNID = re.compile(r"^n\d{8}$")


@pytest.mark.parametrize("name, count", [("imagenet1k", 1000), ("imagenet21k", 21843)])
def test_counts(name: str, count: int) -> None:
    assert len(labels.load_labels(name)) == count
    assert len(labels.load_synsets(name)) == count
    assert sorted(labels.load_labels(name)) == list(range(count))


@pytest.mark.parametrize("name", labels.LABEL_SETS)
def test_synsets_are_sorted_unique_wnids(name: str) -> None:
    synsets = labels.load_synsets(name)
    assert all(WNID.match(wnid) for wnid in synsets)
    assert synsets == sorted(synsets)
    assert len(set(synsets)) == len(synsets)


@pytest.mark.parametrize("name", labels.LABEL_SETS)
def test_every_label_non_empty(name: str) -> None:
    for index, words in labels.load_labels(name).items():
        assert words.strip() == words and words, (name, index)
        assert "\t" not in words and "\n" not in words


def test_imagenet21k_has_googles_two_extra_classes() -> None:
    synsets = labels.load_synsets("imagenet21k")
    assert "n03931044" in synsets
    assert "n09859684" in synsets
    names = labels.load_labels("imagenet21k")
    assert names[synsets.index("n03931044")] == "picture, image, icon, ikon"
    assert names[synsets.index("n09859684")] == "bleacher"


def test_imagenet1k_spot_checks() -> None:
    synsets = labels.load_synsets("imagenet1k")
    names = labels.load_labels("imagenet1k")
    assert (synsets[0], names[0]) == ("n01440764", "tench, Tinca tinca")
    assert (synsets[1], names[1]) == ("n01443537", "goldfish, Carassius auratus")
    assert (synsets[999], names[999]) == ("n15075141", "toilet tissue, toilet paper, bathroom tissue")


def test_imagenet21k_spot_checks() -> None:
    synsets = labels.load_synsets("imagenet21k")
    names = labels.load_labels("imagenet21k")
    assert (synsets[0], names[0]) == ("n00004475", "organism, being")
    assert synsets[-1] == "n15102894"
    # the 21k head is not a superset of the 1k head: teddy bear is missing from Google's ImageNet-21k
    assert set(labels.load_synsets("imagenet1k")) - set(synsets) == {"n04399382"}
    tench = synsets.index("n01440764")
    assert names[tench] == "tench, Tinca tinca"


def test_labels_for_num_classes() -> None:
    assert labels.labels_for_num_classes(1000) == labels.load_labels("imagenet1k")
    assert labels.labels_for_num_classes(21843) == labels.load_labels("imagenet21k")
    for n in (0, 10, 100, 21841, 21842):
        assert labels.labels_for_num_classes(n) is None


def test_returned_containers_are_fresh_copies() -> None:
    first = labels.load_labels("imagenet1k")
    first[0] = "changed"
    labels.load_synsets("imagenet1k").append("n00000000")
    assert labels.load_labels("imagenet1k")[0] == "tench, Tinca tinca"
    assert len(labels.load_synsets("imagenet1k")) == 1000


@pytest.mark.parametrize("loader", [labels.load_labels, labels.load_synsets])
@pytest.mark.parametrize("bad", ["imagenet", "ImageNet1k", "imagenet-21k", ""])
def test_unknown_name_error_lists_valid_names(loader, bad: str) -> None:
    with pytest.raises(ValueError) as info:
        loader(bad)
    message = str(info.value)
    assert repr(bad) in message
    assert "'imagenet1k'" in message and "'imagenet21k'" in message


def test_module_uses_only_stdlib_and_the_presets_table() -> None:
    source = open(labels.__file__, encoding="utf-8").read()
    imported = set(re.findall(r"^\s*(?:from|import)\s+([\w.]+)", source, flags=re.MULTILINE))
    assert imported <= {"__future__", "functools", "importlib.resources", ".presets"}
