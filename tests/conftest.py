"""Shared fixtures: quiet trainers, W&B kept offline and inside tmp_path."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
from hydra.core.hydra_config import HydraConfig

from _trainers import quiet_trainer


@pytest.fixture(autouse=True)
def _offline_wandb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reaches the network or writes W&B files outside its tmp_path."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    for var in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_CONFIG_DIR"):
        path = tmp_path / "wandb_home" / var.lower()
        path.mkdir(parents=True, exist_ok=True)
        monkeypatch.setenv(var, str(path))
    monkeypatch.setenv("WANDB_SILENT", "true")


@pytest.fixture(autouse=True)
def _no_hydra_config_left() -> Iterator[None]:
    """Each test leaves Hydra's current-job config unset, as a fresh process has it.

    ``compose_train`` sets it as ``@hydra.main`` would; left set, it made a later module's
    "not initialised" checks depend on the order the modules ran in.
    """
    yield
    HydraConfig.instance().cfg = None


@pytest.fixture
def make_trainer(tmp_path: Path) -> Callable[..., pl.Trainer]:
    """A quiet CPU Trainer writing under tmp_path; keyword arguments override the defaults."""

    def factory(**overrides: Any) -> pl.Trainer:
        return quiet_trainer(**{"default_root_dir": str(tmp_path), **overrides})

    return factory


class _RankZeroRecords(logging.Handler):
    """Collects what Lightning's ``rank_zero_info`` logs (its logger does not propagate to root)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def rank_zero_records() -> Any:
    logger = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    handler, level = _RankZeroRecords(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)
