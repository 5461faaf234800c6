"""``seed=None`` under DDP with a different torch seed on each rank: one seed per source, identical replicas.

Each of 2 CPU processes (gloo, ``ddp_spawn``) seeds torch with its own rank before anything draws
from it (in the DataModule's ``setup``, which Lightning runs before the callbacks' ``setup``), so
every source that took its seed from the local RNG would get a different one per rank. They must
all take rank 0's: the seeds are compared across ranks, and the trained weights must be bit for
bit the same on both replicas (gradient noise after the all-reduce would otherwise differ).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from _ddp import ddp_trainer, rank_files
from lit_noise import (
    Gaussian,
    GaussianNoise,
    GradientNoise,
    InputNoise,
    MixupDataModule,
    NoiseLayerSchedule,
    SymmetricFlip,
    TargetNoise,
    WeightNoise,
)
from lit_noise.callbacks import NoiseCallback

FEATURES, CLASSES = 8, 3


class RankSeededData(pl.LightningDataModule):
    """64 samples; ``setup`` seeds torch with ``rank`` (so each rank's global RNG differs)."""

    num_classes = CLASSES

    def setup(self, stage: str) -> None:
        assert self.trainer is not None
        torch.manual_seed(self.trainer.global_rank)

    def train_dataloader(self) -> DataLoader[tuple[Tensor, ...]]:
        g = torch.Generator().manual_seed(123)
        x = torch.randn(64, FEATURES, generator=g)
        y = torch.randint(0, CLASSES, (64,), generator=g)
        return DataLoader(TensorDataset(x, y), batch_size=8)


class Net(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(
            GaussianNoise(std=0.1), nn.Linear(FEATURES, 16), nn.Tanh(), nn.Linear(16, CLASSES)
        )

    def training_step(self, batch: list[Tensor], batch_idx: int) -> Tensor:
        return F.cross_entropy(self.net(batch[0]), batch[1])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=1e-2)


class RankWriter(pl.Callback):
    """Saves the rank's final weights and every source's seed to ``out/rank<r>.pt``."""

    def __init__(self, out: Path) -> None:
        self.out = out

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        seeds = {
            type(cb).__name__ + cb.name: cb.seed for cb in trainer.callbacks if isinstance(cb, NoiseCallback)
        }  # type: ignore[attr-defined]
        seeds["MixupDataModule"] = trainer.datamodule.seed  # type: ignore[attr-defined]
        state = {
            "weights": {k: v.detach().clone() for k, v in pl_module.state_dict().items()},
            "seeds": seeds,
            "steps": trainer.global_step,
        }
        torch.save(state, self.out / f"rank{trainer.global_rank}.pt")


def run(out: Path) -> list[dict[str, Any]]:
    out.mkdir(parents=True)
    callbacks = [
        InputNoise(Gaussian(std=0.1)),
        TargetNoise(SymmetricFlip(p=0.2), num_classes=CLASSES),
        WeightNoise(Gaussian(std=0.05), relative=True),
        GradientNoise(std=0.01),
        NoiseLayerSchedule(),
        RankWriter(out),
    ]
    trainer = ddp_trainer(out, callbacks, max_epochs=2, limit_val_batches=0)
    trainer.fit(Net(), MixupDataModule(RankSeededData(), mixup_alpha=0.4))
    return rank_files(out)


@pytest.mark.slow
def test_seed_none_gives_every_rank_rank_zeros_seed_and_identical_replicas(tmp_path: Path) -> None:
    rank0, rank1 = run(tmp_path / "run")
    assert rank0["steps"] == rank1["steps"] == 8  # 4 batches per rank per epoch
    assert len(rank0["seeds"]) == 6  # five callbacks and the DataModule
    assert rank0["seeds"] == rank1["seeds"]
    assert all(isinstance(seed, int) for seed in rank0["seeds"].values())
    for name, value in rank0["weights"].items():
        assert torch.equal(value, rank1["weights"][name]), name
    torch.manual_seed(0)
    start = nn.Linear(FEATURES, 16)
    assert not torch.equal(rank0["weights"]["net.1.weight"], start.weight.detach())  # training moved them
