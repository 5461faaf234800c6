"""Label noise: flip rates, uniformity over the other classes, transition matrices, smoothing."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from scipy import stats
from torch import nn

from lit_noise import (
    ConfigurationError,
    LabelSmoothing,
    Linear,
    PairFlip,
    SoftLabels,
    SymmetricFlip,
    TransitionMatrix,
    soft,
)
from lit_noise import functional as LF
from lit_noise.noise import LabelNoise
from lit_noise.schedules import Clock

Z = 5.0


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def assert_fraction(hits: torch.Tensor, p: float) -> None:
    n = hits.numel()
    estimate = hits.double().mean().item()
    assert abs(estimate - p) <= Z * math.sqrt(p * (1 - p) / n) + 1e-12, (estimate, p, n)


# --------------------------------------------------------------------------- flips


@pytest.mark.parametrize("num_classes", [2, 3, 10, 1000])
def test_symmetric_flip_rate_and_uniform_other_classes(num_classes: int) -> None:
    n = 200_000
    y = torch.randint(0, num_classes, (n,), generator=gen(1))
    z = SymmetricFlip(p=0.3, num_classes=num_classes)(y, generator=gen())
    assert z.dtype == torch.int64
    assert z.shape == y.shape
    flipped = z != y
    assert_fraction(flipped, 0.3)
    # Given a flip, the new class is uniform over the C - 1 other classes: the offset
    # (z - y) mod C is uniform on 1..C-1 (chi-square goodness of fit).
    offsets = ((z - y) % num_classes)[flipped]
    assert offsets.min() >= 1
    assert offsets.max() <= num_classes - 1
    counts = torch.bincount(offsets - 1, minlength=num_classes - 1).numpy()
    if num_classes > 2:
        assert stats.chisquare(counts).pvalue > 1e-4
    # ... and for each true class separately (its other classes all equally likely).
    if num_classes == 10:
        for k in range(num_classes):
            new = z[flipped & (y == k)]
            others = torch.bincount(new, minlength=num_classes)
            assert others[k] == 0
            assert stats.chisquare(others[torch.arange(num_classes) != k].numpy()).pvalue > 1e-4


@pytest.mark.parametrize(
    ("dtype", "num_classes"), [(torch.uint8, 257), (torch.int8, 129), (torch.int16, 32769)], ids=str
)
def test_flips_refuse_narrow_labels_that_cannot_hold_every_class(
    dtype: torch.dtype, num_classes: int
) -> None:
    """One class more than the dtype holds: a flip to it would wrap (uint8 274 came out as 18)."""
    labels = torch.tensor([0, 1, 2], dtype=dtype)
    message = rf"labels of dtype {dtype} cannot hold the classes up to {num_classes - 1} "
    for name, flip in (("symmetric_flip", LF.symmetric_flip), ("pair_flip", LF.pair_flip)):
        with pytest.raises(ConfigurationError, match="^" + name + ": " + message):
            flip(labels, 0.5, num_classes, gen())
    noises: list[LabelNoise] = [
        SymmetricFlip(p=0.5, num_classes=num_classes),
        PairFlip(p=0.5, num_classes=num_classes),
    ]
    if num_classes < 1000:  # a (C, C) matrix: not for int16's 32769 classes
        to_last = torch.zeros(num_classes, num_classes, dtype=torch.float64)
        to_last[:, -1] = 1.0  # every label becomes the class the dtype cannot hold
        noises.append(TransitionMatrix(to_last))
    for noise in noises:
        with pytest.raises(ConfigurationError, match=message):
            noise(labels, generator=gen())
    # As many classes as the dtype holds is fine: every flipped label is the int64 flip, in range.
    fits = num_classes - 1
    top = torch.full((4000,), fits - 1, dtype=dtype)
    z = LF.pair_flip(top, 1.0, fits, gen())
    assert z.dtype == dtype
    assert (z == 0).all()  # (fits - 1) + 1 is class 0 modulo `fits`, computed without wrapping
    z = LF.symmetric_flip(top, 1.0, fits, gen(3))
    assert z.dtype == dtype
    assert torch.equal(z.long(), LF.symmetric_flip(top.long(), 1.0, fits, gen(3)))


def test_symmetric_flip_extremes_and_dtypes() -> None:
    y = torch.randint(0, 5, (10_000,), generator=gen(1))
    assert torch.equal(LF.symmetric_flip(y, 0.0, 5), y)
    assert (LF.symmetric_flip(y, 1.0, 5, gen()) != y).all()
    for dtype in (torch.int32, torch.uint8, torch.int16):
        labels = torch.randint(0, 200, (5000,), generator=gen(2)).to(dtype)
        z = SymmetricFlip(p=0.5, num_classes=200)(labels, generator=gen())
        assert z.dtype == dtype
        assert z.long().max() < 200
        assert z.long().min() >= 0
        assert_fraction(z != labels, 0.5)


def test_pair_flip() -> None:
    n, num_classes = 100_000, 7
    y = torch.randint(0, num_classes, (n,), generator=gen(1))
    z = PairFlip(p=0.25, num_classes=num_classes)(y, generator=gen())
    flipped = z != y
    assert_fraction(flipped, 0.25)
    assert torch.equal(z[flipped], (y[flipped] + 1) % num_classes)
    assert torch.equal(PairFlip(p=1.0, num_classes=3)(torch.tensor([0, 1, 2])), torch.tensor([1, 2, 0]))


def test_transition_matrix_empirical_rows() -> None:
    matrix = [[0.7, 0.2, 0.1, 0.0], [0.0, 1.0, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25], [0.0, 0.0, 0.5, 0.5]]
    per_class = 40_000
    y = torch.arange(4).repeat_interleave(per_class)
    z = TransitionMatrix(matrix)(y, generator=gen())
    for i, row in enumerate(matrix):
        counts = torch.bincount(z[y == i], minlength=4).double()
        for j, p in enumerate(row):
            if p == 0.0:
                assert counts[j] == 0, (i, j)
            else:
                assert abs(counts[j].item() / per_class - p) <= Z * math.sqrt(p * (1 - p) / per_class)
        if sum(p > 0 for p in row) > 1:
            observed = counts[torch.tensor(row) > 0].numpy()
            expected = [p * per_class for p in row if p > 0]
            assert stats.chisquare(observed, expected).pvalue > 1e-4


def test_transition_matrix_scale_interpolates_towards_identity() -> None:
    matrix = [[0.0, 1.0], [1.0, 0.0]]
    noise = TransitionMatrix(matrix)
    y = torch.zeros(50_000, dtype=torch.long)
    half = noise(y, generator=gen(), scale=0.5)  # (1 - s) I + s T: flip with probability 0.5
    assert_fraction(half == 1, 0.5)
    assert torch.equal(noise(y, generator=gen(), scale=0.0), y)
    assert noise.resolve(scale=3.0) == {"scale": 1.0}


def test_flips_scale_and_schedules() -> None:
    noise = SymmetricFlip(p=Linear(start=0.0, end=0.4, until=1.0), num_classes=10)
    assert noise.resolve(Clock(progress=0.5)) == {"p": pytest.approx(0.2)}
    assert noise.resolve(Clock(progress=0.5), scale=10.0) == {"p": 1.0}
    y = torch.randint(0, 10, (100_000,), generator=gen(1))
    assert_fraction(noise(y, generator=gen(), clock=Clock(progress=0.25)) != y, 0.1)


# --------------------------------------------------------------------------- smoothing


def test_label_smoothing_rows_and_mass() -> None:
    num_classes, eps = 5, 0.2
    y = torch.tensor([0, 3, 4, 1])
    smoothed = LabelSmoothing(eps=eps, num_classes=num_classes)(y)
    assert isinstance(smoothed, SoftLabels)
    assert torch.equal(smoothed.hard, y)
    distribution = smoothed.soft
    assert distribution.shape == (4, num_classes)
    assert torch.allclose(distribution.sum(1), torch.ones(4))
    on_class = distribution.gather(1, y[:, None]).squeeze(1)
    assert torch.allclose(on_class, torch.full((4,), 1 - eps + eps / num_classes))
    off_mass = distribution.sum(1) - on_class
    assert torch.allclose(off_mass, torch.full((4,), eps * (num_classes - 1) / num_classes))
    assert (distribution[F.one_hot(y, num_classes) == 0] == eps / num_classes).all()


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.35])
def test_label_smoothing_matches_torch_cross_entropy(eps: float) -> None:
    logits = torch.randn(32, 7, generator=gen(1))
    y = torch.randint(0, 7, (32,), generator=gen(2))
    smoothed = LabelSmoothing(eps=eps, num_classes=7)(y)
    reference = nn.CrossEntropyLoss(label_smoothing=eps)(logits, y)
    assert torch.allclose(F.cross_entropy(logits, smoothed), reference, atol=1e-6)
    assert torch.allclose(nn.CrossEntropyLoss()(logits, smoothed), reference, atol=1e-6)
    probs = LabelSmoothing(eps=eps, num_classes=7, target_format="probs")(y)
    assert type(probs) is torch.Tensor
    assert probs.shape == (32, 7)
    assert torch.allclose(F.cross_entropy(logits, probs), reference, atol=1e-6)


def test_smoothing_and_flips_on_distributions() -> None:
    mixed = torch.tensor([[0.6, 0.4, 0.0], [0.0, 0.3, 0.7]])
    smoothed = LabelSmoothing(eps=0.3, num_classes=3)(SoftLabels(mixed))
    assert isinstance(smoothed, SoftLabels)
    assert torch.allclose(smoothed.soft, 0.7 * mixed + 0.1)
    assert torch.equal(smoothed.hard, torch.tensor([0, 2]))
    plain = LabelSmoothing(eps=0.3, num_classes=3)(mixed)  # plain probabilities stay plain
    assert type(plain) is torch.Tensor
    assert torch.allclose(plain, 0.7 * mixed + 0.1)
    # A flipped sample's distribution becomes the one-hot of its new class; others keep theirs.
    many = SoftLabels(torch.tensor([[0.6, 0.4, 0.0]]).repeat(10_000, 1))
    flipped = SymmetricFlip(p=0.5, num_classes=3)(many, generator=gen())
    assert isinstance(flipped, SoftLabels)
    changed = flipped.hard != 0
    assert_fraction(changed, 0.5)
    assert torch.equal(flipped.soft[changed], F.one_hot(flipped.hard[changed], 3).float())
    assert torch.equal(flipped.soft[~changed], many.soft[~changed])


# --------------------------------------------------------------------------- errors


def test_label_noise_errors() -> None:
    with pytest.raises(ConfigurationError, match=r"LabelSmoothing needs `num_classes`"):
        LabelSmoothing(eps=0.1)(torch.tensor([0, 1]))
    with pytest.raises(ConfigurationError, match=r"acts on class labels.*got dtype torch\.float32.*Gaussian"):
        SymmetricFlip(p=0.1, num_classes=3)(torch.tensor([0.5, 1.5]))
    with pytest.raises(ConfigurationError, match=r"got dtype torch\.bool"):
        PairFlip(p=0.1, num_classes=2)(torch.tensor([True, False]))
    with pytest.raises(ConfigurationError, match=r"C = `num_classes` \(3\); got shape \(2, 4\)"):
        LabelSmoothing(eps=0.1, num_classes=3)(torch.rand(2, 4))
    with pytest.raises(ConfigurationError, match=r"soft target has 4 classes, `num_classes` is 3"):
        LabelSmoothing(eps=0.1, num_classes=3)(SoftLabels(torch.rand(2, 4)))
    with pytest.raises(ConfigurationError, match=r"`p` must be >= 0 and <= 1, got 1.5"):
        SymmetricFlip(p=1.5)
    with pytest.raises(ConfigurationError, match=r"`eps` must be >= 0 and <= 1, got -0.1"):
        LabelSmoothing(eps=-0.1)
    with pytest.raises(ConfigurationError, match=r"`num_classes` must be an integer >= 2, got 1"):
        SymmetricFlip(p=0.1, num_classes=1)
    with pytest.raises(ConfigurationError, match=r"`target_format` must be one of 'soft_labels', 'probs'"):
        LabelSmoothing(eps=0.1, num_classes=3, target_format="onehot")  # type: ignore[arg-type]
    noise = SymmetricFlip(p=0.1, num_classes=3)
    with pytest.raises(
        ConfigurationError, match=r"`num_classes` must be the same as given to SymmetricFlip \(3\)"
    ):
        noise.with_num_classes(4)


@pytest.mark.parametrize(
    ("matrix", "fragment"),
    [
        ([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], "square C x C"),
        ([[0.5, 0.6], [0.0, 1.0]], "rows that each sum to 1"),
        ([[1.5, -0.5], [0.0, 1.0]], "non-negative"),
        ([[1.0, 0.0], [0.0]], "table of numbers"),
        ([["a", 1.0], [0.0, 1.0]], "table of numbers"),
        ([[1.0]], "C >= 2"),
    ],
)
def test_transition_matrix_errors(matrix: list[list[float]], fragment: str) -> None:
    with pytest.raises(ConfigurationError, match="TransitionMatrix: `matrix`") as info:
        TransitionMatrix(matrix)
    assert fragment in str(info.value)
    with pytest.raises(ConfigurationError, match=r"`num_classes` must be 2 \(the matrix's size\), got 3"):
        TransitionMatrix([[1.0, 0.0], [0.0, 1.0]], num_classes=3)


# --------------------------------------------------------------------------- ignore_index (padding)


def padded(num_classes: int = 5, pad: int = -100) -> torch.Tensor:
    """(40, 50) labels with padding at the end of each row."""
    y = torch.randint(0, num_classes, (40, 50), generator=gen(4))
    lengths = torch.randint(1, 51, (40, 1), generator=gen(5))
    return y.masked_fill(torch.arange(50) >= lengths, pad)


def test_functional_flips_keep_ignored_labels_and_draw_the_same_for_the_others() -> None:
    y = padded()
    keep = y != -100
    matrix = torch.tensor([[0.0, 0.5, 0.5, 0.0, 0.0]] * 5)
    for flip, reference in (
        (LF.symmetric_flip(y, 1.0, 5, gen(), ignore_index=-100), LF.symmetric_flip(y, 1.0, 5, gen())),
        (LF.pair_flip(y, 1.0, 5, gen(), ignore_index=-100), LF.pair_flip(y, 1.0, 5, gen())),
        # without ignore_index, -100 would index the matrix: compare with the padding replaced
        (
            LF.transition_flip(y, matrix, gen(), ignore_index=-100),
            LF.transition_flip(y.clamp(min=0), matrix, gen()),
        ),
    ):
        assert torch.equal(flip[~keep], y[~keep])
        assert torch.equal(flip[keep], reference[keep])
    assert torch.equal(LF.pair_flip(y, 1.0, 5, ignore_index=-100)[keep], (y[keep] + 1) % 5)


def test_smooth_one_hot_gives_ignored_labels_zero_rows() -> None:
    y = padded()
    out = LF.smooth_one_hot(y, 5, 0.2, ignore_index=-100)
    assert out.shape == (40, 5, 50)
    rows = out.movedim(1, -1)
    assert torch.equal(rows[y == -100], torch.zeros(int((y == -100).sum()), 5))
    expected = torch.full((int((y != -100).sum()), 5), 0.04)
    expected[torch.arange(len(expected)), y[y != -100]] = 0.84
    torch.testing.assert_close(rows[y != -100], expected, rtol=0, atol=1e-7)
    assert torch.equal(
        LF.smooth_one_hot(y.clamp(min=0), 5, 0.2, ignore_index=-100),
        LF.smooth_one_hot(y.clamp(min=0), 5, 0.2),
    )


@pytest.mark.parametrize("pad", [-100, 0])
def test_label_noises_leave_ignored_positions_bit_identical(pad: int) -> None:
    y = padded()
    if pad == 0:  # a pad id inside the class range: class 0 only at the padding
        y = y.masked_fill(y == 0, 1).masked_fill(y == -100, 0)
    keep = y != pad
    incoming = SoftLabels(torch.rand(40, 5, 50, generator=gen(6)).softmax(1), y)
    smoothed = LabelSmoothing(eps=0.3, num_classes=5, ignore_index=pad)(incoming)
    rows, before = smoothed.soft.movedim(1, -1), incoming.soft.movedim(1, -1)
    assert torch.equal(rows[~keep], before[~keep])
    torch.testing.assert_close(rows[keep], 0.7 * before[keep] + 0.06)
    assert torch.equal(smoothed.hard, y)
    flipped = SymmetricFlip(p=1.0, num_classes=5, ignore_index=pad)(incoming, generator=gen())
    assert torch.equal(flipped.hard[~keep], y[~keep])
    assert torch.equal(flipped.soft.movedim(1, -1)[~keep], before[~keep])
    assert (flipped.hard[keep] != y[keep]).all()
    for noise in (
        PairFlip(p=1.0, num_classes=5, ignore_index=pad),
        TransitionMatrix([[0.0, 1.0, 0.0, 0.0, 0.0]] * 5, ignore_index=pad),
    ):
        out = noise(y, generator=gen())
        assert torch.equal(out[~keep], y[~keep])


def test_ignore_index_none_noises_every_label() -> None:
    y = torch.tensor([0, 0, 1, 2])  # 0 is a pad id here, but ignore_index=None treats it as a class
    assert torch.equal(PairFlip(p=1.0, num_classes=3, ignore_index=None)(y), torch.tensor([1, 1, 2, 0]))
    assert torch.equal(PairFlip(p=1.0, num_classes=3, ignore_index=0)(y), torch.tensor([0, 0, 2, 0]))
    smoothed = LabelSmoothing(eps=0.3, num_classes=3, ignore_index=None)(y)
    assert (smoothed.soft.sum(1) > 0.99).all()


def test_narrow_label_dtypes_match_ignore_index_by_value() -> None:
    """torch wraps 300 to 44 against uint8 labels (and -100 to 156): label 44 is no padding."""
    y = torch.tensor([44, 3], dtype=torch.uint8)
    rows = LF.smooth_one_hot(y, 200, 0.2, ignore_index=300)
    assert rows[0, 44].item() == pytest.approx(0.8 + 0.2 / 200)
    assert LF.pair_flip(y, 1.0, 200, ignore_index=300).tolist() == [45, 4]
    assert (LF.symmetric_flip(y, 1.0, 200, gen(), ignore_index=300) != y).all()
    drawn = LF.transition_flip(y, torch.eye(200).roll(1, dims=1), gen(), ignore_index=300)
    assert drawn.tolist() == [45, 4]  # uint8 labels index the matrix's rows, not as a mask
    assert soft(y, 200, ignore_index=300)[0, 44].item() == 1.0  # the one-hot rows of SoftLabels too


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int16, torch.int32, torch.int64])
def test_symmetric_flip_returns_the_labels_it_does_not_flip_as_they_are(dtype: torch.dtype) -> None:
    """Only the drawn positions change: out-of-range labels are not folded into [0, C) (5 -> 2), and
    the labels keep their dtype, as pair_flip's do. The oracle redraws the same numbers by hand."""
    y = torch.tensor([5, 7, 1, 0, 2, 9] * 50, dtype=dtype)
    p, classes = 0.4, 3
    out = LF.symmetric_flip(y, p, classes, gen(8))
    reference = gen(8)
    offset = torch.randint(
        1, classes, y.shape, generator=reference, dtype=torch.int64 if dtype != torch.int32 else dtype
    )
    flip = torch.rand(y.shape, generator=reference) < p
    expected = [(int(v) + int(o)) % classes if f else int(v) for v, o, f in zip(y, offset, flip, strict=True)]
    assert out.dtype == dtype
    assert out.tolist() == expected
    assert 0 < int(flip.sum()) < len(y)
    assert LF.pair_flip(y, p, classes, gen(8)).dtype == dtype


@pytest.mark.parametrize("kind", ["smoothing", "flip"])
def test_writing_into_the_noisy_target_leaves_the_input_alone(kind: str) -> None:
    """SoftLabels support label writes; the result's hard labels must not share the input's memory."""
    noise = (
        LabelSmoothing(eps=0.1, num_classes=4) if kind == "smoothing" else SymmetricFlip(p=0.0, num_classes=4)
    )
    for given in (
        torch.tensor([[3, 1, 2]]),
        torch.tensor([3, 1, 2, 0]),
        SoftLabels(torch.eye(4)[[3, 1]], torch.tensor([3, 1])),
    ):
        before = given.clone() if not isinstance(given, SoftLabels) else given.hard.clone()
        out = noise(given, generator=gen(0))
        out[out == 1] = -100
        assert torch.equal(given.hard if isinstance(given, SoftLabels) else given, before)


def test_ignored_labels_off_the_cpu_are_masked_without_a_host_sync() -> None:
    y = torch.zeros(4, 3, dtype=torch.long, device="meta")  # reading a value (int(y.min())) would raise
    assert LF.smooth_one_hot(y, 5, 0.1, ignore_index=-100).shape == (4, 5, 3)
    assert LF.symmetric_flip(y, 0.5, 5, ignore_index=-100).shape == (4, 3)
