"""ShapesDataModule: procedurally generated 32x32 RGB shapes on textured backgrounds (no download).

Images are at the scale the CIFAR-10-C constants were made for, so the corruption suite
(:mod:`lit_noise.corruptions`) and the :class:`~lit_noise.callbacks.RobustnessMonitor` can be
tested and demonstrated without any data set on disk.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor
from torch.utils.data import TensorDataset
from typing_extensions import override

from lit_noise._rng import mix_seed
from lit_noise._validation import check_int, check_seed
from lit_noise.examples.tensor_data import TensorSplitDataModule

__all__ = ["SHAPES", "ShapesDataModule", "make_shapes"]

#: The class names, in label order.
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond", "cross", "ring")

_SIZE = 32
_SQRT_HALF = math.sqrt(0.5)
_SIN60 = math.sqrt(3.0) / 2.0


def _circle(dx: Tensor, dy: Tensor, r: Tensor) -> Tensor:
    return torch.hypot(dx, dy) - r


def _square(dx: Tensor, dy: Tensor, r: Tensor) -> Tensor:
    return torch.maximum(dx.abs(), dy.abs()) - 0.8 * r


def _triangle(dx: Tensor, dy: Tensor, r: Tensor) -> Tensor:
    # Upright equilateral triangle of circumradius 1.1 r (image rows grow downwards).
    edges = torch.stack((dy, _SIN60 * dx - 0.5 * dy, -_SIN60 * dx - 0.5 * dy))
    return edges.amax(0) - 0.55 * r


def _diamond(dx: Tensor, dy: Tensor, r: Tensor) -> Tensor:
    return (dx.abs() + dy.abs() - 1.1 * r) * _SQRT_HALF


def _cross(dx: Tensor, dy: Tensor, r: Tensor) -> Tensor:
    ax, ay, arm = dx.abs(), dy.abs(), 0.3 * r
    return torch.minimum(torch.maximum(ax - r, ay - arm), torch.maximum(ax - arm, ay - r))


def _ring(dx: Tensor, dy: Tensor, r: Tensor) -> Tensor:
    return (torch.hypot(dx, dy) - 0.7 * r).abs() - 0.3 * r


_SDF: tuple[Callable[[Tensor, Tensor, Tensor], Tensor], ...] = (
    _circle,
    _square,
    _triangle,
    _diamond,
    _cross,
    _ring,
)


def make_shapes(num_samples: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """``num_samples`` images ``(N, 3, 32, 32)`` in [0, 1] and their int64 labels (index in :data:`SHAPES`).

    Each image is one shape of random size (radius 6 to 12 pixels), position (fully inside the
    image) and colour, anti-aliased, on a background of a random colour with sinusoidal stripes of
    random frequency, orientation, phase, amplitude and tint, plus a little pixel noise. Every
    channel of the background is drawn from [0, 0.45] and of the shape from [0.55, 1], so the shape
    is brighter than its background in every channel (what makes the data learnable in a few
    epochs by the small example CNN, whose receptive field sees only edges). The classes are
    balanced (``N // 6`` or one more each) in random order. Everything is drawn in one vectorised
    pass from a CPU generator seeded with ``seed``: the same seed gives the same images on every
    machine.

    Example:
        >>> x, y = make_shapes(12, seed=0)
        >>> tuple(x.shape), x.dtype, bool(0 <= x.min() and x.max() <= 1), sorted(y.bincount().tolist())
        ((12, 3, 32, 32), torch.float32, True, [2, 2, 2, 2, 2, 2])
        >>> bool((make_shapes(12, seed=0)[0] == x).all())
        True
    """
    n = check_int("make_shapes", "num_samples", num_samples, 1)
    generator = torch.Generator().manual_seed(check_seed("make_shapes", "seed", seed))

    def uniform(low: float, high: float, *shape: int) -> Tensor:
        return torch.rand(n, *shape, generator=generator) * (high - low) + low

    labels = (torch.arange(n) % len(SHAPES))[torch.randperm(n, generator=generator)]
    radius = uniform(6.0, 12.0)
    centre_x = radius + 0.5 + torch.rand(n, generator=generator) * (_SIZE - 1 - 2 * radius)
    centre_y = radius + 0.5 + torch.rand(n, generator=generator) * (_SIZE - 1 - 2 * radius)
    background = uniform(0.0, 0.45, 3, 1, 1)
    foreground = uniform(0.55, 1.0, 3, 1, 1)
    angle = uniform(0.0, math.pi, 1, 1)
    frequency = uniform(0.05, 0.3, 1, 1)
    phase = uniform(0.0, 2 * math.pi, 1, 1)
    amplitude = uniform(0.03, 0.12, 1, 1, 1)
    tint = uniform(-1.0, 1.0, 3, 1, 1)
    pixel_noise = torch.randn(n, 3, _SIZE, _SIZE, generator=generator) * 0.03

    coords = torch.arange(_SIZE, dtype=torch.float32) + 0.5
    ys, xs = coords.view(1, -1, 1), coords.view(1, 1, -1)
    dx = (xs - centre_x.view(-1, 1, 1)).expand(n, _SIZE, _SIZE)
    dy = (ys - centre_y.view(-1, 1, 1)).expand(n, _SIZE, _SIZE)
    r = radius.view(-1, 1, 1)
    distance = torch.empty(n, _SIZE, _SIZE)
    for label, sdf in enumerate(_SDF):  # one vectorised pass per class, not per sample
        rows = labels == label
        distance[rows] = sdf(dx[rows], dy[rows], r[rows])
    coverage = (0.5 - distance).clamp(0.0, 1.0).unsqueeze(1)

    stripes = torch.sin(2 * math.pi * frequency * (xs * angle.cos() + ys * angle.sin()) + phase)
    textured = background + amplitude * tint * stripes.unsqueeze(1)
    image = torch.lerp(textured, foreground, coverage) + pixel_noise
    return image.clamp_(0.0, 1.0), labels


class ShapesDataModule(TensorSplitDataModule):
    """Generated 32x32 RGB shapes (:func:`make_shapes`), six classes, as ``(B, 3, 32, 32)`` in [0, 1].

    The train, validation and test sets are generated independently from seeds derived from
    ``seed``; batches are lists ``[x, y]`` with ``y`` int64 class indices (:data:`SHAPES`). The
    training order is reshuffled each epoch from ``(shuffle_seed, epoch)``.

    Args:
        batch_size: samples per batch.
        train_size: number of training images.
        val_size: number of validation images.
        test_size: number of test images.
        seed: seed of the images.
        shuffle_seed: seed of the training order.
        num_workers: data-loader workers.

    Example:
        >>> dm = ShapesDataModule(batch_size=16, train_size=64, val_size=32, test_size=32)
        >>> dm.setup("fit")
        >>> x, y = next(iter(dm.train_dataloader()))
        >>> tuple(x.shape), x.dtype, y.dtype, dm.num_classes
        ((16, 3, 32, 32), torch.float32, torch.int64, 6)
    """

    num_classes = len(SHAPES)
    input_shape = (3, _SIZE, _SIZE)

    def __init__(
        self,
        batch_size: int = 64,
        train_size: int = 2000,
        val_size: int = 500,
        test_size: int = 500,
        seed: int = 0,
        shuffle_seed: int = 0,
        num_workers: int = 0,
    ) -> None:
        super().__init__(batch_size, shuffle_seed, num_workers)
        owner = "ShapesDataModule"
        self.train_size = check_int(owner, "train_size", train_size, 1)
        self.val_size = check_int(owner, "val_size", val_size, 1)
        self.test_size = check_int(owner, "test_size", test_size, 1)
        self.seed = check_seed(owner, "seed", seed)

    @override
    def make_splits(self) -> tuple[TensorDataset, TensorDataset, TensorDataset]:
        """Generate the three sets independently, from seeds derived from ``seed``."""
        sizes = (self.train_size, self.val_size, self.test_size)
        train, val, test = (
            TensorDataset(*make_shapes(size, mix_seed(self.seed, split))) for split, size in enumerate(sizes)
        )
        return train, val, test
