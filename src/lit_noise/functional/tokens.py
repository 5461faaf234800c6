"""Pure tensor functions that corrupt token ids (no Lightning, no state).

Each takes integer ids of any shape, an optional ``keep`` mask of the same shape (true where a
token may change; padding false) and an explicit ``torch.Generator`` on the ids' device, and
returns a new tensor of the ids' dtype. The draws are made for every position (so the random
stream depends only on the shape) and applied only where ``keep`` is true.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor

from lit_noise.functional.noise import _rand, _randint, mask

__all__ = ["substitute_candidates", "token_drop", "token_mask", "token_substitute"]


def token_mask(
    ids: Tensor,
    p: float,
    mask_id: int,
    keep: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Replace each id where ``keep`` is true by ``mask_id`` with probability ``p``.

    Example:
        >>> ids = torch.tensor([[5, 6, 7, 0]])
        >>> token_mask(ids, 1.0, mask_id=1, keep=ids != 0)
        tensor([[1, 1, 1, 0]])
    """
    masked = mask(ids, p, mask_id, generator)
    return masked if keep is None else torch.where(keep, masked, ids)


def token_drop(
    ids: Tensor,
    p: float,
    pad_id: int,
    attention_mask: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor | None]:
    """Drop each real token with probability ``p``: its id becomes ``pad_id``, its mask entry 0.

    Real tokens are those not equal to ``pad_id`` (and, when ``attention_mask`` is given, marked
    1 or true there). Positions stay where they are, so per-token targets stay aligned. Returns the
    new ids and the new attention mask (of the mask's dtype; ``None`` without one).

    Example:
        >>> ids, mask = torch.tensor([[5, 6, 7, 0]]), torch.tensor([[1, 1, 1, 0]])
        >>> token_drop(ids, 1.0, pad_id=0, attention_mask=mask)
        (tensor([[0, 0, 0, 0]]), tensor([[0, 0, 0, 0]]))
    """
    keep = ids != pad_id
    if attention_mask is not None:
        keep &= attention_mask.bool()
    dropped = token_mask(ids, p, pad_id, keep, generator)
    if attention_mask is None:
        return dropped, None
    return dropped, attention_mask.masked_fill(dropped != ids, 0)


def substitute_candidates(
    vocab_size: int, exclude: Iterable[int] = (), device: torch.device | str | None = None
) -> Tensor:
    """The sorted int64 ids ``0 .. vocab_size - 1`` without those in ``exclude``: what substitutes draw from.

    Example:
        >>> substitute_candidates(6, exclude=(0, 3))
        tensor([1, 2, 4, 5])
    """
    allowed = torch.ones(vocab_size, dtype=torch.bool)
    excluded = [i for i in exclude if 0 <= i < vocab_size]
    allowed[excluded] = False
    return allowed.nonzero().squeeze(1).to(device)


def token_substitute(
    ids: Tensor,
    p: float,
    candidates: Tensor,
    keep: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Replace each id where ``keep`` is true, with probability ``p``, by a random *other* candidate.

    ``candidates`` (sorted int64 ids on the ids' device, at least two; see
    :func:`substitute_candidates`) are what a substitute is drawn from; an id that is not a
    candidate (padding, a special id, an id out of range) is never replaced. A replaced id never
    stays itself: for the candidate at index ``i`` of ``n``, one uniform draw ``r`` from
    ``0 .. n - 2`` picks the candidate at ``r`` if ``r < i`` else ``r + 1``.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> ids = torch.tensor([[2, 3, 4, 0]])
        >>> out = token_substitute(ids, 1.0, substitute_candidates(6, exclude=(0,)), generator=g)
        >>> bool((out[0, :3] != ids[0, :3]).all()), out[0, 3].item()
        (True, 0)
    """
    count = candidates.numel()
    wide = ids.long()
    index = torch.searchsorted(candidates, wide)
    inside = index.clamp(max=count - 1)
    is_candidate = candidates[inside] == wide
    hit = _rand(ids, generator, torch.float32) < p
    draw = _randint(wide, 0, count - 1, generator)
    other = candidates[draw + (draw >= inside).long()]
    change = hit & is_candidate if keep is None else hit & is_candidate & keep
    return torch.where(change, other.to(ids.dtype), ids)
