"""The corruption suite against independent references: SciPy, PIL, colorsys and exact moments."""

from __future__ import annotations

import colorsys
import itertools
import math

import lightning.pytorch as pl
import numpy as np
import pytest
import scipy.ndimage as ndi
import scipy.stats as st
import torch
from PIL import Image

from _trainers import quiet_trainer
from lit_noise import ConfigurationError
from lit_noise.corruptions import (
    CIFAR10_C,
    CORRUPTIONS,
    DEFAULT_CORRUPTIONS,
    IMAGENET_C,
    TABLES,
    corrupt,
    hsv_to_rgb,
    register,
    rgb_to_hsv,
    unregister,
)
from lit_noise.corruptions import functional as CF
from lit_noise.examples import Classifier, ShapesDataModule

TABLE_NAMES = ("cifar10", "imagenet")
SEVERITY = (1, 2, 3, 4, 5)


def _rand(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _censored_normal_std(mean: float, std: float) -> float:
    """Exact std of clip(mean + std * Z, 0, 1) (numerical integration over the normal density)."""
    z = np.linspace(-12, 12, 400_001)
    values = np.clip(mean + std * z, 0.0, 1.0)
    weights = st.norm.pdf(z)
    m1 = np.trapezoid(values * weights, z)
    m2 = np.trapezoid(values**2 * weights, z)
    return math.sqrt(m2 - m1**2)


def _clipped_poisson_std(x: float, rate: float) -> float:
    """Exact std of clip(Poisson(x * rate) / rate, 0, 1) from SciPy's Poisson pmf."""
    k = np.arange(0, int(x * rate + 60 * math.sqrt(x * rate + 1) + 60))
    pmf = st.poisson.pmf(k, x * rate)
    values = np.clip(k / rate, 0.0, 1.0)
    m1 = (values * pmf).sum()
    return math.sqrt((values**2 * pmf).sum() - m1**2)


# ------------------------------------------------------------------------------------------ registry


def test_registry_holds_the_builtins_with_both_tables() -> None:
    assert set(DEFAULT_CORRUPTIONS) <= set(CORRUPTIONS)
    assert set(CIFAR10_C) == set(IMAGENET_C) == set(DEFAULT_CORRUPTIONS)
    for name in DEFAULT_CORRUPTIONS:
        corruption = CORRUPTIONS[name]
        for table in TABLE_NAMES:
            assert len(corruption.tables[table]) == 5
            for s in SEVERITY:
                assert corruption.params(s, table) == TABLES[table][name][s - 1]
    assert {n for n in DEFAULT_CORRUPTIONS if CORRUPTIONS[n].any_shape} == {
        "gaussian_noise",
        "shot_noise",
        "impulse_noise",
        "speckle_noise",
    }
    assert CORRUPTIONS["saturate"].channels == 3


def test_registry_is_read_only_and_register_adds_and_refuses_duplicates() -> None:
    with pytest.raises(TypeError):
        CORRUPTIONS["x"] = CORRUPTIONS["contrast"]  # type: ignore[index]

    def invert(x: torch.Tensor, params: tuple[float, ...], generator: torch.Generator | None) -> torch.Tensor:
        return torch.lerp(x, 1.0 - x, params[0])

    register("invert_test", invert, {"cifar10": [0.0, 0.25, 0.5, 0.75, 1.0]})
    try:
        x = _rand(2, 1, 4, 4)
        torch.testing.assert_close(corrupt(x, "invert_test", 5), 1.0 - x)
        with pytest.raises(ConfigurationError, match="new name"):
            register("invert_test", invert, {"cifar10": [0.0] * 5})
        with pytest.raises(ConfigurationError, match="constants"):
            corrupt(x, "invert_test", 1, constants="imagenet")
    finally:
        unregister("invert_test")
    assert "invert_test" not in CORRUPTIONS
    with pytest.raises(ConfigurationError, match="five"):
        register("bad_test", invert, {"cifar10": [0.1, 0.2]})
    with pytest.raises(ConfigurationError, match="finite"):
        register("bad_test", invert, {"cifar10": [0.1, 0.2, 0.3, 0.4, math.nan]})
    assert "bad_test" not in CORRUPTIONS


# ------------------------------------------------------------------------------------------ noise


@pytest.mark.parametrize("table", TABLE_NAMES)
def test_gaussian_noise_std_follows_the_table(table: str) -> None:
    grey = torch.full((400_000,), 0.5, dtype=torch.float64)
    for s in SEVERITY:
        (c,) = TABLES[table]["gaussian_noise"][s - 1]
        y = corrupt(grey, "gaussian_noise", s, table, _gen(s))
        noise = (y - grey).numpy()
        assert noise.std() == pytest.approx(_censored_normal_std(0.5, c), rel=0.01)
        # The median absolute deviation ignores the clipped tails: std of the unclipped noise.
        assert np.median(np.abs(noise)) / st.norm.ppf(0.75) == pytest.approx(c, rel=0.01)
        assert abs(noise.mean()) < 3 * c / math.sqrt(grey.numel())


@pytest.mark.parametrize("table", TABLE_NAMES)
def test_speckle_noise_std_follows_the_table(table: str) -> None:
    grey = torch.full((400_000,), 0.5, dtype=torch.float64)
    for s in SEVERITY:
        (c,) = TABLES[table]["speckle_noise"][s - 1]
        noise = (corrupt(grey, "speckle_noise", s, table, _gen(s)) - grey).numpy()
        assert noise.std() == pytest.approx(_censored_normal_std(0.5, 0.5 * c), rel=0.01)
        assert np.median(np.abs(noise)) / st.norm.ppf(0.75) == pytest.approx(0.5 * c, rel=0.01)
    # Multiplicative: black stays black.
    assert corrupt(torch.zeros(1000), "speckle_noise", 5, table, _gen()).abs().max() == 0


@pytest.mark.parametrize("table", TABLE_NAMES)
def test_shot_noise_std_follows_the_table(table: str) -> None:
    for level in (0.2, 0.5):
        grey = torch.full((400_000,), level, dtype=torch.float64)
        for s in SEVERITY:
            (rate,) = TABLES[table]["shot_noise"][s - 1]
            y = corrupt(grey, "shot_noise", s, table, _gen(s))
            assert (y - grey).std().item() == pytest.approx(_clipped_poisson_std(level, rate), rel=0.01)
            # Values are multiples of 1 / rate (Poisson counts), clipped at 1.
            counts = y * rate
            assert torch.allclose(counts, counts.round(), atol=1e-6)


@pytest.mark.parametrize("table", TABLE_NAMES)
def test_impulse_noise_amount_follows_the_table(table: str) -> None:
    n = 400_000
    grey = torch.full((n,), 0.5)
    for s in SEVERITY:
        (amount,) = TABLES[table]["impulse_noise"][s - 1]
        y = corrupt(grey, "impulse_noise", s, table, _gen(s))
        salt, pepper, kept = (y == 1).float().mean(), (y == 0).float().mean(), (y == 0.5).float().mean()
        tolerance = 4 * math.sqrt(amount * (1 - amount) / n)
        assert abs(salt + pepper - amount) < tolerance
        assert abs(salt - pepper) < 2 * tolerance
        assert kept + salt + pepper == pytest.approx(1.0)


@pytest.mark.parametrize("name", ["gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise"])
def test_noise_corruptions_take_any_shape(name: str) -> None:
    for shape in [(1000,), (8, 50), (4, 2, 1000), (2, 3, 4, 5, 6)]:
        x = _rand(*shape)
        y = corrupt(x, name, 3, generator=_gen())
        assert y.shape == x.shape
        assert y.dtype == x.dtype
        assert y.min() >= 0
        assert y.max() <= 1
        assert not torch.equal(x, y)


def test_value_range_maps_the_data_to_unit_range_and_back() -> None:
    audio = torch.zeros(200_000)  # silence in [-1, 1]
    y = corrupt(audio, "gaussian_noise", 1, generator=_gen(), value_range=(-1.0, 1.0))
    (c,) = CIFAR10_C["gaussian_noise"][0]
    assert y.std().item() == pytest.approx(2 * c, rel=0.02)  # the constant is relative to the range width
    assert y.min() >= -1
    assert y.max() <= 1
    unit = corrupt((audio + 1) / 2, "gaussian_noise", 1, generator=_gen())
    torch.testing.assert_close(y, unit * 2 - 1)
    with pytest.raises(ConfigurationError, match=r"values in \[-1, 1\]"):
        corrupt(audio + 2, "gaussian_noise", 1, value_range=(-1.0, 1.0))
    with pytest.raises(ConfigurationError, match="value_range"):
        corrupt(audio, "gaussian_noise", 1, value_range=(1.0, -1.0))


# ------------------------------------------------------------------------------------------ blur


@pytest.mark.parametrize("table", TABLE_NAMES)
def test_gaussian_blur_equals_scipy_gaussian_filter(table: str) -> None:
    x = _rand(2, 3, 32, 32, dtype=torch.float64)
    for s in SEVERITY:
        (sigma,) = TABLES[table]["gaussian_blur"][s - 1]
        kernel = CF.gaussian_kernel1d(sigma)
        assert kernel.numel() == 2 * int(4 * sigma + 0.5) + 1
        assert kernel.sum().item() == pytest.approx(1.0, abs=1e-12)
        y = corrupt(x, "gaussian_blur", s, table)
        # skimage.filters.gaussian is scipy.ndimage.gaussian_filter with mode='nearest', truncate=4.
        expected = ndi.gaussian_filter(x.numpy(), sigma=(0, 0, sigma, sigma), mode="nearest", truncate=4.0)
        np.testing.assert_allclose(y.numpy(), np.clip(expected, 0, 1), atol=1e-10)
        # A blur keeps each plane's mean (up to the border) and lowers its variance.
        assert y.var() < x.var()


def _reference_disk(radius: float, alias_blur: float) -> np.ndarray:
    """The reference `disk()`, with cv2.GaussianBlur written with SciPy (mirror = BORDER_REFLECT_101)."""
    if radius <= 8:
        grid, ksize = np.arange(-8, 8 + 1), 3
    else:
        grid, ksize = np.arange(-radius, radius + 1), 5
    xx, yy = np.meshgrid(grid, grid)
    disk = np.array((xx**2 + yy**2) <= radius**2, dtype=np.float64)
    disk /= disk.sum()
    offsets = np.arange(ksize) - (ksize - 1) / 2
    blur = np.exp(-(offsets**2) / (2 * alias_blur**2))
    blur /= blur.sum()
    disk = ndi.correlate1d(disk, blur, axis=0, mode="mirror")
    return ndi.correlate1d(disk, blur, axis=1, mode="mirror")


@pytest.mark.parametrize("table", TABLE_NAMES)
def test_defocus_blur_equals_the_reference_disk_filter(table: str) -> None:
    x = _rand(2, 3, 32, 32, seed=1, dtype=torch.float64)
    for s in SEVERITY:
        radius, alias = TABLES[table]["defocus_blur"][s - 1]
        reference = _reference_disk(radius, alias)
        kernel = CF.disk_kernel(radius, alias).numpy()
        # Normalised, except where the reference's reflect-101 blur meets a disk touching its grid edge.
        touches = radius >= 8
        assert (abs(kernel.sum() - 1.0) < 1e-12) != touches
        # The trimmed kernel is the reference kernel without its all-zero margin.
        pad = (reference.shape[0] - kernel.shape[0]) // 2
        np.testing.assert_allclose(np.pad(kernel, pad), reference, atol=1e-15)
        # cv2.filter2D correlates with BORDER_REFLECT_101 (SciPy's 'mirror').
        expected = ndi.correlate(x.numpy(), reference[None, None], mode="mirror")
        y = corrupt(x, "defocus_blur", s, table)
        np.testing.assert_allclose(y.numpy(), np.clip(expected, 0, 1), atol=1e-10)


def test_defocus_blur_on_images_smaller_than_the_kernel() -> None:
    x = _rand(1, 1, 8, 8, dtype=torch.float64)
    radius, alias = IMAGENET_C["defocus_blur"][4]  # 21x21 kernel on an 8x8 image
    expected = ndi.correlate(x.numpy(), _reference_disk(radius, alias)[None, None], mode="mirror")
    np.testing.assert_allclose(CF.defocus_blur(x, radius, alias).numpy(), np.clip(expected, 0, 1), atol=1e-10)


# ------------------------------------------------------------------------------------------ photometric


@pytest.mark.parametrize("table", TABLE_NAMES)
def test_contrast_factor_is_the_ratio_of_deviations_from_the_mean(table: str) -> None:
    x = 0.4 + 0.2 * _rand(3, 3, 16, 16, dtype=torch.float64)  # no clipping
    mean = x.mean(dim=(-2, -1), keepdim=True)
    for s in SEVERITY:
        (c,) = TABLES[table]["contrast"][s - 1]
        y = corrupt(x, "contrast", s, table)
        torch.testing.assert_close(y.mean(dim=(-2, -1), keepdim=True), mean)
        torch.testing.assert_close((y - mean) / (x - mean), torch.full_like(x, c))


def _hsv_reference(x: torch.Tensor, fn: object) -> torch.Tensor:
    """Per-pixel colorsys round trip ``rgb -> hsv -> fn(h, s, v) -> rgb`` (a Python loop: the reference)."""
    out = torch.empty_like(x)
    b, _, h, w = x.shape
    for i in range(b):
        for r in range(h):
            for c in range(w):
                hue, sat, val = colorsys.rgb_to_hsv(*x[i, :, r, c].tolist())
                hue, sat, val = fn(hue, sat, val)  # type: ignore[operator]
                out[i, :, r, c] = torch.tensor(colorsys.hsv_to_rgb(hue, sat, val), dtype=x.dtype)
    return out.clamp(0, 1)


def _colour_image(seed: int = 0) -> torch.Tensor:
    x = _rand(2, 3, 6, 6, seed=seed, dtype=torch.float64)
    x[0, :, 0, 0] = 0.0  # black
    x[0, :, 0, 1] = 0.5  # grey
    x[0, :, 0, 2] = torch.tensor([0.7, 0.2, 0.7], dtype=torch.float64)  # red == blue max
    x[0, :, 0, 3] = torch.tensor([0.3, 0.9, 0.9], dtype=torch.float64)  # green == blue max
    x[0, :, 0, 4] = 1.0  # white
    return x


def test_hsv_conversions_equal_colorsys() -> None:
    x = _colour_image()
    hsv = rgb_to_hsv(x)
    expected = torch.empty_like(x)
    for i in range(x.shape[0]):
        for r in range(x.shape[2]):
            for c in range(x.shape[3]):
                expected[i, :, r, c] = torch.tensor(colorsys.rgb_to_hsv(*x[i, :, r, c].tolist()))
    torch.testing.assert_close(hsv, expected)
    torch.testing.assert_close(hsv_to_rgb(hsv), x)


@pytest.mark.parametrize("table", TABLE_NAMES)
def test_brightness_shifts_the_hsv_value_channel(table: str) -> None:
    x = _colour_image(seed=2)
    hsv = rgb_to_hsv(x)
    for s in SEVERITY:
        (c,) = TABLES[table]["brightness"][s - 1]
        y = corrupt(x, "brightness", s, table)
        torch.testing.assert_close(y, _hsv_reference(x, lambda h, sat, v, c=c: (h, sat, min(v + c, 1.0))))
        out = rgb_to_hsv(y)
        torch.testing.assert_close(out[:, 2], (hsv[:, 2] + c).clamp(max=1.0))
        lit = hsv[:, 2] > 0
        torch.testing.assert_close(
            out[:, :2][lit.unsqueeze(1).expand(-1, 2, -1, -1)],
            hsv[:, :2][lit.unsqueeze(1).expand(-1, 2, -1, -1)],
        )
    # One channel: the value is the pixel itself.
    grey = _rand(2, 1, 5, 5)
    torch.testing.assert_close(
        corrupt(grey, "brightness", 2), (grey + CIFAR10_C["brightness"][1][0]).clamp(0, 1)
    )


@pytest.mark.parametrize("table", TABLE_NAMES)
def test_saturate_scales_and_shifts_the_hsv_saturation_channel(table: str) -> None:
    x = _colour_image(seed=3)
    hsv = rgb_to_hsv(x)
    for s in SEVERITY:
        factor, shift = TABLES[table]["saturate"][s - 1]
        y = corrupt(x, "saturate", s, table)
        expected = _hsv_reference(
            x, lambda h, sat, v, a=factor, b=shift: (h, min(max(sat * a + b, 0.0), 1.0), v)
        )
        torch.testing.assert_close(y, expected)
        out = rgb_to_hsv(y)
        lit = hsv[:, 2] > 0
        torch.testing.assert_close(out[:, 1][lit], (hsv[:, 1] * factor + shift).clamp(0, 1)[lit])
        torch.testing.assert_close(out[:, 2], hsv[:, 2])


# ------------------------------------------------------------------------------------------ pixelate


def _pil_pixelate(plane: np.ndarray, factor: float) -> np.ndarray:
    h, w = plane.shape
    image = Image.fromarray(plane.astype(np.float32), mode="F")
    small = image.resize((int(w * factor), int(h * factor)), Image.Resampling.BOX)
    return np.asarray(small.resize((w, h), Image.Resampling.BOX))


@pytest.mark.parametrize("table", TABLE_NAMES)
@pytest.mark.parametrize("size", [(32, 32), (24, 40)])
def test_pixelate_equals_pil_box_resizing(table: str, size: tuple[int, int]) -> None:
    x = _rand(2, 3, *size, seed=4)
    for s in SEVERITY:
        (factor,) = TABLES[table]["pixelate"][s - 1]
        y = corrupt(x, "pixelate", s, table)
        expected = np.stack([[_pil_pixelate(p, factor) for p in img] for img in x.numpy()])
        np.testing.assert_allclose(y.numpy(), expected, atol=1e-5)
        # Rows of the per-axis matrix are averaging weights.
        matrix = CF.pixelate_matrix(size[0], factor)
        torch.testing.assert_close(matrix.sum(1), torch.ones(size[0], dtype=torch.float64))


# ------------------------------------------------------------------------------------------ common


@pytest.mark.parametrize("table", TABLE_NAMES)
@pytest.mark.parametrize("name", DEFAULT_CORRUPTIONS)
def test_outputs_stay_in_unit_range_keep_shape_dtype_and_are_deterministic(name: str, table: str) -> None:
    x = _rand(3, 3, 32, 32, seed=5)
    x[0] = 0.0
    x[1] = 1.0
    original = x.clone()
    for s in SEVERITY:
        y = corrupt(x, name, s, table, _gen(7))
        assert y.shape == x.shape
        assert y.dtype == x.dtype
        assert y.device == x.device
        assert y.min() >= 0
        assert y.max() <= 1
        torch.testing.assert_close(corrupt(x, name, s, table, _gen(7)), y, rtol=0, atol=0)
        if CORRUPTIONS[name].random:
            assert not torch.equal(corrupt(x, name, s, table, _gen(8)), y)
    assert torch.equal(x, original)  # the input is never written to


@pytest.mark.parametrize("name", [n for n in DEFAULT_CORRUPTIONS if not CORRUPTIONS[n].random])
def test_image_corruptions_are_vectorised_over_the_batch(name: str) -> None:
    x = _rand(5, 3, 32, 32, seed=6)
    batched = corrupt(x, name, 4)
    single = torch.cat([corrupt(x[i : i + 1], name, 4) for i in range(len(x))])
    torch.testing.assert_close(batched, single)


def test_the_global_rng_is_untouched_when_a_generator_is_given() -> None:
    state = torch.random.get_rng_state()
    x = _rand(2, 3, 8, 8)
    for name in DEFAULT_CORRUPTIONS:
        corrupt(x, name, 3, generator=_gen())
    assert torch.equal(state, torch.random.get_rng_state())


def test_bad_inputs_raise_clear_errors() -> None:
    x = _rand(2, 3, 8, 8)
    with pytest.raises(ConfigurationError, match="gaussian_noise") as info:
        corrupt(x, "fog", 1)
    assert all(name in str(info.value) for name in DEFAULT_CORRUPTIONS)
    for severity in (0, 6, 2.5, True, "3"):
        with pytest.raises(ConfigurationError, match="severity"):
            corrupt(x, "contrast", severity)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="constants"):
        corrupt(x, "contrast", 1, constants="cifar100")
    with pytest.raises(ConfigurationError, match=r"\(B, C, H, W\)"):
        corrupt(x[0], "gaussian_blur", 1)
    with pytest.raises(ConfigurationError, match=r"\(B, C, H, W\)"):
        corrupt(x.unsqueeze(0), "contrast", 1)
    with pytest.raises(ConfigurationError, match="3 channels"):
        corrupt(x[:, :1], "saturate", 1)
    with pytest.raises(ConfigurationError, match="floating"):
        corrupt((x * 255).to(torch.uint8), "contrast", 1)
    with pytest.raises(ConfigurationError, match=r"values in \[0, 1\]"):
        corrupt(x * 2, "pixelate", 1)
    with pytest.raises(ConfigurationError, match=r"values in \[0, 1\]"):
        corrupt(x - 0.5, "gaussian_noise", 1)
    with pytest.raises(ConfigurationError, match=r"values in \[0, 1\]"):
        corrupt(torch.full((4,), math.nan), "gaussian_noise", 1)


def test_input_errors_show_the_dtype_and_shape_without_quotes() -> None:
    with pytest.raises(ConfigurationError) as info:
        corrupt(_rand(8, 3), "gaussian_blur", 1)
    assert str(info.value) == (
        "corrupt: `x` must be an image batch (B, C, H, W) for 'gaussian_blur',"
        " got a torch.float32 tensor of shape (8, 3)."
    )
    with pytest.raises(ConfigurationError) as info:
        CF.saturate(_rand(2, 1, 4, 4), (0.3, 0.0))
    assert str(info.value) == (
        "saturate: `x` must be an image batch with 3 channels (..., 3, H, W),"
        " got a torch.float32 tensor of shape (2, 1, 4, 4)."
    )
    with pytest.raises(ConfigurationError) as info:
        corrupt([0.5], "contrast", 1)  # type: ignore[arg-type]
    assert str(info.value) == "corrupt: `x` must be a floating-point tensor for 'contrast', got a list."


# ------------------------------------------------------------------------------------------ on a model


@pytest.fixture(scope="module")
def shapes_model() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """The example CNN trained briefly on the shapes data, with exact BatchNorm statistics."""
    pl.seed_everything(0, verbose=False)
    dm = ShapesDataModule(batch_size=32, train_size=2000, val_size=500)
    model = Classifier("cnn", num_classes=6, input_shape=(3, 32, 32), hidden=16, lr=3e-3)
    trainer = quiet_trainer(max_epochs=5, limit_val_batches=0, num_sanity_val_steps=0)
    trainer.fit(model, dm)
    layers = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None
    with torch.no_grad():
        for chunk in dm.train_set.tensors[0][:1000].split(250):  # type: ignore[union-attr]
            model(chunk)
    model.eval()
    x, y = dm.val_set.tensors  # type: ignore[union-attr]
    return model, x, y


@pytest.mark.slow  # trains the shapes CNN (6 s), then about 1 s per corruption
@pytest.mark.parametrize("name", DEFAULT_CORRUPTIONS)
def test_higher_severity_lowers_a_trained_classifiers_accuracy(
    shapes_model: tuple[torch.nn.Module, torch.Tensor, torch.Tensor], name: str
) -> None:
    model, x, y = shapes_model

    def accuracy(inputs: torch.Tensor) -> float:
        with torch.no_grad():
            return (model(inputs).argmax(1) == y).float().mean().item()

    clean = accuracy(x)
    assert clean > 0.8
    cifar = [accuracy(corrupt(x, name, s, "cifar10", _gen(s))) for s in SEVERITY]
    imagenet = [accuracy(corrupt(x, name, s, "imagenet", _gen(s))) for s in SEVERITY]
    assert cifar[4] < clean - 0.03
    assert cifar[4] < cifar[0] - 0.03
    assert imagenet[4] <= cifar[4] + 0.02  # ImageNet-C's constants are at least as strong
    if name != "saturate":  # saturate's table is not monotone: severities 1-2 desaturate, 3-5 saturate
        for table in (cifar, imagenet):
            assert all(b <= a + 0.02 for a, b in itertools.pairwise(table)), table
