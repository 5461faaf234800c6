"""Shared machinery of InputNoise and TargetNoise: noise one tensor of the training batch."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor
from torch.utils.data import DataLoader
from typing_extensions import override

from lit_noise import functional as LF
from lit_noise._validation import check_number, fail
from lit_noise.batch import BatchKey, normalize_key, read, read_mask, write
from lit_noise.callbacks.base import NoiseCallback
from lit_noise.errors import ConfigurationError
from lit_noise.noise.base import Noise
from lit_noise.noise.token import TokenDrop, TokenNoise
from lit_noise.schedules import Clock, Schedule, ScheduleLike, as_schedule
from lit_noise.soft_labels import SoftLabels, _class_rows, hard

__all__ = ["BatchNoise"]


def _gate(noisy: Tensor, clean: Tensor, p: float, generator: torch.Generator | None) -> Tensor:
    """Keep ``noisy`` for a random fraction ``p`` of the samples, ``clean`` for the others.

    When the noise turned class indices into a distribution (``SoftLabels`` or ``(B, C, ...)``
    probabilities), the clean samples get their one-hot (or incoming) distribution; labels outside
    ``[0, C)`` (ignored positions such as -100 padding) get zero rows, as the noise gives them.
    """
    distribution = noisy.soft if isinstance(noisy, SoftLabels) else noisy
    if not isinstance(noisy, SoftLabels) and noisy.shape == clean.shape:
        return LF.gate_samples(noisy, clean, p, generator)
    if isinstance(clean, SoftLabels):
        clean_soft = clean.soft.to(distribution.dtype)
    else:
        rows = _class_rows(clean, distribution.shape[1], distribution.dtype)
        clean_soft = rows if rows.ndim <= 2 else rows.movedim(-1, 1)
    keep = torch.rand(noisy.shape[0], generator=generator, device=noisy.device) < p
    mixed = torch.where(keep.view((-1,) + (1,) * (distribution.ndim - 1)), distribution, clean_soft)
    if not isinstance(noisy, SoftLabels):
        return mixed
    labels = torch.where(keep.view((-1,) + (1,) * (noisy.ndim - 1)), noisy.hard, hard(clean))
    return SoftLabels(mixed, labels)


def _hands_out_samples(loaders: Any) -> bool:
    """Whether a training loader yields its dataset's samples as they are (``batch_size=None``)."""
    if isinstance(loaders, DataLoader):
        return loaders.batch_sampler is None
    if isinstance(loaders, Mapping):
        return any(_hands_out_samples(v) for v in loaders.values())
    if isinstance(loaders, Sequence) and not isinstance(loaders, (str, bytes)):
        return any(_hands_out_samples(v) for v in loaders)
    return False


class BatchNoise(NoiseCallback):
    """Apply a :class:`~lit_noise.noise.Noise` to the tensor at ``key`` of every training batch.

    Runs in ``on_train_batch_start`` (only while fitting, so never in sanity checking, validation,
    test or predict), writes the noisy copy back into the list or dict batch out of place, and
    logs the resolved strengths under ``noise/<name>/<param>``. A bare tensor batch (``key=None``)
    is overwritten in place, which is refused when the tensor may be the dataset's own storage: a
    view, or a loader with ``batch_size=None``. With ``mask_key``, the batch's attention mask
    there (1 or true on real tokens, the leading shape of the noised tensor) limits the noise to
    the real positions (:meth:`~lit_noise.noise.Noise.apply_where`); a noise that drops tokens
    (:class:`~lit_noise.TokenDrop`) writes the updated mask back.

    Lightning calls every callable hook of every callback on every step (each call in a profiler
    context); the per-batch hooks this callback does not use are ``None`` on the class, so that only
    ``on_train_batch_start`` costs a call. A subclass that needs one defines it (there is no
    ``super()`` hook to call).

    Example:
        >>> from lit_noise import Gaussian
        >>> BatchNoise(Gaussian(std=0.1), key="inputs.image", name="image").key
        'inputs.image'
    """

    role = "input"

    # Hooks Lightning then skips (it calls only callable ones): saves their dispatch on every batch.
    on_before_backward = on_after_backward = on_before_optimizer_step = None  # type: ignore[assignment]
    on_before_zero_grad = on_train_batch_end = None  # type: ignore[assignment]
    on_validation_batch_start = on_validation_batch_end = None  # type: ignore[assignment]
    on_test_batch_start = on_test_batch_end = None  # type: ignore[assignment]
    on_predict_batch_start = on_predict_batch_end = None  # type: ignore[assignment]

    def __init__(
        self,
        noise: Noise,
        key: BatchKey = 0,
        p: ScheduleLike = 1.0,
        clamp: Sequence[float] | None = None,
        seed: int | None = None,
        name: str | None = None,
        scale: float = 1.0,
        mask_key: BatchKey = None,
    ) -> None:
        owner = type(self).__name__
        if not isinstance(noise, Noise):
            raise fail(owner, "noise", noise, "a lit_noise.noise.Noise (Gaussian, LabelSmoothing, ...)")
        super().__init__(name, seed, scale, default_name=self.role)
        self.noise = noise
        self.key = key
        self._owner = owner
        self._path = normalize_key(key, owner)
        self.mask_key = mask_key
        self._mask_path = normalize_key(mask_key, owner, "mask_key")
        if mask_key is not None and key is None:
            raise fail(
                owner, "mask_key", mask_key, "None when `key` is None (a bare tensor batch has no mask)"
            )
        self._warn_unmasked_drop = isinstance(noise, TokenDrop) and mask_key is None
        if not isinstance(p, (Schedule, int, float)) or isinstance(p, bool):
            raise fail(owner, "p", p, "a probability in [0, 1] or a schedule")
        self.p = as_schedule(p, owner, "p")
        low, high = self.p.min_max()
        if low < 0.0 or high > 1.0:
            raise fail(owner, "p", p, "a probability in [0, 1]")
        self.clamp = self._check_clamp(owner, clamp)
        # The per-sample probability is logged as `noise/<name>/p`, or `sample_p` when the noise has a
        # `p` of its own (SymmetricFlip, PairFlip, Mask), so neither hides the other.
        self._gate_key = "sample_p" if "p" in noise.schedules() else "p"
        self._draws = noise.draws
        self._check_noise(noise)

    def _check_noise(self, noise: Noise) -> None:
        """Refuse a noise this callback's role cannot take (InputNoise: label noise)."""

    @staticmethod
    def _check_clamp(owner: str, clamp: Sequence[float] | None) -> tuple[float, float] | None:
        if clamp is None:
            return None
        if isinstance(clamp, (str, bytes)) or not isinstance(clamp, Sequence) or len(clamp) != 2:
            raise fail(owner, "clamp", clamp, "None or a (low, high) pair")
        low = check_number(owner, "clamp", clamp[0])
        high = check_number(owner, "clamp", clamp[1])
        if high < low:
            raise fail(owner, "clamp", list(clamp), "a (low, high) pair with low <= high")
        return low, high

    @override
    def _schedules(self) -> Iterable[Schedule]:
        return [self.p, *self.noise.schedules().values()]

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        if self._path is None and _hands_out_samples(trainer.train_dataloader):
            raise ConfigurationError(
                f"{self._owner}: `key=None` noises a bare tensor batch in place, but the training loader"
                " has `batch_size=None`, so each batch may be the dataset's own tensor and noising it"
                " would change the dataset. Let the loader batch (batch_size=...), or return a list or"
                " dict batch and set `key`."
            )

    def _resolve(self, clock: Clock) -> tuple[dict[str, float], float, dict[str, float]]:
        """The noise parameters, ``p`` and the values to log at ``clock``."""
        params = self.noise.resolve(clock, self.scale)
        p = self.p(clock)
        logged = params if self.p.is_constant and p == 1.0 else {**params, self._gate_key: p}
        return params, p, logged

    @override
    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        owner = self._owner
        clean = read(batch, self._path, owner)
        noise = self.noise
        noise.check(clean, self.role)
        (params, p, logged), fresh = self._strengths(trainer, self._resolve)
        # A noise that draws nothing (LabelSmoothing) needs a generator only for the per-sample gate.
        generator = self._generator(clean.device, trainer, batch_idx) if self._draws or p < 1.0 else None
        if self._mask_path is None:
            if self._warn_unmasked_drop:
                self._check_unmasked_drop(batch)
            mask = None
            noisy = noise.apply(clean, params, generator)
        else:
            mask = self._read_mask(batch, clean)
            noisy = noise.apply_where(clean, params, generator, mask)
        if self.clamp is not None:
            if not noisy.is_floating_point():
                raise ConfigurationError(
                    f"{owner}: `clamp` {list(self.clamp)} clips floating inputs, but the {self.role} at"
                    f" `key` {self.key!r} has dtype {clean.dtype}; remove `clamp` (integer inputs such as"
                    " token ids keep their values)."
                )
            noisy = noisy.clamp(*self.clamp)
        if p < 1.0:
            noisy = _gate(noisy, clean, p, generator)
        if self._path is None and (noisy.dtype != clean.dtype or isinstance(noisy, SoftLabels)):
            raise ConfigurationError(
                f"{owner}: {type(noise).__name__} changes the target's type, which a bare"
                " tensor batch cannot hold; return a list or dict batch."
            )
        write(batch, self._path, noisy, owner)
        if mask is not None and isinstance(noise, TokenNoise):
            updated = noise.updated_mask(clean, noisy, mask)
            if updated is not None:
                write(batch, self._mask_path, updated, owner)
        if fresh or self._should_log(trainer):  # unchanged values need no `last_values` update
            self._log(trainer, pl_module, logged)

    def _read_mask(self, batch: Any, clean: Tensor) -> Tensor:
        """The mask at ``mask_key``, checked to be 0/1 or boolean with the leading shape of ``clean``."""
        mask = read_mask(batch, self._mask_path, self._owner, self.mask_key)
        if mask.ndim > clean.ndim or tuple(mask.shape) != tuple(clean.shape[: mask.ndim]):
            raise ConfigurationError(
                f"{self._owner}: the mask at `mask_key` {self.mask_key!r} must have the leading shape of"
                f" the {self.role} at `key` {self.key!r}, got {tuple(mask.shape)} for {tuple(clean.shape)}."
            )
        return mask

    def _check_unmasked_drop(self, batch: Any) -> None:
        """Warn once when TokenDrop pads tokens of a dict batch whose attention mask it cannot update."""
        self._warn_unmasked_drop = False
        if isinstance(batch, Mapping) and "attention_mask" in batch:
            rank_zero_warn(
                f"{self._owner}: TokenDrop turns dropped tokens into padding, but `mask_key` is not set,"
                " so the batch's 'attention_mask' still marks them as real tokens. Set"
                " `mask_key='attention_mask'` to update it.",
                category=UserWarning,
            )
