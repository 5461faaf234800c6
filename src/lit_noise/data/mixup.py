"""MixupDataModule: mixup and CutMix on the batch's device, scheduled, around any LightningDataModule."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, MutableMapping, Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.fabric.utilities.data import AttributeDict
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities.model_helpers import is_overridden
from torch import Tensor
from typing_extensions import override

from lit_noise._host_random import HostRandom
from lit_noise._rng import _MAX_SEED, GeneratorCache, _splitmix64, default_seed, mix_seed, stream_id
from lit_noise._settings import constructor_settings, log_settings
from lit_noise._validation import check_choice, check_int, check_range, check_seed, fail
from lit_noise.batch import BatchKey, normalize_key, read, write
from lit_noise.callbacks.base import flushes_logs, training_clock
from lit_noise.errors import ConfigurationError
from lit_noise.functional.mix import (
    MIX_MODES,
    MixMode,
    MixParams,
    _check_minmax,
    _float32,
    _host_generator_error,
    _MixOptions,
    _sample,
    mix_params,
    one_hot_smooth,
)
from lit_noise.noise.target import TARGET_FORMATS, TargetFormat
from lit_noise.schedules import Clock, Schedule, ScheduleLike, as_schedule
from lit_noise.soft_labels import SoftLabels

__all__ = ["MixupDataModule"]

_OWNER = "MixupDataModule"
_NO_CLOCK = Clock()
# Hooks answered by the wrapped DataModule itself: set as instance attributes, so that Lightning's
# `is_overridden` (which reads the instance) sees exactly what the inner DataModule defines.
_DELEGATED = (
    "prepare_data",
    "train_dataloader",
    "val_dataloader",
    "test_dataloader",
    "predict_dataloader",
    "on_before_batch_transfer",
    "transfer_batch_to_device",
)


def _schedule_arg(name: str, value: Any, low: float, high: float | None = None) -> Schedule:
    """A schedule (or number) whose values stay in ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, (Schedule, int, float)):
        raise fail(_OWNER, name, value, "a number or a lit_noise schedule")
    schedule = as_schedule(value, _OWNER, name)
    smallest, largest = schedule.min_max()
    if smallest < low or (high is not None and largest > high):
        bounds = f">= {low:g}" + (f" and <= {high:g}" if high is not None else "")
        shown = value if not isinstance(value, Schedule) else f"{value!r} (range {smallest:g}..{largest:g})"
        raise ConfigurationError(f"{_OWNER}: `{name}` must be {bounds}, got {shown}.")
    return schedule


def _callbacks(trainer: pl.Trainer) -> list[Callback]:
    """The trainer's callback list (an attribute the callback connector sets)."""
    callbacks: list[Callback] = trainer.callbacks  # type: ignore[attr-defined]
    return callbacks


class _MixLogger(Callback):
    """Logs what :class:`MixupDataModule` did to the batch, as ``mix/<value>``.

    ``LightningModule.log`` is not allowed in ``on_after_batch_transfer`` (where mixing happens), so
    the DataModule leaves its values here and this callback logs them from ``on_train_batch_start``
    of the same batch, at the trainer's logging interval.
    """

    def __init__(self, datamodule: MixupDataModule) -> None:
        self.datamodule = datamodule

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        log_settings(trainer, "lit_noise/mix/", self.datamodule.settings())

    @override
    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        pending = self.datamodule._pending_log
        self.datamodule._pending_log = None
        if pending is None or not flushes_logs(trainer):
            return
        values, params = pending
        lam = 1.0 if params is None else params.lam.mean()
        for name, value in {**values, "lam": lam}.items():
            pl_module.log(f"mix/{name}", value, on_step=True, on_epoch=False, batch_size=1)


class MixupDataModule(pl.LightningDataModule):
    """Wrap any LightningDataModule to train with mixup and/or CutMix, mixed on the batch's device.

    Every training batch is mixed in ``on_after_batch_transfer`` (after the move to the device,
    before any callback and ``training_step``); validation, test, predict and sanity-check batches
    pass through untouched. Everything else -- ``prepare_data``, ``setup``, the four dataloaders,
    the other transfer hooks, ``teardown``, the inner state in checkpoints and any attribute this
    class does not define (``dm.num_classes``, ``dm.batch_size`` ...) -- is the wrapped
    DataModule's.

    Semantics follow timm's ``Mixup``: mixup is active when ``mixup_alpha > 0``, CutMix when
    ``cutmix_alpha > 0`` (or ``cutmix_minmax`` is given); when both are, each draw picks CutMix with
    probability ``switch_prob``. A draw -- one per batch (``mode="batch"``), per pair of samples
    (``"pair"``: a sample and its partner share λ, method and box) or per sample (``"elem"``) --
    mixes with probability ``prob``, with λ ~ Beta(alpha, alpha) of the chosen method. Partners come
    from a seeded random permutation (one random cycle through the batch; random disjoint pairs in
    ``"pair"`` mode, where an odd batch leaves one sample unmixed), so odd batches and a batch of
    one work. Sample ``i`` becomes ``λ_i x_i + (1 - λ_i) x_j`` (mixup) or ``x_i`` with a box of
    ``x_j`` pasted in (CutMix: sides √(1-λ) of the image's last two dimensions, random centre,
    clipped; with ``correct_lam`` λ becomes the pasted-area fraction), and its target
    ``λ_i y_i + (1 - λ_i) y_j`` with label smoothing folded in (``(1 - ε) y + ε / C``). Every mode
    is vectorised, and the batch's tensors are not modified (the mixed ones replace them).

    Targets may be class indices ``(B,)``, :class:`~lit_noise.SoftLabels` or ``(B, C)``
    probabilities. They come out as ``SoftLabels`` -- the dominant class of the mixed distribution
    to every operation and metric, the distribution to ``cross_entropy``/``nll_loss`` -- or as
    plain ``(B, C)`` floats with ``target_format="probs"``. Callbacks see the mixed batch:
    :class:`~lit_noise.InputNoise` noises the mixed inputs; :class:`~lit_noise.TargetNoise`'s label
    smoothing smooths the mixed distribution, and its flips replace a flipped sample's target by
    the one-hot of its new class (drawn from the dominant class).

    Randomness is counter-based: each batch draws from a generator on its device seeded from
    (seed, epoch, batch index, rank) -- mode ``"batch"`` draws its single λ, method and box from
    a pure-Python :class:`~lit_noise.HostRandom` stream seeded from the same counters, with no
    tensor operation -- so the same seed gives the same mixes and a resumed run continues the
    stream (the seed and ``scale`` are saved in checkpoints, next to the wrapped DataModule's own
    state). The current values are logged as ``mix/mixup_alpha``,
    ``mix/cutmix_alpha``, ``mix/prob``, ``mix/label_smoothing`` and ``mix/lam`` (the batch's mean
    own-sample weight; 1 for a batch that was not mixed) at the logging interval, through a small
    callback added to the trainer while fitting; at train start that callback also logs the
    settings (:meth:`settings`) as hyperparameters ``lit_noise/mix/<setting>``. A batch of one
    sample has no partner: it is not mixed (only label-smoothed), with a one-time warning.

    Note:
        Lightning calls only one ``on_after_batch_transfer``: the DataModule's when it defines one
        (here always), so a LightningModule's hook would be skipped. This class therefore calls the
        wrapped DataModule's hook, or else the LightningModule's, before mixing; Lightning still
        warns that both define the hook.

    Args:
        datamodule: the DataModule to wrap.
        num_classes: number of classes (default: ``datamodule.num_classes`` when it has one).
        mixup_alpha: alpha of mixup's Beta(alpha, alpha), a number or a schedule; 0 turns mixup off.
        cutmix_alpha: alpha of CutMix's Beta(alpha, alpha), a number or a schedule; 0 turns CutMix off.
        cutmix_minmax: ``(min, max)`` fractions of the image for CutMix box sides drawn uniformly
            (then λ is the pasted-area fraction); turns CutMix on whatever ``cutmix_alpha`` is.
        prob: probability that a draw mixes, a number or a schedule in [0, 1].
        switch_prob: probability of CutMix rather than mixup when both are active.
        mode: ``"batch"``, ``"pair"`` or ``"elem"``.
        correct_lam: set a CutMix λ to the pasted-area fraction (boxes are clipped at the border).
        label_smoothing: ε in [0, 1] folded into the mixed targets, a number or a schedule.
        input_key: where the inputs are in the batch (index, key or path; see
            :class:`~lit_noise.InputNoise`).
        target_key: where the targets are.
        seed: base seed (``None``: drawn from torch's RNG at setup and shared from rank 0).
        target_format: ``"soft_labels"`` (default) or ``"probs"`` for plain ``(B, C)`` floats.
        scale: the controller's knob, multiplying ``prob`` and ``label_smoothing`` (each clipped to
            1); 0 leaves every batch unmixed and unsmoothed. Saved in checkpoints.

    Settings the others leave unread, as timm's ``Mixup`` leaves them, warn once when the module is
    built: ``cutmix_alpha`` or ``correct_lam=False`` with ``cutmix_minmax``, ``correct_lam=False``
    without CutMix, and a ``switch_prob`` other than 0.5 unless both methods are on.

    Example:
        >>> import lightning.pytorch as pl
        >>> from lit_noise import Linear, MixupDataModule
        >>> from lit_noise.examples import Classifier, DigitsDataModule
        >>> data = MixupDataModule(DigitsDataModule(), mixup_alpha=0.2, cutmix_alpha=1.0, mode="elem",
        ...                        prob=Linear(start=1.0, end=0.0, begin=0.9, until=1.0), seed=0)
        >>> data.num_classes  # taken from the wrapped DataModule
        10
        >>> trainer = pl.Trainer(max_epochs=1, limit_train_batches=2, limit_val_batches=1, logger=False,
        ...                      enable_checkpointing=False, enable_progress_bar=False,
        ...                      enable_model_summary=False)
        >>> trainer.fit(Classifier(), data)
        >>> data.last_values["prob"], data.last_params.lam.shape
        (1.0, torch.Size([64]))
    """

    def __init__(
        self,
        datamodule: pl.LightningDataModule,
        num_classes: int | None = None,
        mixup_alpha: ScheduleLike = 1.0,
        cutmix_alpha: ScheduleLike = 0.0,
        cutmix_minmax: Sequence[float] | None = None,
        prob: ScheduleLike = 1.0,
        switch_prob: float = 0.5,
        mode: MixMode = "batch",
        correct_lam: bool = True,
        label_smoothing: ScheduleLike = 0.0,
        input_key: BatchKey = 0,
        target_key: BatchKey = 1,
        seed: int | None = None,
        target_format: TargetFormat = "soft_labels",
        scale: float = 1.0,
    ) -> None:
        super().__init__()
        if not isinstance(datamodule, pl.LightningDataModule):
            raise fail(_OWNER, "datamodule", type(datamodule).__name__, "a LightningDataModule")
        self.__dict__["datamodule"] = datamodule
        if num_classes is None:
            num_classes = getattr(datamodule, "num_classes", None)
            if num_classes is None:
                raise ConfigurationError(
                    f"{_OWNER}: `num_classes` is required (the number of classes of the targets);"
                    f" {type(datamodule).__name__} has no `num_classes` attribute to take it from."
                )
        self.num_classes = check_int(_OWNER, "num_classes", num_classes, 2)
        self.mixup_alpha = _schedule_arg("mixup_alpha", mixup_alpha, 0.0)
        self.cutmix_alpha = _schedule_arg("cutmix_alpha", cutmix_alpha, 0.0)
        self.cutmix_minmax = _check_minmax(_OWNER, cutmix_minmax)
        self.prob = _schedule_arg("prob", prob, 0.0, 1.0)
        self.switch_prob = check_range(_OWNER, "switch_prob", switch_prob, 0.0, 1.0)
        self.mode: str = check_choice(_OWNER, "mode", mode, MIX_MODES)
        if not isinstance(correct_lam, bool):
            raise fail(_OWNER, "correct_lam", correct_lam, "True or False")
        self.correct_lam = correct_lam
        self.label_smoothing = _schedule_arg("label_smoothing", label_smoothing, 0.0, 1.0)
        self.input_key = input_key
        self.target_key = target_key
        self._input_path = self._key_path("input_key", input_key)
        self._target_path = self._key_path("target_key", target_key)
        self.seed = None if seed is None else check_seed(_OWNER, "seed", seed)
        self.target_format: str = check_choice(_OWNER, "target_format", target_format, TARGET_FORMATS)
        self.scale = check_range(_OWNER, "scale", scale, 0.0)
        #: The values used for the latest training batch (after ``scale``).
        self.last_values: dict[str, float] = {}
        #: The latest training batch's draw (``None`` when it was not mixed).
        self.last_params: MixParams | None = None

        self._mixup_possible = self.mixup_alpha.min_max()[1] > 0.0
        self._cutmix_possible = self.cutmix_minmax is not None or self.cutmix_alpha.min_max()[1] > 0.0
        self._warn_unread_settings(switch_prob)
        self._constant = all(s.is_constant for s in self._schedules())
        self._resolved: tuple[float, dict[str, float]] | None = None
        self._options: tuple[dict[str, float], tuple[int, int] | None, _MixOptions] | None = None
        self._stream = stream_id(_OWNER)
        self._device_generators = GeneratorCache()
        self._seed_prefix: tuple[tuple[int, int], int] | None = None
        self._logger = _MixLogger(self)
        self._pending_log: tuple[dict[str, float], MixParams | None] | None = None
        self._fit_ready = False
        self._total_steps = math.inf
        self._rank = 0
        self._target_kind: str | None = None
        self._warned_single = False
        self._module_hook: tuple[Any, Any] | None = None
        self._inner_hook = (
            datamodule.on_after_batch_transfer
            if is_overridden("on_after_batch_transfer", datamodule)
            else None
        )
        for name in _DELEGATED:
            setattr(self, name, getattr(datamodule, name))
        self.prepare_data_per_node = datamodule.prepare_data_per_node
        self.allow_zero_length_dataloader_with_multiple_devices = (
            datamodule.allow_zero_length_dataloader_with_multiple_devices
        )
        self._log_hyperparams = datamodule._log_hyperparams

    def _warn_unread_settings(self, switch_prob: float) -> None:
        """One warning for each setting these settings leave unread (timm's Mixup ignores them too)."""
        unread = []
        if self.cutmix_minmax is not None and self.cutmix_alpha.min_max()[1] > 0.0:
            unread.append(
                "`cutmix_alpha` is not read with `cutmix_minmax`: the box sides are drawn from cutmix_minmax"
                " and λ is the pasted area (set cutmix_alpha=0)"
            )
        if self.cutmix_minmax is not None and not self.correct_lam:
            unread.append(
                "`correct_lam=False` has no effect with `cutmix_minmax`: λ is always the pasted area"
            )
        elif not self.correct_lam and not self._cutmix_possible:
            unread.append("`correct_lam` is read only with CutMix (cutmix_alpha > 0 or cutmix_minmax)")
        if switch_prob != 0.5 and not (self._mixup_possible and self._cutmix_possible):
            unread.append(
                f"`switch_prob` ({switch_prob}) is read only when both mixup and CutMix are on"
                f" (mixup_alpha {self.mixup_alpha!r}, cutmix_alpha {self.cutmix_alpha!r},"
                f" cutmix_minmax {self.cutmix_minmax!r})"
            )
        for message in unread:
            warnings.warn(f"{_OWNER}: {message}.", UserWarning, stacklevel=3)

    # ------------------------------------------------------------------ delegation

    @property
    def datamodule(self) -> pl.LightningDataModule:
        """The wrapped DataModule."""
        inner: pl.LightningDataModule = self.__dict__["datamodule"]
        return inner

    @property
    def trainer(self) -> pl.Trainer | None:
        """The trainer, shared with the wrapped DataModule."""
        trainer: pl.Trainer | None = self.__dict__.get("_trainer")
        return trainer

    @trainer.setter
    def trainer(self, trainer: pl.Trainer | None) -> None:
        self.__dict__["_trainer"] = trainer
        inner = self.__dict__.get("datamodule")
        if inner is not None:
            inner.trainer = trainer

    def __getattr__(self, name: str) -> Any:
        inner = self.__dict__.get("datamodule")
        if inner is None or name.startswith("_"):
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        return getattr(inner, name)

    @property
    @override
    def hparams(self) -> AttributeDict | MutableMapping[str, Any]:
        """The wrapped DataModule's hyperparameters."""
        return self.datamodule.hparams

    @property
    @override
    def hparams_initial(self) -> AttributeDict:
        """The wrapped DataModule's initial hyperparameters."""
        return self.datamodule.hparams_initial

    @override
    def setup(self, stage: str) -> None:
        """Set up the wrapped DataModule; when fitting, draw the seed and attach the mix logger."""
        self.datamodule.setup(stage)
        if stage != "fit":
            return
        self._fit_ready = False
        trainer = self.trainer
        if trainer is None:
            return
        if self.seed is None:
            self.seed = int(trainer.strategy.broadcast(default_seed(), src=0))
        callbacks = _callbacks(trainer)
        if self._logger not in callbacks:
            callbacks.append(self._logger)

    @override
    def teardown(self, stage: str) -> None:
        """Tear down the wrapped DataModule and detach the mix logger."""
        self.datamodule.teardown(stage)
        self._detach_logger()

    @override
    def on_exception(self, exception: BaseException) -> None:
        """Pass the exception on to the wrapped DataModule and detach the mix logger."""
        self.datamodule.on_exception(exception)
        self._detach_logger()

    def _detach_logger(self) -> None:
        trainer = self.trainer
        if trainer is not None and self._logger in _callbacks(trainer):
            _callbacks(trainer).remove(self._logger)

    @override
    def state_dict(self) -> dict[str, Any]:
        """The seed and ``scale``, plus the wrapped DataModule's state under ``"datamodule"``."""
        state: dict[str, Any] = {"seed": self.seed, "scale": self.scale}
        inner = self.datamodule.state_dict()
        if inner:
            state["datamodule"] = inner
        return state

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the seed and ``scale`` (defaults for missing keys) and the wrapped state."""
        self.seed = state_dict.get("seed", self.seed)
        self.scale = float(state_dict.get("scale", self.scale))
        if "datamodule" in state_dict:
            self.datamodule.load_state_dict(state_dict["datamodule"])

    def settings(self) -> dict[str, Any]:
        """The constructor's arguments as this DataModule holds them (the wrapped one by its type).

        Logged at train start as hyperparameters ``lit_noise/mix/<setting>``.

        Example:
            >>> from lit_noise.examples import DigitsDataModule
            >>> MixupDataModule(DigitsDataModule(), mixup_alpha=0.2, seed=0).settings()["mode"]
            'batch'
        """
        return constructor_settings(self)

    def __repr__(self) -> str:
        return (
            f"{_OWNER}({type(self.datamodule).__name__}, num_classes={self.num_classes},"
            f" mixup_alpha={self.mixup_alpha!r}, cutmix_alpha={self.cutmix_alpha!r},"
            f" cutmix_minmax={self.cutmix_minmax!r}, prob={self.prob!r}, switch_prob={self.switch_prob},"
            f" mode={self.mode!r}, correct_lam={self.correct_lam},"
            f" label_smoothing={self.label_smoothing!r}, seed={self.seed}, scale={self.scale})"
        )

    # ------------------------------------------------------------------ mixing

    @override
    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Run the hook Lightning would run without this wrapper, then mix a training batch."""
        trainer = self.trainer
        if self._inner_hook is not None:
            batch = self._inner_hook(batch, dataloader_idx)
        elif trainer is not None:
            module_hook = self._module_hook_of(trainer.lightning_module)
            if module_hook is not None:
                batch = module_hook(batch, dataloader_idx)
        if trainer is None or not trainer.training or trainer.sanity_checking:
            return batch
        return self._mix(batch, trainer)

    def _module_hook_of(self, module: pl.LightningModule | None) -> Any:
        """The LightningModule's own ``on_after_batch_transfer`` if it defines one (cached per module)."""
        cached = self._module_hook
        if cached is None or cached[0] is not module:
            hook = None
            if module is not None and is_overridden("on_after_batch_transfer", module):
                hook = module.on_after_batch_transfer
            self._module_hook = cached = (module, hook)
        return cached[1]

    def _schedules(self) -> Iterable[Schedule]:
        return (self.mixup_alpha, self.cutmix_alpha, self.prob, self.label_smoothing)

    @staticmethod
    def _key_path(name: str, key: BatchKey) -> tuple[int | str, ...]:
        path = normalize_key(key, _OWNER, name)
        if path is None:
            raise fail(
                _OWNER, name, key, "an index, key or path of the tensor inside a list, tuple or dict batch"
            )
        return path

    def _start_fit(self, trainer: pl.Trainer, x: Tensor, y: Tensor) -> None:
        """First training batch of a fit: training length, rank and every check on the batch."""
        self._total_steps = float(trainer.estimated_stepping_batches)
        if not 0 < self._total_steps < math.inf and any("progress" in s.units() for s in self._schedules()):
            raise ConfigurationError(
                f"{_OWNER}: a schedule in unit 'progress' needs a finite training length; set the"
                " Trainer's `max_epochs` or `max_steps`."
            )
        self._rank = trainer.global_rank
        if self.seed is None:  # not set up by a trainer
            self.seed = default_seed()
        self._check_inputs(x)
        self._target_kind = None
        self._check_targets(x, y, full=True)
        self._warned_single = False
        self._fit_ready = True

    def _check_inputs(self, x: Tensor) -> None:
        if self._mixup_possible and not x.is_floating_point():
            raise ConfigurationError(
                f"{_OWNER}: mixup blends inputs, so they must be floating point, got dtype {x.dtype};"
                " convert them in the DataModule, or use CutMix only (`mixup_alpha=0`)."
            )
        if self._cutmix_possible and x.ndim < 3:
            raise ConfigurationError(
                f"{_OWNER}: CutMix pastes boxes of the last two dimensions, so the inputs must be at"
                f" least (B, H, W) or (B, C, H, W), got shape {tuple(x.shape)}; use mixup only"
                " (`cutmix_alpha=0`) for these inputs."
            )

    def _check_targets(self, x: Tensor, y: Tensor, full: bool) -> None:
        """Check the targets' kind and width (every batch) and class range (first batch, ``full``)."""
        if (
            not full
            and self._target_kind == "indices"
            and type(y) is Tensor
            and y.dtype == torch.int64
            and y.ndim == 1
            and y.shape[0] == x.shape[0]
        ):
            return  # class indices again (their range is F.one_hot's, and the identity gather's, check)
        if y.ndim == 0 or y.shape[0] != x.shape[0]:
            raise ConfigurationError(
                f"{_OWNER}: inputs and targets must have the same batch size, got shapes"
                f" {tuple(x.shape)} and {tuple(y.shape)}."
            )
        if isinstance(y, SoftLabels) or (y.is_floating_point() and y.ndim == 2):
            kind, width = "soft", (y.soft if isinstance(y, SoftLabels) else y).shape
            if len(width) != 2 or width[1] != self.num_classes:
                raise ConfigurationError(
                    f"{_OWNER}: soft targets must have shape (B, num_classes) = (B, {self.num_classes}),"
                    f" got {tuple(width)}."
                )
        elif y.ndim == 1 and not y.is_floating_point() and not y.is_complex() and y.dtype != torch.bool:
            kind = "indices"
            if full and y.numel():  # later batches: F.one_hot refuses classes out of range
                low, high = (int(v) for v in y.aminmax())
                if low < 0 or high >= self.num_classes:
                    raise ConfigurationError(
                        f"{_OWNER}: class targets must lie in [0, {self.num_classes}) (`num_classes`),"
                        f" got values from {low} to {high}."
                    )
        else:
            raise self._bad_targets(y)
        if self._target_kind not in (None, kind):
            raise ConfigurationError(
                f"{_OWNER}: the targets changed from {self._target_kind} to {kind} between batches."
            )
        self._target_kind = kind

    def _bad_targets(self, y: Tensor) -> ConfigurationError:
        return ConfigurationError(
            f"{_OWNER}: targets must be class indices (B,), SoftLabels or (B, {self.num_classes})"
            f" probabilities, got dtype {y.dtype} and shape {tuple(y.shape)}."
        )

    def _resolve(self, trainer: pl.Trainer | None) -> dict[str, float]:
        """The current values, ``prob`` and ``label_smoothing`` multiplied by ``scale`` (max 1).

        Constant schedules are resolved once per ``scale`` (the controller's knob) and reused.
        """
        if self._constant:
            cached = self._resolved
            if cached is None or cached[0] != self.scale:
                self._resolved = cached = (self.scale, self._values(_NO_CLOCK))
            return cached[1]
        return self._values(_NO_CLOCK if trainer is None else training_clock(trainer, self._total_steps))

    def _values(self, clock: Clock) -> dict[str, float]:
        return {
            "mixup_alpha": self.mixup_alpha(clock),
            "cutmix_alpha": self.cutmix_alpha(clock),
            "prob": min(self.prob(clock) * self.scale, 1.0),
            "label_smoothing": min(self.label_smoothing(clock) * self.scale, 1.0),
        }

    def _batch_generators(
        self, x: Tensor, epoch: int, batch_idx: int
    ) -> tuple[torch.Generator, HostRandom | None]:
        """A batch's generators, seeded from (seed, stream, rank, epoch, batch index).

        One on the batch's device (partners, per-sample draws), and in mode ``"batch"`` a
        pure-Python stream on the host (its single draw, made without a tensor operation; ``None``
        in the other modes, which do not use it).
        """
        seed = self.seed if self.seed is not None else 0
        key = (seed, self._rank)
        if self._seed_prefix is None or self._seed_prefix[0] != key:
            # mix_seed hashes its counters one after the other: keep the state after the prefix.
            self._seed_prefix = (key, _splitmix64(mix_seed(seed, self._stream, self._rank)))
        # The device seed is mix_seed(prefix, counter), the host one mix_seed(prefix, counter, 1),
        # continued from the kept state (one hash each instead of two and three).
        state = _splitmix64(self._seed_prefix[1] ^ ((epoch << 32) + batch_idx))
        host = HostRandom(_splitmix64(state ^ 1) & _MAX_SEED) if self.mode == "batch" else None
        return self._device_generators.seeded(x.device, state & _MAX_SEED), host

    def mix_tensors(
        self,
        x: Tensor,
        y: Tensor,
        values: dict[str, float],
        generator: torch.Generator | None = None,
        host_generator: torch.Generator | HostRandom | None = None,
    ) -> tuple[Tensor, Tensor, MixParams | None]:
        """Mix one batch's inputs and targets with resolved ``values`` (no trainer needed).

        ``generator`` lives on the batch's device, ``host_generator`` on the host (mode ``"batch"``
        draws its λ and box there: a CPU ``torch.Generator`` or a :class:`~lit_noise.HostRandom`).
        Returns the mixed inputs, the mixed ``(B, C)`` target distributions and the draw (``None``
        when nothing was mixed: ``prob`` is 0, no method is active, or the batch has a single
        sample, which has no partner). A ``host_generator`` in modes ``"pair"`` and ``"elem"``,
        which draw nothing on the host, is a :class:`~lit_noise.ConfigurationError`.
        """
        if host_generator is not None and self.mode != "batch":
            raise _host_generator_error(f"{_OWNER}.mix_tensors", self.mode)
        y_soft = one_hot_smooth(y, self.num_classes, values["label_smoothing"])
        mixup_alpha, cutmix_alpha, prob = values["mixup_alpha"], values["cutmix_alpha"], values["prob"]
        inactive = mixup_alpha <= 0.0 and cutmix_alpha <= 0.0 and self.cutmix_minmax is None
        if prob <= 0.0 or inactive or x.shape[0] < 2:
            return x, y_soft, None
        size = (x.shape[-2], x.shape[-1]) if x.ndim >= 3 else None
        cached = self._options
        if cached is None or cached[0] is not values or cached[1] != size:
            # sample_mix_params' checks hold (the constructor and the first batch made them):
            # build its options once per resolved values and image size, then draw directly.
            options = _MixOptions(
                mixup_alpha, cutmix_alpha, self.cutmix_minmax, prob, self.switch_prob, self.correct_lam, size
            )
            self._options = cached = (values, size, options)
        params = _sample(x.shape[0], generator, x.device, self.mode, cached[2], host_generator)
        x_mixed, y_mixed = mix_params(x, y_soft, params)
        return x_mixed, y_mixed, params

    def _mix(self, batch: Any, trainer: pl.Trainer) -> Any:
        x = read(batch, self._input_path, _OWNER)
        y = read(batch, self._target_path, _OWNER)
        if not self._fit_ready:
            self._start_fit(trainer, x, y)
        else:
            self._check_targets(x, y, full=False)
        values = self._resolve(trainer)
        batch_idx = trainer.fit_loop.epoch_loop.batch_idx + 1  # the loop counts this batch after the transfer
        generator, host_generator = self._batch_generators(x, trainer.current_epoch, batch_idx)
        x_mixed, y_mixed, params = self.mix_tensors(x, y, values, generator, host_generator)
        if x.shape[0] == 1 and not self._warned_single:
            self._warned_single = True
            warnings.warn(
                f"{_OWNER}: a training batch has a single sample, which has no partner to mix with,"
                " so it is trained on unmixed (label smoothing still applies) and logs mix/lam 1.0."
                " Set `drop_last=True` on the training loader to drop such batches.",
                UserWarning,
                stacklevel=2,
            )
        targets: Tensor = y_mixed
        if self.target_format == "soft_labels":
            hard = _dominant_class(y, y_mixed, params, values["label_smoothing"])
            targets = SoftLabels(y_mixed) if hard is None else SoftLabels._wrap(y_mixed, hard)
        batch = _replace(batch, self._input_path, x_mixed)
        batch = _replace(batch, self._target_path, targets)
        self.last_values = values
        self.last_params = params
        self._pending_log = (values, params)
        return batch


def _dominant_class(y: Tensor, y_mixed: Tensor, params: MixParams | None, smoothing: float) -> Tensor | None:
    """The argmax of the mixed one-hot rows when it is known without computing it, else ``None``.

    Without label smoothing, a batch mixed with one host-held weight ``w`` (mode ``"batch"``) has
    rows ``lerp(one_hot(y[index]), one_hot(y), w)``, computed with ``w`` rounded to the rows'
    dtype: the own class wins for ``w > 1/2``, the partner's for ``w < 1/2`` (``torch.lerp`` gives
    ``w`` or ``1 - (1 - w)`` against ``1 - w``); a tie (``w == 1/2``) is left to ``argmax``.
    """
    if smoothing != 0.0 or type(y) is not Tensor or y.dtype != torch.int64 or y.ndim != 1:
        return None  # smoothed, soft (SoftLabels, probabilities) or sequence targets: argmax
    if params is None:
        return y
    if params.host is None or y_mixed.dtype not in _WEIGHT_ROUNDING:
        return None
    weight = _WEIGHT_ROUNDING[y_mixed.dtype](params.host[0])
    if weight > 0.5:
        return y
    return y.index_select(0, params.index) if weight < 0.5 else None


#: How ``torch.lerp`` rounds a Python weight for rows of each dtype.
_WEIGHT_ROUNDING: dict[torch.dtype, Callable[[float], float]] = {
    torch.float32: _float32,
    torch.float64: float,
}


def _replace(batch: Any, path: tuple[int | str, ...], value: Tensor) -> Any:
    """Put ``value`` at ``path``; a tuple at the top of the batch is rebuilt (the hook returns it)."""
    if isinstance(batch, tuple):
        items = list(batch)
        write(items, path, value, _OWNER)
        return type(batch)(*items) if hasattr(batch, "_fields") else tuple(items)
    write(batch, path, value, _OWNER)
    return batch
