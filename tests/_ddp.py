"""Helpers for the multi-process (``ddp_spawn``, gloo) tests."""

from __future__ import annotations

import lightning.pytorch as pl
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
