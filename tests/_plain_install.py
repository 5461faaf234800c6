"""What a plain ``pip install lit-noise`` (no extras) must run, as a script.

``python _plain_install.py [--hide]`` checks that none of the optional packages (matplotlib,
scikit-learn, wandb, hydra-core) can be imported or found by their metadata, trains a tiny model
with the core (input and target noise, both monitors with ``log_figures=False``) and compares what
it logged with hand-written formulas, then checks that what needs an extra refuses to be built,
naming it, and that each console script stops at once with a message naming its extra. It
prints ``plain install OK`` and exits 0, or fails with a traceback.

``tests/test_wheel.py`` runs it in a fresh virtualenv holding only the wheel and its dependencies;
``tests/test_optional_deps.py`` runs it in the development environment with ``--hide``, which
makes the optional packages look uninstalled (modules and distributions) before anything is
imported.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import importlib.util
import io
import re
import sys
from collections.abc import Callable, Iterator
from importlib.machinery import PathFinder
from typing import Any

#: Optional module -> (its distribution, the lit-noise extra that installs it).
OPTIONAL = {
    "matplotlib": ("matplotlib", "plots"),
    "mpl_toolkits": ("matplotlib", "plots"),
    "pylab": ("matplotlib", "plots"),
    "sklearn": ("scikit-learn", "examples"),
    "wandb": ("wandb", "wandb"),
    "hydra": ("hydra-core", "cli"),
    "omegaconf": ("omegaconf", "cli"),  # comes with hydra-core
}


#: Console script -> the extra it needs. A plain install has none: each one stops at once, exit
#: status 1, one line on stderr naming the extra, no traceback.
SCRIPTS = {
    "lit-noise-demo": "examples",
    "lit-noise-train": "cli",
    "lit-noise-eval": "cli",
    "lit-noise-report": "cli",
}


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def hide(modules: set[str], distributions: set[str]) -> None:
    """Make ``modules`` unfindable and ``distributions`` absent from ``importlib.metadata``.

    The path finder is wrapped, so a hidden package looks exactly like one that is not installed:
    ``importlib.util.find_spec`` returns ``None``, ``import`` raises ``ModuleNotFoundError`` and
    metadata-based checks (torchmetrics' and Lightning's) see no distribution.
    """
    hidden = {_canonical(name) for name in distributions}

    class HidingPathFinder:
        @classmethod
        def find_spec(cls, fullname: str, path: Any = None, target: Any = None) -> Any:
            if fullname.partition(".")[0] in modules:
                return None
            return PathFinder.find_spec(fullname, path, target)

        @classmethod
        def find_distributions(cls, *args: Any, **kwargs: Any) -> Iterator[Any]:
            for dist in PathFinder.find_distributions(*args, **kwargs):
                if _canonical(dist.metadata["Name"] or "") not in hidden:
                    yield dist

        @classmethod
        def invalidate_caches(cls) -> None:
            PathFinder.invalidate_caches()

    sys.meta_path[sys.meta_path.index(PathFinder)] = HidingPathFinder  # type: ignore[call-overload]


def check(condition: bool, message: str) -> None:
    """``assert`` that survives ``python -O``."""
    if not condition:
        raise AssertionError(message)


def check_absent() -> None:
    """No optional package is importable or installed."""
    for module, (distribution, _) in OPTIONAL.items():
        check(importlib.util.find_spec(module) is None, f"{module} is findable")
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            importlib.metadata.distribution(distribution)
            raise AssertionError(f"the distribution {distribution} is installed")
        try:
            importlib.import_module(module)
        except ModuleNotFoundError:
            pass
        else:
            raise AssertionError(f"{module} can be imported")


def check_core() -> None:
    """Fit a tiny model with input and target noise and both monitors without figures."""
    import lightning.pytorch as pl
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader, TensorDataset

    from lit_noise import (
        CalibrationMonitor,
        Gaussian,
        InputNoise,
        LabelSmoothing,
        RobustnessMonitor,
        SoftLabels,
        TargetNoise,
    )

    classes, eps, n_bins = 3, 0.1, 15
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(96, 1, 8, 8, generator=generator)
    y = x.flatten(1)[:, :48].view(96, classes, 16).mean(2).argmax(1)  # learnable from the inputs
    train_x, train_y, val_x, val_y = x[:64], y[:64], x[64:], y[64:]

    class Tiny(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, classes))
            self.first_batch: tuple[torch.Tensor, Any] | None = None

        def forward(self, inputs: torch.Tensor) -> torch.Tensor:
            return self.net(inputs)

        def training_step(self, batch: list[Any], batch_idx: int) -> torch.Tensor:
            inputs, target = batch
            if self.first_batch is None:
                self.first_batch = (inputs.detach().clone(), target)
            return F.cross_entropy(self(inputs), target)

        def validation_step(self, batch: list[Any], batch_idx: int) -> torch.Tensor:
            return self(batch[0])

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.5)

    model = Tiny()
    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=1,
    )
    callbacks = [
        InputNoise(Gaussian(std=0.2), clamp=(0.0, 1.0), seed=0),
        TargetNoise(LabelSmoothing(eps=eps), num_classes=classes),
        CalibrationMonitor(num_classes=classes, n_bins=n_bins, log_figures=False),
        RobustnessMonitor(["gaussian_noise", "contrast"], severities=[1, 3], log_figures=False),
    ]
    trainer.callbacks.extend(callbacks)
    train_data = DataLoader(TensorDataset(train_x, train_y), batch_size=16)
    trainer.fit(model, train_data, DataLoader(TensorDataset(val_x, val_y), batch_size=16))

    # The noise reached the first batch: Gaussian noise clamped to [0, 1]; smoothed soft targets.
    check(model.first_batch is not None, "no training batch seen")
    assert model.first_batch is not None
    noisy, target = model.first_batch
    clean = train_x[:16]
    check(bool((noisy - clean).abs().max() > 0.05), "the inputs were not noised")
    check(bool(noisy.min() >= 0.0 and noisy.max() <= 1.0), "the noisy inputs were not clamped")
    check(isinstance(target, SoftLabels), f"targets are {type(target).__name__}, not SoftLabels")
    expected = torch.full((16, classes), eps / classes)
    expected[torch.arange(16), train_y[:16]] += 1.0 - eps
    check(torch.allclose(target.soft, expected), "label smoothing differs from (1 - eps) y + eps / C")

    # The monitors' values against a hand-written accuracy and ECE of the final model.
    with torch.no_grad():
        probs = torch.softmax(model(val_x), 1)
    confidence, predicted = probs.max(1)
    correct = (predicted == val_y).double()
    accuracy = float(correct.mean())
    ece = 0.0
    for b in range(n_bins):
        low, high = b / n_bins, (b + 1) / n_bins
        inside = (confidence > low) & (confidence <= high)
        if inside.any():
            gap = abs(float(correct[inside].mean()) - float(confidence[inside].double().mean()))
            ece += gap * int(inside.sum()) / len(val_y)
    logged = {key: float(value) for key, value in trainer.callback_metrics.items()}
    check(abs(logged["val/cal/ece"] - ece) < 1e-5, f"val/cal/ece {logged['val/cal/ece']} != {ece}")
    check(abs(logged["val/robust/clean_acc"] - accuracy) < 1e-6, "val/robust/clean_acc is wrong")
    for key in ("val/robust/gaussian_noise/s1/acc", "val/robust/contrast/s3/acc"):
        check(0.0 <= logged[key] <= 1.0, f"{key} = {logged.get(key)}")
    check(accuracy > 1 / classes, f"the tiny model did not learn (accuracy {accuracy})")


def check_refusals() -> None:
    """What needs an extra is refused when it is built, naming the extra; before any training."""
    from lit_noise import CalibrationMonitor, ConfigurationError, ReliabilityDiagram, RobustnessMonitor
    from lit_noise.examples import DigitsDataModule

    plots, examples = 'pip install "lit-noise[plots]"', 'pip install "lit-noise[examples]"'
    refused = (
        (lambda: CalibrationMonitor(num_classes=3), "CalibrationMonitor", plots),
        (lambda: RobustnessMonitor(), "RobustnessMonitor", plots),
        (lambda: ReliabilityDiagram(num_classes=3).plot(), "ReliabilityDiagram.plot", plots),
        (lambda: DigitsDataModule(), "DigitsDataModule", examples),
    )
    for build, owner, install in refused:
        error = _error_of(build, owner)
        check(
            isinstance(error, ConfigurationError), f"{owner}: {type(error).__name__} is no ConfigurationError"
        )
        check(str(error).startswith(f"{owner} needs") and str(error).endswith(install), f"{owner}: {error}")
        if owner.endswith("Monitor"):
            check("log_figures=False" in str(error), f"{owner} does not say how to run without figures")


def check_console_scripts() -> None:
    """Every console script of lit-noise, run as pip's wrapper runs it, refuses naming its extra."""
    declared = {
        entry.name: entry
        for entry in importlib.metadata.distribution("lit-noise").entry_points
        if entry.group == "console_scripts"
    }
    check(set(declared) <= set(SCRIPTS), f"add {sorted(set(declared) - set(SCRIPTS))} to SCRIPTS")
    for name, entry in declared.items():
        install = f'pip install "lit-noise[{SCRIPTS[name]}]"'
        stderr, stdout = io.StringIO(), io.StringIO()
        argv, sys.argv = sys.argv, [name]
        try:
            with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(stdout):
                status = entry.load()()
        except SystemExit as exit_:
            status = exit_.code
        except ModuleNotFoundError as error:
            raise AssertionError(
                f"{name}: {error!r} escapes instead of a message naming {install}"
            ) from error
        finally:
            sys.argv = argv
        message = stderr.getvalue()
        check(status == 1, f"{name} exited with {status!r}, not 1: {message}")
        check(message.strip().endswith(install) and message.count("\n") == 1, f"{name}: {message!r}")
        check(stdout.getvalue() == "", f"{name} printed {stdout.getvalue()!r}")


def _error_of(build: Callable[[], object], owner: str) -> ModuleNotFoundError:
    try:
        build()
    except ModuleNotFoundError as error:
        return error
    raise AssertionError(f"{owner} was built without its optional package")


if __name__ == "__main__":
    if "--hide" in sys.argv[1:]:
        hide(set(OPTIONAL), {distribution for distribution, _ in OPTIONAL.values()})
    check_absent()
    check_core()
    check_refusals()
    check_console_scripts()
    check_absent()  # and nothing got imported on the way
    for module in OPTIONAL:
        check(module not in sys.modules, f"{module} was imported")
    print("plain install OK")
