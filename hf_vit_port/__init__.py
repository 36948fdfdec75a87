"""hf-vit-port: Google's original Vision Transformer checkpoints, faithfully, in transformers.

Importing the package registers `vit_port` with transformers' Auto classes and pipelines. This package is the
plugin (configuration, model, `.npz` format, loading); the tooling built on it (conversion, publishing, training,
the `hf-vit-port` command) is `hf_vit_port_tools`.

The model classes are imported on first use: registration needs only the configuration, so `import hf_vit_port`
costs what importing transformers' configuration does, and a tool that only reads or writes files (an unverified
conversion, say) never loads transformers' modeling stack. The image processor is registered with
`AutoImageProcessor` when transformers imports that Auto class (as `pipeline` and `AutoImageProcessor` do), because
registering it means importing transformers' whole image-processing stack (twice the modules of the rest).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from types import ModuleType
from typing import TYPE_CHECKING, Any

from transformers import AutoConfig, AutoModel, AutoModelForImageClassification

from .configuration_vit_port import ViTPortConfig

if TYPE_CHECKING:
    from .image_processing_vit_port import ViTPortImageProcessor
    from .modeling_vit_port import ViTPortForImageClassification, ViTPortModel, ViTPortPreTrainedModel

_MODELS = ("ViTPortModel", "ViTPortForImageClassification", "ViTPortPreTrainedModel")
# What is imported on first use, and from where.
_LAZY = {**dict.fromkeys(_MODELS, ".modeling_vit_port"), "ViTPortImageProcessor": ".image_processing_vit_port"}
_AUTO_IMAGE_PROCESSING = "transformers.models.auto.image_processing_auto"


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


def _register_image_processor(auto: ModuleType) -> None:
    from .image_processing_vit_port import ViTPortImageProcessor

    # Both backend names: transformers picks "torchvision" when it is installed and "pil" otherwise.
    backends = {"pil": ViTPortImageProcessor, "torchvision": ViTPortImageProcessor}
    auto.AutoImageProcessor.register(ViTPortConfig, image_processor_classes=backends, exist_ok=True)


class _RegisterWhenImported(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds transformers' AutoImageProcessor module as the normal finders do, and registers the processor right
    after the module has run."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if fullname != _AUTO_IMAGE_PROCESSING:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and spec.loader is not None:
            self._loader, spec.loader = spec.loader, self
        return spec

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        module.__loader__ = module.__spec__.loader = self._loader
        self._loader.exec_module(module)
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        _register_image_processor(module)


if _AUTO_IMAGE_PROCESSING in sys.modules:
    _register_image_processor(sys.modules[_AUTO_IMAGE_PROCESSING])
elif not any(isinstance(finder, _RegisterWhenImported) for finder in sys.meta_path):
    sys.meta_path.insert(0, _RegisterWhenImported())


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__version__ = "0.1.0"
__all__ = ["ViTPortConfig", "ViTPortImageProcessor", "ViTPortModel", "ViTPortForImageClassification",
           "ViTPortPreTrainedModel"]
