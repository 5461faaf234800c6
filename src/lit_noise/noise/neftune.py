"""NEFTune: uniform noise on token embeddings, scaled by alpha / sqrt(L * d) (Jain et al., 2023)."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor
from typing_extensions import override

from lit_noise._validation import check_choice
from lit_noise.errors import ConfigurationError
from lit_noise.functional.embedding import neftune, neftune_padded
from lit_noise.noise.base import Noise, keep_mask
from lit_noise.schedules import ScheduleLike

__all__ = ["NEFTune", "NEFTuneForm"]

#: ``"per_sample"``: the paper's form; ``"padded"``: Hugging Face TRL's form.
NEFTuneForm = Literal["per_sample", "padded"]


class NEFTune(Noise):
    """NEFTune noise on embeddings ``(B, L, d)``: ``x + eps * alpha / sqrt(L * d)``, ``eps ~ U(-1, 1)``.

    From "NEFTune: Noisy Embeddings Improve Instruction Finetuning" (Jain et al., 2023), for the
    outputs of an ``nn.Embedding``; put it there with :class:`~lit_noise.ActivationNoise`.

    Args:
        alpha: the strength (>= 0; the paper uses 5, 10 or 15), a number or a schedule; scaled
            by the controller.
        form: ``"per_sample"`` (the paper): ``L`` is each sample's own number of real tokens and
            padded positions are left exactly as they are, given which positions are real
            (``keep``: :class:`~lit_noise.ActivationNoise` derives it from an attention mask or
            the embedding's ``padding_idx``); without that information every position is real
            and ``L`` is the padded length. ``"padded"`` (Hugging Face TRL's
            ``neftune_post_forward_hook``): ``L`` is the padded length and every position,
            padding included, is noised; it takes no ``keep``.

    Example:
        >>> import torch
        >>> x = torch.zeros(2, 4, 25)
        >>> keep = torch.tensor([[1, 0, 0, 0], [1, 1, 1, 1]])
        >>> y = NEFTune(alpha=5.0)(x, generator=torch.Generator().manual_seed(0), keep=keep)
        >>> [round(v, 3) for v in y.abs().amax(dim=(1, 2)).tolist()]  # below 5 / sqrt(L_i * 25)
        [0.955, 0.482]
        >>> bool((y[0, 1:] == 0).all())
        True
    """

    strength = ("alpha",)

    def __init__(self, alpha: ScheduleLike, form: NEFTuneForm = "per_sample") -> None:
        super().__init__()
        self._param("alpha", alpha, low=0.0)
        self.form: NEFTuneForm = check_choice("NEFTune", "form", form, ("per_sample", "padded"))

    @override
    def check(self, x: Tensor, role: str = "input") -> None:
        super().check(x, role)
        if x.ndim != 3:
            raise ConfigurationError(
                f"NEFTune applies to embeddings of shape (batch, length, dim), but the {role} has shape"
                f" {tuple(x.shape)}; hook an nn.Embedding (or a module with such outputs)."
            )

    @override
    def apply(self, x: Tensor, params: dict[str, float], generator: torch.Generator | None) -> Tensor:
        return neftune_padded(x, params["alpha"], generator)

    @override
    def apply_where(
        self, x: Tensor, params: dict[str, float], generator: torch.Generator | None, keep: Tensor
    ) -> Tensor:
        if self.form == "padded":
            raise ConfigurationError(
                "NEFTune: form='padded' (TRL's form) noises every position with L the padded length, so it"
                " takes no mask of real tokens; use form='per_sample' to leave padding untouched."
            )
        if keep.ndim != 2:
            raise ConfigurationError(
                "NEFTune: the mask of real tokens must have shape (batch, length), got shape"
                f" {tuple(keep.shape)} for embeddings of shape {tuple(x.shape)}."
            )
        return neftune(x, params["alpha"], keep_mask(x, keep, "NEFTune"), generator)
