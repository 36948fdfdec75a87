"""Configuration of the faithful ViT port: every architectural choice of Google's original Vision Transformer."""

import functools
import logging
from typing import Any, Literal

from huggingface_hub.dataclasses import strict
from transformers import PretrainedConfig

from .presets import preset_kwargs

logger = logging.getLogger(__name__)

# Written into every saved config so that a repo loads through any of the three Auto classes with
# `trust_remote_code=True`, whichever model class saved it.
AUTO_MAP = {
    "AutoConfig": "configuration_vit_port.ViTPortConfig",
    "AutoModel": "modeling_vit_port.ViTPortModel",
    "AutoModelForImageClassification": "modeling_vit_port.ViTPortForImageClassification",
}

CLASSIFIERS = ("token", "gap")
# Keys that transformers itself passes to or reads from every configuration.
_HANDLED_BY_TRANSFORMERS = frozenset(
    {"num_labels", "auto_map", "model_type", "torch_dtype", "name_or_path", "_name_or_path", "_commit_hash",
     "output_attentions", "attn_implementation", "experts_implementation", "per_layer_config", "use_return_dict",
     "_attn_implementation_autoset", "tie_last_hidden_states",
     "use_cache"}  # the Trainer sets use_cache=False on any model it trains
)
POSITION_INTERPOLATIONS = ("official", "bilinear", "bicubic")


@functools.cache
def _transformers_config_fields() -> frozenset[str]:
    """Every field transformers itself gives a configuration or a generation configuration (e.g. the `use_cache`
    the Trainer writes): known to this version, whatever a model of ours does with it."""
    from transformers import GenerationConfig

    return frozenset(PretrainedConfig().to_dict()) | frozenset(GenerationConfig().to_dict())


# Far above any ViT ever trained (ViT-22B: width 6144, 48 layers, MLP 24576), and far below what would make a config
# file (or the header of an .npz array) allocate or loop for minutes before failing.
SIZE_LIMITS = {
    "num_channels": 64,
    "hidden_size": 65536,
    "intermediate_size": 262144,
    "num_attention_heads": 1024,
    "num_hidden_layers": 1024,
    "representation_size": 65536,
    "num_labels": 1_000_000,
    "image_size": 16384,
    "patch_size": 1024,
}


def to_pair(value: int | list[int] | tuple[int, int]) -> tuple[int, int]:
    """An image or patch size as (height, width)."""
    if isinstance(value, int):
        return (value, value)
    height, width = value
    return (int(height), int(width))


@strict
class ViTPortConfig(PretrainedConfig):
    r"""
    Configuration of [`ViTPortModel`] and [`ViTPortForImageClassification`]. The defaults are ViT-B/16 as released on
    ImageNet-21k by Google, with the original numerics (tanh-approximated GELU, LayerNorm eps 1e-6).

    Args:
        image_size (`int` or `(height, width)`, *optional*, defaults to 224):
            Resolution the position embeddings are laid out for. Inputs of another size need
            `interpolate_pos_encoding=True`.
        patch_size (`int` or `(height, width)`, *optional*, defaults to 16):
            Side of the square (or rectangular) patches; the image size must be a multiple of it.
        num_channels (`int`, *optional*, defaults to 3):
            Channels of the input images.
        hidden_size (`int`, *optional*, defaults to 768):
            Width of the encoder (the token dimension).
        intermediate_size (`int`, *optional*, defaults to 3072):
            Width of the hidden layer of each MLP block.
        num_attention_heads (`int`, *optional*, defaults to 12):
            Attention heads per block; must divide `hidden_size`.
        num_hidden_layers (`int`, *optional*, defaults to 12):
            Number of encoder blocks.
        hidden_act (`str`, *optional*, defaults to `"gelu_pytorch_tanh"`):
            MLP activation; the original uses the tanh approximation of GELU (`jax.nn.gelu`'s default).
        layer_norm_eps (`float`, *optional*, defaults to 1e-6):
            Epsilon of every LayerNorm, as Flax's default used by the original.
        hidden_dropout_prob (`float`, *optional*, defaults to 0.0):
            Dropout after the embeddings, inside the MLP and after each residual branch.
        attention_probs_dropout_prob (`float`, *optional*, defaults to 0.0):
            Dropout on the attention probabilities.
        drop_path_rate (`float`, *optional*, defaults to 0.0):
            Stochastic depth: the largest drop probability of a residual branch, reached linearly at the last block.
        qkv_bias (`bool`, *optional*, defaults to `True`):
            Whether the query, key and value projections have a bias.
        representation_size (`int`, *optional*):
            Width of the pre-logits layer (Dense + tanh) between the pooled token and the head, as in the
            ImageNet-21k releases. `None` means no pre-logits layer.
        classifier (`str`, *optional*, defaults to `"token"`):
            How the image is pooled: `"token"` uses a prepended CLS token, `"gap"` averages the patch tokens (and
            the model has no CLS token).
        position_embedding_interpolation (`str`, *optional*, defaults to `"official"`):
            How position embeddings are resampled for another grid, both at load time and with
            `interpolate_pos_encoding=True`: `"official"` is the original code's linear zoom with the grid's
            corners kept (`scipy.ndimage.zoom(order=1)`), `"bilinear"` and `"bicubic"` are torch's resizes with
            half-pixel centres.
        initializer_range (`float`, *optional*, defaults to 0.02):
            Standard deviation of the position embeddings at initialisation (the original's value).
        num_labels (`int`, *optional*, defaults to 2):
            Number of classes of the head; 0 builds the classification model without any head (features only).
        id2label / label2id / problem_type:
            As everywhere in transformers: label names, and `"single_label_classification"` (softmax
            cross-entropy), `"multi_label_classification"` (sigmoid) or `"regression"` (MSE) for the loss.

    Example:

    ```python
    >>> from hf_vit_port import ViTPortConfig, ViTPortForImageClassification
    >>> config = ViTPortConfig.from_preset("B/16", dataset="imagenet21k+imagenet2012")
    >>> config.image_size, config.num_labels, config.representation_size
    (384, 1000, None)
    ```
    """

    model_type = "vit_port"

    image_size: int | list[int] | tuple[int, int] = 224
    patch_size: int | list[int] | tuple[int, int] = 16
    num_channels: int = 3
    hidden_size: int = 768
    intermediate_size: int = 3072
    num_attention_heads: int = 12
    num_hidden_layers: int = 12
    hidden_act: str = "gelu_pytorch_tanh"
    layer_norm_eps: float = 1e-6
    hidden_dropout_prob: float | int = 0.0
    attention_probs_dropout_prob: float | int = 0.0
    drop_path_rate: float | int = 0.0
    qkv_bias: bool = True
    representation_size: int | None = None
    classifier: Literal["token", "gap"] = "token"
    position_embedding_interpolation: Literal["official", "bilinear", "bicubic"] = "official"
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs: Any) -> None:
        unknown = sorted(set(kwargs) - _HANDLED_BY_TRANSFORMERS - _transformers_config_fields())
        if unknown:
            logger.warning(
                "ViTPortConfig: unknown fields %s (written by a newer hf-vit-port?) are kept but not used by this version.",
                ", ".join(unknown),
            )
        _refuse_absurd_label_count(kwargs)
        # JSON turns tuples into lists; keep sizes as plain ints or (h, w) pairs so configs compare equal.
        if isinstance(self.image_size, list):
            self.image_size = tuple(self.image_size)
        if isinstance(self.patch_size, list):
            self.patch_size = tuple(self.patch_size)
        super().__post_init__(**kwargs)
        if self.id2label and not self.label2id:
            self.label2id = {label: index for index, label in self.id2label.items()}

    @property
    def grid_size(self) -> tuple[int, int]:
        """Patches per column and per row at `image_size`."""
        (image_h, image_w), (patch_h, patch_w) = to_pair(self.image_size), to_pair(self.patch_size)
        return image_h // patch_h, image_w // patch_w

    @property
    def num_prefix_tokens(self) -> int:
        """Tokens before the patch tokens: the CLS token, when the classifier uses one."""
        return 1 if self.classifier == "token" else 0

    @property
    def pooled_size(self) -> int:
        """Width of the features the head sees: the pre-logits width if there is one, else the encoder's."""
        return self.representation_size or self.hidden_size

    def validate_sizes(self) -> None:
        """Refuse absurd sizes before anything is allocated or iterated over."""
        for name, limit in SIZE_LIMITS.items():
            value = getattr(self, name)
            values = to_pair(value) if name in ("image_size", "patch_size") else (value or 0,)
            if max(values) > limit:
                raise ValueError(f"ViTPortConfig.{name}={value} is beyond any ViT (at most {limit:,}); the config "
                                 f"or checkpoint is damaged or not a ViT.")

    def validate_architecture(self) -> None:
        """Refuse configurations no ViT can be built from, saying how to fix them."""
        for name in ("num_channels", "hidden_size", "intermediate_size", "num_attention_heads", "num_hidden_layers"):
            if getattr(self, name) <= 0:
                raise ValueError(f"ViTPortConfig.{name} must be a positive integer, got {getattr(self, name)}.")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be divisible by num_attention_heads "
                f"({self.num_attention_heads}); choose a head count that divides it, e.g. "
                f"{_divisor_near(self.hidden_size, self.num_attention_heads)}."
            )
        image, patch = to_pair(self.image_size), to_pair(self.patch_size)
        if min(image) <= 0 or min(patch) <= 0:
            raise ValueError(f"image_size {self.image_size} and patch_size {self.patch_size} must be positive.")
        if image[0] % patch[0] or image[1] % patch[1]:
            raise ValueError(
                f"image_size {self.image_size} is not divisible by patch_size {self.patch_size}; use an image size "
                f"that is a multiple of the patch size, e.g. {(image[0] // patch[0] or 1) * patch[0]}."
            )
        if self.representation_size is not None and self.representation_size <= 0:
            raise ValueError(
                f"representation_size must be a positive width or None (no pre-logits), got {self.representation_size}."
            )
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob", "drop_path_rate"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}.")
        if self.classifier not in CLASSIFIERS:
            raise ValueError(f"classifier must be one of {CLASSIFIERS}, got {self.classifier!r}.")
        if self.position_embedding_interpolation not in POSITION_INTERPOLATIONS:
            raise ValueError(
                f"position_embedding_interpolation must be one of {POSITION_INTERPOLATIONS}, "
                f"got {self.position_embedding_interpolation!r}."
            )
        if self.layer_norm_eps <= 0:
            raise ValueError(f"layer_norm_eps must be positive, got {self.layer_norm_eps}.")

    @classmethod
    def from_preset(cls, variant: str, dataset: str = "imagenet21k", **overrides: Any) -> "ViTPortConfig":
        """
        The configuration of an official variant ("Ti/16", "S/16", "B/8", "B/16", "B/32", "L/16", "L/32", "H/14",
        or a file name such as "ViT-B_16-224") with the defaults of a release (`"imagenet21k"`,
        `"imagenet21k+imagenet2012"`, `"augreg"`, `"augreg+imagenet2012"`). Any field can be overridden.
        """
        return cls(**{**preset_kwargs(variant, dataset), **overrides})


def _refuse_absurd_label_count(kwargs: dict[str, Any]) -> None:
    """transformers builds an id2label entry per label before any validator runs: check the count first."""
    count = kwargs.get("num_labels") or len(kwargs.get("id2label") or ())
    if isinstance(count, int) and count > SIZE_LIMITS["num_labels"]:
        raise ValueError(f"ViTPortConfig.num_labels={count} is beyond any ViT (at most {SIZE_LIMITS['num_labels']:,}); "
                         f"the config or checkpoint is damaged or not a ViT.")


def _divisor_near(value: int, target: int) -> int:
    divisors = [d for d in range(1, value + 1) if value % d == 0]
    return min(divisors, key=lambda d: abs(d - target))
