"""Acceptance: on the digits, the controller pulls a far too noisy input noise (std 2.0) back in one run."""

from __future__ import annotations

import time

import lightning.pytorch as pl
import pytest
import torch

from _trainers import quiet_trainer
from lit_noise import Gaussian, InputNoise, NoiseController, RobustnessMonitor
from lit_noise.examples import Classifier, DigitsDataModule

EPOCHS = 20  # the adaptive preset's max_epochs
SEED = 0


def accuracies(model: Classifier, data: DigitsDataModule) -> tuple[float, float]:
    """Validation accuracy on clean inputs and on inputs + N(0, 0.5^2) clamped to [0, 1]."""
    data.setup("fit")
    model.eval()
    generator = torch.Generator().manual_seed(1234)
    clean = noisy = total = 0
    with torch.no_grad():
        for x, y in data.val_dataloader():
            corrupted = (x + 0.5 * torch.randn(x.shape, generator=generator)).clamp(0.0, 1.0)
            clean += int((model(x).argmax(1) == y).sum())
            noisy += int((model(corrupted).argmax(1) == y).sum())
            total += len(y)
    return clean / total, noisy / total


def train(kind: str) -> dict:
    start = time.perf_counter()
    pl.seed_everything(SEED, verbose=False)
    data, model = DigitsDataModule(), Classifier()
    callbacks: list = []
    controller = None
    if kind != "clean":
        callbacks.append(InputNoise(Gaussian(std=2.0), clamp=(0.0, 1.0), seed=0))
    if kind == "controller":
        # The adaptive preset: the controller's defaults, the quick robustness suite as robust metric.
        controller = NoiseController(robust_monitor="val/robust/mean_acc", log_figures=False)
        callbacks += [RobustnessMonitor(log_figures=False), controller]
    quiet_trainer(max_epochs=EPOCHS, callbacks=callbacks, num_sanity_val_steps=0).fit(model, data)
    clean, noisy = accuracies(model, data)
    return {"clean": clean, "noisy": noisy, "controller": controller, "seconds": time.perf_counter() - start}


@pytest.mark.slow
def test_the_controller_pulls_back_a_far_too_noisy_run(capsys):
    runs = {kind: train(kind) for kind in ("clean", "fixed", "controller")}
    controller = runs["controller"]["controller"]
    with capsys.disabled():
        for kind, result in runs.items():
            accuracy = f"clean {result['clean']:.4f} noisy {result['noisy']:.4f}"
            print(f"\n{kind:>10}: {accuracy} ({result['seconds']:.1f} s)")
        print(f"final scale {controller.scale}; changes:", [(r[0], r[5]) for r in controller.history if r[4]])
    clean, fixed, adaptive = runs["clean"], runs["fixed"], runs["controller"]
    assert adaptive["clean"] >= clean["clean"] - 0.03
    assert adaptive["noisy"] >= clean["noisy"] + 0.08
    assert adaptive["clean"] > fixed["clean"]
    # It was pulled back, not driven to zero.
    assert 0.0 < controller.scale < 1.0
