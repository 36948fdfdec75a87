"""Which image processor a model gets: the original evaluation preprocessing (`ViTPortImageProcessor`), sized for it.

`preprocessor_config` is the processor's saved form as a plain dict, so that a conversion can write
`preprocessor_config.json` without importing transformers' image-processing stack (a test keeps it equal to what
`ViTPortImageProcessor.save_pretrained` writes).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from transformers import PretrainedConfig

from .configuration_vit_port import to_pair

if TYPE_CHECKING:
    from .image_processing_vit_port import ViTPortImageProcessor

PROCESSOR_AUTO_MAP = {"AutoImageProcessor": "image_processing_vit_port.ViTPortImageProcessor"}
# The files a repo needs for `AutoImageProcessor.from_pretrained(..., trust_remote_code=True)`.
PROCESSOR_CODE_FILES = ("image_processing_vit_port.py", "images.py")


def preprocessor_config(config: PretrainedConfig) -> dict[str, Any]:
    """What `ViTPortImageProcessor` sized for `config` saves as preprocessor_config.json (auto_map included)."""
    height, width = to_pair(config.image_size)
    return {
        "antialias": False,
        "auto_map": dict(PROCESSOR_AUTO_MAP),
        "do_convert_rgb": True,
        "do_normalize": True,
        "do_rescale": True,
        "do_resize": True,
        "image_mean": [0.5, 0.5, 0.5],
        "image_processor_type": "ViTPortImageProcessor",
        "image_std": [0.5, 0.5, 0.5],
        "resample": "bilinear",
        "rescale_factor": 1 / 255,
        "size": {"height": height, "width": width},
    }


def make_image_processor(config: PretrainedConfig) -> ViTPortImageProcessor:
    """The original evaluation preprocessing at the model's resolution: bilinear resize without antialiasing, RGB
    scaled to [-1, 1]. Any config with an `image_size` will do (ViTPortConfig or transformers' ViTConfig)."""
    from .image_processing_vit_port import ViTPortImageProcessor

    settings = {k: v for k, v in preprocessor_config(config).items() if k not in ("auto_map", "image_processor_type")}
    return ViTPortImageProcessor(**settings)


def image_processor_for(source: str | os.PathLike, config: PretrainedConfig) -> Any:
    """
    The checkpoint's own image processor, sized for `config` (which may have another resolution than the
    checkpoint). `.npz` files, and repos without a processor, get the original releases' preprocessing; so do repos
    whose processor is transformers' `ViTImageProcessor` set up for these checkpoints (bilinear, mean and std 0.5,
    as repos converted before `ViTPortImageProcessor` existed carry), which only approximates it.
    """
    from transformers import AutoImageProcessor

    from .loading import is_npz

    processor = None
    if not is_npz(source):
        try:
            processor = AutoImageProcessor.from_pretrained(str(source), trust_remote_code=False)  # ours is registered
        except (OSError, ValueError):
            processor = None
    if processor is None or _is_legacy_vit_processor(processor):
        return make_image_processor(config)
    height, width = to_pair(config.image_size)
    processor.size = {"height": height, "width": width}
    return processor


def _is_legacy_vit_processor(processor: Any) -> bool:
    """transformers' ViTImageProcessor with the settings of the original releases (what older conversions wrote)."""
    if not type(processor).__name__.startswith("ViTImageProcessor"):
        return False
    try:
        settings = (processor.do_resize, int(processor.resample), processor.do_rescale, processor.do_normalize,
                    list(processor.image_mean), list(processor.image_std), float(processor.rescale_factor))
    except (AttributeError, TypeError, ValueError):
        return False
    return settings[:-1] == (True, 2, True, True, [0.5] * 3, [0.5] * 3) and abs(settings[-1] - 1 / 255) < 1e-12
