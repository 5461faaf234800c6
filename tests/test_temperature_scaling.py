"""TemperatureScaling: the fit against SciPy and a known temperature; the callback: over-confident digits."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from unittest import mock

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from scipy.optimize import minimize_scalar
from scipy.special import logsumexp
from torch import Tensor
from torchmetrics.classification import MulticlassCalibrationError

from _ddp import ddp_trainer
from _trainers import quiet_trainer
from lit_noise import ConfigurationError, MixupDataModule, TemperatureScaling
from lit_noise.examples import Classifier, DigitsDataModule
from lit_noise.metrics import fit_temperature

SHARPEN = 6.0  # the over-confident model multiplies its evaluation logits by this
VAL_BATCHES = 4  # of 64 digits: the fit uses 256 of the 359 validation samples
BATCH = 64


# ------------------------------------------------------------------------------------------ pure fit


def _softmax_labels(z: np.ndarray, temperature: float, rng: np.random.Generator) -> np.ndarray:
    """Labels drawn from softmax(z / T) by inverse CDF (NumPy only)."""
    scaled = z / temperature
    probs = np.exp(scaled - logsumexp(scaled, axis=1, keepdims=True))
    return (rng.random((z.shape[0], 1)) > np.cumsum(probs, axis=1)).sum(axis=1)


def _scipy_temperature(z: np.ndarray, y: np.ndarray) -> float:
    """The NLL minimiser by SciPy's bounded scalar search over log T (NLL written in NumPy)."""

    def nll(log_t: float) -> float:
        scaled = z / np.exp(log_t)
        return float(np.mean(logsumexp(scaled, axis=1) - scaled[np.arange(len(y)), y]))

    result = minimize_scalar(nll, bounds=(-5.0, 5.0), method="bounded", options={"xatol": 1e-10})
    return float(np.exp(result.x))


@pytest.mark.parametrize("true_t", [0.5, 3.0])
def test_fit_recovers_a_known_temperature_and_matches_scipy(true_t: float) -> None:
    rng = np.random.default_rng(0)
    z = 3.0 * rng.standard_normal((20_000, 10))
    y = _softmax_labels(z, true_t, rng)
    fitted = fit_temperature(torch.from_numpy(z).float(), torch.from_numpy(y))
    assert abs(fitted / true_t - 1) < 0.02
    assert fitted == pytest.approx(_scipy_temperature(z, y), rel=1e-5)


def test_fit_works_under_no_grad_and_leaves_the_logits_alone() -> None:
    rng = np.random.default_rng(1)
    z = torch.from_numpy(2.0 * rng.standard_normal((2000, 4))).float()
    y = torch.from_numpy(_softmax_labels(z.numpy().astype(np.float64), 2.0, rng))
    copy = z.clone()
    with torch.inference_mode():
        inside = fit_temperature(z, y)
    assert inside == pytest.approx(fit_temperature(z, y), rel=1e-9)
    assert torch.equal(z, copy)


def test_degenerate_sets_give_the_bounds() -> None:
    z = torch.tensor([[5.0, 0.0, 1.0], [0.0, 5.0, 1.0]] * 10)
    assert fit_temperature(z, torch.tensor([0, 1] * 10)) == 1e-2  # all right: NLL falls as T -> 0
    assert fit_temperature(z, torch.tensor([2, 0] * 10)) == 1e2  # worse than uniform: NLL falls as T -> inf
    y = torch.tensor([0, 1] * 9 + [0, 2])  # one mistake: a finite optimum
    assert fit_temperature(z, y) == pytest.approx(_scipy_temperature(z.double().numpy(), y.numpy()), rel=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_iter": 0}, "`max_iter` must be an integer >= 1, got 0"),
        ({"init": 0.0}, "`init` must be a finite number > 0, got 0.0"),
        (
            {"logits": torch.zeros(4, 2, 3)},
            r"`logits` must be a floating \(N, C\) tensor .* shape \(4, 2, 3\)",
        ),
        ({"logits": torch.zeros(4, 1)}, r"C >= 2 classes, got shape \(4, 1\)"),
        ({"logits": torch.zeros(4, 3).long()}, "dtype torch.int64"),
        ({"logits": torch.tensor([[0.0, float("inf"), 1.0]] + [[0.0] * 3] * 3)}, "finite, got '1 non-finite"),
        (
            {"target": torch.tensor([0.0, 1.0, 1.0, 0.0])},
            r"`target` must be integer class indices of shape \(4,\)",
        ),
        ({"target": torch.tensor([0, 1, 3, 0])}, r"class indices in \[0, 2\], got 'indices in \[0, 3\]'"),
    ],
)
def test_fit_refuses_bad_input(kwargs: dict[str, Any], match: str) -> None:
    args: dict[str, Any] = {"logits": torch.zeros(4, 3), "target": torch.tensor([0, 1, 2, 0])}
    args.update(kwargs)
    with pytest.raises(ConfigurationError, match=match):
        fit_temperature(**args)


# ------------------------------------------------------------------------------------------ callback


class OverConfident(Classifier):
    """The example classifier, trained as usual, whose evaluation logits are multiplied by ``SHARPEN``."""

    def forward(self, x: Tensor) -> Tensor:
        logits = self.net(x)
        return logits if self.training else logits * SHARPEN


class Snapshot(Callback):
    """At on_train_end: the weights, the RNG state and the mode (one before the callback, one after)."""

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.weights = {k: v.clone() for k, v in pl_module.state_dict().items()}
        self.rng = torch.random.get_rng_state()
        self.training = pl_module.training
        self.wrapped = "forward" in vars(pl_module)


class Outputs(Callback):
    """What every validation, test and predict step returned."""

    def __init__(self) -> None:
        self.seen: dict[str, list[Tensor]] = {"val": [], "test": [], "predict": []}

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if not trainer.sanity_checking:
            self.seen["val"].append(outputs.detach().clone())

    def on_test_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self.seen["test"].append(outputs.detach().clone())

    def on_predict_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self.seen["predict"].append(outputs.detach().clone())

    def take(self, stage: str) -> Tensor:
        values = torch.cat(self.seen[stage])
        self.seen[stage] = []
        return values


def _inputs(split: str, batches: int | None = None) -> tuple[Tensor, Tensor]:
    data = DigitsDataModule(batch_size=BATCH)
    data.setup("fit")
    dataset = data.val_set if split == "val" else data.test_set
    x, y = dataset.tensors
    count = len(y) if batches is None else batches * BATCH
    return x[:count], y[:count]


def _raw_logits(model: pl.LightningModule, x: Tensor) -> Tensor:
    """The model's evaluation logits computed here (eval mode, no hooks involved)."""
    model.eval()
    with torch.no_grad():
        return model.net(x) * SHARPEN


class Fitted:
    """One fit of the over-confident model with TemperatureScaling, shared by the tests below."""

    def __init__(self, root: Path) -> None:
        pl.seed_everything(0, verbose=False)
        self.model = OverConfident(lr=3e-2)
        self.data = DigitsDataModule(batch_size=BATCH)
        self.scaling = TemperatureScaling()
        self.before, self.after = Snapshot(), Snapshot()
        self.outputs = Outputs()
        self.logger = CSVLogger(str(root / "logs"), name="run", version=0)
        self.checkpoint = ModelCheckpoint(dirpath=str(root / "ckpt"), save_last=True)
        self.messages: list[str] = []
        self.trainer = quiet_trainer(
            max_epochs=1,
            limit_val_batches=VAL_BATCHES,
            num_sanity_val_steps=0,
            logger=self.logger,
            enable_checkpointing=True,
            default_root_dir=str(root),
            callbacks=[self.before, self.scaling, self.after, self.outputs, self.checkpoint],
        )
        with mock.patch("lit_noise.callbacks.temperature_scaling.rank_zero_info", self.messages.append):
            self.trainer.fit(self.model, self.data)
        self.outputs.take("val")
        self.calibrated = root / "calibrated.ckpt"
        self.trainer.save_checkpoint(self.calibrated)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> Fitted:
    return Fitted(tmp_path_factory.mktemp("temperature"))


def test_the_fit_is_the_nll_optimum_of_the_limited_validation_logits(fitted: Fitted) -> None:
    x, y = _inputs("val", VAL_BATCHES)  # limit_val_batches is respected: the first 4 batches only
    z = _raw_logits(fitted.model, x).double().numpy()
    assert fitted.scaling.fitted
    assert fitted.scaling.num_samples == VAL_BATCHES * BATCH
    assert fitted.scaling.temperature == pytest.approx(_scipy_temperature(z, y.numpy()), rel=1e-4)
    assert fitted.scaling.temperature > 2.0  # the x6 sharpening is mostly undone


def test_nll_ece_and_brier_before_and_after_match_references_and_improve(fitted: Fitted) -> None:
    x, y = _inputs("val", VAL_BATCHES)
    z = _raw_logits(fitted.model, x)
    t = fitted.scaling.temperature
    values = fitted.scaling.last_values
    for suffix, logits in (("before_ts", z), ("after_ts", z / t)):
        ece = MulticlassCalibrationError(num_classes=10, n_bins=15, norm="l1")(logits.softmax(1), y)
        probs = logits.softmax(1).double().numpy()
        brier = np.mean(np.sum((probs - np.eye(10)[y.numpy()]) ** 2, axis=1))
        assert values[f"val/cal/ece_{suffix}"] == pytest.approx(float(ece), abs=1e-5)
        assert values[f"val/cal/nll_{suffix}"] == pytest.approx(float(F.cross_entropy(logits, y)), rel=1e-5)
        assert values[f"val/cal/brier_{suffix}"] == pytest.approx(brier, rel=1e-5)
    assert values["val/cal/temperature"] == t
    assert values["val/cal/nll_after_ts"] < 0.5 * values["val/cal/nll_before_ts"]
    assert values["val/cal/ece_after_ts"] < 0.5 * values["val/cal/ece_before_ts"]
    assert values["val/cal/brier_after_ts"] < values["val/cal/brier_before_ts"]


def test_values_reach_the_logger_callback_metrics_and_console(fitted: Fitted) -> None:
    with (Path(fitted.logger.log_dir) / "metrics.csv").open() as handle:
        rows = [row for row in csv.DictReader(handle) if row.get("val/cal/temperature")]
    assert len(rows) == 1
    assert float(rows[0]["val/cal/temperature"]) == pytest.approx(fitted.scaling.temperature)
    assert float(rows[0]["val/cal/nll_after_ts"]) == pytest.approx(
        fitted.scaling.last_values["val/cal/nll_after_ts"]
    )
    assert int(rows[0]["step"]) == fitted.trainer.global_step
    assert float(fitted.trainer.callback_metrics["val/cal/temperature"]) == pytest.approx(
        fitted.scaling.temperature
    )
    (line,) = fitted.messages
    t = fitted.scaling.temperature
    assert line.startswith(f"TemperatureScaling: T = {t:.4f} fitted on 256 validation samples; ECE ")


def test_fitting_changes_no_weight_mode_or_rng(fitted: Fitted) -> None:
    before, after = fitted.before, fitted.after
    assert all(torch.equal(after.weights[k], v) for k, v in before.weights.items())
    assert torch.equal(before.rng, after.rng)
    assert before.training  # in training mode when fitting ends ...
    assert after.training  # ... and back in it after the eval-mode pass
    assert not after.wrapped  # nothing wrapped outside test/predict
    assert "forward" not in vars(fitted.model)


def test_applied_at_test_and_predict_not_at_validation(fitted: Fitted) -> None:
    trainer, model, outputs, t = fitted.trainer, fitted.model, fitted.outputs, fitted.scaling.temperature
    x_val, _ = _inputs("val", VAL_BATCHES)
    x_test, _ = _inputs("test")
    trainer.validate(model, fitted.data, verbose=False)
    torch.testing.assert_close(outputs.take("val"), _raw_logits(model, x_val))
    trainer.test(model, fitted.data, verbose=False)
    torch.testing.assert_close(outputs.take("test"), _raw_logits(model, x_test) / t)
    assert "forward" not in vars(model)  # removed after test
    trainer.predict(model, fitted.data)
    torch.testing.assert_close(outputs.take("predict"), (_raw_logits(model, x_test) / t).softmax(1))
    assert "forward" not in vars(model)
    torch.testing.assert_close(model(x_test), _raw_logits(model, x_test))  # removed after predict


def _fresh_test(fitted: Fitted, path: Path, **kwargs: Any) -> tuple[TemperatureScaling, Tensor]:
    scaling, outputs = TemperatureScaling(**kwargs), Outputs()
    saver = ModelCheckpoint(
        dirpath=fitted.checkpoint.dirpath
    )  # the checkpoint's other callback; saves nothing
    trainer = quiet_trainer(
        limit_test_batches=1, enable_checkpointing=True, callbacks=[scaling, outputs, saver]
    )
    trainer.test(OverConfident(), fitted.data, ckpt_path=str(path), verbose=False)
    return scaling, outputs.take("test")


def test_a_checkpoint_saved_after_fit_carries_the_temperature(fitted: Fitted) -> None:
    x, _ = _inputs("test", 1)
    scaling, logits = _fresh_test(fitted, fitted.calibrated)
    assert scaling.fitted
    assert scaling.temperature == fitted.scaling.temperature
    torch.testing.assert_close(logits, _raw_logits(fitted.model, x) / fitted.scaling.temperature)


def test_a_checkpoint_saved_during_fit_gets_a_temperature_fitted_for_its_own_weights(fitted: Fitted) -> None:
    path = Path(fitted.checkpoint.last_model_path)
    scaling, logits = _fresh_test(fitted, path)
    loaded = OverConfident()
    loaded.load_state_dict(torch.load(path, weights_only=False)["state_dict"])
    x_val, y_val = _inputs("val")  # the fresh trainer never fitted: every validation batch
    expected = _scipy_temperature(_raw_logits(loaded, x_val).double().numpy(), y_val.numpy())
    assert scaling.fitted
    assert scaling.temperature == pytest.approx(expected, rel=1e-4)
    assert scaling.num_samples == len(y_val)
    x, _ = _inputs("test", 1)
    torch.testing.assert_close(logits, _raw_logits(loaded, x) / scaling.temperature)


def test_fitting_for_a_loaded_checkpoint_respects_limit_val_batches(fitted: Fitted) -> None:
    path = Path(fitted.checkpoint.last_model_path)
    scaling = TemperatureScaling()
    saver = ModelCheckpoint(dirpath=fitted.checkpoint.dirpath)  # the checkpoint's other callback
    trainer = quiet_trainer(
        limit_test_batches=1, limit_val_batches=1, enable_checkpointing=True, callbacks=[scaling, saver]
    )
    trainer.test(OverConfident(), fitted.data, ckpt_path=str(path), verbose=False)
    loaded = OverConfident()
    loaded.load_state_dict(torch.load(path, weights_only=False)["state_dict"])
    x_val, y_val = _inputs("val", 1)
    assert scaling.num_samples == BATCH
    expected = _scipy_temperature(_raw_logits(loaded, x_val).double().numpy(), y_val.numpy())
    assert scaling.temperature == pytest.approx(expected, rel=1e-4)


def test_a_checkpoint_saved_during_fit_applies_no_temperature_and_warns_without_fit_missing(
    fitted: Fitted,
) -> None:
    x, _ = _inputs("test", 1)
    with pytest.warns(UserWarning, match="saved before a temperature was fitted.*runs without temperature"):
        scaling, logits = _fresh_test(fitted, Path(fitted.checkpoint.last_model_path), fit_missing=False)
    assert not scaling.fitted
    assert scaling.temperature == 1.0
    torch.testing.assert_close(logits, _raw_logits(fitted.model, x))


def test_a_checkpoint_without_the_callback_state_resets_the_temperature(
    fitted: Fitted, tmp_path: Path
) -> None:
    plain = tmp_path / "plain.ckpt"
    checkpoint = torch.load(fitted.calibrated, weights_only=False)
    checkpoint["callbacks"] = {}
    torch.save(checkpoint, plain)
    scaling, outputs = TemperatureScaling(fit_missing=False), Outputs()
    scaling.load_state_dict({"temperature": 3.0, "fitted": True})
    trainer = quiet_trainer(limit_test_batches=1, callbacks=[scaling, outputs])
    with pytest.warns(UserWarning, match="holds no TemperatureScaling state"):
        trainer.test(OverConfident(), fitted.data, ckpt_path=str(plain), verbose=False)
    assert not scaling.fitted
    torch.testing.assert_close(outputs.take("test"), _raw_logits(fitted.model, _inputs("test", 1)[0]))


def test_state_dict_loads_with_defaults_for_missing_keys() -> None:
    scaling = TemperatureScaling()
    scaling.load_state_dict({"temperature": 2.5, "fitted": True})
    assert (scaling.temperature, scaling.fitted, scaling.num_samples) == (2.5, True, 0)
    scaling.load_state_dict({})
    assert (scaling.temperature, scaling.fitted) == (1.0, False)
    assert scaling.state_dict() == {"temperature": 1.0, "fitted": False, "num_samples": 0}


def test_a_temperature_saved_with_a_module_and_no_stage_restores_into_the_same_settings(
    tmp_path: Path,
) -> None:
    pl.seed_everything(0, verbose=False)
    model, data = OverConfident(), DigitsDataModule(batch_size=BATCH)
    saved = TemperatureScaling(module="net", apply_at=())  # fit and log only; `module` names the state
    trainer = quiet_trainer(
        limit_train_batches=2, limit_val_batches=2, num_sanity_val_steps=0, callbacks=[saved]
    )
    trainer.fit(model, data)
    assert saved.fitted
    assert "forward" not in vars(model.net)  # nothing wrapped
    path = tmp_path / "calibrated.ckpt"
    trainer.save_checkpoint(path)
    assert saved.state_key in torch.load(path, weights_only=False)["callbacks"]
    restored, outputs = TemperatureScaling(module="net", apply_at=(), fit_missing=False), Outputs()
    assert restored.state_key == saved.state_key
    tester = quiet_trainer(limit_test_batches=1, callbacks=[restored, outputs])
    tester.test(OverConfident(), data, ckpt_path=str(path), verbose=False)
    assert restored.fitted
    assert restored.temperature == saved.temperature
    assert restored.num_samples == 2 * BATCH
    # apply_at=(): the test logits are the raw ones, the submodule never wrapped.
    torch.testing.assert_close(outputs.take("test"), _raw_logits(model, _inputs("test", 1)[0]))
    assert "forward" not in vars(tester.lightning_module.net)


@pytest.mark.parametrize(
    ("apply_at", "test_scaled", "predict_scaled"), [((), False, False), (["predict"], False, True)]
)
def test_apply_at_switches_stages_off(
    fitted: Fitted, apply_at: Sequence[str], test_scaled: bool, predict_scaled: bool
) -> None:
    scaling, outputs = TemperatureScaling(apply_at=apply_at), Outputs()
    t = 2.5
    scaling.load_state_dict({"temperature": t, "fitted": True})
    trainer = quiet_trainer(limit_test_batches=1, limit_predict_batches=1, callbacks=[scaling, outputs])
    trainer.test(fitted.model, fitted.data, verbose=False)
    trainer.predict(fitted.model, fitted.data)
    raw = _raw_logits(fitted.model, _inputs("test", 1)[0])
    torch.testing.assert_close(outputs.take("test"), raw / t if test_scaled else raw)
    torch.testing.assert_close(outputs.take("predict"), (raw / t if predict_scaled else raw).softmax(1))


def test_a_named_submodule_is_scaled_and_restored() -> None:
    model = Classifier()
    scaling = TemperatureScaling(module="net")
    scaling.load_state_dict({"temperature": 4.0, "fitted": True})
    x = torch.rand(3, 1, 8, 8)
    raw = model.eval()(x)
    scaling._apply("test", quiet_trainer(), model)
    scaling._apply("test", quiet_trainer(), model)  # a second start replaces the wrapper, never stacks it
    torch.testing.assert_close(model(x), raw / 4.0)
    torch.testing.assert_close(model.net(x), raw / 4.0)
    scaling._remove()
    assert "forward" not in vars(model.net)
    torch.testing.assert_close(model(x), raw)


# ------------------------------------------------------------------------------------------ precision

#: The dtype a "*-true" precision gives the weights and inputs (Lightning's convert_input).
TRUE_DTYPES = {"bf16-true": torch.bfloat16, "16-true": torch.float16, "64-true": torch.float64}


class PlainSGD(Classifier):
    """The example classifier on SGD: Adam's eps 1e-8 is 0 in float16 ("16-true" gave NaN weights)."""

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _by_hand(model: Classifier, x: Tensor, precision: str) -> Tensor:
    """The evaluation logits computed here, as Lightning's evaluation loop does under ``precision``."""
    model.eval()
    logits: Tensor
    with torch.no_grad():
        if precision == "bf16-mixed":
            with torch.autocast("cpu", dtype=torch.bfloat16):
                logits = model.net(x)
        else:
            logits = model.net(x.to(TRUE_DTYPES[precision]))
    return logits


@pytest.mark.parametrize("precision", ["bf16-true", "16-true", "64-true", "bf16-mixed"])
def test_the_fit_and_the_application_work_under_every_precision(
    precision: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[Tensor] = []

    def spy(logits: Tensor, labels: Tensor, max_iter: int = 50) -> float:
        seen.append(logits)
        return fit_temperature(logits, labels, max_iter)

    monkeypatch.setattr("lit_noise.callbacks.temperature_scaling.fit_temperature", spy)
    pl.seed_everything(0, verbose=False)
    model, data = PlainSGD(), DigitsDataModule(batch_size=BATCH)
    scaling, outputs = TemperatureScaling(), Outputs()
    options: dict[str, Any] = {"precision": precision, "limit_val_batches": 2, "limit_test_batches": 1}
    trainer = quiet_trainer(
        limit_train_batches=2, num_sanity_val_steps=0, callbacks=[scaling, outputs], **options
    )
    trainer.fit(model, data)
    assert scaling.fitted
    validated = outputs.take("val")  # what Lightning's own validation step returned, same weights
    x_val, y_val = _inputs("val", 2)
    torch.testing.assert_close(validated, _by_hand(model, x_val, precision))
    (collected,) = seen
    wide = torch.float64 if precision == "64-true" else torch.float32
    assert collected.dtype == wide  # 16-bit logits widened to float32, float64 kept
    torch.testing.assert_close(collected, validated.to(wide), rtol=0, atol=0)
    expected = _scipy_temperature(validated.double().numpy(), y_val.numpy())
    assert isinstance(scaling.temperature, float)
    assert scaling.temperature == pytest.approx(expected, rel=1e-4)
    # Testing: the test logits in the model's dtype, divided by T.
    x_test, _ = _inputs("test", 1)
    quiet_trainer(callbacks=[scaling, outputs], **options).test(model, data, verbose=False)
    tested = outputs.take("test")
    raw = _by_hand(model, x_test, precision)
    assert tested.dtype == raw.dtype
    torch.testing.assert_close(tested, raw / scaling.temperature)
    # fit_missing: a fresh callback fits the same T for these weights when testing starts.
    fresh = TemperatureScaling()
    quiet_trainer(callbacks=[fresh], **options).test(model, data, verbose=False)
    assert fresh.fitted
    assert fresh.temperature == pytest.approx(scaling.temperature, rel=1e-9)


class Failing(Classifier):
    def test_step(self, batch: Sequence[Tensor], batch_idx: int) -> Tensor:
        self(batch[0])
        raise RuntimeError("boom")


def test_the_wrapper_is_removed_when_test_raises() -> None:
    model, scaling = Failing(), TemperatureScaling()
    scaling.load_state_dict({"temperature": 2.0, "fitted": True})
    trainer = quiet_trainer(limit_test_batches=1, callbacks=[scaling])
    with pytest.raises(RuntimeError, match="boom"):
        trainer.test(model, DigitsDataModule(), verbose=False)
    assert "forward" not in vars(model)


# ------------------------------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_iter": 0}, "TemperatureScaling: `max_iter` must be an integer >= 1, got 0."),
        ({"n_bins": 0}, "`n_bins` must be an integer >= 1, got 0"),
        ({"apply_at": "test"}, "`apply_at` must be a sequence of 'test' and/or 'predict'"),
        ({"apply_at": ["val"]}, "`apply_at` must be one of 'test', 'predict', got 'val'"),
        ({"module": ""}, "`module` must be None or the dotted name of a submodule"),
        ({"forward_fn": 3}, "`forward_fn` must be None, the name of a method"),
        ({"fit_missing": "yes"}, "`fit_missing` must be True or False, got 'yes'"),
    ],
)
def test_bad_arguments(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        TemperatureScaling(**kwargs)


def _tiny_fit(model: pl.LightningModule, scaling: TemperatureScaling, **kwargs: Any) -> None:
    options: dict[str, Any] = {"limit_train_batches": 1, "limit_val_batches": 1, "num_sanity_val_steps": 0}
    options.update(kwargs)
    quiet_trainer(callbacks=[scaling], **options).fit(model, DigitsDataModule())


@pytest.mark.parametrize("apply_at", [("test", "predict"), ()], ids=["applied", "apply_at-empty"])
def test_a_module_name_that_matches_nothing_lists_the_modules(apply_at: tuple[str, ...]) -> None:
    """Checked in setup even when nothing applies the temperature (the name still keys the state)."""
    with pytest.raises(
        ConfigurationError, match=r"`module` must be .* \(it has 'net', 'net.0', .*got 'head'"
    ):
        _tiny_fit(Classifier(), TemperatureScaling(module="head", apply_at=apply_at))


def test_no_validation_data_is_refused_before_training() -> None:
    model = Classifier()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ConfigurationError, match="`limit_val_batches` is 0"):
        _tiny_fit(model, TemperatureScaling(), limit_val_batches=0)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())


class NoValidation(Classifier):
    validation_step = pl.LightningModule.validation_step  # type: ignore[assignment]


@pytest.mark.filterwarnings("ignore:You passed in a `val_dataloader` but have no `validation_step`")
def test_a_model_without_validation_step_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="NoValidation has no `validation_step`"):
        _tiny_fit(NoValidation(), TemperatureScaling())


def test_outputs_that_are_not_n_by_c_logits_are_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"an output of shape \(64, 10, 1\)"):
        _tiny_fit(Classifier(), TemperatureScaling(forward_fn=lambda m, x: m(x).unsqueeze(-1)))
    with pytest.raises(ConfigurationError, match="looks like a regression model"):
        _tiny_fit(Classifier(), TemperatureScaling(forward_fn=lambda m, x: m(x)[:, :1]))


class TupleOutput(Classifier):
    """A model whose forward returns a tuple: there is no tensor of logits to divide."""

    def forward(self, x: Tensor) -> tuple[Tensor]:  # type: ignore[override]
        return (self.net(x),)

    def test_step(self, batch: Sequence[Tensor], batch_idx: int) -> Tensor:
        return self(batch[0])[0]


def test_a_forward_without_logits_is_refused_at_test() -> None:
    scaling = TemperatureScaling()
    scaling.load_state_dict({"temperature": 2.0, "fitted": True})
    with pytest.raises(ConfigurationError, match="`module` must be a module whose forward returns a tensor"):
        quiet_trainer(limit_test_batches=1, callbacks=[scaling]).test(
            TupleOutput(), DigitsDataModule(), verbose=False
        )


def test_validation_that_never_ran_still_fits() -> None:
    scaling = TemperatureScaling()
    _tiny_fit(Classifier(), scaling, check_val_every_n_epoch=5)
    assert scaling.fitted
    assert scaling.num_samples == BATCH


def test_a_mixing_datamodule_leaves_the_fit_batches_clean() -> None:
    pl.seed_everything(0, verbose=False)
    model, scaling = Classifier(), TemperatureScaling()
    data = MixupDataModule(DigitsDataModule(batch_size=BATCH), num_classes=10, mixup_alpha=1.0)
    quiet_trainer(limit_train_batches=2, limit_val_batches=2, callbacks=[scaling]).fit(model, data)
    x, y = _inputs("val", 2)
    with torch.no_grad():
        z = model.eval().net(x).double().numpy()
    assert scaling.temperature == pytest.approx(_scipy_temperature(z, y.numpy()), rel=1e-4)


def test_testing_before_any_fit_applies_nothing_and_warns_once() -> None:
    model, scaling, outputs = Classifier(), TemperatureScaling(fit_missing=False), Outputs()
    trainer = quiet_trainer(limit_test_batches=1, limit_predict_batches=1, callbacks=[scaling, outputs])
    with pytest.warns(UserWarning, match="no temperature has been fitted yet"):
        trainer.test(model, DigitsDataModule(), verbose=False)
    trainer.predict(model, DigitsDataModule())  # no second warning (it would fail: filterwarnings=error)
    x, _ = _inputs("test", 1)
    with torch.no_grad():
        torch.testing.assert_close(outputs.take("test"), model.eval().net(x))


def test_a_fit_at_a_bound_warns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("lit_noise.callbacks.temperature_scaling.fit_temperature", lambda *args: 1e-2)
    scaling = TemperatureScaling()
    with pytest.warns(UserWarning, match=r"reached the bound 0.01 of \(0.01, 100.0\)"):
        _tiny_fit(Classifier(), scaling)
    assert scaling.temperature == 1e-2


@pytest.mark.slow
def test_ddp_spawn_fits_on_the_whole_validation_set(tmp_path: Path) -> None:
    pl.seed_everything(0)
    model = Classifier()
    data = DigitsDataModule(val_fraction=0.1)  # 180 samples: 90 per process, no padding by the sampler
    trainer = ddp_trainer(
        tmp_path, [TemperatureScaling()], max_epochs=1, limit_train_batches=3, num_sanity_val_steps=0
    )
    trainer.fit(model, data)
    data.setup()
    assert data.val_set is not None
    x, y = data.val_set.tensors
    assert len(y) == 180
    with torch.no_grad():
        z = model.eval()(x).double().numpy()  # the weights trained by the spawned processes
    fitted = float(trainer.callback_metrics["val/cal/temperature"])
    assert fitted == pytest.approx(_scipy_temperature(z, y.numpy()), rel=1e-4)
