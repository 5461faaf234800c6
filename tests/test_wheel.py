"""The wheel, installed without extras into a fresh virtualenv, runs the core (slow: about a minute).

The virtualenv has no system site packages, so nothing of the development environment is
visible: torch comes pinned through ``constraints.txt`` from pip's configured index, as in
``make install``, and the wheel brings the rest of the core dependencies. ``_plain_install.py``
then runs from a directory outside the repository (see its docstring for what it checks), and
each console script is run as a user runs it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from _plain_install import SCRIPTS

ROOT = Path(__file__).resolve().parents[1]
OPTIONAL_PACKAGES = ("matplotlib", "scikit-learn", "wandb", "hydra-core")


def _run(command: list[str | Path], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1", PYTHONNOUSERSITE="1")
    return subprocess.run(
        [str(part) for part in command], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"{result.args}\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
    return result.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from a copy of the working tree (so the build leaves nothing in it)."""
    base = tmp_path_factory.mktemp("wheel")
    source = base / "source"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".venv", ".git", "__pycache__", "*.egg-info", "build", "dist", ".*_cache", "lightning_logs",
            "wandb", "outputs", "multirun",
        ),
    )  # fmt: skip
    dist = base / "dist"
    _ok(
        _run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "-q",
                "--no-deps",
                "--no-build-isolation",
                "-w",
                dist,
                source,
            ],
            base,
            timeout=300,
        )
    )
    (built,) = dist.glob("lit_noise-*.whl")
    return built


@pytest.mark.slow
def test_wheel_metadata_keeps_optional_packages_in_their_extras(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        metadata = archive.read(name).decode()
    requires = [
        line.split(":", 1)[1].strip() for line in metadata.splitlines() if line.startswith("Requires-Dist:")
    ]
    extras = {
        line.split(":", 1)[1].strip() for line in metadata.splitlines() if line.startswith("Provides-Extra:")
    }
    assert {"examples", "plots", "wandb", "cli"} <= extras
    core = [req for req in requires if "extra ==" not in req]
    assert any(req.startswith("torch") for req in core)
    for package in OPTIONAL_PACKAGES:
        assert not [req for req in core if req.lower().startswith(package)], (package, core)


@pytest.fixture
def venv(tmp_path: Path) -> Iterator[Path]:
    """Where the fresh virtualenv goes; removed afterwards (it holds about 1 GB, mostly torch)."""
    yield tmp_path / "venv"
    shutil.rmtree(tmp_path / "venv", ignore_errors=True)


@pytest.mark.slow
def test_wheel_without_extras_runs_the_core_in_a_fresh_virtualenv(
    wheel: Path, venv: Path, tmp_path: Path
) -> None:
    _ok(_run([sys.executable, "-m", "venv", venv], tmp_path, timeout=120))
    assert "include-system-site-packages = false" in (venv / "pyvenv.cfg").read_text()
    python = venv / "bin" / "python"
    constraints = ROOT / "constraints.txt"
    _ok(
        _run([python, "-m", "pip", "install", "-q", "-c", constraints, "torch==2.13.0", wheel], tmp_path, 900)
    )

    work = tmp_path / "elsewhere"  # outside the repository: lit_noise can only come from the venv
    work.mkdir()
    shutil.copy(ROOT / "tests" / "_plain_install.py", work)
    out = _ok(_run([python, "_plain_install.py"], work, timeout=600))
    assert out.strip().endswith("plain install OK")
    located = _ok(_run([python, "-c", "import lit_noise; print(lit_noise.__file__)"], work, timeout=120))
    assert Path(located.strip()).is_relative_to(venv)

    for script, extra in SCRIPTS.items():  # as a user runs them: pip's wrappers in venv/bin
        result = _run([venv / "bin" / script], work, timeout=300)
        assert (result.returncode, result.stdout) == (1, ""), (script, result.stdout, result.stderr)
        assert result.stderr.strip().endswith(f'pip install "lit-noise[{extra}]"'), result.stderr
        assert "Traceback" not in result.stderr
