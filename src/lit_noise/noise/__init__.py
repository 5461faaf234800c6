"""What noise: distributions for inputs, token ids and targets, each parameter a number or a schedule."""

from lit_noise.noise.base import Noise
from lit_noise.noise.input import SNR, Gaussian, Laplace, Mask, SaltAndPepper, Speckle, Uniform
from lit_noise.noise.neftune import NEFTune
from lit_noise.noise.target import (
    LabelNoise,
    LabelSmoothing,
    PairFlip,
    SymmetricFlip,
    TargetFormat,
    TransitionMatrix,
)
from lit_noise.noise.token import TokenDrop, TokenMask, TokenNoise, TokenSubstitute

__all__ = [
    "SNR",
    "Gaussian",
    "LabelNoise",
    "LabelSmoothing",
    "Laplace",
    "Mask",
    "NEFTune",
    "Noise",
    "PairFlip",
    "SaltAndPepper",
    "Speckle",
    "SymmetricFlip",
    "TargetFormat",
    "TokenDrop",
    "TokenMask",
    "TokenNoise",
    "TokenSubstitute",
    "TransitionMatrix",
    "Uniform",
]
