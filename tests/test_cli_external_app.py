"""lit_noise's noise and monitor configs inside someone else's Hydra app (tests/hydra_app)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate

import lit_noise
from lit_noise.cli._config import callback_configs
from lit_noise.errors import ConfigurationError

APP = Path(__file__).parent / "hydra_app"
SEARCHPATH = "hydra.searchpath=[pkg://lit_noise.conf]"


@pytest.fixture(scope="module", autouse=True)
def _app_configs():
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(APP / "conf"), version_base="1.3"):
        yield


def test_two_lines_add_lit_noise_callbacks_to_the_apps_own():
    cfg = compose(
        "train", overrides=[SEARCHPATH, "+noise=[input,target]", "+monitor=[calibration,robustness]"]
    )
    assert sorted(cfg.callbacks) == [
        "calibration_monitor",
        "early_stopping",
        "input_noise",
        "robustness_monitor",
        "target_noise",
    ]
    assert "noise" not in cfg
    assert "monitor" not in cfg
    # The app's own groups are not shadowed by lit_noise's options of the same names.
    plain = compose("train", overrides=["logger=csv"])
    with_lit_noise = compose("train", overrides=[SEARCHPATH, "+noise=[input]", "logger=csv"])
    for key in ("data", "model", "trainer", "logger", "seed"):
        assert with_lit_noise[key] == plain[key], key
    assert with_lit_noise.model.hidden == 16
    assert with_lit_noise.logger.csv.name == "app_csv"


def test_the_apps_own_instantiation_builds_them():
    cfg = compose(
        "train",
        overrides=[
            SEARCHPATH,
            "+noise=[input,target,weight]",
            "+monitor=[calibration]",
            "callbacks.input_noise.noise.std=0.05",
            "callbacks.target_noise.num_classes=10",
            "callbacks.calibration_monitor.num_classes=10",
        ],
    )
    built = {key: instantiate(node) for key, node in cfg.callbacks.items()}  # DictConfig / ListConfig passed
    assert isinstance(built["input_noise"], lit_noise.InputNoise)
    assert built["input_noise"].noise.resolve()["std"] == 0.05
    assert built["input_noise"].clamp == (0.0, 1.0)
    assert built["target_noise"].noise.num_classes == 10
    assert isinstance(built["weight_noise"], lit_noise.WeightNoise)
    assert built["calibration_monitor"].num_classes == 10


def test_without_the_search_path_the_override_is_a_plain_value_that_lit_noise_refuses():
    cfg = compose("train", overrides=["+noise=[input,target]"])
    assert list(cfg.noise) == ["input", "target"]
    assert sorted(cfg.callbacks) == ["early_stopping"]
    with pytest.raises(ConfigurationError, match=r"hydra\.searchpath=\[pkg://lit_noise\.conf\]"):
        callback_configs(cfg)


@pytest.mark.slow
def test_the_app_trains_with_lit_noise_callbacks(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            str(APP / "train.py"),
            SEARCHPATH,
            "+noise=[input,target]",
            "+monitor=[calibration]",
            "callbacks.input_noise.noise.std=0.05",
            "callbacks.target_noise.num_classes=10",
            "callbacks.calibration_monitor.num_classes=10",
            "+trainer.limit_train_batches=3",
            "+trainer.limit_val_batches=2",
            f"hydra.run.dir={tmp_path}",
        ],
        cwd=tmp_path,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    ran = json.loads((tmp_path / "callbacks.json").read_text())
    assert set(ran) == {"CalibrationMonitor", "EarlyStopping", "InputNoise", "TargetNoise"}
    assert ran["InputNoise"] == {"std": 0.05, "mean": 0.0}
    assert ran["TargetNoise"] == {"eps": 0.1}
