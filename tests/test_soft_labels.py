"""SoftLabels: hard labels to every op and metric, the distribution to cross_entropy / nll_loss."""

from __future__ import annotations

import copy
import pickle
from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import accuracy_score
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy

from lit_noise import ConfigurationError, LabelSmoothing, SoftLabels, TargetNoise, hard, soft
from lit_noise.examples import DigitsDataModule
from lit_noise.soft_labels import soft_nll_loss


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def make(batch: int = 6, num_classes: int = 4, seed: int = 0) -> SoftLabels:
    distribution = torch.rand(batch, num_classes, generator=gen(seed)).softmax(1)
    return SoftLabels(distribution)


# --------------------------------------------------------------------------- in a LightningModule


class MetricModule(pl.LightningModule):
    """A user's module: a loss on its targets and a torchmetrics accuracy on the same targets."""

    def __init__(self, loss: str) -> None:
        super().__init__()
        self.loss_kind = loss
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
        self.criterion = nn.CrossEntropyLoss()
        self.train_acc = MulticlassAccuracy(num_classes=10, average="micro")
        self.records: list[dict[str, Any]] = []

    def training_step(self, batch: Sequence[Tensor], batch_idx: int) -> Tensor:
        x, y = batch[0], batch[1]
        logits = self.net(x)
        if self.loss_kind == "module":
            loss = self.criterion(logits, y)
        elif self.loss_kind == "functional":
            loss = F.cross_entropy(logits, y)
        else:
            loss = F.nll_loss(F.log_softmax(logits, dim=1), y)
        accuracy = self.train_acc(logits, y)  # torchmetrics on the (soft) training targets
        self.records.append({"logits": logits.detach(), "y": y, "loss": loss.detach(), "acc": accuracy})
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.mark.parametrize("loss", ["module", "functional", "nll"])
def test_soft_labels_in_a_module_with_torchmetrics(make_trainer, loss: str) -> None:  # type: ignore[no-untyped-def]
    eps = 0.2
    module = MetricModule(loss)
    callback = TargetNoise(LabelSmoothing(eps=eps), num_classes=10, seed=0)
    trainer = make_trainer(max_epochs=1, limit_train_batches=3, limit_val_batches=0, callbacks=[callback])
    data = DigitsDataModule(batch_size=32)
    trainer.fit(module, train_dataloaders=data.train_dataloader())
    assert len(module.records) == 3
    order = list(iter(data.train_dataloader()))
    for record, (_, clean_y) in zip(module.records, order, strict=False):
        y, logits = record["y"], record["logits"]
        assert isinstance(y, SoftLabels)
        assert torch.equal(y.hard, clean_y)  # smoothing keeps the class
        assert torch.allclose(y.soft.sum(1), torch.ones(len(y)))
        # The loss is the soft-target loss, exactly.
        log_probs = F.log_softmax(logits, dim=1)
        # (nll_loss sums every term, then divides by the count, as cross_entropy does for probabilities)
        expected = -(y.soft * log_probs).sum() / len(y) if loss == "nll" else F.cross_entropy(logits, y.soft)
        assert torch.equal(record["loss"], expected)
        # ... which is nn.CrossEntropyLoss(label_smoothing=eps) on the hard labels.
        assert torch.allclose(
            record["loss"], nn.CrossEntropyLoss(label_smoothing=eps)(logits, clean_y), atol=1e-6
        )
        # The metric saw the hard labels.
        reference = accuracy_score(clean_y.numpy(), logits.argmax(1).numpy())
        assert record["acc"].item() == pytest.approx(reference)


# --------------------------------------------------------------------------- as a tensor


def test_is_the_hard_labels_to_operations() -> None:
    y = SoftLabels(torch.tensor([[0.9, 0.1, 0.0], [0.2, 0.3, 0.5], [0.1, 0.6, 0.3]]))
    assert y.dtype == torch.int64
    assert y.shape == (3,)
    assert len(y) == 3
    assert torch.equal(y.hard, torch.tensor([0, 2, 1]))
    assert type(y.hard) is Tensor
    assert (y == torch.tensor([0, 2, 1])).all()
    assert type(y + 1) is Tensor
    assert torch.equal(y + 1, torch.tensor([1, 3, 2]))
    assert torch.equal(F.one_hot(y, 3), F.one_hot(torch.tensor([0, 2, 1]), 3))
    assert torch.equal(torch.cat([y, y]), torch.tensor([0, 2, 1, 0, 2, 1]))
    assert y.float().dtype == torch.float32
    assert type(y.float()) is Tensor
    metric = MulticlassAccuracy(num_classes=3, average="micro")
    assert metric(torch.eye(3)[[0, 2, 2]], y).item() == pytest.approx(2 / 3)
    explicit = SoftLabels(torch.tensor([[0.5, 0.5]]), hard=torch.tensor([1]))
    assert explicit.item() == 1


def test_moving_copying_indexing_keep_both_parts() -> None:
    y = make()
    for moved in (
        y.to("cpu"),
        y.cpu(),
        y.detach(),
        y.clone(),
        y.contiguous(),
        y.to("cpu", copy=True),
        y[...],
    ):
        assert isinstance(moved, SoftLabels)
        assert torch.equal(moved.soft, y.soft)
        assert torch.equal(moved.hard, y.hard)
    head = y[1:4]
    assert isinstance(head, SoftLabels)
    assert torch.equal(head.soft, y.soft[1:4])
    mask = torch.tensor([True, False, True, False, True, True])
    assert torch.equal(y[mask].soft, y.soft[mask])
    assert torch.equal(y[mask].hard, y.hard[mask])
    picked = y[torch.tensor([5, 0])]
    assert torch.equal(picked.soft, y.soft[[5, 0]])
    # Conversions to another dtype are plain.
    assert type(y.to(torch.float32)) is Tensor
    assert y.to(torch.float32).dtype == torch.float32
    assert isinstance(y.to(torch.int64), SoftLabels)
    # A single label keeps its (C,) row; new dimensions are new label dimensions (classes at dim 1).
    assert isinstance(y[0], SoftLabels)
    assert y[0].ndim == 0
    assert torch.equal(y[0].soft, y.soft[0])
    assert y[:, None].shape == (6, 1)
    assert torch.equal(y[:, None].soft, y.soft[:, :, None])
    assert y[None].shape == (1, 6)
    assert torch.equal(y[None].soft, y.soft.T[None])


def test_pickle_deepcopy_repr() -> None:
    y = make()
    for copied in (pickle.loads(pickle.dumps(y)), copy.deepcopy(y)):
        assert isinstance(copied, SoftLabels)
        assert torch.equal(copied.soft, y.soft)
        assert torch.equal(copied.hard, y.hard)
    deep = copy.deepcopy(y)
    deep.soft[0, 0] = 123.0
    assert y.soft[0, 0] != 123.0
    text = repr(SoftLabels(torch.tensor([[0.75, 0.25]])))
    assert text == "SoftLabels([0], soft=[[0.7500, 0.2500]])"


# --------------------------------------------------------------------------- the losses


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_losses_see_the_distribution(reduction: str) -> None:
    y = make(batch=8, num_classes=5)
    logits = torch.randn(8, 5, generator=gen(3), requires_grad=True)
    weight = torch.rand(5, generator=gen(4)) + 0.5
    ce = F.cross_entropy(logits, y, weight=weight, reduction=reduction, label_smoothing=0.1)
    assert torch.equal(
        ce, F.cross_entropy(logits, y.soft, weight=weight, reduction=reduction, label_smoothing=0.1)
    )
    module = nn.CrossEntropyLoss(weight=weight, reduction=reduction)(logits, y)
    assert torch.equal(module, F.cross_entropy(logits, y.soft, weight=weight, reduction=reduction))
    log_probs = F.log_softmax(logits, dim=1)
    per_sample = -(y.soft * weight * log_probs).sum(1)
    expected = {"mean": per_sample.sum() / 8, "sum": per_sample.sum(), "none": per_sample}[reduction]
    assert torch.allclose(F.nll_loss(log_probs, y, weight=weight, reduction=reduction), expected)
    assert torch.allclose(nn.NLLLoss(weight=weight, reduction=reduction)(log_probs, y), expected)
    F.nll_loss(log_probs, y).backward()
    assert logits.grad is not None
    assert torch.isfinite(logits.grad).all()


def test_soft_nll_equals_cross_entropy_and_dense_targets() -> None:
    logits = torch.randn(4, 3, 5, 5, generator=gen(1))
    distribution = torch.rand(4, 3, 5, 5, generator=gen(2)).softmax(1)
    y = SoftLabels(distribution)
    assert y.shape == (4, 5, 5)
    assert torch.equal(y.hard, distribution.argmax(1))
    assert torch.allclose(F.cross_entropy(logits, y), F.cross_entropy(logits, distribution))
    assert torch.allclose(
        soft_nll_loss(F.log_softmax(logits, 1), distribution), F.cross_entropy(logits, distribution)
    )
    with pytest.raises(ConfigurationError, match="size_average"):
        F.nll_loss(F.log_softmax(logits, 1), y, size_average=True)


def test_nll_loss_takes_its_input_as_it_is() -> None:
    scores = torch.randn(5, 4, generator=gen(5))  # not log-probabilities: nll_loss must not normalise them
    distribution = torch.rand(5, 4, generator=gen(6)).softmax(1)
    expected = -(distribution * scores).sum(1).mean()  # F.nll_loss's -input[i, y_i], against the distribution
    torch.testing.assert_close(F.nll_loss(scores, SoftLabels(distribution)), expected)


def test_loss_errors_name_the_loss_that_was_called() -> None:
    logits = torch.randn(4, 3, generator=gen(3))
    y = SoftLabels(torch.rand(4, 3, generator=gen(4)).softmax(1))
    with pytest.raises(
        ConfigurationError, match=r"^nll_loss: `reduction` must be one of 'mean', 'sum', 'none'"
    ):
        F.nll_loss(F.log_softmax(logits, 1), y, reduction="all")
    with pytest.raises(ConfigurationError, match=r"^cross_entropy: `reduction` must be one of"):
        F.cross_entropy(logits, y, reduction="all")
    with pytest.raises(
        ConfigurationError, match=r"^cross_entropy: `label_smoothing` must be a number in \[0, 1\]"
    ):
        F.cross_entropy(logits, y, label_smoothing=1.5)
    with pytest.raises(ConfigurationError, match=r"^nll_loss: the input has shape \(4, 2\)"):
        F.nll_loss(F.log_softmax(logits[:, :2], 1), y)


# --------------------------------------------------------------------------- soft() and hard()


def test_soft_and_hard_helpers() -> None:
    labels = torch.tensor([2, 0, 1])
    assert torch.equal(soft(labels, 3), torch.eye(3)[[2, 0, 1]])
    dense = torch.tensor([[[0, 1], [2, 0]]])
    assert soft(dense, 3).shape == (1, 3, 2, 2)
    assert torch.equal(soft(dense, 3).argmax(1), dense)
    y = make()
    assert soft(y) is y.soft
    assert torch.equal(hard(y), y.hard)
    probs = torch.tensor([[0.2, 0.8], [0.9, 0.1]])
    assert soft(probs) is probs
    assert torch.equal(hard(probs), torch.tensor([1, 0]))
    assert hard(labels) is labels
    with pytest.raises(ConfigurationError, match="`num_classes` is required"):
        soft(labels)
    with pytest.raises(ConfigurationError, match=r"got dtype torch\.float32 and shape \(3,\)"):
        soft(torch.tensor([0.0, 1.0, 2.0]), 3)


def test_constructor_errors() -> None:
    with pytest.raises(ConfigurationError, match=r"`soft` must be a floating \(B, C, \.\.\.\) tensor"):
        SoftLabels(torch.tensor([[1, 0]]))
    with pytest.raises(ConfigurationError, match=r"`soft` must be a floating"):
        SoftLabels(torch.tensor([0.5, 0.5]))
    with pytest.raises(ConfigurationError, match=r"`hard` must have shape \(2,\), got \(3,\)"):
        SoftLabels(torch.rand(2, 4), hard=torch.tensor([0, 1, 2]))


def test_soft_with_ignore_index_and_dense_layout() -> None:
    labels = torch.tensor([[2, -100], [0, 1]])
    out = soft(labels, 3, ignore_index=-100)
    expected = torch.tensor([[[0.0, 0.0], [0.0, 0.0], [1.0, 0.0]], [[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]])
    assert torch.equal(out, expected)
    assert torch.equal(soft(torch.tensor(-100), 3, ignore_index=-100), torch.zeros(3))
    with pytest.raises((RuntimeError, IndexError)):  # other labels outside the class range stay an error
        soft(torch.tensor([0, -100]), 3)


def test_dense_soft_labels_keep_the_class_dim_1_layout_and_copy_round_trip() -> None:
    distribution = torch.rand(2, 4, 3, generator=gen(7)).softmax(1)
    y = SoftLabels(distribution)
    assert y.num_classes == 4
    assert torch.equal(y.soft, distribution)
    assert torch.equal(SoftLabels._wrap(distribution, y.hard).soft, distribution)
    single = y[1, 2]
    assert single.shape == ()
    assert torch.equal(single.soft, distribution[1, :, 2])
    for value in (y, single, y.view(-1)):
        for copied in (pickle.loads(pickle.dumps(value)), copy.deepcopy(value)):
            assert isinstance(copied, SoftLabels)
            assert torch.equal(copied.soft, value.soft)
            assert torch.equal(copied.hard, value.hard)
