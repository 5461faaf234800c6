"""lit_noise.HostRandom: the SplitMix64 stream against a hand-written one, and its distributions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from lit_noise import HostRandom

MASK64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15
MUL1 = 0xBF58476D1CE4E5B9
MUL2 = 0x94D049BB133111EB
# The reference splitmix64.c (Vigna) seeded with 0 prints these first three outputs.
PUBLISHED_SEED0 = (0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F)


def _finalise(z: int) -> int:
    z = ((z ^ (z >> 30)) * MUL1) & MASK64
    z = ((z ^ (z >> 27)) * MUL2) & MASK64
    return z ^ (z >> 31)


def _splitmix64_words(seed: int, count: int) -> list[int]:
    """The published algorithm, one step at a time: state += golden, output the finaliser of the state."""
    state, words = seed & MASK64, []
    for _ in range(count):
        state = (state + GOLDEN) & MASK64
        words.append(_finalise(state))
    return words


def _as_uniform(word: int) -> float:
    return ((word >> 12) + 0.5) * 2.0**-52


def _unxorshift(y: int, shift: int) -> int:
    """Invert ``x ^ (x >> shift)`` (each pass fixes ``shift`` more high bits)."""
    x = y
    for _ in range(64 // shift + 1):
        x = y ^ (x >> shift)
    return x


def _state_before(word: int) -> int:
    """The stream state whose next output is ``word`` (the finaliser is a bijection; undo it step by step)."""
    z = _unxorshift(word, 31)
    z = (z * pow(MUL2, -1, 1 << 64)) & MASK64
    z = _unxorshift(z, 27)
    z = (z * pow(MUL1, -1, 1 << 64)) & MASK64
    z = _unxorshift(z, 30)
    return (z - GOLDEN) & MASK64


def test_hand_written_splitmix64_reproduces_the_published_outputs() -> None:
    assert tuple(_splitmix64_words(0, 3)) == PUBLISHED_SEED0
    word = 0x0123456789ABCDEF
    assert _splitmix64_words(_state_before(word), 1) == [word]


@pytest.mark.parametrize("seed", [0, 1, 42, 2**63 - 1, 2**64 - 1, 0xDEADBEEFCAFEF00D])
def test_first_outputs_equal_the_hand_written_splitmix64(seed: int) -> None:
    expected = [_as_uniform(w) for w in _splitmix64_words(seed, 16)]
    assert HostRandom(seed).uniforms(16) == expected
    if seed == 0:
        assert HostRandom(0).uniforms(3) == [_as_uniform(w) for w in PUBLISHED_SEED0]


def test_seed_is_taken_modulo_2_64() -> None:
    assert HostRandom(-1).uniforms(4) == HostRandom(2**64 - 1).uniforms(4)
    assert HostRandom(2**64 + 5).uniforms(4) == HostRandom(5).uniforms(4)


def test_same_seed_same_numbers_other_seed_other_numbers() -> None:
    assert HostRandom(123).uniforms(32) == HostRandom(123).uniforms(32)
    assert HostRandom(123).beta(0.4, 3.0) == HostRandom(123).beta(0.4, 3.0)
    assert HostRandom(123).uniforms(32) != HostRandom(124).uniforms(32)


def test_uniforms_equals_repeated_uniform_and_continues_the_stream() -> None:
    stream = HostRandom(99)
    blocks = stream.uniforms(5) + stream.uniforms(0) + stream.uniforms(3) + [stream.uniform()]
    single = HostRandom(99)
    assert blocks == [single.uniform() for _ in range(9)]
    assert blocks == [_as_uniform(w) for w in _splitmix64_words(99, 9)]
    assert stream.uniforms(2) == single.uniforms(2)  # both continue from the same state


def test_beta_one_one_is_one_uniform() -> None:
    stream, reference = HostRandom(5), HostRandom(5)
    assert [stream.beta(1.0, 1.0) for _ in range(4)] == reference.uniforms(4)
    assert stream.uniform() == reference.uniform()


def test_uniform_stays_inside_the_open_interval_at_the_extremes() -> None:
    """The smallest and the largest SplitMix64 outputs (reached from crafted states) stay in (0, 1)."""
    lowest = HostRandom(_state_before(0)).uniform()
    assert 0.0 < lowest < 2.0**-50
    highest = HostRandom(_state_before(MASK64)).uniform()
    assert 1.0 - 2.0**-50 < highest < 1.0
    # the top word must not break the Beta samplers' log(u / (1 - u)) either
    for a, b in [(2.0, 3.0), (0.4, 0.4)]:
        assert 0.0 <= HostRandom(_state_before(MASK64)).beta(a, b) <= 1.0


def test_uniforms_are_uniform() -> None:
    values = np.array(HostRandom(2024).uniforms(5000))
    assert values.min() > 0.0
    assert values.max() < 1.0
    assert stats.kstest(values, stats.uniform.cdf).pvalue > 0.01
    assert abs(values.mean() - 0.5) < 5 * math.sqrt(1 / 12 / values.size)


BETA_SHAPES = [(0.2, 0.2), (0.5, 0.5), (1.0, 1.0), (2.0, 2.0), (5.0, 5.0), (0.4, 3.0), (3.0, 0.4), (2.0, 7.0)]
BETA_SHAPES += [(1.0, 0.3), (0.3, 1.0), (1.5, 1.2)]


@pytest.mark.parametrize(("a", "b"), BETA_SHAPES)
def test_beta_follows_scipy_beta(a: float, b: float) -> None:
    stream = HostRandom(1000 + int(a * 10) * 100 + int(b * 10))
    draws = np.array([stream.beta(a, b) for _ in range(5000)])
    assert ((draws >= 0.0) & (draws <= 1.0)).all()
    reference = stats.beta(a, b)
    assert stats.kstest(draws, reference.cdf).pvalue > 0.01
    n = draws.size
    mean = a / (a + b)
    var = a * b / ((a + b) ** 2 * (a + b + 1))
    excess_kurtosis = float(reference.stats(moments="k"))
    assert abs(draws.mean() - mean) < 5 * math.sqrt(var / n)
    # the sample variance's standard error: sigma^2 * sqrt((kurtosis_excess + 2) / n)
    assert abs(draws.var(ddof=1) - var) < 5 * var * math.sqrt((excess_kurtosis + 2) / n)


def test_beta_swaps_its_shapes_on_the_same_uniforms() -> None:
    """Beta(b, a) is 1 - Beta(a, b): the same trials give complementary draws (both algorithms)."""
    for a, b in [(0.4, 3.0), (2.0, 7.0), (1.0, 0.3)]:
        first, second = HostRandom(11), HostRandom(11)
        for _ in range(50):
            assert first.beta(a, b) == pytest.approx(1.0 - second.beta(b, a), abs=1e-15)


class _PaperStream:
    """Uniforms of the hand-written SplitMix64, one at a time."""

    def __init__(self, seed: int) -> None:
        self.state = seed & MASK64

    def next(self) -> float:
        self.state = (self.state + GOLDEN) & MASK64
        return _as_uniform(_finalise(self.state))


def _cheng(a0: float, b0: float, stream: _PaperStream) -> float:
    """Cheng (1978), algorithms BB (min > 1) and BC, transcribed step by step from the paper."""
    if a0 == 1.0 and b0 == 1.0:
        return stream.next()
    if min(a0, b0) > 1.0:  # BB: a = min, b = max
        a, b = min(a0, b0), max(a0, b0)
        alpha = a + b
        beta = math.sqrt((alpha - 2.0) / (2.0 * a * b - alpha))
        gamma = a + 1.0 / beta
        while True:
            u1, u2 = stream.next(), stream.next()
            v = beta * math.log(u1 / (1.0 - u1))
            w = a * math.exp(v)
            z = u1 * u1 * u2
            r = gamma * v - math.log(4.0)
            s = a + r - w
            if s + 2.609438 >= 5.0 * z:  # the paper rounds 1 + ln 5 (the code keeps it exact)
                break
            t = math.log(z)
            if s > t:
                break
            if r + alpha * math.log(alpha / (b + w)) >= t:
                break
        return w / (b + w) if a == a0 else b / (b + w)
    a, b = max(a0, b0), min(a0, b0)  # BC: a = max, b = min
    alpha, beta, delta = a + b, 1.0 / b, 1.0 + a - b
    k1 = delta * (0.0138889 + 0.0416667 * b) / (a * beta - 0.777778)
    k2 = 0.25 + (0.5 + 0.25 / delta) * b
    while True:
        u1, u2 = stream.next(), stream.next()
        if u1 < 0.5:
            y = u1 * u2
            z = u1 * y
            if 0.25 * u2 + z - y >= k1:
                continue
        else:
            z = u1 * u1 * u2
            if z <= 0.25:
                v = beta * math.log(u1 / (1.0 - u1))
                w = a * math.exp(v)
                break
            if z >= k2:
                continue
        v = beta * math.log(u1 / (1.0 - u1))
        w = a * math.exp(v)
        if alpha * (math.log(alpha / (b + w)) + v) - math.log(4.0) >= math.log(z):
            break
    return w / (b + w) if a == a0 else b / (b + w)


@pytest.mark.parametrize(("a", "b"), BETA_SHAPES)
def test_beta_draws_equal_chengs_algorithms_on_the_same_uniforms(a: float, b: float) -> None:
    stream, paper = HostRandom(77), _PaperStream(77)
    draws = [stream.beta(a, b) for _ in range(300)]
    assert draws == [_cheng(a, b, paper) for _ in range(300)]
    assert stream.uniform() == paper.next()  # the same number of trials (uniforms) was used
