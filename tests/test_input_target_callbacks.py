"""InputNoise and TargetNoise in a real Trainer: where noise goes, what is logged, batch layouts, errors."""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import CSVLogger
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from lit_noise import (
    ConfigurationError,
    Cyclic,
    Gaussian,
    InputNoise,
    LabelSmoothing,
    Linear,
    Mask,
    Piecewise,
    SoftLabels,
    SymmetricFlip,
    TargetNoise,
)
from lit_noise.examples import Classifier, DigitsDataModule, build_backbone
from lit_noise.schedules import Clock

Z = 5.0


class Recorder(Classifier):
    """The example classifier, recording every batch it is given, per stage."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.seen: dict[str, list[tuple[Tensor, Tensor]]] = defaultdict(list)
        self.steps: list[int] = []

    def _record(self, stage: str, batch: Sequence[Tensor]) -> None:
        self.seen[stage].append((batch[0].detach().clone(), batch[1].clone()))

    def training_step(self, batch: Sequence[Tensor], batch_idx: int) -> Tensor:
        self._record("train", batch)
        self.steps.append(self.trainer.global_step)
        return super().training_step(batch, batch_idx)

    def validation_step(self, batch: Sequence[Tensor], batch_idx: int) -> Tensor:
        self._record("sanity" if self.trainer.sanity_checking else "val", batch)
        return super().validation_step(batch, batch_idx)

    def test_step(self, batch: Sequence[Tensor], batch_idx: int) -> Tensor:
        self._record("test", batch)
        return super().test_step(batch, batch_idx)

    def predict_step(self, batch: Any, batch_idx: int) -> Tensor:
        self._record("predict", batch)
        return super().predict_step(batch, batch_idx)


def clean_train_batches(data: DigitsDataModule, epoch: int, count: int) -> list[list[Tensor]]:
    loader = data.train_dataloader()
    loader.sampler.set_epoch(epoch)  # type: ignore[attr-defined]
    return list(loader)[:count]


def weights(module: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def assert_same_weights(a: dict[str, Tensor], b: dict[str, Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def read_metrics(path: Path) -> list[dict[str, str]]:
    files = list(path.rglob("metrics.csv"))
    assert len(files) == 1, files
    with files[0].open() as handle:
        return list(csv.DictReader(handle))


# --------------------------------------------------------------------------- only while fitting


def test_noise_reaches_training_step_only(make_trainer) -> None:  # type: ignore[no-untyped-def]
    data = DigitsDataModule(batch_size=64)
    data.setup()
    assert data.train_set is not None
    dataset_before = [t.clone() for t in data.train_set.tensors]
    model = Recorder()
    callbacks = [
        InputNoise(Gaussian(std=0.2), seed=0),
        TargetNoise(SymmetricFlip(p=0.5), num_classes=10, seed=1),
    ]
    trainer = make_trainer(
        limit_train_batches=4, limit_val_batches=2, num_sanity_val_steps=2, callbacks=callbacks
    )
    trainer.fit(model, data)
    trainer.validate(model, data, verbose=False)
    trainer.test(model, data, verbose=False)
    trainer.predict(model, data)

    clean = clean_train_batches(data, 0, 4)
    assert len(model.seen["train"]) == 4
    flips = []
    for (x, y), (clean_x, clean_y) in zip(model.seen["train"], clean, strict=True):
        delta = (x - clean_x).double()
        assert abs(delta.std().item() - 0.2) <= Z * 0.2 / math.sqrt(2 * delta.numel())
        assert abs(delta.mean().item()) <= Z * 0.2 / math.sqrt(delta.numel())
        assert y.dtype == torch.int64
        assert type(y) is Tensor
        flips.append(y != clean_y)
    flipped = torch.cat(flips).double()
    assert abs(flipped.mean().item() - 0.5) <= Z * math.sqrt(0.25 / flipped.numel())
    clean_val = list(data.val_dataloader())[:2]
    clean_test = list(data.test_dataloader())
    for stage, reference in (
        ("sanity", clean_val),
        ("val", clean_val),
        ("test", clean_test),
        ("predict", clean_test),
    ):
        assert len(model.seen[stage]) >= 2, stage
        for (x, y), (clean_x, clean_y) in zip(model.seen[stage], reference, strict=False):
            assert torch.equal(x, clean_x), stage
            assert torch.equal(y, clean_y), stage
    for before, after in zip(dataset_before, data.train_set.tensors, strict=True):
        assert torch.equal(before, after)  # the dataset was never written into


# --------------------------------------------------------------------------- logged strength


@pytest.mark.parametrize("log_every", [1, 3])
def test_logged_strength_equals_schedule(make_trainer, tmp_path: Path, log_every: int) -> None:  # type: ignore[no-untyped-def]
    std = Linear(start=0.0, end=0.5, until=1.0)  # progress
    eps = Cyclic(low=0.0, high=0.2, period=4, unit="step")
    p = Piecewise([(0, 1.0), (6, 0.5)], unit="step", interpolation="constant")
    callbacks = [
        InputNoise(Gaussian(std=std), seed=0),
        TargetNoise(LabelSmoothing(eps=eps), num_classes=10, p=p, seed=1),
    ]
    data = DigitsDataModule(batch_size=64)
    model = Recorder()
    trainer = make_trainer(
        max_epochs=2,
        limit_train_batches=5,
        limit_val_batches=0,
        logger=CSVLogger(tmp_path),
        log_every_n_steps=log_every,
        callbacks=callbacks,
    )
    trainer.fit(model, data)
    total = 10
    rows = [r for r in read_metrics(tmp_path) if r.get("noise/input/std")]
    logged_steps = [int(r["step"]) for r in rows]
    assert logged_steps == [s for s in range(total) if (s + 1) % log_every == 0]
    for row in rows:
        step = int(row["step"])
        clock = Clock(step=step, epoch=step // 5, progress=step / total)
        assert int(row["epoch"]) == clock.epoch
        assert float(row["noise/input/std"]) == pytest.approx(std(clock), abs=1e-6)
        assert float(row["noise/target/eps"]) == pytest.approx(eps(clock), abs=1e-6)
        assert float(row["noise/target/p"]) == pytest.approx(p(clock), abs=1e-6)
    # The noise that reached training_step had that strength.
    clean = clean_train_batches(data, 0, 5) + clean_train_batches(data, 1, 5)
    assert model.steps == list(range(total))
    for step, ((x, y), (clean_x, clean_y)) in enumerate(zip(model.seen["train"], clean, strict=True)):
        expected = std(Clock(step=step, epoch=step // 5, progress=step / total))
        delta = (x - clean_x).double()
        if expected == 0.0:
            assert torch.equal(x, clean_x)
        else:
            assert abs(delta.std().item() - expected) <= Z * expected / math.sqrt(2 * delta.numel())
        assert isinstance(y, SoftLabels)
        assert torch.equal(y.hard, clean_y)
        value = eps(Clock(step=step))
        smoothed = torch.isclose(y.soft.max(1).values, torch.tensor(1 - value + value / 10))
        if p(Clock(step=step)) == 1.0 or value == 0.0:
            assert smoothed.all()


def test_scale_changes_take_effect_next_batch(make_trainer) -> None:  # type: ignore[no-untyped-def]
    noise = InputNoise(Gaussian(std=0.3), seed=0)

    class TurnDown(pl.Callback):
        def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
            if trainer.global_step == 2:
                noise.scale = 0.0  # what a controller does

    data = DigitsDataModule()
    model = Recorder()
    trainer = make_trainer(limit_train_batches=5, limit_val_batches=0, callbacks=[noise, TurnDown()])
    trainer.fit(model, data)
    clean = clean_train_batches(data, 0, 5)
    changed = [not torch.equal(x, c[0]) for (x, _), c in zip(model.seen["train"], clean, strict=True)]
    assert changed == [True, True, False, False, False]
    assert noise.last_values == {"std": 0.0, "mean": 0.0}


# --------------------------------------------------------------------------- p and clamp


def test_per_sample_probability_and_clamp(make_trainer) -> None:  # type: ignore[no-untyped-def]
    callbacks = [
        InputNoise(Gaussian(std=0.5), p=0.3, clamp=(0.0, 1.0), seed=0),
        TargetNoise(LabelSmoothing(eps=0.3), num_classes=10, p=0.5, seed=1),
    ]
    data = DigitsDataModule(batch_size=64)
    model = Recorder()
    trainer = make_trainer(limit_train_batches=8, limit_val_batches=0, callbacks=callbacks)
    trainer.fit(model, data)
    noised, smoothed = [], []
    for (x, y), (clean_x, clean_y) in zip(model.seen["train"], clean_train_batches(data, 0, 8), strict=True):
        assert x.min() >= 0.0
        assert x.max() <= 1.0
        changed = (x != clean_x).flatten(1).any(1)
        assert torch.equal(x[~changed], clean_x[~changed])  # the others are untouched (clean ones unclamped)
        noised.append(changed)
        assert isinstance(y, SoftLabels)
        assert torch.equal(y.hard, clean_y)
        is_smooth = y.soft.max(1).values < 1.0
        one_hot = F.one_hot(clean_y, 10).float()
        assert torch.equal(y.soft[~is_smooth], one_hot[~is_smooth])
        assert torch.allclose(y.soft[is_smooth], 0.7 * one_hot[is_smooth] + 0.03)
        smoothed.append(is_smooth)
    for hits, p in ((torch.cat(noised), 0.3), (torch.cat(smoothed), 0.5)):
        assert abs(hits.double().mean().item() - p) <= Z * math.sqrt(p * (1 - p) / hits.numel())
    assert callbacks[0].last_values == {"std": 0.5, "mean": 0.0, "p": 0.3}


# --------------------------------------------------------------------------- batch layouts


class DictDataset(Dataset[Any]):
    """Samples as dicts, optionally nested: {"image": x, "label": y} or {"inputs": {"image": x}, ...}."""

    def __init__(self, nested: bool = False, size: int = 96) -> None:
        generator = torch.Generator().manual_seed(0)
        self.x = torch.rand(size, 1, 8, 8, generator=generator)
        self.y = torch.randint(0, 10, (size,), generator=generator)
        self.nested = nested

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if self.nested:
            return {"inputs": {"image": self.x[index]}, "target": self.y[index]}
        return {"image": self.x[index], "label": self.y[index]}


class TinyModule(pl.LightningModule):
    """A training-only module (no validation_step) over list [x, y] batches of digits-shaped data."""

    def __init__(self) -> None:
        super().__init__()
        self.net = build_backbone("mlp", (1, 8, 8), 10, 16)
        self.seen: list[tuple[Tensor, Tensor]] = []

    def unpack(self, batch: Any) -> tuple[Tensor, Tensor]:
        return batch[0], batch[1]

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        x, y = self.unpack(batch)
        self.seen.append((x.clone(), y.clone()))
        return F.cross_entropy(self.net(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


class DictModule(TinyModule):
    def __init__(self, nested: bool = False) -> None:
        super().__init__()
        self.nested = nested

    def unpack(self, batch: Any) -> tuple[Tensor, Tensor]:
        if self.nested:
            return batch["inputs"]["image"], batch["target"]
        return batch["image"], batch["label"]


@pytest.mark.parametrize("nested", [False, True])
def test_dict_and_nested_dict_batches(make_trainer, nested: bool) -> None:  # type: ignore[no-untyped-def]
    dataset = DictDataset(nested)
    x_before, y_before = dataset.x.clone(), dataset.y.clone()
    key_x, key_y = ("inputs.image", "target") if nested else ("image", "label")
    callbacks = [
        InputNoise(Gaussian(std=0.1), key=key_x, seed=0),
        TargetNoise(SymmetricFlip(p=1.0), key=key_y, num_classes=10, seed=1),
    ]
    model = DictModule(nested)
    trainer = make_trainer(limit_train_batches=3, callbacks=callbacks)
    trainer.fit(model, train_dataloaders=DataLoader(dataset, batch_size=32))
    for index, (x, y) in enumerate(model.seen):
        clean = slice(32 * index, 32 * (index + 1))
        assert not torch.equal(x, x_before[clean])
        assert (x - x_before[clean]).abs().max() < 1.0
        assert (y != y_before[clean]).all()
    assert torch.equal(dataset.x, x_before)
    assert torch.equal(dataset.y, y_before)


class TensorOnly(Dataset[Tensor]):
    def __init__(self, size: int = 64) -> None:
        self.x = torch.rand(size, 4, generator=torch.Generator().manual_seed(0))

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> Tensor:
        return self.x[index]


class Denoiser(pl.LightningModule):
    """A module whose batches are bare tensors (an autoencoder-style task)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Linear(4, 4)
        self.seen: list[Tensor] = []

    def training_step(self, batch: Tensor, batch_idx: int) -> Tensor:
        self.seen.append(batch.clone())
        return F.mse_loss(self.net(batch), batch)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_bare_tensor_batches_are_noised_in_place(make_trainer) -> None:  # type: ignore[no-untyped-def]
    dataset = TensorOnly()
    before = dataset.x.clone()
    model = Denoiser()
    trainer = make_trainer(limit_train_batches=2, callbacks=[InputNoise(Gaussian(std=0.1), key=None, seed=0)])
    trainer.fit(model, train_dataloaders=DataLoader(dataset, batch_size=16))
    assert len(model.seen) == 2
    for index, x in enumerate(model.seen):
        assert not torch.equal(x, before[16 * index : 16 * (index + 1)])
    assert torch.equal(dataset.x, before)  # collated batches are copies


# --------------------------------------------------------------------------- views of the dataset


class SliceDataset(Dataset[Any]):
    """Hands out slices (views) of its own storage: meant for a loader with batch_size=None."""

    def __init__(self, kind: str) -> None:
        generator = torch.Generator().manual_seed(0)
        self.x = torch.rand(64, 1, 8, 8, generator=generator)
        self.y = torch.randint(0, 10, (64,), generator=generator)
        self.kind = kind

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> Any:
        x, y = self.x[16 * index : 16 * (index + 1)], self.y[16 * index : 16 * (index + 1)]
        if self.kind == "list":
            return [x, y]
        if self.kind == "dict":
            return {"image": x, "label": y}
        return x


@pytest.mark.parametrize("kind", ["list", "dict"])
def test_loader_views_of_the_dataset_come_out_unchanged(make_trainer, kind: str) -> None:  # type: ignore[no-untyped-def]
    dataset = SliceDataset(kind)
    x_before, y_before = dataset.x.clone(), dataset.y.clone()
    model = TinyModule() if kind == "list" else DictModule()
    keys = (0, 1) if kind == "list" else ("image", "label")
    callbacks = [
        InputNoise(Gaussian(std=0.2), key=keys[0], clamp=(0, 1), seed=0),
        TargetNoise(LabelSmoothing(eps=0.2), key=keys[1], num_classes=10, seed=1),
    ]
    trainer = make_trainer(max_epochs=2, callbacks=callbacks)
    trainer.fit(model, train_dataloaders=DataLoader(dataset, batch_size=None))
    seen = model.seen
    assert len(seen) == 8
    assert not torch.equal(seen[0][0], x_before[:16])  # the noise reached training_step...
    assert isinstance(seen[0][1], SoftLabels)
    assert torch.equal(dataset.x, x_before)
    assert torch.equal(dataset.y, y_before)


def _bare_tensor_run(make_trainer):  # type: ignore[no-untyped-def]
    """A dataset of bare-tensor samples, its clean copy, a denoiser, its weights and a noising trainer."""
    dataset = SliceDataset("bare")
    model = Denoiser()
    model.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.Unflatten(1, (1, 8, 8)))
    trainer = make_trainer(callbacks=[InputNoise(Gaussian(std=0.1), key=None, seed=0)])
    return dataset, dataset.x.clone(), model, weights(model), trainer


def test_bare_tensor_from_an_unbatched_loader_is_refused(make_trainer) -> None:  # type: ignore[no-untyped-def]
    dataset, before, model, initial, trainer = _bare_tensor_run(make_trainer)
    with pytest.raises(
        ConfigurationError, match=r"training loader has `batch_size=None`.*change the dataset"
    ):
        trainer.fit(model, train_dataloaders=DataLoader(dataset, batch_size=None))
    assert torch.equal(dataset.x, before)
    assert model.seen == []
    assert_same_weights(initial, weights(model))


def test_bare_tensor_view_is_refused(make_trainer) -> None:  # type: ignore[no-untyped-def]
    dataset, before, model, initial, trainer = _bare_tensor_run(make_trainer)
    loader = DataLoader(dataset, batch_size=1, collate_fn=lambda samples: samples[0])  # passes the view on
    with pytest.raises(ConfigurationError, match=r"bare tensor that is a view of other storage"):
        trainer.fit(model, train_dataloaders=loader)
    assert torch.equal(dataset.x, before)
    assert model.seen == []
    assert_same_weights(initial, weights(model))


def test_tuple_batches_get_a_clear_error(make_trainer) -> None:  # type: ignore[no-untyped-def]
    data = DigitsDataModule(batch_size=32)
    data.setup()
    loader = DataLoader(
        data.train_set, batch_size=32, collate_fn=lambda s: tuple(torch.utils.data.default_collate(s))
    )
    model = TinyModule()
    initial = weights(model)
    trainer = make_trainer(callbacks=[InputNoise(Gaussian(std=0.1), seed=0)])
    with pytest.raises(
        ConfigurationError, match=r"cannot write the noisy tensor back into a tuple.*list or dict"
    ):
        trainer.fit(model, train_dataloaders=loader)
    assert_same_weights(initial, weights(model))


# --------------------------------------------------------------------------- errors before the first step


def dict_loader() -> DataLoader[Any]:
    return DataLoader(DictDataset(), batch_size=32)


def digits_loader() -> DataLoader[Any]:
    return DigitsDataModule(batch_size=32).train_dataloader()


@pytest.mark.parametrize(
    ("callback", "model", "loader", "trainer_args", "pattern"),
    [
        (
            lambda: InputNoise(Gaussian(std=0.1), key=5),
            TinyModule,
            digits_loader,
            {},
            r"InputNoise: `key` 5 is not in the batch \(at 5; available: indices 0\.\.1\)",
        ),
        (
            lambda: InputNoise(Gaussian(std=0.1), key="img"),
            DictModule,
            dict_loader,
            {},
            r"InputNoise: `key` 'img' is not in the batch \(at 'img'; available: \['image', 'label'\]\)",
        ),
        (
            lambda: TargetNoise(Gaussian(std=0.1)),
            TinyModule,
            digits_loader,
            {},
            r"Gaussian adds real-valued noise, so the target must be a floating tensor,"
            r" got dtype torch\.int64",
        ),
        (
            lambda: InputNoise(Gaussian(std=0.1), key=1),
            TinyModule,
            digits_loader,
            {},
            r"the input must be a floating tensor, got dtype torch\.int64",
        ),
        (
            lambda: TargetNoise(SymmetricFlip(p=0.1), key=0, num_classes=10),
            TinyModule,
            digits_loader,
            {},
            r"SymmetricFlip acts on class labels, so a float target must be a \(B, C, \.\.\.\) class"
            r" distribution with C = `num_classes` \(10\); got shape \(32, 1, 8, 8\)",
        ),
        (
            lambda: InputNoise(Mask(p=0.1, value=0), key=1, clamp=(0, 1)),
            TinyModule,
            digits_loader,
            {},
            r"InputNoise: `clamp` \[0\.0, 1\.0\] clips floating inputs, but the input at `key` 1 has dtype"
            r" torch\.int64",
        ),
        (
            lambda: InputNoise(Gaussian(std=Linear(start=0.0, end=0.1, until=1.0))),
            TinyModule,
            digits_loader,
            {"max_epochs": -1, "max_steps": -1},
            r"InputNoise\('input'\): a schedule in unit 'progress' needs a finite training length",
        ),
        (
            lambda: TargetNoise(SymmetricFlip(p=Linear(start=0.0, end=0.1, until=1.0)), num_classes=10),
            TinyModule,
            digits_loader,
            {"max_epochs": -1, "max_steps": -1},
            r"TargetNoise\('target'\): a schedule in unit 'progress' needs a finite training length",
        ),
    ],
)
def test_errors_before_the_first_step(make_trainer, callback, model, loader, trainer_args, pattern) -> None:  # type: ignore[no-untyped-def]
    module = model()
    initial = weights(module)
    trainer = make_trainer(callbacks=[callback()], **trainer_args)
    with pytest.raises(ConfigurationError, match=pattern):
        trainer.fit(module, train_dataloaders=loader())
    assert trainer.global_step == 0
    assert_same_weights(initial, weights(module))


@pytest.mark.parametrize(
    ("build", "pattern"),
    [
        (
            lambda: InputNoise(LabelSmoothing(eps=0.1, num_classes=3)),
            r"`noise` must be an input noise.*TargetNoise",
        ),
        (lambda: InputNoise(SymmetricFlip(p=0.1, num_classes=3)), r"got the label noise SymmetricFlip"),
        (lambda: TargetNoise(LabelSmoothing(eps=0.1)), r"LabelSmoothing needs the number of classes"),
        (
            lambda: TargetNoise(SymmetricFlip(p=0.1, num_classes=3), num_classes=4),
            r"`num_classes` must be the same",
        ),
        (
            lambda: InputNoise("gaussian"),
            r"InputNoise: `noise` must be a lit_noise\.noise\.Noise.*'gaussian'",
        ),
        (
            lambda: InputNoise(Gaussian(std=0.1), p=1.5),
            r"InputNoise: `p` must be a probability in \[0, 1\], got 1\.5",
        ),
        (
            lambda: TargetNoise(Gaussian(std=0.1), p=-0.1),
            r"TargetNoise: `p` must be a probability in \[0, 1\]",
        ),
        (
            lambda: InputNoise(Gaussian(std=0.1), p=Linear(start=0.5, end=1.5, until=1.0)),
            r"`p` must be a probability in \[0, 1\]",
        ),
        (
            lambda: InputNoise(Gaussian(std=0.1), p="all"),
            r"`p` must be a probability in \[0, 1\] or a schedule",
        ),
        (
            lambda: InputNoise(Gaussian(std=0.1), clamp=(1.0, 0.0)),
            r"InputNoise: `clamp` must be a \(low, high\) pair",
        ),
        (
            lambda: InputNoise(Gaussian(std=0.1), clamp=0.5),
            r"InputNoise: `clamp` must be None or a \(low, high\)",
        ),
        (lambda: InputNoise(Gaussian(std=0.1), key=1.5), r"InputNoise: `key` must be an int, a str"),
        (
            lambda: InputNoise(Gaussian(std=0.1), seed=-1),
            r"InputNoise: `seed` must be an integer in \[0, 2\*\*64 - 1\], got -1",
        ),
        (lambda: InputNoise(Gaussian(std=0.1), scale=-1.0), r"InputNoise: `scale` must be >= 0, got -1\.0"),
        (lambda: InputNoise(Gaussian(std=0.1), name=""), r"InputNoise: `name` must be a non-empty string"),
    ],
)
def test_constructor_errors(build: Callable[[], object], pattern: str) -> None:
    with pytest.raises(ConfigurationError, match=pattern):
        build()


# --------------------------------------------------------------------------- state


def test_state_dict_round_trip_and_keys() -> None:
    callback = InputNoise(Gaussian(std=0.1), seed=3, scale=0.5, name="pixels")
    state = callback.state_dict()
    assert state == {"seed": 3, "scale": 0.5}
    fresh = InputNoise(Gaussian(std=0.1), name="pixels")
    fresh.load_state_dict(state)
    assert (fresh.seed, fresh.scale) == (3, 0.5)
    partial = InputNoise(Gaussian(std=0.1), seed=7, scale=2.0)
    partial.load_state_dict({})  # a checkpoint from before these keys existed: defaults stay
    assert (partial.seed, partial.scale) == (7, 2.0)
    partial.load_state_dict({"scale": 0.25})
    assert (partial.seed, partial.scale) == (7, 0.25)
    keys = {
        InputNoise(Gaussian(std=0.1)).state_key,
        InputNoise(Gaussian(std=0.1), name="other").state_key,
        TargetNoise(Gaussian(std=0.1)).state_key,
        TargetNoise(Gaussian(std=0.1), name="other").state_key,
    }
    assert len(keys) == 4
    assert InputNoise(Gaussian(std=0.1)).state_key == InputNoise(Gaussian(std=0.2)).state_key


def test_two_named_callbacks_coexist_and_log_separately(make_trainer, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    callbacks = [
        InputNoise(Gaussian(std=0.1), name="a", seed=0),
        InputNoise(Gaussian(std=0.2), name="b", seed=0),
    ]
    trainer = make_trainer(
        limit_train_batches=2,
        limit_val_batches=0,
        logger=CSVLogger(tmp_path),
        log_every_n_steps=1,
        callbacks=callbacks,
    )
    model = Recorder()
    data = DigitsDataModule()
    trainer.fit(model, data)
    rows = [r for r in read_metrics(tmp_path) if r.get("noise/a/std")]
    logged = [(float(r["noise/a/std"]), float(r["noise/b/std"])) for r in rows]
    assert logged == [pytest.approx((0.1, 0.2))] * 2
    # Same seed, different names: independent streams, total variance 0.1^2 + 0.2^2.
    delta = (model.seen["train"][0][0] - clean_train_batches(data, 0, 1)[0][0]).double()
    assert abs(delta.std().item() - math.sqrt(0.05)) <= Z * math.sqrt(0.05) / math.sqrt(2 * delta.numel())


class Regressor(pl.LightningModule):
    """A regression module: float targets, MSE."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Linear(4, 1)
        self.targets: list[Tensor] = []

    def training_step(self, batch: Sequence[Tensor], batch_idx: int) -> Tensor:
        self.targets.append(batch[1].clone())
        return F.mse_loss(self.net(batch[0]).squeeze(1), batch[1])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)


def test_gaussian_noise_on_regression_targets(make_trainer) -> None:  # type: ignore[no-untyped-def]
    generator = torch.Generator().manual_seed(0)
    x, y = torch.rand(512, 4, generator=generator), torch.rand(512, generator=generator)
    dataset = torch.utils.data.TensorDataset(x, y)
    model = Regressor()
    trainer = make_trainer(callbacks=[TargetNoise(Gaussian(std=0.05, mean=0.1), seed=0)])
    trainer.fit(model, train_dataloaders=DataLoader(dataset, batch_size=128))
    delta = (torch.cat(model.targets) - y).double()
    assert model.targets[0].dtype == torch.float32
    assert abs(delta.mean().item() - 0.1) <= Z * 0.05 / math.sqrt(delta.numel())
    assert abs(delta.std().item() - 0.05) <= Z * 0.05 / math.sqrt(2 * delta.numel())
    assert torch.equal(dataset.tensors[1], y)


def test_sample_probability_does_not_hide_the_noise_rate(make_trainer) -> None:  # type: ignore[no-untyped-def]
    # SymmetricFlip's own `p` and the callback's per-sample `p` are both logged, under different keys.
    flip = TargetNoise(SymmetricFlip(p=0.2), num_classes=10, p=0.5, seed=0)
    gated = InputNoise(Gaussian(std=0.1), p=0.25, seed=0)
    trainer = make_trainer(callbacks=[flip, gated], limit_train_batches=2, limit_val_batches=0)
    trainer.fit(Classifier(), DigitsDataModule(batch_size=32))
    assert flip.last_values == {"p": 0.2, "sample_p": 0.5}
    assert gated.last_values == {"std": 0.1, "mean": 0.0, "p": 0.25}
