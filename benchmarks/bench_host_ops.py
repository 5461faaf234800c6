"""Host-side operations per training batch of every noise source, with few and with many noise parameters.

Run: ``python benchmarks/bench_host_ops.py [--batches 6] [--profile]`` (about half a minute). It
counts, it does not time: the counts are exact and the same on every run and machine (for this
torch version).

On an accelerator a small model's step is short and the host-side Python that launches the work is
what limits it, so a noise source should issue a number of operations per batch that does not grow
with the number of tensors it noises. Each source trains a tiny MLP (``Linear`` layers of width 16,
batches of 16, ``--batches`` batches) twice: with few noise parameters (2 parameter tensors, 1 hooked
module, 1 noise layer) and with many (200 parameter tensors, 16 hooked modules, 16 noise layers).

What is counted: everything that runs inside the source's own code per training batch, i.e. its
per-batch Lightning hooks (``on_train_batch_start``/``_end``, ``on_before_backward``,
``on_after_backward``, ``on_before_optimizer_step``, ``on_before_zero_grad``), the forward hooks it
registers from them (ActivationNoise), the ``forward`` of the noise layers and ``on_after_batch_transfer``
of ``MixupDataModule`` (with its logging callback). Two measures, each in its own fit:

* **aten ops**: every operator call that reaches torch's dispatcher below autograd, counted by a
  ``torch.utils._python_dispatch.TorchDispatchMode`` that is active only inside the source's code.
  That is one count per op the host issues (composite ops decomposed, views and ``_foreach_*`` ops
  one each): on an accelerator, roughly one kernel launch (or metadata-only op) each. A
  TorchDispatchMode rather than ``torch.profiler``'s ``record_function`` ranges because it counts each
  op once (the profiler also lists the ops that ops call inside, ``aten::add_`` under ``aten::add``, and
  its ranges cost more than the ops of a tiny batch) and needs no parsing of a trace. Not counted:
  what is not an operator (``Generator.manual_seed``, Python arithmetic), and the backward of the ops
  the source adds to the graph.
* **Python calls**: Python function calls and calls of builtins (``sys.setprofile`` ``call`` and
  ``c_call`` events) inside the same code, the host work aten ops do not see (seeding, loops over
  parameters or layers in Python).

"syncs" counts the ``_local_scalar_dense`` ops among them in all ``--batches`` batches (large model):
``.item()``, ``bool(tensor)`` and the like, where on an accelerator the host waits for the device.
These runs are on the CPU: TargetNoise's ``y.min().item()`` is a CPU-only shortcut (on other devices
it builds the ignore mask without a sync), and MixupDataModule's come from its first batches only.

The figure is the median over the batches after the first (the first may allocate buffers once).
"Grows" compares the large model's count with the small one's; a source is "met" when its aten
ops do not grow. ActivationNoise and the noise layers act once per hooked module or layer by design,
so their counts grow by a fixed number per module (printed; status ``info``).
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.data import DataLoader, TensorDataset

from _harness import Status, header, quiet_trainer, result
from lit_noise import (
    ActivationNoise,
    Gaussian,
    GaussianNoise,
    GradientNoise,
    InputNoise,
    LabelSmoothing,
    MixupDataModule,
    NoiseController,
    NoiseLayerSchedule,
    SymmetricFlip,
    TargetNoise,
    WeightNoise,
)
from lit_noise.callbacks import BatchNoise

WIDTH, CLASSES, BATCH = 16, 10, 16
PER_BATCH_HOOKS = (
    "on_train_batch_start",
    "on_before_backward",
    "on_after_backward",
    "on_before_optimizer_step",
    "on_before_zero_grad",
    "on_train_batch_end",
)
Measure = Literal["ops", "calls"]


#: The documentation section these rows link to.
SECTION = "Host-side operations per batch"


class _OpCounter(TorchDispatchMode):
    """Counts the aten ops that reach the dispatcher while it is active, by name."""

    def __init__(self, counts: Counter[str]) -> None:
        super().__init__()
        self.counts = counts

    def __torch_dispatch__(
        self, func: Any, types: Any, args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None
    ) -> Any:
        self.counts[str(func.overloadpacket.__name__)] += 1
        return func(*args, **(kwargs or {}))


@dataclass
class Tally:
    """Counts what runs inside the functions it wraps (not nested twice), batch by batch."""

    measure: Measure
    ops: Counter[str] = field(default_factory=Counter)
    calls: int = 0
    batches: list[int] = field(default_factory=list)
    depth: int = 0
    _closed: int = 0

    def total(self) -> int:
        return sum(self.ops.values()) if self.measure == "ops" else self.calls

    def close_batch(self) -> None:
        total = self.total()
        self.batches.append(total - self._closed)
        self._closed = total

    def _profile(self, frame: Any, event: str, arg: Any) -> None:
        if event in ("call", "c_call"):
            self.calls += 1

    def wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def counted(*args: Any, **kwargs: Any) -> Any:
            if self.depth:
                return fn(*args, **kwargs)
            self.depth += 1
            try:
                if self.measure == "ops":
                    with _OpCounter(self.ops):
                        return fn(*args, **kwargs)
                sys.setprofile(self._profile)
                try:
                    return fn(*args, **kwargs)
                finally:
                    sys.setprofile(None)
                    self.calls -= 1  # the c_call event of this setprofile(None)
            finally:
                self.depth -= 1

        return counted

    def wrap_hooks(self, obj: Any, names: Sequence[str], base: type) -> None:
        """Wrap the methods ``names`` that ``obj``'s class overrides from ``base`` (instance attributes)."""
        for name in names:
            hook = getattr(obj, name, None)
            # Lightning skips a hook that is not callable (a class may set one to None).
            if callable(hook) and getattr(type(obj), name, None) is not getattr(base, name, None):
                setattr(obj, name, self.wrap(hook))

    @contextmanager
    def hooks_registered_inside(self) -> Iterator[None]:
        """Forward hooks registered from counted code are counted too (ActivationNoise's)."""
        original = nn.Module.register_forward_hook

        def register(module: nn.Module, hook: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
            return original(module, self.wrap(hook) if self.depth else hook, *args, **kwargs)

        nn.Module.register_forward_hook = register  # type: ignore[method-assign]
        try:
            yield
        finally:
            nn.Module.register_forward_hook = original  # type: ignore[method-assign]


class _Instrument(pl.Callback):
    """Last callback: closes each batch's count; at train start wraps what the sources added."""

    def __init__(self, tally: Tally, known: Sequence[pl.Callback]) -> None:
        self.tally = tally
        self.known = [*known, self]

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for callback in trainer.callbacks:  # type: ignore[attr-defined]
            added = all(callback is not k for k in self.known)
            if added and type(callback).__module__.startswith("lit_noise."):  # e.g. the mixup logger
                self.tally.wrap_hooks(callback, PER_BATCH_HOOKS, pl.Callback)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        self.tally.close_batch()


class Net(pl.LightningModule):
    """``layers`` Linear layers (``2 * layers`` parameter tensors), a noise layer after each of the first
    ``noisy``."""

    def __init__(self, layers: int, noisy: int = 0) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        for i in range(layers):
            blocks.append(nn.Linear(WIDTH, CLASSES if i == layers - 1 else WIDTH))
            if i < noisy:
                blocks.append(GaussianNoise(std=0.1))
        self.net = nn.Sequential(*blocks)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.net(x)
        return out

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        x, y = batch
        return F.cross_entropy(self(x), y)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("val/acc", (self(x).argmax(1) == y).float().mean())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)


class Data(pl.LightningDataModule):
    def __init__(self) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        x = torch.rand(256, WIDTH, generator=generator)
        self.set = TensorDataset(x, torch.randint(0, CLASSES, (256,), generator=generator))

    def train_dataloader(self) -> DataLoader[Any]:
        return DataLoader(self.set, batch_size=BATCH)

    def val_dataloader(self) -> DataLoader[Any]:
        return DataLoader(self.set, batch_size=BATCH)


@dataclass(frozen=True)
class Case:
    """A noise source; ``make(large)`` gives (model, counted callbacks, other callbacks, data)."""

    source: str
    make: Callable[[bool], tuple[Net, list[pl.Callback], list[pl.Callback], pl.LightningDataModule]]
    small: str = "2 parameter tensors"
    large: str = "200 parameter tensors"
    per_module: bool = False


def _plain(source: Callable[[], pl.Callback]) -> Callable[[bool], Any]:
    def make(large: bool) -> Any:
        return Net(100 if large else 1), [source()], [], Data()

    return make


def _activation(large: bool) -> Any:
    modules: Any = nn.Linear if large else "net.0"
    return Net(16), [ActivationNoise(modules, Gaussian(std=0.1), seed=0)], [], Data()


def _layers(large: bool) -> Any:
    return Net(16, noisy=16 if large else 1), [NoiseLayerSchedule(seed=0)], [], Data()


def _mixup(mode: str) -> Callable[[bool], Any]:
    def make(large: bool) -> Any:
        data = MixupDataModule(Data(), num_classes=CLASSES, mixup_alpha=0.2, mode=mode, seed=0)
        return Net(100 if large else 1), [], [], data

    return make


def _controller(large: bool) -> Any:
    target = InputNoise(Gaussian(std=0.1), seed=0)
    return Net(100 if large else 1), [NoiseController(verbose=False, log_figures=False)], [target], Data()


CASES = [
    Case("InputNoise(Gaussian)", _plain(lambda: InputNoise(Gaussian(std=0.1), seed=0))),
    Case(
        "TargetNoise(SymmetricFlip)",
        _plain(lambda: TargetNoise(SymmetricFlip(p=0.2), num_classes=CLASSES, seed=0)),
    ),
    Case(
        "TargetNoise(LabelSmoothing)",
        _plain(lambda: TargetNoise(LabelSmoothing(eps=0.1), num_classes=CLASSES)),
    ),
    Case("BatchNoise(Gaussian, key=0)", _plain(lambda: BatchNoise(Gaussian(std=0.1), key=0, seed=0))),
    Case("WeightNoise restore='copy'", _plain(lambda: WeightNoise(Gaussian(std=0.01), seed=0))),
    Case(
        "WeightNoise restore='regenerate'",
        _plain(lambda: WeightNoise(Gaussian(std=0.01), restore="regenerate", seed=0)),
    ),
    Case("WeightNoise relative=True", _plain(lambda: WeightNoise(Gaussian(std=0.01), relative=True, seed=0))),
    Case("GradientNoise", _plain(lambda: GradientNoise(std=0.01, seed=0))),
    Case(
        "GradientNoise relative='tensor'", _plain(lambda: GradientNoise(std=0.01, relative="tensor", seed=0))
    ),
    Case("ActivationNoise(Gaussian)", _activation, "1 hooked module", "16 hooked modules", per_module=True),
    Case("MixupDataModule mode='batch'", _mixup("batch")),
    Case("MixupDataModule mode='elem'", _mixup("elem")),
    Case("noise layers + NoiseLayerSchedule", _layers, "1 GaussianNoise layer", "16 layers", per_module=True),
    Case("NoiseController (no per-batch hook)", _controller),
]


def count(case: Case, large: bool, measure: Measure, batches: int) -> tuple[int, list[int], Counter[str]]:
    """``(median count per batch after the first, every batch's count, op names)`` of one fit."""
    model, counted, others, data = case.make(large)
    tally = Tally(measure)
    for callback in counted:
        tally.wrap_hooks(callback, PER_BATCH_HOOKS, pl.Callback)
    if isinstance(data, MixupDataModule):
        data.on_after_batch_transfer = tally.wrap(data.on_after_batch_transfer)  # type: ignore[method-assign]
    for module in model.modules():
        if isinstance(module, GaussianNoise):
            module.forward = tally.wrap(module.forward)  # type: ignore[method-assign]
    validate = any(isinstance(c, NoiseController) for c in counted)
    trainer = quiet_trainer(
        [*counted, *others, _Instrument(tally, [*counted, *others])],
        max_epochs=1,
        limit_train_batches=batches,
        limit_val_batches=1 if validate else 0,
        num_sanity_val_steps=0,
    )
    pl.seed_everything(0, verbose=False)
    with tally.hooks_registered_inside():
        trainer.fit(model, datamodule=data)
    steady = tally.batches[1:]
    return int(statistics.median(steady)), tally.batches, tally.ops


def self_check() -> None:
    """The counters on code whose counts are known: two aten ops, three builtin calls."""
    x = torch.ones(3)
    ops, calls = Tally("ops"), Tally("calls")

    def work() -> None:
        x.add(1).mul(2)
        len([abs(-1), abs(1)])

    ops.wrap(work)()
    calls.wrap(work)()
    # calls: work itself, then x.add, .mul (builtin methods), abs, abs, len
    if dict(ops.ops) != {"add": 1, "mul": 1} or calls.calls != 6:
        raise RuntimeError(f"the counters are off: ops {dict(ops.ops)}, calls {calls.calls}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=6, help="training batches per fit (>= 3)")
    parser.add_argument("--profile", action="store_true", help="list every source's aten ops by name")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    header("Host-side operations per training batch of every noise source (counts, not times)")
    self_check()
    print(
        "aten ops: operator calls reaching the dispatcher inside the source's own per-batch code (a"
        " TorchDispatchMode counter);\nPython calls: function and builtin calls there (sys.setprofile);"
        f" median over batches 2..{args.batches} of a fit of a {WIDTH}-wide MLP, batch {BATCH}.\n"
    )
    print(
        f"{'source':38s} {'aten ops small':>14s} {'large':>6s} {'calls small':>12s} {'large':>6s}"
        f" {'syncs':>6s}  grows?"
    )
    for case in CASES:
        ops = {large: count(case, large, "ops", args.batches) for large in (False, True)}
        calls = {large: count(case, large, "calls", args.batches)[0] for large in (False, True)}
        small_ops, large_ops = ops[False][0], ops[True][0]
        grows = large_ops > small_ops
        if case.per_module:
            per = (large_ops - small_ops) / 15
            verdict = f"yes, {per:g} ops per module (by design)"
        else:
            verdict = "yes" if grows else "no"
            if calls[True] > calls[False]:
                verdict += f" (Python calls grow: +{calls[True] - calls[False]})"
        syncs = ops[True][2]["_local_scalar_dense"]  # .item(), bool(tensor): the host waits for the device
        numbers = f"{small_ops:>14d} {large_ops:>6d} {calls[False]:>12d} {calls[True]:>6d} {syncs:>6d}"
        print(f"{case.source:38s} {numbers}  {verdict}")
        for large in (False, True):
            counts = ops[large][1]
            if len(set(counts[1:])) > 1:
                print(f"    {'large' if large else 'small'}: the batches differ: {counts}")
        if args.profile or (grows and not case.per_module):
            names = ", ".join(f"{n} x{c}" for n, c in ops[True][2].most_common())
            print(f"    aten ops of {args.batches} batches ({case.large}): {names or 'none'}")
        measured = (
            f"{small_ops} / {large_ops} aten ops ({calls[False]} / {calls[True]} Python calls)"
            f" with {case.small} / {case.large}"
        ) + (f"; {syncs} host syncs (.item(), CPU path) in {args.batches} batches" if syncs else "")
        row = f"host ops per batch: {case.source}"
        if case.per_module:
            result(
                row,
                f"{measured}: {per:g} aten ops per module",
                "",
                "info",
                "grows per module by design",
                SECTION,
            )
        else:
            status: Status = "missed" if grows else "met"
            result(row, measured, "no growth with #params", status, f"the count with {case.small}", SECTION)


if __name__ == "__main__":
    main()
