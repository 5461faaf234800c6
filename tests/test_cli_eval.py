"""lit-noise-eval: a checkpoint under the corruption suite (a checkpoint made here in a few batches)."""

from __future__ import annotations

import json

import lightning.pytorch as pl
import pytest
import torch
from hydra import compose
from hydra.core.hydra_config import HydraConfig

from _cli import lit_noise_configs
from _trainers import quiet_trainer
from lit_noise.cli.evaluate import accuracy_table, evaluate
from lit_noise.errors import ConfigurationError
from lit_noise.examples import Classifier, DigitsDataModule


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "model.ckpt"
    pl.seed_everything(0, verbose=False)
    model, data = Classifier(hidden=16), DigitsDataModule()
    trainer = quiet_trainer(limit_train_batches=5, limit_val_batches=0)
    trainer.fit(model, data)
    trainer.save_checkpoint(path)
    return path, model


def _compose(tmp_path, overrides):
    cfg = compose(
        "eval",
        overrides=[*overrides, f"paths.output_dir={tmp_path}", f"paths.work_dir={tmp_path}"],
        return_hydra_config=True,
    )
    HydraConfig.instance().set_config(cfg)
    return cfg


def test_eval_writes_the_table_json_and_figure(tmp_path, checkpoint, capsys):
    path, model = checkpoint
    with lit_noise_configs():
        cfg = _compose(
            tmp_path,
            [
                f"ckpt_path={path}",
                "model.hidden=16",
                "robustness.corruptions=[gaussian_noise,contrast]",
                "robustness.severities=[1,5]",
                "robustness.max_samples=32",
                "trainer.enable_progress_bar=false",
            ],
        )
        results = evaluate(cfg)
    saved = json.loads((tmp_path / "eval.json").read_text())
    assert saved["accuracy"] == {
        k: {s: pytest.approx(v) for s, v in row.items()} for k, row in results["accuracy"].items()
    }
    assert sorted(saved["accuracy"]) == ["contrast", "gaussian_noise"]
    assert sorted(saved["accuracy"]["contrast"]) == ["s1", "s5"]
    # Clean accuracy on the first 32 validation samples, counted here with the trained weights.
    data = DigitsDataModule()
    data.setup("fit")
    x, y = next(iter(data.val_dataloader()))
    with torch.no_grad():
        correct = (model.eval()(x[:32]).argmax(1) == y[:32]).float().mean().item()
    assert saved["metrics"]["val/robust/clean_acc"] == pytest.approx(correct)
    assert (tmp_path / "robustness.png").read_bytes()[:4] == b"\x89PNG"
    printed = capsys.readouterr().out
    assert "contrast" in printed
    assert "gaussian_noise" in printed
    assert "clean" in printed


def test_accuracy_table():
    metrics = {
        "val/robust/a/s5/acc": 0.2,
        "val/robust/a/s1/acc": 0.7,
        "val/robust/a/acc": 0.45,
        "val/acc": 1.0,
    }
    assert accuracy_table(metrics) == {"a": {1: 0.7, 5: 0.2}}


def test_a_missing_checkpoint_is_refused(tmp_path):
    with lit_noise_configs():
        cfg = _compose(tmp_path, [f"ckpt_path={tmp_path / 'nope.ckpt'}"])
        with pytest.raises(ConfigurationError, match="ckpt_path"):
            evaluate(cfg)
