"""Noise layers: modules that add noise in ``train()`` mode only, with a schedulable strength.

Unlike Keras' ``GaussianNoise``, the strength can follow a schedule: add
:class:`~lit_noise.NoiseLayerSchedule` to the Trainer's callbacks and it sets every noise layer's
clock (and a counter-based generator) at each training batch. Without it, constant strengths
work as they are and draw from torch's global RNG.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from lit_noise._validation import check_range
from lit_noise.errors import ConfigurationError
from lit_noise.noise.base import Noise
from lit_noise.noise.input import Gaussian, Speckle
from lit_noise.schedules import Clock, Constant, Schedule, ScheduleLike, as_schedule

__all__ = ["GaussianDropout", "GaussianNoise", "NoiseLayer"]

_NO_CLOCK = Clock()


class NoiseLayer(nn.Module):
    """Base of the noise layers: a :class:`~lit_noise.noise.Noise` applied in training mode.

    Attributes:
        scale: multiplier on the strength (the controller's knob); saved by
            :class:`~lit_noise.NoiseLayerSchedule` in checkpoints.
        clock: set by :class:`~lit_noise.NoiseLayerSchedule` before each training batch.
        generator: likewise; ``None`` means torch's global RNG.
        schedule_scale: likewise, the ``scale`` of that callback, applied on top of ``scale``.

    Example:
        >>> from lit_noise import Uniform
        >>> class UniformNoise(NoiseLayer):  # additive uniform noise of `width`
        ...     def __init__(self, width, scale=1.0):
        ...         super().__init__(Uniform(width=width), scale)
        >>> layer = UniformNoise(width=0.5, scale=0.5).train()
        >>> layer.current(), layer.settings()
        ({'width': 0.25}, {'width': 0.5, 'scale': 0.5})
        >>> layer.generator = torch.Generator().manual_seed(0)  # NoiseLayerSchedule sets one per batch
        >>> y = layer(torch.zeros(100_000))
        >>> bool(y.abs().max() <= 0.125), round(y.std().item() * 12**0.5, 2)  # width 0.25 as drawn
        (True, 0.25)
        >>> bool((layer.eval()(torch.ones(3)) == 1).all()), isinstance(GaussianNoise(std=0.1), NoiseLayer)
        (True, True)
    """

    # The strengths of the last (clock, scale, noise), see _noise_params; a class default, so that a
    # layer pickled before the cache existed loads with it too.
    _resolved: tuple[Clock | None, float, Noise, dict[str, float]] | None = None

    def __init__(self, noise: Noise, scale: float = 1.0) -> None:
        super().__init__()
        self.noise = noise
        self.scale = check_range(type(self).__name__, "scale", scale, 0.0)
        self.clock: Clock | None = None
        self.generator: torch.Generator | None = None
        self.schedule_scale = 1.0

    def _set_batch_state(self, clock: Clock, schedule_scale: float, generator: torch.Generator) -> None:
        """Set ``clock``, ``schedule_scale`` and ``generator`` for the next training batch.

        ``object.__setattr__`` stores them as ``nn.Module.__setattr__`` ends up doing for values
        that are neither parameters, buffers nor modules (and calls a subclass's property setter),
        without that method's dozen checks per attribute: NoiseLayerSchedule calls this for every
        layer on every batch.
        """
        object.__setattr__(self, "clock", clock)
        object.__setattr__(self, "schedule_scale", schedule_scale)
        object.__setattr__(self, "generator", generator)

    def schedules(self) -> dict[str, Schedule]:
        """The layer's strength schedules by parameter name."""
        return self.noise.schedules()

    def current(self) -> dict[str, float]:
        """The strengths that the next training forward uses, by the layer's parameter names.

        :class:`~lit_noise.NoiseLayerSchedule` logs them as ``noise/<name>/<layer path>/<param>``.
        """
        return dict(self._noise_params())

    def settings(self) -> dict[str, Any]:
        """The layer's arguments (logged by :class:`~lit_noise.NoiseLayerSchedule` as hyperparameters).

        Example:
            >>> GaussianNoise(std=0.1).settings()
            {'std': 0.1, 'mean': 0.0, 'scale': 1.0}
        """
        return {**self.noise.settings(), "scale": self.scale}

    def _noise_params(self) -> dict[str, float]:
        """The resolved parameters of the noise this layer applies (not to be modified).

        Resolved once per clock, scale and noise: NoiseLayerSchedule's logging (:meth:`current`) and
        the batch's forward calls share the values.
        """
        key = (self.clock, self.scale * self.schedule_scale, self.noise)
        cached = self._resolved
        if cached is not None and cached[0] is key[0] and cached[1] == key[1] and cached[2] is key[2]:
            return cached[3]
        self._check_clock()
        params = self.noise.resolve(self.clock, key[1])
        object.__setattr__(self, "_resolved", (*key, params))  # a plain value: skip nn.Module's checks
        return params

    def _check_clock(self) -> None:
        if self.clock is None and any(not s.is_constant for s in self.schedules().values()):
            raise ConfigurationError(
                f"{type(self).__name__}: its strength follows a schedule, so it needs the trainer's"
                " clock: add lit_noise.NoiseLayerSchedule() to the Trainer's callbacks."
            )

    def forward(self, x: Tensor) -> Tensor:
        """Noisy ``x`` in training mode, ``x`` itself in eval mode."""
        if not self.training:
            return x
        params = self._noise_params()
        self.noise.check(x)
        generator = (
            self.generator if self.generator is not None and self.generator.device == x.device else None
        )
        noisy: Tensor = self.noise.apply(x, params, generator)
        return noisy

    def extra_repr(self) -> str:
        """The noise, shown in the module's repr."""
        return repr(self.noise)


class GaussianNoise(NoiseLayer):
    """Additive zero-mean Gaussian noise ``x + std * N(0, 1)`` in training mode.

    Example:
        >>> layer = GaussianNoise(std=0.5).train()
        >>> round(layer(torch.zeros(100_000)).std().item(), 1)
        0.5
        >>> bool((layer.eval()(torch.ones(3)) == 1).all())
        True
    """

    def __init__(self, std: ScheduleLike, scale: float = 1.0) -> None:
        super().__init__(Gaussian(std=std), scale)


class GaussianDropout(NoiseLayer):
    """Multiplicative Gaussian noise ``x * (1 + sqrt(rate / (1 - rate)) * N(0, 1))`` (Keras' rule).

    ``rate`` in [0, 1) is the equivalent dropout rate; it may be a schedule, and ``scale`` scales
    the noise's standard deviation. The layer's strength is reported (and logged by
    :class:`~lit_noise.NoiseLayerSchedule`) as ``rate``: the dropout rate equivalent to the noise
    applied, ``rate`` itself at scale 1 and ``s² rate / (1 - rate + s² rate)`` when the scales
    multiply the standard deviation by ``s``.

    Example:
        >>> layer = GaussianDropout(rate=0.5).train()
        >>> round(layer(torch.ones(100_000)).std().item(), 1)  # sqrt(0.5 / 0.5) = 1
        1.0
        >>> layer.current()
        {'rate': 0.5}
    """

    def __init__(self, rate: ScheduleLike, scale: float = 1.0) -> None:
        rate_schedule = as_schedule(rate, "GaussianDropout", "rate")
        low, high = rate_schedule.min_max()
        if low < 0.0 or high >= 1.0:
            raise ConfigurationError(f"GaussianDropout: `rate` must be >= 0 and < 1, got {rate!r}.")
        super().__init__(Speckle(std=_DropoutStd(rate_schedule)), scale)
        self.rate = rate_schedule

    def current(self) -> dict[str, float]:
        """The dropout rate equivalent to the multiplicative noise the next training forward applies."""
        self._check_clock()
        rate = self.rate(_NO_CLOCK if self.clock is None else self.clock)
        factor = (self.scale * self.schedule_scale) ** 2  # on the variance rate / (1 - rate)
        return {"rate": rate if factor == 1.0 else factor * rate / (1.0 - rate + factor * rate)}

    def settings(self) -> dict[str, Any]:
        """The layer's arguments: ``rate`` and ``scale``."""
        return {"rate": self.rate, "scale": self.scale}

    def extra_repr(self) -> str:
        """The rate, shown in the module's repr."""
        rate = self.rate.constant if isinstance(self.rate, Constant) else self.rate
        return f"rate={rate!r}"


class _DropoutStd(Schedule):
    """``sqrt(rate / (1 - rate))`` of a rate schedule."""

    def __init__(self, rate: Schedule) -> None:
        self.rate = rate
        self.unit = rate.unit

    def __call__(self, clock: Clock) -> float:
        return self._std(self.rate(clock))

    def value(self, t: float) -> float:
        return self._std(self.rate.value(t))

    @staticmethod
    def _std(rate: float) -> float:
        return math.sqrt(rate / (1.0 - rate))

    @property
    def is_constant(self) -> bool:
        return self.rate.is_constant

    def units(self) -> set[str]:
        return self.rate.units()

    def min_max(self) -> tuple[float, float]:
        low, high = self.rate.min_max()
        return self._std(low), self._std(high)
