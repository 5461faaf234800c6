"""Every public class and function has a runnable example that the doctests execute.

Public: listed in ``__all__`` of ``lit_noise`` or of a public subpackage or module (no part of its
dotted name after ``lit_noise`` starts with ``_``); classes and functions only, each counted once
by where it is defined. ``pytest --doctest-modules`` runs the examples themselves (``src`` is in
``testpaths``); this test checks that each object's own docstring has one.
"""

from __future__ import annotations

import doctest
from pathlib import Path
from typing import Any

import lit_noise
from _scripts import loaded_script

ROOT = Path(__file__).resolve().parents[1]


def _public_objects() -> dict[str, Any]:
    """Public classes and functions by ``module.qualname`` of their definition (docs/hooks.py's list,
    which the site's strict build also checks against the API reference)."""
    with loaded_script(ROOT / "docs" / "hooks.py", "lit_noise_docs_hooks") as hooks:
        found: dict[str, Any] = hooks.public_objects()
    return found


def _has_example(obj: Any) -> bool:
    tests = doctest.DocTestFinder(recurse=False).find(obj)
    return any(test.examples for test in tests)


PUBLIC = _public_objects()


def test_the_enumeration_finds_the_public_api() -> None:
    assert len(PUBLIC) >= 200, sorted(PUBLIC)
    # Re-exported names count once, under the module that defines them.
    assert PUBLIC["lit_noise.noise.input.Gaussian"] is lit_noise.Gaussian
    assert PUBLIC["lit_noise.callbacks.input_noise.InputNoise"] is lit_noise.InputNoise
    assert not any(name.split(".")[-1].startswith("_") for name in PUBLIC)
    assert "lit_noise.cli.scripts.train" in PUBLIC  # functions too, not only classes


def test_the_check_tells_an_example_from_none() -> None:
    assert _has_example(lit_noise.Gaussian)

    def documented() -> None:
        """Has an example.

        Example:
            >>> 1 + 1
            2
        """

    def prose_only() -> None:
        """Mentions ``>>>`` in prose, but runs nothing."""

    assert _has_example(documented)
    assert not _has_example(prose_only)


def test_every_public_class_and_function_has_an_example() -> None:
    missing = sorted(name for name, obj in PUBLIC.items() if not _has_example(obj))
    assert not missing, f"{len(missing)} public objects have no doctest example: " + ", ".join(missing)
