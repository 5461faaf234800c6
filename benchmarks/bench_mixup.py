"""Time MixupDataModule's mixing against the floor of one ``torch.lerp`` and against timm's Mixup.

Run ``python benchmarks/bench_mixup.py [--device cuda] [--reps 100]`` (about 30 s). For each batch shape the
candidates are timed side by side in one process, repetitions interleaved, and the medians are
compared (ratios, never absolute targets):

* ``floor``: one ``torch.lerp(x, partner, w)`` over the batch with a per-sample weight -- the
  arithmetic any mixup must do, with the partner batch already gathered;
* ``ours batch`` / ``ours elem``: ``MixupDataModule.on_after_batch_transfer`` on a training batch
  (``mixup_alpha=1, cutmix_alpha=1, switch_prob=0.5``): drawing partners, λs, methods and boxes
  from the counter-based generator, mixing inputs and one-hot targets, building ``SoftLabels``;
* ``ours elem, mixing only``: ``lit_noise.functional.mix_params`` with an ``elem`` draw made
  beforehand -- the arithmetic part of the above (gather the partners, build the per-sample
  weight map, one in-place lerp; the same for the targets);
* ``timm batch`` / ``timm elem``: timm's ``Mixup`` with the same settings (in place, NumPy RNG, a
  Python loop over samples in ``elem`` mode). timm is used when importable, otherwise the
  behavioural transcription in ``_timm_mixup_reference.py``; the output says which.

The fixed cost per batch is ``ours batch`` minus the floor at the small shape, where the tensor
work is negligible: the host-side cost a small model pays per step. The profile at the end counts
the aten ops each candidate issues per call (a ``TorchDispatchMode`` counter: one per kernel or
view the host dispatches) and splits ``ours elem`` at the large shape into its parts.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

from _harness import AtenOps, header, interleaved, keep_freed_memory, result, thread_clock
from lit_noise import MixupDataModule, SoftLabels
from lit_noise.examples import DigitsDataModule
from lit_noise.functional import mix_params, one_hot_smooth, sample_mix_params
from lit_noise.functional.mix import _own_weights

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
        return mix_params(x, y_soft, params)

    return run


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


def _batch_ops_bare(x: torch.Tensor, y: torch.Tensor) -> Callable[[], Any]:
    """The tensor operations ``ours batch`` issues for a mixup batch, bare: a seeded permutation and
    its cycle, the one-hot rows, one gather and one lerp each for inputs and targets, the hard
    labels and the ``SoftLabels`` wrapper (λ and the seed fixed, no Python around them)."""
    generator = torch.Generator(device=x.device)
    batch = x.shape[0]
    shift = torch.arange(1, batch + 1, device=x.device) % batch
    eye = torch.eye(NUM_CLASSES, device=x.device)

    def run() -> Any:
        generator.manual_seed(123456789)
        perm = torch.randperm(batch, generator=generator, device=x.device)
        following = perm.index_select(0, shift)
        index = following.index_copy(0, perm, following)
        y_soft = eye.index_select(0, y)
        x_mixed = x.index_select(0, index).lerp_(x, 0.3)
        y_mixed = y_soft.index_select(0, index).lerp_(y_soft, 0.3)
        return x_mixed, SoftLabels._wrap(y_mixed, y.index_select(0, index))

    return run


def bench(shape: tuple[int, ...], device: torch.device, reps: int) -> dict[str, float]:
    generator = torch.Generator(device=device).manual_seed(0)
    x = torch.rand(shape, generator=generator, device=device)
    y = torch.randint(0, NUM_CLASSES, (shape[0],), generator=generator, device=device)
    candidates = {
        "floor (one lerp)": _floor(x),
        "ours elem, mixing only": _mixing_only(x, y),
        "ours batch": _ours("batch", x, y),
        "ours batch, its tensor ops bare": _batch_ops_bare(x, y),
        "ours elem": _ours("elem", x, y),
        "timm batch": _timm("batch", x, y),
        "timm elem": _timm("elem", x, y),
    }
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    inner = 20 if x.numel() < 100_000 else 3
    samples = interleaved(candidates, inner, reps, thread_clock(device), sync)
    medians = {name: statistics.median(values) for name, values in samples.items()}
    # Each comparison with timm is also timed head to head, the two candidates alone: among all the
    # candidates, timm's elem loop warms the very kernels timm's batch mode calls (mul_, add_, flip,
    # one_hot) and not ours (randperm, index_select, lerp_), which slows our batch mode by 20-30 %
    # on the Xeon while timm's batch mode keeps its speed.
    for mode in ("batch", "elem"):
        pair = {f"ours {mode}": candidates[f"ours {mode}"], f"timm {mode}": candidates[f"timm {mode}"]}
        rounds = interleaved(pair, inner, reps, thread_clock(device), sync)
        ratios = [t / o for t, o in zip(rounds[f"timm {mode}"], rounds[f"ours {mode}"], strict=True)]
        medians[f"timm {mode} / ours {mode}, head to head"] = statistics.median(ratios)
    return medians


def aten_ops(fn: Callable[[], Any], calls: int = 20) -> float:
    """The mean number of aten ops one call of ``fn`` dispatches."""
    fn()
    with AtenOps() as counter:
        for _ in range(calls):
            fn()
    return len(counter.ops) / calls


def elem_parts(x: torch.Tensor, y: torch.Tensor, reps: int) -> dict[str, float]:
    """``ours elem``'s parts, each timed like the candidates: median µs per call."""
    generator = torch.Generator(device=x.device).manual_seed(3)
    options: dict[str, Any] = {"mixup_alpha": 1.0, "cutmix_alpha": 1.0, "spatial_size": x.shape[-2:]}
    params = sample_mix_params(x.shape[0], generator, mode="elem", **options)
    own = torch.rand((x.shape[0], 1, *x.shape[-2:]), device=x.device)
    concentration = torch.ones((x.shape[0], 2), dtype=torch.float64, device=x.device)
    corners = params._corners
    assert corners is not None
    parts = {
        "floor (one lerp)": _floor(x),
        "draw (partners, λ, methods, boxes)": lambda: sample_mix_params(
            x.shape[0], generator, mode="elem", **options
        ),
        "gather the partners": lambda: x.index_select(0, params.index),
        "gather + in-place lerp with a weight map": lambda: x.index_select(0, params.index).lerp_(x, own),
        "all the mixing (mix_params)": _mixing_only(x, y),
        "ours elem (the whole hook)": _ours("elem", x, y),
        "the Beta draws alone (one Dirichlet call)": lambda: torch._sample_dirichlet(
            concentration, generator=generator
        ),
        "the weight map alone (from the draw's boxes)": lambda: _own_weights(
            x, params.lam, params.use_cutmix, corners
        ),
        "timm elem": _timm("elem", x, y),
    }
    samples = interleaved(parts, 3, reps, thread_clock(x.device))
    return {name: statistics.median(values) for name, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--reps", type=int, default=60)
    parser.add_argument(
        "--threads", type=int, default=1, help="intra-op threads (1: stable timings on a shared CPU)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    keep_freed_memory()
    device = torch.device(args.device)
    header("MixupDataModule vs one lerp and timm's Mixup", device)
    print(f"timm: {TIMM_SOURCE}")
    floor_text = "one torch.lerp(x, partner, w) with a per-sample weight, partners gathered beforehand"
    section = "Mixup and CutMix > Performance"
    for shape in SHAPES:
        medians = bench(shape, device, args.reps)
        floor = medians["floor (one lerp)"]
        size = f"{shape[0]}x{tuple(shape[1:])}".replace(" ", "")
        print(f"\nbatch {size}: median per call, ratio to the floor")
        times = {name: value for name, value in medians.items() if "head to head" not in name}
        for name, value in times.items():
            print(f"  {name:32s} {value:10.1f} us  {value / floor:7.2f}x")
        batch_speedup = medians["timm batch / ours batch, head to head"]
        elem_speedup = medians["timm elem / ours elem, head to head"]
        print(
            f"  timm / ours, head to head (the two alone, median of paired rounds): batch"
            f" {batch_speedup:.2f}x, elem {elem_speedup:.2f}x; among all the candidates above: batch"
            f" {medians['timm batch'] / medians['ours batch']:.2f}x, elem"
            f" {medians['timm elem'] / medians['ours elem']:.2f}x"
        )
        result(
            f"mixup batch mode: timm's batch mode / ours, {size}",
            f"{batch_speedup:.2f}x",
            "> 1x (ours faster)",
            "met" if batch_speedup > 1.0 else "missed",
            "timm's Mixup(mode='batch'), same settings, same process, head to head",
            section,
        )
        if shape == SHAPES[0]:
            fixed = medians["ours batch"] - floor
            bare = medians["ours batch, its tensor ops bare"]
            print(
                f"  fixed cost {fixed:.0f} us = the tensor ops bare {bare - floor:.0f} us (10 aten ops, see"
                f" the profile) + Python around them {medians['ours batch'] - bare:.0f} us (seeding, the"
                " host draw, checks, batch read and write-back); timm's whole batch mode takes"
                f" {medians['timm batch']:.0f} us"
            )
            result(
                f"mixup fixed cost per batch (ours batch - floor), {size}",
                f"{fixed:.0f} µs",
                "< 60 µs",
                "met" if fixed < 60.0 else "missed",
                floor_text,
                section,
            )
        else:
            elem_ratio = medians["ours elem"] / floor
            result(
                f"mixup elem mode / floor, {size}",
                f"{elem_ratio:.2f}x (mixing alone {medians['ours elem, mixing only'] / floor:.2f}x)",
                "<= 2x",
                "met" if elem_ratio <= 2.0 else "missed",
                floor_text,
                section,
            )
            result(
                f"mixup elem mode: timm's elem mode / ours, {size}",
                f"{elem_speedup:.1f}x",
                ">= 10x",
                "met" if elem_speedup >= 10.0 else "missed",
                "timm's Mixup(mode='elem'): a Python loop over samples; head to head",
                section,
            )
    print("\nprofile: aten ops dispatched per call (host-side work; one kernel or view each)")
    x = torch.rand(SHAPES[0], device=device)
    y = torch.randint(0, NUM_CLASSES, (SHAPES[0][0],), device=device)
    counts = {
        "floor (one lerp)": aten_ops(_floor(x)),
        "ours batch": aten_ops(_ours("batch", x, y)),
        "ours elem": aten_ops(_ours("elem", x, y)),
        "timm batch": aten_ops(_timm("batch", x, y)),
        "timm elem": aten_ops(_timm("elem", x, y)),
    }
    for name, count in counts.items():
        print(f"  {name:22s} {count:7.1f} ops")
    result(
        "mixup host ops per batch: ours batch / ours elem / timm batch / timm elem",
        " / ".join(f"{counts[k]:.0f}" for k in ("ours batch", "ours elem", "timm batch", "timm elem")),
        section=section,
    )
    large = torch.rand(SHAPES[-1], device=device)
    labels = torch.randint(0, NUM_CLASSES, (SHAPES[-1][0],), device=device)
    parts = elem_parts(large, labels, max(args.reps // 3, 10))
    floor = parts["floor (one lerp)"]
    print(f"\nprofile: ours elem at {SHAPES[-1][0]}x{tuple(SHAPES[-1][1:])}, its parts timed alone")
    for name, value in parts.items():
        print(f"  {name:42s} {value:9.1f} us  {value / floor:5.2f}x")
    print(
        "  The gather + in-place lerp is the least tensor work any mixup with partners does: it reads"
        " and writes the batch five times where the floor does three."
    )
    mixing = parts["gather + in-place lerp with a weight map"]
    beta = parts["the Beta draws alone (one Dirichlet call)"]
    weight_map = parts["the weight map alone (from the draw's boxes)"]
    least = mixing + beta
    timm_elem = parts["timm elem"]
    draw, whole = parts["draw (partners, λ, methods, boxes)"], parts["ours elem (the whole hook)"]
    small_ops = draw - beta
    print(
        f"  The least a bit-identical elem mode costs (that gather + lerp, and the Beta draws the"
        f" stream is made of): {least / floor:.2f}x of the floor (target 2x), so timm elem / ours can"
        f" be at most {timm_elem / least:.1f}x on this machine (target 10x); with no draw at all,"
        f" {timm_elem / mixing:.1f}x. Over that least: the draw's small ops (partners, boxes, λ"
        f" correction) {small_ops:.0f} us, building the weight map and mixing the targets"
        f" {parts['all the mixing (mix_params)'] - mixing:.0f} us, the hook around them"
        f" {whole - parts['all the mixing (mix_params)'] - draw:.0f} us;"
        f" with the draw's small ops free the hook would still be"
        f" {(whole - small_ops) / floor:.2f}x. With the weight map as well (any per-sample mix of"
        f" CutMix and mixup in one lerp needs it), the least is {(least + weight_map) / floor:.2f}x"
        f" and timm elem / ours at most {timm_elem / (least + weight_map):.1f}x."
    )


if __name__ == "__main__":
    main()
