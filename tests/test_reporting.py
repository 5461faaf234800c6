"""lit_noise.reporting: W&B media for a WandbLogger, files for every other logger, nothing off rank zero."""

from __future__ import annotations

import csv
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
from lightning.pytorch.loggers import CSVLogger, WandbLogger

from lit_noise import ConfigurationError, reporting

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _figure() -> Any:
    figure = reporting.new_figure(2, 2)
    figure.add_subplot().plot([0, 1], [1, 0])
    return figure


def _trainer(tmp_path: Path, logger: Any = False) -> pl.Trainer:
    return pl.Trainer(
        logger=logger,
        default_root_dir=str(tmp_path / "root"),
        enable_progress_bar=False,
        enable_model_summary=False,
    )


def test_without_logger_files_go_under_default_root_dir(tmp_path: Path) -> None:
    trainer = _trainer(tmp_path)
    (path,) = reporting.log_figure(trainer, "val/cal/reliability", _figure())
    assert path == tmp_path / "root" / "figures" / "val" / "cal" / "reliability" / "epoch0000-step0000000.png"
    assert path.read_bytes().startswith(PNG_MAGIC)
    (again,) = reporting.log_figure(trainer, "val/cal/reliability", _figure())  # same epoch and step
    assert again != path
    assert again.name == "epoch0000-step0000000-1.png"
    (table,) = reporting.log_table(trainer, "val/cal/table", ["bin", "acc"], [[0, 0.5], [1, 0.75]])
    assert table.suffix == ".csv"
    with table.open() as handle:
        assert list(csv.reader(handle)) == [["bin", "acc"], ["0", "0.5"], ["1", "0.75"]]
    (curves,) = reporting.log_line_series(
        trainer, "val/robust/acc", [1, 2, 3], {"blur": [0.9, 0.8, 0.5]}, "t", "s"
    )
    assert curves.read_bytes().startswith(PNG_MAGIC)


def test_unsafe_key_parts_are_sanitised(tmp_path: Path) -> None:
    (path,) = reporting.log_figure(_trainer(tmp_path), "../val/a b:c", _figure())
    assert path.relative_to(tmp_path / "root" / "figures").parts[:2] == ("val", "a_b_c")


def test_tensor_cells_become_plain_values(tmp_path: Path) -> None:
    import torch

    (path,) = reporting.log_table(_trainer(tmp_path), "t", ["x"], [[torch.tensor(0.25)], [torch.tensor(3)]])
    assert path.read_text().splitlines() == ["x", "0.25", "3"]


def test_csv_logger_files_go_under_its_log_dir(tmp_path: Path) -> None:
    logger = CSVLogger(str(tmp_path / "logs"), name="exp", version=3)
    trainer = _trainer(tmp_path, logger)
    assert reporting.output_dirs(trainer) == [Path(logger.log_dir) / "figures"]
    (path,) = reporting.log_figure(trainer, "val/cal/reliability", _figure())
    assert path.is_relative_to(tmp_path / "logs" / "exp" / "version_3" / "figures")
    assert reporting.wandb_logger(trainer) is None


def test_every_distinct_log_dir_gets_the_files_once(tmp_path: Path) -> None:
    first = CSVLogger(str(tmp_path / "logs"), name="a", version=0)
    same = CSVLogger(str(tmp_path / "logs"), name="a", version=0)  # the same directory again
    other = CSVLogger(str(tmp_path / "other"), name="b", version=1)
    trainer = _trainer(tmp_path, [first, same, other])
    paths = reporting.log_figure(trainer, "val/cal/reliability", _figure())
    expected = [
        tmp_path
        / "logs"
        / "a"
        / "version_0"
        / "figures"
        / "val"
        / "cal"
        / "reliability"
        / "epoch0000-step0000000.png",
        tmp_path
        / "other"
        / "b"
        / "version_1"
        / "figures"
        / "val"
        / "cal"
        / "reliability"
        / "epoch0000-step0000000.png",
    ]
    assert paths == expected
    assert all(p.read_bytes().startswith(PNG_MAGIC) for p in paths)
    assert len(list((tmp_path / "logs").rglob("*.png"))) == 1  # not written twice into one directory
    tables = reporting.log_table(trainer, "val/cal/table", ["a"], [[1]])
    assert [t.read_text().splitlines() for t in tables] == [["a", "1"], ["a", "1"]]


def test_nothing_happens_off_rank_zero(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    trainer = _trainer(tmp_path)
    monkeypatch.setattr(pl.Trainer, "is_global_zero", property(lambda self: False))
    assert reporting.log_figure(trainer, "k", _figure()) == []
    assert reporting.log_table(trainer, "k", ["a"], [[1]]) == []
    assert reporting.log_line_series(trainer, "k", [1], {"a": [1.0]}) == []
    reporting.define_summaries(trainer, {"val/cal/ece": "min"}, warn_owner="Monitor")  # no warning either
    assert not (tmp_path / "root" / "figures").exists()


def test_summaries_are_checked_and_warn_when_asked_for_without_wandb(tmp_path: Path) -> None:
    assert reporting.check_summaries("M", {"a": "min", "b": "max,last"}) == {"a": "min", "b": "max,last"}
    for bad in ({"a": "maximum"}, {"a": 1}, {"": "min"}, ["a"], "a"):
        with pytest.raises(ConfigurationError, match=r"^M: `summaries` must be a mapping metric name ->"):
            reporting.check_summaries("M", bad)
    trainer = _trainer(tmp_path)
    reporting.define_summaries(trainer, {"val/cal/ece": "min"})  # a default: no warning
    with pytest.warns(UserWarning, match=r"Monitor: `summaries` \{'val/acc': 'max'\} .* no WandbLogger"):
        reporting.define_summaries(trainer, {"val/acc": "max"}, warn_owner="Monitor")


def test_wandb_logger_gets_images_tables_charts_and_summaries(tmp_path: Path) -> None:
    import wandb

    logger = WandbLogger(save_dir=str(tmp_path), project="lit-noise-test", offline=True)
    trainer = _trainer(tmp_path, logger)
    run = logger.experiment
    logged: list[dict[str, Any]] = []
    defined: list[tuple[str, dict[str, Any]]] = []
    log, define_metric = run.log, run.define_metric

    def spy_log(data: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        logged.append(dict(data))
        return log(data, *args, **kwargs)

    def spy_define(name: str, *args: Any, **kwargs: Any) -> Any:
        defined.append((name, kwargs))
        return define_metric(name, *args, **kwargs)

    run.log, run.define_metric = spy_log, spy_define
    try:
        assert reporting.output_dirs(trainer) == []  # W&B alone: no files
        assert reporting.log_figure(trainer, "val/cal/reliability", _figure()) == []
        assert reporting.log_table(trainer, "val/cal/table", ["bin", "acc"], [[0, 0.5]]) == []
        assert (
            reporting.log_line_series(trainer, "val/robust/curves", [1, 2], {"a": [0.9, 0.5]}, "t", "s") == []
        )
        reporting.define_summaries(trainer, {"val/cal/ece": "min", "val/robust/mean_acc": "max"})
        media = Path(run.dir) / "media"
    finally:
        run.finish()
    images = logged[0]["val/cal/reliability"]
    assert isinstance(images[0], wandb.Image)
    assert logged[0]["trainer/global_step"] == 0
    assert images[0].image is not None
    assert images[0].image.size == (200, 200)
    table = logged[1]["val/cal/table"]
    assert isinstance(table, wandb.Table)
    assert table.columns == ["bin", "acc"]
    assert table.data == [[0, 0.5]]
    assert type(logged[2]["val/robust/curves"]).__name__ == "CustomChart"
    assert defined == [  # exactly what was asked: the user's val/acc is left alone
        ("val/cal/ece", {"step_metric": "trainer/global_step", "summary": "min"}),
        ("val/robust/mean_acc", {"step_metric": "trainer/global_step", "summary": "max"}),
    ]
    assert any(media.rglob("*.png"))  # W&B wrote the image into the offline run
    assert not (tmp_path / "root" / "figures").exists()  # and no file of ours


def test_a_csv_logger_beside_wandb_gets_the_files_and_wandb_the_media(tmp_path: Path) -> None:
    wandb_logger = WandbLogger(save_dir=str(tmp_path / "wandb"), project="lit-noise-test", offline=True)
    csv_logger = CSVLogger(str(tmp_path / "logs"), name="run", version=0)
    trainer = _trainer(tmp_path, [wandb_logger, csv_logger])
    run = wandb_logger.experiment
    try:
        (png,) = reporting.log_figure(trainer, "val/cal/reliability", _figure())
        (table,) = reporting.log_table(trainer, "val/cal/table", ["bin", "acc"], [[0, 0.5]])
        (curves,) = reporting.log_line_series(trainer, "val/robust/curves", [1, 2], {"a": [0.9, 0.5]})
        run_dir = Path(run.dir)
    finally:
        run.finish()
    figures = tmp_path / "logs" / "run" / "version_0" / "figures"
    assert png == figures / "val" / "cal" / "reliability" / "epoch0000-step0000000.png"
    assert png.read_bytes().startswith(PNG_MAGIC)
    assert table.read_text().splitlines() == ["bin,acc", "0,0.5"]
    assert curves.is_relative_to(figures / "val" / "robust" / "curves")
    images = list((run_dir / "media" / "images").rglob("*.png"))
    assert any("reliability" in p.name for p in images)
    assert any("table" in p.name for p in (run_dir / "media" / "table").rglob("*.table.json"))
    assert not (tmp_path / "root" / "figures").exists()


@pytest.mark.slow  # 8 s: a fresh interpreter imports torch, Lightning and matplotlib
def test_wandb_is_not_imported_without_a_wandb_logger(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import sys, warnings
        warnings.simplefilter("ignore")
        import lightning.pytorch as pl
        from lightning.pytorch.loggers import CSVLogger
        from lit_noise import CalibrationMonitor
        from lit_noise.examples import Classifier, DigitsDataModule
        trainer = pl.Trainer(max_epochs=1, limit_train_batches=2, limit_val_batches=2,
                             enable_progress_bar=False, enable_model_summary=False,
                             enable_checkpointing=False, logger=CSVLogger({str(tmp_path)!r}),
                             callbacks=[CalibrationMonitor(10)])
        trainer.fit(Classifier(), DigitsDataModule())
        assert "val/cal/ece" in trainer.callback_metrics
        print("wandb" in sys.modules)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "False"
    assert any((tmp_path / "lightning_logs").rglob("figures/val/cal/reliability/*.png"))
