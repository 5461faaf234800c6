"""The counter-based seeds written out independently of lit_noise: SplitMix64 and the derivations.

SplitMix64 with the published constants of Steele, Lea and Flood (2014), typed in, so that a
faster hot path in lit_noise cannot change the noise of a seed unnoticed.
"""

from __future__ import annotations

import zlib

MASK = (1 << 64) - 1
MAX_SEED = (1 << 63) - 1


def splitmix64(state: int) -> int:
    """One SplitMix64 output step from ``state``."""
    state = (state + 0x9E3779B97F4A7C15) & MASK
    state = ((state ^ (state >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    state = ((state ^ (state >> 27)) * 0x94D049BB133111EB) & MASK
    return state ^ (state >> 31)


def hashed(*counters: int) -> int:
    """The counters hashed one after the other (``state = splitmix64(state ^ counter)``), 63 bits."""
    state = 0
    for counter in counters:
        state = splitmix64(state ^ (counter & MASK))
    return state & MAX_SEED


def stream(name: str) -> int:
    """A source's stream counter: the CRC-32 of ``"<class>/<name>"``."""
    return zlib.crc32(name.encode())


def reference_seed(seed: int, stream_name: str, epoch: int, batch_idx: int, rank: int = 0) -> int:
    """A per-batch callback's seed: hash (seed, stream, rank), then one round on (epoch, batch)."""
    prefix = hashed(seed, stream(stream_name), rank)
    return splitmix64((prefix + (epoch << 32) + batch_idx) & MASK) & MAX_SEED
