"""GradientNoise overhead per optimizer step, against the bare-tensor floor and a naive per-parameter loop.

Run: ``python benchmarks/bench_gradient_noise.py`` (``--quick`` for fewer rounds).

The same three models as ``bench_weight_noise.py`` (about one million weights in 20, 200 and 2000
parameter tensors), every parameter given a gradient. Inside a live ``Trainer.fit``, at every batch
and in rotating order, it times:

* ``GradientNoise.on_before_optimizer_step`` (schedule, generator, one draw per chunk, fused add);
* the floor: fetch the gradients (``[p.grad for p in params]``, unavoidable since they are new
  tensors every step), reseed a generator, one ``normal_`` draw into a preallocated flat buffer,
  one ``_foreach_add_`` of its views;
* a naive callback: a Python loop over the parameters (``randn`` and ``add_`` per gradient).

It prints medians (microseconds) and the median of the per-round ratios. The only memory
GradientNoise holds is its scratch buffer: one chunk (2**18 elements on CPU) or the largest
selected tensor, whichever is larger.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import lightning.pytorch as pl
import torch
from torch import nn

from bench_weight_noise import MODELS, STD, Layers, Setup, Timer, flat_views, loader, quiet_trainer, report
from lit_noise import AnnealedStd, GradientNoise

Step = Callable[[pl.Trainer, pl.LightningModule, int], None]


def gradient_noise_step(callback: GradientNoise) -> Step:
    def step(trainer: pl.Trainer, module: pl.LightningModule, i: int) -> None:
        callback.on_before_optimizer_step(trainer, module, trainer.optimizers[0])

    return step


def floor_step(params: list[nn.Parameter]) -> Step:
    buffer, noise = flat_views(params)
    generator = torch.Generator()

    @torch.no_grad()
    def step(trainer: pl.Trainer, module: pl.LightningModule, i: int) -> None:
        grads = [p.grad for p in params]
        generator.manual_seed(i)
        buffer.normal_(0.0, STD, generator=generator)
        torch._foreach_add_(grads, noise)

    return step


def naive_step(params: list[nn.Parameter]) -> Step:
    generator = torch.Generator()

    @torch.no_grad()
    def step(trainer: pl.Trainer, module: pl.LightningModule, i: int) -> None:
        generator.manual_seed(i)
        for p in params:
            assert p.grad is not None
            p.grad.add_(torch.randn(p.shape, generator=generator) * STD)

    return step


class Untimed(Timer):
    """A Timer whose gradient set-up is outside the timed region."""

    def __init__(self, params: list[nn.Parameter], variants: dict[str, Step]) -> None:
        super().__init__(variants)
        self.grads = [torch.zeros_like(p) for p in params]
        self.params = params

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: object, i: int
    ) -> None:
        for p, g in zip(self.params, self.grads, strict=True):
            p.grad = g
        super().on_train_batch_start(trainer, pl_module, batch, i)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rounds = 15 if args.quick else 60
    print(f"GradientNoise: added time per optimizer step (1 thread, {rounds} rounds; ~1M weights per model)")
    for tensors, width in MODELS.items():
        module = Layers(tensors, width)
        params = list(module.parameters())
        plain = GradientNoise(std=STD, seed=0, name="plain")
        annealed = GradientNoise(std=AnnealedStd(eta=STD**2), seed=0, name="annealed")
        variants: dict[str, Step] = {
            "floor": floor_step(params),
            "GradientNoise": gradient_noise_step(plain),
            "GradientNoise annealed": gradient_noise_step(annealed),
            "naive per-parameter loop": naive_step(params),
        }
        timer = Untimed(params, variants)
        batches = rounds + timer.warmup
        quiet_trainer(batches, [Setup([plain, annealed]), timer]).fit(module, loader(batches))
        n = sum(p.numel() for p in params)
        print(f"  {tensors} tensors, {n:,} weights: median us, and median of per-round ratios")
        report(timer.times, "GradientNoise", "floor")
        report(timer.times, "GradientNoise annealed", "floor")
        report(timer.times, "naive per-parameter loop", "GradientNoise")
        layout = plain._layout
        assert layout is not None
        print(f"    scratch buffer held: {layout.nbytes / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
