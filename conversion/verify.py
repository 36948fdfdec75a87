"""Verification of a converted model against the original math, computed from the `.npz` arrays with NumPy."""

from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np
import torch

from .numpy_reference import ReferenceOutput, reference_forward, reference_inputs

TOLERANCE = 1e-4
INPUTS_DESCRIPTION = "2 fixed synthetic images (smooth ramps, a sinusoid and noise) in [-1, 1]"


class VerificationError(RuntimeError):
    """The converted model does not reproduce the original's outputs within the tolerance."""


@dataclass(frozen=True)
class Reference:
    """The original model's outputs on the fixed verification inputs (NHWC pixels)."""

    pixels: np.ndarray
    output: ReferenceOutput

    @classmethod
    def compute(cls, params: Mapping[str, np.ndarray], image_size: tuple[int, int], classifier: str) -> "Reference":
        pixels = reference_inputs(image_size)
        return cls(pixels=pixels, output=reference_forward(params, pixels, classifier=classifier))


@dataclass(frozen=True)
class Verification:
    max_abs_diff_logits: float | None
    max_abs_diff_features: float
    tolerance: float = TOLERANCE
    inputs: str = INPUTS_DESCRIPTION
    reference: str = "independent NumPy float64 forward pass of the .npz arrays"
    reloaded: bool = False

    def as_dict(self) -> dict:
        return asdict(self)


def model_outputs(model: torch.nn.Module, pixels: np.ndarray) -> dict[str, np.ndarray | None]:
    """Logits (None without a head) and the pooled features (pre-logits when present) of any supported model."""
    inputs = torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous()
    with torch.no_grad():
        if hasattr(model, "forward_head"):  # ViTPortForImageClassification
            tokens = model.vit.forward_features(inputs)
            features = model.forward_head(tokens, pre_logits=True)
            logits = model.classifier(features) if model.config.num_labels > 0 else None
        elif hasattr(model, "classifier"):  # transformers' ViTForImageClassification: no pre-logits, CLS token
            features = model.vit(inputs).last_hidden_state[:, 0]
            logits = model.classifier(features)  # what its forward does with the CLS token
        else:  # ViTPortModel or transformers' ViTModel with its pooler holding the pre-logits layer
            features, logits = model(inputs).pooler_output, None
    return {
        "logits": None if logits is None else logits.double().numpy(),
        "features": features.double().numpy(),
    }


def verify(model: torch.nn.Module, reference: Reference, *, reloaded: bool = False) -> Verification:
    """Compare `model` with the reference; raise `VerificationError` above the tolerance."""
    outputs = model_outputs(model, reference.pixels)
    features_diff = float(np.abs(outputs["features"] - reference.output.features).max())
    logits_diff = None
    if outputs["logits"] is not None:
        if reference.output.logits is None:
            raise VerificationError("the converted model has a head but the checkpoint has none")
        logits_diff = float(np.abs(outputs["logits"] - reference.output.logits).max())
    result = Verification(max_abs_diff_logits=logits_diff, max_abs_diff_features=features_diff, reloaded=reloaded)
    worst = max(features_diff, logits_diff or 0.0)
    if not worst <= TOLERANCE:
        stage = "after reloading the written repo" if reloaded else "before writing"
        raise VerificationError(
            f"verification failed {stage}: max |difference| from the NumPy reference is {worst:.3g} "
            f"(features {features_diff:.3g}, logits {logits_diff}), above the tolerance {TOLERANCE:g}"
        )
    return result
