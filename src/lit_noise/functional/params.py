"""Pure tensor helpers for noise on parameters and gradients (no Lightning, explicit generators).

:class:`FlatLayout` lays a list of tensors (the selected parameters) out in *chunks*: runs of
consecutive tensors of one device and dtype holding at most ``chunk_numel`` elements (a tensor
larger than that is a chunk of its own). The noise of a chunk is **one** random draw into a
preallocated scratch buffer, viewed as tensors shaped like the chunk's members and added with one
fused ``torch._foreach_*`` call, so the work per step is a handful of calls whatever the number of
tensors. The scratch buffer holds one chunk, so adding and later subtracting the same noise
(replaying the generator) needs no more memory than the largest of ``chunk_numel`` and the largest
tensor (twice that, transiently, for Laplace draws, and a float32 temporary of the chunk's size for
the uniform and Laplace draws of float16 / bfloat16 chunks, which are drawn in float32 and rounded);
keeping a clean copy (``keep_copy=True``) adds one copy of the tensors.

Per-tensor statistics (``stats=True``, for noise relative to each tensor's standard deviation) use a
second, *blocked* layout of the same chunks: each tensor starts at a multiple of
:data:`STATS_BLOCK` elements, so the chunk viewed as ``(blocks, STATS_BLOCK)`` has every row inside
one tensor, and a handful of fused reductions over all the rows (plus one segment sum over the
row sums) give every tensor's statistics at once, whatever the number of tensors. The clean copy
(when kept) and the scratch buffer use that layout's offsets, padded with up to
``STATS_BLOCK - 1`` elements per tensor; the draws still fill the first ``numel`` elements of the
scratch buffer in tensor order, so the noise stream is that of the plain layout.

Draws are a function of the generators' state only: a chunk of ``n`` elements takes ``n`` values
from its device's generator, chunks in order, so reseeding the generators and replaying gives the
same noise bit for bit.

Parameter names are selected by :func:`select_names` with shell-style globs (``fnmatch``:
``"encoder.*"``, ``"*.bias"``) or regular expressions prefixed with ``re:`` (matched against the
whole name).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Union

import torch
from torch import Tensor

from lit_noise._validation import fail
from lit_noise.errors import ConfigurationError

__all__ = [
    "DEFAULT_CHUNK_NUMEL",
    "STATS_BLOCK",
    "FlatLayout",
    "Patterns",
    "Sampler",
    "gaussian_",
    "laplace_",
    "normalize_patterns",
    "select_names",
    "uniform_",
]

#: Patterns accepted by ``include`` / ``exclude``: one pattern, a sequence of them, or ``None``.
Patterns = Union[str, Sequence[str], None]

#: Fills a tensor in place with noise drawn from a generator (the return value is ignored).
Sampler = Callable[[Tensor, torch.Generator], object]

#: Elements per random draw by device type (CPU draws are cheap to split; GPU launches are not).
DEFAULT_CHUNK_NUMEL: dict[str, int] = {"cpu": 1 << 18}
_ACCELERATOR_CHUNK_NUMEL = 1 << 24
_FULL_PRECISION = (torch.float32, torch.float64)
#: Elements per row of the blocked layout behind per-tensor statistics (``FlatLayout(stats=True)``).
STATS_BLOCK = 32
#: Device types whose per-tensor noise factors go in by one ``_foreach_mul_`` (one kernel per tensor
#: elsewhere: there a multiplication by the factors repeated over the elements is fewer launches).
_FOREACH_SCALING = frozenset({"cpu"})
_REGEX_PREFIX = "re:"


# --------------------------------------------------------------------------------------------
# Selection by name


def normalize_patterns(owner: str, name: str, patterns: Patterns) -> tuple[str, ...] | None:
    """Check ``patterns`` and return them as a tuple (``None`` stays ``None``).

    A pattern is a glob (``fnmatch``; ``*`` also matches dots) or a regular expression prefixed
    with ``re:`` that must match the whole name.

    Example:
        >>> normalize_patterns("WeightNoise", "include", "encoder.*")
        ('encoder.*',)
        >>> normalize_patterns("WeightNoise", "exclude", ["*.bias", "re:.*norm[0-9][.].*"])
        ('*.bias', 're:.*norm[0-9][.].*')
    """
    if patterns is None:
        return None
    if isinstance(patterns, str):
        items: tuple[object, ...] = (patterns,)
    elif isinstance(patterns, Sequence) and not isinstance(patterns, (bytes, bytearray)):
        items = tuple(patterns)
    else:
        raise fail(owner, name, patterns, "None, a pattern string or a sequence of pattern strings")
    if name == "include" and not items:
        raise fail(owner, name, patterns, "None (every trainable parameter) or a non-empty list of patterns")
    for item in items:
        if not isinstance(item, str) or not item or item == _REGEX_PREFIX:
            raise fail(
                owner, name, patterns, "non-empty pattern strings (globs, or regexes prefixed with 're:')"
            )
        if item.startswith(_REGEX_PREFIX):
            try:
                re.compile(item[len(_REGEX_PREFIX) :])
            except re.error as err:
                raise fail(owner, name, item, f"a valid regular expression after 're:' ({err})") from None
    return tuple(str(item) for item in items)


def _matcher(pattern: str) -> Callable[[str], bool]:
    if pattern.startswith(_REGEX_PREFIX):
        regex = re.compile(pattern[len(_REGEX_PREFIX) :])
        return lambda name: regex.fullmatch(name) is not None
    return lambda name: fnmatch.fnmatchcase(name, pattern)


def _some(names: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def select_names(
    owner: str,
    names: Sequence[str],
    include: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
) -> list[int]:
    """Indices of the ``names`` matched by an ``include`` pattern (all if ``None``) and no ``exclude`` one.

    Every pattern must match at least one name, and every ``exclude`` pattern one of the names
    ``include`` selects, so that a typo is an error rather than a silent no-op; the error lists some
    of the names.

    Example:
        >>> names = ["encoder.0.weight", "encoder.0.bias", "head.weight", "head.bias"]
        >>> select_names("WeightNoise", names, include=["encoder.*"], exclude=["*.bias"])
        [0]
        >>> select_names("WeightNoise", names, exclude=["re:.*[.]bias"])
        [0, 2]
    """
    if not names:
        raise ConfigurationError(f"{owner}: the model has no parameter to add noise to.")
    for arg, patterns in (("include", include), ("exclude", exclude)):
        for pattern in patterns or ():
            if not any(_matcher(pattern)(name) for name in names):
                raise ConfigurationError(
                    f"{owner}: `{arg}` pattern {pattern!r} matches no parameter; patterns are globs on"
                    " the full dotted name ('encoder.*', '*.bias') or regexes prefixed with 're:'."
                    f" Parameters: {_some(list(names))}."
                )
    included = [_matcher(p) for p in include] if include is not None else None
    selected = [i for i, name in enumerate(names) if included is None or any(m(name) for m in included)]
    for pattern in exclude or ():
        excluded_one = _matcher(pattern)
        if included is not None and not any(excluded_one(names[i]) for i in selected):
            raise ConfigurationError(
                f"{owner}: `exclude` pattern {pattern!r} removes nothing from what"
                f" include={list(include or ())} selects: {_some([names[i] for i in selected])}."
            )
    excluded = [_matcher(p) for p in exclude or ()]
    chosen = [i for i in selected if not any(m(names[i]) for m in excluded)]
    if not chosen:
        raise ConfigurationError(
            f"{owner}: include={list(include) if include else None} and exclude={list(exclude or ())}"
            f" select no parameter out of: {_some(list(names))}."
        )
    return chosen


# --------------------------------------------------------------------------------------------
# Samplers: fill a buffer in place


def gaussian_(out: Tensor, std: float, mean: float = 0.0, generator: torch.Generator | None = None) -> Tensor:
    """Fill ``out`` with ``mean + std * N(0, 1)`` draws (in place; returns ``out``).

    Float16 / bfloat16 draws are unbiased as torch makes them (it rounds normal draws computed in
    float32), so they need no float32 detour, unlike :func:`uniform_` and :func:`laplace_`.

    Example:
        >>> out = gaussian_(torch.empty(100_000), std=0.5, generator=torch.Generator().manual_seed(0))
        >>> round(out.std().item(), 2)
        0.5
    """
    return out.normal_(mean, std, generator=generator)


def uniform_(out: Tensor, width: float, generator: torch.Generator | None = None) -> Tensor:
    """Fill ``out`` with ``U(-width / 2, width / 2)`` draws (in place; returns ``out``).

    A float16 / bfloat16 ``out`` gets float32 draws (one temporary float32 tensor of its size)
    rounded into it by ``copy_``, which may give ``±width / 2`` itself: torch's 16-bit ``uniform_``
    rounds float32 draws too but moves those that round up to ``width / 2`` onto ``-width / 2``, a
    mean of ``-width / 1024`` in bfloat16.

    Example:
        >>> out = uniform_(torch.empty(1000), width=2.0, generator=torch.Generator().manual_seed(0))
        >>> bool(out.min() >= -1.0 and out.max() < 1.0)
        True
    """
    half = 0.5 * width
    if out.dtype in (torch.float16, torch.bfloat16):
        draws = torch.empty_like(out, dtype=torch.float32).uniform_(-half, half, generator=generator)
        return out.copy_(draws)
    return out.uniform_(-half, half, generator=generator)


def laplace_(out: Tensor, scale: float, generator: torch.Generator | None = None) -> Tensor:
    """Fill ``out`` with ``Laplace(0, scale)`` draws by inverting the CDF of one uniform draw.

    Needs one temporary tensor of ``out``'s size (the signs). A float16 / bfloat16 ``out`` gets the
    float32 draws rounded once (the temporary is then a float32 tensor of its size holding the
    uniforms, and ``out`` the signs): 16-bit uniforms would bias the mean and cut the tails near
    ``5 * scale`` (bfloat16).

    Example:
        >>> out = laplace_(torch.empty(200_000), scale=1.0, generator=torch.Generator().manual_seed(0))
        >>> round(out.abs().mean().item(), 1)  # E|X| = scale
        1.0
    """
    if out.dtype in (torch.float16, torch.bfloat16):
        u = torch.empty_like(out, dtype=torch.float32).uniform_(-1.0, 1.0, generator=generator)
        out.copy_(u).sign_()  # nonzero u are >= 2**-24 in size (float16's least subnormal): signs kept
        magnitude = u.abs_().clamp_(max=1.0 - torch.finfo(u.dtype).eps).neg_().log1p_().mul_(-scale)
        return out.mul_(magnitude)
    out.uniform_(-1.0, 1.0, generator=generator)
    sign = torch.sign(out)
    tiny = torch.finfo(out.dtype).eps
    return out.abs_().clamp_(max=1.0 - tiny).neg_().log1p_().mul_(sign).mul_(-scale)


# --------------------------------------------------------------------------------------------
# Layout


@dataclass
class _Blocks:
    """One chunk's blocked layout for per-tensor statistics (see the module docstring)."""

    rows: Tensor  # the scratch buffer viewed as (rows, STATS_BLOCK): where the shifted values go
    clean_rows: Tensor | None  # the clean copy viewed likewise, when kept
    views: list[Tensor]  # pieces of ``rows`` shaped like the chunk's tensors
    firsts: Tensor  # int64 flat index of each tensor's first element
    rows_per_tensor: Tensor  # int64 number of rows of each tensor (segment lengths)
    inverse_numel: Tensor  # float64 (tensors, 1): one over each tensor's number of elements
    pads: Tensor | None  # int64 flat indices of the padding elements; ``None`` when there are none


@dataclass
class _Chunk:
    """Consecutive tensors of one device and dtype drawn together."""

    indices: list[int]
    tensors: list[Tensor]
    noise: list[Tensor]  # views of the scratch buffer shaped like ``tensors``
    flat: Tensor  # the scratch buffer's first ``numel`` elements
    lengths: Tensor  # int64 numel of each tensor, on the device (segment reductions)
    counts: Tensor  # the same as floats of the statistics dtype
    factor: Tensor  # one value per tensor: the per-tensor factors of the last scaled draw
    factor_views: list[Tensor]  # 0-d views of ``factor``, for one fused ``_foreach_mul_``
    clean: list[Tensor] | None  # views of the clean copy, when kept
    clean_flat: Tensor | None  # the clean copy as one run (kept, and not blocked for statistics)
    blocks: _Blocks | None  # the blocked layout, for ``stats=True``


def _padded(numel: int, block: int) -> int:
    return -(-numel // block) * block


def _views(flat: Tensor, like: Sequence[Tensor], block: int = 1) -> list[Tensor]:
    """Pieces of ``flat`` shaped like the tensors ``like``, each starting at a multiple of ``block``."""
    pieces = torch.split(flat, [_padded(t.numel(), block) for t in like])
    return [piece[: t.numel()].view(t.shape) for piece, t in zip(pieces, like, strict=True)]


def _blocks(rows: Tensor, clean: Tensor | None, like: Sequence[Tensor]) -> _Blocks:
    """The blocked layout of the tensors ``like`` over ``rows`` (and ``clean``), both of the padded size."""
    block, device = STATS_BLOCK, rows.device
    sizes = [t.numel() for t in like]
    rows_per = [_padded(n, block) // block for n in sizes]
    firsts = [0]
    for count in rows_per[:-1]:
        firsts.append(firsts[-1] + count * block)
    pads = [
        i
        for first, n, count in zip(firsts, sizes, rows_per, strict=True)
        for i in range(first + n, first + count * block)
    ]

    def index(values: Sequence[int]) -> Tensor:
        return torch.tensor(values, device=device, dtype=torch.int64)

    return _Blocks(
        rows=rows.view(-1, block),
        clean_rows=clean.view(-1, block) if clean is not None else None,
        views=_views(rows, like, block),
        firsts=index(firsts),
        rows_per_tensor=index(rows_per),
        inverse_numel=1.0 / torch.tensor(sizes, device=device, dtype=torch.float64).unsqueeze(1),
        pads=index(pads) if pads else None,
    )


def default_chunk_numel(device: torch.device) -> int:
    """Elements per draw on ``device``: ``2**18`` on CPU, ``2**24`` on accelerators.

    Example:
        >>> default_chunk_numel(torch.device("cpu"))
        262144
    """
    return DEFAULT_CHUNK_NUMEL.get(device.type, _ACCELERATOR_CHUNK_NUMEL)


class FlatLayout:
    """Chunked flat layout of ``tensors`` for batched draws, copies and per-tensor statistics.

    Args:
        tensors: the tensors noise goes to (parameters); zero-size tensors are not allowed.
        chunk_numel: elements per draw (at least the largest tensor); ``None`` picks
            :func:`default_chunk_numel` for each device.
        keep_copy: allocate a clean copy of ``tensors`` (for :meth:`save_` / :meth:`restore_`).
        stats: lay the scratch buffer and the clean copy out in blocks for :meth:`std_` (and
            ``add_(relative=True)``), at the cost of up to ``STATS_BLOCK - 1`` padding elements per
            tensor in each; :meth:`replace_` then is not available.

    Example:
        >>> params = [torch.zeros(3, 2), torch.ones(4)]
        >>> layout = FlatLayout(params, keep_copy=True)
        >>> gens = {torch.device("cpu"): torch.Generator().manual_seed(0)}
        >>> layout.save_()
        >>> _ = layout.add_(lambda out, g: gaussian_(out, 0.1, generator=g), gens)
        >>> bool(params[1].ne(1).all())
        True
        >>> layout.restore_()
        >>> bool(params[1].eq(1).all())
        True
    """

    def __init__(
        self,
        tensors: Sequence[Tensor],
        chunk_numel: int | None = None,
        keep_copy: bool = False,
        stats: bool = False,
    ) -> None:
        self.tensors = list(tensors)
        self.keep_copy = keep_copy
        self.chunks: list[_Chunk] = []
        self._buffers: list[Tensor] = []
        block = STATS_BLOCK if stats else 1
        groups: dict[tuple[torch.device, torch.dtype], list[int]] = {}
        for index, tensor in enumerate(self.tensors):
            if tensor.numel() == 0:
                raise ValueError(f"FlatLayout: tensor {index} has no elements.")
            groups.setdefault((tensor.device, tensor.dtype), []).append(index)
        for (device, dtype), indices in groups.items():
            budget = chunk_numel if chunk_numel is not None else default_chunk_numel(device)
            runs: list[list[int]] = [[]]
            size = 0
            for index in indices:
                numel = self.tensors[index].numel()
                if runs[-1] and size + numel > budget:
                    runs.append([])
                    size = 0
                runs[-1].append(index)
                size += numel
            run_sizes = [sum(self.tensors[i].numel() for i in run) for run in runs]
            spans = [sum(_padded(self.tensors[i].numel(), block) for i in run) for run in runs]
            scratch = torch.empty(max(spans), device=device, dtype=dtype)
            clean = torch.zeros(sum(spans), device=device, dtype=dtype) if keep_copy else None
            self._buffers += [scratch] + ([clean] if clean is not None else [])
            offset = 0
            stats_dtype = dtype if dtype in _FULL_PRECISION else torch.float32
            for run, numel, span in zip(runs, run_sizes, spans, strict=True):
                members = [self.tensors[i] for i in run]
                sizes = [t.numel() for t in members]
                flat = scratch[:numel]
                clean_span = clean[offset : offset + span] if clean is not None else None
                offset += span
                factor = torch.ones(len(members), device=device, dtype=dtype)
                self.chunks.append(
                    _Chunk(
                        indices=run,
                        tensors=members,
                        noise=_views(flat, members),
                        flat=flat,
                        lengths=torch.tensor(sizes, device=device, dtype=torch.int64),
                        counts=torch.tensor(sizes, device=device, dtype=stats_dtype),
                        factor=factor,
                        factor_views=list(factor.unbind()),
                        clean=_views(clean_span, members, block) if clean_span is not None else None,
                        clean_flat=clean_span if not stats else None,
                        blocks=_blocks(scratch[:span], clean_span, members) if stats else None,
                    )
                )
        self.devices = list(dict.fromkeys(t.device for t in self.tensors))

    @property
    def nbytes(self) -> int:
        """Bytes of the buffers this layout holds (scratch, plus the clean copy if kept)."""
        return sum(b.numel() * b.element_size() for b in self._buffers)

    @torch.no_grad()
    def save_(self) -> None:
        """Copy the tensors into the clean copy."""
        for chunk in self.chunks:
            torch._foreach_copy_(self._clean(chunk), chunk.tensors)

    @torch.no_grad()
    def restore_(self) -> None:
        """Copy the clean copy back into the tensors (bumps their version counters)."""
        for chunk in self.chunks:
            torch._foreach_copy_(chunk.tensors, self._clean(chunk))

    @torch.no_grad()
    def clean_copies(self) -> list[Tensor]:
        """Clones of the clean copy, in tensor order."""
        out: list[Tensor] = []
        for chunk in self.chunks:
            out += [c.clone() for c in self._clean(chunk)]
        return self._in_order(out)

    def _clean(self, chunk: _Chunk) -> list[Tensor]:
        if chunk.clean is None:
            raise RuntimeError("FlatLayout: built with keep_copy=False, so there is no clean copy.")
        return chunk.clean

    def _in_order(self, values: list[Tensor]) -> list[Tensor]:
        order = [i for chunk in self.chunks for i in chunk.indices]
        result: list[Tensor] = [torch.empty(0)] * len(order)
        for index, value in zip(order, values, strict=True):
            result[index] = value
        return result

    @torch.no_grad()
    def std_(self, chunk: _Chunk) -> Tensor:
        """Population standard deviation of each tensor of ``chunk`` (uses the scratch buffer).

        Read from the clean copy when the layout keeps one (call :meth:`save_` first), else from
        the tensors. Computed on data shifted by each tensor's first element, so a constant tensor
        gets exactly 0 and a tensor whose mean dwarfs its spread loses little precision: the
        shifted values go into the blocked scratch buffer (one fused subtraction, padding zeroed),
        each row's sum and norm are taken in the statistics dtype (float32 at least), and the rows'
        sums and squared norms are added up per tensor in float64 by one segment sum. A constant
        number of tensor operations per chunk, whatever its number of tensors. Needs
        ``stats=True``.

        Example:
            >>> layout = FlatLayout([torch.tensor([1.0, 3.0]), torch.full((5,), 0.1)], stats=True)
            >>> layout.std_(layout.chunks[0]).tolist()
            [1.0, 0.0]
        """
        blocks = chunk.blocks
        if blocks is None:
            raise RuntimeError("FlatLayout: per-tensor statistics need a layout built with stats=True.")
        source = blocks.clean_rows
        if source is None:
            torch._foreach_copy_(blocks.views, chunk.tensors)
            source = blocks.rows
        shift = source.view(-1).index_select(0, blocks.firsts)
        per_row = shift.repeat_interleave(blocks.rows_per_tensor, output_size=source.shape[0])
        rows = torch.sub(source, per_row.unsqueeze_(1), out=blocks.rows)
        if blocks.pads is not None:
            rows.view(-1).index_fill_(0, blocks.pads, 0.0)
        stats = chunk.counts.dtype
        sums = torch.stack(
            (rows.sum(1, dtype=stats), torch.linalg.vector_norm(rows, dim=1, dtype=stats).square_()), 1
        )
        moments = torch.segment_reduce(sums.double(), "sum", lengths=blocks.rows_per_tensor).mul_(
            blocks.inverse_numel
        )
        mean, mean_square = moments.unbind(1)
        return torch.addcmul(mean_square, mean, mean, value=-1.0).clamp_(min=0.0).sqrt_().to(stats)

    @torch.no_grad()
    def rms(self, targets: Sequence[Tensor | None], per_tensor: bool = True) -> list[Tensor]:
        """Root mean square ``sqrt(mean(t ** 2))`` of the ``targets``, as factors for :meth:`add_`.

        One tensor per chunk, of the chunk's device and dtype, with one value per member: that
        target's RMS (``per_tensor=True``; 0 for a ``None`` target), or the RMS over the elements
        of all the (not ``None``) targets together, repeated (``per_tensor=False``). Norms are
        taken with one fused ``torch._foreach_norm`` per chunk, accumulated in float32 at least.

        Example:
            >>> layout = FlatLayout([torch.zeros(4), torch.zeros(2)])
            >>> grads = [torch.tensor([3.0, -3.0, 3.0, -3.0]), None]
            >>> [f.tolist() for f in layout.rms(grads)]
            [[3.0, 0.0]]
            >>> [f.tolist() for f in layout.rms([torch.full((4,), 2.0), torch.full((2,), 2.0)], False)]
            [[2.0, 2.0]]
        """
        squares: list[Tensor] = []  # per chunk: each member's sum of squares (0 for None)
        numel = 0
        for chunk in self.chunks:
            picked = [targets[i] for i in chunk.indices]
            present = [t for t in picked if t is not None]
            stats = chunk.counts.dtype
            if not present:
                squares.append(torch.zeros(len(picked), device=chunk.flat.device, dtype=stats))
                continue
            sums = torch.stack(torch._foreach_norm(present, 2, dtype=stats)).square_()
            if len(present) < len(picked):
                where = torch.tensor([t is not None for t in picked], device=sums.device)
                sums = torch.zeros(len(picked), device=sums.device, dtype=stats).masked_scatter_(where, sums)
                numel += sum(t.numel() for t in present)
            else:  # every member present: the chunk's own size, no Python call per tensor
                numel += chunk.flat.numel()
            squares.append(sums)
        if per_tensor:
            return [
                (s / chunk.counts).sqrt_().to(chunk.flat.dtype)
                for s, chunk in zip(squares, self.chunks, strict=True)
            ]
        first = self.chunks[0].flat.device
        total = torch.stack([s.sum().to(first, torch.float32) for s in squares]).sum()
        rms = (total / max(numel, 1)).sqrt_()
        return [
            rms.to(chunk.flat.device, chunk.flat.dtype).expand(len(chunk.indices)) for chunk in self.chunks
        ]

    @torch.no_grad()
    def add_(
        self,
        sample: Sampler,
        generators: Mapping[torch.device, torch.Generator],
        relative: bool = False,
        targets: Sequence[Tensor | None] | None = None,
        done: list[Tensor | None] | None = None,
        factors: Sequence[Tensor] | None = None,
    ) -> list[Tensor | None]:
        """Add one draw of ``sample`` per chunk to ``targets`` (default: the tensors).

        With ``relative=True`` each tensor's noise is multiplied by that tensor's population
        standard deviation (see :meth:`std_`: the layout needs ``stats=True``, and with a clean copy
        :meth:`save_` must come first; only for ``targets=None``); ``factors`` (one tensor
        per chunk with one value per member, e.g. from :meth:`rms`) multiplies it by given values
        instead. ``targets`` may hold ``None`` (a parameter without a gradient): its share of the
        draw is skipped, so the other tensors' noise does not depend on it. Appends to ``done``
        (and returns it) the per-tensor factors of each chunk as soon as that chunk is noisy
        (``None`` when not relative): :meth:`sub_` needs them, and a failure half-way leaves
        ``done`` exact.
        """
        if relative and factors is not None:
            raise ValueError("FlatLayout.add_: pass `relative=True` or `factors`, not both.")
        applied: list[Tensor | None] = [] if done is None else done
        for index, chunk in enumerate(self.chunks):
            if factors is not None:
                rel: Tensor | None = factors[index]
            else:
                rel = self.std_(chunk).to(chunk.flat.dtype) if relative else None
            self._draw(chunk, sample, generators, rel)
            dest, noise = self._targets(chunk, targets)
            if dest:
                torch._foreach_add_(dest, noise)
            applied.append(rel)
        return applied

    @torch.no_grad()
    def sub_(
        self,
        sample: Sampler,
        generators: Mapping[torch.device, torch.Generator],
        factors: Sequence[Tensor | None],
    ) -> None:
        """Subtract the noise :meth:`add_` added: replay ``sample`` from generators in the same state.

        Only the first ``len(factors)`` chunks are undone (those :meth:`add_` finished).
        """
        for chunk in self._replay(sample, generators, factors):
            torch._foreach_sub_(chunk.tensors, chunk.noise)

    @torch.no_grad()
    def replayed_clean(
        self,
        sample: Sampler,
        generators: Mapping[torch.device, torch.Generator],
        factors: Sequence[Tensor | None],
    ) -> list[Tensor]:
        """The tensors minus the replayed noise, as new tensors in tensor order (tensors unchanged)."""
        out: list[Tensor] = []
        for chunk in self._replay(sample, generators, factors):
            out += torch._foreach_sub(chunk.tensors, chunk.noise)
        for chunk in self.chunks[len(factors) :]:
            out += [t.detach().clone() for t in chunk.tensors]
        return self._in_order(out)

    def _replay(
        self,
        sample: Sampler,
        generators: Mapping[torch.device, torch.Generator],
        factors: Sequence[Tensor | None],
    ) -> Iterator[_Chunk]:
        """Each chunk :meth:`add_` finished (the first ``len(factors)``), its noise drawn again."""
        for chunk, rel in zip(self.chunks, factors, strict=False):
            self._draw(chunk, sample, generators, rel)
            yield chunk

    @torch.no_grad()
    def replace_(
        self,
        transform: Callable[[Tensor, torch.Generator], Tensor],
        generators: Mapping[torch.device, torch.Generator],
    ) -> None:
        """Set the tensors to ``transform(clean chunk, generator)``, one call per chunk (needs the copy)."""
        for chunk in self.chunks:
            if chunk.clean_flat is None:
                raise RuntimeError(
                    "FlatLayout: replace_ needs a layout built with keep_copy=True and stats=False."
                )
            chunk.flat.copy_(transform(chunk.clean_flat, generators[chunk.flat.device]))
            torch._foreach_copy_(chunk.tensors, chunk.noise)

    @staticmethod
    def _draw(
        chunk: _Chunk,
        sample: Sampler,
        generators: Mapping[torch.device, torch.Generator],
        rel: Tensor | None,
    ) -> None:
        """Fill the chunk's scratch with one draw of ``sample``, times ``rel`` (one value per tensor).

        On CPU the factors go in through one ``_foreach_mul_`` by 0-d views of ``chunk.factor``
        (cheap per tensor there); on accelerators, where that would be one kernel per tensor, by one
        multiplication with the factors repeated over the elements. Either way each element is
        multiplied by its tensor's factor once, so the noise is the same.
        """
        sample(chunk.flat, generators[chunk.flat.device])
        if rel is None:
            return
        if chunk.flat.device.type in _FOREACH_SCALING:
            chunk.factor.copy_(rel)
            torch._foreach_mul_(chunk.noise, chunk.factor_views)
        else:
            chunk.flat.mul_(rel.repeat_interleave(chunk.lengths, output_size=chunk.flat.numel()))

    @staticmethod
    def _targets(chunk: _Chunk, targets: Sequence[Tensor | None] | None) -> tuple[list[Tensor], list[Tensor]]:
        if targets is None:
            return chunk.tensors, chunk.noise
        picked = [targets[i] for i in chunk.indices]
        dest = [t for t in picked if t is not None]
        if len(dest) == len(picked):
            return dest, chunk.noise
        return dest, [n for t, n in zip(picked, chunk.noise, strict=True) if t is not None]
