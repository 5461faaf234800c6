"""WeightNoise cost per training step against bare-tensor floors; aten ops per step; peak memory.

Run: ``python benchmarks/bench_weight_noise.py [--rounds 9] [--number 3] [--threads 1]`` (about a minute).

Three models of about one million float32 weights in 20, 200 and 2000 parameter tensors (square
``Linear`` layers with biases). For each, a trainer fits one batch (so the callbacks' hooks see a
real trainer and loop state), the callbacks get their fit-start hooks, and then every candidate's
step is timed side by side (``_harness.interleaved``: rounds of every case one after the other,
this thread's CPU time, medians of the per-round ratios). A WeightNoise step is its hooks of one
training batch: ``on_train_batch_start`` perturbs, ``on_after_backward`` restores,
``on_before_optimizer_step`` and ``on_train_batch_end`` find nothing to do.

The floors are the same tensor work written with bare tensor ops and nothing else (no schedule,
no logging, no checks), on preallocated buffers:

* ``floor copy``: reseed a generator, ``_foreach_copy_`` of the weights into a flat clean copy, one
  ``normal_`` draw over all the weights into a flat scratch buffer, ``_foreach_add_`` of its views,
  ``_foreach_copy_`` back.
* ``floor regenerate``: reseed, draw, ``_foreach_add_``, reseed, draw again, ``_foreach_sub_``.
* ``floor relative`` (``WeightNoise(relative=True)``'s own floor): ``floor copy`` plus one
  per-tensor population std and the scaling of each tensor's noise by it. The clean copy is laid out
  with every tensor starting at a multiple of 32 elements (zero padding); the std comes from one
  pass over that copy viewed as rows of 32: each row's ``sum`` and ``linalg.vector_norm`` (two fused
  reductions), added up per tensor by one float64 ``segment_reduce`` over the rows, then
  ``sqrt(E[x^2] - E[x]^2)``; the noise is scaled by one ``_foreach_mul_`` with 0-d views of the
  stds. A constant number of ops whatever the number of tensors. (It skips what WeightNoise also
  does for accuracy: shifting each tensor by its first element before squaring, one more pass.)
  ``floor relative regenerate`` is ``floor regenerate`` with that std and scaling (the std once,
  the scaling after each of the two draws).
* a naive callback: a Python loop over the parameters (clone, ``randn``, ``add_``; ``copy_`` back),
  as information.

It then counts the aten ops one step dispatches (a ``TorchDispatchMode`` counter around the hooks;
``_foreach_*`` ops count one each) in each mode at 20, 200 and 2000 tensors, with the default
chunking and with one chunk (``chunk_size=2**20``: one draw per step), and measures the peak extra
memory in a child process (``--memory``), each mode in turn: the peak resident set size while the
callback sets up and runs three steps, over the resident size before (Linux ``VmHWM`` after a reset
through ``/proc/self/clear_refs``, with glibc forced to ``mmap`` large blocks so that pages are
really touched and returned), next to the bytes of the buffers the callback holds.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from _harness import AtenOps, header, interleaved, paired_ratios, quiet_trainer, result, thread_clock
from lit_noise import Gaussian, WeightNoise

STD = 0.01
MODELS = {20: 316, 200: 100, 2000: 31}  # tensors -> width of the square Linear layers (~1M weights)
BLOCK = 32  # rows of the relative floor's blocked clean copy
SECTION = "Weight and gradient noise > Performance"
TARGET = 1.3
Step = Callable[[], None]


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


def fitted(module: pl.LightningModule) -> pl.Trainer:
    """A trainer that has fitted one batch of ``module`` (hooks called on it see real loop state)."""
    trainer = quiet_trainer(max_epochs=1, limit_train_batches=1, log_every_n_steps=10**9)
    trainer.fit(module, loader(1))
    return trainer


@functools.cache
def model(tensors: int) -> tuple[Layers, pl.Trainer]:
    """The model of ``tensors`` parameter tensors and a trainer that has fitted it (built once)."""
    module = Layers(tensors, MODELS[tensors])
    return module, fitted(module)


def start(callback: pl.Callback, trainer: pl.Trainer, module: pl.LightningModule) -> None:
    """The fit-start hooks of a callback that is not in the trainer's list."""
    callback.setup(trainer, module, "fit")
    callback.on_fit_start(trainer, module)
    callback.on_train_start(trainer, module)


def weight_noise_step(callback: WeightNoise, trainer: pl.Trainer, module: pl.LightningModule) -> Step:
    optimizer = trainer.optimizers[0]

    def step() -> None:
        callback.on_train_batch_start(trainer, module, None, 0)
        callback.on_after_backward(trainer, module)
        callback.on_before_optimizer_step(trainer, module, optimizer)
        callback.on_train_batch_end(trainer, module, None, None, 0)

    return step


def flat_views(params: list[nn.Parameter], block: int = 1) -> tuple[Tensor, list[Tensor]]:
    """A flat zeroed buffer and its views shaped like ``params``, each starting at a multiple of ``block``."""
    spans = [-(-p.numel() // block) * block for p in params]
    buffer = torch.zeros(sum(spans))
    views = [v[: p.numel()].view(p.shape) for v, p in zip(buffer.split(spans), params, strict=True)]
    return buffer, views


def floor_copy(params: list[nn.Parameter]) -> Step:
    buffer, noise = flat_views(params)
    _, clean = flat_views(params)
    generator = torch.Generator()

    @torch.no_grad()
    def step() -> None:
        generator.manual_seed(1)
        torch._foreach_copy_(clean, params)
        buffer.normal_(0.0, STD, generator=generator)
        torch._foreach_add_(params, noise)
        torch._foreach_copy_(params, clean)

    return step


def floor_regenerate(params: list[nn.Parameter]) -> Step:
    buffer, noise = flat_views(params)
    generator = torch.Generator()

    @torch.no_grad()
    def step() -> None:
        generator.manual_seed(1)
        buffer.normal_(0.0, STD, generator=generator)
        torch._foreach_add_(params, noise)
        generator.manual_seed(1)
        buffer.normal_(0.0, STD, generator=generator)
        torch._foreach_sub_(params, noise)

    return step


def floor_relative(params: list[nn.Parameter]) -> Step:
    buffer, noise = flat_views(params)
    copy, clean = flat_views(params, BLOCK)
    rows = copy.view(-1, BLOCK)
    rows_per = torch.tensor([-(-p.numel() // BLOCK) for p in params])
    numel = torch.tensor([p.numel() for p in params], dtype=torch.float64)
    factor = torch.empty(len(params))
    factors = list(factor.unbind())
    generator = torch.Generator()

    @torch.no_grad()
    def step() -> None:
        generator.manual_seed(1)
        torch._foreach_copy_(clean, params)
        sums = torch.stack((rows.sum(1), torch.linalg.vector_norm(rows, dim=1).square_()), 1)
        moments = torch.segment_reduce(sums.double(), "sum", lengths=rows_per) / numel.unsqueeze(1)
        factor.copy_((moments[:, 1] - moments[:, 0].square()).clamp_(min=0.0).sqrt_())
        buffer.normal_(0.0, STD, generator=generator)
        torch._foreach_mul_(noise, factors)
        torch._foreach_add_(params, noise)
        torch._foreach_copy_(params, clean)

    return step


def floor_relative_regenerate(params: list[nn.Parameter]) -> Step:
    """``floor regenerate`` with each draw scaled by the std of a blocked copy (as ``floor relative``)."""
    buffer, noise = flat_views(params)
    copy, clean = flat_views(params, BLOCK)
    rows = copy.view(-1, BLOCK)
    rows_per = torch.tensor([-(-p.numel() // BLOCK) for p in params])
    numel = torch.tensor([p.numel() for p in params], dtype=torch.float64)
    factor = torch.empty(len(params))
    factors = list(factor.unbind())
    generator = torch.Generator()

    @torch.no_grad()
    def step() -> None:
        torch._foreach_copy_(clean, params)
        sums = torch.stack((rows.sum(1), torch.linalg.vector_norm(rows, dim=1).square_()), 1)
        moments = torch.segment_reduce(sums.double(), "sum", lengths=rows_per) / numel.unsqueeze(1)
        factor.copy_((moments[:, 1] - moments[:, 0].square()).clamp_(min=0.0).sqrt_())
        for undo in (False, True):
            generator.manual_seed(1)
            buffer.normal_(0.0, STD, generator=generator)
            torch._foreach_mul_(noise, factors)
            (torch._foreach_sub_ if undo else torch._foreach_add_)(params, noise)

    return step


def naive(params: list[nn.Parameter]) -> Step:
    generator = torch.Generator()

    @torch.no_grad()
    def step() -> None:
        generator.manual_seed(1)
        saved = []
        for p in params:
            saved.append(p.detach().clone())
            p.add_(torch.randn(p.shape, generator=generator) * STD)
        for p, c in zip(params, saved, strict=True):
            p.copy_(c)

    return step


def callbacks(chunk_size: int | None = None) -> dict[str, WeightNoise]:
    noise = Gaussian(STD)
    return {
        "copy": WeightNoise(noise, seed=0, name="copy", chunk_size=chunk_size),
        "regenerate": WeightNoise(noise, restore="regenerate", seed=0, name="regen", chunk_size=chunk_size),
        "relative": WeightNoise(noise, relative=True, seed=0, name="rel", chunk_size=chunk_size),
        "relative regenerate": WeightNoise(
            noise, relative=True, restore="regenerate", seed=0, name="relregen", chunk_size=chunk_size
        ),
    }


def median_ratio(samples: dict[str, list[float]], numerator: str, denominator: str) -> float:
    return statistics.median(paired_ratios(samples, numerator, denominator))


def bench_time(number: int, rounds: int) -> None:
    print(f"\nTime per step, medians of {rounds} rounds of {number} calls (~1M float32 weights per model)")
    ratios: dict[str, list[float]] = {}
    for tensors in MODELS:
        module, trainer = model(tensors)
        params = list(module.parameters())
        noise = callbacks()
        for callback in noise.values():
            start(callback, trainer, module)
        cases = {
            "floor copy": floor_copy(params),
            "WeightNoise copy": weight_noise_step(noise["copy"], trainer, module),
            "floor regenerate": floor_regenerate(params),
            "WeightNoise regenerate": weight_noise_step(noise["regenerate"], trainer, module),
            "floor relative": floor_relative(params),
            "WeightNoise relative": weight_noise_step(noise["relative"], trainer, module),
            "floor relative regenerate": floor_relative_regenerate(params),
            "WeightNoise relative regenerate": weight_noise_step(
                noise["relative regenerate"], trainer, module
            ),
            "naive per-parameter loop": naive(params),
        }
        samples = interleaved(cases, number, rounds, thread_clock())
        print(f"  {tensors} tensors, {sum(p.numel() for p in params):,} weights")
        for name, floor in (
            ("WeightNoise copy", "floor copy"),
            ("WeightNoise regenerate", "floor regenerate"),
            ("WeightNoise relative", "floor relative"),
            ("WeightNoise relative regenerate", "floor relative regenerate"),
            ("floor relative", "floor copy"),
            ("WeightNoise relative", "floor copy"),
            ("naive per-parameter loop", "WeightNoise copy"),
        ):
            ratio = median_ratio(samples, name, floor)
            ratios.setdefault(f"{name} / {floor}", []).append(ratio)
            print(
                f"    {name:<32s} {statistics.median(samples[name]):8.0f} us   {floor:<25s}"
                f" {statistics.median(samples[floor]):8.0f} us   ratio {ratio:5.2f}x"
            )

    def row(key: str) -> tuple[str, bool]:
        values = ratios[key]
        return ", ".join(f"{v:.2f}x" for v in values), max(values) <= TARGET

    sizes = "20, 200, 2000 tensors"
    for mode in ("copy", "regenerate"):
        shown, ok = row(f"WeightNoise {mode} / floor {mode}")
        result(
            f'`WeightNoise(restore="{mode}")` per step / floor `{mode}` ({sizes})',
            shown,
            f"{TARGET}x",
            "met" if ok else "missed",
            "reseed, one flat draw, _foreach_add_"
            + (" (copy in, copy back)" if mode == "copy" else ", redraw, _foreach_sub_"),
            SECTION,
        )
    shown, ok = row("WeightNoise relative / floor relative")
    cost, _ = row("floor relative / floor copy")
    regenerate, ok_regenerate = row("WeightNoise relative regenerate / floor relative regenerate")
    result(
        f"`WeightNoise(relative=True)` per step / its own floor ({sizes})",
        shown + f" (its floor is {cost} of floor `copy`); with restore='regenerate' {regenerate}",
        f"{TARGET}x",
        "met" if ok and ok_regenerate else "missed",
        "floor copy + per-tensor std (row sums and norms over a 32-blocked copy, one segment sum)"
        " + _foreach_mul_",
        SECTION,
    )
    shown, _ = row("naive per-parameter loop / WeightNoise copy")
    result(f"naive per-parameter loop / `WeightNoise` ({sizes})", shown, section=SECTION)


def count_ops(step: Step) -> list[str]:
    step()  # once outside: first-call allocations
    with AtenOps() as counter:
        step()
    return counter.ops


def bench_ops() -> None:
    print("\naten ops dispatched per step (TorchDispatchMode; each _foreach_* op counts one)")
    counts: dict[tuple[str, str], list[int]] = {}
    for tensors in MODELS:
        module, trainer = model(tensors)
        for chunking, chunk_size in (("default chunks", None), ("one chunk", 1 << 20)):
            for mode, callback in callbacks(chunk_size).items():
                start(callback, trainer, module)
                assert callback._layout is not None
                ops = count_ops(weight_noise_step(callback, trainer, module))
                counts.setdefault((mode, chunking), []).append(len(ops))
                if tensors == 20 and chunking == "one chunk":
                    print(f"  {mode:<20s} {len(ops):3d} ops with one chunk: {', '.join(ops)}")
                if chunking == "default chunks":
                    chunks = len(callback._layout.chunks)
                    print(f"  {tensors:5d} tensors, {mode:<20s} {len(ops):3d} ops ({chunks} chunks)")
    flat = all(len(set(counts[(mode, "one chunk")])) == 1 for mode, _ in counts)
    shown = "; ".join(
        f"{mode} {'/'.join(str(c) for c in counts[(mode, 'one chunk')])}"
        for mode in dict.fromkeys(m for m, _ in counts)
    )
    result(
        "`WeightNoise` aten ops per step, one chunk, at 20/200/2000 tensors",
        shown,
        "does not grow with the tensors",
        "met" if flat else "missed",
        "TorchDispatchMode count around the four hooks of one step",
        SECTION,
    )


# ------------------------------------------------------------------------------------------ memory


def _status(field: str) -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(field)


MEMORY_MODES: dict[str, dict[str, Any]] = {
    "copy": {},
    "regenerate": {"restore": "regenerate"},
    "relative": {"relative": True},
}


def measure_memory() -> None:
    """Child process: one model of 20 tensors of 1M weights (76 MiB); per mode, peak extra bytes."""
    module = Layers(20, 1000, bias=False)
    trainer = fitted(module)
    largest = max(p.numel() * p.element_size() for p in module.parameters())
    total = sum(p.numel() * p.element_size() for p in module.parameters())
    for mode, options in MEMORY_MODES.items():
        callback = WeightNoise(Gaussian(STD), seed=0, **options)  # type: ignore[arg-type]
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")  # reset the peak (VmHWM) to the current resident size
        before = _status("VmRSS")
        start(callback, trainer, module)
        step = weight_noise_step(callback, trainer, module)
        for _ in range(3):
            step()
        print(mode, _status("VmHWM") - before, callback.buffer_bytes, largest, total)
        callback.teardown(trainer, module, "fit")  # drops (and unmaps) its buffers before the next mode


def bench_memory() -> None:
    print("\nPeak extra memory (20 tensors x 1M float32 weights = 76 MiB of parameters)")
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", PYTHONWARNINGS="ignore")
    lines = subprocess.run(
        [sys.executable, __file__, "--memory"], capture_output=True, text=True, check=True, env=env
    ).stdout.splitlines()
    peaks: dict[str, float] = {}
    for line in lines[-len(MEMORY_MODES) :]:
        mode, *values = line.split()
        peak, held, largest, total = (int(v) for v in values)
        peaks[mode] = peak / 2**20
        print(
            f"  {mode:<11s} peak RSS over baseline {peak / 2**20:6.1f} MiB"
            f" (held buffers {held / 2**20:5.1f} MiB; parameters {total / 2**20:.0f} MiB,"
            f" largest tensor {largest / 2**20:.1f} MiB)"
        )
    ok = peaks["copy"] < 76.3 + 3 * 3.8 and peaks["regenerate"] < 3 * 3.8
    result(
        'extra memory: `restore="copy"` / `"regenerate"` / `relative=True` (76 MiB of weights)',
        f"{peaks['copy']:.1f} MiB / {peaks['regenerate']:.1f} MiB / {peaks['relative']:.1f} MiB",
        "one copy / one tensor",
        "met" if ok else "missed",
        "peak RSS over the size before set-up (child process)",
        SECTION,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9, help="timing rounds (default 9)")
    parser.add_argument("--number", type=int, default=3, help="calls per case per round (default 3)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--memory", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.memory:
        measure_memory()
        return
    header("bench_weight_noise: WeightNoise per step against bare-tensor floors, aten ops, memory")
    bench_time(args.number, args.rounds)
    bench_ops()
    bench_memory()


if __name__ == "__main__":
    main()
