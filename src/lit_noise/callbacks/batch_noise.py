"""Shared machinery of InputNoise and TargetNoise: noise one tensor of the training batch."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor
from typing_extensions import override

from lit_noise import functional as LF
from lit_noise._validation import check_number, check_range, fail
from lit_noise.batch import BatchKey, normalize_key, read, write
from lit_noise.callbacks.base import NoiseCallback
from lit_noise.errors import ConfigurationError
from lit_noise.noise.base import Noise
from lit_noise.schedules import Schedule, ScheduleLike, as_schedule
from lit_noise.soft_labels import SoftLabels, soft

__all__ = ["BatchNoise"]


def _gate(noisy: Tensor, clean: Tensor, p: float, generator: torch.Generator) -> Tensor:
    """Keep the noisy target for a fraction ``p`` of the samples (SoftLabels-aware)."""
    if not isinstance(noisy, SoftLabels):
        return LF.gate_samples(noisy, clean, p, generator)
    clean_soft = soft(clean, noisy.soft.shape[1]).to(noisy.soft.dtype)
    keep = torch.rand(noisy.shape[0], generator=generator, device=noisy.device) < p
    hard = torch.where(keep, noisy.hard, clean.hard if isinstance(clean, SoftLabels) else clean.argmax(1) if clean.is_floating_point() else clean)
    return SoftLabels(torch.where(keep.unsqueeze(1), noisy.soft, clean_soft), hard)


class BatchNoise(NoiseCallback):
    """Apply a :class:`~lit_noise.noise.Noise` to the tensor at ``key`` of every training batch.

    Runs in ``on_train_batch_start`` (only while fitting, so never in sanity checking, validation,
    test or predict), writes the noisy copy back into the list or dict batch out of place, and
    logs the resolved strengths under ``noise/<name>/<param>``.
    """

    role = "input"

    def __init__(
        self,
        noise: Noise,
        key: BatchKey,
        p: ScheduleLike = 1.0,
        clamp: Sequence[float] | None = None,
        seed: int | None = None,
        name: str | None = None,
        scale: float = 1.0,
    ) -> None:
        owner = type(self).__name__
        if not isinstance(noise, Noise):
            raise fail(owner, "noise", noise, "a lit_noise.noise.Noise (Gaussian, LabelSmoothing, ...)")
        super().__init__(name or self.role, seed, scale)
        self.noise = noise
        self.key = key
        self._path = normalize_key(key, owner)
        if not isinstance(p, (Schedule, int, float)) or isinstance(p, bool):
            raise fail(owner, "p", p, "a probability in [0, 1] or a schedule")
        self.p = as_schedule(p, owner, "p")
        low, high = self.p.min_max()
        if low < 0.0 or high > 1.0:
            raise fail(owner, "p", p, "a probability in [0, 1]")
        self.clamp = self._check_clamp(clamp)

    @staticmethod
    def _check_clamp(clamp: Sequence[float] | None) -> tuple[float, float] | None:
        if clamp is None:
            return None
        if isinstance(clamp, (str, bytes)) or not isinstance(clamp, Sequence) or len(clamp) != 2:
            raise fail("BatchNoise", "clamp", clamp, "None or a (low, high) pair")
        low = check_number("InputNoise", "clamp", clamp[0])
        high = check_range("InputNoise", "clamp", clamp[1], low)
        return low, high

    @override
    def _schedules(self) -> Iterable[Schedule]:
        return [self.p, *self.noise.schedules().values()]

    @override
    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        owner = type(self).__name__
        clean = read(batch, self._path, owner)
        self.noise.check(clean, self.role)
        clock = self._clock(trainer)
        params = self.noise.resolve(clock, self.scale)
        generator = self._generator(clean.device, trainer, batch_idx)
        noisy = self.noise.apply(clean, params, generator)
        p = self.p(clock)
        if p < 1.0:
            noisy = _gate(noisy, clean, p, generator)
            params["p"] = p
        if self.clamp is not None and noisy.is_floating_point():
            noisy = noisy.clamp(*self.clamp)
        if self._path is None and (noisy.dtype != clean.dtype or isinstance(noisy, SoftLabels)):
            raise ConfigurationError(
                f"{owner}: {type(self.noise).__name__} changes the target's type, which a bare"
                " tensor batch cannot hold; return a list or dict batch."
            )
        write(batch, self._path, noisy, owner)
        self._log(trainer, pl_module, params)
