# ruff: noqa: NPY002  (timm draws from NumPy's global RNG; keeping that is the point)
"""Benchmark-only reference: the algorithm of timm's ``Mixup`` (``timm/data/mixup.py``).

timm (https://github.com/huggingface/pytorch-image-models, Copyright 2019 Ross Wightman, Apache
License 2.0) cannot be installed here (it needs torchvision), so this module re-expresses the parts
of ``timm.data.mixup`` that lit_noise is compared against: ``one_hot``, ``mixup_target``,
``rand_bbox``, ``rand_bbox_minmax``, ``cutmix_bbox_and_lam`` and the ``Mixup`` class
(``_params_per_elem``, ``_params_per_batch``, ``_mix_elem``, ``_mix_pair``, ``_mix_batch``,
``__call__``). It keeps timm's behaviour step for step -- NumPy's global RNG drawn in the same
order, the partner of sample ``i`` is ``B - 1 - i`` (``flip``), mixing in place on the host-side
loop per sample, even batches only -- so that ``benchmarks/bench_mixup.py`` can time it and
``tests/test_mix_functional.py`` can use it as an independent oracle. It is not part of lit_noise
and is not imported by it. When timm itself is importable the benchmark uses timm instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["Mixup", "cutmix_bbox_and_lam", "mixup_target", "one_hot", "rand_bbox", "rand_bbox_minmax"]


def one_hot(
    x: Tensor, num_classes: int, on_value: float = 1.0, off_value: float = 0.0, device: Any = "cpu"
) -> Tensor:
    """Rows of ``off_value`` with ``on_value`` at each label."""
    labels = x.long().view(-1, 1)
    rows = torch.full((labels.shape[0], num_classes), off_value, device=device)
    return rows.scatter_(1, labels, on_value)


def mixup_target(
    target: Tensor, num_classes: int, lam: float | Tensor = 1.0, smoothing: float = 0.0, device: Any = "cpu"
) -> Tensor:
    """Smoothed one-hot targets mixed with their flipped batch: ``lam * y + (1 - lam) * y.flip(0)``."""
    off_value = smoothing / num_classes
    on_value = 1.0 - smoothing + off_value
    own = one_hot(target, num_classes, on_value, off_value, device)
    partner = one_hot(target.flip(0), num_classes, on_value, off_value, device)
    return own * lam + partner * (1.0 - lam)


def rand_bbox(
    img_shape: Sequence[int], lam: float, margin: float = 0.0, count: int | None = None
) -> tuple[Any, Any, Any, Any]:
    """CutMix box with side ratio ``sqrt(1 - lam)`` around a random centre, clipped to the image.

    As in timm, the box spans ``centre +- cut // 2``, so an odd cut loses one pixel.
    """
    ratio = np.sqrt(1 - lam)
    img_h, img_w = img_shape[-2:]
    cut_h, cut_w = int(img_h * ratio), int(img_w * ratio)
    margin_y, margin_x = int(margin * cut_h), int(margin * cut_w)
    cy = np.random.randint(0 + margin_y, img_h - margin_y, size=count)
    cx = np.random.randint(0 + margin_x, img_w - margin_x, size=count)
    top = np.clip(cy - cut_h // 2, 0, img_h)
    bottom = np.clip(cy + cut_h // 2, 0, img_h)
    left = np.clip(cx - cut_w // 2, 0, img_w)
    right = np.clip(cx + cut_w // 2, 0, img_w)
    return top, bottom, left, right


def rand_bbox_minmax(
    img_shape: Sequence[int], minmax: Sequence[float], count: int | None = None
) -> tuple[Any, Any, Any, Any]:
    """Box with sides drawn in ``[min, max)`` fractions of the image, placed inside it."""
    assert len(minmax) == 2
    img_h, img_w = img_shape[-2:]
    cut_h = np.random.randint(int(img_h * minmax[0]), int(img_h * minmax[1]), size=count)
    cut_w = np.random.randint(int(img_w * minmax[0]), int(img_w * minmax[1]), size=count)
    top = np.random.randint(0, img_h - cut_h, size=count)
    left = np.random.randint(0, img_w - cut_w, size=count)
    return top, top + cut_h, left, left + cut_w


def cutmix_bbox_and_lam(
    img_shape: Sequence[int],
    lam: float,
    ratio_minmax: Sequence[float] | None = None,
    correct_lam: bool = True,
    count: int | None = None,
) -> tuple[tuple[Any, Any, Any, Any], Any]:
    """A box and lam, corrected to ``1 - box area / image area`` when asked (always with minmax)."""
    if ratio_minmax is not None:
        top, bottom, left, right = rand_bbox_minmax(img_shape, ratio_minmax, count=count)
    else:
        top, bottom, left, right = rand_bbox(img_shape, lam, count=count)
    if correct_lam or ratio_minmax is not None:
        area = (bottom - top) * (right - left)
        lam = 1.0 - area / float(img_shape[-2] * img_shape[-1])
    return (top, bottom, left, right), lam


class Mixup:
    """timm's ``Mixup``: per-batch, per-pair or per-element mixup/CutMix with NumPy's RNG.

    Same arguments and behaviour as ``timm.data.Mixup``; ``__call__(x, target)`` mixes ``x`` in
    place and returns ``(x, soft_target)``.
    """

    def __init__(
        self,
        mixup_alpha: float = 1.0,
        cutmix_alpha: float = 0.0,
        cutmix_minmax: Sequence[float] | None = None,
        prob: float = 1.0,
        switch_prob: float = 0.5,
        mode: str = "batch",
        correct_lam: bool = True,
        label_smoothing: float = 0.0,
        num_classes: int = 0,
    ) -> None:
        assert num_classes > 0, "num_classes must be set for target generation"
        self.mixup_alpha = mixup_alpha
        self.cutmix_alpha = cutmix_alpha
        self.cutmix_minmax = cutmix_minmax
        if cutmix_minmax is not None:
            assert len(cutmix_minmax) == 2
            self.cutmix_alpha = 1.0  # timm forces CutMix on with min-max boxes
        self.mix_prob = prob
        self.switch_prob = switch_prob
        self.label_smoothing = label_smoothing
        self.num_classes = num_classes
        self.mode = mode
        self.correct_lam = correct_lam
        self.mixup_enabled = True

    def _params_per_elem(self, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        lam = np.ones(batch_size, dtype=np.float32)
        use_cutmix = np.zeros(batch_size, dtype=bool)
        if self.mixup_enabled:
            if self.mixup_alpha > 0.0 and self.cutmix_alpha > 0.0:
                use_cutmix = np.random.rand(batch_size) < self.switch_prob
                lam_mix = np.where(
                    use_cutmix,
                    np.random.beta(self.cutmix_alpha, self.cutmix_alpha, size=batch_size),
                    np.random.beta(self.mixup_alpha, self.mixup_alpha, size=batch_size),
                )
            elif self.mixup_alpha > 0.0:
                lam_mix = np.random.beta(self.mixup_alpha, self.mixup_alpha, size=batch_size)
            elif self.cutmix_alpha > 0.0:
                use_cutmix = np.ones(batch_size, dtype=bool)
                lam_mix = np.random.beta(self.cutmix_alpha, self.cutmix_alpha, size=batch_size)
            else:
                raise AssertionError("one of mixup_alpha > 0, cutmix_alpha > 0, cutmix_minmax should be set")
            lam = np.where(np.random.rand(batch_size) < self.mix_prob, lam_mix.astype(np.float32), lam)
        return lam, use_cutmix

    def _params_per_batch(self) -> tuple[float, bool]:
        lam = 1.0
        use_cutmix = False
        if self.mixup_enabled and np.random.rand() < self.mix_prob:
            if self.mixup_alpha > 0.0 and self.cutmix_alpha > 0.0:
                use_cutmix = bool(np.random.rand() < self.switch_prob)
                alpha = self.cutmix_alpha if use_cutmix else self.mixup_alpha
                lam_mix = np.random.beta(alpha, alpha)
            elif self.mixup_alpha > 0.0:
                lam_mix = np.random.beta(self.mixup_alpha, self.mixup_alpha)
            elif self.cutmix_alpha > 0.0:
                use_cutmix = True
                lam_mix = np.random.beta(self.cutmix_alpha, self.cutmix_alpha)
            else:
                raise AssertionError("one of mixup_alpha > 0, cutmix_alpha > 0, cutmix_minmax should be set")
            lam = float(lam_mix)
        return lam, use_cutmix

    def _mix_elem(self, x: Tensor) -> Tensor:
        batch_size = len(x)
        lam_batch, use_cutmix = self._params_per_elem(batch_size)
        source = x.clone()  # unmixed copy to read partners from
        for i in range(batch_size):
            j = batch_size - i - 1
            lam = lam_batch[i]
            if lam != 1.0:
                if use_cutmix[i]:
                    (top, bottom, left, right), lam = cutmix_bbox_and_lam(
                        x[i].shape, lam, ratio_minmax=self.cutmix_minmax, correct_lam=self.correct_lam
                    )
                    x[i][:, top:bottom, left:right] = source[j][:, top:bottom, left:right]
                    lam_batch[i] = lam
                else:
                    x[i] = x[i] * lam + source[j] * (1 - lam)
        return torch.tensor(lam_batch, device=x.device, dtype=x.dtype).unsqueeze(1)

    def _mix_pair(self, x: Tensor) -> Tensor:
        batch_size = len(x)
        lam_batch, use_cutmix = self._params_per_elem(batch_size // 2)
        source = x.clone()
        for i in range(batch_size // 2):
            j = batch_size - i - 1
            lam = lam_batch[i]
            if lam != 1.0:
                if use_cutmix[i]:
                    (top, bottom, left, right), lam = cutmix_bbox_and_lam(
                        x[i].shape, lam, ratio_minmax=self.cutmix_minmax, correct_lam=self.correct_lam
                    )
                    x[i][:, top:bottom, left:right] = source[j][:, top:bottom, left:right]
                    x[j][:, top:bottom, left:right] = source[i][:, top:bottom, left:right]
                    lam_batch[i] = lam
                else:
                    x[i] = x[i] * lam + source[j] * (1 - lam)
                    x[j] = x[j] * lam + source[i] * (1 - lam)
        lam_batch = np.concatenate((lam_batch, lam_batch[::-1]))
        return torch.tensor(lam_batch, device=x.device, dtype=x.dtype).unsqueeze(1)

    def _mix_batch(self, x: Tensor) -> float:
        lam, use_cutmix = self._params_per_batch()
        if lam == 1.0:
            return 1.0
        if use_cutmix:
            (top, bottom, left, right), lam = cutmix_bbox_and_lam(
                x.shape, lam, ratio_minmax=self.cutmix_minmax, correct_lam=self.correct_lam
            )
            x[:, :, top:bottom, left:right] = x.flip(0)[:, :, top:bottom, left:right]
        else:
            partner = x.flip(0).mul_(1.0 - lam)
            x.mul_(lam).add_(partner)
        return float(lam)

    def __call__(self, x: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        assert len(x) % 2 == 0, "Batch size should be even when using this"
        if self.mode == "elem":
            lam: float | Tensor = self._mix_elem(x)
        elif self.mode == "pair":
            lam = self._mix_pair(x)
        else:
            lam = self._mix_batch(x)
        return x, mixup_target(target, self.num_classes, lam, self.label_smoothing, x.device)
