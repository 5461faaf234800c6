"""ActivationNoise + noise layers under DDP: 2 CPU processes (gloo), per-rank noise, identical replicas.

Each rank draws its own activation and layer noise (its samples differ, so must its noise), the
gradients are averaged, so the replicas stay bit-identical; a rerun with the same seeds repeats
every rank's noise and the final weights bit for bit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from _ddp import ddp_trainer, rank_files
from _param_noise_reference import make_loader, snapshot
from lit_noise import ActivationNoise, Gaussian, GaussianNoise, Linear, NoiseLayerSchedule

FEATURES, HIDDEN, CLASSES = 8, 16, 3


class NoisyNet(pl.LightningModule):
    """Linear -> GaussianNoise (a scheduled std) -> tanh -> Linear; records each batch's two noises."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.hidden = nn.Linear(FEATURES, HIDDEN)
        self.noise = GaussianNoise(std=Linear(start=0.05, end=0.2, until=1.0))
        self.head = nn.Linear(HIDDEN, CLASSES)
        self.seen: list[dict[str, Tensor]] = []

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        out = self.hidden(x)  # hooked by ActivationNoise
        clean = F.linear(x, self.hidden.weight, self.hidden.bias)  # the same, not through the hook
        noisy = self.noise(out)
        self.seen.append({"activation": (out - clean).detach(), "layer": (noisy - out).detach()})
        loss: Tensor = F.cross_entropy(self.head(noisy.tanh()), y)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


class RankWriter(pl.Callback):
    """Writes each rank's recorded noises and final weights to ``out``."""

    def __init__(self, out: Path) -> None:
        self.out = out

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        assert isinstance(pl_module, NoisyNet)
        state = {"final": snapshot(pl_module), "seen": pl_module.seen, "steps": trainer.global_step}
        torch.save(state, self.out / f"rank{trainer.global_rank}.pt")


def run(out: Path) -> list[dict[str, Any]]:
    out.mkdir(parents=True)
    callbacks = [
        ActivationNoise("hidden", Gaussian(std=0.1), seed=11),
        NoiseLayerSchedule(seed=12),
        RankWriter(out),
    ]
    ddp_trainer(out, callbacks, max_epochs=2, limit_val_batches=0).fit(NoisyNet(), make_loader())
    return rank_files(out)


@pytest.mark.slow
def test_per_rank_activation_and_layer_noise_identical_replicas_and_reruns(tmp_path: Path) -> None:
    first = run(tmp_path / "a")
    rank0, rank1 = first
    assert rank0["steps"] == rank1["steps"] == 8  # 4 batches per rank per epoch, 2 epochs
    for name, value in rank0["final"].items():
        assert torch.equal(value, rank1["final"][name]), name  # bit-identical replicas
    assert not torch.equal(rank0["final"]["hidden.weight"], snapshot(NoisyNet())["hidden.weight"])
    for kind, std in (("activation", 0.1), ("layer", None)):
        for mine, theirs in zip(rank0["seen"], rank1["seen"], strict=True):
            assert not torch.allclose(mine[kind], theirs[kind]), kind  # each rank draws its own noise
            assert float(mine[kind].abs().max()) > 0.0
        if std is not None:
            drawn = torch.cat([seen[kind].flatten() for seen in rank0["seen"]])
            assert abs(float(drawn.std()) / std - 1) < 0.15  # 8 batches x 8 samples x 16 values
    second = run(tmp_path / "b")
    for before, again in zip(first, second, strict=True):
        for name, value in before["final"].items():
            assert torch.equal(value, again["final"][name]), name
        for seen, seen_again in zip(before["seen"], again["seen"], strict=True):
            assert torch.equal(seen["activation"], seen_again["activation"])
            assert torch.equal(seen["layer"], seen_again["layer"])
