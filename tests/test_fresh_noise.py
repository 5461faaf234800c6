"""Fresh noise on every batch and every epoch, for every noise source; reproducible by seed.

Each run trains for 2 epochs of 3 batches on one batch repeated (a dataset of identical batches,
no shuffling), so whatever differs between the six training steps is the noise. The oracle is what
each source did to the batch, read off the tensors in the test -- the noisy minus the clean inputs,
the perturbed minus the clean weights, the gradient after minus before the noise, a layer's output
against its input, the flipped labels, which samples were smoothed, the mixing partners, λs and
pasted boxes recovered from the mixed batch -- never the library's seeding helpers. The six patterns
of a run must be pairwise different (a seed that ignores the epoch repeats epoch 0's noise in
epoch 1), a second run with the same seeds must reproduce them bit for bit, and other seeds must
give other ones.

Also here: with ``p < 1`` the samples left un-noised come back bit for bit, unclamped.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from itertools import combinations
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from _trainers import quiet_trainer
from lit_noise import (
    SNR,
    Gaussian,
    GaussianDropout,
    GaussianNoise,
    GradientNoise,
    InputNoise,
    LabelSmoothing,
    Laplace,
    Mask,
    MixupDataModule,
    NoiseLayerSchedule,
    SaltAndPepper,
    Speckle,
    SymmetricFlip,
    TargetNoise,
    Uniform,
    WeightNoise,
)

B, H, W, CLASSES = 32, 4, 4, 10
EPOCHS, BATCHES = 2, 3
STEPS = [(e, b) for e in range(EPOCHS) for b in range(BATCHES)]

#: Clean inputs in [0.2, 0.8] (no zeros: Speckle and SNR scale with the input), sample i constant
#: (i + 1) / 64 on the mixing key so that pasted boxes show, labels 0..9.
X = 0.2 + 0.6 * torch.rand(B, 1, H, W, generator=torch.Generator().manual_seed(0))
MIX_X = (torch.arange(B, dtype=torch.float32) + 1).div(64).view(B, 1, 1, 1).expand(B, 1, H, W).contiguous()
Y = torch.arange(B) % CLASSES

INPUT_NOISES: dict[str, Any] = {
    "gaussian": lambda: Gaussian(std=0.1),
    "uniform": lambda: Uniform(width=0.2),
    "laplace": lambda: Laplace(scale=0.1),
    "salt_and_pepper": lambda: SaltAndPepper(amount=0.3),
    "speckle": lambda: Speckle(std=0.2),
    "snr": lambda: SNR(db=10.0),
    "mask": lambda: Mask(p=0.3, value=0.0),
}


class RepeatedBatch(Dataset[dict[str, Tensor]]):
    """``BATCHES`` copies of one batch, one sample at a time (a fresh dict per sample)."""

    def __len__(self) -> int:
        return B * BATCHES

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        i = index % B
        sample = dict.fromkeys(INPUT_NOISES, X[i])
        sample.update(x=X[i], y=Y[i], flip_y=Y[i], smooth_y=Y[i], mix_x=MIX_X[i], mix_y=torch.tensor(i))
        return sample


class RepeatedData(pl.LightningDataModule):
    num_classes = B  # the mixing key's labels are the sample indices

    def train_dataloader(self) -> DataLoader[dict[str, Tensor]]:
        return DataLoader(RepeatedBatch(), batch_size=B, shuffle=False)


class Recorder(pl.LightningModule):
    """Tiny model with two noise layers; records every source's effect at each training step."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.gauss = GaussianNoise(std=0.1)
        self.hidden = nn.Linear(H * W, 16)
        self.dropout = GaussianDropout(rate=0.2)
        self.head = nn.Linear(16, CLASSES)
        self.patterns: dict[str, list[Tensor]] = defaultdict(list)
        self.gauss.register_forward_hook(self._record("layer_gaussian_noise", lambda i, o: o - i))
        self.dropout.register_forward_hook(self._record("layer_gaussian_dropout", lambda i, o: o / i))

    def _record(self, name: str, effect: Any) -> Any:
        def hook(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
            if module.training:
                self.patterns[name].append(effect(inputs[0], output).detach().clone())

        return hook

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.dropout(self.hidden(self.gauss(x.flatten(1)))))

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        record = self.patterns
        for name in INPUT_NOISES:
            record[f"input_{name}"].append(batch[name] - X)
        record["input_gated"].append(batch["x"] - X)
        record["target_flip"].append(batch["flip_y"].clone())
        smoothed = batch["smooth_y"].soft.max(dim=1).values < 1.0  # which samples LabelSmoothing hit
        record["target_smoothing_gate"].append(smoothed)
        mixed_y = batch["mix_y"].soft
        own = mixed_y.diagonal().clone()  # the own-sample weight λ_i of sample i (label i)
        partner = mixed_y.clone().fill_diagonal_(0.0).argmax(dim=1)
        record["mix_lam"].append(own)
        record["mix_partners"].append(torch.where(own < 1.0, partner, -1))
        record["mix_boxes"].append(batch["mix_x"] != MIX_X)
        record["mix_inputs"].append(batch["mix_x"].clone())
        return nn.functional.cross_entropy(self(batch["x"]), batch["y"])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


class WeightRecorder(pl.Callback):
    """Around WeightNoise: the clean weights before it, the perturbation after it."""

    def __init__(self, clean: dict[str, Tensor] | None = None) -> None:
        self.clean = clean if clean is not None else {}

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        weight = pl_module.hidden.weight.detach()
        if "weight" not in self.clean:
            self.clean["weight"] = weight.clone()
        else:
            pl_module.patterns["weight"].append(weight - self.clean.pop("weight"))


class GradientRecorder(pl.Callback):
    """Around GradientNoise: the gradient before it, the added noise after it."""

    def __init__(self, clean: dict[str, Tensor] | None = None) -> None:
        self.clean = clean if clean is not None else {}

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any
    ) -> None:
        grad = pl_module.hidden.weight.grad.detach()
        if "grad" not in self.clean:
            self.clean["grad"] = grad.clone()
        else:
            pl_module.patterns["gradient"].append(grad - self.clean.pop("grad"))


def fit(seed: int, mode: str = "elem") -> dict[str, list[Tensor]]:
    """One run of 2 epochs x 3 identical batches with every noise source seeded from ``seed``."""
    seeds: Iterator[int] = iter(range(seed, seed + 100))
    weights: dict[str, Tensor] = {}
    grads: dict[str, Tensor] = {}
    callbacks: list[pl.Callback] = [
        InputNoise(make(), key=name, name=name, seed=next(seeds)) for name, make in INPUT_NOISES.items()
    ]
    callbacks += [
        InputNoise(Gaussian(std=0.3), key="x", p=0.5, clamp=(0.0, 1.0), name="gated", seed=next(seeds)),
        TargetNoise(SymmetricFlip(p=0.5), key="flip_y", num_classes=CLASSES, name="flip", seed=next(seeds)),
        TargetNoise(
            LabelSmoothing(eps=0.1),
            key="smooth_y",
            num_classes=CLASSES,
            p=0.5,
            name="smooth",
            seed=next(seeds),
        ),
        WeightRecorder(weights),
        WeightNoise(Gaussian(std=0.05), include="hidden.weight", relative=False, seed=next(seeds)),
        WeightRecorder(weights),
        GradientRecorder(grads),
        GradientNoise(std=0.01, include="hidden.weight", seed=next(seeds)),
        GradientRecorder(grads),
        NoiseLayerSchedule(seed=next(seeds)),
    ]
    data = MixupDataModule(
        RepeatedData(),
        mixup_alpha=1.0,
        cutmix_alpha=1.0,
        switch_prob=0.5,
        mode=mode,  # type: ignore[arg-type]
        input_key="mix_x",
        target_key="mix_y",
        seed=next(seeds),
    )
    model = Recorder()
    trainer = quiet_trainer(
        max_epochs=EPOCHS,
        callbacks=callbacks,
        limit_val_batches=0,
        log_every_n_steps=1,
        num_sanity_val_steps=0,
    )
    trainer.fit(model, data)
    return dict(model.patterns)


@pytest.fixture(scope="module")
def runs() -> tuple[dict[str, list[Tensor]], ...]:
    """The same seeds twice, then other seeds."""
    return fit(10), fit(10), fit(500)


@pytest.fixture(scope="module")
def batch_mode_runs() -> tuple[dict[str, list[Tensor]], ...]:
    """Mixing mode "batch" (one λ and box per batch, drawn on the host)."""
    return fit(10, "batch"), fit(10, "batch"), fit(500, "batch")


def differ(a: Tensor, b: Tensor) -> bool:
    """Clearly different: not equal beyond rounding (patterns of weights and gradients carry rounding)."""
    if a.dtype == torch.bool or not a.is_floating_point():
        return not torch.equal(a, b)
    return bool((a.double() - b.double()).abs().max() > 1e-4 * max(float(a.abs().max()), 1e-12))


SOURCES = [f"input_{name}" for name in INPUT_NOISES] + [
    "input_gated",
    "target_flip",
    "target_smoothing_gate",
    "weight",
    "gradient",
    "layer_gaussian_noise",
    "layer_gaussian_dropout",
    "mix_lam",
    "mix_partners",
    "mix_boxes",
    "mix_inputs",
]


def check_fresh_and_reproducible(runs: tuple[dict[str, list[Tensor]], ...], source: str) -> None:
    first, again, other = (run[source] for run in runs)
    assert len(first) == len(again) == len(other) == len(STEPS)
    for (i, a), (j, b) in combinations(enumerate(first), 2):
        assert differ(a, b), f"{source}: step {STEPS[i]} and step {STEPS[j]} got the same noise"
    for step, a, b, c in zip(STEPS, first, again, other, strict=True):
        assert torch.equal(a, b), f"{source}: same seed, different noise at step {step}"
        assert differ(a, c), f"{source}: another seed gave the same noise at step {step}"


@pytest.mark.parametrize("source", SOURCES)
def test_every_source_draws_fresh_noise_each_batch_and_epoch(
    runs: tuple[dict[str, list[Tensor]], ...], source: str
) -> None:
    first = runs[0][source]
    if source not in ("mix_partners", "input_gated"):
        assert all(bool(p.any()) if p.dtype == torch.bool else bool((p != 0).any()) for p in first), source
    check_fresh_and_reproducible(runs, source)


@pytest.mark.parametrize("source", ["mix_lam", "mix_partners", "mix_inputs"])
def test_batch_mode_mixing_is_fresh_each_batch_and_epoch(
    batch_mode_runs: tuple[dict[str, list[Tensor]], ...], source: str
) -> None:
    if source == "mix_lam":  # one λ for the whole batch (the partner-less samples aside)
        first, again, other = (run[source] for run in batch_mode_runs)
        assert all(p.unique().numel() == 1 for p in first)
        assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True)), "same seed, other λ"
        # CutMix on 4x4 images has only 16 box λs, so two of six batches may share one by chance; a
        # seed that ignored the epoch would give 3 distinct λs, one that ignored the batch index 2.
        for run in (first, other):
            assert len({float(p[0]) for p in run}) >= 4, [float(p[0]) for p in run]
        assert any(differ(a, c) for a, c in zip(first, other, strict=True)), "another seed, same λs"
        return
    check_fresh_and_reproducible(batch_mode_runs, source)


def test_the_noise_patterns_are_what_each_source_promises(runs: tuple[dict[str, list[Tensor]], ...]) -> None:
    """Sanity of the oracle itself: the recorded patterns have the documented size and kind."""
    patterns = runs[0]
    noise = torch.stack(patterns["input_gaussian"])
    assert 0.09 < float(noise.std()) < 0.11  # Gaussian(std=0.1)
    assert float(torch.stack(patterns["input_uniform"]).abs().max()) <= 0.2  # Uniform(width=0.2)
    masked = torch.stack(patterns["input_mask"]) != 0
    assert 0.25 < float(masked.float().mean()) < 0.35  # Mask(p=0.3)
    gate = torch.stack(patterns["target_smoothing_gate"]).float()
    assert 0.35 < float(gate.mean()) < 0.65  # TargetNoise(p=0.5)
    assert 0.04 < float(torch.stack(patterns["weight"]).std()) < 0.06  # WeightNoise(Gaussian(std=0.05))
    ratio = torch.stack(patterns["layer_gaussian_dropout"]) - 1  # sqrt(0.2 / 0.8) = 0.5
    assert 0.45 < float(ratio.std()) < 0.55
    partners = torch.stack(patterns["mix_partners"])
    mixed = partners >= 0
    assert bool((partners[mixed] != torch.arange(B).expand_as(partners)[mixed]).all())  # never itself


def test_clamp_leaves_un_noised_samples_bit_for_bit() -> None:
    """``p < 1`` with ``clamp``: a sample left clean keeps its values outside the clamp range.

    Inputs in [-2, 3] with ``clamp=(0, 1)`` and ``p=0.5``: every sample either comes back exactly
    as it was (values outside [0, 1] included) or lies entirely inside [0, 1].
    """
    x = -2.0 + 5.0 * torch.rand(64, 6, generator=torch.Generator().manual_seed(3))
    seen: list[Tensor] = []

    class Clamped(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = nn.Linear(6, 2)

        def training_step(self, batch: list[Tensor], batch_idx: int) -> Tensor:
            seen.append(batch[0].clone())
            return self.layer(batch[0]).square().mean()

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.01)

    loader = DataLoader(torch.utils.data.TensorDataset(x, torch.zeros(64)), batch_size=64)
    noise = InputNoise(Gaussian(std=0.1), p=0.5, clamp=(0.0, 1.0), seed=0)
    quiet_trainer(max_epochs=3, callbacks=[noise], limit_val_batches=0).fit(Clamped(), loader)
    assert len(seen) == 3
    for batch in seen:
        untouched = (batch == x).all(dim=1)
        inside = ((batch >= 0) & (batch <= 1)).all(dim=1)
        assert bool((untouched | inside).all())
        assert bool((untouched & ~inside).any())  # some clean samples keep out-of-range values
        assert 10 < int(untouched.sum()) < 54  # about half of 64 left clean
        assert bool((~untouched).any())
