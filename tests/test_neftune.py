"""NEFTune (lit_noise.NEFTune, lit_noise.functional.neftune*) against the TRL hook and the paper's formula."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from lit_noise import NEFTune
from lit_noise.errors import ConfigurationError
from lit_noise.functional import neftune, neftune_padded
from lit_noise.schedules import Clock, Linear

B, L, D = 6, 40, 32
ALPHA = 5.0


def trl_neftune_post_forward_hook(
    module: torch.nn.Module, input: object, output: torch.Tensor
) -> torch.Tensor:
    """Transcribed from Hugging Face TRL, ``trl/trainer/utils.py``, ``neftune_post_forward_hook``
    (github.com/huggingface/trl, commit 5b2aeca6c0155e34592d113d0e9a321ed776b7bd, PR #889
    "[NEFTune] Make use of forward hooks instead", 2023-10-24; unchanged in #924 and #933).
    """
    if module.training:
        dims = torch.tensor(output.size(1) * output.size(2))
        mag_norm = module.neftune_noise_alpha / torch.sqrt(dims)  # type: ignore[operator, arg-type]
        output = output + torch.zeros_like(output).uniform_(-mag_norm, mag_norm)  # type: ignore[arg-type]
    return output


def lengths_mask(lengths: list[int], length: int = L) -> torch.Tensor:
    return torch.tensor([[j < n for j in range(length)] for n in lengths])


def test_padded_form_equals_the_transcribed_trl_hook_given_the_same_draws() -> None:
    embedding = torch.nn.Embedding(50, D)
    embedding.neftune_noise_alpha = ALPHA  # type: ignore[assignment]
    ids = torch.randint(0, 50, (B, L), generator=torch.Generator().manual_seed(1))
    clean = embedding(ids).detach()
    torch.manual_seed(123)  # TRL draws from torch's global generator
    expected = trl_neftune_post_forward_hook(embedding, (ids,), clean)
    ours = NEFTune(alpha=ALPHA, form="padded")(clean, generator=torch.Generator().manual_seed(123))
    # Same uniform draws; TRL rounds mag_norm to float32, we keep it in float64: equal to ~1 ulp.
    torch.testing.assert_close(ours, expected, rtol=0.0, atol=1e-6)
    assert not torch.equal(ours, clean)


def test_padded_form_bound_and_uniform_spread() -> None:
    x = torch.zeros(B, L, D)
    noise = NEFTune(alpha=ALPHA, form="padded")(x, generator=torch.Generator().manual_seed(0))
    bound = ALPHA / math.sqrt(L * D)
    values = noise.flatten().double().numpy()
    assert values.max() <= bound
    assert values.min() >= -bound
    assert values.max() > 0.999 * bound
    assert values.min() < -0.999 * bound
    # Kolmogorov-Smirnov against U(-bound, bound) (scipy's uniform: loc, scale = width).
    assert stats.kstest(values, "uniform", args=(-bound, 2 * bound)).pvalue > 1e-3


def test_per_sample_form_matches_the_paper_formula_and_leaves_padding_bit_identical() -> None:
    lengths = [1, 5, 17, 40, 23, 8]
    keep = lengths_mask(lengths)
    x = torch.randn(B, L, D, generator=torch.Generator().manual_seed(2))
    x[~keep] = -0.0  # padding that a `+ 0` would turn into +0.0
    y = NEFTune(alpha=ALPHA)(x, generator=torch.Generator().manual_seed(7), keep=keep)
    # The paper's Algorithm 1 per sample: X + alpha / sqrt(L_i d) * eps, eps ~ U(-1, 1) on real tokens,
    # written in NumPy from the same eps draws.
    eps = torch.empty(B, L, D).uniform_(-1.0, 1.0, generator=torch.Generator().manual_seed(7)).numpy()
    x_np, keep_np = x.double().numpy(), keep.numpy()
    expected = x_np.copy()
    for i, n in enumerate(lengths):
        expected[i, :n] += ALPHA / math.sqrt(n * D) * eps[i, :n]
    np.testing.assert_allclose(y.double().numpy(), expected, rtol=0, atol=1e-6)
    assert torch.equal(y[~keep].view(torch.int32), x[~keep].view(torch.int32))  # bit for bit
    for i, n in enumerate(lengths):
        diff = (y[i, :n] - x[i, :n]).abs()
        bound = ALPHA / math.sqrt(n * D)
        assert diff.max().item() <= bound * (1 + 1e-5)
        if n >= 5:
            assert diff.max().item() > 0.97 * bound
    assert not keep_np.all()


def test_per_sample_noise_of_a_position_does_not_depend_on_the_other_samples() -> None:
    x = torch.zeros(2, L, D)
    short = neftune(x, ALPHA, lengths_mask([10, 40]), torch.Generator().manual_seed(3))
    other = neftune(x, ALPHA, lengths_mask([10, 3]), torch.Generator().manual_seed(3))
    assert torch.equal(short[0], other[0])


def test_per_sample_without_mask_uses_the_padded_length() -> None:
    x = torch.zeros(B, L, D)
    a = neftune(x, ALPHA, None, torch.Generator().manual_seed(4))
    b = neftune_padded(x, ALPHA, torch.Generator().manual_seed(4))
    assert torch.equal(a, b)
    assert a.abs().max().item() <= ALPHA / math.sqrt(L * D)


def test_alpha_follows_schedules_and_scale() -> None:
    noise = NEFTune(alpha=Linear(start=0.0, end=10.0, until=1.0))
    assert noise.resolve(Clock(step=5, epoch=0, progress=0.5)) == {"alpha": 5.0}
    assert NEFTune(alpha=5.0).resolve(scale=3.0) == {"alpha": 15.0}
    x = torch.zeros(1, L, D)
    y = NEFTune(alpha=5.0)(x, generator=torch.Generator().manual_seed(0), scale=0.5)
    assert 0.99 * 2.5 / math.sqrt(L * D) < y.abs().max().item() <= 2.5 / math.sqrt(L * D)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: NEFTune(alpha=-1.0), "`alpha` must be >= 0, got -1.0"),
        (
            lambda: NEFTune(alpha=5.0, form="trl"),  # type: ignore[arg-type]
            "`form` must be one of 'per_sample', 'padded', got 'trl'",
        ),
    ],
)
def test_bad_arguments(build: object, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message.replace("(", r"\(")):
        build()  # type: ignore[operator]


def test_bad_inputs() -> None:
    g = torch.Generator().manual_seed(0)
    with pytest.raises(ConfigurationError, match=r"shape \(batch, length, dim\).*shape \(4, 8\)"):
        NEFTune(alpha=1.0)(torch.zeros(4, 8), generator=g)
    with pytest.raises(ConfigurationError, match="floating"):
        NEFTune(alpha=1.0)(torch.zeros(2, 4, 8, dtype=torch.long), generator=g)
    with pytest.raises(ConfigurationError, match=r"form='padded'.*takes no mask"):
        NEFTune(alpha=1.0, form="padded")(torch.zeros(2, 4, 8), generator=g, keep=torch.ones(2, 4))
    with pytest.raises(ConfigurationError, match=r"shape \(batch, length\), got shape \(2,\)"):
        NEFTune(alpha=1.0)(torch.zeros(2, 4, 8), generator=g, keep=torch.ones(2))
    with pytest.raises(ConfigurationError, match="leading shape"):
        NEFTune(alpha=1.0)(torch.zeros(2, 4, 8), generator=g, keep=torch.ones(2, 5))
