"""NoiseController in real (tiny) fits whose validation metrics are scripted, so decisions are known."""

from __future__ import annotations

import csv
import inspect
import json
import sys
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from torch import nn

from _trainers import quiet_trainer
from lit_noise import (
    Gaussian,
    GaussianNoise,
    InputNoise,
    MixupDataModule,
    NoiseController,
    NoiseLayerSchedule,
    WeightNoise,
)
from lit_noise.control import Decision
from lit_noise.errors import ConfigurationError
from lit_noise.examples import DigitsDataModule

# Clean / robust metric of each epoch, and the controller's scale after each validation with the
# defaults (warm-up 1, patience 2, cooldown 1), worked out by hand from the documented rules.
CLEAN = [0.80, 0.60, 0.62, 0.65, 0.66, 0.82]
ROBUST = [0.50, 0.30, 0.30, 0.35, 0.40, 0.40]
SCALES = [1.0, 1.0, 1.0, 0.5, 0.5, 0.5]
CODES = [1, 0, 0, -1, 0, 0]


class Scripted(pl.LightningModule):
    """A tiny model whose validation logs CLEAN / ROBUST[epoch] (and, optionally, a noise layer)."""

    def __init__(self, layer: bool = False) -> None:
        super().__init__()
        self.noise = GaussianNoise(std=0.2) if layer else nn.Identity()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.noise(x))

    def training_step(self, batch, batch_idx):
        return F.cross_entropy(self(batch[0]), batch[1])

    def validation_step(self, batch, batch_idx):
        epoch = self.current_epoch if not self.trainer.sanity_checking else 0
        self.log("val/acc", CLEAN[epoch])
        self.log("val/robust", ROBUST[epoch])
        self.log("val/loss", 1.0 - CLEAN[epoch])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


class StdRecorder(Callback):
    """The input noise's std at each epoch's first training batch."""

    def __init__(self, noise: InputNoise) -> None:
        self.noise = noise
        self.stds: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if batch_idx == 0:
            self.stds.append(self.noise.last_values["std"])


def fit(callbacks, epochs=6, model=None, data=None, **overrides):
    trainer = quiet_trainer(
        max_epochs=epochs, limit_train_batches=2, limit_val_batches=1, callbacks=callbacks, **overrides
    )
    trainer.fit(model or Scripted(), data or DigitsDataModule(batch_size=16))
    return trainer


def controller(**kwargs) -> NoiseController:
    kwargs.setdefault("robust_monitor", "val/robust")
    kwargs.setdefault("log_figures", False)
    kwargs.setdefault("verbose", False)
    return NoiseController(**kwargs)


@pytest.fixture(scope="module")
def scripted(tmp_path_factory):
    root = tmp_path_factory.mktemp("scripted")
    noise = InputNoise(Gaussian(std=0.4), clamp=(0, 1), seed=0, scale=0.5)
    control = controller(log_figures=True)
    recorder = StdRecorder(noise)
    logger = CSVLogger(str(root), name="run", version=0)
    trainer = fit([noise, control, recorder], logger=logger, default_root_dir=str(root))
    with (root / "run" / "version_0" / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    return {"noise": noise, "control": control, "stds": recorder.stds, "rows": rows, "trainer": trainer}


def test_decisions_follow_the_script(scripted):
    history = scripted["control"].history
    assert [row[0] for row in history] == list(range(len(CLEAN)))
    assert [row[2] for row in history] == pytest.approx(CLEAN)
    assert [row[3] for row in history] == pytest.approx(ROBUST)
    assert [row[5] for row in history] == SCALES
    assert [row[4] for row in history] == CODES
    assert scripted["control"].scale == 0.5


def test_the_controller_scale_multiplies_the_sources_own(scripted):
    # Warm-up epoch clean; then std 0.4 x own scale 0.5 x controller scale.
    assert scripted["stds"] == pytest.approx([0.0, 0.2, 0.2, 0.2, 0.1, 0.1])
    assert scripted["noise"].scale == pytest.approx(0.25)
    assert scripted["control"].bases == {"input": 0.5}


def test_logged_through_the_loggers_and_callback_metrics(scripted):
    rows = [r for r in scripted["rows"] if r.get("noise/controller/scale")]
    assert [float(r["noise/controller/scale"]) for r in rows] == SCALES
    assert [float(r["noise/controller/decision"]) for r in rows] == CODES
    assert [float(r["noise/controller/input/scale"]) for r in rows] == [0.5 * s for s in SCALES]
    assert [float(r["noise/controller/input/std"]) for r in rows] == pytest.approx([0.2 * s for s in SCALES])
    # The reference in use: the best clean value (0.80 from the warm-up, then 0.82).
    assert [float(r["noise/controller/reference"]) for r in rows] == pytest.approx([0.8] * 5 + [0.82])
    # Each at its validation's global step (2 training batches per epoch).
    assert [int(r["step"]) for r in rows] == [2, 4, 6, 8, 10, 12]
    metrics = scripted["trainer"].callback_metrics
    assert float(metrics["noise/controller/scale"]) == 0.5
    assert float(metrics["noise/controller/input/scale"]) == 0.25


def test_figure_at_the_end_of_fitting(scripted):
    root = Path(scripted["trainer"].logger.log_dir)
    files = sorted((root / "figures" / "noise" / "controller" / "history").glob("*.png"))
    assert [f.name for f in files] == ["epoch0006-step0000012.png"]


def test_no_decision_in_the_sanity_check_or_in_validate(tmp_path):
    control = controller()
    trainer = fit([InputNoise(Gaussian(std=0.1)), control], epochs=2, num_sanity_val_steps=1)
    assert len(control.history) == 2
    trainer.validate(trainer.lightning_module, DigitsDataModule(batch_size=16), verbose=False)
    assert len(control.history) == 2


def test_a_console_line_per_change(rank_zero_records):
    fit([InputNoise(Gaussian(std=0.1)), controller(verbose=True)], epochs=4)
    lines = [m for m in rank_zero_records.messages if m.startswith("NoiseController")]
    assert lines == [
        "NoiseController: epoch 0: val/acc 0.8 (reference 0.8): scale 0 -> 1 (warm-up done)",
        "NoiseController: epoch 3: val/acc 0.65 (reference 0.8): scale 1 -> 0.5 (below reference)",
    ]


def test_targets_select_sources_and_others_are_untouched():
    weight = WeightNoise(Gaussian(std=0.01), scale=0.3)
    noise = InputNoise(Gaussian(std=0.1))
    control = controller(targets=["input"])
    fit([noise, weight, control])
    assert noise.scale == 0.5
    assert weight.scale == 0.3
    assert control.targets_scales() == {"input": 0.5}


def test_mix_and_noise_layers_are_sources():
    data = MixupDataModule(DigitsDataModule(batch_size=16), mixup_alpha=0.2, prob=0.8, seed=0, scale=0.5)
    model = Scripted(layer=True)
    control = controller()
    fit([control], model=model, data=data)
    assert control.targets_scales() == {"mix": 0.25, "layers/noise": 0.5}
    assert model.noise.scale == 0.5
    assert data.scale == 0.25
    # With a NoiseLayerSchedule, that callback is the layers' knob and the layer keeps its own scale.
    model = Scripted(layer=True)
    schedule = NoiseLayerSchedule(seed=0)
    control = controller()
    fit([schedule, control], model=model)
    assert control.targets_scales() == {"layers": 0.5}
    assert model.noise.scale == 1.0


def test_unknown_target_lists_the_sources():
    with pytest.raises(ConfigurationError) as info:
        fit([InputNoise(Gaussian(std=0.1)), WeightNoise(Gaussian(std=0.1)), controller(targets=["inptu"])])
    assert str(info.value) == (
        "NoiseController: `targets` must be names of the fit's noise sources: input, weight, got ['inptu']."
    )


def test_no_source_at_all():
    with pytest.raises(ConfigurationError, match="no noise source to drive"):
        fit([controller()])


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [({"monitor": "val/accuracy"}, "monitor"), ({"robust_monitor": "val/rob"}, "robust_monitor")],
)
def test_a_metric_that_is_never_logged_lists_the_logged_ones(kwargs, name):
    with pytest.raises(ConfigurationError) as info:
        fit([InputNoise(Gaussian(std=0.1)), controller(**kwargs)], num_sanity_val_steps=1)
    message = str(info.value)
    assert message.startswith(f"NoiseController: `{name}` must be a metric logged at validation, got")
    assert message.endswith("logged: val/acc, val/loss, val/robust.")


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"decrease": 1.5}, r"`decrease` must be > 0 and < 1, got 1.5"),
        ({"increase": 0.5}, r"`increase` must be >= 1, got 0.5"),
        ({"min_scale": 3.0, "max_scale": 2.0}, r"`min_scale` must be <= `max_scale` \(2.0\), got 3.0"),
        ({"patience": 0}, r"`patience` must be an integer >= 1, got 0"),
        ({"monitor": ""}, r"`monitor` must be a metric name, got ''"),
        ({"targets": []}, r"`targets` must be None or a non-empty list of source names, got \[\]"),
        ({"verbose": "yes"}, r"`verbose` must be True or False, got 'yes'"),
        (
            {"gap": 0.1},
            r"`gap` must be None without `robust_monitor` \(the gap is the clean minus the robust metric\),"
            r" got 0.1\.$",
        ),
    ],
)
def test_bad_arguments(kwargs, pattern):
    with pytest.raises(ConfigurationError, match=r"^NoiseController: " + pattern):
        NoiseController(**kwargs)


def test_every_rank_applies_the_broadcast_decision(monkeypatch):
    control = controller()
    noise = InputNoise(Gaussian(std=0.1), scale=0.5)

    class Fake(Callback):
        def on_fit_start(self, trainer, pl_module):
            real = trainer.strategy.broadcast

            def broadcast(obj, src=0):
                if isinstance(obj, tuple) and isinstance(obj[1], dict) and "history" in obj[1]:
                    state = dict(obj[1], scale=0.125)  # what rank 0 decided, not this rank
                    return Decision(0.125, -1, "below reference"), state
                return real(obj, src)

            monkeypatch.setattr(trainer.strategy, "broadcast", broadcast)

    fit([Fake(), noise, control], epochs=2)
    assert control.scale == 0.125
    assert noise.scale == 0.0625


def test_early_stopping_reads_the_controller_metrics():
    stop = EarlyStopping(monitor="noise/controller/scale", mode="max", divergence_threshold=0.75)
    trainer = fit([InputNoise(Gaussian(std=0.1)), controller(), stop])
    assert trainer.current_epoch == 4  # stopped after epoch 3's decrease to 0.5
    assert stop.stopped_epoch == 3


@pytest.mark.filterwarnings("ignore:Checkpoint directory .* exists and is not empty")  # resuming into it
def test_resume_continues_the_decisions(tmp_path):
    whole = controller()
    fit([InputNoise(Gaussian(std=0.4), scale=0.5, seed=0), whole])
    checkpoint = ModelCheckpoint(
        dirpath=tmp_path / "ckpt", save_top_k=-1, every_n_epochs=1, filename="{epoch}"
    )
    first = controller()
    fit(
        [InputNoise(Gaussian(std=0.4), scale=0.5, seed=0), first, checkpoint],
        epochs=4,
        enable_checkpointing=True,
    )
    resumed = controller()
    noise = InputNoise(Gaussian(std=0.4), scale=0.5, seed=0)
    again = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_top_k=-1, every_n_epochs=1, filename="{epoch}")
    trainer = quiet_trainer(
        max_epochs=len(CLEAN),
        limit_train_batches=2,
        limit_val_batches=1,
        callbacks=[noise, resumed, again],
        enable_checkpointing=True,
    )
    trainer.fit(
        Scripted(), DigitsDataModule(batch_size=16), ckpt_path=str(tmp_path / "ckpt" / "epoch=3.ckpt")
    )
    assert resumed.history == whole.history
    assert resumed.bases == {"input": 0.5}
    assert noise.scale == 0.25


def test_the_monitor_file_holds_every_argument_at_its_default(tmp_path):
    from hydra.utils import instantiate

    from _cli import compose_train, lit_noise_configs

    with lit_noise_configs():
        cfg = compose_train(tmp_path, ["monitor=[controller]"])
    node = dict(cfg.callbacks.noise_controller)
    assert node.pop("_target_") == "lit_noise.NoiseController"
    defaults = {name: p.default for name, p in inspect.signature(NoiseController).parameters.items()}
    assert node == defaults
    assert isinstance(instantiate(cfg.callbacks.noise_controller), NoiseController)


def test_the_adaptive_preset_composes_and_runs(tmp_path):
    from hydra.types import RunMode

    from _cli import TINY, compose_train, lit_noise_configs
    from lit_noise.cli.train import run

    with lit_noise_configs():
        cfg = compose_train(tmp_path, ["experiment=adaptive"])
        assert cfg.hydra.mode != RunMode.MULTIRUN
        assert cfg.trainer.max_epochs == 20
        assert cfg.callbacks.input_noise.noise.std == 2.0
        assert cfg.callbacks.noise_controller.robust_monitor == "val/robust/mean_acc"
        assert list(cfg.callbacks)[-2:] == ["robustness_monitor", "noise_controller"]
        tiny = compose_train(
            tmp_path,
            [
                "experiment=adaptive",
                *TINY,
                "trainer.max_epochs=2",
                "logger=none",
                # The best checkpoint is epoch 0's: evaluating it restores a controller state with one
                # decision, which results.json must not take for the fit's.
                "callbacks.model_checkpoint.monitor=epoch",
                "callbacks.model_checkpoint.mode=min",
            ],
        )
        result = run(tiny)
    assert result.metrics["noise/controller/scale"] == 1.0  # after the warm-up epoch and a cooldown
    assert result.metrics["noise/controller/input/std"] == 2.0
    assert sorted(p.name for p in (tmp_path / "figures" / "noise" / "controller" / "history").glob("*"))
    # results.json keeps the whole fit's decisions (read before any checkpoint is evaluated) ...
    record = json.loads((tmp_path / "results.json").read_text())["controllers"]["callbacks.noise_controller"]
    assert [(h["epoch"], h["scale"], h["decision"], h["new_scale"]) for h in record["history"]] == [
        (0, 0.0, 1, 1.0),  # the clean warm-up epoch, then the noise at full scale
        (1, 1.0, 0, 1.0),  # cooldown
    ]
    assert record["final_scale"] == 1.0
    assert record["targets"] == {"input": 1.0}
    assert record["monitor"] == "val/acc"
    # ... and the sweep report shows them.
    from lit_noise.cli.report import write_report

    report = write_report(tmp_path).read_text()
    assert "## Noise controller" in report
    assert "| 1 | `callbacks.noise_controller` | 2 | 0 | 1 | 1 |" in report  # down, up, final scale
    assert (tmp_path / "report" / "controller.png").stat().st_size > 0


def test_figures_need_matplotlib(monkeypatch):
    from lit_noise._optional import MissingDependencyError

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # how Python blocks an import
    with pytest.raises(
        MissingDependencyError, match=r"^NoiseController needs .*'matplotlib'.*log_figures=False"
    ):
        NoiseController()
    assert NoiseController(log_figures=False).log_figures is False


class RankScripted(Scripted):
    """Rank 0 logs the script; rank 1 a clean metric that alone would never lower the noise."""

    def validation_step(self, batch, batch_idx):
        epoch = self.current_epoch if not self.trainer.sanity_checking else 0
        clean = CLEAN[epoch] if self.global_rank == 0 else 0.99
        self.log("val/acc", clean, sync_dist=False)
        self.log("val/robust", ROBUST[epoch], sync_dist=False)


class RankWriter(Callback):
    def __init__(self, out: Path, control: NoiseController, noise: InputNoise) -> None:
        self.out, self.control, self.noise = out, control, noise

    def on_train_end(self, trainer, pl_module):
        state = {"history": self.control.history, "scale": self.noise.scale}
        torch.save(state, self.out / f"rank{trainer.global_rank}.pt")


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:.*sync_dist=True.*")
def test_ddp_ranks_apply_rank_zeros_decisions(tmp_path):
    from _ddp import ReleaseProcessGroup

    noise = InputNoise(Gaussian(std=0.4), scale=0.5, seed=0)
    control = controller()
    trainer = quiet_trainer(
        devices=2,
        strategy="ddp_spawn",
        max_epochs=len(CLEAN),
        limit_train_batches=2,
        limit_val_batches=1,
        callbacks=[noise, control, RankWriter(tmp_path, control, noise), ReleaseProcessGroup()],
    )
    trainer.fit(RankScripted(), DigitsDataModule(batch_size=16))
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1)]
    for state in ranks:
        assert [row[5] for row in state["history"]] == SCALES
        assert [row[2] for row in state["history"]] == pytest.approx(CLEAN)  # rank 0's values
        assert state["scale"] == pytest.approx(0.25)


def test_settings_logged_as_hyperparameters(scripted):
    import yaml

    root = Path(scripted["trainer"].logger.log_dir)
    hparams = yaml.safe_load((root / "hparams.yaml").read_text())
    controller_settings = {k: v for k, v in hparams.items() if k.startswith("lit_noise/controller/")}
    assert controller_settings["lit_noise/controller/callback"] == "NoiseController"
    assert controller_settings["lit_noise/controller/robust_monitor"] == "val/robust"
    assert controller_settings["lit_noise/controller/decrease"] == 0.5
    assert controller_settings["lit_noise/controller/warmup"] == 1
    assert len(controller_settings) == 1 + len(inspect.signature(NoiseController).parameters)


@pytest.mark.slow  # a W&B offline run and wandb's reader: about 15 s
def test_the_adaptive_preset_in_wandb(tmp_path, monkeypatch):
    from _cli import TINY, compose_train, lit_noise_configs, wandb_summary
    from lit_noise.cli.train import run

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    for var in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_CONFIG_DIR"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    with lit_noise_configs():
        cfg = compose_train(
            tmp_path, ["experiment=adaptive", *TINY, "trainer.max_epochs=2", "logger=wandb", "test=false"]
        )
        result = run(cfg)
    (run_dir,) = result.wandb_runs
    summary = wandb_summary(run_dir)
    assert summary["state"] == "finished"
    # The last decision's values, as the console and results.json have them: warm-up, then scale 1.
    assert summary["summary"]["noise/controller/scale"] == 1.0
    assert summary["summary"]["noise/controller/input/std"] == 2.0
    assert summary["summary"]["noise/controller/decision"] == 0
    assert summary["config"]["lit_noise/controller/monitor"] == "val/acc"
    assert summary["config"]["callbacks.noise_controller.robust_monitor"] == "val/robust/mean_acc"
    # The history figure went to W&B as media.
    media = list(Path(run_dir).rglob("media/images/noise/controller/history*"))
    assert media, sorted(str(p.relative_to(run_dir)) for p in Path(run_dir).rglob("media/**/*"))


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"limit_val_batches": 0}, "`limit_val_batches` is 0"),
        (
            {"check_val_every_n_epoch": 3},
            r"`check_val_every_n_epoch` \(3\) is larger than `max_epochs` \(2\)",
        ),
    ],
)
def test_a_fit_that_never_validates_is_refused_before_training(overrides, match):
    noise = InputNoise(Gaussian(std=0.1))
    settings = {"max_epochs": 2, "limit_train_batches": 2, "callbacks": [noise, controller()], **overrides}
    with pytest.raises(
        ConfigurationError, match=f"NoiseController decides after each validation, but {match}"
    ):
        quiet_trainer(**settings).fit(Scripted(), DigitsDataModule(batch_size=16))
    assert noise.scale == 1.0  # the warm-up's scale 0 was never applied


def test_a_fit_that_ends_in_the_warm_up_warns():
    noise = InputNoise(Gaussian(std=0.1))
    with pytest.warns(UserWarning, match=r"fitting ended during the clean warm-up \(1 more validation"):
        fit([noise, controller(warmup=2)], epochs=1)


def test_an_exception_gives_the_sources_their_scales_back():
    class Boom(Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            raise RuntimeError("boom")

    noise = InputNoise(Gaussian(std=0.1), scale=0.7)
    with pytest.raises(RuntimeError, match="boom"):
        fit([noise, controller(), Boom()], epochs=2)  # the warm-up had set the scale to 0
    assert noise.scale == 0.7


class EveryOther(Scripted):
    """Logs the robust metric at epochs 0, 2, 4 only (a monitor with every_n_epochs=2)."""

    every_n_epochs = 2

    def validation_step(self, batch, batch_idx):
        epoch = self.current_epoch if not self.trainer.sanity_checking else 0
        self.log("val/acc", CLEAN[epoch])
        if epoch % 2 == 0:
            self.log("val/robust", ROBUST[epoch])


class EveryNEpochs(Callback):
    every_n_epochs = 2


def test_a_robust_metric_logged_every_other_validation_is_read_only_when_fresh():
    control = controller()
    fit([InputNoise(Gaussian(std=0.1)), control, EveryNEpochs()], epochs=5, model=EveryOther())
    # Lightning keeps the last value in callback_metrics; the controller reads it only when new.
    assert [row[3] for row in control.history] == pytest.approx([ROBUST[0], None, ROBUST[2], None, ROBUST[4]])


def test_a_robust_metric_first_logged_at_a_later_validation_is_no_error():
    class FromEpochOne(Scripted):
        def validation_step(self, batch, batch_idx):
            epoch = self.current_epoch if not self.trainer.sanity_checking else 0
            self.log("val/acc", CLEAN[epoch])
            if epoch % 2 == 1:
                self.log("val/robust", ROBUST[epoch])

    control = controller()
    fit([InputNoise(Gaussian(std=0.1)), control, EveryNEpochs()], epochs=3, model=FromEpochOne())
    assert [row[3] for row in control.history] == pytest.approx([None, ROBUST[1], None])


def test_figure_every_validation_without_figures_is_refused():
    with pytest.raises(
        ConfigurationError, match=r"`figure_every_validation` must be False when `log_figures` is False"
    ):
        NoiseController(log_figures=False, figure_every_validation=True)
