"""TargetNoise: label smoothing, label flips or regression-target noise while fitting."""

from __future__ import annotations

from lit_noise._validation import fail
from lit_noise.batch import BatchKey
from lit_noise.callbacks.batch_noise import BatchNoise
from lit_noise.noise.base import Noise
from lit_noise.noise.target import LabelNoise
from lit_noise.schedules import ScheduleLike

__all__ = ["TargetNoise"]


class TargetNoise(BatchNoise):
    """Add noise to the targets of every training batch.

    Label noises (``LabelSmoothing``, ``SymmetricFlip``, ``PairFlip``, ``TransitionMatrix``) need
    ``num_classes`` (here or on the noise). Flips keep integer labels; smoothing delivers
    :class:`~lit_noise.SoftLabels`, which are the hard labels to metrics and the distribution to
    ``cross_entropy``/``nll_loss`` (``target_format="probs"`` on the noise gives plain ``(B, C)``
    floats). Soft targets coming in (``SoftLabels`` from mixup, or ``(B, C)`` floats) are smoothed as
    distributions; a flipped sample's target becomes its new class. ``Gaussian`` noises float
    regression targets. Batch layouts, seeding, logging and errors are as for
    :class:`~lit_noise.InputNoise`; a label noise on float inputs, ``Gaussian`` on integer labels and
    a label noise without ``num_classes`` are refused before any step.

    Token targets ``(B, T)`` work as they are: the soft targets keep their distribution through
    ``y.view(-1)`` and the other shape and indexing operations, so
    ``F.cross_entropy(logits.view(-1, V), y.view(-1), ignore_index=PAD)`` trains on the smoothed
    tokens. Padding (labels equal to ``ignore_index``) is never noised, and that loss leaves it out
    (mean over the kept tokens) exactly as for hard targets.

    Args:
        noise: what noise; its parameters may be schedules.
        key: where the targets are (see :class:`~lit_noise.InputNoise`); default ``1``.
        num_classes: number of classes for label noise (``None`` for other noises, which have none).
        p: per-sample probability of being noised.
        seed: base seed (``None``: drawn from torch's RNG at setup).
        name: name in logged keys and checkpoint state; ``None``: ``"target"``, or
            ``"target_<noise>"`` (``"target_label_smoothing"``) when several unnamed TargetNoise share
            the Trainer.
        scale: multiplier on the noise strength (the controller's knob).
        ignore_index: label of the positions a label noise leaves alone (padding), passed to the
            noise like ``num_classes``: it replaces the noise's default -100 (a different value set on
            the noise is an error). ``None`` keeps the noise's own.

    Example:
        >>> import torch
        >>> from lit_noise import LabelSmoothing, TargetNoise
        >>> callback = TargetNoise(LabelSmoothing(eps=0.1), num_classes=10)
        >>> callback.noise.num_classes
        10
        >>> TargetNoise(LabelSmoothing(eps=0.1), num_classes=100, ignore_index=0).noise.ignore_index
        0
    """

    role = "target"

    def __init__(
        self,
        noise: Noise,
        key: BatchKey = 1,
        num_classes: int | None = None,
        p: ScheduleLike = 1.0,
        seed: int | None = None,
        name: str | None = None,
        scale: float = 1.0,
        ignore_index: int | None = None,
    ) -> None:
        super().__init__(noise, key, p, None, seed, name, scale)
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        if isinstance(noise, LabelNoise):
            noise.with_num_classes(num_classes)
            noise.with_ignore_index(ignore_index)
        elif num_classes is not None:
            raise fail(
                "TargetNoise",
                "num_classes",
                num_classes,
                f"None for {type(noise).__name__}: only label noise reads the number of classes",
            )
        elif ignore_index is not None:
            raise fail(
                "TargetNoise",
                "ignore_index",
                ignore_index,
                f"None for {type(noise).__name__}: only label noise has positions to leave alone",
            )
