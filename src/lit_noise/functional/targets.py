"""Pure tensor functions for label noise: smoothing and class flips (no Lightning, no state)."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["label_smoothing", "pair_flip", "symmetric_flip", "transition_flip"]


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


def symmetric_flip(
    y: Tensor, p: float, num_classes: int, generator: torch.Generator | None = None
) -> Tensor:
    """With probability ``p`` replace each label by a uniformly random *other* class.

    One uniform draw ``u`` per label decides both whether to flip (``u < p``) and, since ``u / p`` is
    again uniform given a flip, the offset ``1 + floor(u / p * (C - 1))`` added modulo ``C``.

    Example:
        >>> y = torch.zeros(100_000, dtype=torch.long)
        >>> z = symmetric_flip(y, p=0.3, num_classes=4, generator=torch.Generator().manual_seed(0))
        >>> round((z != y).float().mean().item(), 2), int(z.max())
        (0.3, 3)
    """
    if p <= 0.0:
        return y.clone()
    u = torch.rand(y.shape, generator=generator, device=y.device, dtype=torch.float64)
    flip = u < p
    offset = 1 + torch.floor(u / p * (num_classes - 1)).long().clamp_(max=num_classes - 2)
    return torch.where(flip, (y + offset) % num_classes, y)


def pair_flip(
    y: Tensor, p: float, num_classes: int, generator: torch.Generator | None = None
) -> Tensor:
    """With probability ``p`` replace class ``k`` by ``(k + 1) % C`` (pair-flip noise).

    Example:
        >>> pair_flip(torch.tensor([0, 1, 2]), p=1.0, num_classes=3)
        tensor([1, 2, 0])
    """
    u = torch.rand(y.shape, generator=generator, device=y.device)
    return torch.where(u < p, (y + 1) % num_classes, y)


def transition_flip(
    y: Tensor, matrix: Tensor, generator: torch.Generator | None = None
) -> Tensor:
    """Draw each noisy label from row ``y`` of a row-stochastic ``matrix``: ``P(j | i) = T[i, j]``.

    Example:
        >>> T = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
        >>> transition_flip(torch.tensor([0, 1, 1]), T)
        tensor([1, 0, 0])
    """
    cumulative = matrix.to(y.device, torch.float64).cumsum(dim=1)[y]
    u = torch.rand(y.shape + (1,), generator=generator, device=y.device, dtype=torch.float64)
    u = u * cumulative[..., -1:]
    return (cumulative <= u).sum(dim=-1).clamp_(max=matrix.shape[1] - 1)
