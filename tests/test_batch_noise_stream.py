"""InputNoise / TargetNoise per batch: the exact counter-based stream, no reseed without draws, few hooks.

The stream is pinned against a splitmix64 written out here (the published constants of Steele, Lea
and Flood's SplitMix64) and draws made here with fresh generators, so a faster hot path cannot
change the noise of a seed unnoticed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.profilers import PassThroughProfiler
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from _reference_rng import MASK, reference_seed, splitmix64
from _trainers import quiet_trainer
from lit_noise import (
    Gaussian,
    InputNoise,
    LabelSmoothing,
    Laplace,
    Mask,
    PairFlip,
    SaltAndPepper,
    Speckle,
    SymmetricFlip,
    TargetNoise,
    TransitionMatrix,
    Uniform,
)
from lit_noise._rng import GeneratorCache, mix_counter, mix_seed
from lit_noise.callbacks.batch_noise import BatchNoise
from lit_noise.noise.base import Noise

STD, FLIP_P, CLASSES, SEED_IN, SEED_TG = 0.3, 0.4, 5, 11, 12


class Recorder(pl.LightningModule):
    """A linear model that keeps the batch every training step receives, by (epoch, batch_idx)."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(4, CLASSES)
        self.seen: dict[tuple[int, int], tuple[Tensor, Any]] = {}

    def training_step(self, batch: list[Any], batch_idx: int) -> Tensor:
        x, y = batch
        self.seen[(self.current_epoch, batch_idx)] = (x.clone(), getattr(y, "soft", y).clone())
        return nn.functional.cross_entropy(self.layer(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def data() -> tuple[Tensor, Tensor, DataLoader[Any]]:
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(24, 4, generator=g), torch.randint(0, CLASSES, (24,), generator=g)
    return x, y, DataLoader(TensorDataset(x, y), batch_size=8)  # not shuffled: batch i is rows 8i..8i+7


def fit(callbacks: Sequence[pl.Callback], **options: Any) -> Recorder:
    model = Recorder()
    trainer = quiet_trainer(callbacks=list(callbacks), **{"max_epochs": 2, "limit_val_batches": 0, **options})
    trainer.fit(model, data()[2])
    return model


@pytest.fixture(scope="module")
def flipped() -> tuple[Recorder, list[BatchNoise]]:
    callbacks: list[BatchNoise] = [
        InputNoise(Gaussian(std=STD), seed=SEED_IN),
        TargetNoise(SymmetricFlip(p=FLIP_P), num_classes=CLASSES, seed=SEED_TG),
    ]
    return fit(callbacks), callbacks


def test_input_and_flip_noise_are_the_documented_counter_stream(flipped: Any) -> None:
    model, _ = flipped
    x, y, _ = data()
    assert sorted(model.seen) == [(e, b) for e in range(2) for b in range(3)]
    for (epoch, b), (x_seen, y_seen) in model.seen.items():
        rows = slice(8 * b, 8 * b + 8)
        g = torch.Generator().manual_seed(reference_seed(SEED_IN, "InputNoise/input", epoch, b))
        expected_x = x[rows] + STD * torch.randn(8, 4, generator=g)
        torch.testing.assert_close(x_seen, expected_x, rtol=0, atol=1e-6)
        g = torch.Generator().manual_seed(reference_seed(SEED_TG, "TargetNoise/target", epoch, b))
        offset = torch.randint(1, CLASSES, (8,), generator=g)
        flip = torch.rand(8, generator=g) < FLIP_P
        expected_y = torch.where(flip, (y[rows] + offset) % CLASSES, y[rows])
        assert torch.equal(y_seen, expected_y), (epoch, b)


def test_label_smoothing_seeds_no_generator_unless_gated() -> None:
    plain = TargetNoise(LabelSmoothing(eps=0.2), num_classes=CLASSES, seed=1, name="plain")
    gated = TargetNoise(LabelSmoothing(eps=0.2), num_classes=CLASSES, p=0.5, seed=2, name="gated")
    model = fit([plain, gated], max_epochs=1, limit_train_batches=2)
    assert plain._generators._generators == {}  # smoothing draws nothing: nothing to reseed
    assert len(gated._generators._generators) == 1  # the per-sample gate draws
    _, y, _ = data()
    g = torch.Generator().manual_seed(reference_seed(2, "TargetNoise/gated", 0, 1))
    keep = torch.rand(8, generator=g) < 0.5
    # both callbacks act on the batch in turn: plain smooths all rows, gated smooths plain's rows again
    once = nn.functional.one_hot(y[8:16], CLASSES).float() * 0.8 + 0.2 / CLASSES
    expected = torch.where(keep.unsqueeze(1), once * 0.8 + 0.2 / CLASSES, once)
    torch.testing.assert_close(model.seen[(0, 1)][1], expected)


@pytest.mark.parametrize(
    "noise",
    [
        Gaussian(std=0.1),
        Uniform(width=0.1),
        Laplace(scale=0.1),
        SaltAndPepper(amount=0.1),
        Speckle(std=0.1),
        Mask(p=0.2),
        LabelSmoothing(eps=0.1, num_classes=CLASSES),
        SymmetricFlip(p=0.2, num_classes=CLASSES),
        PairFlip(p=0.2, num_classes=CLASSES),
        TransitionMatrix([[0.5, 0.5], [0.5, 0.5]]),
    ],
    ids=lambda n: type(n).__name__,
)
def test_draws_says_whether_apply_consumes_the_generator(noise: Noise) -> None:
    labels = noise.applies_to == "labels"
    x = torch.randint(0, 2, (16,)) if labels else torch.rand(16)
    g = torch.Generator().manual_seed(3)
    before = g.get_state()
    noise.apply(x, noise.resolve(), g)
    assert (not torch.equal(before, g.get_state())) is noise.draws


class HookNames(PassThroughProfiler):
    """Records the action names Lightning profiles: ``[Callback]<state_key>.<hook>`` for callback hooks."""

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []

    def start(self, action_name: str) -> None:
        self.names.append(action_name)


def test_lightning_dispatches_only_the_batch_start_hook_per_training_batch() -> None:
    noise, plain = InputNoise(Gaussian(std=0.1), seed=0), pl.Callback()
    profiler = HookNames()
    fit([noise, plain], max_epochs=1, limit_train_batches=3, profiler=profiler)
    per_batch = {"on_train_batch_start", "on_before_backward", "on_after_backward", "on_train_batch_end"}

    def hooks(state_key: str) -> list[str]:
        prefix = f"[Callback]{state_key}."
        return [n[len(prefix) :] for n in profiler.names if n.startswith(prefix)]

    assert per_batch <= set(hooks(plain.state_key))  # the recorder sees the hooks of a plain callback
    noise_hooks = hooks(noise.state_key)
    assert noise_hooks.count("on_train_batch_start") == 3
    assert not per_batch.intersection(noise_hooks) - {"on_train_batch_start"}


@pytest.mark.parametrize("counter", [0, 1, 12345, -7, (1 << 64) + 5, (3 << 62) + 99])
def test_mix_counter_is_one_splitmix64_round(counter: int) -> None:
    expected = splitmix64(counter & MASK) & ((1 << 63) - 1)
    assert mix_counter(counter) == expected == mix_seed(counter)


def test_generator_cache_seeded_is_get_without_the_hash() -> None:
    cache, cpu = GeneratorCache(), torch.device("cpu")
    a = torch.rand(4, generator=cache.get(cpu, 5, 6))
    b = torch.rand(4, generator=cache.seeded(cpu, mix_seed(5, 6)))
    c = torch.rand(4, generator=torch.Generator().manual_seed(mix_seed(5, 6)))
    assert torch.equal(a, b)
    assert torch.equal(b, c)
    assert len(cache._generators) == 1


def test_batch_noise_key_defaults_to_the_first_entry() -> None:
    assert BatchNoise(Gaussian(std=0.1)).key == 0
    with pytest.raises(ValueError, match="InputNoise: `noise` must be an input noise"):
        InputNoise(LabelSmoothing(eps=0.1))
