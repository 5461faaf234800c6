"""Time MixupDataModule's mixing against the floor of one ``torch.lerp`` and against timm's Mixup.

Run ``python benchmarks/bench_mixup.py [--device cuda] [--reps 200]``. For each batch shape the
candidates are timed side by side in one process, repetitions interleaved, and the medians are
compared (ratios, never absolute targets):

* ``floor``: one ``torch.lerp(x, partner, w)`` over the batch with a per-sample weight -- the
  arithmetic any mixup must do, with the partner batch already gathered;
* ``ours batch`` / ``ours elem``: ``MixupDataModule.on_after_batch_transfer`` on a training batch
  (``mixup_alpha=1, cutmix_alpha=1, switch_prob=0.5``): drawing partners, λs, methods and boxes
  from the counter-based generator, mixing inputs and one-hot targets, building ``SoftLabels``;
* ``ours elem, mixing only``: ``lit_noise.functional.mix_batch`` with an ``elem`` draw made
  beforehand -- the arithmetic part of the above (gather the partners, build the per-sample
  weight map, one in-place lerp; the same for the targets);
* ``timm batch`` / ``timm elem``: timm's ``Mixup`` with the same settings (in place, NumPy RNG, a
  Python loop over samples in ``elem`` mode). timm is used when importable, otherwise the
  behavioural transcription in ``_timm_mixup_reference.py``; the output says which.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

from lit_noise import MixupDataModule
from lit_noise.examples import DigitsDataModule
from lit_noise.functional import mix_batch, one_hot_smooth, sample_mix_params

try:  # timm is a benchmark-only comparison, never a dependency
    from timm.data import Mixup as TimmMixup

    TIMM_SOURCE = "timm " + __import__("timm").__version__
except Exception:  # timm needs torchvision, which is not installed here
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _timm_mixup_reference import Mixup as TimmMixup

    TIMM_SOURCE = "benchmarks/_timm_mixup_reference.py (timm not importable)"

NUM_CLASSES = 10
SHAPES = [(64, 1, 8, 8), (256, 3, 32, 32)]


def _stub_trainer() -> SimpleNamespace:
    """The few trainer attributes the training-batch path reads."""
    epoch_loop = SimpleNamespace(batch_idx=-1)
    return SimpleNamespace(
        training=True,
        sanity_checking=False,
        current_epoch=0,
        global_step=0,
        global_rank=0,
        estimated_stepping_batches=10_000,
        lightning_module=None,
        fit_loop=SimpleNamespace(epoch_loop=epoch_loop),
    )


def _ours(mode: str, x: torch.Tensor, y: torch.Tensor) -> Callable[[], Any]:
    dm = MixupDataModule(
        DigitsDataModule(), num_classes=NUM_CLASSES, mixup_alpha=1.0, cutmix_alpha=1.0, mode=mode, seed=0
    )
    trainer = _stub_trainer()
    dm.trainer = trainer  # type: ignore[assignment]
    loop = trainer.fit_loop.epoch_loop

    def run() -> Any:
        loop.batch_idx += 1
        trainer.global_step += 1
        return dm.on_after_batch_transfer([x, y], 0)

    return run


def _mixing_only(x: torch.Tensor, y: torch.Tensor) -> Callable[[], Any]:
    generator = torch.Generator(device=x.device).manual_seed(1)
    params = sample_mix_params(
        x.shape[0], generator, mode="elem", mixup_alpha=1.0, cutmix_alpha=1.0, spatial_size=x.shape[-2:]
    )
    y_soft = one_hot_smooth(y, NUM_CLASSES)

    def run() -> Any:
        return mix_batch(x, y_soft, params.lam, params.index, params.use_cutmix, params.boxes)

    return run


def _keep_freed_memory() -> None:
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


def _timm(mode: str, x: torch.Tensor, y: torch.Tensor) -> Callable[[], Any]:
    mixer = TimmMixup(mixup_alpha=1.0, cutmix_alpha=1.0, mode=mode, num_classes=NUM_CLASSES)
    work = x.clone()  # timm mixes in place; the cost does not depend on the values

    def run() -> Any:
        return mixer(work, y)

    return run


def _floor(x: torch.Tensor) -> Callable[[], Any]:
    partner = x.flip(0).contiguous()
    weight = torch.rand(x.shape[0], *([1] * (x.ndim - 1)), device=x.device, dtype=x.dtype)

    def run() -> Any:
        return torch.lerp(x, partner, weight)

    return run


def _time(fn: Callable[[], Any], inner: int, sync: Callable[[], None], clock: Callable[[], int]) -> float:
    sync()
    start = clock()
    for _ in range(inner):
        fn()
    sync()
    return (clock() - start) / inner / 1e3  # microseconds per call


def _clock(device: torch.device) -> Callable[[], int]:
    """CPU time of this thread on a single-threaded CPU run (immune to other processes taking the
    cores, as happens on a shared machine); wall-clock time otherwise."""
    if device.type == "cpu" and torch.get_num_threads() == 1:
        return time.thread_time_ns
    return time.perf_counter_ns


def bench(shape: tuple[int, ...], device: torch.device, reps: int) -> dict[str, float]:
    generator = torch.Generator(device=device).manual_seed(0)
    x = torch.rand(shape, generator=generator, device=device)
    y = torch.randint(0, NUM_CLASSES, (shape[0],), generator=generator, device=device)
    candidates = {
        "floor (one lerp)": _floor(x),
        "ours elem, mixing only": _mixing_only(x, y),
        "ours batch": _ours("batch", x, y),
        "ours elem": _ours("elem", x, y),
        "timm batch": _timm("batch", x, y),
        "timm elem": _timm("elem", x, y),
    }
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    clock = _clock(device)
    inner = 20 if x.numel() < 100_000 else 3
    for fn in candidates.values():  # warm up
        _time(fn, inner, sync, clock)
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(reps):
        for name, fn in candidates.items():
            samples[name].append(_time(fn, inner, sync, clock))
    return {name: statistics.median(values) for name, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--reps", type=int, default=100)
    parser.add_argument(
        "--threads", type=int, default=1, help="intra-op threads (1: stable timings on a shared CPU)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    _keep_freed_memory()
    device = torch.device(args.device)
    timer = "thread CPU time" if _clock(device) is time.thread_time_ns else "wall-clock time"
    print(f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}, {timer}")
    print(f"timm: {TIMM_SOURCE}")
    for shape in SHAPES:
        medians = bench(shape, device, args.reps)
        floor = medians["floor (one lerp)"]
        print(f"\nbatch {shape[0]}x{tuple(shape[1:])}: median per call, ratio to the floor")
        for name, value in medians.items():
            print(f"  {name:22s} {value:10.1f} us  {value / floor:6.2f}x")
        for mode in ("batch", "elem"):
            ratio = medians[f"timm {mode}"] / medians[f"ours {mode}"]
            print(f"  timm {mode} / ours {mode}: {ratio:.2f}x")


if __name__ == "__main__":
    main()
