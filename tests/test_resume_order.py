"""Resuming mid-epoch from a loader that cannot restore its position warns once: data order differs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from _param_noise_reference import Net, make_loader
from _trainers import quiet_trainer
from lit_noise import Gaussian, GradientNoise, WeightNoise
from lit_noise.callbacks._resume import is_resumable

OURS = r"lit_noise: this fit resumes from a checkpoint saved mid-epoch"
# Lightning's own, vaguer warning for the same case (a PossibleUserWarning), not under test here.
LIGHTNINGS = "ignore:You're resuming from a checkpoint that ended before the epoch ended"


class NoiseRecorder(pl.Callback):
    """Placed around GradientNoise: the gradient noise added at each global step."""

    def __init__(self) -> None:
        self.clean: dict[int, list[Tensor]] = {}
        self.noise: dict[int, list[Tensor]] = {}

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Any
    ) -> None:
        grads = [p.grad.detach().clone() for p in pl_module.parameters() if p.grad is not None]
        step = trainer.global_step
        if step not in self.clean:
            self.clean[step] = grads
        else:
            self.noise[step] = [after - before for after, before in zip(grads, self.clean[step], strict=True)]


def noise_callbacks(recorder: NoiseRecorder | None = None) -> list[pl.Callback]:
    """Two noise callbacks (so "once" is tested), with the recorder around GradientNoise."""
    around = [recorder] if recorder is not None else []
    return [WeightNoise(Gaussian(0.01), seed=2), *around, GradientNoise(std=0.05, seed=1), *around]


class StatefulLoader(DataLoader[Any]):
    """A loader Lightning treats as resumable (it saves and loads its state with the checkpoint)."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


def stateful_loader() -> StatefulLoader:
    plain = make_loader()
    return StatefulLoader(plain.dataset, batch_size=plain.batch_size, shuffle=False)


class Saver(pl.Callback):
    """Saves where ``ModelCheckpoint`` would: after steps 3 and 6 (mid-epoch: 8 batches an epoch) and 8
    (the epoch's last batch), and at the end of each epoch. Stateless: resumed runs need not list it."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        if trainer.global_step in (3, 6, 8):
            trainer.save_checkpoint(self.root / f"step={trainer.global_step}.ckpt")

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        trainer.save_checkpoint(self.root / f"end-epoch={trainer.current_epoch}.ckpt")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, NoiseRecorder]:
    """Two uninterrupted epochs of 8 batches; checkpoints after steps 3 and 6 and at each epoch end."""
    root = tmp_path_factory.mktemp("resume")
    recorder = NoiseRecorder()
    trainer = quiet_trainer(
        default_root_dir=str(root),
        max_epochs=2,
        limit_val_batches=0,
        callbacks=[*noise_callbacks(recorder), Saver(root)],
    )
    trainer.fit(Net(), make_loader())
    return root, recorder


def resume(
    root: Path, checkpoint: str, callbacks: list[pl.Callback], loader: DataLoader[Any] | None = None
) -> None:
    """Resume from ``checkpoint`` to the end of epoch 2 (any warning not filtered is an error)."""
    trainer = quiet_trainer(
        default_root_dir=str(root / "resumed"), max_epochs=2, limit_val_batches=0, callbacks=callbacks
    )
    trainer.fit(Net(), loader if loader is not None else make_loader(), ckpt_path=root / checkpoint)


@pytest.mark.filterwarnings(LIGHTNINGS)
@pytest.mark.parametrize(("checkpoint", "done"), [("step=3.ckpt", 3), ("step=6.ckpt", 6)])
def test_mid_epoch_resume_warns_once_with_two_noise_callbacks(
    run: tuple[Path, NoiseRecorder], checkpoint: str, done: int
) -> None:
    root, _ = run
    with pytest.warns(UserWarning, match=OURS) as record:
        resume(root, checkpoint, noise_callbacks())
    ours = [str(w.message) for w in record if re.match(OURS, str(w.message))]
    assert len(ours) == 1  # one warning per fit, not one per noise callback
    assert f"(after {done} of 8 batches of epoch 0)" in ours[0]
    assert "the data order (not the noise) will differ from an uninterrupted run" in ours[0]


@pytest.mark.parametrize("checkpoint", ["end-epoch=0.ckpt", "step=8.ckpt"])
def test_no_warning_from_an_end_of_epoch_checkpoint(run: tuple[Path, NoiseRecorder], checkpoint: str) -> None:
    root, _ = run
    resume(root, checkpoint, noise_callbacks())  # a warning would be an error


def test_no_warning_when_the_loader_restores_its_position(run: tuple[Path, NoiseRecorder]) -> None:
    root, _ = run
    resume(root, "step=3.ckpt", noise_callbacks(), loader=stateful_loader())


@pytest.mark.filterwarnings(LIGHTNINGS)
@pytest.mark.filterwarnings("ignore:lit_noise. this fit resumes")
def test_the_noise_continues_exactly_after_a_mid_epoch_resume(run: tuple[Path, NoiseRecorder]) -> None:
    """What the warning promises: other samples (different gradients), the same gradient noise."""
    root, uninterrupted = run
    recorder = NoiseRecorder()
    resume(root, "step=3.ckpt", noise_callbacks(recorder))
    assert sorted(recorder.noise) == list(range(3, 16))
    for step, noise in recorder.noise.items():
        for got, want in zip(noise, uninterrupted.noise[step], strict=True):
            torch.testing.assert_close(got, want, rtol=0, atol=1e-6)  # fl(g + n) - g: one ulp of |g|
    # The replayed epoch 0 starts from its first batch: the gradients at step 3 are not the original ones.
    assert not torch.allclose(recorder.clean[3][0], uninterrupted.clean[3][0])


def test_is_resumable_needs_every_loader_to_be_stateful() -> None:
    plain, stateful = make_loader(), stateful_loader()
    assert is_resumable(stateful)
    assert is_resumable({"a": stateful, "b": [stateful, stateful]})
    assert not is_resumable(plain)
    assert not is_resumable({"a": stateful, "b": [stateful, plain]})
