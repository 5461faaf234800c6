"""GradientNoise: annealed Gaussian gradient noise, once per step, after unscaling, before clipping."""

from __future__ import annotations

import csv
import functools
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import BackboneFinetuning
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.plugins import MixedPrecision
from torch import Tensor, nn

from _param_noise_reference import (
    FINETUNING_CASES,
    FINETUNING_IDS,
    Finetuned,
    Net,
    StepRecorder,
    assert_same_optimizer_state,
    assert_same_weights,
    gradient_generator,
    make_loader,
    reference_loop,
    resume_with_backbone_frozen,
)
from _trainers import quiet_trainer
from lit_noise import AnnealedStd, ConfigurationError, Gaussian, GradientNoise, Linear, WeightNoise
from lit_noise.functional.params import FlatLayout

ANNEALED = AnnealedStd(eta=0.01, gamma=0.55)


def fit(
    make_trainer: Callable[..., pl.Trainer],
    callbacks: list[pl.Callback],
    model: pl.LightningModule | None = None,
    **kw: Any,
) -> tuple[pl.Trainer, pl.LightningModule]:
    model = model if model is not None else Net()
    options: dict[str, Any] = {"max_epochs": 2, "callbacks": callbacks, "limit_val_batches": 0}
    options.update(kw)
    trainer = make_trainer(**options)
    trainer.fit(model, make_loader())
    return trainer, model


def expected_noise(
    seed: int, step: int, shapes: list[torch.Size], std: float, epoch: int = 0
) -> list[Tensor]:
    """The documented draw of step ``step`` in ``epoch``: one N(0, std) buffer over the selected ones."""
    g = gradient_generator(seed, epoch, step)
    flat = torch.empty(sum(s.numel() for s in shapes)).normal_(0.0, std, generator=g)
    return [piece.view(s) for piece, s in zip(flat.split([s.numel() for s in shapes]), shapes, strict=True)]


# ============================================================================ constructor


@pytest.mark.parametrize(
    ("std", "message"),
    [
        (-0.1, r"GradientNoise: `std` must be a standard deviation >= 0"),
        (Linear(start=0.1, end=-0.2, until=1.0), r"this one reaches -0.2"),
        (True, r"`std` must be a standard deviation >= 0 or a schedule"),
        ("0.1", r"`std` must be a standard deviation >= 0 or a schedule"),
        (float("nan"), r"`std` must be a finite number"),
    ],
)
def test_bad_std_is_refused(std: Any, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        GradientNoise(std=std)


def test_other_bad_arguments() -> None:
    with pytest.raises(ConfigurationError, match=r"GradientNoise: `include` must be None"):
        GradientNoise(0.1, include=[])
    with pytest.raises(ConfigurationError, match=r"`chunk_size` must be an integer >= 1"):
        GradientNoise(0.1, chunk_size=-5)
    with pytest.raises(ConfigurationError, match=r"`scale` must be >= 0"):
        GradientNoise(0.1, scale=-1)


def test_pattern_matching_nothing_is_refused_at_fit_start(make_trainer: Callable[..., pl.Trainer]) -> None:
    with pytest.raises(ConfigurationError, match=r"GradientNoise: `exclude` pattern '\*\.gamma' matches no"):
        fit(make_trainer, [GradientNoise(0.1, exclude="*.gamma", seed=0)])


class SparseEmbedding(Net):
    """Net plus an nn.Embedding(sparse=True) (a sparse COO gradient) used from batch ``used_from`` on."""

    def __init__(self, used_from: int = 0) -> None:
        super().__init__(optimizer="sgd")  # Adam refuses sparse gradients itself
        self.emb = nn.Embedding(10, 3, sparse=True)
        self.used_from = used_from

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        x, y = batch
        logits = self(x)
        if batch_idx >= self.used_from:
            logits = logits + self.emb((x[:, 0].abs() * 3).long().clamp(max=9))
        return F.cross_entropy(logits, y)


SPARSE_MESSAGE = (
    r"^GradientNoise: these parameters have sparse gradients: emb\.weight \(torch\.sparse_coo\)\."
    r".*Leave those parameters out with `exclude=`"
)


@pytest.mark.parametrize(
    ("std", "relative"),
    [
        (0.1, False),
        (0.1, "tensor"),
        (0.1, "global"),
        # Still 0 at the first step (no noise drawn yet): refused there all the same, not at step 2.
        (Linear(start=0.0, end=0.1, begin=2, until=4, unit="step"), False),
    ],
    ids=["absolute", "tensor", "global", "zero at the first step"],
)
def test_sparse_gradients_are_refused_at_the_first_step(
    make_trainer: Callable[..., pl.Trainer], std: Any, relative: Any
) -> None:
    # torch's own errors: add(sparse, dense) (absolute) and linalg_vector_norm on SparseCPU (relative).
    model = SparseEmbedding()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    noise = GradientNoise(std, relative, seed=0)
    trainer = make_trainer(max_epochs=1, limit_val_batches=0, callbacks=[noise])
    with pytest.raises(ConfigurationError, match=SPARSE_MESSAGE):
        trainer.fit(model, make_loader())
    assert trainer.global_step == 0  # refused before the first optimizer step
    assert_same_weights({n: p.detach() for n, p in model.named_parameters()}, before)


@pytest.mark.parametrize("relative", [False, "tensor"])
def test_sparse_gradient_first_seen_after_the_first_step_is_refused(
    make_trainer: Callable[..., pl.Trainer], relative: Any
) -> None:
    model = SparseEmbedding(used_from=2)  # no gradient at all for emb.weight in steps 0 and 1
    trainer = make_trainer(
        max_epochs=1, limit_val_batches=0, callbacks=[GradientNoise(0.1, relative, seed=0)]
    )
    with pytest.raises(ConfigurationError, match=SPARSE_MESSAGE):
        trainer.fit(model, make_loader())
    assert trainer.global_step == 2  # steps 0 and 1 ran; step 2 (the sparse gradient's first) did not


def test_sparse_gradients_left_out_with_exclude(make_trainer: Callable[..., pl.Trainer]) -> None:
    before, after = AllGrads(), AllGrads()
    noise = GradientNoise(0.1, exclude="emb.*", seed=3)
    fit(make_trainer, [before, noise, after], model=SparseEmbedding(), max_epochs=1, limit_train_batches=3)
    assert len(after.steps) == 3
    for t, (clean, noisy) in enumerate(zip(before.steps, after.steps, strict=True)):
        assert noisy["emb.weight"].layout == torch.sparse_coo  # type: ignore[union-attr]
        assert torch.equal(noisy["emb.weight"].to_dense(), clean["emb.weight"].to_dense())  # type: ignore[union-attr]
        dense = [n for n in clean if n != "emb.weight"]
        want = expected_noise(3, t, [clean[n].shape for n in dense], 0.1)  # type: ignore[union-attr]
        for name, expected in zip(dense, want, strict=True):
            torch.testing.assert_close(noisy[name] - clean[name], expected)  # type: ignore[operator]


# ============================================================================ semantics


def test_matches_reference_loop_with_the_annealed_schedule(make_trainer: Callable[..., pl.Trainer]) -> None:
    recorder = StepRecorder()
    trainer, _ = fit(make_trainer, [GradientNoise(std=ANNEALED, seed=21), recorder])
    ref = reference_loop(make_loader(), 2, grad_seed=21, grad_std=lambda t: ANNEALED.value(t))
    assert len(recorder.steps) == len(ref.steps) == 16
    for got, want in zip(recorder.steps, ref.steps, strict=True):
        assert_same_weights(got, want)
    assert_same_optimizer_state(trainer.optimizers[0], ref.optimizer)  # type: ignore[arg-type]
    plain = reference_loop(make_loader(), 2)
    assert not torch.allclose(plain.steps[-1]["0.weight"], ref.steps[-1]["0.weight"], atol=1e-4)


@pytest.mark.parametrize("accumulate", [2, 3])
def test_with_weight_noise_accumulation_and_clipping(
    make_trainer: Callable[..., pl.Trainer], accumulate: int
) -> None:
    recorder = StepRecorder()
    callbacks = [GradientNoise(std=0.02, seed=3, scale=0.5), WeightNoise(Gaussian(0.05), seed=4), recorder]
    fit(make_trainer, callbacks, accumulate_grad_batches=accumulate, gradient_clip_val=0.5)
    ref = reference_loop(
        make_loader(),
        2,
        weight_seed=4,
        weight_std=lambda s: 0.05,
        grad_seed=3,
        grad_std=lambda s: 0.01,  # std 0.02 times scale 0.5
        accumulate=accumulate,
        clip=0.5,
    )
    assert len(recorder.steps) == len(ref.steps)
    for got, want in zip(recorder.steps, ref.steps, strict=True):
        assert_same_weights(got, want, exact=False)


class Wide(Net):
    """40k weights in one layer for statistics; records gradients around the callbacks and clipping."""

    def __init__(self) -> None:
        super().__init__()
        self.wide = nn.Linear(200, 200)
        self.unused = nn.Parameter(torch.zeros(5))  # never gets a gradient
        self.seen: dict[str, list[Tensor]] = {"after_callbacks": [], "clipped": []}

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        x, y = batch
        h = self.wide(x.repeat(1, 25))[:, :8]
        return F.cross_entropy(self.net(h), y)

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        # The module's hook runs after every callback's: the gradients here carry the noise.
        self.seen["after_callbacks"].append(self.wide.weight.grad.detach().clone())  # type: ignore[union-attr]

    def configure_gradient_clipping(
        self, optimizer: Any, gradient_clip_val: Any = None, gradient_clip_algorithm: Any = None
    ) -> None:
        self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)
        self.seen["clipped"].append(
            torch.cat([p.grad.flatten() for p in self.parameters() if p.grad is not None])
        )


class GradProbe(pl.Callback):
    """Placed before GradientNoise: the clean (already unscaled) gradients."""

    def __init__(self) -> None:
        self.clean: list[Tensor] = []
        self.steps: list[int] = []

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Any
    ) -> None:
        self.clean.append(pl_module.wide.weight.grad.detach().clone())
        self.steps.append(trainer.global_step)


def test_variance_follows_the_annealed_schedule_once_per_step(
    make_trainer: Callable[..., pl.Trainer],
) -> None:
    probe = GradProbe()
    model = Wide()
    noise = GradientNoise(std=AnnealedStd(eta=0.3, gamma=0.55), include=["wide.weight", "unused"], seed=1)
    fit(make_trainer, [probe, noise], model=model, max_epochs=1, accumulate_grad_batches=2)
    assert probe.steps == [0, 1, 2, 3]  # 8 micro-batches, 4 optimizer steps, one draw each
    for t, (clean, noisy) in enumerate(zip(probe.clean, model.seen["after_callbacks"], strict=True)):
        variance = 0.3 / (1 + t) ** 0.55  # Neelakantan et al.: the variance is eta / (1 + t)^gamma
        assert (noisy - clean).var().item() == pytest.approx(variance, rel=0.05)  # n = 40k: sd 0.7 %
        shapes = [torch.Size([5]), clean.shape]  # named_parameters order: the root's own `unused` first
        torch.testing.assert_close(noisy - clean, expected_noise(1, t, shapes, variance**0.5)[1])
    assert model.unused.grad is None  # parameters without a gradient are skipped, not given one


def test_noise_goes_in_before_clipping(make_trainer: Callable[..., pl.Trainer]) -> None:
    probe = GradProbe()
    model = Wide()
    fit(
        make_trainer,
        [probe, GradientNoise(std=1.0, seed=2)],
        model=model,
        max_epochs=1,
        limit_train_batches=3,
        gradient_clip_val=0.5,
    )
    for clean, noisy, clipped in zip(
        probe.clean, model.seen["after_callbacks"], model.seen["clipped"], strict=True
    ):
        assert (noisy - clean).std().item() == pytest.approx(1.0, rel=0.05)  # the full noise went in ...
        assert clipped.norm().item() == pytest.approx(0.5, rel=1e-4)  # ... and clipping bounded the sum


def test_noise_goes_in_after_amp_unscaling(make_trainer: Callable[..., pl.Trainer]) -> None:
    probe = GradProbe()
    model = Wide()
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    plugin = MixedPrecision("16-mixed", "cpu", scaler=scaler)
    fit(
        make_trainer,
        [probe, GradientNoise(std=0.1, include="wide.weight", seed=5)],
        model=model,
        max_epochs=1,
        limit_train_batches=3,
        plugins=[plugin],
    )
    for t, (clean, noisy) in enumerate(zip(probe.clean, model.seen["after_callbacks"], strict=True)):
        # Unscaled gradients of a tiny problem (a scaled one would be ~1000x larger) ...
        assert clean.abs().max().item() < 1.0
        # ... and the noise is exactly std * N(0, 1), not divided by the loss scale afterwards.
        torch.testing.assert_close(
            noisy - clean, expected_noise(5, t, [clean.shape], 0.1)[0], rtol=1e-4, atol=1e-6
        )


def test_zero_std_draws_nothing_and_logs_the_schedule(
    make_trainer: Callable[..., pl.Trainer], tmp_path: Path
) -> None:
    recorder = StepRecorder()
    logger = CSVLogger(tmp_path, name="log")
    schedule = Linear(start=0.0, end=0.05, begin=2, until=6, unit="step")
    fit(
        make_trainer,
        [GradientNoise(std=schedule, seed=9), recorder],
        max_epochs=1,
        logger=logger,
        log_every_n_steps=1,
    )
    ref = reference_loop(make_loader(), 1, grad_seed=9, grad_std=lambda t: schedule.value(t))
    for got, want in zip(recorder.steps, ref.steps, strict=True):
        assert_same_weights(got, want)
    plain = reference_loop(make_loader(), 1)
    assert_same_weights(recorder.steps[1], plain.steps[1])  # steps 0 and 1 had std 0
    with open(Path(logger.log_dir) / "metrics.csv") as handle:
        rows = [r for r in csv.DictReader(handle) if r.get("noise/gradient/std")]
    logged = {int(r["step"]): float(r["noise/gradient/std"]) for r in rows}
    assert logged == pytest.approx({t: schedule.value(t) for t in range(8)})


def test_state_holds_seed_and_scale() -> None:
    noise = GradientNoise(0.1, seed=4, scale=0.5, name="g")
    assert noise.state_dict() == {"seed": 4, "scale": 0.5}
    other = GradientNoise(0.1, name="g")
    other.load_state_dict(noise.state_dict())
    assert (other.seed, other.scale) == (4, 0.5)
    assert noise.state_key != GradientNoise(0.1, name="other").state_key


# ============================================================================ relative mode


class AllGrads(pl.Callback):
    """Every parameter's gradient (``None`` where it has none) at each optimizer step."""

    def __init__(self) -> None:
        self.steps: list[dict[str, Tensor | None]] = []

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Any
    ) -> None:
        self.steps.append(
            {n: None if p.grad is None else p.grad.detach().clone() for n, p in pl_module.named_parameters()}
        )


class ScaledWide(Wide):
    """Wide with a loss multiplier and a parameter whose gradient is exactly zero."""

    def __init__(self, loss_scale: float = 1.0) -> None:
        super().__init__()
        self.loss_scale = loss_scale
        self.flat = nn.Parameter(torch.ones(300))  # d(0 * sum)/d flat = 0 everywhere

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        return super().training_step(batch, batch_idx) * self.loss_scale + 0.0 * self.flat.sum()


Grads = list[dict[str, Tensor | None]]
RUNS: dict[str, tuple[float, dict[str, Any]]] = {  # name: (loss scale, GradientNoise arguments)
    "absolute": (1.0, {"std": 1.0}),
    "tensor": (1.0, {"std": 0.3, "relative": "tensor"}),
    "tensor x10": (10.0, {"std": 0.3, "relative": "tensor"}),
    "global": (1.0, {"std": 0.3, "relative": "global"}),
}


@pytest.fixture(scope="module")
def relative_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Grads, Grads]]:
    """Clean and noisy gradients of 3 steps of ScaledWide for each of RUNS (seed 7: the same draws)."""
    out = {}
    for name, (loss_scale, kw) in RUNS.items():
        before, after = AllGrads(), AllGrads()
        trainer = quiet_trainer(
            default_root_dir=str(tmp_path_factory.mktemp("relative")),
            callbacks=[before, GradientNoise(seed=7, **kw), after],
            limit_train_batches=3,
            limit_val_batches=0,
        )
        trainer.fit(ScaledWide(loss_scale), make_loader())
        out[name] = before.steps, after.steps
    return out


def rms(t: Tensor) -> float:
    return t.double().square().mean().sqrt().item()


def assert_noise_close(got: Tensor, want: Tensor, grads: Sequence[Tensor]) -> None:
    """``got`` = fl(g + n) - g carries the rounding of the sum: up to one float32 ulp of |g + n|."""
    ulp = 2 * torch.finfo(torch.float32).eps * max(g.abs().max().item() for g in grads)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=ulp + want.abs().max().item() * 1e-5)


def test_relative_is_validated() -> None:
    assert GradientNoise(0.1).relative is False
    assert GradientNoise(0.1, relative=True).relative == "tensor"
    assert GradientNoise(0.1, relative="global").relative == "global"
    for bad in ("layer", 1, None, "True"):
        with pytest.raises(ConfigurationError, match=r"GradientNoise: `relative` must be False, 'tensor'"):
            GradientNoise(0.1, relative=bad)


@pytest.mark.parametrize("mode", ["tensor", "global"])
def test_relative_noise_is_the_absolute_draw_times_the_rms(
    relative_runs: dict[str, tuple[Grads, Grads]], mode: str
) -> None:
    # Step 0 of two runs from the same weights and seed: same clean gradients, same draw.
    clean, absolute = relative_runs["absolute"]
    _, relative = relative_runs[mode]
    grads = {n: g for n, g in clean[0].items() if g is not None}
    assert "unused" not in grads  # no gradient ...
    assert relative[0]["unused"] is None  # ... and none given
    total = sum(g.double().square().sum().item() for g in grads.values())
    global_rms = (total / sum(g.numel() for g in grads.values())) ** 0.5
    for name, g in grads.items():
        unit = absolute[0][name] - g  # type: ignore[operator]
        factor = 0.3 * (rms(g) if mode == "tensor" else global_rms)
        assert_noise_close(relative[0][name] - g, unit * factor, [g])  # type: ignore[operator]
    if mode == "tensor":  # a zero gradient gets no noise; under "global" it gets the common scale
        assert torch.equal(relative[0]["flat"], torch.zeros(300))  # type: ignore[arg-type]
    else:
        assert relative[0]["flat"].ne(0).all()  # type: ignore[union-attr]


def test_relative_noise_has_the_chi_distributed_spread(relative_runs: dict[str, tuple[Grads, Grads]]) -> None:
    """Over n elements, n * (rms(noise) / (std * rms(g)))^2 is chi-squared with n degrees of freedom."""
    from scipy.stats import chi2

    clean, noisy = relative_runs["tensor"]
    assert len(clean) == 3
    for before, after in zip(clean, noisy, strict=True):
        for name, g in before.items():
            if g is None or not g.any():
                continue
            n = g.numel()
            ratio = rms(after[name] - g) / (0.3 * rms(g))  # type: ignore[operator]
            low, high = chi2.ppf(1e-6, n) / n, chi2.ppf(1 - 1e-6, n) / n
            assert low < ratio**2 < high, (name, n, ratio)
            if n >= 10_000:  # wide.weight: within 2 %
                assert ratio == pytest.approx(1.0, abs=0.02)


def test_relative_noise_scales_with_the_gradient(relative_runs: dict[str, tuple[Grads, Grads]]) -> None:
    clean, noisy = relative_runs["tensor"]
    clean10, noisy10 = relative_runs["tensor x10"]
    g, g10 = clean[0]["wide.weight"], clean10[0]["wide.weight"]
    torch.testing.assert_close(g10, 10 * g, rtol=1e-5, atol=0.0)  # type: ignore[operator]
    noise, noise10 = noisy[0]["wide.weight"] - g, noisy10[0]["wide.weight"] - g10  # type: ignore[operator]
    assert_noise_close(noise10, 10 * noise, [g10])  # type: ignore[list-item]


def _python_calls(fn: Callable[[], object]) -> int:
    """Python function and builtin calls made inside ``fn`` (``sys.setprofile`` events)."""
    count = 0

    def profile(frame: Any, event: str, arg: Any) -> None:
        nonlocal count
        count += event in ("call", "c_call")

    sys.setprofile(profile)
    try:
        fn()
    finally:
        sys.setprofile(None)
    return count


@pytest.mark.parametrize("per_tensor", [True, False])
def test_layout_rms_makes_as_many_python_calls_for_200_tensors_as_for_2(per_tensor: bool) -> None:
    """The host work per step does not grow with the number of gradients (one chunk either way)."""
    calls = []
    for n in (2, 200):
        layout = FlatLayout([torch.zeros(3) for _ in range(n)])
        grads = [torch.ones(3) for _ in range(n)]
        layout.rms(grads, per_tensor)  # the first call may create what later calls reuse
        calls.append(_python_calls(functools.partial(layout.rms, grads, per_tensor)))
    assert calls[0] == calls[1]


def test_layout_rms_per_tensor_and_global_across_chunks() -> None:
    shapes = [(5,), (3,), (7,), (2, 1)]
    layout = FlatLayout([torch.zeros(s) for s in shapes], chunk_numel=8)
    assert [len(c.indices) for c in layout.chunks] == [2, 1, 1]  # 5 + 3 | 7 | 2
    g = torch.Generator().manual_seed(0)
    targets: list[Tensor | None] = [torch.randn(s, generator=g) for s in shapes]
    targets[1] = None
    per_tensor = torch.cat(layout.rms(targets))
    want = [0.0 if t is None else float(np.sqrt(np.mean(t.numpy() ** 2))) for t in targets]
    np.testing.assert_allclose(per_tensor.numpy(), want, rtol=1e-6)
    present = np.concatenate([t.numpy().ravel() for t in targets if t is not None])
    overall = torch.cat(layout.rms(targets, per_tensor=False))
    np.testing.assert_allclose(overall.numpy(), [np.sqrt(np.mean(present**2))] * 4, rtol=1e-6)


# ============================================================================ frozen, unfrozen mid-fit


def _shapes(names: Sequence[str]) -> list[torch.Size]:
    return [torch.Size(Finetuned.SHAPES[n]) for n in names]


@pytest.mark.parametrize(
    ("finetuning", "backbone_trains"),
    FINETUNING_CASES,
    ids=FINETUNING_IDS,
)
def test_parameters_unfrozen_mid_fit_get_gradient_noise_from_that_epoch_on(
    make_trainer: Callable[..., pl.Trainer],
    finetuning: Callable[[], pl.Callback],
    backbone_trains: tuple[bool, ...],
) -> None:
    """The draw of step t covers the parameters trainable in t's epoch, in ``named_parameters`` order."""
    before, after = AllGrads(), AllGrads()
    # The finetuning callback listed last: its on_train_epoch_start runs after GradientNoise's.
    callbacks = [before, GradientNoise(std=0.1, seed=4), after, finetuning()]
    fit(make_trainer, callbacks, model=Finetuned(), max_epochs=3, limit_train_batches=2)
    assert len(after.steps) == 6
    for t, (clean, noisy) in enumerate(zip(before.steps, after.steps, strict=True)):
        epoch = t // 2
        trains = backbone_trains[epoch]
        assert (clean["backbone.weight"] is not None) == trains  # a frozen backbone has no gradient ...
        if not trains:
            assert noisy["backbone.weight"] is None  # ... and gets none
        names = [n for n in Finetuned.SHAPES if trains or n.startswith("head.")]
        want = expected_noise(4, t, _shapes(names), 0.1, epoch=epoch)
        for name, expected in zip(names, want, strict=True):
            torch.testing.assert_close(noisy[name] - clean[name], expected, msg=f"step {t}: {name}")  # type: ignore[operator]


@pytest.mark.filterwarnings("ignore:You're resuming from a checkpoint that ended before the epoch ended")
def test_a_resumed_fit_picks_the_parameters_again_at_its_first_step(
    make_trainer: Callable[..., pl.Trainer], tmp_path: Path
) -> None:
    """A fit resumed mid-epoch skips that epoch's on_train_epoch_start: the first step re-picks anyway.

    The resumed module freezes its backbone in ``on_train_start``, after GradientNoise's
    ``on_fit_start`` selected it: the backbone gets no gradient and no noise, the head the
    documented draw over the head alone.
    """
    before, after = AllGrads(), AllGrads()
    resume_with_backbone_frozen(make_trainer, lambda: GradientNoise(std=0.1, seed=4), before, after, tmp_path)
    assert len(after.steps) == 2  # steps 2 and 3 of epoch 0
    head = ["head.weight", "head.bias"]
    for i, step in enumerate((2, 3)):
        clean, noisy = before.steps[i], after.steps[i]
        assert clean["backbone.weight"] is None
        assert noisy["backbone.weight"] is None
        for name, want in zip(head, expected_noise(4, step, _shapes(head), 0.1), strict=True):
            torch.testing.assert_close(noisy[name] - clean[name], want, msg=f"step {step}: {name}")  # type: ignore[operator]


FROZEN_AT_START = (
    r"^GradientNoise: include=\['backbone\.\*'\] and exclude=None select parameters that are frozen"
    r" \(requires_grad=False\) as the fit starts: backbone\.weight, backbone\.bias\. They get no noise"
)
#: Matches both warnings, at fit start and at its end (pytest.warns re-emits the warnings it does not match).
FROZEN_OR_STAYED = r"select parameters that (are|stayed) frozen"


def _fit_with_backbone_only(
    make_trainer: Callable[..., pl.Trainer], unfreeze_at: int
) -> tuple[AllGrads, AllGrads, list[str]]:
    """GradientNoise(include="backbone.*") with the backbone frozen until ``unfreeze_at``: grads, warnings."""
    before, after = AllGrads(), AllGrads()
    noise = GradientNoise(std=0.1, include="backbone.*", seed=6)
    finetuning = BackboneFinetuning(unfreeze_backbone_at_epoch=unfreeze_at)
    with pytest.warns(UserWarning, match=FROZEN_OR_STAYED) as record:
        fit(make_trainer, [before, noise, after, finetuning], model=Finetuned(), limit_train_batches=2)
    return before, after, [str(w.message) for w in record if issubclass(w.category, UserWarning)]


def test_include_matching_only_frozen_parameters_is_accepted_with_a_warning(
    make_trainer: Callable[..., pl.Trainer],
) -> None:
    before, after, messages = _fit_with_backbone_only(make_trainer, unfreeze_at=1)
    # Once, at fit start; the backbone did become trainable: no warning at the end.
    assert len(messages) == 1
    assert re.match(FROZEN_AT_START, messages[0])
    assert len(after.steps) == 4
    for t, (clean, noisy) in enumerate(zip(before.steps, after.steps, strict=True)):
        for name in ("head.weight", "head.bias"):  # never selected
            assert torch.equal(noisy[name], clean[name])  # type: ignore[arg-type]
        if t < 2:
            assert noisy["backbone.weight"] is None
            continue
        names = ["backbone.weight", "backbone.bias"]
        for name, expected in zip(names, expected_noise(6, t, _shapes(names), 0.1, epoch=1), strict=True):
            torch.testing.assert_close(noisy[name] - clean[name], expected)  # type: ignore[operator]
    # A pattern that matches no parameter at all, frozen or not, is still refused.
    with pytest.raises(ConfigurationError, match=r"`include` pattern 'backbon\.\*' matches no parameter"):
        fit(
            make_trainer, [GradientNoise(0.1, include="backbon.*", seed=0), BackboneFinetuning()], Finetuned()
        )


def test_selected_parameters_frozen_for_the_whole_fit_are_named_at_its_end(
    make_trainer: Callable[..., pl.Trainer],
) -> None:
    before, after, messages = _fit_with_backbone_only(make_trainer, unfreeze_at=5)
    assert len(messages) == 2
    assert re.match(FROZEN_AT_START, messages[0])
    assert messages[1] == (
        "GradientNoise('gradient'): include=['backbone.*'] and exclude=None select parameters that stayed"
        " frozen (requires_grad=False) at the start of every epoch of this fit, so they got no noise:"
        " backbone.weight, backbone.bias."
    )
    assert len(after.steps) == 4
    for clean, noisy in zip(before.steps, after.steps, strict=True):  # no noise anywhere
        assert clean["backbone.weight"] is None
        assert noisy["backbone.weight"] is None
        for name in ("head.weight", "head.bias"):
            assert torch.equal(noisy[name], clean[name])  # type: ignore[arg-type]
