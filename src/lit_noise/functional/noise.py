"""Pure tensor functions that return a noisy copy of a tensor (no Lightning, no state).

Each draws from an explicit ``torch.Generator`` (or torch's global RNG when ``None``) on the
tensor's device, in the tensor's dtype, with one vectorised draw where one suffices.
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

    Example:
        >>> y = uniform(torch.zeros(1000), width=2.0, generator=torch.Generator().manual_seed(0))
        >>> bool(y.min() >= -1.0 and y.max() < 1.0)
        True
    """
    return torch.add(x, _rand(x, generator) - 0.5, alpha=width)


def laplace(x: Tensor, scale: float, generator: torch.Generator | None = None) -> Tensor:
    """``x + Laplace(0, scale)`` by inverting the CDF of one uniform draw.

    Example:
        >>> y = laplace(torch.zeros(200_000), scale=1.0, generator=torch.Generator().manual_seed(0))
        >>> round(y.abs().mean().item(), 1)  # E|X| = scale
        1.0
    """
    u = _rand(x, generator).mul_(2.0).sub_(1.0)
    tiny = torch.finfo(x.dtype).eps
    magnitude = torch.log1p(-u.abs().clamp_(max=1.0 - tiny))
    return torch.addcmul(x, torch.sign(u), magnitude, value=-scale)


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
    noise has power ``signal / 10 ** (db / 10)``. A silent sample gets no noise.

    Example:
        >>> x = torch.randn(4, 16_000, generator=torch.Generator().manual_seed(1))
        >>> y = snr(x, db=10.0, generator=torch.Generator().manual_seed(0))
        >>> ratio = x.pow(2).mean(1) / (y - x).pow(2).mean(1)
        >>> [round(10 * torch.log10(r).item()) for r in ratio]
        [10, 10, 10, 10]
    """
    dims = tuple(range(1, x.ndim))
    power = x.pow(2).mean(dim=dims, keepdim=True) if dims else x.pow(2)
    std = torch.sqrt(power * 10.0 ** (-db / 10.0))
    return torch.addcmul(x, std, _randn(x, generator))


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
