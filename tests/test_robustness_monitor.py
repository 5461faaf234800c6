"""RobustnessMonitor on the example classifier: keys, values against torchmetrics, no side effects."""

from __future__ import annotations

import csv
import re
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
from lit_noise.corruptions.suite import ValueRange
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
    monitor = RobustnessMonitor(
        names, severities, max_samples="all", n_bins=n_bins, baseline_errors=baseline, log_figures=False
    )
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
        monitor = RobustnessMonitor(
            ["gaussian_noise", "impulse_noise"], max_samples="all", seed=seed, log_figures=False
        )
        make_trainer(callbacks=[monitor]).validate(trained, _data(), verbose=False)
        return monitor.last_values

    first, again, other = run(1), run(1), run(2)
    assert first == again
    noisy = [k for k in first if "/s" in k and k.endswith("/acc")]
    assert any(first[k] != other[k] for k in noisy)


def test_max_samples_evaluates_the_first_samples_only(
    trained: Classifier, make_trainer: Callable[..., pl.Trainer]
) -> None:
    monitor = RobustnessMonitor(["contrast"], [2], max_samples=40, log_figures=False)
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
        monitor = RobustnessMonitor(names, severities, log_figures=False, **options)
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
    # The validation step's 2 forwards, and one forward of the monitor's own on the first sanity
    # batch: it checks before training that the forward the corrupted copies need works.
    assert seen["sanity forwards"] == 3
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
    monitor = RobustnessMonitor(["contrast"], [1, 2], n_bins=7, log_figures=False)
    for size in (32, 160):
        make_trainer(callbacks=[monitor]).validate(trained, _data(val_size=size), verbose=False)
        assert monitor.bins.count.shape == (3, 7)
        assert sum(t.numel() for t in monitor.bins.metric_state.values()) == 3 * 3 * 7  # type: ignore[union-attr]


def test_all_corruptions_skip_what_does_not_apply(make_trainer: Callable[..., pl.Trainer]) -> None:
    monitor = RobustnessMonitor("all", severities=[3], max_samples=16, log_figures=False)
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
        ({"suite": "fast"}, "`suite` must be one of 'quick', 'full', got 'fast'"),
        ({"max_samples": "every"}, "max_samples"),
        ({"value_range": (1.0, 0.0)}, "`value_range` must be a pair"),
        ({"value_range": (0.0, 1.0, 2.0)}, "`value_range`"),
        ({"mean": [0.5, 0.5, 0.5]}, "`mean` is given without `std`"),
        ({"std": 0.2}, "`std` is given without `mean`"),
        ({"mean": 0.5, "std": [0.2, 0.0, 0.2]}, "`std` must be a number or a non-empty sequence of positive"),
        ({"mean": [0.5, 0.4], "std": [0.2, 0.2, 0.2]}, "same length"),
        ({"forward_fn": 3}, "`forward_fn` must be None, the name of a method"),
        ({"forward_fn": "not a name"}, "`forward_fn`"),
        ({"summaries": {"val/acc": "maximum"}}, "`summaries` must be a mapping"),
        ({"summaries": ["val/acc"]}, "`summaries` must be a mapping"),
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


class _StepLogits(Classifier):
    """A validation step that returns the logits and computes no loss (the targets would fail it)."""

    def validation_step(self, batch: Any, batch_idx: int) -> torch.Tensor:  # type: ignore[override]
        return self(batch[0])


class _StepNothing(Classifier):
    def validation_step(self, batch: Any, batch_idx: int) -> None:  # type: ignore[override]
        self(batch[0])


@pytest.mark.parametrize("model_class", [_StepLogits, _StepNothing], ids=["step_logits", "own_forward"])
@pytest.mark.parametrize("max_samples", [64, 3])
def test_sanity_check_errors_show_the_shapes_of_the_whole_batch(
    make_trainer: Callable[..., pl.Trainer], model_class: type[Classifier], max_samples: int
) -> None:
    x, y = make_shapes(16, seed=0)
    targets = torch.stack([y, y], dim=1)  # (N, 2) integer targets: not class indices of shape (N,)
    model = model_class("cnn", num_classes=6, input_shape=(3, 32, 32), hidden=8)
    monitor = RobustnessMonitor(["contrast"], [1], max_samples=max_samples, log_figures=False)
    loader = DataLoader(TensorDataset(x, targets), batch_size=8)
    with pytest.raises(ConfigurationError, match=r"^RobustnessMonitor: `target` must be") as info:
        make_trainer(callbacks=[monitor], limit_train_batches=1).fit(model, loader, loader)
    message = str(info.value)
    assert "class indices of shape (8,)" in message, message
    assert "got dtype torch.int64 and shape (8, 2)" in message, message
    assert "(1," not in message, message


class _NoClassDimension(_StepNothing):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x)[:, 0]  # (N,): one score per sample


def test_sanity_check_errors_show_the_model_output_of_the_whole_batch(
    make_trainer: Callable[..., pl.Trainer],
) -> None:
    x, y = make_shapes(16, seed=0)
    model = _NoClassDimension("cnn", num_classes=6, input_shape=(3, 32, 32), hidden=8)
    loader = DataLoader(TensorDataset(x, y), batch_size=8)
    monitor = RobustnessMonitor(["contrast"], [1], log_figures=False)
    with pytest.raises(ConfigurationError, match=r"^RobustnessMonitor measures classification") as info:
        make_trainer(callbacks=[monitor], limit_train_batches=1).fit(model, loader, loader)
    assert "the model output has shape (8,)" in str(info.value), str(info.value)


# ------------------------------------------------------------------------------------------ defaults and cost


def test_quick_suite_by_default_and_full_suite_one_argument_away(trained: Classifier) -> None:
    quick, full = RobustnessMonitor(), RobustnessMonitor(suite="full")
    assert [(p.corruption.name, p.severity) for p in quick._pairs] == [
        (name, s) for name in ("gaussian_noise", "gaussian_blur", "contrast", "pixelate") for s in (3, 5)
    ]
    assert quick.max_samples == 64
    assert [(p.corruption.name, p.severity) for p in full._pairs] == [
        (name, s) for name in DEFAULT_CORRUPTIONS for s in (1, 2, 3, 4, 5)
    ]
    assert full.max_samples is None
    # Arguments override the suite one by one; "all" is every sample.
    mixed = RobustnessMonitor(severities=[2], max_samples="all")
    assert (mixed.severities, mixed.max_samples, len(mixed._pairs)) == ((2,), None, 4)


def test_default_cost_is_counted_and_logged_once(
    trained: Classifier, make_trainer: Callable[..., pl.Trainer], rank_zero_records: Any
) -> None:
    torch.manual_seed(0)
    model = _Counting("cnn", num_classes=6, input_shape=(3, 32, 32), hidden=8)
    model.load_state_dict(trained.state_dict())
    monitor = RobustnessMonitor(log_figures=False)
    trainer = make_trainer(callbacks=[monitor], max_epochs=2, limit_train_batches=1, num_sanity_val_steps=1)
    model.calls = 0
    trainer.fit(model, _data(batch_size=32, val_size=96))
    # 2 epochs x (1 training step + 3 validation steps) + 1 sanity step + 1 sanity check forward of
    # the monitor + 2 epochs x (the first 64 samples = 2 batches) x 8 corrupted copies.
    assert model.calls == 2 * (1 + 3) + 1 + 1 + 2 * 2 * 8
    cost = [m for m in rank_zero_records.messages if m.startswith("RobustnessMonitor:")]
    assert len(cost) == 1  # once, not per epoch
    assert "8 corrupted copies" in cost[0]
    assert "gaussian_noise, gaussian_blur, contrast, pixelate at severities 3, 5" in cost[0]
    assert "the first 64 validation samples" in cost[0]
    assert f"up to {8 * 64} corrupted samples per evaluated epoch" in cost[0]
    assert "8 extra model calls per validation batch of 32" in cost[0]
    assert "suite='full'" in cost[0]


def test_full_suite_evaluates_every_corruption_and_severity_on_every_sample(
    trained: Classifier, make_trainer: Callable[..., pl.Trainer]
) -> None:
    monitor = RobustnessMonitor(suite="full", log_figures=False)
    make_trainer(callbacks=[monitor]).validate(trained, _data(batch_size=8, val_size=8), verbose=False)
    keys = {k for k in monitor.last_values if re.search(r"/s\d/acc$", k)}
    assert keys == {f"{P}/{n}/s{s}/acc" for n in DEFAULT_CORRUPTIONS for s in (1, 2, 3, 4, 5)}


# ------------------------------------------------------------------------------------------ value ranges


def test_value_range_maps_standardised_inputs_to_unit_range_and_back() -> None:
    mean, std = [0.49, 0.45, 0.41], [0.25, 0.2, 0.3]
    u = torch.rand(4, 3, 5, 5, generator=torch.Generator().manual_seed(0))
    m, s = torch.tensor(mean).view(3, 1, 1), torch.tensor(std).view(3, 1, 1)
    x = (u - m) / s
    vr = ValueRange(mean=mean, std=std)
    torch.testing.assert_close(vr.to_unit(x), u, atol=1e-6, rtol=0)
    torch.testing.assert_close(vr.from_unit(u), x, atol=1e-5, rtol=0)
    byte = ValueRange((0.0, 255.0))
    torch.testing.assert_close(byte.to_unit(u * 255), u)
    torch.testing.assert_close(byte.from_unit(u), u * 255)
    signed = ValueRange((-1.0, 1.0))  # audio-like
    torch.testing.assert_close(signed.to_unit(u * 2 - 1), u)
    torch.testing.assert_close(signed.from_unit(u), u * 2 - 1)
    # Both: raw = x * std + mean in [0, 255].
    both = ValueRange((0.0, 255.0), mean=[m * 255 for m in mean], std=[s * 255 for s in std])
    torch.testing.assert_close(both.to_unit(x), u, atol=1e-5, rtol=0)
    assert ValueRange().to_unit(u) is u  # identity: no copy
    with pytest.raises(ConfigurationError, match=r"3 values \(one per channel\) but the inputs have shape"):
        vr.to_unit(x[:, :2])
    with pytest.raises(ConfigurationError, match=r"standardisation undone .* must have values in \[0, 1\]"):
        vr.to_unit(x + 10)
    with pytest.raises(ConfigurationError, match=r"values in \[0, 255\].*Pass `value_range=\(low, high\)`"):
        byte.to_unit(u * 300)


class _Normalising(Classifier):
    """Standardises its inputs inside forward: fed [0, 1] images."""

    m: torch.Tensor
    s: torch.Tensor

    def __init__(self, mean: Sequence[float], std: Sequence[float], scale: float = 1.0) -> None:
        super().__init__("cnn", num_classes=6, input_shape=(3, 32, 32), hidden=8)
        self.register_buffer("m", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("s", torch.tensor(std).view(1, 3, 1, 1))
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward((x / self.scale - self.m) / self.s)


def test_standardised_inputs_give_the_values_of_a_model_that_standardises_itself(
    trained: Classifier, make_trainer: Callable[..., pl.Trainer]
) -> None:
    mean, std = [0.45, 0.5, 0.4], [0.22, 0.25, 0.3]
    m, s = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)
    x, y = make_shapes(48, seed=3)
    names = ["gaussian_noise", "gaussian_blur", "contrast", "pixelate", "brightness"]

    def run(model: Classifier, data: torch.Tensor, **options: Any) -> dict[str, float]:
        monitor = RobustnessMonitor(names, [1, 5], log_figures=False, **options)
        make_trainer(callbacks=[monitor]).validate(model, _loader(data, y), verbose=False)
        return monitor.last_values

    inside = _Normalising(mean, std)
    inside.load_state_dict(trained.state_dict(), strict=False)  # all but its mean and std buffers
    plain = Classifier("cnn", num_classes=6, input_shape=(3, 32, 32), hidden=8)
    plain.load_state_dict(trained.state_dict())  # the same function on standardised data
    expected = run(inside, x)
    standardised = run(plain, (x - m) / s, mean=mean, std=std)
    assert standardised.keys() == expected.keys()
    for key, value in expected.items():
        assert standardised[key] == pytest.approx(value, abs=1e-5), key
    # Inputs in [0, 255], mapped by value_range.
    bytes_model = _Normalising(mean, std, scale=255.0)
    bytes_model.load_state_dict(inside.state_dict())
    in_bytes = run(bytes_model, x * 255, value_range=(0, 255))
    for key, value in expected.items():
        assert in_bytes[key] == pytest.approx(value, abs=1e-5), key
    # Without mean/std the standardised inputs are refused before anything is evaluated, naming the way out.
    with pytest.raises(
        ConfigurationError, match=r"values in \[0, 1\].*`value_range=\(low, high\)`.*`mean`/`std`"
    ):
        run(plain, (x - m) / s)


# ------------------------------------------------------------------------------------------ regression


class _Regressor(pl.LightningModule):
    """A regression model: width-1 output, float targets."""

    def __init__(self, width: int = 1) -> None:
        super().__init__()
        self.net = torch.nn.Linear(4, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(x)
        return out

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return torch.nn.functional.mse_loss(self(batch[0]).view_as(batch[1]), batch[1])

    def validation_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self.forward(batch[0])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.mark.parametrize(
    ("width", "target", "sanity", "shown"),
    [
        (1, lambda x: x.sum(1), 1, r"width 1\) and the targets are torch.float32 of shape \(16,\)"),
        (1, lambda x: x.sum(1, keepdim=True), 1, r"shape \(16, 1\) \(width 1\)"),
        (1, lambda x: (x[:, 0] > 0.5).long(), 1, r"width 1\) and the targets are torch.int64"),
        (2, lambda x: x.sum(1), 1, r"width 2\) and the targets are torch.float32 of shape \(16,\)"),
        (1, lambda x: x.sum(1), 0, r"but the targets are torch.float32 of shape \(16,\)"),  # train batch
    ],
)
def test_regression_models_are_refused_before_training(
    make_trainer: Callable[..., pl.Trainer],
    width: int,
    target: Callable[[torch.Tensor], torch.Tensor],
    sanity: int,
    shown: str,
) -> None:
    x = torch.rand(64, 4, generator=torch.Generator().manual_seed(0))
    loader = _loader(x, target(x))
    model = _Regressor(width)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = make_trainer(
        callbacks=[RobustnessMonitor(log_figures=False)], limit_train_batches=2, num_sanity_val_steps=sanity
    )
    with pytest.raises(
        ConfigurationError, match=r"^RobustnessMonitor measures classification accuracy"
    ) as info:
        trainer.fit(model, loader, loader)
    assert re.search(shown, str(info.value)), str(info.value)
    assert "regression" in str(info.value)
    assert trainer.global_step == 0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


# ------------------------------------------------------------------------------------------ forward_fn


class _TwoInputs(Classifier):
    """A forward that needs more than the input tensor, and a method that takes the input alone."""

    def forward(self, x: torch.Tensor, temperature: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return super().forward(x) / temperature

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x, torch.tensor(1.0))

    def validation_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self.logits(batch[0])


def test_forward_needing_more_than_the_input_is_a_clear_error_and_forward_fn_fixes_it(
    trained: Classifier, make_trainer: Callable[..., pl.Trainer]
) -> None:
    model = _TwoInputs("cnn", num_classes=6, input_shape=(3, 32, 32), hidden=8)
    model.load_state_dict(trained.state_dict())
    trainer = make_trainer(
        callbacks=[RobustnessMonitor(["contrast"], [2], log_figures=False)], limit_train_batches=1
    )
    with pytest.raises(
        ConfigurationError, match=r"_TwoInputs.forward\(x\).*raised TypeError.*pass `forward_fn`"
    ) as info:
        trainer.fit(model, _data(val_size=32))
    assert isinstance(info.value.__cause__, TypeError)
    assert trainer.global_step == 0

    def run(module: Classifier, **options: Any) -> dict[str, float]:
        monitor = RobustnessMonitor(["contrast", "gaussian_noise"], [2], log_figures=False, **options)
        make_trainer(callbacks=[monitor]).validate(module, _data(val_size=32), verbose=False)
        return monitor.last_values

    expected = run(trained)
    by_name = run(model, forward_fn="logits")
    by_callable = run(model, forward_fn=lambda module, x: module(x, torch.tensor(1.0)))
    assert by_name == pytest.approx(expected, abs=1e-6)
    assert by_callable == pytest.approx(expected, abs=1e-6)
    with pytest.raises(ConfigurationError, match=r"`forward_fn` must be the name of a method of _TwoInputs"):
        run(model, forward_fn="predict_logits")


# ------------------------------------------------------------------------------------------ summaries


def test_summaries_cover_the_monitor_metrics_only_unless_asked(tmp_path: Path) -> None:
    from lightning.pytorch.loggers import WandbLogger

    def defined(**options: Any) -> list[str]:
        logger = WandbLogger(save_dir=str(tmp_path), project="lit-noise-test", offline=True)
        run = logger.experiment
        names: list[str] = []
        define_metric = run.define_metric

        def spy(name: str, *args: Any, **kwargs: Any) -> Any:
            names.append(name)
            return define_metric(name, *args, **kwargs)

        run.define_metric = spy
        try:
            trainer = quiet_trainer(
                logger=logger,
                limit_train_batches=1,
                limit_val_batches=1,
                default_root_dir=str(tmp_path),
                callbacks=[RobustnessMonitor(["contrast"], [1], log_figures=False, **options)],
            )
            trainer.fit(_model(), _data(val_size=16))
        finally:
            run.finish()
        return names

    assert defined() == [f"{P}/mean_acc"]  # not the user's val/acc
    asked = defined(summaries={"val/acc": "max", f"{P}/mean_acc": "max,last"})
    assert asked == ["val/acc", f"{P}/mean_acc"]
    with_baseline = RobustnessMonitor(
        ["contrast"], log_figures=False, baseline_errors={"contrast": [0.1] * 5}
    )
    assert with_baseline._summaries == {f"{P}/mean_acc": "max", f"{P}/mce": "min"}


def test_summaries_without_wandb_warn_that_they_do_nothing(make_trainer: Callable[..., pl.Trainer]) -> None:
    monitor = RobustnessMonitor(["contrast"], [1], log_figures=False, summaries={"val/acc": "max"})
    trainer = make_trainer(callbacks=[monitor], limit_train_batches=1, limit_val_batches=1)
    with pytest.warns(UserWarning, match=r"RobustnessMonitor: `summaries` .* no WandbLogger"):
        trainer.fit(_model(), _data(val_size=16))


def test_without_matplotlib_figures_are_refused_and_log_figures_false_runs(
    trained: Classifier,
    make_trainer: Callable[..., pl.Trainer],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sys

    from lit_noise._optional import MissingDependencyError

    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")] or [
        "matplotlib"
    ]:
        monkeypatch.setitem(sys.modules, name, None)  # any import of matplotlib now fails
    with pytest.raises(
        MissingDependencyError, match=r"^RobustnessMonitor needs .*log_figures=False.*\[plots\]"
    ):
        RobustnessMonitor()
    monitor = RobustnessMonitor(["contrast"], [1], log_figures=False)
    trainer = make_trainer(callbacks=[monitor], limit_train_batches=1, limit_val_batches=1)
    trainer.fit(_model(), _data(val_size=16))
    assert f"{P}/contrast/s1/acc" in trainer.callback_metrics
    assert not (tmp_path / "figures").exists()


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


def test_test_batches_never_reach_the_suite() -> None:
    """The batch-end hook the monitors share serves test batches too: this monitor leaves them alone."""
    from types import SimpleNamespace

    monitor = RobustnessMonitor(["contrast"], [1], log_figures=False)
    monitor._active = True  # as if a validation epoch were being evaluated (one that never ended)
    x, y = make_shapes(8, seed=0)
    trainer = SimpleNamespace(testing=True, sanity_checking=False, global_rank=0)
    monitor.on_test_batch_end(trainer, _model(), None, [x, y], 0)  # type: ignore[arg-type]
    assert monitor._seen == 0
    assert float(monitor.bins.count.sum()) == 0.0
