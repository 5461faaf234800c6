"""``lit-noise-train``: fit with lit_noise's callbacks from a Hydra config, then test the best checkpoint.

The job only instantiates what the config names (``data``, ``mix``, ``model``, every entry of
``callbacks``, every entry of ``logger``, ``trainer``), fits, evaluates the best checkpoint
(``trainer.validate`` and ``trainer.test``), writes ``results.json`` into its output directory and
returns the value of ``optimized_metric`` for sweepers. Each job's W&B run is finished in a
``finally``: a job that raises leaves its run failed and the next job of a multirun gets a new run.

Run ``lit-noise-train`` (the embedded default: the digits classifier with input noise and both
monitors, in seconds), ``lit-noise-train noise=[input,weight] trainer.max_epochs=10``,
``lit-noise-train experiment=noise_sweep`` (a multirun), or ``lit-noise-train --cfg job`` to print
the composed config.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import hydra
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from lit_noise.cli._config import APP, check_group_options, scrub
from lit_noise.cli._wandb import JobInfo
from lit_noise.errors import ConfigurationError

__all__ = ["CONFIG_NAME", "CONFIG_PATH", "TrainResult", "compose_job", "main", "run"]

CONFIG_PATH = "pkg://lit_noise.conf"
#: The config tree of the installed package (conf/ in the repository).
CONF_DIR = Path(str(resources.files("lit_noise.conf")))
CONFIG_NAME = "train"

# Advice from Lightning that does not apply to the in-memory example data, and a FutureWarning
# Lightning 2.6 raises on torch >= 2.10: kept off the user's screen.
_QUIET = (
    (r".*isinstance\(treespec, LeafSpec\).*", FutureWarning),
    (r".*does not have many workers.*", UserWarning),
    (r".*is smaller than the logging interval.*", UserWarning),
)


@dataclass
class TrainResult:
    """What a job produced: final metrics, the optimised metric's value and where things are.

    Example:
        >>> result = TrainResult(metrics={"val/acc": 0.9}, value=0.9, output_dir=Path("logs/train/runs/x"))
        >>> result.value == result.metrics["val/acc"], result.checkpoint, result.wandb_runs
        (True, None, [])
    """

    metrics: dict[str, float]
    value: float | None
    output_dir: Path
    checkpoint: str | None = None
    wandb_runs: list[str] = field(default_factory=list)


@contextmanager
def _quiet() -> Iterator[None]:
    with warnings.catch_warnings():
        for message, category in _QUIET:
            warnings.filterwarnings("ignore", message=message, category=category)
        yield


def _root_cause(err: BaseException) -> BaseException:
    while isinstance(err, InstantiationException) and err.__cause__ is not None:
        err = err.__cause__
    return err


def _build(node: DictConfig, key: str, **kwargs: Any) -> Any:
    """``instantiate(node)`` into plain containers (so checkpoints hold no ListConfig).

    A failure becomes a :class:`ConfigurationError` naming the config key (and the nested key)
    that caused it.
    """
    try:
        return instantiate(node, _convert_="all", **kwargs)
    except InstantiationException as err:
        text = str(err)
        full_key = text.rsplit("full_key: ", 1)[1].strip() if "full_key: " in text else key
        cause = _root_cause(err)
        raise ConfigurationError(
            f"{APP}: cannot build `{full_key}` (from `{key}`, _target_ {node.get('_target_')!s}):"
            f" {type(cause).__name__}: {cause}"
        ) from err


def _job_info(cfg: DictConfig) -> JobInfo:
    task = str(cfg.get("task_name") or "train")
    if not HydraConfig.initialized():
        return JobInfo(task)
    hydra_cfg = HydraConfig.get()
    # As typed (interpolations unresolved), secrets typed on the command line redacted.
    typed = OmegaConf.to_container(hydra_cfg.overrides.task, resolve=False)
    overrides = tuple(str(o) for o in scrub(typed if isinstance(typed, list) else []))
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return JobInfo(task, overrides=overrides)
    return JobInfo(task, str(hydra_cfg.sweep.dir), int(hydra_cfg.job.num), overrides)


def _check(cfg: DictConfig) -> None:
    for key in ("train", "test", "resume"):
        if not isinstance(cfg.get(key, False), bool):
            raise ConfigurationError(f"{APP}: `{key}` must be true or false, got {cfg.get(key)!r}.")
    seed = cfg.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ConfigurationError(f"{APP}: `seed` must be an integer or null, got {seed!r}.")
    metric = cfg.get("optimized_metric")
    if metric is not None and not isinstance(metric, str):
        raise ConfigurationError(f"{APP}: `optimized_metric` must be a metric name or null, got {metric!r}.")
    for key in ("data", "model", "trainer"):
        if not isinstance(cfg.get(key), DictConfig) or "_target_" not in cfg[key]:
            raise ConfigurationError(
                f"{APP}: `{key}` must be a config with `_target_`, got {cfg.get(key)!r}."
            )


def _output_dir(cfg: DictConfig) -> Path:
    path = OmegaConf.select(cfg, "paths.output_dir", default=None)
    if path is None and HydraConfig.initialized():
        path = HydraConfig.get().runtime.output_dir
    return Path(str(path or "."))


def _override_path(path: str | Path) -> str:
    """An absolute path as a quoted Hydra override value (spaces, ``=`` and ``,`` stay literal)."""
    text = os.path.abspath(path)
    if "'" in text or "${" in text or text.endswith("\\"):
        raise ConfigurationError(
            f"{APP}: a directory whose path holds `'` or `${{`, or ends in a backslash, cannot be passed"
            f" to Hydra as a value, got {text!r}."
        )
    return f"'{text}'"


@contextmanager
def _job_hydra_config(cfg: DictConfig) -> Iterator[None]:
    """Make ``cfg``'s own ``hydra`` node the current Hydra config while its job runs, if it has one.

    ``@hydra.main`` sets it for every job before calling the task (and passes a config without the
    node); a config composed with ``return_hydra_config=True`` (as :func:`compose_job` returns)
    carries its job's node, and running it restores whatever was current before.
    """
    if "hydra" not in cfg:
        yield
        return
    hydra_config = HydraConfig.instance()
    previous = hydra_config.cfg
    hydra_config.set_config(cfg)
    try:
        yield
    finally:
        hydra_config.cfg = previous


def compose_job(
    overrides: Sequence[str] = (),
    *,
    output_dir: str | Path | None = None,
    sweep_dir: str | Path | None = None,
    job_num: int = 0,
) -> DictConfig:
    """The config that ``lit-noise-train <overrides>`` runs, composed from Python for :func:`run`.

    Composes ``train`` from the packaged configs (``lit_noise.conf``) with the same config groups
    and overrides as on the command line and places the job as ``@hydra.main`` would: in
    ``output_dir`` (its ``results.json``, checkpoints and W&B run go there; the ``paths`` that Hydra's
    runtime gives are fixed in the config), with the job's Hydra node (``cfg.hydra``: job name, mode,
    overrides as typed, the config groups' choices), which :func:`run` makes current while the job runs. With
    ``sweep_dir``, it is job ``job_num`` of a multirun in that directory (by default in
    ``<sweep_dir>/<job_num>``, where a sweep puts it and ``lit-noise-report <sweep_dir>`` finds it):
    W&B then groups the jobs of the sweep and names each run after its number and overrides.
    Without, it is a single run, even of a preset that is a multirun on the command line
    (``experiment=noise_sweep``). Nothing global changes: Hydra stays uninitialised and the current
    Hydra config is left as it was, so jobs can be composed first and run later, in any order.
    Unlike the console script, it writes no ``.hydra/`` folder and sets up no log file.

    Args:
        overrides: command-line overrides, e.g. ``["experiment=noise_sweep", "trainer.max_epochs=2"]``
            (a list: one override per item; sweeps such as ``std=0.1,0.2`` are one job each here).
        output_dir: the job's directory (created by :func:`run`); by default ``<sweep_dir>/<job_num>``.
        sweep_dir: the sweep's directory, for a job of a multirun; ``None`` for a single run.
        job_num: the job's number in the sweep (``0, 1, ...``); only with ``sweep_dir``.

    Raises:
        ConfigurationError: ``overrides`` given as one string; an override naming an option that a
            config group does not have (listing the options), or one that does not compose (Hydra's
            message); no ``output_dir`` and no ``sweep_dir``; a negative ``job_num``, or one without
            ``sweep_dir``; Hydra already initialised (inside a ``@hydra.main`` app or an
            ``initialize`` block: compose there and pass the config to :func:`run`).

    Example:
        >>> import tempfile
        >>> out = tempfile.TemporaryDirectory()
        >>> overrides = ["experiment=noise_sweep", "trainer.max_epochs=2"]
        >>> cfg = compose_job(overrides, sweep_dir=out.name, job_num=1)
        >>> cfg.trainer.max_epochs, cfg.optimized_metric, Path(cfg.paths.output_dir) == Path(out.name, "1")
        (2, 'val/robust/mean_acc', True)
        >>> cfg.hydra.mode.name, cfg.hydra.job.num, list(cfg.hydra.overrides.task)
        ('MULTIRUN', 1, ['experiment=noise_sweep', 'trainer.max_epochs=2'])
        >>> try:
        ...     compose_job(["noise=[inptu]"], output_dir=out.name)
        ... except ConfigurationError as err:
        ...     print(err)
        lit-noise-train: `noise` must name options of the config group noise (activation, ...), got 'inptu'.
        >>> out.cleanup()
    """
    from hydra import compose, initialize_config_module
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    if isinstance(overrides, str):
        raise ConfigurationError(
            f"{APP}: `overrides` must be a list of overrides, one per item, got the string {overrides!r}."
        )
    if isinstance(job_num, bool) or not isinstance(job_num, int) or job_num < 0:
        raise ConfigurationError(f"{APP}: `job_num` must be an integer >= 0, got {job_num!r}.")
    if sweep_dir is None:
        if job_num:
            raise ConfigurationError(
                f"{APP}: `job_num` needs a `sweep_dir` (a job number is a multirun's), got {job_num}."
            )
        if output_dir is None:
            raise ConfigurationError(f"{APP}: give the job's `output_dir`, or a `sweep_dir` to put it in.")
    if GlobalHydra.instance().is_initialized():
        raise ConfigurationError(
            f"{APP}: compose_job composes from lit_noise.conf itself, but Hydra is already initialised"
            " (inside a @hydra.main app or an initialize() block): compose there and pass the config to"
            " run(), or call GlobalHydra.instance().clear() first."
        )
    overrides = list(overrides)
    check_group_options(overrides, CONF_DIR)
    if output_dir is None:
        assert sweep_dir is not None
        output_dir = Path(sweep_dir, str(job_num))
    if sweep_dir is None:
        placed = ["hydra.mode=RUN"]
    else:
        placed = [
            f"hydra.sweep.dir={_override_path(sweep_dir)}",
            f"hydra.job.num={job_num}",
            "hydra.mode=MULTIRUN",
        ]
    placed.append(f"hydra.runtime.output_dir={_override_path(output_dir)}")
    try:
        with initialize_config_module("lit_noise.conf", version_base="1.3", job_name=CONFIG_NAME):
            cfg = compose(CONFIG_NAME, overrides=[*overrides, *placed], return_hydra_config=True)
    except (HydraException, OmegaConfBaseException) as err:
        raise ConfigurationError(f"{APP}: the overrides {overrides} do not compose: {err}") from err
    # `paths` reads the job's directories from Hydra (${hydra:runtime.output_dir}): fixed here, so the
    # config means this job wherever and whenever it is read.
    paths = cfg.get("paths")
    if isinstance(paths, DictConfig):
        with _job_hydra_config(cfg):
            for key, value in paths.items_ex(resolve=False):
                if isinstance(value, str) and "${hydra:" in value:
                    paths[key] = paths[key]
    return cfg


def run(cfg: DictConfig) -> TrainResult:
    """Run one job of ``cfg`` (a composed ``lit_noise.conf`` tree, or any config of the same shape).

    Raises:
        ConfigurationError: before training for a malformed config (a ``noise``/``monitor`` node
            that is not a dict of callback configs, a callback config that cannot be built, which
            names its key); at the end of the first validated epoch, or of the run, when
            ``optimized_metric`` is never logged (listing the logged metrics).

    Example:
        >>> import json, tempfile, torch
        >>> from hydra import compose, initialize_config_module
        >>> tiny = ["logger=none", "monitor=none", "seed=null", "test=false", "optimized_metric=val/acc",
        ...         "trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
        ...         "trainer.deterministic=false", "trainer.enable_progress_bar=false"]
        >>> out = tempfile.TemporaryDirectory()
        >>> with initialize_config_module("lit_noise.conf", version_base="1.3"):
        ...     cfg = compose("train", [*tiny, f"paths.output_dir={out.name}", f"paths.work_dir={out.name}"])
        >>> with torch.random.fork_rng():  # the model's initialisation draws from torch's RNG
        ...     result = run(cfg)
        >>> sorted(result.metrics), result.value == result.metrics["val/acc"]
        (['train/acc', 'train/loss', 'val/acc', 'val/loss'], True)
        >>> written = json.loads((result.output_dir / "results.json").read_text())
        >>> written["status"], written["optimized_metric"]["value"] == result.value
        ('ok', True)
        >>> Path(result.checkpoint).relative_to(out.name)
        PosixPath('checkpoints/epoch_000.ckpt')
        >>> out.cleanup()
    """
    from lit_noise.cli._job import run_job  # Lightning loads here, not to compose

    with _job_hydra_config(cfg):
        return run_job(cfg)


def _resolved(cfg: DictConfig, safe: bool = False) -> dict[str, Any]:
    """The resolved config without the ``hydra`` node, secrets redacted."""
    job_cfg = OmegaConf.masked_copy(cfg, [str(key) for key in cfg if key != "hydra"])
    try:
        container = OmegaConf.to_container(job_cfg, resolve=True)
    except Exception:  # a broken interpolation must not hide the job's own error in the finally
        if not safe:
            raise
        container = OmegaConf.to_container(job_cfg, resolve=False)
    assert isinstance(container, dict)
    cleaned: dict[str, Any] = scrub(container)
    return cleaned


def _choices() -> dict[str, Any]:
    if not HydraConfig.initialized():
        return {}
    choices = OmegaConf.to_container(HydraConfig.get().runtime.choices, resolve=True)
    assert isinstance(choices, dict)
    return {str(k): v for k, v in choices.items() if not str(k).startswith("hydra/")}


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name=CONFIG_NAME)
def _hydra_main(cfg: DictConfig) -> float | None:
    return run(cfg).value


def main() -> None:
    """Console entry point (``lit-noise-train``): Hydra parses ``sys.argv``.

    An override naming an option that a config group does not have stops here, with the list of
    the group's options, before anything is composed (exit status 2).

    Example:
        >>> import contextlib, io
        >>> from unittest import mock
        >>> with mock.patch.object(sys, "argv", ["lit-noise-train", "noise=[input,inptu]"]):
        ...     with contextlib.redirect_stderr(io.StringIO()) as err:
        ...         try:
        ...             main()
        ...         except SystemExit as exit:
        ...             print("exit status", exit.code)
        exit status 2
        >>> print(err.getvalue())
        Error: lit-noise-train: `noise` must name options of the config group noise (activation,
        gradient, input, ..., weight), got 'inptu'.
    """
    try:
        check_group_options(sys.argv[1:], CONF_DIR)
    except ConfigurationError as err:
        print(f"Error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    _hydra_main()


if __name__ == "__main__":
    main()
