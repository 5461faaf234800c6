"""Example data and model: what the tests, the benchmarks and the demo train."""

from lit_noise.examples.classifier import Classifier, build_backbone
from lit_noise.examples.digits import DigitsDataModule, EpochShuffleSampler
from lit_noise.examples.shapes import SHAPES, ShapesDataModule, make_shapes

__all__ = [
    "SHAPES",
    "Classifier",
    "DigitsDataModule",
    "EpochShuffleSampler",
    "ShapesDataModule",
    "build_backbone",
    "make_shapes",
]
