"""Helpers of the tests: import a repository script (benchmarks/, docs/) that is not a package module."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import pytest


@contextmanager
def loaded_script(path: Path, name: str) -> Iterator[ModuleType]:
    """The script at ``path`` imported as module ``name`` while the context lasts.

    Its folder is on ``sys.path`` (the benchmarks import ``_harness`` as when run as scripts) and the
    module is in ``sys.modules`` (dataclasses look their module up); both are undone on exit.
    """
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(path.parent))
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        patch.setitem(sys.modules, name, module)
        spec.loader.exec_module(module)
        yield module
