"""One warning when a fit resumes mid-epoch with a training loader that cannot restore its position.

Lightning restores a training loader's position only if the loader is stateful (it has
``state_dict`` / ``load_state_dict``, like torchdata's ``StatefulDataLoader``); a plain
``DataLoader`` starts the resumed epoch from its beginning while the loop's batch counter goes on
from the checkpoint. The noise follows the trainer's counters, so it continues exactly; the samples
it meets do not.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_warn

__all__ = ["is_resumable", "mid_epoch_batches", "warn_if_data_order_differs"]


def _leaves(loaders: object) -> Iterator[object]:
    if isinstance(loaders, Mapping):
        for value in loaders.values():
            yield from _leaves(value)
    elif isinstance(loaders, Sequence) and not isinstance(loaders, (str, bytes)):
        for value in loaders:
            yield from _leaves(value)
    elif loaders is not None:
        yield loaders


def is_resumable(loaders: object) -> bool:
    """Whether every loader in ``loaders`` (one, or a list / dict of them) can save and restore its state.

    Example:
        >>> from torch.utils.data import DataLoader
        >>> is_resumable({"a": DataLoader(range(4)), "b": [DataLoader(range(4))]})
        False
    """
    return all(
        callable(getattr(loader, "state_dict", None)) and callable(getattr(loader, "load_state_dict", None))
        for loader in _leaves(loaders)
    )


def mid_epoch_batches(trainer: pl.Trainer) -> int:
    """Training batches of the current epoch a resumed fit has already done (0 unless mid-epoch).

    Read in ``on_train_start``, before the loop resets its progress: non-zero only when the fit
    loop is restarting from a checkpoint saved after some but not all batches of an epoch.
    """
    loop = trainer.fit_loop.epoch_loop
    if not loop.restarting:
        return 0
    current = loop.batch_progress.current  # a _ProcessedTracker, typed as its base class
    done = int(getattr(current, "processed", current.ready))
    return done if 0 < done < trainer.num_training_batches else 0


def warn_if_data_order_differs(trainer: pl.Trainer, caller: Callback, family: type[Callback]) -> None:
    """Warn (once per fit: only the first ``family`` callback warns) about a mid-epoch resume.

    Called by every noise callback from ``on_train_start``; warns if the fit resumes mid-epoch and
    some training loader cannot restore its position.
    """
    first = next((cb for cb in trainer.callbacks if isinstance(cb, family)), None)  # type: ignore[attr-defined]
    if caller is not first:
        return
    done = mid_epoch_batches(trainer)
    if not done or is_resumable(trainer.train_dataloader):
        return
    rank_zero_warn(
        f"lit_noise: this fit resumes from a checkpoint saved mid-epoch (after {done} of"
        f" {trainer.num_training_batches} batches of epoch {trainer.current_epoch}) and the training"
        " loader cannot restore its position (it has no `state_dict`/`load_state_dict`), so Lightning"
        " starts it again from the beginning of the epoch: the data order (not the noise) will differ"
        " from an uninterrupted run. The noise follows the trainer's step and batch counters and"
        " continues exactly, but it meets other samples. For an exact resume, resume from an"
        " end-of-epoch checkpoint or use a resumable loader (e.g. torchdata's StatefulDataLoader).",
        category=UserWarning,
    )
