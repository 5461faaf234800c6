"""Pure tensor functions for label noise: smoothing and class flips (no Lightning, no state)."""

from __future__ import annotations

import torch
from torch import Tensor

from lit_noise.functional.noise import _rand, _randint

__all__ = ["label_smoothing", "pair_flip", "smooth_one_hot", "symmetric_flip", "transition_flip"]


def label_smoothing(target: Tensor, eps: float) -> Tensor:
    """Smooth a ``(B, C)`` distribution towards uniform: ``(1 - eps) * target + eps / C``.

    This is ``nn.CrossEntropyLoss(label_smoothing=eps)``'s convention: a total mass ``eps`` is
    spread evenly over all ``C`` classes, so a one-hot row keeps ``1 - eps + eps / C`` on its class
    and puts ``eps * (C - 1) / C`` on the others. Rows keep summing to 1.

    Example:
        >>> label_smoothing(torch.tensor([[1.0, 0.0, 0.0, 0.0]]), eps=0.2)
        tensor([[0.8500, 0.0500, 0.0500, 0.0500]])
    """
    num_classes = target.shape[1]
    return torch.add(target * (1.0 - eps), eps / num_classes)


def smooth_one_hot(y: Tensor, num_classes: int, eps: float, dtype: torch.dtype | None = None) -> Tensor:
    """Smoothed one-hot distributions of class indices ``y``: ``label_smoothing(one_hot(y), eps)``.

    Built in one scatter: ``eps / C`` everywhere and ``1 - eps + eps / C`` on each label's class.
    ``y`` may be ``(B,)`` or dense ``(B, ...)``; the class dimension is inserted at 1.

    Example:
        >>> smooth_one_hot(torch.tensor([2, 0]), num_classes=4, eps=0.2)
        tensor([[0.0500, 0.0500, 0.8500, 0.0500],
                [0.8500, 0.0500, 0.0500, 0.0500]])
    """
    shape = (y.shape[0], num_classes, *y.shape[1:])
    off = eps / num_classes
    out = torch.full(shape, off, dtype=dtype or torch.get_default_dtype(), device=y.device)
    return out.scatter_(1, y.long().unsqueeze(1), 1.0 - eps + off)


def symmetric_flip(y: Tensor, p: float, num_classes: int, generator: torch.Generator | None = None) -> Tensor:
    """With probability ``p`` replace each label by a uniformly random *other* class.

    Each label draws an offset uniform in ``1 .. C - 1`` (added modulo ``C``, so every other class
    is equally likely) and a uniform ``u``; the offset is dropped where ``u >= p``. Six tensor
    operations, no Python loop.

    Example:
        >>> y = torch.zeros(100_000, dtype=torch.long)
        >>> z = symmetric_flip(y, p=0.3, num_classes=4, generator=torch.Generator().manual_seed(0))
        >>> round((z != y).float().mean().item(), 2), int(z.min()), int(z.max())
        (0.3, 0, 3)
    """
    if p <= 0.0:
        return y.clone()
    if y.dtype not in (torch.int64, torch.int32):
        y = y.long()  # narrow integer labels would overflow in y + offset
    offset = _randint(y, 1, num_classes, generator)
    offset.masked_fill_(_rand(y, generator, torch.float32) >= p, 0)
    return offset.add_(y).remainder_(num_classes)


def pair_flip(y: Tensor, p: float, num_classes: int, generator: torch.Generator | None = None) -> Tensor:
    """With probability ``p`` replace class ``k`` by ``(k + 1) % C`` (pair-flip noise).

    Example:
        >>> pair_flip(torch.tensor([0, 1, 2]), p=1.0, num_classes=3)
        tensor([1, 2, 0])
    """
    flip = _rand(y, generator, torch.float32) < p
    return torch.where(flip, (y + 1).remainder_(num_classes), y)


def transition_flip(y: Tensor, matrix: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Draw each noisy label from row ``y`` of a row-stochastic ``matrix``: ``P(j | i) = T[i, j]``.

    Example:
        >>> T = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
        >>> transition_flip(torch.tensor([0, 1, 1]), T)
        tensor([1, 0, 0])
    """
    cumulative = matrix.to(y.device, torch.float64).cumsum(dim=1)[y]
    u = torch.rand((*y.shape, 1), generator=generator, device=y.device, dtype=torch.float64)
    u = u * cumulative[..., -1:]
    return (cumulative <= u).sum(dim=-1).clamp_(max=matrix.shape[1] - 1)
