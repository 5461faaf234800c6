"""The app's own overhead: a lit-noise-train job versus the same fit written by hand, in one process.

Run: ``python benchmarks/bench_cli.py [--repeats 7] [--epochs 3] [--threads 1]`` (about a minute).

Both run the default experiment (digits MLP, input noise, calibration and robustness monitors,
ModelCheckpoint, fit then validate and test on the best checkpoint) with a CSV logger, alternately
(the order swapped every round), ``--repeats`` rounds of short fits, in thread CPU time with one
torch thread (the data loaders have no workers, so the whole job runs in this thread). The floor is
the same job written by hand (a ``Trainer`` with the same callbacks and Lightning's own
``CSVLogger``, no Hydra). The ratio compared with the target (at most 1.1) is the ratio of the
best times, app / by hand: on this loaded 2-core machine even thread CPU time jumps by up to 50 %
for seconds at a time (other jobs share the cores' caches), so a round's paired ratio swings
between about 0.8 and 1.5 and a job's best time is its cost without interference. The median of
the paired ratios is printed too. Composing the config is timed apart.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import tempfile
import warnings
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from hydra import compose, initialize_config_module
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger

from _harness import header, paired_ratios, quiet_trainer, result, thread_clock
from lit_noise import CalibrationMonitor, Gaussian, InputNoise, RobustnessMonitor
from lit_noise.cli.train import run
from lit_noise.examples import Classifier, DigitsDataModule


def compose_job(out: Path, epochs: int) -> Any:
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
    trainer = quiet_trainer(
        callbacks,
        max_epochs=epochs,
        log_every_n_steps=5,
        deterministic=True,
        limit_val_batches=None,
        enable_checkpointing=True,
        logger=CSVLogger(out, name="csv"),
        default_root_dir=out,
    )
    trainer.fit(model, datamodule=data)
    best = checkpoint.best_model_path
    trainer.validate(model, datamodule=data, ckpt_path=best, verbose=False)
    trainer.test(model, datamodule=data, ckpt_path=best, verbose=False)
    return float(trainer.callback_metrics["test/acc"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument("--epochs", type=int, default=3, help="the default job's max_epochs")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    header("lit-noise-train job vs the same fit by hand (default experiment)")
    quiet_trainer()  # quiets Lightning's loggers and warnings for the app's trainers too
    warnings.filterwarnings("ignore")
    clock = thread_clock()
    root = Path(tempfile.mkdtemp())
    seconds: dict[str, list[float]] = {"app": [], "hand": []}
    composing = []
    with initialize_config_module("lit_noise.conf", version_base="1.3"):
        run(compose_job(root / "warm-up-app", 1))  # first-use imports and caches, for both
        by_hand(root / "warm-up-hand", 1)
        for i in range(args.repeats):
            for kind in ("app", "hand") if i % 2 == 0 else ("hand", "app"):
                # Untimed, before every round of either kind: the garbage of earlier rounds would
                # otherwise trigger a full collection of the ~500k-object heap (~250 ms here) in
                # whichever round crosses the collector's threshold (timeit turns the collector off).
                gc.collect()
                start = clock()
                if kind == "app":
                    cfg = compose_job(root / f"app{i}", args.epochs)
                    composing.append((clock() - start) / 1e9)
                    run(cfg)
                else:
                    by_hand(root / f"hand{i}", args.epochs)
                seconds[kind].append((clock() - start) / 1e9)
    for kind, values in seconds.items():
        print(f"{kind:>4s}, s per round: {', '.join(f'{v:.2f}' for v in values)}")
    print("each round starts after an untimed gc.collect(), so no round pays for another's garbage")
    ratios = paired_ratios(seconds, "app", "hand")
    app, hand = min(seconds["app"]), min(seconds["hand"])
    ratio = app / hand
    compose_ms = statistics.median(composing) * 1e3
    print(f"compose the default config: {compose_ms:.0f} ms (median of {args.repeats})")
    print(
        f"the app's overhead (best times): {(app - hand) * 1e3:.0f} ms per job, of which composing"
        f" {compose_ms:.0f} ms (Hydra's YAML parsing and OmegaConf merging); the rest is Hydra's"
        " instantiate, the resolved config logged as hyperparameters (lit_noise's CSVLogger writes"
        " hparams.yaml only when it changes; Lightning's, which the floor uses, at every call) and"
        " results.json; the target allows"
        f" {hand * 0.1 * 1e3:.0f} ms"
    )
    print(
        f"lit-noise-train job ({args.epochs} epochs): {app:.2f} s, by hand: {hand:.2f} s (best of"
        f" {args.repeats}); ratio of the best times app / by hand {ratio:.3f}; median of the paired"
        f" ratios {statistics.median(ratios):.3f} (rounds: {', '.join(f'{r:.3f}' for r in ratios)})"
    )
    result(
        "`lit-noise-train` job / the same fit by hand (default job)",
        f"{ratio:.3f} ({app:.2f} s / {hand:.2f} s, {args.epochs} epochs);"
        f" composing the config {compose_ms:.0f} ms",
        "1.1x",
        "met" if ratio <= 1.1 else "missed",
        "the same Trainer and callbacks written by hand, with Lightning's CSVLogger, no Hydra",
        "The app's overhead",
    )


if __name__ == "__main__":
    main()
