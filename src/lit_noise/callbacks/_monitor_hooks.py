"""The hooks both monitors share: W&B summaries, the first targets' check, the evaluation batches."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from typing_extensions import override

from lit_noise import reporting
from lit_noise.callbacks.monitoring import check_training_targets

__all__ = ["EvaluationBatch", "MonitorHooks", "evaluation_stage"]


class EvaluationBatch(NamedTuple):
    """A validation or test batch as its batch-end hook sees it, with the stage (``"val"`` or ``"test"``)."""

    stage: str
    outputs: Any
    batch: Any
    batch_idx: int
    dataloader_idx: int


def evaluation_stage(trainer: pl.Trainer) -> str:
    """``"test"`` while ``trainer.test`` runs, else ``"val"`` (validation, sanity check, ``validate``).

    Example:
        >>> from types import SimpleNamespace
        >>> evaluation_stage(SimpleNamespace(testing=True)), evaluation_stage(SimpleNamespace(testing=False))
        ('test', 'val')
    """
    return "test" if trainer.testing else "val"


class MonitorHooks(Callback):
    """Base of the monitors: sets their W&B summaries at fit start, checks the first training targets.

    Subclasses set ``summaries`` (the user's mapping or ``None``), ``_summaries`` (what to define),
    ``_target_path`` and ``_inspected`` (whether a batch's targets were already checked) in
    ``__init__``, and implement :meth:`_evaluation_batch`, which the validation and the test
    batch-end hooks both call (one hook serves both: the stage comes from the trainer).

    Example:
        >>> issubclass(MonitorHooks, Callback)
        True
    """

    summaries: Mapping[str, str] | None
    _summaries: Mapping[str, str]
    _target_path: tuple[int | str, ...] | None
    _inspected: bool

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._inspected = False
        owner = type(self).__name__ if self.summaries else None  # warn without W&B only when asked
        reporting.define_summaries(trainer, self._summaries, warn_owner=owner)

    @override
    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self._inspected:
            return
        self._inspected = True  # no sanity check ran: refuse regression targets before the first step
        check_training_targets(type(self).__name__, batch, self._target_path)

    @override
    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        step = EvaluationBatch(evaluation_stage(trainer), outputs, batch, batch_idx, dataloader_idx)
        self._evaluation_batch(trainer, pl_module, step)

    on_test_batch_end = on_validation_batch_end

    def _evaluation_batch(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, step: EvaluationBatch
    ) -> None:
        """Take one validation or test batch (both batch-end hooks end here)."""
        raise NotImplementedError
