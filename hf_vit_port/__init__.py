"""hf-vit-port: Google's original Vision Transformer checkpoints, faithfully, in transformers.

Importing the package registers `vit_port` with transformers' Auto classes and pipelines. This package is the
plugin (configuration, model, `.npz` format, loading); the tooling built on it (conversion, publishing, training,
the `hf-vit-port` command) is `hf_vit_port_tools`.
"""

from transformers import AutoConfig, AutoModel, AutoModelForImageClassification

from .configuration_vit_port import ViTPortConfig
from .modeling_vit_port import ViTPortForImageClassification, ViTPortModel, ViTPortPreTrainedModel

AutoConfig.register(ViTPortConfig.model_type, ViTPortConfig, exist_ok=True)
AutoModel.register(ViTPortConfig, ViTPortModel, exist_ok=True)
AutoModelForImageClassification.register(ViTPortConfig, ViTPortForImageClassification, exist_ok=True)

__version__ = "0.1.0"
__all__ = ["ViTPortConfig", "ViTPortModel", "ViTPortForImageClassification", "ViTPortPreTrainedModel"]
