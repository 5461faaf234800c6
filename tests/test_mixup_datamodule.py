"""MixupDataModule: mixing in a real Trainer, delegation, determinism, resume, logging, errors."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from lightning.pytorch.utilities.model_helpers import is_overridden
from scipy import stats
from torch.utils.data import DataLoader, TensorDataset
from torchmetrics.classification import MulticlassAccuracy

from lit_noise import (
    ConfigurationError,
    Gaussian,
    HostRandom,
    InputNoise,
    LabelSmoothing,
    Linear,
    MixupDataModule,
    SoftLabels,
    Step,
    SymmetricFlip,
    TargetNoise,
)
from lit_noise.examples import Classifier, DigitsDataModule
from lit_noise.functional import label_smoothing, one_hot_smooth

C = 10
MakeTrainer = Callable[..., pl.Trainer]


class Recording(Classifier):
    """The example classifier, recording what training_step and validation_step receive."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.train_batches: list[dict[str, Any]] = []
        self.val_batches: list[tuple[torch.Tensor, torch.Tensor]] = []

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        dm = self.trainer.datamodule
        self.train_batches.append(
            {
                "epoch": self.current_epoch,
                "batch_idx": batch_idx,
                "step": self.global_step,
                "x": batch[0].clone(),
                "y": batch[1].clone(),
                "params": getattr(dm, "last_params", None),
            }
        )
        return super().training_step(batch, batch_idx)

    def validation_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        self.val_batches.append((batch[0].clone(), batch[1].clone()))
        return super().validation_step(batch, batch_idx)


def _inner_train_batch(inner: DigitsDataModule, epoch: int, batch_idx: int) -> list[torch.Tensor]:
    loader = inner.train_dataloader()
    loader.sampler.set_epoch(epoch)  # type: ignore[attr-defined]
    for index, batch in enumerate(loader):
        if index == batch_idx:
            return batch
    raise AssertionError("no such batch")


def _weights(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


class TensorData(pl.LightningDataModule):
    """Training batches from given tensors; ``collate`` decides the batch container."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int = 8, collate: Any = None) -> None:
        super().__init__()
        self.dataset = TensorDataset(x, y)
        self.batch_size = batch_size
        self.collate = collate

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.dataset, batch_size=self.batch_size, collate_fn=self.collate)


class Sink(pl.LightningModule):
    """Records training batches; a linear model on flattened inputs."""

    def __init__(self, features: int, x_of: Callable[[Any], torch.Tensor] = lambda b: b[0]) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(features, C)
        self.x_of = x_of
        self.batches: list[Any] = []

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        self.batches.append(batch)
        return self.layer(self.x_of(batch).float().flatten(1)).sum()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.0)


# --------------------------------------------------------------------------- training


def test_trains_on_mixed_batches_and_validates_on_the_inner_datamodules_batches(
    make_trainer: MakeTrainer,
) -> None:
    inner = DigitsDataModule(batch_size=32)
    dm = MixupDataModule(inner, mixup_alpha=0.4, cutmix_alpha=1.0, mode="elem", label_smoothing=0.1, seed=0)
    model = Recording()
    before = _weights(model)
    trainer = make_trainer(max_epochs=2, limit_train_batches=4, limit_val_batches=2, num_sanity_val_steps=2)
    trainer.fit(model, dm)

    reference = list(inner.val_dataloader())[:2]
    assert len(model.val_batches) == 6  # sanity check + two epochs, two batches each
    for k, (x, y) in enumerate(model.val_batches):
        x_ref, y_ref = reference[k % 2]
        assert torch.equal(x, x_ref)
        assert torch.equal(y, y_ref)
        assert type(y) is torch.Tensor
        assert y.dtype == torch.int64

    assert len(model.train_batches) == 8
    for record in model.train_batches:
        x_in, _ = _inner_train_batch(inner, record["epoch"], record["batch_idx"])
        y = record["y"]
        assert isinstance(y, SoftLabels)
        assert y.soft.shape == (32, C)
        torch.testing.assert_close(y.soft.sum(1), torch.ones(32))
        assert torch.equal(y.hard, y.soft.argmax(1))
        assert not torch.equal(record["x"], x_in)
    assert all(not torch.equal(a, b) for a, b in zip(before, _weights(model), strict=True))
    assert torch.isfinite(trainer.callback_metrics["train/loss"])

    # Test and predict go through the wrapper untouched too.
    trainer.test(model, dm, verbose=False)
    assert "test/acc" in trainer.callback_metrics
    with torch.no_grad():
        reference = model(next(iter(inner.test_dataloader()))[0]).softmax(1)
    predictions = trainer.predict(model, dm)
    assert predictions is not None
    torch.testing.assert_close(predictions[0], reference)


def test_the_classifier_learns_with_mixup(make_trainer: MakeTrainer) -> None:
    pl.seed_everything(0, verbose=False)
    dm = MixupDataModule(DigitsDataModule(), mixup_alpha=0.2, mode="elem", seed=0)
    trainer = make_trainer(max_epochs=3, num_sanity_val_steps=0)
    trainer.fit(Classifier(lr=1e-2), dm)
    assert trainer.callback_metrics["val/acc"] > 0.85


@pytest.mark.parametrize("mode", ["batch", "pair"])
def test_each_batch_is_the_replay_of_its_epoch_and_batch_index(make_trainer: MakeTrainer, mode: str) -> None:
    inner = DigitsDataModule(batch_size=50)
    dm = MixupDataModule(inner, mixup_alpha=1.0, cutmix_alpha=1.0, mode=mode, seed=7)
    model = Recording()
    make_trainer(max_epochs=2, limit_train_batches=3, limit_val_batches=0).fit(model, dm)
    for record in model.train_batches:
        x_in, y_in = _inner_train_batch(inner, record["epoch"], record["batch_idx"])
        generators = dm._batch_generators(x_in, record["epoch"], record["batch_idx"])
        x_mix, y_mix, _ = dm.mix_tensors(x_in, y_in, dm.last_values, *generators)
        assert torch.equal(record["x"], x_mix)
        assert torch.equal(record["y"].soft, y_mix)


@pytest.mark.parametrize("mode", ["pair", "elem"])
def test_mix_tensors_refuses_a_host_generator_that_its_mode_would_not_read(mode: str) -> None:
    dm = MixupDataModule(DigitsDataModule(), mixup_alpha=1.0, mode=mode, seed=0)
    x, y = torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 2, 3])
    values = {"mixup_alpha": 1.0, "cutmix_alpha": 0.0, "prob": 1.0, "label_smoothing": 0.0}
    with pytest.raises(
        ConfigurationError,
        match=rf"^MixupDataModule.mix_tensors: `host_generator` must be None in mode '{mode}', which makes"
        r" every draw",
    ):
        dm.mix_tensors(x, y, values, torch.Generator().manual_seed(0), HostRandom(0))
    x_mixed, _, params = dm.mix_tensors(x, y, values, torch.Generator().manual_seed(0))
    assert params is not None
    assert not torch.equal(x_mixed, x)


def test_mixup_and_cutmix_lambdas_each_follow_their_own_beta_law(make_trainer: MakeTrainer) -> None:
    """Both on with different alphas, in a Trainer: λ ~ Beta(0.2, 0.2) for mixup, Beta(2, 2) for CutMix.

    Read off the mixed batches alone: sample i is the constant image (i + 1) / 65 with label i, so
    its mixed target's entry i is its λ (``correct_lam=False``: CutMix's drawn λ), and its pixels
    tell the method -- CutMix leaves only own and partner pixels, mixup blends them.
    """
    b, side, batches = 64, 8, 20
    image = ((torch.arange(b, dtype=torch.float64) + 1) / (b + 1)).view(b, 1, 1, 1).expand(b, 1, side, side)
    labels = torch.arange(b)
    data = TensorData(image.repeat(batches, 1, 1, 1), labels.repeat(batches), batch_size=b)
    dm = MixupDataModule(
        data, num_classes=b, mixup_alpha=0.2, cutmix_alpha=2.0, switch_prob=0.5, mode="elem",
        correct_lam=False, seed=4,
    )  # fmt: skip
    model = Sink(side * side)
    make_trainer(max_epochs=1, limit_val_batches=0).fit(model, dm)
    lams: dict[str, list[float]] = {"mixup": [], "cutmix": []}
    for x_mixed, y_mixed in model.batches:
        soft = y_mixed.soft
        lam = soft.diagonal()
        partner = soft.clone().fill_diagonal_(0.0).argmax(dim=1)
        own_pixel = (x_mixed == image).flatten(1)
        partner_pixel = (x_mixed == image[partner]).flatten(1)
        cut = (own_pixel | partner_pixel).all(dim=1) & partner_pixel.any(dim=1)
        blended = ~(own_pixel | partner_pixel).any(dim=1)
        lams["cutmix"] += lam[cut].tolist()
        lams["mixup"] += lam[blended].tolist()
    assert len(lams["mixup"]) + len(lams["cutmix"]) > 0.99 * b * batches  # (almost) every sample classified
    for method, own, other in (("mixup", 0.2, 2.0), ("cutmix", 2.0, 0.2)):
        values = lams[method]
        assert len(values) > 400, method
        assert stats.kstest(values, stats.beta(own, own).cdf).pvalue > 1e-3, method
        assert stats.kstest(values, stats.beta(other, other).cdf).pvalue < 1e-6, method


def test_a_module_with_torchmetrics_accuracy_on_its_training_targets_keeps_working(
    make_trainer: MakeTrainer,
) -> None:
    class PlainModule(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, C))
            self.train_acc = MulticlassAccuracy(num_classes=C, average="micro")
            self.checked = 0

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            x, y = batch
            logits = self.net(x)
            loss = F.cross_entropy(logits, y)  # sees the mixed distribution
            acc = self.train_acc(logits, y)  # sees the dominant class
            assert torch.equal(loss, F.cross_entropy(logits, y.soft))
            assert acc == (logits.argmax(1) == y.soft.argmax(1)).float().mean()
            self.log("train/acc", self.train_acc)
            self.checked += 1
            return loss

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            pass

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    model = PlainModule()
    dm = MixupDataModule(DigitsDataModule(), mixup_alpha=1.0, cutmix_alpha=1.0, mode="elem", seed=0)
    make_trainer(max_epochs=1, limit_train_batches=4, limit_val_batches=0).fit(model, dm)
    assert model.checked == 4


def test_probs_target_format_gives_plain_float_targets(make_trainer: MakeTrainer) -> None:
    dm = MixupDataModule(DigitsDataModule(), mode="batch", target_format="probs", seed=1)
    model = Recording()
    make_trainer(max_epochs=1, limit_train_batches=2, limit_val_batches=0).fit(model, dm)
    y = model.train_batches[0]["y"]
    assert type(y) is torch.Tensor
    assert y.shape == (64, C)
    torch.testing.assert_close(y.sum(1), torch.ones(64))


# --------------------------------------------------------------------------- determinism and resume


def _fit_once(
    make_trainer: MakeTrainer, seed: int | None, **dm_kwargs: Any
) -> tuple[Recording, MixupDataModule]:
    pl.seed_everything(0, verbose=False)
    model = Recording()
    dm = MixupDataModule(
        DigitsDataModule(), mixup_alpha=1.0, cutmix_alpha=1.0, mode="elem", seed=seed, **dm_kwargs
    )
    make_trainer(max_epochs=1, limit_train_batches=3, limit_val_batches=0).fit(model, dm)
    return model, dm


def test_same_seed_same_mixes_and_a_missing_seed_comes_from_torchs_rng(make_trainer: MakeTrainer) -> None:
    a, _ = _fit_once(make_trainer, 5)
    b, _ = _fit_once(make_trainer, 5)
    c, _ = _fit_once(make_trainer, 6)
    for first, second in zip(a.train_batches, b.train_batches, strict=True):
        assert torch.equal(first["x"], second["x"])
        assert torch.equal(first["y"].soft, second["y"].soft)
    assert all(torch.equal(p, q) for p, q in zip(_weights(a), _weights(b), strict=True))
    assert not torch.equal(a.train_batches[0]["x"], c.train_batches[0]["x"])
    d, dm_d = _fit_once(make_trainer, None)
    e, dm_e = _fit_once(make_trainer, None)
    assert dm_d.seed is not None
    assert dm_d.seed == dm_e.seed
    assert torch.equal(d.train_batches[-1]["x"], e.train_batches[-1]["x"])


class StatefulDigits(DigitsDataModule):
    def __init__(self) -> None:
        super().__init__()
        self.counter = 0

    def state_dict(self) -> dict[str, Any]:
        return {"counter": self.counter}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.counter = state_dict["counter"]


def test_resume_continues_the_stream(make_trainer: MakeTrainer, tmp_path: Path) -> None:
    def run(max_epochs: int, global_seed: int, ckpt: Path | None = None) -> tuple[Recording, MixupDataModule]:
        pl.seed_everything(global_seed, verbose=False)
        model = Recording()
        inner = StatefulDigits()
        dm = MixupDataModule(inner, mixup_alpha=0.5, cutmix_alpha=1.0, mode="elem", seed=None)
        trainer = make_trainer(max_epochs=max_epochs, limit_train_batches=3, limit_val_batches=0)
        trainer.fit(model, dm, ckpt_path=ckpt)
        if ckpt is None and max_epochs == 1:
            inner.counter = 42
            dm.scale = 2.0  # prob and label_smoothing stay 1 and 0: the stream is unchanged
            trainer.save_checkpoint(tmp_path / "one.ckpt")
        return model, dm

    full, _ = run(2, global_seed=0)
    run(1, global_seed=0)
    checkpoint = torch.load(tmp_path / "one.ckpt", weights_only=False)
    assert checkpoint["MixupDataModule"]["datamodule"] == {"counter": 42}
    resumed, dm = run(2, global_seed=123, ckpt=tmp_path / "one.ckpt")
    assert dm.scale == 2.0
    assert dm.datamodule.counter == 42
    assert len(resumed.train_batches) == 3
    for first, second in zip(full.train_batches[3:], resumed.train_batches, strict=True):
        assert (
            (first["epoch"], first["batch_idx"])
            == (second["epoch"], second["batch_idx"])
            == (1, second["batch_idx"])
        )
        assert torch.equal(first["params"].index, second["params"].index)
        assert torch.equal(first["params"].boxes, second["params"].boxes)


# --------------------------------------------------------------------------- delegation


def test_everything_else_is_the_wrapped_datamodules(make_trainer: MakeTrainer) -> None:
    class TrainOnly(pl.LightningDataModule):
        def __init__(self) -> None:
            super().__init__()
            self.seen_trainers: list[Any] = []
            self.stages: list[Any] = []
            self.prepare_data_per_node = False

        def prepare_data(self) -> None:
            self.stages.append("prepare")

        def setup(self, stage: str) -> None:
            self.stages.append(("setup", stage))

        def teardown(self, stage: str) -> None:
            self.stages.append(("teardown", stage))

        def train_dataloader(self) -> DataLoader:
            self.seen_trainers.append(self.trainer)
            x = torch.rand(16, 1, 4, 4)
            return DataLoader(TensorDataset(x, torch.arange(16) % C), batch_size=8)

    inner = TrainOnly()
    inner.extra = "hello"
    dm = MixupDataModule(inner, num_classes=C, seed=0)
    assert dm.extra == "hello"
    assert dm.datamodule is inner
    assert dm.prepare_data_per_node is False
    assert is_overridden("train_dataloader", dm)
    for hook in ("val_dataloader", "test_dataloader", "predict_dataloader", "on_before_batch_transfer"):
        assert not is_overridden(hook, dm), hook
    trainer = make_trainer(max_epochs=1)
    trainer.fit(Sink(16), dm)
    assert inner.stages == ["prepare", ("setup", "fit"), ("teardown", "fit")]
    assert inner.seen_trainers == [trainer]
    assert dm.trainer is trainer
    assert trainer.callbacks == []  # the mix logger is detached after fitting
    with pytest.raises(AttributeError):
        _ = dm.missing_attribute


def test_the_wrapped_hook_runs_before_mixing_and_the_modules_when_it_has_none(
    make_trainer: MakeTrainer,
) -> None:
    class Doubling(DigitsDataModule):
        def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
            return [batch[0] * 2, batch[1]]

    inner = Doubling(batch_size=16)
    model = Recording()
    dm = MixupDataModule(inner, prob=0.0, seed=0)  # unmixed: the batch shows the inner hook alone
    make_trainer(max_epochs=1, limit_train_batches=1, limit_val_batches=1, num_sanity_val_steps=0).fit(
        model, dm
    )
    x_in, _ = _inner_train_batch(inner, 0, 0)
    assert torch.equal(model.train_batches[0]["x"], x_in * 2)
    assert torch.equal(model.val_batches[0][0], next(iter(inner.val_dataloader()))[0] * 2)

    class ModuleHook(Recording):
        def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
            return [batch[0] + 1, batch[1]]

    inner = DigitsDataModule(batch_size=16)
    model = ModuleHook()
    dm = MixupDataModule(inner, prob=0.0, seed=0)
    with pytest.warns(UserWarning, match="overridden `on_after_batch_transfer` in both"):
        make_trainer(max_epochs=1, limit_train_batches=1, limit_val_batches=0).fit(model, dm)
    x_in, _ = _inner_train_batch(inner, 0, 0)
    assert torch.equal(model.train_batches[0]["x"], x_in + 1)


# --------------------------------------------------------------------------- schedules, scale, logging


class MemoryLogger(Logger):
    def __init__(self) -> None:
        super().__init__()
        self.rows: list[tuple[int | None, dict[str, float]]] = []

    @property
    def name(self) -> str:
        return "memory"

    @property
    def version(self) -> int:
        return 0

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        pass

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.rows.append((step, dict(metrics)))


def test_current_values_are_logged_at_the_logging_interval(make_trainer: MakeTrainer) -> None:
    logger = MemoryLogger()
    prob = Linear(start=1.0, end=0.0, until=8, unit="step")
    dm = MixupDataModule(DigitsDataModule(), mode="elem", prob=prob, label_smoothing=0.1, seed=0)
    model = Recording()
    make_trainer(
        max_epochs=1, limit_train_batches=9, limit_val_batches=0, logger=logger, log_every_n_steps=2
    ).fit(model, dm)
    mixed = {r["step"]: r["params"] for r in model.train_batches}
    rows = [(step, m) for step, m in logger.rows if "mix/prob" in m]
    assert [step for step, _ in rows] == [1, 3, 5, 7]
    for step, metrics in rows:
        assert metrics["mix/prob"] == pytest.approx(max(1.0 - step / 8, 0.0))
        assert metrics["mix/label_smoothing"] == pytest.approx(0.1)
        assert metrics["mix/mixup_alpha"] == 1.0
        assert metrics["mix/cutmix_alpha"] == 0.0
        assert metrics["mix/lam"] == pytest.approx(mixed[step].lam.mean().item())
    assert model.train_batches[-1]["params"] is None  # prob reached 0: nothing mixed at step 8


def test_logging_is_not_allowed_in_the_transfer_hook_itself(make_trainer: MakeTrainer) -> None:
    """Why the values go through a callback: LightningModule.log refuses the transfer hooks."""

    class LogsInHook(DigitsDataModule):
        def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
            self.trainer.lightning_module.log("mix/value", 1.0)
            return batch

    with pytest.raises((RuntimeError, MisconfigurationException), match="batch_to_device"):
        make_trainer(max_epochs=1, limit_train_batches=1, limit_val_batches=0).fit(Classifier(), LogsInHook())


def test_a_schedule_turns_mixing_off_and_scale_zero_leaves_batches_clean(make_trainer: MakeTrainer) -> None:
    inner = DigitsDataModule(batch_size=32)
    off_late = Step(value=1.0, milestones=[0.5], gamma=0.0, unit="progress")  # mixup off for the last half
    dm = MixupDataModule(inner, mixup_alpha=1.0, cutmix_alpha=1.0, mode="elem", prob=off_late, seed=0)
    model = Recording()
    make_trainer(max_epochs=1, limit_train_batches=4, limit_val_batches=0).fit(model, dm)
    for record in model.train_batches:
        x_in, y_in = _inner_train_batch(inner, 0, record["batch_idx"])
        assert torch.equal(record["x"], x_in) == (record["batch_idx"] >= 2)
    assert torch.equal(model.train_batches[-1]["y"].soft, F.one_hot(y_in, C).float())

    dm = MixupDataModule(inner, mode="elem", label_smoothing=0.2, seed=0, scale=0.0)
    model = Recording()
    make_trainer(max_epochs=1, limit_train_batches=1, limit_val_batches=0).fit(model, dm)
    x_in, y_in = _inner_train_batch(inner, 0, 0)
    assert torch.equal(model.train_batches[0]["x"], x_in)
    assert torch.equal(model.train_batches[0]["y"].soft, F.one_hot(y_in, C).float())
    assert dm.state_dict()["scale"] == 0.0
    dm.scale = 0.5
    assert dm._resolve(None)["label_smoothing"] == pytest.approx(0.1)


# --------------------------------------------------------------------------- with InputNoise / TargetNoise


class Spy(pl.Callback):
    """Records the batch as the callbacks before it left it (callbacks run in list order)."""

    def __init__(self) -> None:
        self.seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self.seen.append((batch[0].clone(), batch[1].clone()))


def test_target_noise_smooths_the_mixed_distribution_and_input_noise_noises_mixed_inputs(
    make_trainer: MakeTrainer,
) -> None:
    inner = DigitsDataModule(batch_size=64)
    spy = Spy()
    callbacks = [
        spy,
        InputNoise(Gaussian(std=0.1), seed=1),
        TargetNoise(LabelSmoothing(eps=0.3), num_classes=C, seed=2),
    ]
    dm = MixupDataModule(inner, mixup_alpha=1.0, cutmix_alpha=1.0, mode="elem", seed=0)
    model = Recording()
    make_trainer(max_epochs=1, limit_train_batches=3, limit_val_batches=0, callbacks=callbacks).fit(model, dm)
    for (x_mixed, y_mixed), record in zip(spy.seen, model.train_batches, strict=True):
        x_in, _ = _inner_train_batch(inner, 0, record["batch_idx"])
        assert not torch.equal(x_mixed, x_in)  # mixing happened before every callback
        noise = record["x"] - x_mixed
        assert abs(noise.std().item() - 0.1) < 0.01
        y = record["y"]
        assert isinstance(y, SoftLabels)
        torch.testing.assert_close(y.soft, label_smoothing(y_mixed.soft, 0.3))
        assert torch.equal(y.hard, y_mixed.hard)
        torch.testing.assert_close(y.soft.sum(1), torch.ones(64))


def test_target_noise_flips_replace_a_mixed_target_by_the_new_class(make_trainer: MakeTrainer) -> None:
    spy = Spy()
    callbacks = [spy, TargetNoise(SymmetricFlip(p=1.0), num_classes=C, seed=2)]
    dm = MixupDataModule(DigitsDataModule(), mixup_alpha=1.0, mode="elem", label_smoothing=0.1, seed=0)
    model = Recording()
    make_trainer(max_epochs=1, limit_train_batches=2, limit_val_batches=0, callbacks=callbacks).fit(model, dm)
    for (_, y_mixed), record in zip(spy.seen, model.train_batches, strict=True):
        y = record["y"]
        assert (y.hard != y_mixed.hard).all()  # every dominant class was flipped away
        assert torch.equal(y.soft, F.one_hot(y.hard, C).to(y.soft.dtype))


# --------------------------------------------------------------------------- batch layouts and the dataset


def test_tuple_and_dict_batches_are_mixed_and_the_dataset_is_not_modified(make_trainer: MakeTrainer) -> None:
    x = torch.rand(24, 2, 5, 5)
    y = torch.arange(24) % C
    x_before, y_before = x.clone(), y.clone()

    def as_tuple(samples: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.stack([s[0] for s in samples]), torch.stack([s[1] for s in samples])

    model = Sink(50)
    dm = MixupDataModule(
        TensorData(x, y, collate=as_tuple), num_classes=C, mode="elem", cutmix_alpha=1.0, seed=0
    )
    make_trainer(max_epochs=2).fit(model, dm)
    assert all(type(b) is tuple and isinstance(b[1], SoftLabels) for b in model.batches)
    assert not torch.equal(model.batches[0][0], x[:8])

    def as_dict(samples: list[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, Any]:
        return {
            "meta": {"image": torch.stack([s[0] for s in samples])},
            "label": torch.stack([s[1] for s in samples]),
        }

    model = Sink(50, x_of=lambda b: b["meta"]["image"])
    dm = MixupDataModule(
        TensorData(x, y, collate=as_dict), num_classes=C, input_key="meta.image", target_key="label", seed=0
    )
    make_trainer(max_epochs=1).fit(model, dm)
    assert isinstance(model.batches[0]["label"], SoftLabels)
    assert not torch.equal(model.batches[0]["meta"]["image"], x[:8])
    assert torch.equal(x, x_before)
    assert torch.equal(y, y_before)


def test_soft_incoming_targets_are_mixed_as_distributions(make_trainer: MakeTrainer) -> None:
    x = torch.rand(16, 1, 4, 4)
    probs = torch.softmax(torch.randn(16, C), dim=1)
    model = Sink(16)
    dm = MixupDataModule(TensorData(x, probs), num_classes=C, mode="elem", seed=0)
    make_trainer(max_epochs=1).fit(model, dm)
    y = model.batches[0][1]
    torch.testing.assert_close(y.soft.sum(1), torch.ones(8))
    params = dm.last_params
    assert params is not None
    lam = params.lam.float().view(-1, 1)
    last = probs[8:]
    torch.testing.assert_close(model.batches[-1][1].soft, lam * last + (1 - lam) * last[params.index])
    torch.testing.assert_close(one_hot_smooth(probs, C), probs)


# --------------------------------------------------------------------------- errors


class NoClasses(pl.LightningDataModule):
    pass


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"datamodule": NoClasses()}, "num_classes` is required"),
        ({"num_classes": 1}, "num_classes"),
        ({"num_classes": 2.5}, "num_classes"),
        ({"mixup_alpha": -0.1}, "mixup_alpha"),
        ({"cutmix_alpha": -1.0}, "cutmix_alpha"),
        ({"cutmix_alpha": Linear(start=1.0, end=-1.0, until=1.0)}, "cutmix_alpha"),
        ({"prob": 1.5}, "prob"),
        ({"prob": -0.1}, "prob"),
        ({"prob": Linear(start=0.0, end=2.0, until=1.0)}, "prob"),
        ({"switch_prob": 1.01}, "switch_prob"),
        ({"switch_prob": -0.5}, "switch_prob"),
        ({"mode": "rows"}, "mode"),
        ({"label_smoothing": 1.5}, "label_smoothing"),
        ({"cutmix_minmax": (0.8, 0.2)}, "cutmix_minmax"),
        ({"cutmix_minmax": (0.0, 0.5)}, "cutmix_minmax"),
        ({"cutmix_minmax": 0.5}, "cutmix_minmax"),
        ({"input_key": None}, "input_key"),
        ({"seed": -1}, "seed"),
        ({"target_format": "onehot"}, "target_format"),
        ({"correct_lam": "yes"}, "correct_lam"),
        ({"scale": -1.0}, "scale"),
        ({"datamodule": object()}, "datamodule"),
    ],
)
def test_bad_arguments_are_refused_at_construction(kwargs: dict[str, Any], match: str) -> None:
    arguments: dict[str, Any] = {"datamodule": DigitsDataModule(), **kwargs}
    with pytest.raises(ConfigurationError, match=match):
        MixupDataModule(**arguments)


@pytest.mark.parametrize(
    ("kwargs", "unread"),
    [
        (
            {"cutmix_alpha": 1.0, "cutmix_minmax": (0.2, 0.8)},
            ["`cutmix_alpha` is not read with `cutmix_minmax`"],
        ),
        ({"cutmix_minmax": (0.2, 0.8), "correct_lam": False}, ["`correct_lam=False` has no effect"]),
        ({"mixup_alpha": 0.2, "correct_lam": False}, ["`correct_lam` is read only with CutMix"]),
        ({"mixup_alpha": 0.2, "switch_prob": 0.9}, ["`switch_prob` (0.9) is read only when both"]),
        ({"mixup_alpha": 0.0, "cutmix_alpha": 1.0, "switch_prob": 0.1}, ["`switch_prob` (0.1) is read only"]),
        (
            {
                "cutmix_alpha": Linear(start=0.0, end=1.0, until=1.0),
                "cutmix_minmax": (0.2, 0.8),
                "correct_lam": False,
            },
            ["`cutmix_alpha` is not read", "`correct_lam=False` has no effect"],
        ),
    ],
)
def test_a_setting_the_others_leave_unread_warns_once_at_construction(
    kwargs: dict[str, Any], unread: list[str]
) -> None:
    """What the sampler would ignore, as timm's Mixup does, is said when the module is built."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        MixupDataModule(DigitsDataModule(), **kwargs)
    messages = [str(w.message) for w in caught]
    assert len(messages) == len(unread), messages
    for message, start in zip(messages, unread, strict=True):
        assert message.startswith(f"MixupDataModule: {start}"), message
    for settings in (
        {"mixup_alpha": 0.2, "cutmix_alpha": 1.0, "switch_prob": 0.9},
        {"cutmix_minmax": (0.2, 0.8)},
    ):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            MixupDataModule(DigitsDataModule(), **settings)  # every setting read: no warning


def _labels(values: list[int]) -> torch.Tensor:
    return torch.tensor(values * 4)


@pytest.mark.parametrize(
    ("x", "y", "kwargs", "match"),
    [
        (torch.rand(8, 5), _labels([0, 1]), {"cutmix_alpha": 1.0}, "CutMix pastes boxes"),
        (
            torch.rand(8, 5),
            _labels([0, 1]),
            {"cutmix_alpha": Linear(start=0.0, end=1.0, until=1.0)},
            "CutMix",
        ),
        (torch.rand(8, 1, 4, 4), _labels([0, 10]), {}, r"class targets must lie in \[0, 10\)"),
        (torch.rand(8, 1, 4, 4), _labels([-1, 3]), {}, "from -1 to 3"),
        (torch.rand(8, 1, 4, 4), torch.rand(8, 7), {}, r"\(B, num_classes\) = \(B, 10\)"),
        (torch.rand(8, 1, 4, 4), torch.rand(8), {}, "targets must be class indices"),
        (torch.randint(0, 9, (8, 1, 4, 4)), _labels([0, 1]), {}, "floating point"),
        (
            torch.rand(8, 1, 4, 4),
            _labels([0, 1]),
            {"prob": Linear(start=1.0, end=0.0, until=1.0)},
            "progress",
        ),
        (torch.rand(8, 1, 4, 4), _labels([0, 1]), {"target_key": 2}, "not in the batch"),
    ],
)
def test_bad_batches_are_refused_at_the_first_batch(
    make_trainer: MakeTrainer, x: torch.Tensor, y: torch.Tensor, kwargs: dict[str, Any], match: str
) -> None:
    model = Sink(x[0].numel())
    dm = MixupDataModule(TensorData(x, y), num_classes=C, seed=0, **kwargs)
    infinite = "prob" in kwargs
    trainer = make_trainer(max_epochs=-1 if infinite else 1)
    with pytest.raises(ConfigurationError, match=match):
        trainer.fit(model, dm)
    assert model.batches == []  # nothing reached training_step


@pytest.mark.parametrize("mode", ["batch", "pair", "elem"])
def test_odd_batches_and_a_batch_of_one_in_a_trainer(make_trainer: MakeTrainer, mode: str) -> None:
    x = torch.rand(10, 1, 6, 6)
    y = torch.arange(10) % C
    model = Sink(36)
    dm = MixupDataModule(TensorData(x, y, batch_size=3), num_classes=C, mode=mode, cutmix_alpha=1.0, seed=0)
    logger = MemoryLogger()
    with pytest.warns(UserWarning, match="a training batch has a single sample") as caught:
        make_trainer(max_epochs=2, logger=logger, log_every_n_steps=1).fit(model, dm)
    assert len([w for w in caught if "single sample" in str(w.message)]) == 1  # once per fit
    assert [len(b[0]) for b in model.batches] == [3, 3, 3, 1] * 2
    assert any(not torch.equal(b[0], x[3 * k : 3 * k + 3]) for k, b in enumerate(model.batches[:3]))
    last_x, last_y = model.batches[-1]
    assert torch.equal(last_x, x[9:])  # a batch of one has nobody to mix with
    assert torch.equal(last_y.soft, F.one_hot(y[9:], C).float())
    assert dm.last_params is None
    lams = [m["mix/lam"] for _, m in logger.rows if "mix/lam" in m]
    assert len(lams) == 8
    assert lams[3] == lams[7] == 1.0  # the unmixed batch of one reports lam 1, not a drawn lam


def test_cutmix_only_accepts_integer_images(make_trainer: MakeTrainer) -> None:
    x = torch.randint(0, 255, (8, 3, 6, 6), dtype=torch.uint8)
    model = Sink(108)
    dm = MixupDataModule(
        TensorData(x, _labels([0, 1])), num_classes=C, mixup_alpha=0.0, cutmix_alpha=1.0, seed=0
    )
    make_trainer(max_epochs=1).fit(model, dm)
    assert model.batches[0][0].dtype == torch.uint8
