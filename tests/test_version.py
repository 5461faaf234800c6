"""The package reports the version that pyproject.toml declares."""

from __future__ import annotations

import tomllib
from pathlib import Path

import lit_noise


def test_version_is_the_one_in_pyproject() -> None:
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert lit_noise.__version__ == pyproject["project"]["version"]
