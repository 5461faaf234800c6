"""The app's own overhead: a lit-noise-train job versus the same fit written by hand, in one process.

Both run the default experiment (digits MLP, input noise, calibration and robustness monitors,
ModelCheckpoint, fit then validate and test on the best checkpoint) with a CSV logger, alternately,
``--repeats`` times each; the ratio of the best wall times is printed (target: at most 1.1), and
the time to compose the config.

    python benchmarks/bench_cli.py [--repeats 2] [--epochs 5]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import lightning.pytorch as pl
from hydra import compose, initialize_config_module
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger

from lit_noise import CalibrationMonitor, Gaussian, InputNoise, RobustnessMonitor
from lit_noise.cli.train import run
from lit_noise.examples import Classifier, DigitsDataModule


def compose_job(out: Path, epochs: int):
    cfg = compose(
        "train",
        overrides=[
            "logger=csv",
            f"trainer.max_epochs={epochs}",
            "trainer.enable_progress_bar=false",
            f"paths.output_dir={out}",
            f"paths.work_dir={out}",
        ],
        return_hydra_config=True,
    )
    HydraConfig.instance().set_config(cfg)
    return cfg


def by_hand(out: Path, epochs: int) -> float:
    """The same job without Hydra: what a user would write."""
    pl.seed_everything(0, workers=True, verbose=False)
    data, model = DigitsDataModule(batch_size=64), Classifier(backbone="mlp", hidden=64, lr=0.01)
    checkpoint = ModelCheckpoint(dirpath=out / "checkpoints", monitor="val/acc", mode="max", save_last=True)
    callbacks = [
        checkpoint,
        InputNoise(Gaussian(std=0.1), clamp=(0.0, 1.0)),
        CalibrationMonitor(num_classes=10, stages=["val", "test"]),
        RobustnessMonitor(),  # the quick suite, as conf/monitor/robustness.yaml
    ]
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=epochs,
        log_every_n_steps=5,
        deterministic=True,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=callbacks,
        logger=CSVLogger(out, name="csv"),
        default_root_dir=out,
    )
    trainer.fit(model, datamodule=data)
    best = checkpoint.best_model_path
    trainer.validate(model, datamodule=data, ckpt_path=best, verbose=False)
    trainer.test(model, datamodule=data, ckpt_path=best, verbose=False)
    return float(trainer.callback_metrics["test/acc"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    root = Path(tempfile.mkdtemp())
    app, hand, composing = [], [], []
    with initialize_config_module("lit_noise.conf", version_base="1.3"):
        for i in range(args.repeats):
            start = time.perf_counter()
            cfg = compose_job(root / f"app{i}", args.epochs)
            composing.append(time.perf_counter() - start)
            start = time.perf_counter()
            run(cfg)
            app.append(time.perf_counter() - start)
            start = time.perf_counter()
            by_hand(root / f"hand{i}", args.epochs)
            hand.append(time.perf_counter() - start)
    print(f"compose the default config: {min(composing) * 1000:.0f} ms")
    ratio = min(app) / min(hand)
    print(f"lit-noise-train job: {min(app):.2f} s   by hand: {min(hand):.2f} s   ratio {ratio:.3f}")


if __name__ == "__main__":
    main()
