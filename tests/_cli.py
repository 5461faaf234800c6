"""Helpers of the CLI tests: compose lit_noise's real config tree with Hydra's compose API."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import lit_noise.conf
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

CONF_DIR = Path(lit_noise.conf.__file__).parent
BIN = Path(sys.executable).parent


def wandb_summary(run_dir: str) -> dict:
    """An offline W&B run read back with wandb's own reader (`wandb leet inspect --summary --json`)."""
    out = subprocess.run(
        [str(BIN / "wandb"), "leet", "inspect", "--summary", "--json", run_dir],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(out.stdout)


# Small enough for a test, large enough that every stage logs something.
TINY = (
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "trainer.enable_progress_bar=false",
    "callbacks.robustness_monitor.max_samples=16",
    "callbacks.robustness_monitor.severities=[1,5]",
    "callbacks.robustness_monitor.corruptions=[gaussian_noise,contrast]",
)


def options(group: str) -> list[str]:
    """The options of a config group, from the files on disk."""
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


@contextmanager
def lit_noise_configs() -> Iterator[None]:
    """Hydra initialised on ``pkg://lit_noise.conf`` (the installed package)."""
    GlobalHydra.instance().clear()
    with initialize_config_module("lit_noise.conf", version_base="1.3"):
        yield


def compose_train(output_dir: Path, overrides: Sequence[str] = ()) -> DictConfig:
    """The composed ``train`` config with the job's outputs in ``output_dir``; HydraConfig set."""
    cfg = compose(
        "train",
        overrides=[*overrides, f"paths.output_dir={output_dir}", f"paths.work_dir={output_dir}"],
        return_hydra_config=True,
    )
    HydraConfig.instance().set_config(cfg)
    return cfg
