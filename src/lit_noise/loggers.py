"""Loggers: Lightning's ``CSVLogger``, rewriting its ``hparams.yaml`` only when it changes.

Lightning's CSV writer rewrites the whole ``hparams.yaml`` at every ``log_hyperparams`` call: at
each of ``fit``, ``validate`` and ``test`` (the module's hyperparameters again), and at each noise
source's settings. With a job's whole resolved config among the hyperparameters, each rewrite costs
milliseconds. :class:`CSVLogger` writes the same file at the same calls, and skips the calls that
would write it unchanged.
"""

from __future__ import annotations

import math
from argparse import Namespace
from collections.abc import Mapping
from typing import Any

from lightning.pytorch.loggers import CSVLogger as _LightningCSVLogger
from lightning.pytorch.utilities import rank_zero_only
from typing_extensions import override

__all__ = ["CSVLogger"]

_PLAIN = (str, int, float, bool, type(None))


class _Opaque:
    """Stands for a logged value that is not plain data (a tensor, an object): never the same again."""

    __slots__ = ()


def _snapshot(value: Any) -> Any:
    """A copy of ``value`` to compare later calls with: plain data copied, anything else opaque."""
    if isinstance(value, _PLAIN):
        return value
    if type(value) in (list, tuple):
        return type(value)(_snapshot(v) for v in value)
    if type(value) is dict:
        return {k: _snapshot(v) for k, v in value.items()}
    return _Opaque()


def _same(before: Any, now: Any) -> bool:
    """Whether two snapshots write the same YAML: equal plain data of the same types throughout."""
    if type(before) is not type(now) or isinstance(before, _Opaque):
        return False
    if isinstance(before, float):
        return repr(before) == repr(now) or (math.isnan(before) and math.isnan(now))  # -0.0, nan
    if isinstance(before, (list, tuple)):
        return len(before) == len(now) and all(_same(b, n) for b, n in zip(before, now, strict=True))
    if isinstance(before, dict):
        return before.keys() == now.keys() and all(_same(before[k], now[k]) for k in before)
    return bool(before == now)


class CSVLogger(_LightningCSVLogger):
    """Lightning's ``CSVLogger``, skipping the ``log_hyperparams`` calls that change nothing.

    It takes Lightning's arguments and writes the same ``metrics.csv`` and ``hparams.yaml``: a call
    merges its values into the hyperparameters and rewrites ``hparams.yaml`` then, as Lightning's
    does, unless every value equals, type for type, what an earlier call logged under its key (a
    tensor or any object other than plain data always counts as new). In a ``lit-noise-train`` job
    that is three writes instead of five: validate's and test's calls log the module's
    hyperparameters again. ``lit-noise-train``'s ``logger=csv`` uses it.

    Example:
        >>> import tempfile
        >>> from lightning.pytorch.core.saving import load_hparams_from_yaml
        >>> logger = CSVLogger(tempfile.mkdtemp(), name="run")
        >>> logger.log_hyperparams({"lr": 0.1, "model": "mlp"})
        >>> logger.log_hyperparams({"lr": 0.1})  # nothing new: the file is not rewritten
        >>> load_hparams_from_yaml(f"{logger.log_dir}/hparams.yaml")
        {'lr': 0.1, 'model': 'mlp'}
    """

    #: What the earlier calls logged, as snapshots (``None`` before the first call).
    _logged: dict[str, Any] | None = None

    @override
    @rank_zero_only
    def log_hyperparams(self, params: Mapping[str, Any] | Namespace | None = None) -> None:
        """Merge ``params`` into the hyperparameters and write ``hparams.yaml`` if any changed."""
        values = {} if params is None else vars(params) if isinstance(params, Namespace) else dict(params)
        snapshot = {key: _snapshot(value) for key, value in values.items()}
        logged = self._logged
        if logged is not None and all(
            key in logged and _same(logged[key], value) for key, value in snapshot.items()
        ):
            return
        self._logged = {**(logged or {}), **snapshot}
        self.experiment.log_hparams(values)  # Lightning's merge and write
