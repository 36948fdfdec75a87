"""PyTorch modules of the faithful ViT port: Google's original Vision Transformer, pre-logits layer included."""

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutputWithPooling, ImageClassifierOutput
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.models.vit.modeling_vit import eager_attention_forward
from transformers.utils.generic import can_return_tuple
from transformers.utils.output_capturing import capture_outputs

from .configuration_vit_port import AUTO_MAP, ViTPortConfig, to_pair
from .resample import resample_position_embeddings

def drop_path(hidden_states: torch.Tensor, rate: float, training: bool) -> torch.Tensor:
    """Stochastic depth: drop a whole residual branch per sample, rescaling the kept ones."""
    if rate == 0.0 or not training:
        return hidden_states
    keep = 1.0 - rate
    mask = hidden_states.new_empty((hidden_states.shape[0],) + (1,) * (hidden_states.ndim - 1)).bernoulli_(keep)
    return hidden_states * mask / keep


def _xavier(linear: nn.Linear, config: ViTPortConfig) -> None:
    init.xavier_uniform_(linear.weight)
    if linear.bias is not None:
        init.zeros_(linear.bias)


def _fused_qkv(linear: nn.Linear, config: ViTPortConfig) -> None:
    # Xavier-uniform of each [hidden, hidden] projection (flax's DenseGeneral flattens the heads); the three share
    # their fans, so one uniform draw over the fused matrix has the same distribution.
    bound = math.sqrt(3.0 / config.hidden_size)
    init.uniform_(linear.weight, -bound, bound)
    if linear.bias is not None:
        init.zeros_(linear.bias)


def _mlp(linear: nn.Linear, config: ViTPortConfig) -> None:
    init.xavier_uniform_(linear.weight)
    init.normal_(linear.bias, std=1e-6)


def _lecun(linear: nn.Linear, config: ViTPortConfig) -> None:
    init.lecun_normal_(linear.weight)
    init.zeros_(linear.bias)


def _zeros(linear: nn.Linear, config: ViTPortConfig) -> None:
    init.zeros_(linear.weight)
    init.zeros_(linear.bias)


_LINEAR_INITS = {"xavier": _xavier, "fused_qkv": _fused_qkv, "mlp": _mlp, "lecun": _lecun, "zeros": _zeros}


def tagged(linear: nn.Linear, init_scheme: str) -> nn.Linear:
    """Mark a Linear with the initialiser the original uses for it (a key of `_LINEAR_INITS`)."""
    linear.init_scheme = init_scheme
    return linear


class ViTPortEmbeddings(nn.Module):
    """Patches through a strided convolution, the CLS token prepended (for the "token" classifier), positions added."""

    def __init__(self, config: ViTPortConfig):
        super().__init__()
        self.config = config
        patch_size = to_pair(config.patch_size)
        self.image_size = to_pair(config.image_size)
        self.grid_size = config.grid_size
        self.patch_embeddings = nn.Conv2d(
            config.num_channels, config.hidden_size, kernel_size=patch_size, stride=patch_size
        )
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size)) if config.classifier == "token" else None
        num_positions = config.num_prefix_tokens + self.grid_size[0] * self.grid_size[1]
        self.position_embeddings = nn.Parameter(torch.zeros(1, num_positions, config.hidden_size))
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def position_embeddings_for(self, grid_size: tuple[int, int]) -> torch.Tensor:
        """The position embeddings, resampled when the input's patch grid differs from the configured one."""
        if grid_size == self.grid_size:
            return self.position_embeddings
        return resample_position_embeddings(
            self.position_embeddings,
            old_grid=self.grid_size,
            new_grid=grid_size,
            num_prefix_tokens=self.config.num_prefix_tokens,
            mode=self.config.position_embedding_interpolation,
        )

    def forward(self, pixel_values: torch.Tensor, interpolate_pos_encoding: bool = False) -> torch.Tensor:
        height, width = pixel_values.shape[-2:]
        if not interpolate_pos_encoding and (height, width) != self.image_size:
            raise ValueError(
                f"Input image size ({height}x{width}) doesn't match the model's {self.image_size[0]}x"
                f"{self.image_size[1]}; pass interpolate_pos_encoding=True to resample the position embeddings."
            )
        patches = self.patch_embeddings(pixel_values)
        grid_size = tuple(patches.shape[-2:])
        tokens = patches.flatten(2).transpose(1, 2)
        if self.cls_token is not None:
            tokens = torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1)
        return self.dropout(tokens + self.position_embeddings_for(grid_size))


class ViTPortAttention(nn.Module):
    """Multi-head self-attention with one fused query/key/value projection, dispatched to eager/SDPA/flash kernels."""

    def __init__(self, config: ViTPortConfig):
        super().__init__()
        self.config = config
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.scaling = self.head_dim**-0.5
        self.attention_dropout = config.attention_probs_dropout_prob
        self.is_causal = False
        self.qkv = tagged(nn.Linear(config.hidden_size, 3 * config.hidden_size, bias=config.qkv_bias), "fused_qkv")
        self.proj = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(
        self, hidden_states: torch.Tensor, query_tokens: int | None = None, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`query_tokens=n` attends from the first n tokens only (to every token): the output has n tokens."""
        batch, length, _ = hidden_states.shape
        if query_tokens is None:
            qkv = self.qkv(hidden_states).view(batch, length, 3, self.num_heads, self.head_dim)
            query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        else:
            width = self.num_heads * self.head_dim
            weight, bias = self.qkv.weight, self.qkv.bias
            query = F.linear(hidden_states[:, :query_tokens], weight[:width], None if bias is None else bias[:width])
            query = query.view(batch, query_tokens, self.num_heads, self.head_dim).transpose(1, 2)
            key_value = F.linear(hidden_states, weight[width:], None if bias is None else bias[width:])
            key, value = key_value.view(batch, length, 2, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        attention_interface: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(
            self.config._attn_implementation, eager_attention_forward
        )
        attn_output, attn_weights = attention_interface(
            self,
            query,
            key,
            value,
            None,
            dropout=self.attention_dropout if self.training else 0.0,
            scaling=self.scaling,
            **kwargs,
        )
        return self.proj(attn_output.reshape(batch, query.shape[2], -1)), attn_weights


class ViTPortMLP(nn.Module):
    """The original MlpBlock: Dense, GELU, dropout, Dense, dropout."""

    def __init__(self, config: ViTPortConfig):
        super().__init__()
        self.fc1 = tagged(nn.Linear(config.hidden_size, config.intermediate_size), "mlp")
        self.activation = ACT2FN[config.hidden_act]
        self.fc2 = tagged(nn.Linear(config.intermediate_size, config.hidden_size), "mlp")
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        hidden_states = self.dropout(self.activation(self.fc1(hidden_states)))
        return self.dropout(self.fc2(hidden_states))


class ViTPortLayer(GradientCheckpointingLayer):
    """A pre-LayerNorm encoder block: x + attention(norm1(x)), then x + mlp(norm2(x)), with stochastic depth."""

    def __init__(self, config: ViTPortConfig, *, drop_path_rate: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.attention = ViTPortAttention(config)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.norm2 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = ViTPortMLP(config)
        self.drop_path_rate = drop_path_rate

    def forward(self, hidden_states: torch.Tensor, query_tokens: int | None = None, **kwargs: Any) -> torch.Tensor:
        """`query_tokens=n` computes the block's output for the first n tokens only (see ViTPortAttention)."""
        attn_output, _ = self.attention(self.norm1(hidden_states), query_tokens=query_tokens, **kwargs)
        if query_tokens is not None:
            hidden_states = hidden_states[:, :query_tokens]
        hidden_states = hidden_states + drop_path(self.dropout(attn_output), self.drop_path_rate, self.training)
        mlp_output = self.mlp(self.norm2(hidden_states))
        return hidden_states + drop_path(mlp_output, self.drop_path_rate, self.training)


class ViTPortPreTrainedModel(PreTrainedModel):
    """Weight initialisation as the original Flax code, and the plumbing shared by the ViTPort models."""

    config_class = ViTPortConfig
    config: ViTPortConfig
    base_model_prefix = "vit"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    supports_gradient_checkpointing = True
    _no_split_modules = ["ViTPortEmbeddings", "ViTPortLayer"]
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    _can_compile_fullgraph = True
    _can_record_outputs = {"hidden_states": ViTPortLayer, "attentions": ViTPortAttention}

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        # The original's initialisers (flax defaults unless the ViT code names another), so that training from
        # scratch behaves like the reference recipes. transformers visits every leaf module; a Linear's role is
        # read from the `init_scheme` its owner tagged it with.
        if isinstance(module, ViTPortEmbeddings):
            if module.cls_token is not None:
                init.zeros_(module.cls_token)
            init.normal_(module.position_embeddings, std=self.config.initializer_range)
        elif isinstance(module, nn.Conv2d):
            init.lecun_normal_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            _LINEAR_INITS[getattr(module, "init_scheme", "xavier")](module, self.config)

    @classmethod
    def from_pretrained(cls, *args: Any, **kwargs: Any) -> "ViTPortPreTrainedModel":
        # Pickled `.bin` weights can run code when unpickled: only safetensors are read unless the caller opts in
        # with `use_safetensors=False`.
        kwargs.setdefault("use_safetensors", True)
        source = args[0] if args else kwargs.get("pretrained_model_name_or_path")
        try:
            return super().from_pretrained(*args, **kwargs)
        except SafetensorError as error:
            raise OSError(f"{source}: model.safetensors is corrupted or truncated ({error}); download or convert it "
                          f"again.") from None
        except OSError as error:
            if kwargs["use_safetensors"] and "model.safetensors" in str(error):
                raise OSError(f"{error} Pickled weights (.bin) are only read with use_safetensors=False, since "
                              f"unpickling can run code.") from None
            raise

    def save_pretrained(self, save_directory: str | Path, *args: Any, **kwargs: Any) -> None:
        self.config.auto_map = {**AUTO_MAP, **(getattr(self.config, "auto_map", None) or {})}
        super().save_pretrained(save_directory, *args, **kwargs)

    @classmethod
    def from_npz(cls, path: str | Path, *, resample: str = "official", **config_overrides: Any) -> "ViTPortPreTrainedModel":
        """
        Build a model from one of Google's original `.npz` checkpoints. The architecture is read from the arrays;
        `config_overrides` change it (image or patch size, labels, pre-logits), and whatever no longer fits is
        adapted (`resample` names the position-embedding resize) or initialised fresh, as
        `model.loading_summary()` reports.
        """
        try:  # absolute and guarded: the copy of this file that repos ship for trust_remote_code has no loader
            from hf_vit_port.loading import load_checkpoint
        except ImportError as error:
            raise ImportError("from_npz needs the hf-vit-port package (pip install hf-vit-port).") from error

        model, summary = load_checkpoint(path, cls, resample=resample, **config_overrides)
        model._loading_summary = summary
        return model

    def loading_summary(self, *, print_summary: bool = True) -> list[dict[str, str]]:
        """What happened to every parameter when this model was built with `from_npz`."""
        summary = getattr(self, "_loading_summary", None)
        if summary is None:
            raise ValueError("This model was not loaded with from_npz, so there is no loading summary to show.")
        if print_summary:
            print(summary.format())
        return summary.rows()


class ViTPortModel(ViTPortPreTrainedModel):
    """The encoder: embeddings, blocks, final LayerNorm, then pooling and the optional pre-logits layer."""

    def __init__(self, config: ViTPortConfig):
        super().__init__(config)
        self.embeddings = ViTPortEmbeddings(config)
        rates = [config.drop_path_rate * i / max(config.num_hidden_layers - 1, 1) for i in range(config.num_hidden_layers)]
        self.layers = nn.ModuleList([ViTPortLayer(config, drop_path_rate=rate) for rate in rates])
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.pre_logits = (
            tagged(nn.Linear(config.hidden_size, config.representation_size), "lecun")
            if config.representation_size
            else None
        )
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.embeddings.patch_embeddings

    def forward_features(
        self, pixel_values: torch.Tensor, *, interpolate_pos_encoding: bool = False, pooled_token_only: bool = False,
        **kwargs: Any,
    ) -> torch.Tensor:
        """
        Normalised token features `[batch, tokens, hidden]`. With `pooled_token_only` (for the "token" classifier),
        the last block computes the CLS token alone, giving `[batch, 1, hidden]`: its keys and values still come
        from every token, but none of the rest of the last block is spent on tokens that pooling drops.
        """
        pixel_values = pixel_values.to(self.embeddings.patch_embeddings.weight.dtype)
        hidden_states = self.embeddings(pixel_values, interpolate_pos_encoding=bool(interpolate_pos_encoding))
        layers = list(self.layers)
        last = layers.pop() if pooled_token_only and self.config.classifier == "token" else None
        for layer in layers:
            hidden_states = layer(hidden_states, **kwargs)
        if last is not None:
            hidden_states = last(hidden_states, query_tokens=1, **kwargs)
        return self.layernorm(hidden_states)

    def pool(self, last_hidden_state: torch.Tensor) -> torch.Tensor:
        """The image's features: the CLS token (or the mean token), through the pre-logits layer if there is one."""
        if self.config.classifier == "token":
            pooled = last_hidden_state[:, 0]
        else:
            pooled = last_hidden_state.mean(dim=1)
        return torch.tanh(self.pre_logits(pooled)) if self.pre_logits is not None else pooled

    @capture_outputs(tie_last_hidden_states=False)
    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        interpolate_pos_encoding: bool | None = None,
        **kwargs: Any,
    ) -> BaseModelOutputWithPooling:
        r"""
        pixel_values (`torch.FloatTensor` of shape `(batch_size, num_channels, height, width)`):
            Images scaled as the checkpoint expects ([-1, 1] for the original releases).
        interpolate_pos_encoding (`bool`, *optional*):
            Resample the position embeddings when the input size differs from `config.image_size`.

        Returns a `BaseModelOutputWithPooling` whose `pooler_output` is the pre-logits features (or the pooled
        token when the model has no pre-logits layer).
        """
        if pixel_values is None:
            raise ValueError("ViTPortModel needs pixel_values.")
        last_hidden_state = self.forward_features(
            pixel_values, interpolate_pos_encoding=interpolate_pos_encoding, **kwargs
        )
        return BaseModelOutputWithPooling(last_hidden_state=last_hidden_state, pooler_output=self.pool(last_hidden_state))


class NoClassificationHead(nn.Module):
    """The head of a model built without one (`num_labels=0`, e.g. the all-zero head of the 2020 imagenet21k files):
    asking it for logits is a mistake to report, not a reason to hand back features under the name of logits."""

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        raise ValueError(
            "This model has no classification head (num_labels=0): it is a feature extractor. Use "
            "pipeline('image-feature-extraction', pool=True), ViTPortModel's pooler_output, or `hf-vit-port embed`."
        )


class ViTPortForImageClassification(ViTPortPreTrainedModel):
    """The encoder with the original head: pooled features -> pre-logits (if configured) -> linear classifier."""

    def __init__(self, config: ViTPortConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.vit = ViTPortModel(config)
        # The original zero-initialises the head.
        self.classifier = (
            tagged(nn.Linear(config.pooled_size, config.num_labels), "zeros") if config.num_labels > 0 else NoClassificationHead()
        )
        self.post_init()

    def forward_head(self, last_hidden_state: torch.Tensor, *, pre_logits: bool = False) -> torch.Tensor:
        """Logits from token features, or with `pre_logits=True` the features the classifier sees."""
        features = self.vit.pool(last_hidden_state)
        return features if pre_logits else self.classifier(features)

    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        interpolate_pos_encoding: bool | None = None,
        **kwargs: Any,
    ) -> ImageClassifierOutput:
        r"""
        labels (`torch.LongTensor` of shape `(batch_size,)`, or float targets for regression and multi-label):
            When given, the loss of `config.problem_type` (inferred from the labels as in transformers if unset).
        """
        wants_outputs = any(
            kwargs.get(name, getattr(self.config, name, False)) for name in ("output_hidden_states", "output_attentions")
        )
        if self.config.classifier == "token" and pixel_values is not None and not wants_outputs:
            # Only the CLS token reaches the head: skip the rest of the last block's work (the same logits).
            layer_kwargs = {k: v for k, v in kwargs.items() if k not in ("output_hidden_states", "output_attentions")}
            tokens = self.vit.forward_features(
                pixel_values, interpolate_pos_encoding=bool(interpolate_pos_encoding), pooled_token_only=True,
                **layer_kwargs,
            )
            outputs = BaseModelOutputWithPooling(pooler_output=self.vit.pool(tokens))
        else:
            outputs = self.vit(pixel_values, interpolate_pos_encoding=interpolate_pos_encoding, **kwargs)
        logits = self.classifier(outputs.pooler_output)
        loss = None
        if labels is not None:
            if self.config.num_labels == 0:
                raise ValueError("This model has no classification head (num_labels=0), so it cannot compute a loss.")
            # The Trainer's `num_items_in_batch`: the mean over the whole batch (all processes, accumulated steps).
            loss = self.loss_function(labels, logits, self.config, **kwargs)
        return ImageClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


ViTPortConfig.register_for_auto_class()
ViTPortModel.register_for_auto_class("AutoModel")
ViTPortForImageClassification.register_for_auto_class("AutoModelForImageClassification")

__all__ = ["NoClassificationHead", "ViTPortModel", "ViTPortForImageClassification", "ViTPortPreTrainedModel"]
