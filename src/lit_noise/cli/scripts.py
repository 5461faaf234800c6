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
    """``lit-noise-train`` (:func:`lit_noise.cli.train.main`)."""
    _check("lit-noise-train")
    from lit_noise.cli.train import main

    main()


def evaluate() -> None:
    """``lit-noise-eval`` (:func:`lit_noise.cli.evaluate.main`)."""
    _check("lit-noise-eval")
    from lit_noise.cli.evaluate import main

    main()


def report() -> None:
    """``lit-noise-report`` (:func:`lit_noise.cli.report.main`); exits with its status."""
    _check("lit-noise-report")
    from lit_noise.cli.report import main

    raise SystemExit(main())
