"""Where the monitors' figures and tables go: to every logger in use.

Every function here does nothing on ranks other than global zero. With a
:class:`~lightning.pytorch.loggers.WandbLogger` among the trainer's loggers, figures are logged as
``wandb.Image``, tables as ``wandb.Table`` and line series as ``wandb.plot.line_series`` at
``trainer/global_step``. Every other logger gets files: figures and line series as PNG, tables as
CSV, under ``<log dir>/figures/<key>/``, where the log dir is the logger's ``log_dir``
(TensorBoard, CSV) or ``save_dir`` (else the trainer's ``default_root_dir``), each distinct
directory once; without any logger the files go under ``<default_root_dir>/figures/``. So a CSV
logger beside a W&B logger gets the PNG files while W&B gets the images. The directories are
found without ``trainer.log_dir``'s collective broadcast, so these functions may be called on rank
zero alone. File names carry the epoch and the global step (``epoch0003-step0000120.png``).
:func:`define_summaries` sets W&B run-summary rules (``define_metric``) for the metrics it is
given, and for no others.

``wandb`` is imported only when a ``WandbLogger`` is in use; matplotlib only when a figure is
drawn, and without pyplot (figures are plain :class:`matplotlib.figure.Figure` objects on an Agg
canvas, so no GUI backend and no global figure registry are involved).
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightning.pytorch as pl
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger, WandbLogger
from lightning.pytorch.utilities import rank_zero_warn

from lit_noise._validation import fail

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "SUMMARY_RULES",
    "check_summaries",
    "define_summaries",
    "figure_to_array",
    "log_figure",
    "log_line_series",
    "log_table",
    "new_figure",
    "output_dirs",
    "wandb_logger",
]

#: The run-summary rules W&B's ``define_metric(summary=...)`` takes (several joined by commas).
SUMMARY_RULES: tuple[str, ...] = ("min", "max", "mean", "first", "last", "best", "none")

_STEP_METRIC = "trainer/global_step"
_UNSAFE = re.compile(r"[^A-Za-z0-9._=-]+")


def new_figure(width: float = 5.0, height: float = 4.0) -> Figure:
    """A matplotlib figure on an Agg canvas (no pyplot, no GUI backend, nothing global).

    Example:
        >>> fig = new_figure(3, 2)
        >>> ax = fig.add_subplot()
        >>> fig.get_size_inches().tolist()
        [3.0, 2.0]
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def figure_to_array(figure: Figure) -> Any:
    """Render ``figure`` to an ``(H, W, 3)`` uint8 NumPy array (what ``wandb.Image`` takes).

    Example:
        >>> fig = new_figure(1, 1)
        >>> figure_to_array(fig).shape
        (100, 100, 3)
    """
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = figure.canvas if isinstance(figure.canvas, FigureCanvasAgg) else FigureCanvasAgg(figure)
    canvas.draw()  # type: ignore[no-untyped-call]
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()  # type: ignore[no-untyped-call]


def wandb_logger(trainer: pl.Trainer) -> WandbLogger | None:
    """The trainer's first ``WandbLogger``, or ``None`` (checked without importing wandb).

    Example:
        >>> wandb_logger(pl.Trainer(logger=False, enable_progress_bar=False)) is None
        True
    """
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            return logger
    return None


def output_dirs(trainer: pl.Trainer) -> list[Path]:
    """The ``<log dir>/figures`` folders files go to, one per distinct log dir (none are created).

    One for each logger other than W&B: its ``log_dir`` (TensorBoard, CSV) or ``save_dir``, else
    ``default_root_dir``; without any logger, ``<default_root_dir>/figures``; with only a
    ``WandbLogger``, none.

    Example:
        >>> trainer = pl.Trainer(logger=False, default_root_dir="runs", enable_progress_bar=False)
        >>> [path.as_posix() for path in output_dirs(trainer)]
        ['runs/figures']
    """
    if not trainer.loggers:
        return [Path(trainer.default_root_dir) / "figures"]
    folders: list[Path] = []
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            continue
        base = logger.log_dir if isinstance(logger, (TensorBoardLogger, CSVLogger)) else logger.save_dir
        folder = Path(base if base is not None else trainer.default_root_dir) / "figures"
        if all(os.path.abspath(folder) != os.path.abspath(other) for other in folders):
            folders.append(folder)
    return folders


def _file_paths(trainer: pl.Trainer, key: str, suffix: str) -> list[Path]:
    parts = [_UNSAFE.sub("_", part) for part in key.split("/") if part and part not in (".", "..")]
    stem = f"epoch{trainer.current_epoch:04d}-step{trainer.global_step:07d}"
    paths = []
    for base in output_dirs(trainer):
        folder = base.joinpath(*(parts or ["figure"]))
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{stem}{suffix}"
        count = 1
        while path.exists():  # a second evaluation at the same epoch and step (trainer.validate)
            path = folder / f"{stem}-{count}{suffix}"
            count += 1
        paths.append(path)
    return paths


def log_figure(trainer: pl.Trainer, key: str, figure: Figure) -> list[Path]:
    """Log ``figure`` under ``key``: a ``wandb.Image`` with W&B, a PNG file for every other logger.

    Args:
        trainer: the running trainer.
        key: metric-style name, e.g. ``"val/cal/reliability"`` (slashes become folders for files).
        figure: a matplotlib figure, e.g. from :func:`new_figure`.

    Returns:
        The PNG files written (none with only W&B, or on a rank other than zero).

    Example:
        >>> import tempfile
        >>> trainer = pl.Trainer(logger=False, default_root_dir=tempfile.mkdtemp(), enable_progress_bar=False)
        >>> fig = new_figure(2, 2)
        >>> _ = fig.add_subplot().plot([0, 1], [0, 1])
        >>> [path.name for path in log_figure(trainer, "val/cal/reliability", fig)]
        ['epoch0000-step0000000.png']
    """
    if not trainer.is_global_zero:
        return []
    logger = wandb_logger(trainer)
    if logger is not None:
        logger.log_image(key=key, images=[figure_to_array(figure)], step=trainer.global_step)
    paths = _file_paths(trainer, key, ".png")
    for path in paths:
        figure.savefig(path, dpi=100)
    return paths


def log_table(
    trainer: pl.Trainer, key: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> list[Path]:
    """Log a table: a ``wandb.Table`` with W&B, a CSV file (header row first) for every other logger.

    Tensor cells are converted with ``.item()``/``.tolist()`` so both targets get plain values.

    Returns:
        The CSV files written (none with only W&B, or on a rank other than zero).

    Example:
        >>> import tempfile
        >>> trainer = pl.Trainer(logger=False, default_root_dir=tempfile.mkdtemp(), enable_progress_bar=False)
        >>> (path,) = log_table(trainer, "val/cal/bins", ["bin", "count"], [[0, 3], [1, 5]])
        >>> path.read_text().splitlines()
        ['bin,count', '0,3', '1,5']
    """
    if not trainer.is_global_zero:
        return []
    data = [[_plain(cell) for cell in row] for row in rows]
    logger = wandb_logger(trainer)
    if logger is not None:
        logger.log_table(key=key, columns=list(columns), data=data, step=trainer.global_step)
    paths = _file_paths(trainer, key, ".csv")
    for path in paths:
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(list(columns))
            writer.writerows(data)
    return paths


def log_line_series(
    trainer: pl.Trainer,
    key: str,
    xs: Sequence[float],
    ys: Mapping[str, Sequence[float]],
    title: str = "",
    xname: str = "x",
    yname: str = "",
) -> list[Path]:
    """Log several curves over shared ``xs``: ``wandb.plot.line_series`` with W&B, a PNG for other loggers.

    Args:
        trainer: the running trainer.
        key: metric-style name, e.g. ``"val/robust/curves"``.
        xs: the x values shared by every curve.
        ys: curve name -> y values (each as long as ``xs``).
        title: chart title.
        xname: x-axis label.
        yname: y-axis label (PNG only; W&B labels the y axis with the curve names).

    Returns:
        The PNG files written (none with only W&B, or on a rank other than zero).

    Example:
        >>> import tempfile
        >>> trainer = pl.Trainer(logger=False, default_root_dir=tempfile.mkdtemp(), enable_progress_bar=False)
        >>> (path,) = log_line_series(trainer, "val/robust/curves", [1, 2, 3], {"blur": [0.9, 0.7, 0.4]})
        >>> path.suffix
        '.png'
    """
    if not trainer.is_global_zero:
        return []
    x_values = [float(_plain(x)) for x in xs]
    curves = {name: [float(_plain(y)) for y in values] for name, values in ys.items()}
    logger = wandb_logger(trainer)
    if logger is not None:
        import wandb

        chart = wandb.plot.line_series(
            xs=x_values, ys=list(curves.values()), keys=list(curves), title=title, xname=xname
        )
        logger.experiment.log({key: chart, _STEP_METRIC: trainer.global_step})
    paths = _file_paths(trainer, key, ".png")
    if not paths:
        return paths
    figure = new_figure(6.0, 4.0)
    axes = figure.add_subplot()
    for name, values in curves.items():
        axes.plot(x_values, values, marker="o", label=name)
    axes.set(title=title, xlabel=xname, ylabel=yname)
    axes.grid(alpha=0.3)
    if curves:
        axes.legend(fontsize="small")
    for path in paths:
        figure.savefig(path, dpi=100)
    return paths


def check_summaries(owner: str, summaries: object) -> dict[str, str]:
    """Return ``summaries`` (metric -> rule of :data:`SUMMARY_RULES`, several joined by commas) or raise.

    Example:
        >>> check_summaries("Monitor", {"val/acc": "max", "val/loss": "min,last"})
        {'val/acc': 'max', 'val/loss': 'min,last'}
    """
    allowed = (
        "a mapping metric name -> " + " / ".join(repr(r) for r in SUMMARY_RULES) + " (or several, 'min,max')"
    )
    if not isinstance(summaries, Mapping):
        raise fail(owner, "summaries", summaries, allowed)
    checked: dict[str, str] = {}
    for name, rule in summaries.items():
        if (
            not isinstance(name, str)
            or not name
            or not isinstance(rule, str)
            or not all(part.strip() in SUMMARY_RULES for part in rule.split(","))
        ):
            raise fail(owner, "summaries", dict(summaries), allowed)
        checked[name] = rule
    return checked


def define_summaries(
    trainer: pl.Trainer, summaries: Mapping[str, str], warn_owner: str | None = None
) -> None:
    """With W&B, set the run-summary rule of each metric in ``summaries`` (``define_metric``), no other.

    Args:
        trainer: the trainer.
        summaries: metric -> ``"max"``, ``"min"``, ``"mean"``, ``"last"`` ... (:func:`check_summaries`).
        warn_owner: when the user asked for these summaries, who asked: without a ``WandbLogger``
            they cannot take effect, and a warning naming ``warn_owner`` says so.

    Without a ``WandbLogger`` (or on ranks other than zero) nothing is set. Safe to call more than
    once (each monitor calls it in ``on_fit_start``).

    Example:
        >>> define_summaries(pl.Trainer(logger=False, enable_progress_bar=False), {"val/cal/ece": "min"})
    """
    if not trainer.is_global_zero:
        return
    logger = wandb_logger(trainer)
    if logger is None:
        if warn_owner is not None and summaries:
            rank_zero_warn(
                f"{warn_owner}: `summaries` {dict(summaries)} set W&B run-summary rules, but no WandbLogger"
                " is in use, so they have no effect.",
                category=UserWarning,
            )
        return
    experiment = logger.experiment
    for name, summary in summaries.items():
        experiment.define_metric(name, step_metric=_STEP_METRIC, summary=summary)


def _plain(value: Any) -> Any:
    """Tensors and NumPy scalars as plain Python values."""
    if hasattr(value, "tolist") and callable(value.tolist):
        return value.tolist()
    return value
