"""lit_noise: make any PyTorch Lightning model noise-robust without changing its code.

What noise (:mod:`lit_noise.noise`), when and how much (:mod:`lit_noise.schedules`), where
(:mod:`lit_noise.callbacks`, :mod:`lit_noise.layers`): pure tensor maths lives in
:mod:`lit_noise.functional`.
"""

import importlib
from importlib import metadata as _metadata
from typing import TYPE_CHECKING, Any

from lit_noise._host_random import HostRandom
from lit_noise.corruptions import corrupt
from lit_noise.errors import ConfigurationError
from lit_noise.layers import GaussianDropout, GaussianNoise
from lit_noise.noise import (
    SNR,
    Gaussian,
    LabelSmoothing,
    Laplace,
    Mask,
    NEFTune,
    Noise,
    PairFlip,
    SaltAndPepper,
    Speckle,
    SymmetricFlip,
    TokenDrop,
    TokenMask,
    TokenSubstitute,
    TransitionMatrix,
    Uniform,
)
from lit_noise.schedules import (
    AnnealedStd,
    Clock,
    Constant,
    Cosine,
    Cyclic,
    Delay,
    Exponential,
    Interval,
    InverseTime,
    Linear,
    Piecewise,
    Product,
    Schedule,
    Step,
)
from lit_noise.soft_labels import SoftLabels, hard, soft

# Lightning and torchmetrics load on first use (PEP 562): `import lit_noise.functional`, `.noise`,
# `.schedules` and the other pure-tensor modules import neither. A public name not imported above
# comes from the first of these modules that exports it, cheapest first (the callbacks import the
# metrics anyway), the first time it is read.
_LAZY_MODULES = ("lit_noise.metrics", "lit_noise.callbacks", "lit_noise.data")

if TYPE_CHECKING:  # the lazily loaded names, for type checkers and readers
    from lit_noise.callbacks import (
        ActivationNoise,
        CalibrationMonitor,
        GradientNoise,
        InputNoise,
        NoiseCallback,
        NoiseController,
        NoiseLayerSchedule,
        RobustnessMonitor,
        TargetNoise,
        TemperatureScaling,
        WeightNoise,
    )
    from lit_noise.data import MixupDataModule
    from lit_noise.metrics import (
        AdaptiveCalibrationError,
        BrierScore,
        CalibrationError,
        NegativeLogLikelihood,
        ReliabilityDiagram,
    )


def __getattr__(name: str) -> Any:
    """Load a public name of ``_LAZY_MODULES`` on first use; later reads find it in the module."""
    if name in __all__:
        for module_name in _LAZY_MODULES:
            module = importlib.import_module(module_name)
            if name in module.__all__:
                value = getattr(module, name)
                globals()[name] = value
                return value
    raise AttributeError(f"module 'lit_noise' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


try:
    __version__ = _metadata.version("lit-noise")
except _metadata.PackageNotFoundError:  # a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "SNR",
    "ActivationNoise",
    "AdaptiveCalibrationError",
    "AnnealedStd",
    "BrierScore",
    "CalibrationError",
    "CalibrationMonitor",
    "Clock",
    "ConfigurationError",
    "Constant",
    "Cosine",
    "Cyclic",
    "Delay",
    "Exponential",
    "Gaussian",
    "GaussianDropout",
    "GaussianNoise",
    "GradientNoise",
    "HostRandom",
    "InputNoise",
    "Interval",
    "InverseTime",
    "LabelSmoothing",
    "Laplace",
    "Linear",
    "Mask",
    "MixupDataModule",
    "NEFTune",
    "NegativeLogLikelihood",
    "Noise",
    "NoiseCallback",
    "NoiseController",
    "NoiseLayerSchedule",
    "PairFlip",
    "Piecewise",
    "Product",
    "ReliabilityDiagram",
    "RobustnessMonitor",
    "SaltAndPepper",
    "Schedule",
    "SoftLabels",
    "Speckle",
    "Step",
    "SymmetricFlip",
    "TargetNoise",
    "TemperatureScaling",
    "TokenDrop",
    "TokenMask",
    "TokenSubstitute",
    "TransitionMatrix",
    "Uniform",
    "WeightNoise",
    "__version__",
    "corrupt",
    "hard",
    "soft",
]
