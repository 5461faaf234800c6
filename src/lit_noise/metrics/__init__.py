"""Calibration metrics (torchmetrics ``Metric`` objects with fixed-size state) and their functional forms.

No Lightning import: usable in any PyTorch loop. Classes keep per-bin sums (or two scalars) reduced
by sum across processes, so memory does not grow with the number of predictions.

Example:
    >>> import torch
    >>> from lit_noise.metrics import CalibrationError
    >>> ece = CalibrationError(num_classes=3, n_bins=10)
    >>> ece.update(torch.tensor([[2.0, 0.5, 0.1], [0.2, 0.1, 3.0]]), torch.tensor([0, 1]))
    >>> round(ece.compute().item(), 4)
    0.5838
"""

from lit_noise.metrics import calibration
from lit_noise.metrics.calibration import AdaptiveCalibrationError as AdaptiveCalibrationError
from lit_noise.metrics.calibration import BrierScore as BrierScore
from lit_noise.metrics.calibration import CalibrationError as CalibrationError
from lit_noise.metrics.calibration import NegativeLogLikelihood as NegativeLogLikelihood
from lit_noise.metrics.calibration import ReliabilityDiagram as ReliabilityDiagram
from lit_noise.metrics.functional import (
    adaptive_calibration_error,
    brier_score,
    calibration_error,
    negative_log_likelihood,
    plot_reliability_diagram,
    reliability_diagram,
)
from lit_noise.metrics.temperature import fit_temperature

__all__ = [
    "adaptive_calibration_error",
    "brier_score",
    "calibration_error",
    "fit_temperature",
    "negative_log_likelihood",
    "plot_reliability_diagram",
    "reliability_diagram",
]
__all__ += calibration.__all__  # the metric classes
