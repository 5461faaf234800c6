"""`lit_noise.cli.train.compose_job`: a job of `lit-noise-train` composed from Python, then `run`.

The oracle for "what the command line runs" is Hydra's own compose with the same overrides (what
`@hydra.main` composes), and the job's `results.json` read back from disk.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import OmegaConf

from lit_noise.cli.train import compose_job, run
from lit_noise.errors import ConfigurationError

TINY = [
    "logger=none",
    "monitor=none",
    "seed=3",
    "test=false",
    "optimized_metric=val/acc",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "trainer.enable_progress_bar=false",
]


@pytest.fixture(autouse=True)
def _clean_hydra() -> Iterator[None]:
    saved = HydraConfig.instance().cfg
    yield
    HydraConfig.instance().cfg = saved
    GlobalHydra.instance().clear()


def test_composes_what_the_command_line_composes(tmp_path: Path) -> None:
    overrides = ["experiment=noise_sweep", "trainer.max_epochs=2", "callbacks.input_noise.noise.std=0.3"]
    cfg = compose_job(overrides, output_dir=tmp_path / "job")
    assert not GlobalHydra.instance().is_initialized()  # left as it was found
    with initialize_config_module("lit_noise.conf", version_base="1.3"):
        expected = compose("train", overrides=overrides)
    ours = OmegaConf.to_container(cfg, resolve=False)
    assert isinstance(ours, dict)
    ours.pop("hydra")
    assert ours == OmegaConf.to_container(expected, resolve=False)
    assert cfg.callbacks.input_noise.noise.std == 0.3
    assert Path(cfg.paths.output_dir) == (tmp_path / "job").resolve()
    assert HydraConfig.get().runtime.output_dir == str((tmp_path / "job").resolve())
    assert list(HydraConfig.get().overrides.task) == overrides  # the overrides as typed, for W&B names


def test_a_sweep_job_is_run_as_a_multirun_places_it(tmp_path: Path) -> None:
    sweep = tmp_path / "my sweep, with=odd chars"
    cfg = compose_job(
        [*TINY, "callbacks.input_noise.noise.std=0.2"], output_dir=sweep / "1", sweep_dir=sweep, job_num=1
    )
    hydra_cfg = HydraConfig.get()
    assert (hydra_cfg.mode, hydra_cfg.job.num, hydra_cfg.sweep.dir) == (
        RunMode.MULTIRUN,
        1,
        str(sweep.resolve()),
    )
    with torch.random.fork_rng():
        result = run(cfg)
    written = json.loads((sweep / "1" / "results.json").read_text())
    assert written["status"] == "ok"
    assert written["job"]["num"] == 1
    assert written["job"]["sweep_dir"] == str(sweep.resolve())
    assert "callbacks.input_noise.noise.std=0.2" in written["job"]["overrides"]
    assert written["config"]["callbacks"]["input_noise"]["noise"]["std"] == 0.2
    assert written["optimized_metric"]["value"] == pytest.approx(result.value)
    assert Path(result.checkpoint or "").parent == sweep.resolve() / "1" / "checkpoints"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"job_num": -1, "sweep_dir": "s"}, "`job_num` must be an integer >= 0, got -1."),
        ({"job_num": True, "sweep_dir": "s"}, "`job_num` must be an integer >= 0, got True."),
        ({"job_num": 2}, "`job_num` needs a `sweep_dir` (a job number is a multirun's), got 2."),
        ({"output_dir": "it's"}, "a directory with a `'` in its path cannot be passed to Hydra"),
    ],
)
def test_bad_arguments_are_refused(tmp_path: Path, kwargs: dict[str, object], message: str) -> None:
    arguments: dict[str, object] = {"output_dir": tmp_path, **kwargs}
    with pytest.raises(ConfigurationError) as caught:
        compose_job(TINY, **arguments)  # type: ignore[arg-type]
    assert message in str(caught.value)
    assert not GlobalHydra.instance().is_initialized()


def test_a_missing_option_and_an_initialised_hydra_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"`noise` must name options of the config group noise"):
        compose_job(["noise=[input,wieght]"], output_dir=tmp_path)
    with (
        initialize_config_module("lit_noise.conf", version_base="1.3"),
        pytest.raises(ConfigurationError, match="Hydra is already initialised"),
    ):
        compose_job(TINY, output_dir=tmp_path)
