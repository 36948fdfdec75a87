"""hf-vit-port: Google's original Vision Transformer checkpoints, faithfully, in transformers.

Importing the package registers `vit_port` with transformers' Auto classes and pipelines. This package is the
plugin (configuration, model, `.npz` format, loading); the tooling built on it (conversion, publishing, training,
the `hf-vit-port` command) is `hf_vit_port_tools`.

Registration happens when transformers imports its Auto modules (at once if it already has), and the model classes
are imported on first use: `import hf_vit_port` costs what importing transformers' configuration does, and a tool
that only reads or writes files (an unverified conversion, say) never loads transformers' modeling stack. The image
processor waits for transformers' `AutoImageProcessor` module (as `pipeline` imports it), because its own module
imports transformers' whole image-processing stack.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import TYPE_CHECKING, Any

from ._on_import import when_imported
from .configuration_vit_port import ViTPortConfig

if TYPE_CHECKING:
    from .image_processing_vit_port import ViTPortImageProcessor
    from .modeling_vit_port import ViTPortForImageClassification, ViTPortModel, ViTPortPreTrainedModel

_MODELS = ("ViTPortModel", "ViTPortForImageClassification", "ViTPortPreTrainedModel")
# What is imported on first use, and from where.
_LAZY = {**dict.fromkeys(_MODELS, ".modeling_vit_port"), "ViTPortImageProcessor": ".image_processing_vit_port"}


class _ModelOnFirstUse(type):
    """The class of a stand-in registered with an Auto class: any attribute transformers asks of it (from_pretrained,
    _from_config, ...) comes from the real model class, imported then."""

    def __getattr__(cls, name: str) -> Any:
        return getattr(importlib.import_module(".modeling_vit_port", __name__).__dict__[cls.__name__], name)


def _stand_in(name: str) -> type:
    # config_class and __name__ are what transformers checks without calling anything (register, pipelines).
    return _ModelOnFirstUse(name, (), {"config_class": ViTPortConfig, "__module__": f"{__name__}.modeling_vit_port"})


def _register_config(configuration_auto: ModuleType) -> None:
    configuration_auto.AutoConfig.register(ViTPortConfig.model_type, ViTPortConfig, exist_ok=True)


def _register_models(modeling_auto: ModuleType) -> None:
    modeling_auto.AutoModel.register(ViTPortConfig, _stand_in("ViTPortModel"), exist_ok=True)
    modeling_auto.AutoModelForImageClassification.register(
        ViTPortConfig, _stand_in("ViTPortForImageClassification"), exist_ok=True
    )


when_imported("transformers.models.auto.configuration_auto", _register_config)
when_imported("transformers.models.auto.modeling_auto", _register_models)


def _register_image_processor(image_processing_auto: ModuleType) -> None:
    from .image_processing_vit_port import ViTPortImageProcessor

    # Both backend names: transformers picks "torchvision" when it is installed and "pil" otherwise.
    backends = {"pil": ViTPortImageProcessor, "torchvision": ViTPortImageProcessor}
    image_processing_auto.AutoImageProcessor.register(ViTPortConfig, image_processor_classes=backends, exist_ok=True)


when_imported("transformers.models.auto.image_processing_auto", _register_image_processor)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__version__ = "0.1.0"
__all__ = ["ViTPortConfig", "ViTPortImageProcessor", "ViTPortModel", "ViTPortForImageClassification",
           "ViTPortPreTrainedModel"]
