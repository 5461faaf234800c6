"""A quiet CPU Trainer for tests, usable where the ``make_trainer`` fixture is not (module fixtures)."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl


def quiet_trainer(**overrides: Any) -> pl.Trainer:
    """A CPU Trainer with no logger, checkpointing, progress bar or model summary; overrides win."""
    options: dict[str, Any] = {
        "accelerator": "cpu",
        "devices": 1,
        "max_epochs": 1,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "deterministic": True,
    }
    options.update(overrides)
    return pl.Trainer(**options)
