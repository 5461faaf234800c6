"""Noise for token ids: mask, substitute or drop real tokens; padding is never touched."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import Tensor
from typing_extensions import override

from lit_noise._validation import check_int, fail
from lit_noise.errors import ConfigurationError
from lit_noise.functional.tokens import substitute_candidates, token_mask, token_substitute
from lit_noise.noise.base import Noise, keep_mask
from lit_noise.schedules import ScheduleLike

__all__ = ["TokenDrop", "TokenMask", "TokenNoise", "TokenSubstitute"]


class TokenNoise(Noise):
    """Base of the token noises: each real token of integer ids changes with probability ``p``.

    Real tokens are those not equal to ``pad_id`` (when given) and, through
    :meth:`~lit_noise.noise.Noise.apply_where` (``InputNoise(..., mask_key=...)``), marked true in
    the attention mask; every other position comes back exactly as it was. ``p`` (a number or a
    schedule in [0, 1]) is the strength: the controller's ``scale`` multiplies it and the product
    is clipped to [0, 1]. Floating, boolean and complex tensors are refused by :meth:`check`.

    Example:
        >>> import torch
        >>> class TokenZero(TokenNoise):  # each real token becomes id 0 with probability p
        ...     def _corrupt(self, x, p, keep, generator):
        ...         hit = torch.rand(x.shape, generator=generator) < p
        ...         return torch.where(hit if keep is None else hit & keep, torch.zeros_like(x), x)
        >>> noise, g = TokenZero(p=1.0, pad_id=9), torch.Generator().manual_seed(0)
        >>> noise(torch.tensor([[5, 6, 9]]), generator=g)  # the padding id stays
        tensor([[0, 0, 9]])
        >>> noise(torch.tensor([[5, 6, 7]]), generator=g, keep=torch.tensor([[1, 1, 0]]))
        tensor([[0, 0, 7]])
        >>> noise.resolve(scale=0.5), isinstance(TokenMask(p=0.1, mask_id=1), TokenNoise)
        ({'p': 0.5}, True)
        >>> try:
        ...     noise(torch.zeros(3))
        ... except ConfigurationError as err:
        ...     print(err)
        TokenZero changes token ids, so the input must be an integer tensor of ids, got dtype
        torch.float32. For embeddings use ActivationNoise (NEFTune); for float features use Mask.
    """

    strength = ("p",)
    applies_to = "ids"
    #: The arguments holding ids this noise writes or compares, checked to fit each tensor's dtype.
    _ids: ClassVar[tuple[str, ...]] = ("pad_id",)

    def __init__(self, p: ScheduleLike, pad_id: int | None) -> None:
        super().__init__()
        owner = type(self).__name__
        self._param("p", p, low=0.0, high=1.0)
        if pad_id is not None:
            check_int(owner, "pad_id", pad_id, 0)
        self.pad_id = pad_id

    @override
    def check(self, x: Tensor, role: str = "input") -> None:
        owner = type(self).__name__
        if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
            raise ConfigurationError(
                f"{owner} changes token ids, so the {role} must be an integer tensor of ids, got dtype"
                f" {x.dtype}. For embeddings use ActivationNoise (NEFTune); for float features use Mask."
            )
        info = torch.iinfo(x.dtype)
        for name in self._ids:
            value = getattr(self, name)
            if value is not None and value > info.max:
                raise ConfigurationError(
                    f"{owner}: `{name}` {value} does not fit the {role}'s dtype {x.dtype} (max {info.max})."
                )

    def _real(self, x: Tensor, keep: Tensor | None) -> Tensor | None:
        """Where tokens may change: not ``pad_id`` and, if given, where ``keep`` is true (full shape)."""
        where = None
        if keep is not None:
            where = keep_mask(x, keep, type(self).__name__)
            where = where.view(where.shape + (1,) * (x.ndim - where.ndim)).expand_as(x)
        if self.pad_id is not None:
            real = x != self.pad_id
            where = real if where is None else where & real
        return where

    @override
    def apply(self, x: Tensor, params: dict[str, float], generator: torch.Generator | None) -> Tensor:
        return self._corrupt(x, params["p"], self._real(x, None), generator)

    @override
    def apply_where(
        self, x: Tensor, params: dict[str, float], generator: torch.Generator | None, keep: Tensor
    ) -> Tensor:
        return self._corrupt(x, params["p"], self._real(x, keep), generator)

    @abstractmethod
    def _corrupt(self, x: Tensor, p: float, keep: Tensor | None, generator: torch.Generator | None) -> Tensor:
        """The noisy copy of ids ``x``: each id where ``keep`` is true (all for None) changes with ``p``."""

    def updated_mask(self, clean: Tensor, noisy: Tensor, mask: Tensor) -> Tensor | None:
        """The attention mask after noising ``clean`` into ``noisy`` (``None``: unchanged)."""
        return None


class TokenMask(TokenNoise):
    """Each real token becomes ``mask_id`` with probability ``p`` (BERT-style masking, no 80/10/10 split).

    Args:
        p: probability that a real token is masked, a number or a schedule in [0, 1]; scaled by
            the controller.
        mask_id: the id masked tokens become (``[MASK]``, or an ``<unk>`` id); must differ from
            ``pad_id``.
        pad_id: the padding id, never masked; ``None``: padding is known only from an attention
            mask (``InputNoise(..., mask_key=...)``).

    Example:
        >>> import torch
        >>> ids = torch.randint(2, 50, (200, 50), generator=torch.Generator().manual_seed(1))
        >>> ids[:, 40:] = 0
        >>> y = TokenMask(p=0.25, mask_id=1, pad_id=0)(ids, generator=torch.Generator().manual_seed(0))
        >>> round((y[:, :40] == 1).float().mean().item(), 2), bool((y[:, 40:] == 0).all())
        (0.25, True)
    """

    _ids = ("pad_id", "mask_id")

    def __init__(self, p: ScheduleLike, mask_id: int, pad_id: int | None = None) -> None:
        super().__init__(p, pad_id)
        self.mask_id = check_int("TokenMask", "mask_id", mask_id, 0)
        if mask_id == pad_id:
            raise fail(
                "TokenMask",
                "mask_id",
                mask_id,
                f"an id other than `pad_id` ({pad_id}); TokenDrop pads tokens",
            )

    @override
    def _corrupt(self, x: Tensor, p: float, keep: Tensor | None, generator: torch.Generator | None) -> Tensor:
        return token_mask(x, p, self.mask_id, keep, generator)


class TokenSubstitute(TokenNoise):
    """Each real token becomes a uniformly random *other* token with probability ``p``.

    Substitutes are drawn from the ids ``0 .. vocab_size - 1`` except ``pad_id`` and
    ``special_ids`` (so a sequence never gains padding, ``[CLS]`` or ``[MASK]`` in the middle);
    those ids are never replaced either, and neither is an id outside the vocabulary. A replaced
    token is never itself: each of the other candidates is equally likely.

    Args:
        p: probability that a real token is replaced, a number or a schedule in [0, 1]; scaled by
            the controller.
        vocab_size: number of ids; the ids are ``0 .. vocab_size - 1``.
        pad_id: the padding id, never replaced nor drawn; ``None``: padding is known only from an
            attention mask (``InputNoise(..., mask_key=...)``).
        special_ids: further ids never replaced nor drawn (``[CLS]``, ``[SEP]``, ``[MASK]``...).

    Example:
        >>> import torch
        >>> ids = torch.randint(2, 48, (100, 24), generator=torch.Generator().manual_seed(1))
        >>> noise = TokenSubstitute(p=0.5, vocab_size=48, pad_id=0, special_ids=[1])
        >>> y = noise(ids, generator=torch.Generator().manual_seed(0))
        >>> round((y != ids).float().mean().item(), 1), int(y.min()) >= 2
        (0.5, True)
    """

    def __init__(
        self, p: ScheduleLike, vocab_size: int, pad_id: int | None = None, special_ids: Sequence[int] = ()
    ) -> None:
        super().__init__(p, pad_id)
        owner = "TokenSubstitute"
        self.vocab_size = check_int(owner, "vocab_size", vocab_size, 2)
        if pad_id is not None and pad_id >= vocab_size:
            raise fail(owner, "pad_id", pad_id, f"None or an id below `vocab_size` ({vocab_size})")
        if isinstance(special_ids, (str, bytes)) or not isinstance(special_ids, Sequence):
            raise fail(owner, "special_ids", special_ids, "a sequence of ids")
        for special in special_ids:
            if isinstance(special, bool) or not isinstance(special, int) or not 0 <= special < vocab_size:
                raise fail(owner, "special_ids", list(special_ids), f"ids in [0, {vocab_size})")
        self.special_ids = tuple(int(i) for i in special_ids)
        excluded = {*self.special_ids, *(() if pad_id is None else (pad_id,))}
        if vocab_size - len(excluded) < 2:
            raise fail(
                owner,
                "vocab_size",
                vocab_size,
                f"at least 2 more than the excluded ids (pad_id and special_ids: {sorted(excluded)})",
            )
        self._candidates = {torch.device("cpu"): substitute_candidates(vocab_size, excluded)}

    @override
    def check(self, x: Tensor, role: str = "input") -> None:
        super().check(x, role)
        if self.vocab_size - 1 > torch.iinfo(x.dtype).max:
            raise ConfigurationError(
                f"TokenSubstitute: `vocab_size` {self.vocab_size} has ids that do not fit the {role}'s"
                f" dtype {x.dtype}."
            )

    @override
    def _corrupt(self, x: Tensor, p: float, keep: Tensor | None, generator: torch.Generator | None) -> Tensor:
        candidates = self._candidates.get(x.device)
        if candidates is None:
            candidates = self._candidates[x.device] = self._candidates[torch.device("cpu")].to(x.device)
        return token_substitute(x, p, candidates, keep, generator)


class TokenDrop(TokenNoise):
    """Each real token is dropped with probability ``p``: its id becomes ``pad_id``, in place.

    Dropping keeps positions (no shift to the left), so per-token targets stay aligned with the
    ids; the model sees the dropped token as padding. Through ``InputNoise(..., mask_key=...)``
    the attention mask is updated too (dropped positions become 0), so the ids and the mask
    always agree; without ``mask_key`` the model must find padding from ``pad_id`` (a dict batch
    with an ``"attention_mask"`` then gets a warning). A sequence may lose all of its tokens.

    Args:
        p: probability that a real token is dropped, a number or a schedule in [0, 1]; scaled by
            the controller.
        pad_id: the padding id (what dropped tokens become); padded positions are never touched.

    Example:
        >>> import torch
        >>> ids = torch.tensor([[5, 6, 7, 8, 0, 0]])
        >>> TokenDrop(p=0.5, pad_id=0)(ids, generator=torch.Generator().manual_seed(0))
        tensor([[0, 6, 0, 0, 0, 0]])
    """

    def __init__(self, p: ScheduleLike, pad_id: int) -> None:
        if pad_id is None:
            raise fail("TokenDrop", "pad_id", pad_id, "an integer >= 0 (what dropped tokens become)")
        super().__init__(p, pad_id)

    @override
    def _corrupt(self, x: Tensor, p: float, keep: Tensor | None, generator: torch.Generator | None) -> Tensor:
        assert self.pad_id is not None
        return token_mask(x, p, self.pad_id, keep, generator)

    @override
    def updated_mask(self, clean: Tensor, noisy: Tensor, mask: Tensor) -> Tensor | None:
        return mask.masked_fill(noisy != clean, 0)
