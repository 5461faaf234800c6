"""The token example: synthetic padded sequences, a tiny transformer, label smoothing, token noise."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from _trainers import quiet_trainer
from lit_noise import ConfigurationError, InputNoise, LabelSmoothing, SoftLabels, TargetNoise, TokenMask
from lit_noise.examples import (
    MASK_ID,
    PAD_ID,
    EpochShuffleSampler,
    TokenClassifier,
    TokenDataModule,
    make_token_sequences,
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """One intra-op thread: tiny transformer steps are far slower with threads fighting for shared cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --------------------------------------------------------------------------------------------- data


def test_sequences_are_padded_consistently_and_labelled_by_the_dominant_group() -> None:
    ids, mask, labels = make_token_sequences(300, vocab_size=30, num_classes=3, group_size=4, seed=4)
    assert ids.shape == mask.shape == (300, 24)
    assert ids.dtype == mask.dtype == labels.dtype == torch.int64
    for row, row_mask, label in zip(ids.tolist(), mask.tolist(), labels.tolist(), strict=True):
        length = sum(row_mask)
        assert 6 <= length <= 24
        assert row_mask == [1] * length + [0] * (24 - length)  # left-aligned
        assert row[length:] == [PAD_ID] * (24 - length)
        assert all(2 <= token < 30 for token in row[:length])  # never PAD_ID or MASK_ID inside
        counts = [sum(2 + 4 * k <= t < 2 + 4 * (k + 1) for t in row[:length]) for k in range(3)]
        assert counts[label] == max(counts)
    assert sorted(set(labels.tolist())) == [0, 1, 2]


def test_sequences_are_deterministic_from_the_seed() -> None:
    first = make_token_sequences(50, seed=1)
    assert all(torch.equal(a, b) for a, b in zip(first, make_token_sequences(50, seed=1), strict=True))
    assert not torch.equal(first[0], make_token_sequences(50, seed=2)[0])


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        (
            {"min_length": 8, "max_length": 4},
            r"^make_token_sequences: `max_length` must be >= `min_length` \(8\), got 4\.$",
        ),
        (
            {"vocab_size": 20},
            r"^make_token_sequences: `vocab_size` must be >= 2 \+ num_classes \* group_size = 26, got 20\.$",
        ),
        ({"signal": -0.1}, r"^make_token_sequences: `signal` must be >= 0 and <= 1, got -0\.1\.$"),
        ({"num_samples": -1}, r"^make_token_sequences: `num_samples` must be an integer >= 0, got -1\.$"),
    ],
)
def test_the_function_refuses_what_the_data_module_refuses(settings: dict[str, Any], match: str) -> None:
    arguments = {"num_samples": 5, **settings}
    with pytest.raises(ConfigurationError, match=match):
        make_token_sequences(**arguments)


def test_equal_min_and_max_length_give_sequences_of_that_length() -> None:
    _, mask, _ = make_token_sequences(20, min_length=7, max_length=7, seed=3)
    assert mask.sum(1).tolist() == [7] * 20
    assert mask.shape == (20, 7)


def test_the_data_module_yields_dict_batches_from_distinct_splits() -> None:
    dm = TokenDataModule(train_size=40, val_size=20, test_size=20, batch_size=8)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == {"input_ids", "attention_mask", "labels"}
    assert batch["input_ids"].shape == batch["attention_mask"].shape == (8, 24)
    assert batch["labels"].shape == (8,)
    assert torch.equal(batch["input_ids"] == PAD_ID, batch["attention_mask"] == 0)
    val = next(iter(dm.val_dataloader()))["input_ids"]
    test = next(iter(dm.test_dataloader()))["input_ids"]
    assert not torch.equal(val, test)
    assert torch.equal(val, next(iter(dm.val_dataloader()))["input_ids"])  # fixed order
    assert not (torch.cat([batch["input_ids"], val, test]) == MASK_ID).any()


def test_the_largest_seeds_work_and_small_seeds_keep_their_streams() -> None:
    """Seeds may be up to 2**64 - 1: the derived seeds are kept to 64 bits (they overflowed)."""
    big = TokenDataModule(train_size=16, val_size=8, test_size=8, batch_size=8, seed=2**64 - 1)
    big.setup("fit")
    assert next(iter(big.train_dataloader()))["input_ids"].shape == (8, 24)
    # Reduced modulo 2**64: 3 * (2**64 - 1) + 2 is 2**64 - 1, and (2**64 - 1) * 1_000_003 + 3 is
    # 2**64 - 1_000_000 (worked out by hand).
    expected = make_token_sequences(8, seed=2**64 - 1)[0]
    assert torch.equal(big.test_dataloader().dataset.tensors[0], expected)  # type: ignore[attr-defined]
    sampler = EpochShuffleSampler(10, seed=2**64 - 1)
    sampler.set_epoch(3)
    order = torch.randperm(10, generator=torch.Generator().manual_seed(2**64 - 1_000_000)).tolist()
    assert list(sampler) == order
    for bad in (2**64, -1):  # as every other seed: refused, not wrapped onto another one
        with pytest.raises(ConfigurationError, match=r"^EpochShuffleSampler: `seed` must be"):
            EpochShuffleSampler(10, seed=bad)
    # Below the limit, the documented derivations: 3 * seed + split, and seed * 1_000_003 + epoch.
    small = TokenDataModule(train_size=16, val_size=8, test_size=8, batch_size=8, seed=5)
    small.setup("fit")
    expected = make_token_sequences(8, seed=3 * 5 + 2)[0]
    assert torch.equal(small.test_dataloader().dataset.tensors[0], expected)  # type: ignore[attr-defined]
    sampler = EpochShuffleSampler(10, seed=5)
    sampler.set_epoch(3)
    order = torch.randperm(10, generator=torch.Generator().manual_seed(5 * 1_000_003 + 3)).tolist()
    assert list(sampler) == order


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (
            lambda: TokenDataModule(vocab_size=20),
            r"`vocab_size` must be >= 2 \+ num_classes \* group_size = 26",
        ),
        (lambda: TokenDataModule(min_length=8, max_length=4), r"`max_length` must be >= `min_length` \(8\)"),
        (lambda: TokenDataModule(signal=1.5), r"`signal` must be >= 0 and <= 1, got 1.5"),
        (lambda: TokenClassifier(d_model=30, nhead=4), r"`d_model` must be a multiple of `nhead` \(4\)"),
        (lambda: TokenClassifier(pad_id=48), r"`pad_id` must be an id below `vocab_size` \(48\)"),
        (lambda: TokenClassifier(num_layers=0), r"`num_layers` must be an integer >= 1"),
    ],
)
def test_bad_arguments_are_named(build: Any, match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        build()


# -------------------------------------------------------------------------------------------- model


def test_padding_does_not_change_the_logits() -> None:
    torch.manual_seed(0)
    model = TokenClassifier().eval()
    short = torch.tensor([[5, 9, 7]])
    padded = torch.tensor([[5, 9, 7, 0, 0, 0]])
    junk = torch.tensor([[5, 9, 7, 30, 11, 2]])  # garbage behind a zero mask
    mask = torch.tensor([[1, 1, 1, 0, 0, 0]])
    with torch.no_grad():
        reference = model(short)
        torch.testing.assert_close(model(padded), reference)
        torch.testing.assert_close(model(junk, attention_mask=mask), reference)
        torch.testing.assert_close(model(junk, attention_mask=mask.bool()), reference)
        empty = model(torch.zeros(1, 6, dtype=torch.long))  # every token dropped: the head's bias
    torch.testing.assert_close(empty[0], model.head.bias.detach())


def test_the_model_keeps_plain_hyperparameters_and_refuses_long_sequences() -> None:
    model = TokenClassifier(d_model=16, nhead=2)
    assert dict(model.hparams) == {
        "vocab_size": 48,
        "num_classes": 4,
        "max_length": 24,
        "d_model": 16,
        "nhead": 2,
        "num_layers": 1,
        "dim_feedforward": 64,
        "dropout": 0.0,
        "pad_id": 0,
        "lr": 3e-3,
        "weight_decay": 0.0,
    }
    assert model.embedding.padding_idx == PAD_ID
    assert model.embedding.embedding_dim == 16
    with pytest.raises(ConfigurationError, match=r"length 25 exceed `max_length` \(24\)"):
        model(torch.ones(1, 25, dtype=torch.long))


class Recording(TokenClassifier):
    """The token example, keeping the labels and loss of every training step and the validation ids."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.steps: list[tuple[Tensor, Tensor, Tensor]] = []
        self.train_ids: list[Tensor] = []
        self.val_ids: list[Tensor] = []

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        self.val_ids.append(batch["input_ids"].clone())
        return super().validation_step(batch, batch_idx)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        self.train_ids.append(batch["input_ids"].clone())
        loss = super().training_step(batch, batch_idx)
        logits = self(batch["input_ids"], batch["attention_mask"]).detach()
        self.steps.append((batch["labels"], logits, loss.detach()))
        return loss


@pytest.fixture(scope="module")
def trained() -> tuple[TokenClassifier, dict[str, float], TokenDataModule]:
    torch.manual_seed(0)
    model, dm = TokenClassifier(), TokenDataModule()
    trainer = quiet_trainer(max_epochs=2)
    trainer.fit(model, dm)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    metrics.update({k: float(v) for k, v in trainer.test(model, dm, verbose=False)[0].items()})
    return model, metrics, dm


def test_the_classifier_learns_the_task(trained: tuple[TokenClassifier, dict[str, float], Any]) -> None:
    _, metrics, _ = trained
    assert metrics["val/acc"] > 0.85  # chance is 0.25
    assert metrics["test/acc"] > 0.85
    assert metrics["val/loss"] < 0.6  # below ln 4 = 1.386 of a uniform guess
    assert {"train/loss", "train/acc", "test/loss"} <= set(metrics)


def test_predict_returns_the_logits(trained: tuple[TokenClassifier, Any, TokenDataModule]) -> None:
    model, _, dm = trained
    predictions = quiet_trainer().predict(model, dm.predict_dataloader())
    assert predictions is not None
    logits = torch.cat(predictions)  # type: ignore[arg-type]
    ids, mask, labels = (
        torch.cat(parts) for parts in zip(*(b.values() for b in dm.test_dataloader()), strict=True)
    )
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(logits, model(ids, mask))
    assert logits.shape == (256, 4)
    assert (logits.argmax(1) == labels).float().mean() > 0.85
    with torch.no_grad():
        torch.testing.assert_close(model.predict_step(ids[:3], 0), model(ids[:3]))  # a bare ids tensor


def test_label_smoothing_reaches_the_loss_as_a_soft_distribution() -> None:
    model = Recording()
    smoothing = TargetNoise(LabelSmoothing(eps=0.1), key="labels", num_classes=4, seed=0)
    quiet_trainer(callbacks=[smoothing], limit_train_batches=3, limit_val_batches=0).fit(
        model, TokenDataModule()
    )
    assert len(model.steps) == 3
    for labels, logits, loss in model.steps:
        assert isinstance(labels, SoftLabels)
        hard = labels.hard
        expected = F.one_hot(hard, 4).float() * 0.9 + 0.1 / 4  # smoothed target, typed out
        torch.testing.assert_close(labels.soft, expected)
        manual = -(expected * logits.log_softmax(1)).sum(1).mean()
        torch.testing.assert_close(loss, manual)


def test_token_noise_trains_and_leaves_validation_clean() -> None:
    torch.manual_seed(0)
    model, dm = Recording(), TokenDataModule()
    noise = InputNoise(
        TokenMask(p=0.15, mask_id=dm.mask_id), key="input_ids", mask_key="attention_mask", seed=0
    )
    trainer = quiet_trainer(callbacks=[noise], max_epochs=2)
    trainer.fit(model, dm)
    assert noise.last_values == {"p": 0.15}
    assert float(trainer.callback_metrics["val/acc"]) > 0.75
    assert (torch.cat(model.train_ids) == MASK_ID).any()
    assert model.val_ids
    assert not (torch.cat(model.val_ids) == MASK_ID).any()


def test_the_data_module_draws_from_its_attributes_as_they_are_when_set_up() -> None:
    data = TokenDataModule(train_size=8, val_size=4, test_size=4, max_length=24)
    data.max_length = 10  # changed after construction, before the splits are drawn
    data.setup("fit")
    assert data.train_set is not None
    ids, mask, labels = data.train_set.tensors
    expected = make_token_sequences(8, max_length=10, seed=0)
    assert ids.shape == (8, 10)
    assert torch.equal(ids, expected[0])
    assert torch.equal(mask, expected[1])
    assert torch.equal(labels, expected[2])
    data.min_length = 12  # now above max_length: refused when the splits are drawn
    with pytest.raises(
        ConfigurationError, match=r"TokenDataModule: `max_length` must be >= `min_length` \(12\)"
    ):
        data.make_splits()
