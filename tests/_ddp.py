"""Helpers for the multi-process (``ddp_spawn``, gloo) tests."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
import torch.distributed as dist


class ReleaseProcessGroup(pl.Callback):
    """Destroy the process group at the very end of each spawned worker's run.

    Lightning keeps the gloo process group alive after ``fit``/``validate``; a spawned worker that
    then exits while its peer still holds the connection can abort in gloo's destructor
    ("terminate called without an active exception", SIGABRT), failing the test at random.
    A barrier followed by ``destroy_process_group`` in the last hook makes both ranks leave together.
    """

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if dist.is_available() and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()


def ddp_trainer(root: Path | str, callbacks: Sequence[pl.Callback] = (), **options: Any) -> pl.Trainer:
    """A Trainer of 2 CPU processes (``ddp_spawn``, gloo) with no logger, checkpoints, progress bar or
    summary, writing under ``root``; :class:`ReleaseProcessGroup` follows ``callbacks``; ``options``
    override the rest."""
    settings: dict[str, Any] = {
        "accelerator": "cpu",
        "devices": 2,
        "strategy": "ddp_spawn",
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "default_root_dir": str(root),
    }
    settings.update(options)
    return pl.Trainer(callbacks=[*callbacks, ReleaseProcessGroup()], **settings)


def rank_files(root: Path, weights_only: bool = True) -> list[Any]:
    """What each of the 2 ranks saved as ``root/rank<r>.pt``."""
    return [torch.load(root / f"rank{rank}.pt", weights_only=weights_only) for rank in (0, 1)]
