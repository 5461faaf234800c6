"""The main job until the Hydra application exists: train with and without noise, compare.

``lit-noise-demo`` (or ``make train``) trains the example classifier on the digits twice -- once
clean, once with scheduled input noise and label smoothing -- and prints each model's validation
accuracy on clean inputs and on inputs with Gaussian noise it never saw in that form.

The digits come with scikit-learn (``pip install "lit-noise[examples]"``); without it the command
stops before training with a one-line message naming that extra and exit status 1.
"""

from __future__ import annotations

import argparse
import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback

from lit_noise._optional import run_command
from lit_noise.callbacks import InputNoise, TargetNoise
from lit_noise.examples.classifier import Classifier
from lit_noise.examples.digits import DigitsDataModule
from lit_noise.functional import gaussian
from lit_noise.noise import Gaussian, LabelSmoothing
from lit_noise.schedules import Linear

__all__ = ["DemoResult", "evaluate", "main", "run", "train"]


@dataclass(frozen=True)
class DemoResult:
    """Validation accuracy of one trained model on clean and on noisy inputs.

    Example:
        >>> result = DemoResult("clean training", clean_acc=0.95, noisy_acc=0.60)
        >>> result.name, round(result.clean_acc - result.noisy_acc, 2)  # what the noise costs
        ('clean training', 0.35)
    """

    name: str
    clean_acc: float
    noisy_acc: float


def evaluate(
    model: Classifier, data: DigitsDataModule, noise_std: float, seed: int = 1234
) -> tuple[float, float]:
    """Accuracy on the validation split, clean and with Gaussian noise of ``noise_std`` (clipped to [0, 1]).

    Example:
        >>> data = DigitsDataModule()
        >>> clean, noisy = evaluate(Classifier(), data, noise_std=0.3)
        >>> 0.0 <= noisy <= 1.0 and 0.0 <= clean <= 1.0
        True
    """
    data.setup("fit")
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    correct_clean = correct_noisy = total = 0
    with torch.no_grad():
        for x, y in data.val_dataloader():
            noisy = gaussian(x, noise_std, generator=generator).clamp_(0.0, 1.0)
            correct_clean += int((model(x).argmax(1) == y).sum())
            correct_noisy += int((model(noisy).argmax(1) == y).sum())
            total += len(y)
    return correct_clean / total, correct_noisy / total


def train(
    callbacks: Sequence[Callback], epochs: int, backbone: str, seed: int, data: DigitsDataModule
) -> Classifier:
    """Train the example classifier with ``callbacks`` (quietly, on the CPU).

    It seeds every RNG (``seed_everything``) and turns on deterministic algorithms, which the
    example saves and restores around it.

    Example:
        >>> import os, random
        >>> import numpy as np
        >>> from unittest import mock
        >>> saved = random.getstate(), np.random.get_state(), torch.are_deterministic_algorithms_enabled()
        >>> noise = InputNoise(Gaussian(std=0.1), clamp=(0.0, 1.0))
        >>> with mock.patch.dict(os.environ), torch.random.fork_rng():
        ...     model = train([noise], epochs=1, backbone="mlp", seed=0, data=DigitsDataModule())
        ...     clean, noisy = evaluate(model, DigitsDataModule(), noise_std=0.4)
        >>> random.setstate(saved[0])
        >>> np.random.set_state(saved[1])
        >>> torch.use_deterministic_algorithms(saved[2])
        >>> clean > 0.5, noisy < clean  # one epoch: far above chance (0.1), and noise costs accuracy
        (True, True)
    """
    pl.seed_everything(seed, verbose=False)
    model = Classifier(backbone="cnn" if backbone == "cnn" else "mlp")
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        devices=1,
        callbacks=list(callbacks),
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        deterministic=True,
    )
    trainer.fit(model, data)
    return model


def run(argv: Sequence[str] | None = None) -> list[DemoResult]:
    """Parse ``argv``, train both models, print the table and return the results.

    Raises:
        MissingDependencyError: scikit-learn is not installed (checked before any training).

    Example:
        >>> try:
        ...     run(["--help"])
        ... except SystemExit as exit:
        ...     print("exit status", exit.code)
        usage: lit-noise-demo [-h] [--epochs EPOCHS] [--backbone {mlp,cnn}] ...
        exit status 0
    """
    parser = argparse.ArgumentParser(prog="lit-noise-demo", description=__doc__)
    parser.add_argument("--epochs", type=int, default=15, help="training epochs (default 15)")
    parser.add_argument("--backbone", choices=("mlp", "cnn"), default="mlp")
    parser.add_argument("--train-std", type=float, default=0.3, help="final input-noise std (ramped up)")
    parser.add_argument("--smoothing", type=float, default=0.1, help="label smoothing eps")
    parser.add_argument(
        "--eval-std", type=float, default=0.4, help="std of the noise in the noisy evaluation"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    data = DigitsDataModule()  # first: checks that scikit-learn is installed
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*", category=FutureWarning)
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")

    noise = [
        InputNoise(Gaussian(std=Linear(start=0.0, end=args.train_std, until=0.3)), clamp=(0.0, 1.0)),
        TargetNoise(LabelSmoothing(eps=args.smoothing), num_classes=data.num_classes),
    ]
    results = []
    for name, callbacks in (("clean training", []), ("lit_noise training", noise)):
        model = train(callbacks, args.epochs, args.backbone, args.seed, data)
        clean, noisy = evaluate(model, data, args.eval_std)
        results.append(DemoResult(name, clean, noisy))

    setting = f"{args.backbone}, {args.epochs} epochs; noisy = Gaussian std {args.eval_std}"
    print(f"\nValidation accuracy ({setting}):")
    print(f"{'model':<20} {'clean':>8} {'noisy':>8}")
    for result in results:
        print(f"{result.name:<20} {result.clean_acc:>8.3f} {result.noisy_acc:>8.3f}")
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (``lit-noise-demo``).

    Returns:
        The exit status: 0, or 1 when an optional package is missing (the message, which names the
        extra to install, goes to stderr, without a traceback).

    Example:
        >>> import contextlib, io, sys
        >>> from unittest import mock
        >>> with mock.patch.dict(sys.modules, {"sklearn": None}):  # as if scikit-learn were missing
        ...     with contextlib.redirect_stderr(io.StringIO()) as err:
        ...         status = main(["--epochs", "1"])
        >>> status
        1
        >>> print(err.getvalue())
        lit-noise-demo: error: DigitsDataModule needs the optional package 'scikit-learn' ... which is not
        installed. Install it with: pip install "lit-noise[examples]"
    """
    return run_command("lit-noise-demo", lambda: run(argv))


if __name__ == "__main__":
    raise SystemExit(main())
