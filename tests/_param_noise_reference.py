"""Shared by the WeightNoise / GradientNoise tests: a small module, data, and a hand-written loop.

The reference loop re-implements the documented semantics with plain torch, one parameter at a
time: the weight noise of micro-batch ``(epoch, batch_idx)`` is one draw of ``N(0, std)`` over all
selected parameters (in ``named_parameters`` order) from the generator the callbacks' shared
counter-based seeding (``NoiseCallback._generator``) gives for (seed, epoch, batch_idx, rank 0),
added before the forward pass and removed after backward; the gradient noise of optimizer step
``t`` is one draw from the generator for (seed, epoch, t, no rank), added before clipping and the
step. Only the seeding is borrowed from lit_noise; the perturb / restore / step logic is not.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import BackboneFinetuning, BaseFinetuning
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from lit_noise import Gaussian, GradientNoise, WeightNoise

N_SAMPLES, BATCH, FEATURES, CLASSES = 64, 8, 8, 3
CPU = torch.device("cpu")


def make_loader(n: int = N_SAMPLES, batch_size: int = BATCH, seed: int = 123) -> DataLoader:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, FEATURES, generator=g)
    y = torch.randint(0, CLASSES, (n,), generator=g)
    return DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=False)


def build_net(init_seed: int = 0) -> nn.Module:
    torch.manual_seed(init_seed)
    return nn.Sequential(nn.Linear(FEATURES, 16), nn.Tanh(), nn.Linear(16, CLASSES))


def make_optimizer(kind: str, params: Sequence[Tensor]) -> torch.optim.Optimizer:
    if kind == "adam":
        return torch.optim.Adam(params, lr=1e-2)
    if kind == "sgd":
        return torch.optim.SGD(params, lr=0.1)
    if kind == "lbfgs":
        return torch.optim.LBFGS(params, lr=0.1, max_iter=3)
    raise ValueError(kind)


class Net(pl.LightningModule):
    """An MLP classifier with switches for the awkward cases the callbacks must survive."""

    def __init__(
        self,
        optimizer: str = "adam",
        none_at: Sequence[int] = (),
        stop_at: int | None = None,
        raise_at: tuple[int, int] | None = None,
        init_seed: int = 0,
    ) -> None:
        super().__init__()
        self.net = build_net(init_seed)
        self.optimizer_kind = optimizer
        self.none_at = set(none_at)
        self.stop_at = stop_at
        self.raise_at = raise_at

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def training_step(self, batch: Any, batch_idx: int) -> Tensor | None:
        if (self.current_epoch, batch_idx) == self.raise_at:
            raise RuntimeError("boom inside training_step")
        if batch_idx in self.none_at:
            return None
        x, y = batch
        return F.cross_entropy(self(x), y)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> int | None:
        return -1 if batch_idx == self.stop_at else None

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return make_optimizer(self.optimizer_kind, list(self.parameters()))


class ValNet(Net):
    """Net with a validation step logging ``val_loss``."""

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", F.cross_entropy(self(x), y))


def snapshot(module: nn.Module) -> dict[str, Tensor]:
    return {n: p.detach().clone() for n, p in module.named_parameters()}


class StepRecorder(pl.Callback):
    """Records the parameters at the end of every batch that stepped the optimizer."""

    def __init__(self) -> None:
        self.steps: list[dict[str, Tensor]] = []
        self._seen = 0

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        if trainer.global_step > self._seen:
            self._seen = trainer.global_step
            self.steps.append({k.removeprefix("net."): v for k, v in snapshot(pl_module).items()})


@dataclass
class Reference:
    """Result of :func:`reference_loop`: weights after every optimizer step, and the optimizer."""

    steps: list[dict[str, Tensor]] = field(default_factory=list)
    batch_end: list[dict[str, Tensor]] = field(default_factory=list)
    optimizer: torch.optim.Optimizer | None = None
    model: nn.Module | None = None


def weight_generator(seed: int, epoch: int, batch_idx: int, name: str = "weight") -> torch.Generator:
    """The CPU generator WeightNoise(seed, name) draws micro-batch (epoch, batch_idx) from on rank 0."""
    clock = SimpleNamespace(current_epoch=epoch)
    return WeightNoise(Gaussian(0.0), seed=seed, name=name)._generator(CPU, clock, batch_idx)  # type: ignore[arg-type]


def gradient_generator(seed: int, epoch: int, step: int, name: str = "gradient") -> torch.Generator:
    """The CPU generator GradientNoise(seed, name) draws optimizer step ``step`` from (on any rank)."""
    clock = SimpleNamespace(current_epoch=epoch)
    return GradientNoise(0.0, seed=seed, name=name)._generator(CPU, clock, step, per_rank=False)  # type: ignore[arg-type]


def _draw(generator: torch.Generator, numel: int, std: float) -> Tensor:
    return torch.empty(numel).normal_(0.0, std, generator=generator)


def reference_loop(
    loader: DataLoader,
    epochs: int,
    *,
    optimizer: str = "adam",
    weight_seed: int | None = None,
    weight_std: Callable[[int], float] = lambda step: 0.0,
    relative: bool = False,
    grad_seed: int | None = None,
    grad_std: Callable[[int], float] = lambda step: 0.0,
    accumulate: int = 1,
    clip: float | None = None,
    none_at: Sequence[int] = (),
    stop_at: int | None = None,
    init_seed: int = 0,
    weight_name: str = "weight",
    grad_name: str = "gradient",
) -> Reference:
    """Plain-torch training loop with the documented weight/gradient noise semantics."""
    model = build_net(init_seed)
    params = list(model.parameters())
    opt = make_optimizer(optimizer, params)
    numel = sum(p.numel() for p in params)
    out = Reference(optimizer=opt, model=model)
    step = 0
    batches = list(loader)
    for epoch in range(epochs):
        for batch_idx, (x, y) in enumerate(batches):
            if batch_idx == stop_at:
                break
            if batch_idx % accumulate == 0:
                opt.zero_grad()
            clean = [p.detach().clone() for p in params]
            std = weight_std(step)
            if weight_seed is not None and std > 0:
                generator = weight_generator(weight_seed, epoch, batch_idx, weight_name)
                noise = _draw(generator, numel, std).split([p.numel() for p in params])
                with torch.no_grad():
                    for p, n in zip(params, noise, strict=True):
                        factor = p.std(correction=0) if relative else 1.0
                        p.add_(n.view_as(p) * factor)
            if batch_idx not in none_at:
                loss = F.cross_entropy(model(x), y) / accumulate
                loss.backward()
            with torch.no_grad():
                for p, c in zip(params, clean, strict=True):
                    p.copy_(c)
            if (batch_idx + 1) % accumulate == 0 or batch_idx == len(batches) - 1:
                gstd = grad_std(step)
                if grad_seed is not None and gstd > 0:
                    generator = gradient_generator(grad_seed, epoch, step, grad_name)
                    noise = _draw(generator, numel, gstd).split([p.numel() for p in params])
                    for p, n in zip(params, noise, strict=True):
                        if p.grad is not None:
                            p.grad.add_(n.view_as(p))
                if clip is not None:
                    torch.nn.utils.clip_grad_norm_(params, clip)
                opt.step()
                step += 1
                out.steps.append({n: p.detach().clone() for n, p in model.named_parameters()})
            out.batch_end.append({n: p.detach().clone() for n, p in model.named_parameters()})
    return out


def assert_same_weights(got: dict[str, Tensor], want: dict[str, Tensor], exact: bool = True) -> None:
    assert got.keys() == want.keys()
    for name in want:
        if exact:
            assert torch.equal(got[name], want[name]), name
        else:
            torch.testing.assert_close(got[name], want[name], rtol=1e-5, atol=1e-6, msg=name)


def assert_same_optimizer_state(
    lightning_opt: torch.optim.Optimizer, reference_opt: torch.optim.Optimizer
) -> None:
    a, b = lightning_opt.state_dict(), reference_opt.state_dict()
    assert a["state"].keys() == b["state"].keys()
    for key, state in b["state"].items():
        for name, value in state.items():
            other = a["state"][key][name]
            if isinstance(value, Tensor):
                torch.testing.assert_close(other, value, rtol=1e-5, atol=1e-7)
            else:
                assert other == value


class Finetuned(pl.LightningModule):
    """A backbone and a head for the finetuning callbacks; SGD over the parameters trainable at set-up."""

    SHAPES: ClassVar[dict[str, tuple[int, ...]]] = {
        "backbone.weight": (16, FEATURES),
        "backbone.bias": (16,),
        "head.weight": (CLASSES, 16),
        "head.bias": (CLASSES,),
    }

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.backbone = nn.Linear(FEATURES, 16)
        self.head = nn.Linear(16, CLASSES)

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        x, y = batch
        return F.cross_entropy(self.head(torch.tanh(self.backbone(x))), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD([p for p in self.parameters() if p.requires_grad], lr=0.1)


class UnfreezeForOneEpoch(BaseFinetuning):
    """Freezes the backbone in ``setup``, unfreezes it (own param group) at epoch 1, freezes it at 2."""

    def freeze_before_training(self, pl_module: pl.LightningModule) -> None:
        self.freeze(pl_module.backbone)

    def finetune_function(self, pl_module: pl.LightningModule, epoch: int, optimizer: Any) -> None:
        if epoch == 1:
            self.unfreeze_and_add_param_group(pl_module.backbone, optimizer)
        elif epoch == 2:
            self.freeze(pl_module.backbone)


class FreezesAtTrainStart(Finetuned):
    """Freezes its backbone in its own ``on_train_start`` when ``freeze`` is set (after on_fit_start)."""

    freeze = False

    def on_train_start(self) -> None:
        if self.freeze:
            self.backbone.requires_grad_(False)


class SaveAtStep(pl.Callback):
    """Saves a checkpoint (mid-epoch) at the end of optimizer step ``step``."""

    def __init__(self, step: int, path: Path) -> None:
        self.step, self.path = step, path

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        if trainer.global_step == self.step:
            trainer.save_checkpoint(self.path)


def resume_with_backbone_frozen(
    make_trainer: Callable[..., pl.Trainer],
    make_noise: Callable[[], pl.Callback],
    before: pl.Callback,
    after: pl.Callback,
    tmp_path: Path,
) -> None:
    """Fit 4 batches with ``make_noise()``, saving at step 2; resume from there with the module
    freezing its backbone in ``on_train_start`` and ``before`` / ``make_noise()`` / ``after`` watching.

    The resumed fit skips epoch 0's ``on_train_epoch_start``: only the first batch's or step's
    re-pick can see that the backbone is frozen.
    """
    checkpoint = tmp_path / "step=2.ckpt"
    first = make_trainer(
        max_epochs=1,
        limit_train_batches=4,
        limit_val_batches=0,
        callbacks=[make_noise(), SaveAtStep(2, checkpoint)],
    )
    first.fit(FreezesAtTrainStart(), make_loader())
    model = FreezesAtTrainStart()
    model.freeze = True
    trainer = make_trainer(
        max_epochs=1, limit_train_batches=4, limit_val_batches=0, callbacks=[before, make_noise(), after]
    )
    with pytest.warns(UserWarning, match="resumes from a checkpoint saved mid-epoch"):  # the data order
        trainer.fit(model, make_loader(), ckpt_path=checkpoint)


#: (finetuning callback factory, whether the backbone trains in epochs 0, 1, 2), for both callbacks' tests.
FINETUNING_CASES: list[tuple[Callable[[], pl.Callback], tuple[bool, ...]]] = [
    (lambda: BackboneFinetuning(unfreeze_backbone_at_epoch=1), (False, True, True)),
    (UnfreezeForOneEpoch, (False, True, False)),
]
FINETUNING_IDS = ["BackboneFinetuning", "frozen again at epoch 2"]
