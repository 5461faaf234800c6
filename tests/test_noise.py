"""Input noise distributions: statistics with fixed generators, dtypes, scale, schedules, errors."""

from __future__ import annotations

import math
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from scipy import stats
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from _trainers import quiet_trainer
from lit_noise import (
    SNR,
    ConfigurationError,
    Gaussian,
    InputNoise,
    Laplace,
    Linear,
    Mask,
    SaltAndPepper,
    Speckle,
    Uniform,
)
from lit_noise import functional as LF
from lit_noise.noise import Noise
from lit_noise.schedules import Clock

N = 200_000
Z = 5.0  # confidence bound in standard errors: a fixed generator makes each check deterministic


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def assert_close_to(estimate: float, expected: float, standard_error: float) -> None:
    assert abs(estimate - expected) <= Z * standard_error, (estimate, expected, standard_error)


def assert_fraction(hits: torch.Tensor, p: float) -> None:
    n = hits.numel()
    assert_close_to(hits.double().mean().item(), p, math.sqrt(p * (1 - p) / n) + 1e-12)


# --------------------------------------------------------------------------- statistics


def test_gaussian_mean_and_std() -> None:
    x = torch.linspace(-1, 1, N)
    noise = Gaussian(std=0.3, mean=0.2)(x, generator=gen())
    delta = (noise - x).double()
    assert_close_to(delta.mean().item(), 0.2, 0.3 / math.sqrt(N))
    assert_close_to(delta.std().item(), 0.3, 0.3 / math.sqrt(2 * N))
    assert stats.normaltest(delta.numpy()).pvalue > 1e-4


def test_uniform_support_and_variance() -> None:
    width = 0.8
    delta = Uniform(width=width)(torch.zeros(N), generator=gen()).double()
    assert delta.min() >= -width / 2
    assert delta.max() < width / 2
    assert_close_to(delta.mean().item(), 0.0, width / math.sqrt(12 * N))
    variance = width**2 / 12  # Var of U(a, b) = (b - a)^2 / 12; the estimate's std is var * sqrt(0.8 / n)
    assert_close_to(delta.var().item(), variance, variance * math.sqrt(0.8 / N))
    assert stats.kstest(delta.numpy(), stats.uniform(loc=-width / 2, scale=width).cdf).pvalue > 1e-4


def test_laplace_mean_abs_and_variance() -> None:
    b = 0.5
    delta = Laplace(scale=b)(torch.zeros(N), generator=gen()).double()
    assert_close_to(delta.abs().mean().item(), b, b / math.sqrt(N))  # |X| ~ Exponential(b)
    assert_close_to(delta.mean().item(), 0.0, math.sqrt(2) * b / math.sqrt(N))
    variance = 2 * b**2  # fourth moment 24 b^4: the estimate's std is sqrt((24 - 4) b^4 / n)
    assert_close_to(delta.var().item(), variance, math.sqrt(20 / N) * b**2)
    assert stats.kstest(delta.numpy(), stats.laplace(scale=b).cdf).pvalue > 1e-4


def test_salt_and_pepper_amount_and_salt_ratio() -> None:
    x = torch.full((N,), 0.5)
    y = SaltAndPepper(amount=0.2, salt_vs_pepper=0.3, low=-1.0, high=2.0)(x, generator=gen())
    changed = y != 0.5
    assert set(y[changed].unique().tolist()) == {-1.0, 2.0}
    assert_fraction(changed, 0.2)
    assert_fraction(y[changed] == 2.0, 0.3)  # salt among the changed elements
    assert torch.equal(y[~changed], x[~changed])


def test_speckle_is_multiplicative() -> None:
    x = torch.full((N,), 2.0)
    x[:10] = 0.0
    y = Speckle(std=0.2)(x, generator=gen())
    assert torch.equal(y[:10], x[:10])  # zero stays zero
    ratio = (y[10:] / x[10:] - 1).double()
    assert_close_to(ratio.mean().item(), 0.0, 0.2 / math.sqrt(N))
    assert_close_to(ratio.std().item(), 0.2, 0.2 / math.sqrt(2 * N))


def test_snr_per_sample_decibels() -> None:
    signal = torch.randn(8, 16_000, generator=gen(1)) * torch.logspace(-2, 2, 8).unsqueeze(1)
    signal[3] = 0.0  # a silent sample gets no noise
    noisy = SNR(db=12.0)(signal, generator=gen())
    noise_power = (noisy - signal).pow(2).mean(1)
    signal_power = signal.pow(2).mean(1)
    keep = torch.arange(8) != 3
    db = 10 * torch.log10(signal_power[keep] / noise_power[keep])
    # noise power from 16k draws: relative error sqrt(2 / 16000) ~ 1.1 %, i.e. ~0.05 dB
    assert torch.allclose(db, torch.full_like(db, 12.0), atol=Z * 10 * math.log10(1 + math.sqrt(2 / 16_000)))
    assert torch.equal(noisy[3], signal[3])
    lowered = SNR(db=12.0)(signal, generator=gen(), scale=2.0)  # scale doubles the amplitude
    db_lowered = 10 * torch.log10(signal_power[keep] / (lowered - signal).pow(2).mean(1)[keep])
    assert torch.allclose(db_lowered, db - 20 * math.log10(2.0), atol=1e-3)


def test_mask_rate() -> None:
    x = torch.rand(N, generator=gen(1)) + 1.0
    y = Mask(p=0.3, value=-1.0)(x, generator=gen())
    dropped = y == -1.0
    assert_fraction(dropped, 0.3)
    assert torch.equal(y[~dropped], x[~dropped])


def test_mask_on_token_ids_keeps_the_dtype_and_the_other_ids() -> None:
    ids = torch.randint(200, 30_000, (N,), generator=gen(4))  # int64 token ids, never the mask id
    out = Mask(p=0.15, value=103)(ids, generator=gen())
    assert out.dtype == torch.int64
    masked = out == 103
    assert_fraction(masked, 0.15)  # binomial: within 5 standard errors of p
    assert torch.equal(out[~masked], ids[~masked])  # every other position unchanged
    assert torch.equal(
        Mask(p=1.0, value=2**62 + 1)(ids[:3]), torch.full((3,), 2**62 + 1)
    )  # exact, not via float


@pytest.mark.parametrize(
    ("dtype", "value"), [(torch.int32, -1), (torch.uint8, 255), (torch.int16, 7.0), (torch.bool, 0)]
)
def test_mask_on_other_integer_dtypes(dtype: torch.dtype, value: float) -> None:
    x = torch.ones(N // 10, dtype=dtype)
    out = Mask(p=0.4, value=value)(x, generator=gen())
    assert out.dtype == dtype
    masked = out != 1
    assert_fraction(masked, 0.4)
    assert set(out[masked].tolist()) == {int(value)}


@pytest.mark.parametrize(
    ("dtype", "value", "shown"),
    [
        (
            torch.int64,
            0.5,
            r"\[-9223372036854775808, 9223372036854775807\] to fill a torch\.int64 input, got 0\.5",
        ),
        (torch.uint8, 256, r"\[0, 255\] to fill a torch\.uint8 input, got 256"),
        (torch.uint8, -1, r"\[0, 255\] to fill a torch\.uint8 input, got -1"),
        (torch.bool, 2, r"\[0, 1\] to fill a torch\.bool input, got 2"),
    ],
)
def test_mask_refuses_a_fill_the_integer_dtype_cannot_hold(
    dtype: torch.dtype, value: float, shown: str
) -> None:
    with pytest.raises(ConfigurationError, match=r"Mask: `value` must be a whole number in " + shown):
        Mask(p=0.1, value=value)(torch.zeros(4, dtype=dtype))


def test_mask_refuses_complex_inputs() -> None:
    with pytest.raises(ConfigurationError, match=r"floating tensor, got dtype torch\.complex64"):
        Mask(p=0.1)(torch.zeros(4, dtype=torch.complex64))


def test_gate_samples_keeps_whole_samples() -> None:
    noisy, clean = torch.ones(N // 10, 3, 4), torch.zeros(N // 10, 3, 4)
    out = LF.gate_samples(noisy, clean, p=0.25, generator=gen())
    per_sample = out.flatten(1)
    assert torch.equal(per_sample.min(1).values, per_sample.max(1).values)  # all or nothing
    assert_fraction(per_sample[:, 0] == 1, 0.25)
    assert LF.gate_samples(noisy, clean, p=1.0) is noisy


# --------------------------------------------------------------------------- behaviour

INPUT_NOISES = [
    Gaussian(std=0.1),
    Uniform(width=0.2),
    Laplace(scale=0.1),
    SaltAndPepper(amount=0.1),
    Speckle(std=0.1),
    SNR(db=10.0),
    Mask(p=0.2),
]


@pytest.mark.parametrize("noise", INPUT_NOISES, ids=lambda n: type(n).__name__)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_dtype_shape_kept_and_input_untouched(noise: Noise, dtype: torch.dtype) -> None:
    x = (torch.rand(16, 3, 8, 8, generator=gen(3)) + 0.5).to(dtype)
    before = x.clone()
    y = noise(x, generator=gen())
    assert y.dtype == dtype
    assert y.shape == x.shape
    assert y.device == x.device
    assert torch.equal(x, before)  # a noisy copy, never in place
    assert not torch.equal(y, x)
    assert torch.equal(noise(x, generator=gen()), y)  # same generator state, same noise
    assert not torch.equal(noise(x, generator=gen(1)), y)


@pytest.mark.parametrize("noise", INPUT_NOISES, ids=lambda n: type(n).__name__)
def test_non_contiguous_inputs(noise: Noise) -> None:
    x = torch.rand(8, 8, 3, generator=gen(2)).permute(2, 0, 1) + 0.5
    y = noise(x, generator=gen())
    assert y.shape == x.shape
    assert torch.equal(y, noise(x.contiguous(), generator=gen()))  # noise does not depend on layout


@pytest.mark.parametrize(
    "noise", [n for n in INPUT_NOISES if not isinstance(n, Mask)], ids=lambda n: type(n).__name__
)
def test_integer_inputs_are_refused(noise: Noise) -> None:
    with pytest.raises(ConfigurationError, match=r"floating tensor, got dtype torch\.int64"):
        noise(torch.arange(10))


def test_scale_multiplies_strength_and_clips() -> None:
    assert Gaussian(std=0.1, mean=0.5).resolve(scale=3.0) == pytest.approx({"std": 0.3, "mean": 0.5})
    assert Mask(p=0.6).resolve(scale=2.0) == {"p": 1.0}  # clipped to its range
    assert SaltAndPepper(amount=0.4).resolve(scale=0.5) == {"amount": pytest.approx(0.2)}
    y = Gaussian(std=0.1)(torch.zeros(N), generator=gen(), scale=2.0)
    assert_close_to(y.double().std().item(), 0.2, 0.2 / math.sqrt(2 * N))
    assert torch.equal(Gaussian(std=0.1)(torch.ones(5), scale=0.0), torch.ones(5))


def test_scheduled_parameters_need_a_clock() -> None:
    noise = Gaussian(std=Linear(start=0.0, end=0.4, until=1.0))
    with pytest.raises(ConfigurationError, match="clock"):
        noise(torch.zeros(3))
    assert noise.resolve(Clock(progress=0.25)) == pytest.approx({"std": 0.1, "mean": 0.0})
    y = noise(torch.zeros(N), generator=gen(), clock=Clock(progress=0.5))
    assert_close_to(y.double().std().item(), 0.2, 0.2 / math.sqrt(2 * N))
    assert set(noise.schedules()) == {"std", "mean"}


@pytest.mark.parametrize(
    ("build", "fragments"),
    [
        (lambda: Gaussian(std=-1.0), ["Gaussian", "`std`", ">= 0", "-1.0"]),
        (lambda: Gaussian(std=Linear(start=-0.1, end=0.1, until=1.0)), ["`std`", ">= 0", "range -0.1..0.1"]),
        (lambda: Gaussian(std="0.1"), ["Gaussian", "`std`", "'0.1'", "number or a lit_noise schedule"]),
        (lambda: Gaussian(std=True), ["`std`", "True"]),
        (lambda: Gaussian(std=float("nan")), ["`std`", "finite number"]),
        (lambda: Uniform(width=-0.5), ["Uniform", "`width`", ">= 0"]),
        (lambda: Laplace(scale=-1), ["Laplace", "`scale`", ">= 0"]),
        (lambda: Speckle(std=-0.1), ["Speckle", "`std`"]),
        (lambda: Mask(p=1.5), ["Mask", "`p`", ">= 0 and <= 1", "1.5"]),
        (lambda: Mask(p=-0.1), ["Mask", "`p`", "-0.1"]),
        (lambda: SaltAndPepper(amount=1.2), ["SaltAndPepper", "`amount`", "<= 1"]),
        (lambda: SaltAndPepper(amount=0.1, salt_vs_pepper=2), ["`salt_vs_pepper`", "<= 1", "2"]),
        (lambda: SaltAndPepper(amount=0.1, low=1.0, high=0.0), ["`high`", ">= `low`"]),
        (lambda: SNR(db=math.inf), ["SNR", "`db`", "finite"]),
    ],
)
def test_bad_arguments(build, fragments) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigurationError) as info:
        build()
    for fragment in fragments:
        assert fragment in str(info.value), (fragment, str(info.value))


def test_repr_shows_arguments() -> None:
    assert repr(Gaussian(std=0.1)) == "Gaussian(std=0.1, mean=0.0)"
    assert "salt_vs_pepper=0.5" in repr(SaltAndPepper(amount=0.1))


# --------------------------------------------------------------------------- through InputNoise


class TokenModel(pl.LightningModule):
    """A bag-of-embeddings classifier that records the token ids each training step receives."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(50, 4)
        self.head = nn.Linear(4, 2)
        self.seen: list[torch.Tensor] = []

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        ids, y = batch
        self.seen.append(ids.clone())
        return F.cross_entropy(self.head(self.embed(ids).mean(1)), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_input_noise_masks_token_ids_in_a_fit(tmp_path: Path) -> None:
    ids = torch.randint(1, 50, (64, 16), generator=gen(5))  # id 0 is the mask token
    y = torch.randint(0, 2, (64,), generator=gen(6))
    original = ids.clone()
    model = TokenModel()
    trainer = quiet_trainer(
        default_root_dir=str(tmp_path), callbacks=[InputNoise(Mask(p=0.25, value=0), seed=0)]
    )
    trainer.fit(model, DataLoader(TensorDataset(ids, y), batch_size=32))
    seen = torch.cat(model.seen)
    assert seen.dtype == torch.int64
    masked = seen == 0
    assert_fraction(masked, 0.25)
    assert torch.equal(seen[~masked], original[~masked])  # the other ids reach training_step unchanged
    assert torch.equal(ids, original)  # the dataset itself is untouched
