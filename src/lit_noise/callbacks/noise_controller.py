"""NoiseController: turn the noise sources' ``scale`` from the validation metrics while fitting."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from typing_extensions import override

from lit_noise import reporting
from lit_noise._optional import require
from lit_noise._settings import constructor_settings, log_settings
from lit_noise._validation import fail
from lit_noise.callbacks.base import NoiseCallback, training_clock
from lit_noise.callbacks.layer_schedule import NoiseLayerSchedule
from lit_noise.callbacks.monitoring import require_validation
from lit_noise.control import ControlState, Decision, ScaleControl

# The module, not the class: lit_noise.data.mixup imports lit_noise.callbacks.base, so importing
# lit_noise.data first reaches this line while that module is still being initialised.
from lit_noise.data import mixup as _mixup
from lit_noise.errors import ConfigurationError
from lit_noise.layers import NoiseLayer

__all__ = ["HISTORY_FIELDS", "NoiseController"]

_OWNER = "NoiseController"
_PREFIX = "noise/controller"
#: The fields of a :attr:`NoiseController.history` row.
HISTORY_FIELDS = ("epoch", "scale", "clean", "robust", "decision", "new_scale")

#: A knob: the key it is logged and remembered under, and the object whose ``scale`` it sets.
_Knob = tuple[str, Any]


def _strengths(knob: Any, trainer: pl.Trainer) -> dict[str, float]:
    """What a knob's source applies at its current scale (empty where that is not cheap to know)."""
    if isinstance(knob, NoiseCallback):
        noise = knob._noise()
        return {} if noise is None else noise.resolve(training_clock(trainer), knob.scale)
    if isinstance(knob, _mixup.MixupDataModule):
        values = knob._resolve(trainer)
        return {k: values[k] for k in ("prob", "label_smoothing")}
    if isinstance(knob, NoiseLayer) and (
        knob.clock is not None or all(s.is_constant for s in knob.schedules().values())
    ):
        return knob.current()
    return {}


def find_sources(trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, list[_Knob]]:
    """Every noise source of a fit by name, each as the knobs (objects with a ``scale``) it turns.

    The Trainer's :class:`~lit_noise.NoiseCallback` s under their resolved names (read after
    ``setup``); a :class:`~lit_noise.MixupDataModule` as ``"mix"``; the model's noise layers as
    ``"layers"`` (one knob per layer) unless a :class:`~lit_noise.NoiseLayerSchedule` drives them,
    in which case that callback is their knob.
    """
    callbacks: list[Callback] = trainer.callbacks  # type: ignore[attr-defined]
    sources: dict[str, list[_Knob]] = {
        cb.name: [(cb.name, cb)] for cb in callbacks if isinstance(cb, NoiseCallback)
    }
    datamodule = getattr(trainer, "datamodule", None)
    if isinstance(datamodule, _mixup.MixupDataModule):
        sources["mix"] = [("mix", datamodule)]
    if not any(isinstance(cb, NoiseLayerSchedule) for cb in callbacks):
        layers = [(f"layers/{path}", m) for path, m in pl_module.named_modules() if isinstance(m, NoiseLayer)]
        if layers:
            if "layers" in sources:
                raise ConfigurationError(
                    f"{_OWNER}: a noise source is named 'layers', the name of the model's noise layers;"
                    " give it another `name=`."
                )
            sources["layers"] = layers
    return sources


def _may_skip_epochs(trainer: pl.Trainer) -> bool:
    """Whether a callback of the fit evaluates only every n-th validation (``every_n_epochs`` > 1)."""
    callbacks: list[Callback] = trainer.callbacks  # type: ignore[attr-defined]
    return any(int(getattr(cb, "every_n_epochs", 1) or 1) > 1 for cb in callbacks)


class NoiseController(Callback):
    """Close the loop: after each validation, turn the noise down when it hurts and up when it helps.

    After every validation of a fit (not the sanity check, not ``trainer.validate``), in
    ``on_validation_end`` -- when every callback's ``on_validation_epoch_end`` has logged, and
    before ``ModelCheckpoint`` (which Lightning runs last) saves -- the controller reads the clean
    metric ``monitor`` (and ``robust_monitor``) from ``trainer.callback_metrics`` and steps the
    rule of :class:`~lit_noise.control.ScaleControl` (documented there rule by rule). In short:

    * **down** by ``decrease`` when the clean metric has stayed more than ``tolerance`` below the
      reference for ``patience`` validations without improving;
    * **probe** when, with no ``reference`` given, the clean metric stops improving: the scale is
      lowered by ``decrease`` for up to ``patience`` validations; a probe that lifts the clean
      metric by more than ``tolerance`` is kept (the noise was hurting), one that does not is
      reverted (the noise was not hurting), and only then may the scale rise;
    * **up** by ``increase`` when the clean metric holds (not below the reference) and the robust
      metric is still improving, or the clean-minus-robust gap is wider than ``gap``, for
      ``patience`` validations;
    * within ``[min_scale, max_scale]``, with ``cooldown`` validations of rest after each change.

    The **reference** is ``reference`` when given, else the best clean value so far. A run that
    starts far too noisy plateaus low, the probes that lift the clean metric are kept one after the
    other, and the first probe that does not help is reverted: the noise settles where less noise
    stops paying instead of going to zero (see the README's adaptive preset for measured figures).

    **What it turns.** The controller's scale ``s`` (1 at the start) multiplies each target's own
    ``scale`` as it was when the controller took it over at fit start (the *base*, saved in the
    checkpoint), so a source built with ``scale=0.5`` runs at ``0.5 s``. Targets (``targets``, by
    name; default all): every :class:`~lit_noise.NoiseCallback` of the Trainer under its resolved
    name (``"input"``, ``"weight"``, ``"layers"`` for :class:`~lit_noise.NoiseLayerSchedule`,
    ...), a :class:`~lit_noise.MixupDataModule` as ``"mix"`` (its ``prob`` and ``label_smoothing``)
    and, without a ``NoiseLayerSchedule``, the model's noise layers as ``"layers"`` (each layer's
    ``scale``).

    **Logged** at each decision (epoch level, through the loggers with ``step=global_step``, and
    into ``trainer.callback_metrics`` so ``EarlyStopping`` and the CLI can read them):
    ``noise/controller/scale``, ``noise/controller/decision`` (-1 decrease or probe, 0 hold, +1
    increase or reverted probe), ``noise/controller/reference`` (once there is one), and for each
    target ``noise/controller/<source>/scale`` (its effective scale; ``layers/<path>/scale`` per
    noise layer) and its resolved strengths (``noise/controller/input/std``; mix: ``prob``,
    ``label_smoothing``). With ``verbose`` each change prints one line (rank zero). At the end of
    fitting (and, with ``figure_every_validation``, at each validation) a figure of the scale and
    the metrics over epochs goes to W&B or to PNG files (``noise/controller/history``, as the
    monitors' figures).

    **DDP.** Rank 0 decides and broadcasts its whole state (``trainer.strategy.broadcast``), so
    every rank applies the same scale. **Resume.** The state (scale, reference, counters, probe,
    bases and the history of (epoch, scale, clean, robust, decision)) is in the checkpoint; a
    resumed run continues the same decisions.

    **EarlyStopping and ModelCheckpoint.** A checkpoint saved at a validation holds the state after
    that validation's decision. A checkpoint chosen by ``val/acc`` may come from a different noise
    level than the last epoch (the best clean accuracy is often reached right after a probe
    lowered the noise); ``noise/controller/scale`` is logged next to it. ``EarlyStopping`` on the
    clean metric may stop during a probe; to read ``noise/controller/*`` from it, list the
    controller before it in ``callbacks``.

    Args:
        monitor: the clean metric (logged by the model at validation), e.g. ``"val/acc"``.
        mode: ``"max"`` if higher ``monitor`` (and ``robust_monitor``) values are better, else ``"min"``.
        tolerance: margin of every comparison (>= 0), in the metric's units.
        robust_monitor: a robustness metric, e.g. ``"val/robust/mean_acc"`` of
            :class:`~lit_noise.RobustnessMonitor` (at every epoch); ``None``: the scale only goes
            down (and back up when a probe is reverted).
        decrease: factor of a decrease or a probe, in (0, 1).
        increase: factor of an increase, >= 1.
        patience: validations a rule must hold before it acts (>= 1), and a probe's length.
        cooldown: validations after each change in which no new change starts (>= 0).
        min_scale: lowest controller scale (>= 0).
        max_scale: highest controller scale (>= ``min_scale``).
        targets: names of the sources to drive; ``None``: all of them.
        reference: a fixed reference value of ``monitor``; ``None``: estimated within the run.
        gap: clean-minus-robust gap above which the scale may rise (>= 0; needs ``robust_monitor``);
            ``None`` (default): off, because a sensible gap depends on the corruption suite.
        verbose: print a line for each change (rank zero).
        log_figures: log the history figure at the end of fitting (needs matplotlib, the
            ``plots`` extra).
        figure_every_validation: with ``log_figures``, also log it after every validation.

    A fit that ends during the clean warm-up warns that its sources trained without noise; when
    fitting raises, the sources get back the scales they had before the controller took them
    over. With a callback that evaluates only every n-th validation (a RobustnessMonitor's
    ``every_n_epochs > 1``), the robust metric is read when it was evaluated again (Lightning keeps
    the last value otherwise; a value equal to the previous one counts as not evaluated) and may
    first appear after the first validation.

    Raises:
        ConfigurationError: here for bad arguments; at fit start for a ``targets`` name that
            matches no source (listing the sources), a fit with no noise source at all, or a fit
            that will not validate (``limit_val_batches=0``, no validation data or
            ``validation_step``, ``check_val_every_n_epoch`` > ``max_epochs``), before any noise
            changes; at the first validation for a ``monitor`` or ``robust_monitor`` that is not
            logged (listing the logged keys).

    Example:
        >>> from lit_noise import Gaussian, InputNoise
        >>> from lit_noise.examples import Classifier, DigitsDataModule
        >>> controller = NoiseController(patience=1, cooldown=0, verbose=False, log_figures=False)
        >>> trainer = pl.Trainer(max_epochs=3, limit_train_batches=2, logger=False,
        ...     enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        ...     callbacks=[InputNoise(Gaussian(std=2.0), clamp=(0, 1), seed=0), controller])
        >>> trainer.fit(Classifier(), DigitsDataModule())
        >>> [row[0] for row in controller.history]  # one decision per epoch
        [0, 1, 2]
        >>> controller.targets_scales() == {"input": controller.scale}
        True
    """

    # `mode` ... `max_scale`, `reference`, `gap` and `warmup` are ScaleControl's arguments again, on
    # purpose (`duplicates` pairs them): the callback must list them itself to be built from YAML and
    # LightningCLI with their types and defaults, and ScaleControl, the torch-free rule they set,
    # takes them as its own API; ScaleControl checks them (one place for their validation).
    # tests/test_repeated_signatures.py keeps the two lists' types and defaults equal.
    def __init__(
        self,
        monitor: str = "val/acc",
        mode: Literal["min", "max"] = "max",
        tolerance: float = 0.01,
        robust_monitor: str | None = None,
        decrease: float = 0.5,
        increase: float = 1.25,
        patience: int = 2,
        cooldown: int = 1,
        min_scale: float = 0.0,
        max_scale: float = 4.0,
        targets: Sequence[str] | None = None,
        reference: float | None = None,
        gap: float | None = None,
        warmup: int | None = None,
        verbose: bool = True,
        log_figures: bool = True,
        figure_every_validation: bool = False,
    ) -> None:
        if not isinstance(monitor, str) or not monitor:
            raise fail(_OWNER, "monitor", monitor, "a metric name")
        if robust_monitor is not None and (not isinstance(robust_monitor, str) or not robust_monitor):
            raise fail(_OWNER, "robust_monitor", robust_monitor, "None or a metric name")
        if gap is not None and robust_monitor is None:
            raise fail(
                _OWNER,
                "gap",
                gap,
                "None without `robust_monitor` (the gap is the clean minus the robust metric)",
            )
        if isinstance(targets, str):
            targets = [targets]
        if targets is not None and (
            not isinstance(targets, Sequence)
            or not targets
            or not all(isinstance(t, str) and t for t in targets)
        ):
            raise fail(_OWNER, "targets", targets, "None or a non-empty list of source names")
        for name, flag in (
            ("verbose", verbose),
            ("log_figures", log_figures),
            ("figure_every_validation", figure_every_validation),
        ):
            if not isinstance(flag, bool):
                raise fail(_OWNER, name, flag, "True or False")
        self.monitor = monitor
        self.robust_monitor = robust_monitor
        self.targets = None if targets is None else list(dict.fromkeys(targets))
        self.verbose = verbose
        self.log_figures = log_figures
        self.figure_every_validation = figure_every_validation
        if figure_every_validation and not log_figures:
            raise fail(
                _OWNER, "figure_every_validation", True, "False when `log_figures` is False (no figure)"
            )
        if log_figures:
            require("matplotlib", _OWNER, "log_figures=True (pass log_figures=False to run without figures)")
        self.control = ScaleControl(
            mode,
            tolerance,
            decrease,
            increase,
            patience,
            cooldown,
            min_scale,
            max_scale,
            reference,
            gap,
            warmup=warmup,
            owner=_OWNER,
        )
        #: Each knob's scale when the controller took it over, by knob key.
        self.bases: dict[str, float] = {}
        self._knobs: list[_Knob] = []
        self._validated = False
        self._last_robust: float | None = None

    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(monitor=self.monitor, targets=self.targets)

    @property
    def scale(self) -> float:
        """The controller's current scale (1 at the start)."""
        return self.control.state.scale

    @property
    def history(self) -> list[tuple[int, float, float, float | None, int, float]]:
        """One row per decision: epoch, scale trained with, clean, robust, code, new scale."""
        return self.control.state.history

    def targets_scales(self) -> dict[str, float]:
        """The effective ``scale`` of every knob it drives, by knob key (``"input"``, ``"layers/0"``)."""
        return {key: float(knob.scale) for key, knob in self._knobs}

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._validated = False
        sources = find_sources(trainer, pl_module)
        if not sources:
            raise ConfigurationError(
                f"{_OWNER}: the fit has no noise source to drive (no lit_noise noise callback, no"
                " MixupDataModule, no noise layer in the model); add one or remove the controller."
            )
        names = self.targets if self.targets is not None else list(sources)
        unknown = [name for name in names if name not in sources]
        if unknown:
            raise fail(
                _OWNER,
                "targets",
                self.targets,
                "names of the fit's noise sources: " + ", ".join(sorted(sources)),
            )
        self._knobs = [knob for name in names for knob in sources[name]]
        for key, knob in self._knobs:
            self.bases.setdefault(key, float(knob.scale))
        require_validation(trainer, pl_module, _OWNER, "decides after each validation")
        self._last_robust = None
        self._apply()

    def settings(self) -> dict[str, Any]:
        """Every constructor argument as held, logged at train start as ``lit_noise/controller/<arg>``.

        Example:
            >>> settings = NoiseController(patience=3, log_figures=False).settings()
            >>> settings["callback"], settings["patience"], settings["reference"], settings["warmup"]
            ('NoiseController', 3, None, 1)
        """
        rule = constructor_settings(self.control)
        rule.pop("scale", None)
        rule.pop("owner", None)
        return {"callback": _OWNER, **constructor_settings(self), **rule}

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        log_settings(trainer, "lit_noise/controller/", self.settings())

    def _apply(self) -> None:
        for key, knob in self._knobs:
            knob.scale = self.bases[key] * self.control.state.scale

    def _read(self, trainer: pl.Trainer, key: str | None) -> float | None:
        if key is None:
            return None
        value = trainer.callback_metrics.get(key)
        if key != self.monitor and _may_skip_epochs(trainer):
            # Lightning keeps a metric in callback_metrics until it is logged again, so the robust
            # metric of a monitor that skips epochs (every_n_epochs > 1) is still there, unchanged,
            # at the validations it skips: then a value equal to the last one read counts as not
            # evaluated (for the rule an unchanged value is no improvement either way), and a
            # metric not logged yet is no error.
            current = None if value is None else float(value)
            fresh = current is not None and current != self._last_robust
            self._last_robust = current
            if not fresh:
                return None
        elif value is None and self._validated and key != self.monitor:
            return None
        if value is None:
            logged = ", ".join(sorted(trainer.callback_metrics)) or "none"
            name = "monitor" if key == self.monitor else "robust_monitor"
            raise ConfigurationError(
                f"{_OWNER}: `{name}` must be a metric logged at validation, got {key!r}; logged: {logged}."
            )
        return float(value)

    @override
    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING:
            return
        clean = self._read(trainer, self.monitor)
        robust = self._read(trainer, self.robust_monitor)
        self._validated = True
        assert clean is not None
        previous = self.control.state.scale
        decision = self.control.step(clean, robust, trainer.current_epoch) if trainer.is_global_zero else None
        payload = (decision, self.control.state.to_dict())
        decision, state = trainer.strategy.broadcast(payload, src=0)
        assert decision is not None
        self.control.state = ControlState.from_dict(state)
        self._apply()
        self._report(trainer, decision, previous, clean)
        if self.log_figures and self.figure_every_validation:
            self._figure(trainer)

    def metrics(self, trainer: pl.Trainer, decision: Decision) -> dict[str, float]:
        """The values logged for ``decision``: scale, decision, reference, each knob's scale and strengths."""
        values = {f"{_PREFIX}/scale": decision.scale, f"{_PREFIX}/decision": float(decision.code)}
        reference = self.control.state.reference(self.control.reference)
        if reference is not None:
            values[f"{_PREFIX}/reference"] = float(reference)
        for key, knob in self._knobs:
            values[f"{_PREFIX}/{key}/scale"] = float(knob.scale)
            for param, value in _strengths(knob, trainer).items():
                values[f"{_PREFIX}/{key}/{param}"] = float(value)
        return values

    def _report(self, trainer: pl.Trainer, decision: Decision, previous: float, clean: float) -> None:
        values = self.metrics(trainer, decision)
        for name, value in values.items():
            trainer.callback_metrics[name] = torch.tensor(value)
        if not trainer.is_global_zero:
            return
        for logger in trainer.loggers:
            logger.log_metrics(values, step=trainer.global_step)
        if self.verbose and decision.scale != previous:
            reference = values.get(f"{_PREFIX}/reference")
            shown = "" if reference is None else f" (reference {reference:.4g})"
            rank_zero_info(
                f"{_OWNER}: epoch {trainer.current_epoch}: {self.monitor} {clean:.4g}{shown}:"
                f" scale {previous:.4g} -> {decision.scale:.4g} ({decision.reason})"
            )

    @override
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.control.state.warmup > 0:
            rank_zero_warn(
                f"{_OWNER}: fitting ended during the clean warm-up ({self.control.state.warmup} more"
                " validation(s) to go), so the noise sources trained without noise; validate more often"
                " (`check_val_every_n_epoch`, `val_check_interval`), train longer, or give `reference=`.",
                category=UserWarning,
            )

    @override
    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        # The sources get back the scales they had before the controller took them over.
        for key, knob in self._knobs:
            knob.scale = self.bases.get(key, knob.scale)

    @override
    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.log_figures and self.history:
            self._figure(trainer)

    def _figure(self, trainer: pl.Trainer) -> None:
        if not trainer.is_global_zero or not self.history:
            return
        epochs = [row[0] for row in self.history]
        figure = reporting.new_figure(6.0, 4.0)
        metrics = figure.add_subplot()
        metrics.plot(epochs, [row[2] for row in self.history], marker="o", label=self.monitor)
        if any(row[3] is not None for row in self.history):
            robust = [float("nan") if row[3] is None else row[3] for row in self.history]
            metrics.plot(epochs, robust, marker="s", label=str(self.robust_monitor))
        metrics.set(xlabel="epoch", ylabel="metric", title="NoiseController")
        metrics.grid(alpha=0.3)
        scale = metrics.twinx()
        scale.step(epochs, [row[1] for row in self.history], where="post", color="black", label="scale")
        scale.set_ylabel("noise scale (trained with)")
        lines = metrics.get_lines() + scale.get_lines()
        metrics.legend(lines, [str(line.get_label()) for line in lines], fontsize="small")
        reporting.log_figure(trainer, f"{_PREFIX}/history", figure)

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"control": self.control.state.to_dict(), "bases": dict(self.bases)}

    @override
    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        self.control.state = ControlState.from_dict(dict(state_dict.get("control", {})))
        self.bases = {str(k): float(v) for k, v in state_dict.get("bases", {}).items()}
