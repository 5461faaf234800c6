"""``lit-noise-eval ckpt_path=...``: a checkpoint under the corruption suite: table, eval.json, PNG figure.

The model (``model`` config) gets the checkpoint's weights and is validated on the ``data``
config's validation split with a :class:`~lit_noise.RobustnessMonitor` (``robustness`` config:
every corruption and severity that fits the data); the accuracy table (corruption x severity) is
printed and written, with every metric, to ``<output dir>/eval.json``, and the curves to
``<output dir>/robustness.png``.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig

from lit_noise.cli._config import APP
from lit_noise.cli._job import _scalars
from lit_noise.cli.results import package_versions, write_results
from lit_noise.cli.train import CONFIG_PATH, _build, _output_dir, _quiet
from lit_noise.errors import ConfigurationError

__all__ = ["accuracy_table", "evaluate", "main"]

log = logging.getLogger("lit_noise.cli")

_ACC = re.compile(r"^val/robust/(?P<corruption>[^/]+)/s(?P<severity>\d+)/acc$")


def accuracy_table(metrics: dict[str, float]) -> dict[str, dict[int, float]]:
    """Accuracy by corruption and severity from the monitor's ``val/robust/<c>/s<k>/acc`` metrics.

    Example:
        >>> accuracy_table({"val/robust/blur/s1/acc": 0.8, "val/robust/blur/s3/acc": 0.5, "val/acc": 0.9})
        {'blur': {1: 0.8, 3: 0.5}}
    """
    table: dict[str, dict[int, float]] = {}
    for key, value in sorted(metrics.items()):
        match = _ACC.match(key)
        if match:
            table.setdefault(match["corruption"], {})[int(match["severity"])] = value
    return {name: dict(sorted(row.items())) for name, row in table.items()}


def _format(table: dict[str, dict[int, float]], clean: float | None) -> str:
    severities = sorted({s for row in table.values() for s in row})
    lines = [f"{'corruption':<22}" + "".join(f"{'s' + str(s):>8}" for s in severities) + f"{'mean':>8}"]
    for name, row in table.items():
        cells = "".join(f"{row[s]:>8.3f}" if s in row else f"{'':>8}" for s in severities)
        lines.append(f"{name:<22}{cells}{sum(row.values()) / len(row):>8.3f}")
    if clean is not None:
        lines.append(f"{'clean':<22}{clean:>8.3f}")
    return "\n".join(lines)


def _figure(table: dict[str, dict[int, float]], clean: float | None, path: Path) -> None:
    from lit_noise._optional import require

    require("matplotlib", "lit-noise-eval", "its figure")
    from lit_noise.reporting import new_figure

    figure = new_figure(7, 4.5)
    axes = figure.add_subplot()
    for name, row in table.items():
        xs, ys = list(row), list(row.values())
        if clean is not None:
            xs, ys = [0, *xs], [clean, *ys]
        axes.plot(xs, ys, marker="o", label=name)
    axes.set(xlabel="severity (0 = clean)", ylabel="accuracy", title="Accuracy under corruption")
    axes.legend(fontsize="x-small", ncol=2)
    figure.savefig(path, dpi=100)


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Evaluate ``cfg.ckpt_path``; return what ``eval.json`` holds.

    Example:
        >>> import tempfile
        >>> from hydra import compose, initialize_config_module
        >>> from hydra.utils import instantiate
        >>> small = ["robustness.corruptions=[gaussian_noise,contrast]", "robustness.severities=[1,5]",
        ...          "trainer.limit_val_batches=1", "trainer.deterministic=false",
        ...          "trainer.enable_progress_bar=false"]
        >>> out = tempfile.TemporaryDirectory()
        >>> ckpt = Path(out.name) / "model.ckpt"
        >>> with initialize_config_module("lit_noise.conf", version_base="1.3"):
        ...     cfg = compose("eval", [*small, f"ckpt_path={ckpt}", f"paths.output_dir={out.name}",
        ...                            f"paths.work_dir={out.name}"])
        >>> with torch.random.fork_rng():  # the checkpoint of an untrained model
        ...     torch.save({"state_dict": instantiate(cfg.model).state_dict()}, ckpt)
        ...     results = evaluate(cfg)
        corruption                  s1      s5    mean
        contrast                 ...
        gaussian_noise           ...
        clean                    ...
        >>> sorted(results), sorted(results["accuracy"]["contrast"])
        (['accuracy', 'checkpoint', 'metrics', 'versions'], ['s1', 's5'])
        >>> sorted(p.name for p in Path(out.name).iterdir())
        ['eval.json', 'model.ckpt', 'robustness.png']
        >>> out.cleanup()
    """
    ckpt_path = Path(str(cfg.ckpt_path))
    if not ckpt_path.is_file():
        raise ConfigurationError(
            f"lit-noise-eval: `ckpt_path` must be a checkpoint file, got {str(ckpt_path)!r}."
        )
    output_dir = _output_dir(cfg)
    with _quiet():
        datamodule = _build(cfg.data, "data")
        model = _build(cfg.model, "model")
        state = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        model.load_state_dict(state["state_dict"])
        monitor = _build(cfg.robustness, "robustness")
        trainer = _build(
            cfg.trainer, "trainer", callbacks=[monitor], logger=False, enable_checkpointing=False
        )
        trainer.validate(model, datamodule=datamodule, verbose=False)
    metrics = _scalars(trainer.callback_metrics)
    table = accuracy_table(metrics)
    clean = metrics.get("val/robust/clean_acc")
    text = _format(table, clean)
    print(text)
    _figure(table, clean, output_dir / "robustness.png")
    results = {
        "checkpoint": str(ckpt_path),
        "metrics": metrics,
        "accuracy": {name: {f"s{s}": v for s, v in row.items()} for name, row in table.items()},
        "versions": package_versions(),
    }
    path = write_results(output_dir, results, name="eval.json")
    log.info("%s eval: %s, %s", APP, path, output_dir / "robustness.png")
    return results


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="eval")
def _hydra_main(cfg: DictConfig) -> None:
    evaluate(cfg)


def main() -> None:
    """Console entry point (``lit-noise-eval ckpt_path=...``).

    Example:
        >>> import sys
        >>> from unittest import mock
        >>> from hydra.core.hydra_config import HydraConfig
        >>> saved = HydraConfig.instance().cfg  # `--cfg` sets Hydra's global config: put back below
        >>> argv = ["lit-noise-eval", "--cfg", "job", "--package", "robustness"]
        >>> with mock.patch.object(sys, "argv", argv):
        ...     main()  # prints the composed `robustness` node, runs nothing
        # @package robustness
        _target_: lit_noise.RobustnessMonitor
        suite: full
        ...
        >>> HydraConfig.instance().cfg = saved
    """
    _hydra_main()


if __name__ == "__main__":
    main()
