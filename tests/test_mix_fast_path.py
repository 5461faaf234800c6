"""Mode "batch"'s host fast path: host draws, MixParams, mix_params, dominant class, seeding, cached one-hots.

Every check compares with an oracle written here: the tensor path ``_draw``, hand-written masks and
loops, ``F.one_hot``, ``scipy.stats`` and ``lit_noise._rng.mix_seed``.
"""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats
from torch import Tensor

from lit_noise import HostRandom, MixupDataModule, SoftLabels
from lit_noise._rng import mix_seed, stream_id
from lit_noise.data.mixup import _dominant_class
from lit_noise.errors import ConfigurationError
from lit_noise.examples import DigitsDataModule
from lit_noise.functional import MixParams, mix_batch, one_hot_smooth, sample_mix_params
from lit_noise.functional.mix import (
    _SMALL_BATCH,
    _draw,
    _draw_on_host,
    _MixOptions,
    _TorchHostStream,
    mix_params,
)
from lit_noise.soft_labels import soft

CPU = torch.device("cpu")

# ----------------------------------------------------------------------------- host draw == tensor draw

_BASE: dict[str, Any] = {
    "mixup_alpha": 0.0,
    "cutmix_alpha": 0.0,
    "cutmix_minmax": None,
    "prob": 1.0,
    "switch_prob": 0.5,
    "correct_lam": True,
    "spatial_size": None,
}


def _options(**changes: Any) -> dict[str, Any]:
    return {**_BASE, **changes}


DRAW_CONFIGS = {
    "mixup": _options(mixup_alpha=0.4),
    "mixup-1": _options(mixup_alpha=1.0, spatial_size=(8, 8)),
    "mixup-prob": _options(mixup_alpha=0.2, prob=0.6),
    "cutmix": _options(cutmix_alpha=1.0, spatial_size=(8, 8)),
    "cutmix-odd": _options(cutmix_alpha=0.3, spatial_size=(5, 6)),
    "cutmix-nocorrect": _options(cutmix_alpha=1.0, correct_lam=False, spatial_size=(31, 17)),
    "both-equal": _options(mixup_alpha=1.0, cutmix_alpha=1.0, spatial_size=(31, 17)),
    "both-different": _options(mixup_alpha=0.4, cutmix_alpha=2.0, spatial_size=(32, 32)),
    "both-prob-switch": _options(
        mixup_alpha=0.8, cutmix_alpha=0.5, prob=0.5, switch_prob=0.3, spatial_size=(5, 6)
    ),
    "both-nocorrect": _options(mixup_alpha=0.5, cutmix_alpha=1.0, correct_lam=False, spatial_size=(7, 9)),
    "minmax": _options(cutmix_minmax=(0.2, 0.8), spatial_size=(5, 6)),
    "minmax-mixup": _options(mixup_alpha=0.5, cutmix_minmax=(0.3, 0.9), spatial_size=(31, 17)),
    "minmax-mixup-1": _options(mixup_alpha=1.0, cutmix_minmax=(0.1, 0.5), prob=0.7, spatial_size=(16, 16)),
    "minmax-nocorrect": _options(
        cutmix_minmax=(0.25, 0.75), correct_lam=False, prob=0.8, spatial_size=(8, 12)
    ),
}


#: Two alphas on both sides of the log-space threshold (0.05): the table is drawn both ways.
STRADDLE_CONFIGS = {
    "straddle-cutmix-small": _options(mixup_alpha=1.0, cutmix_alpha=0.01, spatial_size=(8, 8)),
    "straddle-mixup-small": _options(
        mixup_alpha=0.02, cutmix_alpha=0.5, correct_lam=False, prob=0.8, spatial_size=(7, 9)
    ),
}
LOG_SPACE_ALPHA = 0.05  # typed in: the threshold documented in the changelog


def _tensor_draw(options: dict[str, Any], seed: int) -> tuple[float, bool | None, tuple[int, ...] | None]:
    lam, choice, boxes = _draw(1, torch.Generator().manual_seed(seed), CPU, _MixOptions(**options), False)
    assert lam.shape == (1,)
    assert lam.dtype == torch.float64
    return float(lam.item()), None if choice is None else bool(choice.item()), _one_box(boxes)


def _one_box(boxes: Tensor | None) -> tuple[int, ...] | None:
    """``(top, bottom, left, right)`` of a ``(1, 4)`` box or ``(2, 2, 1)`` corners."""
    if boxes is None:
        return None
    values = boxes.reshape(4).tolist() if boxes.shape == (2, 2, 1) else boxes[0].tolist()
    assert all(v == int(v) for v in values)
    return tuple(int(v) for v in values)


@pytest.mark.parametrize("name", list(DRAW_CONFIGS) + list(STRADDLE_CONFIGS))
def test_host_draw_equals_the_tensor_draw_bit_for_bit(name: str) -> None:
    options = {**DRAW_CONFIGS, **STRADDLE_CONFIGS}[name]
    seen_choices, seen_lams = set(), set()
    for seed in range(40):
        host_generator = torch.Generator().manual_seed(seed)
        lam, choice, box = _draw_on_host(_TorchHostStream(host_generator), _MixOptions(**options))
        expected = _tensor_draw(options, seed)
        assert lam.hex() == expected[0].hex(), (name, seed)
        assert (choice, box) == expected[1:], (name, seed)
        assert type(lam) is float
        seen_choices.add(choice)
        seen_lams.add(lam == 1.0)
        # both consumed the same random numbers
        reference = torch.Generator().manual_seed(seed)
        _draw(1, reference, CPU, _MixOptions(**options), False)
        assert torch.equal(host_generator.get_state(), reference.get_state())
    if options["mixup_alpha"] > 0 and (options["cutmix_alpha"] > 0 or options["cutmix_minmax"] is not None):
        assert seen_choices == {True, False}  # both methods were drawn
    if options["prob"] < 1.0:
        assert seen_lams == {True, False}  # some batches were left unmixed


def _per_draw_oracle(options: dict[str, Any], draws: int, seed: int) -> list[tuple[str, Any, list[int]]]:
    """Every draw of ``_draw(draws, ...)`` redone one at a time in Python float64 arithmetic.

    The random numbers come from the same stream in the same order (a ``(rows, draws)`` uniform
    block, then one Dirichlet call with each draw's alpha); the rest is the CutMix recipe written
    out per draw: sides ``floor(n * sqrt(1 - λ))`` around the pixel ``floor(u * n)``, clipped, or
    min-max sides placed uniformly; λ replaced by ``1 - area / (H * W)``.
    """
    opts = _MixOptions(**options)
    use_mixup, use_cut, cut_alpha, rows = opts.methods
    generator = torch.Generator().manual_seed(seed)
    u = torch.rand((rows, draws), generator=generator, dtype=torch.float64).tolist()
    choices = [u[1][i] < opts.switch_prob if use_mixup and use_cut else None for i in range(draws)]
    betas = [1.0] * draws
    if use_mixup or (use_cut and opts.cutmix_minmax is None):
        alphas = [
            (cut_alpha if c else opts.mixup_alpha) if c is not None else opts.mixup_alpha or opts.cutmix_alpha
            for c in choices
        ]
        concentration = torch.tensor([[a, a] for a in alphas], dtype=torch.float64)
        betas = torch._sample_dirichlet(concentration, generator=generator)[:, 0].tolist()
    result = []
    for i in range(draws):
        mixed = u[0][i] < opts.prob
        lam = betas[i] if mixed else 1.0
        box = [0, 0, 0, 0]
        if use_cut and mixed and choices[i] is not False:
            assert opts.spatial_size is not None
            for axis, extent in enumerate(opts.spatial_size):
                if opts.cutmix_minmax is None:
                    size = math.floor(extent * math.sqrt(1.0 - lam))
                    start = math.floor(u[2 + axis][i] * extent) - size // 2
                    low, high = min(max(start, 0), extent), min(max(start + size, 0), extent)
                else:
                    lo, hi = int(extent * opts.cutmix_minmax[0]), int(extent * opts.cutmix_minmax[1])
                    size = math.floor(u[2 + axis][i] * float(hi - lo)) + lo
                    low = math.floor(u[4 + axis][i] * (float(extent) - size + 1.0))
                    high = low + size
                box[2 * axis : 2 * axis + 2] = [low, high]
            if opts.correct_lam or opts.cutmix_minmax is not None:
                height, width = opts.spatial_size
                lam = 1.0 - float((box[1] - box[0]) * (box[3] - box[2])) / float(height * width)
        result.append((lam.hex(), choices[i], box))
    return result


@pytest.mark.parametrize("name", list(DRAW_CONFIGS))
def test_per_sample_tensor_draw_equals_a_per_draw_python_oracle_bit_for_bit(name: str) -> None:
    options = DRAW_CONFIGS[name]
    for seed, draws in ((0, 1), (1, 7), (2, 64), (3, 257)):
        generator = torch.Generator().manual_seed(seed)
        lam, choice, corners = _draw(draws, generator, CPU, _MixOptions(**options), False)
        boxes = [[0, 0, 0, 0]] * draws if corners is None else corners.reshape(4, draws).t().tolist()
        got = [
            (lam[i].item().hex(), None if choice is None else bool(choice[i]), [int(v) for v in boxes[i]])
            for i in range(draws)
        ]
        expected = _per_draw_oracle(options, draws, seed)
        if corners is None:  # mixup only: no boxes drawn
            expected = [(lam_hex, c, [0, 0, 0, 0]) for lam_hex, c, _ in expected]
        assert got == expected, (name, seed, draws)


@pytest.mark.parametrize("name", list(STRADDLE_CONFIGS))
def test_a_two_alpha_table_across_the_log_space_threshold_keeps_torchs_draws_above_it(name: str) -> None:
    """Draws whose alpha is 0.05 or more are torch's Dirichlet of the whole table, bit for bit.

    The oracle is the per-draw one (one Dirichlet call with each draw's alpha, as before the small
    alphas were drawn in log space); the draws below the threshold are checked against SciPy's law
    in test_mix_functional.py, and here only for their method and for not being clamped to 0.5.
    """
    options = STRADDLE_CONFIGS[name]
    opts = _MixOptions(**options)
    cut_alpha = opts.methods[2]
    kept = small = 0
    for seed, draws in ((0, 1), (1, 7), (2, 64), (3, 257)):
        lam, choice, corners = _draw(draws, torch.Generator().manual_seed(seed), CPU, opts, False)
        assert choice is not None
        assert corners is not None
        boxes = corners.reshape(4, draws).t().tolist()
        expected = _per_draw_oracle(options, draws, seed)
        for i, (lam_hex, expected_choice, expected_box) in enumerate(expected):
            assert bool(choice[i]) == expected_choice, (name, seed, i)
            alpha = cut_alpha if expected_choice else opts.mixup_alpha
            if alpha >= LOG_SPACE_ALPHA:
                assert (lam[i].item().hex(), [int(v) for v in boxes[i]]) == (lam_hex, expected_box)
                kept += 1
            else:
                assert 0.0 <= lam[i].item() <= 1.0
                if not (opts.correct_lam and expected_choice):  # the drawn λ, not a box's area
                    assert lam[i].item() != 0.5
                small += 1
    assert kept > 100  # both kinds of draw were seen
    assert small > 100


def test_host_draw_from_a_host_random_stream_is_a_valid_draw() -> None:
    """From HostRandom: λ in [0, 1], a box inside the image whose area gives λ (correct_lam)."""
    options = DRAW_CONFIGS["both-prob-switch"]
    height, width = options["spatial_size"]
    for seed in range(200):
        lam, choice, box = _draw_on_host(HostRandom(seed), _MixOptions(**options))
        assert choice in (True, False)
        assert box is not None
        top, bottom, left, right = box
        assert 0 <= top <= bottom <= height
        assert 0 <= left <= right <= width
        assert 0.0 <= lam <= 1.0
        if choice and lam != 1.0:
            assert lam == 1.0 - (bottom - top) * (right - left) / (height * width)
        if not choice:
            assert box == (0, 0, 0, 0)


@pytest.mark.parametrize(
    "name", ["mixup", "cutmix-odd", "both-different", "minmax-mixup", "both-prob-switch"]
)
def test_sample_mix_params_batch_mode_builds_its_tensors_from_the_host_draw(name: str) -> None:
    options = DRAW_CONFIGS[name]
    for seed in range(5):
        for host_generator in (torch.Generator().manual_seed(100 + seed), HostRandom(100 + seed)):
            params = sample_mix_params(
                6, torch.Generator().manual_seed(seed), mode="batch", host_generator=host_generator, **options
            )
            assert params.host is not None
            lam, choice, box = params.host
            if isinstance(host_generator, HostRandom):
                assert params.host == _draw_on_host(HostRandom(100 + seed), _MixOptions(**options))
            else:
                assert params.host == _tensor_draw(options, 100 + seed)
            assert params.lam.dtype == torch.float64
            assert params.lam.shape == (1,)
            assert params.lam.item() == lam
            assert params.lam is params.lam  # built once
            if choice is None:
                assert params.use_cutmix is None
            else:
                assert params.use_cutmix is not None
                assert params.use_cutmix.dtype == torch.bool
                assert params.use_cutmix.tolist() == [choice]
            if box is None:
                assert params.boxes is None
            else:
                assert params.boxes is not None
                assert params.boxes.dtype == torch.int64
                assert params.boxes.shape == (1, 4)
                assert tuple(params.boxes[0].tolist()) == box


@pytest.mark.parametrize("mode", ["pair", "elem"])
@pytest.mark.parametrize(
    "host_generator", [HostRandom(1), torch.Generator().manual_seed(1)], ids=["host", "torch"]
)
def test_a_host_generator_in_a_mode_that_draws_nothing_on_the_host_is_an_error(
    mode: str, host_generator: HostRandom | torch.Generator
) -> None:
    """Modes "pair" and "elem" draw everything from `generator`: a host generator would be ignored."""
    expected = (
        rf"^sample_mix_params: `host_generator` must be None in mode '{mode}', which makes every draw"
        r" from `generator` \(only mode 'batch' draws on the host\)\.$"
    )
    with pytest.raises(ConfigurationError, match=expected):
        sample_mix_params(8, torch.Generator().manual_seed(0), mode=mode, host_generator=host_generator)
    params = sample_mix_params(8, torch.Generator().manual_seed(0), mode=mode)  # the same call without it
    assert params.host is None


def test_sample_mix_params_batch_mode_draws_from_the_cpu_generator_when_no_host_generator() -> None:
    """Same seeds, same draw: the batch's CPU generator serves the host draw when none is given."""
    options = DRAW_CONFIGS["both-equal"]
    first = sample_mix_params(8, torch.Generator().manual_seed(4), mode="batch", **options)
    second = sample_mix_params(8, torch.Generator().manual_seed(4), mode="batch", **options)
    assert first.host == second.host
    assert torch.equal(first.index, second.index)
    others = {
        sample_mix_params(8, torch.Generator().manual_seed(s), mode="batch", **options).host for s in range(8)
    }
    assert len(others) == 8


def test_mix_params_constructor_and_from_host() -> None:
    index = torch.tensor([1, 0])
    lam, choice, boxes = torch.tensor([0.25, 1.0], dtype=torch.float64), torch.tensor([True, False]), None
    params = MixParams(index, lam, choice, boxes)
    assert params.host is None
    assert params.index is index
    assert params.lam is lam
    assert params.use_cutmix is choice
    assert params.boxes is None
    host = MixParams.from_host(index, (0.75, None, None))
    assert host.host == (0.75, None, None)
    assert (host.use_cutmix, host.boxes) == (None, None)
    assert repr(host) == (
        "MixParams(index=tensor([1, 0]), lam=tensor([0.7500], dtype=torch.float64), use_cutmix=None,"
        " boxes=None)"
    )
    cut = MixParams.from_host(index, (0.5, True, (0, 2, 0, 1)))
    assert repr(cut) == (
        "MixParams(index=tensor([1, 0]), lam=tensor([0.5000], dtype=torch.float64),"
        " use_cutmix=tensor([True]), boxes=tensor([[0, 2, 0, 1]]))"
    )


# ----------------------------------------------------------------------------- mix_params


def _is_single_cycle(index: list[int]) -> bool:
    seen, position = set(), 0
    for _ in index:
        seen.add(position)
        position = index[position]
    return position == 0 and len(seen) == len(index)


def _check_partners(index: Tensor, mode: str) -> None:
    partners = index.tolist()
    size = len(partners)
    assert sorted(partners) == list(range(size))  # every sample is a partner exactly once
    if mode == "pair":
        assert all(partners[partners[i]] == i for i in range(size))
        assert sum(partners[i] == i for i in range(size)) == size % 2
    else:
        assert _is_single_cycle(partners)


def _oracle(x: Tensor, y: Tensor, params: MixParams) -> tuple[Tensor, Tensor, list[bool]]:
    """Sample by sample: paste the box (a mask built by slicing), or blend; and the targets' blend."""
    batch, height, width = x.shape[0], x.shape[-2], x.shape[-1]
    lams = params.lam.tolist()
    choices = None if params.use_cutmix is None else params.use_cutmix.tolist()
    boxes = None if params.boxes is None else params.boxes.tolist()
    rows_x, rows_y, pasted = [], [], []
    for i in range(batch):
        j = int(params.index[i])
        lam = lams[i if len(lams) > 1 else 0]
        cut = boxes is not None and (choices is None or choices[i if len(choices) > 1 else 0])
        if cut:
            assert boxes is not None
            top, bottom, left, right = boxes[i if len(boxes) > 1 else 0]
            mask = torch.zeros(height, width, dtype=torch.bool)
            mask[top:bottom, left:right] = True
            rows_x.append(torch.where(mask, x[j], x[i]))
        else:
            rows_x.append(lam * x[i].double() + (1 - lam) * x[j].double())
        rows_y.append(lam * y[i].double() + (1 - lam) * y[j].double())
        pasted.append(cut)
    return torch.stack(rows_x), torch.stack(rows_y), pasted


MIX_SHAPES = [(4, 3, 8, 8), (4, 4, 32, 32), (8, 2, 31, 17), (16, 3, 31, 17), (5, 5, 6)]


@pytest.mark.parametrize("shape", MIX_SHAPES, ids=str)
@pytest.mark.parametrize("mode", ["batch", "pair", "elem"])
@pytest.mark.parametrize("config", ["both-equal", "cutmix", "minmax-mixup-1"])
def test_mix_params_equals_mix_batch_and_the_hand_written_oracle(
    shape: tuple[int, ...], mode: str, config: str
) -> None:
    options = {**DRAW_CONFIGS[config], "spatial_size": shape[-2:]}
    numel = int(np.prod(shape))
    assert (numel <= _SMALL_BATCH) == (shape in [(4, 3, 8, 8), (4, 4, 32, 32), (8, 2, 31, 17), (5, 5, 6)])
    batch = shape[0]
    generator = torch.Generator().manual_seed(7)
    x = torch.rand(shape, generator=generator)
    y = one_hot_smooth(torch.randint(0, 10, (batch,), generator=generator), 10)
    pasted_any = blended_any = False
    for seed in range(10):
        host = HostRandom(seed) if mode == "batch" else None
        params = sample_mix_params(
            batch, torch.Generator().manual_seed(seed), mode=mode, host_generator=host, **options
        )
        assert (params.host is not None) == (mode == "batch")
        _check_partners(params.index, mode)
        x_mixed, y_mixed = mix_params(x, y, params)
        x_ref, y_ref = mix_batch(x, y, params.lam, params.index, params.use_cutmix, params.boxes)
        assert torch.equal(x_mixed, x_ref)
        assert torch.equal(y_mixed, y_ref)
        x_oracle, y_oracle, pasted = _oracle(x, y, params)
        for i, cut in enumerate(pasted):
            if cut:
                assert torch.equal(x_mixed[i], x_oracle[i])
            else:
                torch.testing.assert_close(x_mixed[i].double(), x_oracle[i], rtol=0, atol=1e-6)
        torch.testing.assert_close(y_mixed.double(), y_oracle, rtol=0, atol=1e-6)
        pasted_any |= any(pasted) and not torch.equal(x_mixed, x)
        blended_any |= not all(pasted)
    assert pasted_any
    if config != "cutmix":
        assert blended_any


@pytest.mark.parametrize("shape", [(4, 3, 8, 8), (8, 3, 32, 32)], ids=str)
def test_mix_params_pastes_into_non_contiguous_inputs(shape: tuple[int, ...]) -> None:
    """Views with other strides and offsets (channels-last, transposed, sliced) paste the same box."""
    batch, channels, height, width = shape
    base = torch.rand(batch + 1, channels, width, height, generator=torch.Generator().manual_seed(1))
    views = {
        "channels_last": base[1:].transpose(-1, -2).contiguous(memory_format=torch.channels_last),
        "transposed": base[1:].transpose(-1, -2),
        "sliced": base.transpose(-1, -2)[1:],
    }
    y = one_hot_smooth(torch.arange(batch) % 3, 3)
    params = MixParams.from_host(torch.roll(torch.arange(batch), 1), (0.75, True, (1, 5, 2, 7)))
    for name, x in views.items():
        assert x.shape == shape
        x_mixed, _ = mix_params(x, y, params)
        x_oracle, _, _ = _oracle(x.contiguous(), y, params)
        assert torch.equal(x_mixed, x_oracle), name
        assert torch.equal(x, base.transpose(-1, -2)[1:])  # the input is not modified


def test_mix_params_checks_the_draw_against_the_inputs() -> None:
    y = one_hot_smooth(torch.tensor([0, 1]), 2)
    with pytest.raises(ConfigurationError, match="two spatial dimensions"):
        mix_params(torch.rand(2, 5), y, MixParams.from_host(torch.tensor([1, 0]), (0.5, True, (0, 1, 0, 1))))
    with pytest.raises(ConfigurationError, match="`index` must be 2 integer partner indices"):
        mix_params(torch.rand(2, 5), y, MixParams.from_host(torch.tensor([1, 0, 2]), (0.5, None, None)))


# ----------------------------------------------------------------------------- dominant class

# own classes and partners: equal classes (0 <-> 3... ), partners with lower and with higher classes
LABELS = torch.tensor([2, 0, 3, 2, 1, 3])
PARTNERS = torch.tensor([1, 2, 3, 0, 5, 4])  # a cycle 0->1->2->3->0 and the pair 4<->5
TIE_LAMS = [0.5, 0.5 + 2**-30, 0.5 - 2**-30]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("lam", [0.3, 0.7, 0.0, 1.0, *TIE_LAMS])
@pytest.mark.parametrize("box", [None, (0, 1, 0, 2)])
def test_dominant_class_is_the_argmax_of_the_mixed_rows(dtype: torch.dtype, lam: float, box: Any) -> None:
    x = torch.rand(6, 1, 2, 2, dtype=dtype, generator=torch.Generator().manual_seed(0))
    y_soft = one_hot_smooth(LABELS, 4, dtype=dtype)
    params = MixParams.from_host(PARTNERS, (lam, None if box is None else True, box))
    _, y_mixed = mix_params(x, y_soft, params)
    assert y_mixed.dtype == dtype
    hard = _dominant_class(LABELS, y_mixed, params, 0.0)
    expected = y_mixed.argmax(1)
    tie = lam in TIE_LAMS and (dtype == torch.float32 or lam == 0.5)
    if tie:
        differ = LABELS[PARTNERS] != LABELS
        own, partner = y_mixed[torch.arange(6), LABELS], y_mixed[torch.arange(6), LABELS[PARTNERS]]
        assert torch.equal(own[differ], partner[differ])  # really a tie: argmax takes the lower class
        assert not torch.equal(expected, LABELS)
        assert not torch.equal(expected, LABELS[PARTNERS])
    if hard is None:
        assert tie  # the fast path is only left to argmax on ties
    else:
        assert torch.equal(hard, expected)
    assert (hard is None) == tie


def test_dominant_class_is_left_to_argmax_without_one_hot_rows() -> None:
    params = MixParams.from_host(PARTNERS, (0.7, None, None))
    y_soft = one_hot_smooth(LABELS, 4)
    _, y_mixed = mix_params(torch.rand(6, 3), y_soft, params)
    assert _dominant_class(LABELS, y_mixed, params, 0.1) is None  # label smoothing
    assert _dominant_class(y_soft, y_mixed, params, 0.0) is None  # soft targets
    assert _dominant_class(LABELS.int(), y_mixed, params, 0.0) is None  # not int64
    assert _dominant_class(LABELS, y_mixed.half(), params, 0.0) is None  # a dtype without a known rounding
    per_sample = MixParams(PARTNERS, torch.full((6,), 0.7, dtype=torch.float64))
    assert _dominant_class(LABELS, y_mixed, per_sample, 0.0) is None  # no host draw
    unmixed = _dominant_class(LABELS, y_soft, None, 0.0)
    assert unmixed is not None
    assert torch.equal(unmixed, y_soft.argmax(1))


def _stub_trainer(epoch: int = 0) -> SimpleNamespace:
    """The few trainer attributes the training-batch path reads (as benchmarks/bench_mixup.py)."""
    return SimpleNamespace(
        training=True,
        sanity_checking=False,
        current_epoch=epoch,
        global_step=0,
        global_rank=0,
        estimated_stepping_batches=10_000,
        lightning_module=None,
        fit_loop=SimpleNamespace(epoch_loop=SimpleNamespace(batch_idx=-1)),
    )


def _datamodule(trainer: SimpleNamespace | None = None, **kwargs: Any) -> MixupDataModule:
    settings: dict[str, Any] = {"num_classes": 4, "mode": "batch", "seed": 3, **kwargs}
    dm = MixupDataModule(DigitsDataModule(), **settings)
    dm.trainer = trainer if trainer is not None else _stub_trainer()  # type: ignore[assignment]
    return dm


def _next_batch(dm: MixupDataModule, x: Tensor, y: Tensor) -> Any:
    trainer: Any = dm.trainer
    trainer.fit_loop.epoch_loop.batch_idx += 1
    trainer.global_step += 1
    return dm.on_after_batch_transfer([x, y], 0)


def test_datamodule_hard_labels_are_the_argmax_of_the_mixed_distribution_every_batch() -> None:
    """3x4 images, 1..2 by 2..3 boxes: CutMix λ is exactly 1/2 often (ties), besides clear winners."""
    dm = _datamodule(mixup_alpha=1.0, cutmix_minmax=(0.5, 1.0), prob=0.9)
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(8, 1, 3, 4, generator=generator)
    ties = partner_wins = own_wins = 0
    for _ in range(300):
        y = torch.randint(0, 4, (8,), generator=generator)
        _, targets = _next_batch(dm, x, y)
        assert isinstance(targets, SoftLabels)
        assert torch.equal(targets.hard, targets.soft.argmax(1))
        lam = dm.last_params.host[0] if dm.last_params is not None else 1.0
        ties += lam == 0.5
        partner_wins += lam < 0.5
        own_wins += lam > 0.5
    assert min(ties, partner_wins, own_wins) > 10


def test_batch_generators_continue_mix_seed_hash_chain() -> None:
    for seed, rank in [(0, 0), (7, 3), (2**40 + 1, 1)]:
        dm = MixupDataModule(DigitsDataModule(), num_classes=10, mode="batch", seed=seed)
        dm._rank = rank
        prefix = mix_seed(seed, stream_id("MixupDataModule"), rank)
        for epoch, batch_idx in [(0, 0), (0, 5), (3, 0), (2, 2**31 + 3)]:
            counter = (epoch << 32) + batch_idx
            generator, host = dm._batch_generators(torch.zeros(2), epoch, batch_idx)
            assert generator.initial_seed() == mix_seed(prefix, counter)
            assert isinstance(host, HostRandom)
            host_seed = mix_seed(prefix, counter, 1)
            assert host._state == host_seed
            assert host.uniforms(3) == HostRandom(host_seed).uniforms(3)
    elem = MixupDataModule(DigitsDataModule(), num_classes=10, mode="elem", seed=1)
    assert elem._batch_generators(torch.zeros(2), 0, 0)[1] is None


@pytest.mark.parametrize("alpha", [0.4, 1.0])
def test_batch_mode_lam_follows_beta(alpha: float) -> None:
    dm = _datamodule(mixup_alpha=alpha, seed=11)
    x, y = torch.rand(2, 1), torch.tensor([0, 1])
    lams = []
    for _ in range(2000):
        _next_batch(dm, x, y)
        assert dm.last_params is not None
        assert dm.last_params.host is not None
        lams.append(dm.last_params.host[0])
    assert len(set(lams)) == len(lams)
    assert stats.kstest(np.array(lams), stats.beta(alpha, alpha).cdf).pvalue > 0.01


@pytest.mark.parametrize("correct_lam", [True, False])
def test_batch_mode_cutmix_lam_is_the_unchanged_area(correct_lam: bool) -> None:
    height, width, batch = 7, 9, 5
    dm = _datamodule(mixup_alpha=0.0, cutmix_alpha=1.0, prob=0.7, correct_lam=correct_lam, num_classes=5)
    x = torch.arange(batch * 2 * height * width, dtype=torch.float32).view(batch, 2, height, width)
    y = torch.tensor([0, 1, 2, 3, 4])
    unmixed = clipped = 0
    for _ in range(200):
        x_mixed, targets = _next_batch(dm, x, y)
        params = dm.last_params
        assert params is not None
        assert params.host is not None
        lam = params.host[0]
        changed = (x_mixed != x).any(dim=1).sum(dim=(1, 2))  # every pixel differs between samples
        area = changed.tolist()
        assert len(set(area)) == 1  # one box for the whole batch
        if correct_lam:
            assert lam == 1.0 - area[0] / (height * width)
        elif area[0]:
            assert 0.0 <= lam < 1.0  # the drawn λ, not the pasted area's
            clipped += lam != 1.0 - area[0] / (height * width)
        unmixed += area[0] == 0
        expected = lam * F.one_hot(y, 5).double() + (1 - lam) * F.one_hot(y[params.index], 5).double()
        torch.testing.assert_close(targets.soft.double(), expected, rtol=0, atol=1e-6)
    assert 20 < unmixed < 150
    if not correct_lam:
        assert clipped > 0


def test_batch_mode_same_seed_same_mixes_other_batch_other_mixes() -> None:
    x = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    settings = {"mixup_alpha": 1.0, "cutmix_alpha": 1.0, "seed": 21}

    def run(epoch: int, batches: int) -> list[tuple[Tensor, Tensor]]:
        dm = _datamodule(_stub_trainer(epoch), **settings)
        mixes = []
        for _ in range(batches):
            x_mixed, targets = _next_batch(dm, x, y)
            mixes.append((x_mixed, targets.soft))
        return mixes

    first, again, later = run(0, 4), run(0, 4), run(1, 4)
    for (xa, ya), (xb, yb) in zip(first, again, strict=True):
        assert torch.equal(xa, xb)
        assert torch.equal(ya, yb)
    batches = [xm for xm, _ in first + later]
    for i in range(len(batches)):
        for j in range(i):
            assert not torch.equal(batches[i], batches[j]), (i, j)


# ----------------------------------------------------------------------------- soft: cached one-hots


def _one_hot(y: Tensor, classes: int, ignore_index: int | None = None) -> Tensor:
    labels = y if ignore_index is None else y.masked_fill(y == ignore_index, 0)
    rows = F.one_hot(labels, classes).to(torch.get_default_dtype())
    if ignore_index is not None:
        rows = rows * (y != ignore_index).unsqueeze(-1)
    return rows.movedim(-1, 1)  # classes at dim 1


@pytest.mark.parametrize("classes", [2, 10, 1024, 1025])
@pytest.mark.parametrize("default_dtype", [torch.float32, torch.float64])
def test_soft_equals_one_hot(classes: int, default_dtype: torch.dtype) -> None:
    previous = torch.get_default_dtype()
    torch.set_default_dtype(default_dtype)
    try:
        generator = torch.Generator().manual_seed(classes)
        for shape in [(7,), (3, 5)]:
            y = torch.randint(0, classes, shape, generator=generator)
            y[0] = classes - 1
            result = soft(y, classes)
            assert result.dtype == default_dtype
            assert torch.equal(result, _one_hot(y, classes))
            with_ignored = y.clone()
            with_ignored[-1] = -100
            assert torch.equal(
                soft(with_ignored, classes, ignore_index=-100), _one_hot(with_ignored, classes, -100)
            )
    finally:
        torch.set_default_dtype(previous)


@pytest.mark.parametrize("classes", [10, 1025])
def test_soft_returns_a_fresh_tensor(classes: int) -> None:
    y = torch.tensor([0, 3, 3, 9])
    first = soft(y, classes)
    first.add_(5.0)
    first[:, 0] = -1.0
    second = soft(y, classes)
    assert torch.equal(second, _one_hot(y, classes))
    assert second.untyped_storage().data_ptr() != first.untyped_storage().data_ptr()
    assert torch.equal(soft(torch.arange(classes), classes), torch.eye(classes))


def test_a_distribution_of_another_width_than_num_classes_is_refused() -> None:
    """soft() and one_hot_smooth() took the distribution's width and spread smoothing over it."""
    probs = torch.tensor([[0.2, 0.8, 0.0], [0.0, 0.0, 1.0]])
    dense = torch.full((2, 3, 5), 1 / 3)
    for target in (probs, SoftLabels(probs), dense):
        width = r"the target distribution has 3 classes \(dim 1 of shape \(2, 3(, 5)?\)\)\.$"
        with pytest.raises(ConfigurationError, match=r"^soft: `num_classes` is 10, but " + width):
            soft(target, 10)
        with pytest.raises(ConfigurationError, match=r"^soft: `num_classes` is 10, but " + width):
            one_hot_smooth(target, 10, smoothing=0.1)
        assert soft(target, 3) is (target.soft if isinstance(target, SoftLabels) else target)
        assert soft(target) is soft(target, 3)
    torch.testing.assert_close(one_hot_smooth(probs, 3, smoothing=0.3), probs * 0.7 + 0.1)
    # One sample of SoftLabels: a 0-d label and a (C,) distribution, classes at dim 0.
    single = SoftLabels(probs)[0]
    assert single.soft.shape == (3,)
    assert soft(single, 3) is single.soft
    torch.testing.assert_close(one_hot_smooth(single, 3, smoothing=0.3), torch.tensor([0.24, 0.66, 0.1]))
    with pytest.raises(ConfigurationError, match=r"has 3 classes \(dim 0 of shape \(3,\)\)\.$"):
        soft(single, 10)


def test_batch_mode_cutmix_lam_follows_each_batch_image_size() -> None:
    """The draw's options are cached per resolved values and image size: a new size gets new boxes."""
    dm = _datamodule(mixup_alpha=0.0, cutmix_alpha=1.0, num_classes=5)
    y = torch.tensor([0, 1, 2, 3, 4])
    for height, width in [(4, 4), (16, 12), (4, 4), (16, 12)] * 5:
        x = torch.arange(5 * height * width, dtype=torch.float32).view(5, 1, height, width)
        x_mixed, _ = _next_batch(dm, x, y)
        params = dm.last_params
        assert params is not None
        assert params.host is not None
        changed = int((x_mixed != x)[0].sum())
        assert params.host[0] == 1.0 - changed / (height * width)  # the area of this batch's image
        top, bottom, left, right = params.host[2]
        assert 0 <= top <= bottom <= height
        assert 0 <= left <= right <= width


def test_a_later_batch_whose_targets_do_not_match_its_inputs_is_refused() -> None:
    dm = _datamodule()
    _next_batch(dm, torch.rand(6, 1, 4, 4), torch.randint(0, 4, (6,)))
    with pytest.raises(ConfigurationError, match="same batch size"):
        _next_batch(dm, torch.rand(6, 1, 4, 4), torch.randint(0, 4, (5,)))
