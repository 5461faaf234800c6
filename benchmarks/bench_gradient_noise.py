"""GradientNoise cost per optimizer step against bare-tensor floors, and aten ops per step.

Run: ``python benchmarks/bench_gradient_noise.py [--rounds 11] [--number 5] [--threads 1]``
(about half a minute).

The same three models as ``bench_weight_noise.py`` (about one million float32 weights in 20, 200
and 2000 parameter tensors), every parameter given a gradient. For each, a trainer fits one batch
(so the hook sees a real trainer), the callbacks get their fit-start hooks, and then every
candidate's ``on_before_optimizer_step`` is timed side by side (``_harness.interleaved``: rounds of
every case one after the other, this thread's CPU time, medians of the per-round ratios):

* ``GradientNoise(std)``, and with ``std=AnnealedStd(...)`` (a schedule evaluated every step);
* its floor: fetch the gradients (``[p.grad for p in params]``, unavoidable since they are new
  tensors every step), reseed a generator, one ``normal_`` draw into a preallocated flat buffer, one
  ``_foreach_add_`` of its views;
* ``GradientNoise(relative="tensor")`` and its floor: the same plus each gradient's RMS from one
  ``_foreach_norm`` (stacked, divided by the sizes) and the scaling of each tensor's noise by it
  (one ``_foreach_mul_`` with 0-d views of the factors);
* a naive callback: a Python loop over the parameters (``randn`` and ``add_`` per gradient), as
  information.

It then counts the aten ops one step dispatches (a ``TorchDispatchMode`` counter around the hook;
``_foreach_*`` ops count one each) at 20, 200 and 2000 tensors, with one chunk
(``chunk_size=2**20``: one draw per step) and with the default chunking. The only memory
GradientNoise holds is its scratch buffer: one chunk (2**18 elements on CPU) or the largest selected
tensor, whichever is larger.
"""

from __future__ import annotations

import argparse
import statistics

import lightning.pytorch as pl
import torch
from torch import nn

from _harness import AtenOps, header, interleaved, paired_ratios, result, thread_clock
from bench_weight_noise import MODELS, SECTION, STD, TARGET, Step, flat_views, model, start
from lit_noise import AnnealedStd, GradientNoise


def gradient_noise_step(callback: GradientNoise, trainer: pl.Trainer, module: pl.LightningModule) -> Step:
    optimizer = trainer.optimizers[0]

    def step() -> None:
        callback.on_before_optimizer_step(trainer, module, optimizer)

    return step


def floor(params: list[nn.Parameter], relative: bool = False) -> Step:
    buffer, noise = flat_views(params)
    numel = torch.tensor([p.numel() for p in params], dtype=torch.float32)
    factor = torch.empty(len(params))
    factors = list(factor.unbind())
    generator = torch.Generator()

    @torch.no_grad()
    def step() -> None:
        grads = [p.grad for p in params]
        generator.manual_seed(1)
        buffer.normal_(0.0, STD, generator=generator)
        if relative:
            factor.copy_((torch.stack(torch._foreach_norm(grads, 2)).square_() / numel).sqrt_())
            torch._foreach_mul_(noise, factors)
        torch._foreach_add_(grads, noise)

    return step


def naive(params: list[nn.Parameter]) -> Step:
    generator = torch.Generator()

    @torch.no_grad()
    def step() -> None:
        generator.manual_seed(1)
        for p in params:
            assert p.grad is not None
            p.grad.add_(torch.randn(p.shape, generator=generator) * STD)

    return step


def callbacks(chunk_size: int | None = None) -> dict[str, GradientNoise]:
    return {
        "absolute": GradientNoise(std=STD, seed=0, name="plain", chunk_size=chunk_size),
        "annealed": GradientNoise(
            std=AnnealedStd(eta=STD**2), seed=0, name="annealed", chunk_size=chunk_size
        ),
        "relative tensor": GradientNoise(
            std=STD, relative="tensor", seed=0, name="rel", chunk_size=chunk_size
        ),
        "relative global": GradientNoise(
            std=STD, relative="global", seed=0, name="glob", chunk_size=chunk_size
        ),
    }


def with_gradients(module: pl.LightningModule) -> list[nn.Parameter]:
    params = list(module.parameters())
    for p in params:
        p.grad = torch.zeros_like(p)
    return params


def bench_time(number: int, rounds: int) -> None:
    print(f"\nTime per optimizer step, medians of {rounds} rounds of {number} calls (~1M float32 weights)")
    ratios: dict[str, list[float]] = {}
    scratch = 0
    for tensors in MODELS:
        module, trainer = model(tensors)
        params = with_gradients(module)
        noise = callbacks()
        for callback in noise.values():
            start(callback, trainer, module)
        assert noise["absolute"]._layout is not None
        scratch = noise["absolute"]._layout.nbytes
        cases: dict[str, Step] = {
            "floor": floor(params),
            "GradientNoise": gradient_noise_step(noise["absolute"], trainer, module),
            "GradientNoise annealed": gradient_noise_step(noise["annealed"], trainer, module),
            "floor relative": floor(params, relative=True),
            "GradientNoise relative tensor": gradient_noise_step(noise["relative tensor"], trainer, module),
            "GradientNoise relative global": gradient_noise_step(noise["relative global"], trainer, module),
            "naive per-parameter loop": naive(params),
        }
        samples = interleaved(cases, number, rounds, thread_clock())
        print(f"  {tensors} tensors, {sum(p.numel() for p in params):,} weights")
        for name, base in (
            ("GradientNoise", "floor"),
            ("GradientNoise annealed", "floor"),
            ("GradientNoise relative tensor", "floor relative"),
            ("GradientNoise relative global", "floor relative"),
            ("floor relative", "floor"),
            ("naive per-parameter loop", "GradientNoise"),
        ):
            ratio = statistics.median(paired_ratios(samples, name, base))
            ratios.setdefault(f"{name} / {base}", []).append(ratio)
            print(
                f"    {name:<30s} {statistics.median(samples[name]):8.0f} us   {base:<15s}"
                f" {statistics.median(samples[base]):8.0f} us   ratio {ratio:5.2f}x"
            )
    print(f"  scratch buffer held (2000 tensors): {scratch / 2**20:.1f} MiB")

    def shown(key: str) -> str:
        return ", ".join(f"{v:.2f}x" for v in ratios[key])

    def status(key: str) -> str:
        return "met" if max(ratios[key]) <= TARGET else "missed"

    sizes = "20, 200, 2000 tensors"
    key = "GradientNoise / floor"
    result(
        f"`GradientNoise` per step / floor ({sizes})",
        shown(key) + f" (with `AnnealedStd` {shown('GradientNoise annealed / floor')})",
        f"{TARGET}x",
        status(key),  # type: ignore[arg-type]
        "fetch the .grads, reseed, one flat draw, one _foreach_add_",
        SECTION,
    )
    key = "GradientNoise relative tensor / floor relative"
    result(
        f'`GradientNoise(relative="tensor")` per step / its floor ({sizes})',
        shown(key) + f" (its floor is {shown('floor relative / floor')} of the plain floor)",
        f"{TARGET}x",
        status(key),  # type: ignore[arg-type]
        "the plain floor + one _foreach_norm for the RMS + _foreach_mul_ scaling",
        SECTION,
    )
    result(
        f"naive per-parameter loop / `GradientNoise` ({sizes})",
        shown("naive per-parameter loop / GradientNoise"),
        section=SECTION,
    )


def bench_ops() -> None:
    print("\naten ops dispatched per optimizer step (TorchDispatchMode; each _foreach_* op counts one)")
    counts: dict[tuple[str, str], list[int]] = {}
    for tensors in MODELS:
        module, trainer = model(tensors)
        with_gradients(module)
        for chunking, chunk_size in (("default chunks", None), ("one chunk", 1 << 20)):
            for mode, callback in callbacks(chunk_size).items():
                start(callback, trainer, module)
                assert callback._layout is not None
                step = gradient_noise_step(callback, trainer, module)
                step()  # once outside: first-call allocations
                with AtenOps() as counter:
                    step()
                counts.setdefault((mode, chunking), []).append(len(counter.ops))
                if tensors == 20 and chunking == "one chunk":
                    print(f"  {mode:<16s} {len(counter.ops):3d} ops with one chunk: {', '.join(counter.ops)}")
                if chunking == "default chunks":
                    chunks = len(callback._layout.chunks)
                    print(f"  {tensors:5d} tensors, {mode:<16s} {len(counter.ops):3d} ops ({chunks} chunks)")
    modes = list(dict.fromkeys(mode for mode, _ in counts))
    flat = all(len(set(counts[(mode, "one chunk")])) == 1 for mode in modes)
    result(
        "`GradientNoise` aten ops per step, one chunk, at 20/200/2000 tensors",
        "; ".join(f"{mode} {'/'.join(str(c) for c in counts[(mode, 'one chunk')])}" for mode in modes),
        "does not grow with the tensors",
        "met" if flat else "missed",
        "TorchDispatchMode count around on_before_optimizer_step",
        SECTION,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=11, help="timing rounds (default 11)")
    parser.add_argument("--number", type=int, default=5, help="calls per case per round (default 5)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    header("bench_gradient_noise: GradientNoise per optimizer step against bare-tensor floors, aten ops")
    bench_time(args.number, args.rounds)
    bench_ops()


if __name__ == "__main__":
    main()
