"""CalibrationMonitor: ECE, MCE, RMSCE, adaptive ECE, Brier score, NLL and a reliability diagram per epoch."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_warn
from lightning.pytorch.utilities.model_helpers import is_overridden
from torch import Tensor
from typing_extensions import override

from lit_noise import reporting
from lit_noise._optional import require
from lit_noise._validation import check_choice, check_int, fail
from lit_noise.batch import BatchKey, normalize_key, read
from lit_noise.callbacks._monitor_hooks import EvaluationBatch, MonitorHooks, evaluation_stage
from lit_noise.callbacks.monitoring import (
    ForwardFn,
    check_classification,
    check_forward_fn,
    eval_forward,
    step_logits,
)
from lit_noise.metrics.calibration import (
    AdaptiveCalibrationError,
    BrierScore,
    NegativeLogLikelihood,
    ReliabilityDiagram,
)
from lit_noise.metrics.functional import (
    INPUT_FORMATS,
    InputFormat,
    calibration_error_from_bins,
    check_metric_args,
    hard_targets,
    plot_reliability_diagram,
    reliability_from_bins,
    to_probabilities,
)
from lit_noise.soft_labels import SoftLabels

__all__ = ["CalibrationMonitor"]

_STAGES = ("val", "test")
_STEPS = {"val": "validation_step", "test": "test_step"}


class _StageMetrics:
    """The metrics of one stage (owned by the callback, not the LightningModule).

    The binned metrics and the Brier score take the probabilities; the NLL takes the model output
    itself, so that on logits it is ``log_softmax``, exactly ``F.cross_entropy`` (no clamp).
    """

    def __init__(self, num_classes: int, n_bins: int, n_fine_bins: int, input_format: InputFormat) -> None:
        options: dict[str, Any] = {"input_format": "probs", "validate_args": False}
        self.diagram = ReliabilityDiagram(num_classes, n_bins, **options)
        self.adaptive = AdaptiveCalibrationError(num_classes, n_bins, n_fine_bins=n_fine_bins, **options)
        self.brier = BrierScore(num_classes, **options)
        self.nll = NegativeLogLikelihood(num_classes, input_format=input_format, validate_args=False)
        self.updates = 0

    def all(self) -> tuple[ReliabilityDiagram, AdaptiveCalibrationError, BrierScore, NegativeLogLikelihood]:
        return self.diagram, self.adaptive, self.brier, self.nll

    def prepare(self, device: torch.device) -> None:
        for metric in self.all():
            metric.to(device)
            metric.reset()
        self.updates = 0

    def update(self, outputs: Tensor, target: Tensor, probs: Tensor, flat_target: Tensor) -> None:
        """Add a batch: the model's ``outputs`` and ``target``, and their flattened ``(N', C)`` forms."""
        for metric in (self.diagram, self.adaptive, self.brier):
            metric.update(probs, flat_target)
        self.nll.update(outputs, target)
        self.updates += 1


class CalibrationMonitor(MonitorHooks):
    """Log how well calibrated the model is at every validation (and test) epoch.

    For each stage in ``stages`` it streams every evaluation batch into fixed-size metrics and, at
    epoch end, logs ``<stage>/cal/ece``, ``mce``, ``rmsce`` (equal-width bins, top-label),
    ``aece`` (adaptive, equal-mass bins), ``brier`` and ``nll`` (on logits ``log_softmax``, so it
    equals ``F.cross_entropy`` over the epoch's samples; probabilities are clamped as in
    :class:`~lit_noise.metrics.NegativeLogLikelihood`), plus a reliability diagram (figure
    and per-bin table) through :mod:`lit_noise.reporting`: W&B images and tables with a
    ``WandbLogger``, PNG and CSV files under ``<log dir>/figures/`` of every other logger (or of
    ``default_root_dir`` without a logger).

    The logits are what the evaluation step returned (a tensor, or a dict's ``"logits"``); when it
    returns anything else the monitor runs ``pl_module(batch[input_key])`` itself (or
    ``forward_fn``), under ``no_grad`` in eval mode, restoring every module's mode and the RNG
    state (so a run gives the same weights with or without the monitor). Metrics are synced across
    processes at epoch end (each rank computes, a collective), logged as tensors and reset.
    Sanity-check batches are fed through the metrics (so a bad ``num_classes`` fails before
    training) but nothing is logged. It measures classification: a model with a width-1 output or
    float ``(N,)``/``(N, 1)`` targets (regression) is refused, in the sanity check or, with
    ``num_sanity_val_steps=0``, at the first training batch (from its targets) or else at the
    first evaluation batch.

    Args:
        num_classes: number of classes ``C`` (the width of the model's output).
        n_bins: number of bins for ECE / MCE / RMSCE, the adaptive ECE and the diagram (>= 1).
        stages: which of ``"val"`` and ``"test"`` to monitor.
        input_key: where the model input is in the batch (index, key, dotted path), used only when
            the step returns no logits.
        target_key: where the targets are: class indices, ``SoftLabels`` or ``(N, C)`` distributions.
        input_format: ``"auto"``, ``"logits"`` or ``"probs"`` (see :mod:`lit_noise.metrics.functional`).
        n_fine_bins: fine histogram size of the adaptive ECE.
        log_figures: also log the reliability diagram figure and table at each epoch end (needs
            matplotlib, the ``plots`` extra).
        forward_fn: how to get logits when the step returns none: ``None`` for
            ``pl_module(x)``, the name of a method of the module, or a callable
            ``f(pl_module, x) -> logits`` (for models whose ``forward`` needs more than the input).
            It is called only when a step returns no logits. If it is never called (every step
            returned logits), a warning on rank zero says so once, at the end of the first
            ``fit``/``validate``/``test`` by which every monitored stage the module has a step for
            has run.
        summaries: W&B run-summary rules, metric -> ``"min"``, ``"max"``, ... (``define_metric``);
            ``None``: the lowest ``val/cal/ece`` (when ``"val"`` is monitored). Add
            ``{"val/acc": "max"}`` and so on to summarise your own metrics too; no other metric's
            summary is touched.

    Raises:
        ConfigurationError: bad arguments, or matplotlib missing with ``log_figures=True`` (here);
            a model output whose width differs from ``num_classes``, a regression model, targets
            out of range, a forward that fails on the input tensor alone or a missing batch key
            (first evaluation batch).

    Example:
        >>> from lit_noise.examples import Classifier, DigitsDataModule
        >>> monitor = CalibrationMonitor(num_classes=10, n_bins=10)
        >>> trainer = pl.Trainer(max_epochs=1, limit_train_batches=2, limit_val_batches=2, logger=False,
        ...     enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        ...     callbacks=[monitor], default_root_dir=__import__("tempfile").mkdtemp())
        >>> trainer.fit(Classifier(), DigitsDataModule())
        >>> sorted(k for k in trainer.callback_metrics if k.startswith("val/cal/"))
        ['val/cal/aece', 'val/cal/brier', 'val/cal/ece', 'val/cal/mce', 'val/cal/nll', 'val/cal/rmsce']
    """

    def __init__(
        self,
        num_classes: int,
        n_bins: int = 15,
        stages: Sequence[str] = _STAGES,
        input_key: BatchKey = 0,
        target_key: BatchKey = 1,
        input_format: InputFormat = "auto",
        n_fine_bins: int = 10_000,
        log_figures: bool = True,
        forward_fn: ForwardFn = None,
        summaries: Mapping[str, str] | None = None,
    ) -> None:
        owner = type(self).__name__
        check_metric_args(owner, num_classes, n_bins, None, input_format)
        check_int(owner, "n_fine_bins", n_fine_bins, 1)
        if isinstance(stages, str) or not isinstance(stages, Sequence):
            raise fail(owner, "stages", stages, "a sequence of 'val' and/or 'test'")
        for stage in stages:
            check_choice(owner, "stages", stage, _STAGES)
        check_choice(owner, "input_format", input_format, INPUT_FORMATS)
        self.num_classes = num_classes
        self.n_bins = n_bins
        self.stages = tuple(dict.fromkeys(str(s) for s in stages))
        self.input_key = input_key
        self.target_key = target_key
        self._input_path = normalize_key(input_key, owner, "input_key")
        self._target_path = normalize_key(target_key, owner, "target_key")
        self.input_format: InputFormat = input_format
        self.n_fine_bins = n_fine_bins
        self.log_figures = bool(log_figures)
        if self.log_figures:
            require("matplotlib", owner, "log_figures=True (pass log_figures=False to run without figures)")
        self.forward_fn = check_forward_fn(owner, forward_fn)
        # Called by a monitored step (in any run of this instance), or warned about: nothing to watch.
        self._forward_fn_settled = False
        self._forward_fn_skipped: dict[str, None] = {}  # stages whose step returned logits (ordered)
        self.summaries = None if summaries is None else reporting.check_summaries(owner, summaries)
        own = {"val/cal/ece": "min"} if "val" in self.stages else {}
        self._summaries = own if self.summaries is None else self.summaries
        self.metrics = {
            stage: _StageMetrics(num_classes, n_bins, n_fine_bins, input_format) for stage in self.stages
        }
        self.last_values: dict[str, float] = {}
        self._inspected = False

    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(stages=self.stages)

    # ---------------------------------------------------------------------------------------- hooks
    # One hook serves validation and test (the stage comes from the trainer), as in MonitorHooks.

    @override
    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        stage = evaluation_stage(trainer)
        if stage in self.metrics:
            self.metrics[stage].prepare(pl_module.device)

    on_test_epoch_start = on_validation_epoch_start

    @override
    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._finish(evaluation_stage(trainer), trainer, pl_module)

    on_test_epoch_end = on_validation_epoch_end

    # ---------------------------------------------------------------------------------------- steps

    @override
    def _evaluation_batch(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, step: EvaluationBatch
    ) -> None:
        stage, outputs, batch = step.stage, step.outputs, step.batch
        metrics = self.metrics.get(stage)
        if metrics is None:
            return
        owner = type(self).__name__
        self._inspected = True
        logits = step_logits(outputs)
        if self.forward_fn is not None and not self._forward_fn_settled:  # a warning at teardown if never
            if logits is None:
                self._forward_fn_settled = True
            else:
                self._forward_fn_skipped[stage] = None
        if logits is None:  # the step returned no logits: run the forward as the step would (precision)
            plugin = trainer.precision_plugin
            context = plugin.val_step_context() if stage == "val" else plugin.test_step_context()
            with context:
                logits = eval_forward(pl_module, read(batch, self._input_path, owner), self.forward_fn, owner)
        target = read(batch, self._target_path, owner)
        first = metrics.updates == 0  # value checks (a device sync) once per epoch
        if first:
            check_classification(owner, logits, target)
        probs = to_probabilities(logits.detach(), self.num_classes, self.input_format, owner, validate=first)
        if first:
            hard_targets(target, logits.shape, self.num_classes, owner, validate=True)
        # (N, C, ...) predictions are flattened to (N', C): flatten the targets alike
        flat_target = _flatten_target(target, logits.shape) if probs.ndim != logits.ndim else target
        metrics.update(logits.detach(), target, probs, flat_target.to(probs.device))

    @override
    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._warn_unused_forward_fn(pl_module)

    def _warn_unused_forward_fn(self, pl_module: pl.LightningModule) -> None:
        """Warn once (rank zero) if ``forward_fn`` was never called: every step returned logits.

        Only when no monitored stage that ``pl_module`` has a step for is still to run: its step may
        return no logits (a later ``trainer.test`` after ``fit``) and need ``forward_fn``.
        """
        skipped = self._forward_fn_skipped
        if self._forward_fn_settled or not skipped:  # skipped fills only while forward_fn is set
            return
        if any(s not in skipped and is_overridden(_STEPS[s], pl_module) for s in self.stages):
            return
        self._forward_fn_settled = True
        steps = f"{' and '.join(skipped)} step{'s' if len(skipped) > 1 else ''}"
        rank_zero_warn(
            f"{type(self).__name__}: `forward_fn` was never called: the {steps} returned logits on"
            " every batch, and the monitor reads those (it calls `forward_fn` only for a step that"
            f" returns none). Drop `forward_fn`, or return no logits from the {steps} for the"
            " monitor to call it.",
            category=UserWarning,
        )

    def _finish(self, stage: str, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        metrics = self.metrics.get(stage)
        if metrics is None:
            return
        if trainer.sanity_checking:
            metrics.prepare(pl_module.device)
            return
        with contextlib.ExitStack() as stack:  # sync every state across ranks (a collective on all of them)
            for metric in metrics.all():
                stack.enter_context(metric.sync_context(dist_sync_fn=metric.dist_sync_fn))
            bins = (metrics.diagram.count, metrics.diagram.conf_sum, metrics.diagram.correct_sum)
            values = {
                "ece": calibration_error_from_bins(*bins, norm="l1"),
                "mce": calibration_error_from_bins(*bins, norm="max"),
                "rmsce": calibration_error_from_bins(*bins, norm="l2"),
                "aece": AdaptiveCalibrationError.compute(metrics.adaptive),
                "brier": BrierScore.compute(metrics.brier),
                "nll": NegativeLogLikelihood.compute(metrics.nll),
            }
            diagram = reliability_from_bins(*bins)
        count = diagram["count"]
        for name, value in values.items():  # already synced; sync_dist only keeps Lightning from warning
            key = f"{stage}/cal/{name}"
            pl_module.log(key, value.to(pl_module.device), on_step=False, on_epoch=True, sync_dist=True)
        self.last_values = {f"{stage}/cal/{name}": float(value) for name, value in values.items()}
        if self.log_figures and trainer.is_global_zero and count.sum() > 0:
            self._report(stage, trainer, diagram, float(values["ece"]))
        for metric in metrics.all():
            metric.reset()
        metrics.updates = 0

    def _report(self, stage: str, trainer: pl.Trainer, diagram: Mapping[str, Tensor], ece: float) -> None:
        title = f"{stage} reliability (epoch {trainer.current_epoch}, ECE {ece:.4f})"
        figure = plot_reliability_diagram(diagram, title=title)
        reporting.log_figure(trainer, f"{stage}/cal/reliability", figure)
        edges = diagram["edges"].tolist()
        rows = [
            [edges[i], edges[i + 1], count, accuracy, confidence]
            for i, (count, accuracy, confidence) in enumerate(
                zip(
                    diagram["count"].tolist(),
                    diagram["accuracy"].tolist(),
                    diagram["confidence"].tolist(),
                    strict=True,
                )
            )
            if count > 0
        ]
        columns = ["bin_low", "bin_high", "count", "accuracy", "confidence"]
        reporting.log_table(trainer, f"{stage}/cal/reliability_table", columns, rows)


def _flatten_target(target: Tensor, shape: torch.Size) -> Tensor:
    """Targets of ``(N, C, d...)`` predictions flattened like the predictions (``(N',)`` or ``(N', C)``)."""
    if isinstance(target, SoftLabels):
        return SoftLabels(_flatten_target(target.soft, shape), target.hard.reshape(-1))
    if target.is_floating_point() and target.shape == shape:
        return target.movedim(1, -1).reshape(-1, shape[1])
    return target.reshape(-1)
