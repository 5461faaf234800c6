"""Validation accuracy of the example models under the README's gradient and weight noise settings.

Run: ``python benchmarks/settings_that_help.py`` (about 3-4 minutes on one CPU thread; the
defaults regenerate the README table). ``--tasks``, ``--settings``, ``--seeds`` and ``--epochs``
select a subset, e.g. ``--tasks digits-cnn --seeds 0`` for a quick look.

Each cell trains one of the examples of :mod:`lit_noise.examples` (Adam, ``lr=1e-2``) from a
seed (``seed_everything(seed)``: the initial weights; the same seed shuffles the training data and
seeds the noise) and reads ``val/acc`` after every epoch; it prints, as a Markdown table, the mean
over the seeds of the last epoch's accuracy with the seeds' standard deviation, and the mean of the
best epoch's (what ``ModelCheckpoint(monitor="val/acc", mode="max")`` would keep). The example CNN
(BatchNorm, Adam at ``lr=1e-2``) has a validation accuracy that swings from epoch to epoch on the
shapes, so there the best epoch says more than the last one.

* ``digits-mlp`` / ``digits-cnn``: ``Classifier("mlp" | "cnn")`` on ``DigitsDataModule()``
  (scikit-learn's 8x8 digits, 10 classes, 1078 training images, batch 64);
* ``shapes-cnn``: ``Classifier("cnn", num_classes=6, input_shape=(3, 32, 32), hidden=32)`` on
  ``ShapesDataModule()`` (2000 training 32x32 RGB images; half the default width, a quarter of the
  cost: one seed, four of the settings, 8 epochs).
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import lightning.pytorch as pl
import torch

from lit_noise import AnnealedStd, Gaussian, GradientNoise, WeightNoise
from lit_noise.examples import Classifier, DigitsDataModule, ShapesDataModule


@dataclass(frozen=True)
class Task:
    """An example model and its data, with the epochs, seeds and settings it is run for by default."""

    build: Callable[[int], tuple[pl.LightningModule, pl.LightningDataModule]]
    epochs: int
    seeds: tuple[int, ...]
    settings: tuple[int, ...] | None = None  # indices into SETTINGS; None: all


TASKS: dict[str, Task] = {
    "digits-mlp": Task(lambda s: (Classifier("mlp"), DigitsDataModule(shuffle_seed=s)), 6, (0, 1, 2)),
    "digits-cnn": Task(lambda s: (Classifier("cnn"), DigitsDataModule(shuffle_seed=s)), 6, (0, 1, 2)),
    "shapes-cnn": Task(
        lambda s: (
            Classifier("cnn", num_classes=6, input_shape=(3, 32, 32), hidden=32),
            ShapesDataModule(shuffle_seed=s),
        ),
        8,
        (0,),
        (0, 1, 2, 6),
    ),
}


def _weight(seed: int) -> pl.Callback:
    return WeightNoise(Gaussian(std=0.01), relative=True, exclude="*.bias", seed=seed)


#: Setting name (as printed) -> the callbacks of one run, given the seed.
SETTINGS: dict[str, Callable[[int], list[pl.Callback]]] = {
    "no noise": lambda s: [],
    "`GradientNoise(std=AnnealedStd(eta=0.01))` (absolute; the old README)": lambda s: [
        GradientNoise(std=AnnealedStd(eta=0.01), seed=s)
    ],
    '`GradientNoise(std=AnnealedStd(eta=0.01), relative="tensor")`': lambda s: [
        GradientNoise(std=AnnealedStd(eta=0.01), relative="tensor", seed=s)
    ],
    '`GradientNoise(std=0.1, relative="tensor")`': lambda s: [
        GradientNoise(std=0.1, relative="tensor", seed=s)
    ],
    '`GradientNoise(std=0.1, relative="global")`': lambda s: [
        GradientNoise(std=0.1, relative="global", seed=s)
    ],
    '`WeightNoise(Gaussian(std=0.01), relative=True, exclude="*.bias")`': lambda s: [_weight(s)],
    'both: that `WeightNoise` + `GradientNoise(std=AnnealedStd(eta=0.01), relative="tensor")`': lambda s: [
        _weight(s),
        GradientNoise(std=AnnealedStd(eta=0.01), relative="tensor", seed=s + 1),
    ],
}


class EpochAccuracy(pl.Callback):
    """``val/acc`` after every epoch."""

    def __init__(self) -> None:
        self.values: list[float] = []

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.values.append(float(trainer.callback_metrics["val/acc"]))


def run(task: Task, setting: Callable[[int], list[pl.Callback]], seed: int, epochs: int) -> list[float]:
    """Validation accuracy after each epoch of one training run."""
    pl.seed_everything(seed, verbose=False)
    model, data = task.build(seed)
    accuracy = EpochAccuracy()
    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=epochs,
        callbacks=[*setting(seed), accuracy],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        deterministic=True,
    )
    trainer.fit(model, data)
    return accuracy.values


def cell(runs: list[list[float]]) -> str:
    """``last ± sd (best b)``: the last epoch's accuracy and the best epoch's, averaged over seeds."""
    last = [r[-1] for r in runs]
    best = statistics.fmean(max(r) for r in runs)
    spread = f" ± {statistics.stdev(last):.3f}" if len(last) > 1 else ""
    return f"{statistics.fmean(last):.3f}{spread} (best {best:.3f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", choices=list(TASKS), default=list(TASKS))
    parser.add_argument("--settings", nargs="+", type=int, help="indices into the settings (default: all)")
    parser.add_argument("--seeds", nargs="+", type=int, help="seeds (default: per task)")
    parser.add_argument("--epochs", type=int, help="epochs (default: per task)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")  # Lightning's advice (num_workers, litlogger) is not the subject here
    names = list(SETTINGS)
    chosen = [names[i] for i in args.settings] if args.settings else names
    start = time.perf_counter()
    table: dict[str, dict[str, str]] = {name: {} for name in chosen}
    for task_name in args.tasks:
        task = TASKS[task_name]
        seeds = tuple(args.seeds) if args.seeds else task.seeds
        epochs = args.epochs or task.epochs
        runs = chosen if args.settings or task.settings is None else [names[i] for i in task.settings]
        for name in runs:
            accs = [run(task, SETTINGS[name], seed, epochs) for seed in seeds]
            print(f"# {task_name} {name}: per epoch {[[round(a, 3) for a in r] for r in accs]}", flush=True)
            table[name][task_name] = cell(accs)
            print(f"# {task_name} ({epochs} epochs, seeds {list(seeds)}) {name}: {cell(accs)}", flush=True)
    header = " | ".join(
        f"{t} ({args.epochs or TASKS[t].epochs} ep., {len(args.seeds or TASKS[t].seeds)} seeds)"
        for t in args.tasks
    )
    print(f"\n| setting | {header} |")
    print("| --- |" + " --- |" * len(args.tasks))
    for name in chosen:
        print(f"| {name} | " + " | ".join(table[name].get(t, "not run") for t in args.tasks) + " |")
    print(f"\n({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
