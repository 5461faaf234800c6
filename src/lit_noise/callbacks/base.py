"""What every lit_noise callback shares: seed, clock, generator, controller scale, logging, state."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar, TypeVar

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from typing_extensions import override

from lit_noise._rng import GeneratorCache, default_seed, mix_counter, mix_seed, stream_id
from lit_noise._settings import constructor_settings, log_settings
from lit_noise._validation import check_range, check_seed
from lit_noise.callbacks._resume import warn_if_data_order_differs
from lit_noise.errors import ConfigurationError
from lit_noise.noise.base import Noise
from lit_noise.schedules import Clock, Schedule

__all__ = ["NoiseCallback", "flushes_logs", "source_names", "training_clock"]

_SHARDED = ("FSDP", "DeepSpeed", "ModelParallel", "XLAFSDP")
_NO_CLOCK = Clock()
T = TypeVar("T")


def training_clock(trainer: pl.Trainer, total_steps: float | None = None) -> Clock:
    """The trainer's :class:`Clock`: ``global_step``, ``current_epoch`` and progress in [0, 1].

    ``total_steps`` defaults to ``trainer.estimated_stepping_batches``; progress is 0 when it is
    infinite.

    Example:
        >>> from types import SimpleNamespace  # stands in for a Trainer 25 steps into its fit
        >>> trainer = SimpleNamespace(global_step=25, current_epoch=1, estimated_stepping_batches=100)
        >>> training_clock(trainer)
        Clock(step=25, epoch=1, progress=0.25)
        >>> training_clock(trainer, total_steps=float("inf")).progress
        0.0
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

    Example:
        >>> trainer = pl.Trainer(logger=False, log_every_n_steps=50, enable_checkpointing=False)
        >>> flushes_logs(trainer), flushes_logs(trainer, every=1)  # before the first batch: step 0
        (False, True)
    """
    every = int(getattr(trainer, "log_every_n_steps", 50)) if every is None else every
    if every <= 0:
        return False
    loop = trainer.fit_loop.epoch_loop if epoch_loop is None else epoch_loop
    step = getattr(loop, "_batches_that_stepped", None)
    if step is None:
        step = trainer.global_step
    return (step + 1) % every == 0 or bool(trainer.should_stop)


def _snake(name: str) -> str:
    """``SymmetricFlip`` -> ``symmetric_flip``, ``SNR`` -> ``snr``."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


def source_names(callbacks: Iterable[Callback], reserved: Iterable[str] = ()) -> dict[int, str]:
    """The name each noise callback among ``callbacks`` logs under, by ``id``; duplicates raise.

    A callback given ``name=`` keeps it. One left at ``name=None`` is named by its role
    (``"input"``, ``"target"``, ``"weight"``, ``"gradient"``) when it is the only such callback of
    that role, and by its role and noise otherwise (``"target_symmetric_flip"`` next to
    ``"target_label_smoothing"``). Names in ``reserved`` (``"mix"`` under a
    :class:`~lit_noise.MixupDataModule`) and names that two callbacks would share raise a
    :class:`ConfigurationError` that says to pass ``name=``.

    Example:
        >>> from lit_noise import Gaussian, LabelSmoothing, SymmetricFlip, TargetNoise, WeightNoise
        >>> callbacks = [TargetNoise(SymmetricFlip(p=0.2), num_classes=10),
        ...              TargetNoise(LabelSmoothing(eps=0.1), num_classes=10),
        ...              WeightNoise(Gaussian(std=0.01))]
        >>> sorted(source_names(callbacks).values())
        ['target_label_smoothing', 'target_symmetric_flip', 'weight']
    """
    reserved = tuple(reserved)
    sources = [cb for cb in callbacks if isinstance(cb, NoiseCallback)]
    unnamed = Counter(cb._default_name for cb in sources if cb._given_name is None)
    names: dict[int, str] = {}
    for cb in sources:
        name = cb._default_name
        if cb._given_name is None and unnamed[name] > 1 and cb._name_suffix():
            name = f"{name}_{cb._name_suffix()}"
        names[id(cb)] = name
    taken = Counter(names.values())
    for name in reserved:
        taken[name] += 1
    clashes = sorted(name for name, count in taken.items() if count > 1)
    if clashes:
        name = clashes[0]
        users = [cb._describe() for cb in sources if names[id(cb)] == name]
        if name in reserved:
            users.append("MixupDataModule's settings")
        raise ConfigurationError(
            f"Several noise sources would log under the name {name!r} ({'; '.join(users)}), so their"
            f" metrics (noise/{name}/...), settings (lit_noise/{name}/...) and checkpoint state would"
            " clash. Pass a distinct `name=` to each of them."
        )
    return names


class NoiseCallback(Callback):
    """Base of the noise callbacks: seed, counter-based generator, clock, ``scale``, logging, state.

    Subclasses call :meth:`_generator` for a generator seeded from (seed, stream, epoch, batch
    index[, rank]), :meth:`_clock` for the schedules' clock and :meth:`_log` for the strengths.
    At train start the settings (:meth:`settings`) are logged as every logger's hyperparameters
    under ``lit_noise/<name>/``.

    Several instances can share a Trainer. A callback left at ``name=None`` takes its role as name
    (``default_name``) when it is the only unnamed one of that role among the Trainer's callbacks,
    else its role and its noise (``"target_symmetric_flip"``), resolved in ``setup`` (see
    :func:`source_names`); names that two sources would share are refused there. Its checkpoint
    state key is built from what does not change on resume: the class, the role, the noise's type
    and where it applies (``key``, ``include``, ``exclude``), not the strengths. A callback given
    ``name=`` uses that name for both.

    Args:
        name: name used in the logged keys (``noise/<name>/<param>``) and the checkpoint state key;
            ``None`` (allowed when ``default_name`` is given): derived as above.
        seed: base seed; ``None`` draws one from torch's global RNG in ``setup`` (reproducible after
            ``seed_everything``) and shares rank 0's with every rank.
        scale: multiplier on every strength (the controller's knob), saved in checkpoints.
        default_name: the role, the name of an unnamed instance.

    Example:
        >>> from lit_noise import Gaussian, InputNoise
        >>> callback = InputNoise(Gaussian(std=0.1), seed=0)
        >>> isinstance(callback, NoiseCallback), callback.name, callback.state_dict()
        (True, 'input', {'seed': 0, 'scale': 1.0})
        >>> callback.load_state_dict({"seed": 3, "scale": 0.5})  # what a checkpoint restores
        >>> callback.seed, callback.scale
        (3, 0.5)
    """

    #: Attributes that, with the noise's type, tell unnamed instances apart in checkpoints.
    _identity_fields: ClassVar[tuple[str, ...]] = ("key", "include", "exclude")

    def __init__(
        self, name: str | None, seed: int | None = None, scale: float = 1.0, default_name: str | None = None
    ) -> None:
        owner = type(self).__name__
        if (name is not None or default_name is None) and (not isinstance(name, str) or not name):
            raise ConfigurationError(f"{owner}: `name` must be a non-empty string, got {name!r}.")
        self._given_name = name
        self._default_name: str = name or default_name or ""
        self.name = self._default_name
        self.seed = None if seed is None else check_seed(owner, "seed", seed)
        self.scale = check_range(owner, "scale", scale, 0.0)
        self.last_values: dict[str, float] = {}
        self._stream = stream_id(f"{owner}/{self.name}")
        self._generators = GeneratorCache()
        self._total_steps: float = math.inf
        self._log_every = 0
        self._rank = 0
        self._seed_prefixes: dict[tuple[int | None, int], int] = {}
        self._epoch_loop: Any = None
        # Set in on_train_start: whether every schedule is constant; then the strengths resolved
        # once per `scale` (`_strengths`), so the hot path reads no clock.
        self._constant = False
        self._resolved_at: float | None = None
        self._resolved: Any = None

    @property
    @override
    def state_key(self) -> str:
        # Lightning reads state_key on every hook call of every callback: build it once per name.
        cached = self.__dict__.get("_state_key_cache")
        if cached is None or (self._given_name is not None and cached[0] != self.name):
            if self._given_name is None:
                key = self._generate_state_key(name=self._default_name, **self._identity())
            else:
                key = self._generate_state_key(name=self.name)
            cached = self.__dict__["_state_key_cache"] = (self.name, key)
        return str(cached[1])

    def _noise(self) -> Noise | None:
        noise = self.__dict__.get("noise")
        return noise if isinstance(noise, Noise) else None

    def _identity(self) -> dict[str, Any]:
        """The state key's parts besides the role: the noise's type and where it applies."""
        noise = self._noise()
        identity: dict[str, Any] = {} if noise is None else {"noise": type(noise).__name__}
        identity.update({f: self.__dict__[f] for f in self._identity_fields if f in self.__dict__})
        return identity

    def _name_suffix(self) -> str:
        """What tells this callback's name apart from other unnamed ones of its role: its noise."""
        noise = self._noise()
        return "" if noise is None else _snake(type(noise).__name__)

    def _describe(self) -> str:
        noise = self._noise()
        return type(self).__name__ + ("" if noise is None else f"({noise!r})")

    def _resolve_name(self, trainer: pl.Trainer) -> None:
        """Take the name :func:`source_names` gives this callback among the trainer's callbacks."""
        from lit_noise.data.mixup import MixupDataModule  # here: lit_noise.data imports this module

        datamodule = getattr(trainer, "datamodule", None)
        reserved = ("mix",) if isinstance(datamodule, MixupDataModule) else ()
        callbacks: list[Callback] = trainer.callbacks  # type: ignore[attr-defined]
        name = source_names(callbacks, reserved).get(id(self), self.name)
        if name != self.name:
            self.name = name
            self._stream = stream_id(f"{type(self).__name__}/{name}")
            self._seed_prefixes = {}

    def settings(self) -> dict[str, Any]:
        """What this callback was built with, as it holds it (the resolved name and seed).

        Logged at train start as hyperparameters ``lit_noise/<name>/<setting>``: ``callback`` (the
        class), every constructor argument (a noise as its type with its arguments below it,
        ``noise/std``; a schedule as its ``repr`` with its fields below it).

        Example:
            >>> from lit_noise import Gaussian, InputNoise
            >>> from lit_noise._settings import flat_settings
            >>> flat = flat_settings(InputNoise(Gaussian(std=0.1), clamp=(0, 1), seed=0).settings())
            >>> [flat[k] for k in ("callback", "name", "noise", "noise/std", "p", "clamp", "seed", "scale")]
            ['InputNoise', 'input', 'Gaussian', 0.1, 1.0, [0.0, 1.0], 0, 1.0]
        """
        return {"callback": type(self).__name__, "name": self.name, **constructor_settings(self)}

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
        self._resolve_name(trainer)
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
        log_settings(trainer, f"lit_noise/{self.name}/", self.settings())
        warn_if_data_order_differs(trainer, self, NoiseCallback)
        self._constant = all(s.is_constant for s in self._schedules())
        self._resolved_at = None

    def _strengths(self, trainer: pl.Trainer, resolve: Callable[[Clock], T]) -> tuple[T, bool]:
        """``resolve(clock)`` for this batch, and whether it was computed now (values to log afresh).

        With every schedule constant it is computed once per ``scale`` (the controller's knob) and
        read back on later batches without a clock.
        """
        if self._resolved_at == self.scale:
            return self._resolved, False
        value = resolve(_NO_CLOCK if self._constant else self._clock(trainer))
        if self._constant:
            self._resolved, self._resolved_at = value, self.scale
        return value, True

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
        return self._generators.seeded(
            device, mix_counter(prefix + (trainer.current_epoch << 32) + batch_idx)
        )

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
