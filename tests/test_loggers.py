"""lit_noise.loggers.CSVLogger: Lightning's files, hparams.yaml written once per change."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch import loggers as pl_loggers
from lightning.pytorch.core import saving

from _trainers import quiet_trainer
from lit_noise import Gaussian, InputNoise
from lit_noise import loggers as ln_loggers
from lit_noise.examples import Classifier, DigitsDataModule

#: What a lit-noise-train job logs, in order: its config, then fit's, the noise settings',
#: validate's and test's calls (the module's hyperparameters again), each followed by a save.
JOB_CALLS: list[dict[str, Any] | None] = [
    {"model/backbone": "mlp", "model/lr": 0.01, "trainer/max_epochs": 3, "tags": ["a", "b"]},
    {"backbone": "mlp", "lr": 0.01},
    {"lit_noise/input/callback": "InputNoise", "lit_noise/input/std": 0.1},
    {"backbone": "mlp", "lr": 0.01},
    {"backbone": "mlp", "lr": 0.01},
]


def _writes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every hparams.yaml write, by either logger (both call Lightning's save_hparams_to_yaml)."""
    written: list[str] = []
    original = saving.save_hparams_to_yaml

    def counted(path: Any, hparams: Any, *args: Any, **kwargs: Any) -> None:
        written.append(str(path))
        original(path, hparams, *args, **kwargs)

    monkeypatch.setattr(ln_loggers, "save_hparams_to_yaml", counted)
    monkeypatch.setattr(pl_loggers.csv_logs, "save_hparams_to_yaml", counted)
    return written


def test_the_same_file_as_lightnings_written_once_per_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    written = _writes(monkeypatch)
    ours = ln_loggers.CSVLogger(tmp_path, name="ours", version=0)
    lightnings = pl_loggers.CSVLogger(tmp_path, name="lightning", version=0)
    for logger in (ours, lightnings):
        for params in JOB_CALLS:
            logger.log_hyperparams(params)
            logger.save()
    ours_file, lightning_file = (Path(lg.log_dir) / "hparams.yaml" for lg in (ours, lightnings))
    assert ours_file.read_text() == lightning_file.read_text()
    assert "lr: 0.01" in ours_file.read_text()
    assert written.count(str(ours_file)) == 3  # the three calls that brought something new
    assert written.count(str(lightning_file)) == 5  # every call
    ours.log_hyperparams({"lr": 0.02})  # a changed value is a change
    ours.finalize("success")
    assert saving.load_hparams_from_yaml(str(ours_file))["lr"] == 0.02


def test_values_that_cannot_be_compared_count_as_changed(tmp_path: Path) -> None:
    logger = ln_loggers.CSVLogger(tmp_path, name="run")
    logger.log_hyperparams({"weights": torch.ones(3)})
    logger.save()
    logger.log_hyperparams({"weights": torch.zeros(3)})  # `==` of two tensors is no bool
    assert logger._hparams_changed
    logger.log_hyperparams(None)  # nothing: no change either


class _Boom(pl.Callback):
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        pl_module.logger.log_hyperparams({"late": 1})  # type: ignore[union-attr]
        raise RuntimeError("boom")


def test_a_fit_writes_what_lightnings_writes_and_a_failed_fit_keeps_the_last_change(tmp_path: Path) -> None:
    files = {}
    for kind, logger_class in (("ours", ln_loggers.CSVLogger), ("lightning", pl_loggers.CSVLogger)):
        pl.seed_everything(0, verbose=False)
        logger = logger_class(tmp_path, name=kind, version=0)
        data, model = DigitsDataModule(batch_size=64), Classifier(backbone="mlp", hidden=16)
        trainer = quiet_trainer(
            callbacks=[InputNoise(Gaussian(std=0.1), seed=0)], logger=logger, limit_train_batches=3
        )
        trainer.fit(model, data)
        trainer.validate(model, data, verbose=False)
        trainer.test(model, data, verbose=False)
        root = Path(logger.log_dir)
        files[kind] = {name: (root / name).read_text() for name in ("hparams.yaml", "metrics.csv")}
    assert files["ours"] == files["lightning"]
    assert "lit_noise/input/callback: InputNoise" in files["ours"]["hparams.yaml"]
    logger = ln_loggers.CSVLogger(tmp_path, name="failed", version=0)
    trainer = quiet_trainer(callbacks=[_Boom()], logger=logger, limit_train_batches=1)
    with pytest.raises(RuntimeError, match="boom"):
        trainer.fit(Classifier(backbone="mlp", hidden=16), DigitsDataModule(batch_size=64))
    assert saving.load_hparams_from_yaml(str(Path(logger.log_dir) / "hparams.yaml"))["late"] == 1
