"""Multirun sweeps through lit-noise-train (slow: each runs the CLI as a command, as a user does)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from _cli import BIN, TINY, wandb_summary

pytestmark = pytest.mark.slow


def _cli(tmp_path: Path, *args: str, ok: bool = True) -> str:
    flags = [a for a in args if a.startswith("-")]  # before the overrides, as argparse wants them
    env = {**os.environ, "LIT_NOISE_LOG_DIR": str(tmp_path / "logs"), "WANDB_MODE": "offline"}
    out = subprocess.run(
        [
            str(BIN / "lit-noise-train"),
            *flags,
            *TINY,
            f"hydra.sweep.dir={tmp_path / 'sweep'}",
            *(a for a in args if not a.startswith("-")),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    text = out.stdout + out.stderr
    assert (out.returncode == 0) == ok, text
    return text


def _jobs(tmp_path: Path, count: int) -> list[dict]:
    jobs = [json.loads((tmp_path / "sweep" / str(i) / "results.json").read_text()) for i in range(count)]
    assert not (tmp_path / "sweep" / str(count)).exists()
    return jobs


def _runs(job: dict) -> dict:
    (run_dir,) = job["wandb_runs"]
    return wandb_summary(run_dir)


def test_basic_multirun_one_finished_wandb_run_per_job_and_a_failing_job(tmp_path):
    text = _cli(tmp_path, "-m", "optimized_metric=val/acc,val/nope,val/robust/mean_acc", ok=False)
    jobs = _jobs(tmp_path, 3)
    assert [job["status"] for job in jobs] == ["ok", "failed", "ok"]
    runs = [
        wandb_summary(str(next((tmp_path / "sweep" / str(i) / "wandb").glob("offline-run-*"))))
        for i in range(3)
    ]
    assert [(r["state"], r["exit_code"]) for r in runs] == [("finished", 0), ("failed", 1), ("finished", 0)]
    assert len({r["run_id"] for r in runs}) == 3
    assert runs[0]["config"]["optimized_metric"] == "val/acc"
    assert runs[2]["summary"]["test/acc"] == pytest.approx(jobs[2]["metrics"]["test/acc"])
    assert "job #0 [" in text
    assert "job #2 [" in text


def test_joblib_multirun(tmp_path):
    text = _cli(tmp_path, "-m", "launcher=joblib", "callbacks.input_noise.noise.std=0.0,0.1,0.2")
    jobs = _jobs(tmp_path, 3)
    assert [job["config"]["callbacks"]["input_noise"]["noise"]["std"] for job in jobs] == [0.0, 0.1, 0.2]
    runs = [_runs(job) for job in jobs]
    assert {r["state"] for r in runs} == {"finished"}
    assert len({r["run_id"] for r in runs}) == 3
    assert "Traceback" not in text


def test_optuna_search_of_three_trials(tmp_path):
    _cli(
        tmp_path,
        "hparams_search=optuna",
        "hydra.sweeper.n_trials=3",
        "hydra.sweeper.sampler.n_startup_trials=2",
    )
    jobs = _jobs(tmp_path, 3)
    values = [job["optimized_metric"]["value"] for job in jobs]
    best = yaml.safe_load((tmp_path / "sweep" / "optimization_results.yaml").read_text())
    assert best["best_value"] == pytest.approx(max(values))
    for job in jobs:
        std = job["config"]["callbacks"]["input_noise"]["noise"]["std"]
        assert 0.0 <= std["end"] <= 0.4
        assert 0.05 <= std["until"] <= 1.0
        assert _runs(job)["state"] == "finished"


def test_submitit_local_launch(tmp_path):
    _cli(tmp_path, "-m", "launcher=submitit_local", "callbacks.input_noise.noise.std=0.0,0.2")
    jobs = _jobs(tmp_path, 2)
    assert [job["status"] for job in jobs] == ["ok", "ok"]
    assert [_runs(job)["state"] for job in jobs] == ["finished", "finished"]


def test_ddp_sim_job(tmp_path):
    _cli(tmp_path, "trainer=ddp_sim", f"hydra.run.dir={tmp_path / 'run'}")
    job = json.loads((tmp_path / "run" / "results.json").read_text())
    assert job["status"] == "ok"
    assert 0.0 <= job["metrics"]["test/acc"] <= 1.0
    run_dirs = list((tmp_path / "run" / "wandb").glob("offline-run-*"))
    assert len(run_dirs) >= 1
    assert {wandb_summary(str(d))["state"] for d in run_dirs} == {"finished"}
