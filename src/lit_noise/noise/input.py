"""Noise for inputs (and float regression targets): additive, multiplicative, impulse, masking."""

from __future__ import annotations

import math

import torch
from torch import Tensor
from typing_extensions import override

from lit_noise import functional as LF
from lit_noise._validation import check_number, check_range, fail
from lit_noise.errors import ConfigurationError
from lit_noise.noise.base import Noise
from lit_noise.schedules import Clock, ScheduleLike

__all__ = ["SNR", "Gaussian", "Laplace", "Mask", "SaltAndPepper", "Speckle", "Uniform"]


class Gaussian(Noise):
    """Additive Gaussian noise ``x + mean + std * N(0, 1)``; also for float regression targets.

    Args:
        std: standard deviation (>= 0), a number or a schedule; scaled by the controller.
        mean: mean of the noise, a number or a schedule.

    Example:
        >>> import torch
        >>> noise = Gaussian(std=0.1)
        >>> y = noise(torch.zeros(100_000), generator=torch.Generator().manual_seed(0))
        >>> round(y.std().item(), 2)
        0.1
    """

    strength = ("std",)

    def __init__(self, std: ScheduleLike, mean: ScheduleLike = 0.0) -> None:
        super().__init__()
        self._param("std", std, low=0.0)
        self._param("mean", mean)

    @override
    def apply(self, x: Tensor, params: dict[str, float], generator: torch.Generator | None) -> Tensor:
        return LF.gaussian(x, params["std"], params["mean"], generator)


class Uniform(Noise):
    """Additive zero-mean uniform noise ``x + U(-width / 2, width / 2)``.

    Example:
        >>> import torch
        >>> y = Uniform(width=1.0)(torch.zeros(1000), generator=torch.Generator().manual_seed(0))
        >>> bool(y.abs().max() <= 0.5)
        True
    """

    strength = ("width",)

    def __init__(self, width: ScheduleLike) -> None:
        super().__init__()
        self._param("width", width, low=0.0)

    @override
    def apply(self, x: Tensor, params: dict[str, float], generator: torch.Generator | None) -> Tensor:
        return LF.uniform(x, params["width"], generator)


class Laplace(Noise):
    """Additive Laplace noise with density ``exp(-|z| / scale) / (2 scale)``.

    Example:
        >>> import torch
        >>> y = Laplace(scale=0.5)(torch.zeros(100_000), generator=torch.Generator().manual_seed(0))
        >>> round(y.abs().mean().item(), 1)
        0.5
    """

    strength = ("scale",)

    def __init__(self, scale: ScheduleLike) -> None:
        super().__init__()
        self._param("scale", scale, low=0.0)

    @override
    def apply(self, x: Tensor, params: dict[str, float], generator: torch.Generator | None) -> Tensor:
        return LF.laplace(x, params["scale"], generator)


class SaltAndPepper(Noise):
    """Impulse noise: a fraction ``amount`` of elements set to ``high`` (salt) or ``low`` (pepper).

    Args:
        amount: fraction of elements replaced, in [0, 1]; scaled by the controller.
        salt_vs_pepper: fraction of the replaced elements that become ``high``.
        low: the pepper value.
        high: the salt value.

    Example:
        >>> import torch
        >>> y = SaltAndPepper(amount=0.1)(torch.full((100_000,), 0.5),
        ...                               generator=torch.Generator().manual_seed(0))
        >>> round((y != 0.5).float().mean().item(), 2)
        0.1
    """

    strength = ("amount",)

    def __init__(
        self,
        amount: ScheduleLike,
        salt_vs_pepper: float = 0.5,
        low: float = 0.0,
        high: float = 1.0,
    ) -> None:
        super().__init__()
        self._param("amount", amount, low=0.0, high=1.0)
        self.salt_vs_pepper = check_range("SaltAndPepper", "salt_vs_pepper", salt_vs_pepper, 0.0, 1.0)
        self.low = check_number("SaltAndPepper", "low", low)
        self.high = check_number("SaltAndPepper", "high", high)
        if self.high < self.low:
            raise fail("SaltAndPepper", "high", high, f">= `low` ({self.low:g})")

    @override
    def apply(self, x: Tensor, params: dict[str, float], generator: torch.Generator | None) -> Tensor:
        return LF.salt_and_pepper(x, params["amount"], self.salt_vs_pepper, self.low, self.high, generator)


class Speckle(Noise):
    """Multiplicative noise ``x * (1 + std * N(0, 1))``.

    Example:
        >>> import torch
        >>> y = Speckle(std=0.1)(torch.ones(100_000), generator=torch.Generator().manual_seed(0))
        >>> round(y.std().item(), 2)
        0.1
    """

    strength = ("std",)

    def __init__(self, std: ScheduleLike) -> None:
        super().__init__()
        self._param("std", std, low=0.0)

    @override
    def apply(self, x: Tensor, params: dict[str, float], generator: torch.Generator | None) -> Tensor:
        return LF.speckle(x, params["std"], generator)


class SNR(Noise):
    """Gaussian noise scaled per sample to a signal-to-noise ratio of ``db`` decibels (audio).

    The signal power is each sample's mean square. The controller's ``scale`` multiplies the noise
    amplitude, i.e. lowers the SNR by ``20 log10(scale)`` dB.

    Example:
        >>> import torch
        >>> x = torch.randn(2, 8000, generator=torch.Generator().manual_seed(1))
        >>> y = SNR(db=20.0)(x, generator=torch.Generator().manual_seed(0))
        >>> round(10 * torch.log10(x.pow(2).mean() / (y - x).pow(2).mean()).item())
        20
    """

    def __init__(self, db: ScheduleLike) -> None:
        super().__init__()
        self._param("db", db)

    @override
    def resolve(self, clock: Clock | None = None, scale: float = 1.0) -> dict[str, float]:
        values = super().resolve(clock, 1.0)
        if scale != 1.0:
            values["db"] -= 20.0 * math.log10(max(scale, 1e-12))
        return values

    @override
    def apply(self, x: Tensor, params: dict[str, float], generator: torch.Generator | None) -> Tensor:
        return LF.snr(x, params["db"], generator)


class Mask(Noise):
    """Random feature drop: each element becomes ``value`` with probability ``p`` (no rescaling).

    Masking only sets values, so it also applies to integer (token ids) and boolean tensors,
    keeping their dtype; ``value`` must then be a whole number the dtype can hold (``0`` or ``1``
    for booleans), checked against each tensor, so a fill that would be truncated or overflow is
    an error, not a silent change.

    Args:
        p: probability that an element is masked (in [0, 1]), a number or a schedule; scaled by
            the controller.
        value: what a masked element becomes (a mask token id for token inputs).

    Example:
        >>> import torch
        >>> y = Mask(p=0.25)(torch.ones(100_000), generator=torch.Generator().manual_seed(0))
        >>> round((y == 0).float().mean().item(), 2)
        0.25
        >>> Mask(p=0.25, value=103)(torch.arange(1, 9), generator=torch.Generator().manual_seed(0))
        tensor([  1,   2, 103, 103,   5,   6,   7,   8])
    """

    strength = ("p",)

    def __init__(self, p: ScheduleLike, value: float = 0.0) -> None:
        super().__init__()
        self._param("p", p, low=0.0, high=1.0)
        number = check_number("Mask", "value", value)
        self.value: float = value if isinstance(value, int) else number  # large ints stay exact

    @override
    def check(self, x: Tensor, role: str = "input") -> None:
        if x.is_floating_point():
            return
        if x.is_complex():
            super().check(x, role)
        if x.dtype == torch.bool:
            low, high = 0, 1
        else:
            info = torch.iinfo(x.dtype)
            low, high = info.min, info.max
        if not (float(self.value).is_integer() and low <= self.value <= high):
            raise ConfigurationError(
                f"Mask: `value` must be a whole number in [{low}, {high}] to fill a {x.dtype} {role},"
                f" got {self.value!r}."
            )

    @override
    def apply(self, x: Tensor, params: dict[str, float], generator: torch.Generator | None) -> Tensor:
        value = self.value if x.is_floating_point() else int(self.value)
        return LF.mask(x, params["p"], value, generator)
