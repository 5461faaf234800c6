"""Noise layers: active in train() only, strengths driven by NoiseLayerSchedule in a Trainer."""

from __future__ import annotations

import math
import pickle
from collections.abc import Sequence
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import CSVLogger
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from _reference_rng import hashed, stream
from lit_noise import ConfigurationError, GaussianDropout, GaussianNoise, Linear, NoiseLayerSchedule, Step
from lit_noise.examples import DigitsDataModule
from lit_noise.schedules import Clock

Z = 5.0


def test_gaussian_noise_only_in_train_mode() -> None:
    layer = GaussianNoise(std=0.3)
    x = torch.zeros(100_000)
    torch.manual_seed(0)
    noisy = layer.train()(x)
    assert abs(noisy.double().std().item() - 0.3) <= Z * 0.3 / math.sqrt(2 * x.numel())
    assert layer.eval()(x) is x  # identity in eval mode
    assert GaussianNoise(std=0.0).train()(torch.ones(3)).eq(1).all()


def test_gaussian_dropout_multiplicative_std() -> None:
    rate = 0.2
    layer = GaussianDropout(rate=rate).train()
    x = torch.full((100_000,), 2.0)
    torch.manual_seed(0)
    factor = (layer(x) / x).double()
    expected = math.sqrt(rate / (1 - rate))  # Keras' GaussianDropout
    assert abs(factor.mean().item() - 1.0) <= Z * expected / math.sqrt(x.numel())
    assert abs(factor.std().item() - expected) <= Z * expected / math.sqrt(2 * x.numel())
    assert layer.eval()(x) is x
    with pytest.raises(ConfigurationError, match=r"GaussianDropout: `rate` must be >= 0 and < 1, got 1\.0"):
        GaussianDropout(rate=1.0)
    with pytest.raises(ConfigurationError, match="`std` must be >= 0"):
        GaussianNoise(std=-0.1)
    with pytest.raises(ConfigurationError, match=r"GaussianNoise: `scale` must be >= 0"):
        GaussianNoise(std=0.1, scale=-1.0)


def test_the_strength_follows_scale_clock_and_noise_changes_between_forwards() -> None:
    """The layer resolves its strength once per (clock, scale, noise); any change takes effect."""
    from lit_noise import Gaussian

    layer = GaussianNoise(std=Linear(start=0.0, end=1.0, until=10, unit="step")).train()
    x = torch.zeros(200_000)

    def drawn_std() -> float:
        return float(layer(x).double().std())

    layer.clock = Clock(step=5)
    assert drawn_std() == pytest.approx(0.5, rel=0.02)
    assert drawn_std() == pytest.approx(0.5, rel=0.02)  # the same clock again
    layer.clock = Clock(step=10)
    assert drawn_std() == pytest.approx(1.0, rel=0.02)
    layer.scale = 0.25
    assert drawn_std() == pytest.approx(0.25, rel=0.02)
    layer.schedule_scale = 2.0
    assert drawn_std() == pytest.approx(0.5, rel=0.02)
    layer.noise = Gaussian(std=0.1)
    assert drawn_std() == pytest.approx(0.05, rel=0.02)
    reported = layer.current()
    reported["std"] = 100.0  # the caller's copy: the layer's values stay
    assert layer.current() == {"std": pytest.approx(0.05), "mean": 0.0}
    assert drawn_std() == pytest.approx(0.05, rel=0.02)


def test_a_layer_pickled_before_the_strength_cache_loads_and_works() -> None:
    layer = pickle.loads(pickle.dumps(GaussianNoise(std=0.5)))
    layer.__dict__.pop("_resolved", None)  # as a layer pickled by 0.5.0 comes back
    assert layer.current() == {"std": 0.5, "mean": 0.0}
    assert float(layer.train()(torch.zeros(100_000)).std()) == pytest.approx(0.5, rel=0.02)
    assert "_resolved" not in layer.state_dict()


def test_gradients_flow_through_the_noise() -> None:
    x = torch.randn(8, 4, requires_grad=True)
    GaussianNoise(std=0.5).train()(x).sum().backward()
    assert x.grad is not None
    assert torch.equal(x.grad, torch.ones_like(x))
    x.grad = None
    torch.manual_seed(1)
    out = GaussianDropout(rate=0.3).train()(x)
    torch.manual_seed(1)
    factor = GaussianDropout(rate=0.3).train()(torch.ones_like(x))
    out.sum().backward()
    assert torch.allclose(x.grad, factor, atol=1e-6)  # multiplicative: d/dx = the noise factor


def test_a_scheduled_layer_needs_the_callback_outside_fit() -> None:
    layer = GaussianNoise(std=Linear(start=0.0, end=0.1, until=1.0)).train()
    with pytest.raises(
        ConfigurationError, match=r"add lit_noise\.NoiseLayerSchedule\(\) to the Trainer's callbacks"
    ):
        layer(torch.zeros(3))
    layer.clock = Clock(progress=0.5)
    assert layer.current() == pytest.approx({"std": 0.05, "mean": 0.0})
    assert layer.eval()(torch.zeros(3)).eq(0).all()  # eval never needs a clock


class NoisyNet(pl.LightningModule):
    """Noise layers on the input and on the hidden activations; records their effect per step."""

    def __init__(self, std: object, rate: object) -> None:
        super().__init__()
        self.flatten = nn.Flatten()
        self.input_noise = GaussianNoise(std=std)  # type: ignore[arg-type]
        self.hidden = nn.Linear(64, 32)
        self.dropout = GaussianDropout(rate=rate)  # type: ignore[arg-type]
        self.head = nn.Linear(32, 10)
        self.deltas: list[float] = []
        self.val_identity: list[bool] = []

    def forward(self, x: Tensor) -> Tensor:
        flat = self.flatten(x)
        noisy = self.input_noise(flat)
        if self.training:
            self.deltas.append((noisy - flat).double().std().item())
        else:
            self.val_identity.append(noisy is flat)
        return self.head(self.dropout(torch.relu(self.hidden(noisy))))

    def training_step(self, batch: Sequence[Tensor], batch_idx: int) -> Tensor:
        return F.cross_entropy(self(batch[0]), batch[1])

    def validation_step(self, batch: Sequence[Tensor], batch_idx: int) -> None:
        self(batch[0])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.05)


def test_schedule_driven_by_the_trainer(make_trainer, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    std = Linear(start=0.0, end=0.4, begin=0, until=8, unit="step")
    rate = Step(value=0.5, milestones=[1], gamma=0.2, unit="epoch")
    model = NoisyNet(std, rate)
    callback = NoiseLayerSchedule(seed=0)
    trainer = make_trainer(
        max_epochs=2,
        limit_train_batches=5,
        limit_val_batches=1,
        num_sanity_val_steps=1,
        logger=CSVLogger(tmp_path),
        log_every_n_steps=1,
        callbacks=[callback],
    )
    trainer.fit(model, DigitsDataModule(batch_size=64))
    assert len(model.deltas) == 10
    for step, delta in enumerate(model.deltas):
        expected = std(Clock(step=step))
        assert abs(delta - expected) <= Z * max(expected, 1e-9) / math.sqrt(2 * 64 * 64), (
            step,
            delta,
            expected,
        )
    assert model.val_identity
    assert all(model.val_identity)
    rows = [r for r in csvs(tmp_path) if r.get("noise/layers/input_noise/std")]
    assert [int(r["step"]) for r in rows] == list(range(10))
    for row in rows:
        step, epoch = int(row["step"]), int(row["epoch"])
        assert float(row["noise/layers/input_noise/std"]) == pytest.approx(std(Clock(step=step)), abs=1e-6)
        # GaussianDropout is logged as its rate (the argument it was built with), not as its std.
        assert float(row["noise/layers/dropout/rate"]) == pytest.approx(rate(Clock(epoch=epoch)), abs=1e-6)
        assert "noise/layers/dropout/std" not in row
    assert model.input_noise.clock is None
    assert model.input_noise.generator is None


class _FailingNoisyNet(NoisyNet):
    def training_step(self, batch: Sequence[Tensor], batch_idx: int) -> Tensor:
        if batch_idx == 2:
            raise RuntimeError("a failing step")
        return super().training_step(batch, batch_idx)


def test_a_failed_fit_clears_the_layers_clocks(make_trainer) -> None:  # type: ignore[no-untyped-def]
    """After a fit that fails, a train-mode forward needs the trainer's clock again (it raises)."""
    model = _FailingNoisyNet(Linear(start=0.0, end=0.4, until=8, unit="step"), 0.1)
    callback = NoiseLayerSchedule(seed=0)
    trainer = make_trainer(max_epochs=1, limit_train_batches=5, limit_val_batches=0, callbacks=[callback])
    with pytest.raises(RuntimeError, match="a failing step"):
        trainer.fit(model, DigitsDataModule(batch_size=16))
    assert len(model.deltas) == 2  # two steps ran with noise before the failing one
    for layer in (model.input_noise, model.dropout):
        assert layer.clock is None
        assert layer.generator is None
        assert layer.schedule_scale == 1.0
    model.train()
    with pytest.raises(ConfigurationError, match="clock"):
        model(torch.zeros(2, 1, 8, 8))


def csvs(path: Path) -> list[dict[str, str]]:
    import csv

    (file,) = list(path.rglob("metrics.csv"))
    with file.open() as handle:
        return list(csv.DictReader(handle))


def test_scheduled_layer_without_the_callback_fails_before_any_step(make_trainer) -> None:  # type: ignore[no-untyped-def]
    model = NoisyNet(Linear(start=0.0, end=0.4, until=1.0), 0.1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = make_trainer(limit_train_batches=2, limit_val_batches=0)
    with pytest.raises(
        ConfigurationError, match=r"GaussianNoise: its strength follows a schedule.*NoiseLayerSchedule"
    ):
        trainer.fit(model, DigitsDataModule())
    assert trainer.global_step == 0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_layer_scales_are_checkpointed_and_callback_scale_applies(make_trainer) -> None:  # type: ignore[no-untyped-def]
    model = NoisyNet(0.2, 0.1)
    model.input_noise.scale = 0.5
    callback = NoiseLayerSchedule(seed=1, scale=2.0)
    trainer = make_trainer(limit_train_batches=3, limit_val_batches=0, callbacks=[callback])
    trainer.fit(model, DigitsDataModule())
    for delta in model.deltas:  # 0.2 * layer scale 0.5 * callback scale 2.0
        assert abs(delta - 0.2) <= Z * 0.2 / math.sqrt(2 * 64 * 64)
    assert callback.last_values["input_noise/std"] == pytest.approx(0.2)
    state = callback.state_dict()
    assert state == {"seed": 1, "scale": 2.0, "layer_scales": {"input_noise": 0.5, "dropout": 1.0}}
    # A fresh model and callback, restored from that state, get the layer scales back at train start.
    restored_model = NoisyNet(0.2, 0.1)
    restored = NoiseLayerSchedule()
    restored.load_state_dict(state)
    assert (restored.seed, restored.scale) == (1, 2.0)
    trainer = make_trainer(limit_train_batches=1, limit_val_batches=0, callbacks=[restored])
    trainer.fit(restored_model, DigitsDataModule())
    assert restored_model.input_noise.scale == 0.5
    assert restored_model.dropout.scale == 1.0
    older = NoiseLayerSchedule(seed=4)
    older.load_state_dict({"scale": 0.5})  # keys missing from an older checkpoint keep their defaults
    assert (older.seed, older.scale) == (4, 0.5)
    assert NoiseLayerSchedule(name="a").state_key != NoiseLayerSchedule(name="b").state_key


@pytest.mark.parametrize(("rate", "scale"), [(0.2, 1.0), (0.2, 0.5), (0.5, 2.0), (0.0, 3.0)])
def test_gaussian_dropout_reports_the_rate_of_the_noise_it_applies(rate: float, scale: float) -> None:
    layer = GaussianDropout(rate=rate, scale=scale).train()
    # Keras' rule: multiplicative noise of std sqrt(rate / (1 - rate)); `scale` multiplies the std.
    std = scale * math.sqrt(rate / (1 - rate))
    equivalent = std**2 / (1 + std**2)  # the dropout rate whose Keras std is `std`
    assert layer.current() == {"rate": pytest.approx(equivalent, rel=1e-12, abs=1e-15)}
    if scale == 1.0:
        assert layer.current() == {"rate": rate}  # exactly the argument, no round trip through the std
    x = torch.ones(200_000)
    torch.manual_seed(0)
    factor = layer(x).double()
    assert abs(factor.std().item() - std) <= Z * max(std, 1e-9) / math.sqrt(2 * x.numel())
    assert repr(layer) == f"GaussianDropout(rate={rate!r})"


def test_schedule_without_noise_layers_is_refused_before_training(make_trainer) -> None:  # type: ignore[no-untyped-def]
    from lit_noise import NoiseLayerSchedule
    from lit_noise.errors import ConfigurationError
    from lit_noise.examples import Classifier, DigitsDataModule

    model = Classifier()
    before = [p.detach().clone() for p in model.parameters()]
    trainer = make_trainer(callbacks=[NoiseLayerSchedule(seed=0)], limit_train_batches=2, limit_val_batches=0)
    message = r"NoiseLayerSchedule: Classifier has no lit_noise noise layer"
    with pytest.raises(ConfigurationError, match=message):
        trainer.fit(model, DigitsDataModule())
    assert trainer.global_step == 0
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_example_classifier_noise_layers_are_driven_and_its_hparams_stay_plain(make_trainer) -> None:  # type: ignore[no-untyped-def]
    from lit_noise import GaussianDropout, GaussianNoise, NoiseLayerSchedule
    from lit_noise.examples import Classifier, DigitsDataModule

    model = Classifier(input_shape=[1, 8, 8], input_noise_std=0.2, gaussian_dropout=0.25)
    kinds = [type(m) for m in model.net]
    assert kinds[0] is GaussianNoise
    assert kinds[-2] is GaussianDropout
    assert model.hparams["input_shape"] == (1, 8, 8)
    assert type(model.hparams["input_shape"]) is tuple
    schedule = NoiseLayerSchedule(seed=0)
    trainer = make_trainer(callbacks=[schedule], limit_train_batches=2, limit_val_batches=0)
    trainer.fit(model, DigitsDataModule())
    assert schedule.last_values["net.0/std"] == pytest.approx(0.2)
    assert schedule.last_values["net.6/rate"] == pytest.approx(0.25)


class _TwoNoiseLayers(pl.LightningModule):
    """Two GaussianNoise layers in a row; keeps what each added on every training batch."""

    def __init__(self) -> None:
        super().__init__()
        self.noise = nn.Sequential(GaussianNoise(std=0.5), GaussianNoise(std=0.25))
        self.head = nn.Linear(64, 10)
        self.added: dict[tuple[int, int, int], Tensor] = {}
        for index, layer in enumerate(self.noise):
            layer.register_forward_hook(self._keeper(index))

    def _keeper(self, index: int) -> object:
        def keep(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
            if module.training:
                key = (index, self.current_epoch, self.trainer.fit_loop.epoch_loop.batch_idx)
                self.added[key] = output - inputs[0]

        return keep

    def training_step(self, batch: list[Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        return F.cross_entropy(self.head(self.noise(x.flatten(1))), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)


def test_noise_layer_schedule_seeds_each_layer_from_the_documented_counters() -> None:
    """Layer i's generator is seeded with the hash of (seed, crc32 stream, i, epoch, batch, rank)."""
    model = _TwoNoiseLayers()
    trainer = pl.Trainer(
        max_epochs=2,
        limit_train_batches=3,
        limit_val_batches=0,
        callbacks=[NoiseLayerSchedule(seed=7)],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.rand(48, 64, generator=g), torch.randint(0, 10, (48,), generator=g))
    trainer.fit(model, train_dataloaders=DataLoader(data, batch_size=16))
    assert len(model.added) == 2 * 2 * 3
    for (index, epoch, batch_idx), added in model.added.items():
        seed = hashed(7, stream("NoiseLayerSchedule/layers"), index, epoch, batch_idx, 0)
        generator = torch.Generator().manual_seed(seed)
        std = (0.5, 0.25)[index]
        expected = std * torch.randn(added.shape, generator=generator)
        torch.testing.assert_close(added, expected, rtol=0, atol=1e-5)


def test_a_subclass_property_receives_the_batch_state() -> None:
    """A noise layer whose ``schedule_scale`` is a property still gets NoiseLayerSchedule's value."""

    class Tracked(GaussianNoise):
        def __init__(self) -> None:
            self.seen: list[float] = []
            super().__init__(std=0.1)

        @property
        def schedule_scale(self) -> float:
            return self.seen[-1] if self.seen else 1.0

        @schedule_scale.setter
        def schedule_scale(self, value: float) -> None:
            self.seen.append(value)

    layer, plain = Tracked(), GaussianNoise(std=0.1)
    for noise_layer in (layer, plain):
        noise_layer._set_batch_state(Clock(), 3.0, torch.Generator())
    assert layer.seen[-1] == 3.0
    assert plain.schedule_scale == 3.0
    for noise_layer in (layer, plain):
        assert noise_layer.current()["std"] == pytest.approx(0.3)
