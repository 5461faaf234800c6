"""Counter-based random numbers on the host, in pure Python: a few draws without a tensor op.

A batch-level draw (one λ, one method, one box for the whole batch) needs a handful of numbers.
Drawing them with a seeded ``torch.Generator`` costs a reseed and several tensor operations
(tens of microseconds of host time per batch, the bottleneck of a small model's step); this
stream is SplitMix64 (Steele, Lea and Flood 2014: the state advances by the golden-ratio
constant and each output is its 64-bit finaliser), seeded from the same counters as the torch
generators, so it is exactly reproducible, independent of what ran before, and the same on every
platform and Python version (only integer and IEEE float64 arithmetic).
"""

from __future__ import annotations

import math

from lit_noise._rng import _GOLDEN, _MASK64, _splitmix64

__all__ = ["HostRandom"]

_2_POW_MINUS_52 = 2.0**-52
_LOG_4 = math.log(4.0)
_LOG_MAX = 709.0  # exp(709) < the largest float64
_BB_SQUEEZE = 1.0 + math.log(5.0)  # Cheng's 2.609438


class HostRandom:
    """A SplitMix64 stream of uniforms and Beta draws, in pure Python.

    Args:
        seed: the stream's starting state (any integer; taken modulo 2**64).

    Example:
        >>> stream = HostRandom(42)
        >>> u = stream.uniform()
        >>> 0.0 <= u < 1.0, HostRandom(42).uniform() == u
        (True, True)
        >>> 0.0 < HostRandom(7).beta(0.2, 0.2) < 1.0
        True
    """

    __slots__ = ("_state",)

    def __init__(self, seed: int) -> None:
        self._state = seed & _MASK64

    def uniform(self) -> float:
        """A uniform in the open interval ``(0, 1)``: 52 random bits, centred in their cell.

        The SplitMix64 finaliser of ``state + golden`` (its top 52 bits, plus one half, times
        ``2**-52``: never 0 or 1); the state advances by one step.
        """
        state = self._state
        self._state = (state + _GOLDEN) & _MASK64
        return ((_splitmix64(state) >> 12) + 0.5) * _2_POW_MINUS_52

    def uniforms(self, count: int) -> list[float]:
        """``count`` uniforms in ``(0, 1)``: :meth:`uniform` ``count`` times."""
        return [self.uniform() for _ in range(count)]

    def beta(self, a: float, b: float) -> float:
        """A Beta(``a``, ``b``) draw, ``a, b > 0``: Cheng's rejection algorithms BB and BC (1978).

        Two uniforms per trial (Beta(1, 1) is one uniform); BB serves ``min(a, b) > 1``, BC the rest.
        R. C. H. Cheng, "Generating beta variates with nonintegral shape parameters",
        Communications of the ACM 21(4), 1978.
        """
        if a == 1.0 and b == 1.0:
            return self.uniform()
        small, large = (a, b) if a <= b else (b, a)
        total = small + large
        if small > 1.0:  # algorithm BB
            spread = math.sqrt((total - 2.0) / (2.0 * small * large - total))
            shift = small + 1.0 / spread
            while True:
                u1, u2 = self.uniform(), self.uniform()
                v = spread * math.log(u1 / (1.0 - u1))
                w = small * math.exp(min(v, _LOG_MAX))
                z = u1 * u1 * u2
                r = shift * v - _LOG_4
                s = small + r - w
                if s + _BB_SQUEEZE >= 5.0 * z:
                    break
                t = math.log(z)
                if s > t or r + total * math.log(total / (large + w)) >= t:
                    break
            return w / (large + w) if a == small else large / (large + w)
        # algorithm BC: here `large` plays the part of Cheng's a, `small` of his b
        spread = 1.0 / small
        delta = 1.0 + large - small
        k1 = delta * (0.0138889 + 0.0416667 * small) / (large * spread - 0.777778)
        k2 = 0.25 + (0.5 + 0.25 / delta) * small
        while True:
            u1, u2 = self.uniform(), self.uniform()
            if u1 < 0.5:
                y = u1 * u2
                z = u1 * y
                if 0.25 * u2 + z - y >= k1:
                    continue
            else:
                z = u1 * u1 * u2
                if z <= 0.25:
                    v = spread * math.log(u1 / (1.0 - u1))
                    w = large * math.exp(min(v, _LOG_MAX))
                    break
                if z >= k2:
                    continue
            v = spread * math.log(u1 / (1.0 - u1))
            w = large * math.exp(min(v, _LOG_MAX))
            if total * (math.log(total / (small + w)) + v) - _LOG_4 >= math.log(z):
                break
        return w / (small + w) if a == large else small / (small + w)
