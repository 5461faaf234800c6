"""Soft targets that break nothing: :class:`SoftLabels`, :func:`soft` and :func:`hard`.

Label smoothing and mixup produce class distributions, but many LightningModules compute metrics
on their training targets, and ``(B, C)`` float targets fail those metrics' shape checks.
:class:`SoftLabels` *is* the hard class indices (``int64``, shape ``(B,)`` or ``(B, T, ...)``) to
every operation and metric, except the losses that take class probabilities -- ``F.cross_entropy``
(``nn.CrossEntropyLoss``) and ``F.nll_loss`` (``nn.NLLLoss``) -- which see the distribution.

Sequence models reshape and index their targets before the loss (``y.view(-1)``, ``y[:, 1:]``,
``y.transpose(0, 1)``): those operations carry the distribution along, and the losses leave out the
positions whose hard label is their ``ignore_index`` (padding), averaging over the kept positions as
they do for hard targets. An operation that cannot carry the distribution returns the hard labels and
warns once, naming itself.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import _reduction

from lit_noise._validation import fail
from lit_noise.errors import ConfigurationError

__all__ = ["SoftLabels", "hard", "soft", "soft_nll_loss"]

_REDUCTIONS = ("mean", "sum", "none")
_Handler = Callable[[Callable[..., Any], tuple[Any, ...], Mapping[str, Any]], Any]


# --------------------------------------------------------------------------- the losses


def _soft_loss(
    log_probs: Tensor,
    probs: Tensor,
    ignored: Tensor | None,
    weight: Tensor | None,
    reduction: str,
    owner: str,
) -> Tensor:
    """``-sum_c w_c * probs_c * log_probs_c`` per position; ``ignored`` positions count 0 and are left out.

    Mirrors torch's probability-target ``cross_entropy`` (same expression, same order of reduction),
    so with nothing ignored the result is bit for bit ``F.cross_entropy(logits, probs)``. The mean is
    over the kept positions (class weights scale the terms but not the count, as for torch's
    probability targets).
    """
    if reduction not in _REDUCTIONS:
        raise fail(owner, "reduction", reduction, "one of 'mean', 'sum', 'none'")
    if probs.shape != log_probs.shape:
        raise ConfigurationError(
            f"{owner}: the input has shape {tuple(log_probs.shape)} but the target distribution has shape"
            f" {tuple(probs.shape)}; the classes must be dim 1 of the input, as for hard targets"
            " (flatten both, `logits.view(-1, C)` with `y.view(-1)`, or pass (B, C, T) logits with (B, T)"
            " targets)."
        )
    class_dim = 0 if log_probs.ndim == 1 else 1
    terms = log_probs * probs
    if weight is not None:
        shape = [1] * terms.ndim
        shape[class_dim] = -1
        terms = terms * weight.view(shape)
    if ignored is not None:  # exactly 0, even where log_probs is -inf or nan
        terms = terms.masked_fill(ignored.unsqueeze(class_dim), 0.0)
    if reduction == "none":
        return -terms.sum(class_dim)
    total = -terms.sum()
    if reduction == "sum":
        return total
    if ignored is None:
        return total / (terms.numel() // max(terms.shape[class_dim], 1))
    return total / (ignored.numel() - ignored.sum())


def soft_nll_loss(
    log_probs: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    reduction: str = "mean",
) -> Tensor:
    """``F.nll_loss`` for a target distribution: ``-sum_c w_c * target_c * log_probs_c``.

    With ``reduction="mean"`` the sum is divided by the number of samples (times positions, for
    dense ``(B, C, ...)`` targets), as ``F.cross_entropy`` does for probability targets (so
    ``soft_nll_loss(log_softmax(x), t) == cross_entropy(x, t)``), class weights included. For
    :class:`SoftLabels` use ``F.nll_loss`` itself, which also leaves out ``ignore_index`` positions.

    Example:
        >>> logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
        >>> t = torch.tensor([[0.9, 0.1], [0.2, 0.8]])
        >>> lp = torch.log_softmax(logits, 1)
        >>> bool(torch.isclose(soft_nll_loss(lp, t), F.cross_entropy(logits, t)))
        True
    """
    return _soft_loss(log_probs, target, None, weight, reduction, "soft_nll_loss")


def _soft_target_loss(
    nll: bool,
    input: Tensor,
    target: SoftLabels,
    weight: Tensor | None = None,
    size_average: bool | None = None,
    ignore_index: int = -100,
    reduce: bool | None = None,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> Tensor:
    """``F.cross_entropy`` on SoftLabels, or with ``nll`` ``F.nll_loss`` (``input``: log-probabilities).

    The arguments are torch's, as torch passes them on (only ``cross_entropy`` has ``label_smoothing``).
    """
    owner = "nll_loss" if nll else "cross_entropy"
    if size_average is not None or reduce is not None:
        if nll:
            raise ConfigurationError(
                "nll_loss on SoftLabels does not support the deprecated `size_average`/`reduce`; use"
                " `reduction`."
            )
        reduction = _reduction.legacy_get_string(size_average, reduce)
    if not 0.0 <= label_smoothing <= 1.0:
        raise fail(owner, "label_smoothing", label_smoothing, "a number in [0, 1]")
    class_dim = 0 if input.ndim == 1 else 1
    probs = target.soft
    if label_smoothing > 0.0:  # on the distribution, as torch does for probability targets
        probs = probs * (1 - label_smoothing) + label_smoothing / input.shape[class_dim]
    log_probs = input if nll else torch.log_softmax(input, class_dim)
    return _soft_loss(log_probs, probs, target.hard == ignore_index, weight, reduction, owner)


def _loss(func: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
    target = args[1] if len(args) > 1 else kwargs.get("target")
    if not isinstance(target, SoftLabels):
        return _plain(func, args, kwargs)
    with torch._C.DisableTorchFunctionSubclass():
        return _soft_target_loss(func is F.nll_loss, *args, **kwargs)


# --------------------------------------------------------------------------- carrying the distribution


_WARNED: set[str] = set()


def _warn_dropped(name: str) -> None:
    """Warn (once per operation and process) that ``name`` returned the hard labels only."""
    if name in _WARNED:
        return
    _WARNED.add(name)
    warnings.warn(
        f"SoftLabels: `{name}` cannot carry the class distribution, so its result holds the hard labels"
        " only and a loss on it trains on the hard labels. Apply the operation to `y.hard` and"
        " `y.soft` yourself, or use a carried one (view, reshape, indexing, permute, cat, ...).",
        UserWarning,
        stacklevel=4,
    )


def _plain(func: Callable[..., Any], args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
    with torch._C.DisableTorchFunctionSubclass():
        return func(*args, **kwargs)


def _is_labels(value: Any) -> bool:
    return isinstance(value, Tensor) and value.dtype == torch.int64


def _class_rows(labels: Tensor, num_classes: int, dtype: torch.dtype) -> Tensor:
    """One-hot rows ``labels.shape + (C,)`` of ``labels``; labels outside ``[0, C)`` get zero rows."""
    with torch._C.DisableTorchFunctionSubclass():
        valid = (labels >= 0) & (labels < num_classes)
        index = labels.masked_fill(~valid, 0).long().unsqueeze(-1)
        rows = torch.zeros((*labels.shape, num_classes), dtype=dtype, device=labels.device)
        return rows.scatter_(-1, index, valid.unsqueeze(-1).to(dtype))


def _reshaped(func: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
    """Order-preserving reshapes (view, flatten, squeeze, ...): the distribution takes the new shape."""
    y = args[0] if args else None
    result = _plain(func, args, kwargs)
    if not isinstance(y, SoftLabels) or result is y or not _is_labels(result):
        return result
    dist = y._dist
    if result.shape != y.shape:
        with torch._C.DisableTorchFunctionSubclass():
            dist = dist.reshape(*result.shape, dist.shape[-1])
    return SoftLabels._wrap_last(dist, result)


def _moved(func: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
    """Moves and copies (to, cpu, cuda, clone, detach, contiguous, long): the same for the distribution.

    A conversion to another dtype (``y.to(torch.float32)``, like ``y.float()``) is plain.
    """
    y = args[0] if args else None
    result = _plain(func, args, kwargs)
    if not isinstance(y, SoftLabels) or result is y or not _is_labels(result):
        return result
    with torch._C.DisableTorchFunctionSubclass():
        if func is Tensor.to:
            options = {k: v for k, v in kwargs.items() if k != "copy"}
            non_blocking = torch._C._nn._parse_to(*args[1:], **options)[2]
            dist = y._dist.to(result.device, non_blocking=non_blocking, copy=bool(kwargs.get("copy", False)))
        elif func in (Tensor.cpu, Tensor.cuda, Tensor.pin_memory):
            dist = func(y._dist, *args[1:], **kwargs)
        elif func is Tensor.long:
            dist = y._dist
        else:  # clone, detach, contiguous (their memory-format options are for the labels' rank)
            dist = getattr(y._dist, func.__name__)()
    return SoftLabels._wrap_last(dist, result)


def _pair_up(result: Any, selected: Any, table: Tensor, filled: bool) -> Any:
    """Wrap ``result`` with the rows ``table[selected]`` (``selected`` mirrors ``result``'s structure).

    With ``filled``, positions are 1-based and a 0 marks an element the operation made up (padding,
    the zeros of ``tril``): its row is the one-hot of its label (zero outside ``[0, C)``).
    """
    if isinstance(result, Tensor):
        if not _is_labels(result) or not isinstance(selected, Tensor) or selected.shape != result.shape:
            return result
        with torch._C.DisableTorchFunctionSubclass():
            if not filled:
                return SoftLabels._wrap_last(table[selected], result)
            rows = table[(selected - 1).clamp_(min=0)]
            made_up = (selected == 0).unsqueeze(-1)
            rows = torch.where(made_up, _class_rows(result, table.shape[-1], table.dtype), rows)
            return SoftLabels._wrap_last(rows, result)
    if (
        isinstance(result, (tuple, list))
        and isinstance(selected, (tuple, list))
        and len(result) == len(selected)
    ):
        return type(result)(_pair_up(r, s, table, filled) for r, s in zip(result, selected, strict=True))
    return result


_FILLS = frozenset({"tril", "triu", "diag", "diag_embed", "diagflat", "pad"})


def _by_position(func: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
    """Operations that pick, reorder or repeat elements: run them on the elements' positions too.

    The same operation applied to ``arange(numel).view(shape)`` says where each result element came
    from, whatever its arguments (dims, indices, masks, shifts, sizes), so the rows follow exactly.
    """
    y = args[0] if args else None
    result = _plain(func, args, kwargs)
    if not isinstance(y, SoftLabels) or result is y:
        return result
    name = getattr(func, "__name__", "")
    if name == "repeat_interleave" and len(args) < 2 and "repeats" not in kwargs:
        return result  # repeat_interleave(y) alone: the labels are repeat counts, the result indices
    filled = name in _FILLS
    rest, options = list(args[1:]), dict(kwargs)
    if name == "pad":  # made-up elements must read as position 0
        if len(rest) >= 3:
            rest[2] = 0
        else:
            options["value"] = 0
    with torch._C.DisableTorchFunctionSubclass():
        start = 1 if filled else 0
        positions = torch.arange(start, start + y.numel(), device=y.device).view(y.shape)
        selected = func(positions, *rest, **options)
        table = y._dist.reshape(-1, y._dist.shape[-1])
    return _pair_up(result, selected, table, filled)


def _concatenated(func: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
    """Join (cat, stack and their relatives); plain integer tensors among the inputs join as one-hot rows."""
    result = _plain(func, args, kwargs)
    tensors = args[0] if args else kwargs.get("tensors")
    if not _is_labels(result) or not isinstance(tensors, (list, tuple)):
        return result
    soft_ones = [t for t in tensors if isinstance(t, SoftLabels)]
    if not soft_ones:
        return result
    num_classes = soft_ones[0].num_classes
    if any(t.num_classes != num_classes for t in soft_ones):
        _warn_dropped(f"{func.__name__} of SoftLabels with different numbers of classes")
        return result
    dtype = torch.promote_types(soft_ones[0]._dist.dtype, soft_ones[-1]._dist.dtype)
    tables, positions, offset = [], [], 0
    with torch._C.DisableTorchFunctionSubclass():
        for t in tensors:
            count = t.numel()
            positions.append(torch.arange(offset, offset + count, device=result.device).view(t.shape))
            if isinstance(t, SoftLabels):
                tables.append(t._dist.reshape(-1, num_classes).to(result.device, dtype))
            else:
                tables.append(_class_rows(t.reshape(-1).to(result.device), num_classes, dtype))
            offset += count
        selected = func(positions, *args[1:], **kwargs) if args else func(**{**kwargs, "tensors": positions})
        table = torch.cat(tables)
    return _pair_up(result, selected, table, False)


def _getitem(func: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
    """``y[index]``: slices, ints, None, Ellipsis, masks and index tensors index the rows directly."""
    y = args[0]
    result = _plain(func, args, kwargs)
    if not isinstance(y, SoftLabels) or result is y or not _is_labels(result):
        return result
    index = args[1]
    items = index if isinstance(index, tuple) else (index,)
    if (isinstance(index, (tuple, int, slice, Tensor)) or index is None or index is Ellipsis) and all(
        i is None or i is Ellipsis or isinstance(i, (int, slice, Tensor)) for i in items
    ):
        # One more trailing dimension: the classes, kept whole (after an Ellipsis, or after everything).
        tail = (slice(None),) if any(i is Ellipsis for i in items) else (Ellipsis, slice(None))
        with torch._C.DisableTorchFunctionSubclass():
            dist = y._dist[items + tail]
        if dist.shape[:-1] == result.shape:
            return SoftLabels._wrap_last(dist, result)
    return _by_position(func, args, kwargs)  # lists and other sequences: torch's own rules


def _where(func: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
    """``torch.where(cond, y, other)``, ``y.where(cond, other)``: rows from the side each label is from."""
    result = _plain(func, args, kwargs)
    if not _is_labels(result):
        return result  # torch.where(condition) alone: indices
    names = ("input", "condition", "other") if func is Tensor.where else ("condition", "input", "other")
    bound = dict(zip(names, args, strict=False))
    bound.update(kwargs)
    condition, sides = bound.get("condition"), [bound.get("input"), bound.get("other")]
    soft_ones = [s for s in sides if isinstance(s, SoftLabels)]
    if not soft_ones or not isinstance(condition, Tensor):
        return result
    num_classes, dtype = soft_ones[0].num_classes, soft_ones[0]._dist.dtype
    if any(s.num_classes != num_classes for s in soft_ones):
        _warn_dropped("where of SoftLabels with different numbers of classes")
        return result
    with torch._C.DisableTorchFunctionSubclass():
        rows = [
            s._dist
            if isinstance(s, SoftLabels)
            else _class_rows(torch.as_tensor(s, device=result.device), num_classes, dtype)
            for s in sides
        ]
        dist = torch.where(condition.unsqueeze(-1), rows[0], rows[1])
    if dist.shape[:-1] != result.shape:
        return result
    return SoftLabels._wrap_last(dist, result)


def _relabelled(func: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
    """Label-writing ops (masked_fill, index_put, scatter, ...): a changed label's row becomes its one-hot."""
    y = args[0] if args else None
    result = _plain(func, args, kwargs)
    if not isinstance(y, SoftLabels) or result is y or not _is_labels(result) or result.shape != y.shape:
        return result
    with torch._C.DisableTorchFunctionSubclass():
        changed = result != y.hard
        rows = _class_rows(result[changed], y.num_classes, y._dist.dtype)
        dist = y._dist.index_put((changed,), rows)
    return SoftLabels._wrap_last(dist, result)


def _dropped(func: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
    """Structural ops whose result cannot be mapped to the labels' positions: hard labels and a warning."""
    first = args[0] if args else None
    involved = isinstance(first, SoftLabels) or (
        isinstance(first, (list, tuple)) and any(isinstance(t, SoftLabels) for t in first)
    )
    if involved:
        _warn_dropped(func.__name__)
    return _plain(func, args, kwargs)


# In-place ops that change the labels' shape: carried like their out-of-place twins, or refused.
_INPLACE_TWINS: dict[str, Callable[..., Any]] = {
    "squeeze_": Tensor.squeeze,
    "unsqueeze_": Tensor.unsqueeze,
    "t_": Tensor.t,
    "transpose_": Tensor.transpose,
    "swapdims_": Tensor.swapdims,
    "swapaxes_": Tensor.swapaxes,
}
_INPLACE_DROPPED = frozenset({"resize_", "resize_as_", "as_strided_", "set_"})


def _in_place(func: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
    """In-place ops on the labels (``y[mask] = -100``, ``masked_fill_``, ``add_``, ...).

    Positions whose label the op changes get the one-hot row of their new label (a zero row outside
    ``[0, C)``, e.g. for ``-100``), written into the distribution in place, so views stay in step.
    """
    y = args[0] if args else None
    if not isinstance(y, SoftLabels):
        return _plain(func, args, kwargs)
    name = func.__name__
    twin = _INPLACE_TWINS.get(name)
    if twin is not None:
        carried = _by_position(twin, args, kwargs)
        out = _plain(func, args, kwargs)
        if isinstance(carried, SoftLabels):
            y._dist = carried._dist
        return out
    before = y.hard.clone()
    out = _plain(func, args, kwargs)
    after = y.hard
    num_classes, dtype = y.num_classes, y._dist.dtype
    if name in _INPLACE_DROPPED or after.shape != before.shape:
        _warn_dropped(name)
        y._dist = _class_rows(after, num_classes, dtype)
        return out
    with torch._C.DisableTorchFunctionSubclass():
        changed = after != before
        if bool(changed.any()):
            rows = _class_rows(after[changed], num_classes, dtype)
            try:
                y._dist[changed] = rows
            except RuntimeError:  # a distribution that cannot be written (expanded, a leaf needing grad)
                y._dist = y._dist.index_put((changed,), rows)
    return out


def _register(handlers: dict[Any, _Handler | None]) -> None:
    spaces = (Tensor, torch)
    groups: list[tuple[_Handler, tuple[str, ...]]] = [
        (
            _reshaped,
            (
                "view",
                "view_as",
                "reshape",
                "reshape_as",
                "flatten",
                "unflatten",
                "squeeze",
                "unsqueeze",
                "ravel",
                "atleast_1d",
                "atleast_2d",
                "atleast_3d",
            ),
        ),
        (_moved, ("to", "cpu", "cuda", "pin_memory", "clone", "detach", "contiguous", "long")),
        (
            _by_position,
            (
                "permute",
                "transpose",
                "swapaxes",
                "swapdims",
                "t",
                "adjoint",
                "movedim",
                "moveaxis",
                "flip",
                "fliplr",
                "flipud",
                "roll",
                "rot90",
                "narrow",
                "narrow_copy",
                "select",
                "unfold",
                "split",
                "split_with_sizes",
                "chunk",
                "unbind",
                "tensor_split",
                "hsplit",
                "vsplit",
                "dsplit",
                "expand",
                "expand_as",
                "broadcast_to",
                "repeat",
                "tile",
                "repeat_interleave",
                "gather",
                "index_select",
                "take",
                "take_along_dim",
                "masked_select",
                "diagonal",
                "permute_copy",
                "transpose_copy",
                "t_copy",
                "expand_copy",
                "select_copy",
                "unbind_copy",
                "split_copy",
                "diagonal_copy",
                "view_copy",
                "unsqueeze_copy",
                "squeeze_copy",
                "detach_copy",
                "alias_copy",
                *sorted(_FILLS),
            ),
        ),
        (
            _concatenated,
            (
                "cat",
                "concat",
                "concatenate",
                "stack",
                "hstack",
                "vstack",
                "dstack",
                "column_stack",
                "row_stack",
            ),
        ),
        (_where, ("where",)),
        (
            _relabelled,
            (
                "masked_fill",
                "masked_scatter",
                "index_fill",
                "index_put",
                "index_copy",
                "index_add",
                "index_reduce",
                "scatter",
                "scatter_add",
                "scatter_reduce",
                "put",
            ),
        ),
        (_dropped, ("as_strided", "as_strided_copy", "broadcast_tensors", "block_diag")),
    ]
    for handler, names in groups:
        for name in names:
            for space in spaces:
                func = getattr(space, name, None)
                if callable(func):
                    handlers[func] = handler
    handlers[F.pad] = _by_position
    handlers[Tensor.__getitem__] = _getitem
    handlers[Tensor.__setitem__] = _in_place
    for prop in ("T", "mT", "H", "mH"):  # properties reach __torch_function__ as their getters
        handlers[getattr(Tensor, prop).__get__] = _by_position
    handlers[F.cross_entropy] = _loss
    handlers[F.nll_loss] = _loss


_HANDLERS: dict[Any, _Handler | None] = {}
_register(_HANDLERS)


def _classify(func: Callable[..., Any]) -> _Handler | None:
    """The handler of a function met for the first time: in-place ops by name, the rest plain."""
    name = getattr(func, "__name__", "")
    handler = _in_place if name.endswith("_") and not name.startswith("__") else None
    _HANDLERS[func] = handler
    return handler


def _rebuild(dist: Tensor, hard: Tensor) -> SoftLabels:
    return SoftLabels._wrap_last(dist, hard)


class SoftLabels(Tensor):
    """Hard class indices that carry a class distribution for the probability-taking losses.

    To every operation a ``SoftLabels`` is its int64 hard labels (by default the argmax of the
    distribution), and results are plain tensors. ``F.cross_entropy`` / ``nn.CrossEntropyLoss`` and
    ``F.nll_loss`` / ``nn.NLLLoss`` receive the distribution instead (``nll_loss`` then computes
    ``-sum(p * log_probs)``), and leave out the positions whose hard label is their ``ignore_index``
    (mean over the kept positions, as for hard targets; class weights scale the terms but, as for
    torch's probability targets, not the count). ``label_smoothing=`` smooths the distribution, as
    torch does for probability targets.

    The operations applied to targets carry the distribution: moving and copying (``to``, ``cpu``,
    ``cuda``, ``clone``, ``detach``, ``contiguous``, ``long``), reshaping (``view``, ``reshape``,
    ``flatten``, ``squeeze``, ``unsqueeze``, ...), reordering and picking (``permute``, ``transpose``,
    ``.T``, ``.mT``, ``flip``, ``roll``, ``narrow``, ``split``, ``chunk``, ``unbind``, ``expand``,
    ``repeat``, ``gather``, ``index_select``, ``masked_select``, indexing with ints, slices, ``None``,
    ``...``, masks and index tensors), joining (``cat``, ``stack``) and label writes (``where``,
    ``masked_fill``, ``y[mask] = -100``: a changed label's row becomes its one-hot, or zeros outside
    ``[0, C)``). Arithmetic, comparisons and metrics simply see the hard labels. The few structural
    ops that cannot be followed (``as_strided``, ``resize_``, ...) return the hard labels and warn once.

    ``soft`` is the distribution with the classes at dim 1 of the labels' shape, the layout
    ``F.cross_entropy`` takes: ``(N, C)`` for labels ``(N,)``, ``(B, C, T)`` for ``(B, T)``, ``(C,)``
    for a single label.

    Args:
        soft: floating ``(B, C, ...)`` class distributions.
        hard: the int64 class indices ``(B, ...)``; default ``soft.argmax(1)``.

    Example:
        >>> y = SoftLabels(torch.tensor([[0.9, 0.1], [0.3, 0.7]]))
        >>> y
        SoftLabels([0, 1], soft=[[0.9000, 0.1000], [0.3000, 0.7000]])
        >>> (y == torch.tensor([0, 1])).all().item()
        True
        >>> logits = torch.zeros(2, 2)
        >>> bool(F.cross_entropy(logits, y) == F.cross_entropy(logits, y.soft))
        True

        Token targets ``(B, T)`` with padding ``-100``, flattened as language models do:

        >>> tokens = torch.tensor([[0, 1, -100]])
        >>> y = SoftLabels(torch.tensor([[[0.8, 0.1, 0.0], [0.1, 0.8, 0.0], [0.1, 0.1, 0.0]]]), tokens)
        >>> y.view(-1).soft
        tensor([[0.8000, 0.1000, 0.1000],
                [0.1000, 0.8000, 0.1000],
                [0.0000, 0.0000, 0.0000]])
        >>> loss = F.cross_entropy(torch.zeros(3, 3), y.view(-1))  # mean over the 2 kept tokens
        >>> round(loss.item(), 4), round(torch.tensor(3.0).log().item(), 4)
        (1.0986, 1.0986)
    """

    # The distribution, classes last: ``hard.shape + (C,)``, so every op on the labels is mirrored
    # on it with one trailing dimension.
    _dist: Tensor

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
        """``SoftLabels`` from parts known to fit (``(B, C, ...)`` soft, int64 ``hard``): no checks."""
        return cls._wrap_last(soft if soft.ndim <= 2 else soft.movedim(1, -1), hard)

    @classmethod
    def _wrap_last(cls, dist: Tensor, hard: Tensor) -> SoftLabels:
        """``SoftLabels`` from a classes-last distribution ``hard.shape + (C,)`` and int64 ``hard``."""
        labels: SoftLabels = Tensor._make_subclass(cls, hard)
        labels._dist = dist
        return labels

    @property
    def soft(self) -> Tensor:
        """The distribution, classes at dim 1: ``(N, C)``, ``(B, C, T, ...)`` (a view), or ``(C,)``."""
        dist = self._dist
        return dist if dist.ndim <= 2 else dist.movedim(-1, 1)

    @property
    def hard(self) -> Tensor:
        """The class indices as a plain tensor."""
        with torch._C.DisableTorchFunctionSubclass():
            return self.view_as(self)

    @property
    def num_classes(self) -> int:
        """The number of classes ``C`` of the distribution."""
        return int(self._dist.shape[-1])

    @classmethod
    def __torch_function__(
        cls,
        func: Callable[..., Any],
        types: Sequence[type],
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
    ) -> Any:
        try:
            handler = _HANDLERS[func]
        except KeyError:
            handler = _classify(func)
        if handler is not None:
            return handler(func, tuple(args), kwargs or {})
        with torch._C.DisableTorchFunctionSubclass():
            return func(*args, **(kwargs or {}))

    def __repr__(self, *, tensor_contents: Any = None) -> str:  # type: ignore[override]
        hard_list = self.hard.tolist()
        soft_text = str(self.soft.detach().cpu()).replace("tensor(", "").rstrip(")")
        soft_text = " ".join(soft_text.split())
        return f"SoftLabels({hard_list}, soft={soft_text})"

    def __reduce_ex__(self, protocol: Any) -> Any:
        return (_rebuild, (self._dist, self.hard))

    def __deepcopy__(self, memo: dict[int, Any]) -> SoftLabels:
        return SoftLabels._wrap_last(self._dist.clone(), self.hard.clone())


def soft(y: Tensor, num_classes: int | None = None, ignore_index: int | None = None) -> Tensor:
    """The class distribution behind a target: one-hot for indices, ``.soft`` for SoftLabels.

    Plain float ``(B, C)`` targets are returned as they are (a ``num_classes`` other than their
    ``C`` is an error). Class indices equal to ``ignore_index`` get zero rows (other labels outside
    ``[0, C)`` are an error); a distribution keeps its own rows.

    Example:
        >>> soft(torch.tensor([1, 0]), num_classes=3)
        tensor([[0., 1., 0.],
                [1., 0., 0.]])
        >>> soft(torch.tensor([1, -100]), num_classes=3, ignore_index=-100)
        tensor([[0., 1., 0.],
                [0., 0., 0.]])
    """
    if type(y) is Tensor and y.dtype == torch.int64 and y.ndim >= 1 and num_classes is not None:
        labels, ignored = y, None  # the common case (int64 class indices) without the checks below
        if ignore_index is not None:
            ignored = y == ignore_index
            labels = y.masked_fill(ignored, 0)
    else:
        distribution = (
            y.soft if isinstance(y, SoftLabels) else y if y.is_floating_point() and y.ndim >= 2 else None
        )
        if distribution is not None:
            class_dim = 1 if distribution.ndim >= 2 else 0  # one sample's SoftLabels: (C,)
            if num_classes is not None and distribution.shape[class_dim] != num_classes:
                raise ConfigurationError(
                    f"soft: `num_classes` is {num_classes}, but the target distribution has"
                    f" {distribution.shape[class_dim]} classes (dim {class_dim} of shape"
                    f" {tuple(distribution.shape)})."
                )
            return distribution
        if y.is_floating_point() or y.dtype == torch.bool:
            raise ConfigurationError(
                f"soft: `y` must be integer class indices, SoftLabels or a (B, C) float tensor,"
                f" got dtype {y.dtype} and shape {tuple(y.shape)}."
            )
        if num_classes is None:
            raise ConfigurationError("soft: `num_classes` is required for integer class indices.")
        labels = y.long()  # compared as int64: torch wraps an ignore_index a narrow dtype cannot hold
        ignored = None if ignore_index is None else labels == ignore_index
        if ignored is not None:
            labels = labels.masked_fill(ignored, 0)
        if y.ndim == 0:
            one_hot = F.one_hot(labels, num_classes).to(torch.get_default_dtype())
            return one_hot if ignored is None else one_hot.masked_fill(ignored, 0.0)
    if y.ndim == 1 and ignored is None and num_classes <= _EYE_MAX_CLASSES:
        # Rows of a cached identity: one gather, fewer host steps than allocating and scattering.
        return _eye(num_classes, y.device).index_select(0, labels)
    # One scatter (F.one_hot also scans the labels for their range, and builds int64 first).
    shape = (y.shape[0], num_classes, *y.shape[1:])
    one_hot = torch.zeros(shape, dtype=torch.get_default_dtype(), device=y.device)
    one_hot.scatter_(1, labels.unsqueeze(1), 1.0)
    return one_hot if ignored is None else one_hot.masked_fill_(ignored.unsqueeze(1), 0.0)


_EYE_MAX_CLASSES = 1024
_EYES: dict[tuple[int, torch.dtype, torch.device], Tensor] = {}


def _eye(num_classes: int, device: torch.device) -> Tensor:
    """The cached ``(C, C)`` identity in torch's default dtype on ``device`` (never modified)."""
    key = (num_classes, torch.get_default_dtype(), device)
    eye = _EYES.get(key)
    if eye is None:
        if len(_EYES) > 32:
            _EYES.clear()
        eye = _EYES[key] = torch.eye(num_classes, dtype=key[1], device=device)
    return eye


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
