"""ActivationNoise: hooks only inside training steps, noise statistics, padding, seeding, settings."""

from __future__ import annotations

import copy
import csv
import math
import os
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.core.saving import load_hparams_from_yaml
from lightning.pytorch.loggers import CSVLogger
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint
from torch.utils.data import DataLoader, TensorDataset

from _reference_rng import reference_seed
from _trainers import quiet_trainer
from lit_noise import (
    ActivationNoise,
    ConfigurationError,
    Gaussian,
    LabelSmoothing,
    Linear,
    NEFTune,
    TokenMask,
)
from lit_noise.examples import TokenClassifier, TokenDataModule

D = 32
STD = 0.3
ALPHA = 5.0


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class Recorder(pl.LightningModule):
    """Embedding + linear head; records hooks seen per stage and the noise the embedding output got."""

    def __init__(self, checkpointed: bool = False, fail_at: int | None = None) -> None:
        super().__init__()
        self.embedding = nn.Embedding(48, D, padding_idx=0)
        self.head = nn.Linear(D, 4)
        self.checkpointed = checkpointed
        self.fail_at = fail_at
        self.hooks: dict[str, list[int]] = {}
        self.noise: list[Tensor] = []
        self.batches: list[dict[str, Tensor]] = []

    def _see(self, stage: str) -> None:
        self.hooks.setdefault(stage, []).append(len(self.embedding._forward_hooks))

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        if batch_idx == self.fail_at:
            raise RuntimeError("boom")
        self._see("train")
        ids = batch["input_ids"]
        # tanh saves its (noisy) output for backward: a checkpointed re-run must reproduce the noise.
        if self.checkpointed:
            hidden = checkpoint(lambda i: self.embedding(i).tanh(), ids, use_reentrant=False)
        else:
            out = self.embedding(ids)
            clean = F.embedding(ids, self.embedding.weight, padding_idx=0)  # not through the module: no hook
            self.noise.append((out - clean).detach().clone())
            self.batches.append({k: v.clone() for k, v in batch.items()})
            hidden = out.tanh()
        loss: Tensor = (hidden.pow(2).sum(-1).mean(1) + self.head(hidden.mean(1)).logsumexp(-1)).mean()
        return loss

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._see("sanity" if self.trainer.sanity_checking else "val")
        self.embedding(batch["input_ids"])

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._see("test")

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        self._see("predict")
        out: Tensor = self.embedding(batch["input_ids"])
        return out

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.05)


def fit(callback: ActivationNoise, model: pl.LightningModule | None = None, **options: Any) -> Recorder:
    model = Recorder() if model is None else model
    settings: dict[str, Any] = {"limit_train_batches": 3, "limit_val_batches": 1, "num_sanity_val_steps": 0}
    settings.update(options)
    quiet_trainer(callbacks=[callback], **settings).fit(model, TokenDataModule())
    assert isinstance(model, Recorder)
    return model


# --------------------------------------------------------------------------- hooks: only in training steps


@pytest.fixture(scope="module")
def gaussian_run() -> tuple[ActivationNoise, Recorder, pl.Trainer]:
    callback = ActivationNoise("embedding", Gaussian(std=STD), mask_key="attention_mask", seed=0)
    model = Recorder()
    trainer = quiet_trainer(
        callbacks=[callback], max_epochs=2, limit_train_batches=3, limit_val_batches=1, num_sanity_val_steps=1
    )
    data = TokenDataModule()
    trainer.fit(model, data)
    trainer.test(model, data)
    trainer.predict(model, data.test_dataloader())
    return callback, model, trainer


def test_hooks_are_present_only_during_training_steps(gaussian_run: Any) -> None:
    callback, model, _ = gaussian_run
    assert model.hooks["train"] == [1] * 6
    assert model.hooks["sanity"] == [0]
    assert model.hooks["val"] == [0, 0]
    assert set(model.hooks["test"]) == {0}
    assert set(model.hooks["predict"]) == {0}
    assert len(model.embedding._forward_hooks) == 0
    assert not callback.active
    assert callback.hooked == ["embedding"]


class WithTeacher(Recorder):
    """Deep-copies its embedding in its first training step and, with ``teach``, calls the copy in
    every later step before its own forward (as a mean teacher or an EMA model does)."""

    def __init__(self, teach: bool) -> None:
        super().__init__()
        self.teach = teach
        self.copies: list[nn.Module] = []
        self.teacher_noise: list[Tensor] = []

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        if not self.copies:
            self.copies.append(copy.deepcopy(self.embedding))  # in a list: not a submodule
        elif self.teach:
            teacher, ids = self.copies[0], batch["input_ids"]
            with torch.no_grad():
                self.teacher_noise.append(teacher(ids) - F.embedding(ids, teacher.weight, padding_idx=0))
        return super().training_step(batch, batch_idx)


def test_a_copy_of_a_hooked_module_gets_no_noise_and_leaves_the_originals_alone() -> None:
    runs = []
    for teach in (False, True):
        torch.manual_seed(0)
        callback = ActivationNoise("embedding", Gaussian(std=STD), pad_id=None, seed=0)
        runs.append(fit(callback, WithTeacher(teach), limit_train_batches=3, limit_val_batches=0))
        assert callback._window is None
    alone, taught = runs
    (teacher,) = taught.copies
    assert len(teacher._forward_hooks) == 1  # the step's hook came along with the copy ...
    assert len(taught.teacher_noise) == 2
    assert all(torch.equal(noise, torch.zeros_like(noise)) for noise in taught.teacher_noise)  # ... idle
    # The original drew the same noise as without the teacher's calls (same stream, same states).
    assert all(torch.equal(a, b) for a, b in zip(alone.noise, taught.noise, strict=True))
    ids = torch.tensor([[3, 4, 5]])
    assert torch.equal(teacher(ids), F.embedding(ids, teacher.weight, padding_idx=0))  # and after fit


def test_a_copy_called_inside_a_checkpointed_step_is_not_a_second_call_to_replay() -> None:
    class CheckpointedWithTeacher(WithTeacher):
        def __init__(self) -> None:
            super().__init__(teach=True)
            self.checkpointed = True

    model = CheckpointedWithTeacher()
    fit(ActivationNoise("embedding", Gaussian(std=STD), pad_id=None, seed=0), model, limit_train_batches=2)
    assert len(model.teacher_noise) == 1


class PicklesTheCallback(pl.Callback):
    def __init__(self, noise: ActivationNoise) -> None:
        self.noise = noise
        self.copies: list[ActivationNoise] = []

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.copies.append(pickle.loads(pickle.dumps(self.noise)))


def test_the_callback_pickles_during_a_fit_and_the_copy_trains() -> None:
    noise = ActivationNoise("embedding", Gaussian(std=STD), pad_id=None, seed=0)
    grab = PicklesTheCallback(noise)
    quiet_trainer(callbacks=[noise, grab], max_epochs=1, limit_train_batches=2, limit_val_batches=0).fit(
        Recorder(), TokenDataModule()
    )
    (copied,) = grab.copies
    assert copied.hooked == ["embedding"]
    assert copied.seed == 0
    model = fit(copied, limit_train_batches=1)  # the copy hooks a new model at its own fit start
    assert abs(model.noise[0].std().item() / STD - 1) < 0.05


def test_gaussian_noise_statistics_on_real_tokens(gaussian_run: Any) -> None:
    _, model, _ = gaussian_run
    noise = torch.cat(
        [n[b["attention_mask"].bool()] for n, b in zip(model.noise, model.batches, strict=True)]
    )
    assert noise.numel() > 20_000
    assert abs(noise.mean().item()) < 4 * STD / math.sqrt(noise.numel())
    assert abs(noise.std().item() / STD - 1) < 0.02
    pads = torch.cat(
        [n[~b["attention_mask"].bool()] for n, b in zip(model.noise, model.batches, strict=True)]
    )
    assert pads.numel() > 0
    assert torch.equal(pads, torch.zeros_like(pads))


def test_hooks_are_gone_after_a_fit_that_raises() -> None:
    model = Recorder(fail_at=1)
    callback = ActivationNoise("embedding", Gaussian(std=STD), seed=0)
    with pytest.raises(RuntimeError, match="boom"):
        fit(callback, model)
    assert model.hooks["train"] == [1]
    assert len(model.embedding._forward_hooks) == 0
    assert not callback.active


class StopsEarly(Recorder):
    """Ends the epoch from its own on_train_batch_start (-1), after the callbacks registered the hooks."""

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> int | None:
        return -1 if batch_idx == 1 else None

    def on_train_epoch_end(self) -> None:  # runs after the callbacks' on_train_epoch_end
        self._see("epoch_end")


def test_hooks_are_gone_when_the_module_ends_the_epoch_early() -> None:
    model = StopsEarly()
    callback = ActivationNoise("embedding", Gaussian(std=STD), seed=0)
    fit(callback, model, max_epochs=2)
    assert model.hooks == {"train": [1, 1], "epoch_end": [0, 0]}  # no training_step after the -1
    assert len(model.embedding._forward_hooks) == 0


# --------------------------------------------------------------------------- NEFTune on the embedding


@pytest.fixture(scope="module")
def neftune_run() -> Recorder:
    # pad_id=None: the padding comes from the attention mask alone.
    return fit(
        ActivationNoise("embedding", NEFTune(alpha=ALPHA), mask_key="attention_mask", pad_id=None, seed=1)
    )


def test_neftune_scales_by_each_samples_own_length_and_leaves_padding_untouched(
    neftune_run: Recorder,
) -> None:
    checked = 0
    for noise, batch in zip(neftune_run.noise, neftune_run.batches, strict=True):
        mask = batch["attention_mask"].bool()
        assert torch.equal(noise[~mask], torch.zeros_like(noise[~mask]))
        for i in range(mask.shape[0]):
            length = int(mask[i].sum())
            bound = ALPHA / math.sqrt(length * D)
            peak = noise[i, mask[i]].abs().max().item()
            assert peak <= bound * (1 + 1e-5)
            assert peak > 0.9 * bound  # length * 32 >= 192 uniform draws reach within 10 % of the bound
            checked += 1
    assert checked == 3 * 64
    lengths = {int(b["attention_mask"].sum(1).min()) for b in neftune_run.batches} | {
        int(b["attention_mask"].sum(1).max()) for b in neftune_run.batches
    }
    assert len(lengths) > 1  # the batches really have different lengths


def test_padding_from_the_embeddings_padding_idx_without_a_mask() -> None:
    model = fit(ActivationNoise("embedding", NEFTune(alpha=ALPHA), seed=1), limit_train_batches=1)
    (noise,), (batch,) = model.noise, model.batches
    real = batch["input_ids"] != 0
    assert torch.equal(noise[~real], torch.zeros_like(noise[~real]))
    lengths = real.sum(1)
    peaks = torch.stack([noise[i, real[i]].abs().max() for i in range(real.shape[0])])
    assert bool((peaks <= ALPHA / torch.sqrt(lengths * D.__float__()) * (1 + 1e-5)).all())


class KeywordCall(Recorder):
    """Calls its embedding as ``embedding(input=ids)``."""

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        ids = batch["input_ids"]
        out = self.embedding(input=ids)
        self.noise.append((out - F.embedding(ids, self.embedding.weight, padding_idx=0)).detach().clone())
        self.batches.append({k: v.clone() for k, v in batch.items()})
        return out.pow(2).mean()


def test_padding_is_found_when_the_embedding_is_called_with_a_keyword() -> None:
    model = fit(
        ActivationNoise("embedding", NEFTune(alpha=ALPHA), seed=1), KeywordCall(), limit_train_batches=1
    )
    (noise,), (batch,) = model.noise, model.batches
    real = batch["input_ids"] != 0
    assert bool((~real).any())
    assert torch.equal(noise[~real], torch.zeros_like(noise[~real]))
    assert bool((noise[real] != 0).all())


def test_trl_form_noises_every_position_with_the_padded_length() -> None:
    model = fit(
        ActivationNoise("embedding", NEFTune(alpha=ALPHA, form="padded"), seed=1), limit_train_batches=1
    )
    (noise,) = model.noise
    bound = ALPHA / math.sqrt(noise.shape[1] * D)
    assert bool((noise != 0).all())
    assert bound * 0.999 < noise.abs().max().item() <= bound


# --------------------------------------------------------------------------- randomness, scale, schedules


def test_same_seed_same_noise_other_seed_other_noise() -> None:
    runs = []
    for seed in (3, 3, 4):
        torch.manual_seed(0)  # the same initial weights, so even the rounding of `out - clean` agrees
        runs.append(
            fit(
                ActivationNoise("embedding", Gaussian(std=STD), pad_id=None, seed=seed), limit_train_batches=2
            )
        )
    assert all(torch.equal(a, b) for a, b in zip(runs[0].noise, runs[1].noise, strict=True))
    assert not torch.allclose(runs[0].noise[0], runs[2].noise[0], atol=1e-3)
    assert not torch.allclose(runs[0].noise[0], runs[0].noise[1], atol=1e-3)  # each batch draws anew


def test_scale_and_schedule() -> None:
    scaled = fit(
        ActivationNoise("embedding", Gaussian(std=STD), pad_id=None, seed=0, scale=2.0), limit_train_batches=1
    )
    assert abs(scaled.noise[0].std().item() / (2 * STD) - 1) < 0.03
    callback = ActivationNoise(
        "embedding", Gaussian(std=Linear(start=0.0, end=0.4, until=1.0)), pad_id=None, seed=0
    )
    ramp = fit(callback, limit_train_batches=4)
    stds = [n.std().item() for n in ramp.noise]
    expected = [0.0, 0.1, 0.2, 0.3]  # progress 0, 1/4, 2/4, 3/4 of the ramp
    assert stds[0] == 0.0
    assert all(abs(s / e - 1) < 0.04 for s, e in zip(stds[1:], expected[1:], strict=True))
    assert callback.last_values == {"std": pytest.approx(0.3), "mean": 0.0}


def test_activation_checkpointing_replays_the_forward_noise() -> None:
    grads = []
    for checkpointed in (False, True):
        torch.manual_seed(0)
        model = Recorder(checkpointed=checkpointed)
        grab = _GradGrab()
        quiet_trainer(
            callbacks=[ActivationNoise("embedding", Gaussian(std=STD), seed=5), grab],
            limit_train_batches=1,
            limit_val_batches=0,
        ).fit(model, TokenDataModule())
        grads.append(grab.grad)
    assert grads[0] is not None
    assert grads[1] is not None
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-5, atol=1e-6)


class _GradGrab(pl.Callback):
    grad: Tensor | None = None

    def on_after_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        assert isinstance(pl_module, Recorder)
        grad = pl_module.embedding.weight.grad
        self.grad = None if grad is None else grad.clone()


class WithGRU(Recorder):
    """A GRU after the embedding: its output is a tuple (output, h_n)."""

    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(D, D, batch_first=True)
        self.seen: list[tuple[Tensor, Tensor]] = []

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        hidden = self.embedding(batch["input_ids"])
        out, h_n = self.gru(hidden)
        clean_out, clean_h = self.gru.forward(hidden)  # forward() bypasses the hooks
        self.seen.append(((out - clean_out).detach(), (h_n - clean_h).detach()))
        loss: Tensor = out.pow(2).mean()
        return loss


def test_tuple_outputs_get_noise_on_their_first_element() -> None:
    model = WithGRU()
    fit(ActivationNoise("gru", Gaussian(std=STD), seed=0), model, limit_train_batches=1)
    ((noise, h_noise),) = model.seen
    assert abs(noise.std().item() / STD - 1) < 0.03
    assert torch.equal(h_noise, torch.zeros_like(h_noise))


# --------------------------------------------------------------------------- settings, end to end


def test_settings_are_logged_and_strengths_logged(tmp_path: Path) -> None:
    logger = CSVLogger(str(tmp_path))
    callback = ActivationNoise(nn.Embedding, NEFTune(alpha=ALPHA), seed=2, pad_id="auto")
    model = TokenClassifier()
    trainer = quiet_trainer(
        callbacks=[callback], logger=logger, limit_train_batches=2, limit_val_batches=0, log_every_n_steps=1
    )
    with pytest.raises(
        ConfigurationError, match=r"NEFTune applies to embeddings of shape .*module 'position'"
    ):
        trainer.fit(model, TokenDataModule())  # nn.Embedding also hooks the positional embedding (L, d)
    callback = ActivationNoise("embedding", NEFTune(alpha=ALPHA), mask_key="attention_mask", seed=2)
    logger = CSVLogger(str(tmp_path), name="second")
    trainer = quiet_trainer(
        callbacks=[callback],
        logger=logger,
        max_epochs=2,
        limit_train_batches=2,
        limit_val_batches=1,
        log_every_n_steps=1,
    )
    trainer.fit(TokenClassifier(), TokenDataModule())
    hparams = load_hparams_from_yaml(os.path.join(logger.log_dir, "hparams.yaml"), use_omegaconf=False)
    assert hparams["lit_noise/activation/callback"] == "ActivationNoise"
    assert hparams["lit_noise/activation/modules"] == ["embedding"]
    assert hparams["lit_noise/activation/noise"] == "NEFTune"
    assert hparams["lit_noise/activation/noise/alpha"] == ALPHA
    assert hparams["lit_noise/activation/noise/form"] == "per_sample"
    assert hparams["lit_noise/activation/mask_key"] == "attention_mask"
    assert hparams["lit_noise/activation/seed"] == 2
    assert trainer.callback_metrics["noise/activation/alpha"].item() == ALPHA
    assert "val/acc" in trainer.callback_metrics
    with open(os.path.join(logger.log_dir, "metrics.csv")) as handle:
        rows = [row for row in csv.DictReader(handle) if row.get("noise/activation/alpha")]
    steps = [(int(r["step"]), float(r["noise/activation/alpha"])) for r in rows]
    assert steps == [(step, ALPHA) for step in range(4)]  # every step of both epochs


def test_class_path_strings_select_by_type() -> None:
    callback = ActivationNoise(["torch.nn.Embedding"], Gaussian(std=0.1), seed=0)
    assert callback.modules == ("torch.nn.Embedding",)
    quiet_trainer(callbacks=[callback], limit_train_batches=1, limit_val_batches=0).fit(
        TokenClassifier(), TokenDataModule()
    )
    assert callback.last_values == {"std": 0.1, "mean": 0.0}
    typed = ActivationNoise(nn.Embedding, Gaussian(std=0.1))
    assert typed.modules == ("torch.nn.modules.sparse.Embedding",)


# --------------------------------------------------------------------------- bad input


def test_patterns_matching_nothing_list_module_names() -> None:
    with pytest.raises(
        ConfigurationError,
        match=r"pattern 'encoder\.\*'.*Modules: embedding, head\. Types: Embedding, Linear",
    ):
        fit(ActivationNoise("encoder.*", Gaussian(std=0.1)))
    with pytest.raises(
        ConfigurationError, match=r"module class torch\.nn\.modules\.conv\.Conv1d matches no submodule"
    ):
        fit(ActivationNoise(["embedding", nn.Conv1d], Gaussian(std=0.1)))
    with pytest.raises(
        ConfigurationError, match=r"'torch\.nn\.Embeding'.*has no torch\.nn\.Module subclass 'Embeding'"
    ):
        fit(ActivationNoise("torch.nn.Embeding", Gaussian(std=0.1)))


def test_mask_problems_are_clear_errors() -> None:
    with pytest.raises(ConfigurationError, match="`mask_key` 'mask' is not in the batch"):
        fit(ActivationNoise("embedding", Gaussian(std=0.1), mask_key="mask"))
    with pytest.raises(
        ConfigurationError,
        match=r"mask at `mask_key` 'attention_mask' has shape \(64, 24\).*'head' \(64, 4\)",
    ):
        fit(ActivationNoise(["embedding", "head"], Gaussian(std=0.1), mask_key="attention_mask"))


class AdditiveMask(TokenDataModule):
    """Hands out an additive float mask (0 real, -inf padding), as some attention code wants."""

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        mask = batch["attention_mask"]
        additive = torch.zeros(mask.shape).masked_fill(mask == 0, float("-inf"))
        return {**batch, "attention_mask": additive}


def test_a_float_mask_is_refused_not_read_the_wrong_way_round() -> None:
    callback = ActivationNoise("embedding", NEFTune(alpha=ALPHA), mask_key="attention_mask")
    trainer = quiet_trainer(callbacks=[callback], limit_train_batches=1, limit_val_batches=0)
    with pytest.raises(
        ConfigurationError, match=r"`mask_key` 'attention_mask' must address a boolean or 0/1"
    ):
        trainer.fit(Recorder(), AdditiveMask())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"modules": [], "noise": Gaussian(std=0.1)}, "`modules` must be a module class"),
        ({"modules": 3, "noise": Gaussian(std=0.1)}, "`modules` must be a module class"),
        ({"modules": int, "noise": Gaussian(std=0.1)}, "`modules` must be torch.nn.Module subclasses"),
        ({"modules": "re:(", "noise": Gaussian(std=0.1)}, "valid regular expression"),
        ({"modules": "embedding", "noise": LabelSmoothing(eps=0.1)}, "not a label noise"),
        ({"modules": "embedding", "noise": TokenMask(p=0.1, mask_id=1)}, "for float activations"),
        ({"modules": "embedding", "noise": "gaussian"}, "`noise` must be a lit_noise.noise.Noise"),
        ({"modules": "embedding", "noise": Gaussian(std=0.1), "pad_id": True}, "`pad_id` must be an integer"),
        ({"modules": "embedding", "noise": Gaussian(std=0.1), "scale": -1.0}, "`scale` must be >= 0"),
        (
            {
                "modules": "embedding",
                "noise": NEFTune(alpha=1.0, form="padded"),
                "mask_key": "attention_mask",
            },
            "form='padded'.*could not take effect",
        ),
    ],
)
def test_bad_arguments_in_init(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        ActivationNoise(**kwargs)


def test_pad_id_without_a_hooked_embedding_is_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"`pad_id` 0 marks padding.*none is hooked \(head\)"):
        fit(ActivationNoise("head", Gaussian(std=0.1), pad_id=0))


class TwoHooked(pl.LightningModule):
    """Two Linear layers, both hooked; records what the noise added to each, by (epoch, batch)."""

    def __init__(self) -> None:
        super().__init__()
        self.first, self.second = nn.Linear(6, 5), nn.Linear(5, 3)
        self.added: dict[tuple[int, int], tuple[Tensor, Tensor]] = {}

    def training_step(self, batch: list[Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        hidden = self.first(x)
        out = self.second(hidden)
        clean_hidden = F.linear(x, self.first.weight, self.first.bias)  # not through the hooks
        clean_out = F.linear(hidden, self.second.weight, self.second.bias)
        self.added[(self.current_epoch, batch_idx)] = (
            (hidden - clean_hidden).detach(),
            (out - clean_out).detach(),
        )
        return F.cross_entropy(out, y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_the_hooked_modules_draw_in_call_order_from_the_documented_counter_stream() -> None:
    """One generator per step, seeded from (seed, crc32 stream, rank, epoch, batch), modules in call order."""
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.rand(12, 6, generator=g), torch.randint(0, 3, (12,), generator=g))
    model = TwoHooked()
    callback = ActivationNoise(torch.nn.Linear, Gaussian(std=STD), seed=9)
    quiet_trainer(callbacks=[callback], max_epochs=2, limit_val_batches=0).fit(
        model, DataLoader(data, batch_size=4)
    )
    assert sorted(model.added) == [(e, b) for e in range(2) for b in range(3)]
    for (epoch, batch_idx), (first, second) in model.added.items():
        generator = torch.Generator().manual_seed(
            reference_seed(9, "ActivationNoise/activation", epoch, batch_idx)
        )
        torch.testing.assert_close(first, STD * torch.randn(4, 5, generator=generator), rtol=0, atol=1e-6)
        torch.testing.assert_close(second, STD * torch.randn(4, 3, generator=generator), rtol=0, atol=1e-6)
