"""The `tokens` preset through lit-noise-train: token noise, NEFTune, label smoothing, temperature scaling."""

from __future__ import annotations

import json

import pytest

from _cli import compose_train, lit_noise_configs
from lit_noise.cli.train import run

TINY_TOKENS = (
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "trainer.log_every_n_steps=1",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "trainer.enable_progress_bar=false",
    "logger=none",
)


def test_the_tokens_preset_runs_and_tests_the_best_checkpoint_calibrated(tmp_path):
    with lit_noise_configs():
        cfg = compose_train(tmp_path, ["experiment=tokens", *TINY_TOKENS])
        assert cfg.optimized_metric == "val/acc"
        assert sorted(cfg.callbacks) == [
            "calibration_monitor",
            "model_checkpoint",
            "neftune",
            "target_noise",
            "temperature_scaling",
            "token_mask",
        ]
        # Every warning is an error here: testing the best checkpoint (saved during fit, so without a
        # temperature) would warn if TemperatureScaling did not fit one for it first.
        result = run(cfg)
    record = json.loads((tmp_path / "results.json").read_text())
    assert record["status"] == "ok"
    noises = {
        key: record["config"]["callbacks"][key]["noise"]["_target_"] for key in ("token_mask", "neftune")
    }
    assert noises == {"token_mask": "lit_noise.TokenMask", "neftune": "lit_noise.NEFTune"}
    metrics = result.metrics
    assert metrics["val/cal/temperature"] > 0
    assert metrics["noise/token_mask/p"] == pytest.approx(0.1)  # logged as float32
    assert metrics["noise/neftune/alpha"] == 5.0
    assert 0.0 <= metrics["test/acc"] <= 1.0
    assert result.value == metrics["val/acc"]
