"""lit_noise: make any PyTorch Lightning model noise-robust without changing its code.

What noise (:mod:`lit_noise.noise`), when and how much (:mod:`lit_noise.schedules`), where
(:mod:`lit_noise.callbacks`, :mod:`lit_noise.layers`): pure tensor maths lives in
:mod:`lit_noise.functional`.
"""

import importlib
import importlib.util
from importlib import metadata as _metadata
from typing import TYPE_CHECKING, Any

# Every public name loads on first use (PEP 562), so `import lit_noise` imports neither torch nor
# Lightning: `lit-noise-train --help` and `--cfg job` answer without them, and the pure-tensor
# modules (`lit_noise.functional`, `.noise`, `.schedules` ...) import torch alone. A name comes from
# the first of these modules that exports it, cheapest first (each later one imports the earlier
# ones anyway), the first time it is read; a submodule (`lit_noise.metrics`) the first time it is.
_LAZY_MODULES = (
    "lit_noise.errors",
    "lit_noise.soft_labels",
    "lit_noise._host_random",
    "lit_noise.schedules",
    "lit_noise.noise",
    "lit_noise.layers",
    "lit_noise.corruptions",
    "lit_noise.metrics",
    "lit_noise.callbacks",
    "lit_noise.data",
)

if TYPE_CHECKING:  # the names, for type checkers and readers; loaded on first use at run time
    from lit_noise._host_random import HostRandom
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
    from lit_noise.corruptions import corrupt
    from lit_noise.data import MixupDataModule
    from lit_noise.errors import ConfigurationError
    from lit_noise.layers import GaussianDropout, GaussianNoise
    from lit_noise.metrics import (
        AdaptiveCalibrationError,
        BrierScore,
        CalibrationError,
        NegativeLogLikelihood,
        ReliabilityDiagram,
    )
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


def __getattr__(name: str) -> Any:
    """Load a public name or a submodule on first use; later reads find it in the module."""
    value: Any
    if name in __all__:
        for module_name in _LAZY_MODULES:
            module = importlib.import_module(module_name)
            if name in module.__all__:
                value = globals()[name] = getattr(module, name)
                return value
    if name.isidentifier() and not name.startswith("__"):
        try:
            if importlib.util.find_spec(f"{__name__}.{name}") is not None:
                value = importlib.import_module(f"{__name__}.{name}")  # the import binds it here too
                return value
        except ImportError as err:  # `hasattr` stays False; the cause is chained
            raise AttributeError(
                f"module 'lit_noise' has no attribute {name!r}: importing lit_noise.{name} failed ({err})"
            ) from err
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
