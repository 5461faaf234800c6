"""Label noise for class targets: smoothing and flips, on indices, SoftLabels or distributions.

Targets may be ``(B,)`` class indices or dense ``(B, T, ...)`` ones (token sequences, pixels). Labels
equal to ``ignore_index`` (``-100`` by default, torch's convention for padding; a pad id works too)
are left exactly as they are: never flipped, never smoothed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor
from typing_extensions import override

from lit_noise import functional as LF
from lit_noise._validation import check_choice, check_int, fail
from lit_noise.errors import ConfigurationError
from lit_noise.functional.targets import _check_label_dtype, _ignore_mask
from lit_noise.noise.base import Noise
from lit_noise.schedules import ScheduleLike
from lit_noise.soft_labels import SoftLabels, soft

__all__ = [
    "LabelNoise",
    "LabelSmoothing",
    "PairFlip",
    "SymmetricFlip",
    "TargetFormat",
    "TransitionMatrix",
]

TargetFormat = Literal["soft_labels", "probs"]
_INDEX_DTYPES = frozenset({torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8})
TARGET_FORMATS = ("soft_labels", "probs")
#: torch's default ``ignore_index`` (``nn.CrossEntropyLoss``, ``F.nll_loss``).
DEFAULT_IGNORE_INDEX = -100


class LabelNoise(Noise):
    """Noise on class targets: integer indices ``(B, ...)``, :class:`SoftLabels` or ``(B, C, ...)`` floats.

    Flips act on the hard labels; a flipped label's target becomes its new class (one-hot when
    the target is a distribution), other labels keep theirs. Smoothing acts on the distribution.
    Integer targets stay integer under flips; smoothing returns :class:`SoftLabels` (or plain
    ``(B, C, ...)`` probabilities with ``target_format="probs"``). Plain float targets stay plain.

    Labels equal to ``ignore_index`` are left untouched (their rows are zeros in a produced
    distribution), and the losses on :class:`SoftLabels` leave them out exactly as they do for hard
    targets. Plain ``"probs"`` cannot say which positions to leave out: torch averages over all of
    them (the ignored ones contributing 0). An incoming plain ``(B, C, ...)`` distribution has no
    label that marks padding (its argmax is a class), so all of its rows are noised, as
    ``F.cross_entropy`` applies ``ignore_index`` to class indices only; a :class:`SoftLabels`
    target's hard labels do mark it.

    Args:
        num_classes: number of classes; may instead be given to :class:`~lit_noise.TargetNoise`.
        target_format: ``"soft_labels"`` (default) or ``"probs"`` for produced distributions.
        ignore_index: the label of positions to leave alone (padding): ``-100`` like torch's losses, a
            pad id, or ``None`` when every label is a class; may instead be given to TargetNoise.

    Example:
        >>> flip, smooth = SymmetricFlip(p=1.0, num_classes=2), LabelSmoothing(eps=0.2)
        >>> isinstance(flip, LabelNoise), flip.makes_distribution, smooth.makes_distribution
        (True, False, True)
        >>> labels = torch.tensor([0, 1, -100])  # -100: ignore_index, left alone
        >>> flip(labels, generator=torch.Generator().manual_seed(0))  # integers stay integers
        tensor([   1,    0, -100])
        >>> smooth.with_num_classes(4)  # what TargetNoise(..., num_classes=4) does
        >>> smooth(labels[:1]).soft
        tensor([[0.8500, 0.0500, 0.0500, 0.0500]])
    """

    applies_to = "labels"
    #: Whether the noise turns class indices into distributions (smoothing) rather than flipping them.
    makes_distribution: ClassVar[bool] = False

    def __init__(
        self,
        num_classes: int | None = None,
        target_format: TargetFormat = "soft_labels",
        ignore_index: int | None = DEFAULT_IGNORE_INDEX,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        self.num_classes = None if num_classes is None else check_int(owner, "num_classes", num_classes, 2)
        self.target_format = check_choice(owner, "target_format", target_format, TARGET_FORMATS)
        self.ignore_index = None if ignore_index is None else check_int(owner, "ignore_index", ignore_index)
        # Whether ignore_index was chosen (not torch's default): TargetNoise may not then override it.
        self._ignore_index_chosen = ignore_index != DEFAULT_IGNORE_INDEX

    def with_num_classes(self, num_classes: int | None) -> None:
        """Adopt ``num_classes`` when none was given; a different explicit value is an error."""
        owner = type(self).__name__
        if num_classes is None:
            if self.num_classes is None:
                raise ConfigurationError(
                    f"{owner} needs the number of classes: pass `num_classes` to {owner} or to TargetNoise."
                )
            return
        num_classes = check_int(owner, "num_classes", num_classes, 2)
        if self.num_classes not in (None, num_classes):
            raise fail(
                owner, "num_classes", num_classes, f"the same as given to {owner} ({self.num_classes})"
            )
        self.num_classes = num_classes

    def with_ignore_index(self, ignore_index: int | None) -> None:
        """Adopt ``ignore_index`` (``None``: keep this noise's); it may replace the default -100 only.

        Example:
            >>> noise = LabelSmoothing(eps=0.1)
            >>> noise.with_ignore_index(0)
            >>> noise.ignore_index
            0
        """
        if ignore_index is None:
            return
        owner = type(self).__name__
        ignore_index = check_int(owner, "ignore_index", ignore_index)
        if self._ignore_index_chosen and self.ignore_index != ignore_index:
            raise fail(
                owner, "ignore_index", ignore_index, f"the same as given to {owner} ({self.ignore_index!r})"
            )
        self.ignore_index = ignore_index

    @override
    def check(self, y: Tensor, role: str = "target") -> None:
        if self.num_classes is not None and type(y) is Tensor and y.dtype in _INDEX_DTYPES:
            return  # plain integer class indices: the common case, checked first (every batch)
        owner = type(self).__name__
        if self.num_classes is None:
            raise ConfigurationError(f"{owner} needs `num_classes` (on {owner} or TargetNoise).")
        if isinstance(y, SoftLabels):
            if y.num_classes != self.num_classes:
                raise ConfigurationError(
                    f"{owner}: the soft {role} has {y.num_classes} classes, `num_classes` is"
                    f" {self.num_classes}."
                )
            return
        if y.is_floating_point() and y.ndim >= 2:
            if y.shape[1] != self.num_classes:
                raise ConfigurationError(
                    f"{owner} acts on class labels, so a float {role} must be a (B, C, ...) class"
                    f" distribution with C = `num_classes` ({self.num_classes}); got shape"
                    f" {tuple(y.shape)}. For float regression targets use Gaussian."
                )
            return
        if y.is_floating_point() or y.dtype == torch.bool:
            raise ConfigurationError(
                f"{owner} acts on class labels, so the {role} must be integer class indices,"
                f" SoftLabels or a (B, C) distribution; got dtype {y.dtype} and shape"
                f" {tuple(y.shape)}. For float regression targets use Gaussian."
            )

    def _in_dtype_of(self, x: Tensor, labels: Tensor) -> Tensor:
        """``labels`` cast back to the dtype of the input labels ``x``, refused where it would wrap.

        Every flip keeps the labels' dtype; a narrow one (uint8, int8, int16) that cannot hold the
        classes up to ``num_classes - 1`` is a :class:`ConfigurationError`, never a wrapped label.
        """
        if labels.dtype == x.dtype:
            return labels
        assert self.num_classes is not None  # check() refused a noise without it
        _check_label_dtype(type(self).__name__, x, self.num_classes)
        return labels.to(x.dtype)

    @override
    def apply(self, x: Tensor, params: dict[str, float], generator: torch.Generator | None) -> Tensor:
        if type(x) is Tensor and x.dtype in _INDEX_DTYPES:  # plain class indices (fast path)
            if not self.makes_distribution:
                flipped = self._flip(x, params, generator, self.ignore_index)
                return self._in_dtype_of(x, flipped)
            labels, distribution = self._noise(x, None, params, generator, self.ignore_index)
            if distribution is not None:
                if self.target_format == "probs":
                    return distribution
                # The hard labels are a copy: a write into the result must not reach the input.
                hard = (
                    labels.long()
                    if labels.dtype != torch.int64
                    else labels.clone()
                    if labels is x
                    else labels
                )
                return SoftLabels._wrap(distribution, hard)
            return self._in_dtype_of(x, labels)
        as_probs = x.is_floating_point() and not isinstance(x, SoftLabels)
        was_soft = as_probs or isinstance(x, SoftLabels)
        labels = x.argmax(dim=1) if as_probs else (x.hard if isinstance(x, SoftLabels) else x)
        distribution = soft(x) if was_soft else None
        # A plain distribution has no label that marks padding (its argmax is a class), so
        # `ignore_index` leaves none of its rows alone, as for F.cross_entropy's probability targets.
        ignore_index = None if as_probs else self.ignore_index
        given = labels
        labels, distribution = self._noise(labels, distribution, params, generator, ignore_index)
        if distribution is None:
            # Flipped integer labels keep their dtype (int32 / uint8 labels stay so).
            return self._in_dtype_of(x, labels)
        if as_probs or self.target_format == "probs":
            return distribution
        return SoftLabels(distribution, labels.clone() if labels is given and not as_probs else labels)

    def _noise(
        self,
        labels: Tensor,
        distribution: Tensor | None,
        params: dict[str, float],
        generator: torch.Generator | None,
        ignore_index: int | None,
    ) -> tuple[Tensor, Tensor | None]:
        """Noisy ``(labels, distribution)``; ``distribution`` is ``None`` for plain indices.

        Labels equal to ``ignore_index`` (the noise's own, or ``None`` for a plain distribution)
        are left alone.
        """
        assert self.num_classes is not None
        flipped = self._flip(labels, params, generator, ignore_index)
        if distribution is None:
            return flipped, None
        changed = (flipped != labels).unsqueeze(1)  # never at ignored positions
        one_hot = soft(flipped, self.num_classes, ignore_index).to(distribution.dtype)
        return flipped, torch.where(changed, one_hot, distribution)

    def _flip(
        self,
        labels: Tensor,
        params: dict[str, float],
        generator: torch.Generator | None,
        ignore_index: int | None,
    ) -> Tensor:
        raise NotImplementedError


class LabelSmoothing(LabelNoise):
    """Label smoothing: ``(1 - eps) * target + eps / C`` (``nn.CrossEntropyLoss``'s convention).

    A one-hot target keeps ``1 - eps + eps / C`` on its class and ``eps / C`` on each other class;
    rows sum to 1. Produces :class:`SoftLabels` unless ``target_format="probs"``. Labels equal to
    ``ignore_index`` keep their label and get a zero row (an incoming distribution's row is kept).

    Args:
        eps: smoothing mass in [0, 1], a number or a schedule; scaled by the controller.
        num_classes: number of classes (or give it to TargetNoise).
        target_format: ``"soft_labels"`` or ``"probs"``.
        ignore_index: label of the positions to leave alone (default -100; ``None``: none).

    Example:
        >>> import torch
        >>> y = LabelSmoothing(eps=0.1, num_classes=4)(torch.tensor([2]))
        >>> y.soft
        tensor([[0.0250, 0.0250, 0.9250, 0.0250]])
        >>> int(y)
        2

        Token targets with padding: ``F.cross_entropy(logits.view(-1, C), y.view(-1))`` sees the
        smoothed rows and leaves out the padding:

        >>> tokens = LabelSmoothing(eps=0.1, num_classes=4)(torch.tensor([[2, 1, -100]]))
        >>> tokens.view(-1).soft
        tensor([[0.0250, 0.0250, 0.9250, 0.0250],
                [0.0250, 0.9250, 0.0250, 0.0250],
                [0.0000, 0.0000, 0.0000, 0.0000]])
    """

    strength = ("eps",)
    makes_distribution = True
    draws = False

    def __init__(
        self,
        eps: ScheduleLike,
        num_classes: int | None = None,
        target_format: TargetFormat = "soft_labels",
        ignore_index: int | None = DEFAULT_IGNORE_INDEX,
    ) -> None:
        super().__init__(num_classes, target_format, ignore_index)
        self._param("eps", eps, low=0.0, high=1.0)

    # The constructor above is _RateFlip's with `eps` for `p` (see there), and this override takes
    # LabelNoise._noise's parameters: `duplicates` pairs both, on purpose (and
    # tests/test_repeated_signatures.py keeps them equal).
    def _noise(
        self,
        labels: Tensor,
        distribution: Tensor | None,
        params: dict[str, float],
        generator: torch.Generator | None,
        ignore_index: int | None,
    ) -> tuple[Tensor, Tensor | None]:
        if distribution is None:
            assert self.num_classes is not None
            return labels, LF.smooth_one_hot(labels, self.num_classes, params["eps"], None, ignore_index)
        smoothed = LF.label_smoothing(distribution, params["eps"])
        ignored = _ignore_mask(labels, ignore_index)
        return labels, smoothed if ignored is None else torch.where(
            ignored.unsqueeze(1), distribution, smoothed
        )


class _RateFlip(LabelNoise):
    """A flip applied to each label with probability ``p`` by ``_flip_labels(y, p, C, generator)``.

    Its constructor repeats LabelSmoothing's on purpose: the two differ only in the public name of
    the rate (``p``, ``eps``), which Hydra and LightningCLI read from each signature.
    """

    strength = ("p",)
    _flip_labels: Callable[[Tensor, float, int, torch.Generator | None, int | None], Tensor]

    def __init__(
        self,
        p: ScheduleLike,
        num_classes: int | None = None,
        target_format: TargetFormat = "soft_labels",
        ignore_index: int | None = DEFAULT_IGNORE_INDEX,
    ) -> None:
        super().__init__(num_classes, target_format, ignore_index)
        self._param("p", p, low=0.0, high=1.0)

    @override
    def _flip(
        self,
        labels: Tensor,
        params: dict[str, float],
        generator: torch.Generator | None,
        ignore_index: int | None,
    ) -> Tensor:
        assert self.num_classes is not None
        return self._flip_labels(labels, params["p"], self.num_classes, generator, ignore_index)


class SymmetricFlip(_RateFlip):
    """With probability ``p`` each label becomes a uniformly random *other* class.

    Labels equal to ``ignore_index`` (default -100) are kept; the arguments are as for
    :class:`LabelSmoothing`, with the flip probability ``p`` instead of ``eps``.

    Example:
        >>> import torch
        >>> y = torch.zeros(10_000, dtype=torch.long)
        >>> z = SymmetricFlip(p=0.2, num_classes=10)(y, generator=torch.Generator().manual_seed(0))
        >>> round((z != 0).float().mean().item(), 2)
        0.2
    """

    _flip_labels = staticmethod(LF.symmetric_flip)


class PairFlip(_RateFlip):
    """With probability ``p`` class ``k`` becomes ``(k + 1) % C``; labels equal to ``ignore_index`` are kept.

    Example:
        >>> import torch
        >>> PairFlip(p=1.0, num_classes=3)(torch.tensor([0, 2]))
        tensor([1, 0])
    """

    _flip_labels = staticmethod(LF.pair_flip)


class TransitionMatrix(LabelNoise):
    """Class-conditional flips: the noisy label of class ``i`` is ``j`` with probability ``T[i][j]``.

    ``matrix`` is square and row-stochastic (non-negative rows summing to 1). The controller's
    ``scale`` interpolates towards no noise: ``(1 - s) I + s T`` with ``s = min(scale, 1)``. Labels
    equal to ``ignore_index`` (default -100) are kept.

    Example:
        >>> import torch
        >>> noise = TransitionMatrix([[0.0, 1.0], [0.0, 1.0]])
        >>> noise(torch.tensor([0, 1, 0]))
        tensor([1, 1, 1])
    """

    def __init__(
        self,
        matrix: Sequence[Sequence[float]],
        num_classes: int | None = None,
        target_format: TargetFormat = "soft_labels",
        ignore_index: int | None = DEFAULT_IGNORE_INDEX,
    ) -> None:
        try:
            table = torch.as_tensor([list(map(float, row)) for row in matrix], dtype=torch.float64)
        except (TypeError, ValueError):
            raise fail("TransitionMatrix", "matrix", matrix, "a square C x C table of numbers") from None
        if table.ndim != 2 or table.shape[0] != table.shape[1] or table.shape[0] < 2:
            raise fail("TransitionMatrix", "matrix", matrix, "a square C x C table with C >= 2")
        if (table < 0).any() or not torch.allclose(
            table.sum(1), torch.ones(len(table), dtype=torch.float64), atol=1e-6
        ):
            raise fail("TransitionMatrix", "matrix", matrix, "non-negative rows that each sum to 1")
        super().__init__(
            num_classes if num_classes is not None else table.shape[0], target_format, ignore_index
        )
        if self.num_classes != table.shape[0]:
            raise fail(
                "TransitionMatrix", "num_classes", num_classes, f"{table.shape[0]} (the matrix's size)"
            )
        self.matrix = table

    @override
    def resolve(self, clock: Any = None, scale: float = 1.0) -> dict[str, float]:
        return {"scale": min(max(scale, 0.0), 1.0)}

    @override
    def _flip(
        self,
        labels: Tensor,
        params: dict[str, float],
        generator: torch.Generator | None,
        ignore_index: int | None,
    ) -> Tensor:
        table = self.matrix
        if params["scale"] != 1.0:
            eye = torch.eye(len(table), dtype=table.dtype)
            table = (1.0 - params["scale"]) * eye + params["scale"] * table
        return LF.transition_flip(labels, table, generator, ignore_index)

    def _public_args(self) -> dict[str, Any]:
        return {
            "matrix": self.matrix.tolist(),
            "num_classes": self.num_classes,
            "ignore_index": self.ignore_index,
        }
