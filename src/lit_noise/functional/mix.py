"""Mixup and CutMix as pure tensor maths: explicit λ, partners and boxes, or drawn from a generator.

Two layers, both Lightning-free and vectorised (no Python loop over samples):

* **Apply** given parameters, so results can be checked against any other implementation:
  :func:`mixup`, :func:`cutmix` and :func:`mix_batch` (per-sample choice between the two). ``lam``
  is the weight of each sample's *own* input and target (one number for the batch or one per
  sample), ``index[i]`` the sample that ``i`` is mixed with, ``boxes`` the CutMix rectangles as
  ``(top, bottom, left, right)`` half-open pixel ranges of the last two dimensions.
* **Sample** them from an explicit ``torch.Generator`` on the batch's device: :func:`sample_lam`
  (λ ~ Beta(alpha, alpha)), :func:`partner_index` (a random permutation), :func:`cutmix_boxes` (side ratio
  √(1-λ), random centre, clipped to the image), :func:`box_lam` (λ corrected to the pasted area)
  and :func:`sample_mix_params`, which draws everything for one batch in mode ``"batch"``,
  ``"pair"`` or ``"elem"`` without a host synchronisation.

Targets are mixed as class distributions; :func:`one_hot_smooth` turns class indices,
:class:`~lit_noise.SoftLabels` or ``(B, C)`` probabilities into rows with label smoothing folded in
(``(1 - ε) * target + ε / C``, the convention of ``nn.CrossEntropyLoss``), so mixed rows still sum
to 1.

Example:
    >>> x = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    >>> y = one_hot_smooth(torch.tensor([0, 1]), num_classes=2)
    >>> x_mix, y_mix = mixup(x, y, lam=0.75, index=torch.tensor([1, 0]))
    >>> x_mix
    tensor([[0.2500, 0.2500],
            [0.7500, 0.7500]])
    >>> y_mix
    tensor([[0.7500, 0.2500],
            [0.2500, 0.7500]])
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Sequence
from typing import Any, Literal, NamedTuple, Union, get_args

import torch
from torch import Tensor

from lit_noise._host_random import HostRandom
from lit_noise._validation import check_range, fail
from lit_noise.errors import ConfigurationError
from lit_noise.functional.targets import label_smoothing
from lit_noise.soft_labels import soft

__all__ = [
    "MIX_MODES",
    "MixMode",
    "MixParams",
    "box_lam",
    "box_mask",
    "cutmix",
    "cutmix_boxes",
    "mix_batch",
    "mix_params",
    "mixup",
    "one_hot_smooth",
    "partner_index",
    "sample_lam",
    "sample_mix_params",
]

#: A per-batch number or a per-sample (or single-element) tensor.
LamLike = Union[float, Tensor]
#: One box ``(top, bottom, left, right)`` or a ``(G, 4)`` integer tensor of them.
BoxesLike = Union[Tensor, Sequence[int]]
#: How many draws a batch makes: one (``"batch"``), one per pair of samples or one per sample.
MixMode = Literal["batch", "pair", "elem"]
MIX_MODES: tuple[str, ...] = get_args(MixMode)

# Small constant tensors reused by every batch (extents, coordinate ranges, Beta concentrations),
# keyed by what they hold and their device. Never modified in place.
_CONSTANTS: dict[tuple[Any, ...], Tensor] = {}
_CPU = torch.device("cpu")


def _constant(key: tuple[Any, ...], device: torch.device, make: Any) -> Tensor:
    """The cached tensor for ``(key, device)``, built by ``make(device)`` on first use."""
    full_key = (*key, device)
    value = _CONSTANTS.get(full_key)
    if value is None:
        if len(_CONSTANTS) > 256:  # bounded: a few entries per image size and setting in practice
            _CONSTANTS.clear()
        value = _CONSTANTS[full_key] = make(device)
    return value


def _extent(height: int, width: int, device: torch.device, dims: int) -> Tensor:
    """``[height, width]`` as float64, shaped ``(2,) + (1,) * dims``."""
    shape = (2,) + (1,) * dims
    return _constant(
        ("extent", height, width, dims),
        device,
        lambda d: torch.tensor([height, width], dtype=torch.float64, device=d).view(shape),
    )


def one_hot_smooth(
    y: Tensor, num_classes: int, smoothing: float = 0.0, dtype: torch.dtype | None = None
) -> Tensor:
    """Targets as ``(B, C)`` class distributions with label smoothing folded in.

    Class indices become one-hot rows, :class:`~lit_noise.SoftLabels` give their distribution and
    ``(B, C)`` floats are taken as they are; then :func:`~lit_noise.functional.label_smoothing`
    moves a mass ``smoothing`` evenly onto all ``C`` classes (``(1 - ε) * row + ε / C``). Rows keep
    summing to 1, and since smoothing is affine it commutes with mixing.

    Args:
        y: class indices ``(B,)``, ``SoftLabels`` or ``(B, C)`` probabilities.
        num_classes: ``C``.
        smoothing: ε in [0, 1].
        dtype: floating dtype of the result (default: the distribution's own, or torch's default
            dtype for class indices).

    Example:
        >>> one_hot_smooth(torch.tensor([2, 0]), num_classes=4, smoothing=0.2)
        tensor([[0.0500, 0.0500, 0.8500, 0.0500],
                [0.8500, 0.0500, 0.0500, 0.0500]])
    """
    distribution = soft(y, num_classes)
    if dtype is not None and distribution.dtype != dtype:
        distribution = distribution.to(dtype)
    if smoothing > 0.0:
        distribution = label_smoothing(distribution, smoothing)
    return distribution


# Below this alpha torch's gamma sampler clamps many of its draws to the smallest normal double
# (for Gamma(a), P(G < 2.2e-308) is about 10 ** (-308 * a)), and a Beta draw whose two gammas are
# both clamped comes out as exactly 0.5: a quarter of the draws at alpha 1e-3, where nearly all the
# mass lies at 0 and 1. Those alphas are drawn in log space; from this alpha up the chance of a
# clamp is below 1e-15 per gamma, and the draw is torch's own Dirichlet's, as before.
_LOG_SPACE_ALPHA = 0.05


def _dirichlet_first(
    concentration: Tensor, generator: torch.Generator | None, smallest: float, largest: float | None = None
) -> Tensor:
    """The first coordinate of one two-class Dirichlet draw per row: Beta(a, b) from rows ``(a, b)``.

    ``smallest`` and ``largest`` are the least and greatest concentration in the table (known on
    the host; ``largest`` defaults to ``smallest``). From ``_LOG_SPACE_ALPHA`` up this is
    ``torch._sample_dirichlet`` (``torch.distributions.Beta``'s draw, which takes no generator);
    below it each gamma is drawn as ``Gamma(a + 1) * U ** (1 / a)`` (Marsaglia and Tsang's boost for
    ``a < 1``) in logs, and the coordinate is the sigmoid of the two logs' difference, so no draw
    underflows. A table on both sides of ``_LOG_SPACE_ALPHA`` (two alphas) is drawn both ways,
    torch's Dirichlet first, so that its rows from ``_LOG_SPACE_ALPHA`` up keep torch's draws; the
    rows below take the draw in logs.
    """
    if smallest >= _LOG_SPACE_ALPHA:
        return torch._sample_dirichlet(concentration, generator=generator).select(-1, 0)
    if largest is not None and largest >= _LOG_SPACE_ALPHA:
        drawn = torch._sample_dirichlet(concentration, generator=generator).select(-1, 0)
        small = concentration.select(-1, 0) < _LOG_SPACE_ALPHA
        return torch.where(small, _dirichlet_first(concentration, generator, smallest), drawn)
    log_gamma = torch._standard_gamma(concentration + 1.0, generator=generator).log_()
    uniform = torch.rand(
        concentration.shape, generator=generator, dtype=concentration.dtype, device=concentration.device
    )
    log_gamma.add_(uniform.neg_().log1p_().div_(concentration))  # log(1 - U): U = 0 stays finite
    return torch.sigmoid(log_gamma.select(-1, 0) - log_gamma.select(-1, 1))


def _beta_full(draws: int, alpha: float, generator: torch.Generator | None, device: torch.device) -> Tensor:
    """``draws`` Beta(alpha, alpha) draws (float64), from a cached ``(draws, 2)`` concentration."""
    concentration = _constant(
        ("concentration", draws, float(alpha)),
        device,
        lambda d: torch.full((draws, 2), float(alpha), dtype=torch.float64, device=d),
    )
    return _dirichlet_first(concentration, generator, alpha)


def sample_lam(
    alpha: float,
    size: int | Sequence[int],
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """λ ~ Beta(alpha, alpha), the mixing weight of mixup and CutMix; ``alpha <= 0`` gives λ = 1.

    Drawn in float64: for small ``alpha`` much of Beta's mass lies within float32's spacing of 1.

    Example:
        >>> lam = sample_lam(1.0, 100_000, generator=torch.Generator().manual_seed(0))
        >>> round(lam.mean().item(), 2), bool(((lam >= 0) & (lam <= 1)).all())
        (0.5, True)
    """
    shape = (size,) if isinstance(size, int) else tuple(size)
    device = generator.device if generator is not None and device is None else device
    if alpha <= 0.0:
        return torch.ones(shape, device=device, dtype=dtype)
    concentration = torch.full((*shape, 2), float(alpha), device=device, dtype=torch.float64)
    return _dirichlet_first(concentration, generator, alpha).to(dtype)


def _permutation_partners(
    batch_size: int, generator: torch.Generator | None, device: torch.device | str | None, pairs: bool
) -> tuple[Tensor, Tensor]:
    """``(index, perm)``: the partner of every sample and the random permutation it came from."""
    perm = torch.randperm(batch_size, generator=generator, device=device)
    # index[perm[k]] = perm[following[k]]: a gather by a cached position table, then one
    # out-of-place index_copy that writes every entry (cheaper on the host than roll + empty + copy).
    positions = _constant(
        ("partners", batch_size, pairs), perm.device, lambda d: _positions(batch_size, pairs, d)
    )
    following = perm.index_select(0, positions)
    return following.index_copy(0, perm, following), perm


def _positions(batch_size: int, pairs: bool, device: torch.device) -> Tensor:
    """The position each permuted sample takes its partner from.

    The next one (a cycle), or the other member of its pair (``0<->1, 2<->3, ...``; an odd batch's
    last sample is its own).
    """
    if not pairs:
        return torch.arange(1, batch_size + 1, device=device) % batch_size
    position = torch.arange(batch_size, device=device) ^ 1
    if batch_size % 2:
        position[-1] = batch_size - 1
    return position


def partner_index(
    batch_size: int,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    pairs: bool = False,
) -> Tensor:
    """A random partner for every sample: sample ``i`` is mixed with sample ``index[i]``.

    With ``pairs=False`` the partners follow one random cycle through the whole batch (the
    permutation ``perm[k] -> perm[k + 1]``): every sample is mixed with another one (unless the
    batch has one sample) and every sample is a partner exactly once. With ``pairs=True`` the batch
    is split into random disjoint pairs (``index[index[i]] == i``); in an odd batch one sample is
    left as its own partner, i.e. unmixed.

    Example:
        >>> index = partner_index(6, generator=torch.Generator().manual_seed(0))
        >>> sorted(index.tolist()), bool((index != torch.arange(6)).all())
        ([0, 1, 2, 3, 4, 5], True)
        >>> pairs = partner_index(5, generator=torch.Generator().manual_seed(0), pairs=True)
        >>> bool((pairs[pairs] == torch.arange(5)).all()), int((pairs == torch.arange(5)).sum())
        (True, 1)
    """
    if generator is not None and device is None:
        device = generator.device
    return _permutation_partners(batch_size, generator, device, pairs)[0]


def _box_corners(lam: Tensor, u: Tensor, height: int, width: int, minmax: Sequence[float] | None) -> Tensor:
    """Box corners ``(2, 2, *lam.shape)`` float64: (rows, columns) x (low, high), from uniforms ``u``.

    ``lam`` is float64; ``u`` holds 2 (centre) or, with ``minmax``, 4 (sides, position) float64
    uniforms per entry. Float64 holds these integers exactly, and ``floor(u * n) <= n - 1`` for ``u < 1``.
    """
    extent = _extent(height, width, lam.device, lam.ndim)
    if minmax is None:
        sizes = (extent * (1.0 - lam).sqrt_()).floor_()  # lam is float64
        # floor(sizes / 2) of an integer-valued float64 is exact, as floor(sizes * 0.5) was.
        start = (u[:2] * extent).floor_().sub_(sizes.div(2.0, rounding_mode="floor"))
        # One clip of both corners to [0, extent]: start < extent and start + sizes >= 0 always.
        zero = _constant(("zero",), lam.device, lambda d: torch.zeros((), dtype=torch.float64, device=d))
        return torch.stack((start, start + sizes), dim=1).clamp_(
            min=zero, max=_extent(height, width, lam.device, lam.ndim + 1)
        )
    sides = [
        [int(height * minmax[0]), int(height * minmax[1])],
        [int(width * minmax[0]), int(width * minmax[1])],
    ]
    shape = (2,) + (1,) * lam.ndim
    lo_hi = torch.tensor(sides, dtype=torch.float64, device=lam.device)
    lo, span = lo_hi[:, 0].view(shape), (lo_hi[:, 1] - lo_hi[:, 0]).view(shape)
    sizes = (u[:2] * span).floor_() + lo
    low = (u[2:4] * (extent - sizes + 1.0)).floor_()
    return torch.stack((low, low + sizes), dim=1)


def _as_boxes(corners: Tensor) -> Tensor:
    """``(..., 4)`` int64 ``(top, bottom, left, right)`` from corners stacked ``(2, 2, ...)``."""
    flat = corners.flatten(0, 1)
    flat = flat.t() if flat.ndim == 2 else flat.movedim(0, -1)
    return flat.to(torch.int64, memory_format=torch.contiguous_format)


def cutmix_boxes(
    lam: Tensor,
    height: int,
    width: int,
    generator: torch.Generator | None = None,
    minmax: Sequence[float] | None = None,
) -> Tensor:
    """Random CutMix boxes ``(..., 4)`` as ``(top, bottom, left, right)``, one per entry of ``lam``.

    Without ``minmax`` (the CutMix paper): sides ``floor(H * sqrt(1-λ))`` by ``floor(W * sqrt(1-λ))``
    around a uniformly random centre pixel, clipped to the image (so the pasted area may be
    smaller than ``1 - λ``; see :func:`box_lam`). With ``minmax=(lo, hi)``: each side an integer
    uniform in ``[int(lo * H), int(hi * H))`` (``λ`` is ignored), the box placed uniformly inside
    the image. The rows are half-open ranges ``[top, bottom) x [left, right)`` of the last two
    dimensions.

    Example:
        >>> boxes = cutmix_boxes(torch.tensor([0.75, 1.0]), 8, 8, torch.Generator().manual_seed(0))
        >>> box_lam(boxes, 8, 8) >= torch.tensor([0.75, 1.0])  # 4x4 = 16 pixels at most, then none
        tensor([True, True])
    """
    if minmax is None and lam.numel() and not bool(((lam >= 0) & (lam <= 1)).all()):
        raise ConfigurationError(
            f"cutmix_boxes: `lam` must lie in [0, 1] (a box's side is sqrt(1 - lam) of the image), got"
            f" values from {lam.min().item():g} to {lam.max().item():g}."
        )
    minmax = _check_minmax("cutmix_boxes", minmax)
    rows = 2 if minmax is None else 4
    u = torch.rand((rows, *lam.shape), generator=generator, device=lam.device, dtype=torch.float64)
    return _as_boxes(_box_corners(lam.to(torch.float64), u, height, width, minmax))


def box_lam(boxes: Tensor, height: int, width: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """λ corrected to the pasted area: ``1 - box area / (H * W)``, one per box.

    The area is the box's part inside the image, as :func:`mix_batch` clips it (a reversed or
    outside box pastes nothing: λ = 1).

    Example:
        >>> box_lam(torch.tensor([[0, 4, 0, 4], [2, 2, 0, 8], [6, 10, -2, 2]]), 8, 8)
        tensor([0.7500, 1.0000, 0.9375])
    """
    rows = boxes[..., :2].clamp(0, height)
    cols = boxes[..., 2:].clamp(0, width)
    area = rows.diff(dim=-1).clamp_(min=0) * cols.diff(dim=-1).clamp_(min=0)
    return 1.0 - area.squeeze(-1).to(dtype) / float(height * width)


def box_mask(boxes: Tensor, height: int, width: int) -> Tensor:
    """Boolean masks ``(..., H, W)``, True inside each box (built by broadcasting, no loop).

    Example:
        >>> box_mask(torch.tensor([1, 3, 0, 2]), 3, 3).int()
        tensor([[0, 0, 0],
                [1, 1, 0],
                [1, 1, 0]], dtype=torch.int32)
    """
    in_rows, in_cols = _box_ranges(boxes, height, width)
    return in_rows.unsqueeze(-1) & in_cols.unsqueeze(-2)


def _box_ranges(boxes: Tensor, height: int, width: int) -> tuple[Tensor, Tensor]:
    """Boolean indicators ``(..., H)`` and ``(..., W)`` of each box's rows and columns."""
    rows = _constant(("arange", height), boxes.device, lambda d: torch.arange(height, device=d))
    cols = _constant(("arange", width), boxes.device, lambda d: torch.arange(width, device=d))
    in_rows = (rows >= boxes[..., 0:1]) & (rows < boxes[..., 1:2])
    in_cols = (cols >= boxes[..., 2:3]) & (cols < boxes[..., 3:4])
    return in_rows, in_cols


def _box_lines(boxes: Tensor, height: int, width: int, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """:func:`_box_ranges` of ``(G, 4)`` boxes as 0/1 floats of ``dtype``, by a table lookup.

    Row ``k`` of the cached table ``steps`` is ``[c >= k for c < L]`` (``L = max(H, W)``), so a
    range ``[low, high)`` is ``steps[low] - steps[high]``: one gather of whole rows and one
    subtraction, several times cheaper than broadcast comparisons. Box coordinates are clamped to
    ``[0, L]`` and empty or reversed ranges to 0, which leaves the comparisons' result unchanged.
    """
    if boxes.is_floating_point():  # not integer coordinates: compare as they are
        in_rows, in_cols = _box_ranges(boxes, height, width)
        return in_rows.to(dtype), in_cols.to(dtype)
    size = max(height, width)
    steps = _constant(("steps", size, dtype), boxes.device, lambda d: _steps(size, dtype, d))
    ends = steps.index_select(0, boxes.clamp(0, size).reshape(-1).long()).view(-1, 2, 2, size)
    lines = torch.sub(ends[:, :, 0], ends[:, :, 1]).clamp_(min=0.0)
    return lines[:, 0, :height], lines[:, 1, :width]


def _steps(size: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """The ``(size + 1, size)`` table whose row ``k`` is ``[c >= k for c < size]`` as 0/1 ``dtype``."""
    coords = torch.arange(size, device=device)
    return (coords >= torch.arange(size + 1, device=device).unsqueeze(-1)).to(dtype)


def _check_index(index: Tensor, batch_size: int) -> None:
    if index.shape != (batch_size,) or index.is_floating_point():
        raise ConfigurationError(
            f"mix: `index` must be {batch_size} integer partner indices (one per sample), got dtype"
            f" {index.dtype} and shape {tuple(index.shape)}."
        )


def _host_scalar(value: Any) -> Any:
    """A number held on the host (a Python number or a one-entry CPU tensor), else ``None``."""
    if not isinstance(value, Tensor):
        return value
    return value.item() if value.device.type == "cpu" and value.numel() == 1 else None


def _host_box(value: Any) -> Any:
    """One box held on the host (a sequence, or a CPU tensor of 4 entries), else ``None``."""
    if not isinstance(value, Tensor):
        return list(value)
    return value.reshape(-1).tolist() if value.device.type == "cpu" and value.numel() == 4 else None


#: Below this many input elements, CutMix gathers whole partners (one contiguous gather costs
#: less host time than a strided one); above it, only the box (less memory traffic).
_SMALL_BATCH = 1 << 14


def _box_view(x: Tensor, top: int, bottom: int, left: int, right: int) -> Tensor:
    """``x[..., top:bottom, left:right]`` as one ``as_strided`` view (cheaper than indexing)."""
    stride = x.stride()
    offset = x.storage_offset() + top * stride[-2] + left * stride[-1]
    return x.as_strided((*x.shape[:-2], bottom - top, right - left), stride, offset)


def _mix_one(
    x: Tensor, y_soft: Tensor, index: Tensor, lam: float, box: Sequence[int] | None
) -> tuple[Tensor, Tensor]:
    """One λ (and one box) for the whole batch, held on the host: scalar lerp or slicing.

    The box is clipped to the image, as the per-sample path clips: a view past the edge would wrap.
    """
    if box is not None:
        height, width = x.shape[-2], x.shape[-1]
        top, bottom, left, right = (int(v) for v in box)
        top, bottom = min(max(top, 0), height), min(max(bottom, 0), height)
        left, right = min(max(left, 0), width), min(max(right, 0), width)
        if bottom > top and right > left:
            x_mixed = x.clone(memory_format=torch.contiguous_format)
            if x.numel() <= _SMALL_BATCH:  # one contiguous gather: fewer host steps than a strided one
                pasted = _box_view(x.index_select(0, index), top, bottom, left, right)
            else:  # gather only the box
                pasted = _box_view(x, top, bottom, left, right).index_select(0, index)
            _box_view(x_mixed, top, bottom, left, right).copy_(pasted)
        else:
            x_mixed = x
    elif lam == 1.0:
        x_mixed = x
    else:
        if not x.is_floating_point():
            raise ConfigurationError(f"mixup: the inputs must be floating point, got dtype {x.dtype}.")
        x_mixed = x.index_select(0, index).lerp_(x, lam)
    y_mixed = y_soft if lam == 1.0 else y_soft.index_select(0, index).lerp_(y_soft, lam)
    return x_mixed, y_mixed


def mix_batch(
    x: Tensor,
    y_soft: Tensor,
    lam: LamLike,
    index: Tensor,
    use_cutmix: Tensor | None = None,
    boxes: BoxesLike | None = None,
) -> tuple[Tensor, Tensor]:
    """Mix each sample with its partner ``index[i]``: mixup, CutMix or a per-sample choice.

    * ``boxes`` is ``None``: mixup, ``x_i' = lam_i * x_i + (1 - lam_i) * x_index[i]``.
    * ``boxes`` given, ``use_cutmix`` ``None``: CutMix, ``x_i'`` is ``x_i`` with the pixels inside
      box ``i`` (of the last two dimensions) copied from ``x_index[i]``.
    * both given: CutMix where ``use_cutmix`` is True, mixup elsewhere.

    The target is always ``y_i' = lam_i * y_i + (1 - lam_i) * y_index[i]``, so for CutMix pass the
    pasted-area λ (:func:`box_lam`) to keep targets and pixels consistent. ``lam``, ``use_cutmix``
    and ``boxes`` hold one entry for the whole batch or one per sample; one entry held on the host
    (a number, or a CPU tensor) is applied with a scalar ``lerp`` or by slicing, without a device
    synchronisation. Box coordinates are clipped to the image (``[0, H]`` and ``[0, W]``; unlike
    slicing, a negative one counts as 0). The inputs are not modified (an unmixed batch is returned
    as it is); pixels of unmixed samples and outside the boxes are returned bit for bit
    (``torch.lerp`` is exact at weights 0 and 1). Mixup needs floating inputs; CutMix alone works
    on any dtype.

    Args:
        x: inputs ``(B, ...)``; for CutMix at least ``(B, H, W)``.
        y_soft: targets as ``(B, C)`` distributions (see :func:`one_hot_smooth`).
        lam: own-sample weight, a number or a tensor of 1 or ``B`` values.
        index: ``(B,)`` partner indices.
        use_cutmix: ``(1,)`` or ``(B,)`` booleans, or ``None`` (it needs ``boxes``).
        boxes: ``(top, bottom, left, right)`` or a ``(1 or B, 4)`` integer tensor, or ``None``.

    Returns:
        ``(x_mixed, y_mixed)``.

    Example:
        >>> x = torch.arange(8.0).view(2, 1, 2, 2)
        >>> y = torch.eye(2)
        >>> boxes = torch.tensor([[0, 1, 0, 1], [0, 0, 0, 0]])  # sample 0: top-left pixel; 1: none
        >>> xm, ym = mix_batch(x, y, lam=torch.tensor([0.75, 0.5]), index=torch.tensor([1, 0]),
        ...                    use_cutmix=torch.tensor([True, False]), boxes=boxes)
        >>> xm.flatten(1)
        tensor([[4., 1., 2., 3.],
                [2., 3., 4., 5.]])
        >>> ym
        tensor([[0.7500, 0.2500],
                [0.5000, 0.5000]])
    """
    batch_size = x.shape[0]
    _check_index(index, batch_size)
    if use_cutmix is not None and boxes is None:
        raise ConfigurationError(
            "mix_batch: `use_cutmix` must be None when `boxes` is None (CutMix pastes the boxes; without"
            " them every sample is mixed up)."
        )
    if boxes is not None and x.ndim < 3:
        raise ConfigurationError(
            "cutmix: the inputs need two spatial dimensions, (B, H, W) or (B, C, H, W), got shape"
            f" {tuple(x.shape)}."
        )
    host_lam = _host_scalar(lam)
    host_choice = None if use_cutmix is None else _host_scalar(use_cutmix)
    host_box = None if boxes is None else _host_box(boxes)
    if (
        host_lam is not None
        and (use_cutmix is None or host_choice is not None)
        and (boxes is None or host_box)
    ):
        cut = boxes is not None and (use_cutmix is None or bool(host_choice))
        return _mix_one(x, y_soft, index, float(host_lam), host_box if cut else None)

    if isinstance(lam, Tensor) and lam.ndim == 1 and lam.device == x.device:
        weights = lam
    else:
        weights = torch.as_tensor(
            lam, device=x.device, dtype=None if isinstance(lam, Tensor) else torch.float64
        )
        weights = weights.reshape(-1)
    if weights.shape[0] not in (1, batch_size):
        raise ConfigurationError(
            f"mix: `lam` must be a number or hold 1 or {batch_size} (the batch size) values, got"
            f" {weights.shape[0]}."
        )
    partner = x.index_select(0, index)
    if boxes is None:
        if not x.is_floating_point():
            raise ConfigurationError(f"mixup: the inputs must be floating point, got dtype {x.dtype}.")
        x_mixed = partner.lerp_(x, weights.to(x.dtype).view((-1,) + (1,) * (x.ndim - 1)))
    else:
        height, width = x.shape[-2], x.shape[-1]
        spatial = (-1,) + (1,) * (x.ndim - 3) + (height, width)
        box_tensor = torch.as_tensor(boxes, device=x.device)
        if box_tensor.ndim != 2 or box_tensor.shape[-1] != 4:
            box_tensor = box_tensor.reshape(-1, 4)
        if not x.is_floating_point():
            if use_cutmix is not None:
                raise ConfigurationError(f"mixup: the inputs must be floating point, got dtype {x.dtype}.")
            inside = box_mask(box_tensor, height, width)
            x_mixed = torch.where(inside.view(spatial), partner, x)
        else:
            # The own-sample weight map (G, H, W) is 1 - rows x cols inside a CutMix box and lam on
            # mixup rows, built by one fused outer product from the boxes' row and column ranges.
            # (A broadcast product plus an in-place add: several times faster than addcmul or where.)
            base: Tensor | float = 1.0
            if use_cutmix is not None:
                choice = use_cutmix.to(device=x.device, dtype=torch.bool).reshape(-1)
                box_tensor = box_tensor * choice.view(-1, 1)  # boxes count only where CutMix is chosen
                base = torch.where(choice, 1.0, weights).to(x.dtype).view(-1, 1, 1)  # own weight outside
            in_rows, in_cols = _box_lines(box_tensor, height, width, x.dtype)
            own = (in_rows.unsqueeze(-1) * in_cols.neg_().unsqueeze(-2)).add_(base)
            x_mixed = partner.lerp_(x, own.view(spatial))
    y_mixed = y_soft.index_select(0, index).lerp_(y_soft, weights.view(-1, 1).to(y_soft.dtype))
    return x_mixed, y_mixed


def mix_params(x: Tensor, y_soft: Tensor, params: MixParams) -> tuple[Tensor, Tensor]:
    """:func:`mix_batch` with a draw of :func:`sample_mix_params`.

    Example:
        >>> x, y = torch.rand(4, 1, 8, 8), one_hot_smooth(torch.tensor([0, 1, 2, 3]), num_classes=4)
        >>> params = sample_mix_params(4, torch.Generator().manual_seed(0), cutmix_alpha=1.0,
        ...                            spatial_size=(8, 8))
        >>> x_mix, y_mix = mix_params(x, y, params)
        >>> expected = mix_batch(x, y, params.lam, params.index, params.use_cutmix, params.boxes)
        >>> torch.equal(x_mix, expected[0]) and torch.equal(y_mix, expected[1])
        True
    """
    host = params.host
    if host is None:
        corners = params._corners
        if corners is None or not x.is_floating_point() or x.ndim < 3:
            return mix_batch(x, y_soft, params.lam, params.index, params.use_cutmix, params.boxes)
        return _mix_with_corners(x, y_soft, params.index, params.lam, params.use_cutmix, corners)
    if host[2] is not None and x.ndim < 3:
        raise ConfigurationError(
            "cutmix: the inputs need two spatial dimensions, (B, H, W) or (B, C, H, W), got shape"
            f" {tuple(x.shape)}."
        )
    _check_index(params.index, x.shape[0])
    lam, use_cutmix, box = host
    return _mix_one(x, y_soft, params.index, lam, box if use_cutmix is not False else None)


def _mix_with_corners(
    x: Tensor, y_soft: Tensor, index: Tensor, lam: Tensor, use_cutmix: Tensor | None, corners: Tensor
) -> tuple[Tensor, Tensor]:
    """:func:`mix_batch`'s per-sample path for a draw of :func:`_draw`, bit for bit, in fewer steps.

    The corners are already 0 where CutMix is not applied and lie inside the image, so the boxes
    need no masking, clipping or conversion to ``(top, bottom, left, right)`` rows.
    """
    _check_index(index, x.shape[0])
    own = _own_weights(x, lam, use_cutmix, corners)
    x_mixed = x.index_select(0, index).lerp_(x, own)
    y_mixed = y_soft.index_select(0, index).lerp_(y_soft, lam.view(-1, 1).to(y_soft.dtype))
    return x_mixed, y_mixed


def _own_weights(x: Tensor, lam: Tensor, use_cutmix: Tensor | None, corners: Tensor) -> Tensor:
    """The own-sample weight map of :func:`_mix_with_corners`, shaped to broadcast against ``x``.

    0 inside a CutMix box and 1 outside it; λ on mixup samples (``use_cutmix`` False).
    """
    height, width = x.shape[-2], x.shape[-1]
    size = max(height, width)
    steps = _constant(("steps", size, x.dtype), x.device, lambda d: _steps(size, x.dtype, d))
    low, high = steps.index_select(0, corners.view(-1).long()).view(2, 2, -1, size).unbind(1)
    in_rows, in_cols = torch.sub(low, high).unbind(0)  # (B, L) each, 0/1
    if height < size:
        in_rows = in_rows[:, :height]
    if width < size:
        in_cols = in_cols[:, :width]
    base: Tensor | float = 1.0
    if use_cutmix is not None:  # the own weight outside the boxes: 1 for CutMix, λ for mixup
        base = lam.masked_fill(use_cutmix, 1.0).to(x.dtype).view(-1, 1, 1)
    own = (in_rows.unsqueeze(-1) * in_cols.neg_().unsqueeze(-2)).add_(base)
    return own.view((-1,) + (1,) * (x.ndim - 3) + (height, width))


def mixup(x: Tensor, y_soft: Tensor, lam: LamLike, index: Tensor) -> tuple[Tensor, Tensor]:
    """Mixup: ``lam * x + (1 - lam) * x[index]`` and the same for the target distributions.

    ``lam`` is one number for the batch or one per sample (see :func:`mix_batch`).

    Example:
        >>> xm, ym = mixup(torch.tensor([[2.0], [4.0]]), torch.eye(2), 0.25, torch.tensor([1, 0]))
        >>> xm.flatten().tolist(), ym[0].tolist()
        ([3.5, 2.5], [0.25, 0.75])
    """
    return mix_batch(x, y_soft, lam, index)


def cutmix(x: Tensor, y_soft: Tensor, lam: LamLike, index: Tensor, boxes: BoxesLike) -> tuple[Tensor, Tensor]:
    """CutMix: paste ``x[index]`` inside ``boxes`` (last two dimensions); targets mixed with ``lam``.

    Pass the λ of the pasted area (:func:`box_lam`) for consistent targets (what ``correct_lam``
    does); ``lam`` and ``boxes`` hold one entry for the batch or one per sample.

    Example:
        >>> x = torch.zeros(2, 1, 4, 4)
        >>> x[1] = 1.0
        >>> box = torch.tensor([0, 2, 0, 2])
        >>> xm, ym = cutmix(x, torch.eye(2), box_lam(box, 4, 4), torch.tensor([1, 0]), box)
        >>> xm[0, 0]
        tensor([[1., 1., 0., 0.],
                [1., 1., 0., 0.],
                [0., 0., 0., 0.],
                [0., 0., 0., 0.]])
        >>> ym[0]
        tensor([0.7500, 0.2500])
    """
    return mix_batch(x, y_soft, lam, index, boxes=boxes)


class MixParams:
    """One batch's mixing draw, ready for :func:`mix_params` (or :func:`mix_batch`).

    Attributes:
        index: ``(B,)`` partner of every sample.
        lam: own-sample weight of the target (after CutMix's area correction), float64: ``(1,)``
            in mode ``"batch"``, ``(B,)`` otherwise. 1 means the sample is not mixed.
        use_cutmix: per-entry choice of CutMix when both methods are active, else ``None``.
        boxes: ``(1 or B, 4)`` CutMix boxes when CutMix is active (empty for mixup entries), else
            ``None``.
        host: mode ``"batch"``'s draw as Python numbers ``(lam, use_cutmix, box)``, else ``None``;
            :func:`mix_params` applies it without reading tensors back, and ``lam``,
            ``use_cutmix`` and ``boxes`` are made from it (CPU tensors) when first read.

    Example:
        >>> params = MixParams.from_host(torch.tensor([1, 0]), (0.75, None, None))
        >>> params.lam, params.use_cutmix, params.boxes
        (tensor([0.7500], dtype=torch.float64), None, None)
    """

    __slots__ = ("_boxes", "_corners", "_lam", "_use_cutmix", "host", "index")

    def __init__(
        self,
        index: Tensor,
        lam: Tensor,
        use_cutmix: Tensor | None = None,
        boxes: Tensor | None = None,
    ) -> None:
        self.index = index
        self._lam: Tensor | None = lam
        self._use_cutmix = use_cutmix
        self._boxes = boxes
        self._corners: Tensor | None = None
        self.host: HostDraw | None = None

    @classmethod
    def from_host(cls, index: Tensor, host: HostDraw) -> MixParams:
        """The draw ``host = (lam, use_cutmix, box)`` held as Python numbers, for every sample alike."""
        params = cls.__new__(cls)
        params.index, params.host = index, host
        params._lam = params._use_cutmix = params._boxes = params._corners = None
        return params

    @classmethod
    def _from_corners(
        cls, index: Tensor, lam: Tensor, use_cutmix: Tensor | None, corners: Tensor | None
    ) -> MixParams:
        """Per-sample draws with their boxes as ``(2, 2, B)`` float64 corners (0: no CutMix).

        :func:`mix_params` builds the weight map from the corners, ``boxes`` from them when read.
        """
        params = cls(index, lam, use_cutmix)
        params._corners = corners
        return params

    @property
    def lam(self) -> Tensor:  # noqa: D102 (documented in the class)
        if self._lam is None:
            assert self.host is not None
            self._lam = torch.tensor((self.host[0],), dtype=torch.float64)
        return self._lam

    @property
    def use_cutmix(self) -> Tensor | None:  # noqa: D102
        if self._use_cutmix is None and self.host is not None and self.host[1] is not None:
            self._use_cutmix = torch.tensor((self.host[1],))
        return self._use_cutmix

    @property
    def boxes(self) -> Tensor | None:  # noqa: D102
        if self._boxes is None:
            if self._corners is not None:
                self._boxes = _as_boxes(self._corners)
            elif self.host is not None and self.host[2] is not None:
                self._boxes = torch.tensor((self.host[2],), dtype=torch.int64)
        return self._boxes

    def __repr__(self) -> str:
        return (
            f"MixParams(index={self.index!r}, lam={self.lam!r}, use_cutmix={self.use_cutmix!r},"
            f" boxes={self.boxes!r})"
        )


#: Mode ``"batch"``'s single draw as Python numbers: ``(lam, use_cutmix, box)``.
HostDraw = tuple[float, Union[bool, None], Union[tuple[int, int, int, int], None]]


class _MixOptions(NamedTuple):
    """What a draw depends on besides its random numbers: :func:`sample_mix_params`' settings."""

    mixup_alpha: float
    cutmix_alpha: float
    cutmix_minmax: Sequence[float] | None
    prob: float
    switch_prob: float
    correct_lam: bool
    spatial_size: tuple[int, int] | None

    @property
    def methods(self) -> tuple[bool, bool, float, int]:
        """``(use_mixup, use_cutmix, CutMix's alpha, uniforms per draw)``."""
        use_cut = self.cutmix_alpha > 0.0 or self.cutmix_minmax is not None
        rows = 2 + (0 if not use_cut else 2 if self.cutmix_minmax is None else 4)
        cut_alpha = self.cutmix_alpha if self.cutmix_minmax is None else 1.0
        return self.mixup_alpha > 0.0, use_cut, cut_alpha, rows


def _draw(
    draws: int,
    generator: torch.Generator | None,
    device: torch.device,
    options: _MixOptions,
    last_alone: bool,
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """``draws`` independent (λ, method, box) draws, all on ``device`` from one uniform block.

    Returns λ, the method choice (``None`` unless both methods are active) and the box corners
    ``(2, 2, draws)`` float64 (rows, columns) x (low, high), all 0 where CutMix is not applied
    (``None`` without CutMix).
    """
    mixup_alpha, cutmix_alpha, cutmix_minmax, prob, switch_prob, correct_lam, spatial_size = options
    use_mixup, use_cut, cut_alpha, rows = options.methods
    u = torch.rand((rows, draws), generator=generator, device=device, dtype=torch.float64)
    # `mixed` stays None when every draw mixes (u < 1 <= prob): no mask to build or apply.
    mixed: Tensor | None = None
    if prob < 1.0 or last_alone:
        mixed = u[0] < prob
        if last_alone:
            mixed[-1] = False  # the odd sample out of mode "pair" has no partner
    choice: Tensor | None = None
    if use_mixup and use_cut:
        choice = u[1] < switch_prob
        if cut_alpha == mixup_alpha:
            lam = _beta_full(draws, mixup_alpha, generator, device)
        else:  # the (draws, 2) Dirichlet concentration straight from the choice
            cut_pair = _constant(
                ("pair", float(cut_alpha)),
                device,
                lambda d: torch.full((2,), float(cut_alpha), dtype=torch.float64, device=d),
            )
            concentration = torch.where(choice.unsqueeze(-1), cut_pair, float(mixup_alpha))
            lam = _dirichlet_first(concentration, generator, *_alpha_span(options))
    elif use_mixup or (use_cut and cutmix_minmax is None):
        lam = _beta_full(draws, mixup_alpha if use_mixup else cutmix_alpha, generator, device)
    else:  # CutMix with min-max boxes only (the box sets λ), or nothing active
        lam = torch.ones(draws, dtype=torch.float64, device=device)
    if mixed is not None:
        lam = torch.where(mixed, lam, 1.0)
    if not use_cut:
        return lam, None, None
    assert spatial_size is not None
    height, width = spatial_size
    cut = choice if mixed is None else mixed if choice is None else mixed & choice
    corners = _box_corners(lam, u[2:], height, width, cutmix_minmax)  # (2, 2, G)
    if cut is not None:
        corners.mul_(cut)  # no box where CutMix is not applied
    if correct_lam or cutmix_minmax is not None:
        area = corners.diff(dim=1).prod(0).squeeze(0)
        box_lams = 1.0 - area / float(height * width)
        lam = box_lams if cut is None else torch.where(cut, box_lams, lam)
    return lam, choice, corners


def _alpha_span(options: _MixOptions) -> tuple[float, float]:
    """The least and greatest alpha of a per-draw Beta table when both methods are active."""
    _, _, cut_alpha, _ = options.methods
    return min(cut_alpha, options.mixup_alpha), max(cut_alpha, options.mixup_alpha)


class _TorchHostStream:
    """A CPU ``torch.Generator`` (or torch's global CPU RNG) as a source of host draws."""

    __slots__ = ("generator",)

    def __init__(self, generator: torch.Generator | None) -> None:
        self.generator = generator

    def uniforms(self, count: int) -> list[float]:
        values: list[float] = torch.rand(
            count, generator=self.generator, dtype=torch.float64, device=_CPU
        ).tolist()
        return values

    def beta(self, alpha: float, _: float, span: tuple[float, float] | None = None) -> float:
        """One Beta(alpha, alpha) draw, exactly as one entry of :func:`_draw`'s table.

        ``span``: the least and greatest alpha of that table (see :func:`_dirichlet_first`), when
        it holds two; else ``alpha`` alone.
        """
        concentration = _constant(
            ("concentration", float(alpha)),
            _CPU,
            lambda d: torch.full((1, 2), float(alpha), dtype=torch.float64, device=d),
        )
        smallest, largest = (alpha, alpha) if span is None else span
        draw: list[float] = _dirichlet_first(concentration, self.generator, smallest, largest).tolist()
        return draw[0]


def _draw_on_host(stream: _TorchHostStream | HostRandom, options: _MixOptions) -> HostDraw:
    """One (λ, method, box) draw of :func:`_draw` made with Python numbers.

    From a torch generator (:class:`_TorchHostStream`) it is ``_draw(1, ...)`` bit for bit: the same
    uniform block and Beta draw, then every step an exactly rounded float64 operation (``sqrt``,
    products, ``floor`` ...) in the same order, with two tensor operations instead of forty. From a
    :class:`~lit_noise._host_random.HostRandom` stream it makes no tensor operation at all.
    """
    mixup_alpha, cutmix_alpha, cutmix_minmax, prob, switch_prob, correct_lam, spatial_size = options
    use_mixup, use_cut, cut_alpha, rows = options.methods
    u = stream.uniforms(rows)
    mixed = u[0] < prob
    choice: bool | None = None
    lam = 1.0
    if use_mixup and use_cut:
        choice = u[1] < switch_prob
        alpha = cut_alpha if choice else mixup_alpha
        if isinstance(stream, _TorchHostStream):  # as one entry of _draw's two-alpha table
            lam = stream.beta(alpha, alpha, _alpha_span(options))
        else:
            lam = stream.beta(alpha, alpha)
    elif use_mixup or (use_cut and cutmix_minmax is None):
        alpha = mixup_alpha if use_mixup else cutmix_alpha
        lam = stream.beta(alpha, alpha)
    if not mixed:
        lam = 1.0
    if not use_cut:
        return lam, None, None
    assert spatial_size is not None
    height, width = spatial_size
    cut = mixed and choice is not False
    if not cut:
        return lam, choice, (0, 0, 0, 0)
    if cutmix_minmax is None:
        side = math.sqrt(1.0 - lam)
        top, bottom = _centred_range(u[2], height, math.floor(height * side))
        left, right = _centred_range(u[3], width, math.floor(width * side))
    else:
        top, bottom = _placed_range(u[2], u[4], height, cutmix_minmax)
        left, right = _placed_range(u[3], u[5], width, cutmix_minmax)
    if correct_lam or cutmix_minmax is not None:
        lam = 1.0 - float((bottom - top) * (right - left)) / float(height * width)
    return lam, choice, (top, bottom, left, right)


def _centred_range(u: float, extent: int, size: int) -> tuple[int, int]:
    """``[start, start + size)`` around the pixel ``floor(u * extent)``, clipped to ``[0, extent]``.

    :func:`_box_corners` without ``minmax``, in exact integer arithmetic.
    """
    start = math.floor(u * extent) - size // 2
    return min(max(start, 0), extent), min(max(start + size, 0), extent)


def _placed_range(u_size: float, u_start: float, extent: int, minmax: Sequence[float]) -> tuple[int, int]:
    """A side uniform in ``[int(lo * extent), int(hi * extent))``, placed uniformly in the extent.

    :func:`_box_corners` with ``minmax``.
    """
    low, high = int(extent * minmax[0]), int(extent * minmax[1])
    size = math.floor(u_size * float(high - low)) + low
    start = math.floor(u_start * (float(extent) - size + 1.0))
    return start, start + size


def sample_mix_params(
    batch_size: int,
    generator: torch.Generator | None = None,
    *,
    mode: str = "batch",
    mixup_alpha: float = 1.0,
    cutmix_alpha: float = 0.0,
    cutmix_minmax: Sequence[float] | None = None,
    prob: float = 1.0,
    switch_prob: float = 0.5,
    correct_lam: bool = True,
    spatial_size: Sequence[int] | None = None,
    device: torch.device | str | None = None,
    host_generator: torch.Generator | HostRandom | None = None,
) -> MixParams:
    """Draw the partners, λs, methods and boxes of one batch (timm's ``Mixup`` semantics).

    Mixup is active when ``mixup_alpha > 0``, CutMix when ``cutmix_alpha > 0`` or ``cutmix_minmax``
    is given; when both are, CutMix is chosen with probability ``switch_prob``. Each draw (one for
    the batch in mode ``"batch"``, one per pair in ``"pair"``, one per sample in ``"elem"``) mixes
    with probability ``prob`` (else λ = 1), with λ ~ Beta(alpha, alpha) of the chosen method. A
    CutMix box comes from :func:`cutmix_boxes`; with ``correct_lam`` (always with
    ``cutmix_minmax``) λ becomes the pasted-area λ. Partners come from :func:`partner_index`
    (pairs in mode ``"pair"``, where both members of a pair share λ, method and box).

    The partners and the per-sample draws are made on the generator's device without reading
    anything back. Mode ``"batch"`` makes its single draw on the host -- from ``host_generator``
    (a CPU ``torch.Generator``, or a pure-Python :class:`~lit_noise.HostRandom` stream, which
    makes no tensor operation at all), else from ``generator`` when that is a CPU one, else from
    torch's global CPU RNG -- so that :func:`mix_params` applies it as a scalar and a slice, again
    without a device synchronisation. The other modes draw nothing on the host: a
    ``host_generator`` given with them is a :class:`~lit_noise.ConfigurationError`.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> p = sample_mix_params(4, g, mode="elem", mixup_alpha=1.0, cutmix_alpha=1.0, spatial_size=(8, 8))
        >>> p.lam.shape, p.use_cutmix.shape, p.boxes.shape
        (torch.Size([4]), torch.Size([4]), torch.Size([4, 4]))
    """
    if mode not in MIX_MODES:
        raise ConfigurationError(f"sample_mix_params: `mode` must be one of {MIX_MODES}, got {mode!r}.")
    cutmix_minmax = _check_minmax("sample_mix_params", cutmix_minmax)
    use_cut = cutmix_alpha > 0.0 or cutmix_minmax is not None
    size: tuple[int, int] | None = None
    if spatial_size is not None and len(spatial_size) == 2:
        size = (int(spatial_size[0]), int(spatial_size[1]))
    if use_cut and size is None:
        raise ConfigurationError(
            f"sample_mix_params: CutMix needs the inputs' `spatial_size` (H, W), got {spatial_size!r}."
        )
    if host_generator is not None and mode != "batch":
        raise _host_generator_error("sample_mix_params", mode)
    if generator is not None and device is None:
        device = generator.device
    options = _MixOptions(mixup_alpha, cutmix_alpha, cutmix_minmax, prob, switch_prob, correct_lam, size)
    return _sample(batch_size, generator, device, mode, options, host_generator)


def _check_minmax(owner: str, value: Any) -> tuple[float, float] | None:
    """``cutmix_minmax`` checked: ``None`` or ``(min, max)`` fractions with ``0 < min < max <= 1``."""
    if value is None:
        return None
    pair = _as_decimals(value) if hasattr(value, "tolist") else value  # a tensor or a NumPy array
    if isinstance(pair, (str, bytes)) or not isinstance(pair, Sequence) or len(pair) != 2:
        raise fail(owner, "cutmix_minmax", value, "None or a (min, max) pair of image fractions")
    # Entries may be NumPy or 0-d tensor scalars.
    pair = [_as_decimals(entry) if getattr(entry, "ndim", None) == 0 else entry for entry in pair]
    low = check_range(owner, "cutmix_minmax", pair[0], 0.0, 1.0, low_open=True)
    high = check_range(owner, "cutmix_minmax", pair[1], 0.0, 1.0, low_open=True)
    if high <= low:
        raise fail(owner, "cutmix_minmax", list(pair), "a (min, max) pair with 0 < min < max <= 1")
    return low, high


def _as_decimals(value: Any) -> Any:
    """A tensor's or array's ``tolist()``, a narrow float entry as the shortest decimal it rounds from.

    ``torch.tensor([0.3, 0.7])`` holds 0.699999988 for 0.7, and ``int(10 * 0.699999988)`` is 6 where
    the pair of Python floats gives 7: the fraction meant is the decimal that the dtype printed.
    Likewise for float16 and bfloat16 (bfloat16's 0.7 is 0.69921875).
    """
    listed = value.tolist()
    rounds = _rounding_to(getattr(value, "dtype", None))
    if rounds is None:
        return listed
    if isinstance(listed, float):
        return _shortest_decimal(listed, rounds)
    return [_shortest_decimal(v, rounds) if isinstance(v, float) else v for v in listed]


def _rounding_to(dtype: Any) -> Callable[[float], float] | None:
    """How a Python float rounds to ``dtype`` (a narrow float of torch or NumPy), else ``None``."""
    if isinstance(dtype, torch.dtype):
        if dtype == torch.float32:
            return _float32
        if dtype in (torch.float16, torch.bfloat16):
            return lambda v: float(torch.tensor(v, dtype=dtype).item())
        return None
    if str(dtype) in ("float32", "float16"):  # NumPy's; its scalar type rounds
        return lambda v: float(dtype.type(v))
    return None


def _shortest_decimal(value: float, rounds: Callable[[float], float]) -> float:
    """The shortest decimal (at most 9 significant digits) that ``rounds`` to ``value``."""
    for digits in range(1, 10):
        shortest = float(f"{value:.{digits}g}")
        if rounds(shortest) == value:
            return shortest
    return value


def _float32(value: float) -> float:
    """``value`` rounded to the nearest float32 (as a Python float)."""
    rounded: float = _FLOAT32.unpack(_FLOAT32.pack(value))[0]
    return rounded


_FLOAT32 = struct.Struct("f")


def _host_generator_error(owner: str, mode: str) -> ConfigurationError:
    """The error for a ``host_generator`` given to a mode that makes no draw on the host."""
    return ConfigurationError(
        f"{owner}: `host_generator` must be None in mode {mode!r}, which makes every draw from"
        " `generator` (only mode 'batch' draws on the host)."
    )


def _sample(
    batch_size: int,
    generator: torch.Generator | None,
    device: torch.device | str | None,
    mode: str,
    options: _MixOptions,
    host_generator: torch.Generator | HostRandom | None = None,
) -> MixParams:
    """:func:`sample_mix_params` after its checks (MixupDataModule checks once, then calls this)."""
    pairs = mode == "pair"
    index, perm = _permutation_partners(batch_size, generator, device, pairs)
    if mode == "batch":
        stream: _TorchHostStream | HostRandom
        if isinstance(host_generator, HostRandom):
            stream = host_generator
        elif host_generator is None and generator is not None and generator.device.type == "cpu":
            stream = _TorchHostStream(generator)
        else:
            stream = _TorchHostStream(host_generator)
        return MixParams.from_host(index, _draw_on_host(stream, options))
    draws = (batch_size + 1) // 2 if pairs else batch_size
    lam, choice, corners = _draw(draws, generator, perm.device, options, pairs and batch_size % 2 == 1)
    if pairs:
        group = torch.empty_like(perm)
        group[perm] = torch.arange(batch_size, device=perm.device) // 2
        lam = lam[group]
        choice = None if choice is None else choice[group]
        corners = None if corners is None else corners.index_select(2, group)
    return MixParams._from_corners(index, lam, choice, corners)
