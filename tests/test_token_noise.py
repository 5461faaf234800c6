"""TokenMask, TokenSubstitute, TokenDrop and InputNoise's `mask_key`, against counts and formulas."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from scipy import stats
from torch import Tensor, nn
from torch.utils.data import DataLoader

from _trainers import quiet_trainer
from lit_noise import (
    ConfigurationError,
    Gaussian,
    InputNoise,
    LabelSmoothing,
    Linear,
    TokenDrop,
    TokenMask,
    TokenSubstitute,
)
from lit_noise import functional as LF
from lit_noise.examples import TokenClassifier, TokenDataModule

PAD, MASK, VOCAB = 0, 1, 48


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """One intra-op thread: tiny transformer steps are far slower with threads fighting for shared cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _padded_ids(rows: int = 400, length: int = 50, seed: int = 1, dtype: torch.dtype = torch.long) -> Tensor:
    """Random tokens 2..VOCAB-1, each row padded with PAD after a random length of 10..length."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, VOCAB, (rows, length), generator=g)
    lengths = torch.randint(10, length + 1, (rows,), generator=g)
    ids[torch.arange(length) >= lengths[:, None]] = PAD
    return ids.to(dtype)


def _binomial_ok(hits: int, n: int, p: float) -> bool:
    low, high = stats.binom.interval(1 - 1e-6, n, p)
    return bool(low <= hits <= high)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------------------------------- noises


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_token_mask_rate_and_padding(p: float) -> None:
    ids = _padded_ids()
    out = TokenMask(p=p, mask_id=MASK, pad_id=PAD)(ids, generator=_gen())
    real = ids != PAD
    masked = out == MASK
    assert _binomial_ok(int(masked.sum()), int(real.sum()), p)
    assert not masked[~real].any()
    assert torch.equal(out[~real], ids[~real])
    assert torch.equal(out[~masked], ids[~masked])  # what is not masked is unchanged


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.int16, torch.uint8])
def test_token_noises_keep_dtype_and_device(dtype: torch.dtype) -> None:
    ids = _padded_ids(rows=20, dtype=dtype)
    for noise in (
        TokenMask(p=0.5, mask_id=MASK, pad_id=PAD),
        TokenSubstitute(p=0.5, vocab_size=VOCAB, pad_id=PAD),
        TokenDrop(p=0.5, pad_id=PAD),
    ):
        out = noise(ids, generator=_gen())
        assert out.dtype == dtype
        assert out.device == ids.device
        assert out.shape == ids.shape
        assert not torch.equal(out, ids)


@pytest.mark.parametrize("p", [0.2, 0.7])
def test_token_substitute_rate_never_itself_never_special(p: float) -> None:
    ids = _padded_ids()
    noise = TokenSubstitute(p=p, vocab_size=VOCAB, pad_id=PAD, special_ids=[MASK])
    out = noise(ids, generator=_gen())
    real = ids != PAD
    changed = out != ids
    assert _binomial_ok(int(changed.sum()), int(real.sum()), p)
    assert not changed[~real].any()
    assert int(out[real].min()) >= 2
    assert int(out.max()) < VOCAB


@pytest.mark.parametrize("original", [2, 5, VOCAB - 1])  # the first, an inner and the last candidate
def test_token_substitute_is_uniform_over_the_other_candidates(original: int) -> None:
    vocab = 12
    ids = torch.full((60_000,), original)
    out = TokenSubstitute(p=1.0, vocab_size=vocab, pad_id=PAD, special_ids=[MASK])(ids, generator=_gen(3))
    if original == VOCAB - 1:  # outside this vocabulary: never replaced
        assert torch.equal(out, ids)
        return
    others = [i for i in range(2, vocab) if i != original]  # hand-written candidate list
    counts = torch.bincount(out, minlength=vocab)
    assert counts[original] == 0
    assert counts[PAD] == 0
    assert counts[MASK] == 0
    assert int(counts[others].sum()) == ids.numel()
    assert stats.chisquare(counts[others].numpy()).pvalue > 1e-4


def test_token_substitute_without_pad_draws_from_the_whole_vocabulary() -> None:
    ids = torch.zeros(40_000, dtype=torch.long)
    out = TokenSubstitute(p=1.0, vocab_size=5)(ids, generator=_gen())
    counts = torch.bincount(out, minlength=5)
    assert counts[0] == 0
    assert stats.chisquare(counts[1:].numpy()).pvalue > 1e-4


def test_token_drop_pads_and_updates_the_mask() -> None:
    ids = _padded_ids()
    mask = (ids != PAD).long()
    out, new_mask = LF.token_drop(ids, 0.3, PAD, mask, _gen())
    assert new_mask is not None
    assert new_mask.dtype == mask.dtype
    dropped = out != ids
    assert torch.equal(out[dropped], torch.full((int(dropped.sum()),), PAD))
    assert _binomial_ok(int(dropped.sum()), int(mask.sum()), 0.3)
    assert torch.equal(new_mask, (out != PAD).long())  # ids and mask agree
    assert torch.equal(TokenDrop(p=0.3, pad_id=PAD)(ids, generator=_gen()), out)  # same stream
    bool_out, bool_mask = LF.token_drop(ids, 0.3, PAD, mask.bool(), _gen())
    assert torch.equal(bool_out, out)
    assert bool_mask is not None
    assert torch.equal(bool_mask, new_mask.bool())


def test_apply_where_leaves_unkept_positions_even_when_not_pad() -> None:
    # Padding by the mask alone (a tokenizer that pads with an end-of-text id, here 7).
    ids = torch.randint(2, VOCAB, (300, 30), generator=_gen(5))
    keep = torch.rand(300, 30, generator=_gen(6)) < 0.6
    ids[~keep] = 7
    params = {"p": 1.0}
    for noise in (TokenMask(p=1.0, mask_id=MASK), TokenSubstitute(p=1.0, vocab_size=VOCAB)):
        out = noise.apply_where(ids, params, _gen(), keep)
        assert torch.equal(out[~keep], ids[~keep])
        assert (out[keep] != ids[keep]).all()
    per_sample = torch.tensor([True, False] * 150)  # a (B,) mask keeps or spares whole rows
    out = TokenMask(p=1.0, mask_id=MASK).apply_where(ids, params, _gen(), per_sample)
    assert (out[per_sample] == MASK).all()
    assert torch.equal(out[~per_sample], ids[~per_sample])


def test_same_seed_same_ids_other_seed_other_ids() -> None:
    ids = _padded_ids()
    for noise in (TokenMask(p=0.3, mask_id=MASK, pad_id=PAD), TokenSubstitute(p=0.3, vocab_size=VOCAB)):
        first = noise(ids, generator=_gen(11))
        assert torch.equal(first, noise(ids, generator=_gen(11)))
        assert not torch.equal(first, noise(ids, generator=_gen(12)))


def test_scale_multiplies_p_and_clips_it() -> None:
    noise = TokenMask(p=0.3, mask_id=MASK, pad_id=PAD)
    assert noise.resolve(scale=2.0) == {"p": pytest.approx(0.6)}
    assert noise.resolve(scale=5.0) == {"p": 1.0}
    ids = _padded_ids()
    out = noise(ids, generator=_gen(), scale=5.0)
    assert torch.equal(out == MASK, ids != PAD)  # p clipped to 1: every real token masked


@pytest.mark.parametrize(
    ("build", "name", "shown"),
    [
        (lambda: TokenMask(p=1.5, mask_id=1), "p", "1.5"),
        (lambda: TokenMask(p=-0.1, mask_id=1), "p", "-0.1"),
        (lambda: TokenMask(p=Linear(start=0.0, end=2.0, until=1.0), mask_id=1), "p", "0..2"),
        (lambda: TokenMask(p=0.1, mask_id=-1), "mask_id", "-1"),
        (lambda: TokenMask(p=0.1, mask_id=1.0), "mask_id", "1.0"),
        (lambda: TokenMask(p=0.1, mask_id=0, pad_id=0), "mask_id", "0"),
        (lambda: TokenMask(p=0.1, mask_id=1, pad_id=True), "pad_id", "True"),
        (lambda: TokenSubstitute(p=0.1, vocab_size=1), "vocab_size", "1"),
        (lambda: TokenSubstitute(p=0.1, vocab_size=10.0), "vocab_size", "10.0"),
        (lambda: TokenSubstitute(p=0.1, vocab_size=10, pad_id=10), "pad_id", "10"),
        (lambda: TokenSubstitute(p=0.1, vocab_size=10, special_ids=[3, 12]), "special_ids", "[3, 12]"),
        (lambda: TokenSubstitute(p=0.1, vocab_size=10, special_ids="ab"), "special_ids", "'ab'"),
        (lambda: TokenSubstitute(p=0.1, vocab_size=3, pad_id=0, special_ids=[1]), "vocab_size", "3"),
        (lambda: TokenDrop(p=0.1, pad_id=None), "pad_id", "None"),
        (lambda: TokenDrop(p=0.1, pad_id=-3), "pad_id", "-3"),
    ],
)
def test_bad_arguments_are_named(build: Any, name: str, shown: str) -> None:
    with pytest.raises(ConfigurationError, match=rf"`{name}`.*{shown}") as info:
        build()
    assert str(info.value).startswith(("TokenMask: ", "TokenSubstitute: ", "TokenDrop: "))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bool])
def test_float_or_bool_input_is_refused(dtype: torch.dtype) -> None:
    with pytest.raises(ConfigurationError, match=rf"TokenMask changes token ids.*integer.*{dtype}"):
        TokenMask(p=0.1, mask_id=1)(torch.zeros(2, 3, dtype=dtype))


def test_ids_that_do_not_fit_the_dtype_are_refused() -> None:
    ids = torch.zeros(2, 3, dtype=torch.uint8)
    with pytest.raises(ConfigurationError, match=r"TokenMask: `mask_id` 300 does not fit.*uint8"):
        TokenMask(p=0.1, mask_id=300)(ids)
    with pytest.raises(ConfigurationError, match=r"TokenSubstitute: `vocab_size` 1000 .*uint8"):
        TokenSubstitute(p=0.1, vocab_size=1000)(ids)


def test_input_noise_accepts_token_noise_and_still_refuses_label_noise() -> None:
    assert InputNoise(TokenMask(p=0.1, mask_id=1), key="input_ids").noise.applies_to == "ids"
    with pytest.raises(ConfigurationError, match="label noise LabelSmoothing"):
        InputNoise(LabelSmoothing(eps=0.1))


# ------------------------------------------------------------------------ through InputNoise


class Recording(TokenClassifier):
    """The token example, keeping a copy of every training batch it is given."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.seen: list[dict[str, Tensor]] = []

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        self.seen.append({k: v.clone() for k, v in batch.items()})
        return super().training_step(batch, batch_idx)


class CleanCopy(pl.Callback):
    """Keeps the clean batch (runs before the noise callbacks listed after it)."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Tensor]] = []

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: Any, batch: Any, batch_idx: int) -> None:
        self.seen.append({k: v.clone() for k, v in batch.items()})


def _fit(*noises: pl.Callback, batches: int = 3, **data: Any) -> tuple[list[dict[str, Tensor]], ...]:
    clean = CleanCopy()
    model = Recording()
    trainer = quiet_trainer(
        callbacks=[clean, *noises], limit_train_batches=batches, limit_val_batches=0, log_every_n_steps=1
    )
    trainer.fit(model, TokenDataModule(**data))
    return clean.seen, model.seen


def _stack(batches: list[dict[str, Tensor]], key: str) -> Tensor:
    return torch.cat([b[key] for b in batches])


@pytest.fixture(scope="module")
def masked_fit() -> tuple[list[dict[str, Tensor]], ...]:
    noise = InputNoise(TokenMask(p=0.4, mask_id=MASK), key="input_ids", mask_key="attention_mask", seed=0)
    return _fit(noise, batches=4)


def test_mask_key_limits_token_mask_to_real_tokens(masked_fit: tuple[list[dict[str, Tensor]], ...]) -> None:
    clean, noisy = masked_fit
    ids, out = _stack(clean, "input_ids"), _stack(noisy, "input_ids")
    real = _stack(clean, "attention_mask") == 1
    assert torch.equal(out[~real], ids[~real])
    masked = out == MASK
    assert _binomial_ok(int(masked.sum()), int(real.sum()), 0.4)
    assert torch.equal(out[~masked], ids[~masked])
    assert torch.equal(_stack(noisy, "attention_mask"), _stack(clean, "attention_mask"))  # mask untouched
    assert torch.equal(_stack(noisy, "labels"), _stack(clean, "labels"))


def test_the_dataset_is_not_changed(masked_fit: tuple[list[dict[str, Tensor]], ...]) -> None:
    clean, _ = masked_fit
    assert not (_stack(clean, "input_ids") == MASK).any()  # the clean copies come from an unchanged set


def test_same_seed_same_batches_other_seed_other_batches(
    masked_fit: tuple[list[dict[str, Tensor]], ...],
) -> None:
    def run(seed: int) -> Tensor:
        noise = InputNoise(
            TokenMask(p=0.4, mask_id=MASK), key="input_ids", mask_key="attention_mask", seed=seed
        )
        return _stack(_fit(noise, batches=4)[1], "input_ids")

    assert torch.equal(run(0), _stack(masked_fit[1], "input_ids"))
    assert not torch.equal(run(1), _stack(masked_fit[1], "input_ids"))


def test_each_batch_index_gets_its_own_draw() -> None:
    # Every sequence is the same, so only the draw can differ between batches.
    ids = torch.full((8, 10), 5)
    mask = torch.ones(8, 10, dtype=torch.long)
    samples = [
        {"input_ids": i, "attention_mask": m, "labels": torch.tensor(0)}
        for i, m in zip(ids, mask, strict=True)
    ]

    class Fixed(pl.LightningDataModule):
        def train_dataloader(self) -> DataLoader[Any]:
            return DataLoader(samples, batch_size=4)  # type: ignore[arg-type]

        def val_dataloader(self) -> DataLoader[Any]:
            return self.train_dataloader()

    model = Recording(max_length=10)
    noise = InputNoise(TokenMask(p=0.5, mask_id=MASK), key="input_ids", mask_key="attention_mask", seed=0)
    quiet_trainer(callbacks=[noise], max_epochs=2, limit_val_batches=0).fit(model, Fixed())
    draws = [b["input_ids"] == MASK for b in model.seen]
    assert len(draws) == 4  # two batches, two epochs
    assert all(not torch.equal(draws[i], draws[j]) for i in range(4) for j in range(i))


def test_schedule_and_scale_through_input_noise() -> None:
    ramp = InputNoise(
        TokenMask(p=Linear(start=0.0, end=0.8, until=1.0), mask_id=MASK),
        key="input_ids",
        mask_key="attention_mask",
        seed=0,
    )
    clean, noisy = _fit(ramp, batches=4)
    assert ramp.last_values["p"] == pytest.approx(0.6)  # last of 4 steps: 3/4 of the ramp
    assert torch.equal(noisy[0]["input_ids"], clean[0]["input_ids"])  # p = 0 at the first step
    for step, (before, after) in enumerate(zip(clean[1:], noisy[1:], strict=True), start=1):
        real = before["attention_mask"] == 1
        hits = int((after["input_ids"] == MASK).sum())
        assert _binomial_ok(hits, int(real.sum()), 0.8 * step / 4)
    scaled = InputNoise(
        TokenMask(p=0.3, mask_id=MASK), key="input_ids", mask_key="attention_mask", seed=0, scale=10.0
    )
    clean, noisy = _fit(scaled, batches=1)
    assert scaled.last_values["p"] == 1.0  # 0.3 * 10 clipped to 1
    assert torch.equal(noisy[0]["input_ids"] == MASK, clean[0]["attention_mask"] == 1)


def test_token_drop_through_input_noise_keeps_ids_and_mask_in_agreement() -> None:
    noise = InputNoise(TokenDrop(p=0.3, pad_id=PAD), key="input_ids", mask_key="attention_mask", seed=0)
    clean, noisy = _fit(noise, batches=2)
    ids, out = _stack(clean, "input_ids"), _stack(noisy, "input_ids")
    mask, new_mask = _stack(clean, "attention_mask"), _stack(noisy, "attention_mask")
    dropped = out != ids
    assert _binomial_ok(int(dropped.sum()), int(mask.sum()), 0.3)
    assert (out[dropped] == PAD).all()
    assert (new_mask[dropped] == 0).all()
    assert torch.equal(new_mask, (out != PAD).long())
    assert new_mask.dtype == mask.dtype
    assert torch.equal(new_mask[~dropped], mask[~dropped])


def test_token_drop_without_mask_key_warns_about_the_attention_mask() -> None:
    noise = InputNoise(TokenDrop(p=0.3, pad_id=PAD), key="input_ids", seed=0)
    with pytest.warns(UserWarning, match=r"`mask_key` is not set.*attention_mask"):
        clean, noisy = _fit(noise, batches=2)
    assert (_stack(noisy, "input_ids") != _stack(clean, "input_ids")).any()  # still drops by pad_id


def test_substitute_through_input_noise_never_touches_padding() -> None:
    noise = InputNoise(
        TokenSubstitute(p=0.5, vocab_size=VOCAB, special_ids=[PAD, MASK]),
        key="input_ids",
        mask_key="attention_mask",
        seed=0,
    )
    clean, noisy = _fit(noise, batches=2)
    ids, out = _stack(clean, "input_ids"), _stack(noisy, "input_ids")
    real = _stack(clean, "attention_mask") == 1
    assert torch.equal(out[~real], ids[~real])
    assert _binomial_ok(int((out != ids).sum()), int(real.sum()), 0.5)
    assert int(out[real].min()) >= 2


# ----------------------------------------------------------------------- mask_key for every noise


class Embedded(pl.LightningModule):
    """A linear model over dict batches of float embeddings ``(B, L, d)`` that records its batches."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(4, 1)
        self.seen: list[dict[str, Tensor]] = []

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        self.seen.append({k: v.clone() for k, v in batch.items()})
        out: Tensor = self.layer(batch["embeds"]).mean()
        return out

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.0)


def _embedded_samples(mask_dtype: torch.dtype = torch.long) -> list[dict[str, Tensor]]:
    g = _gen(2)
    embeds = torch.randn(8, 6, 4, generator=g)
    lengths = torch.tensor([6, 5, 4, 3, 2, 1, 6, 3])
    mask = (torch.arange(6) < lengths[:, None]).to(mask_dtype)
    return [{"embeds": e, "mask": m} for e, m in zip(embeds, mask, strict=True)]


def _fit_embedded(noise: InputNoise, samples: list[dict[str, Tensor]]) -> list[dict[str, Tensor]]:
    model = Embedded()
    loader = DataLoader(samples, batch_size=4)  # type: ignore[arg-type]
    quiet_trainer(callbacks=[noise], limit_val_batches=0).fit(model, train_dataloaders=loader)
    return model.seen


def test_gaussian_with_mask_key_leaves_padded_embeddings() -> None:
    samples = _embedded_samples()
    seen = _fit_embedded(InputNoise(Gaussian(std=1.0), key="embeds", mask_key="mask", seed=0), samples)
    clean = torch.stack([s["embeds"] for s in samples])
    real = torch.stack([s["mask"] for s in samples]).bool()
    out = _stack(seen, "embeds")
    assert torch.equal(out[~real], clean[~real])
    assert (out[real] != clean[real]).all()


def test_an_all_real_mask_draws_the_same_noise_as_no_mask() -> None:
    samples = [{**s, "mask": torch.ones(6, dtype=torch.bool)} for s in _embedded_samples()]
    masked = _fit_embedded(InputNoise(Gaussian(std=1.0), key="embeds", mask_key="mask", seed=0), samples)
    plain = _fit_embedded(InputNoise(Gaussian(std=1.0), key="embeds", seed=0), samples)
    assert torch.equal(_stack(masked, "embeds"), _stack(plain, "embeds"))


@pytest.mark.parametrize(
    ("samples", "mask_key", "match"),
    [
        (_embedded_samples(), "attention", r"`mask_key` 'attention' is not in the batch.*'embeds', 'mask'"),
        (
            [{**s, "mask": s["mask"][:5]} for s in _embedded_samples()],
            "mask",
            r"mask at `mask_key` 'mask' must have the leading shape.*\(4, 5\) for \(4, 6, 4\)",
        ),
        (
            _embedded_samples(torch.float32),
            "mask",
            r"`mask_key` 'mask' must address a boolean or 0/1.*float32",
        ),
    ],
)
def test_bad_masks_are_refused_at_the_first_batch(
    samples: list[dict[str, Tensor]], mask_key: str, match: str
) -> None:
    with pytest.raises(ConfigurationError, match=match):
        _fit_embedded(InputNoise(Gaussian(std=1.0), key="embeds", mask_key=mask_key, seed=0), samples)


def test_mask_key_needs_a_container_batch() -> None:
    with pytest.raises(ConfigurationError, match=r"InputNoise: `mask_key` must be None when `key` is None"):
        InputNoise(Gaussian(std=1.0), key=None, mask_key="mask")
    with pytest.raises(ConfigurationError, match=r"InputNoise: `mask_key` must be an int, a str"):
        InputNoise(Gaussian(std=1.0), key="x", mask_key=True)  # type: ignore[arg-type]


def test_mask_key_is_a_recorded_setting() -> None:
    settings = InputNoise(TokenDrop(p=0.1, pad_id=0), key="input_ids", mask_key="attention_mask").settings()
    assert settings["mask_key"] == "attention_mask"
    assert settings["noise"].settings() == {"p": 0.1, "pad_id": 0}
    substitute = TokenSubstitute(p=0.1, vocab_size=10, special_ids=[1])
    assert substitute.settings() == {"p": 0.1, "pad_id": None, "vocab_size": 10, "special_ids": (1,)}
