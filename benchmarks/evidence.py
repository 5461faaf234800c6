"""The evidence table: does noise training make these models more robust and better calibrated?

Run: ``python benchmarks/evidence.py --figure docs/img/evidence.png`` (the README's table and figure:
3 seeds, 2 data sets, 10 training methods and temperature scaling; under 15 minutes on a 2-core CPU);
``--quick`` is a 1-2 minute smoke run (one seed, fewer epochs). ``--seeds``, ``--epochs``,
``--methods`` and ``--datasets`` select a subset; the table goes to ``--out`` (default
``logs/evidence/``) as ``evidence.md`` and ``evidence.json``, the figure to ``--figure`` (default
``<out>/evidence.png``). One line is printed per finished fit, with the elapsed and remaining time.

Every cell trains a fresh model from ``seed_everything(seed)`` (the seed also shuffles the training
data and seeds every noise source) and measures it on the held-out test split, which no method sees
in training:

* ``digits``: ``Classifier("mlp")`` on ``DigitsDataModule`` (scikit-learn's 8x8 digits in [0, 1],
  10 classes, 1079 training / 359 validation / 359 test images, 20 epochs). Test-time Gaussian noise is the
  ``gaussian_noise`` corruption (``clip(x + N(0, c^2))``) of the ``--constants`` table (default
  ``"imagenet"``: ``c`` = 0.08, 0.12, 0.18, 0.26, 0.38 for severities 1..5; CIFAR's 0.04..0.10 barely
  moves 8x8 digits). The mean corruption accuracy is over every built-in corruption that applies to
  one-channel images (all but ``saturate``) at severities 1..5 of the same table.
* ``breast_cancer``: ``Classifier("mlp", num_classes=2, input_shape=(30,), hidden=32)`` on
  scikit-learn's breast-cancer features (30 features, 2 classes, 341 / 114 / 114 samples, 20
  epochs), standardised with the training split's mean and standard deviation. Image corruptions do not apply
  to tabular data and the features have no bounded range to clip to, so test-time noise is
  ``x + N(0, c^2)`` (no clipping) with ``c`` = 0.5, 1.0, 1.5, 2.0, 2.5 training standard deviations
  for severities 1..5, and the mean corruption accuracy is the mean over those five severities only.

Each corrupted test set stacks several noisy copies of the test split (2 on digits, 10 on breast
cancer), so that one unlucky draw does not decide a severity's accuracy.

Methods (``sigma`` is the data set's training noise level: 0.3 on digits (clipped to [0, 1]), 1.0 on
breast cancer; ``C`` the number of classes):

=================  =======================================================================================
``none``           no noise
``gaussian``       ``InputNoise(Gaussian(std=sigma))`` every batch
``interval``       the same on every other epoch: ``std=Interval(sigma, every=2, duration=1, unit="epoch")``
``curriculum``     a ramp, more noise later: ``std=Linear(start=0, end=sigma, until=1.0)`` (progress)
``weight``         ``WeightNoise(Gaussian(std=0.05), relative=True, exclude="*.bias")``
``gradient``       ``GradientNoise(std=AnnealedStd(eta=0.01), relative="tensor")``
``label_smoothing`` ``TargetNoise(LabelSmoothing(eps=0.1), num_classes=C)``
``mixup``          ``MixupDataModule(data, mixup_alpha=0.2)``
``mixup_ls``       ``MixupDataModule(data, mixup_alpha=0.2, label_smoothing=0.1)``
``controller``     ``InputNoise(Gaussian(std=too_noisy))`` (2.0 on digits, 5.0 on breast cancer) and
                   ``NoiseController()`` with its defaults (no robust metric: the scale only goes down)
``temperature``    ``TemperatureScaling(apply_at=())`` fitted on the validation split at the end of the
                   ``none`` fit; its row is that same model's test logits divided by T (no extra fit)
=================  =======================================================================================

Metrics (on the test split): clean accuracy; accuracy at each test-time Gaussian-noise severity;
mean corruption accuracy; top-label ECE (15 equal-width bins), NLL and Brier score from
:mod:`lit_noise.metrics`. The test noise is drawn from generators seeded by (corruption, severity)
only, so every method and seed meets the same corrupted test set. Cells are the mean over seeds and
the sample standard deviation (``ddof=1``; 0 with one seed).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import lightning
import lightning.pytorch as pl
import torch
from torch import Tensor
from torch.utils.data import TensorDataset

from _harness import quiet_trainer
from lit_noise import (
    AnnealedStd,
    Gaussian,
    GradientNoise,
    InputNoise,
    Interval,
    LabelSmoothing,
    Linear,
    MixupDataModule,
    NoiseController,
    TargetNoise,
    TemperatureScaling,
    WeightNoise,
)
from lit_noise import functional as LF
from lit_noise.corruptions import CORRUPTIONS, DEFAULT_CORRUPTIONS, SEVERITIES, corrupt
from lit_noise.examples import Classifier, DigitsDataModule, TensorSplitDataModule
from lit_noise.metrics import brier_score, calibration_error, negative_log_likelihood

#: Test-time Gaussian-noise std of each severity on the standardised tabular features.
TABULAR_STDS: tuple[float, ...] = (0.5, 1.0, 1.5, 2.0, 2.5)
#: The metrics of one run, in the table's order (``s<k>``: accuracy at Gaussian-noise severity k).
METRICS: tuple[str, ...] = (
    "clean_acc",
    "mean_corruption_acc",
    *(f"s{k}" for k in SEVERITIES),
    "ece",
    "nll",
    "brier",
)
#: Summarised over the seeds in the JSON as well: the mean top-label confidence on the clean test split.
SUMMARISED: tuple[str, ...] = (*METRICS, "confidence")
HEADERS: dict[str, str] = {
    "clean_acc": "clean acc",
    "mean_corruption_acc": "mean corruption acc",
    **{f"s{k}": f"noise s{k}" for k in SEVERITIES},
    "ece": "ECE",
    "nll": "NLL",
    "brier": "Brier",
}


class BreastCancerDataModule(TensorSplitDataModule):
    """scikit-learn's breast-cancer features, standardised with the training split's statistics.

    Splits: a permutation of ``split_seed``, 20 % validation, 20 % test, the rest training.
    """

    num_classes = 2
    input_shape = (30,)

    def __init__(self, batch_size: int = 32, split_seed: int = 0, shuffle_seed: int = 0) -> None:
        super().__init__(batch_size, shuffle_seed, 0)
        self.split_seed = split_seed

    def make_splits(self) -> tuple[TensorDataset, TensorDataset, TensorDataset]:
        """Load, split and standardise the features."""
        from sklearn.datasets import load_breast_cancer

        data = load_breast_cancer()
        x = torch.as_tensor(data.data, dtype=torch.float32)
        y = torch.as_tensor(data.target, dtype=torch.long)
        order = torch.randperm(len(y), generator=torch.Generator().manual_seed(self.split_seed))
        n = round(0.2 * len(y))
        val, test, train = order[:n], order[n : 2 * n], order[2 * n :]
        mean, std = x[train].mean(dim=0), x[train].std(dim=0)
        x = (x - mean) / std
        return (
            TensorDataset(x[train], y[train]),
            TensorDataset(x[val], y[val]),
            TensorDataset(x[test], y[test]),
        )


@dataclass(frozen=True)
class DataSet:
    """One data set of the table: its data, model, noise levels and test-time corruptions."""

    name: str
    title: str
    data: Callable[[int], TensorSplitDataModule]  # shuffle seed -> DataModule
    model: Callable[[], Classifier]
    num_classes: int
    sigma: float  # training noise level
    too_noisy: float  # the controller's starting std
    clamp: tuple[float, float] | None
    epochs: int
    quick_epochs: int
    repeats: int  # noisy copies of the test set per corruption and severity


DATASETS: dict[str, DataSet] = {
    "digits": DataSet(
        "digits",
        "digits (8x8 images, MLP)",
        lambda seed: DigitsDataModule(shuffle_seed=seed),
        lambda: Classifier("mlp"),
        10,
        0.3,
        2.0,
        (0.0, 1.0),
        20,
        3,
        2,
    ),
    "breast_cancer": DataSet(
        "breast_cancer",
        "breast cancer (30 standardised features, MLP)",
        lambda seed: BreastCancerDataModule(shuffle_seed=seed),
        lambda: Classifier("mlp", num_classes=2, input_shape=(30,), hidden=32),
        2,
        1.0,
        5.0,
        None,
        20,
        3,
        10,
    ),
}


def _gaussian(ds: DataSet, std: Any, seed: int) -> list[pl.Callback]:
    return [InputNoise(Gaussian(std=std), clamp=ds.clamp, seed=seed)]


#: Method -> (callbacks of one fit, mixing options or None), given the data set and the seed.
Setup = tuple[list[pl.Callback], dict[str, Any] | None]
METHODS: dict[str, Callable[[DataSet, int], Setup]] = {
    "none": lambda ds, s: ([], None),
    "gaussian": lambda ds, s: (_gaussian(ds, ds.sigma, s), None),
    "interval": lambda ds, s: (_gaussian(ds, Interval(ds.sigma, every=2, duration=1, unit="epoch"), s), None),
    "curriculum": lambda ds, s: (_gaussian(ds, Linear(start=0.0, end=ds.sigma, until=1.0), s), None),
    "weight": lambda ds, s: (
        [WeightNoise(Gaussian(std=0.05), relative=True, exclude="*.bias", seed=s)],
        None,
    ),
    "gradient": lambda ds, s: ([GradientNoise(std=AnnealedStd(eta=0.01), relative="tensor", seed=s)], None),
    "label_smoothing": lambda ds, s: (
        [TargetNoise(LabelSmoothing(eps=0.1), num_classes=ds.num_classes, seed=s)],
        None,
    ),
    "mixup": lambda ds, s: ([], {"mixup_alpha": 0.2}),
    "mixup_ls": lambda ds, s: ([], {"mixup_alpha": 0.2, "label_smoothing": 0.1}),
    "controller": lambda ds, s: (
        [*_gaussian(ds, ds.too_noisy, s), NoiseController(verbose=False, log_figures=False)],
        None,
    ),
    "temperature": lambda ds, s: ([], None),  # not fitted: the `none` fit's model with its T
}


def corrupted_copies(ds: DataSet, x: Tensor, constants: str) -> dict[tuple[str, int], Tensor]:
    """The corrupted test inputs, ``(corruption, severity) -> ds.repeats`` stacked copies of ``x``.

    Each entry draws from a generator seeded by the corruption's and the severity's position only, so
    every method and seed is measured on the same corrupted inputs.
    """
    x = x.repeat(ds.repeats, *([1] * (x.ndim - 1)))
    if ds.clamp is None:  # tabular: unclipped Gaussian noise in units of the features' std
        return {
            ("gaussian_noise", k): LF.gaussian(x, std, generator=torch.Generator().manual_seed(k))
            for k, std in zip(SEVERITIES, TABULAR_STDS, strict=True)
        }
    names = [name for name in DEFAULT_CORRUPTIONS if CORRUPTIONS[name].applies_to(x)]
    return {
        (name, k): corrupt(x, name, k, constants, generator=torch.Generator().manual_seed(100 * i + k))
        for i, name in enumerate(names)
        for k in SEVERITIES
    }


def evaluate(
    logits_of: Callable[[Tensor], Tensor],
    x: Tensor,
    y: Tensor,
    copies: dict[tuple[str, int], Tensor],
    num_classes: int,
) -> dict[str, float]:
    """The table's metrics of one model, given as ``logits_of(inputs)``, on ``(x, y)`` and its copies.

    ``copies`` maps ``(corruption, severity)`` to inputs that stack copies of ``x`` (labels ``y``,
    repeated); their accuracy is over every copy. Besides :data:`SUMMARISED`, the result has
    ``acc/<corruption>``, each corruption's accuracy averaged over its severities.
    """
    with torch.no_grad():
        logits = logits_of(x)
        accuracy = {
            key: float((logits_of(c).argmax(1) == y.repeat(len(c) // len(y))).float().mean())
            for key, c in copies.items()
        }
    names = dict.fromkeys(name for name, _ in copies)
    return {
        "clean_acc": float((logits.argmax(1) == y).float().mean()),
        "confidence": float(logits.softmax(1).amax(1).mean()),
        **{
            f"acc/{name}": statistics.fmean(a for (n, _), a in accuracy.items() if n == name)
            for name in names
        },
        "mean_corruption_acc": statistics.fmean(accuracy.values()),
        **{f"s{k}": accuracy[("gaussian_noise", k)] for k in SEVERITIES},
        "ece": float(calibration_error(logits, y, num_classes, n_bins=15, input_format="logits")),
        "nll": float(negative_log_likelihood(logits, y, num_classes, input_format="logits")),
        "brier": float(brier_score(logits, y, num_classes, input_format="logits")),
    }


def fit(ds: DataSet, method: str, seed: int, epochs: int) -> tuple[Classifier, dict[str, float]]:
    """Train ``method`` on ``ds`` from ``seed``; returns the model and extras (T, controller scale)."""
    pl.seed_everything(seed, verbose=False)
    model = ds.model()
    callbacks, mix = METHODS[method](ds, seed)
    scaling = TemperatureScaling(apply_at=()) if method == "none" else None
    data: pl.LightningDataModule = ds.data(seed)
    if mix is not None:
        data = MixupDataModule(data, seed=seed, **mix)
    trainer = quiet_trainer(
        [*callbacks, *([scaling] if scaling else [])],
        max_epochs=epochs,
        limit_val_batches=1.0,
        num_sanity_val_steps=0,
        deterministic=True,
    )
    trainer.fit(model, data)
    extras: dict[str, float] = {}
    if scaling is not None:
        extras["temperature"] = float(scaling.temperature)
    for callback in callbacks:
        if isinstance(callback, NoiseController):
            extras["controller_scale"] = float(callback.scale)
    return model.eval(), extras


def _scaled(model: Classifier, temperature: float, inputs: Tensor) -> Tensor:
    """Temperature-scaled logits: what ``TemperatureScaling`` applies at test time."""
    logits: Tensor = model(inputs) / temperature
    return logits


def _clock(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}:{secs:02d}"


def summarise(values: Sequence[float]) -> dict[str, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every fit and evaluation of the table; returns the JSON document."""
    fitted = [m for m in args.methods if m != "temperature"]
    if "temperature" in args.methods and "none" not in fitted:
        fitted.insert(0, "none")
    total = len(args.datasets) * len(fitted) * len(args.seeds)
    done, start = 0, time.perf_counter()
    document: dict[str, Any] = {"datasets": {}}
    for ds_name in args.datasets:
        ds = DATASETS[ds_name]
        epochs = args.epochs or (ds.quick_epochs if args.quick else ds.epochs)
        test_data = ds.data(0)
        test_data.setup()
        assert test_data.test_set is not None
        x, y = test_data.test_set.tensors
        copies = corrupted_copies(ds, x, args.constants)
        runs: dict[str, list[dict[str, float]]] = {m: [] for m in args.methods}
        for method in fitted:
            for seed in args.seeds:
                began = time.perf_counter()
                model, extras = fit(ds, method, seed, epochs)
                row = evaluate(model, x, y, copies, ds.num_classes) | extras | {"seed": seed}
                if method in runs:
                    runs[method].append(row)
                if "temperature" in runs and method == "none":
                    temperature = extras["temperature"]
                    scaled = evaluate(partial(_scaled, model, temperature), x, y, copies, ds.num_classes)
                    runs["temperature"].append(scaled | {"temperature": temperature, "seed": seed})
                done += 1
                elapsed = time.perf_counter() - start
                remaining = elapsed / done * (total - done)
                print(
                    f"[{done:3d}/{total}] {ds_name:13s} {method:15s} seed {seed}:"
                    f" clean {row['clean_acc']:.3f}, mean corruption {row['mean_corruption_acc']:.3f},"
                    f" ECE {row['ece']:.3f}"
                    f" ({time.perf_counter() - began:.1f} s; elapsed {_clock(elapsed)},"
                    f" remaining ~{_clock(remaining)})",
                    flush=True,
                )
        document["datasets"][ds_name] = {
            "title": ds.title,
            "epochs": epochs,
            "test_samples": len(y),
            "noisy_copies": ds.repeats,
            "corruptions": sorted({name for name, _ in copies}),
            "noise_stds": (
                list(TABULAR_STDS)
                if ds.clamp is None
                else [CORRUPTIONS["gaussian_noise"].params(k, args.constants)[0] for k in SEVERITIES]
            ),
            "methods": {
                method: {
                    "runs": rows,
                    **{
                        stat: {key: summarise([r[key] for r in rows])[stat] for key in SUMMARISED}
                        for stat in ("mean", "std")
                    },
                }
                for method, rows in runs.items()
            },
        }
    document["meta"] = {
        "command": " ".join(["python", "benchmarks/evidence.py", *args.argv]),
        "seeds": list(args.seeds),
        "constants": args.constants,
        "seconds": round(time.perf_counter() - start, 1),
        "fits": total,
        "torch": torch.__version__,
        "lightning": lightning.__version__,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
    }
    return document


def markdown(document: dict[str, Any]) -> str:
    """The table, one section per data set, cells ``mean ± std`` over the seeds."""
    meta = document["meta"]
    lines = [
        f"Seeds {meta['seeds']}; mean ± standard deviation over the seeds; test split; {meta['fits']} fits"
        f" in {meta['seconds']:.0f} s (torch {meta['torch']}, {meta['threads']} thread(s)).",
    ]
    for ds in document["datasets"].values():
        stds = ", ".join(f"{s:g}" for s in ds["noise_stds"])
        lines += [
            "",
            f"**{ds['title']}**, {ds['epochs']} epochs, {ds['test_samples']} test samples"
            f" ({ds['noisy_copies']} noisy copies of each per corruption and severity); noise s1..s5:"
            f" Gaussian std {stds}; mean corruption acc over {', '.join(ds['corruptions'])}.",
            "",
            "| method | " + " | ".join(HEADERS[key] for key in METRICS) + " |",
            "| --- |" + " --- |" * len(METRICS),
        ]
        for method, result in ds["methods"].items():
            cells = [f"{result['mean'][key]:.3f} ± {result['std'][key]:.3f}" for key in METRICS]
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def figure(document: dict[str, Any], path: Path) -> None:
    """Accuracy versus test-time Gaussian-noise severity (0: clean), one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = document["datasets"]
    fig, axes = plt.subplots(1, len(datasets), figsize=(6.5 * len(datasets), 4.5), squeeze=False)
    cmap = plt.get_cmap("tab10")
    for ax, ds in zip(axes[0], datasets.values(), strict=True):
        severities = [0, *SEVERITIES]
        for i, (method, result) in enumerate(ds["methods"].items()):
            keys = ["clean_acc", *(f"s{k}" for k in SEVERITIES)]
            mean = [result["mean"][k] for k in keys]
            std = [result["std"][k] for k in keys]
            ax.errorbar(
                severities,
                mean,
                yerr=std,
                label=method,
                color=cmap(i % 10),
                ls="-" if i < 10 else "--",
                marker="o" if i < 10 else "s",
                ms=3,
                capsize=2,
                lw=1.2,
            )
        stds = ", ".join(f"{s:g}" for s in ds["noise_stds"])
        ax.set(title=ds["title"], xlabel=f"test-time Gaussian noise severity (std {stds})", ylabel="accuracy")
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line (see the module doc)."""
    doc = __doc__ or ""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--seeds", nargs="+", type=int, help="seeds (default 0 1 2; --quick: 0)")
    parser.add_argument("--epochs", type=int, help="epochs per fit (default 20; --quick: 3)")
    parser.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS))
    parser.add_argument("--datasets", nargs="+", choices=list(DATASETS), default=list(DATASETS))
    parser.add_argument("--constants", choices=["cifar10", "imagenet"], default="imagenet")
    parser.add_argument("--out", type=Path, default=Path("logs/evidence"), help="folder of the table")
    parser.add_argument("--figure", type=Path, help="PNG path of the figure (default <out>/evidence.png)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--quick", action="store_true", help="smoke run: seed 0, 3 epochs")
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.epochs is not None and args.epochs < 1:
        parser.error(f"--epochs must be >= 1, got {args.epochs}")
    if args.seeds is None:
        args.seeds = [0] if args.quick else [0, 1, 2]
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the table, write ``evidence.md``, ``evidence.json`` and the figure; returns the document."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    document = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    table = markdown(document)
    (args.out / "evidence.md").write_text(table)
    (args.out / "evidence.json").write_text(json.dumps(document, indent=2))
    figure_path = args.figure or args.out / "evidence.png"
    figure(document, figure_path)
    print("\n" + table)
    print(f"wrote {args.out / 'evidence.md'}, {args.out / 'evidence.json'} and {figure_path}")
    return document


if __name__ == "__main__":
    main()
