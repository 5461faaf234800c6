"""Several noise sources in one Trainer: names, checkpoint state keys, and settings as hyperparameters."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.core.saving import load_hparams_from_yaml
from lightning.pytorch.loggers import CSVLogger, WandbLogger
from torch import Tensor
from torch.utils.data import DataLoader

from _trainers import quiet_trainer
from lit_noise import (
    ConfigurationError,
    Gaussian,
    GaussianDropout,
    GradientNoise,
    InputNoise,
    LabelSmoothing,
    Linear,
    MixupDataModule,
    NoiseLayerSchedule,
    SoftLabels,
    Speckle,
    SymmetricFlip,
    TargetNoise,
    WeightNoise,
    hard,
    soft,
)
from lit_noise.callbacks.base import source_names
from lit_noise.examples import Classifier, DigitsDataModule

C = 10
Z = 5.0
MakeTrainer = Callable[..., pl.Trainer]


def read_metrics(root: Path) -> list[dict[str, str]]:
    import csv

    (file,) = list(root.rglob("metrics.csv"))
    with file.open() as handle:
        return list(csv.DictReader(handle))


class Recorder(Classifier):
    """The example classifier, keeping the targets ``training_step`` receives."""

    def __init__(self) -> None:
        super().__init__()
        self.targets: list[Tensor] = []

    def training_step(self, batch: Sequence[Tensor], batch_idx: int) -> Tensor:
        self.targets.append(batch[1])
        return super().training_step(batch, batch_idx)


def clean_labels(data: DigitsDataModule, epoch: int, count: int) -> list[Tensor]:
    loader = data.train_dataloader()
    loader.sampler.set_epoch(epoch)  # type: ignore[attr-defined]
    return [y for _, y in list(loader)[:count]]


# --------------------------------------------------------------------------- names


def test_names_come_from_the_role_alone_or_from_role_and_noise() -> None:
    flip = TargetNoise(SymmetricFlip(p=0.2), num_classes=C)
    smooth = TargetNoise(LabelSmoothing(eps=0.1), num_classes=C)
    inputs = InputNoise(Gaussian(std=0.1))
    named = TargetNoise(SymmetricFlip(p=0.1), num_classes=C, name="flip")
    for callbacks in ([flip, smooth, inputs], [inputs, smooth, flip]):  # independent of the order
        names = source_names(callbacks)
        assert [names[id(cb)] for cb in (flip, smooth, inputs)] == [
            "target_symmetric_flip",
            "target_label_smoothing",
            "input",
        ]
    # One unnamed callback of its role keeps the plain role name; given names are kept as they are.
    names = source_names([smooth, named, inputs])
    assert [names[id(cb)] for cb in (smooth, named, inputs)] == ["target", "flip", "input"]
    assert smooth.name == "target"  # resolution only happens in a Trainer's setup
    # Other callbacks are no noise sources; different roles never clash.
    others = [pl.Callback(), WeightNoise(Gaussian(std=0.01)), GradientNoise(0.1)]
    assert sorted(source_names(others).values()) == ["gradient", "weight"]


def test_unnamed_state_keys_differ_by_noise_and_place_not_by_strength() -> None:
    flip, smooth = SymmetricFlip(p=0.2, num_classes=C), LabelSmoothing(eps=0.1, num_classes=C)
    assert TargetNoise(flip).state_key != TargetNoise(smooth).state_key
    assert TargetNoise(smooth).state_key == TargetNoise(LabelSmoothing(eps=0.3, num_classes=C)).state_key
    assert InputNoise(Gaussian(std=0.1)).state_key != InputNoise(Gaussian(std=0.1), key="x").state_key
    assert (
        WeightNoise(Gaussian(std=0.1), include="a*").state_key
        != WeightNoise(Gaussian(std=0.1), include="b*").state_key
    )
    assert GradientNoise(0.1, exclude="*.bias").state_key != GradientNoise(0.1).state_key
    # A given name is the whole key, as before: a resumed run may change anything else.
    assert (
        InputNoise(Gaussian(std=0.1), name="a").state_key == InputNoise(Speckle(std=0.2), name="a").state_key
    )


def test_flip_and_smoothing_without_names_in_one_trainer(make_trainer: MakeTrainer, tmp_path: Path) -> None:
    p, eps = 0.3, 0.1
    flip = TargetNoise(SymmetricFlip(p=p), num_classes=C, seed=0)
    smooth = TargetNoise(LabelSmoothing(eps=eps), num_classes=C, seed=0)
    trainer = make_trainer(  # Lightning refused this with "Found more than one stateful callback"
        limit_train_batches=4,
        limit_val_batches=0,
        logger=CSVLogger(tmp_path),
        log_every_n_steps=1,
        callbacks=[flip, smooth],
    )
    model, data = Recorder(), DigitsDataModule()
    trainer.fit(model, data)
    assert (flip.name, smooth.name) == ("target_symmetric_flip", "target_label_smoothing")
    rows = [r for r in read_metrics(tmp_path) if r.get("noise/target_symmetric_flip/p")]
    assert len(rows) == 4
    assert all(float(r["noise/target_symmetric_flip/p"]) == pytest.approx(p) for r in rows)
    assert all(float(r["noise/target_label_smoothing/eps"]) == pytest.approx(eps) for r in rows)
    # Both act: the flip first (the order of the callbacks), then smoothing of the flipped label.
    assert all(isinstance(y, SoftLabels) for y in model.targets)
    received = torch.cat([hard(y) for y in model.targets])
    distribution = torch.cat([soft(y) for y in model.targets])
    clean = torch.cat(clean_labels(data, 0, 4))
    smoothed = (1 - eps) * F.one_hot(received, C).float() + eps / C
    assert torch.allclose(distribution, smoothed, atol=1e-6)
    flipped = (received != clean).double().mean().item()
    n = clean.numel()
    assert abs(flipped - p) <= Z * math.sqrt(p * (1 - p) / n)


class _Ones(torch.utils.data.Dataset[dict[str, Tensor]]):
    def __len__(self) -> int:
        return 64

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return {"a": torch.ones(256), "b": torch.ones(256), "y": torch.tensor(index % 2)}


class _Keep(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(256, 2)
        self.batches: list[dict[str, Tensor]] = []

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        self.batches.append(batch)
        return F.cross_entropy(self.layer(batch["a"] + batch["b"]), batch["y"])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.0)


def test_unnamed_sources_with_one_seed_draw_independent_noise(make_trainer: MakeTrainer) -> None:
    # x + N(0, 1) and x * (1 + N(0, 1)) of x = 1 read the same normal draws if the streams were equal.
    callbacks = [
        InputNoise(Gaussian(std=1.0), key="a", seed=5),
        InputNoise(Speckle(std=1.0), key="b", seed=5),
    ]
    model = _Keep()
    make_trainer(limit_train_batches=2, limit_val_batches=0, callbacks=callbacks).fit(
        model, DataLoader(_Ones(), batch_size=32)
    )
    assert [cb.name for cb in callbacks] == ["input_gaussian", "input_speckle"]
    a = torch.cat([b["a"] for b in model.batches]).flatten().double() - 1
    b = torch.cat([b["b"] for b in model.batches]).flatten().double() - 1
    correlation = torch.corrcoef(torch.stack([a, b]))[0, 1].item()
    assert abs(correlation) <= Z / math.sqrt(a.numel())


@pytest.mark.parametrize(
    ("callbacks", "data", "name"),
    [
        (  # same role, same noise: the derived names clash
            lambda: [InputNoise(Gaussian(std=0.1)), InputNoise(Gaussian(std=0.2), key=1)],
            DigitsDataModule,
            "input_gaussian",
        ),
        (  # a given name equal to another source's
            lambda: [InputNoise(Gaussian(std=0.1), name="a"), WeightNoise(Gaussian(std=0.01), name="a")],
            DigitsDataModule,
            "a",
        ),
        (  # a given name equal to a derived one
            lambda: [InputNoise(Gaussian(std=0.1), name="input"), InputNoise(Speckle(std=0.1), key=1)],
            DigitsDataModule,
            "input",
        ),
        (  # two gradient noises have no noise type to tell them apart
            lambda: [GradientNoise(0.1, include="net.0.*"), GradientNoise(0.2, exclude="net.0.*")],
            DigitsDataModule,
            "gradient",
        ),
        (  # MixupDataModule logs its settings under lit_noise/mix/
            lambda: [InputNoise(Gaussian(std=0.1), name="mix")],
            lambda: MixupDataModule(DigitsDataModule(), seed=0),
            "mix",
        ),
    ],
)
def test_clashing_names_are_refused_before_any_step(
    make_trainer: MakeTrainer,
    callbacks: Callable[[], list[pl.Callback]],
    data: Callable[[], pl.LightningDataModule],
    name: str,
) -> None:
    model = Recorder()
    before = [p.detach().clone() for p in model.parameters()]
    trainer = make_trainer(limit_train_batches=2, limit_val_batches=0, callbacks=callbacks())
    pattern = rf"would log under the name '{name}' \(.*\).*Pass a distinct `name=` to each of them\."
    with pytest.raises(ConfigurationError, match=pattern):
        trainer.fit(model, data())
    assert model.targets == []
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_two_unnamed_target_noises_resume_each_their_own_state(
    make_trainer: MakeTrainer, tmp_path: Path
) -> None:
    def callbacks(**kwargs: Any) -> list[TargetNoise]:
        return [
            TargetNoise(SymmetricFlip(p=0.2), num_classes=C, **kwargs.get("flip", {})),
            TargetNoise(LabelSmoothing(eps=0.1), num_classes=C, **kwargs.get("smooth", {})),
        ]

    torch.manual_seed(0)
    first = callbacks(flip={"scale": 0.5}, smooth={"scale": 0.25})  # seeds drawn in setup
    trainer = make_trainer(max_epochs=1, limit_train_batches=2, limit_val_batches=0, callbacks=first)
    trainer.fit(Classifier(), DigitsDataModule())
    path = tmp_path / "run.ckpt"
    trainer.save_checkpoint(path)
    seeds = [cb.seed for cb in first]
    assert None not in seeds
    assert seeds[0] != seeds[1]
    stored = torch.load(path, weights_only=False)["callbacks"]
    assert stored[first[0].state_key] == {"seed": seeds[0], "scale": 0.5}
    assert stored[first[1].state_key] == {"seed": seeds[1], "scale": 0.25}

    torch.manual_seed(1)  # the fresh callbacks would draw other seeds
    resumed = callbacks()
    trainer = make_trainer(max_epochs=2, limit_train_batches=2, limit_val_batches=0, callbacks=resumed)
    trainer.fit(Classifier(), DigitsDataModule(), ckpt_path=str(path))
    assert trainer.global_step == 4
    assert [(cb.name, cb.seed, cb.scale) for cb in resumed] == [
        ("target_symmetric_flip", seeds[0], 0.5),
        ("target_label_smoothing", seeds[1], 0.25),
    ]


# --------------------------------------------------------------------------- settings as hyperparameters


class DropoutClassifier(Classifier):
    """The example classifier behind a GaussianDropout layer."""

    def __init__(self, lr: float = 0.02) -> None:
        super().__init__(lr=lr)
        self.dropout = GaussianDropout(rate=0.2)

    def forward(self, x: Tensor) -> Tensor:
        logits: Tensor = self.net(self.dropout(x))
        return logits


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    """One short fit with every kind of noise source, logged to a CSVLogger and an offline W&B run."""
    root = tmp_path_factory.mktemp("hparams")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WANDB_MODE", "offline")
        patch.setenv("WANDB_SILENT", "true")
        for var in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_CONFIG_DIR"):
            (root / var.lower()).mkdir()
            patch.setenv(var, str(root / var.lower()))
        sources = SimpleNamespace(
            input=InputNoise(Gaussian(std=Linear(start=0.0, end=0.2, until=0.5)), clamp=(0, 1)),
            flip=TargetNoise(SymmetricFlip(p=0.2), num_classes=C, p=0.5, seed=3),
            smooth=TargetNoise(LabelSmoothing(eps=0.1), num_classes=C, seed=4, scale=0.5),
            weight=WeightNoise(Gaussian(std=0.01), include="net.*.weight", relative=True, seed=5),
            gradient=GradientNoise(std=0.001, exclude=["*.bias"], seed=6),
            layers=NoiseLayerSchedule(seed=7),
        )
        data = MixupDataModule(DigitsDataModule(), mixup_alpha=0.4, label_smoothing=0.05, mode="elem", seed=8)
        csv = CSVLogger(root, name="csv")
        wandb = WandbLogger(save_dir=str(root), project="lit-noise-test", offline=True)
        trainer = quiet_trainer(
            default_root_dir=str(root),
            logger=[csv, wandb],
            limit_train_batches=2,
            limit_val_batches=0,
            log_every_n_steps=1,
            callbacks=list(vars(sources).values()),
        )
        try:
            trainer.fit(DropoutClassifier(), data)
            config = dict(wandb.experiment.config)
        finally:
            wandb.experiment.finish()
        hparams = load_hparams_from_yaml(os.path.join(csv.log_dir, "hparams.yaml"), use_omegaconf=False)
        yield SimpleNamespace(sources=sources, hparams=dict(hparams), config=config)


def _under(settings: dict[str, Any], prefix: str) -> dict[str, Any]:
    return {k[len(prefix) :]: v for k, v in settings.items() if k.startswith(prefix)}


@pytest.mark.parametrize("where", ["hparams", "config"])
def test_every_source_records_its_settings(fitted: SimpleNamespace, where: str) -> None:
    logged = getattr(fitted, where)
    assert logged["lr"] == 0.02  # the module's own hyperparameters stay
    assert _under(logged, "lit_noise/input/") == {
        "callback": "InputNoise",
        "name": "input",
        "noise": "Gaussian",
        "noise/std": "Linear(unit='progress', start=0.0, end=0.2, begin=0.0, until=0.5)",
        "noise/std/type": "Linear",
        "noise/std/unit": "progress",
        "noise/std/start": 0.0,
        "noise/std/end": 0.2,
        "noise/std/begin": 0.0,
        "noise/std/until": 0.5,
        "noise/mean": 0.0,
        "key": 0,
        "p": 1.0,
        "clamp": [0.0, 1.0],
        "seed": fitted.sources.input.seed,  # drawn in setup, recorded as resolved
        "scale": 1.0,
        "mask_key": None,
    }
    assert isinstance(logged["lit_noise/input/seed"], int)
    # Two TargetNoise instances: distinct names, so neither overwrites the other's keys.
    flip = _under(logged, "lit_noise/target_symmetric_flip/")
    expected_flip = {
        "callback": "TargetNoise",
        "name": "target_symmetric_flip",
        "noise": "SymmetricFlip",
        "noise/p": 0.2,
        "noise/num_classes": C,
        "noise/target_format": "soft_labels",
        "key": 1,
        "num_classes": C,
        "p": 0.5,
        "seed": 3,
        "scale": 1.0,
    }
    assert {k: flip.get(k) for k in expected_flip} == expected_flip
    smooth = _under(logged, "lit_noise/target_label_smoothing/")
    assert (smooth["noise"], smooth["noise/eps"], smooth["p"], smooth["seed"], smooth["scale"]) == (
        "LabelSmoothing",
        0.1,
        1.0,
        4,
        0.5,
    )
    weight = _under(logged, "lit_noise/weight/")
    assert {k: weight[k] for k in ("callback", "noise", "noise/std", "include", "exclude", "relative")} == {
        "callback": "WeightNoise",
        "noise": "Gaussian",
        "noise/std": 0.01,
        "include": ["net.*.weight"],
        "exclude": None,
        "relative": True,
    }
    assert (weight["restore"], weight["seed"], weight["scale"], weight["name"]) == ("copy", 5, 1.0, "weight")
    gradient = _under(logged, "lit_noise/gradient/")
    assert {k: gradient[k] for k in ("callback", "std", "exclude", "include", "seed", "name")} == {
        "callback": "GradientNoise",
        "std": 0.001,
        "exclude": ["*.bias"],
        "include": None,
        "seed": 6,
        "name": "gradient",
    }
    assert _under(logged, "lit_noise/layers/") == {
        "callback": "NoiseLayerSchedule",
        "name": "layers",
        "seed": 7,
        "scale": 1.0,
        "dropout": "GaussianDropout",
        "dropout/rate": 0.2,
        "dropout/scale": 1.0,
    }
    mix = _under(logged, "lit_noise/mix/")
    assert {k: mix[k] for k in ("datamodule", "num_classes", "mixup_alpha", "cutmix_alpha", "prob")} == {
        "datamodule": "DigitsDataModule",
        "num_classes": C,
        "mixup_alpha": 0.4,
        "cutmix_alpha": 0.0,
        "prob": 1.0,
    }
    assert (mix["mode"], mix["label_smoothing"], mix["cutmix_minmax"], mix["seed"], mix["scale"]) == (
        "elem",
        0.05,
        None,
        8,
        1.0,
    )
    assert (mix["input_key"], mix["target_key"], mix["target_format"]) == (0, 1, "soft_labels")


def test_every_logged_setting_is_a_plain_value(fitted: SimpleNamespace) -> None:
    def plain(value: Any) -> bool:
        if isinstance(value, list):
            return all(plain(v) for v in value)
        return value is None or isinstance(value, (bool, int, float, str))

    ours = {k: v for k, v in fitted.hparams.items() if k.startswith("lit_noise/")}
    assert len(ours) > 50
    assert all(plain(v) for v in ours.values()), {k: v for k, v in ours.items() if not plain(v)}
    assert {k: v for k, v in fitted.config.items() if k.startswith("lit_noise/")} == ours
