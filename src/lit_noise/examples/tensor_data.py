"""Shared plumbing of the example DataModules: fixed train/val/test tensors, resumable shuffling."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterator, Sequence
from functools import partial

import lightning.pytorch as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Sampler, TensorDataset, default_collate

from lit_noise._validation import SEED_MAX, check_int, check_seed

__all__ = ["EpochShuffleSampler", "TensorSplitDataModule"]


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
        self.size = check_int("EpochShuffleSampler", "size", size, 0)
        self.seed = check_seed("EpochShuffleSampler", "seed", seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the permutation of ``epoch``."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        # Kept to 64 bits (a seed may be up to 2**64 - 1); the same seeds as before below that.
        generator = torch.Generator().manual_seed((self.seed * 1_000_003 + self.epoch) & SEED_MAX)
        return iter(torch.randperm(self.size, generator=generator).tolist())

    def __len__(self) -> int:
        return self.size


class TensorSplitDataModule(pl.LightningDataModule):
    """Train, validation and test tensor data sets, made once by :meth:`make_splits`.

    Batches are lists ``[x, y]`` (dicts of the set's tensors named by ``batch_keys`` when a subclass
    sets it); the training order is reshuffled each epoch from
    ``(shuffle_seed, epoch)`` by :class:`EpochShuffleSampler`, so a resumed run sees the same order.
    Subclasses implement :meth:`make_splits`.

    Example:
        >>> class Ramp(TensorSplitDataModule):  # x = 0..9, y = x mod 2; 6 / 2 / 2 samples
        ...     def make_splits(self):
        ...         x, y = torch.arange(10.0).unsqueeze(1), torch.arange(10) % 2
        ...         return (TensorDataset(x[:6], y[:6]), TensorDataset(x[6:8], y[6:8]),
        ...                 TensorDataset(x[8:], y[8:]))
        >>> data = Ramp(batch_size=4, shuffle_seed=0, num_workers=0)
        >>> batches = list(data.train_dataloader())
        >>> [len(x) for x, y in batches], sorted(torch.cat([x for x, y in batches]).flatten().tolist())
        ([4, 2], [0.0, 1.0, 2.0, 3.0, 4.0, 5.0])
        >>> next(iter(data.val_dataloader()))  # in order, a list [x, y]
        [tensor([[6.], [7.]]), tensor([0, 1])]
    """

    #: Names of the set's tensors, in order: batches are then dicts of them instead of lists.
    batch_keys: tuple[str, ...] | None = None

    def __init__(self, batch_size: int, shuffle_seed: int, num_workers: int) -> None:
        super().__init__()
        owner = type(self).__name__
        self.batch_size = check_int(owner, "batch_size", batch_size, 1)
        self.shuffle_seed = check_seed(owner, "shuffle_seed", shuffle_seed)
        self.num_workers = check_int(owner, "num_workers", num_workers, 0)
        self.train_set: TensorDataset | None = None
        self.val_set: TensorDataset | None = None
        self.test_set: TensorDataset | None = None

    @abstractmethod
    def make_splits(self) -> tuple[TensorDataset, TensorDataset, TensorDataset]:
        """The train, validation and test sets."""

    def setup(self, stage: str | None = None) -> None:
        """Make the three sets (idempotent)."""
        if self.train_set is None:
            self.train_set, self.val_set, self.test_set = self.make_splits()

    def _loader(self, dataset: TensorDataset | None, train: bool = False) -> DataLoader[tuple[Tensor, ...]]:
        assert dataset is not None, "setup() creates the datasets"
        sampler = EpochShuffleSampler(len(dataset), self.shuffle_seed) if train else None
        collate = None if self.batch_keys is None else partial(_collate_dict, self.batch_keys)
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            collate_fn=collate,
        )

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


def _collate_dict(keys: Sequence[str], samples: list[tuple[Tensor, ...]]) -> dict[str, Tensor]:
    """Stack tuple samples into a dict batch with ``keys`` (picklable, so loader workers can use it)."""
    return dict(zip(keys, default_collate(samples), strict=True))
