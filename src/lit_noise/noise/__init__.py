"""What noise: distributions for inputs and targets, each parameter a number or a schedule."""

from lit_noise.noise.base import Noise
from lit_noise.noise.input import SNR, Gaussian, Laplace, Mask, SaltAndPepper, Speckle, Uniform
from lit_noise.noise.target import (
    LabelNoise,
    LabelSmoothing,
    PairFlip,
    SymmetricFlip,
    TargetFormat,
    TransitionMatrix,
)

__all__ = [
    "SNR",
    "Gaussian",
    "LabelNoise",
    "LabelSmoothing",
    "Laplace",
    "Mask",
    "Noise",
    "PairFlip",
    "SaltAndPepper",
    "Speckle",
    "SymmetricFlip",
    "TargetFormat",
    "TransitionMatrix",
    "Uniform",
]
