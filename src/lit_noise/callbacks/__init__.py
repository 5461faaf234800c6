"""Where noise goes: Lightning callbacks that inject noise while fitting."""

from lit_noise.callbacks.base import NoiseCallback, training_clock
from lit_noise.callbacks.batch_noise import BatchNoise
from lit_noise.callbacks.input_noise import InputNoise
from lit_noise.callbacks.layer_schedule import NoiseLayerSchedule
from lit_noise.callbacks.target_noise import TargetNoise

__all__ = [
    "BatchNoise",
    "InputNoise",
    "NoiseCallback",
    "NoiseLayerSchedule",
    "TargetNoise",
    "training_clock",
]
