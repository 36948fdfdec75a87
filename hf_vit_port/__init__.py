"""hf-vit-port: Google's original Vision Transformer checkpoints, faithfully, in transformers.

Importing the package registers `vit_port` with transformers' Auto classes and pipelines.
"""

import gc

# Importing transformers' modeling stack creates millions of long-lived objects, and the cyclic collector would
# scan them over and over while they are being created (about 0.5 s of a 2-core machine's import time). Nothing
# they create is garbage, so collection waits until they exist.
_collecting = gc.isenabled()
gc.disable()
try:
    from transformers import AutoConfig, AutoModel, AutoModelForImageClassification

    from .configuration_vit_port import ViTPortConfig
    from .modeling_vit_port import ViTPortForImageClassification, ViTPortModel, ViTPortPreTrainedModel
finally:
    if _collecting:
        gc.enable()

AutoConfig.register(ViTPortConfig.model_type, ViTPortConfig, exist_ok=True)
AutoModel.register(ViTPortConfig, ViTPortModel, exist_ok=True)
AutoModelForImageClassification.register(ViTPortConfig, ViTPortForImageClassification, exist_ok=True)

__version__ = "0.1.0"
__all__ = ["ViTPortConfig", "ViTPortModel", "ViTPortForImageClassification", "ViTPortPreTrainedModel"]
