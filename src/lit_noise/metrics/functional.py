"""Calibration metrics as pure tensor functions (no Lightning, no state).

Every metric takes ``preds`` of shape ``(N, C)`` or ``(N, C, d1, ...)`` (extra dimensions are
flattened into the batch, as in torchmetrics) and a target that is either class indices
``(N, d1, ...)``, :class:`~lit_noise.SoftLabels`, or a ``(N, C, d1, ...)`` float distribution.

**Logits or probabilities** (``input_format``): ``"logits"`` always applies a softmax over dim 1,
``"probs"`` never does; ``"auto"`` (the default) treats a batch as logits when any value lies outside
``[0, 1]`` or any row does not sum to 1 (within ``1e-3``, or ``8 * eps`` for 16-bit dtypes), and as
probabilities otherwise. On probabilities and on logits with values outside ``[0, 1]`` this is
torchmetrics' rule; it differs only on ``[0, 1]``-valued rows that do not sum to 1, which torchmetrics
would take as probabilities. The decision is made per call (per ``update`` batch). 16-bit inputs are
promoted to float32.

**Targets**: the calibration metrics (ECE, MCE, RMSCE, adaptive ECE, reliability diagram) are
top-label and compare the argmax of the prediction with the hard label (the argmax of a soft
target, the hard labels of a ``SoftLabels``); Brier score and NLL compare with the whole target
distribution (one-hot for indices, ``.soft`` for ``SoftLabels``). NLL takes the ``log_softmax`` of logits
(so it equals ``F.cross_entropy``) and clamps probabilities into ``[eps, 1 - eps]`` before the log.

**Binning** (equal width): a confidence ``c`` goes to bin ``bucketize(c, linspace(0, 1, n_bins + 1),
right=True) - 1``, as in torchmetrics, except that ``c == 1.0`` lands in the last bin (torchmetrics
keeps an extra bin for it; the values differ only when that bin and the last bin are both occupied
and, for the L1 norm, the last bin is under-confident).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Literal

import torch
from torch import Tensor

from lit_noise._validation import check_choice, check_int, check_range, fail
from lit_noise.errors import ConfigurationError
from lit_noise.soft_labels import SoftLabels

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "ADAPTIVE_LOGIT_RANGE",
    "INPUT_FORMATS",
    "NORMS",
    "InputFormat",
    "Norm",
    "adaptive_calibration_bins",
    "adaptive_calibration_error",
    "adaptive_calibration_error_from_bins",
    "brier_score",
    "brier_terms",
    "calibration_bins",
    "calibration_error",
    "calibration_error_from_bins",
    "check_metric_args",
    "check_nll_eps",
    "cross_entropy_terms",
    "hard_targets",
    "negative_log_likelihood",
    "nll_terms",
    "plot_reliability_diagram",
    "reliability_diagram",
    "reliability_from_bins",
    "soft_targets",
    "to_log_probabilities",
    "to_probabilities",
    "top_label",
]

InputFormat = Literal["auto", "logits", "probs"]
Norm = Literal["l1", "l2", "max"]

INPUT_FORMATS: tuple[str, ...] = ("auto", "logits", "probs")
NORMS: tuple[str, ...] = ("l1", "l2", "max")

#: Fine bins of the adaptive ECE are equal-width in ``logit(confidence)`` over ``[-16, 16]``
#: (confidences below ``sigmoid(-16)`` share the first bin, above ``sigmoid(16) = 1 - 1.1e-7`` the last).
ADAPTIVE_LOGIT_RANGE = 16.0

# Kept on purpose (`duplicates` pairs this file with itself, and with calibration.py): the public
# functions share the head of their signatures, as torchmetrics' functional metrics do
# (``preds, target, num_classes, n_bins, norm, ..., input_format, validate_args``; ``target,
# preds_shape, num_classes, owner, validate`` for the target readers), and each Metric class of
# calibration.py takes the settings of its functional form. Those parameter lists are the API;
# what the functions do in common lives once, in the helpers they call, and
# tests/test_repeated_signatures.py keeps each repeated list equal to its counterpart.


# --------------------------------------------------------------------------------------------------
# argument and input checks


def check_metric_args(
    owner: str,
    num_classes: int,
    n_bins: int | None = None,
    norm: str | None = None,
    input_format: str = "auto",
) -> None:
    """Raise :class:`ConfigurationError` for a bad ``num_classes``, ``n_bins``, ``norm``, ``input_format``.

    Example:
        >>> check_metric_args("ECE", num_classes=10, n_bins=15, norm="l1")  # valid: nothing happens
        >>> try:
        ...     check_metric_args("ECE", num_classes=10, norm="l3")
        ... except ConfigurationError as err:
        ...     print(err)
        ECE: `norm` must be one of 'l1', 'l2', 'max', got 'l3'.
    """
    check_int(owner, "num_classes", num_classes, 2)
    if n_bins is not None:
        check_int(owner, "n_bins", n_bins, 1)
    if norm is not None:
        check_choice(owner, "norm", norm, NORMS)
    check_choice(owner, "input_format", input_format, INPUT_FORMATS)


def _flatten_preds(preds: Tensor, num_classes: int, owner: str) -> Tensor:
    if not isinstance(preds, Tensor) or not preds.is_floating_point() or preds.ndim < 2:
        shown = f"dtype {preds.dtype} and shape {tuple(preds.shape)}" if isinstance(preds, Tensor) else preds
        raise ConfigurationError(
            f"{owner}: `preds` must be a floating (N, C) or (N, C, ...) tensor of logits or"
            f" probabilities, got {shown}."
        )
    if preds.shape[1] != num_classes:
        raise ConfigurationError(
            f"{owner}: the model output has {preds.shape[1]} classes in dim 1 (shape"
            f" {tuple(preds.shape)}) but `num_classes` is {num_classes}."
        )
    if preds.ndim > 2:
        preds = preds.movedim(1, -1).reshape(-1, num_classes)
    return preds


def _softmax(x: Tensor) -> Tensor:
    """Softmax over dim 1 of ``(N, C)``; on CPU with few classes, by hand (same maths, ~5x faster there)."""
    if x.device.type == "cpu" and x.shape[1] < 64:  # torch's CPU kernel is slow for narrow rows
        exp = (x - x.amax(dim=1, keepdim=True)).exp_()
        return exp.div_(exp.sum(dim=1, keepdim=True))
    return x.softmax(dim=1)


def _check_probabilities(flat: Tensor, owner: str) -> None:
    if flat.numel() and not bool(((flat >= 0) & (flat <= 1)).all()):
        raise ConfigurationError(
            f"{owner}: `input_format='probs'` but `preds` has values outside [0, 1]"
            f" (min {flat.min().item():.4g}, max {flat.max().item():.4g}); pass"
            " input_format='logits' or 'auto'."
        )


def _looks_like_logits(flat: Tensor, dtype: torch.dtype) -> bool | Tensor:
    """``"auto"``'s decision for one batch: a Python bool on CPU, a 0-dim bool tensor elsewhere (no sync)."""
    tolerance = 1e-3 if dtype not in (torch.float16, torch.bfloat16) else 8 * torch.finfo(dtype).eps
    low, high = torch.aminmax(flat)
    outside = (low < 0) | (high > 1)
    if flat.device.type == "cpu":  # branch (and skip the row sums for logits): no sync to avoid
        return bool(outside) or bool(((flat.sum(dim=1) - 1).abs() > tolerance).any())
    return outside | ((flat.sum(dim=1) - 1).abs() > tolerance).any()


def _flat_float(preds: Tensor, num_classes: int, owner: str) -> Tensor:
    flat = _flatten_preds(preds, num_classes, owner)
    return flat.float() if flat.dtype in (torch.float16, torch.bfloat16) else flat


def to_probabilities(
    preds: Tensor,
    num_classes: int,
    input_format: InputFormat = "auto",
    owner: str = "to_probabilities",
    validate: bool = True,
) -> Tensor:
    """Predictions as a ``(N', C)`` tensor of class probabilities (see the module doc for ``"auto"``).

    Args:
        preds: ``(N, C, ...)`` logits or probabilities.
        num_classes: expected size of dim 1.
        input_format: ``"auto"``, ``"logits"`` or ``"probs"``.
        owner: name used in error messages.
        validate: with ``"probs"``, check that values lie in ``[0, 1]`` (a device sync).

    Example:
        >>> to_probabilities(torch.tensor([[0.0, 2.0]]), 2)
        tensor([[0.1192, 0.8808]])
        >>> to_probabilities(torch.tensor([[0.25, 0.75]]), 2)
        tensor([[0.2500, 0.7500]])
    """
    flat = _flat_float(preds, num_classes, owner)
    if input_format == "logits":
        return _softmax(flat)
    if input_format == "probs":
        if validate:
            _check_probabilities(flat, owner)
        return flat
    if flat.numel() == 0:
        return flat
    logits = _looks_like_logits(flat, preds.dtype)
    if isinstance(logits, bool):
        return _softmax(flat) if logits else flat
    return torch.where(logits, _softmax(flat), flat)  # no host sync on accelerators


def to_log_probabilities(
    preds: Tensor,
    num_classes: int,
    input_format: InputFormat = "auto",
    eps: float | None = None,
    owner: str = "to_log_probabilities",
    validate: bool = True,
) -> Tensor:
    """Predictions as ``(N', C)`` log-probabilities, never ``-inf``: what the NLL metrics take the mean of.

    Logits go through ``log_softmax``, the computation of ``F.cross_entropy`` (so the NLL of logits
    is the cross-entropy loss); probabilities are clamped into ``[eps, 1 - eps]`` before the log,
    scikit-learn's ``log_loss`` rule (``eps=None``: the dtype's machine epsilon). ``"auto"`` tells
    them apart as :func:`to_probabilities` does. The result is floored at the dtype's most negative
    finite value, so a zero target weight times it stays 0.

    Example:
        >>> to_log_probabilities(torch.tensor([[0.0, 0.0]]), 2)
        tensor([[-0.6931, -0.6931]])
        >>> to_log_probabilities(torch.tensor([[0.0, 1.0]], dtype=torch.float64), 2)
        tensor([[-3.6044e+01, -2.2204e-16]], dtype=torch.float64)
    """
    flat = _flat_float(preds, num_classes, owner)
    epsilon = torch.finfo(flat.dtype).eps if eps is None else eps
    if input_format == "logits":
        log_probs = flat.log_softmax(dim=1)
    elif input_format == "probs":
        if validate:
            _check_probabilities(flat, owner)
        log_probs = flat.clamp(epsilon, 1 - epsilon).log()
    elif flat.numel() == 0:
        log_probs = flat
    else:
        logits = _looks_like_logits(flat, preds.dtype)
        if isinstance(logits, bool):
            log_probs = flat.log_softmax(dim=1) if logits else flat.clamp(epsilon, 1 - epsilon).log()
        else:
            log_probs = torch.where(logits, flat.log_softmax(dim=1), flat.clamp(epsilon, 1 - epsilon).log())
    return log_probs.clamp(min=torch.finfo(log_probs.dtype).min)


def _target_shape_error(owner: str, target: Tensor, preds_shape: torch.Size) -> ConfigurationError:
    hard_shape = tuple(preds_shape[:1] + preds_shape[2:])
    got = (
        f"SoftLabels whose distribution has shape {tuple(target.soft.shape)}"
        if isinstance(target, SoftLabels)
        else f"dtype {target.dtype} and shape {tuple(target.shape)}"
    )
    return ConfigurationError(
        f"{owner}: `target` must be class indices of shape {hard_shape}, SoftLabels, or a float"
        f" distribution of shape {tuple(preds_shape)}; got {got}."
    )


# hard_targets and soft_targets take one argument list on purpose (see the note at the top).
def hard_targets(
    target: Tensor,
    preds_shape: torch.Size,
    num_classes: int,
    owner: str = "hard_targets",
    validate: bool = True,
) -> Tensor:
    """Class indices, flattened to ``(N',)``: indices as they are, argmax of a distribution.

    Args:
        target: indices ``(N, ...)``, :class:`~lit_noise.SoftLabels` or a ``(N, C, ...)`` distribution.
        preds_shape: shape of the predictions (to check the target against).
        num_classes: number of classes.
        owner: name used in error messages.
        validate: check that indices lie in ``[0, num_classes)`` (a device sync).

    Example:
        >>> hard_targets(torch.tensor([[0.2, 0.8], [0.9, 0.1]]), torch.Size([2, 2]), 2)
        tensor([1, 0])
    """
    if isinstance(target, SoftLabels):
        if target.soft.shape != preds_shape:
            raise _target_shape_error(owner, target, preds_shape)
        indices = target.hard
    elif target.is_floating_point() and target.shape == preds_shape:
        indices = target.argmax(dim=1)
    elif not target.is_floating_point() and target.dtype != torch.bool:
        indices = target
    else:
        raise _target_shape_error(owner, target, preds_shape)
    if indices.shape != preds_shape[:1] + preds_shape[2:]:
        raise _target_shape_error(owner, target, preds_shape)
    indices = indices.reshape(-1).long()
    if validate and indices.numel() and bool(((indices < 0) | (indices >= num_classes)).any()):
        raise ConfigurationError(
            f"{owner}: `target` holds class indices outside [0, {num_classes - 1}]"
            f" (min {int(indices.min())}, max {int(indices.max())}) for `num_classes` {num_classes}."
        )
    return indices


def soft_targets(
    target: Tensor,
    preds_shape: torch.Size,
    num_classes: int,
    owner: str = "soft_targets",
    validate: bool = True,
) -> Tensor:
    """Target distributions, flattened to ``(N', C)``: one-hot for indices, ``.soft`` for SoftLabels.

    Example:
        >>> soft_targets(torch.tensor([1, 0]), torch.Size([2, 3]), 3)
        tensor([[0., 1., 0.],
                [1., 0., 0.]])
    """
    distribution = target.soft if isinstance(target, SoftLabels) else target
    if distribution.is_floating_point():
        if distribution.shape != preds_shape:
            raise _target_shape_error(owner, target, preds_shape)
        return distribution.movedim(1, -1).reshape(-1, num_classes) if distribution.ndim > 2 else distribution
    indices = hard_targets(target, preds_shape, num_classes, owner, validate)
    one_hot = torch.zeros(indices.numel(), num_classes, device=indices.device)
    return one_hot.scatter_(1, indices.unsqueeze(1), 1.0)


def top_label(probs: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """Top-label confidence and correctness (1.0 / 0.0) from ``(N, C)`` probabilities and ``(N,)`` labels.

    Example:
        >>> top_label(torch.tensor([[0.3, 0.7], [0.6, 0.4]]), torch.tensor([1, 1]))
        (tensor([0.7000, 0.6000]), tensor([1., 0.]))
    """
    confidence, predicted = probs.max(dim=1)
    return confidence, predicted.eq(target).to(confidence.dtype)


def _prepare_top_label(
    preds: Tensor, target: Tensor, num_classes: int, input_format: str, owner: str, validate: bool
) -> tuple[Tensor, Tensor]:
    probs = to_probabilities(preds, num_classes, input_format, owner, validate)  # type: ignore[arg-type]
    labels = hard_targets(target, preds.shape, num_classes, owner, validate)
    return top_label(probs, labels.to(probs.device))


# --------------------------------------------------------------------------------------------------
# equal-width bins


def calibration_bins(confidence: Tensor, correct: Tensor, n_bins: int) -> tuple[Tensor, Tensor, Tensor]:
    """Per-bin count, confidence sum and correct sum (float64) over ``n_bins`` equal-width bins of [0, 1].

    Bin ``i`` holds ``edges[i] <= c < edges[i + 1]`` with ``edges = linspace(0, 1, n_bins + 1)`` in the
    confidence's dtype (torchmetrics' boundaries); ``c == 1.0`` goes to the last bin.

    Example:
        >>> count, conf, acc = calibration_bins(torch.tensor([0.1, 0.5, 1.0]), torch.tensor([0.0, 1, 1]), 2)
        >>> count.tolist(), conf.tolist(), acc.tolist()
        ([1.0, 2.0], [0.1..., 1.5], [0.0, 2.0])
    """
    edges = torch.linspace(0, 1, n_bins + 1, dtype=confidence.dtype, device=confidence.device)
    index = (torch.bucketize(confidence, edges, right=True) - 1).clamp_(0, n_bins - 1)
    return _scatter_sums(index, confidence, correct, n_bins)


def _scatter_sums(
    index: Tensor, confidence: Tensor, correct: Tensor, size: int
) -> tuple[Tensor, Tensor, Tensor]:
    sums = torch.zeros(3, size, dtype=torch.float64, device=confidence.device)
    values = torch.stack([torch.ones_like(confidence), confidence, correct.to(confidence.dtype)]).double()
    sums.scatter_add_(1, index.unsqueeze(0).expand(3, -1), values)
    return sums[0], sums[1], sums[2]


def calibration_error_from_bins(
    count: Tensor, conf_sum: Tensor, correct_sum: Tensor, norm: Norm = "l1"
) -> Tensor:
    """ECE (``"l1"``), RMSCE (``"l2"``) or MCE (``"max"``) from per-bin sums; 0 for no data.

    With ``w_b = n_b / N``, ``acc_b`` and ``conf_b`` the bin's mean correctness and confidence:
    ``l1 = sum_b w_b |acc_b - conf_b|``, ``l2 = sqrt(sum_b w_b (acc_b - conf_b)^2)`` (torchmetrics'
    RMSCE), ``max = max_b |acc_b - conf_b|`` over non-empty bins. Returned as float32.

    Example:
        >>> count, conf, acc = torch.tensor([2.0, 2.0]), torch.tensor([0.6, 1.8]), torch.tensor([0.0, 2.0])
        >>> [calibration_error_from_bins(count, conf, acc, norm) for norm in ("l1", "max")]
        [tensor(0.2000), tensor(0.3000)]
    """
    total = count.sum()
    safe = count.clamp(min=1)
    gap = (correct_sum - conf_sum) / safe  # 0 in empty bins
    weight = count / total.clamp(min=1)
    if norm == "l1":
        value = (gap.abs() * weight).sum()
    elif norm == "l2":
        value = (gap.square() * weight).sum().sqrt()
    else:
        value = gap.abs().max() if gap.numel() else gap.new_zeros(())
    return value.float()


# calibration_error, reliability_diagram and adaptive_calibration_error start with the same
# torchmetrics-style arguments on purpose (see the note at the top).
def calibration_error(
    preds: Tensor,
    target: Tensor,
    num_classes: int,
    n_bins: int = 15,
    norm: Norm = "l1",
    input_format: InputFormat = "auto",
    validate_args: bool = True,
) -> Tensor:
    """Top-label calibration error with equal-width bins (ECE / RMSCE / MCE for l1 / l2 / max).

    Equals torchmetrics' ``multiclass_calibration_error`` on the same inputs (see the module doc for
    the one difference, confidences of exactly 1.0).

    Args:
        preds: ``(N, C, ...)`` logits or probabilities.
        target: class indices ``(N, ...)``, :class:`~lit_noise.SoftLabels` or ``(N, C, ...)`` distributions
            (compared by argmax).
        num_classes: number of classes ``C``.
        n_bins: number of equal-width confidence bins (>= 1).
        norm: ``"l1"`` (ECE), ``"l2"`` (RMSCE) or ``"max"`` (MCE).
        input_format: ``"auto"``, ``"logits"`` or ``"probs"``.
        validate_args: check values (target range, probabilities in [0, 1]); shapes are always checked.

    Example:
        >>> preds = torch.tensor(
        ...     [[0.25, 0.20, 0.55], [0.55, 0.05, 0.40], [0.10, 0.30, 0.60], [0.90, 0.05, 0.05]]
        ... )
        >>> target = torch.tensor([0, 1, 2, 0])
        >>> calibration_error(preds, target, num_classes=3, n_bins=3, norm="l1")
        tensor(0.2000)
    """
    owner = "calibration_error"
    check_metric_args(owner, num_classes, n_bins, norm, input_format)
    confidence, correct = _prepare_top_label(preds, target, num_classes, input_format, owner, validate_args)
    return calibration_error_from_bins(*calibration_bins(confidence, correct, n_bins), norm=norm)


def reliability_from_bins(count: Tensor, conf_sum: Tensor, correct_sum: Tensor) -> dict[str, Tensor]:
    """Diagram data: per-bin ``accuracy``, ``confidence`` (NaN for empty bins), ``count``, and ``edges``.

    Example:
        >>> count, conf, acc = torch.tensor([2.0, 0.0]), torch.tensor([0.6, 0.0]), torch.tensor([1.0, 0.0])
        >>> out = reliability_from_bins(count, conf, acc)
        >>> out["accuracy"], out["edges"]
        (tensor([0.5000, nan]), tensor([0.0000, 0.5000, 1.0000]))
    """
    empty = count == 0
    nan = torch.tensor(math.nan, dtype=torch.float64, device=count.device)
    return {
        "accuracy": torch.where(empty, nan, correct_sum / count.clamp(min=1)).float(),
        "confidence": torch.where(empty, nan, conf_sum / count.clamp(min=1)).float(),
        "count": count.float(),
        "edges": torch.linspace(0, 1, count.numel() + 1, device=count.device),
    }


def reliability_diagram(
    preds: Tensor,
    target: Tensor,
    num_classes: int,
    n_bins: int = 15,
    input_format: InputFormat = "auto",
    validate_args: bool = True,
) -> dict[str, Tensor]:
    """Per-bin accuracy, mean confidence and count over equal-width bins (see :func:`reliability_from_bins`).

    Example:
        >>> preds, target = torch.tensor([[0.9, 0.1], [0.2, 0.8]]), torch.tensor([0, 0])
        >>> out = reliability_diagram(preds, target, 2, n_bins=2)
        >>> out["accuracy"], out["confidence"], out["count"]
        (tensor([   nan, 0.5000]), tensor([   nan, 0.8500]), tensor([0., 2.]))
    """
    owner = "reliability_diagram"
    check_metric_args(owner, num_classes, n_bins, None, input_format)
    confidence, correct = _prepare_top_label(preds, target, num_classes, input_format, owner, validate_args)
    return reliability_from_bins(*calibration_bins(confidence, correct, n_bins))


# --------------------------------------------------------------------------------------------------
# equal-mass bins


def adaptive_calibration_bins(
    confidence: Tensor, correct: Tensor, n_fine_bins: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Fine histogram for the adaptive ECE: count, confidence sum, correct sum per fine bin (float64).

    Fine bins are equal-width in ``logit(confidence)`` over ``[-16, 16]`` (:data:`ADAPTIVE_LOGIT_RANGE`),
    so they are narrow where a trained model's confidences crowd (near 1): a confidence of
    ``1 - 1e-4`` is resolved to about ``3.2e-7`` with 10,000 fine bins, one of 0.5 to about ``8e-4``.

    Example:
        >>> conf, correct = torch.tensor([0.5, 0.5, 1.0]), torch.tensor([1.0, 0, 1])
        >>> count, _, _ = adaptive_calibration_bins(conf, correct, 4)
        >>> count.tolist()
        [0.0, 0.0, 2.0, 1.0]
    """
    limit = ADAPTIVE_LOGIT_RANGE
    logit = torch.logit(confidence).nan_to_num_(nan=-limit).clamp_(-limit, limit)
    index = ((logit + limit) * (n_fine_bins / (2 * limit))).long().clamp_(0, n_fine_bins - 1)
    return _scatter_sums(index, confidence, correct, n_fine_bins)


def adaptive_calibration_error_from_bins(
    count: Tensor, conf_sum: Tensor, correct_sum: Tensor, n_bins: int = 15, norm: Norm = "l1"
) -> Tensor:
    """Adaptive (equal-mass) calibration error from a fine histogram (see :func:`adaptive_calibration_bins`).

    Each fine bin goes, whole, to the equal-mass bin ``floor((S + n / 2) * n_bins / N)``, where ``S``
    is the number of samples in lower fine bins and ``n`` its own count: with one sample per fine bin
    this is exactly "sort by confidence and put the sample of rank ``r`` in bin
    ``floor((r + 1/2) * n_bins / N)``". A fine bin of ``k`` samples that straddles a boundary moves
    at most ``k`` samples to a neighbouring bin, which changes the value by at most ``2k / N`` (L1);
    samples of equal confidence (ties) are never split.

    Example:
        >>> count = torch.tensor([1.0, 1.0, 0.0, 2.0])
        >>> conf, acc = torch.tensor([0.3, 0.6, 0.0, 1.8]), torch.tensor([0.0, 1.0, 0.0, 2.0])
        >>> adaptive_calibration_error_from_bins(count, conf, acc, n_bins=2)
        tensor(0.0750)
    """
    total = count.sum()
    below = count.cumsum(0) - count
    coarse = ((below + count / 2) * (n_bins / total.clamp(min=1))).long().clamp_(0, n_bins - 1)
    sums = torch.zeros(3, n_bins, dtype=count.dtype, device=count.device)
    sums.index_add_(1, coarse, torch.stack([count, conf_sum, correct_sum]))
    return calibration_error_from_bins(sums[0], sums[1], sums[2], norm)


def adaptive_calibration_error(
    preds: Tensor,
    target: Tensor,
    num_classes: int,
    n_bins: int = 15,
    norm: Norm = "l1",
    n_fine_bins: int = 10_000,
    input_format: InputFormat = "auto",
    validate_args: bool = True,
) -> Tensor:
    """Top-label calibration error over ``n_bins`` equal-mass bins (adaptive ECE for ``norm="l1"``).

    Computed through the same fixed-size fine histogram as
    :class:`~lit_noise.metrics.AdaptiveCalibrationError` (see
    :func:`adaptive_calibration_error_from_bins` for the exact definition and the approximation).

    Example:
        >>> preds = torch.tensor([[0.7, 0.3], [0.6, 0.4], [0.2, 0.8], [0.1, 0.9]])
        >>> adaptive_calibration_error(preds, torch.tensor([0, 1, 1, 1]), 2, n_bins=2)
        tensor(0.1500)
    """
    owner = "adaptive_calibration_error"
    check_metric_args(owner, num_classes, n_bins, norm, input_format)
    check_int(owner, "n_fine_bins", n_fine_bins, 1)
    confidence, correct = _prepare_top_label(preds, target, num_classes, input_format, owner, validate_args)
    bins = adaptive_calibration_bins(confidence, correct, n_fine_bins)
    return adaptive_calibration_error_from_bins(*bins, n_bins=n_bins, norm=norm)


# --------------------------------------------------------------------------------------------------
# proper scoring rules


def brier_terms(probs: Tensor, target: Tensor) -> Tensor:
    """Per-sample multiclass Brier score ``sum_c (p_c - t_c)^2`` for ``(N, C)`` probabilities and targets.

    Example:
        >>> brier_terms(torch.tensor([[0.8, 0.2]]), torch.tensor([[1.0, 0.0]]))
        tensor([0.0800])
    """
    return (probs - target.to(probs.dtype)).square().sum(dim=1)


def brier_score(
    preds: Tensor,
    target: Tensor,
    num_classes: int,
    input_format: InputFormat = "auto",
    validate_args: bool = True,
) -> Tensor:
    """Multiclass Brier score: mean over samples of ``sum_c (p_c - t_c)^2`` (in [0, 2]; lower is better).

    ``t`` is the one-hot target for class indices, the distribution for soft targets.

    Example:
        >>> brier_score(torch.tensor([[0.8, 0.2], [0.4, 0.6]]), torch.tensor([0, 0]), 2)
        tensor(0.4000)
    """
    owner = "brier_score"
    check_metric_args(owner, num_classes, input_format=input_format)
    probs = to_probabilities(preds, num_classes, input_format, owner, validate_args)
    targets = soft_targets(target, preds.shape, num_classes, owner, validate_args)
    return brier_terms(probs, targets.to(probs.device)).double().mean().float()


def cross_entropy_terms(log_probs: Tensor, target: Tensor) -> Tensor:
    """Per-sample ``-sum_c t_c log p_c`` for ``(N, C)`` log-probabilities and target distributions.

    Example:
        >>> cross_entropy_terms(torch.tensor([[0.0, -2.0]]), torch.tensor([[0.5, 0.5]]))
        tensor([1.])
    """
    return -(target.to(log_probs.dtype) * log_probs).sum(dim=1)


def nll_terms(probs: Tensor, target: Tensor, eps: float | None = None) -> Tensor:
    """Per-sample ``-sum_c t_c log(clamp(p_c, eps, 1 - eps))``; ``eps`` defaults to the dtype's epsilon.

    The clamp is scikit-learn's ``log_loss`` rule, so a zero probability costs ``-log(eps)``, never ``inf``.

    Example:
        >>> nll_terms(torch.tensor([[0.0, 1.0]], dtype=torch.float64), torch.tensor([[1.0, 0.0]]))
        tensor([36.0437], dtype=torch.float64)
    """
    epsilon = torch.finfo(probs.dtype).eps if eps is None else eps
    return cross_entropy_terms(probs.clamp(epsilon, 1 - epsilon).log(), target)


def check_nll_eps(owner: str, eps: float | None, input_format: str) -> float | None:
    """Return ``eps`` as a float in ``(0, 0.5)`` (or ``None``); refused with ``input_format="logits"``.

    ``eps`` clamps probabilities, and logits never are: they go through ``log_softmax``.

    Example:
        >>> check_nll_eps("NLL", 1e-6, "probs"), check_nll_eps("NLL", None, "logits")
        (1e-06, None)
        >>> try:
        ...     check_nll_eps("NLL", 0.5, "probs")
        ... except ConfigurationError as err:
        ...     print(err)
        NLL: `eps` must be > 0 and < 0.5, got 0.5.
    """
    if eps is None:
        return None
    value = check_range(owner, "eps", eps, 0.0, 0.5, low_open=True, high_open=True)
    if input_format == "logits":
        raise fail(
            owner,
            "eps",
            eps,
            "None with input_format='logits' (logits go through log_softmax, exactly as F.cross_entropy;"
            " `eps` clamps probabilities only)",
        )
    return value


def negative_log_likelihood(
    preds: Tensor,
    target: Tensor,
    num_classes: int,
    eps: float | None = None,
    input_format: InputFormat = "auto",
    validate_args: bool = True,
) -> Tensor:
    """Mean negative log-likelihood (cross-entropy with the target distribution), never ``inf``.

    On logits this is ``F.cross_entropy(preds, target)`` (``log_softmax``, no clamp; for soft
    targets the cross-entropy with the distribution). Probabilities are clamped into
    ``[eps, 1 - eps]`` before the log, as scikit-learn's ``log_loss`` does (``eps=None``: the
    machine epsilon of the probabilities' dtype, scikit-learn's ``"auto"``). See
    :func:`to_log_probabilities`.

    Example:
        >>> negative_log_likelihood(torch.tensor([[0.5, 0.5], [0.0, 1.0]]), torch.tensor([0, 0]), 2)
        tensor(8.3178)
        >>> logits, labels = torch.tensor([[2.0, -1.0], [0.5, 1.5]]), torch.tensor([0, 0])
        >>> loss = torch.nn.functional.cross_entropy(logits, labels)
        >>> bool(negative_log_likelihood(logits, labels, 2) == loss)
        True
    """
    owner = "negative_log_likelihood"
    check_metric_args(owner, num_classes, input_format=input_format)
    epsilon = check_nll_eps(owner, eps, input_format)
    log_probs = to_log_probabilities(preds, num_classes, input_format, epsilon, owner, validate_args)
    targets = soft_targets(target, preds.shape, num_classes, owner, validate_args)
    return cross_entropy_terms(log_probs, targets.to(log_probs.device)).double().mean().float()


# --------------------------------------------------------------------------------------------------
# figure


def plot_reliability_diagram(
    diagram: Mapping[str, Tensor], ax: Axes | None = None, title: str | None = None
) -> Figure:
    """Draw a reliability diagram: per-bin accuracy bars against the diagonal, gaps and a count histogram.

    Args:
        diagram: the output of :func:`reliability_diagram` / ``ReliabilityDiagram.compute()``
            (``accuracy``, ``confidence``, ``count``, ``edges``).
        ax: axes to draw into; ``None`` makes a new figure (Agg canvas, no pyplot) with an extra
            panel for the confidence histogram.
        title: axes title; defaults to the ECE of the data.

    Returns:
        The matplotlib figure drawn into.

    Example:
        >>> preds, target = torch.tensor([[0.9, 0.1], [0.2, 0.8]]), torch.tensor([0, 0])
        >>> out = reliability_diagram(preds, target, 2, n_bins=5)
        >>> fig = plot_reliability_diagram(out)
        >>> len(fig.axes)
        2
    """
    import numpy as np

    edges = diagram["edges"].detach().double().cpu().numpy()
    accuracy = diagram["accuracy"].detach().double().cpu().numpy()
    confidence = diagram["confidence"].detach().double().cpu().numpy()
    count = diagram["count"].detach().double().cpu().numpy()
    total = max(count.sum(), 1.0)
    filled = count > 0
    ece = float(np.sum(np.abs(accuracy[filled] - confidence[filled]) * count[filled]) / total)
    widths = np.diff(edges)
    lefts = edges[:-1]

    if ax is None:
        from lit_noise.reporting import new_figure

        figure = new_figure(4.5, 5.5)
        grid = figure.add_gridspec(2, 1, height_ratios=(3, 1))
        ax = figure.add_subplot(grid[0])
        hist_ax: Axes | None = figure.add_subplot(grid[1], sharex=ax)
    else:
        figure = ax.get_figure()  # type: ignore[assignment]
        hist_ax = None
    ax.bar(
        lefts[filled],
        accuracy[filled],
        widths[filled],
        align="edge",
        color="tab:blue",
        edgecolor="black",
        linewidth=0.5,
        label="accuracy",
    )
    gap_low = np.minimum(accuracy[filled], confidence[filled])
    ax.bar(
        lefts[filled],
        np.abs(confidence[filled] - accuracy[filled]),
        widths[filled],
        bottom=gap_low,
        align="edge",
        color="tab:red",
        alpha=0.35,
        edgecolor="tab:red",
        hatch="//",
        linewidth=0.5,
        label="gap",
    )
    ax.plot([0, 1], [0, 1], linestyle="--", color="gray", linewidth=1, label="perfect calibration")
    ax.set(
        xlim=(0, 1), ylim=(0, 1), ylabel="accuracy", title=title if title is not None else f"ECE = {ece:.4f}"
    )
    ax.legend(loc="upper left", fontsize="small")
    if hist_ax is not None:
        hist_ax.bar(
            lefts, count / total, widths, align="edge", color="gray", edgecolor="black", linewidth=0.5
        )
        hist_ax.set(xlabel="confidence", ylabel="fraction")
        figure.align_ylabels([ax, hist_ax])
    else:
        ax.set_xlabel("confidence")
    return figure
