"""Cost of InputNoise + TargetNoise: the callbacks' hot path against the bare tensor work, and whole steps.

Run: ``python benchmarks/bench_batch_noise.py [--quick]``. Prints ratios measured side by side in
this process (repetitions interleaved, medians), never absolute targets.

Part 1 calls ``on_train_batch_start`` of ``InputNoise(Gaussian)`` + ``TargetNoise(SymmetricFlip)`` (and
of ``TargetNoise(LabelSmoothing)``) directly, on a (64, 64) float batch with 64 int64 labels, with a
trainer that has fitted one batch (so the hooks see a real trainer, loop state and logging interval),
against the floor: the same tensor operations done bare (``torch.randn_like`` + ``add`` on the input,
the flip's or smoothing's operations on the labels, written into a fresh batch list), without
generators, clocks, checks or logging. The "seeded floor" adds what counter-based seeding costs per
callback (hashing the counters and ``Generator.manual_seed``), the minimum for noise that is
reproducible, resumable and independent of the data-loader workers.

Part 2 times whole training steps (``trainer.fit`` on DigitsDataModule, batch 64) with and without
the two callbacks for the MLP and the CNN example classifiers: the median step-to-step time measured
by a timing callback, in pairs of fits run back to back (order alternating); the ratio printed is the
median of the pairs' ratios.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any, Literal

import lightning.pytorch as pl
import torch

from lit_noise import Gaussian, InputNoise, LabelSmoothing, SymmetricFlip, TargetNoise
from lit_noise._rng import mix_seed
from lit_noise.examples import Classifier, DigitsDataModule

warnings.filterwarnings("ignore")

NUM_CLASSES = 10
STD, FLIP_P, EPS = 0.1, 0.2, 0.1


def _quiet_trainer(callbacks: Sequence[pl.Callback], **kwargs: Any) -> pl.Trainer:
    options: dict[str, Any] = {
        "accelerator": "cpu",
        "devices": 1,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "limit_val_batches": 0,
        "callbacks": list(callbacks),
    }
    options.update(kwargs)
    return pl.Trainer(**options)


def _median_us(fn: Callable[[], object], number: int) -> float:
    start = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - start) / number * 1e6


def _interleaved(cases: dict[str, Callable[[], object]], number: int, repeats: int) -> dict[str, float]:
    for fn in cases.values():  # warm up
        _median_us(fn, number // 4 + 1)
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, fn in cases.items():
            samples[name].append(_median_us(fn, number))
    return {name: statistics.median(values) for name, values in samples.items()}


def bench_hot_path(number: int, repeats: int) -> None:
    """Part 1: the callbacks' on_train_batch_start against the bare tensor work."""
    x = torch.rand(64, 64)
    y = torch.randint(0, NUM_CLASSES, (64,))
    flip_callbacks = [
        InputNoise(Gaussian(std=STD), seed=0),
        TargetNoise(SymmetricFlip(p=FLIP_P), num_classes=NUM_CLASSES, seed=1),
    ]
    smooth_callbacks = [
        InputNoise(Gaussian(std=STD), seed=0),
        TargetNoise(LabelSmoothing(eps=EPS), num_classes=NUM_CLASSES, seed=1),
    ]
    trainers = []
    for callbacks in (flip_callbacks, smooth_callbacks):
        trainer = _quiet_trainer(callbacks, max_epochs=1, limit_train_batches=1)
        model = Classifier()
        trainer.fit(model, DigitsDataModule())
        trainers.append((trainer, model))
    counter = iter(range(10**9))

    def callbacks_flip() -> None:
        trainer, model = trainers[0]
        batch, index = [x, y], next(counter) % 1000
        for callback in flip_callbacks:
            callback.on_train_batch_start(trainer, model, batch, index)

    def callbacks_smooth() -> None:
        trainer, model = trainers[1]
        batch, index = [x, y], next(counter) % 1000
        for callback in smooth_callbacks:
            callback.on_train_batch_start(trainer, model, batch, index)

    # The floor does the same tensor operations inline, with the same harness (a fresh batch list
    # and a batch index per call), but without generators, clocks, checks or logging.
    g_input, g_target = torch.Generator(), torch.Generator()
    smooth_off, smooth_on = EPS / NUM_CLASSES, 1.0 - EPS + EPS / NUM_CLASSES

    def floor_flip() -> None:  # randn_like + add; the operations of functional.symmetric_flip
        batch, _ = [x, y], next(counter) % 1000
        batch[0] = torch.add(x, torch.randn_like(x), alpha=STD)
        offset = torch.randint_like(y, 1, NUM_CLASSES)
        offset.masked_fill_(torch.rand_like(y, dtype=torch.float32) >= FLIP_P, 0)
        batch[1] = offset.add_(y).remainder_(NUM_CLASSES)

    def floor_smooth() -> None:  # randn_like + add; the operations of functional.smooth_one_hot
        batch, _ = [x, y], next(counter) % 1000
        batch[0] = torch.add(x, torch.randn_like(x), alpha=STD)
        batch[1] = torch.full((64, NUM_CLASSES), smooth_off).scatter_(1, y.unsqueeze(1), smooth_on)

    def seeded_floor_flip() -> None:  # + what counter-based seeding costs: hash + manual_seed, twice
        batch, index = [x, y], next(counter) % 1000
        g_input.manual_seed(mix_seed(12345 + index))
        batch[0] = torch.add(x, torch.randn_like(x, generator=g_input), alpha=STD)
        g_target.manual_seed(mix_seed(54321 + index))
        offset = torch.randint_like(y, 1, NUM_CLASSES, generator=g_target)
        offset.masked_fill_(torch.rand_like(y, dtype=torch.float32, generator=g_target) >= FLIP_P, 0)
        batch[1] = offset.add_(y).remainder_(NUM_CLASSES)

    def seeded_floor_smooth() -> None:
        batch, index = [x, y], next(counter) % 1000
        g_input.manual_seed(mix_seed(12345 + index))
        batch[0] = torch.add(x, torch.randn_like(x, generator=g_input), alpha=STD)
        g_target.manual_seed(mix_seed(54321 + index))
        batch[1] = torch.full((64, NUM_CLASSES), smooth_off).scatter_(1, y.unsqueeze(1), smooth_on)

    def bare_gaussian() -> None:
        torch.add(x, torch.randn_like(x), alpha=STD)

    results = _interleaved(
        {
            "callbacks (Gaussian + SymmetricFlip)": callbacks_flip,
            "floor     (randn_like + add, flip ops)": floor_flip,
            "seeded floor (+ 2 reseeds)": seeded_floor_flip,
            "callbacks (Gaussian + LabelSmoothing)": callbacks_smooth,
            "floor     (randn_like + add, smoothing ops)": floor_smooth,
            "seeded floor (+ 2 reseeds) ": seeded_floor_smooth,
            "bare randn_like + add alone": bare_gaussian,
        },
        number,
        repeats,
    )
    threads = torch.get_num_threads()
    print(f"Part 1: on_train_batch_start, (64, 64) float batch + 64 labels, torch threads={threads}")
    for name, value in results.items():
        print(f"  {name:45s} {value:7.2f} us")
    names = list(results)
    for cb, floor, seeded in ((names[0], names[1], names[2]), (names[3], names[4], names[5])):
        overhead = results[cb] - results[floor]
        print(
            f"  {cb.split('(')[1].rstrip(')'):28s} ratio to floor {results[cb] / results[floor]:.3f}x"
            f" (target <= 1.2x), to seeded floor {results[cb] / results[seeded]:.3f}x,"
            f" overhead {overhead:.2f} us for two callbacks"
        )


class _StepTimer(pl.Callback):
    """Records the wall time between consecutive ``on_train_batch_end`` calls (whole steps)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._last: float | None = None

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._last = None

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        now = time.perf_counter()
        if self._last is not None:
            self.times.append(now - self._last)
        self._last = now


def _fit_step_times(backbone: Literal["mlp", "cnn"], with_noise: bool, epochs: int) -> list[float]:
    timer = _StepTimer()
    callbacks: list[pl.Callback] = [timer]
    if with_noise:
        callbacks += [
            InputNoise(Gaussian(std=STD), clamp=(0.0, 1.0), seed=0),
            TargetNoise(SymmetricFlip(p=FLIP_P), num_classes=NUM_CLASSES, seed=1),
        ]
    pl.seed_everything(0, verbose=False)
    trainer = _quiet_trainer(callbacks, max_epochs=epochs)
    trainer.fit(Classifier(backbone=backbone), DigitsDataModule(batch_size=64))
    return timer.times


def bench_steps(epochs: int, repeats: int) -> None:
    """Part 2: training-step time with / without the two callbacks, fits interleaved in pairs."""
    print(
        f"Part 2: whole training steps (DigitsDataModule, batch 64, {epochs} epochs per fit,"
        f" {repeats} pairs of fits)"
    )
    backbones: tuple[Literal["mlp", "cnn"], ...] = ("mlp", "cnn")
    for backbone in backbones:
        _fit_step_times(backbone, True, 1)  # warm up
        medians: dict[bool, list[float]] = {False: [], True: []}
        ratios = []
        for repeat in range(repeats):
            order = (False, True) if repeat % 2 == 0 else (True, False)
            pair = {noise: statistics.median(_fit_step_times(backbone, noise, epochs)) for noise in order}
            for noise, value in pair.items():
                medians[noise].append(value)
            ratios.append(pair[True] / pair[False])
        clean = statistics.median(medians[False]) * 1e6
        noisy = statistics.median(medians[True]) * 1e6
        print(
            f"  {backbone.upper():4s} step without {clean:8.1f} us, with InputNoise + TargetNoise"
            f" {noisy:8.1f} us: ratio {statistics.median(ratios):.3f}x (median of paired fits; range"
            f" {min(ratios):.3f}..{max(ratios):.3f})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (a smoke run)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.quick:
        bench_hot_path(number=300, repeats=5)
        bench_steps(epochs=1, repeats=1)
    else:
        bench_hot_path(number=2000, repeats=15)
        bench_steps(epochs=2, repeats=8)


if __name__ == "__main__":
    main()
