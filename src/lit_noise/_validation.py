"""Argument checks shared by every public class; each raises :class:`ConfigurationError`."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from lit_noise.errors import ConfigurationError


def fail(owner: str, name: str, value: Any, allowed: str) -> ConfigurationError:
    """Build the standard error: ``owner: `name` must be <allowed>, got <value>.``."""
    return ConfigurationError(f"{owner}: `{name}` must be {allowed}, got {value!r}.")


def check_number(owner: str, name: str, value: Any) -> float:
    """Return ``value`` as a finite float or raise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise fail(owner, name, value, "a finite number")
    return float(value)


def check_range(
    owner: str,
    name: str,
    value: Any,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """Return ``value`` as a float inside ``[low, high]`` (ends open on request) or raise."""
    number = check_number(owner, name, value)
    too_low = low is not None and (number <= low if low_open else number < low)
    too_high = high is not None and (number >= high if high_open else number > high)
    if too_low or too_high:
        parts = []
        if low is not None:
            parts.append(f"{'>' if low_open else '>='} {low:g}")
        if high is not None:
            parts.append(f"{'<' if high_open else '<='} {high:g}")
        raise fail(owner, name, value, " and ".join(parts))
    return number


def check_choice(owner: str, name: str, value: Any, choices: Iterable[Any]) -> Any:
    """Return ``value`` if it is one of ``choices`` or raise listing them."""
    options = tuple(choices)
    if value not in options:
        raise fail(owner, name, value, "one of " + ", ".join(repr(c) for c in options))
    return value


def check_int(owner: str, name: str, value: Any, low: int | None = None) -> int:
    """Return ``value`` as an int (>= ``low`` if given) or raise."""
    if isinstance(value, bool) or not isinstance(value, int) or (low is not None and value < low):
        raise fail(owner, name, value, "an integer" + (f" >= {low}" if low is not None else ""))
    return value


#: Seeds are hashed as 64-bit words (and ``torch.Generator.manual_seed`` takes at most this).
SEED_MAX = (1 << 64) - 1


def check_seed(owner: str, name: str, value: Any) -> int:
    """Return ``value`` as a seed, an int in ``[0, 2**64 - 1]``, or raise.

    A larger seed would act as a smaller one (its hash keeps 64 bits): 2**64 would repeat seed 0.
    """
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= SEED_MAX:
        raise fail(owner, name, value, "an integer in [0, 2**64 - 1]")
    return value
