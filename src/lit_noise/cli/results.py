"""``results.json``: what every job leaves beside its outputs, so results survive without W&B."""

from __future__ import annotations

import functools
import json
import math
import platform
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["RESULTS_FILE", "package_versions", "read_results", "write_results"]

RESULTS_FILE = "results.json"

_PACKAGES = ("lit-noise", "torch", "lightning", "torchmetrics", "hydra-core", "omegaconf", "wandb", "numpy")


def package_versions() -> dict[str, str | None]:
    """Python's and the main packages' versions (None for a package that is not installed).

    Example:
        >>> versions = package_versions()
        >>> sorted(versions)[:3], versions["torch"] is not None
        (['hydra-core', 'lightning', 'lit-noise'], True)
    """
    return dict(_installed_versions())


@functools.cache
def _installed_versions() -> dict[str, str | None]:
    """Read once per process (a sweep runs many jobs in one): installed versions do not change."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    versions.update({name: _version(name) for name in _PACKAGES})
    return versions


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else str(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def write_results(directory: str | Path, results: Mapping[str, Any], name: str = RESULTS_FILE) -> Path:
    """Write ``results`` as ``<directory>/<name>`` (non-finite floats as null or strings).

    Example:
        >>> import tempfile
        >>> path = write_results(tempfile.mkdtemp(), {"metrics": {"val/acc": 0.5, "x": float("nan")}})
        >>> read_results(path)["metrics"]
        {'val/acc': 0.5, 'x': None}
    """
    path = Path(directory) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(_jsonable(results), indent=2, sort_keys=True) + "\n")
    tmp.replace(path)
    return path


def read_results(path: str | Path) -> dict[str, Any]:
    """Read one ``results.json``.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as job:
        ...     path = Path(job) / RESULTS_FILE
        ...     _ = path.write_text('{"status": "ok", "metrics": {"val/acc": 0.75, "val/cal/ece": null}}')
        ...     results = read_results(path)
        >>> results["status"], results["metrics"]
        ('ok', {'val/acc': 0.75, 'val/cal/ece': None})
    """
    data: dict[str, Any] = json.loads(Path(path).read_text())
    return data
