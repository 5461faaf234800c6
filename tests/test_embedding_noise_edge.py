"""NEFTune on empty embeddings: ``(B, 0, d)``, ``(B, L, 0)``, ``(0, L, d)`` come back as unchanged copies.

The padded form divides by ``sqrt(L * d)``; with no token or no feature there is nothing to noise,
and it must return what the masked (per-sample) form returns for the same input: a new tensor equal
to the input, of its shape and dtype, drawing nothing from the generator.
"""

from __future__ import annotations

import pytest
import torch

from lit_noise import NEFTune
from lit_noise.functional import neftune, neftune_padded

EMPTY_SHAPES = [(2, 0, 8), (2, 5, 0), (0, 5, 8), (3, 0, 0)]
ALPHA = 5.0


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def assert_unchanged_copy(y: torch.Tensor, x: torch.Tensor) -> None:
    assert y is not x
    assert y.shape == x.shape
    assert y.dtype == x.dtype
    assert y.device == x.device
    assert torch.equal(y, x)
    assert not y._is_view()
    assert y.untyped_storage()._cdata != x.untyped_storage()._cdata  # its own storage


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("shape", EMPTY_SHAPES, ids=str)
def test_padded_form_returns_an_unchanged_copy_of_an_empty_input(
    shape: tuple[int, int, int], dtype: torch.dtype
) -> None:
    x = torch.empty(shape, dtype=dtype)
    g = gen(0)
    before = g.get_state()
    assert_unchanged_copy(neftune_padded(x, ALPHA, g), x)
    assert_unchanged_copy(neftune(x, ALPHA, generator=g), x)  # keep=None is the padded form
    assert torch.equal(g.get_state(), before)  # nothing drawn


@pytest.mark.parametrize("shape", EMPTY_SHAPES, ids=str)
def test_padded_and_masked_forms_agree_on_an_empty_input(shape: tuple[int, int, int]) -> None:
    x = torch.empty(shape)
    keep = torch.ones(shape[:2], dtype=torch.bool)
    g_masked, g_padded = gen(0), gen(0)
    masked = neftune(x, ALPHA, keep=keep, generator=g_masked)
    padded = neftune_padded(x, ALPHA, g_padded)
    assert_unchanged_copy(masked, x)
    assert_unchanged_copy(padded, x)
    assert torch.equal(g_masked.get_state(), g_padded.get_state())


@pytest.mark.parametrize("form", ["padded", "per_sample"])
@pytest.mark.parametrize("shape", EMPTY_SHAPES, ids=str)
def test_neftune_noise_called_directly_on_an_empty_input(form: str, shape: tuple[int, int, int]) -> None:
    x = torch.empty(shape)
    noise = NEFTune(alpha=ALPHA, form=form)  # type: ignore[arg-type]
    assert_unchanged_copy(noise(x, generator=gen(0)), x)
    if form == "per_sample":
        keep = torch.zeros(shape[:2], dtype=torch.long)
        assert_unchanged_copy(noise(x, generator=gen(0), keep=keep), x)


def test_an_empty_input_keeps_its_autograd_link_like_the_masked_form() -> None:
    x = torch.empty(2, 0, 8, requires_grad=True)
    padded = neftune_padded(x, ALPHA, gen(0))
    masked = neftune(x, ALPHA, keep=torch.ones(2, 0, dtype=torch.bool), generator=gen(0))
    assert padded.requires_grad
    assert masked.requires_grad
    padded.sum().backward()
    assert x.grad is not None
    assert x.grad.shape == x.shape


def test_a_non_empty_input_is_still_noised_within_the_bound() -> None:
    x = torch.zeros(2, 1, 1)
    y = neftune_padded(x, ALPHA, gen(0))
    assert not torch.equal(y, x)
    assert y.abs().max().item() <= ALPHA  # alpha / sqrt(1 * 1)
