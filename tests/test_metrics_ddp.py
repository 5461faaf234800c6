"""Two processes (gloo): each metric's synced value equals the single-process value on the union."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from lit_noise.metrics import (
    AdaptiveCalibrationError,
    BrierScore,
    CalibrationError,
    NegativeLogLikelihood,
    ReliabilityDiagram,
)

WORLD = 2
CLASSES = 5


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(1001, CLASSES, generator=g) * 3
    hit = torch.rand(1001, generator=g) < 0.7
    target = torch.where(hit, logits.argmax(1), torch.randint(0, CLASSES, (1001,), generator=g))
    return logits, target


def _metrics() -> dict[str, torch.nn.Module]:
    return {
        "ece": CalibrationError(CLASSES, 10, "l1"),
        "rmsce": CalibrationError(CLASSES, 10, "l2"),
        "mce": CalibrationError(CLASSES, 10, "max"),
        "aece": AdaptiveCalibrationError(CLASSES, 10),
        "brier": BrierScore(CLASSES),
        "nll": NegativeLogLikelihood(CLASSES),
        "diagram": ReliabilityDiagram(CLASSES, 10),
    }


def _compute_all(metrics: dict[str, torch.nn.Module]) -> dict[str, object]:
    return {name: metric.compute() for name, metric in metrics.items()}  # type: ignore[operator]


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        logits, target = _data()
        shard = slice(0, 600) if rank == 0 else slice(600, None)  # unequal shards
        metrics = _metrics()
        for p, t in zip(logits[shard].split(128), target[shard].split(128), strict=True):
            for metric in metrics.values():
                metric.update(p, t)  # type: ignore[operator]
        synced = _compute_all(metrics)
        local_count = float(metrics["ece"].count.sum())  # type: ignore[arg-type]
        torch.save({"synced": synced, "local_count": local_count}, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_synced_values_equal_single_process_on_union(tmp_path: Path) -> None:
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, join=True)
    logits, target = _data()
    single = _metrics()
    for metric in single.values():
        metric.update(logits, target)  # type: ignore[operator]
    expected = _compute_all(single)
    for rank in range(WORLD):
        result = torch.load(tmp_path / f"rank{rank}.pt")
        assert result["local_count"] == (600 if rank == 0 else 401)  # state unsynced after compute
        for name, value in expected.items():
            got = result["synced"][name]
            if isinstance(value, dict):
                for key in value:
                    torch.testing.assert_close(got[key], value[key], equal_nan=True, rtol=1e-6, atol=1e-7)
            else:
                torch.testing.assert_close(got, value, rtol=1e-6, atol=1e-7)
        assert float(result["synced"]["ece"]) > 0
