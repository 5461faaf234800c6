"""The corruptions as pure tensor functions of their parameters (no tables, no Lightning).

Each function takes a float tensor with values in [0, 1] and returns a new tensor on the same
device, in the same dtype, clipped to [0, 1] as the reference benchmarks clip their outputs.
Image functions take ``(..., C, H, W)`` batches (every leading dimension is a batch dimension)
and are vectorised over them; the noise functions take any shape. Random functions draw from
an explicit ``torch.Generator`` (torch's global RNG when ``None``) in one call.

The reference is ``ImageNet-C/create_c/make_imagenet_c.py`` and ``make_cifar_c.py`` of
hendrycks/robustness (NumPy, scikit-image, OpenCV and PIL on one uint8 image at a time); the
deviations are listed on each function.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor

from lit_noise import functional as LF
from lit_noise._validation import fail
from lit_noise.errors import ConfigurationError

__all__ = [
    "brightness",
    "contrast",
    "defocus_blur",
    "disk_kernel",
    "gaussian_blur",
    "gaussian_kernel1d",
    "gaussian_noise",
    "hsv_to_rgb",
    "impulse_noise",
    "pixelate",
    "pixelate_matrix",
    "rgb_to_hsv",
    "saturate",
    "shot_noise",
    "speckle_noise",
]


def input_error(owner: str, allowed: str, x: object) -> ConfigurationError:
    """The error for a bad corruption input ``x``, showing its dtype and shape (or its type).

    Example:
        >>> print(input_error("contrast", "an image batch (B, C, H, W)", torch.zeros(8, 3)))
        contrast: `x` must be an image batch (B, C, H, W), got a torch.float32 tensor of shape (8, 3).
        >>> print(input_error("contrast", "a tensor", [0.5]))
        contrast: `x` must be a tensor, got a list.
    """
    shown = (
        f"a {x.dtype} tensor of shape {tuple(x.shape)}" if isinstance(x, Tensor) else f"a {type(x).__name__}"
    )
    return ConfigurationError(f"{owner}: `x` must be {allowed}, got {shown}.")


def _check_image(x: Tensor, owner: str, channels: int | None = None) -> None:
    if not isinstance(x, Tensor) or not x.is_floating_point() or x.ndim < 3:
        raise input_error(owner, "a float image tensor of shape (..., C, H, W)", x)
    if channels is not None and x.shape[-3] != channels:
        raise input_error(owner, f"an image batch with {channels} channels (..., {channels}, H, W)", x)


# --------------------------------------------------------------------------- noise (any shape)


def gaussian_noise(x: Tensor, std: float, generator: torch.Generator | None = None) -> Tensor:
    """``clip(x + N(0, std^2), 0, 1)`` (reference: ``gaussian_noise``).

    Example:
        >>> y = gaussian_noise(torch.full((100_000,), 0.5), 0.08, torch.Generator().manual_seed(0))
        >>> round((y - 0.5).std().item(), 2)
        0.08
    """
    return LF.gaussian(x, std, generator=generator).clamp_(0.0, 1.0)


def shot_noise(x: Tensor, rate: float, generator: torch.Generator | None = None) -> Tensor:
    """Poisson (photon) noise ``clip(Poisson(x * rate) / rate, 0, 1)`` (reference: ``shot_noise``).

    The noise has variance ``x / rate``: a lower ``rate`` is a stronger corruption.

    Example:
        >>> y = shot_noise(torch.full((100_000,), 0.5), 50.0, torch.Generator().manual_seed(0))
        >>> round((y - 0.5).std().item(), 2)  # sqrt(0.5 / 50)
        0.1
    """
    return torch.poisson(x * rate, generator=generator).div_(rate).clamp_(0.0, 1.0)


def impulse_noise(x: Tensor, amount: float, generator: torch.Generator | None = None) -> Tensor:
    """Salt-and-pepper noise: a fraction ``amount`` of the values set to 0 or 1 with equal odds.

    Reference: ``impulse_noise``, scikit-image's ``random_noise(mode='s&p', amount=c)``, which
    also decides each value (each channel of each pixel) independently.

    Example:
        >>> y = impulse_noise(torch.full((100_000,), 0.5), 0.2, torch.Generator().manual_seed(0))
        >>> round((y != 0.5).float().mean().item(), 2)
        0.2
    """
    return LF.salt_and_pepper(x, amount, 0.5, 0.0, 1.0, generator=generator).clamp_(0.0, 1.0)


def speckle_noise(x: Tensor, std: float, generator: torch.Generator | None = None) -> Tensor:
    """Multiplicative noise ``clip(x + x * N(0, std^2), 0, 1)`` (reference: ``speckle_noise``).

    Example:
        >>> y = speckle_noise(torch.full((100_000,), 0.5), 0.2, torch.Generator().manual_seed(0))
        >>> round((y - 0.5).std().item(), 2)  # 0.5 * 0.2
        0.1
    """
    return LF.speckle(x, std, generator=generator).clamp_(0.0, 1.0)


# --------------------------------------------------------------------------- filtering


@lru_cache(maxsize=64)
def _gaussian_kernel1d_cpu(sigma: float, truncate: float) -> Tensor:
    radius = int(truncate * sigma + 0.5)
    grid = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (grid / sigma) ** 2)
    return kernel / kernel.sum()


def gaussian_kernel1d(sigma: float, truncate: float = 4.0) -> Tensor:
    """SciPy's Gaussian kernel: radius ``int(truncate * sigma + 0.5)``, normalised to sum 1 (float64).

    Example:
        >>> k = gaussian_kernel1d(1.0)
        >>> k.numel(), round(k.sum().item(), 12)
        (9, 1.0)
    """
    if not sigma > 0:
        raise fail("gaussian_kernel1d", "sigma", sigma, "> 0")
    return _gaussian_kernel1d_cpu(float(sigma), float(truncate)).clone()


def _opencv_gaussian1d(ksize: int, sigma: float) -> Tensor:
    """``cv2.getGaussianKernel(ksize, sigma)`` for ``sigma > 0``."""
    grid = torch.arange(ksize, dtype=torch.float64) - (ksize - 1) / 2
    kernel = torch.exp(-(grid**2) / (2 * sigma * sigma))
    return kernel / kernel.sum()


def _pad_index(size: int, pad: int, mode: str, device: torch.device) -> Tensor:
    """Indices of a padded axis, ``"replicate"`` (SciPy 'nearest') or ``"reflect101"``.

    Reflect-101 is SciPy's 'mirror' and OpenCV's default border, repeated as often as the pad needs.
    """
    index = torch.arange(-pad, size + pad, device=device)
    if mode == "replicate" or size == 1:
        return index.clamp(0, size - 1)
    period = 2 * (size - 1)
    index = index.remainder(period)
    return torch.where(index >= size, period - index, index)


def _correlate(x: Tensor, kernel: Tensor, mode: str) -> Tensor:
    """Correlate every ``(H, W)`` plane of ``x`` with the 2-D ``kernel`` (odd sizes), padding by ``mode``."""
    *lead, height, width = x.shape
    kh, kw = kernel.shape
    planes = x.reshape(-1, 1, height, width)
    rows = _pad_index(height, kh // 2, mode, x.device)
    cols = _pad_index(width, kw // 2, mode, x.device)
    padded = planes.index_select(2, rows).index_select(3, cols)
    out = F.conv2d(padded, kernel.to(device=x.device, dtype=x.dtype).view(1, 1, kh, kw))
    return out.reshape(*lead, height, width)


def gaussian_blur(x: Tensor, sigma: float) -> Tensor:
    """Gaussian blur of every channel (reference: ``gaussian_blur``, ``skimage.filters.gaussian``).

    Same kernel and border as scikit-image (SciPy's ``gaussian_filter``: radius
    ``int(4 * sigma + 0.5)``, 'nearest' border), applied as two separable 1-D convolutions.

    Example:
        >>> x = torch.zeros(1, 1, 9, 9); x[..., 4, 4] = 1.0
        >>> y = gaussian_blur(x, 1.0)
        >>> round(y.sum().item(), 5), bool(y[..., 4, 4] < 1)
        (1.0, True)
    """
    _check_image(x, "gaussian_blur")
    kernel = gaussian_kernel1d(sigma)
    *lead, height, width = x.shape
    radius = kernel.numel() // 2
    planes = x.reshape(-1, 1, height, width)
    planes = planes.index_select(2, _pad_index(height, radius, "replicate", x.device))
    planes = planes.index_select(3, _pad_index(width, radius, "replicate", x.device))
    weight = kernel.to(device=x.device, dtype=x.dtype)
    planes = F.conv2d(planes, weight.view(1, 1, 1, -1))
    planes = F.conv2d(planes, weight.view(1, 1, -1, 1))
    return planes.reshape(*lead, height, width).clamp_(0.0, 1.0)


@lru_cache(maxsize=64)
def _disk_kernel_cpu(radius: float, alias_blur: float) -> Tensor:
    half = max(8, math.ceil(radius))
    grid = torch.arange(-half, half + 1, dtype=torch.float64)
    yy, xx = torch.meshgrid(grid, grid, indexing="ij")
    disk = (xx**2 + yy**2 <= radius**2).to(torch.float64)
    disk = disk / disk.sum()
    # cv2.GaussianBlur(disk, (k, k), sigmaX=alias_blur), k = 3 (5 past radius 8): separable,
    # with OpenCV's default BORDER_REFLECT_101.
    blur = _opencv_gaussian1d(3 if radius <= 8 else 5, alias_blur)
    kernel = _correlate(disk, blur.view(1, -1), "reflect101")
    kernel = _correlate(kernel, blur.view(-1, 1), "reflect101")
    # Trim the all-zero margin: the same filter, with a smaller pad for small images.
    trim = int((kernel.nonzero() - half).abs().max())
    return kernel[half - trim : half + trim + 1, half - trim : half + trim + 1].contiguous()


def disk_kernel(radius: float, alias_blur: float = 0.1) -> Tensor:
    """The anti-aliased disk of the reference ``disk()`` (float64), zero margin trimmed.

    A disk ``x^2 + y^2 <= radius^2`` on the integer grid ``[-8, 8]^2`` (``[-r, r]^2`` with
    ``r = ceil(radius)`` past radius 8, where the reference's grid is
    ``arange(-radius, radius + 1)``: the same for the integer radii of the tables), normalised,
    then blurred by OpenCV's 3x3 (5x5 past radius 8) Gaussian of sigma ``alias_blur`` with its
    reflect-101 border. The kernel sums to 1 except where the disk touches the edge of its grid
    (radius 8 and 10, ImageNet-C severities 4 and 5): there the reflect-101 border counts the edge
    twice and the sum is 1.013 and 1.011, which brightens the image slightly, as in the reference.

    Example:
        >>> k = disk_kernel(1.0, 0.2)
        >>> tuple(k.shape), round(k.sum().item(), 12)
        ((5, 5), 1.0)
    """
    if not radius > 0:
        raise fail("disk_kernel", "radius", radius, "> 0")
    if not alias_blur > 0:
        raise fail("disk_kernel", "alias_blur", alias_blur, "> 0")
    return _disk_kernel_cpu(float(radius), float(alias_blur)).clone()


def defocus_blur(x: Tensor, radius: float, alias_blur: float) -> Tensor:
    """Defocus (disk) blur of every channel (reference: ``defocus_blur``).

    The kernel is :func:`disk_kernel`; the image is filtered as ``cv2.filter2D`` does, with the
    reflect-101 border (repeated for images smaller than the kernel, where OpenCV would fail).

    Example:
        >>> x = torch.zeros(1, 3, 8, 8); x[..., 4, 4] = 1.0
        >>> y = defocus_blur(x, 1.0, 0.2)
        >>> round(y[0, 0].sum().item(), 5), bool(y[0, 0, 4, 4] < 1)
        (1.0, True)
    """
    _check_image(x, "defocus_blur")
    return _correlate(x, disk_kernel(radius, alias_blur), "reflect101").clamp_(0.0, 1.0)


# --------------------------------------------------------------------------- photometric


def contrast(x: Tensor, factor: float) -> Tensor:
    """Scale each channel's deviation from its spatial mean: ``clip((x - m) * factor + m, 0, 1)``.

    Reference: ``contrast`` (mean over height and width, per channel and image).

    Example:
        >>> x = torch.tensor([[[[0.2, 0.6]]]])
        >>> contrast(x, 0.5)
        tensor([[[[0.3000, 0.5000]]]])
    """
    _check_image(x, "contrast")
    mean = x.mean(dim=(-2, -1), keepdim=True)
    return torch.lerp(mean, x, factor).clamp_(0.0, 1.0)


def rgb_to_hsv(x: Tensor) -> Tensor:
    """RGB in [0, 1] to HSV in [0, 1] along dimension -3, as ``skimage.color.rgb2hsv`` computes it.

    Hue and saturation are 0 where the three channels are equal.

    Example:
        >>> rgb_to_hsv(torch.tensor([1.0, 0.5, 0.0]).view(3, 1, 1)).flatten()
        tensor([0.0833, 1.0000, 1.0000])
    """
    _check_image(x, "rgb_to_hsv", channels=3)
    red, green, blue = x.unbind(-3)
    value = x.amax(-3)
    delta = value - x.amin(-3)
    colourful = delta > 0
    safe = torch.where(colourful, delta, torch.ones_like(delta))
    saturation = torch.where(colourful, delta / torch.where(colourful, value, torch.ones_like(value)), 0.0)
    hue = torch.where(
        blue == value,
        4.0 + (red - green) / safe,
        torch.where(green == value, 2.0 + (blue - red) / safe, (green - blue) / safe),
    )
    hue = torch.where(colourful, (hue / 6.0).remainder(1.0), 0.0)
    return torch.stack((hue, saturation, value), dim=-3)


def hsv_to_rgb(x: Tensor) -> Tensor:
    """HSV in [0, 1] to RGB along dimension -3, the inverse of :func:`rgb_to_hsv`.

    Computed per channel as ``v - v * s * clamp(min(k, 4 - k), 0, 1)`` with
    ``k = (n + 6 h) mod 6`` and ``n = 5, 3, 1`` for red, green and blue, which equals the six
    cases of ``skimage.color.hsv2rgb``.

    Example:
        >>> hsv_to_rgb(torch.tensor([1 / 12, 1.0, 1.0]).view(3, 1, 1)).flatten()
        tensor([1.0000, 0.5000, 0.0000])
    """
    _check_image(x, "hsv_to_rgb", channels=3)
    hue, saturation, value = x.unsqueeze(-3).unbind(-4)
    n = torch.tensor([5.0, 3.0, 1.0], device=x.device, dtype=x.dtype).view(3, 1, 1)
    k = (n + 6.0 * hue).remainder(6.0)
    ramp = torch.minimum(k, 4.0 - k).clamp_(0.0, 1.0)
    return value - value * saturation * ramp


def brightness(x: Tensor, shift: float) -> Tensor:
    """Add ``shift`` to the HSV value channel (clipped to [0, 1]), hue and saturation unchanged.

    Reference: ``brightness`` (``rgb2hsv``, ``v = clip(v + c, 0, 1)``, ``hsv2rgb``). At fixed hue
    and saturation every RGB channel is proportional to the value ``v = max(channels)``, so the
    round trip is the scaling ``x * v' / v`` (a grey ``v'`` where ``v = 0``), computed here
    directly: exact, and defined for any number of channels (one channel: ``clip(x + c, 0, 1)``).

    Example:
        >>> brightness(torch.tensor([0.4, 0.2, 0.0]).view(1, 3, 1, 1), 0.2).flatten()
        tensor([0.6000, 0.3000, 0.0000])
    """
    _check_image(x, "brightness")
    value = x.amax(dim=-3, keepdim=True)
    target = (value + shift).clamp_(0.0, 1.0)
    positive = value > 0
    ratio = target / torch.where(positive, value, torch.ones_like(value))
    return torch.where(positive, x * ratio, target).clamp_(0.0, 1.0)


def saturate(x: Tensor, factor: float, shift: float = 0.0) -> Tensor:
    """HSV saturation ``s -> clip(s * factor + shift, 0, 1)`` on RGB batches (reference: ``saturate``).

    At fixed hue and value, each channel is ``v - s * v * k`` with ``k = (v - x) / (v - min(x))``
    depending on the hue only, so the HSV round trip (``rgb2hsv``, new saturation, ``hsv2rgb``)
    is computed directly as ``v - s' * v * k`` (the same numbers, a third of the operations of
    :func:`rgb_to_hsv` + :func:`hsv_to_rgb`). Like the reference, a grey pixel has hue 0 by
    convention (``k = (0, 1, 1)``), so it turns red when ``shift > 0``.

    Example:
        >>> saturate(torch.tensor([1.0, 0.5, 0.5]).view(1, 3, 1, 1), 2.0).flatten()
        tensor([1., 0., 0.])
    """
    _check_image(x, "saturate", channels=3)
    value = x.amax(dim=-3, keepdim=True)
    delta = value - x.amin(dim=-3, keepdim=True)
    colourful = delta > 0
    safe_delta = torch.where(colourful, delta, torch.ones_like(delta))
    safe_value = torch.where(colourful, value, torch.ones_like(value))
    new = torch.where(colourful, delta / safe_value, 0.0).mul_(factor).add_(shift).clamp_(0.0, 1.0)
    grey_hue = torch.tensor([0.0, 1.0, 1.0], device=x.device, dtype=x.dtype).view(3, 1, 1)
    k = torch.where(colourful, (value - x) / safe_delta, grey_hue)
    return (value - new * value * k).clamp_(0.0, 1.0)


# --------------------------------------------------------------------------- resampling


def _box_weights(in_size: int, out_size: int) -> Tensor:
    """PIL's BOX resampling weights (``precompute_coeffs`` of libImaging/Resample.c), ``(out, in)``."""
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 0.5 * filterscale
    weights = torch.zeros(out_size, in_size, dtype=torch.float64)
    for out_index in range(out_size):  # table of size (out, in), built once per size pair
        centre = (out_index + 0.5) * scale
        low = max(int(centre - support + 0.5), 0)
        high = min(int(centre + support + 0.5), in_size)
        for in_index in range(low, high):
            position = (in_index - centre + 0.5) / filterscale
            if -0.5 < position <= 0.5:
                weights[out_index, in_index] = 1.0
        total = weights[out_index].sum()
        if total > 0:
            weights[out_index] /= total
    return weights


@lru_cache(maxsize=64)
def _pixelate_matrix_cpu(size: int, factor: float) -> Tensor:
    small = max(int(size * factor), 1)
    return _box_weights(small, size) @ _box_weights(size, small)


def pixelate_matrix(size: int, factor: float) -> Tensor:
    """The ``(size, size)`` linear map of one axis: PIL BOX resize to ``int(size * factor)`` and back.

    Example:
        >>> m = pixelate_matrix(4, 0.5)
        >>> m
        tensor([[0.5000, 0.5000, 0.0000, 0.0000],
                [0.5000, 0.5000, 0.0000, 0.0000],
                [0.0000, 0.0000, 0.5000, 0.5000],
                [0.0000, 0.0000, 0.5000, 0.5000]], dtype=torch.float64)
    """
    return _pixelate_matrix_cpu(int(size), float(factor)).clone()


def pixelate(x: Tensor, factor: float) -> Tensor:
    """Resize to ``int(size * factor)`` pixels with PIL's BOX filter and back (reference: ``pixelate``).

    Both resizes are linear, so each axis is one ``(size, size)`` matrix (:func:`pixelate_matrix`)
    and the corruption is two batched matrix products. The weights are PIL's; the reference works
    on uint8 images and rounds after each resize, this works in floating point.

    Example:
        >>> x = torch.arange(16.0).view(1, 1, 4, 4) / 15
        >>> pixelate(x, 0.5)[0, 0, :2, :2] * 15
        tensor([[2.5000, 2.5000],
                [2.5000, 2.5000]])
    """
    _check_image(x, "pixelate")
    height, width = x.shape[-2:]
    rows = _pixelate_matrix_cpu(height, float(factor)).to(device=x.device, dtype=x.dtype)
    cols = rows if width == height else _pixelate_matrix_cpu(width, float(factor)).to(x.device, x.dtype)
    return torch.matmul(torch.matmul(rows, x), cols.T).clamp_(0.0, 1.0)
