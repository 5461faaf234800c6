"""Noise on float16 / bfloat16 tensors against oracles written out here.

Uniform, Laplace and NEFTune noise (``lit_noise.functional.uniform`` / ``laplace`` / ``neftune``
/ ``neftune_padded`` and the in-place samplers ``uniform_`` / ``laplace_`` behind WeightNoise and
GradientNoise) on 16-bit tensors: zero mean, the
law of float32 draws rounded to the dtype (SciPy's CDF evaluated at the rounding boundaries), the
float32 tails, and bit for bit the float32 draw of the same generator rounded once. Float32 and
float64 tensors: bit for bit the formula written out in the test. SNR noise on float16 signals at
int16 PCM scale: finite, with the std of the SNR formula computed in NumPy float64.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
import torch
from scipy import stats

from lit_noise import SNR, Laplace, Uniform
from lit_noise import functional as LF
from lit_noise.functional.params import gaussian_, laplace_, uniform_

N = 1 << 21  # ~2e6 draws: a 16-bit uniform's bias (-width / 512 in bfloat16) is ~10 standard errors
Z = 5.0  # bound in standard errors: a fixed generator makes each check deterministic
HALF = [torch.bfloat16, torch.float16]
WIDTH = 2.0
SCALE = 1.0
EPS32 = 2.0**-23  # float32 machine epsilon, written out (not read from the code under test)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


Draw = Callable[[torch.Tensor, torch.Generator], torch.Tensor]

#: name -> (draw into / onto zeros of the given dtype, SciPy law, the law's std)
DRAWS: dict[str, tuple[Draw, stats.rv_continuous, float]] = {
    "uniform": (
        lambda z, g: LF.uniform(z, WIDTH, generator=g),
        stats.uniform(loc=-WIDTH / 2, scale=WIDTH),
        WIDTH / math.sqrt(12.0),
    ),
    "uniform_": (
        lambda z, g: uniform_(z, WIDTH, generator=g),
        stats.uniform(loc=-WIDTH / 2, scale=WIDTH),
        WIDTH / math.sqrt(12.0),
    ),
    "laplace": (
        lambda z, g: LF.laplace(z, SCALE, generator=g),
        stats.laplace(scale=SCALE),
        SCALE * math.sqrt(2.0),
    ),
    "laplace_": (
        lambda z, g: laplace_(z, SCALE, generator=g),
        stats.laplace(scale=SCALE),
        SCALE * math.sqrt(2.0),
    ),
    # NEFTune on one (1, N, 1) sequence: alpha = sqrt(L * d) makes the magnitude 1, so U(-1, 1).
    "neftune_padded": (
        lambda z, g: LF.neftune_padded(z.view(1, -1, 1), math.sqrt(z.numel()), generator=g).view(-1),
        stats.uniform(loc=-1.0, scale=2.0),
        1.0 / math.sqrt(3.0),
    ),
    "neftune": (
        lambda z, g: LF.neftune(
            z.view(1, -1, 1), math.sqrt(z.numel()), torch.ones(1, z.numel(), dtype=torch.bool), g
        ).view(-1),
        stats.uniform(loc=-1.0, scale=2.0),
        1.0 / math.sqrt(3.0),
    ),
    # Guards: 16-bit Gaussian draws were unbiased already (torch rounds float32 draws); keep them so.
    "gaussian": (lambda z, g: LF.gaussian(z, 1.0, generator=g), stats.norm(), 1.0),
    "gaussian_": (lambda z, g: gaussian_(z, 1.0, generator=g), stats.norm(), 1.0),
}


def rounded_law_ks(values: np.ndarray, dtype: torch.dtype, law: stats.rv_continuous) -> tuple[float, float]:
    """KS distance and p-value of ``values`` (16-bit numbers) against ``law`` rounded to ``dtype``.

    A draw of the law rounded to nearest lands on the grid value ``v`` when it falls between the
    midpoints to ``v``'s neighbours, so the rounded law's CDF at ``v`` is the law's CDF at the upper
    midpoint, and just below ``v`` the law's CDF at the lower one. Both step functions jump only at
    grid values, so these two points per observed value give the exact sup distance. The
    continuous-law p-value is conservative for a discrete law.
    """
    grid, counts = np.unique(values, return_counts=True)
    ecdf = np.cumsum(counts) / values.size
    ecdf_before = np.concatenate(([0.0], ecdf[:-1]))
    v = torch.from_numpy(grid).to(dtype)
    up = torch.nextafter(v, torch.tensor(math.inf, dtype=dtype)).double().numpy()
    down = torch.nextafter(v, torch.tensor(-math.inf, dtype=dtype)).double().numpy()
    cdf_up = law.cdf((grid + up) / 2)
    cdf_down = law.cdf((grid + down) / 2)
    distance = float(max(np.abs(ecdf - cdf_up).max(), np.abs(ecdf_before - cdf_down).max()))
    return distance, float(stats.kstwo.sf(distance, values.size))


@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("name", list(DRAWS))
def test_16bit_noise_is_zero_mean(name: str, dtype: torch.dtype) -> None:
    draw, _, std = DRAWS[name]
    y = draw(torch.zeros(N, dtype=dtype), gen(0))
    assert y.dtype == dtype
    mean = y.double().mean().item()
    assert abs(mean) < Z * std / math.sqrt(N), (name, dtype, mean)


@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("name", ["uniform", "uniform_", "neftune_padded", "neftune"])
def test_16bit_uniform_noise_is_zero_mean_over_8m_draws(name: str, dtype: torch.dtype) -> None:
    """Torch's own bfloat16 ``uniform_(-h, h)`` has mean ``-h / 512``: ~9 standard errors at 2**23 draws."""
    n = 1 << 23
    draw, _, std = DRAWS[name]
    mean = draw(torch.zeros(n, dtype=dtype), gen(12)).sum(dtype=torch.float64).item() / n
    assert abs(mean) < Z * std / math.sqrt(n), (name, dtype, mean)


@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("name", list(DRAWS))
def test_16bit_noise_follows_the_law_rounded_to_the_dtype(name: str, dtype: torch.dtype) -> None:
    draw, law, _ = DRAWS[name]
    values = draw(torch.zeros(N, dtype=dtype), gen(1)).double().numpy()
    distance, p = rounded_law_ks(values, dtype, law)
    assert p > 1e-4, (name, dtype, distance, p)


def test_the_rounded_law_ks_rejects_16bit_uniforms() -> None:
    """The oracle has power: uniforms drawn in bfloat16 (the old draws) fail it."""
    u = torch.rand(N, generator=gen(1), dtype=torch.bfloat16).double().numpy()
    _, p = rounded_law_ks(u, torch.bfloat16, stats.uniform())
    assert p < 1e-6
    laplace_old = -np.sign(2 * u - 1) * np.log1p(-np.minimum(np.abs(2 * u - 1), 1 - 2.0**-7))
    _, p = rounded_law_ks(
        torch.from_numpy(laplace_old).bfloat16().double().numpy(), torch.bfloat16, stats.laplace()
    )
    assert p < 1e-6


@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("name", ["laplace", "laplace_"])
def test_16bit_laplace_reaches_the_float32_tails(name: str, dtype: torch.dtype) -> None:
    draw, _, _ = DRAWS[name]
    peak = draw(torch.zeros(N, dtype=dtype), gen(2)).abs().max().item()
    # P(max |X| < ln N - 3) = (1 - e**3 / N) ** N ~ exp(-e**3) ~ 2e-9 for Laplace(1); the float32
    # uniforms stop at 1 - 2**-23, so |X| <= 23 ln 2 ~ 15.9 (16 once rounded).
    assert math.log(N) - 3.0 < peak <= 16.0, (name, dtype, peak)


@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_16bit_draws_are_the_float32_draws_rounded_once(dtype: torch.dtype) -> None:
    n = 100_003
    u = torch.rand(n, generator=gen(3))  # float32 on [0, 1)
    assert torch.equal(LF.uniform(torch.zeros(n, dtype=dtype), WIDTH, gen(3)), (WIDTH * (u - 0.5)).to(dtype))
    s = 2 * u - 1
    lap = -SCALE * torch.sign(s) * torch.log1p(-s.abs().clamp(max=1 - EPS32))
    assert torch.equal(LF.laplace(torch.zeros(n, dtype=dtype), SCALE, gen(3)), lap.to(dtype))

    half = WIDTH / 2
    expected = torch.empty(n).uniform_(-half, half, generator=gen(4)).to(dtype)
    assert torch.equal(uniform_(torch.empty(n, dtype=dtype), WIDTH, gen(4)), expected)
    s = torch.empty(n).uniform_(-1.0, 1.0, generator=gen(5))
    lap = -SCALE * torch.sign(s) * torch.log1p(-s.abs().clamp(max=1 - EPS32))
    buffer = torch.empty(n, dtype=dtype)
    assert laplace_(buffer, SCALE, gen(5)) is buffer
    assert torch.equal(buffer, lap.to(dtype))

    # NEFTune: (2, 5, 8) embeddings, m = alpha / sqrt(L * d); the masked form scales each sample.
    x = torch.randn(2, 5, 8, generator=gen(6)).to(dtype)
    eps = torch.empty(2, 5, 8).uniform_(-1.0, 1.0, generator=gen(7))
    expected = (x.float() + eps * (3.0 / math.sqrt(40))).to(dtype)
    magnitude = 3.0 / math.sqrt(5 * 8)
    padded = (x.float() + torch.empty(2, 5, 8).uniform_(-magnitude, magnitude, generator=gen(7))).to(dtype)
    assert torch.equal(LF.neftune_padded(x, 3.0, gen(7)), padded)
    keep = torch.tensor([[True, True, False, False, False], [True] * 5])
    lengths = torch.tensor([2.0, 5.0])
    expected = (x.float() + eps * (3.0 / torch.sqrt(lengths * 8)).view(2, 1, 1)).to(dtype)
    expected = torch.where(keep.unsqueeze(-1), expected, x)
    assert torch.equal(LF.neftune(x, 3.0, keep, gen(7)), expected)


@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_16bit_noise_on_a_signal_keeps_its_dtype_and_shape(dtype: torch.dtype) -> None:
    x = (torch.randn(8, 3, 50, generator=gen(6)) * 100).to(dtype)
    for noise in (Uniform(width=WIDTH), Laplace(scale=SCALE)):
        y = noise(x, generator=gen(7))
        assert y.dtype == dtype
        assert y.shape == x.shape
        assert torch.isfinite(y).all()
        assert not torch.equal(y, x)
    # The noise is added in float32 and rounded once: y is the 16-bit number nearest x + noise.
    u = torch.rand(x.shape, generator=gen(8))
    exact = x.double() + WIDTH * (u.double() - 0.5)
    y = LF.uniform(x, WIDTH, gen(8)).double()
    spacing = (torch.nextafter(y.to(dtype), torch.tensor(math.inf, dtype=dtype)).double() - y).abs()
    assert ((y - exact).abs() <= 0.5 * spacing + 1e-6 * exact.abs()).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_full_precision_draws_are_bit_identical_to_the_written_formula(dtype: torch.dtype) -> None:
    eps = 2.0**-23 if dtype == torch.float32 else 2.0**-52
    x = torch.randn(4, 7, 33, generator=gen(9), dtype=dtype) * 3
    for seed in range(3):
        g, ref = gen(seed), gen(seed)
        expected = torch.add(x, torch.rand(x.shape, generator=ref, dtype=dtype) - 0.5, alpha=0.37)
        assert torch.equal(LF.uniform(x, 0.37, g), expected)
        assert torch.equal(g.get_state(), ref.get_state())

        g, ref = gen(seed), gen(seed)
        s = torch.rand(x.shape, generator=ref, dtype=dtype) * 2 - 1
        expected = torch.addcmul(x, torch.sign(s), torch.log1p(-s.abs().clamp(max=1 - eps)), value=-0.37)
        assert torch.equal(LF.laplace(x, 0.37, g), expected)
        assert torch.equal(g.get_state(), ref.get_state())

        g, ref = gen(seed), gen(seed)
        expected = torch.empty(1000, dtype=dtype).uniform_(-0.185, 0.185, generator=ref)
        assert torch.equal(uniform_(torch.empty(1000, dtype=dtype), 0.37, g), expected)
        assert torch.equal(g.get_state(), ref.get_state())

        g, ref = gen(seed), gen(seed)
        s = torch.empty(1000, dtype=dtype).uniform_(-1.0, 1.0, generator=ref)
        expected = -0.37 * torch.sign(s) * torch.log1p(-s.abs().clamp(max=1 - eps))
        assert torch.equal(laplace_(torch.empty(1000, dtype=dtype), 0.37, g), expected)
        assert torch.equal(g.get_state(), ref.get_state())

        g, ref = gen(seed), gen(seed)
        power = x.pow(2).mean(dim=(1, 2), keepdim=True)
        expected = torch.addcmul(
            x, torch.sqrt(power * 10.0 ** (-7.5 / 10.0)), torch.randn(x.shape, generator=ref, dtype=dtype)
        )
        assert torch.equal(LF.snr(x, 7.5, g), expected)
        assert torch.equal(g.get_state(), ref.get_state())

        g, ref = gen(seed), gen(seed)  # NEFTune in TRL's form: one uniform_ in x's dtype
        magnitude = 2.0 / math.sqrt(7 * 33)
        expected = x + torch.empty_like(x).uniform_(-magnitude, magnitude, generator=ref)
        assert torch.equal(LF.neftune_padded(x, 2.0, g), expected)
        assert torch.equal(g.get_state(), ref.get_state())


PCM_AMPLITUDES = [3000.0, 12000.0, 300.0, 0.0]  # int16 PCM scale; the last sample is silent


def pcm_like(dtype: torch.dtype, length: int = 16_000) -> torch.Tensor:
    t = torch.arange(length, dtype=torch.float64) / 16_000
    rows = [a * torch.sin(2 * math.pi * (220 + 110 * i) * t) for i, a in enumerate(PCM_AMPLITUDES)]
    return torch.stack(rows).to(dtype)


@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("db", [10.0, 0.0])
def test_snr_on_16bit_pcm_scale_audio_has_the_formula_std(dtype: torch.dtype, db: float) -> None:
    x = pcm_like(dtype)
    for y in (LF.snr(x, db, generator=gen(10)), SNR(db=db)(x, generator=gen(10))):
        assert y.dtype == dtype
        assert torch.isfinite(y).all()
        signal = x.double().numpy()
        noise = y.double().numpy() - signal
        expected_std = np.sqrt(np.mean(signal**2, axis=1) * 10.0 ** (-db / 10.0))
        n = signal.shape[1]
        for row in range(len(PCM_AMPLITUDES)):
            if expected_std[row] == 0.0:
                assert (noise[row] == 0.0).all()  # a silent sample gets no noise
                continue
            # SE of a sample std: std / sqrt(2 n); 16-bit rounding of y and the std adds < 0.4 %.
            bound = Z * expected_std[row] / math.sqrt(2 * n) + 0.004 * expected_std[row]
            assert abs(noise[row].std() - expected_std[row]) < bound, (
                row,
                noise[row].std(),
                expected_std[row],
            )
            assert abs(noise[row].mean()) < Z * expected_std[row] / math.sqrt(n)


def test_snr_on_a_1d_float16_signal_uses_each_element_as_its_power() -> None:
    x = torch.full((100_000,), 3000.0, dtype=torch.float16)
    y = LF.snr(x, 20.0, generator=gen(11))
    assert torch.isfinite(y).all()
    noise = y.double().numpy() - 3000.0
    expected_std = 3000.0 * 10.0 ** (-20.0 / 20.0)  # sqrt(3000**2 * 10**-2) in float64
    assert (
        abs(noise.std() - expected_std) < Z * expected_std / math.sqrt(2 * x.numel()) + 0.004 * expected_std
    )
