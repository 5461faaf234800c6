"""RobustnessMonitor overhead: a monitored validation epoch against a clean one, and per corruption pair.

Run: ``python benchmarks/bench_robustness.py [--hidden 8] [--repeats 5] [--val-size 500] [--threads 1]``.

For each configuration the same validation loop (``trainer.validate`` on the example CNN and the
shapes data) runs without the monitor and with it, interleaved, ``--repeats`` times; the loop is
timed from ``on_validation_start`` to ``on_validation_end`` (wall clock, and the process's CPU
time, which other processes on a shared machine disturb less) and the medians are compared:

    epoch = T_monitor / T_clean                  (the defaults aim at < 3)
    ratio = (T_monitor - T_clean) / (K * T_clean)

``ratio`` 1.0 means the monitor costs exactly K clean validation passes for its K
corruption-severity pairs (the forwards are the floor); below 1 it beats running the validation K
times (its forwards may be batched, and it needs no data loading or logging per copy); above 1
on a small fraction of the samples, the corruptions themselves or Lightning's per-batch overhead
show. Also prints the time of each corruption on one batch relative to one clean forward of it.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
import warnings
from typing import Any

import lightning.pytorch as pl
import torch

from lit_noise.callbacks import RobustnessMonitor
from lit_noise.callbacks.robustness_monitor import SUITES
from lit_noise.corruptions import DEFAULT_CORRUPTIONS, corrupt
from lit_noise.examples import Classifier, ShapesDataModule


class _Timer(pl.Callback):
    def __init__(self) -> None:
        self.seconds = (0.0, 0.0)
        self._start = (0.0, 0.0)

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = (time.perf_counter(), time.process_time())

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.seconds = (time.perf_counter() - self._start[0], time.process_time() - self._start[1])


def _validate(
    model: Classifier, dm: ShapesDataModule, monitor: RobustnessMonitor | None
) -> tuple[float, float]:
    timer = _Timer()
    callbacks: list[Any] = [timer] if monitor is None else [timer, monitor]
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=callbacks,
    )
    trainer.validate(model, dm, verbose=False)
    return timer.seconds


def _overhead(
    model: Classifier, dm: ShapesDataModule, repeats: int, **options: Any
) -> tuple[list[float], list[float], int]:
    """``(epoch ratios, per-pair ratios, K)``, each ratio measured in wall time and CPU time."""
    monitor = RobustnessMonitor(log_figures=False, **options)
    pairs = len(monitor._pairs)
    _validate(model, dm, None)  # warm-up
    _validate(model, dm, monitor)
    clean: list[tuple[float, float]] = []
    with_monitor: list[tuple[float, float]] = []
    for _ in range(repeats):
        clean.append(_validate(model, dm, None))
        with_monitor.append(_validate(model, dm, monitor))
    epoch, per_pair = [], []
    for clock in (0, 1):
        t_clean = statistics.median(t[clock] for t in clean)
        t_monitor = statistics.median(t[clock] for t in with_monitor)
        epoch.append(t_monitor / t_clean)
        per_pair.append((t_monitor - t_clean) / (pairs * t_clean))
    return epoch, per_pair, pairs


def _corruption_costs(model: Classifier, batch: torch.Tensor, repeats: int) -> dict[str, float]:
    def median_time(fn: Any) -> float:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    with torch.no_grad():
        forward = median_time(lambda: model(batch))
    generator = torch.Generator().manual_seed(0)
    return {
        name: median_time(lambda name=name: corrupt(batch, name, 3, generator=generator)) / forward
        for name in DEFAULT_CORRUPTIONS
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=8, help="CNN width of the example classifier")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--val-size", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--quick", action="store_true", help="only the default and the full suite")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = Classifier("cnn", num_classes=6, input_shape=(3, 32, 32), hidden=args.hidden).eval()
    dm = ShapesDataModule(batch_size=args.batch_size, train_size=64, val_size=args.val_size)
    dm.setup()
    print(
        f"example CNN (hidden={args.hidden}), {args.val_size} validation images in batches of"
        f" {args.batch_size}, torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    print("epoch = monitored / clean validation time (defaults: target < 3);")
    print("ratio = added validation time / (K x clean validation time); wall clock / CPU time")
    quick = SUITES["quick"]
    configs: list[tuple[str, dict[str, Any]]] = [
        (
            f"default: suite='quick' ({len(quick.corruptions)} corruptions x {len(quick.severities)}"
            f" severities, {quick.max_samples} samples)",
            {},
        ),
        ("suite='full' (10 corruptions x 5 severities, every sample)", {"suite": "full"}),
    ]
    if not args.quick:
        configs += [
            ("suite='full', 8 copies/forward", {"suite": "full", "copies_per_forward": 8}),
            ("suite='full', all copies in 1 forward", {"suite": "full", "copies_per_forward": None}),
            (
                "4 noise corruptions x 5 severities, every sample",
                {"suite": "full", "corruptions": list(DEFAULT_CORRUPTIONS[:4])},
            ),
            (
                "contrast x severities 1, 3, 5, every sample",
                {"corruptions": ["contrast"], "max_samples": "all"},
            ),
        ]
    for label, options in configs:
        epoch, ratio, pairs = _overhead(model, dm, args.repeats, **options)
        print(
            f"  {label:68s} K={pairs:3d}  epoch {epoch[0]:6.2f} / {epoch[1]:6.2f}"
            f"  ratio {ratio[0]:.3f} / {ratio[1]:.3f}"
        )
    batch = dm.val_set.tensors[0][: args.batch_size]  # type: ignore[union-attr]
    costs = _corruption_costs(model, batch, max(args.repeats, 20))
    print("corruption time on one batch / one clean forward of it (severity 3):")
    for name, cost in costs.items():
        print(f"  {name:16s} {cost:.3f}")


if __name__ == "__main__":
    main()
