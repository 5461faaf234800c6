"""DigitsDataModule: scikit-learn's bundled 8x8 digits (no download), deterministic splits.

Needs scikit-learn: ``pip install "lit-noise[examples]"``.
"""

from __future__ import annotations

import torch
from torch.utils.data import TensorDataset
from typing_extensions import override

from lit_noise._optional import require
from lit_noise._validation import check_range, check_seed
from lit_noise.examples.tensor_data import TensorSplitDataModule

__all__ = ["DigitsDataModule"]


class DigitsDataModule(TensorSplitDataModule):
    """The 1,797 8x8 handwritten digits of scikit-learn as ``(B, 1, 8, 8)`` floats in [0, 1].

    Splits are a deterministic permutation of ``split_seed``: ``val_fraction`` for validation,
    ``test_fraction`` for test, the rest for training. Batches are lists ``[x, y]`` with ``y`` int64
    class indices. The training order is reshuffled each epoch from ``(shuffle_seed, epoch)``.

    Needs scikit-learn (``pip install "lit-noise[examples]"``), which holds the data: without it the
    constructor raises :class:`~lit_noise._optional.MissingDependencyError` naming that extra.

    Args:
        batch_size: samples per batch.
        val_fraction: fraction of the data for validation.
        test_fraction: fraction of the data for test.
        split_seed: seed of the split permutation.
        shuffle_seed: seed of the training order.
        num_workers: data-loader workers.

    Example:
        >>> dm = DigitsDataModule(batch_size=32)
        >>> dm.setup("fit")
        >>> x, y = next(iter(dm.train_dataloader()))
        >>> tuple(x.shape), x.dtype, bool(0 <= x.min() and x.max() <= 1), y.dtype
        ((32, 1, 8, 8), torch.float32, True, torch.int64)
    """

    num_classes = 10
    input_shape = (1, 8, 8)

    def __init__(
        self,
        batch_size: int = 64,
        val_fraction: float = 0.2,
        test_fraction: float = 0.2,
        split_seed: int = 0,
        shuffle_seed: int = 0,
        num_workers: int = 0,
    ) -> None:
        require("sklearn", "DigitsDataModule", "the bundled digits data")
        super().__init__(batch_size, shuffle_seed, num_workers)
        self.val_fraction = check_range("DigitsDataModule", "val_fraction", val_fraction, 0.0, 0.5)
        self.test_fraction = check_range("DigitsDataModule", "test_fraction", test_fraction, 0.0, 0.5)
        self.split_seed = check_seed("DigitsDataModule", "split_seed", split_seed)

    @override
    def make_splits(self) -> tuple[TensorDataset, TensorDataset, TensorDataset]:
        """Load the digits and split them by a permutation of ``split_seed``."""
        from sklearn.datasets import load_digits

        digits = load_digits()
        x = torch.as_tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
        y = torch.as_tensor(digits.target, dtype=torch.long)
        order = torch.randperm(len(y), generator=torch.Generator().manual_seed(self.split_seed))
        n_val = round(self.val_fraction * len(y))
        n_test = round(self.test_fraction * len(y))
        val, test, train = order[:n_val], order[n_val : n_val + n_test], order[n_val + n_test :]
        return (
            TensorDataset(x[train], y[train]),
            TensorDataset(x[val], y[val]),
            TensorDataset(x[test], y[test]),
        )
