"""Where noise goes: Lightning callbacks that inject noise while fitting."""

from lit_noise.callbacks.activation_noise import ActivationNoise
from lit_noise.callbacks.base import NoiseCallback, training_clock
from lit_noise.callbacks.batch_noise import BatchNoise
from lit_noise.callbacks.calibration_monitor import CalibrationMonitor
from lit_noise.callbacks.gradient_noise import GradientNoise
from lit_noise.callbacks.input_noise import InputNoise
from lit_noise.callbacks.layer_schedule import NoiseLayerSchedule
from lit_noise.callbacks.noise_controller import NoiseController
from lit_noise.callbacks.robustness_monitor import RobustnessMonitor
from lit_noise.callbacks.target_noise import TargetNoise
from lit_noise.callbacks.temperature_scaling import TemperatureScaling
from lit_noise.callbacks.weight_noise import WeightNoise

__all__ = [
    "ActivationNoise",
    "BatchNoise",
    "CalibrationMonitor",
    "GradientNoise",
    "InputNoise",
    "NoiseCallback",
    "NoiseController",
    "NoiseLayerSchedule",
    "RobustnessMonitor",
    "TargetNoise",
    "TemperatureScaling",
    "WeightNoise",
    "training_clock",
]
