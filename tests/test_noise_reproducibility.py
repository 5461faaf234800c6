"""Same seed, same noise: identical runs, exact resume from a checkpoint, independence of workers."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import Tensor

from lit_noise import Cyclic, Gaussian, InputNoise, LabelSmoothing, Linear, SymmetricFlip, TargetNoise
from lit_noise.examples import Classifier, DigitsDataModule


class StreamRecorder(Classifier):
    """Records the noisy batch of every training step by (epoch, batch_idx)."""

    def __init__(self) -> None:
        super().__init__(backbone="mlp", hidden=32)
        self.stream: dict[tuple[int, int], tuple[Tensor, Tensor]] = {}

    def training_step(self, batch: Sequence[Tensor], batch_idx: int) -> Tensor:
        y = batch[1]
        self.stream[(self.current_epoch, batch_idx)] = (batch[0].clone(), getattr(y, "soft", y).clone())
        return super().training_step(batch, batch_idx)


def noise_callbacks(seed: int | None) -> list[pl.Callback]:
    second = None if seed is None else seed + 1
    return [
        InputNoise(Gaussian(std=Linear(start=0.05, end=0.3, until=12, unit="step")), clamp=(0, 1), seed=seed),
        TargetNoise(SymmetricFlip(p=0.3), num_classes=10, seed=second, name="flip"),
        TargetNoise(
            LabelSmoothing(eps=Cyclic(low=0.0, high=0.2, period=2, unit="epoch")), num_classes=10, seed=second
        ),
    ]


def fit(
    make_trainer: Any,
    seed: int | None,
    global_seed: int = 0,
    *,
    ckpt: str | None = None,
    datamodule: DigitsDataModule | None = None,
    extra_callbacks: Sequence[pl.Callback] = (),
    **trainer_args: Any,
) -> StreamRecorder:
    pl.seed_everything(global_seed, verbose=False)
    model = StreamRecorder()
    options: dict[str, Any] = {"max_epochs": 2, "limit_train_batches": 4, "limit_val_batches": 0}
    options.update(trainer_args)
    trainer = make_trainer(callbacks=noise_callbacks(seed) + list(extra_callbacks), **options)
    trainer.fit(model, datamodule or DigitsDataModule(), ckpt_path=ckpt)
    return model


def weights(module: torch.nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    wa, wb = weights(a), weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def same_stream(a: dict[Any, tuple[Tensor, Tensor]], b: dict[Any, tuple[Tensor, Tensor]], keys: Any) -> bool:
    return all(torch.equal(a[k][0], b[k][0]) and torch.equal(a[k][1], b[k][1]) for k in keys)


def test_same_seed_same_run_different_seed_different_run(make_trainer) -> None:  # type: ignore[no-untyped-def]
    first = fit(make_trainer, seed=5)
    second = fit(make_trainer, seed=5)
    other = fit(make_trainer, seed=6)
    assert same_weights(first, second)
    assert same_stream(first.stream, second.stream, first.stream.keys())
    assert len(first.stream) == 8
    assert not same_weights(first, other)
    assert not any(torch.equal(first.stream[k][0], other.stream[k][0]) for k in first.stream)
    # Without a seed, the seed comes from torch's RNG: reproducible after seed_everything.
    drawn_a = fit(make_trainer, seed=None, global_seed=3)
    drawn_b = fit(make_trainer, seed=None, global_seed=3)
    assert same_weights(drawn_a, drawn_b)


def test_resume_continues_the_same_noise_stream(make_trainer, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Stopped after 2 epochs and resumed to 4 == 4 epochs in one go: same weights, same noisy batches.

    The callbacks draw their seeds (seed=None) and the resumed run seeds torch differently: only the
    seeds saved in the checkpoint can make the streams agree.
    """
    whole = fit(make_trainer, seed=None, global_seed=0, max_epochs=4)
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    first_half = fit(
        make_trainer,
        seed=None,
        global_seed=0,
        max_epochs=2,
        enable_checkpointing=True,
        extra_callbacks=[checkpoint],
    )
    resumed = fit(
        make_trainer,
        seed=None,
        global_seed=123,
        max_epochs=4,
        enable_checkpointing=True,
        extra_callbacks=[ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True, save_top_k=0)],
        ckpt=str(tmp_path / "ckpt" / "last.ckpt"),
    )
    assert sorted(first_half.stream) == [(e, b) for e in range(2) for b in range(4)]
    assert sorted(resumed.stream) == [(e, b) for e in range(2, 4) for b in range(4)]
    assert same_stream(whole.stream, first_half.stream, first_half.stream.keys())
    assert same_stream(whole.stream, resumed.stream, resumed.stream.keys())
    assert same_weights(whole, resumed)


def test_noise_does_not_depend_on_the_number_of_workers(make_trainer) -> None:  # type: ignore[no-untyped-def]
    in_process = fit(make_trainer, seed=1, max_epochs=1, limit_train_batches=3, datamodule=DigitsDataModule())
    workers = fit(
        make_trainer, seed=1, max_epochs=1, limit_train_batches=3, datamodule=DigitsDataModule(num_workers=2)
    )
    assert same_stream(in_process.stream, workers.stream, in_process.stream.keys())
    assert same_weights(in_process, workers)
