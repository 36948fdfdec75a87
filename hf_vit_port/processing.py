"""The preprocessing of the original releases as a transformers image processor."""

import os
from typing import Any

from transformers import PretrainedConfig
from transformers.models.vit.image_processing_pil_vit import ViTImageProcessorPil

from .configuration_vit_port import to_pair


def make_image_processor(config: PretrainedConfig) -> ViTImageProcessorPil:
    """
    A `ViTImageProcessor` doing what the original input pipeline does: resize to the model's resolution (bilinear),
    then scale RGB from [0, 255] to [-1, 1] (mean 0.5, std 0.5 after dividing by 255).

    Any config with an `image_size` will do (ViTPortConfig or transformers' ViTConfig). The PIL backend is used directly because torchvision is not a dependency; it saves as `ViTImageProcessor`.
    """
    height, width = to_pair(config.image_size)
    return ViTImageProcessorPil(
        do_resize=True,
        size={"height": height, "width": width},
        resample=2,  # PIL.Image.BILINEAR
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )


def image_processor_for(source: str | os.PathLike, config: PretrainedConfig) -> Any:
    """
    The checkpoint's own image processor, sized for `config` (which may have another resolution than the
    checkpoint). `.npz` files, and repos without a processor, get the original releases' preprocessing.
    """
    from transformers import AutoImageProcessor

    from .loading import is_npz

    processor = None
    if not is_npz(source):
        try:
            processor = AutoImageProcessor.from_pretrained(str(source))
        except (OSError, ValueError):
            processor = None
    if processor is None:
        return make_image_processor(config)
    height, width = to_pair(config.image_size)
    processor.size = {"height": height, "width": width}
    return processor
