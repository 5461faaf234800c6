"""Example data and model: what the tests, the benchmarks and the demo train.

:class:`DigitsDataModule` (and so the ``lit-noise-demo`` command) needs scikit-learn, installed by
``pip install "lit-noise[examples]"``; the rest needs nothing beyond the core.
"""

from lit_noise.examples.classifier import Classifier, build_backbone
from lit_noise.examples.digits import DigitsDataModule
from lit_noise.examples.shapes import SHAPES, ShapesDataModule, make_shapes
from lit_noise.examples.tensor_data import EpochShuffleSampler, TensorSplitDataModule
from lit_noise.examples.tokens import MASK_ID, PAD_ID, TokenClassifier, TokenDataModule, make_token_sequences

__all__ = [
    "MASK_ID",
    "PAD_ID",
    "SHAPES",
    "Classifier",
    "DigitsDataModule",
    "EpochShuffleSampler",
    "ShapesDataModule",
    "TensorSplitDataModule",
    "TokenClassifier",
    "TokenDataModule",
    "build_backbone",
    "make_shapes",
    "make_token_sequences",
]
