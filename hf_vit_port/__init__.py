"""hf-vit-port: Google's original Vision Transformer checkpoints, faithfully, in transformers.

Importing the package registers `vit_port` with transformers' Auto classes and pipelines. This package is the
plugin (configuration, model, `.npz` format, loading); the tooling built on it (conversion, publishing, training,
the `hf-vit-port` command) is `hf_vit_port_tools`.

The model classes are imported on first use: registration needs only the configuration, so `import hf_vit_port`
costs what importing transformers' configuration does, and a tool that only reads or writes files (an unverified
conversion, say) never loads transformers' modeling stack.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from transformers import AutoConfig, AutoModel, AutoModelForImageClassification

from .configuration_vit_port import ViTPortConfig

if TYPE_CHECKING:
    from .modeling_vit_port import ViTPortForImageClassification, ViTPortModel, ViTPortPreTrainedModel

_MODELS = ("ViTPortModel", "ViTPortForImageClassification", "ViTPortPreTrainedModel")


class _ModelOnFirstUse(type):
    """The class of a stand-in registered with an Auto class: any attribute transformers asks of it (from_pretrained,
    _from_config, ...) comes from the real model class, imported then."""

    def __getattr__(cls, name: str) -> Any:
        return getattr(importlib.import_module(".modeling_vit_port", __name__).__dict__[cls.__name__], name)


def _stand_in(name: str) -> type:
    # config_class and __name__ are what transformers checks without calling anything (register, pipelines).
    return _ModelOnFirstUse(name, (), {"config_class": ViTPortConfig, "__module__": f"{__name__}.modeling_vit_port"})


AutoConfig.register(ViTPortConfig.model_type, ViTPortConfig, exist_ok=True)
AutoModel.register(ViTPortConfig, _stand_in("ViTPortModel"), exist_ok=True)
AutoModelForImageClassification.register(ViTPortConfig, _stand_in("ViTPortForImageClassification"), exist_ok=True)


def __getattr__(name: str) -> Any:
    if name in _MODELS:
        value = getattr(importlib.import_module(".modeling_vit_port", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__version__ = "0.1.0"
__all__ = ["ViTPortConfig", "ViTPortModel", "ViTPortForImageClassification", "ViTPortPreTrainedModel"]
