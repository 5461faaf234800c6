"""The registry of corruptions and the one entry point, :func:`corrupt`."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from types import MappingProxyType
from typing import Any

import torch
from torch import Tensor

from lit_noise._validation import check_choice, fail
from lit_noise.corruptions import functional as CF
from lit_noise.corruptions.constants import CIFAR10_C, IMAGENET_C, Params
from lit_noise.errors import ConfigurationError

__all__ = [
    "CORRUPTIONS",
    "DEFAULT_CORRUPTIONS",
    "SEVERITIES",
    "Corruption",
    "CorruptionFunction",
    "ValueRange",
    "check_in_range",
    "check_severities",
    "check_severity",
    "corrupt",
    "get",
    "register",
    "unregister",
]

#: ``f(x, params, generator)``: ``x`` in [0, 1], ``params`` one severity's entry of the table.
CorruptionFunction = Callable[[Tensor, Params, "torch.Generator | None"], Tensor]

#: The five severities of the benchmarks.
SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)


@dataclass(frozen=True)
class Corruption:
    """One registered corruption: its function, its severity tables and what inputs it takes.

    Attributes:
        name: registry name (``"gaussian_noise"``).
        function: ``f(x, params, generator) -> Tensor`` on inputs in [0, 1], clipping its output.
        tables: table name (``"cifar10"``, ``"imagenet"``) -> five parameter tuples (severity 1..5).
        any_shape: whether it takes float tensors of any shape (the noise corruptions); otherwise it
            needs ``(B, C, H, W)`` image batches.
        channels: the number of channels it needs (3 for ``saturate``), or ``None`` for any.
        random: whether it draws random numbers (uses the generator).

    Example:
        >>> contrast = CORRUPTIONS["contrast"]
        >>> isinstance(contrast, Corruption), contrast.any_shape, contrast.random
        (True, False, False)
        >>> image = torch.tensor([[[[0.0, 1.0]]]])  # one grey image of 1 x 2 pixels
        >>> contrast.function(image, contrast.params(5), None)  # pulled towards the mean, 0.5
        tensor([[[[0.4250, 0.5750]]]])
    """

    name: str
    function: CorruptionFunction
    tables: Mapping[str, tuple[Params, ...]]
    any_shape: bool = False
    channels: int | None = None
    random: bool = False

    def params(self, severity: int, constants: str = "cifar10") -> Params:
        """The parameters of ``severity`` (1..5) in table ``constants``.

        Example:
            >>> CORRUPTIONS["contrast"].params(2, "imagenet")
            (0.3,)
        """
        check_severity(severity, "corrupt")
        check_choice("corrupt", "constants", constants, tuple(self.tables))
        return self.tables[constants][severity - 1]

    def check(self, x: Tensor, owner: str = "corrupt") -> None:
        """Raise :class:`ConfigurationError` if this corruption cannot take ``x`` (range not checked)."""
        if not isinstance(x, Tensor) or not x.is_floating_point():
            raise CF.input_error(owner, f"a floating-point tensor for {self.name!r}", x)
        if not self.any_shape and x.ndim != 4:
            raise CF.input_error(owner, f"an image batch (B, C, H, W) for {self.name!r}", x)
        if self.channels is not None and x.ndim == 4 and x.shape[1] != self.channels:
            raise CF.input_error(
                owner,
                f"an image batch with {self.channels} channels (B, {self.channels}, H, W) for {self.name!r}",
                x,
            )

    def applies_to(self, x: Tensor) -> bool:
        """Whether :meth:`check` accepts ``x``.

        Example:
            >>> CORRUPTIONS["saturate"].applies_to(torch.zeros(2, 1, 8, 8))
            False
        """
        try:
            self.check(x)
        except ConfigurationError:
            return False
        return True


_REGISTRY: dict[str, Corruption] = {}

#: Name -> :class:`Corruption`, read-only (add entries with :func:`register`).
CORRUPTIONS: Mapping[str, Corruption] = MappingProxyType(_REGISTRY)


def check_severity(severity: object, owner: str, name: str = "severity") -> int:
    """Return ``severity`` if it is an int in 1..5, else raise.

    Example:
        >>> check_severity(3, "corrupt")
        3
        >>> try:
        ...     check_severity(6, "corrupt")
        ... except ConfigurationError as err:
        ...     print(err)
        corrupt: `severity` must be an integer in 1..5, got 6.
    """
    if isinstance(severity, bool) or not isinstance(severity, int) or not 1 <= severity <= 5:
        raise fail(owner, name, severity, "an integer in 1..5")
    return severity


def check_severities(severities: object, owner: str) -> tuple[int, ...]:
    """Return ``severities`` as a sorted tuple of distinct ints in 1..5, else raise.

    Example:
        >>> check_severities([5, 1, 3], "RobustnessMonitor")
        (1, 3, 5)
    """
    if isinstance(severities, (str, bytes)) or not isinstance(severities, Sequence) or not severities:
        raise fail(owner, "severities", severities, "a non-empty sequence of integers in 1..5")
    values = tuple(check_severity(s, owner, "severities") for s in severities)
    if len(set(values)) != len(values):
        raise fail(owner, "severities", severities, "distinct integers in 1..5")
    return tuple(sorted(values))


def get(name: object, owner: str = "corrupt", argument: str = "name") -> Corruption:
    """The registered corruption ``name``, or an error listing the known names.

    Args:
        name: the corruption's name.
        owner: who asks, for the message.
        argument: the caller's argument that holds ``name``, for the message.

    Example:
        >>> get("pixelate").tables["cifar10"][0]
        (0.95,)
        >>> try:
        ...     get("fog", "RobustnessMonitor", "corruptions")
        ... except ConfigurationError as err:
        ...     print(str(err)[:67])
        RobustnessMonitor: `corruptions` must be one of the registered corr
    """
    if not isinstance(name, str) or name not in _REGISTRY:
        raise fail(
            owner, argument, name, "one of the registered corruptions: " + ", ".join(sorted(_REGISTRY))
        )
    return _REGISTRY[name]


def register(
    name: str,
    function: CorruptionFunction,
    tables: Mapping[str, Sequence[Sequence[float]]],
    *,
    any_shape: bool = False,
    channels: int | None = None,
    random: bool = False,
    overwrite: bool = False,
) -> Corruption:
    """Add a corruption to :data:`CORRUPTIONS` (and so to :func:`corrupt` and the monitor).

    Args:
        name: registry name.
        function: ``f(x, params, generator) -> Tensor``; ``x`` is in [0, 1], the output must be too.
        tables: table name -> five parameter sequences, one per severity 1..5.
        any_shape: accepts float tensors of any shape (else ``(B, C, H, W)`` images only).
        channels: the number of image channels required, or ``None``.
        random: draws from the generator.
        overwrite: replace an existing entry of that name (else an error).

    Example:
        >>> def invert(x, params, generator):
        ...     return torch.lerp(x, 1.0 - x, params[0])
        >>> c = register("invert", invert, {"cifar10": [[0.1], [0.2], [0.3], [0.4], [0.5]]})
        >>> corrupt(torch.zeros(1, 1, 2, 2), "invert", 5).flatten().tolist()
        [0.5, 0.5, 0.5, 0.5]
        >>> _ = unregister("invert")
    """
    if not isinstance(name, str) or not name or "/" in name:
        raise fail("register", "name", name, "a non-empty string without '/'")
    if name in _REGISTRY and not overwrite:
        raise fail("register", "name", name, "a new name (pass overwrite=True to replace it)")
    if not callable(function):
        raise fail("register", "function", function, "a callable f(x, params, generator)")
    if not isinstance(tables, Mapping) or not tables:
        raise fail("register", "tables", tables, "a non-empty mapping of table name -> five parameter tuples")
    frozen: dict[str, tuple[Params, ...]] = {}
    for table, rows in tables.items():
        if isinstance(rows, (str, bytes)) or not isinstance(rows, Sequence) or len(rows) != 5:
            raise fail("register", f"tables[{table!r}]", rows, "five parameter tuples (severity 1..5)")
        parsed: list[Params] = []
        for row in rows:
            values = (row,) if isinstance(row, (int, float)) and not isinstance(row, bool) else row
            if (
                isinstance(values, (str, bytes))
                or not isinstance(values, Sequence)
                or not all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                    for v in values
                )
            ):
                raise fail("register", f"tables[{table!r}]", rows, "five tuples of finite numbers")
            parsed.append(tuple(float(v) for v in values))
        frozen[str(table)] = tuple(parsed)
    if channels is not None and (isinstance(channels, bool) or not isinstance(channels, int) or channels < 1):
        raise fail("register", "channels", channels, "None or a positive integer")
    corruption = Corruption(name, function, frozen, bool(any_shape), channels, bool(random))
    _REGISTRY[name] = corruption
    return corruption


def unregister(name: str) -> Corruption:
    """Remove ``name`` from the registry and return it.

    Example:
        >>> def invert(x, params, generator):
        ...     return torch.lerp(x, 1.0 - x, params[0])
        >>> added = register("invert", invert, {"cifar10": [[0.1], [0.2], [0.3], [0.4], [0.5]]})
        >>> unregister("invert") is added, "invert" in CORRUPTIONS
        (True, False)
        >>> try:
        ...     unregister("invert")
        ... except ConfigurationError as err:
        ...     print(err)
        unregister: `name` must be one of the registered corruptions: brightness, ..., got 'invert'.
    """
    return _REGISTRY.pop(get(name, "unregister").name)


def _check_range(owner: str, value_range: object) -> tuple[float, float]:
    if (
        isinstance(value_range, (str, bytes))
        or not isinstance(value_range, Sequence)
        or len(value_range) != 2
        or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value_range
        )
        or not value_range[0] < value_range[1]
    ):
        raise fail(owner, "value_range", value_range, "a pair (low, high) of finite numbers with low < high")
    return float(value_range[0]), float(value_range[1])


def _check_channels(owner: str, name: str, value: object, positive: bool) -> tuple[float, ...]:
    values = (value,) if isinstance(value, (int, float)) else value
    if (
        isinstance(values, (str, bytes))
        or not isinstance(values, Sequence)
        or not values
        or not all(
            isinstance(v, (int, float))
            and not isinstance(v, bool)
            and math.isfinite(v)
            and (v > 0 or not positive)
            for v in values
        )
    ):
        allowed = "positive finite numbers" if positive else "finite numbers"
        raise fail(owner, name, value, f"a number or a non-empty sequence of {allowed} (one per channel)")
    return tuple(float(v) for v in values)


def check_in_range(x: Tensor, low: float, high: float, owner: str, hint: str = "") -> None:
    """Raise unless every value of ``x`` lies in ``[low, high]`` (one reduction, one sync; NaN fails).

    Args:
        x: the tensor to check.
        low: lowest allowed value.
        high: highest allowed value.
        owner: who checks, for the message.
        hint: what to do about it, appended to the message.

    Example:
        >>> check_in_range(torch.tensor([0.0, 0.5, 1.0]), 0.0, 1.0, "corrupt")  # in range: nothing
        >>> try:
        ...     check_in_range(torch.tensor([0.0, 255.0]), 0.0, 1.0, "corrupt", "Scale the images to [0, 1].")
        ... except ConfigurationError as err:
        ...     print(err)
        corrupt: `x` must have values in [0, 1], got values in [0, 255]. Scale the images to [0, 1].
    """
    if x.numel() == 0:
        return
    lo, hi = torch.aminmax(x.detach())
    lo_value, hi_value = float(lo), float(hi)
    if not (lo_value >= low and hi_value <= high):
        raise ConfigurationError(
            f"{owner}: `x` must have values in [{low:g}, {high:g}], got values in"
            f" [{lo_value:g}, {hi_value:g}].{' ' + hint if hint else ''}"
        )


class ValueRange:
    """How data map to [0, 1], where the corruption tables are defined, and back.

    ``raw = x * std + mean`` undoes a standardisation (``x = (raw - mean) / std``, per channel:
    dimension 1) when ``mean`` and ``std`` are given, and ``unit = (raw - low) / (high - low)`` maps
    ``value_range = (low, high)`` to [0, 1]. :meth:`to_unit` checks that ``raw`` lies in the range (a
    standardised input may overshoot it by rounding: by at most ``tolerance`` of its width, which
    is clipped) and :meth:`from_unit` is the inverse map. With the defaults both are the identity
    (the very tensor is returned) and only the range check remains.

    Args:
        value_range: ``(low, high)``, the range of the data (after undoing ``mean``/``std``).
        mean: per-channel means of a standardisation (a number for every channel), or ``None``.
        std: per-channel standard deviations (> 0), given together with ``mean``.
        owner: who uses it, for the messages.

    Example:
        >>> mean, std = torch.tensor([0.5, 0.4, 0.3]), torch.tensor([0.25, 0.2, 0.1])
        >>> vr = ValueRange(mean=mean.tolist(), std=std.tolist())
        >>> u = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
        >>> x = (u - mean.view(3, 1, 1)) / std.view(3, 1, 1)
        >>> torch.allclose(vr.to_unit(x), u, atol=1e-6), torch.allclose(vr.from_unit(u), x, atol=1e-5)
        (True, True)
    """

    def __init__(
        self,
        value_range: Sequence[float] = (0.0, 1.0),
        mean: float | Sequence[float] | None = None,
        std: float | Sequence[float] | None = None,
        owner: str = "corrupt",
    ) -> None:
        self.owner = owner
        self.low, self.high = _check_range(owner, value_range)
        if (mean is None) != (std is None):
            given, missing = ("mean", "std") if std is None else ("std", "mean")
            raise ConfigurationError(
                f"{owner}: `{given}` is given without `{missing}`; pass both (inputs standardised as"
                " (x - mean) / std) or neither."
            )
        self.mean = None if mean is None else _check_channels(owner, "mean", mean, positive=False)
        self.std = None if std is None else _check_channels(owner, "std", std, positive=True)
        sizes = (len(self.mean or ()), len(self.std or ()))
        if len(set(sizes) - {0, 1}) > 1:
            raise ConfigurationError(
                f"{owner}: `mean` and `std` must have the same length (one value per channel), got"
                f" {sizes[0]} and {sizes[1]}."
            )
        self.identity = self.mean is None and (self.low, self.high) == (0.0, 1.0)
        self._cache: dict[tuple[torch.device, torch.dtype, tuple[int, ...], int], tuple[Tensor, Tensor]] = {}

    def _affine(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(scale, shift)`` with ``unit = x * scale + shift``, shaped for ``x`` (cached per device)."""
        key = (x.device, x.dtype, tuple(x.shape[1:2]), x.ndim)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        mean, std = self.mean or (0.0,), self.std or (1.0,)
        channels = max(len(mean), len(std))
        if channels > 1 and (x.ndim < 2 or x.shape[1] != channels):
            found = x.shape[1] if x.ndim >= 2 else "no"
            raise ConfigurationError(
                f"{self.owner}: `mean`/`std` have {channels} values (one per channel) but the inputs have"
                f" shape {tuple(x.shape)}, with {found} channels in dimension 1."
            )
        shape = [1] * x.ndim
        if channels > 1:
            shape[1] = channels
        width = self.high - self.low
        options: dict[str, Any] = {"device": x.device, "dtype": x.dtype}
        scale = torch.tensor(std, **options).expand(channels) / width
        shift = (torch.tensor(mean, **options).expand(channels) - self.low) / width
        self._cache[key] = scale.reshape(shape), shift.reshape(shape)
        return self._cache[key]

    def hint(self) -> str:
        """What to pass for inputs in another range (for error messages)."""
        return (
            "Pass `value_range=(low, high)` for data in another range, or `mean`/`std` for inputs"
            " standardised as (x - mean) / std (per channel)."
        )

    def to_unit(self, x: Tensor) -> Tensor:
        """``x`` mapped to [0, 1] after checking its range (``x`` itself for the identity map)."""
        if self.identity:
            check_in_range(x, 0.0, 1.0, self.owner, self.hint())
            return x
        if self.mean is None:
            check_in_range(x, self.low, self.high, self.owner, self.hint())
            return (x - self.low) / (self.high - self.low)
        scale, shift = self._affine(x)
        unit = torch.addcmul(shift, x, scale)
        tolerance = max(1e-5, 8 * torch.finfo(x.dtype).eps)
        try:
            check_in_range(unit, -tolerance, 1.0 + tolerance, self.owner)
        except ConfigurationError:
            lo, hi = (float(v) * (self.high - self.low) + self.low for v in torch.aminmax(unit.detach()))
            raise ConfigurationError(
                f"{self.owner}: the inputs with the standardisation undone (x * std + mean, `mean`"
                f" {list(self.mean)}, `std` {list(self.std or ())}) must have values in"
                f" [{self.low:g}, {self.high:g}] (`value_range`), got values in [{lo:g}, {hi:g}]."
                " Check `mean`, `std` and `value_range`."
            ) from None
        return unit.clamp_(0.0, 1.0)

    def from_unit(self, unit: Tensor) -> Tensor:
        """The inverse of :meth:`to_unit`: values in [0, 1] mapped back to the data's range."""
        if self.identity:
            return unit
        if self.mean is None:
            return unit * (self.high - self.low) + self.low
        scale, shift = self._affine(unit)
        return (unit - shift) / scale


def corrupt(
    x: Tensor,
    name: str,
    severity: int,
    constants: str = "cifar10",
    generator: torch.Generator | None = None,
    *,
    value_range: Sequence[float] = (0.0, 1.0),
    mean: float | Sequence[float] | None = None,
    std: float | Sequence[float] | None = None,
) -> Tensor:
    """Corrupt ``x`` with corruption ``name`` at ``severity`` (1..5) of table ``constants``.

    Args:
        x: a float tensor with values in ``value_range``: an image batch ``(B, C, H, W)``, or for
            the noise corruptions (``gaussian_noise``, ``shot_noise``, ``impulse_noise``,
            ``speckle_noise``) a tensor of any shape (tabular, audio).
        name: a key of :data:`CORRUPTIONS`.
        severity: 1 (mildest) to 5.
        constants: ``"cifar10"`` (CIFAR-10-C's table, made for 32x32 images) or ``"imagenet"``
            (ImageNet-C's, 224x224).
        generator: the random source of the random corruptions (torch's global RNG when ``None``);
            the same generator state gives the same output.
        value_range: the range the data live in; it is mapped to [0, 1] (where the tables' constants
            are defined), corrupted, clipped and mapped back.
        mean: with ``std``, for standardised inputs ``x = (raw - mean) / std`` (per channel,
            dimension 1): the standardisation is undone before the corruption and redone after it
            (see :class:`ValueRange`); ``value_range`` is then the range of ``raw``.
        std: the per-channel standard deviations of that standardisation.

    Returns:
        A new tensor of the shape, dtype and device of ``x``, with values in ``value_range`` (after
        undoing ``mean``/``std``).

    Raises:
        ConfigurationError: unknown name (the message lists the known ones), severity outside
            1..5, unknown table, non-float input, wrong rank or channel count for an image
            corruption, values outside ``value_range``, ``mean`` without ``std`` or a ``std`` <= 0.

    Example:
        >>> x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
        >>> y = corrupt(x, "gaussian_noise", 3, generator=torch.Generator().manual_seed(1))
        >>> y.shape, bool(0 <= y.min() and y.max() <= 1)
        (torch.Size([4, 3, 32, 32]), True)
        >>> round(corrupt(x, "contrast", 5).std().item() / x.std().item(), 2)
        0.15
    """
    corruption = get(name)
    params = corruption.params(severity, constants)
    mapping = ValueRange(value_range, mean, std)
    corruption.check(x)
    return mapping.from_unit(corruption.function(mapping.to_unit(x), params, generator))


# --------------------------------------------------------------------------- built-ins


def _on_params(
    function: Callable[..., Tensor], random: bool, x: Tensor, c: Params, generator: torch.Generator | None
) -> Tensor:
    """A built-in corruption as ``f(x, params, generator)``, one function for all ten.

    ``function`` (of :mod:`lit_noise.corruptions.functional`) is called with one severity's
    parameters in the table's order, then the generator where it draws (``random``).
    """
    return function(x, *c, generator) if random else function(x, *c)


_BUILTINS: tuple[tuple[str, Callable[..., Tensor], bool, int | None, bool], ...] = (
    # name, function of lit_noise.corruptions.functional (its parameters in the tables' order),
    # any_shape, channels, random
    ("gaussian_noise", CF.gaussian_noise, True, None, True),
    ("shot_noise", CF.shot_noise, True, None, True),
    ("impulse_noise", CF.impulse_noise, True, None, True),
    ("speckle_noise", CF.speckle_noise, True, None, True),
    ("gaussian_blur", CF.gaussian_blur, False, None, False),
    ("defocus_blur", CF.defocus_blur, False, None, False),
    ("contrast", CF.contrast, False, None, False),
    ("brightness", CF.brightness, False, None, False),
    ("saturate", CF.saturate, False, 3, False),
    ("pixelate", CF.pixelate, False, None, False),
)

for _name, _function, _any_shape, _channels, _random in _BUILTINS:
    register(
        _name,
        partial(_on_params, _function, _random),
        {"cifar10": CIFAR10_C[_name], "imagenet": IMAGENET_C[_name]},
        any_shape=_any_shape,
        channels=_channels,
        random=_random,
    )

#: The built-in corruptions, in the benchmarks' order (noise, blur, photometric, digital).
DEFAULT_CORRUPTIONS: tuple[str, ...] = tuple(entry[0] for entry in _BUILTINS)
