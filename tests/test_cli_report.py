"""lit-noise-report from results.json files (written here with known numbers; no training)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lit_noise.cli.report import load_jobs, main, severity_curve, sort_jobs, write_report
from lit_noise.cli.results import write_results
from lit_noise.errors import ConfigurationError

PNG = b"\x89PNG\r\n\x1a\n"


def _job(root: Path, num: int, std: float, robust: float, status: str = "ok") -> None:
    metrics = {
        "val/acc": 0.9 - std / 10,
        "val/robust/clean_acc": 0.9 - std / 10,
        "val/robust/mean_acc": robust,
        "val/cal/ece": 0.05 + std / 10,
        "val/cal/nll": 0.3 + std,
        "test/acc": 0.88,
        "val/robust/gaussian_noise/s1/acc": robust + 0.1,
        "val/robust/gaussian_noise/s5/acc": robust - 0.1,
        "val/robust/contrast/s1/acc": robust + 0.2,
        "val/robust/contrast/s5/acc": robust - 0.2,
    }
    write_results(
        root / str(num),
        {
            "status": status,
            "job": {"num": num, "overrides": [f"callbacks.input_noise.noise.std={std}"]},
            "optimized_metric": {"name": "val/robust/mean_acc", "value": robust if status == "ok" else None},
            "metrics": metrics if status == "ok" else {},
            "wandb_runs": [f"/runs/{num}/wandb/offline-run-x{num}"],
            "wall_time_s": 3.0 + num,
        },
    )


@pytest.fixture
def sweep(tmp_path):
    for num, (std, robust) in enumerate([(0.0, 0.60), (0.1, 0.72), (0.2, 0.68)]):
        _job(tmp_path, num, std, robust)
    _job(tmp_path, 3, 0.3, 0.0, status="failed")
    (tmp_path / "multirun.yaml").write_text("hydra: {}\n")
    return tmp_path


def test_jobs_sorted_by_the_optimised_metric(sweep):
    jobs = sort_jobs(load_jobs(sweep))
    assert [j.value for j in jobs] == [0.72, 0.68, 0.60, None]  # best first, the failed job last


def test_severity_curve_is_the_mean_over_corruptions():
    metrics = {"val/robust/clean_acc": 0.9, "val/robust/a/s1/acc": 0.8, "val/robust/b/s1/acc": 0.5}
    metrics |= {"val/robust/a/s5/acc": 0.3, "val/robust/b/s5/acc": 0.1, "val/robust/a/acc": 0.55}
    assert severity_curve(metrics) == ([0, 1, 5], [0.9, 0.65, 0.2])


def test_report_markdown_and_figures(sweep, capsys):
    assert main([str(sweep), "--out", str(sweep / "out")]) == 0
    report = sweep / "out" / "report.md"
    assert f"Report: {report}" in capsys.readouterr().out
    text = report.read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ") and "`" in line]
    assert [row.split(" | ")[1] for row in rows] == [
        "`callbacks.input_noise.noise.std=0.1`",
        "`callbacks.input_noise.noise.std=0.2`",
        "`callbacks.input_noise.noise.std=0.0`",
        "`callbacks.input_noise.noise.std=0.3`",
    ]
    assert (
        "| 1 | `callbacks.input_noise.noise.std=0.1` | ok | 0.7200 | 0.8900 | 0.0600 | 0.4000 | 0.8800 |"
        in text
    )
    for name in ("severity.png", "calibration.png", "clean_vs_robust.png"):
        assert f"]({name})" in text
        assert (sweep / "out" / name).read_bytes()[:8] == PNG
    assert "`/runs/2/wandb/offline-run-x2`" in text
    assert "wandb sync" in text


def test_default_output_dir_and_json_results(sweep):
    path = write_report(sweep)
    assert path == sweep / "report" / "report.md"
    assert json.loads((sweep / "1" / "results.json").read_text())["optimized_metric"]["value"] == 0.72


def test_a_directory_without_results_is_refused(tmp_path):
    with pytest.raises(ConfigurationError, match=r"results\.json"):
        load_jobs(tmp_path)
    with pytest.raises(SystemExit) as info:
        main([str(tmp_path)])
    assert info.value.code == 2
