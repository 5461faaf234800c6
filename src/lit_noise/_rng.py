"""Counter-based seeding: a generator's state is a pure function of (seed, stream, counters).

Every noise source reseeds one cached ``torch.Generator`` per device at each use from a hash of
its seed, its stream and the batch's coordinates, so the noise of a batch does not depend on what
ran before it: the same seed gives the same run, a resumed run continues the same stream, and the
number of data-loader workers plays no part.
"""

from __future__ import annotations

import zlib

import torch

_MASK64 = (1 << 64) - 1
_MAX_SEED = (1 << 63) - 1
_GOLDEN = 0x9E3779B97F4A7C15  # SplitMix64's increment


def _splitmix64(state: int) -> int:
    state = (state + _GOLDEN) & _MASK64
    state = ((state ^ (state >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    state = ((state ^ (state >> 27)) * 0x94D049BB133111EB) & _MASK64
    return state ^ (state >> 31)


def mix_seed(*counters: int) -> int:
    """Hash integers into one 63-bit seed; distinct inputs give (practically) distinct seeds.

    Example:
        >>> mix_seed(0, 1, 2) == mix_seed(0, 1, 2) != mix_seed(0, 2, 1)
        True
    """
    return mix_state(0, *counters) & _MAX_SEED


def mix_state(state: int, *counters: int) -> int:
    """The 64-bit hash state after ``counters``, continued from ``state`` (0 starts :func:`mix_seed`).

    ``mix_seed(*a, *b) == mix_state(mix_state(0, *a), *b) & (2**63 - 1)``: a prefix of counters
    shared by many seeds is hashed once.

    Example:
        >>> mix_state(mix_state(0, 7, 1), 2, 3) & (2**63 - 1) == mix_seed(7, 1, 2, 3)
        True
    """
    for counter in counters:
        state = _splitmix64(state ^ (counter & _MASK64))
    return state


def mix_counter(counter: int) -> int:
    """``mix_seed(counter)`` for a single counter, without the loop (every batch of every source).

    Example:
        >>> mix_counter(12345) == mix_seed(12345)
        True
    """
    return _splitmix64(counter & _MASK64) & _MAX_SEED


def stream_id(name: str) -> int:
    """A stable integer for a stream name (``hash`` is salted per process, CRC32 is not)."""
    return zlib.crc32(name.encode("utf-8"))


def default_seed() -> int:
    """The seed a noise source uses when given none: drawn once from torch's global RNG.

    After ``lightning.seed_everything(s)`` (or ``torch.manual_seed(s)``) it is reproducible.
    """
    return int(torch.randint(0, 2**62, (1,)).item())


class GeneratorCache:
    """One ``torch.Generator`` per device, reseeded on every :meth:`get`.

    Example:
        >>> cache = GeneratorCache()
        >>> a = torch.rand(3, generator=cache.get(torch.device("cpu"), 1, 2))
        >>> b = torch.rand(3, generator=cache.get(torch.device("cpu"), 1, 2))
        >>> bool((a == b).all())
        True
    """

    def __init__(self) -> None:
        self._generators: dict[torch.device, torch.Generator] = {}

    def get(self, device: torch.device, *counters: int) -> torch.Generator:
        """The generator for ``device``, seeded from ``counters``."""
        return self.seeded(device, mix_seed(*counters))

    def seeded(self, device: torch.device, seed: int) -> torch.Generator:
        """The generator for ``device``, seeded with ``seed`` itself (already mixed)."""
        generator = self._generators.get(device)
        if generator is None:
            generator = self._generators[device] = torch.Generator(device=device)
        generator.manual_seed(seed)
        return generator
