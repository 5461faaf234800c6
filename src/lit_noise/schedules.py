"""When and how much: schedules map a training :class:`Clock` to a number.

Every noise strength in lit_noise is a number or a :class:`Schedule`. A schedule reads one unit of
the clock: ``"step"`` (optimizer steps, ``trainer.global_step``), ``"epoch"`` (``current_epoch``)
or ``"progress"`` (the fraction of training done, ``global_step / estimated_stepping_batches``).
Since the clock is derived from the trainer's own counters, a resumed run sees the same values.

Example:
    >>> ramp = Linear(start=0.0, end=0.2, until=0.5)  # ramp over the first half of training
    >>> ramp(Clock(step=25, epoch=0, progress=0.25))
    0.1
    >>> ramp(Clock(step=90, epoch=3, progress=0.9))
    0.2
"""

from __future__ import annotations

import bisect
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Union, get_args

from typing_extensions import override

from lit_noise._validation import check_choice, check_number, check_range, fail

__all__ = [
    "AnnealedStd",
    "Clock",
    "Constant",
    "Cosine",
    "Cyclic",
    "Delay",
    "Exponential",
    "Interval",
    "InverseTime",
    "Linear",
    "Piecewise",
    "Product",
    "Schedule",
    "ScheduleLike",
    "Step",
    "Unit",
    "as_schedule",
]

Unit = Literal["step", "epoch", "progress"]
UNITS: tuple[str, ...] = get_args(Unit)


@dataclass(frozen=True)
class Clock:
    """Where training is: optimizer steps, epochs, and the fraction of training done (0..1).

    Example:
        >>> Clock(step=10, epoch=1, progress=0.5).time("epoch")
        1.0
    """

    step: int = 0
    epoch: int = 0
    progress: float = 0.0

    def time(self, unit: str) -> float:
        """The clock read in ``unit``."""
        if unit == "step":
            return float(self.step)
        if unit == "epoch":
            return float(self.epoch)
        return self.progress


class Schedule(ABC):
    """A number that depends on the training clock.

    Subclasses implement :meth:`value` of the time in their ``unit``. Schedules multiply with
    numbers and with each other (giving :class:`Product`).

    Example:
        >>> class Halving(Schedule):  # halves every epoch
        ...     unit = "epoch"
        ...     def __init__(self, start):
        ...         self.start = start
        ...     def value(self, t):
        ...         return self.start * 0.5**t
        ...     def min_max(self):
        ...         return 0.0, self.start
        >>> halving = Halving(start=0.4)
        >>> halving(Clock(epoch=2)), halving.units(), halving.is_constant
        (0.1, {'epoch'}, False)
        >>> (halving * 0.5)(Clock(epoch=1)), halving
        (0.1, Halving(start=0.4))
    """

    unit: str = "step"

    def __call__(self, clock: Clock) -> float:
        """The schedule's value at ``clock``."""
        return self.value(clock.time(self.unit))

    @abstractmethod
    def value(self, t: float) -> float:
        """The schedule's value at time ``t`` in its unit."""

    @property
    def is_constant(self) -> bool:
        """True when the value never changes (no clock is needed)."""
        return False

    def units(self) -> set[str]:
        """The clock units this schedule reads."""
        return set() if self.is_constant else {self.unit}

    def min_max(self) -> tuple[float, float]:
        """Bounds on the value over all times, used to validate strengths early."""
        raise NotImplementedError

    def __mul__(self, other: ScheduleLike) -> Product:
        return Product([self, other])

    __rmul__ = __mul__

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({fields})"


ScheduleLike = Union[Schedule, float, int]


def as_schedule(value: ScheduleLike, owner: str = "schedule", name: str = "value") -> Schedule:
    """A schedule from a schedule or a plain number (which means :class:`Constant`).

    Example:
        >>> as_schedule(0.3)
        Constant(constant=0.3)
    """
    if isinstance(value, Schedule):
        return value
    return Constant(check_number(owner, name, value))


def _check_unit(owner: str, unit: str) -> str:
    return str(check_choice(owner, "unit", unit, UNITS))


def _check_time(owner: str, name: str, value: float, unit: str) -> float:
    high = 1.0 if unit == "progress" else None
    return check_range(owner, name, value, 0.0, high)


class Constant(Schedule):
    """The same value at every time.

    Example:
        >>> Constant(0.1)(Clock())
        0.1
    """

    def __init__(self, constant: float) -> None:
        self.constant = check_number("Constant", "constant", constant)

    @override
    def value(self, t: float) -> float:
        return self.constant

    @property
    @override
    def is_constant(self) -> bool:
        return True

    @override
    def min_max(self) -> tuple[float, float]:
        return self.constant, self.constant


class _Ramp(Schedule):
    """``start`` until ``begin``, then a shaped ramp to ``end`` at ``until``, then ``end``."""

    def __init__(
        self, start: float, end: float, until: float, begin: float = 0.0, unit: Unit = "progress"
    ) -> None:
        owner = type(self).__name__
        self.unit = _check_unit(owner, unit)
        self.start = check_number(owner, "start", start)
        self.end = check_number(owner, "end", end)
        self.begin = _check_time(owner, "begin", begin, self.unit)
        self.until = _check_time(owner, "until", until, self.unit)
        if self.until <= self.begin:
            raise fail(owner, "until", until, f"greater than `begin` ({self.begin:g})")

    def value(self, t: float) -> float:
        if t <= self.begin:
            return self.start
        if t >= self.until:
            return self.end
        fraction = (t - self.begin) / (self.until - self.begin)
        return self.start + (self.end - self.start) * self._shape(fraction)

    @staticmethod
    @abstractmethod
    def _shape(fraction: float) -> float: ...

    def min_max(self) -> tuple[float, float]:
        return min(self.start, self.end), max(self.start, self.end)


class Linear(_Ramp):
    """Linear ramp from ``start`` (at ``begin``) to ``end`` (at ``until``), flat outside.

    Example:
        >>> s = Linear(start=0.0, end=1.0, begin=10, until=20, unit="step")
        >>> [s(Clock(step=t)) for t in (0, 10, 15, 20, 30)]
        [0.0, 0.0, 0.5, 1.0, 1.0]
    """

    @staticmethod
    def _shape(fraction: float) -> float:
        return fraction


class Cosine(_Ramp):
    """Half-cosine ramp from ``start`` (at ``begin``) to ``end`` (at ``until``), flat outside.

    Example:
        >>> s = Cosine(start=1.0, end=0.0, until=1.0)
        >>> [round(s(Clock(progress=p)), 3) for p in (0.0, 0.5, 1.0)]
        [1.0, 0.5, 0.0]
    """

    @staticmethod
    def _shape(fraction: float) -> float:
        return 0.5 * (1.0 - math.cos(math.pi * fraction))


class Step(Schedule):
    """``value`` multiplied by ``gamma`` at each of the increasing ``milestones`` passed.

    Example:
        >>> s = Step(value=1.0, milestones=[2, 4], gamma=0.5, unit="epoch")
        >>> [s(Clock(epoch=e)) for e in range(6)]
        [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]
    """

    def __init__(
        self, value: float, milestones: Sequence[float], gamma: float = 0.1, unit: Unit = "epoch"
    ) -> None:
        self.unit = _check_unit("Step", unit)
        self.initial = check_number("Step", "value", value)
        self.gamma = check_number("Step", "gamma", gamma)
        if isinstance(milestones, (str, bytes)) or not isinstance(milestones, Sequence):
            raise fail("Step", "milestones", milestones, "a list of increasing times")
        self.milestones = [_check_time("Step", "milestones", m, self.unit) for m in milestones]
        if any(b <= a for a, b in zip(self.milestones, self.milestones[1:], strict=False)):
            raise fail("Step", "milestones", list(milestones), "strictly increasing")

    @override
    def value(self, t: float) -> float:
        return self.initial * self.gamma ** bisect.bisect_right(self.milestones, t)

    @override
    def min_max(self) -> tuple[float, float]:
        values = [self.initial * self.gamma**k for k in range(len(self.milestones) + 1)]
        return min(values), max(values)


class Exponential(Schedule):
    """``value * gamma ** t``.

    Example:
        >>> Exponential(value=1.0, gamma=0.5, unit="epoch")(Clock(epoch=3))
        0.125
    """

    def __init__(self, value: float, gamma: float, unit: Unit = "epoch") -> None:
        self.unit = _check_unit("Exponential", unit)
        self.initial = check_number("Exponential", "value", value)
        self.gamma = check_range("Exponential", "gamma", gamma, 0.0, low_open=True)

    @override
    def value(self, t: float) -> float:
        return self.initial * math.pow(self.gamma, t)

    @override
    def min_max(self) -> tuple[float, float]:
        if self.gamma == 1.0:
            return self.initial, self.initial
        if self.gamma < 1.0:
            return min(0.0, self.initial), max(0.0, self.initial)
        return (-math.inf, self.initial) if self.initial < 0 else (self.initial, math.inf)


class InverseTime(Schedule):
    """``value * (1 + t) ** -gamma`` (inverse-time decay).

    Example:
        >>> InverseTime(value=1.0, gamma=1.0, unit="step")(Clock(step=3))
        0.25
    """

    def __init__(self, value: float, gamma: float = 0.55, unit: Unit = "step") -> None:
        self.unit = _check_unit("InverseTime", unit)
        self.initial = check_number("InverseTime", "value", value)
        self.gamma = check_range("InverseTime", "gamma", gamma, 0.0)

    @override
    def value(self, t: float) -> float:
        return self.initial * math.pow(1.0 + t, -self.gamma)

    @override
    def min_max(self) -> tuple[float, float]:
        return min(0.0, self.initial), max(0.0, self.initial)


class AnnealedStd(Schedule):
    """Standard deviation whose *variance* is ``eta / (1 + t) ** gamma`` (Neelakantan et al., 2015).

    "Adding Gradient Noise Improves Learning for Very Deep Networks" anneals the variance; this
    schedule returns its square root, ``sqrt(eta) * (1 + t) ** (-gamma / 2)``, the standard
    deviation a Gaussian noise source takes. The paper uses ``eta`` in {0.01, 0.3, 1.0} and
    ``gamma = 0.55`` with ``t`` the optimizer step. Both must be >= 0 (a negative ``gamma`` would
    make the noise grow without bound).

    Example:
        >>> AnnealedStd(eta=0.01, gamma=0.55)(Clock(step=0))
        0.1
    """

    def __init__(self, eta: float, gamma: float = 0.55, unit: Unit = "step") -> None:
        self.unit = _check_unit("AnnealedStd", unit)
        self.eta = check_range("AnnealedStd", "eta", eta, 0.0)
        self.gamma = check_range("AnnealedStd", "gamma", gamma, 0.0)

    @override
    def value(self, t: float) -> float:
        return math.sqrt(self.eta / (1.0 + t) ** self.gamma)

    @override
    def min_max(self) -> tuple[float, float]:
        return 0.0, math.sqrt(self.eta)


class Cyclic(Schedule):
    """Oscillates between ``low`` and ``high`` with ``period``, starting at ``low``.

    ``shape="triangle"`` rises linearly for half a period and falls back; ``"cosine"`` follows
    ``low + (high - low) * (1 - cos(2 pi t / period)) / 2``.

    Example:
        >>> s = Cyclic(low=0.0, high=1.0, period=4, unit="step")
        >>> [s(Clock(step=t)) for t in range(5)]
        [0.0, 0.5, 1.0, 0.5, 0.0]
    """

    def __init__(
        self,
        low: float,
        high: float,
        period: float,
        unit: Unit = "epoch",
        shape: Literal["triangle", "cosine"] = "triangle",
    ) -> None:
        self.unit = _check_unit("Cyclic", unit)
        self.low = check_number("Cyclic", "low", low)
        self.high = check_number("Cyclic", "high", high)
        self.period = check_range("Cyclic", "period", period, 0.0, low_open=True)
        self.shape = check_choice("Cyclic", "shape", shape, ("triangle", "cosine"))

    @override
    def value(self, t: float) -> float:
        phase = (t % self.period) / self.period
        if self.shape == "triangle":
            fraction = 1.0 - abs(2.0 * phase - 1.0)
        else:
            fraction = 0.5 * (1.0 - math.cos(2.0 * math.pi * phase))
        return self.low + (self.high - self.low) * fraction

    @override
    def min_max(self) -> tuple[float, float]:
        return min(self.low, self.high), max(self.low, self.high)


class _Gated(Schedule):
    """An inner schedule where :meth:`_on` holds at the time in ``unit``, else 0."""

    inner: Schedule

    @abstractmethod
    def _on(self, t: float) -> bool: ...

    @override
    def __call__(self, clock: Clock) -> float:
        return self.inner(clock) if self._on(clock.time(self.unit)) else 0.0

    @override
    def value(self, t: float) -> float:
        return self.inner.value(t) if self._on(t) else 0.0

    @override
    def units(self) -> set[str]:
        return {self.unit} | self.inner.units()

    @override
    def min_max(self) -> tuple[float, float]:
        low, high = self.inner.min_max()
        return min(low, 0.0), max(high, 0.0)


class Interval(_Gated):
    """Noise at scheduled intervals: ``value`` for ``duration`` of every ``every`` units, else 0.

    The windows start at ``offset``; before it the value is 0. ``every`` must be > 0, ``duration``
    in ``(0, every]`` and ``offset`` >= 0 (and <= 1 in unit ``"progress"``).

    Example:
        >>> s = Interval(value=0.1, every=3, duration=1, unit="epoch")
        >>> [s(Clock(epoch=e)) for e in range(6)]
        [0.1, 0.0, 0.0, 0.1, 0.0, 0.0]
    """

    def __init__(
        self,
        value: ScheduleLike,
        every: float,
        duration: float,
        offset: float = 0.0,
        unit: Unit = "epoch",
    ) -> None:
        self.unit = _check_unit("Interval", unit)
        self.inner = as_schedule(value, "Interval", "value")
        self.every = check_range("Interval", "every", every, 0.0, low_open=True)
        self.duration = check_range("Interval", "duration", duration, 0.0, self.every, low_open=True)
        self.offset = _check_time("Interval", "offset", offset, self.unit)

    @override
    def _on(self, t: float) -> bool:
        # Window k is [offset + k * every, offset + k * every + duration). The tolerance keeps
        # fractional units exact: in floats 0.3 % 0.1 is 0.0999..., which would miss window 3.
        if t < self.offset:
            return False
        elapsed = t - self.offset
        within = elapsed - math.floor(elapsed / self.every + 1e-9) * self.every
        return within < self.duration - 1e-9 * self.every


class Delay(_Gated):
    """0 before ``start``, then ``schedule`` (evaluated on the unshifted clock).

    Example:
        >>> s = Delay(0.2, start=2, unit="epoch")
        >>> [s(Clock(epoch=e)) for e in range(4)]
        [0.0, 0.0, 0.2, 0.2]
    """

    def __init__(self, schedule: ScheduleLike, start: float, unit: Unit = "epoch") -> None:
        self.unit = _check_unit("Delay", unit)
        self.inner = as_schedule(schedule, "Delay", "schedule")
        self.start = _check_time("Delay", "start", start, self.unit)

    @override
    def _on(self, t: float) -> bool:
        return t >= self.start


class Piecewise(Schedule):
    """Through the points ``[(t0, v0), (t1, v1), ...]``, flat before the first and after the last.

    ``interpolation="linear"`` joins the points by lines, ``"constant"`` holds each value until
    the next point. Times must be strictly increasing.

    Example:
        >>> s = Piecewise([(0, 0.0), (10, 1.0), (20, 0.0)], unit="step")
        >>> [s(Clock(step=t)) for t in (0, 5, 10, 15, 25)]
        [0.0, 0.5, 1.0, 0.5, 0.0]
    """

    def __init__(
        self,
        points: Sequence[Sequence[float]],
        unit: Unit = "step",
        interpolation: Literal["linear", "constant"] = "linear",
    ) -> None:
        self.unit = _check_unit("Piecewise", unit)
        self.interpolation = check_choice("Piecewise", "interpolation", interpolation, ("linear", "constant"))
        if (
            isinstance(points, (str, bytes))
            or not isinstance(points, Sequence)
            or len(points) == 0
            or any(isinstance(p, (str, bytes)) or not isinstance(p, Sequence) or len(p) != 2 for p in points)
        ):
            raise fail("Piecewise", "points", points, "a non-empty list of (time, value) pairs")
        self.times = [_check_time("Piecewise", "points", p[0], self.unit) for p in points]
        self.values = [check_number("Piecewise", "points", p[1]) for p in points]
        if any(b <= a for a, b in zip(self.times, self.times[1:], strict=False)):
            raise fail("Piecewise", "points", [list(p) for p in points], "in increasing time order")

    @override
    def value(self, t: float) -> float:
        index = bisect.bisect_right(self.times, t)
        if index == 0:
            return self.values[0]
        if index == len(self.times) or self.interpolation == "constant":
            return self.values[index - 1]
        t0, t1 = self.times[index - 1], self.times[index]
        v0, v1 = self.values[index - 1], self.values[index]
        return v0 + (v1 - v0) * (t - t0) / (t1 - t0)

    @override
    def min_max(self) -> tuple[float, float]:
        return min(self.values), max(self.values)


class Product(Schedule):
    """The product of several schedules (or numbers), each on its own unit.

    Example:
        >>> s = Product([0.5, Linear(start=0.0, end=1.0, until=1.0)])
        >>> s(Clock(progress=0.5))
        0.25
    """

    def __init__(self, factors: Sequence[ScheduleLike]) -> None:
        if isinstance(factors, (str, bytes)) or not isinstance(factors, Sequence) or len(factors) == 0:
            raise fail("Product", "factors", factors, "a non-empty list of schedules or numbers")
        self.factors = [as_schedule(f, "Product", "factors") for f in factors]

    @override
    def __call__(self, clock: Clock) -> float:
        result = 1.0
        for factor in self.factors:
            result *= factor(clock)
        return result

    @override
    def value(self, t: float) -> float:
        result = 1.0
        for factor in self.factors:
            result *= factor.value(t)
        return result

    @property
    @override
    def is_constant(self) -> bool:
        return all(f.is_constant for f in self.factors)

    @override
    def units(self) -> set[str]:
        return set().union(*(f.units() for f in self.factors))

    @override
    def min_max(self) -> tuple[float, float]:
        low, high = 1.0, 1.0
        for factor in self.factors:
            f_low, f_high = factor.min_max()
            corners = [low * f_low, low * f_high, high * f_low, high * f_high]
            corners = [0.0 if math.isnan(c) else c for c in corners]
            low, high = min(corners), max(corners)
        return low, high
