"""Cost of NoiseController: training steps with and without it, and one decision at validation end.

Run: ``python benchmarks/bench_controller.py [--quick]`` (under a minute). Prints ratios measured
side by side in this process (fits interleaved, medians), never absolute targets.

Part 1 fits the digits MLP (batch 64, ``InputNoise(Gaussian(std=2.0))``, one validation batch per
epoch) with and without the controller, in pairs of fits run back to back (order alternating),
and times every training batch from ``on_train_batch_start`` to ``on_train_batch_end`` (validation
excluded). The controller has no per-batch hook at all, so the ratio should be 1 within noise.

Part 2 times the controller's ``on_validation_end`` (read the metrics, step the rule, broadcast,
apply the scale, fill ``callback_metrics``; no logger, no figure) at every validation of a fit,
and the history figure it draws at the end of fitting (matplotlib, PNG file).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
import warnings
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from typing_extensions import override

from lit_noise import Gaussian, InputNoise, NoiseController
from lit_noise.examples import Classifier, DigitsDataModule

warnings.filterwarnings("ignore")
logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)


class _StepTimer(Callback):
    def __init__(self) -> None:
        self.times: list[float] = []
        self._start = 0.0

    @override
    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, idx: int
    ) -> None:
        self._start = time.perf_counter()

    @override
    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, idx: int
    ) -> None:
        self.times.append(time.perf_counter() - self._start)


class _TimedController(NoiseController):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.decision_times: list[float] = []

    @override
    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        start = time.perf_counter()
        super().on_validation_end(trainer, pl_module)
        if not trainer.sanity_checking:
            self.decision_times.append(time.perf_counter() - start)


def _fit(with_controller: bool, epochs: int, root: str) -> tuple[_StepTimer, _TimedController | None]:
    pl.seed_everything(0, verbose=False)
    timer = _StepTimer()
    controller = _TimedController(verbose=False, log_figures=False) if with_controller else None
    callbacks: list[Callback] = [InputNoise(Gaussian(std=2.0), clamp=(0, 1), seed=0), timer]
    if controller is not None:
        callbacks.append(controller)
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=epochs,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=root,
        callbacks=callbacks,
    )
    trainer.fit(Classifier(), DigitsDataModule())
    return timer, controller


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer fits")
    args = parser.parse_args()
    pairs, epochs = (2, 4) if args.quick else (4, 8)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    root = tempfile.mkdtemp()
    ratios, without, with_, decisions = [], [], [], []
    for pair in range(pairs):
        order = (False, True) if pair % 2 == 0 else (True, False)
        medians = {}
        for flag in order:
            timer, controller = _fit(flag, epochs, root)
            medians[flag] = statistics.median(timer.times[5:])  # after warm-up
            if controller is not None:
                decisions += controller.decision_times
        ratios.append(medians[True] / medians[False])
        without.append(medians[False])
        with_.append(medians[True])
    print(
        f"Part 1: training step (digits MLP, batch 64): without {statistics.median(without) * 1e6:.0f} us,"
        f" with the controller {statistics.median(with_) * 1e6:.0f} us; ratio {statistics.median(ratios):.3f}"
        f" (median of {pairs} pairs; per pair {', '.join(f'{r:.3f}' for r in ratios)})"
    )
    print(
        f"Part 2: one decision at validation end: median {statistics.median(decisions) * 1e6:.0f} us"
        f" over {len(decisions)} validations"
    )
    drawer = NoiseController(verbose=False)
    drawer.control.state.history = [(e, 1.0, 0.5 + e / 40, 0.4 + e / 50, 0, 1.0) for e in range(20)]
    trainer = pl.Trainer(logger=False, default_root_dir=root, enable_progress_bar=False)
    start = time.perf_counter()
    drawer._figure(trainer)
    print(
        f"        history figure (20 epochs, PNG): {(time.perf_counter() - start) * 1e3:.0f} ms, once per fit"
    )


if __name__ == "__main__":
    main()
