"""lit-noise-train through the real configs: results.json, W&B lifecycle, secrets, bad input, the CLI."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import open_dict

from _cli import BIN, TINY, compose_train, lit_noise_configs, wandb_summary
from lit_noise.cli.train import main, run
from lit_noise.errors import ConfigurationError

FAKE_KEY = "fake0123456789abcdef0123456789abcdef0123"  # a 40-character W&B-style API key


def _files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


@pytest.fixture(scope="module")
def jobs(tmp_path_factory):
    """Two jobs in one process, as a multirun runs them: one fails mid-training, the next succeeds."""
    root = tmp_path_factory.mktemp("jobs")
    with pytest.MonkeyPatch.context() as mp, lit_noise_configs():
        mp.setenv("WANDB_API_KEY", FAKE_KEY)
        mp.setenv("WANDB_MODE", "offline")
        mp.setenv("WANDB_SILENT", "true")
        for var in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_CONFIG_DIR"):
            mp.setenv(var, str(root / var.lower()))
        failing = compose_train(
            root / "failing", [*TINY, "trainer.max_epochs=3", "optimized_metric=val/nope", "logger=wandb"]
        )
        with pytest.raises(ConfigurationError) as error:
            run(failing)
        # A config value that carries the key (a URL with it, an `api_key` entry): both redacted.
        url = "+service.url='https://example.invalid/?k=${oc.env:WANDB_API_KEY}'"
        secrets = [url, "+service.api_key=abc"]
        ok = compose_train(root / "ok", [*TINY, "logger=both", *secrets])
        result = run(ok)
    return {"root": root, "error": error.value, "result": result}


def test_results_json(jobs):
    result = jobs["result"]
    results = json.loads((jobs["root"] / "ok" / "results.json").read_text())
    assert results["status"] == "ok"
    assert results["error"] is None
    metrics = results["metrics"]
    assert results["optimized_metric"] == {"name": "val/robust/mean_acc", "value": result.value}
    assert metrics["val/robust/mean_acc"] == result.value
    # The robust mean is the mean over the two corruptions x two severities of the same validation.
    parts = [metrics[f"val/robust/{c}/s{k}/acc"] for c in ("gaussian_noise", "contrast") for k in (1, 5)]
    assert result.value == pytest.approx(sum(parts) / 4, abs=1e-6)
    assert 0.0 <= metrics["test/acc"] <= 1.0
    assert "test/cal/ece" in metrics
    assert "val/cal/ece" in metrics
    assert Path(results["checkpoint"]).is_file()
    assert Path(results["checkpoint"]).parent == jobs["root"] / "ok" / "checkpoints"
    assert Path(results["last_checkpoint"]).name == "last.ckpt"
    assert "trainer.max_epochs=1" in results["job"]["overrides"]
    assert results["config"]["callbacks"]["input_noise"]["noise"]["std"] == 0.1
    assert results["config"]["trainer"]["max_epochs"] == 1
    assert results["versions"]["torch"] == torch.__version__
    assert results["wall_time_s"] > 0
    # val/* come from validating the best checkpoint after the fit: one epoch's validation + that one.
    with (jobs["root"] / "ok" / "csv" / "version_0" / "metrics.csv").open() as rows:
        logged = [row["val/acc"] for row in csv.DictReader(rows) if row.get("val/acc")]
    assert len(logged) == 2
    assert float(logged[-1]) == pytest.approx(metrics["val/acc"])


def test_wandb_run_per_job_and_failed_runs_marked_failed(jobs):
    result = jobs["result"]
    (ok_dir,) = result.wandb_runs
    failing_dirs = list((jobs["root"] / "failing" / "wandb").glob("offline-run-*"))
    assert len(failing_dirs) == 1
    failed, ok = wandb_summary(str(failing_dirs[0])), wandb_summary(ok_dir)
    assert (failed["state"], failed["exit_code"]) == ("failed", 1)
    assert (ok["state"], ok["exit_code"]) == ("finished", 0)
    assert failed["run_id"] != ok["run_id"]  # the next job logs into a new run
    # The failing job stopped at the end of its first epoch, not after 3 epochs.
    assert failed["summary"]["epoch"] == 0
    assert failed["summary"]["trainer/global_step"] <= 2
    metrics = json.loads((jobs["root"] / "ok" / "results.json").read_text())["metrics"]
    assert ok["summary"]["test/acc"] == pytest.approx(metrics["test/acc"])
    assert ok["config"]["callbacks.input_noise.noise.std"] == 0.1
    assert not any("_target_" in key for key in ok["config"])


def test_unknown_optimized_metric_names_the_logged_ones(jobs):
    message = str(jobs["error"])
    assert "`optimized_metric`" in message
    assert "'val/nope'" in message
    assert "val/acc" in message
    assert "val/robust/mean_acc" in message
    results = json.loads((jobs["root"] / "failing" / "results.json").read_text())
    assert results["status"] == "failed"
    assert "val/nope" in results["error"]


def test_no_secret_lands_anywhere(jobs):
    results = json.loads((jobs["root"] / "ok" / "results.json").read_text())
    assert results["config"]["service"] == {"url": "https://example.invalid/?k=***", "api_key": "***"}
    files = _files(jobs["root"] / "ok") + _files(jobs["root"] / "failing")
    assert len(files) > 10
    leaked = [p for p in files if FAKE_KEY.encode() in p.read_bytes()]
    assert leaked == []


def test_seed_zero_is_a_seed(tmp_path):
    with lit_noise_configs():
        for seed, expected in (("0", 0), ("null", 1234)):
            torch.manual_seed(1234)
            cfg = compose_train(
                tmp_path,
                [f"seed={seed}", "train=false", "test=false", "optimized_metric=null", "logger=none"],
            )
            assert run(cfg).value is None
            assert torch.initial_seed() == expected


@pytest.mark.parametrize(
    ("overrides", "patterns"),
    [
        (["+callbacks.input_noise.stdd=0.1"], ["`callbacks.input_noise`", "stdd"]),
        (["callbacks.input_noise.noise.std=-0.1"], ["`callbacks.input_noise.noise`", "std", "-0.1"]),
        (["callbacks.robustness_monitor.severities=[0]"], ["`callbacks.robustness_monitor`", "severities"]),
        (["data.batch_size=0"], ["`data`", "batch_size"]),
        (["seed=abc"], ["`seed`", "abc"]),
        (["resume=true", "ckpt_path=/no/such.ckpt"], ["`resume` must be false when `ckpt_path` is given"]),
    ],
)
def test_bad_input_stops_before_training(tmp_path, overrides, patterns):
    with lit_noise_configs():
        cfg = compose_train(tmp_path, [*overrides, "logger=none"])
        with pytest.raises(ConfigurationError) as info:
            run(cfg)
    for pattern in patterns:
        assert pattern in str(info.value)
    assert not (tmp_path / "checkpoints").exists()
    assert json.loads((tmp_path / "results.json").read_text())["status"] == "failed"


def test_a_noise_node_that_is_not_callbacks_is_refused(tmp_path):
    with lit_noise_configs():
        cfg = compose_train(tmp_path, ["logger=none"])
    with open_dict(cfg):
        cfg.noise = ["input", "target"]  # what Hydra leaves when the group is not on the search path
    with pytest.raises(ConfigurationError, match=r"`noise` must be a dict of callback configs") as info:
        run(cfg)
    assert "hydra.searchpath=[pkg://lit_noise.conf]" in str(info.value)


def test_main_lists_the_options_of_a_group(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["lit-noise-train", "noise=[input,inptu]"])
    with pytest.raises(SystemExit) as info:
        main()
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "'inptu'" in err
    assert "(activation, gradient, input, layers, neftune, none, target, token_drop, token_mask," in err


# slow: a whole fit in a fresh process (importing Lightning alone takes 6-8 s on a 2-core VM); the
# default suite keeps a console-script subprocess in test_cli_compose_job.
@pytest.mark.slow
def test_the_cli_runs_quietly(tmp_path):
    env = {**os.environ, "LIT_NOISE_LOG_DIR": str(tmp_path / "logs"), "WANDB_MODE": "offline"}
    out = subprocess.run(
        [str(BIN / "lit-noise-train"), "trainer.fast_dev_run=true"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    text = out.stdout + out.stderr
    assert out.returncode == 0, text
    (results,) = (tmp_path / "logs" / "train" / "runs").glob("*/results.json")
    data = json.loads(results.read_text())
    assert data["status"] == "ok"
    assert 0.0 <= data["optimized_metric"]["value"] <= 1.0
    assert "val/robust/mean_acc=" in text
    assert str(results.parent) in text
    assert "Traceback" not in text
    assert "GPU available" not in text  # Lightning's banner and tips stay quiet ...
    assert "RobustnessMonitor: 8 corrupted copies" in text  # ... lit_noise's own lines are shown
    assert "Warning" not in text
    assert "warn" not in text.lower()
