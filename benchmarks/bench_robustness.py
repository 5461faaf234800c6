"""RobustnessMonitor overhead: a monitored validation epoch against a clean one, and per corruption pair.

Run: ``python benchmarks/bench_robustness.py [--quick] [--all] [--repeats 3] [--val-size 500]
[--pair-val-size 192] [--threads 1]`` (about a minute of CPU time; ``--all`` adds the
``copies_per_forward`` and subset variants of the README table, ``--quick`` one width each).

For each configuration the same validation loop (``trainer.validate`` on the example CNN and the
shapes data, batches of 64; 500 images for the default suite, 192 for the full one, whose
monitored loop costs 50 clean ones) runs without the monitor and with it, interleaved, ``--repeats`` times;
the loop is timed from ``on_validation_start`` to ``on_validation_end`` (thread CPU time with one
torch thread) and the best times are compared: on a loaded machine other jobs only ever add time
(through the shared caches, even to thread CPU time), and with a few seconds per monitored loop the
medians of 3 swing by 20 %. The floor is the clean validation loop:

    epoch = T_monitor / T_clean                  (the default suite: target < 3)
    ratio = (T_monitor - T_clean) / (K * T_clean)  (the full suite: target at most 1.15)

``ratio`` 1.0 means the monitor costs exactly K clean validation passes for its K
corruption-severity pairs (the forwards are the floor); below 1 it beats running the validation K
times (its forwards may be batched, and it needs no data loading or logging per copy); above 1
on a small fraction of the samples, the corruptions themselves or Lightning's per-batch overhead
show. Also prints the time of each corruption on one batch relative to one clean forward of it.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable
from typing import Any

import lightning.pytorch as pl
import torch

from _harness import header, keep_freed_memory, quiet_trainer, result, thread_clock
from lit_noise.callbacks import RobustnessMonitor
from lit_noise.callbacks.robustness_monitor import SUITES
from lit_noise.corruptions import DEFAULT_CORRUPTIONS, corrupt
from lit_noise.examples import Classifier, ShapesDataModule

SECTION = "Robustness: the corruption suite and `RobustnessMonitor` > Performance"


class _Timer(pl.Callback):
    def __init__(self, clock: Callable[[], int]) -> None:
        self.clock = clock
        self.seconds = 0.0
        self._start = 0

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = self.clock()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.seconds = (self.clock() - self._start) / 1e9


def _validate(model: Classifier, dm: ShapesDataModule, monitor: RobustnessMonitor | None) -> float:
    timer = _Timer(thread_clock())
    callbacks: list[Any] = [timer] if monitor is None else [timer, monitor]
    quiet_trainer(callbacks, limit_val_batches=1.0).validate(model, dm, verbose=False)
    return timer.seconds


def _overhead(
    model: Classifier, dm: ShapesDataModule, repeats: int, warm_up: bool = True, **options: Any
) -> tuple[float, float, int]:
    """``(epoch ratio, per-pair ratio, K)`` from the best times of interleaved validations."""
    monitor = RobustnessMonitor(log_figures=False, **options)
    pairs = len(monitor._pairs)
    _validate(model, dm, None)  # warm-up
    if warm_up:
        _validate(model, dm, monitor)
    clean: list[float] = []
    with_monitor: list[float] = []
    for _ in range(repeats):
        clean.append(_validate(model, dm, None))
        with_monitor.append(_validate(model, dm, monitor))
    t_clean, t_monitor = min(clean), min(with_monitor)  # interference only ever adds time
    return t_monitor / t_clean, (t_monitor - t_clean) / (pairs * t_clean), pairs


def _corruption_costs(model: Classifier, batch: torch.Tensor, repeats: int) -> dict[str, float]:
    clock = thread_clock()

    def median_time(fn: Any) -> float:
        times = []
        for _ in range(repeats):
            start = clock()
            fn()
            times.append(clock() - start)
        return statistics.median(times)

    with torch.no_grad():
        forward = median_time(lambda: model(batch))
    generator = torch.Generator().manual_seed(0)
    return {
        name: median_time(lambda name=name: corrupt(batch, name, 3, generator=generator)) / forward
        for name in DEFAULT_CORRUPTIONS
    }


def _model(hidden: int) -> Classifier:
    torch.manual_seed(0)
    return Classifier("cnn", num_classes=6, input_shape=(3, 32, 32), hidden=hidden).eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--epoch-hidden", type=int, nargs="+", default=[8, 64], help="CNN widths, default suite"
    )
    parser.add_argument("--pair-hidden", type=int, nargs="+", default=[32, 64], help="CNN widths, full suite")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--val-size", type=int, default=500, help="validation images, default suite")
    parser.add_argument("--pair-val-size", type=int, default=192, help="validation images, full suite")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--quick", action="store_true", help="one width each (8 and 32)")
    parser.add_argument("--all", action="store_true", help="also the copies_per_forward and subset variants")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    keep_freed_memory()  # the monitor's copies of every batch would otherwise fault in fresh pages
    if args.quick:
        args.epoch_hidden, args.pair_hidden = args.epoch_hidden[:1], args.pair_hidden[:1]
    header("RobustnessMonitor: monitored / clean validation epoch, and added time per corruption pair")
    quiet_trainer()  # quiets Lightning's start-up lines
    dm = ShapesDataModule(batch_size=args.batch_size, train_size=64, val_size=args.val_size)
    dm.setup()
    quick = SUITES["quick"]
    print(
        f"example CNN, {args.val_size} validation images in batches of {args.batch_size}; floor: the same"
        f" validation loop without the monitor (best of {args.repeats} interleaved runs each)"
    )
    print("epoch = monitored / clean validation time; ratio = added time / (K x clean validation time)")
    epochs = []
    for hidden in args.epoch_hidden:
        epoch, _, pairs = _overhead(_model(hidden), dm, args.repeats)
        epochs.append(f"{epoch:.2f} (hidden {hidden})")
        label = f"default suite='quick' ({len(quick.corruptions)} x {len(quick.severities)}"
        label += f", {quick.max_samples} samples)"
        print(f"  hidden {hidden:3d}  {label:56s} K={pairs:3d}  epoch {epoch:6.2f}")
    worst = max(float(e.split()[0]) for e in epochs)
    result(
        '`RobustnessMonitor` default (`suite="quick"`): monitored / clean validation epoch, shapes CNN',
        ", ".join(epochs),
        "< 3",
        "met" if worst < 3 else "missed",
        "the same validation loop without the monitor",
        SECTION,
    )
    configs: list[tuple[str, dict[str, Any]]] = [
        ("suite='full' (10 corruptions x 5 severities)", {"suite": "full"})
    ]
    if args.all:
        configs += [
            ("suite='full', 8 copies/forward", {"suite": "full", "copies_per_forward": 8}),
            ("suite='full', all copies in 1 forward", {"suite": "full", "copies_per_forward": None}),
            (
                "4 noise corruptions x 5 severities",
                {"suite": "full", "corruptions": list(DEFAULT_CORRUPTIONS[:4])},
            ),
            ("contrast x severities 1, 3, 5", {"corruptions": ["contrast"], "max_samples": "all"}),
        ]
    full = []
    dm_pairs = ShapesDataModule(batch_size=args.batch_size, train_size=64, val_size=args.pair_val_size)
    dm_pairs.setup()
    print(f"full suite: {args.pair_val_size} validation images (the default suite warmed everything up)")
    for hidden in args.pair_hidden:
        model = _model(hidden)
        for label, options in configs:
            epoch, ratio, pairs = _overhead(model, dm_pairs, args.repeats, warm_up=False, **options)
            if label.startswith("suite='full' ("):
                full.append((hidden, ratio))
            print(f"  hidden {hidden:3d}  {label:56s} K={pairs:3d}  epoch {epoch:6.2f}  ratio {ratio:.3f}")
    result(
        "`RobustnessMonitor` added time / K clean validations (K = 50)",
        ", ".join(f"{ratio:.2f} (hidden {hidden})" for hidden, ratio in full),
        "1.15",
        "met" if max(r for _, r in full) <= 1.15 else "missed",
        "K clean validation loops (the forwards)",
        SECTION,
    )
    model = _model(args.pair_hidden[0])
    batch = dm.val_set.tensors[0][: args.batch_size]  # type: ignore[union-attr]
    costs = _corruption_costs(model, batch, max(args.repeats, 20))
    print(
        f"corruption time on one batch / one clean forward of it (severity 3, hidden {args.pair_hidden[0]}):"
    )
    for name, cost in costs.items():
        print(f"  {name:16s} {cost:.3f}")


if __name__ == "__main__":
    main()
