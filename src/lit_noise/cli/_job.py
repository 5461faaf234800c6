"""The Lightning side of a ``lit-noise-train`` job: build, fit, evaluate, write ``results.json``.

:func:`lit_noise.cli.train.run` imports this module when a job runs, so that composing a config
(``lit-noise-train --cfg job``, ``--help``, :func:`~lit_noise.cli.train.compose_job`) does not
load Lightning.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig

from lit_noise.callbacks.noise_controller import HISTORY_FIELDS, NoiseController
from lit_noise.cli._config import APP, callback_configs, flatten, scrub
from lit_noise.cli._wandb import JobInfo, finish_runs, prepare_wandb_configs, run_dirs
from lit_noise.cli.results import package_versions, write_results
from lit_noise.cli.train import (
    TrainResult,
    _build,
    _check,
    _choices,
    _job_info,
    _output_dir,
    _quiet,
    _resolved,
)
from lit_noise.errors import ConfigurationError
from lit_noise.reporting import define_summaries

log = logging.getLogger("lit_noise.cli")

#: W&B run summaries of the model's own metrics (the monitors set those of theirs).
_SUMMARIES = {"val/acc": "max", "val/loss": "min"}


class _MetricGuard(Callback):
    """Stop after the first validated epoch when a ``val/`` ``optimized_metric`` is not logged."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.checked = False

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        logged = trainer.callback_metrics
        if self.checked or not any(key.startswith("val/") for key in logged):
            return
        self.checked = True
        if self.name.startswith("val/") and self.name not in logged:
            raise _unknown_metric(self.name, logged)


def _rank() -> int:
    rank: int = getattr(rank_zero_only, "rank", 0)
    return rank


def _unknown_metric(name: str, logged: Mapping[str, Any]) -> ConfigurationError:
    return ConfigurationError(
        f"{APP}: `optimized_metric` must be a metric the job logs, got {name!r}; logged: "
        + ", ".join(sorted(logged))
        + "."
    )


def _scalars(metrics: Mapping[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in metrics.items():
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            out[key] = float(value.item())
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = float(value)
    return out


def _ckpt_path(cfg: DictConfig, checkpoint: ModelCheckpoint | None) -> str | None:
    """The checkpoint to resume from: ``ckpt_path``, or with ``resume=true`` this job's last.ckpt."""
    path = cfg.get("ckpt_path")
    if path is not None:
        if cfg.get("resume"):
            raise ConfigurationError(
                f"{APP}: `resume` must be false when `ckpt_path` is given (it names the checkpoint to"
                " resume from; resume=true resumes from this job's last.ckpt); got resume=true."
            )
        if not Path(str(path)).is_file():
            raise ConfigurationError(f"{APP}: `ckpt_path` must be an existing checkpoint file, got {path!r}.")
        return str(path)
    if not cfg.get("resume"):
        return None
    if checkpoint is None or checkpoint.dirpath is None:
        raise ConfigurationError(
            f"{APP}: `resume` must be false without a ModelCheckpoint callback with a `dirpath`"
            " (it resumes from that directory's last.ckpt); got resume=true."
        )
    last = Path(checkpoint.dirpath) / f"{checkpoint.CHECKPOINT_NAME_LAST}{checkpoint.FILE_EXTENSION}"
    if last.is_file():
        log.info("Resuming from %s", last)
        return str(last)
    log.warning("resume=true: no %s yet, training from the start", last)
    return None


def run_job(cfg: DictConfig) -> TrainResult:
    """The job of :func:`lit_noise.cli.train.run`, with its Hydra config current."""
    start = time.perf_counter()
    job = _job_info(cfg)
    output_dir = _output_dir(cfg)
    metric_name = cfg.get("optimized_metric")
    loggers: list[Logger] = []
    status, error = "failed", None
    metrics: dict[str, float] = {}
    best: str | None = None
    last: str | None = None
    controllers: dict[str, Any] = {}
    resolved: dict[str, Any] | None = None  # resolved once: for the loggers, then for results.json
    try:
        _check(cfg)
        callback_nodes = callback_configs(cfg)
        with _quiet():
            if cfg.get("seed") is not None:
                pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
            datamodule = _build(cfg.data, "data")
            if cfg.get("mix") is not None:
                datamodule = _build(cfg.mix, "mix", datamodule=datamodule)
            model = _build(cfg.model, "model")
            callbacks: list[Callback] = [_build(node, key) for key, node in callback_nodes.items()]
            if metric_name is not None:
                callbacks.append(_MetricGuard(metric_name))
            logger_nodes = cfg.get("logger")
            prepare_wandb_configs(logger_nodes, job)
            if logger_nodes is not None:
                loggers = [
                    _build(node, f"logger.{key}") for key, node in logger_nodes.items() if node is not None
                ]
            _drop_unset_wandb_arguments(loggers)
            trainer = _build(cfg.trainer, "trainer", callbacks=callbacks, logger=loggers or False)
            resolved = _resolved(cfg)
            for logger in trainer.loggers:
                logger.log_hyperparams(flatten(resolved))
            define_summaries(trainer, _SUMMARIES)
            ckpt_path = _ckpt_path(cfg, trainer.checkpoint_callback)
            if cfg.get("train", True):
                trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
                metrics.update(_scalars(trainer.callback_metrics))
                # Read now: evaluating a checkpoint restores the callback states saved in it.
                best, last = _checkpoint_paths(trainer)
                controllers = _controller_records(callback_nodes, callbacks)
            else:
                best = ckpt_path
            if cfg.get("test", True):
                trainer.validate(model, datamodule=datamodule, ckpt_path=best, verbose=False)
                metrics.update(_scalars(trainer.callback_metrics))
                trainer.test(model, datamodule=datamodule, ckpt_path=best, verbose=False)
                metrics.update(_scalars(trainer.callback_metrics))
        if metric_name is not None and metric_name not in metrics:
            raise _unknown_metric(metric_name, metrics)
        status = "ok"
    except BaseException as err:
        error = f"{type(err).__name__}: {err}"
        raise
    finally:
        wandb_dirs = run_dirs(loggers)
        finish_runs(loggers, failed=status != "ok")
        value = metrics.get(metric_name) if metric_name is not None else None
        if _rank() == 0:
            write_results(
                output_dir,
                {
                    "status": status,
                    "error": scrub(error),
                    "task_name": job.task_name,
                    "job": {"num": job.num, "sweep_dir": job.sweep_dir, "overrides": list(job.overrides)},
                    "choices": _choices(),
                    "optimized_metric": {"name": metric_name, "value": value},
                    "metrics": metrics,
                    "checkpoint": best,
                    "last_checkpoint": last,
                    "wandb_runs": wandb_dirs,
                    "controllers": controllers,
                    "wall_time_s": time.perf_counter() - start,
                    "versions": package_versions(),
                    "config": resolved if resolved is not None else _resolved(cfg, safe=True),
                },
            )
    result = TrainResult(metrics, value, output_dir, best, wandb_dirs)
    _report(job, result, metric_name)
    return result


def _checkpoint_paths(trainer: pl.Trainer) -> tuple[str | None, str | None]:
    """The best and the last checkpoint the Trainer's ModelCheckpoint wrote (None when none)."""
    checkpoint = trainer.checkpoint_callback
    best = getattr(checkpoint, "best_model_path", "") if checkpoint is not None else ""
    last = getattr(checkpoint, "last_model_path", "") if checkpoint is not None else ""
    return (str(best) if best else None), (str(last) if last else None)


def _controller_records(nodes: Mapping[str, Any], callbacks: Sequence[Callback]) -> dict[str, Any]:
    """Each NoiseController's decisions over the whole fit, by its config key (for the report)."""
    records: dict[str, Any] = {}
    for key, callback in zip(nodes, callbacks, strict=False):
        if isinstance(callback, NoiseController):
            records[key] = {
                "monitor": callback.monitor,
                "robust_monitor": callback.robust_monitor,
                "final_scale": callback.scale,
                "targets": callback.targets_scales(),
                "history": [dict(zip(HISTORY_FIELDS, row, strict=True)) for row in callback.history],
            }
    return records


def _drop_unset_wandb_arguments(loggers: list[Logger]) -> None:
    # Lightning's WandbLogger passes `anonymous=None` to wandb.init, on which wandb >= 0.22 warns
    # that the setting has no effect; a None there is "not set", so it is left out.
    for logger in loggers:
        init = getattr(logger, "_wandb_init", None)
        if isinstance(init, dict) and init.get("anonymous", 0) is None:
            del init["anonymous"]


def _report(job: JobInfo, result: TrainResult, metric_name: str | None) -> None:
    if _rank() != 0:
        return
    shown = "none" if metric_name is None else f"{metric_name}={result.value:.4f}"
    where = f"outputs: {result.output_dir}"
    if result.wandb_runs:
        where += f"; W&B run: {', '.join(result.wandb_runs)} (review: wandb sync <run dir>)"
    label = f"job #{job.num}" if job.sweep_dir is not None else "done"
    log.info("%s [%s] %s; %s", label, " ".join(job.overrides) or "defaults", shown, where)
