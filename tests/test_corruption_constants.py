"""The corruption constants are the published ones (Hendrycks & Dietterich, ICLR 2019).

The values below are typed from the reference code of github.com/hendrycks/robustness, the lists
``c = [...]`` of each corruption function in

* ``ImageNet-C/create_c/make_cifar_c.py`` (CIFAR-10-C, 32x32 images), and
* ``ImageNet-C/create_c/make_imagenet_c.py`` (ImageNet-C, 224x224 images),

not read from lit_noise's tables. Each is checked three ways: the registry's ``params``, the output
of :func:`~lit_noise.corrupt` against the corruption function called with the typed value, and (for
contrast, whose formula is one line of the reference) against the reference formula in NumPy.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch import Tensor

from lit_noise import corrupt
from lit_noise.corruptions import functional as CF
from lit_noise.corruptions.suite import DEFAULT_CORRUPTIONS, get

# make_cifar_c.py
CIFAR10_C: dict[str, list[tuple[float, ...]]] = {
    "gaussian_noise": [(0.04,), (0.06,), (0.08,), (0.09,), (0.10,)],
    "shot_noise": [(500,), (250,), (100,), (75,), (50,)],
    "impulse_noise": [(0.01,), (0.02,), (0.03,), (0.05,), (0.07,)],
    "speckle_noise": [(0.06,), (0.1,), (0.12,), (0.16,), (0.2,)],
    "gaussian_blur": [(0.4,), (0.6,), (0.7,), (0.8,), (1,)],
    "defocus_blur": [(0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)],
    "contrast": [(0.75,), (0.5,), (0.4,), (0.3,), (0.15,)],
    "brightness": [(0.05,), (0.1,), (0.15,), (0.2,), (0.3,)],
    "saturate": [(0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)],
    "pixelate": [(0.95,), (0.9,), (0.85,), (0.75,), (0.65,)],
}

# make_imagenet_c.py
IMAGENET_C: dict[str, list[tuple[float, ...]]] = {
    "gaussian_noise": [(0.08,), (0.12,), (0.18,), (0.26,), (0.38,)],
    "shot_noise": [(60,), (25,), (12,), (5,), (3,)],
    "impulse_noise": [(0.03,), (0.06,), (0.09,), (0.17,), (0.27,)],
    "speckle_noise": [(0.15,), (0.2,), (0.35,), (0.45,), (0.6,)],
    "gaussian_blur": [(1,), (2,), (3,), (4,), (6,)],
    "defocus_blur": [(3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)],
    "contrast": [(0.4,), (0.3,), (0.2,), (0.1,), (0.05,)],
    "brightness": [(0.1,), (0.2,), (0.3,), (0.4,), (0.5,)],
    "saturate": [(0.3, 0), (0.1, 0), (2, 0), (5, 0.1), (20, 0.2)],
    "pixelate": [(0.6,), (0.5,), (0.4,), (0.3,), (0.25,)],
}

PUBLISHED = {"cifar10": CIFAR10_C, "imagenet": IMAGENET_C}

#: The corruption function each name applies, called with the published parameters in order.
FUNCTIONS: dict[str, Callable[..., Tensor]] = {
    "gaussian_noise": CF.gaussian_noise,
    "shot_noise": CF.shot_noise,
    "impulse_noise": CF.impulse_noise,
    "speckle_noise": CF.speckle_noise,
    "gaussian_blur": CF.gaussian_blur,
    "defocus_blur": CF.defocus_blur,
    "contrast": CF.contrast,
    "brightness": CF.brightness,
    "saturate": CF.saturate,
    "pixelate": CF.pixelate,
}
RANDOM = ("gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise")
CASES = [(table, name, s) for table in PUBLISHED for name in PUBLISHED[table] for s in range(1, 6)]


def test_every_built_in_corruption_has_published_constants() -> None:
    assert set(DEFAULT_CORRUPTIONS) == set(CIFAR10_C) == set(IMAGENET_C) == set(FUNCTIONS)


@pytest.mark.parametrize(("table", "name", "severity"), CASES)
def test_params_are_the_published_constants(table: str, name: str, severity: int) -> None:
    published = PUBLISHED[table][name][severity - 1]
    assert get(name).params(severity, table) == pytest.approx(published, rel=0, abs=0)


@pytest.mark.parametrize(("table", "name"), [(t, n) for t in PUBLISHED for n in PUBLISHED[t]])
def test_corrupt_applies_the_published_constants(table: str, name: str) -> None:
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    for severity in range(1, 6):
        params = PUBLISHED[table][name][severity - 1]
        if name in RANDOM:
            got = corrupt(x, name, severity, table, generator=torch.Generator().manual_seed(severity))
            expected = FUNCTIONS[name](x, *params, torch.Generator().manual_seed(severity))
        else:
            got = corrupt(x, name, severity, table)
            expected = FUNCTIONS[name](x, *params)
        assert torch.equal(got, expected), (table, name, severity)


@pytest.mark.parametrize("table", list(PUBLISHED))
def test_contrast_equals_the_reference_formula_at_every_severity(table: str) -> None:
    """``np.clip((x - means) * c + means, 0, 1)`` with ``means`` over the image, per channel."""
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    for severity, (c,) in enumerate(PUBLISHED[table]["contrast"], start=1):
        image = x.numpy()
        means = image.mean(axis=(2, 3), keepdims=True)
        expected = np.clip((image - means) * c + means, 0, 1)
        np.testing.assert_allclose(corrupt(x, "contrast", severity, table).numpy(), expected, atol=1e-12)
