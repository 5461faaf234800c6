"""WeightNoise + GradientNoise under DDP: 2 CPU processes (gloo), replicas bit-identical, reruns equal."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from torch import Tensor

from _ddp import ddp_trainer, rank_files
from _param_noise_reference import Net, make_loader, snapshot
from lit_noise import Gaussian, GradientNoise, WeightNoise


class RankWriter(pl.Callback):
    """Writes each rank's noisy weights at the first batch and its final weights to ``out``."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.first_noisy: dict[str, Tensor] | None = None

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        if self.first_noisy is None:
            self.first_noisy = snapshot(pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        state = {"final": snapshot(pl_module), "first_noisy": self.first_noisy, "steps": trainer.global_step}
        torch.save(state, self.out / f"rank{trainer.global_rank}.pt")


def run(out: Path, seed: int = 7) -> list[dict[str, Any]]:
    out.mkdir(parents=True)
    callbacks = [
        WeightNoise(Gaussian(std=0.05), relative=True, seed=seed),
        GradientNoise(std=0.01, seed=seed + 1),
        RankWriter(out),  # after WeightNoise: sees the noisy weights at batch start
    ]
    trainer = ddp_trainer(out, callbacks, max_epochs=2, accumulate_grad_batches=2, limit_val_batches=0)
    trainer.fit(Net(), make_loader())
    return rank_files(out)


@pytest.mark.slow
def test_ddp_replicas_stay_identical_and_reruns_match(tmp_path: Path) -> None:
    first = run(tmp_path / "a")
    rank0, rank1 = first
    assert rank0["steps"] == rank1["steps"] == 4  # 4 batches per rank per epoch, accumulating 2
    for name, value in rank0["final"].items():
        assert torch.equal(value, rank1["final"][name]), name  # bit-identical replicas
    # Each rank trained at its own noisy point (the noise is per rank and undone before the step) ...
    assert not torch.equal(rank0["first_noisy"]["net.0.weight"], rank1["first_noisy"]["net.0.weight"])
    # ... from the same clean start, and training moved the weights.
    assert not torch.equal(rank0["final"]["net.0.weight"], snapshot(Net())["net.0.weight"])
    second = run(tmp_path / "b")
    for before, again in zip(first, second, strict=True):
        for name, value in before["final"].items():
            assert torch.equal(value, again["final"][name]), name
        for name, value in before["first_noisy"].items():
            assert torch.equal(value, again["first_noisy"][name]), name
