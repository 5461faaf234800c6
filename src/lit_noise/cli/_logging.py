"""The console lines lit_noise's callbacks print, kept visible while Lightning's own info is quiet."""

from __future__ import annotations

import logging
from pathlib import Path

__all__ = ["LitNoiseLines"]

_PACKAGE = str(Path(__file__).resolve().parents[1])


class LitNoiseLines(logging.Filter):
    """Pass warnings and errors, and info records logged from lit_noise's own modules.

    lit_noise's callbacks print through Lightning's ``rank_zero_info`` (so a plain script shows
    them, on rank zero only), whose records carry the calling module's path. ``lit-noise-train``
    keeps Lightning's start-up banner and tips quiet but shows these lines: the noise controller's
    decisions, the robustness monitor's cost, the fitted temperature.

    Example:
        >>> import lit_noise.callbacks.noise_controller as controller
        >>> def record(path: str) -> logging.LogRecord:
        ...     return logging.LogRecord("x", logging.INFO, path, 1, "a line", None, None)
        >>> lines = LitNoiseLines()
        >>> lines.filter(record(controller.__file__)), lines.filter(record(logging.__file__))
        (True, False)
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Whether ``record`` is shown."""
        return record.levelno >= logging.WARNING or str(Path(record.pathname).resolve()).startswith(_PACKAGE)
