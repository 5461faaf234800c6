"""Corruption suite: CIFAR-10-C / ImageNet-C corruptions as pure tensor code on the input's device.

:func:`corrupt` is the one entry point; :data:`CORRUPTIONS` is the registry (extend it with
:func:`register`); :mod:`lit_noise.corruptions.functional` holds the corruptions as functions of
their parameters and :mod:`lit_noise.corruptions.constants` the two severity tables.
"""

from lit_noise.corruptions import functional
from lit_noise.corruptions.constants import CIFAR10_C, IMAGENET_C, TABLES
from lit_noise.corruptions.functional import (
    brightness,
    contrast,
    defocus_blur,
    gaussian_blur,
    gaussian_noise,
    hsv_to_rgb,
    impulse_noise,
    pixelate,
    rgb_to_hsv,
    saturate,
    shot_noise,
    speckle_noise,
)
from lit_noise.corruptions.suite import (
    CORRUPTIONS,
    DEFAULT_CORRUPTIONS,
    SEVERITIES,
    Corruption,
    CorruptionFunction,
    check_severities,
    corrupt,
    get,
    register,
    unregister,
)

__all__ = [
    "CIFAR10_C",
    "CORRUPTIONS",
    "DEFAULT_CORRUPTIONS",
    "IMAGENET_C",
    "SEVERITIES",
    "TABLES",
    "Corruption",
    "CorruptionFunction",
    "brightness",
    "check_severities",
    "contrast",
    "corrupt",
    "defocus_blur",
    "functional",
    "gaussian_blur",
    "gaussian_noise",
    "get",
    "hsv_to_rgb",
    "impulse_noise",
    "pixelate",
    "register",
    "rgb_to_hsv",
    "saturate",
    "shot_noise",
    "speckle_noise",
    "unregister",
]
