"""The console scripts: each checks the ``cli`` extra before importing Hydra and the rest.

Without the extra, a script prints one line naming it (``pip install "lit-noise[cli]"``) and
exits with status 1, instead of a ``ModuleNotFoundError`` traceback.
"""

from __future__ import annotations

import sys

from lit_noise._optional import MissingDependencyError, require

__all__ = ["evaluate", "report", "train"]

#: What each script needs (all in the ``cli`` extra).
_NEEDS = {
    "lit-noise-train": ("hydra", "sklearn", "matplotlib", "wandb"),
    "lit-noise-eval": ("hydra", "sklearn", "matplotlib"),
    "lit-noise-report": ("matplotlib",),
}


def _check(script: str) -> None:
    try:
        for module in _NEEDS[script]:
            require(module, script, extra="cli")
    except MissingDependencyError as err:
        print(err, file=sys.stderr)
        raise SystemExit(1) from None


def train() -> None:
    """``lit-noise-train`` (:func:`lit_noise.cli.train.main`).

    Example:
        >>> import contextlib, io
        >>> from unittest import mock
        >>> with mock.patch.dict(sys.modules, {"wandb": None}):  # as if W&B were not installed
        ...     with contextlib.redirect_stderr(io.StringIO()) as err:
        ...         try:
        ...             train()
        ...         except SystemExit as exit:
        ...             print("exit status", exit.code)
        exit status 1
        >>> print(err.getvalue())
        lit-noise-train needs the optional package 'wandb', which is not installed. Install it with:
        pip install "lit-noise[cli]"
        >>> with mock.patch.object(sys, "argv", ["lit-noise-train", "noise=[inptu]"]):  # extras there
        ...     with contextlib.redirect_stderr(io.StringIO()) as err:
        ...         try:
        ...             train()
        ...         except SystemExit as exit:
        ...             print("exit status", exit.code)  # from lit-noise-train's check of the overrides
        exit status 2
        >>> print(err.getvalue())
        Error: lit-noise-train: `noise` must name options of the config group noise (...), got 'inptu'.
    """
    _check("lit-noise-train")
    from lit_noise.cli.train import main

    main()


def evaluate() -> None:
    """``lit-noise-eval`` (:func:`lit_noise.cli.evaluate.main`).

    Example:
        >>> import contextlib, io
        >>> from unittest import mock
        >>> err, status = io.StringIO(), None
        >>> with mock.patch.dict(sys.modules, {"sklearn": None}), contextlib.redirect_stderr(err):
        ...     try:  # as if scikit-learn were missing
        ...         evaluate()
        ...     except SystemExit as exit:
        ...         status = exit.code
        >>> status, err.getvalue().split(": ")[-1].strip()
        (1, 'pip install "lit-noise[cli]"')
    """
    _check("lit-noise-eval")
    from lit_noise.cli.evaluate import main

    main()


def report() -> None:
    """``lit-noise-report`` (:func:`lit_noise.cli.report.main`); exits with its status.

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> from unittest import mock
        >>> from lit_noise.cli.results import write_results
        >>> with tempfile.TemporaryDirectory() as sweep:
        ...     metrics = {"val/acc": 0.8, "val/robust/mean_acc": 0.5, "val/robust/contrast/s5/acc": 0.5}
        ...     _ = write_results(Path(sweep) / "0", {
        ...         "status": "ok", "metrics": metrics, "optimized_metric": {"name": "val/acc", "value": 0.8},
        ...     })
        ...     with mock.patch.object(sys, "argv", ["lit-noise-report", sweep]):
        ...         try:
        ...             report()
        ...         except SystemExit as exit:
        ...             print("exit status", exit.code)
        Report: /.../report/report.md
        exit status 0
    """
    _check("lit-noise-report")
    from lit_noise.cli.report import main

    raise SystemExit(main())
