"""RobustnessMonitor overhead: added validation time for K corruption-severity pairs / K clean passes.

Run: ``python benchmarks/bench_robustness.py [--hidden 32] [--repeats 5] [--val-size 512]``.

For each configuration the same validation loop (``trainer.validate`` on the example CNN and the
shapes data) runs without the monitor and with it, interleaved, ``--repeats`` times; the loop is
timed from ``on_validation_start`` to ``on_validation_end`` and the medians are compared:

    ratio = (T_monitor - T_clean) / (K * T_clean)

1.0 means the monitor costs exactly K clean validation passes (the forwards are the floor);
below 1 it beats running the validation K times, because its forwards are batched (several
corrupted copies per forward) and it needs no data loading or logging per copy. Also prints the
time of each corruption on one batch relative to one clean forward of that batch.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from typing import Any

import lightning.pytorch as pl
import torch

from lit_noise.callbacks import RobustnessMonitor
from lit_noise.corruptions import DEFAULT_CORRUPTIONS, corrupt
from lit_noise.examples import Classifier, ShapesDataModule


class _Timer(pl.Callback):
    def __init__(self) -> None:
        self.seconds = 0.0
        self._start = 0.0

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.seconds = time.perf_counter() - self._start


def _validate(model: Classifier, dm: ShapesDataModule, monitor: RobustnessMonitor | None) -> float:
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


def _overhead(model: Classifier, dm: ShapesDataModule, repeats: int, **options: Any) -> tuple[float, int]:
    monitor = RobustnessMonitor(log_figures=False, **options)
    pairs = len(monitor._pairs)
    _validate(model, dm, None)  # warm-up
    _validate(model, dm, monitor)
    clean: list[float] = []
    with_monitor: list[float] = []
    for _ in range(repeats):
        clean.append(_validate(model, dm, None))
        with_monitor.append(_validate(model, dm, monitor))
    t_clean, t_monitor = statistics.median(clean), statistics.median(with_monitor)
    return (t_monitor - t_clean) / (pairs * t_clean), pairs


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
    parser.add_argument("--hidden", type=int, default=32, help="CNN width of the example classifier")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--val-size", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.manual_seed(0)
    model = Classifier("cnn", num_classes=6, input_shape=(3, 32, 32), hidden=args.hidden).eval()
    dm = ShapesDataModule(batch_size=args.batch_size, train_size=64, val_size=args.val_size)
    dm.setup()
    print(
        f"example CNN (hidden={args.hidden}), {args.val_size} validation images in batches of"
        f" {args.batch_size}, torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    print("ratio = added validation time / (K x clean validation time); target <= 1.15")
    configs: list[tuple[str, dict[str, Any]]] = [
        ("10 corruptions x 5 severities (default: auto = 1 copy/forward)", {}),
        ("10 corruptions x 5 severities, 8 copies/forward", {"copies_per_forward": 8}),
        ("10 corruptions x 5 severities, all copies in 1 forward", {"copies_per_forward": None}),
        ("4 noise corruptions x 5 severities", {"corruptions": list(DEFAULT_CORRUPTIONS[:4])}),
        ("contrast x severities 1, 3, 5", {"corruptions": ["contrast"], "severities": [1, 3, 5]}),
    ]
    for label, options in configs:
        ratio, pairs = _overhead(model, dm, args.repeats, **options)
        print(f"  {label:64s} K={pairs:3d}  ratio {ratio:.3f}")
    batch = dm.val_set.tensors[0][: args.batch_size]  # type: ignore[union-attr]
    costs = _corruption_costs(model, batch, max(args.repeats, 20))
    print("corruption time on one batch / one clean forward of it (severity 3):")
    for name, cost in costs.items():
        print(f"  {name:16s} {cost:.3f}")


if __name__ == "__main__":
    main()
