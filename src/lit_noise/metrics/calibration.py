"""Calibration metrics as torchmetrics ``Metric`` objects with fixed-size, sum-reduced state.

Memory does not grow with the number of predictions: the binned metrics keep three float64 vectors
(per-bin count, confidence sum, correct sum), the scoring rules two float64 scalars. All states are
reduced by sum across processes (``dist_reduce_fx="sum"``), so a synced value equals the value on
the union of every rank's data. See :mod:`lit_noise.metrics.functional` for how logits and
probabilities are told apart and how targets are read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor
from torchmetrics import Metric
from typing_extensions import override

from lit_noise._optional import require
from lit_noise._validation import check_int
from lit_noise.metrics.functional import (
    InputFormat,
    Norm,
    adaptive_calibration_bins,
    adaptive_calibration_error_from_bins,
    brier_terms,
    calibration_bins,
    calibration_error_from_bins,
    check_metric_args,
    check_nll_eps,
    cross_entropy_terms,
    hard_targets,
    plot_reliability_diagram,
    reliability_from_bins,
    soft_targets,
    to_log_probabilities,
    to_probabilities,
    top_label,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "AdaptiveCalibrationError",
    "BrierScore",
    "CalibrationError",
    "NegativeLogLikelihood",
    "ReliabilityDiagram",
]


class _ProbabilityMetric(Metric):
    """Shared argument handling: ``num_classes``, ``input_format``, ``validate_args``."""

    is_differentiable: bool = False
    higher_is_better: bool = False
    full_state_update: bool = False
    plot_lower_bound: float = 0.0

    def __init__(
        self,
        num_classes: int,
        n_bins: int | None = None,
        norm: str | None = None,
        input_format: InputFormat = "auto",
        validate_args: bool = True,
        **kwargs: Any,
    ) -> None:
        check_metric_args(type(self).__name__, num_classes, n_bins, norm, input_format)
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.input_format: InputFormat = input_format
        self.validate_args = bool(validate_args)

    def _probs(self, preds: Tensor) -> Tensor:
        return to_probabilities(
            preds, self.num_classes, self.input_format, type(self).__name__, self.validate_args
        )

    def _top_label(self, preds: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        probs = self._probs(preds)
        labels = hard_targets(target, preds.shape, self.num_classes, type(self).__name__, self.validate_args)
        return top_label(probs, labels.to(probs.device))


class _Histogram(_ProbabilityMetric):
    """Top-label histogram state: ``count``, ``conf_sum``, ``correct_sum`` per bin, float64, summed."""

    count: Tensor
    conf_sum: Tensor
    correct_sum: Tensor

    def _add_bin_states(self, size: int) -> None:
        for name in ("count", "conf_sum", "correct_sum"):
            self.add_state(name, torch.zeros(size, dtype=torch.float64), dist_reduce_fx="sum")

    def _bins(self, confidence: Tensor, correct: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        raise NotImplementedError

    def update(self, preds: Tensor, target: Tensor) -> None:
        """Add a batch of ``(N, C, ...)`` logits or probabilities and their targets."""
        count, conf_sum, correct_sum = self._bins(*self._top_label(preds, target))
        self.count += count.to(self.count.device)
        self.conf_sum += conf_sum.to(self.count.device)
        self.correct_sum += correct_sum.to(self.count.device)


class _BinnedCalibration(_Histogram):
    """Equal-width bins: ``count``, ``conf_sum``, ``correct_sum`` of shape ``(n_bins,)``."""

    def __init__(
        self,
        num_classes: int,
        n_bins: int = 15,
        norm: str | None = None,
        input_format: InputFormat = "auto",
        validate_args: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(num_classes, n_bins, norm, input_format, validate_args, **kwargs)
        self.n_bins = n_bins
        self._add_bin_states(n_bins)

    @override
    def _bins(self, confidence: Tensor, correct: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return calibration_bins(confidence, correct, self.n_bins)


class CalibrationError(_BinnedCalibration):
    """Top-label calibration error over equal-width bins: ECE (l1), RMSCE (l2) or MCE (max).

    Values equal torchmetrics' ``MulticlassCalibrationError`` on the same inputs, but the state is
    three ``(n_bins,)`` float64 vectors instead of every prediction. A confidence of exactly 1.0
    lands in the last bin (torchmetrics keeps an extra bin for it; see
    :mod:`lit_noise.metrics.functional`).

    Args:
        num_classes: number of classes ``C`` (the model output's width in dim 1).
        n_bins: number of equal-width confidence bins over [0, 1] (>= 1).
        norm: ``"l1"`` (ECE: ``sum_b w_b |acc_b - conf_b|``), ``"l2"`` (RMSCE:
            ``sqrt(sum_b w_b (acc_b - conf_b)^2)``) or ``"max"`` (MCE: ``max_b |acc_b - conf_b|``),
            with ``w_b`` the fraction of predictions in bin ``b``.
        input_format: ``"auto"`` (softmax when a batch has values outside [0, 1] or rows that do not
            sum to 1), ``"logits"`` or ``"probs"``.
        validate_args: check target indices and probability ranges on every update (a device sync).
        kwargs: passed to ``torchmetrics.Metric`` (``sync_on_compute``, ``dist_sync_fn`` ...).

    Raises:
        ConfigurationError: ``num_classes < 2``, ``n_bins < 1``, unknown ``norm`` or ``input_format``;
            at update, a prediction width other than ``num_classes`` or a malformed target.

    Example:
        >>> metric = CalibrationError(num_classes=3, n_bins=3)
        >>> preds = torch.tensor(
        ...     [[0.25, 0.20, 0.55], [0.55, 0.05, 0.40], [0.10, 0.30, 0.60], [0.90, 0.05, 0.05]]
        ... )
        >>> metric.update(preds, torch.tensor([0, 1, 2, 0]))
        >>> metric.compute()
        tensor(0.2000)
    """

    def __init__(
        self,
        num_classes: int,
        n_bins: int = 15,
        norm: Norm = "l1",
        input_format: InputFormat = "auto",
        validate_args: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(num_classes, n_bins, norm, input_format, validate_args, **kwargs)
        self.norm: Norm = norm

    def compute(self) -> Tensor:
        """The calibration error of everything seen since the last reset (0 before any data)."""
        return calibration_error_from_bins(self.count, self.conf_sum, self.correct_sum, self.norm)


class ReliabilityDiagram(_BinnedCalibration):
    """Per-bin accuracy, mean confidence and count over equal-width bins, and their figure.

    ``compute()`` returns a dict of tensors: ``accuracy`` and ``confidence`` (``(n_bins,)``, NaN for
    empty bins), ``count`` and ``edges`` (``(n_bins + 1,)``). :meth:`plot` draws it.

    Args:
        num_classes: number of classes ``C``.
        n_bins: number of equal-width confidence bins (>= 1).
        input_format: ``"auto"``, ``"logits"`` or ``"probs"`` (as :class:`CalibrationError`).
        validate_args: check values on every update.
        kwargs: passed to ``torchmetrics.Metric``.

    Example:
        >>> diagram = ReliabilityDiagram(num_classes=2, n_bins=2)
        >>> diagram.update(torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7]]), torch.tensor([0, 0, 1]))
        >>> out = diagram.compute()
        >>> out["accuracy"], out["count"]
        (tensor([   nan, 0.6667]), tensor([0., 3.]))
        >>> fig = diagram.plot()
    """

    def __init__(
        self,
        num_classes: int,
        n_bins: int = 15,
        input_format: InputFormat = "auto",
        validate_args: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(num_classes, n_bins, None, input_format, validate_args, **kwargs)

    def compute(self) -> dict[str, Tensor]:
        """``accuracy``, ``confidence``, ``count`` per bin and the bin ``edges``."""
        return reliability_from_bins(self.count, self.conf_sum, self.correct_sum)

    def calibration_error(self, norm: Norm = "l1") -> Tensor:
        """ECE / RMSCE / MCE of the current (local, unsynced) state, from the same bins."""
        return calibration_error_from_bins(self.count, self.conf_sum, self.correct_sum, norm)

    def plot(
        self, val: dict[str, Tensor] | None = None, ax: Axes | None = None, title: str | None = None
    ) -> Figure:
        """Draw the diagram of ``val`` (default: :meth:`compute`) and return the matplotlib figure.

        Needs matplotlib (``pip install "lit-noise[plots]"``); the metric itself does not.
        """
        require("matplotlib", "ReliabilityDiagram.plot")
        return plot_reliability_diagram(self.compute() if val is None else val, ax=ax, title=title)


class AdaptiveCalibrationError(_Histogram):
    """Top-label calibration error over equal-mass bins (adaptive ECE), with fixed-size state.

    Equal-mass bins need confidence quantiles; instead of storing predictions, the state is a fine
    histogram (count, confidence sum, correct sum in ``n_fine_bins`` bins equal-width in
    ``logit(confidence)`` over [-16, 16], so dense near confidence 1). At ``compute`` each fine bin is
    given, whole, to the equal-mass bin of its middle rank. With one prediction per fine bin this
    equals the exact definition: sort by confidence, the prediction of rank ``r`` of ``N`` goes to bin
    ``floor((r + 1/2) * n_bins / N)``; a fine bin holding ``k`` predictions across a boundary shifts
    the L1 value by at most ``2k / N``, and tied confidences are never split.

    Args:
        num_classes: number of classes ``C``.
        n_bins: number of equal-mass bins (>= 1).
        norm: ``"l1"`` (adaptive ECE), ``"l2"`` or ``"max"``, as :class:`CalibrationError`.
        n_fine_bins: fine histogram size (state is ``3 * n_fine_bins`` float64 values).
        input_format: ``"auto"``, ``"logits"`` or ``"probs"``.
        validate_args: check values on every update.
        kwargs: passed to ``torchmetrics.Metric``.

    Example:
        >>> metric = AdaptiveCalibrationError(num_classes=2, n_bins=2)
        >>> preds = torch.tensor([[0.7, 0.3], [0.6, 0.4], [0.2, 0.8], [0.1, 0.9]])
        >>> metric.update(preds, torch.tensor([0, 1, 1, 1]))
        >>> metric.compute()
        tensor(0.1500)
    """

    # The settings of adaptive_calibration_error, on purpose (see the note in functional.py).
    def __init__(
        self,
        num_classes: int,
        n_bins: int = 15,
        norm: Norm = "l1",
        n_fine_bins: int = 10_000,
        input_format: InputFormat = "auto",
        validate_args: bool = True,
        **kwargs: Any,
    ) -> None:
        check_int(type(self).__name__, "n_fine_bins", n_fine_bins, 1)
        super().__init__(num_classes, n_bins, norm, input_format, validate_args, **kwargs)
        self.n_bins = n_bins
        self.norm: Norm = norm
        self.n_fine_bins = n_fine_bins
        self._add_bin_states(n_fine_bins)

    @override
    def _bins(self, confidence: Tensor, correct: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return adaptive_calibration_bins(confidence, correct, self.n_fine_bins)

    def compute(self) -> Tensor:
        """The equal-mass calibration error of everything seen since the last reset (0 before any data)."""
        return adaptive_calibration_error_from_bins(
            self.count, self.conf_sum, self.correct_sum, n_bins=self.n_bins, norm=self.norm
        )


class _MeanScore(_ProbabilityMetric):
    """Mean of a per-sample score: ``total`` (float64 sum) and ``samples`` (float64 count)."""

    total: Tensor
    samples: Tensor

    def __init__(
        self, num_classes: int, input_format: InputFormat = "auto", validate_args: bool = True, **kwargs: Any
    ) -> None:
        super().__init__(num_classes, None, None, input_format, validate_args, **kwargs)
        self.add_state("total", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("samples", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def _scores(self, preds: Tensor) -> Tensor:
        """The ``(N', C)`` values the per-sample score reads: probabilities by default."""
        return self._probs(preds)

    def _terms(self, scores: Tensor, target: Tensor) -> Tensor:
        raise NotImplementedError

    def update(self, preds: Tensor, target: Tensor) -> None:
        """Add a batch of ``(N, C, ...)`` logits or probabilities and their (hard or soft) targets."""
        scores = self._scores(preds)
        targets = soft_targets(target, preds.shape, self.num_classes, type(self).__name__, self.validate_args)
        terms = self._terms(scores, targets.to(scores.device))
        self.total += terms.sum(dtype=torch.float64).to(self.total.device)
        self.samples += terms.numel()

    def compute(self) -> Tensor:
        """The mean score since the last reset (0 before any data), as float32."""
        return (self.total / self.samples.clamp(min=1)).float()


class BrierScore(_MeanScore):
    """Multiclass Brier score: mean over samples of ``sum_c (p_c - t_c)^2`` (0 best, 2 worst).

    ``t`` is the one-hot target for class indices and the distribution for soft targets
    (:class:`~lit_noise.SoftLabels` or ``(N, C)`` floats).

    Args:
        num_classes: number of classes ``C``.
        input_format: ``"auto"``, ``"logits"`` or ``"probs"`` (as :class:`CalibrationError`).
        validate_args: check values on every update.
        kwargs: passed to ``torchmetrics.Metric``.

    Example:
        >>> metric = BrierScore(num_classes=2)
        >>> metric.update(torch.tensor([[0.8, 0.2], [0.4, 0.6]]), torch.tensor([0, 0]))
        >>> metric.compute()
        tensor(0.4000)
    """

    @override
    def _terms(self, scores: Tensor, target: Tensor) -> Tensor:
        return brier_terms(scores, target)


class NegativeLogLikelihood(_MeanScore):
    """Mean negative log-likelihood of the targets (cross-entropy for soft targets), never ``inf``.

    On logits this is ``F.cross_entropy``: the mean of ``-log_softmax`` at the target (against the
    distribution for soft targets), with no clamp. Probabilities are clamped into ``[eps, 1 - eps]``
    before the log, as scikit-learn's ``log_loss`` does, so a zero probability on the true class
    costs ``-log(eps)``.

    Args:
        num_classes: number of classes ``C``.
        eps: clamp of probability inputs, in (0, 0.5); ``None`` (default) uses the machine epsilon
            of the probabilities' dtype (scikit-learn's ``"auto"``: ``-log(eps)`` is 15.9 for
            float32, 36.0 for float64). Refused with ``input_format="logits"``, where it cannot apply.
        input_format: ``"auto"``, ``"logits"`` or ``"probs"`` (as :class:`CalibrationError`).
        validate_args: check values on every update.
        kwargs: passed to ``torchmetrics.Metric``.

    Raises:
        ConfigurationError: ``eps`` outside (0, 0.5) or given with ``input_format="logits"``, and the
            checks of :class:`CalibrationError`.

    Example:
        >>> metric = NegativeLogLikelihood(num_classes=2)
        >>> metric.update(torch.tensor([[0.5, 0.5], [0.25, 0.75]]), torch.tensor([0, 1]))
        >>> metric.compute()
        tensor(0.4904)
    """

    def __init__(
        self,
        num_classes: int,
        eps: float | None = None,
        input_format: InputFormat = "auto",
        validate_args: bool = True,
        **kwargs: Any,
    ) -> None:
        self.eps = check_nll_eps(type(self).__name__, eps, input_format)
        super().__init__(num_classes, input_format, validate_args, **kwargs)

    @override
    def _scores(self, preds: Tensor) -> Tensor:
        return to_log_probabilities(
            preds, self.num_classes, self.input_format, self.eps, type(self).__name__, self.validate_args
        )

    @override
    def _terms(self, scores: Tensor, target: Tensor) -> Tensor:
        return cross_entropy_terms(scores, target)
