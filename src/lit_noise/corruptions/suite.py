"""The registry of corruptions and the one entry point, :func:`corrupt`."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

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
            shown = f"{x.dtype} tensor" if isinstance(x, Tensor) else type(x).__name__
            raise fail(owner, "x", shown, f"a floating-point tensor for {self.name!r}")
        if not self.any_shape and x.ndim != 4:
            raise fail(
                owner, "x", f"shape {tuple(x.shape)}", f"an image batch (B, C, H, W) for {self.name!r}"
            )
        if self.channels is not None and x.ndim == 4 and x.shape[1] != self.channels:
            raise fail(
                owner,
                "x",
                f"shape {tuple(x.shape)}",
                f"{self.channels} channels (B, {self.channels}, H, W) for {self.name!r}",
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
    """Return ``severity`` if it is an int in 1..5, else raise."""
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


def get(name: object, owner: str = "corrupt") -> Corruption:
    """The registered corruption ``name``, or an error listing the known names.

    Example:
        >>> get("pixelate").tables["cifar10"][0]
        (0.95,)
    """
    if not isinstance(name, str) or name not in _REGISTRY:
        raise fail(owner, "name", name, "one of the registered corruptions: " + ", ".join(sorted(_REGISTRY)))
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
    """Remove ``name`` from the registry and return it."""
    return _REGISTRY.pop(get(name, "unregister").name)


def _check_range(value_range: object) -> tuple[float, float]:
    if (
        isinstance(value_range, (str, bytes))
        or not isinstance(value_range, Sequence)
        or len(value_range) != 2
        or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value_range
        )
        or not value_range[0] < value_range[1]
    ):
        raise fail(
            "corrupt", "value_range", value_range, "a pair (low, high) of finite numbers with low < high"
        )
    return float(value_range[0]), float(value_range[1])


def check_in_range(x: Tensor, low: float, high: float, owner: str) -> None:
    """Raise unless every value of ``x`` lies in ``[low, high]`` (one reduction, one sync)."""
    if x.numel() == 0:
        return
    lo, hi = torch.aminmax(x.detach())
    lo_value, hi_value = float(lo), float(hi)
    if not (lo_value >= low and hi_value <= high):
        raise ConfigurationError(
            f"{owner}: `x` must have values in [{low:g}, {high:g}] (images scaled to [0, 1] before any"
            f" normalisation), got values in [{lo_value:g}, {hi_value:g}]. Corrupt before normalising,"
            " or pass `value_range`."
        )


def corrupt(
    x: Tensor,
    name: str,
    severity: int,
    constants: str = "cifar10",
    generator: torch.Generator | None = None,
    *,
    value_range: Sequence[float] = (0.0, 1.0),
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

    Returns:
        A new tensor of the shape, dtype and device of ``x``, with values in ``value_range``.

    Raises:
        ConfigurationError: unknown name (the message lists the known ones), severity outside
            1..5, unknown table, non-float input, wrong rank or channel count for an image
            corruption, or values outside ``value_range``.

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
    low, high = _check_range(value_range)
    corruption.check(x)
    check_in_range(x, low, high, "corrupt")
    if (low, high) == (0.0, 1.0):
        return corruption.function(x, params, generator)
    unit = (x - low) / (high - low)
    return corruption.function(unit, params, generator) * (high - low) + low


# --------------------------------------------------------------------------- built-ins


def _gaussian_noise(x: Tensor, c: Params, generator: torch.Generator | None) -> Tensor:
    return CF.gaussian_noise(x, c[0], generator)


def _shot_noise(x: Tensor, c: Params, generator: torch.Generator | None) -> Tensor:
    return CF.shot_noise(x, c[0], generator)


def _impulse_noise(x: Tensor, c: Params, generator: torch.Generator | None) -> Tensor:
    return CF.impulse_noise(x, c[0], generator)


def _speckle_noise(x: Tensor, c: Params, generator: torch.Generator | None) -> Tensor:
    return CF.speckle_noise(x, c[0], generator)


def _gaussian_blur(x: Tensor, c: Params, generator: torch.Generator | None) -> Tensor:
    return CF.gaussian_blur(x, c[0])


def _defocus_blur(x: Tensor, c: Params, generator: torch.Generator | None) -> Tensor:
    return CF.defocus_blur(x, c[0], c[1])


def _contrast(x: Tensor, c: Params, generator: torch.Generator | None) -> Tensor:
    return CF.contrast(x, c[0])


def _brightness(x: Tensor, c: Params, generator: torch.Generator | None) -> Tensor:
    return CF.brightness(x, c[0])


def _saturate(x: Tensor, c: Params, generator: torch.Generator | None) -> Tensor:
    return CF.saturate(x, c[0], c[1])


def _pixelate(x: Tensor, c: Params, generator: torch.Generator | None) -> Tensor:
    return CF.pixelate(x, c[0])


_BUILTINS: tuple[tuple[str, CorruptionFunction, bool, int | None, bool], ...] = (
    # name, function, any_shape, channels, random
    ("gaussian_noise", _gaussian_noise, True, None, True),
    ("shot_noise", _shot_noise, True, None, True),
    ("impulse_noise", _impulse_noise, True, None, True),
    ("speckle_noise", _speckle_noise, True, None, True),
    ("gaussian_blur", _gaussian_blur, False, None, False),
    ("defocus_blur", _defocus_blur, False, None, False),
    ("contrast", _contrast, False, None, False),
    ("brightness", _brightness, False, None, False),
    ("saturate", _saturate, False, 3, False),
    ("pixelate", _pixelate, False, None, False),
)

for _name, _function, _any_shape, _channels, _random in _BUILTINS:
    register(
        _name,
        _function,
        {"cifar10": CIFAR10_C[_name], "imagenet": IMAGENET_C[_name]},
        any_shape=_any_shape,
        channels=_channels,
        random=_random,
    )

#: The built-in corruptions, in the benchmarks' order (noise, blur, photometric, digital).
DEFAULT_CORRUPTIONS: tuple[str, ...] = tuple(entry[0] for entry in _BUILTINS)
