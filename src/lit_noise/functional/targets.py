"""Pure tensor functions for label noise: smoothing and class flips (no Lightning, no state).

Labels may be ``(B,)`` or dense ``(B, T, ...)`` (token sequences, pixels). With ``ignore_index``
(``None`` by default here; the label-noise classes pass ``-100``, torch's default) the labels equal to
it -- padding -- come out exactly as they went in: never flipped, and a zero row when smoothed. The
random draws do not depend on it, so the other labels get the same noise either way.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lit_noise.errors import ConfigurationError
from lit_noise.functional.noise import _rand, _randint

__all__ = ["label_smoothing", "pair_flip", "smooth_one_hot", "symmetric_flip", "transition_flip"]


_NARROW_INTEGERS = (torch.uint8, torch.int8, torch.int16)


def _ignore_mask(y: Tensor, ignore_index: int | None) -> Tensor | None:
    """Where ``y == ignore_index``, or ``None`` when no label can be (checked cheaply on the CPU).

    On other devices the mask is always built, so that no batch waits for a host synchronisation.
    Narrow integer labels are compared as int64: torch wraps a Python int that the dtype cannot hold
    (``uint8`` labels ``== 300`` would match the label 44, ``== -100`` the label 156).
    """
    if ignore_index is None or y.numel() == 0:
        return None
    if y.dtype in _NARROW_INTEGERS:
        y = y.long()
    if y.is_cpu:
        if ignore_index < 0 and y.min().item() >= 0:  # the usual case: -100 and no padding
            return None
        mask = y == ignore_index
        return mask if bool(mask.any()) else None
    return y == ignore_index


def _check_label_dtype(owner: str, y: Tensor, num_classes: int) -> None:
    """Refuse narrow integer labels that cannot hold every class a flip may produce."""
    if y.dtype in _NARROW_INTEGERS and num_classes - 1 > torch.iinfo(y.dtype).max:
        raise ConfigurationError(
            f"{owner}: labels of dtype {y.dtype} cannot hold the classes up to {num_classes - 1}"
            f" (`num_classes` {num_classes}); a flip would wrap around. Pass int64 labels"
            f" (`y.long()`), or int32."
        )


def label_smoothing(target: Tensor, eps: float) -> Tensor:
    """Smooth a ``(B, C)`` distribution towards uniform: ``(1 - eps) * target + eps / C``.

    This is ``nn.CrossEntropyLoss(label_smoothing=eps)``'s convention: a total mass ``eps`` is
    spread evenly over all ``C`` classes, so a one-hot row keeps ``1 - eps + eps / C`` on its class
    and puts ``eps * (C - 1) / C`` on the others. Rows keep summing to 1.

    Example:
        >>> label_smoothing(torch.tensor([[1.0, 0.0, 0.0, 0.0]]), eps=0.2)
        tensor([[0.8500, 0.0500, 0.0500, 0.0500]])
    """
    num_classes = target.shape[1 if target.ndim >= 2 else 0]  # (B, C, ...), or one sample's (C,)
    return torch.add(target * (1.0 - eps), eps / num_classes)


# smooth_one_hot, symmetric_flip and pair_flip repeat one argument list (labels, rate, classes,
# generator or dtype, ignore_index) on purpose: each is a public function called by name and
# position, and their bodies share nothing else (tests/test_repeated_signatures.py keeps the
# lists equal).
def smooth_one_hot(
    y: Tensor,
    num_classes: int,
    eps: float,
    dtype: torch.dtype | None = None,
    ignore_index: int | None = None,
) -> Tensor:
    """Smoothed one-hot distributions of class indices ``y``: ``label_smoothing(one_hot(y), eps)``.

    Built in one scatter: ``eps / C`` everywhere and ``1 - eps + eps / C`` on each label's class.
    ``y`` may be ``(B,)`` or dense ``(B, T, ...)``; the class dimension is inserted at 1 (for dense
    labels the result is a view of a classes-last buffer, which ``y.view(-1)`` on
    :class:`~lit_noise.SoftLabels` then reshapes without a copy). Labels equal to ``ignore_index``
    get zero rows.

    Example:
        >>> smooth_one_hot(torch.tensor([2, 0]), num_classes=4, eps=0.2)
        tensor([[0.0500, 0.0500, 0.8500, 0.0500],
                [0.8500, 0.0500, 0.0500, 0.0500]])
        >>> smooth_one_hot(torch.tensor([[1, -100]]), num_classes=2, eps=0.2, ignore_index=-100)
        tensor([[[0.1000, 0.0000],
                 [0.9000, 0.0000]]])
    """
    off = eps / num_classes
    out = torch.full((*y.shape, num_classes), off, dtype=dtype or torch.get_default_dtype(), device=y.device)
    ignored = _ignore_mask(y, ignore_index)
    index = y if y.dtype == torch.int64 else y.long()
    if ignored is not None:
        index = index.masked_fill(ignored, 0)
    out.scatter_(-1, index.unsqueeze(-1), 1.0 - eps + off)
    if ignored is not None:
        out.masked_fill_(ignored.unsqueeze(-1), 0.0)
    return out if y.ndim <= 1 else out.movedim(-1, 1)


def symmetric_flip(
    y: Tensor,
    p: float,
    num_classes: int,
    generator: torch.Generator | None = None,
    ignore_index: int | None = None,
) -> Tensor:
    """With probability ``p`` replace each label by a uniformly random *other* class.

    Each label draws an offset uniform in ``1 .. C - 1`` (added modulo ``C``, so every other class
    is equally likely) and a uniform ``u``; the label is flipped where ``u < p``. Six tensor
    operations, no Python loop. Labels equal to ``ignore_index``, and the labels not flipped, are
    returned as they are (in the labels' dtype).

    Example:
        >>> y = torch.zeros(100_000, dtype=torch.long)
        >>> z = symmetric_flip(y, p=0.3, num_classes=4, generator=torch.Generator().manual_seed(0))
        >>> round((z != y).float().mean().item(), 2), int(z.min()), int(z.max())
        (0.3, 0, 3)
        >>> symmetric_flip(torch.tensor([0, -100]), p=1.0, num_classes=2, ignore_index=-100)
        tensor([   1, -100])
    """
    _check_label_dtype("symmetric_flip", y, num_classes)
    if p <= 0.0:
        return y.clone()
    # Narrow integer labels would overflow in y + offset: they are added as int64.
    labels = y if y.dtype in (torch.int64, torch.int32) else y.long()
    offset = _randint(labels, 1, num_classes, generator)
    flip = _rand(labels, generator, torch.float32) < p
    flipped = offset.add_(labels).remainder_(num_classes)
    ignored = _ignore_mask(y, ignore_index)
    if ignored is not None:
        flip &= ~ignored
    out = torch.where(flip, flipped, labels)
    return out if out.dtype == y.dtype else out.to(y.dtype)


def pair_flip(
    y: Tensor,
    p: float,
    num_classes: int,
    generator: torch.Generator | None = None,
    ignore_index: int | None = None,
) -> Tensor:
    """With probability ``p`` replace class ``k`` by ``(k + 1) % C`` (pair-flip noise).

    Labels equal to ``ignore_index`` are kept.

    Example:
        >>> pair_flip(torch.tensor([0, 1, 2]), p=1.0, num_classes=3)
        tensor([1, 2, 0])
        >>> pair_flip(torch.tensor([0, 1, 2]), p=1.0, num_classes=3, ignore_index=2)
        tensor([1, 2, 2])
    """
    _check_label_dtype("pair_flip", y, num_classes)
    flip = _rand(y, generator, torch.float32) < p
    ignored = _ignore_mask(y, ignore_index)
    if ignored is not None:
        flip &= ~ignored
    if y.dtype in _NARROW_INTEGERS:  # y + 1 and C computed as int64: 255 + 1 and 256 wrap in uint8
        return torch.where(flip, (y.long() + 1).remainder_(num_classes), y.long()).to(y.dtype)
    return torch.where(flip, (y + 1).remainder_(num_classes), y)


def transition_flip(
    y: Tensor, matrix: Tensor, generator: torch.Generator | None = None, ignore_index: int | None = None
) -> Tensor:
    """Draw each noisy label from row ``y`` of a row-stochastic ``matrix``: ``P(j | i) = T[i, j]``.

    Labels equal to ``ignore_index`` are kept.

    Example:
        >>> T = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
        >>> transition_flip(torch.tensor([0, 1, 1]), T)
        tensor([1, 0, 0])
        >>> transition_flip(torch.tensor([0, -100]), T, ignore_index=-100)
        tensor([   1, -100])
    """
    ignored = _ignore_mask(y, ignore_index)
    rows = (y if ignored is None else y.masked_fill(ignored, 0)).long()  # uint8 would index as a mask
    cumulative = matrix.to(y.device, torch.float64).cumsum(dim=1)[rows]
    u = torch.rand((*y.shape, 1), generator=generator, device=y.device, dtype=torch.float64)
    u = u * cumulative[..., -1:]
    drawn = (cumulative <= u).sum(dim=-1).clamp_(max=matrix.shape[1] - 1)
    return drawn if ignored is None else torch.where(ignored, y.long(), drawn)
