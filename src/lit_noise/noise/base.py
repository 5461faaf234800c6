"""The :class:`Noise` base: parameters that are numbers or schedules, resolved per call."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch
from torch import Tensor

from lit_noise._validation import fail
from lit_noise.errors import ConfigurationError
from lit_noise.schedules import Clock, Schedule, ScheduleLike, as_schedule

__all__ = ["Noise", "keep_mask"]

_NO_CLOCK = Clock()


def keep_mask(x: Tensor, keep: Tensor, owner: str) -> Tensor:
    """``keep`` as a bool tensor on ``x``'s device, checked to have the leading shape of ``x``.

    Example:
        >>> import torch
        >>> keep_mask(torch.zeros(2, 3, 4), torch.tensor([[1, 1, 0], [1, 0, 0]]), "NEFTune").dtype
        torch.bool
    """
    if keep.ndim > x.ndim or tuple(keep.shape) != tuple(x.shape[: keep.ndim]):
        raise ConfigurationError(
            f"{owner}: the mask of positions to noise must have the leading shape of the tensor it"
            f" applies to, got a mask of shape {tuple(keep.shape)} for a tensor of shape {tuple(x.shape)}."
        )
    return keep.to(device=x.device, dtype=torch.bool)


class Noise(ABC):
    """A noise distribution whose parameters are numbers or :class:`~lit_noise.schedules.Schedule` objects.

    Calling it returns a noisy copy: ``noise(x, generator=g, clock=c, scale=s)``. Parameters named
    in ``strength`` are multiplied by ``scale`` (the controller's knob; 1 by default) and clipped to
    their allowed range. Subclasses implement :meth:`apply` on resolved numbers.

    Example:
        >>> import torch
        >>> class Shift(Noise):  # adds `offset`, a strength in [0, 1]
        ...     strength = ("offset",)
        ...     draws = False
        ...     def __init__(self, offset):
        ...         super().__init__()
        ...         self._param("offset", offset, low=0.0, high=1.0)
        ...     def apply(self, x, params, generator):
        ...         return x + params["offset"]
        >>> shift = Shift(offset=0.25)
        >>> shift(torch.zeros(2)), shift(torch.zeros(2), scale=8.0)  # scaled, then clipped to 1
        (tensor([0.2500, 0.2500]), tensor([1., 1.]))
        >>> from lit_noise.schedules import Linear
        >>> Shift(offset=Linear(start=0.0, end=0.5, until=1.0)).resolve(Clock(progress=0.5))
        {'offset': 0.25}
        >>> shift
        Shift(offset=0.25)
    """

    #: Parameters multiplied by ``scale``.
    strength: ClassVar[tuple[str, ...]] = ()
    #: ``"float"`` for inputs and regression targets, ``"labels"`` for class targets.
    applies_to: ClassVar[str] = "float"
    #: Whether :meth:`apply` draws from its generator (``False``: callers need not seed one).
    draws: ClassVar[bool] = True

    def __init__(self) -> None:
        self._schedules: dict[str, Schedule] = {}
        self._limits: dict[str, tuple[float, float]] = {}

    def _param(
        self, name: str, value: ScheduleLike, low: float = -math.inf, high: float = math.inf
    ) -> Schedule:
        """Register parameter ``name``; its schedule must stay within ``[low, high]``."""
        owner = type(self).__name__
        if not isinstance(value, (Schedule, int, float)) or isinstance(value, bool):
            raise fail(owner, name, value, "a number or a lit_noise schedule")
        schedule = as_schedule(value, owner, name)
        smallest, largest = schedule.min_max()
        if smallest < low or largest > high:
            shown = (
                value if not isinstance(value, Schedule) else f"{value!r} (range {smallest:g}..{largest:g})"
            )
            bounds = [f">= {low:g}"] if low > -math.inf else []
            bounds += [f"<= {high:g}"] if high < math.inf else []
            raise ConfigurationError(f"{owner}: `{name}` must be {' and '.join(bounds)}, got {shown}.")
        self._schedules[name] = schedule
        self._limits[name] = (low, high)
        return schedule

    def schedules(self) -> dict[str, Schedule]:
        """The parameters as schedules, by name."""
        return dict(self._schedules)

    def resolve(self, clock: Clock | None = None, scale: float = 1.0) -> dict[str, float]:
        """Every parameter's value at ``clock``, strengths multiplied by ``scale`` and clipped."""
        if clock is None:
            clock = _NO_CLOCK
            varying = [n for n, s in self._schedules.items() if not s.is_constant]
            if varying:
                raise ConfigurationError(
                    f"{type(self).__name__}: parameters {varying} follow a schedule, so a `clock` is"
                    " needed; use the noise through a lit_noise callback or pass `clock=Clock(...)`."
                )
        values = {}
        for name, schedule in self._schedules.items():
            value = schedule(clock)
            if scale != 1.0 and name in self.strength:
                low, high = self._limits[name]
                value = min(max(value * scale, low), high)
            values[name] = value
        return values

    def check(self, x: Tensor, role: str = "input") -> None:
        """Raise :class:`ConfigurationError` if this noise cannot apply to ``x``."""
        if not x.is_floating_point():
            raise ConfigurationError(
                f"{type(self).__name__} adds real-valued noise, so the {role} must be a floating"
                f" tensor, got dtype {x.dtype}. Convert it to float, or for class labels use a"
                " label noise (LabelSmoothing, SymmetricFlip, PairFlip, TransitionMatrix)."
            )

    def __call__(
        self,
        x: Tensor,
        *,
        generator: torch.Generator | None = None,
        clock: Clock | None = None,
        scale: float = 1.0,
        keep: Tensor | None = None,
    ) -> Any:
        """A noisy copy of ``x`` (``x`` itself is not modified); only where ``keep`` is true if given."""
        self.check(x)
        params = self.resolve(clock, scale)
        return (
            self.apply(x, params, generator) if keep is None else self.apply_where(x, params, generator, keep)
        )

    @abstractmethod
    def apply(self, x: Tensor, params: dict[str, float], generator: torch.Generator | None) -> Any:
        """The noisy copy of ``x`` for resolved ``params``."""

    def apply_where(
        self, x: Tensor, params: dict[str, float], generator: torch.Generator | None, keep: Tensor
    ) -> Any:
        """The noisy copy of ``x`` for resolved ``params`` that changes only positions where ``keep`` is true.

        ``keep`` (bool, or 0/1 integers such as an attention mask) has the leading shape of ``x``:
        ``(B, L)`` for token ids ``(B, L)`` or embeddings ``(B, L, d)``; the positions it marks false
        (padding) come back exactly as they were. This default draws the noise everywhere and puts
        the clean values back; noises whose draw or strength depends on the kept positions (token
        noises, NEFTune's per-sample length) override it.

        Example:
            >>> import torch
            >>> from lit_noise import Gaussian
            >>> keep = torch.tensor([[True, True, False]])
            >>> y = Gaussian(std=1.0).apply_where(torch.zeros(1, 3, 2), {"std": 1.0, "mean": 0.0},
            ...                                   torch.Generator().manual_seed(0), keep)
            >>> (y[0, 2] == 0).all().item(), (y[0, :2] != 0).all().item()
            (True, True)
        """
        where = keep_mask(x, keep, type(self).__name__)
        return torch.where(
            where.view(where.shape + (1,) * (x.ndim - where.ndim)), self.apply(x, params, generator), x
        )

    def settings(self) -> dict[str, Any]:
        """The noise's arguments: each parameter (its value when constant, else its schedule) and options.

        Noise sources log them as hyperparameters (``lit_noise/<name>/noise/<argument>``).

        Example:
            >>> from lit_noise import SaltAndPepper
            >>> SaltAndPepper(amount=0.1).settings()
            {'amount': 0.1, 'salt_vs_pepper': 0.5, 'low': 0.0, 'high': 1.0}
        """
        return self._public_args()

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self._public_args().items())
        return f"{type(self).__name__}({fields})"

    def _public_args(self) -> dict[str, Any]:
        args: dict[str, Any] = {
            k: (s.constant if s.is_constant and hasattr(s, "constant") else s)
            for k, s in self._schedules.items()
        }
        args.update({k: v for k, v in vars(self).items() if not k.startswith("_")})
        return args
