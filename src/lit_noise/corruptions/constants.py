"""The severity tables of CIFAR-10-C and ImageNet-C (Hendrycks & Dietterich, ICLR 2019).

Each table maps a corruption name to five parameter tuples, one per severity 1..5, copied from
the reference code in `hendrycks/robustness <https://github.com/hendrycks/robustness>`_:

* CIFAR-10-C: ``ImageNet-C/create_c/make_cifar_c.py`` (32x32 images),
* ImageNet-C: ``ImageNet-C/create_c/make_imagenet_c.py`` (224x224 images).

The comment on each entry names the function of that file whose list ``c`` it copies and what
the numbers mean. Parameters are in the units of images scaled to [0, 1].
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

__all__ = ["CIFAR10_C", "IMAGENET_C", "TABLES"]

Params = tuple[float, ...]
Table = Mapping[str, tuple[Params, ...]]

#: CIFAR-10-C, from ``ImageNet-C/create_c/make_cifar_c.py`` of hendrycks/robustness.
CIFAR10_C: Table = MappingProxyType(
    {
        # gaussian_noise: c = std of the additive N(0, c^2) noise.
        "gaussian_noise": ((0.04,), (0.06,), (0.08,), (0.09,), (0.10,)),
        # shot_noise: c = Poisson rate scale, x -> Poisson(x * c) / c.
        "shot_noise": ((500.0,), (250.0,), (100.0,), (75.0,), (50.0,)),
        # impulse_noise: c = `amount` of skimage's random_noise(mode='s&p') (fraction of values hit).
        "impulse_noise": ((0.01,), (0.02,), (0.03,), (0.05,), (0.07,)),
        # speckle_noise: c = std of the multiplicative noise, x -> x + x * N(0, c^2).
        "speckle_noise": ((0.06,), (0.10,), (0.12,), (0.16,), (0.20,)),
        # gaussian_blur: c = sigma of skimage.filters.gaussian (pixels).
        "gaussian_blur": ((0.4,), (0.6,), (0.7,), (0.8,), (1.0,)),
        # defocus_blur: c = (disk radius, alias_blur sigma of the anti-aliasing 3x3 Gaussian).
        "defocus_blur": ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1.0, 0.2), (1.5, 0.1)),
        # contrast: c = factor on the deviation from the per-channel mean.
        "contrast": ((0.75,), (0.5,), (0.4,), (0.3,), (0.15,)),
        # brightness: c = shift of the HSV value channel.
        "brightness": ((0.05,), (0.1,), (0.15,), (0.2,), (0.3,)),
        # saturate: c = (factor, shift) of the HSV saturation channel, s -> s * c[0] + c[1].
        "saturate": ((0.3, 0.0), (0.1, 0.0), (1.5, 0.0), (2.0, 0.1), (2.5, 0.2)),
        # pixelate: c = resize factor, the image goes to int(32 * c) pixels and back.
        "pixelate": ((0.95,), (0.9,), (0.85,), (0.75,), (0.65,)),
    }
)

#: ImageNet-C, from ``ImageNet-C/create_c/make_imagenet_c.py`` of hendrycks/robustness.
IMAGENET_C: Table = MappingProxyType(
    {
        # gaussian_noise: c = std of the additive N(0, c^2) noise.
        "gaussian_noise": ((0.08,), (0.12,), (0.18,), (0.26,), (0.38,)),
        # shot_noise: c = Poisson rate scale, x -> Poisson(x * c) / c.
        "shot_noise": ((60.0,), (25.0,), (12.0,), (5.0,), (3.0,)),
        # impulse_noise: c = `amount` of skimage's random_noise(mode='s&p').
        "impulse_noise": ((0.03,), (0.06,), (0.09,), (0.17,), (0.27,)),
        # speckle_noise: c = std of the multiplicative noise, x -> x + x * N(0, c^2).
        "speckle_noise": ((0.15,), (0.2,), (0.35,), (0.45,), (0.6,)),
        # gaussian_blur: c = sigma of skimage.filters.gaussian (pixels).
        "gaussian_blur": ((1.0,), (2.0,), (3.0,), (4.0,), (6.0,)),
        # defocus_blur: c = (disk radius, alias_blur sigma of the anti-aliasing Gaussian).
        "defocus_blur": ((3.0, 0.1), (4.0, 0.5), (6.0, 0.5), (8.0, 0.5), (10.0, 0.5)),
        # contrast: c = factor on the deviation from the per-channel mean.
        "contrast": ((0.4,), (0.3,), (0.2,), (0.1,), (0.05,)),
        # brightness: c = shift of the HSV value channel.
        "brightness": ((0.1,), (0.2,), (0.3,), (0.4,), (0.5,)),
        # saturate: c = (factor, shift) of the HSV saturation channel.
        "saturate": ((0.3, 0.0), (0.1, 0.0), (2.0, 0.0), (5.0, 0.1), (20.0, 0.2)),
        # pixelate: c = resize factor, the image goes to int(224 * c) pixels and back.
        "pixelate": ((0.6,), (0.5,), (0.4,), (0.3,), (0.25,)),
    }
)

#: The tables by the name :func:`~lit_noise.corruptions.corrupt` takes as ``constants``.
TABLES: Mapping[str, Table] = MappingProxyType({"cifar10": CIFAR10_C, "imagenet": IMAGENET_C})
