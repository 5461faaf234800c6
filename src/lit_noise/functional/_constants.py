"""Small constant tensors reused by every batch, cached per key and device (never modified in place).

The pure tensor functions build their lookup tables, extents and concentrations once and read them
back on later batches, which saves host-side operations per batch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

# Keyed by what a tensor holds and its device; bounded (a few entries per image size and setting in
# practice; a schedule that changes a table's value every batch churns it, and it is rebuilt).
_CONSTANTS: dict[tuple[Any, ...], Tensor] = {}
_MAX_ENTRIES = 256


def constant(key: tuple[Any, ...], device: torch.device, make: Callable[[torch.device], Tensor]) -> Tensor:
    """The cached tensor for ``(key, device)``, built by ``make(device)`` on first use.

    Example:
        >>> cpu = torch.device("cpu")
        >>> a = constant(("doc-example", 3), cpu, lambda d: torch.arange(3, device=d))
        >>> a is constant(("doc-example", 3), cpu, lambda d: torch.zeros(3, device=d))
        True
    """
    full_key = (*key, device)
    value = _CONSTANTS.get(full_key)
    if value is None:
        if len(_CONSTANTS) >= _MAX_ENTRIES:
            _CONSTANTS.clear()
        value = _CONSTANTS[full_key] = make(device)
    return value
