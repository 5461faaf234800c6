"""WeightNoise overhead per training step, against the bare-tensor floor and a naive per-parameter loop.

Run: ``python benchmarks/bench_weight_noise.py`` (``--quick`` for fewer rounds).

Three models of about one million weights in 20, 200 and 2000 parameter tensors. Inside a live
``Trainer.fit`` (so the callback runs with the real trainer state), a driver callback times, at
every batch and in rotating order:

* ``WeightNoise`` itself: the hooks of one step (``on_train_batch_start`` perturbs,
  ``on_after_backward`` restores, ``on_before_optimizer_step`` and ``on_train_batch_end`` find
  nothing to do), with ``restore="copy"``, ``restore="regenerate"`` and ``relative=True``;
* the floor: the same work with bare tensor ops and nothing else: reseed a generator, one
  ``normal_`` draw into a preallocated flat buffer over all parameters, ``_foreach_copy_`` to a
  preallocated clean copy, ``_foreach_add_`` of the buffer's views, ``_foreach_copy_`` back
  (``floor copy``); for ``regenerate``: draw, ``_foreach_add_``, reseed, draw again,
  ``_foreach_sub_`` (``floor regenerate``);
* a naive callback: a Python loop over the parameters (clone, ``randn``, ``add_``; ``copy_`` back).

It prints medians (microseconds) and the median of the per-round ratios. Memory is measured in a
child process per mode (``--memory copy|regenerate``): the peak resident set size while the
callback sets up and runs three steps, over the resident size before (Linux ``VmHWM`` after a
reset through ``/proc/self/clear_refs``, with glibc forced to ``mmap`` large blocks so that pages
are really touched and returned), next to the bytes of the buffers the callback holds.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from lit_noise import Gaussian, WeightNoise

warnings.filterwarnings("ignore")  # Lightning's advice about workers and logging on toy data
logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)

STD = 0.01
MODELS = {20: 316, 200: 100, 2000: 31}  # tensors -> width of the square Linear layers (~1M weights)


class Layers(pl.LightningModule):
    """``tensors / 2`` square ``Linear`` layers; training costs next to nothing (one weight in the loss)."""

    def __init__(self, tensors: int, width: int, bias: bool = True) -> None:
        super().__init__()
        per_layer = 2 if bias else 1
        self.layers = nn.ModuleList(nn.Linear(width, width, bias=bias) for _ in range(tensors // per_layer))

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self.layers[0].weight.sum() * 0.0

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.0)


def loader(batches: int) -> DataLoader:
    return DataLoader(TensorDataset(torch.zeros(batches, 1)), batch_size=1)


def quiet_trainer(batches: int, callbacks: list[pl.Callback]) -> pl.Trainer:
    return pl.Trainer(
        accelerator="cpu",
        max_epochs=1,
        limit_train_batches=batches,
        limit_val_batches=0,
        callbacks=callbacks,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=10**9,
    )


def drive_fit_start(callback: pl.Callback, trainer: pl.Trainer, module: pl.LightningModule) -> None:
    callback.setup(trainer, module, "fit")
    callback.on_fit_start(trainer, module)
    callback.on_train_start(trainer, module)


class Timer(pl.Callback):
    """Times each variant once per batch, rotating their order; records microseconds."""

    def __init__(self, variants: dict[str, Callable[[pl.Trainer, pl.LightningModule, int], None]]) -> None:
        self.variants = variants
        self.times: dict[str, list[float]] = {name: [] for name in variants}
        self.warmup = 3

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, i: int
    ) -> None:
        names = list(self.variants)
        shift = i % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            self.variants[name](trainer, pl_module, i)
            elapsed = (time.perf_counter() - start) * 1e6
            if i >= self.warmup:
                self.times[name].append(elapsed)


def weight_noise_step(callback: WeightNoise) -> Callable[[pl.Trainer, pl.LightningModule, int], None]:
    def step(trainer: pl.Trainer, module: pl.LightningModule, i: int) -> None:
        callback.on_train_batch_start(trainer, module, None, i)
        callback.on_after_backward(trainer, module)
        callback.on_before_optimizer_step(trainer, module, trainer.optimizers[0])
        callback.on_train_batch_end(trainer, module, None, None, i)

    return step


def flat_views(params: list[nn.Parameter]) -> tuple[Tensor, list[Tensor]]:
    """One flat float buffer and its views shaped like ``params`` (the floors' preallocated scratch)."""
    sizes = [p.numel() for p in params]
    buffer = torch.empty(sum(sizes))
    return buffer, [v.view(p.shape) for v, p in zip(buffer.split(sizes), params, strict=True)]


def floor_step(params: list[nn.Parameter]) -> Callable[[pl.Trainer, pl.LightningModule, int], None]:
    buffer, noise = flat_views(params)
    _, clean = flat_views(params)
    generator = torch.Generator()

    @torch.no_grad()
    def step(trainer: pl.Trainer, module: pl.LightningModule, i: int) -> None:
        generator.manual_seed(i)
        torch._foreach_copy_(clean, params)
        buffer.normal_(0.0, STD, generator=generator)
        torch._foreach_add_(params, noise)
        torch._foreach_copy_(params, clean)

    return step


def floor_regenerate_step(
    params: list[nn.Parameter],
) -> Callable[[pl.Trainer, pl.LightningModule, int], None]:
    buffer, noise = flat_views(params)
    generator = torch.Generator()

    @torch.no_grad()
    def step(trainer: pl.Trainer, module: pl.LightningModule, i: int) -> None:
        generator.manual_seed(i)
        buffer.normal_(0.0, STD, generator=generator)
        torch._foreach_add_(params, noise)
        generator.manual_seed(i)
        buffer.normal_(0.0, STD, generator=generator)
        torch._foreach_sub_(params, noise)

    return step


def naive_step(params: list[nn.Parameter]) -> Callable[[pl.Trainer, pl.LightningModule, int], None]:
    generator = torch.Generator()

    @torch.no_grad()
    def step(trainer: pl.Trainer, module: pl.LightningModule, i: int) -> None:
        generator.manual_seed(i)
        saved = []
        for p in params:
            saved.append(p.detach().clone())
            p.add_(torch.randn(p.shape, generator=generator) * STD)
        for p, c in zip(params, saved, strict=True):
            p.copy_(c)

    return step


class Setup(pl.Callback):
    """Runs the fit-start hooks of the callbacks under test (they are not in the trainer's list)."""

    def __init__(self, callbacks: list[pl.Callback]) -> None:
        self.callbacks = callbacks

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for callback in self.callbacks:
            drive_fit_start(callback, trainer, pl_module)


def report(times: dict[str, list[float]], name: str, floor: str) -> None:
    ratios = [a / b for a, b in zip(times[name], times[floor], strict=True)]
    print(
        f"    {name:<26s} {statistics.median(times[name]):8.0f} us   {floor:<18s}"
        f" {statistics.median(times[floor]):8.0f} us   ratio {statistics.median(ratios):5.2f}x"
    )


def time_weight_noise(rounds: int) -> None:
    print(f"WeightNoise: added time per step (1 thread, {rounds} rounds; ~1M weights per model)")
    for tensors, width in MODELS.items():
        module = Layers(tensors, width)
        params = list(module.parameters())
        copy = WeightNoise(Gaussian(STD), restore="copy", seed=0, name="copy")
        regen = WeightNoise(Gaussian(STD), restore="regenerate", seed=0, name="regen")
        rel = WeightNoise(Gaussian(STD), relative=True, seed=0, name="rel")
        variants = {
            "floor copy": floor_step(params),
            "floor regenerate": floor_regenerate_step(params),
            "WeightNoise copy": weight_noise_step(copy),
            "WeightNoise regenerate": weight_noise_step(regen),
            "WeightNoise relative copy": weight_noise_step(rel),
            "naive per-parameter loop": naive_step(params),
        }
        timer = Timer(variants)
        batches = rounds + timer.warmup
        quiet_trainer(batches, [Setup([copy, regen, rel]), timer]).fit(module, loader(batches))
        n = sum(p.numel() for p in params)
        print(f"  {tensors} tensors, {n:,} weights: median us, and median of per-round ratios")
        report(timer.times, "WeightNoise copy", "floor copy")
        report(timer.times, "WeightNoise regenerate", "floor regenerate")
        report(timer.times, "WeightNoise relative copy", "floor copy")
        report(timer.times, "naive per-parameter loop", "WeightNoise copy")


# ------------------------------------------------------------------------------------------ memory


def _status(field: str) -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(field)


class MemoryProbe(pl.Callback):
    def __init__(self, callback: WeightNoise) -> None:
        self.callback = callback
        self.result: dict[str, int] = {}

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")  # reset the peak (VmHWM) to the current resident size
        before = _status("VmRSS")
        drive_fit_start(self.callback, trainer, pl_module)
        step = weight_noise_step(self.callback)
        for i in range(3):
            step(trainer, pl_module, i)
        self.result = {"peak_extra": _status("VmHWM") - before, "held": self.callback.buffer_bytes}


def measure_memory(mode: str) -> None:
    """Child process: one model of 20 tensors of 1M weights (80 MB), print peak extra bytes."""
    module = Layers(20, 1000, bias=False)
    callback = WeightNoise(Gaussian(STD), restore=mode, seed=0)  # type: ignore[arg-type]
    probe = MemoryProbe(callback)
    quiet_trainer(1, [probe]).fit(module, loader(1))
    largest = max(p.numel() * p.element_size() for p in module.parameters())
    total = sum(p.numel() * p.element_size() for p in module.parameters())
    print(probe.result["peak_extra"], probe.result["held"], largest, total)


def memory_report() -> None:
    print("\nPeak extra memory (20 tensors x 1M float32 weights = 80 MB of parameters)")
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", PYTHONWARNINGS="ignore")
    for mode in ("copy", "regenerate"):
        out = subprocess.run(
            [sys.executable, __file__, "--memory", mode], capture_output=True, text=True, check=True, env=env
        ).stdout.split()
        peak, held, largest, total = (int(v) for v in out[-4:])
        print(
            f"  restore={mode!r:<13s} peak RSS over baseline {peak / 2**20:6.1f} MiB"
            f" (held buffers {held / 2**20:5.1f} MiB; parameters {total / 2**20:.0f} MiB,"
            f" largest tensor {largest / 2**20:.1f} MiB)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    parser.add_argument("--memory", choices=["copy", "regenerate"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.memory:
        measure_memory(args.memory)
        return
    time_weight_noise(15 if args.quick else 60)
    memory_report()


if __name__ == "__main__":
    main()
