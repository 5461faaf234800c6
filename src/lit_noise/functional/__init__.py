"""Pure tensor maths behind lit_noise: no Lightning, explicit ``torch.Generator`` arguments."""

from lit_noise.functional.noise import (
    gate_samples,
    gaussian,
    laplace,
    mask,
    salt_and_pepper,
    snr,
    speckle,
    uniform,
)
from lit_noise.functional.targets import (
    label_smoothing,
    pair_flip,
    symmetric_flip,
    transition_flip,
)

__all__ = [
    "gate_samples",
    "gaussian",
    "label_smoothing",
    "laplace",
    "mask",
    "pair_flip",
    "salt_and_pepper",
    "snr",
    "speckle",
    "symmetric_flip",
    "transition_flip",
    "uniform",
]
