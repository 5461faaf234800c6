"""The generated shapes data: determinism, layout, balance, and learnability by the example CNN."""

from __future__ import annotations

from collections.abc import Callable

import lightning.pytorch as pl
import pytest
import torch
from torch import nn

from lit_noise import ConfigurationError
from lit_noise.examples import SHAPES, Classifier, ShapesDataModule, make_shapes


def precise_batch_norm(model: nn.Module, inputs: torch.Tensor) -> None:
    """Recompute every BatchNorm's running statistics as exact averages over ``inputs``."""
    layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None  # cumulative average
    model.train()
    with torch.no_grad():
        for chunk in inputs.split(250):
            model(chunk)
    model.eval()


def test_make_shapes_is_deterministic_balanced_and_in_range() -> None:
    x, y = make_shapes(600, seed=3)
    assert x.shape == (600, 3, 32, 32)
    assert x.dtype == torch.float32
    assert y.dtype == torch.int64
    assert x.min() >= 0
    assert x.max() <= 1
    assert y.bincount(minlength=len(SHAPES)).tolist() == [100] * len(SHAPES)
    x2, y2 = make_shapes(600, seed=3)
    assert torch.equal(x, x2)
    assert torch.equal(y, y2)
    x3, y3 = make_shapes(600, seed=4)
    assert not torch.equal(x, x3)
    assert not torch.equal(y, y3)
    # No two images alike, and labels are not in a fixed pattern.
    assert torch.cdist(x.flatten(1), x.flatten(1)).add(torch.eye(600) * 1e9).min() > 1.0
    assert not torch.equal(y, torch.arange(600) % len(SHAPES))


def test_shapes_are_brighter_than_their_background_in_every_channel() -> None:
    x, _ = make_shapes(1000, seed=0)
    # Every shape covers at least ~2% of the image and is drawn from [0.55, 1] in each channel,
    # the background (most pixels) from [0, 0.45] plus stripes of amplitude <= 0.12: in every
    # channel of every image the brightest 1% of pixels stand well above the median.
    flat = x.flatten(2)
    assert (flat.quantile(0.99, dim=2) - flat.median(dim=2).values > 0.1).all()
    luminance = x.mean(1).flatten(1)
    assert ((luminance > 0.5).float().mean(1) > 0.02).all()


def test_datamodule_batches_splits_and_order(make_trainer: Callable[..., pl.Trainer]) -> None:
    dm = ShapesDataModule(batch_size=16, train_size=64, val_size=32, test_size=48, seed=1)
    dm.setup("fit")
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (64, 32, 48)  # type: ignore[arg-type]
    batch = next(iter(dm.train_dataloader()))
    assert isinstance(batch, list)
    assert len(batch) == 2
    assert batch[0].shape == (16, 3, 32, 32)
    assert batch[1].shape == (16,)
    train_x = dm.train_set.tensors[0]  # type: ignore[union-attr]
    val_x = dm.val_set.tensors[0]  # type: ignore[union-attr]
    assert not torch.equal(train_x[:32], val_x)  # independent splits
    other = ShapesDataModule(batch_size=16, train_size=64, val_size=32, test_size=48, seed=1)
    other.setup()
    assert torch.equal(other.val_set.tensors[0], val_x)  # type: ignore[union-attr]
    # The training order is a function of the epoch; validation keeps a fixed order.
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(0)  # type: ignore[attr-defined]
    first = torch.cat([b[1] for b in loader])
    loader.sampler.set_epoch(1)  # type: ignore[attr-defined]
    second = torch.cat([b[1] for b in loader])
    assert not torch.equal(first, second)
    assert torch.equal(first.sort().values, second.sort().values)
    assert torch.equal(torch.cat([b[0] for b in dm.val_dataloader()]), val_x)


@pytest.mark.parametrize(
    ("argument", "value"),
    [("batch_size", 0), ("train_size", 0), ("val_size", -1), ("seed", -1), ("num_workers", 1.5)],
)
def test_datamodule_bad_arguments(argument: str, value: object) -> None:
    with pytest.raises(ConfigurationError, match=argument):
        ShapesDataModule(**{argument: value})  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="num_samples"):
        make_shapes(0)


@pytest.mark.slow  # 6 s: five epochs of the CNN
def test_the_example_cnn_learns_the_shapes_in_a_few_epochs(make_trainer: Callable[..., pl.Trainer]) -> None:
    pl.seed_everything(0, verbose=False)
    dm = ShapesDataModule(batch_size=32, train_size=2000, val_size=500)
    model = Classifier("cnn", num_classes=len(SHAPES), input_shape=(3, 32, 32), hidden=16, lr=3e-3)
    trainer = make_trainer(max_epochs=5, num_sanity_val_steps=0, check_val_every_n_epoch=5)
    trainer.fit(model, dm)
    chance = 1 / len(SHAPES)
    assert trainer.callback_metrics["val/acc"] > chance + 0.3
    # With exact BatchNorm statistics (the running averages lag behind a fast-moving model).
    precise_batch_norm(model, dm.train_set.tensors[0][:1000])  # type: ignore[union-attr]
    x, y = dm.val_set.tensors  # type: ignore[union-attr]
    with torch.no_grad():
        accuracy = (model(x).argmax(1) == y).float().mean().item()
    assert accuracy > 0.8
