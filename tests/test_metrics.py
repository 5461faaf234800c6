"""lit_noise.metrics against independent references: torchmetrics, scikit-learn, NumPy formulas."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from sklearn.metrics import log_loss
from torchmetrics.functional.classification import multiclass_calibration_error

from lit_noise import ConfigurationError, SoftLabels
from lit_noise.metrics import (
    AdaptiveCalibrationError,
    BrierScore,
    CalibrationError,
    NegativeLogLikelihood,
    ReliabilityDiagram,
    adaptive_calibration_error,
    brier_score,
    calibration_error,
    negative_log_likelihood,
    reliability_diagram,
)
from lit_noise.metrics.functional import ADAPTIVE_LOGIT_RANGE, adaptive_calibration_bins, to_probabilities

NORMS = ("l1", "l2", "max")


# ------------------------------------------------------------------------------------------------
# independent references


def np_binned(conf: np.ndarray, correct: np.ndarray, n_bins: int) -> tuple[np.ndarray, ...]:
    """Loop over bins: [lo, hi) with 1.0 in the last bin."""
    edges = np.linspace(0, 1, n_bins + 1)
    count, acc, mean_conf = np.zeros(n_bins), np.zeros(n_bins), np.zeros(n_bins)
    for b in range(n_bins):
        upper = conf <= edges[b + 1] if b == n_bins - 1 else conf < edges[b + 1]
        inside = (conf >= edges[b]) & upper
        count[b] = inside.sum()
        if count[b]:
            acc[b] = correct[inside].mean()
            mean_conf[b] = conf[inside].mean()
    return count, acc, mean_conf


def np_calibration_error(conf: np.ndarray, correct: np.ndarray, n_bins: int, norm: str) -> float:
    count, acc, mean_conf = np_binned(conf, correct, n_bins)
    weight = count / count.sum()
    gap = np.abs(acc - mean_conf)
    if norm == "l1":
        return float((weight * gap).sum())
    if norm == "l2":
        return float(np.sqrt((weight * gap**2).sum()))
    return float(gap.max())


def np_adaptive(conf: np.ndarray, correct: np.ndarray, n_bins: int) -> float:
    """Sort by confidence; the sample of rank r goes to bin floor((r + 1/2) * n_bins / N)."""
    order = np.argsort(conf, kind="stable")
    n = len(conf)
    bins = np.floor((np.arange(n) + 0.5) * n_bins / n).astype(int)
    total = 0.0
    for b in range(n_bins):
        members = order[bins == b]
        if len(members):
            total += len(members) / n * abs(correct[members].mean() - conf[members].mean())
    return total


def np_top_label(probs: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return probs.max(axis=1), (probs.argmax(axis=1) == target).astype(np.float64)


def random_case(n: int, c: int, seed: int, scale: float = 2.0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, c, generator=g) * scale
    # make the model right more often than chance so bins hold both outcomes
    target = torch.where(
        torch.rand(n, generator=g) < 0.6, logits.argmax(1), torch.randint(0, c, (n,), generator=g)
    )
    return logits, target


# ------------------------------------------------------------------------------------------------
# CalibrationError


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize(("n", "c", "n_bins"), [(1000, 10, 15), (257, 3, 1), (64, 5, 100), (5000, 100, 10)])
def test_calibration_error_equals_torchmetrics_on_logits_and_probs(
    norm: str, n: int, c: int, n_bins: int
) -> None:
    logits, target = random_case(n, c, seed=n + c + n_bins)
    expected = multiclass_calibration_error(logits, target, c, n_bins=n_bins, norm=norm)
    assert float(calibration_error(logits, target, c, n_bins, norm)) == pytest.approx(
        float(expected), abs=1e-6
    )
    probs = logits.softmax(1)
    expected_p = multiclass_calibration_error(probs, target, c, n_bins=n_bins, norm=norm)
    metric = CalibrationError(c, n_bins, norm)
    for chunk_p, chunk_t in zip(probs.split(97), target.split(97), strict=True):  # streamed in batches
        metric.update(chunk_p, chunk_t)
    assert float(metric.compute()) == pytest.approx(float(expected_p), abs=1e-6)


def test_calibration_error_batches_mixing_logits_and_probs_equal_one_pass() -> None:
    logits, target = random_case(600, 4, seed=1)
    metric = CalibrationError(4, 10)
    metric.update(logits[:300], target[:300])  # logits batch
    metric.update(logits[300:].softmax(1), target[300:])  # probabilities batch
    assert float(metric.compute()) == pytest.approx(float(calibration_error(logits, target, 4, 10)), abs=1e-6)


def test_extra_dimensions_flatten_like_torchmetrics() -> None:
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(8, 4, 5, 6, generator=g) * 2
    target = torch.randint(0, 4, (8, 5, 6), generator=g)
    for norm in NORMS:
        expected = multiclass_calibration_error(logits, target, 4, n_bins=7, norm=norm)
        assert float(calibration_error(logits, target, 4, 7, norm)) == pytest.approx(
            float(expected), abs=1e-6
        )


@pytest.mark.parametrize("norm", NORMS)
def test_adversarial_inputs_equal_torchmetrics(norm: str) -> None:
    c = 4
    cases = {
        # every prediction right, confidences spread over the bins
        "all_correct": (
            torch.tensor([[0.9, 0.05, 0.03, 0.02], [0.3, 0.29, 0.21, 0.2], [0.1, 0.6, 0.2, 0.1]]),
            torch.tensor([0, 0, 1]),
        ),
        # every prediction wrong
        "all_wrong": (
            torch.tensor([[0.9, 0.05, 0.03, 0.02], [0.3, 0.29, 0.21, 0.2], [0.1, 0.6, 0.2, 0.1]]),
            torch.tensor([1, 3, 0]),
        ),
        # one-hot predictions: confidence exactly 1.0 (and nothing else in the last bin)
        "confidence_one": (torch.eye(c)[[0, 1, 2, 3, 0]], torch.tensor([0, 1, 0, 0, 2])),
        "single_sample": (torch.tensor([[0.1, 0.7, 0.1, 0.1]]), torch.tensor([1])),
        "empty_bins": (
            torch.tensor([[0.26, 0.25, 0.25, 0.24], [0.97, 0.01, 0.01, 0.01]]),
            torch.tensor([0, 1]),
        ),
    }
    for name, (probs, target) in cases.items():
        for n_bins in (1, 3, 15, 50):
            expected = multiclass_calibration_error(probs, target, c, n_bins=n_bins, norm=norm)
            got = calibration_error(probs, target, c, n_bins, norm)
            assert float(got) == pytest.approx(float(expected), abs=1e-6), (name, n_bins)
            ref = np_calibration_error(*np_top_label(probs.double().numpy(), target.numpy()), n_bins, norm)
            assert float(got) == pytest.approx(ref, abs=1e-6), (name, n_bins)


def test_confidence_zero_lands_in_first_bin() -> None:
    # rows of zeros are valid "probabilities" in [0, 1] for input_format="probs": confidence 0
    probs = torch.tensor([[0.0, 0.0], [0.0, 0.0], [0.8, 0.2]])
    target = torch.tensor([0, 1, 0])
    diagram = reliability_diagram(probs, target, 2, n_bins=5, input_format="probs")
    assert diagram["count"].tolist() == [2.0, 0.0, 0.0, 0.0, 1.0]
    for norm in NORMS:
        expected = multiclass_calibration_error(probs, target, 2, n_bins=5, norm=norm)  # torchmetrics: probs
        got = calibration_error(probs, target, 2, 5, norm, input_format="probs")
        assert float(got) == pytest.approx(float(expected), abs=1e-6)


def test_confidence_one_shares_the_last_bin() -> None:
    # 1.0 together with another last-bin confidence: one bin here, torchmetrics keeps an extra bin.
    probs = torch.tensor([[1.0, 0.0], [0.95, 0.05], [0.96, 0.04]])
    target = torch.tensor([1, 0, 0])  # the 1.0 prediction is wrong, the others right
    diagram = reliability_diagram(probs, target, 2, n_bins=10)
    assert diagram["count"][-1] == 3
    for norm in NORMS:
        ref = np_calibration_error(*np_top_label(probs.double().numpy(), target.numpy()), 10, norm)
        assert float(calibration_error(probs, target, 2, 10, norm)) == pytest.approx(ref, abs=1e-6)
    # torchmetrics keeps 1.0 in an extra bin of its own: there the 1.0 prediction's gap (1.0) and the
    # under-confident [0.9, 1) bin's gap (0.045) add up; merged, they partly cancel.
    merged = abs(2 / 3 - 0.97)
    assert float(calibration_error(probs, target, 2, 10, "l1")) == pytest.approx(merged, abs=1e-6)
    assert float(calibration_error(probs, target, 2, 10, "max")) == pytest.approx(merged, abs=1e-6)
    tm_l1 = float(multiclass_calibration_error(probs, target, 2, n_bins=10, norm="l1"))
    assert tm_l1 == pytest.approx(2 / 3 * 0.045 + 1 / 3 * 1.0, abs=1e-6)


def test_soft_targets_are_compared_by_argmax() -> None:
    logits, target = random_case(300, 5, seed=7)
    soft = torch.nn.functional.one_hot(target, 5).float() * 0.8 + 0.04
    labels = SoftLabels(soft)
    expected = float(calibration_error(logits, target, 5))
    assert float(calibration_error(logits, soft, 5)) == pytest.approx(expected)
    assert float(calibration_error(logits, labels, 5)) == pytest.approx(expected)


# ------------------------------------------------------------------------------------------------
# logits or probabilities


def test_input_format_rule() -> None:
    probs = torch.tensor([[0.2, 0.8], [0.5, 0.5]])
    assert torch.equal(to_probabilities(probs, 2), probs)  # valid probabilities: kept
    logits_in_unit = torch.tensor([[0.2, 0.9], [0.5, 0.1]])  # in [0, 1] but rows do not sum to 1
    assert torch.allclose(to_probabilities(logits_in_unit, 2), logits_in_unit.softmax(1))
    logits = torch.tensor([[-1.0, 3.0]])
    assert torch.allclose(to_probabilities(logits, 2), logits.softmax(1))
    assert torch.allclose(to_probabilities(probs, 2, "logits"), probs.softmax(1))  # explicit: always softmax
    assert torch.equal(to_probabilities(logits_in_unit, 2, "probs"), logits_in_unit)  # explicit: never
    with pytest.raises(ConfigurationError, match="outside \\[0, 1\\]"):
        to_probabilities(logits, 2, "probs")
    half = to_probabilities(torch.tensor([[0.25, 0.75]], dtype=torch.float16), 2)
    assert half.dtype == torch.float32
    assert torch.equal(half, torch.tensor([[0.25, 0.75]]))


# ------------------------------------------------------------------------------------------------
# adaptive ECE


def _one_per_fine_bin(n: int, n_fine: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Confidences at the centres of n distinct fine bins (so no fine bin holds two samples)."""
    rng = np.random.default_rng(seed)
    lowest = int(n_fine * (np.log(0.5 / 0.5) + ADAPTIVE_LOGIT_RANGE) / (2 * ADAPTIVE_LOGIT_RANGE))
    fine = rng.choice(np.arange(lowest, n_fine), size=n, replace=False)
    centres = (fine + 0.5) * 2 * ADAPTIVE_LOGIT_RANGE / n_fine - ADAPTIVE_LOGIT_RANGE
    conf = 1 / (1 + np.exp(-centres))
    correct = (rng.random(n) < conf).astype(np.float64)
    return conf, correct


def _binary_probs(conf: np.ndarray, correct: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """2-class probabilities with top-label confidence ``conf`` and target matching ``correct``."""
    conf_t = torch.from_numpy(conf)
    probs = torch.stack([conf_t, 1 - conf_t], dim=1)
    target = torch.from_numpy(np.where(correct > 0, 0, 1))
    return probs, target


@pytest.mark.parametrize(("n", "n_bins"), [(1000, 15), (997, 10), (7, 3), (1, 15), (50, 1)])
def test_adaptive_ece_is_exact_with_one_sample_per_fine_bin(n: int, n_bins: int) -> None:
    conf, correct = _one_per_fine_bin(n, 10_000, seed=n)
    probs, target = _binary_probs(conf, correct)
    assert adaptive_calibration_bins(probs.max(1).values, probs.new_ones(n), 10_000)[0].max() == 1
    expected = np_adaptive(conf, correct, n_bins)
    metric = AdaptiveCalibrationError(2, n_bins, input_format="probs")
    for p, t in zip(probs.split(128), target.split(128), strict=True):
        metric.update(p, t)
    assert float(metric.compute()) == pytest.approx(expected, abs=1e-6)
    assert float(adaptive_calibration_error(probs, target, 2, n_bins)) == pytest.approx(expected, abs=1e-6)


def test_adaptive_ece_error_bound_on_crowded_fine_bins() -> None:
    """Fine bins holding several samples: |ours - exact| <= 2 (B - 1) k_max / N (documented bound)."""
    g = torch.Generator().manual_seed(0)
    n, c, n_bins = 20_000, 10, 15
    logits = torch.randn(n, c, generator=g) * 4  # many confidences crowd near 1
    target = torch.where(
        torch.rand(n, generator=g) < 0.8, logits.argmax(1), torch.randint(0, c, (n,), generator=g)
    )
    probs = logits.double().softmax(1)
    conf, correct = np_top_label(probs.numpy(), target.numpy())
    exact = np_adaptive(conf, correct, n_bins)
    got = float(adaptive_calibration_error(probs, target, c, n_bins))
    k_max = float(
        adaptive_calibration_bins(torch.from_numpy(conf), torch.from_numpy(correct), 10_000)[0].max()
    )
    assert abs(got - exact) <= 2 * (n_bins - 1) * k_max / n
    assert abs(got - exact) < 1e-3  # in practice much tighter than the bound (about 2e-4 here)


def test_adaptive_ece_ties_stay_together() -> None:
    # all confidences equal: one non-empty equal-mass bin, value |accuracy - confidence|
    probs = torch.tensor([[0.7, 0.3]]).repeat(10, 1)
    target = torch.tensor([0] * 6 + [1] * 4)
    assert float(adaptive_calibration_error(probs, target, 2, 5)) == pytest.approx(0.1, abs=1e-6)
    # all-correct, all-wrong and confidence 1.0
    ones = torch.eye(3)[[0, 1, 2, 0]]
    assert float(adaptive_calibration_error(ones, torch.tensor([0, 1, 2, 0]), 3)) == pytest.approx(
        0.0, abs=1e-7
    )
    assert float(adaptive_calibration_error(ones, torch.tensor([1, 2, 0, 1]), 3)) == pytest.approx(
        1.0, abs=1e-7
    )


@pytest.mark.parametrize("norm", NORMS)
def test_adaptive_norms_match_reference(norm: str) -> None:
    conf, correct = _one_per_fine_bin(300, 10_000, seed=5)
    probs, target = _binary_probs(conf, correct)
    order = np.argsort(conf)
    bins = np.floor((np.arange(300) + 0.5) * 6 / 300).astype(int)
    gaps = np.array([abs(correct[order[bins == b]].mean() - conf[order[bins == b]].mean()) for b in range(6)])
    expected = {"l1": gaps.mean(), "l2": np.sqrt((gaps**2).mean()), "max": gaps.max()}[norm]
    got = float(adaptive_calibration_error(probs, target, 2, 6, norm=norm))
    assert got == pytest.approx(expected, abs=1e-6)


# ------------------------------------------------------------------------------------------------
# Brier score and NLL


def test_brier_score_matches_numpy_for_hard_and_soft_targets() -> None:
    logits, target = random_case(500, 6, seed=11)
    probs = logits.double().softmax(1).numpy()
    one_hot = np.eye(6)[target.numpy()]
    expected = float(((probs - one_hot) ** 2).sum(1).mean())
    assert float(brier_score(logits.double(), target, 6)) == pytest.approx(expected, rel=1e-6)
    metric = BrierScore(6)
    for p, t in zip(logits.split(128), target.split(128), strict=True):
        metric.update(p, t)
    assert float(metric.compute()) == pytest.approx(expected, rel=1e-5)
    g = torch.Generator().manual_seed(2)
    soft = torch.rand(500, 6, generator=g, dtype=torch.float64).softmax(1)
    expected_soft = float(((probs - soft.numpy()) ** 2).sum(1).mean())
    assert float(brier_score(logits.double(), soft, 6)) == pytest.approx(expected_soft, rel=1e-6)
    assert float(brier_score(logits.double(), SoftLabels(soft), 6)) == pytest.approx(expected_soft, rel=1e-6)


def test_brier_score_extremes() -> None:
    eye = torch.eye(3)
    assert float(brier_score(eye, torch.tensor([0, 1, 2]), 3)) == 0.0  # all correct, confidence 1
    assert float(brier_score(eye, torch.tensor([1, 2, 0]), 3)) == pytest.approx(
        2.0
    )  # all wrong, confidence 1
    assert float(brier_score(torch.tensor([[0.5, 0.5]]), torch.tensor([0]), 2)) == pytest.approx(
        0.5
    )  # single


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_nll_matches_sklearn_log_loss(dtype: torch.dtype) -> None:
    logits, target = random_case(800, 7, seed=13, scale=3.0)
    probs = logits.to(dtype).softmax(1)
    expected = log_loss(target.numpy(), probs.numpy(), labels=list(range(7)))
    metric = NegativeLogLikelihood(7)
    for p, t in zip(probs.split(100), target.split(100), strict=True):
        metric.update(p, t)
    assert float(metric.compute()) == pytest.approx(expected, rel=1e-5)
    assert float(negative_log_likelihood(probs, target, 7)) == pytest.approx(expected, rel=1e-5)


def test_nll_is_clamped_like_sklearn_and_never_infinite() -> None:
    probs = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    target = torch.tensor([1, 1, 0])  # two certain and wrong predictions, one certain and right
    value = float(negative_log_likelihood(probs, target, 3))
    assert np.isfinite(value)
    assert value == pytest.approx(log_loss(target.numpy(), probs.numpy(), labels=[0, 1, 2]), rel=1e-6)
    assert float(negative_log_likelihood(probs, target, 3, eps=1e-3)) == pytest.approx(
        -(2 * np.log(1e-3) + np.log(1 - 1e-3)) / 3
    )
    huge = torch.tensor([[1000.0, -1000.0]])  # logits saturating softmax to exactly 0 / 1
    assert torch.isfinite(negative_log_likelihood(huge, torch.tensor([1]), 2))


def test_nll_soft_targets_are_cross_entropy() -> None:
    logits, _ = random_case(200, 4, seed=17)
    soft = torch.rand(200, 4, generator=torch.Generator().manual_seed(1)).softmax(1)
    expected = float(torch.nn.functional.cross_entropy(logits.double(), soft.double()))
    assert float(negative_log_likelihood(logits.double(), soft, 4)) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("input_format", ["logits", "auto"])
def test_nll_of_logits_is_cross_entropy(input_format: str) -> None:
    """Confident logits (a trained model's): the NLL is F.cross_entropy, not the clamped-softmax loss.

    Clamping float32 softmax probabilities into [eps, 1 - eps] costs at most -log(eps) = 15.9 per
    sample and rounds log(p) near 1: on these logits it is off from the fourth digit on.
    """
    g = torch.Generator().manual_seed(29)
    logits = torch.randn(600, 10, generator=g) * 12.0
    target = torch.randint(0, 10, (600,), generator=g)
    exact = torch.nn.functional.cross_entropy(logits.double(), target)  # float64 oracle
    loss = torch.nn.functional.cross_entropy(logits, target)
    metric = NegativeLogLikelihood(10, input_format=input_format)  # type: ignore[arg-type]
    for x, y in zip(logits.split(128), target.split(128), strict=True):
        metric.update(x, y)
    for value in (metric.compute(), negative_log_likelihood(logits, target, 10, input_format=input_format)):  # type: ignore[arg-type]
        torch.testing.assert_close(value, loss)  # float32 tolerance
        torch.testing.assert_close(value.double(), exact, rtol=1e-6, atol=0.0)
    # float64 logits: the float64 sum of the per-sample losses equals cross-entropy's, to float64 precision
    metric64 = NegativeLogLikelihood(10, input_format=input_format)  # type: ignore[arg-type]
    metric64.update(logits.double(), target)
    torch.testing.assert_close(
        metric64.total, torch.nn.functional.cross_entropy(logits.double(), target, reduction="sum")
    )
    # soft targets and (N, C, L) outputs: cross_entropy with the distribution, per position
    soft = torch.rand(600, 10, generator=g).softmax(1)
    torch.testing.assert_close(
        negative_log_likelihood(logits, SoftLabels(soft), 10, input_format=input_format),  # type: ignore[arg-type]
        torch.nn.functional.cross_entropy(logits, soft),
    )
    sequence, labels = logits.view(60, 10, 10).transpose(1, 2), target.view(60, 10)  # (N, C, L), (N, L)
    torch.testing.assert_close(
        negative_log_likelihood(sequence, labels, 10, input_format=input_format),  # type: ignore[arg-type]
        torch.nn.functional.cross_entropy(sequence, labels),
    )


def test_nll_eps_clamps_probabilities_only() -> None:
    probs = torch.tensor([[0.0, 1.0], [0.5, 0.5]], dtype=torch.float64)
    target = torch.tensor([0, 1])
    expected = -(np.log(1e-3) + np.log(0.5)) / 2  # the zero probability costs -log(eps)
    assert float(negative_log_likelihood(probs, target, 2, eps=1e-3)) == pytest.approx(expected)
    metric = NegativeLogLikelihood(2, eps=1e-3, input_format="probs")
    metric.update(probs, target)
    assert float(metric.compute()) == pytest.approx(expected)
    logits = torch.tensor([[30.0, -30.0]])  # p(class 1) = exp(-60): its NLL is 60, beyond any clamp
    assert float(negative_log_likelihood(logits, torch.tensor([1]), 2)) == pytest.approx(60.0)
    with pytest.raises(
        ConfigurationError, match=r"NegativeLogLikelihood: `eps` must be None with input_format='logits'"
    ):
        NegativeLogLikelihood(2, eps=1e-3, input_format="logits")


# ------------------------------------------------------------------------------------------------
# reliability diagram


def test_reliability_diagram_bins_match_numpy_and_plot() -> None:
    logits, target = random_case(2000, 5, seed=19)
    probs = logits.softmax(1)
    count, acc, mean_conf = np_binned(*np_top_label(probs.double().numpy(), target.numpy()), 12)
    metric = ReliabilityDiagram(5, 12)
    for p, t in zip(logits.split(300), target.split(300), strict=True):
        metric.update(p, t)
    out = metric.compute()
    filled = count > 0
    np.testing.assert_array_equal(out["count"].numpy(), count)
    np.testing.assert_allclose(out["accuracy"].numpy()[filled], acc[filled], atol=1e-6)
    np.testing.assert_allclose(out["confidence"].numpy()[filled], mean_conf[filled], atol=1e-6)
    assert torch.isnan(out["accuracy"][torch.from_numpy(~filled)]).all()
    np.testing.assert_allclose(out["edges"].numpy(), np.linspace(0, 1, 13), atol=1e-7)
    for key, value in reliability_diagram(logits, target, 5, 12).items():
        torch.testing.assert_close(value, out[key], equal_nan=True)
    from matplotlib.figure import Figure

    figure = metric.plot()
    assert isinstance(figure, Figure)
    accuracy_bars = [
        p
        for p in figure.axes[0].patches
        if p.get_facecolor()[:3] == pytest.approx((0.12, 0.47, 0.71), abs=0.01)
    ]
    assert len(accuracy_bars) == int(filled.sum())


# ------------------------------------------------------------------------------------------------
# state and errors


def test_state_has_fixed_size_over_ten_million_predictions() -> None:
    metrics = [
        CalibrationError(2, 15, input_format="probs", validate_args=False),
        AdaptiveCalibrationError(2, 15, input_format="probs", validate_args=False),
        BrierScore(2, input_format="probs", validate_args=False),
        NegativeLogLikelihood(2, input_format="probs", validate_args=False),
    ]
    sizes = [{k: v.numel() for k, v in m.metric_state.items()} for m in metrics]
    g = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    for _ in range(10):  # 10 batches of 10^6: 10^7 predictions
        conf = torch.rand(1_000_000, generator=g) * 0.5 + 0.5
        probs = torch.stack([conf, 1 - conf], dim=1)
        target = (torch.rand(1_000_000, generator=g) > conf).long()
        for metric in metrics:
            metric.update(probs, target)
    assert [{k: v.numel() for k, v in m.metric_state.items()} for m in metrics] == sizes
    assert sizes[0] == {"count": 15, "conf_sum": 15, "correct_sum": 15}
    assert sizes[1] == {"count": 10_000, "conf_sum": 10_000, "correct_sum": 10_000}
    assert float(metrics[0].count.sum()) == 10_000_000
    # calibrated by construction (P(correct) = conf): every calibration error is small
    assert float(metrics[0].compute()) < 2e-3
    assert float(metrics[1].compute()) < 2e-3
    assert time.perf_counter() - start < 60


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: CalibrationError(10, n_bins=0), "`n_bins` must be an integer >= 1, got 0"),
        (lambda: CalibrationError(10, n_bins=2.5), "`n_bins`"),
        (lambda: CalibrationError(10, norm="l3"), "`norm` must be one of 'l1', 'l2', 'max', got 'l3'"),
        (lambda: CalibrationError(1), "`num_classes` must be an integer >= 2"),
        (lambda: CalibrationError(3, input_format="softmax"), "`input_format`"),
        (lambda: AdaptiveCalibrationError(3, n_bins=0), "`n_bins`"),
        (lambda: AdaptiveCalibrationError(3, n_fine_bins=0), "`n_fine_bins`"),
        (lambda: ReliabilityDiagram(3, n_bins=-1), "`n_bins`"),
        (lambda: NegativeLogLikelihood(3, eps=0.0), "`eps`"),
        (lambda: calibration_error(torch.zeros(2, 3), torch.zeros(2).long(), 3, n_bins=0), "`n_bins`"),
    ],
)
def test_bad_arguments_raise_configuration_error(make, match: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigurationError, match=match):
        make()


def test_bad_inputs_raise_configuration_error() -> None:
    metric = CalibrationError(10)
    with pytest.raises(ConfigurationError, match=r"model output has 4 classes .* `num_classes` is 10"):
        metric.update(torch.randn(5, 4), torch.zeros(5).long())
    with pytest.raises(ConfigurationError, match="`target` holds class indices outside \\[0, 9\\]"):
        metric.update(torch.randn(5, 10), torch.tensor([0, 1, 2, 3, 10]))
    with pytest.raises(ConfigurationError, match="`target` must be class indices of shape \\(5,\\)"):
        metric.update(torch.randn(5, 10), torch.zeros(4).long())
    with pytest.raises(ConfigurationError, match="floating"):
        metric.update(torch.zeros(5, 10).long(), torch.zeros(5).long())
    with pytest.raises(ConfigurationError, match="model output has 3 classes"):
        BrierScore(2).update(torch.randn(5, 3), torch.zeros(5).long())
    with pytest.raises(ConfigurationError, match="distribution of shape \\(5, 2\\)"):
        NegativeLogLikelihood(2).update(torch.randn(5, 2), torch.rand(5, 3))
    assert float(metric.count.sum()) == 0  # nothing was accumulated by the failed updates


def test_soft_labels_of_the_wrong_width_are_reported_as_such() -> None:
    """Not as 'class indices outside [0, 2]' (their argmax) nor as a bare float tensor."""
    wrong = SoftLabels(torch.rand(8, 4, generator=torch.Generator().manual_seed(0)).softmax(1))
    expected = (
        "`target` must be class indices of shape (8,), SoftLabels, or a float distribution of shape"
        " (8, 3); got SoftLabels whose distribution has shape (8, 4)."
    )
    for metric in (CalibrationError(3), NegativeLogLikelihood(3), BrierScore(3)):
        with pytest.raises(ConfigurationError) as info:
            metric.update(torch.randn(8, 3), wrong)
        assert str(info.value) == f"{type(metric).__name__}: {expected}"


def test_compute_before_update_is_zero_and_reset_clears() -> None:
    metric = CalibrationError(3)
    with pytest.warns(UserWarning, match="called before the ``update``"):
        assert float(metric.compute()) == 0.0
    logits, target = random_case(50, 3, seed=23)
    metric.update(logits, target)
    assert float(metric.compute()) > 0
    metric.reset()
    assert float(metric.count.sum()) == 0


def test_the_package_exports_every_class_and_functional_form() -> None:
    import lit_noise.metrics

    names = {
        "AdaptiveCalibrationError",
        "BrierScore",
        "CalibrationError",
        "NegativeLogLikelihood",
        "ReliabilityDiagram",
        "adaptive_calibration_error",
        "brier_score",
        "calibration_error",
        "fit_temperature",
        "negative_log_likelihood",
        "plot_reliability_diagram",
        "reliability_diagram",
    }
    assert set(lit_noise.metrics.__all__) == names
    assert len(lit_noise.metrics.__all__) == len(names)
    assert all(hasattr(lit_noise.metrics, name) for name in names)
