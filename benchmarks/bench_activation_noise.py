"""Cost of ActivationNoise on the token example: its added time per training step against the floor.

Run: ``python benchmarks/bench_activation_noise.py [--quick] [--threads 1]`` (under a minute). Prints
ratios measured side by side in this process (repetitions interleaved, medians of paired ratios in
part 1, medians in part 2; thread CPU time with one torch thread), never absolute targets.

Part 1 (the target, <= 1.2x) times what ActivationNoise adds to one training step of the token
example (``TokenClassifier``, batches of 64 sequences of 24 tokens, ``d_model`` 32, so a (64, 24, 32)
embedding output): its ``on_train_batch_start`` (resolve or reuse the strengths, read the attention
mask, register the hook), the embedding's forward through the hook, and ``on_train_batch_end``
(remove the hook), minus the bare embedding forward. The floor is the same tensor work done by a
hand-written forward hook, registered once, without our code: one draw and one add per hooked
output (for NEFTune's padded form, TRL's ``neftune_post_forward_hook`` verbatim; for the per-sample
form, the paper's masked formula: lengths from the mask, one draw, one scaled add, padding put
back; for Gaussian, ``randn_like`` and one add), minus the same bare forward. The "seeded floor"
adds what counter-based seeding costs (hash the counters, ``Generator.manual_seed``), the minimum
for noise that is reproducible and resumable. Part 2 times whole training steps (``trainer.fit``)
with ActivationNoise, with the hand-written hook and with neither, to show the added time next to
a step.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
from collections.abc import Callable
from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor, nn

from _harness import header, interleaved, quiet_trainer, result, thread_clock
from lit_noise import ActivationNoise, Gaussian, NEFTune, Noise
from lit_noise._rng import mix_seed
from lit_noise.examples import TokenClassifier, TokenDataModule

ALPHA, STD = 5.0, 0.1
Hook = Callable[[nn.Module, Any, Tensor], Tensor]


def trl_hook(module: nn.Module, input: Any, output: Tensor) -> Tensor:
    """Hugging Face TRL's ``neftune_post_forward_hook`` (trl/trainer/utils.py, 2023-10), verbatim."""
    if module.training:
        dims = torch.tensor(output.size(1) * output.size(2))
        mag_norm = module.neftune_noise_alpha / torch.sqrt(dims)  # type: ignore[operator, arg-type]
        output = output + torch.zeros_like(output).uniform_(-mag_norm, mag_norm)  # type: ignore[arg-type]
    return output


def paper_hook(mask: dict[str, Tensor], generator: torch.Generator | None) -> Hook:
    """The per-sample form written by hand: lengths from the mask, one draw, one scaled add."""

    def hook(module: nn.Module, input: Any, output: Tensor) -> Tensor:
        keep = mask["now"]
        magnitude = ALPHA / torch.sqrt(keep.sum(1, dtype=output.dtype) * output.shape[-1])
        eps = torch.empty_like(output).uniform_(-1.0, 1.0, generator=generator)
        return torch.where(keep.unsqueeze(-1), torch.addcmul(output, eps, magnitude.view(-1, 1, 1)), output)

    return hook


def gaussian_hook(generator: torch.Generator | None) -> Hook:
    def hook(module: nn.Module, input: Any, output: Tensor) -> Tensor:
        return torch.add(output, torch.randn_like(output, generator=generator), alpha=STD)

    return hook


Case = tuple[Noise, dict[str, Any]]


def bench_hot_path(number: int, repeats: int) -> list[float]:
    """Part 1: what ActivationNoise adds to a step against a hand-written hook doing the same work."""
    data = TokenDataModule()
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    cases: dict[str, Case] = {
        "NEFTune padded (TRL)": (NEFTune(alpha=ALPHA, form="padded"), {"pad_id": None}),
        "NEFTune per_sample + mask": (NEFTune(alpha=ALPHA), {"mask_key": "attention_mask", "pad_id": None}),
        "Gaussian": (Gaussian(std=STD), {"pad_id": None}),
    }
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"Part 1: added time per training step, token example: embedding output"
        f" {tuple(batch['input_ids'].shape)} x 32, {os.cpu_count()} CPUs, load average {load:.1f}"
    )
    print(
        "  added = (time with the noise) - (bare embedding forward); floor = a hand-written forward hook,"
        " registered once, doing one draw + one add; ratio = median over paired rounds"
    )
    return [_bench_case(label, case, data, batch, number, repeats) for label, case in cases.items()]


def _bench_case(
    label: str, case: Case, data: TokenDataModule, batch: dict[str, Tensor], number: int, repeats: int
) -> float:
    """The ratio (added time with ActivationNoise / added time with the hand-written hook), printed."""
    noise, options = case
    ids, attention = batch["input_ids"], batch["attention_mask"]
    callback = ActivationNoise("embedding", noise, seed=0, **options)
    model = TokenClassifier()
    trainer = quiet_trainer([callback], max_epochs=1, limit_train_batches=1)
    trainer.fit(model, data)  # a real trainer, loop state and logging interval for the hooks
    callback.on_fit_start(trainer, model)  # resolve the modules again (teardown forgot them)
    model.train()
    embedding = model.embedding
    floor_embedding = nn.Embedding(48, 32, padding_idx=0)
    seeded_embedding = nn.Embedding(48, 32, padding_idx=0)
    floor_embedding.neftune_noise_alpha = ALPHA  # type: ignore[assignment]
    seeded = torch.Generator()
    current = {"now": attention.bool()}
    if label.startswith("NEFTune padded"):
        floor_hook: Hook = trl_hook  # draws from the global RNG; the seeded floor uses a generator
        seeded_hook = _seeded_padded_hook(seeded)
    elif label.startswith("NEFTune per_sample"):
        floor_hook, seeded_hook = paper_hook(current, None), paper_hook(current, seeded)
    else:
        floor_hook, seeded_hook = gaussian_hook(None), gaussian_hook(seeded)
    floor_embedding.register_forward_hook(floor_hook)
    seeded_embedding.register_forward_hook(seeded_hook)
    counter = iter(range(10**9))

    def ours() -> None:
        index = next(counter) % 1000
        callback.on_train_batch_start(trainer, model, batch, index)
        embedding(ids)
        callback.on_train_batch_end(trainer, model, None, batch, index)

    def floor() -> None:
        current["now"] = attention != 0  # the mask read, as ActivationNoise does per batch
        floor_embedding(ids)

    def seeded_floor() -> None:
        current["now"] = attention != 0
        seeded.manual_seed(mix_seed(12345 + next(counter) % 1000))
        seeded_embedding(ids)

    def bare() -> None:
        embedding(ids)

    with torch.no_grad():
        cases = {"ours": ours, "floor": floor, "seeded": seeded_floor, "bare": bare}
        t = interleaved(cases, number, repeats, thread_clock())
    rounds = range(repeats)
    added = [t["ours"][r] - t["bare"][r] for r in rounds]
    ratio = statistics.median(added[r] / (t["floor"][r] - t["bare"][r]) for r in rounds)
    seeded_ratio = statistics.median(added[r] / (t["seeded"][r] - t["bare"][r]) for r in rounds)
    median = {k: statistics.median(v) for k, v in t.items()}
    print(
        f"  {label:27s} bare forward {median['bare']:6.1f} us; added: ActivationNoise"
        f" {median['ours'] - median['bare']:6.1f} us, floor {median['floor'] - median['bare']:6.1f} us,"
        f" seeded floor {median['seeded'] - median['bare']:6.1f} us -> ratio {ratio:.3f}x (target <= 1.2x),"
        f" to the seeded floor {seeded_ratio:.3f}x"
    )
    return ratio


def _seeded_padded_hook(generator: torch.Generator) -> Hook:
    def hook(module: nn.Module, input: Any, output: Tensor) -> Tensor:
        magnitude = ALPHA / math.sqrt(output.size(1) * output.size(2))
        return output + torch.empty_like(output).uniform_(-magnitude, magnitude, generator=generator)

    return hook


class _StepTimer(pl.Callback):
    """Wall time between consecutive ``on_train_batch_end`` calls (whole steps)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.clock = thread_clock()
        self._last: int | None = None

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._last = None

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        now = self.clock()
        if self._last is not None:
            self.times.append((now - self._last) / 1e9)
        self._last = now


def _fit_step_times(kind: str, epochs: int) -> list[float]:
    timer = _StepTimer()
    callbacks: list[pl.Callback] = [timer]
    pl.seed_everything(0, verbose=False)
    model = TokenClassifier()
    if kind == "ActivationNoise":
        callbacks.append(
            ActivationNoise("embedding", NEFTune(alpha=ALPHA), mask_key="attention_mask", seed=0)
        )
    elif kind == "hand-written hook":
        model.embedding.neftune_noise_alpha = ALPHA
        model.embedding.register_forward_hook(trl_hook)
    quiet_trainer(callbacks, max_epochs=epochs).fit(model, TokenDataModule())
    return timer.times


def bench_steps(epochs: int, repeats: int) -> None:
    """Part 2: whole training steps with ActivationNoise, with the hand-written hook, with neither."""
    kinds = ("none", "hand-written hook", "ActivationNoise")
    print(
        f"Part 2: whole training steps (TokenClassifier, batch 64, {epochs} epochs per fit, {repeats} rounds)"
    )
    _fit_step_times("none", 1)  # warm up
    medians: dict[str, list[float]] = {k: [] for k in kinds}
    for repeat in range(repeats):
        order = kinds if repeat % 2 == 0 else kinds[::-1]
        for kind in order:
            medians[kind].append(statistics.median(_fit_step_times(kind, epochs)))
    step = {k: statistics.median(v) * 1e6 for k, v in medians.items()}
    print(
        f"  step: none {step['none']:8.1f} us, TRL hook by hand {step['hand-written hook']:8.1f} us,"
        f" ActivationNoise(NEFTune per_sample + mask) {step['ActivationNoise']:8.1f} us;"
        f" ActivationNoise / hand-written {step['ActivationNoise'] / step['hand-written hook']:.3f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (a smoke run)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    header("ActivationNoise: added time per step against a hand-written hook doing the same work")
    if args.quick:
        ratios = bench_hot_path(number=100, repeats=3)
        bench_steps(epochs=1, repeats=1)
    else:
        ratios = bench_hot_path(number=40, repeats=15)
        bench_steps(epochs=1, repeats=3)
    result(
        "`ActivationNoise` added time per step / the same work in a hand-written hook (token example):"
        " NEFTune padded, per-sample + mask, Gaussian",
        ", ".join(f"{r:.2f}x" for r in ratios),
        "1.2x",
        "met" if max(ratios) <= 1.2 else "missed",
        "a hand-written forward hook, registered once: one draw + one add (TRL's hook for NEFTune padded)",
        "Activation noise and NEFTune",
    )


if __name__ == "__main__":
    main()
