"""Soft targets that break nothing: :class:`SoftLabels`, :func:`soft` and :func:`hard`.

Label smoothing and mixup produce class distributions, but many LightningModules compute metrics
on their training targets, and ``(B, C)`` float targets fail those metrics' shape checks.
:class:`SoftLabels` *is* the hard class indices (``int64``, shape ``(B,)``) to every operation and
metric, except the losses that take class probabilities -- ``F.cross_entropy``
(``nn.CrossEntropyLoss``) and ``F.nll_loss`` (``nn.NLLLoss``) -- which see the distribution.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from lit_noise.errors import ConfigurationError

__all__ = ["SoftLabels", "hard", "soft", "soft_nll_loss"]

_REDUCTIONS = ("mean", "sum", "none")


def soft_nll_loss(
    log_probs: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    reduction: str = "mean",
) -> Tensor:
    """``F.nll_loss`` for a target distribution: ``-sum_c w_c * target_c * log_probs_c``.

    With ``reduction="mean"`` the sum is divided by the number of samples (times positions, for
    dense ``(B, C, ...)`` targets), as ``F.cross_entropy`` does for probability targets (so
    ``soft_nll_loss(log_softmax(x), t) == cross_entropy(x, t)``), class weights included.

    Example:
        >>> logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
        >>> t = torch.tensor([[0.9, 0.1], [0.2, 0.8]])
        >>> lp = torch.log_softmax(logits, 1)
        >>> bool(torch.isclose(soft_nll_loss(lp, t), F.cross_entropy(logits, t)))
        True
    """
    if reduction not in _REDUCTIONS:
        raise ConfigurationError(f"soft_nll_loss: `reduction` must be one of {_REDUCTIONS}")
    terms = target * log_probs
    if weight is not None:
        shape = [1] * terms.ndim
        shape[1] = -1
        terms = terms * weight.view(shape)
    loss = -terms.sum(dim=1)
    if reduction == "mean":  # over samples (and positions of dense targets), like cross_entropy
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def _soft_of(value: Any) -> Any:
    return value.soft if isinstance(value, SoftLabels) else value


def _with_soft_target(func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Call a probability-taking loss with every ``SoftLabels`` argument replaced by its soft form."""
    args = tuple(_soft_of(a) for a in args)
    kwargs = {k: _soft_of(v) for k, v in kwargs.items()}
    with torch._C.DisableTorchFunctionSubclass():
        if func is F.nll_loss:
            return _nll_loss_soft(*args, **kwargs)
        return func(*args, **kwargs)


def _nll_loss_soft(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    size_average: bool | None = None,
    ignore_index: int = -100,
    reduce: bool | None = None,
    reduction: str = "mean",
) -> Tensor:
    if size_average is not None or reduce is not None:
        raise ConfigurationError(
            "nll_loss on SoftLabels does not support the deprecated `size_average`/`reduce`; use `reduction`."
        )
    if target.is_floating_point() and target.shape == input.shape:
        return soft_nll_loss(input, target, weight, reduction)
    return F.nll_loss(input, target, weight, ignore_index=ignore_index, reduction=reduction)


_SOFT_LOSSES = (F.cross_entropy, F.nll_loss)
_KEEP_SUBCLASS = {
    Tensor.to,
    Tensor.cpu,
    Tensor.cuda,
    Tensor.detach,
    Tensor.clone,
    Tensor.contiguous,
    Tensor.pin_memory,
    Tensor.__getitem__,
}


def _keep_subclass(
    func: Callable[..., Any], source: SoftLabels, rest: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """Apply a moving / copying / batch-indexing ``func`` to both parts of ``source``.

    The result is ``SoftLabels`` only while it still means "one distribution per hard label":
    ``.to(dtype)`` to anything but int64 gives the plain converted hard labels (like ``.float()``),
    and an index that reaches past the batch dimension (``y[:, None]``) indexes the hard labels only.
    """
    with torch._C.DisableTorchFunctionSubclass():
        hard_part = func(source.hard, *rest, **kwargs)
        if not isinstance(hard_part, Tensor) or hard_part.dtype != torch.int64:
            return hard_part
        if func is Tensor.to:
            soft_part = source.soft.to(
                device=hard_part.device,
                non_blocking=bool(kwargs.get("non_blocking", False)),
                copy=bool(kwargs.get("copy", False)),
            )
        elif func is Tensor.__getitem__:
            index = rest[0] if rest else None
            if isinstance(index, tuple):
                index = index[0] if len(index) == 1 else None
            if index is None or index is Ellipsis:
                return hard_part if index is None else SoftLabels(source.soft, hard_part)
            soft_part = source.soft[index]
        else:
            soft_part = func(source.soft, *rest, **kwargs)
    if (
        isinstance(soft_part, Tensor)
        and soft_part.ndim >= 2
        and hard_part.shape == soft_part.shape[:1] + soft_part.shape[2:]
    ):
        return SoftLabels(soft_part, hard_part)
    return hard_part


class SoftLabels(Tensor):
    """Hard class indices that carry a class distribution for the probability-taking losses.

    To every operation a ``SoftLabels`` is its ``(B,)`` int64 hard labels (by default the argmax of
    the distribution), and results are plain tensors. ``F.cross_entropy`` / ``nn.CrossEntropyLoss``
    and ``F.nll_loss`` / ``nn.NLLLoss`` receive the ``(B, C)`` distribution instead (``nll_loss`` then
    computes ``-sum(p * log_probs)``). Moving, detaching, cloning and indexing keep both parts.

    Example:
        >>> y = SoftLabels(torch.tensor([[0.9, 0.1], [0.3, 0.7]]))
        >>> y
        SoftLabels([0, 1], soft=[[0.9000, 0.1000], [0.3000, 0.7000]])
        >>> (y == torch.tensor([0, 1])).all().item()
        True
        >>> logits = torch.zeros(2, 2)
        >>> bool(F.cross_entropy(logits, y) == F.cross_entropy(logits, y.soft))
        True
    """

    soft: Tensor

    @staticmethod
    def __new__(cls, soft: Tensor, hard: Tensor | None = None) -> SoftLabels:  # noqa: D102
        if soft.ndim < 2 or not soft.is_floating_point():
            raise ConfigurationError(
                f"SoftLabels: `soft` must be a floating (B, C, ...) tensor, got dtype {soft.dtype}"
                f" and shape {tuple(soft.shape)}."
            )
        if hard is None:
            hard = soft.argmax(dim=1)
        elif hard.shape != soft.shape[:1] + soft.shape[2:]:
            raise ConfigurationError(
                f"SoftLabels: `hard` must have shape {tuple(soft.shape[:1] + soft.shape[2:])},"
                f" got {tuple(hard.shape)}."
            )
        return cls._wrap(soft, hard.long())

    def __init__(self, soft: Tensor, hard: Tensor | None = None) -> None:
        pass

    @classmethod
    def _wrap(cls, soft: Tensor, hard: Tensor) -> SoftLabels:
        """``SoftLabels`` from parts already known to fit (int64 ``hard``): no checks (hot paths)."""
        labels: SoftLabels = Tensor._make_subclass(cls, hard)
        labels.soft = soft
        return labels

    @property
    def hard(self) -> Tensor:
        """The class indices as a plain tensor."""
        with torch._C.DisableTorchFunctionSubclass():
            return self.view_as(self)

    @classmethod
    def __torch_function__(
        cls,
        func: Callable[..., Any],
        types: Sequence[type],
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
    ) -> Any:
        kwargs = dict(kwargs or {})
        if func in _SOFT_LOSSES:
            return _with_soft_target(func, tuple(args), kwargs)
        if func in _KEEP_SUBCLASS and args and isinstance(args[0], SoftLabels):
            return _keep_subclass(func, args[0], tuple(args[1:]), kwargs)
        with torch._C.DisableTorchFunctionSubclass():
            return func(*args, **kwargs)

    def __repr__(self, *, tensor_contents: Any = None) -> str:  # type: ignore[override]
        hard_list = self.hard.tolist()
        soft_text = str(self.soft.detach().cpu()).replace("tensor(", "").rstrip(")")
        soft_text = " ".join(soft_text.split())
        return f"SoftLabels({hard_list}, soft={soft_text})"

    def __reduce_ex__(self, protocol: Any) -> Any:
        return (SoftLabels, (self.soft, self.hard))

    def __deepcopy__(self, memo: dict[int, Any]) -> SoftLabels:
        return SoftLabels(self.soft.clone(), self.hard.clone())


def soft(y: Tensor, num_classes: int | None = None) -> Tensor:
    """The class distribution behind a target: one-hot for indices, ``.soft`` for SoftLabels.

    Plain float ``(B, C)`` targets are returned as they are.

    Example:
        >>> soft(torch.tensor([1, 0]), num_classes=3)
        tensor([[0., 1., 0.],
                [1., 0., 0.]])
    """
    if isinstance(y, SoftLabels):
        return y.soft
    if y.is_floating_point() and y.ndim >= 2:
        return y
    if y.is_floating_point() or y.dtype == torch.bool:
        raise ConfigurationError(
            f"soft: `y` must be integer class indices, SoftLabels or a (B, C) float tensor,"
            f" got dtype {y.dtype} and shape {tuple(y.shape)}."
        )
    if num_classes is None:
        raise ConfigurationError("soft: `num_classes` is required for integer class indices.")
    if y.ndim == 0:
        return F.one_hot(y.long(), num_classes).to(torch.get_default_dtype())
    # One scatter (F.one_hot also scans the labels for their range, and builds int64 first).
    shape = (y.shape[0], num_classes, *y.shape[1:])
    one_hot = torch.zeros(shape, dtype=torch.get_default_dtype(), device=y.device)
    return one_hot.scatter_(1, y.long().unsqueeze(1), 1.0)


def hard(y: Tensor) -> Tensor:
    """The class indices behind a target: ``argmax`` of a distribution, indices as they are.

    Example:
        >>> hard(torch.tensor([[0.2, 0.8], [0.6, 0.4]]))
        tensor([1, 0])
    """
    if isinstance(y, SoftLabels):
        return y.hard
    if y.is_floating_point() and y.ndim >= 2:
        return y.argmax(dim=1)
    return y
