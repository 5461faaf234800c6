"""DigitsDataModule: scikit-learn's bundled 8x8 digits (no download), deterministic splits."""

from __future__ import annotations

from collections.abc import Iterator

import lightning.pytorch as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Sampler, TensorDataset

from lit_noise._validation import check_int, check_range

__all__ = ["DigitsDataModule", "EpochShuffleSampler"]


class EpochShuffleSampler(Sampler[int]):
    """A shuffling sampler whose order is a pure function of (seed, epoch).

    Lightning calls ``set_epoch`` before each epoch, so a resumed run sees the same order as an
    uninterrupted one.

    Example:
        >>> s = EpochShuffleSampler(5, seed=0)
        >>> s.set_epoch(1)
        >>> sorted(s) == list(range(5))
        True
    """

    def __init__(self, size: int, seed: int = 0) -> None:
        self.size = size
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the permutation of ``epoch``."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(torch.randperm(self.size, generator=generator).tolist())

    def __len__(self) -> int:
        return self.size


class DigitsDataModule(pl.LightningDataModule):
    """The 1,797 8x8 handwritten digits of scikit-learn as ``(B, 1, 8, 8)`` floats in [0, 1].

    Splits are a deterministic permutation of ``split_seed``: ``val_fraction`` for validation,
    ``test_fraction`` for test, the rest for training. Batches are lists ``[x, y]`` with ``y`` int64
    class indices. The training order is reshuffled each epoch from ``(shuffle_seed, epoch)``.

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
        super().__init__()
        self.batch_size = check_int("DigitsDataModule", "batch_size", batch_size, 1)
        self.val_fraction = check_range("DigitsDataModule", "val_fraction", val_fraction, 0.0, 0.5)
        self.test_fraction = check_range("DigitsDataModule", "test_fraction", test_fraction, 0.0, 0.5)
        self.split_seed = check_int("DigitsDataModule", "split_seed", split_seed, 0)
        self.shuffle_seed = check_int("DigitsDataModule", "shuffle_seed", shuffle_seed, 0)
        self.num_workers = check_int("DigitsDataModule", "num_workers", num_workers, 0)
        self.train_set: TensorDataset | None = None
        self.val_set: TensorDataset | None = None
        self.test_set: TensorDataset | None = None

    def setup(self, stage: str | None = None) -> None:
        """Load the digits and split them (idempotent)."""
        if self.train_set is not None:
            return
        from sklearn.datasets import load_digits

        digits = load_digits()
        x = torch.as_tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
        y = torch.as_tensor(digits.target, dtype=torch.long)
        order = torch.randperm(len(y), generator=torch.Generator().manual_seed(self.split_seed))
        n_val = round(self.val_fraction * len(y))
        n_test = round(self.test_fraction * len(y))
        val, test, train = order[:n_val], order[n_val : n_val + n_test], order[n_val + n_test :]
        self.train_set = TensorDataset(x[train], y[train])
        self.val_set = TensorDataset(x[val], y[val])
        self.test_set = TensorDataset(x[test], y[test])

    def _loader(self, dataset: TensorDataset | None, train: bool = False) -> DataLoader[tuple[Tensor, ...]]:
        assert dataset is not None, "setup() creates the datasets"
        sampler = EpochShuffleSampler(len(dataset), self.shuffle_seed) if train else None
        return DataLoader(dataset, batch_size=self.batch_size, sampler=sampler, num_workers=self.num_workers)

    def train_dataloader(self) -> DataLoader[tuple[Tensor, ...]]:
        """Shuffled training batches."""
        self.setup()
        return self._loader(self.train_set, train=True)

    def val_dataloader(self) -> DataLoader[tuple[Tensor, ...]]:
        """Validation batches in a fixed order."""
        self.setup()
        return self._loader(self.val_set)

    def test_dataloader(self) -> DataLoader[tuple[Tensor, ...]]:
        """Test batches in a fixed order."""
        self.setup()
        return self._loader(self.test_set)

    def predict_dataloader(self) -> DataLoader[tuple[Tensor, ...]]:
        """The test inputs in a fixed order."""
        return self.test_dataloader()
