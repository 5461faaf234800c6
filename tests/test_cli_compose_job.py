"""`lit_noise.cli.train.compose_job`: a job of `lit-noise-train` composed from Python, then `run`.

The oracle for "what the command line runs" is Hydra's own compose with the same overrides (what
`@hydra.main` composes), and the job's `results.json` read back from disk.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import yaml
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import OmegaConf

from lit_noise.cli.train import compose_job, run
from lit_noise.errors import ConfigurationError

BIN = Path(sys.executable).parent

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


def _console(*arguments: str) -> dict[str, object]:
    """What the console script composes (``lit-noise-train ... --cfg all``), read back as YAML."""
    done = subprocess.run(
        [str(BIN / "lit-noise-train"), *arguments],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    loaded = yaml.safe_load(done.stdout)
    assert isinstance(loaded, dict)
    return loaded


def test_composes_what_the_console_script_composes(tmp_path: Path) -> None:
    overrides = ["experiment=noise_sweep", "trainer.max_epochs=2", "callbacks.input_noise.noise.std=0.3"]
    cfg = compose_job(overrides, output_dir=tmp_path / "job")
    assert not GlobalHydra.instance().is_initialized()  # nothing global is left changed
    assert not HydraConfig.initialized()
    ours = OmegaConf.to_container(cfg, resolve=False)
    assert isinstance(ours, dict)
    ours.pop("hydra")
    expected = _console(*overrides, "--cfg", "all")  # the job's config and its `hydra` node
    hydra_node = expected.pop("hydra")
    paths = ours.pop("paths")
    expected_paths = expected.pop("paths")
    assert ours == expected
    # The job's directories are fixed in `paths`; the console script's read Hydra's runtime.
    assert expected_paths["output_dir"] == "${hydra:runtime.output_dir}"
    assert paths == {
        **expected_paths,
        "output_dir": str((tmp_path / "job").resolve()),
        "work_dir": os.getcwd(),
    }
    assert cfg.callbacks.input_noise.noise.std == 0.3
    assert isinstance(hydra_node, dict)
    assert cfg.hydra.job.name == hydra_node["job"]["name"] == "train"
    assert cfg.hydra.job.config_name == hydra_node["job"]["config_name"]
    assert list(cfg.hydra.overrides.task) == overrides  # the overrides as typed, for W&B names
    # The preset is a multirun on the command line; composed without a sweep it is one run.
    assert hydra_node["mode"] == "MULTIRUN"
    assert cfg.hydra.mode == RunMode.RUN


def test_a_single_run_of_a_sweep_preset_runs(tmp_path: Path) -> None:
    preset = [  # a multirun preset (hydra.mode: MULTIRUN), with its monitors kept small
        "experiment=noise_sweep",
        "callbacks.robustness_monitor.severities=[5]",
        "callbacks.robustness_monitor.max_samples=32",
    ]
    tiny = [o for o in TINY if o != "monitor=none"]
    cfg = compose_job([*tiny, *preset], output_dir=tmp_path / "one")
    with torch.random.fork_rng():
        result = run(cfg)
    written = json.loads((tmp_path / "one" / "results.json").read_text())
    assert written["status"] == "ok", written.get("error")
    assert written["job"]["sweep_dir"] is None  # a single run: no sweep, no W&B group
    assert result.output_dir == (tmp_path / "one").resolve()


def test_a_sweep_job_is_run_as_a_multirun_places_it(tmp_path: Path) -> None:
    sweep = tmp_path / "my sweep, with=odd chars"
    cfg = compose_job([*TINY, "callbacks.input_noise.noise.std=0.2"], sweep_dir=sweep, job_num=1)
    hydra_cfg = cfg.hydra
    assert (hydra_cfg.mode, hydra_cfg.job.num, hydra_cfg.sweep.dir) == (
        RunMode.MULTIRUN,
        1,
        str(sweep.resolve()),
    )
    with torch.random.fork_rng():
        result = run(cfg)
    assert not HydraConfig.initialized()  # run() made the job's Hydra config current only while it ran
    written = json.loads((sweep / "1" / "results.json").read_text())  # <sweep_dir>/<job_num> by default
    assert written["status"] == "ok"
    assert written["job"]["num"] == 1
    assert written["job"]["sweep_dir"] == str(sweep.resolve())
    assert "callbacks.input_noise.noise.std=0.2" in written["job"]["overrides"]
    assert written["config"]["callbacks"]["input_noise"]["noise"]["std"] == 0.2
    assert written["optimized_metric"]["value"] == pytest.approx(result.value)
    assert Path(result.checkpoint or "").parent == sweep.resolve() / "1" / "checkpoints"


def test_jobs_composed_first_run_later_each_in_its_own_place(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    stds = (0.0, 0.1, 0.2)
    configs = [
        compose_job([*TINY, f"callbacks.input_noise.noise.std={std}"], sweep_dir=sweep, job_num=num)
        for num, std in enumerate(stds)
    ]
    with torch.random.fork_rng():
        for cfg in reversed(configs):
            run(cfg)
        # A config composed by hand afterwards (no Hydra node) is not taken for the last job.
        with initialize_config_module("lit_noise.conf", version_base="1.3"):
            plain = compose(
                "train", [*TINY, f"paths.output_dir={tmp_path / 'plain'}", f"paths.work_dir={tmp_path}"]
            )
        run(plain)
    for num, std in enumerate(stds):
        written = json.loads((sweep / str(num) / "results.json").read_text())
        assert (written["job"]["num"], written["config"]["callbacks"]["input_noise"]["noise"]["std"]) == (
            num,
            std,
        )
        assert f"callbacks.input_noise.noise.std={std}" in written["job"]["overrides"]
    alone = json.loads((tmp_path / "plain" / "results.json").read_text())["job"]
    assert alone == {"num": 0, "sweep_dir": None, "overrides": []}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"job_num": -1, "sweep_dir": "s"}, "`job_num` must be an integer >= 0, got -1."),
        ({"job_num": True, "sweep_dir": "s"}, "`job_num` must be an integer >= 0, got True."),
        ({"job_num": 2}, "`job_num` needs a `sweep_dir` (a job number is a multirun's), got 2."),
        ({"output_dir": None}, "give the job's `output_dir`, or a `sweep_dir` to put it in."),
        ({"output_dir": "it's"}, "a directory whose path holds `'` or `${`, or ends in a backslash"),
        ({"output_dir": "${oops}"}, "a directory whose path holds `'` or `${`, or ends in a backslash"),
    ],
)
def test_bad_arguments_are_refused(tmp_path: Path, kwargs: dict[str, object], message: str) -> None:
    arguments: dict[str, object] = {"output_dir": tmp_path, **kwargs}
    with pytest.raises(ConfigurationError) as caught:
        compose_job(TINY, **arguments)  # type: ignore[arg-type]
    assert message in str(caught.value)
    assert not GlobalHydra.instance().is_initialized()


def test_a_missing_option_and_an_initialised_hydra_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"`overrides` must be a list of overrides, one per item"):
        compose_job("trainer.max_epochs=2", output_dir=tmp_path)
    with pytest.raises(ConfigurationError, match=r"do not compose: .*trainer\.no_such_key") as caught:
        compose_job(["trainer.no_such_key=1"], output_dir=tmp_path)
    assert caught.value.__cause__ is not None  # Hydra's own error, chained
    assert not GlobalHydra.instance().is_initialized()
    with pytest.raises(ConfigurationError, match=r"`noise` must name options of the config group noise"):
        compose_job(["noise=[input,wieght]"], output_dir=tmp_path)
    with (
        initialize_config_module("lit_noise.conf", version_base="1.3"),
        pytest.raises(ConfigurationError, match="Hydra is already initialised"),
    ):
        compose_job(TINY, output_dir=tmp_path)
