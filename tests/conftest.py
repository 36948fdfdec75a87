"""Shared fixtures: tiny configurations that build in milliseconds, and an isolated Hugging Face home."""

import pytest

from hf_vit_port import ViTPortConfig

TINY = dict(
    image_size=16,
    patch_size=4,
    hidden_size=32,
    intermediate_size=64,
    num_attention_heads=4,
    num_hidden_layers=2,
    num_labels=5,
)


def tiny_config(**overrides) -> ViTPortConfig:
    return ViTPortConfig(**{**TINY, **overrides})


@pytest.fixture(autouse=True)
def isolated_hf_home(tmp_path_factory, monkeypatch):
    """No test reads or writes the user's Hugging Face cache, or reaches the network."""
    home = tmp_path_factory.mktemp("hf_home")
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    return home
