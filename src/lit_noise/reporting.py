"""Where the monitors' figures and tables go: W&B when a ``WandbLogger`` is in use, files otherwise.

Every function here is a no-op returning ``None`` on ranks other than global zero. With a
:class:`~lightning.pytorch.loggers.WandbLogger` among the trainer's loggers, figures are logged as
``wandb.Image``, tables as ``wandb.Table`` and line series as ``wandb.plot.line_series`` at
``trainer/global_step``; :func:`define_summaries` asks W&B to keep the best ``val/acc`` and the
lowest ``val/cal/ece`` in the run summary. With any other logger (or none), figures and line
series are written as PNG files and tables as CSV files under ``<log dir>/figures/<key>/``, where
the log dir is the first logger's ``log_dir`` (TensorBoard, CSV) or ``save_dir``, else the
trainer's ``default_root_dir`` (the same directory as ``trainer.log_dir``, found without its
collective broadcast, so these functions may be called on rank zero alone). File names carry the
epoch and the global step (``epoch0003-step0000120.png``).

``wandb`` is imported only when a ``WandbLogger`` is in use; matplotlib only when a figure is
drawn, and without pyplot (figures are plain :class:`matplotlib.figure.Figure` objects on an Agg
canvas, so no GUI backend and no global figure registry are involved).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightning.pytorch as pl
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger, WandbLogger

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "DEFAULT_SUMMARIES",
    "define_summaries",
    "figure_to_array",
    "log_figure",
    "log_line_series",
    "log_table",
    "new_figure",
    "output_dir",
    "wandb_logger",
]

#: Run-summary rule per metric for :func:`define_summaries`: keep the best accuracy, the lowest ECE.
DEFAULT_SUMMARIES: Mapping[str, str] = {"val/acc": "max", "val/cal/ece": "min"}

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


def output_dir(trainer: pl.Trainer) -> Path:
    """``<log dir>/figures``: where files go when no ``WandbLogger`` is in use (not created here).

    The log dir is what ``trainer.log_dir`` returns, found without its collective broadcast.

    Example:
        >>> trainer = pl.Trainer(logger=False, default_root_dir="runs", enable_progress_bar=False)
        >>> output_dir(trainer).as_posix()
        'runs/figures'
    """
    base: str | None = None
    if trainer.loggers:
        logger = trainer.loggers[0]
        base = logger.log_dir if isinstance(logger, (TensorBoardLogger, CSVLogger)) else logger.save_dir
    return Path(base if base is not None else trainer.default_root_dir) / "figures"


def _file_path(trainer: pl.Trainer, key: str, suffix: str) -> Path:
    parts = [_UNSAFE.sub("_", part) for part in key.split("/") if part and part not in (".", "..")]
    folder = output_dir(trainer).joinpath(*(parts or ["figure"]))
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"epoch{trainer.current_epoch:04d}-step{trainer.global_step:07d}"
    path = folder / f"{stem}{suffix}"
    count = 1
    while path.exists():  # a second evaluation at the same epoch and step (trainer.validate)
        path = folder / f"{stem}-{count}{suffix}"
        count += 1
    return path


def log_figure(trainer: pl.Trainer, key: str, figure: Figure) -> Path | None:
    """Log ``figure`` under ``key``: a ``wandb.Image`` with W&B, else a PNG file whose path is returned.

    Args:
        trainer: the running trainer.
        key: metric-style name, e.g. ``"val/cal/reliability"`` (slashes become folders for files).
        figure: a matplotlib figure, e.g. from :func:`new_figure`.

    Returns:
        The PNG file written, or ``None`` (W&B, or a rank other than zero).

    Example:
        >>> import tempfile
        >>> trainer = pl.Trainer(logger=False, default_root_dir=tempfile.mkdtemp(), enable_progress_bar=False)
        >>> fig = new_figure(2, 2)
        >>> _ = fig.add_subplot().plot([0, 1], [0, 1])
        >>> log_figure(trainer, "val/cal/reliability", fig).name
        'epoch0000-step0000000.png'
    """
    if not trainer.is_global_zero:
        return None
    logger = wandb_logger(trainer)
    if logger is not None:
        logger.log_image(key=key, images=[figure_to_array(figure)], step=trainer.global_step)
        return None
    path = _file_path(trainer, key, ".png")
    figure.savefig(path, dpi=100)
    return path


def log_table(
    trainer: pl.Trainer, key: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> Path | None:
    """Log a table: a ``wandb.Table`` with W&B, else a CSV file (header row first) whose path is returned.

    Tensor cells are converted with ``.item()``/``.tolist()`` so both targets get plain values.

    Example:
        >>> import tempfile
        >>> trainer = pl.Trainer(logger=False, default_root_dir=tempfile.mkdtemp(), enable_progress_bar=False)
        >>> path = log_table(trainer, "val/cal/bins", ["bin", "count"], [[0, 3], [1, 5]])
        >>> path.read_text().splitlines()
        ['bin,count', '0,3', '1,5']
    """
    if not trainer.is_global_zero:
        return None
    data = [[_plain(cell) for cell in row] for row in rows]
    logger = wandb_logger(trainer)
    if logger is not None:
        logger.log_table(key=key, columns=list(columns), data=data, step=trainer.global_step)
        return None
    path = _file_path(trainer, key, ".csv")
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(list(columns))
        writer.writerows(data)
    return path


def log_line_series(
    trainer: pl.Trainer,
    key: str,
    xs: Sequence[float],
    ys: Mapping[str, Sequence[float]],
    title: str = "",
    xname: str = "x",
    yname: str = "",
) -> Path | None:
    """Log several curves over shared ``xs``: ``wandb.plot.line_series`` with W&B, else a PNG file.

    Args:
        trainer: the running trainer.
        key: metric-style name, e.g. ``"val/robust/curves"``.
        xs: the x values shared by every curve.
        ys: curve name -> y values (each as long as ``xs``).
        title: chart title.
        xname: x-axis label.
        yname: y-axis label (PNG only; W&B labels the y axis with the curve names).

    Returns:
        The PNG file written, or ``None`` (W&B, or a rank other than zero).

    Example:
        >>> import tempfile
        >>> trainer = pl.Trainer(logger=False, default_root_dir=tempfile.mkdtemp(), enable_progress_bar=False)
        >>> path = log_line_series(trainer, "val/robust/curves", [1, 2, 3], {"blur": [0.9, 0.7, 0.4]})
        >>> path.suffix
        '.png'
    """
    if not trainer.is_global_zero:
        return None
    x_values = [float(_plain(x)) for x in xs]
    curves = {name: [float(_plain(y)) for y in values] for name, values in ys.items()}
    logger = wandb_logger(trainer)
    if logger is not None:
        import wandb

        chart = wandb.plot.line_series(
            xs=x_values, ys=list(curves.values()), keys=list(curves), title=title, xname=xname
        )
        logger.experiment.log({key: chart, _STEP_METRIC: trainer.global_step})
        return None
    figure = new_figure(6.0, 4.0)
    axes = figure.add_subplot()
    for name, values in curves.items():
        axes.plot(x_values, values, marker="o", label=name)
    axes.set(title=title, xlabel=xname, ylabel=yname)
    axes.grid(alpha=0.3)
    if curves:
        axes.legend(fontsize="small")
    path = _file_path(trainer, key, ".png")
    figure.savefig(path, dpi=100)
    return path


def define_summaries(trainer: pl.Trainer, summaries: Mapping[str, str] | None = None) -> None:
    """With W&B, keep the best value of each metric in the run summary (``define_metric``).

    Args:
        trainer: the trainer.
        summaries: metric -> ``"max"``, ``"min"``, ``"mean"``, ``"last"`` ...; defaults to
            :data:`DEFAULT_SUMMARIES` (best ``val/acc``, lowest ``val/cal/ece``).

    Without a ``WandbLogger`` (or on ranks other than zero) this does nothing. Safe to call more
    than once (each monitor calls it in ``on_fit_start``).

    Example:
        >>> define_summaries(pl.Trainer(logger=False, enable_progress_bar=False))  # no W&B: nothing
    """
    if not trainer.is_global_zero:
        return
    logger = wandb_logger(trainer)
    if logger is None:
        return
    experiment = logger.experiment
    for name, summary in (DEFAULT_SUMMARIES if summaries is None else summaries).items():
        experiment.define_metric(name, step_metric=_STEP_METRIC, summary=summary)


def _plain(value: Any) -> Any:
    """Tensors and NumPy scalars as plain Python values."""
    if hasattr(value, "tolist") and callable(value.tolist):
        return value.tolist()
    return value
