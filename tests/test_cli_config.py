"""Every option of every config group of conf/ (lit_noise.conf) composes and instantiates."""

from __future__ import annotations

import math
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import MissingConfigException
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.pytorch.loggers import WandbLogger
from omegaconf import DictConfig

import lit_noise
from _cli import CONF_DIR, compose_train, lit_noise_configs, options
from lit_noise.cli._config import check_group_options
from lit_noise.errors import ConfigurationError
from lit_noise.examples import (
    Classifier,
    DigitsDataModule,
    ShapesDataModule,
    TokenClassifier,
    TokenDataModule,
)
from lit_noise.loggers import CSVLogger

GROUPS = {
    "data": ["custom", "digits", "shapes", "tokens"],
    "model": ["cnn", "mlp", "mlp_noise_layers", "token"],
    "noise": [
        "activation",
        "gradient",
        "input",
        "layers",
        "neftune",
        "none",
        "target",
        "token_drop",
        "token_mask",
        "token_substitute",
        "weight",
    ],
    "schedule": ["annealed", "constant", "cosine_ramp", "cyclic", "interval", "linear_ramp", "step_decay"],
    "mix": ["both", "cutmix", "mixup", "none"],
    "monitor": ["calibration", "controller", "none", "robustness", "temperature"],
    "logger": ["both", "csv", "none", "wandb"],
    "trainer": ["cpu", "ddp", "ddp_sim", "gpu"],
    "launcher": ["basic", "joblib", "submitit_local", "submitit_slurm"],
    "hparams_search": ["optuna"],
    "experiment": ["adaptive", "calibration", "noise_sweep", "schedules", "tokens", "weight_noise"],
    "paths": ["default"],
    "hydra": ["default"],
}

# The callback each noise / monitor file adds, by key (typed here, not read from the files).
CALLBACKS = {
    "input": {"input_noise": lit_noise.InputNoise},
    "target": {"target_noise": lit_noise.TargetNoise},
    "weight": {"weight_noise": lit_noise.WeightNoise},
    "gradient": {"gradient_noise": lit_noise.GradientNoise},
    "layers": {"layer_noise": lit_noise.NoiseLayerSchedule},
    "activation": {"activation_noise": lit_noise.ActivationNoise},
    "neftune": {"neftune": lit_noise.ActivationNoise},
    "token_drop": {"token_drop": lit_noise.InputNoise},
    "token_mask": {"token_mask": lit_noise.InputNoise},
    "token_substitute": {"token_substitute": lit_noise.InputNoise},
    "none": {},
    "calibration": {"calibration_monitor": lit_noise.CalibrationMonitor},
    "robustness": {"robustness_monitor": lit_noise.RobustnessMonitor},
    "controller": {"noise_controller": lit_noise.NoiseController},
    "temperature": {"temperature_scaling": lit_noise.TemperatureScaling},
}
SCHEDULES = {
    "annealed": lit_noise.AnnealedStd,
    "constant": lit_noise.Constant,
    "cosine_ramp": lit_noise.Cosine,
    "cyclic": lit_noise.Cyclic,
    "interval": lit_noise.Interval,
    "linear_ramp": lit_noise.Linear,
    "step_decay": lit_noise.Step,
}
LAUNCHERS = {
    "basic": "hydra._internal.core_plugins.basic_launcher.BasicLauncher",
    "joblib": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher",
    "submitit_local": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher",
    "submitit_slurm": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher",
}
# Jobs in each preset's sweep.
SWEEP_SIZES = {"noise_sweep": 5, "schedules": 3, "calibration": 4, "weight_noise": 6}


@pytest.fixture(scope="module", autouse=True)
def _configs():
    with lit_noise_configs():
        yield


def _callbacks(cfg: DictConfig) -> dict[str, object]:
    return {key: instantiate(node) for key, node in cfg.callbacks.items() if node is not None}


def test_the_tree_has_every_group_and_option():
    found = {p.name: options(p.name) for p in CONF_DIR.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert found == GROUPS


def test_every_file_is_commented():
    for path in CONF_DIR.rglob("*.yaml"):
        lines = path.read_text().splitlines()
        assert lines[0].startswith("#"), path
        for i, line in enumerate(lines):
            stripped = line.strip()
            if (
                ":" not in stripped
                or stripped.startswith(("#", "-", "{", "_target_:"))
                or stripped.endswith(":")
            ):
                continue  # comments, list items, targets and keys that open a block
            # Every argument carries a comment, on its line or the line above.
            assert "#" in line or lines[i - 1].lstrip().startswith("#"), f"{path}:{i + 1}: {line}"


def test_the_default_composes_the_embedded_job(tmp_path):
    cfg = compose_train(tmp_path)
    assert sorted(cfg.callbacks) == [
        "calibration_monitor",
        "input_noise",
        "model_checkpoint",
        "robustness_monitor",
    ]
    assert "noise" not in cfg
    assert "monitor" not in cfg
    assert cfg.seed == 0
    assert cfg.optimized_metric == "val/robust/mean_acc"
    callbacks = _callbacks(cfg)
    noise = callbacks["input_noise"]
    assert isinstance(noise, lit_noise.InputNoise)
    assert isinstance(noise.noise, lit_noise.Gaussian)
    assert noise.noise.resolve()["std"] == 0.1
    assert noise.clamp == (0.0, 1.0)
    assert callbacks["calibration_monitor"].num_classes == 10


@pytest.mark.parametrize("option", [o for o in GROUPS["data"] if o != "tokens"])
def test_data(tmp_path, option):
    cfg = compose_train(tmp_path, [f"data={option}"])
    data = instantiate(cfg.data)
    expected = ShapesDataModule if option == "shapes" else DigitsDataModule
    assert type(data) is expected
    assert cfg.num_classes == data.num_classes
    assert tuple(cfg.input_shape) == data.input_shape
    model = instantiate(cfg.model)
    assert model(torch.zeros(2, *data.input_shape)).shape == (2, data.num_classes)


def test_token_data_and_model(tmp_path):
    cfg = compose_train(tmp_path, ["data=tokens", "model=token", "noise=[token_substitute]"])
    data, model = instantiate(cfg.data), instantiate(cfg.model)
    assert type(data) is TokenDataModule
    assert type(model) is TokenClassifier
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    assert sorted(batch) == [cfg.mask_key, cfg.input_key, cfg.target_key]
    assert model(batch["input_ids"], batch["attention_mask"]).shape == (64, cfg.num_classes)
    noise = _callbacks(cfg)["token_substitute"]
    assert (noise.key, noise.mask_key) == ("input_ids", "attention_mask")
    assert (noise.noise.vocab_size, noise.noise.pad_id, tuple(noise.noise.special_ids)) == (48, 0, (1,))


@pytest.mark.parametrize("option", [o for o in GROUPS["model"] if o != "token"])
def test_model(tmp_path, option):
    cfg = compose_train(tmp_path, [f"model={option}"])
    model = instantiate(cfg.model)
    assert isinstance(model, Classifier)
    assert model.hparams.backbone == option.split("_")[0]
    assert model(torch.zeros(3, 1, 8, 8)).shape == (3, 10)


@pytest.mark.parametrize("option", GROUPS["noise"] + GROUPS["monitor"])
def test_callback_groups(tmp_path, option):
    group = "monitor" if option in ("calibration", "controller", "robustness", "temperature") else "noise"
    other = "monitor=none" if group == "noise" else "noise=none"
    tokens = ["data=tokens", "model=token"] if option.startswith(("token", "neftune")) else []
    cfg = compose_train(tmp_path, [f"{group}=[{option}]", other, *tokens])
    callbacks = _callbacks(cfg)
    callbacks.pop("model_checkpoint")
    assert {k: type(v) for k, v in callbacks.items()} == CALLBACKS[option]


def test_several_noise_options_at_once(tmp_path):
    cfg = compose_train(
        tmp_path, ["noise=[input,target,weight,gradient]", "callbacks.weight_noise.noise.std=0.05"]
    )
    callbacks = _callbacks(cfg)
    assert {"input_noise", "target_noise", "weight_noise", "gradient_noise"} <= set(callbacks)
    assert callbacks["weight_noise"].noise.resolve()["std"] == 0.05
    assert callbacks["target_noise"].noise.num_classes == 10
    # AnnealedStd(eta=0.01, gamma=0.55) at step 3: sqrt(0.01 / 4 ** 0.55).
    std = callbacks["gradient_noise"].std(lit_noise.Clock(step=3))
    assert math.isclose(std, math.sqrt(0.01 / 4**0.55), rel_tol=1e-12)


@pytest.mark.parametrize("option", GROUPS["schedule"])
def test_schedules_mount_into_a_noise_parameter(tmp_path, option):
    cfg = compose_train(tmp_path, [f"+schedule@callbacks.input_noise.noise.std={option}"])
    noise = instantiate(cfg.callbacks.input_noise)
    schedule = noise.noise.schedules()["std"]
    assert type(schedule) is SCHEDULES[option]
    text = yaml.safe_load((CONF_DIR / "schedule" / f"{option}.yaml").read_text())
    low, high = schedule.min_max()
    peak = max(v for k, v in text.items() if k in ("constant", "end", "value", "high", "eta") and v)
    assert math.isclose(high, math.sqrt(peak) if option == "annealed" else peak)
    assert low >= 0.0


def test_a_mounted_schedule_takes_overrides(tmp_path):
    cfg = compose_train(
        tmp_path,
        ["+schedule@callbacks.input_noise.noise.std=linear_ramp", "callbacks.input_noise.noise.std.end=0.3"],
    )
    schedule = instantiate(cfg.callbacks.input_noise).noise.schedules()["std"]
    # Linear(0 -> 0.3 over the first half of training) at progress 0.25: 0.15.
    assert math.isclose(schedule(lit_noise.Clock(progress=0.25)), 0.15)


@pytest.mark.parametrize("option", GROUPS["mix"])
def test_mix(tmp_path, option):
    cfg = compose_train(tmp_path, [f"mix={option}"])
    if option == "none":
        assert cfg.mix is None
        return
    data = instantiate(cfg.mix, datamodule=instantiate(cfg.data))
    assert isinstance(data, lit_noise.MixupDataModule)
    assert data.num_classes == 10
    text = yaml.safe_load((CONF_DIR / "mix" / f"{option}.yaml").read_text())
    assert (cfg.mix.mixup_alpha, cfg.mix.cutmix_alpha) == (
        text.get("mixup_alpha", 0.2),
        text.get("cutmix_alpha", 0.0),
    )


@pytest.mark.parametrize("option", GROUPS["logger"])
def test_logger(tmp_path, option):
    cfg = compose_train(tmp_path, [f"logger={option}"])
    loggers = [instantiate(node) for node in (cfg.logger or {}).values()]
    expected = {"none": [], "csv": [CSVLogger], "wandb": [WandbLogger], "both": [CSVLogger, WandbLogger]}[
        option
    ]
    assert [type(lg) for lg in loggers] == expected
    for logger in loggers:
        assert Path(logger.save_dir) == tmp_path
    if option in ("wandb", "both"):
        assert cfg.logger.wandb.offline is True


@pytest.mark.parametrize("option", GROUPS["trainer"])
def test_trainer(tmp_path, option):
    cfg = compose_train(tmp_path, [f"trainer={option}"])
    expected = {"cpu": (1, "auto"), "gpu": (1, "auto"), "ddp": (2, "ddp"), "ddp_sim": (2, "ddp_spawn")}
    assert (cfg.trainer.devices, cfg.trainer.get("strategy", "auto")) == expected[option]
    node = cfg.trainer
    if cfg.trainer.accelerator == "gpu" and not torch.cuda.is_available():
        node = compose_train(tmp_path, [f"trainer={option}", "trainer.accelerator=cpu"]).trainer
    trainer = instantiate(node, callbacks=list(_callbacks(cfg).values()), logger=False)
    assert isinstance(trainer, pl.Trainer)
    assert trainer.max_epochs == 3  # conf/trainer/cpu.yaml
    assert Path(trainer.default_root_dir) == tmp_path


@pytest.mark.parametrize("option", GROUPS["launcher"])
def test_launcher(tmp_path, option):
    cfg = compose_train(tmp_path, [f"launcher={option}"])
    assert cfg.hydra.launcher._target_ == LAUNCHERS[option]


def test_optuna_search(tmp_path):
    cfg = compose_train(tmp_path, ["hparams_search=optuna"])
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_ == "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper"
    assert sweeper.direction == "maximize"
    assert cfg.optimized_metric == "val/robust/mean_acc"
    assert set(sweeper.params) == {
        "callbacks.input_noise.noise.std.end",
        "callbacks.input_noise.noise.std.until",
    }
    schedule = instantiate(cfg.callbacks.input_noise).noise.schedules()["std"]
    assert type(schedule) is lit_noise.Linear


@pytest.mark.parametrize("option", sorted(SWEEP_SIZES))  # `adaptive` is one run: test_noise_controller.py
def test_experiment_presets_compose_every_job_of_their_sweep(tmp_path, option):
    cfg = compose_train(tmp_path, [f"experiment={option}"])
    assert cfg.hydra.mode == RunMode.MULTIRUN
    assert cfg.task_name == option
    params = [f"{k}={v}" for k, v in cfg.hydra.sweeper.params.items()]
    sweep = OverridesParser.create().parse_overrides(params)
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    jobs = BasicSweeper.split_arguments(sweep, None)[0]
    assert len(jobs) == SWEEP_SIZES[option]
    for job in (jobs[0], jobs[-1]):  # the sweep's two ends
        job_cfg = compose_train(tmp_path, [f"experiment={option}", *job])
        callbacks = _callbacks(job_cfg)
        assert "robustness_monitor" in callbacks
        assert "calibration_monitor" in callbacks
        if job_cfg.get("mix") is not None:
            instantiate(job_cfg.mix, datamodule=instantiate(job_cfg.data))


def test_noise_sweep_strengths(tmp_path):
    cfg = compose_train(tmp_path, ["experiment=noise_sweep"])
    values = [float(v) for v in str(cfg.hydra.sweeper.params["callbacks.input_noise.noise.std"]).split(",")]
    assert values == [0.0, 0.1, 0.2, 0.3, 0.4]


def test_paths_and_hydra_dirs(tmp_path):
    cfg = compose_train(tmp_path)
    assert cfg.paths.output_dir == str(tmp_path)
    assert cfg.hydra.run.dir.startswith(f"{cfg.paths.log_dir}/train/runs/")
    assert cfg.hydra.job.chdir is False


def test_an_unknown_option_lists_the_available_ones(tmp_path):
    with pytest.raises(MissingConfigException):  # Hydra's own error names no option for a list
        compose_train(tmp_path, ["noise=[inptu]"])
    for override in ("noise=[input,inptu]", "monitor=robustnes", "noise=none,inptu"):
        with pytest.raises(ConfigurationError, match=r"inptu|robustnes") as info:
            check_group_options([override], CONF_DIR)
        group = override.partition("=")[0]
        assert f"`{group}`" in str(info.value)
        for option in GROUPS[group]:
            assert option in str(info.value)
    check_group_options(["noise=[input,target]", "monitor=none", "trainer.max_epochs=2", "-m"], CONF_DIR)
    # Another search path may add options: left to Hydra.
    check_group_options(["hydra.searchpath=[pkg://x]", "noise=[mine]"], CONF_DIR)
