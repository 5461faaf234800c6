"""WeightNoise: exact perturb-and-restore, clean checkpoints, awkward loops, refusals, resume."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import (
    BackboneFinetuning,
    ModelCheckpoint,
    OnExceptionCheckpoint,
)
from lightning.pytorch.strategies import FSDPStrategy, SingleDeviceStrategy
from scipy import stats
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode

from _param_noise_reference import (
    FINETUNING_CASES,
    FINETUNING_IDS,
    Finetuned,
    Net,
    StepRecorder,
    UnfreezeForOneEpoch,
    ValNet,
    assert_same_optimizer_state,
    assert_same_weights,
    make_loader,
    reference_loop,
    resume_with_backbone_frozen,
    snapshot,
    weight_generator,
)
from lit_noise import (
    ConfigurationError,
    Gaussian,
    GradientNoise,
    LabelSmoothing,
    Laplace,
    Linear,
    Mask,
    SaltAndPepper,
    Speckle,
    Uniform,
    WeightNoise,
)
from lit_noise.functional.params import (
    FlatLayout,
    gaussian_,
    laplace_,
    normalize_patterns,
    select_names,
    uniform_,
)

CPU = torch.device("cpu")
NAMES = ["encoder.0.weight", "encoder.0.bias", "encoder.norm.weight", "head.weight", "head.bias"]


def gens(seed: int) -> dict[torch.device, torch.Generator]:
    return {CPU: torch.Generator().manual_seed(seed)}


def strip(state: dict[str, Tensor]) -> dict[str, Tensor]:
    return {k.removeprefix("net."): v for k, v in state.items()}


def load_weights(path: Path | str) -> dict[str, Tensor]:
    return strip(torch.load(path, weights_only=True)["state_dict"])


# ============================================================================ functional layer


def test_select_names_globs_regexes_include_exclude() -> None:
    assert select_names("W", NAMES) == [0, 1, 2, 3, 4]
    assert select_names("W", NAMES, include=["encoder.*"]) == [0, 1, 2]
    assert select_names("W", NAMES, exclude=["*.bias"]) == [0, 2, 3]
    assert select_names("W", NAMES, include=["encoder.*"], exclude=["*.bias", "*norm*"]) == [0]
    # Regexes are full matches: "re:weight" alone matches nothing, "re:.*weight" does.
    assert select_names("W", NAMES, include=["re:.*[.]weight"]) == [0, 2, 3]
    assert select_names("W", NAMES, include=["re:head[.].*", "encoder.0.*"]) == [0, 1, 3, 4]


def test_select_names_errors_list_some_names() -> None:
    with pytest.raises(ConfigurationError, match=r"`include` pattern 'decoder\.\*' matches no") as err:
        select_names("WeightNoise", NAMES, include=["decoder.*"])
    assert "encoder.0.weight" in str(err.value)
    assert "head.bias" in str(err.value)
    with pytest.raises(ConfigurationError, match=r"`exclude` pattern 're:weight' matches no"):
        select_names("WeightNoise", NAMES, exclude=["re:weight"])
    with pytest.raises(ConfigurationError, match="select no parameter"):
        select_names("WeightNoise", NAMES, include=["head.*"], exclude=["head.*"])
    # An exclude pattern that matches parameters, but none of those `include` selects, is refused.
    with pytest.raises(
        ConfigurationError,
        match=r"^WeightNoise: `exclude` pattern 'head\.\*' removes nothing from what"
        r" include=\['encoder\.\*'\] selects: encoder\.0\.weight, ",
    ):
        select_names("WeightNoise", NAMES, include=["encoder.*"], exclude=["*.bias", "head.*"])
    assert select_names("WeightNoise", NAMES, include=["encoder.*"], exclude=["*.bias"]) == [0, 2]
    many = [f"layer{i}.weight" for i in range(30)]
    with pytest.raises(ConfigurationError, match=r"\(30 in all\)"):
        select_names("WeightNoise", many, include=["nothing"])
    with pytest.raises(ConfigurationError, match="the model has no parameter to add noise to"):
        select_names("WeightNoise", [])


@pytest.mark.parametrize(
    ("patterns", "message"),
    [
        ([], "non-empty list"),
        ([""], "non-empty pattern strings"),
        (["re:"], "non-empty pattern strings"),
        ([3], "non-empty pattern strings"),
        (5, "a pattern string or a sequence"),
        (["re:(unclosed"], "valid regular expression"),
    ],
)
def test_normalize_patterns_rejects(patterns: Any, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as err:
        normalize_patterns("WeightNoise", "include", patterns)
    assert "WeightNoise: `include`" in str(err.value)


def test_normalize_patterns_accepts_any_sequence() -> None:
    assert normalize_patterns("W", "exclude", ("*.bias",)) == ("*.bias",)
    assert normalize_patterns("W", "exclude", []) == ()
    assert normalize_patterns("W", "include", None) is None


def test_samplers_follow_their_distributions() -> None:
    g = torch.Generator().manual_seed(0)
    n = 50_000
    assert stats.kstest(gaussian_(torch.empty(n), 0.3, 0.1, g).numpy(), "norm", args=(0.1, 0.3)).pvalue > 1e-3
    assert stats.kstest(uniform_(torch.empty(n), 0.5, g).numpy(), "uniform", args=(-0.25, 0.5)).pvalue > 1e-3
    assert stats.kstest(laplace_(torch.empty(n), 0.2, g).numpy(), "laplace", args=(0.0, 0.2)).pvalue > 1e-3
    assert torch.isfinite(laplace_(torch.empty(n), 1.0, g)).all()


def _tensors() -> list[Tensor]:
    g = torch.Generator().manual_seed(1)
    return [torch.randn(shape, generator=g) for shape in [(5, 3), (7,), (4, 4), (2, 3, 2), (9,)]]


@pytest.mark.parametrize("chunk_numel", [None, 1, 16, 30])
def test_layout_draws_one_flat_buffer_per_chunk(chunk_numel: int | None) -> None:
    """The documented draw order: chunks of consecutive tensors, one draw each, from one generator."""
    tensors = _tensors()
    before = [t.clone() for t in tensors]
    layout = FlatLayout(tensors, chunk_numel=chunk_numel)
    sizes = [t.numel() for t in tensors]
    layout.add_(lambda out, g: gaussian_(out, 0.5, 0.0, g), gens(7))
    # Rebuild the chunks by hand: greedy runs of at most chunk_numel elements (a bigger tensor alone).
    budget = chunk_numel or 1 << 18
    runs: list[list[int]] = [[]]
    total = 0
    for i, size in enumerate(sizes):
        if runs[-1] and total + size > budget:
            runs.append([])
            total = 0
        runs[-1].append(i)
        total += size
    assert [c.indices for c in layout.chunks] == runs
    g = torch.Generator().manual_seed(7)
    for run in runs:
        draw = torch.empty(sum(sizes[i] for i in run)).normal_(0.0, 0.5, generator=g)
        for i, piece in zip(run, draw.split([sizes[i] for i in run]), strict=True):
            assert torch.equal(tensors[i], before[i] + piece.view_as(before[i]))
    assert layout.nbytes == 4 * max(sum(sizes[i] for i in run) for run in runs)


def test_layout_groups_by_dtype_and_keeps_order() -> None:
    tensors = [torch.zeros(3), torch.zeros(2, dtype=torch.float64), torch.zeros(4)]
    layout = FlatLayout(tensors, keep_copy=True)
    assert [c.indices for c in layout.chunks] == [[0, 2], [1]]
    assert layout.nbytes == 2 * (7 * 4 + 2 * 8)  # scratch + clean copy per dtype
    layout.save_()
    layout.add_(lambda out, g: out.fill_(1.0), gens(0))
    assert all(bool(t.eq(1).all()) for t in tensors)
    assert [c.dtype for c in layout.clean_copies()] == [torch.float32, torch.float64, torch.float32]
    layout.restore_()
    assert all(bool(t.eq(0).all()) for t in tensors)


def test_copy_restore_is_bit_identical_and_regenerate_within_bound() -> None:
    tensors = _tensors()
    clean = [t.clone() for t in tensors]
    layout = FlatLayout(tensors, chunk_numel=16, keep_copy=True)
    sample = lambda out, g: gaussian_(out, 3.0, 0.0, g)  # noqa: E731
    layout.save_()
    done = layout.add_(sample, gens(3))
    noisy = [t.clone() for t in tensors]
    layout.restore_()
    assert all(torch.equal(a, b) for a, b in zip(tensors, clean, strict=True))
    # Regenerate: replay and subtract; the error is at most one rounding of w + n and one of (w + n) - n.
    layout.add_(sample, gens(3))
    assert all(torch.equal(a, b) for a, b in zip(tensors, noisy, strict=True))
    layout.sub_(sample, gens(3), done)
    eps = torch.finfo(torch.float32).eps
    worst = 0.0
    for w, c, v in zip(tensors, clean, noisy, strict=True):
        bound = eps * torch.maximum(c.abs(), v.abs())
        assert bool(((w - c).abs() <= bound).all())
        worst = max(worst, float((w - c).abs().max()))
    assert worst > 0.0  # rounding does show: regenerate is not exact, the bound is what holds


def test_restore_before_backward_raises() -> None:
    """Restoring bumps the version counter, so a premature restore cannot silently use wrong weights."""
    w = nn.Parameter(torch.randn(4))
    layout = FlatLayout([w], keep_copy=True)
    layout.save_()
    with torch.no_grad():
        layout.add_(lambda out, g: gaussian_(out, 1.0, 0.0, g), gens(0))
    loss = (w * w).sum()
    with torch.no_grad():
        layout.restore_()
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


def _stat_tensors() -> list[Tensor]:
    """Sizes around the 32-element rows of the statistics layout, and the numerically awkward cases."""
    g = torch.Generator().manual_seed(0)
    return [
        torch.randn(50, 20, generator=g),
        1000.0 + 0.01 * torch.randn(400, generator=g),  # mean dwarfs the spread
        1.0 + 1e-3 * torch.randn(100_000, generator=g),  # long, near-constant (a norm layer's weight)
        torch.full((30,), 0.1),  # constant, not exactly representable
        torch.zeros(8),  # zero-initialised bias
        torch.tensor([2.5]),  # single element
        torch.randn((), generator=g),  # 0-d
        5.0 + torch.rand(33, generator=g),  # one element past a row
        -3.0 * torch.rand(32, generator=g),  # exactly one row
        torch.randn(257, generator=g).to(torch.float64),  # another dtype: a chunk of its own
    ]


@pytest.mark.parametrize("chunk_numel", [None, 64, 1000])
@pytest.mark.parametrize("keep_copy", [True, False])
def test_relative_std_is_population_std_and_zero_for_constant_tensors(
    chunk_numel: int | None, keep_copy: bool
) -> None:
    tensors = _stat_tensors()
    before = [t.clone() for t in tensors]
    layout = FlatLayout(tensors, chunk_numel=chunk_numel, keep_copy=keep_copy, stats=True)
    if keep_copy:
        layout.save_()  # the statistics are read from the clean copy
    got = {
        i: float(s) for chunk in layout.chunks for i, s in zip(chunk.indices, layout.std_(chunk), strict=True)
    }
    want = [float(np.std(t.double().numpy())) for t in tensors]  # float64 oracle
    for i, t in enumerate(tensors):
        # within a few float32 roundings of the float64 value (the float32 inputs themselves are exact)
        assert got[i] == pytest.approx(want[i], rel=3e-7 if t.dtype == torch.float32 else 1e-12, abs=0.0), i
    assert [got[i] for i in (3, 4, 5, 6)] == [0.0] * 4  # exactly zero: constant tensors get no noise
    assert all(torch.equal(t, b) for t, b in zip(tensors, before, strict=True))  # read only


def test_stats_layout_draws_the_plain_stream_and_restores_exactly() -> None:
    """The blocked layout pads the copy and the statistics, never the draw: the noise is the plain one."""
    plain, blocked = _stat_tensors(), _stat_tensors()
    clean = [t.clone() for t in plain]
    layouts = [FlatLayout(plain, 64, keep_copy=True), FlatLayout(blocked, 64, keep_copy=True, stats=True)]
    assert layouts[1].nbytes > layouts[0].nbytes  # padding to rows of STATS_BLOCK
    for layout in layouts:
        layout.save_()
        layout.add_(lambda out, g: gaussian_(out, 0.1, 0.0, g), gens(4))
    assert all(torch.equal(a, b) for a, b in zip(plain, blocked, strict=True))
    assert not torch.equal(plain[0], clean[0])
    layouts[1].restore_()
    assert all(torch.equal(a, b) for a, b in zip(blocked, clean, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(layouts[1].clean_copies(), clean, strict=True))
    with pytest.raises(RuntimeError, match="stats=False"):
        layouts[1].replace_(lambda x, g: x, gens(0))
    with pytest.raises(RuntimeError, match="stats=True"):
        layouts[0].std_(layouts[0].chunks[0])


def test_relative_noise_is_each_tensors_draw_times_its_std() -> None:
    """Hand-written oracle: one draw per chunk, split in tensor order, times the float64 std."""
    tensors = _stat_tensors()[:9]  # float32 only: one generator stream through the chunks
    clean = [t.clone() for t in tensors]
    layout = FlatLayout(tensors, chunk_numel=500, keep_copy=True, stats=True)
    layout.save_()
    done = layout.add_(lambda out, g: gaussian_(out, 0.5, 0.0, g), gens(9), relative=True)
    g = torch.Generator().manual_seed(9)
    for chunk in layout.chunks:
        draw = torch.empty(sum(clean[i].numel() for i in chunk.indices)).normal_(0.0, 0.5, generator=g)
        for i, piece in zip(
            chunk.indices, draw.split([clean[i].numel() for i in chunk.indices]), strict=True
        ):
            noise = piece.double().view_as(clean[i]) * float(np.std(clean[i].double().numpy()))
            # two float32 roundings (the product, the sum) and the float32 std's few ulps
            bound = 1.2e-7 * (clean[i].double().abs() + 4 * noise.abs())
            assert bool(((tensors[i].double() - (clean[i].double() + noise)).abs() <= bound).all()), i
    layout.sub_(lambda out, g: gaussian_(out, 0.5, 0.0, g), gens(9), done)  # regenerate: within the bound
    eps = torch.finfo(torch.float32).eps
    for t, c in zip(tensors, clean, strict=True):
        assert bool(((t - c).abs() <= 2 * eps * c.abs().clamp(min=1.0)).all())


def test_both_ways_of_scaling_the_noise_give_the_same_noise(monkeypatch: pytest.MonkeyPatch) -> None:
    """The accelerators' way (factors repeated over the elements), run here on CPU, matches bit for bit."""
    results = []
    for foreach in ({"cpu"}, set()):
        monkeypatch.setattr("lit_noise.functional.params._FOREACH_SCALING", frozenset(foreach))
        tensors = _stat_tensors()
        grads: list[Tensor | None] = [torch.zeros_like(t) for t in tensors]
        grads[2] = None
        layout = FlatLayout(tensors, chunk_numel=300, keep_copy=True, stats=True)
        layout.save_()
        layout.add_(lambda out, g: uniform_(out, 0.3, g), gens(2), relative=True)
        layout.add_(
            lambda out, g: gaussian_(out, 0.1, 0.0, g), gens(3), targets=grads, factors=layout.rms(grads)
        )
        results.append(tensors + [g for g in grads if g is not None])
    assert all(torch.equal(a, b) for a, b in zip(*results, strict=True))
    assert not torch.equal(results[0][0], _stat_tensors()[0])


class _CountOps(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        self.count += 1
        return func(*args, **(kwargs or {}))


def _ops(step: Callable[[], object]) -> int:
    with _CountOps() as counter:
        step()
    return counter.count


def _ops_per_call(n: int, keep_copy: bool) -> list[int]:
    """aten ops of each layout call of a step, on one chunk of ``n`` tensors."""
    tensors = [torch.randn(7 + i % 40) for i in range(n)]
    layout = FlatLayout(tensors, chunk_numel=1 << 20, keep_copy=keep_copy, stats=True)
    sample = lambda out, g: gaussian_(out, 0.1, 0.0, g)  # noqa: E731
    done: list[Tensor | None] = []
    steps: list[Callable[[], object]] = [
        lambda: layout.add_(sample, gens(0), relative=True, done=done),
        lambda: layout.sub_(sample, gens(0), done),
        lambda: layout.rms(tensors),
        lambda: layout.add_(sample, gens(0), targets=tensors, factors=layout.rms(tensors, per_tensor=False)),
    ]
    if keep_copy:
        steps = [layout.save_, *steps, layout.restore_]
    return [_ops(step) for step in steps]


@pytest.mark.parametrize("keep_copy", [True, False])
def test_aten_ops_per_step_do_not_grow_with_the_number_of_tensors(keep_copy: bool) -> None:
    """One chunk of 3 tensors or of 300 (same dtype and device): the same ops, none per tensor."""
    few, many = _ops_per_call(3, keep_copy), _ops_per_call(300, keep_copy)
    assert few == many
    assert max(many) < 40


def test_relative_noise_is_scaled_by_each_tensors_std() -> None:
    g = torch.Generator().manual_seed(0)
    tensors = [
        3.0 * torch.randn(200, 100, generator=g),
        0.1 * torch.randn(300, 100, generator=g),
        torch.ones(64),
    ]
    clean = [t.clone() for t in tensors]
    layout = FlatLayout(tensors, stats=True)
    layout.add_(lambda out, gen: gaussian_(out, 0.05, 0.0, gen), gens(1), relative=True)
    for t, c in zip(tensors[:2], clean[:2], strict=True):
        ratio = ((t - c).std() / (0.05 * c.std(correction=0))).item()
        assert abs(ratio - 1.0) < 0.03  # n = 20k..30k: the std estimate is good to < 1 %
    assert torch.equal(tensors[2], clean[2])  # zero variance: no noise


def test_targets_with_missing_gradients_keep_the_others_noise() -> None:
    tensors = _tensors()
    layout = FlatLayout(tensors, chunk_numel=20)
    full = [torch.zeros_like(t) for t in tensors]
    partial: list[Tensor | None] = [torch.zeros_like(t) for t in tensors]
    partial[1] = partial[3] = None
    sample = lambda out, g: gaussian_(out, 1.0, 0.0, g)  # noqa: E731
    layout.add_(sample, gens(5), targets=full)
    layout.add_(sample, gens(5), targets=partial)
    for i in (0, 2, 4):
        assert torch.equal(full[i], partial[i])  # type: ignore[arg-type]


# ============================================================================ constructor checks


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"restore": "swap"}, r"`restore` must be one of 'copy', 'regenerate', got 'swap'"),
        ({"relative": 1}, r"`relative` must be True or False"),
        ({"include": "decoder.*["}, None),  # a glob with an unclosed set is still a valid glob
        ({"include": ["re:("]}, "valid regular expression"),
        ({"chunk_size": 0}, r"`chunk_size` must be an integer >= 1"),
        ({"closure_optimizers": "LBFGS"}, "sequence of optimizer class names"),
        ({"closure_optimizers": [""]}, "non-empty class name"),
        ({"scale": -1.0}, r"`scale` must be >= 0"),
        ({"seed": -3}, r"`seed` must be an integer in \[0, 2\*\*64 - 1\], got -3"),
    ],
)
def test_constructor_rejects_bad_arguments(kwargs: dict[str, Any], message: str | None) -> None:
    if message is None:
        WeightNoise(Gaussian(0.1), **kwargs)
        return
    with pytest.raises(ConfigurationError, match=message):
        WeightNoise(Gaussian(0.1), **kwargs)


@pytest.mark.parametrize("noise", [SaltAndPepper(0.1), LabelSmoothing(0.1), "gaussian", None])
def test_unsupported_noise_is_refused(noise: Any) -> None:
    with pytest.raises(ConfigurationError, match="`noise` must be Gaussian, Uniform or Laplace"):
        WeightNoise(noise)


def test_negative_std_is_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"`std` must be >= 0"):
        WeightNoise(Gaussian(std=-0.1))
    with pytest.raises(ConfigurationError, match=r"`std` must be >= 0"):
        WeightNoise(Gaussian(std=Linear(start=0.1, end=-0.1, until=1.0)))


@pytest.mark.parametrize(
    ("noise", "kwargs"), [(Speckle(0.1), {"relative": True}), (Mask(0.1), {"restore": "regenerate"})]
)
def test_non_additive_noise_needs_copy_and_absolute(noise: Any, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError, match="an additive noise"):
        WeightNoise(noise, **kwargs)


# ============================================================================ training


def fit(
    make_trainer: Callable[..., pl.Trainer],
    callbacks: list[pl.Callback],
    model: pl.LightningModule | None = None,
    val: bool = False,
    **trainer_kwargs: Any,
) -> tuple[pl.Trainer, pl.LightningModule]:
    model = model if model is not None else (ValNet() if val else Net())
    options: dict[str, Any] = {"max_epochs": 2, "callbacks": callbacks, "limit_val_batches": 2 if val else 0}
    options.update(trainer_kwargs)
    trainer = make_trainer(**options)
    trainer.fit(model, make_loader(), make_loader(batch_size=16) if val else None)
    return trainer, model


STD = Linear(start=0.05, end=0.01, until=10, unit="step")  # scheduled: checks the clock too


def std_at(step: int) -> float:
    return STD.value(step)


@pytest.mark.parametrize(
    ("restore", "relative"), [("copy", False), ("regenerate", False), ("copy", True), ("regenerate", True)]
)
def test_matches_hand_written_reference_loop(
    make_trainer: Callable[..., pl.Trainer], restore: str, relative: bool
) -> None:
    recorder = StepRecorder()
    noise = WeightNoise(Gaussian(std=STD), relative=relative, restore=restore, seed=11)  # type: ignore[arg-type]
    trainer, _ = fit(make_trainer, [noise, recorder])
    ref = reference_loop(make_loader(), 2, weight_seed=11, weight_std=std_at, relative=relative)
    assert len(recorder.steps) == len(ref.steps) == 16
    exact = restore == "copy" and not relative
    for got, want in zip(recorder.steps, ref.steps, strict=True):
        assert_same_weights(got, want, exact=exact)
    assert_same_optimizer_state(trainer.optimizers[0], ref.optimizer)  # type: ignore[arg-type]
    # ... and the noise mattered: a noiseless run ends elsewhere.
    plain = reference_loop(make_loader(), 2)
    assert not torch.allclose(plain.steps[-1]["0.weight"], ref.steps[-1]["0.weight"], atol=1e-4)


@pytest.mark.parametrize("accumulate", [2, 3])
def test_gradient_accumulation_never_stacks_noise(
    make_trainer: Callable[..., pl.Trainer], accumulate: int
) -> None:
    recorder = StepRecorder()
    noise = WeightNoise(Gaussian(std=0.05), seed=5)
    fit(make_trainer, [noise, recorder], accumulate_grad_batches=accumulate)
    ref = reference_loop(make_loader(), 2, weight_seed=5, weight_std=lambda s: 0.05, accumulate=accumulate)
    assert len(recorder.steps) == len(ref.steps) == 2 * math.ceil(8 / accumulate)
    for got, want in zip(recorder.steps, ref.steps, strict=True):
        assert_same_weights(got, want, exact=False)


class Probe(pl.Callback):
    """Records weights and gradients at hooks; placed before or after WeightNoise in the list."""

    def __init__(self) -> None:
        self.at: dict[str, list[dict[str, Tensor]]] = {}

    def _keep(self, hook: str, module: pl.LightningModule, grads: bool = False) -> None:
        pairs = [(n, p.grad if grads else p) for n, p in module.named_parameters()]
        values = {n: v.detach().clone() for n, v in pairs if v is not None}
        self.at.setdefault(hook, []).append(values)

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        self._keep("batch_start", pl_module)

    def on_after_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._keep("after_backward", pl_module)
        self._keep("grad", pl_module, grads=True)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        self._keep("batch_end", pl_module)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._keep("epoch_end", pl_module)

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._keep("validation_start", pl_module)


class Quadratic(Net):
    """Loss 0.5 * ||w||^2 of the first layer's weight: its gradient is the weight itself."""

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        return 0.5 * self.net[0].weight.pow(2).sum() + 0.0 * self.net[2].weight.sum()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.mark.parametrize("restore", ["copy", "regenerate"])
def test_gradient_is_taken_at_the_noisy_point_and_restore_is_exact(
    make_trainer: Callable[..., pl.Trainer], restore: str
) -> None:
    before, after = Probe(), Probe()
    noise = WeightNoise(Gaussian(std=0.5), include="net.0.weight", restore=restore, seed=2)  # type: ignore[arg-type]
    fit(make_trainer, [before, noise, after], model=Quadratic(), max_epochs=1, limit_train_batches=3)
    for i in range(3):
        clean = before.at["batch_start"][i]["net.0.weight"]
        noisy = after.at["batch_start"][i]["net.0.weight"]
        grad = after.at["grad"][i]["net.0.weight"]
        restored = after.at["after_backward"][i]["net.0.weight"]
        assert (noisy - clean).std().item() == pytest.approx(0.5, rel=0.25)  # 128 draws
        assert torch.equal(grad, noisy)  # d/dw 0.5||w||^2 = w, at the noisy w
        assert not torch.allclose(grad, clean, atol=0.1)
        if restore == "copy":
            assert torch.equal(restored, clean)
        else:
            bound = torch.finfo(torch.float32).eps * torch.maximum(clean.abs(), noisy.abs())
            assert bool(((restored - clean).abs() <= bound).all())
        # Excluded parameters are untouched.
        assert torch.equal(
            after.at["batch_start"][i]["net.2.weight"], before.at["batch_start"][i]["net.2.weight"]
        )
    # The step applied the noisy-point gradient to the clean weight (SGD, lr 0.1).
    c0, n0 = before.at["batch_start"][0]["net.0.weight"], after.at["batch_start"][0]["net.0.weight"]
    torch.testing.assert_close(before.at["batch_start"][1]["net.0.weight"], c0 - 0.1 * n0)


@pytest.mark.parametrize("restore", ["copy", "regenerate"])
@pytest.mark.parametrize(
    ("noise", "distribution"),
    [
        (Gaussian(std=0.3), ("norm", (0.0, 0.3))),
        (Uniform(width=0.6), ("uniform", (-0.3, 0.6))),
        (Laplace(scale=0.2), ("laplace", (0.0, 0.2))),
    ],
)
def test_each_additive_noise_and_restore_mode(
    make_trainer: Callable[..., pl.Trainer],
    noise: Any,
    distribution: tuple[str, tuple[float, float]],
    restore: str,
) -> None:
    before, after = Probe(), Probe()
    cb = WeightNoise(noise, restore=restore, seed=1)  # type: ignore[arg-type]
    fit(make_trainer, [before, cb, after], max_epochs=1, limit_train_batches=4)
    eps = torch.finfo(torch.float32).eps
    deltas = []
    for i in range(4):
        for name, clean in before.at["batch_start"][i].items():
            noisy, restored = after.at["batch_start"][i][name], after.at["after_backward"][i][name]
            deltas.append((noisy - clean).flatten())
            if restore == "copy":
                assert torch.equal(restored, clean)
            else:
                assert bool(((restored - clean).abs() <= eps * torch.maximum(clean.abs(), noisy.abs())).all())
    sample = torch.cat(deltas).double().numpy()  # 4 x 195 draws
    name, args = distribution
    assert stats.kstest(sample, name, args=args).pvalue > 1e-3


def test_zero_strength_steps_leave_weights_alone(make_trainer: Callable[..., pl.Trainer]) -> None:
    before, after = Probe(), Probe()
    std = Linear(start=0.0, end=0.1, begin=2, until=4, unit="step")  # 0 at steps 0, 1, 2
    noise = WeightNoise(Gaussian(std=std), seed=0)
    fit(make_trainer, [before, noise, after], max_epochs=1, limit_train_batches=4)
    for i in range(3):
        assert_same_weights(after.at["batch_start"][i], before.at["batch_start"][i])
    assert not torch.equal(
        after.at["batch_start"][3]["net.0.weight"], before.at["batch_start"][3]["net.0.weight"]
    )
    assert noise.last_values == {"std": pytest.approx(0.05), "mean": 0.0}


def test_buffers_are_never_touched(make_trainer: Callable[..., pl.Trainer]) -> None:
    class WithNorm(Net):
        def __init__(self) -> None:
            super().__init__()
            self.norm = nn.BatchNorm1d(8)

        def training_step(self, batch: Any, batch_idx: int) -> Tensor:
            x, y = batch
            return F.cross_entropy(self.net(self.norm(x)), y)

    model = WithNorm()
    seen: list[Tensor] = []

    class Spy(pl.Callback):
        def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *a: Any) -> None:
            seen.append(pl_module.norm.running_mean.clone())

    noise = WeightNoise(Gaussian(std=1.0), seed=0)
    fit(make_trainer, [noise, Spy()], model=model, max_epochs=1, limit_train_batches=2)
    assert torch.equal(seen[0], torch.zeros(8))  # a perturbed buffer would not be zero here


def test_relative_leaves_zero_variance_tensors_clean(make_trainer: Callable[..., pl.Trainer]) -> None:
    model = Net()
    with torch.no_grad():
        model.net[0].bias.fill_(0.25)  # constant tensor: zero variance
    before, after = Probe(), Probe()
    noise = WeightNoise(Gaussian(std=0.1), relative=True, seed=0)
    fit(make_trainer, [before, noise, after], model=model, max_epochs=1, limit_train_batches=1)
    b, a = before.at["batch_start"][0], after.at["batch_start"][0]
    assert torch.equal(a["net.0.bias"], b["net.0.bias"])  # defined: no noise
    spread = b["net.0.weight"].std(correction=0)
    assert (a["net.0.weight"] - b["net.0.weight"]).std().item() == pytest.approx(
        0.1 * spread.item(), rel=0.25
    )


@pytest.mark.parametrize(("noise", "check"), [(Mask(p=0.5), "zeros"), (Speckle(std=0.2), "relative")])
def test_dropconnect_and_speckle_with_copy(
    make_trainer: Callable[..., pl.Trainer], noise: Any, check: str
) -> None:
    before, after = Probe(), Probe()
    cb = WeightNoise(noise, include="net.0.weight", seed=0)
    fit(make_trainer, [before, cb, after], max_epochs=1, limit_train_batches=2)
    clean, noisy = before.at["batch_start"][0]["net.0.weight"], after.at["batch_start"][0]["net.0.weight"]
    if check == "zeros":
        assert noisy.eq(0).float().mean().item() == pytest.approx(0.5, abs=0.15)
        kept = noisy.ne(0)
        assert torch.equal(noisy[kept], clean[kept])
    else:
        assert ((noisy / clean) - 1).std().item() == pytest.approx(0.2, rel=0.3)
    assert torch.equal(after.at["after_backward"][0]["net.0.weight"], clean)


# ---------------------------------------------------------------------------- clean checkpoints


@pytest.mark.parametrize("restore", ["copy", "regenerate"])
def test_step_and_epoch_checkpoints_hold_clean_weights(
    make_trainer: Callable[..., pl.Trainer], tmp_path: Path, restore: str
) -> None:
    steps = ModelCheckpoint(
        dirpath=tmp_path / "steps", filename="{step}", every_n_train_steps=3, save_top_k=-1
    )
    epochs = ModelCheckpoint(
        dirpath=tmp_path / "epochs",
        filename="{epoch}",
        every_n_epochs=1,
        save_top_k=-1,
        save_on_train_epoch_end=True,
    )
    noise = WeightNoise(Gaussian(std=0.05), restore=restore, seed=3)  # type: ignore[arg-type]
    fit(make_trainer, [steps, noise, epochs], enable_checkpointing=True)
    ref = reference_loop(make_loader(), 2, weight_seed=3, weight_std=lambda s: 0.05)
    exact = restore == "copy"
    for step in (3, 6, 9, 12, 15):
        assert_same_weights(
            load_weights(tmp_path / "steps" / f"step={step}.ckpt"), ref.steps[step - 1], exact
        )
    for epoch in (0, 1):
        assert_same_weights(
            load_weights(tmp_path / "epochs" / f"epoch={epoch}.ckpt"), ref.steps[8 * epoch + 7], exact
        )


def test_validation_checkpoints_and_validation_see_clean_weights(
    make_trainer: Callable[..., pl.Trainer], tmp_path: Path
) -> None:
    ckpt = ModelCheckpoint(
        dirpath=tmp_path / "ckpt",
        filename="{step}",
        monitor="val_loss",
        save_top_k=-1,
        save_on_train_epoch_end=False,
    )
    probe = Probe()
    noise = WeightNoise(Gaussian(std=0.05), seed=4)
    fit(make_trainer, [noise, probe, ckpt], val=True, val_check_interval=4, enable_checkpointing=True)
    ref = reference_loop(make_loader(), 2, weight_seed=4, weight_std=lambda s: 0.05)
    for step in (4, 8, 12, 16):
        assert_same_weights(load_weights(tmp_path / "ckpt" / f"step={step}.ckpt"), ref.steps[step - 1])
    # The sanity check plus 4 validation passes started at clean weights.
    starts = probe.at["validation_start"]
    assert len(starts) == 5
    for start, step in zip(starts[1:], (4, 8, 12, 16), strict=True):
        assert_same_weights(strip(start), ref.steps[step - 1])


class SavesInsideTrainingStep(Net):
    """Saves a checkpoint from inside training_step, while the weights are noisy."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path

    def training_step(self, batch: Any, batch_idx: int) -> Tensor | None:
        if self.global_step == 2:
            self.trainer.save_checkpoint(self.path)
        return super().training_step(batch, batch_idx)


class TiedSaves(SavesInsideTrainingStep):
    """Ties a second head's weight to ``net.2.weight``: the state_dict holds it under two names."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.tied = nn.Linear(16, 3)
        self.tied.weight = self.net[2].weight


def test_checkpoint_saved_while_noisy_cleans_every_alias(
    make_trainer: Callable[..., pl.Trainer], tmp_path: Path
) -> None:
    path = tmp_path / "inside.ckpt"
    before = Probe()
    fit(make_trainer, [before, WeightNoise(Gaussian(std=0.05), seed=6)], model=TiedSaves(path), max_epochs=1)
    saved = torch.load(path, weights_only=True)["state_dict"]
    clean = before.at["batch_start"][2]["net.2.weight"]
    assert torch.equal(saved["net.2.weight"], clean)
    assert torch.equal(saved["tied.weight"], clean)


@pytest.mark.parametrize("restore", ["copy", "regenerate"])
def test_checkpoint_saved_while_noisy_gets_clean_weights(
    make_trainer: Callable[..., pl.Trainer], tmp_path: Path, restore: str
) -> None:
    path = tmp_path / "inside.ckpt"
    before, after = Probe(), Probe()
    recorder = StepRecorder()
    noise = WeightNoise(Gaussian(std=0.05), restore=restore, seed=6)  # type: ignore[arg-type]
    fit(make_trainer, [before, noise, after, recorder], model=SavesInsideTrainingStep(path), max_epochs=1)
    saved = torch.load(path, weights_only=True)["state_dict"]
    clean = before.at["batch_start"][2]
    assert not torch.equal(after.at["batch_start"][2]["net.0.weight"], clean["net.0.weight"])  # noisy then
    for name in clean:
        if restore == "copy":
            assert torch.equal(saved[name], clean[name])
        else:
            torch.testing.assert_close(saved[name], clean[name], rtol=0.0, atol=1e-6)
    # Saving did not disturb training: it still equals the reference run.
    ref = reference_loop(make_loader(), 1, weight_seed=6, weight_std=lambda s: 0.05)
    assert_same_weights(recorder.steps[-1], ref.steps[-1], exact=restore == "copy")


# Lightning turns ckpt_path=None into "last" whenever an OnExceptionCheckpoint is present, and says so.
@pytest.mark.filterwarnings("ignore:.*was called without a model.*:UserWarning")
@pytest.mark.filterwarnings("ignore:.*there is no last checkpoint available.*:UserWarning")
def test_exception_in_training_step_leaves_clean_weights(
    make_trainer: Callable[..., pl.Trainer], tmp_path: Path
) -> None:
    on_exception = OnExceptionCheckpoint(dirpath=tmp_path / "ckpt", filename="crash")
    model = Net(raise_at=(1, 3))  # after 8 + 3 steps, inside the 12th batch (noisy by then)
    noise = WeightNoise(Gaussian(std=0.05), seed=8)
    with pytest.raises(RuntimeError, match="boom inside training_step"):
        fit(make_trainer, [noise, on_exception], model=model, enable_checkpointing=True)
    assert not noise.is_noisy
    ref = reference_loop(make_loader(), 2, weight_seed=8, weight_std=lambda s: 0.05)
    want = ref.steps[10]
    assert_same_weights(strip(snapshot(model)), want)
    assert_same_weights(load_weights(tmp_path / "ckpt" / "crash.ckpt"), want)


# ---------------------------------------------------------------------------- awkward loops


def test_module_returning_minus_one_ends_the_epoch_clean(
    make_trainer: Callable[..., pl.Trainer], tmp_path: Path
) -> None:
    ckpt = ModelCheckpoint(
        dirpath=tmp_path / "ckpt", filename="{epoch}", save_top_k=-1, save_on_train_epoch_end=True
    )
    probe = Probe()
    recorder = StepRecorder()
    noise = WeightNoise(Gaussian(std=0.05), seed=9)
    _, model = fit(
        make_trainer, [noise, probe, recorder, ckpt], model=Net(stop_at=3), enable_checkpointing=True
    )
    # WeightNoise perturbed batch 3 before the module said -1; the epoch then ended with no backward.
    ref = reference_loop(make_loader(), 2, weight_seed=9, weight_std=lambda s: 0.05, stop_at=3)
    assert len(recorder.steps) == len(ref.steps) == 6
    for got, want in zip(recorder.steps, ref.steps, strict=True):
        assert_same_weights(got, want)
    for epoch in (0, 1):
        assert_same_weights(strip(probe.at["epoch_end"][epoch]), ref.steps[3 * epoch + 2])
        assert_same_weights(load_weights(tmp_path / "ckpt" / f"epoch={epoch}.ckpt"), ref.steps[3 * epoch + 2])
    assert_same_weights(strip(snapshot(model)), ref.steps[-1])


@pytest.mark.filterwarnings("ignore:.*`training_step` returned `None`.*:UserWarning")
@pytest.mark.parametrize(("accumulate", "none_at"), [(1, (1, 5)), (2, (0, 3))])
def test_training_step_returning_none(
    make_trainer: Callable[..., pl.Trainer], accumulate: int, none_at: tuple[int, ...]
) -> None:
    before, after = Probe(), Probe()
    recorder = StepRecorder()
    noise = WeightNoise(Gaussian(std=0.05), seed=10)
    model = Net(optimizer="sgd", none_at=none_at)
    fit(make_trainer, [before, noise, after, recorder], model=model, accumulate_grad_batches=accumulate)
    ref = reference_loop(
        make_loader(),
        2,
        optimizer="sgd",
        weight_seed=10,
        weight_std=lambda s: 0.05,
        accumulate=accumulate,
        none_at=none_at,
    )
    assert len(recorder.steps) == len(ref.steps)
    for got, want in zip(recorder.steps, ref.steps, strict=True):
        assert_same_weights(got, want)
    # No backward ran for those batches, yet the weights were clean at every batch end for the
    # callbacks after WeightNoise, and for those before it too when the batch stepped (restored in
    # on_before_optimizer_step); the noise had been applied.
    for batch in range(16):
        clean = strip(before.at["batch_start"][batch])
        want = ref.batch_end[batch]
        assert_same_weights(strip(after.at["batch_end"][batch]), want)
        stepped = (batch % 8 + 1) % accumulate == 0
        if stepped:
            assert_same_weights(strip(before.at["batch_end"][batch]), want)
        if batch % 8 in none_at:
            assert not torch.equal(after.at["batch_start"][batch]["net.0.weight"], clean["0.weight"])
            if stepped and accumulate == 1:
                assert_same_weights(want, clean)  # SGD step without a gradient


def test_gradient_clipping_applies_to_the_noisy_point_gradient(
    make_trainer: Callable[..., pl.Trainer],
) -> None:
    recorder = StepRecorder()
    noise = WeightNoise(Gaussian(std=0.2), seed=12)
    fit(make_trainer, [noise, recorder], gradient_clip_val=0.05)
    ref = reference_loop(make_loader(), 2, weight_seed=12, weight_std=lambda s: 0.2, clip=0.05)
    unclipped = reference_loop(make_loader(), 2, weight_seed=12, weight_std=lambda s: 0.2)
    for got, want in zip(recorder.steps, ref.steps, strict=True):
        assert_same_weights(got, want, exact=False)
    assert not torch.allclose(ref.steps[-1]["0.weight"], unclipped.steps[-1]["0.weight"], atol=1e-4)


# ---------------------------------------------------------------------------- refusals


def _unchanged(model: pl.LightningModule, before: dict[str, Tensor]) -> None:
    assert_same_weights(snapshot(model), before)


class Manual(Net):
    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False

    def training_step(self, batch: Any, batch_idx: int) -> None:
        opt = self.optimizers()
        loss = super().training_step(batch, batch_idx)
        opt.zero_grad()  # type: ignore[union-attr]
        self.manual_backward(loss)
        opt.step()  # type: ignore[union-attr]


@pytest.mark.parametrize("callback", [WeightNoise(Gaussian(0.1), seed=0), GradientNoise(0.1, seed=0)])
def test_manual_optimisation_is_refused_before_weights_change(
    make_trainer: Callable[..., pl.Trainer], callback: pl.Callback
) -> None:
    model = Manual()
    before = snapshot(model)
    with pytest.raises(ConfigurationError, match="does not support manual optimisation"):
        fit(make_trainer, [callback], model=model)
    _unchanged(model, before)


class FSDPStrategyStub(SingleDeviceStrategy):
    """Stands in for FSDP, which Lightning allows only on GPUs; the check reads the class name."""


class DeepSpeedStrategyStub(SingleDeviceStrategy):
    """Stands in for DeepSpeed (not installed here)."""


@pytest.mark.parametrize("strategy", [FSDPStrategyStub, DeepSpeedStrategyStub])
@pytest.mark.parametrize("callback", [WeightNoise(Gaussian(0.1), seed=0), GradientNoise(0.1, seed=0)])
def test_sharded_strategies_are_refused_before_weights_change(
    make_trainer: Callable[..., pl.Trainer], strategy: type, callback: pl.Callback
) -> None:
    model = Net()
    before = snapshot(model)
    with pytest.raises(ConfigurationError, match="does not support the sharded strategy"):
        fit(make_trainer, [callback], model=model, strategy=strategy(device=CPU))
    _unchanged(model, before)


def test_real_fsdp_strategy_object_is_refused() -> None:
    trainer = SimpleNamespace(strategy=FSDPStrategy())
    with pytest.raises(ConfigurationError, match="sharded strategy FSDPStrategy"):
        WeightNoise(Gaussian(0.1), seed=0).setup(trainer, Net(), "fit")  # type: ignore[arg-type]


def test_closure_reevaluating_optimizers_are_refused(make_trainer: Callable[..., pl.Trainer]) -> None:
    model = Net(optimizer="lbfgs")
    before = snapshot(model)
    with pytest.raises(ConfigurationError, match="does not support LBFGS: it re-evaluates the closure"):
        fit(make_trainer, [WeightNoise(Gaussian(0.1), seed=0)], model=model)
    _unchanged(model, before)
    # The list is the user's to extend (SAM-style optimizers are often plain Optimizer subclasses).
    model = Net(optimizer="sgd")
    with pytest.raises(ConfigurationError, match="does not support SGD"):
        fit(
            make_trainer,
            [WeightNoise(Gaussian(0.1), seed=0, closure_optimizers=["LBFGS", "SGD"])],
            model=model,
        )
    _unchanged(model, before)


def test_pattern_matching_nothing_is_refused_at_fit_start(make_trainer: Callable[..., pl.Trainer]) -> None:
    model = Net()
    before = snapshot(model)
    with pytest.raises(ConfigurationError, match=r"'encoder\.\*' matches no parameter.*net\.0\.weight"):
        fit(make_trainer, [WeightNoise(Gaussian(0.1), include=["encoder.*"], seed=0)], model=model)
    _unchanged(model, before)


def test_regenerate_refuses_half_precision_parameters(make_trainer: Callable[..., pl.Trainer]) -> None:
    model = Net()
    with pytest.raises(ConfigurationError, match=r"restore='regenerate' is refused for torch\.bfloat16"):
        fit(
            make_trainer,
            [WeightNoise(Gaussian(0.1), restore="regenerate", seed=0)],
            model=model,
            precision="bf16-true",
        )


class Still(Net):
    """Net trained by SGD at lr=0: whatever the gradients, a clean run ends with its initial weights."""

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.0)


class Batches(pl.Callback):
    """Counts the training batches that started."""

    def __init__(self) -> None:
        self.started = 0

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        self.started += 1


@pytest.mark.parametrize(
    ("first", "second"),
    [
        # Both unnamed, both selecting everything: named by their noise.
        (WeightNoise(Gaussian(0.1), seed=1), WeightNoise(Uniform(0.2), seed=2)),
        # Overlapping in one parameter only (net.0.weight), one of them restoring by regeneration.
        (
            WeightNoise(Gaussian(0.1), include="net.0.*", restore="regenerate", seed=1, name="a"),
            WeightNoise(Gaussian(0.1), exclude=["net.0.bias", "net.2.*"], seed=2, name="b"),
        ),
    ],
)
def test_overlapping_weight_noise_selections_are_refused_before_any_step(
    make_trainer: Callable[..., pl.Trainer], first: WeightNoise, second: WeightNoise
) -> None:
    # Unrefused, the second restored (clean + the first one's noise): the noise stayed in the weights.
    model, batches = Still(), Batches()
    before = snapshot(model)
    with pytest.raises(ConfigurationError) as err:
        fit(make_trainer, [first, second, batches], model=model, max_epochs=1)
    names = ("weight_gaussian", "weight_uniform") if first.name == "weight_gaussian" else ("a", "b")
    message = str(err.value)
    # The later one refuses, naming itself, the earlier one and a parameter both select.
    assert message.startswith(f"WeightNoise({names[1]!r}) and WeightNoise({names[0]!r}), listed before it")
    assert "select the parameter 'net.0.weight'" in message
    assert "disjoint parameters (`include` / `exclude` patterns), or use one WeightNoise" in message
    assert batches.started == 0
    _unchanged(model, before)


def test_disjoint_weight_noise_selections_restore_every_weight(
    make_trainer: Callable[..., pl.Trainer],
) -> None:
    model, probe = Still(), Probe()
    initial = snapshot(model)
    first = WeightNoise(Gaussian(0.1), include="net.0.*", seed=1, name="a")
    second = WeightNoise(Uniform(0.2), include="net.2.*", seed=2, name="b")
    fit(make_trainer, [first, second, probe], model=model, max_epochs=1)
    noisy = probe.at["batch_start"][0]  # both perturbed their own layers ...
    assert all(not torch.equal(noisy[n], initial[n]) for n in initial)
    _unchanged(model, initial)  # ... and at lr=0 the fit ends with the initial weights, bit for bit
    # Reused in the other order in a new fit: each compares with this fit's selections only.
    fit(make_trainer, [second, first], model=model, max_epochs=1)
    _unchanged(model, initial)


def test_regenerate_is_refused_in_setup_under_ddp(make_trainer: Callable[..., pl.Trainer]) -> None:
    # Each rank subtracts its own noise, leaving its own rounding residue: the replicas drifted apart.
    trainer = make_trainer(devices=2, strategy="ddp_spawn")  # builds the Trainer, spawns nothing
    assert trainer.world_size == 2
    WeightNoise(Gaussian(0.1), seed=0).setup(trainer, Net(), "fit")  # restore="copy": accepted
    with pytest.raises(ConfigurationError) as err:
        WeightNoise(Gaussian(0.1), restore="regenerate", seed=0).setup(trainer, Net(), "fit")
    message = str(err.value)
    assert message.startswith("WeightNoise: `restore` must be 'copy' when training runs in several processes")
    assert "(world_size=2), got 'regenerate'" in message
    assert "restore='copy' (the default)" in message
    assert "identical" in message
    # One process: regenerate is allowed (its restore is checked against the weights above).
    WeightNoise(Gaussian(0.1), restore="regenerate", seed=0).setup(make_trainer(), Net(), "fit")


class SparseEmbedding(Net):
    """Net plus an nn.Embedding(sparse=True) whose gradient is a sparse COO tensor; plain SGD."""

    def __init__(self, lr: float = 0.1) -> None:
        super().__init__(optimizer="sgd")
        self.emb = nn.Embedding(10, 3, sparse=True)
        self.lr = lr

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        x, y = batch
        ids = (x[:, 0].abs() * 3).long().clamp(max=9)
        return F.cross_entropy(self(x) + self.emb(ids), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.lr)


@pytest.mark.parametrize("kwargs", [{}, {"relative": True}, {"restore": "regenerate"}])
def test_weight_noise_works_on_parameters_with_sparse_gradients(
    make_trainer: Callable[..., pl.Trainer], kwargs: dict[str, Any]
) -> None:
    model, probe = SparseEmbedding(lr=0.0), Probe()
    initial = snapshot(model)
    fit(make_trainer, [WeightNoise(Gaussian(0.1), seed=0, **kwargs), probe], model=model, max_epochs=1)
    assert not torch.equal(probe.at["batch_start"][0]["emb.weight"], initial["emb.weight"])  # perturbed
    assert probe.at["grad"][0]["emb.weight"].layout == torch.sparse_coo  # the gradient stayed sparse
    # The weights themselves are dense: restored bit for bit (copy), within the documented bound (regenerate).
    assert_same_weights(snapshot(model), initial, exact=kwargs.get("restore") != "regenerate")


def _weight_noise(**kwargs: Any) -> WeightNoise:
    return WeightNoise(Gaussian(0.1), seed=0, **kwargs)


def _gradient_noise(**kwargs: Any) -> GradientNoise:
    return GradientNoise(0.1, seed=0, **kwargs)


class LazyNet(Net):
    """Net whose first layer is an nn.LazyLinear, initialised by a dummy forward pass in `setup` if asked."""

    def __init__(self, init_in_setup: bool = False, example: bool = False) -> None:
        super().__init__(optimizer="sgd")
        self.net[0] = nn.LazyLinear(16)
        self.init_in_setup = init_in_setup
        if example:
            self.example_input_array = torch.zeros(2, 8)

    def setup(self, stage: str) -> None:
        if self.init_in_setup:
            self(torch.zeros(1, 8))


@pytest.mark.parametrize("callback", [_weight_noise, _gradient_noise])
@pytest.mark.parametrize("example", [False, True])
def test_uninitialised_lazy_parameters_are_refused_at_fit_start(
    make_trainer: Callable[..., pl.Trainer], callback: Callable[..., pl.Callback], example: bool
) -> None:
    # torch's own error came from `numel()`; `example_input_array` does not help: Lightning's model
    # summary, which runs a forward pass on it, comes after the user's callbacks.
    model, batches = LazyNet(example=example), Batches()
    with pytest.raises(ConfigurationError) as err:
        fit(make_trainer, [callback(), batches], model=model, enable_model_summary=example)
    message = str(err.value)
    owner = "WeightNoise" if isinstance(callback(), WeightNoise) else "GradientNoise"
    assert message.startswith(f"{owner}: uninitialised parameters of a lazy module")
    assert "net.0.weight, net.0.bias" in message
    assert "forward pass on a dummy batch in the LightningModule's `__init__` or `setup`" in message
    assert batches.started == 0
    assert isinstance(model.net[0].weight, nn.parameter.UninitializedParameter)


@pytest.mark.parametrize("callback", [_weight_noise, _gradient_noise])
@pytest.mark.parametrize("how", ["setup", "exclude"])
def test_lazy_modules_initialised_in_setup_or_excluded_train(
    make_trainer: Callable[..., pl.Trainer], callback: Callable[..., pl.Callback], how: str
) -> None:
    noise = callback(exclude="net.0.*") if how == "exclude" else callback()
    model, batches = LazyNet(init_in_setup=how == "setup"), Batches()
    fit(make_trainer, [noise, batches], model=model, max_epochs=1)
    assert batches.started == 8
    assert model.net[0].weight.shape == (16, 8)


def test_frozen_parameters_are_not_selected(make_trainer: Callable[..., pl.Trainer]) -> None:
    model = Net()
    model.net[0].requires_grad_(False)
    before, after = Probe(), Probe()
    fit(
        make_trainer,
        [before, WeightNoise(Gaussian(0.5), seed=0), after],
        model=model,
        max_epochs=1,
        limit_train_batches=1,
    )
    b, a = before.at["batch_start"][0], after.at["batch_start"][0]
    assert torch.equal(a["net.0.weight"], b["net.0.weight"])
    assert not torch.equal(a["net.2.weight"], b["net.2.weight"])


def expected_weight_noise(
    seed: int, epoch: int, batch_idx: int, names: Sequence[str], std: float
) -> list[Tensor]:
    """The documented draw of micro-batch (epoch, batch_idx): one N(0, std) buffer over ``names``."""
    shapes = [torch.Size(Finetuned.SHAPES[n]) for n in names]
    flat = torch.empty(sum(s.numel() for s in shapes)).normal_(
        0.0, std, generator=weight_generator(seed, epoch, batch_idx)
    )
    return [piece.view(s) for piece, s in zip(flat.split([s.numel() for s in shapes]), shapes, strict=True)]


def _assert_restored(restored: Tensor, clean: Tensor, noisy: Tensor, exact: bool) -> None:
    if exact:
        assert torch.equal(restored, clean)
    else:  # restore="regenerate": within one rounding of the larger of the clean and the noisy weight
        bound = torch.finfo(torch.float32).eps * torch.maximum(clean.abs(), noisy.abs())
        assert bool(((restored - clean).abs() <= bound).all())


@pytest.mark.parametrize("restore", ["copy", "regenerate"])
@pytest.mark.parametrize(
    ("finetuning", "backbone_trains"),
    FINETUNING_CASES,
    ids=FINETUNING_IDS,
)
def test_parameters_unfrozen_mid_fit_get_weight_noise_from_that_epoch_on(
    make_trainer: Callable[..., pl.Trainer],
    finetuning: Callable[[], pl.Callback],
    backbone_trains: tuple[bool, ...],
    restore: str,
) -> None:
    """Each micro-batch's draw covers the parameters trainable in its epoch; every restore is exact."""
    before, after = Probe(), Probe()
    noise = WeightNoise(Gaussian(std=0.1), restore=restore, seed=5)  # type: ignore[arg-type]
    # The finetuning callback listed last: its on_train_epoch_start runs after WeightNoise's.
    fit(
        make_trainer,
        [before, noise, after, finetuning()],
        model=Finetuned(),
        max_epochs=3,
        limit_train_batches=2,
    )
    assert len(after.at["batch_start"]) == 6
    for i in range(6):
        epoch, batch_idx = divmod(i, 2)
        clean, noisy = before.at["batch_start"][i], after.at["batch_start"][i]
        restored = after.at["after_backward"][i]
        names = [n for n in Finetuned.SHAPES if backbone_trains[epoch] or n.startswith("head.")]
        for name, want in zip(names, expected_weight_noise(5, epoch, batch_idx, names, 0.1), strict=True):
            torch.testing.assert_close(noisy[name] - clean[name], want, msg=f"batch {i}: {name}")
        for name in Finetuned.SHAPES:
            if name not in names:
                assert torch.equal(noisy[name], clean[name]), f"batch {i}: {name}"  # frozen: clean
            _assert_restored(restored[name], clean[name], noisy[name], exact=restore == "copy")
    assert not noise.is_noisy


@pytest.mark.filterwarnings("ignore:You're resuming from a checkpoint that ended before the epoch ended")
def test_a_resumed_fit_picks_the_parameters_again_at_its_first_batch(
    make_trainer: Callable[..., pl.Trainer], tmp_path: Path
) -> None:
    """A fit resumed mid-epoch skips that epoch's on_train_epoch_start: the first batch re-picks anyway.

    The resumed module freezes its backbone in ``on_train_start``, after WeightNoise's
    ``on_fit_start`` selected it: the backbone must stay clean, the head get the documented draw.
    """
    before, after = Probe(), Probe()
    resume_with_backbone_frozen(
        make_trainer, lambda: WeightNoise(Gaussian(std=0.1), seed=3), before, after, tmp_path
    )
    assert len(after.at["batch_start"]) == 2  # batches 2 and 3 of epoch 0
    head = ["head.weight", "head.bias"]
    for i, batch_idx in enumerate((2, 3)):
        clean, noisy = before.at["batch_start"][i], after.at["batch_start"][i]
        for name in ("backbone.weight", "backbone.bias"):
            assert torch.equal(noisy[name], clean[name]), (batch_idx, name)
        for name, want in zip(head, expected_weight_noise(3, 0, batch_idx, head, 0.1), strict=True):
            torch.testing.assert_close(noisy[name] - clean[name], want, msg=f"batch {batch_idx}: {name}")


def test_the_error_names_the_pattern_at_fault_and_an_exclude_of_frozen_ones_warns_nothing(
    make_trainer: Callable[..., pl.Trainer], recwarn: pytest.WarningsRecorder
) -> None:
    """With the backbone frozen: a typo is named (not the valid frozen-only pattern next to it), and
    an ``exclude`` that matches only frozen parameters selects nothing frozen to warn about."""
    finetuning = BackboneFinetuning(unfreeze_backbone_at_epoch=1)
    noise = WeightNoise(Gaussian(0.1), include=["backbone.*", "typo.*"], seed=0)
    with pytest.raises(ConfigurationError, match=r"`include` pattern 'typo\.\*' matches no parameter"):
        fit(make_trainer, [noise, finetuning], model=Finetuned(), limit_train_batches=1)
    noise = WeightNoise(Gaussian(0.1), include=["backbone.weight"], exclude=["backbone.bias"], seed=0)
    with pytest.raises(ConfigurationError, match=r"`exclude` pattern 'backbone\.bias' removes nothing"):
        fit(make_trainer, [noise, BackboneFinetuning(unfreeze_backbone_at_epoch=1)], model=Finetuned())
    recwarn.clear()
    noise = WeightNoise(Gaussian(0.1), exclude=["backbone.*"], seed=0)
    fit(make_trainer, [noise, BackboneFinetuning(unfreeze_backbone_at_epoch=1)], model=Finetuned())
    assert not [w for w in recwarn if "frozen" in str(w.message)]


FROZEN_AT_START = (
    r"^WeightNoise: include=\['backbone\.\*'\] and exclude=None select parameters that are frozen"
    r" \(requires_grad=False\) as the fit starts: backbone\.weight, backbone\.bias\. They get no noise"
)
#: Matches both warnings, at fit start and at its end (pytest.warns re-emits the warnings it does not match).
FROZEN_OR_STAYED = r"select parameters that (are|stayed) frozen"


@pytest.mark.parametrize("unfreeze_at", [1, 5])
def test_include_matching_only_frozen_parameters_is_accepted_with_a_warning(
    make_trainer: Callable[..., pl.Trainer], unfreeze_at: int
) -> None:
    before, after = Probe(), Probe()
    noise = WeightNoise(Gaussian(std=0.1), include="backbone.*", seed=7)
    finetuning = BackboneFinetuning(unfreeze_backbone_at_epoch=unfreeze_at)
    with pytest.warns(UserWarning, match=FROZEN_OR_STAYED) as record:
        fit(make_trainer, [before, noise, after, finetuning], model=Finetuned(), limit_train_batches=2)
    messages = [str(w.message) for w in record if issubclass(w.category, UserWarning)]
    assert re.match(FROZEN_AT_START, messages[0])
    never = (
        "WeightNoise('weight'): include=['backbone.*'] and exclude=None select parameters that stayed"
        " frozen (requires_grad=False) at the start of every epoch of this fit, so they got no noise:"
        " backbone.weight, backbone.bias."
    )
    assert messages[1:] == ([never] if unfreeze_at == 5 else [])  # at the end, only if never trainable
    assert len(after.at["batch_start"]) == 4
    backbone = ["backbone.weight", "backbone.bias"]
    for i in range(4):
        epoch, batch_idx = divmod(i, 2)
        clean, noisy = before.at["batch_start"][i], after.at["batch_start"][i]
        for name in ("head.weight", "head.bias"):  # never selected
            assert torch.equal(noisy[name], clean[name])
        if epoch < unfreeze_at:
            assert all(torch.equal(noisy[n], clean[n]) for n in backbone)
            continue
        for name, want in zip(
            backbone, expected_weight_noise(7, epoch, batch_idx, backbone, 0.1), strict=True
        ):
            torch.testing.assert_close(noisy[name] - clean[name], want)


def test_an_epoch_with_no_selected_parameter_trainable_warns_once_and_stays_clean(
    make_trainer: Callable[..., pl.Trainer],
) -> None:
    before, after = Probe(), Probe()
    noise = WeightNoise(Gaussian(std=0.1), include="backbone.*", seed=7)
    callbacks = [before, noise, after, UnfreezeForOneEpoch()]
    with pytest.warns(
        UserWarning, match=r"select parameters that are frozen|none of the parameters"
    ) as record:
        fit(make_trainer, callbacks, model=Finetuned(), max_epochs=4, limit_train_batches=1)
    messages = [str(w.message) for w in record if issubclass(w.category, UserWarning)]
    assert re.match(FROZEN_AT_START, messages[0])
    assert messages[1:] == [  # and none at the end: the backbone did get noise, in epoch 1
        "WeightNoise: none of the parameters that include=['backbone.*'] and exclude=None select is"
        " trainable at the start of epoch 2 (all have requires_grad=False): no noise until one is"
        " trainable again at the start of a later epoch."
    ]
    perturbed = [
        not torch.equal(a["backbone.weight"], b["backbone.weight"])
        for a, b in zip(after.at["batch_start"], before.at["batch_start"], strict=True)
    ]
    assert perturbed == [False, True, False, False]


def test_overlap_on_a_frozen_parameter_is_refused_at_fit_start(
    make_trainer: Callable[..., pl.Trainer],
) -> None:
    # Unrefused, both would perturb the backbone from its unfreezing on, and noise would stay in it.
    model, batches = Finetuned(), Batches()
    initial = snapshot(model)
    first = WeightNoise(Gaussian(0.1), seed=1, name="all")  # every trainable parameter: the head, then all
    second = WeightNoise(Gaussian(0.1), include="backbone.*", seed=2, name="backbone")
    with (
        pytest.raises(ConfigurationError) as err,
        pytest.warns(UserWarning, match="select parameters that are frozen"),
    ):
        fit(
            make_trainer,
            [first, second, batches, BackboneFinetuning(unfreeze_backbone_at_epoch=1)],
            model=model,
        )
    assert str(err.value).startswith(
        "WeightNoise('backbone') and WeightNoise('all'), listed before it, both select the parameter"
        " 'backbone.weight' (frozen now: it would get both noises once trainable)."
    )
    assert batches.started == 0
    _unchanged(model, initial)


# ---------------------------------------------------------------------------- reproducibility, resume


def test_same_seed_same_run_and_seed_none_follows_torch_seed(make_trainer: Callable[..., pl.Trainer]) -> None:
    def run(seed: int | None, torch_seed: int) -> dict[str, Tensor]:
        model = Net()  # seeds torch itself: build it first
        pl.seed_everything(torch_seed, verbose=False)
        fit(make_trainer, [WeightNoise(Gaussian(0.05), seed=seed)], model=model, max_epochs=1)
        return snapshot(model)

    assert_same_weights(run(1, 0), run(1, 99))
    assert_same_weights(run(None, 5), run(None, 5))
    assert not torch.equal(run(None, 5)["net.0.weight"], run(None, 6)["net.0.weight"])
    assert not torch.equal(run(1, 0)["net.0.weight"], run(2, 0)["net.0.weight"])


@pytest.mark.parametrize("restore", ["copy", "regenerate"])
def test_resume_equals_uninterrupted_run(
    make_trainer: Callable[..., pl.Trainer], tmp_path: Path, restore: str
) -> None:
    def callbacks() -> list[pl.Callback]:
        return [
            WeightNoise(Gaussian(std=STD), relative=True, restore=restore, seed=None),  # type: ignore[arg-type]
            GradientNoise(std=0.01, seed=None),
        ]

    pl.seed_everything(0, verbose=False)
    _, full = fit(make_trainer, callbacks(), max_epochs=4)
    pl.seed_everything(0, verbose=False)
    trainer, _ = fit(make_trainer, callbacks(), max_epochs=2)
    path = tmp_path / "half.ckpt"
    trainer.save_checkpoint(path)
    resumed = Net(init_seed=7)  # other weights and another global torch seed: both come from the checkpoint
    trainer = make_trainer(max_epochs=4, callbacks=callbacks(), limit_val_batches=0)
    trainer.fit(resumed, make_loader(), ckpt_path=path)
    assert_same_weights(snapshot(resumed), snapshot(full))
