"""The fit-start and first-batch hooks both monitors share: W&B summaries and the target check."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from typing_extensions import override

from lit_noise import reporting
from lit_noise.callbacks.monitoring import check_training_targets

__all__ = ["MonitorHooks"]


class MonitorHooks(Callback):
    """Base of the monitors: sets their W&B summaries at fit start, checks the first training targets.

    Subclasses set ``summaries`` (the user's mapping or ``None``), ``_summaries`` (what to define),
    ``_target_path`` and ``_inspected`` (whether a batch's targets were already checked) in
    ``__init__``.

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
