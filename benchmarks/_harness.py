"""What every benchmark shares: the header, timing side by side, quiet trainers and result rows.

Every ``bench_*.py`` prints :func:`header` first (torch version, threads, device, timer) and one
:func:`result` row per line of the README's performance summary. A result row is printed as a
line starting with ``RESULT`` followed by JSON; ``benchmarks/summary.py`` collects those rows from
the benchmarks' output and regenerates the README's summary table from them, so the table is
never typed by hand.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import logging
import platform
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any, Literal

import torch
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = [
    "RESULT_PREFIX",
    "AtenOps",
    "Status",
    "header",
    "interleaved",
    "keep_freed_memory",
    "paired_ratios",
    "quiet_trainer",
    "result",
    "thread_clock",
    "time_us",
]

RESULT_PREFIX = "RESULT "
Status = Literal["met", "missed", "info"]


def thread_clock(device: torch.device | str = "cpu") -> Callable[[], int]:
    """A nanosecond clock: this thread's CPU time on a single-threaded CPU run, else wall-clock time.

    Thread CPU time is immune to other processes taking the cores of a shared machine.
    """
    if torch.device(device).type == "cpu" and torch.get_num_threads() == 1:
        return time.thread_time_ns
    return time.perf_counter_ns


def header(title: str, device: torch.device | str = "cpu") -> None:
    """Print the benchmark's title and what its numbers depend on (torch, threads, device, timer)."""
    clock = thread_clock(device)
    timer = "thread CPU time" if clock is time.thread_time_ns else "wall-clock time"
    print(f"== {title}")
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {torch.device(device)},"
        f" timer {timer}, python {platform.python_version()}, {platform.machine()}"
    )


def time_us(
    fn: Callable[[], object],
    number: int,
    clock: Callable[[], int] = time.perf_counter_ns,
    sync: Callable[[], None] | None = None,
) -> float:
    """Mean microseconds per call of ``number`` calls of ``fn``."""
    if sync is not None:
        sync()
    start = clock()
    for _ in range(number):
        fn()
    if sync is not None:
        sync()
    return (clock() - start) / number / 1e3


def interleaved(
    cases: dict[str, Callable[[], object]],
    number: int,
    repeats: int,
    clock: Callable[[], int] = time.perf_counter_ns,
    sync: Callable[[], None] | None = None,
) -> dict[str, list[float]]:
    """``repeats`` rounds; in each, the mean of ``number`` calls of every case, one after the other.

    Returns every round's time per case (µs per call), so callers take medians or per-round
    (paired) ratios, in which load that drifts between rounds cancels.
    """
    for fn in cases.values():  # warm up
        time_us(fn, number // 4 + 1, clock, sync)
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, fn in cases.items():
            samples[name].append(time_us(fn, number, clock, sync))
    return samples


def paired_ratios(samples: dict[str, list[float]], numerator: str, denominator: str) -> list[float]:
    """The per-round ratios ``numerator / denominator`` of :func:`interleaved`'s samples."""
    return [a / b for a, b in zip(samples[numerator], samples[denominator], strict=True)]


def keep_freed_memory() -> None:
    """Let glibc reuse freed blocks instead of returning them to the OS.

    Otherwise each multi-megabyte output is a fresh mapping whose page faults land on whichever
    candidate allocates next, and the timings depend on the order of the candidates.
    """
    name = ctypes.util.find_library("c")
    if name is None:
        return
    try:
        libc = ctypes.CDLL(name)
        libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD
        libc.mallopt(-3, 1 << 25)  # M_MMAP_THRESHOLD (32 MiB, glibc's maximum)
    except (OSError, AttributeError):
        pass


def quiet_trainer(callbacks: Sequence[Any] = (), **kwargs: Any) -> Any:
    """A CPU ``Trainer`` with no logger, checkpoints, progress bar, summary or validation, and no
    start-up banner; ``kwargs`` override any option."""
    import lightning.pytorch as pl

    for name in ("lightning.pytorch", "lightning.fabric", "lightning.pytorch.utilities.rank_zero"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="lightning")
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


def result(
    row: str,
    measured: str,
    target: str = "",
    status: Status = "info",
    floor: str = "",
    section: str = "",
) -> None:
    """Print one row of the README's performance summary, human-readable and as a ``RESULT`` line.

    Args:
        row: what is measured, as the summary's first column (``"mixup batch / timm batch, 64x(1,8,8)"``).
        measured: the measured figure(s), formatted (``"0.83x"``).
        target: the target, formatted (``"< 1x"``), or empty.
        status: ``"met"``, ``"missed"`` (then the benchmark also prints the profile that explains
            it) or ``"info"`` (no target).
        floor: how the floor (denominator) is computed, in a few words.
        section: the documentation section with the details: a heading's text in ``docs/``
            (``"Page title > Heading"`` where the text repeats), or empty. The summary links to it.
    """
    shown = f"{row}: {measured}" + (f" (target {target}: {status})" if target else "")
    print(shown + (f"; floor: {floor}" if floor else ""))
    record = {
        "row": row,
        "measured": measured,
        "target": target,
        "status": status,
        "floor": floor,
        "section": section,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    print(RESULT_PREFIX + json.dumps(record), flush=True)


class AtenOps(TorchDispatchMode):
    """Records the aten ops dispatched while active (below autograd: one per kernel or view).

    ``ops`` holds their names in order; ``len(ops)`` is the count the benchmarks report.
    """

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        self.ops.append(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))
