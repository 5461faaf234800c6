"""CalibrationMonitor on the example classifier: promised keys, reference values, no side effects."""

from __future__ import annotations

import contextlib
import csv
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger
from sklearn.metrics import log_loss
from torch import Tensor, nn
from torchmetrics.functional.classification import multiclass_calibration_error

from _ddp import ddp_trainer
from lit_noise import CalibrationMonitor, ConfigurationError
from lit_noise.callbacks.monitoring import eval_forward, step_logits
from lit_noise.examples import Classifier, DigitsDataModule
from lit_noise.metrics import adaptive_calibration_error, brier_score, calibration_error

KEYS = ("ece", "mce", "rmsce", "aece", "brier", "nll")
MakeTrainer = Callable[..., pl.Trainer]


class SilentClassifier(Classifier):
    """A user model whose validation/test steps return nothing."""

    def validation_step(self, batch: Sequence[Tensor], batch_idx: int) -> None:  # type: ignore[override]
        super().validation_step(batch, batch_idx)

    def test_step(self, batch: Sequence[Tensor], batch_idx: int) -> None:  # type: ignore[override]
        super().test_step(batch, batch_idx)


class DictClassifier(Classifier):
    """Validation step returning a dict with the logits."""

    def validation_step(self, batch: Sequence[Tensor], batch_idx: int) -> dict[str, Tensor]:  # type: ignore[override]
        return {"logits": super().validation_step(batch, batch_idx), "other": torch.zeros(1)}


class NoisyForwardClassifier(SilentClassifier):
    """Dropout, and a forward that draws from the global RNG even in eval mode."""

    def __init__(self) -> None:
        super().__init__(backbone="mlp")
        self.drop = nn.Dropout(0.3)

    def forward(self, x: Tensor) -> Tensor:
        x = x + 1e-3 * torch.rand_like(x)  # consumes the global RNG in any mode
        return self.net(self.drop(x))


def _fit(
    make_trainer: MakeTrainer, model: pl.LightningModule, monitor: CalibrationMonitor | None, **kw: Any
) -> pl.Trainer:
    pl.seed_everything(7, verbose=False)
    options: dict[str, Any] = {"max_epochs": 1, "limit_train_batches": 6}
    options.update(kw)
    trainer = make_trainer(callbacks=[] if monitor is None else [monitor], **options)
    trainer.fit(model, DigitsDataModule())
    return trainer


def _val_logits(model: pl.LightningModule) -> tuple[Tensor, Tensor]:
    dm = DigitsDataModule()
    dm.setup()
    assert dm.val_set is not None
    x, y = dm.val_set.tensors
    model.eval()
    with torch.no_grad():
        return model(x), y


def test_logs_every_key_with_reference_values(make_trainer: MakeTrainer) -> None:
    pl.seed_everything(0)
    model = Classifier()
    trainer = _fit(make_trainer, model, CalibrationMonitor(num_classes=10, n_bins=10, log_figures=False))
    metrics = trainer.callback_metrics
    assert {f"val/cal/{k}" for k in KEYS} <= set(metrics)
    logits, y = _val_logits(model)
    for key, norm in (("ece", "l1"), ("mce", "max"), ("rmsce", "l2")):
        expected = multiclass_calibration_error(logits, y, 10, n_bins=10, norm=norm)
        assert float(metrics[f"val/cal/{key}"]) == pytest.approx(float(expected), abs=1e-5), key
    assert float(metrics["val/cal/aece"]) == pytest.approx(
        float(adaptive_calibration_error(logits, y, 10, 10)), abs=1e-6
    )
    probs = logits.double().softmax(1).numpy()
    brier = ((probs - np.eye(10)[y.numpy()]) ** 2).sum(1).mean()
    assert float(metrics["val/cal/brier"]) == pytest.approx(brier, rel=1e-5)
    assert float(metrics["val/cal/nll"]) == pytest.approx(
        log_loss(y.numpy(), probs, labels=list(range(10))), rel=1e-5
    )
    assert float(metrics["val/cal/nll"]) == pytest.approx(
        float(metrics["val/loss"]), rel=1e-5
    )  # NLL is the CE loss
    assert float(metrics["val/cal/ece"]) > 0

    trainer.test(model, DigitsDataModule())
    assert {f"test/cal/{k}" for k in KEYS} <= set(trainer.callback_metrics)
    assert float(trainer.callback_metrics["test/cal/nll"]) == pytest.approx(
        float(trainer.callback_metrics["test/loss"]), rel=1e-5
    )


def test_step_returning_nothing_or_a_dict_gives_the_same_values(make_trainer: MakeTrainer) -> None:
    values = []
    for cls in (Classifier, SilentClassifier, DictClassifier):
        pl.seed_everything(0)
        monitor = CalibrationMonitor(num_classes=10, log_figures=False)  # the values, not the figures
        trainer = _fit(make_trainer, cls(), monitor, limit_train_batches=1, num_sanity_val_steps=0)
        values.append({k: float(trainer.callback_metrics[f"val/cal/{k}"]) for k in KEYS})
    assert values[0] == values[1] == values[2]


def test_own_forward_runs_under_the_trainer_precision(make_trainer: MakeTrainer) -> None:
    values = []
    for cls in (Classifier, SilentClassifier):  # logits from the step (autocast) vs the monitor's forward
        pl.seed_everything(0)
        trainer = _fit(
            make_trainer,
            cls(),
            CalibrationMonitor(num_classes=10, log_figures=False),
            limit_train_batches=1,
            num_sanity_val_steps=0,
            precision="bf16-mixed",
        )
        values.append({k: float(trainer.callback_metrics[f"val/cal/{k}"]) for k in KEYS})
    assert values[0] == values[1]


class FailsOnce(Classifier):
    """A model whose second test batch raises, the first time only (an interrupted evaluation)."""

    failed = False

    def test_step(self, batch: Any, batch_idx: int) -> Tensor:
        if batch_idx == 1 and not self.failed:
            self.failed = True
            raise RuntimeError("interrupted")
        return super().test_step(batch, batch_idx)


def test_an_interrupted_evaluation_leaves_nothing_in_the_next_one(make_trainer: MakeTrainer) -> None:
    pl.seed_everything(0)
    model = FailsOnce()
    monitor = CalibrationMonitor(num_classes=10, stages=["val", "test"], log_figures=False)
    with pytest.raises(RuntimeError, match="interrupted"):
        make_trainer(callbacks=[monitor]).test(model, DigitsDataModule(), verbose=False)
    make_trainer(callbacks=[monitor]).test(model, DigitsDataModule(), verbose=False)
    fresh = CalibrationMonitor(num_classes=10, stages=["test"], log_figures=False)
    make_trainer(callbacks=[fresh]).test(model, DigitsDataModule(), verbose=False)
    assert monitor.last_values == fresh.last_values  # the interrupted run's first batch is gone


def test_weights_are_identical_with_and_without_the_monitor(make_trainer: MakeTrainer) -> None:
    states = []
    for monitor in (None, CalibrationMonitor(num_classes=10)):
        pl.seed_everything(3)
        model = NoisyForwardClassifier()
        trainer = _fit(make_trainer, model, monitor, max_epochs=2, limit_train_batches=4, limit_val_batches=3)
        assert model.training  # the module is back in training mode after fit's last validation
        states.append({k: v.clone() for k, v in model.state_dict().items()})
        if monitor is not None:
            assert "val/cal/ece" in trainer.callback_metrics
    assert states[0].keys() == states[1].keys()
    for key in states[0]:
        assert torch.equal(states[0][key], states[1][key]), key


def test_eval_forward_restores_modes_and_rng() -> None:
    net = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.9), nn.Sequential(nn.BatchNorm1d(4)))
    net.train()
    net[2].eval()  # mixed modes must come back exactly
    x = torch.randn(8, 4)
    state = torch.random.get_rng_state()
    out = eval_forward(net, x)
    assert torch.equal(state, torch.random.get_rng_state())
    assert [m.training for m in net.modules()] == [True, True, True, False, False]
    net.eval()
    with torch.no_grad():
        assert torch.equal(out, net(x))  # computed in eval mode (no dropout, running BN statistics)
    assert not out.requires_grad
    with pytest.raises(ConfigurationError, match="a tensor of logits"):
        eval_forward(_TupleNet(), x)


class _TupleNet(nn.Module):
    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return x, x


def test_step_logits() -> None:
    logits = torch.zeros(2, 3)
    assert step_logits(logits) is logits
    assert step_logits({"logits": logits}) is logits
    assert step_logits({"loss": torch.tensor(1.0)}) is None
    assert step_logits(None) is None


def test_figures_and_tables_are_written_once_per_epoch(make_trainer: MakeTrainer, tmp_path: Path) -> None:
    logger = CSVLogger(str(tmp_path / "logs"), name="run", version=0)
    _fit(
        make_trainer,
        Classifier(),
        CalibrationMonitor(num_classes=10),
        max_epochs=2,
        limit_train_batches=3,
        logger=logger,
        num_sanity_val_steps=2,
    )
    figures = Path(logger.log_dir) / "figures" / "val" / "cal"
    pngs = sorted(p.name for p in (figures / "reliability").glob("*.png"))
    assert pngs == ["epoch0000-step0000003.png", "epoch0001-step0000006.png"]  # nothing from sanity checking
    with (figures / "reliability_table" / "epoch0001-step0000006.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert sum(float(r["count"]) for r in rows) == 359  # the whole validation set
    assert all(0 <= float(r["accuracy"]) <= 1 for r in rows)
    with (Path(logger.log_dir) / "metrics.csv").open() as handle:
        logged = [r for r in csv.DictReader(handle) if r.get("val/cal/ece")]
    assert len(logged) == 2  # one value per epoch, none from the sanity check


def test_no_figures_when_disabled_and_only_requested_stages(
    make_trainer: MakeTrainer, tmp_path: Path
) -> None:
    model = Classifier()
    trainer = _fit(make_trainer, model, CalibrationMonitor(num_classes=10, stages=["val"], log_figures=False))
    assert "val/cal/ece" in trainer.callback_metrics
    trainer.test(model, DigitsDataModule())
    assert not any(k.startswith("test/cal/") for k in trainer.callback_metrics)
    assert not (tmp_path / "figures").exists()


def test_multidimensional_outputs_are_flattened(make_trainer: MakeTrainer) -> None:
    class Segmenter(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 3, 3, padding=1)

        def forward(self, x: Tensor) -> Tensor:
            return self.conv(x)

        def training_step(self, batch: Sequence[Tensor], batch_idx: int) -> Tensor:
            return nn.functional.cross_entropy(self(batch[0]), batch[1])

        def validation_step(self, batch: Sequence[Tensor], batch_idx: int) -> None:
            pass

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    g = torch.Generator().manual_seed(0)
    x = torch.rand(16, 1, 5, 5, generator=g)
    y = (x[:, 0] * 3).long().clamp(max=2)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=4)
    model = Segmenter()
    trainer = make_trainer(
        max_epochs=1, callbacks=[CalibrationMonitor(num_classes=3, n_bins=5, log_figures=False)]
    )
    trainer.fit(model, loader, loader)
    with torch.no_grad():
        logits = model.eval()(x)
    expected = calibration_error(logits, y, 3, 5)
    assert float(trainer.callback_metrics["val/cal/ece"]) == pytest.approx(float(expected), abs=1e-6)
    assert float(trainer.callback_metrics["val/cal/brier"]) == pytest.approx(
        float(brier_score(logits, y, 3)), rel=1e-5
    )


class _Confident(pl.LightningModule):
    """Float64 linear logits scaled up: its wrong predictions cost more than float64's -log(eps) = 36.0.

    ``positions`` > 0 gives ``(N, C, positions)`` sequence outputs; ``probs`` returns softmax
    probabilities instead of logits.
    """

    def __init__(self, positions: int = 0, probs: bool = False) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.positions, self.probs = positions, probs
        self.layer = nn.Linear(4, 3 * max(positions, 1), dtype=torch.float64)
        with torch.no_grad():
            self.layer.weight.mul_(60.0)

    def forward(self, x: Tensor) -> Tensor:
        out = self.layer(x)
        return out.view(len(x), 3, self.positions) if self.positions else out

    def validation_step(self, batch: Sequence[Tensor], batch_idx: int) -> Tensor:
        out = self(batch[0])
        return out.softmax(1) if self.probs else out

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.mark.parametrize("input_format", ["auto", "logits"])
@pytest.mark.parametrize("positions", [0, 5], ids=["(N, C)", "(N, C, L)"])
def test_nll_of_logits_is_the_cross_entropy_of_the_whole_validation_set(
    make_trainer: MakeTrainer, input_format: str, positions: int
) -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(100, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (100, positions) if positions else (100,), generator=g)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=32)  # 32,32,32,4
    model = _Confident(positions)
    monitor = CalibrationMonitor(3, input_format=input_format, log_figures=False)  # type: ignore[arg-type]
    make_trainer(callbacks=[monitor]).validate(model, loader, verbose=False)
    with torch.no_grad():
        logits = model(x)
    terms = nn.functional.cross_entropy(logits, y, reduction="none")
    assert float(terms.max()) > 40.0  # confident mistakes: a clamp of the probabilities would show
    expected = float(nn.functional.cross_entropy(logits, y))  # float64, over every sample at once
    assert monitor.last_values["val/cal/nll"] == pytest.approx(expected, rel=1e-6, abs=0)


def test_nll_of_probabilities_clamps_them(make_trainer: MakeTrainer) -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(100, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (100,), generator=g)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=32)
    model = _Confident(probs=True)
    monitor = CalibrationMonitor(3, log_figures=False)
    make_trainer(callbacks=[monitor]).validate(model, loader, verbose=False)
    with torch.no_grad():
        probs = model(x).softmax(1).numpy()
    eps = np.finfo(np.float64).eps  # scikit-learn's log_loss rule for float64 probabilities
    assert (probs[np.arange(100), y.numpy()] < eps).any()  # the clamp matters here
    expected = -np.log(np.clip(probs[np.arange(100), y.numpy()], eps, 1 - eps)).mean()
    assert monitor.last_values["val/cal/nll"] == pytest.approx(expected, rel=1e-6, abs=0)


def test_wrong_num_classes_fails_before_training(make_trainer: MakeTrainer) -> None:
    pl.seed_everything(0)
    model = Classifier()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = make_trainer(max_epochs=1, limit_train_batches=2, callbacks=[CalibrationMonitor(num_classes=7)])
    with pytest.raises(ConfigurationError, match=r"model output has 10 classes .* `num_classes` is 7"):
        trainer.fit(model, DigitsDataModule())
    assert trainer.global_step == 0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_missing_batch_key_is_a_clear_error(make_trainer: MakeTrainer) -> None:
    trainer = make_trainer(
        max_epochs=1, limit_train_batches=2, callbacks=[CalibrationMonitor(10, input_key="image")]
    )
    with pytest.raises(ConfigurationError, match="CalibrationMonitor"):
        trainer.fit(SilentClassifier(), DigitsDataModule())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_classes": 10, "n_bins": 0}, "`n_bins` must be an integer >= 1, got 0"),
        ({"num_classes": 1}, "`num_classes` must be an integer >= 2"),
        ({"num_classes": 10, "stages": ("train",)}, "`stages` must be one of 'val', 'test', got 'train'"),
        ({"num_classes": 10, "stages": "val"}, "`stages` must be a sequence"),
        ({"num_classes": 10, "input_format": "softmax"}, "`input_format`"),
        ({"num_classes": 10, "n_fine_bins": 0}, "`n_fine_bins`"),
        ({"num_classes": 10, "target_key": True}, "`target_key`"),
        ({"num_classes": 10, "forward_fn": 1.5}, "`forward_fn` must be None, the name of a method"),
        ({"num_classes": 10, "summaries": {"val/acc": "top"}}, "`summaries` must be a mapping"),
    ],
)
def test_bad_arguments(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        CalibrationMonitor(**kwargs)


def test_hydra_style_arguments_are_accepted() -> None:
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"num_classes": 10, "stages": ["val"], "target_key": "1"})
    monitor = CalibrationMonitor(cfg.num_classes, stages=cfg.stages, target_key=cfg.target_key)
    assert monitor.stages == ("val",)


def test_wandb_logger_receives_the_reliability_diagram(make_trainer: MakeTrainer, tmp_path: Path) -> None:
    from lightning.pytorch.loggers import WandbLogger

    logger = WandbLogger(save_dir=str(tmp_path), project="lit-noise-test", offline=True)
    try:
        _fit(
            make_trainer,
            Classifier(),
            CalibrationMonitor(num_classes=10),
            logger=logger,
            limit_train_batches=2,
        )
        run_dir = Path(logger.experiment.dir)
    finally:
        logger.experiment.finish()
    images = list((run_dir / "media" / "images").rglob("*.png"))
    assert any("reliability" in p.name for p in images)
    tables = list((run_dir / "media" / "table").rglob("*.table.json"))
    assert any("reliability_table" in p.name for p in tables)
    assert not (tmp_path / "figures").exists()


def test_figures_go_to_the_csv_logger_beside_wandb_and_summaries_leave_val_acc_alone(
    make_trainer: MakeTrainer, tmp_path: Path
) -> None:
    from lightning.pytorch.loggers import WandbLogger

    wandb_logger = WandbLogger(save_dir=str(tmp_path / "wandb"), project="lit-noise-test", offline=True)
    csv_logger = CSVLogger(str(tmp_path / "logs"), name="run", version=0)
    run = wandb_logger.experiment
    defined: list[tuple[str, Any]] = []
    define_metric = run.define_metric

    def spy(name: str, *args: Any, **kwargs: Any) -> Any:
        defined.append((name, kwargs.get("summary")))
        return define_metric(name, *args, **kwargs)

    run.define_metric = spy
    try:
        trainer = _fit(
            make_trainer,
            Classifier(),
            CalibrationMonitor(num_classes=10),
            logger=[wandb_logger, csv_logger],
            limit_train_batches=2,
        )
        run_dir = Path(run.dir)
    finally:
        run.finish()
    figures = Path(csv_logger.log_dir) / "figures" / "val" / "cal"
    assert [p.name for p in (figures / "reliability").glob("*.png")] == ["epoch0000-step0000002.png"]
    assert len(list((figures / "reliability_table").glob("*.csv"))) == 1
    assert any("reliability" in p.name for p in (run_dir / "media" / "images").rglob("*.png"))
    assert defined == [("val/cal/ece", "min")]  # the user's val/acc summary is not touched
    assert "val/cal/ece" in trainer.callback_metrics


def test_summaries_of_your_own_metrics_on_request(tmp_path: Path) -> None:
    from lightning.pytorch.loggers import WandbLogger

    logger = WandbLogger(save_dir=str(tmp_path), project="lit-noise-test", offline=True)
    run = logger.experiment
    defined: list[tuple[str, Any]] = []
    define_metric = run.define_metric

    def spy(name: str, *args: Any, **kwargs: Any) -> Any:
        defined.append((name, kwargs.get("summary")))
        return define_metric(name, *args, **kwargs)

    run.define_metric = spy
    trainer = pl.Trainer(logger=logger, enable_progress_bar=False, enable_model_summary=False)
    try:
        monitor = CalibrationMonitor(10, summaries={"val/acc": "max", "val/cal/nll": "min"})
        monitor.on_fit_start(trainer, Classifier())
        CalibrationMonitor(10, stages=["test"]).on_fit_start(trainer, Classifier())  # no val: nothing
    finally:
        run.finish()
    assert defined == [("val/acc", "max"), ("val/cal/nll", "min")]
    with pytest.warns(UserWarning, match="CalibrationMonitor: `summaries`.*no WandbLogger"):
        monitor.on_fit_start(pl.Trainer(logger=False, enable_progress_bar=False), Classifier())


class _Regressor(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Linear(64, 1)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.net(x.flatten(1))
        return out

    def training_step(self, batch: Sequence[Tensor], batch_idx: int) -> Tensor:
        return nn.functional.mse_loss(self(batch[0]).squeeze(1), batch[1].float())

    def validation_step(self, batch: Sequence[Tensor], batch_idx: int) -> Tensor:
        return self.forward(batch[0])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.mark.parametrize("sanity", [2, 0])
def test_regression_is_refused_before_training(make_trainer: MakeTrainer, sanity: int) -> None:
    dm = DigitsDataModule()
    dm.setup()
    assert dm.train_set is not None
    assert dm.val_set is not None
    as_regression = [
        torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y.float()), batch_size=32)
        for x, y in (dm.train_set.tensors, dm.val_set.tensors)
    ]
    model = _Regressor()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = make_trainer(
        max_epochs=1,
        limit_train_batches=2,
        num_sanity_val_steps=sanity,
        callbacks=[CalibrationMonitor(num_classes=10, log_figures=False)],
    )
    with pytest.raises(
        ConfigurationError, match=r"^CalibrationMonitor measures classification accuracy"
    ) as info:
        trainer.fit(model, as_regression[0], as_regression[1])
    message = str(info.value)
    assert "torch.float32 of shape (32,)" in message
    assert ("shape (32, 1) (width 1)" in message) == (sanity > 0)  # without a sanity check: the targets
    assert trainer.global_step == 0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


class _TwoInputs(SilentClassifier):
    """A forward that needs a second argument; a step that returns nothing."""

    def forward(self, x: Tensor, scale: float) -> Tensor:  # type: ignore[override]
        out: Tensor = self.net(x) * scale
        return out

    def logits(self, x: Tensor) -> Tensor:
        return self.forward(x, 1.0)

    def training_step(self, batch: Sequence[Tensor], batch_idx: int) -> Tensor:
        return nn.functional.cross_entropy(self.logits(batch[0]), batch[1])

    def validation_step(self, batch: Sequence[Tensor], batch_idx: int) -> None:  # type: ignore[override]
        self.log("val/loss", nn.functional.cross_entropy(self.logits(batch[0]), batch[1]))


def test_forward_that_needs_more_than_the_input_is_a_clear_error_and_forward_fn_fixes_it(
    make_trainer: MakeTrainer,
) -> None:
    pl.seed_everything(0)
    model = _TwoInputs()
    trainer = make_trainer(
        max_epochs=1, limit_train_batches=2, callbacks=[CalibrationMonitor(10, log_figures=False)]
    )
    with pytest.raises(
        ConfigurationError,
        match=r"_TwoInputs.forward\(x\).*TypeError.*return the logits from the evaluation step.*`forward_fn`",
    ) as info:
        trainer.fit(model, DigitsDataModule())
    assert isinstance(info.value.__cause__, TypeError)
    assert trainer.global_step == 0
    values = []
    for forward_fn in ("logits", lambda module, x: module(x, 1.0)):
        pl.seed_everything(0)
        trainer = _fit(
            make_trainer,
            _TwoInputs(),
            CalibrationMonitor(10, log_figures=False, forward_fn=forward_fn),
            limit_train_batches=2,
        )
        values.append({k: float(trainer.callback_metrics[f"val/cal/{k}"]) for k in KEYS})
    pl.seed_everything(0)
    plain = _fit(
        make_trainer, SilentClassifier(), CalibrationMonitor(10, log_figures=False), limit_train_batches=2
    )
    assert values[0] == values[1] == {k: float(plain.callback_metrics[f"val/cal/{k}"]) for k in KEYS}


class _Counted:
    """A ``forward_fn`` that counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, module: nn.Module, x: Tensor) -> Tensor:
        self.calls += 1
        out: Tensor = module(x)
        return out


def _unused_forward_fn(steps: str) -> str:
    return (
        f"CalibrationMonitor: `forward_fn` was never called: the {steps} returned logits on every batch,"
        " and the monitor reads those (it calls `forward_fn` only for a step that returns none). Drop"
        f" `forward_fn`, or return no logits from the {steps} for the monitor to call it."
    )


@contextlib.contextmanager
def _recorded() -> Iterator[list[warnings.WarningMessage]]:
    """Every warning raised in the block, repeats included (none is turned into an error)."""
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        yield record


def _ours(record: Iterable[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in record if str(w.message).startswith("CalibrationMonitor: `forward_fn`")]


class _ValLogitsOnly(Classifier):
    """Validation returns the logits, test returns nothing: the monitor calls forward_fn in test."""

    def test_step(self, batch: Sequence[Tensor], batch_idx: int) -> None:  # type: ignore[override]
        super().test_step(batch, batch_idx)


class _LogitsFromTheFirstLoader(Classifier):
    """Of two validation dataloaders, only the first one's step returns logits."""

    def validation_step(  # type: ignore[override]
        self, batch: Sequence[Tensor], batch_idx: int, dataloader_idx: int = 0
    ) -> Tensor | None:
        logits: Tensor = self(batch[0])
        return logits if dataloader_idx == 0 else None


class _NoTestStep(Classifier):
    """A module that cannot be tested: only its validation stage can ever run."""

    test_step = pl.LightningModule.test_step  # type: ignore[assignment]


def test_a_forward_fn_never_called_warns_once_naming_the_stage(make_trainer: MakeTrainer) -> None:
    """The example Classifier's steps return logits, which the monitor reads: forward_fn is unused."""
    forward_fn = _Counted()
    monitor = CalibrationMonitor(10, stages=("val",), log_figures=False, forward_fn=forward_fn)
    pl.seed_everything(0, verbose=False)
    with _recorded() as record:
        trainer = _fit(make_trainer, Classifier(), monitor, max_epochs=2)  # sanity check + 2 validations
        values = {k: float(trainer.callback_metrics[f"val/cal/{k}"]) for k in KEYS}
        trainer.validate(trainer.lightning_module, DigitsDataModule(), verbose=False)  # a later run
    assert _ours(record) == [_unused_forward_fn("val step")]
    assert forward_fn.calls == 0
    pl.seed_everything(0, verbose=False)
    plain = _fit(
        make_trainer, Classifier(), CalibrationMonitor(10, stages=("val",), log_figures=False), max_epochs=2
    )
    assert values == {k: float(plain.callback_metrics[f"val/cal/{k}"]) for k in KEYS}


def test_fit_then_test_returning_logits_in_both_warns_once_after_the_test(make_trainer: MakeTrainer) -> None:
    """After ``fit`` the test stage is still to run (it may need forward_fn): the warning waits for it."""
    forward_fn = _Counted()
    monitor = CalibrationMonitor(10, log_figures=False, forward_fn=forward_fn)  # stages ("val", "test")
    model = Classifier()
    with _recorded() as fitting:
        trainer = _fit(make_trainer, model, monitor)
    assert _ours(fitting) == []
    with _recorded() as record:
        trainer.test(model, DigitsDataModule(), verbose=False)
        trainer.test(model, DigitsDataModule(), verbose=False)
    assert _ours(record) == [_unused_forward_fn("val and test steps")]
    assert forward_fn.calls == 0


def test_a_forward_fn_called_in_one_stage_gives_no_warning(make_trainer: MakeTrainer) -> None:
    """Validation returns logits, test does not: forward_fn serves the test, so nothing to warn of."""
    forward_fn = _Counted()
    monitor = CalibrationMonitor(10, log_figures=False, forward_fn=forward_fn)
    model = _ValLogitsOnly()
    with _recorded() as record:
        trainer = _fit(make_trainer, model, monitor, limit_train_batches=2)
        trainer.test(model, DigitsDataModule(), verbose=False)
    assert _ours(record) == []
    assert forward_fn.calls > 0
    assert "test/cal/ece" in trainer.callback_metrics


def test_a_forward_fn_called_for_one_dataloader_gives_no_warning(make_trainer: MakeTrainer) -> None:
    dm = DigitsDataModule()
    dm.setup()
    forward_fn = _Counted()
    monitor = CalibrationMonitor(10, stages=("val",), log_figures=False, forward_fn=forward_fn)
    trainer = make_trainer(callbacks=[monitor])
    with _recorded() as record:
        trainer.validate(
            _LogitsFromTheFirstLoader(), [dm.val_dataloader(), dm.val_dataloader()], verbose=False
        )
    assert _ours(record) == []
    assert forward_fn.calls == len(dm.val_dataloader())


def test_a_module_without_a_test_step_is_warned_after_fit(make_trainer: MakeTrainer) -> None:
    """With the default stages the test stage cannot run for this module, so ``fit`` is the end."""
    monitor = CalibrationMonitor(10, log_figures=False, forward_fn=_Counted())
    with pytest.warns(UserWarning, match="forward_fn") as record:
        _fit(make_trainer, _NoTestStep(), monitor, limit_train_batches=2)
    assert _ours(record) == [_unused_forward_fn("val step")]


def test_the_unused_forward_fn_warning_comes_from_rank_zero_only(
    make_trainer: MakeTrainer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``rank_zero_warn``: under DDP only rank zero warns (here this process plays rank 1)."""
    from lightning.pytorch.utilities import rank_zero_only

    monitor = CalibrationMonitor(10, stages=("val",), log_figures=False, forward_fn=_Counted())
    monkeypatch.setattr(rank_zero_only, "rank", 1)
    with _recorded() as record:
        _fit(make_trainer, Classifier(), monitor, limit_train_batches=2)
    assert _ours(record) == []


def test_without_matplotlib_figures_are_refused_and_log_figures_false_runs(
    make_trainer: MakeTrainer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    from lit_noise._optional import MissingDependencyError

    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")] or [
        "matplotlib"
    ]:
        monkeypatch.setitem(sys.modules, name, None)  # any import of matplotlib now fails
    with pytest.raises(
        MissingDependencyError, match=r"log_figures=True \(pass log_figures=False.*lit-noise\[plots\]"
    ):
        CalibrationMonitor(num_classes=10)
    trainer = _fit(
        make_trainer,
        Classifier(),
        CalibrationMonitor(num_classes=10, log_figures=False),
        limit_train_batches=2,
    )
    assert "val/cal/ece" in trainer.callback_metrics
    assert not (tmp_path / "figures").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_metric_state_lives_on_the_module_device(make_trainer: MakeTrainer) -> None:
    monitor = CalibrationMonitor(num_classes=10)
    trainer = _fit(make_trainer, Classifier(), monitor, accelerator="gpu", devices=1, deterministic=False)
    assert monitor.metrics["val"].diagram.count.device.type == "cuda"
    assert monitor.metrics["val"].adaptive.count.device.type == "cuda"
    assert "val/cal/ece" in trainer.callback_metrics


@pytest.mark.slow
def test_ddp_spawn_logs_the_value_of_the_whole_validation_set(tmp_path: Path) -> None:
    pl.seed_everything(0)
    model = Classifier()
    dm = DigitsDataModule(val_fraction=0.1)  # 180 samples: split evenly, no padding by the sampler
    trainer = ddp_trainer(
        tmp_path,
        [CalibrationMonitor(num_classes=10, n_bins=10)],
        max_epochs=1,
        limit_train_batches=3,
        logger=CSVLogger(str(tmp_path / "logs"), name="run", version=0),
        num_sanity_val_steps=0,
    )
    trainer.fit(model, dm)
    dm.setup()
    assert dm.val_set is not None
    x, y = dm.val_set.tensors
    assert len(y) == 180
    with torch.no_grad():
        logits = model.eval()(x)  # the weights trained by the spawned processes
    expected = multiclass_calibration_error(logits, y, 10, n_bins=10, norm="l1")
    assert float(trainer.callback_metrics["val/cal/ece"]) == pytest.approx(float(expected), abs=1e-5)
    probs = logits.double().softmax(1).numpy()
    expected_nll = log_loss(y.numpy(), probs, labels=list(range(10)))
    assert float(trainer.callback_metrics["val/cal/nll"]) == pytest.approx(expected_nll, rel=1e-5)
    pngs = list(
        (tmp_path / "logs" / "run" / "version_0" / "figures" / "val" / "cal" / "reliability").glob("*.png")
    )
    assert len(pngs) == 1  # written once, by rank zero
