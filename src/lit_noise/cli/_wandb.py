"""The W&B side of a job: run names and groups, offline by default, one finished run per job."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig

if TYPE_CHECKING:
    from lightning.pytorch.loggers import Logger

__all__ = ["JobInfo", "finish_runs", "prepare_wandb_configs", "run_dirs"]

#: WANDB_MODE as the user set it, read before any WandbLogger rewrites it (an offline WandbLogger
#: sets ``os.environ["WANDB_MODE"] = "dryrun"`` for the whole process).
USER_WANDB_MODE = os.environ.get("WANDB_MODE")


@dataclass(frozen=True)
class JobInfo:
    """Where a job sits: task name, multirun sweep directory (or None), job number, its overrides."""

    task_name: str
    sweep_dir: str | None = None
    num: int = 0
    overrides: tuple[str, ...] = ()

    @property
    def group(self) -> str | None:
        """The W&B group of a multirun job: ``<task name>-<sweep directory name>``."""
        return None if self.sweep_dir is None else f"{self.task_name}-{Path(self.sweep_dir).name}"

    @property
    def name(self) -> str:
        """A run name from the overrides (last two parts of each key), numbered in a multirun.

        Example:
            >>> JobInfo("train", "logs/x", 2, ("callbacks.input_noise.noise.std=0.1",)).name
            '#2 noise.std=0.1'
        """
        parts = []
        for override in self.overrides:
            key, _, value = override.partition("=")
            parts.append(".".join(key.lstrip("+~").split(".")[-2:]) + "=" + value)
        name = ",".join(parts) or self.task_name
        return name if self.sweep_dir is None else f"#{self.num} {name}"

    @property
    def tags(self) -> list[str]:
        """The overrides as tags (W&B caps a tag at 64 characters)."""
        return [override[:64] for override in self.overrides]


_INTERPOLATION = re.compile(r"\$\{([^}]*)\}?")


def _literal(text: str) -> str:
    """``text`` with each ``${expr}`` written ``<expr>``, so that it is never resolved.

    Escaping is not enough: Hydra's ``instantiate`` resolves a config twice, which would resolve an
    escaped interpolation after all (and could bring a secret from the environment into W&B).

    Example:
        >>> _literal("+url='https://x?k=${oc.env:API_KEY}'")
        "+url='https://x?k=<oc.env:API_KEY>'"
    """
    return _INTERPOLATION.sub(r"<\1>", text)


def _is_wandb(node: Any) -> bool:
    return isinstance(node, DictConfig) and str(node.get("_target_", "")).endswith("WandbLogger")


def prepare_wandb_configs(loggers: DictConfig | None, job: JobInfo) -> None:
    """Fill the W&B loggers' null ``group``, ``name`` and tags from ``job``; honour WANDB_MODE=online.

    ``WANDB_MODE=online`` in the environment turns an ``offline: true`` logger online (and
    ``offline``/``dryrun`` turns any logger offline), so the environment can switch a whole sweep.
    """
    if loggers is None:
        return
    for node in loggers.values():
        if not _is_wandb(node):
            continue
        if node.get("group") is None and job.group is not None:
            node.group = _literal(job.group)
        if node.get("name") is None:
            node.name = _literal(job.name)
        if job.tags:
            node.tags = [*(node.get("tags") or []), *(_literal(tag) for tag in job.tags)]
        if USER_WANDB_MODE == "online":
            node.offline = False
        elif USER_WANDB_MODE in ("offline", "dryrun"):
            node.offline = True


def _runs(loggers: Sequence[Logger]) -> list[Any]:
    runs = []
    for logger in loggers:
        run = getattr(logger, "_experiment", None) if type(logger).__name__ == "WandbLogger" else None
        if run is not None and hasattr(run, "finish"):
            runs.append(run)
    return runs


def run_dirs(loggers: Sequence[Logger]) -> list[str]:
    """The local directories of the W&B runs the loggers started (``.../wandb/offline-run-...``)."""
    return [str(Path(run.dir).parent) for run in _runs(loggers)]


def finish_runs(loggers: Sequence[Logger], failed: bool) -> None:
    """Finish every W&B run of this job (exit code 1 when it failed), so the next job gets a new one."""
    for run in _runs(loggers):
        run.finish(exit_code=1 if failed else 0)
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.run.finish(exit_code=1 if failed else 0)
