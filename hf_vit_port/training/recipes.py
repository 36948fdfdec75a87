"""The from-scratch recipe as plain data (no heavy imports, so the CLI can show its defaults cheaply)."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_DATASET = "uoft-cs/cifar100"


@dataclass(frozen=True)
class ScratchRecipe:
    """Architecture, optimisation and augmentation of a from-scratch run."""

    image_size: int = 72
    patch_size: int = 6
    hidden_size: int = 64
    num_hidden_layers: int = 8
    num_attention_heads: int = 4
    intermediate_size: int = 128  # transformer_units [128, 64]: MLP 64 -> 128 -> 64
    dropout: float = 0.1  # Keras: attention dropout and MLP dropout 0.1
    classifier: str = "token"
    hidden_act: str = "gelu"  # keras.activations.gelu is the exact (erf) GELU
    epochs: float = 100
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    batch_size: int = 256
    adam_epsilon: float = 1e-7  # Keras' AdamW default
    validation_fraction: float = 0.1  # Keras: validation_split=0.1
    rotation: float = 0.02  # fraction of a full turn, as Keras' RandomRotation(factor=0.02)
    zoom: float = 0.2  # Keras' RandomZoom(height_factor=0.2, width_factor=0.2)
    normalisation_samples: int = 10_000  # training images the normalisation statistics are computed on


KERAS_CIFAR100 = ScratchRecipe()
"""The Keras ViT example's recipe for CIFAR-100."""


__all__ = ["DEFAULT_DATASET", "KERAS_CIFAR100", "ScratchRecipe"]
