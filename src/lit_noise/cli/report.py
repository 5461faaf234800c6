"""``lit-noise-report <multirun dir>``: a Markdown report with PNG figures from the jobs' ``results.json``.

It is the local counterpart of the W&B dashboard and needs nothing but the files the jobs wrote:
accuracy versus test-time corruption severity for each training setting, ECE and NLL per setting,
clean versus robust accuracy, and a table of every job sorted by the optimised metric.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lit_noise._optional import require
from lit_noise.cli.results import RESULTS_FILE, read_results
from lit_noise.errors import ConfigurationError

__all__ = ["Job", "controller_histories", "load_jobs", "main", "severity_curve", "sort_jobs", "write_report"]

_SEVERITY_KEY = re.compile(r"^val/robust/(?P<corruption>[^/]+)/s(?P<severity>\d+)/acc$")
_LOWER_IS_BETTER = re.compile(r"ece|nll|loss|brier|error|mce", re.IGNORECASE)
_COLUMNS = ("val/acc", "val/robust/mean_acc", "val/cal/ece", "val/cal/nll", "test/acc")


@dataclass(frozen=True)
class Job:
    """One job of a sweep, as its ``results.json`` tells it.

    Example:
        >>> job = Job(Path("sweep/0/results.json"), {
        ...     "job": {"overrides": ["callbacks.input_noise.noise.std=0.1"]},
        ...     "optimized_metric": {"name": "val/acc", "value": 0.9},
        ...     "metrics": {"val/acc": 0.9, "val/cal/ece": None}})
        >>> job.label, job.value, job.metrics  # a null metric is left out
        ('callbacks.input_noise.noise.std=0.1', 0.9, {'val/acc': 0.9})
        >>> Job(Path("."), {}).label, Job(Path("."), {}).value
        ('defaults', None)
    """

    path: Path
    data: dict[str, Any]

    @property
    def label(self) -> str:
        """The job's overrides (``defaults`` when it had none)."""
        overrides = self.data.get("job", {}).get("overrides") or []
        return " ".join(str(o) for o in overrides) or "defaults"

    @property
    def metrics(self) -> dict[str, float]:
        """Final metrics (val of the best checkpoint, test)."""
        return {k: float(v) for k, v in (self.data.get("metrics") or {}).items() if v is not None}

    @property
    def value(self) -> float | None:
        """The optimised metric's value (None when missing)."""
        value = (self.data.get("optimized_metric") or {}).get("value")
        return None if value is None else float(value)


def load_jobs(directory: str | Path) -> list[Job]:
    """Every ``results.json`` under ``directory`` (a multirun directory, or one run's), by path.

    Raises:
        ConfigurationError: when there is none.

    Example:
        >>> import tempfile
        >>> from lit_noise.cli.results import write_results
        >>> with tempfile.TemporaryDirectory() as sweep:
        ...     for num in (10, 2, 1):
        ...         _ = write_results(Path(sweep) / str(num), {"job": {"num": num}})
        ...     jobs = load_jobs(sweep)
        >>> [job.data["job"]["num"] for job in jobs]  # job directories in numeric order
        [1, 2, 10]
        >>> with tempfile.TemporaryDirectory() as empty:
        ...     try:
        ...         load_jobs(empty)
        ...     except ConfigurationError as err:
        ...         print(err)
        lit-noise-report: `directory` must hold jobs' results.json files (a lit-noise-train output or
        multirun directory), got '...'.
    """
    root = Path(directory)
    paths = sorted(
        root.glob(f"**/{RESULTS_FILE}"), key=lambda p: [int(s) if s.isdigit() else s for s in p.parts]
    )
    if not paths:
        raise ConfigurationError(
            f"lit-noise-report: `directory` must hold jobs' {RESULTS_FILE} files (a lit-noise-train"
            f" output or multirun directory), got {str(root)!r}."
        )
    return [Job(path, read_results(path)) for path in paths]


def lower_is_better(metric: str) -> bool:
    """Whether a smaller ``metric`` is better (ECE, NLL, losses, errors).

    Example:
        >>> lower_is_better("val/cal/ece"), lower_is_better("val/robust/mean_acc")
        (True, False)
    """
    return bool(_LOWER_IS_BETTER.search(metric))


def sort_jobs(jobs: Sequence[Job]) -> list[Job]:
    """Jobs best first by their optimised metric; failed jobs and jobs without a value last.

    Example:
        >>> def job(value, metric="val/acc"):
        ...     return Job(Path("."), {"optimized_metric": {"name": metric, "value": value}})
        >>> [j.value for j in sort_jobs([job(0.7), job(None), job(0.9)])]  # higher accuracy first
        [0.9, 0.7, None]
        >>> [j.value for j in sort_jobs([job(0.3, "val/cal/ece"), job(0.1, "val/cal/ece")])]  # lower first
        [0.1, 0.3]
    """
    names = [j.data.get("optimized_metric", {}).get("name") for j in jobs if j.value is not None]
    sign = 1.0 if names and lower_is_better(str(names[0])) else -1.0
    return sorted(jobs, key=lambda j: (j.value is None, sign * (j.value if j.value is not None else 0.0)))


def severity_curve(metrics: dict[str, float]) -> tuple[list[int], list[float]]:
    """Accuracy versus corruption severity: the clean accuracy at 0, then the mean over corruptions.

    Example:
        >>> severity_curve({"val/robust/clean_acc": 0.9, "val/robust/blur/s1/acc": 0.8,
        ...                 "val/robust/noise/s1/acc": 0.6, "val/robust/noise/s3/acc": 0.4})
        ([0, 1, 3], [0.9, 0.7, 0.4])
    """
    by_severity: dict[int, list[float]] = {}
    for key, value in metrics.items():
        match = _SEVERITY_KEY.match(key)
        if match:
            by_severity.setdefault(int(match["severity"]), []).append(value)
    severities = sorted(by_severity)
    accuracies = [sum(by_severity[s]) / len(by_severity[s]) for s in severities]
    clean = metrics.get("val/robust/clean_acc", metrics.get("val/acc"))
    if clean is not None and severities:
        severities, accuracies = [0, *severities], [clean, *accuracies]
    return severities, [round(a, 12) for a in accuracies]


def _fmt(value: float | None) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"


def _table(jobs: Sequence[Job]) -> list[str]:
    metric = next((j.data["optimized_metric"]["name"] for j in jobs if j.value is not None), "optimized")
    columns = [c for c in _COLUMNS if c != metric]
    head = ["#", "overrides", "status", f"**{metric}**", *columns, "wall s"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for rank, job in enumerate(jobs, 1):
        metrics = job.metrics
        cells = [
            str(rank),
            f"`{job.label}`",
            str(job.data.get("status")),
            _fmt(job.value),
            *(_fmt(metrics.get(c)) for c in columns),
            f"{float(job.data.get('wall_time_s') or 0.0):.1f}",
        ]
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def _short(label: str, width: int = 48) -> str:
    """``label`` cut to ``width`` characters (an ellipsis at the end when cut).

    Example:
        >>> _short("noise.std=0.1 trainer.max_epochs=5", 16)
        'noise.std=0.1 t…'
    """
    return label if len(label) <= width else label[: width - 1] + "…"


def _figures(jobs: Sequence[Job], out: Path) -> list[tuple[str, str]]:
    require("matplotlib", "lit-noise-report", "its figures")
    from lit_noise.reporting import new_figure

    done = [j for j in jobs if j.metrics]
    figures: list[tuple[str, str]] = []

    figure = new_figure(7, 4.5)
    axes = figure.add_subplot()
    for row, job in enumerate(done, 1):
        severities, accuracies = severity_curve(job.metrics)
        if severities:  # the table row and the overrides, shortened: a long legend would squash the axes
            axes.plot(severities, accuracies, marker="o", label=f"{row}: {_short(job.label)}")
    axes.set(xlabel="test-time corruption severity (0 = clean)", ylabel="accuracy (mean over corruptions)")
    axes.set_title("Accuracy versus corruption severity")
    axes.legend(fontsize="x-small")
    figure.savefig(out / "severity.png", dpi=100)
    figures.append(("Accuracy versus test-time corruption severity", "severity.png"))

    figure = new_figure(8, 4)
    labels = [str(i) for i in range(1, len(done) + 1)]
    for index, (key, title) in enumerate((("val/cal/ece", "ECE"), ("val/cal/nll", "NLL")), 1):
        axes = figure.add_subplot(1, 2, index)
        axes.bar(labels, [j.metrics.get(key, math.nan) for j in done])
        axes.set(title=f"{title} per setting", xlabel="job (table row)", ylabel=title)
    figure.savefig(out / "calibration.png", dpi=100)
    figures.append(("ECE and NLL per setting (bars in table order)", "calibration.png"))

    figure = new_figure(5.5, 4.5)
    axes = figure.add_subplot()
    for row, job in enumerate(done, 1):
        clean = job.metrics.get("val/robust/clean_acc", job.metrics.get("val/acc"))
        robust = job.metrics.get("val/robust/mean_acc")
        if clean is not None and robust is not None:
            axes.scatter([clean], [robust])
            axes.annotate(str(row), (clean, robust), textcoords="offset points", xytext=(4, 4))
    axes.set(xlabel="clean accuracy", ylabel="mean corruption accuracy", title="Clean versus robust accuracy")
    figure.savefig(out / "clean_vs_robust.png", dpi=100)
    figures.append(("Clean versus robust accuracy (points labelled by table row)", "clean_vs_robust.png"))
    return figures


def controller_histories(job: Job) -> dict[str, list[dict[str, Any]]]:
    """The decisions of each noise controller of ``job`` (from ``results.json``), by config key.

    Example:
        >>> job = Job(Path("."), {"controllers": {"callbacks.noise_controller": {"history": [
        ...     {"epoch": 0, "scale": 0.0, "clean": 0.9, "robust": None, "decision": 1, "new_scale": 1.0}]}}})
        >>> controller_histories(job)["callbacks.noise_controller"][0]["new_scale"]
        1.0
    """
    records = job.data.get("controllers") or {}
    return {str(key): list(record.get("history") or []) for key, record in records.items()}


def _controller_section(jobs: Sequence[Job], out: Path) -> list[str]:
    """A table and a figure of the noise controllers' decisions (nothing when no job had one)."""
    rows = [
        (row, key, history)
        for row, job in enumerate(jobs, 1)
        for key, history in controller_histories(job).items()
        if history
    ]
    if not rows:
        return []
    from lit_noise.reporting import new_figure

    lines = [
        "## Noise controller",
        "",
        "Each controller's scale (the multiplier on its noise sources' strengths) over the fit.",
        "",
        "| # | controller | validations | down (probes included) | up (warm-up end, reverted probes"
        " included) | final scale |",
        "|---|---|---|---|---|---|",
    ]
    figure = new_figure(8, 4)
    scale_axes, clean_axes = figure.add_subplot(1, 2, 1), figure.add_subplot(1, 2, 2)
    for row, key, history in rows:
        codes = [int(h.get("decision") or 0) for h in history]
        final = float(history[-1].get("new_scale") or 0.0)
        lines.append(
            f"| {row} | `{key}` | {len(history)} | {codes.count(-1)} | {codes.count(1)} | {final:.4g} |"
        )
        epochs = [int(h["epoch"]) for h in history]
        scale_axes.step(epochs, [float(h["scale"]) for h in history], where="post", label=str(row))
        clean_axes.plot(epochs, [float(h["clean"]) for h in history], marker="o", label=str(row))
    scale_axes.set(xlabel="epoch", ylabel="scale the epoch trained with", title="Controller scale")
    clean_axes.set(xlabel="epoch", ylabel="monitored clean metric", title="What it watched")
    scale_axes.legend(fontsize="x-small", title="job")
    figure.savefig(out / "controller.png", dpi=100)
    return [*lines, "", "![Noise controller](controller.png)", ""]


def write_report(directory: str | Path, out: str | Path | None = None) -> Path:
    """Write ``report.md`` and its PNG figures for the jobs under ``directory``; return its path.

    Example:
        >>> import tempfile
        >>> from lit_noise.cli.results import write_results
        >>> with tempfile.TemporaryDirectory() as sweep:
        ...     for num, acc in enumerate([0.6, 0.8]):
        ...         metrics = {"val/acc": acc, "val/robust/mean_acc": acc / 2,
        ...                    "val/robust/gaussian_noise/s5/acc": acc / 2}
        ...         _ = write_results(Path(sweep) / str(num), {
        ...             "status": "ok", "job": {"overrides": [f"seed={num}"]}, "metrics": metrics,
        ...             "optimized_metric": {"name": "val/acc", "value": acc}})
        ...     path = write_report(sweep)
        ...     rows = [line for line in path.read_text().splitlines() if line.startswith("| ")]
        ...     figures = sorted(p.name for p in path.parent.glob("*.png"))
        >>> for row in rows:  # best first
        ...     print(row)
        | # | overrides | status | **val/acc** | val/robust/mean_acc | val/cal/ece | val/cal/nll | ... |
        | 1 | `seed=1` | ok | 0.8000 | 0.4000 |  |  |  | 0.0 |
        | 2 | `seed=0` | ok | 0.6000 | 0.3000 |  |  |  | 0.0 |
        >>> path.relative_to(sweep), figures
        (PosixPath('report/report.md'), ['calibration.png', 'clean_vs_robust.png', 'severity.png'])
    """
    jobs = sort_jobs(load_jobs(directory))
    target = Path(out) if out is not None else Path(directory) / "report"
    target.mkdir(parents=True, exist_ok=True)
    in_table_order = [j for j in jobs if j.metrics]
    lines = [
        f"# lit_noise sweep report: {Path(directory).name}",
        "",
        f"{len(jobs)} jobs from `{directory}`, best first by the optimised metric.",
        "",
        *_table(jobs),
        "",
    ]
    for title, name in _figures(in_table_order, target):
        lines += [f"## {title}", "", f"![{title}]({name})", ""]
    lines += _controller_section(in_table_order, target)
    runs = [run for job in jobs for run in job.data.get("wandb_runs") or []]
    if runs:
        lines += ["## W&B runs", "", "Offline runs (upload with `wandb sync <dir>`):", ""]
        lines += [f"- `{run}`" for run in runs]
        lines.append("")
    path = target / "report.md"
    path.write_text("\n".join(lines))
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point (``lit-noise-report``).

    Example:
        >>> import tempfile
        >>> from lit_noise.cli.results import write_results
        >>> with tempfile.TemporaryDirectory() as sweep:
        ...     metrics = {"val/acc": 0.8, "val/robust/mean_acc": 0.5, "val/robust/contrast/s5/acc": 0.5}
        ...     _ = write_results(Path(sweep) / "0", {
        ...         "status": "ok", "metrics": metrics, "optimized_metric": {"name": "val/acc", "value": 0.8},
        ...     })
        ...     status = main([sweep, "--out", str(Path(sweep) / "out")])
        Report: /.../out/report.md
        >>> status
        0
    """
    parser = argparse.ArgumentParser(prog="lit-noise-report", description=__doc__)
    parser.add_argument("directory", help="a lit-noise-train multirun (or run) directory")
    parser.add_argument("--out", default=None, help="where to write report.md (default: <directory>/report)")
    args = parser.parse_args(argv)
    try:
        path = write_report(args.directory, args.out)
    except ConfigurationError as err:
        parser.exit(2, f"Error: {err}\n")
    print(f"Report: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
