"""Pure tensor functions that return a noisy copy of a tensor (no Lightning, no state).

Each draws from an explicit ``torch.Generator`` (or torch's global RNG when ``None``) on the
tensor's device, in the tensor's dtype, with one vectorised draw where one suffices. For float16 and
bfloat16 tensors the uniform draws behind :func:`uniform` and :func:`laplace`, and the signal power
of :func:`snr`, are float32 (the result is cast back once). Torch makes 16-bit uniforms by rounding
float32 ones and moving those that round up to the upper bound onto the lower one: biased (mean
``0.5 - 1 / 512`` for bfloat16 ``rand``) and, with 8 (bfloat16) or 11 (float16) significant bits,
too coarse near 1 for Laplace tails beyond about ``5 * scale`` (bfloat16); and a float16 square
overflows above 256. 16-bit Gaussian draws are unbiased as torch makes them (it rounds normal draws
computed in float32), so they stay in the tensor's dtype.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "gate_samples",
    "gaussian",
    "laplace",
    "mask",
    "salt_and_pepper",
    "snr",
    "speckle",
    "uniform",
]

#: Dtypes whose uniform draws and signal powers are computed in float32, then cast back once.
_HALF_PRECISION = (torch.float16, torch.bfloat16)


def _like_takes_generator() -> bool:
    """Whether ``torch.rand*_like`` accept ``generator`` (recent torch); they are faster than ``rand``."""
    try:
        torch.rand_like(torch.empty(1), generator=torch.Generator())
        torch.randint_like(torch.empty(1, dtype=torch.long), 0, 2, generator=torch.Generator())
    except TypeError:
        return False
    return True


if _like_takes_generator():

    def _randn(x: Tensor, generator: torch.Generator | None) -> Tensor:
        return torch.randn_like(x, generator=generator, memory_format=torch.contiguous_format)

    def _rand(x: Tensor, generator: torch.Generator | None, dtype: torch.dtype | None = None) -> Tensor:
        return torch.rand_like(x, generator=generator, dtype=dtype, memory_format=torch.contiguous_format)

    def _randint(x: Tensor, low: int, high: int, generator: torch.Generator | None) -> Tensor:
        return torch.randint_like(x, low, high, generator=generator, memory_format=torch.contiguous_format)

else:  # pragma: no cover - older torch

    def _randn(x: Tensor, generator: torch.Generator | None) -> Tensor:
        return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)

    def _rand(x: Tensor, generator: torch.Generator | None, dtype: torch.dtype | None = None) -> Tensor:
        return torch.rand(x.shape, generator=generator, device=x.device, dtype=dtype or x.dtype)

    def _randint(x: Tensor, low: int, high: int, generator: torch.Generator | None) -> Tensor:
        return torch.randint(low, high, x.shape, generator=generator, device=x.device, dtype=x.dtype)


def gaussian(x: Tensor, std: float, mean: float = 0.0, generator: torch.Generator | None = None) -> Tensor:
    """``x + mean + std * N(0, 1)``.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> y = gaussian(torch.zeros(100_000), std=0.5, generator=g)
        >>> round(y.std().item(), 2)
        0.5
    """
    noisy = torch.add(x, _randn(x, generator), alpha=std)
    return noisy + mean if mean else noisy


def uniform(x: Tensor, width: float, generator: torch.Generator | None = None) -> Tensor:
    """``x + U(-width / 2, width / 2)``: zero-mean uniform noise of total ``width``.

    A float16 / bfloat16 ``x`` gets float32 uniforms and a float32 sum, rounded to its dtype once
    (torch's bfloat16 uniforms on ``[0, 1)`` have mean ``0.5 - 1 / 512``).

    Example:
        >>> y = uniform(torch.zeros(1000), width=2.0, generator=torch.Generator().manual_seed(0))
        >>> bool(y.min() >= -1.0 and y.max() < 1.0)
        True
    """
    if x.dtype in _HALF_PRECISION:
        return torch.add(x, _rand(x, generator, torch.float32) - 0.5, alpha=width).to(x.dtype)
    return torch.add(x, _rand(x, generator) - 0.5, alpha=width)


def laplace(x: Tensor, scale: float, generator: torch.Generator | None = None) -> Tensor:
    """``x + Laplace(0, scale)`` by inverting the CDF of one uniform draw.

    A float16 / bfloat16 ``x`` gets the float32 draw (tails up to about ``16 * scale``), rounded to its
    dtype once; uniforms drawn in 16 bits would cut the tails near ``5 * scale`` (bfloat16) and bias
    the mean.

    Example:
        >>> y = laplace(torch.zeros(200_000), scale=1.0, generator=torch.Generator().manual_seed(0))
        >>> round(y.abs().mean().item(), 1)  # E|X| = scale
        1.0
    """
    reduced = x.dtype in _HALF_PRECISION
    u = _rand(x, generator, torch.float32 if reduced else None).mul_(2.0).sub_(1.0)
    tiny = torch.finfo(u.dtype).eps
    magnitude = torch.log1p(-u.abs().clamp_(max=1.0 - tiny))
    noisy = torch.addcmul(x, torch.sign(u), magnitude, value=-scale)
    return noisy.to(x.dtype) if reduced else noisy


def salt_and_pepper(
    x: Tensor,
    amount: float,
    salt_vs_pepper: float = 0.5,
    low: float = 0.0,
    high: float = 1.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Set a fraction ``amount`` of elements to ``high`` (salt) or ``low`` (pepper).

    One uniform draw ``u`` per element: ``u < amount * (1 - salt_vs_pepper)`` is pepper, up to
    ``amount`` is salt, the rest is unchanged.

    Example:
        >>> y = salt_and_pepper(torch.full((100_000,), 0.5), amount=0.2,
        ...                     generator=torch.Generator().manual_seed(0))
        >>> round((y != 0.5).float().mean().item(), 2)
        0.2
    """
    u = _rand(x, generator, torch.float32)
    pepper_cut = amount * (1.0 - salt_vs_pepper)
    return x.masked_fill(u < amount, high).masked_fill_(u < pepper_cut, low)


def speckle(x: Tensor, std: float, generator: torch.Generator | None = None) -> Tensor:
    """Multiplicative noise ``x * (1 + std * N(0, 1))``.

    Example:
        >>> y = speckle(torch.full((100_000,), 2.0), std=0.1, generator=torch.Generator().manual_seed(0))
        >>> round(y.std().item(), 2)  # std of x * std * N(0, 1)
        0.2
    """
    return torch.addcmul(x, x, _randn(x, generator), value=std)


def snr(x: Tensor, db: float, generator: torch.Generator | None = None) -> Tensor:
    """Gaussian noise scaled per sample to a signal-to-noise ratio of ``db`` decibels.

    The signal power is the mean square of each sample (over every dimension but the first); the
    noise has power ``signal / 10 ** (db / 10)``. A silent sample gets no noise. For a float16 /
    bfloat16 ``x`` the power and the noise std are computed in float32 (a float16 square overflows
    above 256) and the std is then cast to ``x``'s dtype.

    Example:
        >>> x = torch.randn(4, 16_000, generator=torch.Generator().manual_seed(1))
        >>> y = snr(x, db=10.0, generator=torch.Generator().manual_seed(0))
        >>> ratio = x.pow(2).mean(1) / (y - x).pow(2).mean(1)
        >>> [round(10 * torch.log10(r).item()) for r in ratio]
        [10, 10, 10, 10]
    """
    dims = tuple(range(1, x.ndim))
    reduced = x.dtype in _HALF_PRECISION
    signal = x.float() if reduced else x
    power = signal.pow(2).mean(dim=dims, keepdim=True) if dims else signal.pow(2)
    std = torch.sqrt(power * 10.0 ** (-db / 10.0))
    return torch.addcmul(x, std.to(x.dtype) if reduced else std, _randn(x, generator))


def mask(x: Tensor, p: float, value: float = 0.0, generator: torch.Generator | None = None) -> Tensor:
    """Replace each element by ``value`` with probability ``p`` (feature drop, no rescaling).

    Example:
        >>> y = mask(torch.ones(100_000), p=0.3, generator=torch.Generator().manual_seed(0))
        >>> round((y == 0).float().mean().item(), 2)
        0.3
    """
    return x.masked_fill(_rand(x, generator, torch.float32) < p, value)


def gate_samples(noisy: Tensor, clean: Tensor, p: float, generator: torch.Generator | None = None) -> Tensor:
    """Keep ``noisy`` for a random fraction ``p`` of the samples (first dimension), else ``clean``.

    Example:
        >>> out = gate_samples(torch.ones(10_000, 3), torch.zeros(10_000, 3), p=0.25,
        ...                    generator=torch.Generator().manual_seed(0))
        >>> abs(out[:, 0].mean().item() - 0.25) < 0.02  # about a quarter of the rows are noisy
        True
    """
    if p >= 1.0:
        return noisy
    keep = torch.rand(noisy.shape[0], generator=generator, device=noisy.device) < p
    keep = keep.view((-1,) + (1,) * (noisy.ndim - 1))
    return torch.where(keep, noisy, clean)
