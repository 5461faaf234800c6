"""Example data and model: what the tests, the benchmarks and the demo train."""

from lit_noise.examples.classifier import Classifier, build_backbone
from lit_noise.examples.digits import DigitsDataModule, EpochShuffleSampler

__all__ = ["Classifier", "DigitsDataModule", "EpochShuffleSampler", "build_backbone"]
