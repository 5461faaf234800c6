"""benchmarks/evidence.py: the evidence table, run quick (1 seed, 1 epoch, 2 methods), and its parts.

Oracles: the table's header and the test-noise stds are typed in here; the metrics are recomputed
with NumPy loops and formulas written here; the temperature with SciPy's bounded scalar search.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch
from scipy.optimize import minimize_scalar

from _scripts import loaded_script

BENCH_DIR = Path(__file__).resolve().parents[1] / "benchmarks"
HEADER = (
    "| method | clean acc | mean corruption acc | noise s1 | noise s2 | noise s3 | noise s4 | noise s5"
    " | ECE | NLL | Brier |"
)
ACCURACIES = ("clean_acc", "mean_corruption_acc", "s1", "s2", "s3", "s4", "s5")


@pytest.fixture(scope="module")
def evidence() -> Iterator[ModuleType]:
    with loaded_script(BENCH_DIR / "evidence.py", "evidence_under_test") as module:
        yield module


@pytest.fixture(scope="module")
def quick_run(
    evidence: ModuleType, tmp_path_factory: pytest.TempPathFactory
) -> tuple[dict[str, Any], Path, str]:
    """One quick run shared by the tests; the process-wide settings main changes are put back."""
    out = tmp_path_factory.mktemp("evidence")
    argv = ["--quick", "--seeds", "0", "--epochs", "1", "--methods", "none", "label_smoothing", "temperature"]
    threads = torch.get_num_threads()
    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")]
    levels = [logger.level for logger in loggers]
    stdout = io.StringIO()  # capsys is function-scoped
    try:
        with contextlib.redirect_stdout(stdout):
            document = evidence.main([*argv, "--out", str(out)])
    finally:
        torch.set_num_threads(threads)
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
    return document, out, stdout.getvalue()


def test_files_and_columns(quick_run: tuple[dict[str, Any], Path, str]) -> None:
    document, out, _ = quick_run
    table = (out / "evidence.md").read_text()
    assert table.count(HEADER) == 2  # one table per data set
    for method in ("none", "label_smoothing", "temperature"):
        assert sum(line.startswith(f"| {method} | ") for line in table.splitlines()) == 2
    assert json.loads((out / "evidence.json").read_text()) == document
    assert (out / "evidence.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert set(document["datasets"]) == {"digits", "breast_cancer"}
    assert document["meta"]["seeds"] == [0]
    assert document["meta"]["command"].startswith(
        "python benchmarks/evidence.py --quick --seeds 0 --epochs 1"
    )
    assert document["meta"]["fits"] == 4  # 2 data sets x (none, label_smoothing); temperature reuses none


def test_progress_lines(quick_run: tuple[dict[str, Any], Path, str]) -> None:
    lines = [line for line in quick_run[2].splitlines() if line.startswith("[")]
    assert [line.split("]")[0] for line in lines] == ["[  1/4", "[  2/4", "[  3/4", "[  4/4"]
    assert all("elapsed" in line and "remaining ~" in line for line in lines)
    assert lines[-1].endswith("remaining ~0:00)")


def test_values_in_range(quick_run: tuple[dict[str, Any], Path, str]) -> None:
    for ds in quick_run[0]["datasets"].values():
        assert ds["epochs"] == 1
        for result in ds["methods"].values():
            (run,) = result["runs"]
            mean, std = result["mean"], result["std"]
            assert set(mean) == set(std) == {*ACCURACIES, "ece", "nll", "brier", "confidence"}
            assert 0.0 <= mean["confidence"] <= 1.0
            assert all(0.0 <= mean[key] <= 1.0 for key in ACCURACIES)
            assert 0.0 <= mean["ece"] <= 1.0
            assert 0.0 <= mean["brier"] <= 2.0
            assert 0.0 < mean["nll"] < 10.0
            assert all(std[key] == 0.0 for key in std)  # one seed
            assert all(run[key] == mean[key] for key in mean)
            assert all(math.isfinite(v) for v in mean.values())


def test_temperature_row_is_the_none_model_scaled(
    evidence: ModuleType, quick_run: tuple[dict[str, Any], Path, str]
) -> None:
    """Same argmax (every accuracy equal); NLL of logits / T with T the minimiser of the validation NLL."""
    ds_doc = quick_run[0]["datasets"]["breast_cancer"]
    none, scaled = ds_doc["methods"]["none"], ds_doc["methods"]["temperature"]
    assert all(scaled["mean"][key] == none["mean"][key] for key in ACCURACIES)
    ds = evidence.DATASETS["breast_cancer"]
    model, extras = evidence.fit(ds, "none", 0, 1)  # deterministic: the quick run's model again
    data = ds.data(0)
    data.setup()
    with torch.no_grad():
        val_logits = model(data.val_set.tensors[0]).double().numpy()
        test_logits = model(data.test_set.tensors[0]).double().numpy()
    val_y, test_y = data.val_set.tensors[1].numpy(), data.test_set.tensors[1].numpy()

    def nll(logits: np.ndarray, y: np.ndarray, t: float) -> float:
        z = logits / t
        z = z - z.max(axis=1, keepdims=True)
        log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        return float(-log_p[np.arange(len(y)), y].mean())

    oracle_t = minimize_scalar(lambda t: nll(val_logits, val_y, t), bounds=(0.05, 20), method="bounded").x
    assert extras["temperature"] == pytest.approx(oracle_t, rel=1e-3)
    assert scaled["runs"][0]["temperature"] == pytest.approx(extras["temperature"], rel=1e-6)
    assert scaled["mean"]["nll"] == pytest.approx(nll(test_logits, test_y, extras["temperature"]), rel=1e-4)
    assert none["mean"]["nll"] == pytest.approx(nll(test_logits, test_y, 1.0), rel=1e-4)


def test_evaluate_against_numpy(evidence: ModuleType) -> None:
    """Accuracy, 15-bin top-label ECE, NLL and Brier of a fixed linear model, by NumPy loops."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(200, 5, generator=gen)
    weight = torch.randn(5, 3, generator=gen) * 2
    y = torch.randint(0, 3, (200,), generator=gen)
    y[:120] = (x[:120] @ weight).argmax(1)  # better than chance
    copies = {
        ("gaussian_noise", k): (x + 0.3 * k * torch.randn(200, 5, generator=gen)).repeat(2, 1)
        for k in range(1, 6)
    }
    copies[("contrast", 1)] = x.repeat(2, 1) * 0.5
    got = evidence.evaluate(lambda inputs: inputs @ weight, x, y, copies, 3)

    z = (x @ weight).double().numpy()
    t = y.numpy()
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    conf, pred = p.max(1), p.argmax(1)
    ece = 0.0
    for b in range(15):
        lo, hi = b / 15, (b + 1) / 15
        inside = (conf > lo) & (conf <= hi)
        if inside.any():
            ece += inside.mean() * abs((pred[inside] == t[inside]).mean() - conf[inside].mean())
    onehot = np.eye(3)[t]

    def accuracy(inputs: torch.Tensor) -> float:
        predicted = (inputs @ weight).argmax(1).numpy()
        return float(np.mean([predicted[i] == t[i % 200] for i in range(len(predicted))]))

    noisy = [accuracy(copies[("gaussian_noise", k)]) for k in range(1, 6)]
    assert got["clean_acc"] == pytest.approx(float((pred == t).mean()))
    assert [got[f"s{k}"] for k in range(1, 6)] == pytest.approx(noisy)
    assert got["mean_corruption_acc"] == pytest.approx(np.mean([*noisy, accuracy(copies[("contrast", 1)])]))
    assert got["ece"] == pytest.approx(ece, abs=1e-6)
    assert got["nll"] == pytest.approx(float(-np.log(p[np.arange(200), t]).mean()), rel=1e-5)
    assert got["brier"] == pytest.approx(float(((p - onehot) ** 2).sum(1).mean()), rel=1e-5)
    assert got["confidence"] == pytest.approx(float(conf.mean()), rel=1e-5)
    assert got["acc/gaussian_noise"] == pytest.approx(np.mean(noisy))
    assert got["acc/contrast"] == pytest.approx(accuracy(copies[("contrast", 1)]))


def test_tabular_test_noise(evidence: ModuleType) -> None:
    """Breast cancer: unclipped Gaussian noise of std 0.5, 1.0, ..., 2.5, 10 copies, the same every call."""
    ds = evidence.DATASETS["breast_cancer"]
    x = torch.zeros(500, 30)
    copies = evidence.corrupted_copies(ds, x, "imagenet")
    assert sorted(copies) == [("gaussian_noise", k) for k in range(1, 6)]
    for k, std in zip(range(1, 6), (0.5, 1.0, 1.5, 2.0, 2.5), strict=True):
        noise = copies[("gaussian_noise", k)]
        assert noise.shape == (5000, 30)
        assert noise.std().item() == pytest.approx(std, rel=0.02)
        assert noise.min().item() < -std  # not clipped
    again = evidence.corrupted_copies(ds, x, "imagenet")
    assert all(torch.equal(copies[key], again[key]) for key in copies)


def test_digits_test_noise(evidence: ModuleType) -> None:
    """Digits: 9 corruptions (no saturate on one channel) x 5 severities; Gaussian std = ImageNet-C's."""
    ds = evidence.DATASETS["digits"]
    x = torch.full((100, 1, 8, 8), 0.5)
    copies = evidence.corrupted_copies(ds, x, "imagenet")
    assert len(copies) == 45
    assert {name for name, _ in copies} == {
        "gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise", "gaussian_blur",
        "defocus_blur", "contrast", "brightness", "pixelate",
    }  # fmt: skip
    assert all(copy.shape == (200, 1, 8, 8) for copy in copies.values())  # 2 copies of the test set
    for k, std in zip(range(1, 4), (0.08, 0.12, 0.18), strict=True):  # hendrycks' ImageNet-C, s1..s3
        noise = copies[("gaussian_noise", k)] - 0.5  # clipping at 0.5 +- 0.5 is below 3 std: negligible
        assert noise.std().item() == pytest.approx(std, rel=0.03)


def test_summarise_is_mean_and_sample_std(evidence: ModuleType) -> None:
    values = [0.91, 0.95, 0.96]
    assert evidence.summarise(values) == pytest.approx(
        {"mean": float(np.mean(values)), "std": float(np.std(values, ddof=1))}
    )
    assert evidence.summarise([0.5]) == {"mean": 0.5, "std": 0.0}


def test_bad_epochs_is_refused(evidence: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        evidence.parse_args(["--epochs", "0"])
    assert "--epochs must be >= 1, got 0" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("name", "sigma", "too_noisy", "clamp"),
    [("digits", 0.3, 2.0, (0.0, 1.0)), ("breast_cancer", 1.0, 5.0, None)],
)
def test_input_noise_methods(
    evidence: ModuleType, name: str, sigma: float, too_noisy: float, clamp: tuple[float, float] | None
) -> None:
    """The documented schedules: every batch; every other epoch; a ramp 0 -> sigma; the controller's start."""
    from lit_noise import InputNoise, NoiseController
    from lit_noise.schedules import Clock

    ds = evidence.DATASETS[name]

    def stds(method: str, clocks: list[Clock]) -> list[float]:
        callbacks, mix = evidence.METHODS[method](ds, 0)
        assert mix is None
        (noise,) = [c for c in callbacks if isinstance(c, InputNoise)]
        assert noise.clamp == clamp
        return [noise.noise.resolve(clock)["std"] for clock in clocks]

    epochs = [Clock(epoch=e) for e in range(4)]
    assert stds("gaussian", epochs) == pytest.approx([sigma] * 4)
    assert stds("interval", epochs) == pytest.approx([sigma, 0.0, sigma, 0.0])
    ramp = [Clock(progress=p) for p in (0.0, 0.25, 0.5, 1.0)]
    assert stds("curriculum", ramp) == pytest.approx([0.0, sigma / 4, sigma / 2, sigma])
    assert stds("controller", epochs) == pytest.approx([too_noisy] * 4)
    assert any(isinstance(c, NoiseController) for c in evidence.METHODS["controller"](ds, 0)[0])
    assert evidence.METHODS["none"](ds, 0) == ([], None)
    assert evidence.METHODS["mixup"](ds, 0) == ([], {"mixup_alpha": 0.2})
    assert evidence.METHODS["mixup_ls"](ds, 0) == ([], {"mixup_alpha": 0.2, "label_smoothing": 0.1})


def test_temperature_alone_fits_the_none_model(evidence: ModuleType, tmp_path: Path) -> None:
    """``--methods temperature`` trains the ``none`` model it needs, and reports only the temperature row."""
    argv = ["--methods", "temperature", "--datasets", "breast_cancer", "--seeds", "0", "--epochs", "1"]
    threads = torch.get_num_threads()
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            document = evidence.main([*argv, "--out", str(tmp_path)])
    finally:
        torch.set_num_threads(threads)
    assert document["meta"]["fits"] == 1
    (row,) = document["datasets"]["breast_cancer"]["methods"]["temperature"]["runs"]
    assert list(document["datasets"]["breast_cancer"]["methods"]) == ["temperature"]
    assert row["temperature"] > 0
