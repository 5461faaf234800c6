"""RobustnessMonitor: accuracy and calibration under the corruption suite at every validation."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal, NamedTuple

import lightning.pytorch as pl
import torch
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor
from torchmetrics import Metric
from typing_extensions import override

from lit_noise import reporting
from lit_noise._optional import require
from lit_noise._rng import GeneratorCache, stream_id
from lit_noise._validation import check_choice, check_int, check_range, check_seed, fail
from lit_noise.batch import BatchKey, normalize_key, read
from lit_noise.callbacks._monitor_hooks import EvaluationBatch, MonitorHooks
from lit_noise.callbacks.monitoring import (
    ForwardFn,
    check_classification,
    check_forward_fn,
    eval_forward,
    step_logits,
)
from lit_noise.corruptions.constants import TABLES
from lit_noise.corruptions.suite import (
    DEFAULT_CORRUPTIONS,
    SEVERITIES,
    Corruption,
    ValueRange,
    check_severities,
    get,
)
from lit_noise.errors import ConfigurationError
from lit_noise.metrics.functional import (
    INPUT_FORMATS,
    InputFormat,
    calibration_bins,
    calibration_error_from_bins,
    hard_targets,
    to_probabilities,
    top_label,
)

__all__ = ["SUITES", "RobustnessMonitor", "Suite", "area_under_curve"]

_PREFIX = "val/robust"
_AUTO_COPIES = 8  # corrupted copies per forward on accelerators with copies_per_forward="auto"


class Suite(NamedTuple):
    """What a :class:`RobustnessMonitor` evaluates unless told otherwise.

    Example:
        >>> quick = SUITES["quick"]  # the default suite
        >>> quick.corruptions, quick.severities, quick.max_samples
        (('gaussian_noise', 'gaussian_blur', 'contrast', 'pixelate'), (3, 5), 64)
        >>> monitor = RobustnessMonitor(suite="full", log_figures=False)
        >>> monitor.severities == SUITES["full"].severities, monitor.max_samples
        (True, None)
    """

    corruptions: tuple[str, ...]
    severities: tuple[int, ...]
    max_samples: int | None  # None: every validation sample


#: ``suite="quick"`` (the default): one corruption of each family (noise, blur, photometric,
#: digital) at a middle and the worst severity, on the first 64 validation samples: 8 corrupted
#: copies of 64 samples, about one clean validation pass of the shapes data (500 samples), so a
#: monitored validation epoch of the shapes CNN takes about 2.2x a clean one (measured; the
#: target is < 3x). ``suite="full"``: every built-in corruption at severities 1..5 on every
#: validation sample (the benchmarks' protocol, 50 corrupted copies of the validation set).
SUITES: Mapping[str, Suite] = {
    "quick": Suite(("gaussian_noise", "gaussian_blur", "contrast", "pixelate"), (3, 5), 64),
    "full": Suite(DEFAULT_CORRUPTIONS, SEVERITIES, None),
}


def area_under_curve(severities: Sequence[int], clean: float, accuracies: Sequence[float]) -> float:
    """Normalised area under the accuracy-versus-severity curve, in [0, 1].

    The trapezoid rule over the points ``(0, clean), (s, accuracy_s)`` for the severities ``s``,
    divided by the largest severity: the mean height of the curve from clean to the worst
    severity (with severities 1..5, the ``auc`` of the reference ``make_imagenet_c.py`` of
    hendrycks/robustness, applied to accuracies instead of errors).

    Example:
        >>> round(area_under_curve([1, 2, 3, 4, 5], 1.0, [0.8, 0.6, 0.4, 0.2, 0.0]), 6)
        0.5
    """
    xs = [0.0, *(float(s) for s in severities)]
    ys = [clean, *accuracies]
    area = sum((xs[i] - xs[i - 1]) * (ys[i] + ys[i - 1]) / 2 for i in range(1, len(xs)))
    return area / xs[-1]


class _Pair(NamedTuple):
    row: int
    corruption: Corruption
    severity: int
    params: tuple[float, ...]
    stream: int


class _RobustnessBins(Metric):
    """Equal-width calibration bins (count, confidence sum, correct sum) for each row, sum-reduced.

    Row 0 is the clean data, row ``1 + i`` the ``i``-th (corruption, severity) pair. The state has
    the fixed size ``(rows, n_bins)`` whatever the number of predictions.
    """

    full_state_update = False
    is_differentiable = False
    count: Tensor
    conf_sum: Tensor
    correct_sum: Tensor

    def __init__(self, rows: int, n_bins: int) -> None:
        super().__init__()
        self.n_bins = n_bins
        for name in ("count", "conf_sum", "correct_sum"):
            self.add_state(name, torch.zeros(rows, n_bins, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, confidence: Tensor, correct: Tensor, rows: Tensor) -> None:
        """Add ``(R, N)`` top-label confidences and correctness to the ``R`` rows ``rows``."""
        sums = [calibration_bins(confidence[i], correct[i], self.n_bins) for i in range(len(rows))]
        for state, part in zip(
            (self.count, self.conf_sum, self.correct_sum), zip(*sums, strict=True), strict=True
        ):
            state.index_add_(0, rows, torch.stack(part).to(state.device))

    def compute(self) -> tuple[Tensor, Tensor, Tensor]:
        """The three ``(rows, n_bins)`` states."""
        return self.count, self.conf_sum, self.correct_sum


class RobustnessMonitor(MonitorHooks):
    """Log how robust the model is to common corruptions at every validation epoch.

    During the validation loop, each validation batch (up to ``max_samples`` samples per epoch and
    process) is corrupted with every corruption at every severity on the model's device
    (:mod:`lit_noise.corruptions`), and the model is run on the corrupted copies (on accelerators
    several copies concatenated into one forward, ``copies_per_forward``), under ``no_grad`` in
    eval mode. The predictions stream into fixed-size per-(corruption, severity) bins: nothing is
    stored, and there is no second pass over the data. At the end of the epoch the bins are summed
    across processes (a collective on every rank) and the monitor logs, with ``<c>`` a corruption
    and ``<k>`` a severity:

    * ``val/robust/<c>/s<k>/acc`` and ``val/robust/<c>/s<k>/ece``: accuracy and expected
      calibration error (top-label, ``n_bins`` equal-width bins, as
      :class:`~lit_noise.metrics.CalibrationError`);
    * ``val/robust/<c>/acc``: mean accuracy over the severities; ``val/robust/<c>/retention``: that
      divided by the clean accuracy; ``val/robust/<c>/auc``: :func:`area_under_curve` of accuracy
      versus severity, clean accuracy at severity 0;
    * ``val/robust/clean_acc`` and ``val/robust/clean_ece``: measured by the monitor on the same
      samples (from the logits the validation step returned when it returns them: a tensor or a
      dict with ``"logits"``; otherwise by its own forward);
    * ``val/robust/mean_acc`` (mean corruption accuracy over every corruption and severity),
      ``val/robust/mean_ece``, ``val/robust/retention`` (``mean_acc / clean_acc``) and
      ``val/robust/mean_auc``;
    * with ``baseline_errors``: ``val/robust/<c>/ce``, the corruption error
      ``CE_c = sum_k E_{k,c} / sum_k E^base_{k,c}`` over the monitored severities (Hendrycks &
      Dietterich, 2019), and ``val/robust/mce``, its mean over the corruptions (here "mce" is the
      mean corruption error, not the maximum calibration error of ``val/cal/mce``);

    and, unless ``log_figures=False``, the accuracy-versus-severity curves and a table of every
    value through :mod:`lit_noise.reporting` (W&B line series and table with a ``WandbLogger``;
    PNG and CSV files under ``<log dir>/figures/val/robust/`` of every other logger, or of
    ``default_root_dir`` without a logger).

    **What it costs.** By default (``suite="quick"``, :data:`SUITES`) it evaluates 4 corruptions
    (``gaussian_noise``, ``gaussian_blur``, ``contrast``, ``pixelate``) at severities 3 and 5 on
    the first 64 validation samples: 8 corrupted copies of 64 samples per evaluated epoch.
    ``suite="full"`` is the benchmarks' protocol: every built-in corruption at severities 1..5 on
    every sample (50 corrupted copies of the validation set). ``corruptions``, ``severities`` and
    ``max_samples`` override the suite's choice one by one. The cost (copies, corrupted samples and
    model calls per validation batch) is logged once, at the first validation batch.

    **Inputs.** The corruptions are defined on data in [0, 1]. Inputs in another range give
    ``value_range=(low, high)``; standardised inputs ``(raw - mean) / std`` (a normalised image
    pipeline) give ``mean`` and ``std`` (per channel): each batch is mapped to [0, 1], corrupted,
    and mapped back before the forward, so the model sees corrupted inputs in its own format.

    **Classification only.** The monitor measures classification accuracy. A model with an output
    of width 1 or float targets of shape ``(N,)`` or ``(N, 1)`` (regression) is refused with a
    :class:`~lit_noise.ConfigurationError` in the sanity check, or, with ``num_sanity_val_steps=0``,
    at the first training batch (from its targets) or else at the first validation batch.

    The monitor never changes the model's mode, weights or random state: it adds no hook to the
    model, runs its forwards under ``no_grad`` with every module's mode and the global RNG restored
    (:func:`~lit_noise.callbacks.monitoring.eval_forward`), and draws its noise from its
    own counter-based generator seeded from ``(seed, process rank, dataloader index, batch index,
    corruption, severity)`` — the same corrupted validation set at every epoch, whatever the run's
    seed. A run with the monitor therefore gives the same weights as a run without it. Sanity-check
    batches are only checked (keys, value range, corruptions, one forward of the monitor's own on
    the first batch, the model output's width and the targets, so that errors show the batch's
    shapes), not evaluated.

    Args:
        corruptions: names from :data:`~lit_noise.corruptions.CORRUPTIONS` (checked strictly
            against the inputs); ``"all"``: every built-in corruption that applies to the inputs
            (``saturate`` needs 3 channels, the image corruptions ``(B, C, H, W)`` batches; other
            inputs get only the noise corruptions); ``None``: the suite's, those that apply.
        severities: severities to evaluate, a subset of 1..5; ``None``: the suite's.
        every_n_epochs: evaluate at the validation of every ``n``-th epoch (epoch ``e`` when
            ``(e + 1) % n == 0``, as Lightning's ``check_val_every_n_epoch``); ``trainer.validate``
            always evaluates.
        max_samples: samples per epoch and process to evaluate (the first ones of the validation
            loader, the same at every epoch); ``"all"`` for every sample; ``None``: the suite's.
        constants: ``"cifar10"`` (CIFAR-10-C's table, for 32x32 images) or ``"imagenet"``.
        baseline_errors: corruption -> five error rates in [0, 1] of a baseline model at severities
            1..5 (e.g. AlexNet's for ImageNet-C); every monitored corruption needs one. Enables
            ``ce`` and ``mce``.
        input_key: where the model input is in the batch (index, key or dotted path).
        target_key: where the targets are: class indices, ``SoftLabels`` or ``(N, C)``
            distributions (compared by argmax).
        n_bins: equal-width bins of the ECE (>= 1).
        seed: seed of the noise corruptions (a fixed default, so the global RNG is never drawn from).
        copies_per_forward: corrupted copies of the batch concatenated into one forward (memory
            grows with it); ``None`` puts every copy into a single forward; ``"auto"`` is 1 on CPU
            (where a larger batch is no faster per sample: the activations leave the cache) and 8
            on accelerators (where a small model's forward is bound by kernel launches).
        input_format: ``"auto"``, ``"logits"`` or ``"probs"``: how the model output is read
            (see :mod:`lit_noise.metrics.functional`).
        num_classes: the width of the model output; ``None`` takes it from the first output.
        log_figures: log the curves and the table at each evaluated epoch (needs matplotlib, the
            ``plots`` extra).
        suite: ``"quick"`` or ``"full"``, the defaults of ``corruptions``, ``severities`` and
            ``max_samples`` (:data:`SUITES`).
        value_range: ``(low, high)``, the range of the inputs (after undoing ``mean``/``std``),
            mapped to [0, 1] for the corruptions and back.
        mean: for standardised inputs ``x = (raw - mean) / std``: the means (a number, or one per
            channel of dimension 1), given with ``std``.
        std: the standard deviations (> 0) of that standardisation.
        forward_fn: how to run the model on the (corrupted) input tensor: ``None`` for
            ``pl_module(x)``, the name of a method of the module (``"predict_logits"``), or a
            callable ``f(pl_module, x) -> logits``; for models whose ``forward`` needs more than
            the input tensor.
        summaries: W&B run-summary rules, metric -> ``"max"``, ``"min"``, ... (``define_metric``);
            ``None``: the best ``val/robust/mean_acc`` (and the lowest ``val/robust/mce`` with
            ``baseline_errors``). Add ``{"val/acc": "max"}`` and so on to summarise your own
            metrics too; no other metric's summary is touched.

    Raises:
        ConfigurationError: here for bad arguments (unknown corruption names, listing the known
            ones; severities outside 1..5; ``n_bins`` < 1; a malformed ``baseline_errors``,
            ``value_range``, ``mean``/``std``, ``forward_fn`` or ``summaries``; matplotlib missing
            with ``log_figures=True``); at the first validation batch (the sanity check, before
            training) for a batch key that is not there, inputs outside the range, a corruption that
            does not apply to the inputs, a forward that fails on the input tensor alone, a model
            output whose width differs from ``num_classes``, or a regression model.

    Example:
        >>> from lit_noise.examples import Classifier, ShapesDataModule
        >>> monitor = RobustnessMonitor(["contrast", "gaussian_noise"], severities=[1, 5], log_figures=False)
        >>> trainer = pl.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False,
        ...     callbacks=[monitor])
        >>> model = Classifier("cnn", num_classes=6, input_shape=(3, 32, 32), hidden=8)
        >>> _ = trainer.validate(model, ShapesDataModule(batch_size=16, val_size=16), verbose=False)
        >>> sorted(k for k in trainer.callback_metrics if k.startswith("val/robust/contrast"))
        ['val/robust/contrast/acc', 'val/robust/contrast/auc', 'val/robust/contrast/retention',
         'val/robust/contrast/s1/acc', 'val/robust/contrast/s1/ece', 'val/robust/contrast/s5/acc',
         'val/robust/contrast/s5/ece']
    """

    def __init__(
        self,
        corruptions: Sequence[str] | Literal["all"] | None = None,
        severities: Sequence[int] | None = None,
        every_n_epochs: int = 1,
        max_samples: int | Literal["all"] | None = None,
        constants: str = "cifar10",
        baseline_errors: Mapping[str, Sequence[float]] | None = None,
        input_key: BatchKey = 0,
        target_key: BatchKey = 1,
        n_bins: int = 15,
        seed: int = 0,
        copies_per_forward: int | Literal["auto"] | None = "auto",
        input_format: InputFormat = "auto",
        num_classes: int | None = None,
        log_figures: bool = True,
        suite: Literal["quick", "full"] = "quick",
        value_range: Sequence[float] = (0.0, 1.0),
        mean: float | Sequence[float] | None = None,
        std: float | Sequence[float] | None = None,
        forward_fn: ForwardFn = None,
        summaries: Mapping[str, str] | None = None,
    ) -> None:
        owner = type(self).__name__
        self.suite = str(check_choice(owner, "suite", suite, tuple(SUITES)))
        defaults = SUITES[self.suite]
        strict = corruptions is not None and corruptions != "all"
        if corruptions is None:
            names = defaults.corruptions
        elif corruptions == "all":
            names = DEFAULT_CORRUPTIONS
        elif (
            isinstance(corruptions, (str, bytes)) or not isinstance(corruptions, Sequence) or not corruptions
        ):
            raise fail(
                owner,
                "corruptions",
                corruptions,
                "None, 'all' or a non-empty sequence of corruption names",
            )
        else:
            names = tuple(dict.fromkeys(get(name, owner, "corruptions").name for name in corruptions))
        self.corruptions = names if strict else None
        self.severities = check_severities(defaults.severities if severities is None else severities, owner)
        self.every_n_epochs = check_int(owner, "every_n_epochs", every_n_epochs, 1)
        if max_samples is None:
            self.max_samples = defaults.max_samples
        elif max_samples == "all":
            self.max_samples = None
        else:
            self.max_samples = check_int(owner, "max_samples", max_samples, 1)
        self.constants = str(check_choice(owner, "constants", constants, tuple(TABLES)))
        self.baseline_errors = self._check_baseline(baseline_errors, names if strict else (), self.severities)
        self.input_key = input_key
        self.target_key = target_key
        self._input_path = normalize_key(input_key, owner, "input_key")
        self._target_path = normalize_key(target_key, owner, "target_key")
        self.n_bins = check_int(owner, "n_bins", n_bins, 1)
        self.seed = check_seed(owner, "seed", seed)
        self.copies_per_forward: int | str | None = (
            copies_per_forward
            if copies_per_forward is None or copies_per_forward == "auto"
            else check_int(owner, "copies_per_forward", copies_per_forward, 1)
        )
        self.input_format: InputFormat = check_choice(owner, "input_format", input_format, INPUT_FORMATS)
        self.num_classes = None if num_classes is None else check_int(owner, "num_classes", num_classes, 2)
        self.log_figures = bool(log_figures)
        if self.log_figures:
            require("matplotlib", owner, "log_figures=True (pass log_figures=False to run without figures)")
        self._range = ValueRange(value_range, mean, std, owner)
        self.value_range = (self._range.low, self._range.high)
        self.mean, self.std = self._range.mean, self._range.std
        self.forward_fn = check_forward_fn(owner, forward_fn)
        own = {f"{_PREFIX}/mean_acc": "max"}
        if self.baseline_errors is not None:
            own[f"{_PREFIX}/mce"] = "min"
        self.summaries = None if summaries is None else reporting.check_summaries(owner, summaries)
        self._summaries = own if self.summaries is None else self.summaries
        for name in names:  # every (corruption, severity) has its parameters in the chosen table
            get(name, owner).params(self.severities[0], self.constants)
        self._pairs = [
            _Pair(
                1 + i * len(self.severities) + j,
                get(name),
                s,
                get(name).params(s, self.constants),
                stream_id(name),
            )
            for i, name in enumerate(names)
            for j, s in enumerate(self.severities)
        ]
        self._names = names
        self.bins = _RobustnessBins(1 + len(self._pairs), self.n_bins)
        self._stream = stream_id(owner)
        self._generators = GeneratorCache()
        self._active = False
        self._checked = False
        self._inspected = False  # a validation batch (or the first training batch's targets) was checked
        self._announced = False
        self._seen = 0
        self._evaluated: list[_Pair] = []
        self._classes: int | None = self.num_classes
        self.last_values: dict[str, float] = {}

    # ---------------------------------------------------------------------------------------- checks

    @staticmethod
    def _check_baseline(
        baseline: Mapping[str, Sequence[float]] | None, names: Sequence[str], severities: Sequence[int]
    ) -> dict[str, tuple[float, ...]] | None:
        owner = "RobustnessMonitor"
        if baseline is None:
            return None
        if not isinstance(baseline, Mapping):
            raise fail(owner, "baseline_errors", baseline, "None or a mapping corruption -> five error rates")
        parsed: dict[str, tuple[float, ...]] = {}
        for name, errors in baseline.items():
            if isinstance(errors, (str, bytes)) or not isinstance(errors, Sequence) or len(errors) != 5:
                raise fail(owner, f"baseline_errors[{name!r}]", errors, "five error rates (severities 1..5)")
            parsed[str(name)] = tuple(
                check_range(owner, f"baseline_errors[{name!r}]", e, 0.0, 1.0) for e in errors
            )
        RobustnessMonitor._check_baseline_covers(parsed, names, severities)
        return parsed

    @staticmethod
    def _check_baseline_covers(
        baseline: Mapping[str, Sequence[float]], names: Sequence[str], severities: Sequence[int]
    ) -> None:
        missing = [name for name in names if name not in baseline]
        if missing:
            raise ConfigurationError(
                f"RobustnessMonitor: `baseline_errors` has no errors for {', '.join(missing)}; give five"
                " error rates (severities 1..5) for every monitored corruption, or leave it None."
            )
        for name in names:
            if sum(baseline[name][s - 1] for s in severities) <= 0:
                raise fail(
                    "RobustnessMonitor",
                    f"baseline_errors[{name!r}]",
                    list(baseline[name]),
                    f"errors with a positive sum over the monitored severities {list(severities)}",
                )

    def _check_first_batch(self, x: Tensor) -> None:
        """Decide which pairs apply to ``x`` (raise for an explicitly requested one that does not)."""
        owner = type(self).__name__
        applicable: list[str] = []
        for name in self._names:
            corruption = get(name)
            if self.corruptions is not None:
                corruption.check(x, owner)
                applicable.append(name)
            elif corruption.applies_to(x):
                applicable.append(name)
        if not applicable:
            raise ConfigurationError(
                f"{owner}: no corruption applies to inputs of shape {tuple(x.shape)} and dtype {x.dtype}."
            )
        if self.baseline_errors is not None:
            self._check_baseline_covers(self.baseline_errors, applicable, self.severities)
        self._evaluated = [pair for pair in self._pairs if pair.corruption.name in applicable]

    def cost(self, batch_size: int, step_logits: bool, device: torch.device) -> str:
        """What one evaluated validation epoch costs, in words (logged once, at the first batch).

        Args:
            batch_size: samples per validation batch.
            step_logits: whether the validation step returns the logits (else the monitor also
                runs the clean forward).
            device: the model's device (for ``copies_per_forward="auto"``).

        Example:
            >>> print(RobustnessMonitor(["contrast"], [1, 5], max_samples=100, log_figures=False).cost(
            ...     64, True, torch.device("cpu")))
            RobustnessMonitor: 2 corrupted copies (contrast at severities 1, 5) of the first 100
            validation samples per process, every validation epoch: up to 200 corrupted samples per
            evaluated epoch, in 2 extra model calls per validation batch of 64 (1 copy per call).
            suite='full' evaluates every corruption at severities 1..5 on every sample.
        """
        pairs = self._evaluated if self._evaluated else self._pairs
        copies = len(pairs)
        names = list(dict.fromkeys(pair.corruption.name for pair in pairs))
        work = copies + (0 if step_logits else 1)
        chunk = self._chunk_size(work, device)
        calls = -(-work // chunk)
        first = f"the first {self.max_samples} validation samples"
        samples = "every validation sample" if self.max_samples is None else first
        when = "every validation epoch" if self.every_n_epochs == 1 else f"every {self.every_n_epochs} epochs"
        total = "" if self.max_samples is None else f"up to {copies * self.max_samples} corrupted samples"
        total = total or f"{copies} corrupted copies of the validation set"
        clean = "" if step_logits else "; the clean copy too, as validation_step returns no logits"
        return (
            f"RobustnessMonitor: {copies} corrupted copies ({', '.join(names)} at severities"
            f" {', '.join(map(str, self.severities))}) of {samples} per process,"
            f" {when}: {total} per evaluated epoch, in {calls} extra model calls per validation batch of"
            f" {batch_size} ({chunk} {'copy' if chunk == 1 else 'copies'} per call{clean})."
            + (
                ""
                if self.suite == "full"
                else " suite='full' evaluates every corruption at severities 1..5 on every sample."
            )
        )

    # ---------------------------------------------------------------------------------------- hooks

    @override
    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        fitting = trainer.state.fn == TrainerFn.FITTING
        self._active = not trainer.sanity_checking and (
            not fitting or (trainer.current_epoch + 1) % self.every_n_epochs == 0
        )
        self._checked = False
        self._seen = 0
        self.bins.to(pl_module.device)
        self.bins.reset()

    def _forward(self, trainer: pl.Trainer, pl_module: pl.LightningModule, inputs: Tensor) -> Tensor:
        with trainer.precision_plugin.val_step_context():
            return eval_forward(pl_module, inputs, self.forward_fn, type(self).__name__, step_helps=False)

    @override
    def _evaluation_batch(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, step: EvaluationBatch
    ) -> None:
        if step.stage != "val":  # the suite runs on the validation data only
            return
        if not (self._active or (trainer.sanity_checking and not self._checked)):
            return
        owner = type(self).__name__
        x = read(step.batch, self._input_path, owner).detach()
        target = read(step.batch, self._target_path, owner)
        full = x.shape[0]
        count = full if self.max_samples is None else min(full, self.max_samples - self._seen)
        if count <= 0:
            return
        clean = step_logits(step.outputs)
        clean = clean.detach() if clean is not None and clean.shape[0] == full else None
        first = not self._checked
        if first:  # the whole batch is checked, so that the messages show its shapes
            self._check_first_batch(x)
            self._checked = True
            self._inspected = True
            self._range.to_unit(x)  # checks the range
            if not self._announced:
                self._announced = True
                rank_zero_info(self.cost(full, clean is not None, x.device))
        if not self._active:  # sanity check: the forward, the model output and the targets, before training
            own = self._forward(trainer, pl_module, x)  # the forward the corrupted copies need works
            for logits in (clean, own):
                if logits is not None:
                    self._update(logits, target, [0], validate=True, record=False)
            return
        x, target = x[:count], target[:count]
        clean = None if clean is None else clean[:count]
        unit = self._range.to_unit(x)
        self._seen += count
        if clean is not None:
            self._update(clean, target, [0], first)
            first = False
        work: list[_Pair | None] = ([None] if clean is None else []) + list(self._evaluated)
        size = self._chunk_size(len(work), x.device)
        rank = trainer.global_rank
        for start in range(0, len(work), size):
            chunk = work[start : start + size]
            copies = [
                x
                if pair is None
                else self._range.from_unit(
                    pair.corruption.function(
                        unit,
                        pair.params,
                        self._generators.get(
                            x.device,
                            self.seed,
                            self._stream,
                            rank,
                            step.dataloader_idx,
                            step.batch_idx,
                            pair.stream,
                            pair.severity,
                        )
                        if pair.corruption.random
                        else None,
                    )
                )
                for pair in chunk
            ]
            inputs = copies[0] if len(copies) == 1 else torch.cat(copies)
            logits = self._forward(trainer, pl_module, inputs)
            self._update(logits, target, [0 if pair is None else pair.row for pair in chunk], first)
            first = False

    def _chunk_size(self, copies: int, device: torch.device) -> int:
        if self.copies_per_forward is None:
            return max(copies, 1)
        if self.copies_per_forward == "auto":
            return 1 if device.type == "cpu" else _AUTO_COPIES
        return int(self.copies_per_forward)

    def _update(
        self, logits: Tensor, target: Tensor, rows: list[int], validate: bool, record: bool = True
    ) -> None:
        owner = type(self).__name__
        copies = len(rows)
        per_copy = logits.shape[0] // copies
        sample_shape = torch.Size([per_copy, *logits.shape[1:]])
        if validate:
            check_classification(owner, logits, target)
        if self._classes is None:
            self._classes = int(logits.shape[1])
        probs = to_probabilities(logits.detach(), self._classes, self.input_format, owner, validate)
        labels = hard_targets(target, sample_shape, self._classes, owner, validate).to(probs.device)
        if not record:
            return
        confidence, correct = top_label(probs, labels.repeat(copies))
        index = torch.tensor(rows, device=self.bins.count.device)
        self.bins.update(confidence.view(copies, -1), correct.view(copies, -1), index)

    @override
    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._active:
            return
        self._active = False
        with self.bins.sync_context(dist_sync_fn=self.bins.dist_sync_fn):  # a collective on every rank
            states = (self.bins.count, self.bins.conf_sum, self.bins.correct_sum)
            count, conf_sum, correct_sum = (t.detach().to("cpu", copy=True) for t in states)
        self.bins.reset()
        totals = count.sum(1)
        if totals[0] <= 0:
            return
        values = self._values(count, conf_sum, correct_sum, totals)
        sync = trainer.world_size > 1  # values are already equal on every rank; avoids Lightning's warning
        for key, value in values.items():
            pl_module.log(key, value, on_step=False, on_epoch=True, sync_dist=sync)
        self.last_values = values
        if self.log_figures and trainer.is_global_zero:
            self._report(trainer, values)

    def _values(
        self, count: Tensor, conf_sum: Tensor, correct_sum: Tensor, totals: Tensor
    ) -> dict[str, float]:
        def accuracy(row: int) -> float:
            return float(correct_sum[row].sum() / totals[row])

        def ece(row: int) -> float:
            return float(calibration_error_from_bins(count[row], conf_sum[row], correct_sum[row], "l1"))

        values: dict[str, float] = {}
        clean = accuracy(0)
        values[f"{_PREFIX}/clean_acc"] = clean
        values[f"{_PREFIX}/clean_ece"] = ece(0)
        accs: list[float] = []
        eces: list[float] = []
        aucs: list[float] = []
        ces: list[float] = []
        # Which corruptions were evaluated is read from the synced counts, the same on every rank
        # (a rank without a batch logs the same keys).
        for name in self._names:
            pairs = [pair for pair in self._pairs if pair.corruption.name == name]
            if any(totals[pair.row] <= 0 for pair in pairs):
                continue
            severity_accs = [accuracy(pair.row) for pair in pairs]
            for pair, acc in zip(pairs, severity_accs, strict=True):
                values[f"{_PREFIX}/{name}/s{pair.severity}/acc"] = acc
                values[f"{_PREFIX}/{name}/s{pair.severity}/ece"] = ece(pair.row)
                eces.append(values[f"{_PREFIX}/{name}/s{pair.severity}/ece"])
            mean = sum(severity_accs) / len(severity_accs)
            values[f"{_PREFIX}/{name}/acc"] = mean
            values[f"{_PREFIX}/{name}/retention"] = mean / clean if clean > 0 else math.nan
            values[f"{_PREFIX}/{name}/auc"] = area_under_curve(
                [pair.severity for pair in pairs], clean, severity_accs
            )
            accs.extend(severity_accs)
            aucs.append(values[f"{_PREFIX}/{name}/auc"])
            if self.baseline_errors is not None:
                base = sum(self.baseline_errors[name][pair.severity - 1] for pair in pairs)
                errors = sum(1.0 - acc for acc in severity_accs)
                values[f"{_PREFIX}/{name}/ce"] = errors / base
                ces.append(values[f"{_PREFIX}/{name}/ce"])
        if accs:
            mean_acc = sum(accs) / len(accs)
            values[f"{_PREFIX}/mean_acc"] = mean_acc
            values[f"{_PREFIX}/mean_ece"] = sum(eces) / len(eces)
            values[f"{_PREFIX}/retention"] = mean_acc / clean if clean > 0 else math.nan
            values[f"{_PREFIX}/mean_auc"] = sum(aucs) / len(aucs)
        if ces:
            values[f"{_PREFIX}/mce"] = sum(ces) / len(ces)
        return values

    def _report(self, trainer: pl.Trainer, values: Mapping[str, float]) -> None:
        clean = values[f"{_PREFIX}/clean_acc"]
        names = [n for n in self._names if f"{_PREFIX}/{n}/acc" in values]
        if not names:
            return
        xs = [0, *self.severities]
        curves = {
            name: [clean, *(values[f"{_PREFIX}/{name}/s{s}/acc"] for s in self.severities)] for name in names
        }
        reporting.log_line_series(
            trainer,
            f"{_PREFIX}/accuracy_vs_severity",
            xs,
            curves,
            title=f"accuracy vs severity (epoch {trainer.current_epoch})",
            xname="severity",
            yname="accuracy",
        )
        rows: list[list[Any]] = [["clean", 0, clean, values[f"{_PREFIX}/clean_ece"]]]
        rows += [
            [name, s, values[f"{_PREFIX}/{name}/s{s}/acc"], values[f"{_PREFIX}/{name}/s{s}/ece"]]
            for name in names
            for s in self.severities
        ]
        reporting.log_table(trainer, f"{_PREFIX}/table", ["corruption", "severity", "accuracy", "ece"], rows)
