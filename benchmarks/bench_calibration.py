"""CalibrationError vs torchmetrics' MulticlassCalibrationError: update throughput and state size.

Both metrics see the same batches of logits (10 classes, batches of 10,000, cycled from a pool) at
10^4, 10^6 and 10^7 predictions. Repetitions are interleaved and the median is reported; the ratio
column is torchmetrics' time (or bytes) divided by ours. Run: ``python benchmarks/bench_calibration.py``
(``--quick`` stops at 10^6).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torchmetrics import Metric
from torchmetrics.classification import MulticlassCalibrationError

from lit_noise.metrics import CalibrationError

CLASSES = 10
BATCH = 10_000
POOL = 50


def state_bytes(metric: Metric) -> int:
    total = 0
    for value in metric.metric_state.values():
        tensors = value if isinstance(value, list) else [value]
        total += sum(t.numel() * t.element_size() for t in tensors)
    return total


def run(
    make: Callable[[], Metric], pool: list[tuple[torch.Tensor, torch.Tensor]], n: int
) -> tuple[float, float, int]:
    metric = make()
    start = time.perf_counter()
    for i in range(n // BATCH):
        logits, target = pool[i % len(pool)]
        metric.update(logits, target)
    update_s = time.perf_counter() - start
    start = time.perf_counter()
    metric.compute()
    compute_s = time.perf_counter() - start
    return update_s, compute_s, state_bytes(metric)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="stop at 10^6 predictions")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (1: steadier on shared machines)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
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
    sizes = [10**4, 10**6] if args.quick else [10**4, 10**6, 10**7]
    threads = torch.get_num_threads()
    print(f"torch {torch.__version__}, {threads} thread(s), CPU, {CLASSES} classes, batches of {BATCH}")
    header = (
        f"{'predictions':>12} {'metric':<32} {'update s':>9} {'Mpred/s':>8} {'compute s':>9}"
        f" {'state':>11} {'tm/ours time':>12} {'tm/ours state':>13}"
    )
    print(header)
    for n in sizes:
        results: dict[str, list[tuple[float, float, int]]] = {name: [] for name in impls}
        for _ in range(args.repeats):
            for name, make in impls.items():  # interleaved
                results[name].append(run(make, pool, n))
        med = {
            name: (
                statistics.median(r[0] for r in rs),
                statistics.median(r[1] for r in rs),
                rs[-1][2],
            )
            for name, rs in results.items()
        }
        tm = med["torchmetrics"]
        for name, (update_s, compute_s, nbytes) in med.items():
            ratio_t = tm[0] / update_s
            ratio_s = tm[2] / nbytes
            print(
                f"{n:>12,} {name:<32} {update_s:>9.4f} {n / update_s / 1e6:>8.2f} {compute_s:>9.4f}"
                f" {nbytes:>10,}B {ratio_t:>12.2f} {ratio_s:>13.0f}"
            )


if __name__ == "__main__":
    main()
