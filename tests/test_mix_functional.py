"""lit_noise.functional.mix: exact formulas, timm's reference, distributions and invariants."""

from __future__ import annotations

import array
import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats

from lit_noise import SoftLabels
from lit_noise.errors import ConfigurationError
from lit_noise.functional import (
    box_lam,
    box_mask,
    cutmix,
    cutmix_boxes,
    label_smoothing,
    mix_batch,
    mix_params,
    mixup,
    one_hot_smooth,
    partner_index,
    sample_lam,
    sample_mix_params,
)
from lit_noise.functional.mix import MixParams

C = 10


def _timm_reference() -> ModuleType:
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "_timm_mixup_reference.py"
    spec = importlib.util.spec_from_file_location("_timm_mixup_reference", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


timm = _timm_reference()


def _seed_timm(seed: int) -> None:
    """timm draws from NumPy's global RNG."""
    np.random.seed(seed)  # noqa: NPY002


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _batch(b: int = 6, shape: tuple[int, ...] = (3, 8, 8), dtype: torch.dtype = torch.float32, seed: int = 0):
    g = _gen(seed)
    x = torch.rand((b, *shape), generator=g, dtype=dtype)
    y = torch.randint(0, C, (b,), generator=g)
    return x, y


def _flip(b: int) -> torch.Tensor:
    return torch.arange(b - 1, -1, -1)


# --------------------------------------------------------------------------- exact formulas


@pytest.mark.parametrize("lam", [0.3, "per-sample"])
def test_mixup_is_the_textbook_convex_combination(lam) -> None:
    x, y = _batch(7, dtype=torch.float64)
    y_soft = one_hot_smooth(y, C, dtype=torch.float64)
    index = partner_index(7, _gen(1))
    weights = torch.rand(7, generator=_gen(2), dtype=torch.float64) if lam == "per-sample" else lam
    x_mix, y_mix = mixup(x, y_soft, weights, index)
    w = torch.as_tensor(weights, dtype=torch.float64).reshape(-1)
    expected_x = w.view(-1, 1, 1, 1) * x + (1 - w.view(-1, 1, 1, 1)) * x[index]
    expected_y = w.view(-1, 1) * y_soft + (1 - w.view(-1, 1)) * y_soft[index]
    torch.testing.assert_close(x_mix, expected_x, rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(y_mix, expected_y, rtol=1e-14, atol=1e-14)


def test_cutmix_pastes_exactly_the_partner_pixels_inside_each_box() -> None:
    x, y = _batch(5)
    y_soft = one_hot_smooth(y, C)
    index = partner_index(5, _gen(1))
    boxes = torch.tensor([[0, 4, 0, 4], [2, 8, 1, 3], [0, 0, 0, 0], [7, 8, 7, 8], [0, 8, 0, 8]])
    lam = box_lam(boxes, 8, 8)
    x_mix, y_mix = cutmix(x, y_soft, lam, index, boxes)
    expected = x.clone()
    for i, (top, bottom, left, right) in enumerate(boxes.tolist()):  # the textbook loop
        expected[i, :, top:bottom, left:right] = x[index[i], :, top:bottom, left:right]
    assert torch.equal(x_mix, expected)
    torch.testing.assert_close(y_mix, lam.view(-1, 1) * y_soft + (1 - lam.view(-1, 1)) * y_soft[index])
    assert lam.tolist() == [0.75, 1 - 12 / 64, 1.0, 1 - 1 / 64, 0.0]


@pytest.mark.parametrize(
    "box", [(1, 3, 2, 6), (2, 9, -3, 2), (-1, 2, 0, 4), (0, 4, 4, 9), (5, 7, 0, 2)], ids=str
)
def test_a_box_past_the_image_edge_pastes_only_the_pixels_inside_the_image(box: tuple[int, ...]) -> None:
    """One box for the batch (the host path) and the same box per sample (the tensor path) are clipped.

    The host path slices with a strided view, which past the edge would wrap onto the next row
    (or raise); the oracle clips each coordinate to [0, H] or [0, W] by hand.
    """
    x, y = torch.rand(3, 2, 4, 4, generator=_gen(5)), torch.tensor([0, 1, 2])
    y_soft, index, lam = one_hot_smooth(y, C), torch.tensor([1, 2, 0]), 0.5
    top, bottom = (min(max(v, 0), 4) for v in box[:2])
    left, right = (min(max(v, 0), 4) for v in box[2:])
    expected = x.clone()
    expected[:, :, top:bottom, left:right] = x[index][:, :, top:bottom, left:right]
    before = x.clone()
    host, _ = cutmix(x, y_soft, lam, index, box)
    per_sample, _ = cutmix(x, y_soft, torch.full((3,), lam), index, torch.tensor([box] * 3))
    assert torch.equal(host, expected)
    assert torch.equal(per_sample, expected)
    assert torch.equal(x, before)


@pytest.mark.parametrize(
    "box", [(1, 3, 2, 6), (2, 9, -3, 2), (-1, 2, 0, 4), (0, 4, 4, 9), (5, 7, 0, 2)], ids=str
)
def test_a_host_draw_with_a_box_past_the_edge_is_clipped_in_mix_params(box: tuple[int, ...]) -> None:
    """``MixParams.from_host`` reaches the host path through mix_params: clipped as in mix_batch."""
    x, y = torch.rand(3, 2, 4, 4, generator=_gen(6)), torch.tensor([0, 1, 2])
    y_soft, index = one_hot_smooth(y, C), torch.tensor([1, 2, 0])
    top, bottom = (min(max(v, 0), 4) for v in box[:2])
    left, right = (min(max(v, 0), 4) for v in box[2:])
    expected = x.clone()
    expected[:, :, top:bottom, left:right] = x[index][:, :, top:bottom, left:right]
    x_mix, _ = mix_params(x, y_soft, MixParams.from_host(index, (0.5, None, box)))  # type: ignore[arg-type]
    assert torch.equal(x_mix, expected)


def test_box_lam_counts_the_part_of_each_box_inside_the_image() -> None:
    """The area is counted by hand on a 6 x 5 image, pixel by pixel, for boxes in and past it."""
    height, width = 6, 5
    boxes = [
        (1, 3, 2, 6),
        (2, 9, -3, 2),
        (-1, 2, 0, 4),
        (0, 6, 0, 5),
        (4, 2, 0, 5),
        (7, 9, 0, 5),
        (0, 6, 9, 12),
    ]
    expected = []
    for top, bottom, left, right in boxes:
        inside = sum(
            1 for r in range(height) for c in range(width) if top <= r < bottom and left <= c < right
        )
        expected.append(1.0 - inside / (height * width))
    got = box_lam(torch.tensor(boxes), height, width, torch.float64)
    assert got.tolist() == pytest.approx(expected, abs=1e-15)
    assert box_lam(torch.tensor(boxes[0]), height, width).shape == ()  # one box: one λ
    # And it is the pasted area of mix_batch, which clips the same way.
    x = torch.rand(len(boxes), 1, height, width, generator=_gen(7))
    index = torch.roll(torch.arange(len(boxes)), 1)
    x_mix, _ = cutmix(
        x, one_hot_smooth(torch.zeros(len(boxes), dtype=torch.long), C), got, index, torch.tensor(boxes)
    )
    pasted = (x_mix != x).flatten(1).sum(1).double()
    assert torch.equal(1.0 - pasted / (height * width), got)


def test_per_sample_choice_equals_cutmix_and_mixup_row_by_row() -> None:
    x, y = _batch(6)
    y_soft = one_hot_smooth(y, C, 0.1)
    index = partner_index(6, _gen(3))
    lam = torch.tensor([0.2, 0.5, 1.0, 0.9, 0.75, 0.0])
    choice = torch.tensor([True, False, True, False, True, False])
    boxes = torch.tensor([[0, 3, 0, 8], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [4, 8, 4, 8], [0, 0, 0, 0]])
    x_mix, y_mix = mix_batch(x, y_soft, lam, index, choice, boxes)
    x_cut, _ = cutmix(x, y_soft, lam, index, boxes)
    x_up, _ = mixup(x, y_soft, lam, index)
    assert torch.equal(x_mix[choice], x_cut[choice])
    assert torch.equal(x_mix[~choice], x_up[~choice])
    assert torch.equal(x_mix[2], x[2])
    assert torch.equal(x_mix[5], x[index[5]])
    torch.testing.assert_close(y_mix, mixup(x, y_soft, lam, index)[1])


def test_inputs_are_not_modified_and_integer_inputs_work_for_cutmix_only() -> None:
    x, y = _batch(4)
    y_soft = one_hot_smooth(y, C)
    x_before, y_before = x.clone(), y_soft.clone()
    index = partner_index(4, _gen())
    mix_batch(
        x, y_soft, torch.rand(4), index, torch.tensor([True, False, True, False]), torch.tensor([0, 4, 0, 4])
    )
    assert torch.equal(x, x_before)
    assert torch.equal(y_soft, y_before)
    images = torch.randint(0, 255, (4, 3, 8, 8), dtype=torch.uint8)
    out, _ = cutmix(images, y_soft, 0.75, index, torch.tensor([0, 4, 0, 4]))
    assert out.dtype == torch.uint8
    assert torch.equal(out[:, :, :4, :4], images[index][:, :, :4, :4])
    with pytest.raises(ConfigurationError, match="floating point"):
        mixup(images, y_soft, 0.5, index)
    with pytest.raises(ConfigurationError, match="two spatial dimensions"):
        cutmix(torch.rand(4, 5), y_soft, 0.5, index, torch.tensor([0, 1, 0, 1]))


# --------------------------------------------------------------------------- timm's formulas


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_batch_mixup_matches_timm(smoothing: float) -> None:
    x, y = _batch(8)
    lam = 0.3125

    class FixedMixup(timm.Mixup):
        def _params_per_batch(self):
            return lam, False

    ref = FixedMixup(num_classes=C, label_smoothing=smoothing)
    ref_x, ref_y = ref(x.clone(), y)
    ours_x, ours_y = mixup(x, one_hot_smooth(y, C, smoothing), lam, _flip(8))
    torch.testing.assert_close(ours_x, ref_x)
    torch.testing.assert_close(ours_y, ref_y)


@pytest.mark.parametrize("correct_lam", [True, False])
def test_batch_cutmix_matches_timm(correct_lam: bool) -> None:
    x, y = _batch(8, shape=(3, 13, 11))
    lam = 0.6

    class FixedCutMix(timm.Mixup):
        def _params_per_batch(self):
            return lam, True

    ref = FixedCutMix(
        mixup_alpha=0.0, cutmix_alpha=1.0, correct_lam=correct_lam, num_classes=C, label_smoothing=0.1
    )
    _seed_timm(5)
    ref_x, ref_y = ref(x.clone(), y)
    _seed_timm(5)
    (top, bottom, left, right), lam_used = timm.cutmix_bbox_and_lam(x.shape, lam, correct_lam=correct_lam)
    box = torch.tensor([int(top), int(bottom), int(left), int(right)])
    assert box[1] > box[0]
    assert box[3] > box[2]
    ours_x, ours_y = cutmix(x, one_hot_smooth(y, C, 0.1), float(lam_used), _flip(8), box)
    assert torch.equal(ours_x, ref_x)
    torch.testing.assert_close(ours_y, ref_y)
    if correct_lam:
        assert math.isclose(float(lam_used), float(box_lam(box, 13, 11)), abs_tol=1e-6)


@pytest.mark.parametrize("mode", ["elem", "pair"])
def test_per_element_mixing_matches_timms_loop(mode: str) -> None:
    b = 16
    x, y = _batch(b, shape=(3, 12, 12))
    ref = timm.Mixup(mixup_alpha=0.4, cutmix_alpha=1.0, prob=0.8, switch_prob=0.5, mode=mode, num_classes=C)
    _seed_timm(11)
    ref_x, ref_y = ref(x.clone(), y)
    # Replay timm's draws in the same order to recover its per-sample parameters and boxes.
    _seed_timm(11)
    draws = b if mode == "elem" else b // 2
    lam, use_cutmix = ref._params_per_elem(draws)
    boxes = np.zeros((draws, 4), dtype=np.int64)
    for i in range(draws):
        if lam[i] != 1.0 and use_cutmix[i]:
            box, lam[i] = timm.cutmix_bbox_and_lam(x[i].shape, lam[i], correct_lam=True)
            boxes[i] = [int(v) for v in box]
    if mode == "pair":  # the partner of i is b-1-i in both cases; a pair shares its draw
        lam, use_cutmix, boxes = (np.concatenate((a, a[::-1])) for a in (lam, use_cutmix, boxes))
    assert use_cutmix.any()
    assert (~use_cutmix & (lam < 1)).any()
    ours_x, ours_y = mix_batch(
        x,
        one_hot_smooth(y, C),
        torch.from_numpy(lam.astype(np.float32)),
        _flip(b),
        torch.from_numpy(use_cutmix),
        torch.from_numpy(boxes),
    )
    cut = torch.from_numpy(use_cutmix)
    assert torch.equal(ours_x[cut], ref_x[cut])
    torch.testing.assert_close(ours_x, ref_x)
    torch.testing.assert_close(ours_y, ref_y)


# --------------------------------------------------------------------------- CutMix boxes and λ


def test_corrected_lam_equals_the_pasted_area_fraction() -> None:
    b, h, w = 512, 9, 14
    x = torch.rand(b, 3, h, w, generator=_gen(1))  # partners differ at every pixel almost surely
    params = sample_mix_params(
        b, _gen(2), mode="elem", mixup_alpha=0.0, cutmix_alpha=1.0, spatial_size=(h, w), correct_lam=True
    )
    assert params.boxes is not None
    x_mix, _ = cutmix(x, torch.eye(C)[:1].expand(b, C), params.lam, params.index, params.boxes)
    pasted = (x_mix != x).all(dim=1).sum(dim=(1, 2))  # pixels taken from the partner
    assert torch.equal(params.lam, 1 - pasted.double() / (h * w))
    assert (params.lam < 1).float().mean() > 0.9


def test_boxes_have_side_sqrt_one_minus_lam_and_stay_inside_the_image() -> None:
    lam = torch.rand(4000, generator=_gen(3))
    boxes = cutmix_boxes(lam, 20, 30, _gen(4))
    top, bottom, left, right = boxes.unbind(-1)
    assert (top >= 0).all()
    assert (bottom <= 20).all()
    assert (left >= 0).all()
    assert (right <= 30).all()
    assert (bottom >= top).all()
    assert (right >= left).all()
    height = torch.floor(20 * torch.sqrt(1 - lam.double())).long()
    width = torch.floor(30 * torch.sqrt(1 - lam.double())).long()
    inside = (top > 0) & (bottom < 20) & (left > 0) & (right < 30)
    assert inside.sum() > 500
    assert torch.equal((bottom - top)[inside], height[inside])
    assert torch.equal((right - left)[inside], width[inside])
    assert (bottom - top <= height).all()
    assert (right - left <= width).all()


def test_minmax_boxes_have_sides_in_range_and_lam_is_their_area() -> None:
    params = sample_mix_params(
        3000, _gen(5), mode="elem", mixup_alpha=0.0, cutmix_minmax=(0.2, 0.8), spatial_size=(20, 10)
    )
    assert params.boxes is not None
    top, bottom, left, right = params.boxes.unbind(-1)
    assert set((bottom - top).unique().tolist()) == set(range(4, 16))
    assert set((right - left).unique().tolist()) == set(range(2, 8))
    assert (top >= 0).all()
    assert (bottom <= 20).all()
    assert (left >= 0).all()
    assert (right <= 10).all()
    assert torch.equal(params.lam, box_lam(params.boxes, 20, 10, torch.float64))


@pytest.mark.parametrize(
    ("minmax", "expected"),
    [
        ((0.5, 1.5), r"`cutmix_minmax` must be > 0 and <= 1, got 1\.5\.$"),
        (
            (0.8, 0.2),
            r"`cutmix_minmax` must be a \(min, max\) pair with 0 < min < max <= 1, got \[0\.8, 0\.2\]\.$",
        ),
        ((0.0, 0.5), r"`cutmix_minmax` must be > 0 and <= 1, got 0\.0\.$"),
        (0.5, r"`cutmix_minmax` must be None or a \(min, max\) pair of image fractions, got 0\.5\.$"),
    ],
)
@pytest.mark.parametrize("mode", ["batch", "elem"])
def test_sample_mix_params_refuses_a_bad_cutmix_minmax(minmax: object, expected: str, mode: str) -> None:
    """As MixupDataModule does; (0.5, 1.5) raised a torch-internal error and (0.8, 0.2) drew boxes
    outside the documented side range."""
    with pytest.raises(ConfigurationError, match=r"^sample_mix_params: " + expected):
        sample_mix_params(4, _gen(0), mode=mode, cutmix_minmax=minmax, spatial_size=(8, 8))  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match=r"^cutmix_boxes: " + expected):
        cutmix_boxes(torch.tensor([0.5]), 8, 8, _gen(0), minmax=minmax)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "minmax",
    [
        torch.tensor([0.3, 0.7]),
        np.array([0.3, 0.7]),
        np.array([0.3, 0.7], dtype=np.float32),
        (np.float32(0.3), np.float64(0.7)),
        (torch.tensor(0.3), torch.tensor(0.7)),
        torch.tensor([0.3, 0.7], dtype=torch.float16),  # 0.30005 and 0.7002
        torch.tensor([0.3, 0.7], dtype=torch.bfloat16),  # 0.30078125 and 0.69921875: int(10 * 0.699) is 6
        np.array([0.3, 0.7], dtype=np.float16),
        array.array("d", [0.3, 0.7]),
    ],
    ids=[
        "tensor",
        "ndarray",
        "float32 ndarray",
        "numpy scalars",
        "0-d tensors",
        "float16 tensor",
        "bfloat16 tensor",
        "float16 ndarray",
        "array.array",
    ],
)
def test_cutmix_minmax_may_be_a_tensor_an_array_or_numpy_scalars(minmax: object) -> None:
    """The same boxes as from the pair of Python floats 0.3 and 0.7.

    On a 10 x 10 image the side range is [int(10 * 0.3), int(10 * 0.7)) = [3, 7); float32's 0.7 is
    0.699999988, which would give 6: a float32 entry is read as the decimal float32 prints.
    """
    expected = sample_mix_params(
        256, _gen(3), mode="elem", mixup_alpha=0.0, cutmix_minmax=(0.3, 0.7), spatial_size=(10, 10)
    )
    got = sample_mix_params(  # type: ignore[arg-type]
        256, _gen(3), mode="elem", mixup_alpha=0.0, cutmix_minmax=minmax, spatial_size=(10, 10)
    )
    assert expected.boxes is not None
    sides = torch.cat(
        [expected.boxes[:, 1] - expected.boxes[:, 0], expected.boxes[:, 3] - expected.boxes[:, 2]]
    )
    assert sides.min().item() == 3
    assert sides.max().item() == 6  # sides drawn from [3, 7)
    assert torch.equal(got.boxes, expected.boxes)
    boxes = cutmix_boxes(torch.ones(16), 10, 10, _gen(4), minmax=minmax)  # type: ignore[arg-type]
    assert torch.equal(boxes, cutmix_boxes(torch.ones(16), 10, 10, _gen(4), minmax=(0.3, 0.7)))
    with pytest.raises(ConfigurationError, match=r"must be a finite number, got tensor\(\[0\.3000\]\)"):
        cutmix_boxes(torch.ones(1), 10, 10, _gen(4), minmax=(torch.tensor([0.3]), 0.7))  # type: ignore[arg-type]


@pytest.mark.parametrize("lam", [[1.5, 0.2], [-0.1], [float("nan")]])
def test_cutmix_boxes_refuses_a_lambda_outside_0_1(lam: list[float]) -> None:
    """A side is sqrt(1 - lam) of the image: outside [0, 1] the boxes were INT64_MIN coordinates."""
    with pytest.raises(ConfigurationError, match=r"^cutmix_boxes: `lam` must lie in \[0, 1\]"):
        cutmix_boxes(torch.tensor(lam), 8, 8, _gen(0))
    assert cutmix_boxes(torch.tensor([0.0, 1.0]), 8, 8, _gen(0)).shape == (2, 4)


def test_box_mask_is_the_box() -> None:
    mask = box_mask(torch.tensor([[1, 3, 2, 5], [0, 0, 0, 4]]), 4, 6)
    expected = torch.zeros(2, 4, 6, dtype=torch.bool)
    expected[0, 1:3, 2:5] = True
    assert torch.equal(mask, expected)


# --------------------------------------------------------------------------- targets


def test_label_smoothing_puts_exactly_the_requested_mass_off_the_true_class() -> None:
    y = torch.randint(0, C, (50,), generator=_gen())
    eps = 0.2
    smooth = one_hot_smooth(y, C, eps)
    torch.testing.assert_close(smooth.sum(1), torch.ones(50))
    torch.testing.assert_close(smooth.gather(1, y[:, None]).squeeze(1), torch.full((50,), 1 - eps + eps / C))
    torch.testing.assert_close(
        1 - smooth.gather(1, y[:, None]).squeeze(1), torch.full((50,), eps * (C - 1) / C)
    )
    logits = torch.randn(50, C, generator=_gen(1))  # the same loss as torch's own smoothing
    torch.testing.assert_close(
        F.cross_entropy(logits, smooth), F.cross_entropy(logits, y, label_smoothing=eps)
    )
    assert torch.equal(one_hot_smooth(SoftLabels(smooth), C, 0.0), smooth)
    torch.testing.assert_close(one_hot_smooth(smooth, C, 0.5), label_smoothing(smooth, 0.5))


@pytest.mark.parametrize("mode", ["batch", "pair", "elem"])
def test_mixed_targets_are_distributions_with_the_smoothing_mass_spread_evenly(mode: str) -> None:
    b, eps = 301, 0.1
    x, y = _batch(b, seed=3)
    params = sample_mix_params(
        b, _gen(7), mode=mode, mixup_alpha=1.0, cutmix_alpha=1.0, prob=0.7, spatial_size=(8, 8)
    )
    _, y_mix = mix_batch(
        x, one_hot_smooth(y, C, eps), params.lam, params.index, params.use_cutmix, params.boxes
    )
    torch.testing.assert_close(y_mix.sum(1), torch.ones(b))
    assert (y_mix >= 0).all()
    assert (y_mix <= 1).all()
    own, partner = y, y[params.index]
    lam = params.lam.float().expand(b)
    on_own = torch.where(own == partner, 1.0, lam) * (1 - eps) + eps / C
    torch.testing.assert_close(y_mix.gather(1, own[:, None]).squeeze(1), on_own)
    others = torch.ones(b, C, dtype=torch.bool)
    others[torch.arange(b), own] = False
    others[torch.arange(b), partner] = False
    torch.testing.assert_close(y_mix[others], torch.full_like(y_mix[others], eps / C))


# --------------------------------------------------------------------------- sampling


@pytest.mark.parametrize("alpha", [0.2, 1.0, 4.0])
def test_lambda_follows_beta_alpha_alpha(alpha: float) -> None:
    lam = sample_lam(alpha, 20_000, _gen(17))
    result = stats.kstest(lam.double().numpy(), stats.beta(alpha, alpha).cdf)
    assert result.pvalue > 1e-3, result
    # Through the per-sample sampler, mixup only, prob 1: the same law.
    params = sample_mix_params(20_000, _gen(18), mode="elem", mixup_alpha=alpha)
    result = stats.kstest(params.lam.double().numpy(), stats.beta(alpha, alpha).cdf)
    assert result.pvalue > 1e-3, result
    # And a wrong law is rejected, so the check has teeth.
    assert stats.kstest(lam.double().numpy(), stats.beta(alpha * 2, alpha * 2).cdf).pvalue < 1e-3


def _mass_inside(alpha: float) -> float:
    """P(0.01 < λ < 0.99) for λ ~ Beta(alpha, alpha), from SciPy."""
    law = stats.beta(alpha, alpha)
    return float(law.cdf(0.99) - law.cdf(0.01))


@pytest.mark.parametrize("alpha", [1e-3, 0.01, 0.03])
def test_a_tiny_alpha_puts_lambda_at_0_and_1_as_beta_does(alpha: float) -> None:
    """Beta(a, a) for small a: nearly all mass at 0 and 1, none piled up at 0.5.

    torch's gamma draws clamp to the smallest double for such alphas, and a Dirichlet of two
    clamped gammas is exactly (0.5, 0.5): with alpha 1e-3 a quarter of the λs were 0.5. Every path
    that draws λ is checked against SciPy's law: sample_lam, the per-sample draw (mixup alone, and
    with CutMix at another alpha), and mode "batch"'s host draw from a torch generator.
    """
    n = 100_000
    expected = _mass_inside(alpha)
    tolerance = 5 * math.sqrt(expected * (1 - expected) / n) + 1e-4
    options = {"mixup_alpha": alpha, "cutmix_alpha": 1.0, "correct_lam": False, "spatial_size": (8, 8)}
    mixed = sample_mix_params(2 * n, _gen(31), mode="elem", **options)
    assert mixed.use_cutmix is not None
    draws = {
        "sample_lam": sample_lam(alpha, n, _gen(30)),
        "elem, mixup only": sample_mix_params(n, _gen(32), mode="elem", mixup_alpha=alpha).lam,
        "elem, mixup next to CutMix": mixed.lam[~mixed.use_cutmix][:n],
    }
    for name, lam in draws.items():
        values = lam.double().numpy()
        assert len(values) > 0.45 * n, name
        inside = float(((values > 0.01) & (values < 0.99)).mean())
        assert abs(inside - expected) < tolerance * math.sqrt(n / len(values)), (name, inside, expected)
        assert int((values == 0.5).sum()) == 0, name
        assert abs(values.mean() - 0.5) < 5 * 0.5 / math.sqrt(len(values)), name
    batch = [
        sample_mix_params(2, _gen(5000 + k), mode="batch", mixup_alpha=alpha).lam.item() for k in range(4000)
    ]
    assert sum(lam == 0.5 for lam in batch) == 0
    inside = sum(0.01 < lam < 0.99 for lam in batch) / len(batch)
    assert abs(inside - expected) < 5 * math.sqrt(expected * (1 - expected) / len(batch)) + 2e-3


def _cdf_distance(values: np.ndarray, law: stats.rv_continuous) -> float:
    """The largest gap between the empirical and the true CDF at points from 1e-30 to 1 - 1e-12.

    Not a KS test over all values: for small alphas much of the mass lies within 1e-16 of 1, which
    float64 rounds to exactly 1.0 (the mass near 0 stays representable), so the points stop short
    of 1. The DKW inequality bounds the gap at any points: P(gap > e) <= 2 exp(-2 n e^2).
    """
    low = np.logspace(-30, np.log10(0.5), 200)
    points = np.concatenate([low, 1.0 - np.logspace(-12, np.log10(0.5), 200)])
    empirical = np.searchsorted(np.sort(values), points, side="right") / len(values)
    return float(np.abs(empirical - law.cdf(points)).max())


def test_a_small_alpha_follows_the_beta_law_below_and_at_the_log_space_threshold() -> None:
    """The whole law, not only its mass near 0.5, at alphas drawn in log space and by torch's Dirichlet."""
    n = 20_000
    bound = math.sqrt(math.log(2 / 1e-6) / (2 * n))  # DKW at a false-failure rate of 1e-6
    for alpha in (1e-3, 0.02, 0.049, 0.05, 0.08):
        lam = sample_lam(alpha, n, _gen(60)).numpy()
        assert _cdf_distance(lam, stats.beta(alpha, alpha)) < bound, alpha
        assert _cdf_distance(lam, stats.beta(2 * alpha, 2 * alpha)) > bound, alpha  # it has teeth


@pytest.mark.parametrize("mode", ["elem", "batch"])
def test_mixup_and_cutmix_lambdas_follow_each_methods_own_beta_law(mode: str) -> None:
    """Both methods on, different alphas: mixup's λ ~ Beta(0.2, 0.2), CutMix's λ ~ Beta(2, 2).

    ``correct_lam=False`` keeps CutMix's drawn λ (not the pasted area). Swapping the two laws must
    be rejected, so a mix-up of the alphas cannot pass.
    """
    mixup_alpha, cutmix_alpha = 0.2, 2.0
    options = {
        "mixup_alpha": mixup_alpha,
        "cutmix_alpha": cutmix_alpha,
        "switch_prob": 0.5,
        "correct_lam": False,
        "spatial_size": (16, 16),
    }
    if mode == "elem":
        draws = [sample_mix_params(500, _gen(40 + k), mode="elem", **options) for k in range(8)]
    else:
        draws = [sample_mix_params(2, _gen(1000 + k), mode="batch", **options) for k in range(1000)]
    lam = torch.cat([d.lam.reshape(-1) for d in draws]).double().numpy()
    cut = torch.cat([d.use_cutmix.reshape(-1) for d in draws]).numpy()  # type: ignore[union-attr]
    assert 0.4 < cut.mean() < 0.6
    for chosen, own, other in ((~cut, mixup_alpha, cutmix_alpha), (cut, cutmix_alpha, mixup_alpha)):
        values = lam[chosen]
        assert len(values) > 300
        assert stats.kstest(values, stats.beta(own, own).cdf).pvalue > 1e-3
        assert stats.kstest(values, stats.beta(other, other).cdf).pvalue < 1e-6


def test_prob_gates_mixing_at_the_requested_rate() -> None:
    n, p = 20_000, 0.3
    params = sample_mix_params(n, _gen(1), mode="elem", mixup_alpha=1.0, prob=p)
    rate = (params.lam < 1).float().mean().item()
    assert abs(rate - p) < 5 * math.sqrt(p * (1 - p) / n)
    pairs = sample_mix_params(n, _gen(2), mode="pair", mixup_alpha=1.0, prob=p)
    rate = (pairs.lam < 1).float().mean().item()
    assert abs(rate - p) < 5 * math.sqrt(p * (1 - p) / (n / 2))
    batches = 2000
    mixed = sum(
        bool(sample_mix_params(4, _gen(100 + k), mode="batch", mixup_alpha=1.0, prob=p).lam.item() < 1)
        for k in range(batches)
    )
    assert abs(mixed / batches - p) < 5 * math.sqrt(p * (1 - p) / batches)
    assert (sample_mix_params(64, _gen(3), mode="elem", prob=0.0).lam == 1).all()


def test_switch_prob_picks_cutmix_at_the_requested_rate() -> None:
    n, p = 20_000, 0.25
    params = sample_mix_params(
        n, _gen(1), mode="elem", mixup_alpha=1.0, cutmix_alpha=1.0, switch_prob=p, spatial_size=(8, 8)
    )
    assert params.use_cutmix is not None
    assert params.boxes is not None
    assert abs(params.use_cutmix.float().mean().item() - p) < 5 * math.sqrt(p * (1 - p) / n)
    mixup_rows = ~params.use_cutmix
    assert (params.boxes[mixup_rows] == 0).all()
    assert torch.equal(
        params.lam[params.use_cutmix], box_lam(params.boxes, 8, 8, torch.float64)[params.use_cutmix]
    )


@pytest.mark.parametrize("b", [1, 2, 5, 64])
def test_partners_are_one_random_cycle(b: int) -> None:
    index = partner_index(b, _gen(b))
    assert sorted(index.tolist()) == list(range(b))
    seen, i = [], 0
    for _ in range(b):
        seen.append(i)
        i = int(index[i])
    assert i == 0
    assert sorted(seen) == list(range(b))
    if b > 1:
        assert (index != torch.arange(b)).all()


@pytest.mark.parametrize("b", [1, 2, 7, 64])
def test_pair_mode_pairs_share_lambda_method_and_box(b: int) -> None:
    params = sample_mix_params(
        b, _gen(b), mode="pair", mixup_alpha=1.0, cutmix_alpha=1.0, spatial_size=(8, 8)
    )
    index = params.index
    assert torch.equal(index[index], torch.arange(b))
    alone = index == torch.arange(b)
    assert int(alone.sum()) == b % 2
    assert (params.lam[alone] == 1).all()
    assert torch.equal(params.lam[index], params.lam)
    assert params.use_cutmix is not None
    assert params.boxes is not None
    assert torch.equal(params.use_cutmix[index], params.use_cutmix)
    assert torch.equal(params.boxes[index], params.boxes)


@pytest.mark.parametrize("mode", ["batch", "pair", "elem"])
def test_odd_batches_and_a_batch_of_one_work(mode: str) -> None:
    for b in (1, 3, 9):
        x, y = _batch(b)
        params = sample_mix_params(
            b, _gen(b), mode=mode, mixup_alpha=1.0, cutmix_alpha=1.0, spatial_size=(8, 8)
        )
        x_mix, y_mix = mix_batch(
            x, one_hot_smooth(y, C), params.lam, params.index, params.use_cutmix, params.boxes
        )
        assert x_mix.shape == x.shape
        assert y_mix.shape == (b, C)
        if b == 1:
            assert torch.equal(x_mix, x)
            assert torch.equal(y_mix, one_hot_smooth(y, C))


def test_same_generator_seed_same_draw_and_modes_are_validated() -> None:
    def draw(seed: int):
        return sample_mix_params(
            32, _gen(seed), mode="elem", mixup_alpha=1.0, cutmix_alpha=1.0, spatial_size=(8, 8)
        )

    a, b, c = draw(0), draw(0), draw(1)
    assert all(torch.equal(getattr(a, f), getattr(b, f)) for f in ("index", "lam", "use_cutmix", "boxes"))
    assert not torch.equal(a.lam, c.lam)
    with pytest.raises(ConfigurationError, match="mode"):
        sample_mix_params(4, mode="rows")
    with pytest.raises(ConfigurationError, match="spatial_size"):
        sample_mix_params(4, cutmix_alpha=1.0)
    with pytest.raises(ConfigurationError, match="index"):
        mixup(torch.rand(4, 2), torch.eye(4), 0.5, torch.tensor([0, 1]))
    with pytest.raises(ConfigurationError, match="lam"):
        mixup(torch.rand(4, 2), torch.eye(4), torch.rand(3), torch.arange(4))


def test_label_smoothing_of_one_sample_uses_its_own_width() -> None:
    """A single ``(C,)`` distribution is smoothed over its C classes (hand-worked: C = 4, 5)."""
    torch.testing.assert_close(
        label_smoothing(torch.tensor([1.0, 0.0, 0.0, 0.0]), 0.2), torch.tensor([0.85, 0.05, 0.05, 0.05])
    )
    torch.testing.assert_close(
        label_smoothing(torch.tensor([0.0, 0.5, 0.5, 0.0, 0.0]), 0.5),
        torch.tensor([0.1, 0.35, 0.35, 0.1, 0.1]),
    )
    batch = torch.tensor([[1.0, 0.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0, 0.0]])
    torch.testing.assert_close(label_smoothing(batch[0], 0.5), label_smoothing(batch, 0.5)[0])
