"""Pure tensor functions for noise on token embeddings (no Lightning, explicit generators).

NEFTune (Jain et al., 2023, "NEFTune: Noisy Embeddings Improve Instruction Finetuning") adds
``eps * alpha / sqrt(L * d)`` with ``eps ~ U(-1, 1)`` to embeddings of shape ``(B, L, d)``.
:func:`neftune_padded` takes ``L`` to be the padded length and noises every position (the form of
Hugging Face TRL's ``neftune_post_forward_hook``); :func:`neftune` takes ``L`` to be each sample's
own number of real tokens and leaves the padded positions exactly as they were (the paper's form).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from lit_noise.functional.noise import _HALF_PRECISION

__all__ = ["neftune", "neftune_padded"]


def neftune_padded(x: Tensor, alpha: float, generator: torch.Generator | None = None) -> Tensor:
    """``x + U(-m, m)`` with ``m = alpha / sqrt(L * d)``, ``L`` the padded length ``x.shape[1]``.

    One draw of ``x``'s shape and dtype on its device (``Tensor.uniform_``, as TRL draws it). A
    float16 / bfloat16 ``x`` gets float32 uniforms and a float32 sum, rounded to its dtype once
    (torch's bfloat16 uniforms on ``[-m, m)`` have mean about ``-m / 512``). An empty ``x``
    (``L == 0`` or ``d == 0``) comes back as an unchanged copy, as from :func:`neftune`.

    Example:
        >>> y = neftune_padded(torch.zeros(2, 4, 25), alpha=5.0, generator=torch.Generator().manual_seed(0))
        >>> bool(y.abs().max() <= 5.0 / (4 * 25) ** 0.5)
        True
    """
    size = x.shape[1] * x.shape[-1]
    if size == 0:  # no token or no feature: nothing to noise (and no division by zero)
        return x.clone()
    magnitude = alpha / math.sqrt(size)
    if x.dtype in _HALF_PRECISION:
        noise = torch.empty_like(x, dtype=torch.float32).uniform_(-magnitude, magnitude, generator=generator)
        return noise.add_(x).to(x.dtype)
    return x + torch.empty_like(x).uniform_(-magnitude, magnitude, generator=generator)


def neftune(
    x: Tensor, alpha: float, keep: Tensor | None = None, generator: torch.Generator | None = None
) -> Tensor:
    """NEFTune per sample: ``x[i] + eps * alpha / sqrt(L_i * d)`` on the positions ``keep`` marks.

    ``L_i`` is the number of positions ``keep[i]`` (bool, shape ``(B, L)``) marks true; the others
    (padding) come back bit for bit. ``keep=None``: every position is real and ``L_i = L`` (then
    this is :func:`neftune_padded`). ``eps ~ U(-1, 1)`` is drawn for every position, one draw of
    ``x``'s shape, so the noise of a position does not depend on the other samples' lengths
    (in float32 for a float16 / bfloat16 ``x``, rounded once, as in :func:`neftune_padded`).

    Example:
        >>> keep = torch.tensor([[True, True, False, False], [True, True, True, True]])
        >>> g = torch.Generator().manual_seed(0)
        >>> y = neftune(torch.zeros(2, 4, 8), alpha=4.0, keep=keep, generator=g)
        >>> bool((y[0, 2:] == 0).all()), bool(y[0].abs().max() <= 4.0 / (2 * 8) ** 0.5)
        (True, True)
    """
    if keep is None:
        return neftune_padded(x, alpha, generator)
    # Lengths counted in at least float32: bf16 / fp16 cannot hold every integer above 256 / 2048.
    lengths = keep.sum(dim=1, dtype=torch.promote_types(x.dtype, torch.float32))
    magnitude = torch.rsqrt(lengths.clamp_(min=1.0).mul_(x.shape[-1])).mul_(alpha)  # few small ops
    if x.dtype in _HALF_PRECISION:
        eps = torch.empty_like(x, dtype=torch.float32).uniform_(-1.0, 1.0, generator=generator)
        noisy = torch.addcmul(x.float(), eps, magnitude.view(-1, 1, 1)).to(x.dtype)
    else:
        eps = torch.empty_like(x).uniform_(-1.0, 1.0, generator=generator)
        noisy = torch.addcmul(x, eps, magnitude.to(x.dtype).view(-1, 1, 1))
    return torch.where(keep.unsqueeze(-1), noisy, x)
