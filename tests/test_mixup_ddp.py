"""MixupDataModule under DDP: 2 CPU processes (gloo, spawn), one seed for all ranks, per-rank mixes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch

from _ddp import ddp_trainer, rank_files
from lit_noise import MixupDataModule
from lit_noise.examples import Classifier, DigitsDataModule


class RankWriter(pl.Callback):
    """Writes each rank's seed, mixed training inputs and partner indices to ``out``."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.batches: list[torch.Tensor] = []
        self.partners: list[torch.Tensor] = []

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, *args: Any
    ) -> None:
        self.batches.append(batch[0].clone())
        self.partners.append(trainer.datamodule.last_params.index.clone())

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        state = {"seed": trainer.datamodule.seed, "batches": self.batches, "partners": self.partners}
        torch.save(state, self.out / f"rank{trainer.global_rank}.pt")


def run(out: Path, seed: int | None) -> list[dict[str, Any]]:
    out.mkdir(parents=True)
    data = MixupDataModule(
        DigitsDataModule(batch_size=16), mixup_alpha=1.0, cutmix_alpha=1.0, mode="elem", seed=seed
    )
    trainer = ddp_trainer(out, [RankWriter(out)], max_epochs=1, limit_train_batches=3, limit_val_batches=0)
    trainer.fit(Classifier(), data)
    return rank_files(out)


@pytest.mark.slow
def test_ranks_share_the_seed_but_mix_their_own_batches(tmp_path: Path) -> None:
    drawn = run(tmp_path / "drawn", seed=None)
    assert drawn[0]["seed"] is not None
    assert drawn[0]["seed"] == drawn[1]["seed"]  # drawn on rank 0, broadcast
    fixed = run(tmp_path / "fixed", seed=3)
    again = run(tmp_path / "again", seed=3)
    for rank in (0, 1):
        assert len(fixed[rank]["batches"]) == 3
        for a, b in zip(fixed[rank]["batches"], again[rank]["batches"], strict=True):
            assert torch.equal(a, b)  # same seed, same mixes on every rank
    # Each rank draws its own stream (the partners do not depend on the data).
    assert not any(torch.equal(a, b) for a, b in zip(fixed[0]["partners"], fixed[1]["partners"], strict=True))
