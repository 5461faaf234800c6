"""The main job (`make train`): trains clean and noisy models and reports both accuracies."""

from __future__ import annotations

import pytest

from lit_noise.examples.demo import main, run


def test_demo_prints_clean_and_noisy_accuracy(capsys: pytest.CaptureFixture[str]) -> None:
    results = run(["--epochs", "3", "--seed", "0"])
    out = capsys.readouterr().out
    assert [r.name for r in results] == ["clean training", "lit_noise training"]
    for result in results:
        assert 0.5 < result.clean_acc <= 1.0
        assert 0.0 <= result.noisy_acc <= result.clean_acc
        assert f"{result.clean_acc:.3f}" in out
        assert f"{result.noisy_acc:.3f}" in out
    clean_model, noisy_model = results
    # Training with input noise is what makes the model hold its accuracy under noise.
    assert noisy_model.noisy_acc > clean_model.noisy_acc + 0.03


def test_console_entry_point_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--epochs", "1"]) == 0
    assert "lit_noise training" in capsys.readouterr().out
