"""CalibrationError vs torchmetrics' MulticlassCalibrationError: update throughput and state size.

Run: ``python benchmarks/bench_calibration.py [--repeats 3] [--quick] [--threads 1]`` (about 30 s).

Both metrics see the same batches of logits (10 classes, batches of 10,000, cycled from a pool) at
10^4, 10^6 and 10^7 predictions (``--quick`` stops at 10^6). One sample is a whole stream: a fresh
metric, ``update`` on every batch, then ``compute``; the candidates are interleaved (``--repeats``
rounds) and timed in thread CPU time. The reference ("floor") is the peer, torchmetrics' metric on
the same batches: the ratio printed is torchmetrics' update time / ours, the median of the rounds'
paired ratios (above 1: ours is faster), and torchmetrics' state bytes / ours.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable

import torch
from torchmetrics import Metric
from torchmetrics.classification import MulticlassCalibrationError

from _harness import header, interleaved, paired_ratios, result, thread_clock
from lit_noise.metrics import CalibrationError

CLASSES = 10
BATCH = 10_000
POOL = 50
SIZES = {10**4: "10^4", 10**6: "10^6", 10**7: "10^7"}


def state_bytes(metric: Metric) -> int:
    total = 0
    for value in metric.metric_state.values():
        tensors = value if isinstance(value, list) else [value]
        total += sum(t.numel() * t.element_size() for t in tensors)
    return total


def _size(n: int) -> str:
    for unit, scale in (("MB", 10**6), ("kB", 10**3)):
        if n >= scale:
            return f"{n / scale:.0f} {unit}"
    return f"{n} B"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="stop at 10^6 predictions")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (1: steadier on shared machines)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    header("CalibrationError.update vs torchmetrics' MulticlassCalibrationError")
    torch.manual_seed(0)
    pool = []
    for _ in range(POOL):
        logits = torch.randn(BATCH, CLASSES) * 3
        target = torch.where(torch.rand(BATCH) < 0.7, logits.argmax(1), torch.randint(0, CLASSES, (BATCH,)))
        pool.append((logits, target))
    impls: dict[str, Callable[[], Metric]] = {
        "lit_noise": lambda: CalibrationError(CLASSES, n_bins=15),
        "lit_noise (validate_args=False)": lambda: CalibrationError(CLASSES, n_bins=15, validate_args=False),
        "torchmetrics": lambda: MulticlassCalibrationError(CLASSES, n_bins=15),
    }
    print(
        f"{CLASSES} classes, batches of {BATCH}; ratio = torchmetrics / ours (update time: median of"
        f" {args.repeats} paired rounds; state bytes); the floor is torchmetrics on the same batches"
    )
    print(
        f"{'predictions':>12} {'metric':<32} {'update s':>9} {'Mpred/s':>8} {'compute ms':>10}"
        f" {'state':>8} {'tm/ours time':>12} {'tm/ours state':>13}"
    )
    sizes = [n for n in SIZES if not args.quick or n <= 10**6]
    clock = thread_clock()
    speedups, states = [], []
    for n in sizes:
        metrics: dict[str, Metric] = {}

        def feed(
            name: str, make: Callable[[], Metric], n: int = n, metrics: dict[str, Metric] = metrics
        ) -> Callable[[], object]:
            def stream() -> None:
                metric = metrics[name] = make()
                for i in range(n // BATCH):
                    metric.update(*pool[i % POOL])

            return stream

        update = interleaved({name: feed(name, make) for name, make in impls.items()}, 1, args.repeats, clock)
        compute_ms = {}
        for name, metric in metrics.items():  # once: torchmetrics caches what compute returns
            start = clock()
            metric.compute()
            compute_ms[name] = (clock() - start) / 1e6
        nbytes = {name: state_bytes(metric) for name, metric in metrics.items()}
        for name in impls:
            ratio = statistics.median(paired_ratios(update, "torchmetrics", name))
            seconds = statistics.median(update[name]) / 1e6
            print(
                f"{n:>12,} {name:<32} {seconds:>9.4f} {n / seconds / 1e6:>8.2f} {compute_ms[name]:>10.1f}"
                f" {_size(nbytes[name]):>8} {ratio:>12.2f} {nbytes['torchmetrics'] / nbytes[name]:>13.0f}"
            )
        speedups.append(f"{statistics.median(paired_ratios(update, 'torchmetrics', 'lit_noise')):.1f}x")
        states.append(_size(nbytes["torchmetrics"]))
    shown = ", ".join(SIZES[n] for n in sizes)
    result(
        f"`CalibrationError.update` vs torchmetrics ({shown} predictions)",
        f"{', '.join(speedups)} faster; state {_size(nbytes['lit_noise'])} vs up to {states[-1]}",
        "",
        "info",
        "torchmetrics' MulticlassCalibrationError on the same batches",
        "The metrics (`lit_noise.metrics`, no Lightning needed)",
    )


if __name__ == "__main__":
    main()
