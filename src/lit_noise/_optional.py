"""Optional dependencies: checked when the object that needs one is built, naming the extra.

A plain ``pip install lit-noise`` runs the core (noise, schedules, callbacks, metrics, corruptions,
the monitors with ``log_figures=False``). What needs more calls :func:`require` in its constructor,
before any work is done, so that a missing package is reported at once and not after an epoch.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable

from lit_noise.errors import ConfigurationError

__all__ = ["EXTRAS", "MissingDependencyError", "available", "require", "run_command"]

#: Which ``lit-noise[...]`` extra installs each optional module.
EXTRAS: dict[str, str] = {
    "matplotlib": "plots",
    "sklearn": "examples",
    "wandb": "wandb",
    "hydra": "cli",
}

#: The pip distribution of a module, where its name differs.
_PACKAGES = {"sklearn": "scikit-learn", "hydra": "hydra-core"}


class MissingDependencyError(ConfigurationError, ModuleNotFoundError):
    """An optional package that a lit_noise object needs is not installed.

    It is both a :class:`~lit_noise.ConfigurationError` (raised before training) and a
    ``ModuleNotFoundError`` (so ``except ImportError`` handlers keep working).
    """


def available(module: str) -> bool:
    """Whether the top-level ``module`` can be imported (found without importing it).

    A module already imported counts as available; one set to ``None`` in ``sys.modules`` (Python's
    way of blocking an import) does not.

    Example:
        >>> available("torch"), available("surely_not_a_module_name")
        (True, False)
    """
    if sys.modules.get(module) is not None:
        return True
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def require(module: str, owner: str, feature: str = "", extra: str | None = None) -> None:
    """Raise :class:`MissingDependencyError` naming the extra when ``module`` is not installed.

    Args:
        module: the top-level module to look for (``"matplotlib"``, ``"sklearn"``, ...).
        owner: who needs it, for the message (``"CalibrationMonitor"``).
        feature: what needs it, e.g. ``"log_figures=True"``; and how to do without it, if possible.
        extra: the extra that installs it; default from :data:`EXTRAS`.

    Raises:
        MissingDependencyError: ``module`` cannot be imported.

    Example:
        >>> require("torch", "Example")  # installed: nothing happens
        >>> try:
        ...     require("surely_not_a_module_name", "Example", extra="plots")
        ... except MissingDependencyError as err:
        ...     print(err)
        Example needs the optional package 'surely_not_a_module_name', which is not installed.
        Install it with: pip install "lit-noise[plots]"
    """
    if available(module):
        return
    extra = extra or EXTRAS.get(module)
    package = _PACKAGES.get(module, module)
    why = f" for {feature}" if feature else ""
    how = f'pip install "lit-noise[{extra}]"' if extra else f"pip install {package}"
    error = MissingDependencyError(
        f"{owner} needs the optional package {package!r}{why}, which is not installed. Install it with: {how}"
    )
    error.name = module  # as ModuleNotFoundError sets it
    raise error


def run_command(prog: str, command: Callable[[], object]) -> int:
    """Run a console command's body; exit status 0, or 1 with one line on stderr if a package is missing.

    For console entry points (``lit-noise-demo``): the :class:`MissingDependencyError` raised
    before any work becomes ``<prog>: error: <message naming the extra>``, without a traceback.

    Example:
        >>> def body() -> None:
        ...     require("surely_not_a_module_name", "Example", extra="plots")
        >>> import contextlib, io
        >>> with contextlib.redirect_stderr(io.StringIO()) as err:
        ...     status = run_command("example", body)
        >>> status, err.getvalue().startswith("example: error: Example needs")
        (1, True)
        >>> run_command("example", lambda: None)
        0
    """
    try:
        command()
    except MissingDependencyError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 1
    return 0
