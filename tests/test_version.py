"""The package reports the version that pyproject.toml declares."""

from __future__ import annotations

import re
from pathlib import Path

import lit_noise


def test_version_is_the_one_in_pyproject() -> None:
    text = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    declared = re.search(r'^version = "([^"]+)"$', text, flags=re.MULTILINE)
    assert declared is not None
    assert lit_noise.__version__ == declared.group(1)
