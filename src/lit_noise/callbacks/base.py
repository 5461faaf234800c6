"""What every lit_noise callback shares: seed, clock, generator, controller scale, logging, state."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from typing_extensions import override

from lit_noise._rng import GeneratorCache, default_seed, mix_seed, stream_id
from lit_noise._validation import check_int, check_range
from lit_noise.errors import ConfigurationError
from lit_noise.schedules import Clock, Schedule

__all__ = ["NoiseCallback", "flushes_logs", "training_clock"]

_SHARDED = ("FSDP", "DeepSpeed", "ModelParallel", "XLAFSDP")


def training_clock(trainer: pl.Trainer, total_steps: float | None = None) -> Clock:
    """The trainer's :class:`Clock`: ``global_step``, ``current_epoch`` and progress in [0, 1].

    ``total_steps`` defaults to ``trainer.estimated_stepping_batches``; progress is 0 when it is
    infinite.
    """
    step = trainer.global_step
    total = trainer.estimated_stepping_batches if total_steps is None else total_steps
    progress = min(step / total, 1.0) if 0 < total < math.inf else 0.0
    return Clock(step=step, epoch=trainer.current_epoch, progress=progress)


def flushes_logs(trainer: pl.Trainer, every: int | None = None, epoch_loop: Any = None) -> bool:
    """Whether Lightning writes step metrics after this training batch (its ``should_update_logs``).

    Lightning flushes when ``(batches_that_stepped + 1) % log_every_n_steps == 0`` or when stopping;
    ``every`` and ``epoch_loop`` may be passed in cached. Falls back to ``global_step`` if the loop's
    private counter is ever renamed.
    """
    every = int(getattr(trainer, "log_every_n_steps", 50)) if every is None else every
    if every <= 0:
        return False
    loop = trainer.fit_loop.epoch_loop if epoch_loop is None else epoch_loop
    step = getattr(loop, "_batches_that_stepped", None)
    if step is None:
        step = trainer.global_step
    return (step + 1) % every == 0 or bool(trainer.should_stop)


class NoiseCallback(Callback):
    """Base of the noise callbacks: seed, counter-based generator, clock, ``scale``, logging, state.

    Subclasses call :meth:`_generator` for a generator seeded from (seed, stream, epoch, batch
    index[, rank]), :meth:`_clock` for the schedules' clock and :meth:`_log` for the strengths.

    Args:
        name: name used in the logged keys (``noise/<name>/<param>``) and the checkpoint state key.
        seed: base seed; ``None`` draws one from torch's global RNG in ``setup`` (reproducible after
            ``seed_everything``) and shares rank 0's with every rank.
        scale: multiplier on every strength (the controller's knob), saved in checkpoints.
    """

    def __init__(self, name: str, seed: int | None = None, scale: float = 1.0) -> None:
        owner = type(self).__name__
        if not isinstance(name, str) or not name:
            raise ConfigurationError(f"{owner}: `name` must be a non-empty string, got {name!r}.")
        self.name = name
        self.seed = None if seed is None else check_int(owner, "seed", seed, 0)
        self.scale = check_range(owner, "scale", scale, 0.0)
        self.last_values: dict[str, float] = {}
        self._stream = stream_id(f"{owner}/{name}")
        self._generators = GeneratorCache()
        self._total_steps: float = math.inf
        self._log_every = 0
        self._rank = 0
        self._seed_prefixes: dict[tuple[int | None, int], int] = {}
        self._epoch_loop: Any = None

    @property
    @override
    def state_key(self) -> str:
        # Lightning reads state_key on every hook call of every callback: build it once per name.
        cached = self.__dict__.get("_state_key_cache")
        if cached is None or cached[0] != self.name:
            cached = self.__dict__["_state_key_cache"] = (self.name, self._generate_state_key(name=self.name))
        return str(cached[1])

    def _schedules(self) -> Iterable[Schedule]:
        """Every schedule this callback evaluates (checked for units in ``on_train_start``)."""
        return ()

    def _check_strategy(self, trainer: pl.Trainer) -> None:
        strategy = type(trainer.strategy).__name__
        if any(kind in strategy for kind in _SHARDED):
            raise ConfigurationError(
                f"{type(self).__name__} does not support the sharded strategy {strategy} yet (each"
                " rank holds only shards of the parameters); use DDP or a single device."
            )

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        self._check_strategy(trainer)
        if self.seed is None:
            self.seed = int(trainer.strategy.broadcast(default_seed(), src=0))

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._total_steps = float(trainer.estimated_stepping_batches)
        self._log_every = int(getattr(trainer, "log_every_n_steps", 50))
        self._rank = trainer.global_rank
        self._epoch_loop = trainer.fit_loop.epoch_loop
        if not 0 < self._total_steps < math.inf and any("progress" in s.units() for s in self._schedules()):
            raise ConfigurationError(
                f"{type(self).__name__}({self.name!r}): a schedule in unit 'progress' needs a finite"
                " training length; set the Trainer's `max_epochs` or `max_steps`."
            )

    def _clock(self, trainer: pl.Trainer) -> Clock:
        return training_clock(trainer, self._total_steps)

    def _generator(
        self, device: torch.device, trainer: pl.Trainer, batch_idx: int, per_rank: bool = True
    ) -> torch.Generator:
        """A generator seeded from (seed, stream, epoch, batch_idx[, rank])."""
        # Hot path (every batch): hash (seed, stream, rank) once into a prefix, then one mixing round
        # of prefix + (epoch, batch_idx) packed in 64 bits (distinct batches, distinct seeds).
        rank = self._rank if per_rank else -1
        prefix = self._seed_prefixes.get((self.seed, rank))
        if prefix is None:
            seed = self.seed if self.seed is not None else 0
            prefix = self._seed_prefixes[(self.seed, rank)] = mix_seed(seed, self._stream, rank)
        return self._generators.get(device, prefix + (trainer.current_epoch << 32) + batch_idx)

    def _should_log(self, trainer: pl.Trainer) -> bool:
        return flushes_logs(trainer, self._log_every, self._epoch_loop)

    def _log(self, trainer: pl.Trainer, pl_module: pl.LightningModule, values: Mapping[str, float]) -> None:
        """Remember ``values`` and log them as ``noise/<name>/<param>`` at the logging interval."""
        self.last_values = dict(values)
        if self._should_log(trainer):
            for param, value in values.items():
                pl_module.log(f"noise/{self.name}/{param}", value, on_step=True, on_epoch=False, batch_size=1)

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, "scale": self.scale}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.seed = state_dict.get("seed", self.seed)
        self.scale = float(state_dict.get("scale", self.scale))
