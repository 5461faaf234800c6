"""RobustnessMonitor on the example classifier: keys, values against torchmetrics, no side effects."""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader, TensorDataset
from torchmetrics.classification import MulticlassAccuracy, MulticlassCalibrationError

from _ddp import ReleaseProcessGroup
from _trainers import quiet_trainer
from lit_noise import ConfigurationError
from lit_noise.callbacks import RobustnessMonitor
from lit_noise.callbacks.robustness_monitor import area_under_curve
from lit_noise.corruptions import DEFAULT_CORRUPTIONS, corrupt
from lit_noise.examples import Classifier, DigitsDataModule, ShapesDataModule, make_shapes
from lit_noise.metrics import CalibrationError

P = "val/robust"


def _data(batch_size: int = 32, val_size: int = 96) -> ShapesDataModule:
    return ShapesDataModule(batch_size=batch_size, train_size=128, val_size=val_size, test_size=32)


def _model(seed: int = 0) -> Classifier:
    torch.manual_seed(seed)
    return Classifier("cnn", num_classes=6, input_shape=(3, 32, 32), hidden=8, lr=1e-2)


@pytest.fixture(scope="module")
def trained() -> Classifier:
    """A model trained for a few steps, so accuracies and ECEs are not degenerate."""
    model = _model()
    trainer = quiet_trainer(max_epochs=2, limit_val_batches=0, num_sanity_val_steps=0, deterministic=False)
    trainer.fit(model, _data())
    return model.eval()


def _expected_keys(names: Sequence[str], severities: Sequence[int], baseline: bool) -> set[str]:
    keys = {f"{P}/{k}" for k in ("clean_acc", "clean_ece", "mean_acc", "mean_ece", "retention", "mean_auc")}
    for name in names:
        keys |= {f"{P}/{name}/{k}" for k in ("acc", "retention", "auc")}
        keys |= {f"{P}/{name}/s{s}/{m}" for s in severities for m in ("acc", "ece")}
        if baseline:
            keys.add(f"{P}/{name}/ce")
    if baseline:
        keys.add(f"{P}/mce")
    return keys


def _reference(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, n_bins: int
) -> tuple[float, float, float]:
    """Accuracy and ECE by torchmetrics, and ECE by lit_noise's CalibrationError."""
    with torch.no_grad():
        logits = model.eval()(x)
    accuracy = MulticlassAccuracy(num_classes=6, average="micro")(logits, y).item()
    ece = MulticlassCalibrationError(num_classes=6, n_bins=n_bins, norm="l1")(logits, y).item()
    ours = CalibrationError(num_classes=6, n_bins=n_bins)
    ours.update(logits, y)
    return accuracy, ece, ours.compute().item()


# ------------------------------------------------------------------------------------------ values


def test_logs_every_key_with_values_equal_to_torchmetrics(
    trained: Classifier, make_trainer: Callable[..., pl.Trainer]
) -> None:
    names, severities, n_bins = ["contrast", "pixelate", "gaussian_blur"], [1, 3, 5], 10
    baseline = {name: [0.1, 0.2, 0.3, 0.4, 0.5] for name in [*names, "fog"]}
    monitor = RobustnessMonitor(names, severities, n_bins=n_bins, baseline_errors=baseline)
    dm = _data()
    trainer = make_trainer(callbacks=[monitor])
    trainer.validate(trained, dm, verbose=False)
    values = monitor.last_values
    assert set(values) == _expected_keys(names, severities, baseline=True)
    for key, value in values.items():
        assert trainer.callback_metrics[key].item() == pytest.approx(value, abs=1e-6)

    x, y = dm.val_set.tensors  # type: ignore[union-attr]
    clean_acc, clean_ece, clean_ours = _reference(trained, x, y, n_bins)
    assert values[f"{P}/clean_acc"] == pytest.approx(clean_acc, abs=1e-6)
    assert values[f"{P}/clean_ece"] == pytest.approx(clean_ece, abs=1e-5)
    assert values[f"{P}/clean_ece"] == pytest.approx(clean_ours, abs=1e-6)
    accs = {}
    for name in names:
        accs[name] = []
        for s in severities:
            acc, ece, ours = _reference(trained, corrupt(x, name, s), y, n_bins)
            assert values[f"{P}/{name}/s{s}/acc"] == pytest.approx(acc, abs=1e-6)
            assert values[f"{P}/{name}/s{s}/ece"] == pytest.approx(ece, abs=1e-5)
            assert values[f"{P}/{name}/s{s}/ece"] == pytest.approx(ours, abs=1e-6)
            accs[name].append(acc)
        mean = float(np.mean(accs[name]))
        assert values[f"{P}/{name}/acc"] == pytest.approx(mean, abs=1e-6)
        assert values[f"{P}/{name}/retention"] == pytest.approx(mean / clean_acc, rel=1e-6)
        trapezoid = np.trapezoid([clean_acc, *accs[name]], [0, *severities]) / max(severities)
        assert values[f"{P}/{name}/auc"] == pytest.approx(trapezoid, abs=1e-6)
        errors = sum(1 - a for a in accs[name])
        assert values[f"{P}/{name}/ce"] == pytest.approx(errors / (0.1 + 0.3 + 0.5), rel=1e-6)
    all_accs = [a for name in names for a in accs[name]]
    assert values[f"{P}/mean_acc"] == pytest.approx(np.mean(all_accs), abs=1e-6)
    assert values[f"{P}/retention"] == pytest.approx(np.mean(all_accs) / clean_acc, rel=1e-6)
    assert values[f"{P}/mce"] == pytest.approx(np.mean([values[f"{P}/{n}/ce"] for n in names]), rel=1e-6)
    assert values[f"{P}/mean_auc"] == pytest.approx(
        np.mean([values[f"{P}/{n}/auc"] for n in names]), rel=1e-6
    )


def test_area_under_curve_matches_numpy() -> None:
    severities, accs = [1, 2, 4], [0.7, 0.5, 0.2]
    expected = np.trapezoid([0.9, *accs], [0, *severities]) / 4
    assert area_under_curve(severities, 0.9, accs) == pytest.approx(expected)
    assert area_under_curve([1, 2, 3, 4, 5], 0.8, [0.8] * 5) == pytest.approx(0.8)


def test_noise_corruptions_are_deterministic_per_seed_and_the_same_every_epoch(
    trained: Classifier, make_trainer: Callable[..., pl.Trainer]
) -> None:
    def run(seed: int) -> dict[str, float]:
        monitor = RobustnessMonitor(["gaussian_noise", "impulse_noise"], seed=seed)
        make_trainer(callbacks=[monitor]).validate(trained, _data(), verbose=False)
        return monitor.last_values

    first, again, other = run(1), run(1), run(2)
    assert first == again
    noisy = [k for k in first if "/s" in k and k.endswith("/acc")]
    assert any(first[k] != other[k] for k in noisy)


def test_max_samples_evaluates_the_first_samples_only(
    trained: Classifier, make_trainer: Callable[..., pl.Trainer]
) -> None:
    monitor = RobustnessMonitor(["contrast"], [2], max_samples=40)
    dm = _data(batch_size=32)
    make_trainer(callbacks=[monitor]).validate(trained, dm, verbose=False)
    x, y = dm.val_set.tensors  # type: ignore[union-attr]
    acc, _, ours = _reference(trained, corrupt(x[:40], "contrast", 2), y[:40], 15)
    assert monitor.last_values[f"{P}/contrast/s2/acc"] == pytest.approx(acc, abs=1e-6)
    assert monitor.last_values[f"{P}/contrast/s2/ece"] == pytest.approx(ours, abs=1e-6)
    assert monitor.last_values[f"{P}/clean_acc"] == pytest.approx(_reference(trained, x[:40], y[:40], 15)[0])


class _Counting(Classifier):
    """Counts its forwards (Lightning bypasses forward hooks in the evaluation step)."""

    calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return super().forward(x)


class _Silent(_Counting):
    def validation_step(self, batch: Any, batch_idx: int) -> None:  # type: ignore[override]
        super().validation_step(batch, batch_idx)


class _Dict(_Counting):
    def validation_step(self, batch: Any, batch_idx: int) -> dict[str, torch.Tensor]:  # type: ignore[override]
        return {"logits": super().validation_step(batch, batch_idx), "other": torch.zeros(())}


@pytest.mark.parametrize("copies", [1, 4, None, "auto"])
def test_same_values_whatever_the_step_returns_and_the_forward_chunking(
    trained: Classifier, make_trainer: Callable[..., pl.Trainer], copies: int | str | None
) -> None:
    names, severities = ["brightness", "speckle_noise"], [2, 4, 5]

    def run(model: Classifier, **options: Any) -> tuple[dict[str, float], int]:
        monitor = RobustnessMonitor(names, severities, **options)
        make_trainer(callbacks=[monitor]).validate(model, _data(val_size=64), verbose=False)
        return monitor.last_values, getattr(model, "calls", 0)

    reference, _ = run(trained)
    state = trained.state_dict()
    for cls in (_Silent, _Dict, _Counting):
        model = cls("cnn", num_classes=6, input_shape=(3, 32, 32), hidden=8)
        model.load_state_dict(state)
        values, forwards = run(model, copies_per_forward=copies)
        assert values.keys() == reference.keys()
        for key, value in reference.items():
            assert values[key] == pytest.approx(value, abs=1e-5), key
        pairs, batches = len(names) * len(severities), 2
        copies_needed = pairs + (1 if cls is _Silent else 0)  # no returned logits: one clean forward more
        chunk = 1 if copies == "auto" else copies  # "auto" on CPU: one copy per forward
        per_batch = 1 if chunk is None else -(-copies_needed // int(chunk))
        assert forwards == batches * (1 + per_batch)  # 1: the validation step's own forward


# ------------------------------------------------------------------------------------------ side effects


def _fit(tmp_path: Path, monitor: RobustnessMonitor | None) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    pl.seed_everything(0, verbose=False)
    model = _model()
    trainer = quiet_trainer(
        max_epochs=2,
        limit_train_batches=3,
        default_root_dir=str(tmp_path),
        callbacks=[] if monitor is None else [monitor],
    )
    trainer.fit(model, _data())
    return model.state_dict(), torch.random.get_rng_state()


def test_a_run_with_and_without_the_monitor_gives_identical_weights_and_rng(tmp_path: Path) -> None:
    weights, rng = _fit(tmp_path, None)
    monitored, monitored_rng = _fit(tmp_path, RobustnessMonitor(max_samples=48, copies_per_forward=16))
    assert weights.keys() == monitored.keys()
    for key in weights:
        assert torch.equal(weights[key], monitored[key]), key
    assert torch.equal(rng, monitored_rng)


def test_the_model_mode_is_left_alone_and_sanity_checks_only_check(
    trained: Classifier, make_trainer: Callable[..., pl.Trainer]
) -> None:
    torch.manual_seed(0)
    model = _Counting("cnn", num_classes=6, input_shape=(3, 32, 32), hidden=8)
    seen: dict[str, Any] = {}

    class Probe(pl.Callback):
        def on_sanity_check_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            seen["sanity forwards"] = model.calls

        def on_validation_batch_end(
            self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any
        ) -> None:
            seen.setdefault("modes", set()).add(pl_module.training)

    monitor = RobustnessMonitor(["contrast"], [1])
    trainer = make_trainer(callbacks=[monitor, Probe()], limit_train_batches=1, num_sanity_val_steps=2)
    trainer.fit(model, _data())
    assert seen["sanity forwards"] == 2  # only the validation step's forwards during the sanity check
    assert seen["modes"] == {False}  # Lightning's eval mode, untouched by the monitor (called before)
    assert model.training  # back in training mode after fit, as Lightning leaves it


def test_every_n_epochs_and_the_csv_logger_receive_every_key(tmp_path: Path) -> None:
    names = ["contrast", "gaussian_noise"]
    monitor = RobustnessMonitor(names, [1, 5], every_n_epochs=2, max_samples=32)
    logger = CSVLogger(str(tmp_path), name="run")
    trainer = pl.Trainer(
        max_epochs=3,
        accelerator="cpu",
        logger=logger,
        log_every_n_steps=1,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_train_batches=2,
        callbacks=[monitor],
        default_root_dir=str(tmp_path),
    )
    trainer.fit(_model(), _data())
    with open(Path(logger.log_dir) / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert _expected_keys(names, [1, 5], baseline=False) <= set(rows[0])
    evaluated = sorted({int(r["epoch"]) for r in rows if r.get(f"{P}/mean_acc")})
    assert evaluated == [1]  # epochs 0, 1, 2 with every_n_epochs=2: only epoch 1
    assert {int(r["epoch"]) for r in rows if r.get("val/acc")} == {0, 1, 2}
    figures = Path(logger.log_dir) / "figures" / "val" / "robust"
    assert len(list((figures / "accuracy_vs_severity").glob("*.png"))) == 1
    (table,) = (figures / "table").glob("*.csv")
    with open(table) as handle:
        table_rows = list(csv.DictReader(handle))
    assert [(r["corruption"], r["severity"]) for r in table_rows] == [
        ("clean", "0"),
        ("contrast", "1"),
        ("contrast", "5"),
        ("gaussian_noise", "1"),
        ("gaussian_noise", "5"),
    ]
    assert float(table_rows[2]["accuracy"]) == pytest.approx(monitor.last_values[f"{P}/contrast/s5/acc"])


def test_state_has_a_fixed_size(trained: Classifier, make_trainer: Callable[..., pl.Trainer]) -> None:
    monitor = RobustnessMonitor(["contrast"], [1, 2], n_bins=7)
    for size in (32, 160):
        make_trainer(callbacks=[monitor]).validate(trained, _data(val_size=size), verbose=False)
        assert monitor.bins.count.shape == (3, 7)
        assert sum(t.numel() for t in monitor.bins.metric_state.values()) == 3 * 3 * 7  # type: ignore[union-attr]


def test_default_corruptions_skip_what_does_not_apply(make_trainer: Callable[..., pl.Trainer]) -> None:
    monitor = RobustnessMonitor(severities=[3], max_samples=16)
    torch.manual_seed(0)
    make_trainer(callbacks=[monitor]).validate(Classifier("cnn", hidden=8), DigitsDataModule(), verbose=False)
    evaluated = {k.split("/")[2] for k in monitor.last_values if k.endswith("/s3/acc")}
    assert evaluated == set(DEFAULT_CORRUPTIONS) - {"saturate"}  # one-channel digits: no saturation


# ------------------------------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"corruptions": ["fog"]}, "gaussian_noise, gaussian_blur|registered corruptions"),
        ({"corruptions": "contrast"}, "corruptions"),
        ({"corruptions": []}, "corruptions"),
        ({"severities": [0, 1]}, "severities"),
        ({"severities": [6]}, "severities"),
        ({"severities": []}, "severities"),
        ({"severities": [2, 2]}, "distinct"),
        ({"n_bins": 0}, "n_bins"),
        ({"every_n_epochs": 0}, "every_n_epochs"),
        ({"max_samples": 0}, "max_samples"),
        ({"constants": "cifar100"}, "constants"),
        ({"copies_per_forward": 0}, "copies_per_forward"),
        ({"copies_per_forward": "fast"}, "copies_per_forward"),
        ({"input_format": "logit"}, "input_format"),
        ({"num_classes": 1}, "num_classes"),
        ({"corruptions": ["contrast"], "baseline_errors": {"contrast": [0.5] * 4}}, "five"),
        ({"corruptions": ["contrast"], "baseline_errors": {"contrast": [1.5] * 5}}, r"<= 1"),
        ({"corruptions": ["contrast"], "baseline_errors": {"blur": [0.5] * 5}}, "no errors for contrast"),
        (
            {
                "corruptions": ["contrast"],
                "severities": [1, 2],
                "baseline_errors": {"contrast": [0, 0, 1, 1, 1]},
            },
            "positive sum",
        ),
        ({"input_key": True}, "input_key"),
    ],
)
def test_bad_arguments_are_refused_at_construction(options: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        RobustnessMonitor(**options)


def test_unknown_corruption_lists_the_known_ones() -> None:
    with pytest.raises(ConfigurationError) as info:
        RobustnessMonitor(["contrast", "motion_blur"])
    assert "motion_blur" in str(info.value)
    assert all(name in str(info.value) for name in DEFAULT_CORRUPTIONS)


def _loader(x: torch.Tensor, y: torch.Tensor) -> DataLoader[tuple[torch.Tensor, ...]]:
    return DataLoader(TensorDataset(x, y), batch_size=16)


@pytest.mark.parametrize(
    ("options", "scale", "match"),
    [
        ({"corruptions": ["contrast"]}, 2.0, r"values in \[0, 1\]"),
        ({"corruptions": ["saturate"], "num_classes": 6}, 1.0, "3 channels"),
        ({"corruptions": ["contrast"], "num_classes": 10}, 1.0, "num_classes"),
        ({"corruptions": ["contrast"], "input_key": 2}, 1.0, "not in the batch"),
    ],
)
def test_bad_batches_fail_in_the_sanity_check_before_training(
    make_trainer: Callable[..., pl.Trainer], options: dict[str, Any], scale: float, match: str
) -> None:
    x, y = make_shapes(32, seed=0)
    if options.get("corruptions") == ["saturate"]:
        x = x[:, :1]
    model = Classifier("cnn", num_classes=6, input_shape=tuple(x.shape[1:]), hidden=8)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = make_trainer(callbacks=[RobustnessMonitor(**options)], limit_train_batches=2)
    with pytest.raises(ConfigurationError, match=match):
        trainer.fit(model, _loader(x * scale, y), _loader(x * scale, y))
    assert trainer.global_step == 0
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key])


@pytest.mark.slow
def test_two_process_ddp_values_equal_the_single_process_values(tmp_path: Path) -> None:
    x, y = make_shapes(64, seed=0)
    model = _model()
    names, severities = ["contrast", "pixelate"], [1, 5]  # deterministic: the same on any rank
    options: dict[str, Any] = {
        "accelerator": "cpu",
        "logger": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "enable_checkpointing": False,
        "default_root_dir": str(tmp_path),
    }
    single = RobustnessMonitor(names, severities)
    pl.Trainer(devices=1, callbacks=[single], **options).validate(model, _loader(x, y), verbose=False)
    trainer = pl.Trainer(
        devices=2,
        strategy="ddp_spawn",
        callbacks=[RobustnessMonitor(names, severities), ReleaseProcessGroup()],
        **options,
    )
    trainer.validate(model, _loader(x, y), verbose=False)
    assert set(single.last_values) <= set(trainer.callback_metrics)
    for key, value in single.last_values.items():
        assert trainer.callback_metrics[key].item() == pytest.approx(value, abs=1e-6), key
