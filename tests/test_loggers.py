"""lit_noise.loggers.CSVLogger: Lightning's files after every call, fewer rewrites of hparams.yaml."""

from __future__ import annotations

from argparse import Namespace
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
#: validate's and test's calls (the module's hyperparameters again).
JOB_CALLS: list[dict[str, Any]] = [
    {"model/backbone": "mlp", "model/lr": 0.01, "trainer/max_epochs": 3, "tags": ["a", "b"]},
    {"backbone": "mlp", "lr": 0.01},
    {"lit_noise/input/callback": "InputNoise", "lit_noise/input/std": 0.1},
    {"backbone": "mlp", "lr": 0.01},
    {"backbone": "mlp", "lr": 0.01},
]
MUTABLE = [1, 2]
#: Calls whose files must match Lightning's after each one: changes of type only, a mutated
#: object logged again, a Namespace, nothing at all, signed zeros, NaN and tensors.
TRICKY_CALLS: list[Any] = [
    None,
    {"x": [1], "k": {"a": 1}, "z": 0.0, "n": float("nan")},
    {"x": [1.0]},
    {"k": {"a": True}},
    {"z": -0.0},
    {"n": float("nan")},
    {"list": MUTABLE},
    "mutate",
    {"list": MUTABLE},
    Namespace(lr=0.5, name="ns"),
    {},
    {"t": torch.tensor([1, 2])},  # last: a tensor's bytes differ at every write, Lightning's too
    {"t": torch.tensor([1.0, 2.0])},
]


def _writes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every hparams.yaml write, by either logger (both go through Lightning's writer)."""
    written: list[str] = []
    original = saving.save_hparams_to_yaml

    def counted(path: Any, hparams: Any, *args: Any, **kwargs: Any) -> None:
        written.append(str(path))
        original(path, hparams, *args, **kwargs)

    monkeypatch.setattr(pl_loggers.csv_logs, "save_hparams_to_yaml", counted)
    return written


def _pair(root: Path) -> tuple[ln_loggers.CSVLogger, pl_loggers.CSVLogger]:
    return ln_loggers.CSVLogger(root, name="ours", version=0), pl_loggers.CSVLogger(
        root, name="pl", version=0
    )


def _text(logger: pl_loggers.CSVLogger) -> str:
    return (Path(logger.log_dir) / "hparams.yaml").read_text()


def test_a_jobs_calls_give_lightnings_file_in_three_writes_instead_of_five(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    written = _writes(monkeypatch)
    ours, lightnings = _pair(tmp_path)
    for params in JOB_CALLS:
        for logger in (ours, lightnings):
            logger.log_hyperparams(params)  # written at once, as Lightning's: no save() needed
        assert _text(ours) == _text(lightnings)
    assert "lr: 0.01" in _text(ours)
    assert written.count(str(Path(ours.log_dir) / "hparams.yaml")) == 3  # the calls with something new
    assert written.count(str(Path(lightnings.log_dir) / "hparams.yaml")) == 5  # every call


def test_after_every_call_the_file_is_lightnings(tmp_path: Path) -> None:
    ours, lightnings = _pair(tmp_path)
    for params in TRICKY_CALLS:
        if params == "mutate":
            MUTABLE.append(3)  # the object logged before, changed in place
            continue
        before = _text(ours) if params is not None else ""
        for logger in (ours, lightnings):
            logger.log_hyperparams(params)
        if isinstance(params, dict) and any(isinstance(v, torch.Tensor) for v in params.values()):
            # a tensor's pickled bytes differ from one write to the next, in Lightning's file too
            assert _text(ours) != before, params  # rewritten: a tensor is always new
        else:
            assert _text(ours) == _text(lightnings), params
    assert "list:\n- 1\n- 2\n- 3\n" in _text(ours)  # the mutated list, logged again, was written


class _Boom(pl.Callback):
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        pl_module.logger.log_hyperparams({"late": 1})  # type: ignore[union-attr]
        raise RuntimeError("boom")


def test_a_fit_writes_what_lightnings_writes_also_when_it_fails(tmp_path: Path) -> None:
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
