"""conf/ ships as the package lit_noise.conf: in the editable install and in a wheel, run outside the repo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import lit_noise.conf
import pytest
import tomllib
from setuptools import find_packages

ROOT = Path(__file__).resolve().parents[1]


def test_the_package_list_names_every_package_under_src():
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert setuptools["package-dir"] == {"": "src", "lit_noise.conf": "conf"}
    assert set(setuptools["packages"]) == {*find_packages(str(ROOT / "src")), "lit_noise.conf"}


def test_the_editable_install_serves_conf_as_lit_noise_conf():
    assert Path(lit_noise.conf.__file__).parent == ROOT / "conf"


@pytest.mark.slow
def test_a_wheel_in_a_fresh_venv_composes_and_runs_outside_the_repo(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        timeout=600,
    )
    (wheel,) = tmp_path.glob("lit_noise-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=300)
    # The fresh venv sees this venv's third-party packages (torch, ...) through a plain path entry,
    # which does not run this venv's .pth files, so the editable lit_noise is not importable there.
    site = next(p for p in sys.path if p.endswith("site-packages") and Path(p, "torch").is_dir())
    fresh_site = next((venv / "lib").glob("python*/site-packages"))
    (fresh_site / "_deps.pth").write_text(site + "\n")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(venv / "bin" / "python"),
            "install",
            "--no-deps",
            "-q",
            str(wheel),
        ],
        check=True,
        timeout=600,
    )
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {**os.environ, "LIT_NOISE_LOG_DIR": str(work / "logs")}
    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import lit_noise.conf as c; print(c.__file__)"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    assert Path(where.stdout.strip()).is_relative_to(venv)
    out = subprocess.run(
        [
            str(venv / "bin" / "lit-noise-train"),
            "trainer.fast_dev_run=true",
            "logger=none",
            "noise=[input,weight]",
        ],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    (results,) = (work / "logs" / "train" / "runs").glob("*/results.json")
    data = json.loads(results.read_text())
    assert data["status"] == "ok"
    assert sorted(data["config"]["callbacks"]) == [
        "calibration_monitor",
        "input_noise",
        "model_checkpoint",
        "robustness_monitor",
        "weight_noise",
    ]


@pytest.mark.parametrize(
    ("script", "module"), [("train", "hydra"), ("evaluate", "sklearn"), ("report", "matplotlib")]
)
def test_scripts_name_the_cli_extra_when_it_is_missing(monkeypatch, capsys, script, module):
    from lit_noise import _optional
    from lit_noise.cli import scripts

    monkeypatch.setattr(_optional, "available", lambda name: name != module)
    with pytest.raises(SystemExit) as info:
        getattr(scripts, script)()
    assert info.value.code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.strip().endswith('pip install "lit-noise[cli]"')
