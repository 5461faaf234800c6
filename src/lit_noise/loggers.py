"""Loggers: Lightning's ``CSVLogger``, writing its ``hparams.yaml`` once per change.

Lightning's CSV writer rewrites the whole ``hparams.yaml`` at every ``log_hyperparams`` call: at
each of ``fit``, ``validate`` and ``test`` (the module's hyperparameters again), and at each noise
source's settings (see :mod:`lit_noise._settings`). With a job's whole resolved config among the
hyperparameters, each rewrite costs milliseconds. :class:`CSVLogger` keeps Lightning's behaviour
and files, and writes ``hparams.yaml`` at the next ``save`` after a change instead: Lightning saves
right after it logs hyperparameters, and when a run ends or fails.
"""

from __future__ import annotations

import os
from argparse import Namespace
from collections.abc import Mapping
from typing import Any

from lightning.pytorch.core.saving import save_hparams_to_yaml
from lightning.pytorch.loggers import CSVLogger as _LightningCSVLogger
from lightning.pytorch.utilities import rank_zero_only
from typing_extensions import override

__all__ = ["CSVLogger"]


def _same(a: Any, b: Any) -> bool:
    """Whether a logged value is unchanged (values that cannot be compared count as changed)."""
    if a is b:
        return True
    try:
        return type(a) is type(b) and bool(a == b)
    except Exception:  # tensors, arrays: an ambiguous or failing comparison
        return False


class CSVLogger(_LightningCSVLogger):
    """Lightning's ``CSVLogger``; ``hparams.yaml`` is written at ``save``, once per change.

    It takes Lightning's arguments and writes the same ``metrics.csv`` and ``hparams.yaml``. A
    ``log_hyperparams`` call merges its values into the hyperparameters; when that changed any,
    the next ``save`` (which Lightning calls right after logging hyperparameters, at the logging
    interval and when the run ends or fails) rewrites ``hparams.yaml``. Lightning's own logger
    rewrites it at every call, three of which in a fit-validate-test job repeat the module's
    hyperparameters. ``lit-noise-train``'s ``logger=csv`` uses it.

    Example:
        >>> import tempfile
        >>> from lightning.pytorch.core.saving import load_hparams_from_yaml
        >>> logger = CSVLogger(tempfile.mkdtemp(), name="run")
        >>> logger.log_hyperparams({"lr": 0.1, "model": "mlp"})
        >>> logger.log_hyperparams({"lr": 0.1})  # nothing new: the file is not rewritten
        >>> logger.save()
        >>> load_hparams_from_yaml(f"{logger.log_dir}/hparams.yaml")
        {'lr': 0.1, 'model': 'mlp'}
    """

    _hparams_changed = False

    @override
    @rank_zero_only
    def log_hyperparams(self, params: Mapping[str, Any] | Namespace | None = None) -> None:
        """Merge ``params`` into the hyperparameters; ``save`` writes them if any changed."""
        values = {} if params is None else vars(params) if isinstance(params, Namespace) else dict(params)
        hparams: dict[str, Any] = self.experiment.hparams
        if any(key not in hparams or not _same(hparams[key], value) for key, value in values.items()):
            hparams.update(values)
            self._hparams_changed = True

    @override
    @rank_zero_only
    def save(self) -> None:
        """Write ``hparams.yaml`` if the hyperparameters changed, then the metrics (Lightning's save)."""
        if self._hparams_changed:
            self._hparams_changed = False
            path = os.path.join(self.log_dir, self.experiment.NAME_HPARAMS_FILE)
            save_hparams_to_yaml(path, self.experiment.hparams)
        super().save()
