"""Noise settings as flat logger hyperparameters: ``lit_noise/<name>/<setting>`` with plain values.

Every noise source describes itself with a ``settings()`` mapping (its constructor arguments as it
holds them, after ``setup`` resolved the name and the seed) and logs it at train start through
:func:`log_settings`, so runs can be grouped and filtered by noise setting in any logger.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import lightning.pytorch as pl
from torch import Tensor

from lit_noise.schedules import Constant, Schedule

__all__ = ["HasSettings", "constructor_settings", "flat_settings", "log_settings"]

#: Tensors up to this many elements are written out as (nested) lists, larger ones by their shape.
_MAX_LISTED = 256


@runtime_checkable
class HasSettings(Protocol):
    """An object that describes its configuration (a noise, a noise layer, a noise source)."""

    def settings(self) -> Mapping[str, Any]:
        """The configuration, by setting name."""
        ...


def constructor_settings(obj: object) -> dict[str, Any]:
    """``obj``'s constructor arguments, read back from its attributes of the same names.

    Arguments the object does not keep under their own name are left out.

    Example:
        >>> from lit_noise import Linear
        >>> constructor_settings(Linear(start=0.0, end=1.0, until=0.5))
        {'start': 0.0, 'end': 1.0, 'until': 0.5, 'begin': 0.0, 'unit': 'progress'}
    """
    parameters = inspect.signature(type(obj).__init__).parameters.values()
    kinds = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    names = [p.name for p in parameters if p.name != "self" and p.kind not in kinds]
    return {name: getattr(obj, name) for name in names if name in vars(obj)}


def flat_settings(settings: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``settings`` as one flat mapping ``{prefix + key: plain value}``, nested values below their key.

    Numbers, strings, booleans and ``None`` stay as they are; sequences and small tensors become
    (nested) lists. A constant schedule is its value; any other schedule is its ``repr`` (to group
    runs by the whole schedule), with its type and public fields below it (``std/type``,
    ``std/start``, ...). An object with ``settings()`` (a noise, a noise layer) is its type's name,
    with its settings below it. A mapping's entries go below its key; any other object is its
    type's name.

    Example:
        >>> from lit_noise import Gaussian, Linear
        >>> flat = flat_settings({"noise": Gaussian(std=Linear(start=0.0, end=0.2, until=0.5))}, "x/")
        >>> flat["x/noise"], flat["x/noise/std/type"], flat["x/noise/std/end"], flat["x/noise/mean"]
        ('Gaussian', 'Linear', 0.2, 0.0)
        >>> flat["x/noise/std"]
        "Linear(unit='progress', start=0.0, end=0.2, begin=0.0, until=0.5)"
    """
    out: dict[str, Any] = {}
    for key, value in settings.items():
        _put(out, f"{prefix}{key}", value)
    return out


def _put(out: dict[str, Any], key: str, value: Any) -> None:
    if isinstance(value, Schedule):
        if isinstance(value, Constant):
            out[key] = value.constant
            return
        out[key] = repr(value)
        out[f"{key}/type"] = type(value).__name__
        for field, inner in vars(value).items():
            if not field.startswith("_"):
                _put(out, f"{key}/{field}", inner)
    elif isinstance(value, HasSettings) and not isinstance(value, type):
        out[key] = type(value).__name__
        for field, inner in value.settings().items():
            _put(out, f"{key}/{field}", inner)
    elif isinstance(value, Mapping):
        for field, inner in value.items():
            _put(out, f"{key}/{field}", inner)
    else:
        out[key] = _plain(value)


def _plain(value: Any) -> Any:
    """A value a logger's config can hold: a number, string, boolean, ``None`` or a list of them."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Tensor):
        return value.tolist() if value.numel() <= _MAX_LISTED else f"Tensor(shape={list(value.shape)})"
    if isinstance(value, Constant):
        return value.constant
    if isinstance(value, Schedule):
        return repr(value)
    if isinstance(value, Sequence) and not isinstance(value, (bytes, bytearray)):
        return [_plain(v) for v in value]
    return type(value).__name__


def log_settings(trainer: pl.Trainer, prefix: str, settings: Mapping[str, Any]) -> dict[str, Any]:
    """Log ``settings`` flattened under ``prefix`` as every logger's hyperparameters (rank zero).

    Each logger merges them into what it already holds (the LightningModule's own
    hyperparameters stay). Returns the flat mapping (on every rank).

    Example:
        >>> trainer = pl.Trainer(logger=False, enable_progress_bar=False)  # no logger: only returned
        >>> log_settings(trainer, "lit_noise/input/", {"p": 0.5, "clamp": (0, 1)})
        {'lit_noise/input/p': 0.5, 'lit_noise/input/clamp': [0, 1]}
    """
    flat = flat_settings(settings, prefix)
    if trainer.is_global_zero:
        for logger in trainer.loggers:
            logger.log_hyperparams(flat)
            logger.save()
    return flat
