"""Soft targets on sequence models: shape and index ops carry the distribution, ignore_index is kept.

Oracles are plain torch written here: each op applied to the hard labels and to every class plane of
the distribution (and of the logits) separately, a hand-written soft cross-entropy
``-(p * log_softmax(z)).sum(-1)`` averaged over the kept positions, and torch's own hard-target
losses (``ignore_index``, ``label_smoothing``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.demos import Transformer
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset
from torchmetrics.classification import MulticlassAccuracy

from lit_noise import (
    ConfigurationError,
    Gaussian,
    LabelSmoothing,
    PairFlip,
    SoftLabels,
    SymmetricFlip,
    TargetNoise,
    TransitionMatrix,
)
from lit_noise import soft_labels as soft_labels_module

B, T, V = 3, 5, 7
TIGHT = {"rtol": 1e-6, "atol": 1e-7}


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def tokens(pad: int = -100, seed: int = 0) -> Tensor:
    """(B, T) token ids in [1, V) with padding at the end of every sequence but the first."""
    hard = torch.randint(1, V, (B, T), generator=gen(seed))
    for b, length in enumerate([T, 3, 1]):
        hard[b, length:] = pad
    return hard


def distribution(hard: Tensor, pad: int = -100, seed: int = 1) -> Tensor:
    """A random (B, V, T) distribution, zero rows at padding (as label noise leaves them)."""
    dist = torch.rand(B, V, T, generator=gen(seed)).softmax(1)
    return dist.masked_fill((hard == pad).unsqueeze(1), 0.0)


def hand_ce(logits: Tensor, probs: Tensor, keep: Tensor) -> Tensor:
    """Soft cross-entropy, classes last: -(p * log_softmax(z)).sum(-1), averaged over kept positions."""
    per_position = -(probs * torch.log_softmax(logits, dim=-1)).sum(-1)
    return per_position[keep].sum() / keep.sum()


def classes_at_1(classes_last: Tensor) -> Tensor:
    """(N, ..., C) -> the layout cross_entropy takes: (N, C, ...) ((C,) and (N, C) as they are)."""
    return classes_last if classes_last.ndim <= 2 else classes_last.movedim(-1, 1)


def per_plane(op: Callable[[Tensor], Any], classes_last: Tensor) -> Any:
    """``op`` applied to each class plane separately, stacked back classes last."""
    results = [op(classes_last[..., c].contiguous()) for c in range(classes_last.shape[-1])]
    if isinstance(results[0], Tensor):
        return torch.stack(results, dim=-1)
    return [torch.stack([r[i] for r in results], dim=-1) for i in range(len(results[0]))]


# --------------------------------------------------------------------------- ops carry the distribution

SINGLE_OPS: dict[str, Callable[[Tensor], Tensor]] = {
    "view(-1)": lambda t: t.view(-1),
    "view(T, B)": lambda t: t.view(T, B),
    "reshape": lambda t: t.reshape(B * T),
    "torch.reshape": lambda t: torch.reshape(t, (T, B)),
    "flatten": lambda t: t.flatten(),
    "torch.flatten": lambda t: torch.flatten(t),
    "permute": lambda t: t.permute(1, 0),
    "torch.permute": lambda t: torch.permute(t, (1, 0)),
    "transpose": lambda t: t.transpose(0, 1),
    "torch.transpose": lambda t: torch.transpose(t, -1, -2),
    "T": lambda t: t.T,
    "mT": lambda t: t.mT,
    "squeeze": lambda t: t[:1].squeeze(0),
    "unsqueeze": lambda t: t.unsqueeze(0),
    "torch.unsqueeze": lambda t: torch.unsqueeze(t, -1),
    "contiguous": lambda t: t.transpose(0, 1).contiguous(),
    "slice": lambda t: t[:, 1:],
    "slice step": lambda t: t[::2, :-1],
    "int index": lambda t: t[1, 2],
    "row": lambda t: t[0],
    "ellipsis": lambda t: t[..., 0],
    "None": lambda t: t[:, None],
    "boolean mask": lambda t: t[torch.tensor([[i % 2 == 0 for i in range(T)] for _ in range(B)])],
    "row mask": lambda t: t[torch.tensor([True, False, True])],
    "integer tensor": lambda t: t[torch.tensor([2, 0, 2])],
    "two index tensors": lambda t: t[torch.tensor([0, 2]), torch.tensor([4, 0])],
    "list": lambda t: t[[2, 0]],
    "to": lambda t: t.to("cpu", copy=True),
    "cpu": lambda t: t.cpu(),
    "clone": lambda t: t.clone(),
    "detach": lambda t: t.detach(),
    "flip": lambda t: t.flip(1),
    "roll": lambda t: t.roll(2, dims=1),
    "roll flat": lambda t: torch.roll(t, 3),
    "narrow": lambda t: t.narrow(1, 1, 3),
    "expand": lambda t: t[:, :1].expand(B, T),
    "repeat": lambda t: t.repeat(2, 1),
    "gather": lambda t: t.gather(1, torch.tensor([[0, 4], [1, 1], [3, 0]])),
    "index_select": lambda t: t.index_select(1, torch.tensor([4, 0])),
    "movedim": lambda t: t.movedim(0, -1),
    "unfold": lambda t: t.unfold(1, 2, 2),
}

# Ops that keep every position exactly once: the loss equals the loss on the original targets.
PERMUTING = {"view(-1)", "view(T, B)", "reshape", "torch.reshape", "flatten", "torch.flatten", "permute"}
PERMUTING |= {"torch.permute", "transpose", "torch.transpose", "T", "mT", "unsqueeze", "torch.unsqueeze"}
PERMUTING |= {"contiguous", "to", "cpu", "clone", "detach", "flip", "roll", "roll flat", "movedim"}


@pytest.mark.parametrize("name", list(SINGLE_OPS))
def test_shape_and_index_ops_carry_the_distribution(name: str) -> None:
    op = SINGLE_OPS[name]
    hard = tokens()
    dist = distribution(hard)
    y = SoftLabels(dist, hard)
    result = op(y)
    assert isinstance(result, SoftLabels), name
    expected_hard = op(hard)
    assert torch.equal(result.hard, expected_hard)
    expected_probs = per_plane(op, dist.movedim(1, -1))  # classes last
    assert torch.equal(result.soft, classes_at_1(expected_probs))
    # The loss on the result is the hand-written soft cross-entropy of the same positions.
    logits = torch.randn(B, T, V, generator=gen(5))
    moved_logits = per_plane(op, logits)
    loss = F.cross_entropy(classes_at_1(moved_logits), result)
    keep = expected_hard != -100
    torch.testing.assert_close(loss, hand_ce(moved_logits, expected_probs, keep), **TIGHT)
    if name in PERMUTING:
        torch.testing.assert_close(loss, hand_ce(logits, dist.movedim(1, -1), hard != -100), **TIGHT)


@pytest.mark.parametrize(
    "name", ["split", "chunk", "unbind", "tensor_split", "iteration"], ids=lambda n: f"{n}"
)
def test_ops_with_several_results_carry_each(name: str) -> None:
    ops: dict[str, Callable[[Tensor], Sequence[Tensor]]] = {
        "split": lambda t: t.split(2, dim=1),
        "chunk": lambda t: torch.chunk(t, 2, dim=0),
        "unbind": lambda t: t.unbind(1),
        "tensor_split": lambda t: torch.tensor_split(t, [1, 4], dim=-1),
        "iteration": lambda t: list(t),
    }
    op = ops[name]
    hard = tokens()
    dist = distribution(hard)
    pieces = op(SoftLabels(dist, hard))
    expected_probs = per_plane(op, dist.movedim(1, -1))
    assert len(pieces) == len(expected_probs) == len(op(hard))
    for piece, labels, probs in zip(pieces, op(hard), expected_probs, strict=True):
        assert isinstance(piece, SoftLabels)
        assert torch.equal(piece.hard, labels)
        assert torch.equal(piece.soft, classes_at_1(probs))


def test_cat_and_stack_join_distributions_and_plain_labels_as_one_hot() -> None:
    hard = tokens()
    dist = distribution(hard)
    y = SoftLabels(dist, hard)
    plain = torch.tensor([[6, 0, -100, 2, 3]])
    joined = torch.cat([y, plain])
    assert isinstance(joined, SoftLabels)
    assert torch.equal(joined.hard, torch.cat([hard, plain]))
    one_hot = torch.zeros(1, V, T)
    for t, label in enumerate(plain[0].tolist()):
        if label >= 0:
            one_hot[0, label, t] = 1.0
    assert torch.equal(joined.soft, torch.cat([dist, one_hot]))
    stacked = torch.stack([y, y], dim=1)
    assert torch.equal(stacked.hard, torch.stack([hard, hard], dim=1))
    assert torch.equal(stacked.soft, torch.stack([dist, dist], dim=2))
    with pytest.raises(RuntimeError):  # torch's own error for a bad call, not ours
        torch.cat([y, plain[:, :2]])


def test_padding_and_filling_ops_give_made_up_labels_their_one_hot_or_zero_row() -> None:
    hard = tokens()
    dist = distribution(hard)
    y = SoftLabels(dist, hard)
    padded = F.pad(y, (0, 2), value=-100)
    assert torch.equal(padded.hard, F.pad(hard, (0, 2), value=-100))
    assert torch.equal(padded.soft, torch.cat([dist, torch.zeros(B, V, 2)], dim=2))
    front = F.pad(y, (1, 0), value=3)
    three = torch.zeros(B, V, 1)
    three[:, 3] = 1.0
    assert torch.equal(front.soft, torch.cat([three, dist], dim=2))
    lower = y[:, :3].tril()  # the zeros above the diagonal are class 0
    assert torch.equal(lower.hard, hard[:, :3].tril())
    expected = dist[:, :, :3].clone()
    for i in range(B):
        for j in range(i + 1, 3):
            expected[i, :, j] = 0.0
            expected[i, 0, j] = 1.0
    assert torch.equal(lower.soft, expected)


# --------------------------------------------------------------------------- the loss layouts


@pytest.mark.parametrize("pad", [-100, 0])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_the_three_layouts_give_the_same_soft_loss(pad: int, reduction: str) -> None:
    hard = tokens(pad=pad)
    dist = distribution(hard, pad)
    y = SoftLabels(dist, hard)
    logits = torch.randn(B, T, V, generator=gen(7))  # what a batch-first model returns
    flat = F.cross_entropy(logits.view(-1, V), y.view(-1), ignore_index=pad, reduction=reduction)
    dense = F.cross_entropy(logits.permute(0, 2, 1), y, ignore_index=pad, reduction=reduction)
    log_probs = F.log_softmax(logits, dim=-1)
    nll = F.nll_loss(log_probs.view(-1, V), y.view(-1), ignore_index=pad, reduction=reduction)
    module = nn.CrossEntropyLoss(ignore_index=pad, reduction=reduction)(logits.view(-1, V), y.view(-1))
    nll_module = nn.NLLLoss(ignore_index=pad, reduction=reduction)(log_probs.view(-1, V), y.view(-1))
    # By hand: per-position soft cross-entropy, 0 at padding; mean over the kept positions.
    keep = hard != pad
    per_position = -(dist.movedim(1, -1) * torch.log_softmax(logits, -1)).sum(-1) * keep
    expected = {
        "mean": per_position.sum() / keep.sum(),
        "sum": per_position.sum(),
        "none": per_position,
    }[reduction]
    for loss in (flat, dense, nll, module, nll_module):
        torch.testing.assert_close(loss.reshape(expected.shape), expected, **TIGHT)
    torch.testing.assert_close(flat.reshape(dense.shape), dense, **TIGHT)  # to rounding (log_softmax's dim)
    torch.testing.assert_close(flat, nll, **TIGHT)


def test_loss_is_bit_identical_to_torch_probability_targets_when_nothing_is_ignored() -> None:
    hard = tokens().clamp(min=0)
    dist = torch.rand(B, V, T, generator=gen(2)).softmax(1)
    y = SoftLabels(dist, hard)
    logits = torch.randn(B, V, T, generator=gen(3))
    weight = torch.rand(V, generator=gen(4)) + 0.5
    for options in ({}, {"weight": weight}, {"label_smoothing": 0.2}, {"reduction": "sum"}):
        assert torch.equal(F.cross_entropy(logits, y, **options), F.cross_entropy(logits, dist, **options))


# --------------------------------------------------------------------------- ignore_index


@pytest.mark.parametrize("pad", [-100, 0])
def test_smoothing_with_eps_0_is_torch_hard_cross_entropy_over_kept_positions(pad: int) -> None:
    hard = tokens(pad=pad)
    y = LabelSmoothing(eps=0.0, num_classes=V, ignore_index=pad)(hard)
    logits = torch.randn(B * T, V, generator=gen(3))
    reference = F.cross_entropy(logits, hard.view(-1), ignore_index=pad)
    torch.testing.assert_close(F.cross_entropy(logits, y.view(-1), ignore_index=pad), reference, **TIGHT)
    torch.testing.assert_close(nn.CrossEntropyLoss(ignore_index=pad)(logits, y.view(-1)), reference, **TIGHT)
    log_probs = logits.log_softmax(-1)
    torch.testing.assert_close(F.nll_loss(log_probs, y.view(-1), ignore_index=pad), reference, **TIGHT)


@pytest.mark.parametrize("pad", [-100, 0])
@pytest.mark.parametrize("eps", [0.1, 0.4])
def test_smoothed_tokens_equal_torch_label_smoothing_with_ignore_index(pad: int, eps: float) -> None:
    hard = tokens(pad=pad)
    y = TargetNoise(LabelSmoothing(eps=eps), num_classes=V, ignore_index=pad).noise(hard)
    logits = torch.randn(B, T, V, generator=gen(4))
    loss = nn.CrossEntropyLoss(ignore_index=pad)(logits.view(-1, V), y.view(-1))
    # torch's own label smoothing of hard targets, padding ignored: an external oracle.
    torch_smoothed = nn.CrossEntropyLoss(ignore_index=pad, label_smoothing=eps)(
        logits.view(-1, V), hard.view(-1)
    )
    torch.testing.assert_close(loss, torch_smoothed, **TIGHT)
    keep = hard != pad
    smoothed = torch.full((B, T, V), eps / V)
    smoothed.scatter_(-1, hard.clamp(min=0).unsqueeze(-1), 1 - eps + eps / V)
    torch.testing.assert_close(loss, hand_ce(logits, smoothed, keep), **TIGHT)
    hard_loss = F.cross_entropy(logits.view(-1, V), hard.view(-1), ignore_index=pad)
    assert abs(loss.item() - hard_loss.item()) > 1e-3  # the soft targets were used


def test_class_weights_scale_terms_and_the_mean_counts_kept_positions() -> None:
    hard = tokens()
    dist = distribution(hard)
    y = SoftLabels(dist, hard)
    logits = torch.randn(B, T, V, generator=gen(8))
    weight = torch.rand(V, generator=gen(9)) + 0.5
    loss = F.cross_entropy(logits.view(-1, V), y.view(-1), weight=weight)
    keep = hard != -100
    terms = -(weight * dist.movedim(1, -1) * torch.log_softmax(logits, -1)).sum(-1)
    torch.testing.assert_close(loss, terms[keep].sum() / keep.sum(), **TIGHT)
    # label_smoothing= smooths the distribution first (torch's probability-target convention).
    smoothed = F.cross_entropy(logits.view(-1, V), y.view(-1), label_smoothing=0.3)
    q = dist.movedim(1, -1) * 0.7 + 0.3 / V
    torch.testing.assert_close(smoothed, hand_ce(logits, q, keep), **TIGHT)


def test_all_positions_ignored_gives_nan_like_torch() -> None:
    hard = torch.full((2, 3), -100)
    y = SoftLabels(torch.zeros(2, V, 3), hard)
    logits = torch.randn(6, V, generator=gen(1))
    assert torch.isnan(F.cross_entropy(logits, hard.view(-1)))  # torch, hard targets
    assert torch.isnan(F.cross_entropy(logits, y.view(-1)))
    assert F.cross_entropy(logits, y.view(-1), reduction="sum") == 0.0


def test_ignored_positions_with_nan_logits_stay_out_of_the_loss() -> None:
    hard = tokens()
    y = SoftLabels(distribution(hard), hard)
    logits = torch.randn(B, T, V, generator=gen(2))
    clean = F.cross_entropy(logits.view(-1, V), y.view(-1))
    logits[hard == -100] = float("nan")  # e.g. a model that masks padded positions
    torch.testing.assert_close(F.cross_entropy(logits.view(-1, V), y.view(-1)), clean, rtol=0, atol=0)


def test_logits_with_classes_last_are_refused_clearly() -> None:
    hard = tokens()
    y = SoftLabels(distribution(hard), hard)
    with pytest.raises(ConfigurationError, match=r"cross_entropy: the input has shape \(3, 5, 7\)"):
        F.cross_entropy(torch.randn(B, T, V), y)


# --------------------------------------------------------------------------- label writes


def test_label_writes_give_changed_positions_their_one_hot_or_zero_row() -> None:
    hard = tokens()
    dist = distribution(hard)
    logits = torch.randn(B * T, V, generator=gen(3))
    drop = hard == 3
    expected_keep = (hard != -100) & ~drop
    expected = hand_ce(logits, dist.movedim(1, -1).reshape(-1, V), expected_keep.view(-1))
    written = SoftLabels(dist.clone(), hard.clone())
    written[written == 3] = -100  # what language models do to mask positions
    where = torch.where(~drop, SoftLabels(dist, hard), -100)
    filled = SoftLabels(dist, hard).masked_fill(drop, -100)
    in_place = SoftLabels(dist.clone(), hard.clone())
    in_place.masked_fill_(drop, -100)
    for y in (written, where, filled, in_place):
        assert isinstance(y, SoftLabels)
        assert torch.equal(y.hard, hard.masked_fill(drop, -100))
        rows = y.soft.movedim(1, -1)
        assert torch.equal(rows[drop], torch.zeros(int(drop.sum()), V))  # -100: no distribution
        assert torch.equal(rows[~drop], dist.movedim(1, -1)[~drop])
        torch.testing.assert_close(F.cross_entropy(logits, y.view(-1)), expected, **TIGHT)
    # A position set to a class gets that class's one-hot row; the other rows stay.
    relabelled = SoftLabels(dist.clone(), hard.clone())
    new = int(hard[0, 0]) % (V - 1) + 1  # another class
    relabelled[0, 0] = new
    one_hot = torch.zeros(V)
    one_hot[new] = 1.0
    assert torch.equal(relabelled.soft[0, :, 0], one_hot)
    assert torch.equal(relabelled.soft[:, :, 1:], dist[:, :, 1:])


# --------------------------------------------------------------------------- what cannot be carried


def test_an_op_that_cannot_carry_the_distribution_warns_once_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(soft_labels_module, "_WARNED", set())
    hard = tokens()
    y = SoftLabels(distribution(hard), hard)
    with pytest.warns(UserWarning, match=r"SoftLabels: `as_strided` cannot carry the class distribution"):
        result = y.as_strided((2, 2), (1, 1))
    assert type(result) is Tensor
    assert torch.equal(result, hard.as_strided((2, 2), (1, 1)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = y.as_strided((2,), (1,))  # warned once: silent now
    assert type(again) is Tensor
    with pytest.warns(UserWarning, match=r"`resize_` cannot carry"):
        y.clone().resize_(2)


def test_arithmetic_comparisons_and_metrics_see_hard_labels_without_warning() -> None:
    hard = tokens()
    y = SoftLabels(distribution(hard), hard)
    logits = torch.randn(B, V, T, generator=gen(6))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        results = [y == logits.argmax(1), y.float(), y + 1, y.sum(), F.one_hot(y.clamp(min=0), V), y.ne(-100)]
        metric = MulticlassAccuracy(num_classes=V, average="micro", ignore_index=-100)
        accuracy = metric(logits, y)
    for value in results:
        assert type(value) is Tensor
    assert torch.equal(results[0], hard == logits.argmax(1))
    keep = hard != -100
    expected = (logits.argmax(1) == hard)[keep].float().mean()
    torch.testing.assert_close(accuracy, expected)


# --------------------------------------------------------------------------- TargetNoise arguments


def test_target_noise_passes_ignore_index_to_the_label_noise() -> None:
    callback = TargetNoise(LabelSmoothing(eps=0.1), num_classes=V, ignore_index=0)
    assert callback.noise.ignore_index == 0
    assert callback.settings()["ignore_index"] == 0
    assert callback.noise.settings()["ignore_index"] == 0
    assert TargetNoise(LabelSmoothing(eps=0.1, ignore_index=0), num_classes=V).noise.ignore_index == 0
    assert TargetNoise(LabelSmoothing(eps=0.1), num_classes=V).noise.ignore_index == -100
    assert TargetNoise(SymmetricFlip(p=0.1, ignore_index=None), num_classes=V).noise.ignore_index is None
    with pytest.raises(
        ConfigurationError, match=r"`ignore_index` must be the same as given to LabelSmoothing \(0\)"
    ):
        TargetNoise(LabelSmoothing(eps=0.1, ignore_index=0), num_classes=V, ignore_index=1)
    with pytest.raises(ConfigurationError, match=r"TargetNoise: `ignore_index` must be None for Gaussian"):
        TargetNoise(Gaussian(std=0.1), ignore_index=-100)
    with pytest.raises(
        ConfigurationError,
        match=r"^TargetNoise: `num_classes` must be None for Gaussian: only label noise reads the number of"
        r" classes, got 10\.$",
    ):
        TargetNoise(Gaussian(std=0.1), num_classes=10)
    with pytest.raises(
        ConfigurationError, match=r"LabelSmoothing: `ignore_index` must be an integer, got 'pad'"
    ):
        LabelSmoothing(eps=0.1, ignore_index="pad")  # type: ignore[arg-type]


NOISES: dict[str, Callable[[], Any]] = {
    "smoothing": lambda: LabelSmoothing(eps=0.3),
    "symmetric": lambda: SymmetricFlip(p=1.0),
    "pair": lambda: PairFlip(p=1.0),
    "transition": lambda: TransitionMatrix(
        [[0.0 if i == j else 1 / (V - 1) for j in range(V)] for i in range(V)]
    ),
}


@pytest.mark.parametrize("kind", list(NOISES))
@pytest.mark.parametrize("pad", [-100, 0])
def test_label_noise_on_tokens_leaves_padding_untouched(kind: str, pad: int) -> None:
    hard = tokens(pad=pad)
    callback = TargetNoise(NOISES[kind](), num_classes=V, ignore_index=pad, seed=0)
    noisy = callback.noise(hard, generator=gen(3))
    labels = noisy.hard if isinstance(noisy, SoftLabels) else noisy
    padding = hard == pad
    assert torch.equal(labels[padding], hard[padding])
    if isinstance(noisy, SoftLabels):
        assert torch.equal(noisy.soft.movedim(1, -1)[padding], torch.zeros(int(padding.sum()), V))
        assert torch.equal(labels, hard)
    else:  # flips with p = 1 (or no diagonal) change every other token
        assert (labels[~padding] != hard[~padding]).all()


@pytest.mark.parametrize("kind", list(NOISES))
def test_a_plain_distribution_has_no_padding_so_ignore_index_leaves_none_of_its_rows_alone(kind: str) -> None:
    """ignore_index=0 is a class of a plain distribution's argmax, not padding (torch's rule too).

    Rows whose argmax was class 0 were left unnoised. Oracles: the smoothing formula written out,
    and for the flips with p = 1 every row's argmax moves (no diagonal in the transition matrix).
    """
    probs = torch.softmax(torch.randn(64, V, generator=gen(5)), dim=1)
    probs[:16] = F.one_hot(torch.zeros(16, dtype=torch.long), V).float()  # argmax class 0
    noise = TargetNoise(NOISES[kind](), num_classes=V, ignore_index=0, seed=0).noise
    noisy = noise(probs, generator=gen(4))
    assert type(noisy) is Tensor
    if kind == "smoothing":
        torch.testing.assert_close(noisy, probs * 0.7 + 0.3 / V)
    else:
        assert (noisy.argmax(1) != probs.argmax(1)).all()
    # SoftLabels carry hard labels, which do mark padding: those rows are kept.
    hard = torch.tensor([0, 2, 0, 3])
    labelled = SoftLabels(F.one_hot(hard, V).float(), hard)
    kept = noise(labelled, generator=gen(4))
    kept_soft = kept.soft if isinstance(kept, SoftLabels) else F.one_hot(kept.long(), V).float()
    assert torch.equal(kept_soft[hard == 0], labelled.soft[hard == 0])


# --------------------------------------------------------------------------- end to end


PAD, N_SEQ, SEQ = 0, 12, 6


class TokenModel(pl.LightningModule):
    """A user's language model: Lightning's demo Transformer, losses on flattened token targets."""

    def __init__(self) -> None:
        super().__init__()
        self.model = Transformer(vocab_size=V, ninp=8, nhead=2, nhid=16, nlayers=1, dropout=0.0)
        self.records: list[dict[str, Any]] = []

    def training_step(self, batch: Sequence[Tensor], batch_idx: int) -> Tensor:
        inputs, y = batch
        out = self.model(inputs, y)  # (B * T, V) log-probabilities
        loss = F.cross_entropy(out.view(-1, V), y.view(-1), ignore_index=PAD)
        nll = F.nll_loss(out, y.view(-1), ignore_index=PAD)  # LightningTransformer's loss
        self.records.append({"out": out.detach(), "y": y, "loss": loss.detach(), "nll": nll.detach()})
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def token_data() -> TensorDataset:
    ids = torch.randint(1, V, (N_SEQ, SEQ + 1), generator=gen(11))
    lengths = torch.randint(2, SEQ + 1, (N_SEQ,), generator=gen(12))
    ids[torch.arange(SEQ + 1) >= lengths.unsqueeze(1) + 1] = PAD
    return TensorDataset(ids[:, :-1], ids[:, 1:])


def test_demo_transformer_trains_on_smoothed_tokens_without_padding(make_trainer: Any) -> None:
    eps = 0.1
    data = token_data()
    callback = TargetNoise(LabelSmoothing(eps=eps), num_classes=V, ignore_index=PAD, seed=0)
    trainer = make_trainer(max_steps=3, limit_val_batches=0, callbacks=[callback])
    # Seed the model's initialisation: the margin asserted below must not depend on the test order.
    torch.manual_seed(0)
    model = TokenModel()
    trainer.fit(model, train_dataloaders=DataLoader(data, batch_size=4))
    assert len(model.records) == 3
    assert callback.last_values == {"eps": eps}
    for record, (_, clean) in zip(model.records, DataLoader(data, batch_size=4), strict=False):
        y, out = record["y"], record["out"]
        assert isinstance(y, SoftLabels)
        assert torch.equal(y.hard, clean)  # padding (and every label) bit for bit
        padding = clean == PAD
        assert padding.any()
        assert torch.equal(y.soft.movedim(1, -1)[padding], torch.zeros(int(padding.sum()), V))
        flat = clean.view(-1)
        smoothed = torch.full((flat.numel(), V), eps / V)
        smoothed[torch.arange(flat.numel()), flat] = 1 - eps + eps / V
        expected = hand_ce(out, smoothed, flat != PAD)
        torch.testing.assert_close(record["loss"], expected, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(record["nll"], expected, rtol=1e-6, atol=1e-6)
        hard_loss = F.cross_entropy(out, flat, ignore_index=PAD)
        assert abs(record["loss"].item() - hard_loss.item()) > 1e-3


class Tagger(pl.LightningModule):
    """A per-token classifier whose targets use torch's default padding label -100."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Embedding(V, 8), nn.Linear(8, V))
        self.records: list[dict[str, Any]] = []

    def training_step(self, batch: Sequence[Tensor], batch_idx: int) -> Tensor:
        inputs, y = batch
        logits = self.net(inputs)  # (B, T, V)
        loss = nn.CrossEntropyLoss()(logits.view(-1, V), y.view(-1))
        self.records.append({"logits": logits.detach(), "y": y, "loss": loss.detach()})
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_per_sample_p_keeps_clean_sequences_one_hot_and_padding_empty(make_trainer: Any) -> None:
    eps = 0.2
    inputs, targets = token_data().tensors
    targets = targets.masked_fill(targets == PAD, -100)
    data = TensorDataset(inputs, targets)
    callback = TargetNoise(LabelSmoothing(eps=eps), num_classes=V, p=0.5, seed=1)
    model = Tagger()
    make_trainer(max_steps=2, limit_val_batches=0, callbacks=[callback]).fit(
        model, train_dataloaders=DataLoader(data, batch_size=6)
    )
    kinds = set()
    for record, (_, clean) in zip(model.records, DataLoader(data, batch_size=6), strict=False):
        y, logits = record["y"], record["logits"]
        assert torch.equal(y.hard, clean)
        keep = clean != -100
        rows = y.soft.movedim(1, -1)
        expected = torch.zeros(*clean.shape, V)
        for b in range(clean.shape[0]):
            smoothed = bool((rows[b][keep[b]].max(-1).values < 1.0).all())
            kinds.add(smoothed)
            off, on = (eps / V, 1 - eps + eps / V) if smoothed else (0.0, 1.0)
            for t in range(clean.shape[1]):
                if keep[b, t]:
                    expected[b, t] = off
                    expected[b, t, clean[b, t]] = on
        torch.testing.assert_close(rows, expected, rtol=0, atol=1e-7)
        torch.testing.assert_close(record["loss"], hand_ce(logits, expected, keep), **TIGHT)
    assert kinds == {True, False}  # both noised and clean sequences were seen
