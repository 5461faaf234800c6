"""A lit-noise-train job killed with SIGKILL and resumed (resume=true) ends with the uninterrupted weights."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

BIN = Path(sys.executable).parent
JOB = (
    "seed=0",
    "logger=none",
    "noise=[input,weight]",
    "monitor=none",
    "optimized_metric=val/acc",
    "trainer.max_epochs=6",
    "trainer.enable_progress_bar=false",
    "resume=true",
)


def _command(run_dir: Path) -> list[str]:
    return [str(BIN / "lit-noise-train"), *JOB, f"hydra.run.dir={run_dir}"]


def _epoch(path: Path) -> int | None:
    try:
        return int(torch.load(path, map_location="cpu", weights_only=True)["epoch"])
    except Exception:  # not there yet, or being written
        return None


@pytest.mark.slow
def test_sigkill_and_resume_give_the_uninterrupted_weights(tmp_path):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    whole = tmp_path / "whole"
    subprocess.run(_command(whole), cwd=tmp_path, env=env, check=True, capture_output=True, timeout=900)

    killed = tmp_path / "killed"
    last = killed / "checkpoints" / "last.ckpt"
    process = subprocess.Popen(
        _command(killed), cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and process.poll() is None:
        epoch = _epoch(last)
        if epoch is not None and epoch >= 2:  # at least two epochs done, the job is mid-run
            break
        time.sleep(0.05)
    assert process.poll() is None, "the job ended before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=60)
    killed_at = _epoch(last)
    assert killed_at is not None
    assert killed_at < 6
    out = subprocess.run(_command(killed), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"Resuming from {last}" in out.stdout + out.stderr

    expected = torch.load(whole / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    resumed = torch.load(last, map_location="cpu", weights_only=True)
    assert resumed["epoch"] == expected["epoch"] == 5
    assert resumed["global_step"] == expected["global_step"]
    assert expected["state_dict"].keys() == resumed["state_dict"].keys()
    for name, tensor in expected["state_dict"].items():
        assert torch.equal(tensor, resumed["state_dict"][name]), name
