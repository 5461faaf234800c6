"""TemperatureScaling: fit one temperature on the validation logits after training; apply it later."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.trainer.states import RunningStage
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from lightning.pytorch.utilities.combined_loader import CombinedLoader
from torch import Tensor, nn
from typing_extensions import override

from lit_noise._validation import check_choice, check_int, fail
from lit_noise.batch import BatchKey, normalize_key, read
from lit_noise.callbacks.monitoring import (
    ForwardFn,
    check_classification,
    check_forward_fn,
    eval_forward,
    require_validation,
)
from lit_noise.metrics.functional import brier_score, calibration_error, hard_targets, negative_log_likelihood
from lit_noise.metrics.temperature import TEMPERATURE_RANGE, fit_temperature

__all__ = ["APPLY_STAGES", "TemperatureScaling"]

#: Where a fitted temperature can be applied (``apply_at``).
APPLY_STAGES: tuple[str, ...] = ("test", "predict")

_PREFIX = "val/cal"


class TemperatureScaling(Callback):
    """Calibrate a classifier after training: fit one temperature on the validation logits, apply it later.

    **Fitting** (``on_train_end``, when ``trainer.fit`` ends normally, early stopping included):
    the callback runs the model over the trainer's validation dataloaders, ``limit_val_batches``
    respected (the same batches validation used), in eval mode under ``no_grad`` with every
    module's mode and the RNG state restored (:func:`~lit_noise.callbacks.monitoring.eval_forward`;
    the loaders' draws from the CPU RNG are undone too, so the rest of the run does not depend on
    the callback), with the trainer in its validation stage (so a mixing DataModule leaves the
    batches alone). Each batch goes through what Lightning's evaluation loop does before a
    validation step: the precision plugin's ``convert_input`` (floats to bfloat16, float16 or
    float64 under ``"bf16-true"``, ``"16-true"``, ``"64-true"``), the batch-transfer hooks and the
    device move; the forward runs in the plugin's ``val_step_context`` (autocast under
    ``"*-mixed"``, the default dtype under ``"*-true"``). The validation logits are held in memory
    for the fit (``N x C`` floats; 16-bit logits widened to float32, float64 ones kept). Under
    DDP the logits of every process are gathered, so every rank fits the same temperature on the
    whole validation set (a ``DistributedSampler`` that pads an uneven set repeats a few samples,
    as in validation itself). It fits ``T`` by L-BFGS on the NLL of ``softmax(z / T)`` (Guo et
    al., 2017; :func:`~lit_noise.metrics.temperature.fit_temperature`), then logs through every
    logger at step ``trainer.global_step`` (and puts into ``trainer.callback_metrics``):

    * ``val/cal/temperature``: the fitted ``T``;
    * ``val/cal/ece_before_ts``, ``val/cal/ece_after_ts``: top-label ECE (``n_bins`` equal-width
      bins, as :class:`~lit_noise.metrics.CalibrationError`) of ``z`` and ``z / T``;
    * ``val/cal/nll_before_ts``, ``val/cal/nll_after_ts``: the NLL (``F.cross_entropy``);
    * ``val/cal/brier_before_ts``, ``val/cal/brier_after_ts``: the multiclass Brier score;

    and prints one line with the same figures. ``on_train_end`` rather than ``on_fit_end``:
    Lightning calls ``on_fit_end`` after its teardown, when the model is back on the CPU, the
    distributed process group may be gone and the loggers are finalised. The values are kept in
    ``last_values``.

    **Applying** (``apply_at``, by default ``("test", "predict")``): from ``on_test_start`` /
    ``on_predict_start`` to the matching end (and on an exception), the ``forward`` of the
    LightningModule, or of the submodule named by ``module``, is wrapped on the instance so that
    its output is divided by ``T`` (a tensor, or the ``"logits"`` entry of a mapping): ``model(x)``
    and ``model.forward(x)`` both return calibrated logits, and a ``predict_step`` that takes the
    softmax returns calibrated probabilities. Training and validation (also ``trainer.validate``)
    never see it, the weights are never changed, and before ``T`` is fitted nothing is applied
    (``T = 1``, the identity; testing then warns once). The output keeps its dtype (``T`` is a
    Python float). ``apply_at=()`` only fits and logs; use ``logits / callback.temperature``
    yourself (a ``module`` then wraps nothing: it only names the state in checkpoints).

    **Checkpoints.** ``T`` is part of the callback state (``state_dict``), so a checkpoint saved
    after fitting (``trainer.save_checkpoint(path)`` once ``fit`` has returned) and loaded with
    this callback in the Trainer (``trainer.test(model, ckpt_path=path)``) applies the same ``T``.
    Files written by :class:`~lightning.pytorch.callbacks.ModelCheckpoint` during fitting were saved
    *before* ``T`` was fitted (it is fitted after training) and hold other weights than the ones
    it was fitted for: testing or predicting from one (``ckpt_path="best"``) fits a temperature for
    those weights on the validation data first (``fit_missing=True``, the default; the validation
    split must be available, as it is after ``fit`` or ``validate``), or, with
    ``fit_missing=False``, applies none and warns. A checkpoint without this callback's state also
    resets ``T`` (it holds other weights).

    Args:
        n_bins: equal-width bins of the logged ECE (>= 1).
        max_iter: L-BFGS iterations of the fit (>= 1).
        apply_at: where to apply ``T``: a subset of ``("test", "predict")``; ``()`` to switch it off.
        module: dotted name of the submodule whose output is divided by ``T`` (e.g. ``"net"``, or
            ``"head"``); ``None``: the LightningModule's own ``forward``. The output must be the
            logits the temperature was fitted on (those ``forward_fn`` returns). It is also part of
            :attr:`state_key`, so a checkpoint's ``T`` is restored only into an instance with the
            same ``module``; with ``apply_at=()`` that is all it does (nothing is wrapped; the name
            is still checked in ``setup``).
        input_key: where the model input is in a validation batch (index, key or dotted path).
        target_key: where the targets are: class indices, ``SoftLabels`` or ``(N, C)`` distributions
            (their argmax is used).
        forward_fn: how to get the logits of an input tensor: ``None`` for ``pl_module(x)``, the name
            of a method of the module, or a callable ``f(pl_module, x) -> logits``.
        fit_missing: when testing or predicting with weights that came without a fitted ``T`` (a
            file ModelCheckpoint wrote during fitting, ``ckpt_path="best"``), first fit one for
            them on the validation data (the DataModule's or the module's ``val_dataloader``,
            ``limit_val_batches`` respected) and log it as after fitting; ``False``: apply none and
            warn.

    Raises:
        ConfigurationError: bad arguments (here); a ``module`` name that names no submodule (in
            ``setup``); no validation data (``limit_val_batches=0``, no ``val_dataloader`` or no
            ``validation_step``, in ``on_fit_start``); a model whose output is not ``(N, C)``
            logits with ``C >= 2``, a missing batch key or targets out of range (at the fit, after
            training); a wrapped ``forward`` that returns neither a tensor nor a mapping with
            ``"logits"`` (first test or predict batch).

    Example:
        >>> import tempfile
        >>> from lit_noise.examples import Classifier, DigitsDataModule
        >>> scaling = TemperatureScaling(module="net")
        >>> trainer = pl.Trainer(max_epochs=1, limit_train_batches=2, limit_val_batches=2, logger=False,
        ...     enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        ...     callbacks=[scaling], default_root_dir=tempfile.mkdtemp())
        >>> trainer.fit(Classifier(), DigitsDataModule())
        >>> scaling.fitted, scaling.temperature > 0
        (True, True)
        >>> sorted(scaling.last_values)[:3]
        ['val/cal/brier_after_ts', 'val/cal/brier_before_ts', 'val/cal/ece_after_ts']
    """

    def __init__(
        self,
        n_bins: int = 15,
        max_iter: int = 50,
        apply_at: Sequence[str] = APPLY_STAGES,
        module: str | None = None,
        input_key: BatchKey = 0,
        target_key: BatchKey = 1,
        forward_fn: ForwardFn = None,
        fit_missing: bool = True,
    ) -> None:
        owner = type(self).__name__
        self.n_bins = check_int(owner, "n_bins", n_bins, 1)
        self.max_iter = check_int(owner, "max_iter", max_iter, 1)
        if isinstance(apply_at, str) or not isinstance(apply_at, Sequence):
            raise fail(owner, "apply_at", apply_at, "a sequence of 'test' and/or 'predict' (or () for none)")
        for stage in apply_at:
            check_choice(owner, "apply_at", stage, APPLY_STAGES)
        self.apply_at = tuple(dict.fromkeys(str(stage) for stage in apply_at))
        if module is not None and (not isinstance(module, str) or not module):
            raise fail(owner, "module", module, "None or the dotted name of a submodule, e.g. 'net'")
        self.module = module
        self.input_key = input_key
        self.target_key = target_key
        self._input_path = normalize_key(input_key, owner, "input_key")
        self._target_path = normalize_key(target_key, owner, "target_key")
        self.forward_fn = check_forward_fn(owner, forward_fn)
        if not isinstance(fit_missing, bool):
            raise fail(owner, "fit_missing", fit_missing, "True or False")
        self.fit_missing = fit_missing
        self.temperature = 1.0
        self.fitted = False
        self.num_samples = 0
        self.last_values: dict[str, float] = {}
        self._why_unfitted = "no temperature has been fitted yet (it is fitted when trainer.fit ends)"
        self._warned = False
        self._wrapped: tuple[nn.Module, Any] | None = None

    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(module=self.module)

    # ---------------------------------------------------------------------------------------- checks

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._target_module(pl_module)

    def _target_module(self, pl_module: pl.LightningModule) -> nn.Module:
        if self.module is None:
            return pl_module
        try:
            return pl_module.get_submodule(self.module)
        except AttributeError:
            names = [name for name, _ in pl_module.named_modules() if name][:8]
            more = ", ..." if len(names) == 8 else ""
            raise fail(
                type(self).__name__,
                "module",
                self.module,
                f"None or the dotted name of a submodule of {type(pl_module).__name__}"
                f" (it has {', '.join(repr(n) for n in names) or 'none'}{more})",
            ) from None

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        require_validation(
            trainer,
            pl_module,
            type(self).__name__,
            "fits the temperature on the validation data after training",
            runs=False,  # it runs its own pass over the validation data
        )

    # ---------------------------------------------------------------------------------------- fitting

    @override
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        owner = type(self).__name__
        if trainer.val_dataloaders is None:  # validation never ran (check_val_every_n_epoch > epochs)
            trainer.fit_loop.epoch_loop.val_loop.setup_data()
        loaders = trainer.val_dataloaders
        logits, labels = self._collect(trainer, pl_module, loaders) if loaders is not None else (None, None)
        if logits is not None and labels is not None and trainer.world_size > 1:
            logits, labels = _gather(trainer, logits), _gather(trainer, labels)
        if logits is None or labels is None or logits.shape[0] == 0:
            self._unfit("no validation batch was available when fitting ended, so none was fitted")
            rank_zero_warn(f"{owner}: {self._why_unfitted}; T stays 1.", category=UserWarning)
            return
        self._fit(trainer, logits, labels)

    def _collect(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, loaders: Any
    ) -> tuple[Tensor | None, Tensor | None]:
        """The validation logits ``(N, C)`` and class indices ``(N,)`` of this process."""
        owner = type(self).__name__
        flat = CombinedLoader(loaders, "sequential").flattened
        limits = list(trainer.num_val_batches) or [
            _batch_limit(trainer.limit_val_batches, loader) for loader in flat
        ]
        stage = trainer.state.stage
        trainer.state.stage = RunningStage.VALIDATING  # DataModule hooks see validation batches
        precision = trainer.precision_plugin
        chunks: list[Tensor] = []
        targets: list[Tensor] = []
        try:  # iterating a loader draws its base seed from the CPU RNG: fork it (forwards fork their own)
            with torch.random.fork_rng(devices=[]):
                for index, (loader, limit) in enumerate(zip(flat, limits, strict=False)):
                    for count, batch in enumerate(loader):
                        if count >= limit:
                            break
                        # As Lightning's evaluation loop: floats to the precision's dtype ("*-true"),
                        # the batch hooks and the device move, then the forward in the step's context
                        # (autocast for "*-mixed", the default dtype for "*-true").
                        batch = precision.convert_input(batch)
                        batch = pl_module._on_before_batch_transfer(batch, dataloader_idx=index)
                        batch = trainer.strategy.batch_to_device(batch, dataloader_idx=index)
                        inputs = read(batch, self._input_path, owner)
                        with precision.val_step_context():
                            logits = eval_forward(pl_module, inputs, self.forward_fn, owner, step_helps=False)
                        target = read(batch, self._target_path, owner)
                        first = not chunks
                        if first:
                            check_classification(owner, logits, target)
                            if logits.ndim != 2:
                                raise fail(
                                    owner,
                                    "forward_fn",
                                    f"an output of shape {tuple(logits.shape)}",
                                    "a forward that returns (N, C) logits (flatten other outputs to (N', C)"
                                    " in `forward_fn`)",
                                )
                        labels = hard_targets(
                            target, logits.shape, int(logits.shape[1]), owner, validate=first
                        )
                        # 16-bit logits widened to float32 (float64 ones kept): the fit is in float64
                        chunks.append(logits.detach().to(torch.promote_types(logits.dtype, torch.float32)))
                        targets.append(labels.to(logits.device))
        finally:
            trainer.state.stage = stage
        if not chunks:
            return None, None
        return torch.cat(chunks), torch.cat(targets)

    def _fit(self, trainer: pl.Trainer, logits: Tensor, labels: Tensor) -> None:
        owner = type(self).__name__
        temperature = fit_temperature(logits, labels, self.max_iter)
        if trainer.world_size > 1:  # the same data on every rank; rank 0's value, bit for bit
            temperature = float(trainer.strategy.broadcast(temperature))
        if temperature in TEMPERATURE_RANGE:
            rank_zero_warn(
                f"{owner}: the fitted temperature reached the bound {temperature:g} of {TEMPERATURE_RANGE}:"
                " the validation set is degenerate for temperature scaling (e.g. every sample is"
                " classified correctly with a wide margin, so the NLL keeps falling as T -> 0).",
                category=UserWarning,
            )
        classes = int(logits.shape[1])
        values: dict[str, float] = {f"{_PREFIX}/temperature": temperature}
        for suffix, scaled in (("before_ts", logits), ("after_ts", logits / temperature)):
            values[f"{_PREFIX}/ece_{suffix}"] = float(
                calibration_error(scaled, labels, classes, self.n_bins, "l1", "logits", validate_args=False)
            )
            values[f"{_PREFIX}/nll_{suffix}"] = float(
                negative_log_likelihood(scaled, labels, classes, input_format="logits", validate_args=False)
            )
            values[f"{_PREFIX}/brier_{suffix}"] = float(
                brier_score(scaled, labels, classes, "logits", validate_args=False)
            )
        self.temperature = temperature
        self.fitted = True
        self.num_samples = int(logits.shape[0])
        self._warned = False
        self.last_values = values
        for logger in trainer.loggers:
            logger.log_metrics(values, step=trainer.global_step)
        trainer.callback_metrics.update({key: torch.tensor(value) for key, value in values.items()})

        def change(name: str) -> str:
            return (
                f"{values[f'{_PREFIX}/{name}_before_ts']:.4f} -> {values[f'{_PREFIX}/{name}_after_ts']:.4f}"
            )

        rank_zero_info(
            f"{owner}: T = {temperature:.4f} fitted on {self.num_samples} validation samples;"
            f" ECE {change('ece')}, NLL {change('nll')}, Brier {change('brier')}."
        )

    def _unfit(self, reason: str) -> None:
        self.temperature = 1.0
        self.fitted = False
        self.num_samples = 0
        self._why_unfitted = reason
        self._warned = False

    # ---------------------------------------------------------------------------------------- applying

    @override
    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._apply("predict" if trainer.predicting else "test", trainer, pl_module)

    on_predict_start = on_test_start  # one hook for both stages: the stage comes from the trainer

    def _fit_for_loaded_weights(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Fit ``T`` now, on the validation data, for weights that came without one (``fit_missing``)."""
        source = trainer.fit_loop.epoch_loop.val_loop._data_source
        if not source.is_defined():
            self._why_unfitted += " and there is no validation data to fit one on now"
            return
        try:
            loaders = source.dataloader()
        except Exception as err:  # a DataModule whose validation split is not set up for this stage
            self._why_unfitted += f", and the validation data could not be loaded to fit one now ({err!r})"
            return
        logits, labels = self._collect(trainer, pl_module, loaders)
        if logits is not None and labels is not None and trainer.world_size > 1:
            logits, labels = _gather(trainer, logits), _gather(trainer, labels)
        if logits is not None and labels is not None and logits.shape[0] > 0:
            rank_zero_info(
                f"{type(self).__name__}: {self._why_unfitted}; fitting one on the validation data now."
            )
            self._fit(trainer, logits, labels)

    def _apply(self, stage: str, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._remove()
        if stage not in self.apply_at:
            return
        if not self.fitted and self.fit_missing:
            self._fit_for_loaded_weights(trainer, pl_module)
        if not self.fitted:
            if not self._warned:
                self._warned = True
                rank_zero_warn(
                    f"{type(self).__name__}: {self._why_unfitted}; {stage} runs without temperature (T = 1)."
                    " Checkpoints written by ModelCheckpoint during fitting hold no temperature: test the"
                    " model in memory after fit, or a checkpoint saved after fit (trainer.save_checkpoint).",
                    category=UserWarning,
                )
            return
        target = self._target_module(pl_module)
        self._wrapped = (target, target.__dict__.get("forward"))
        wrapped = _divided(target.forward, self.temperature, type(self).__name__, type(target).__name__)
        target.__dict__["forward"] = wrapped  # on the instance: model(x) and model.forward(x) both see it

    def _remove(self, *_: Any, **__: Any) -> None:
        """Give the module its own forward back (idempotent); as a hook, whatever the hook's arguments."""
        if self._wrapped is None:
            return
        target, previous = self._wrapped
        self._wrapped = None
        if previous is None:
            target.__dict__.pop("forward", None)
        else:
            target.__dict__["forward"] = previous

    on_test_end = on_predict_end = on_exception = _remove

    # ---------------------------------------------------------------------------------------- state

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "fitted": self.fitted, "num_samples": self.num_samples}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if not bool(state_dict.get("fitted", False)):
            self._unfit(
                "the checkpoint loaded was saved before a temperature was fitted (e.g. by ModelCheckpoint"
                " during fitting: T is fitted when fitting ends)"
            )
            return
        self.temperature = float(state_dict.get("temperature", 1.0))
        self.fitted = True
        self.num_samples = int(state_dict.get("num_samples", 0))

    @override
    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        if self.state_key not in checkpoint.get("callbacks", {}):  # other weights: this T is not theirs
            self._unfit("the checkpoint loaded holds no TemperatureScaling state (no temperature)")


def _divided(forward: Callable[..., Any], temperature: float, owner: str, name: str) -> Callable[..., Any]:
    """``forward`` with its logits divided by ``temperature`` (a tensor, or a mapping's ``"logits"``)."""

    def scaled(*args: Any, **kwargs: Any) -> Any:
        output = forward(*args, **kwargs)
        if isinstance(output, Tensor):
            return output / temperature
        if isinstance(output, Mapping) and isinstance(output.get("logits"), Tensor):
            return {**output, "logits": output["logits"] / temperature}
        raise fail(
            owner,
            "module",
            f"a module whose forward returns {type(output).__name__}",
            f"a module whose forward returns a tensor of logits or a mapping with 'logits' ({name}'s does"
            " not: name the submodule that returns the logits)",
        )

    return scaled


def _batch_limit(limit: int | float | None, loader: Any) -> float:
    """How many batches of ``loader`` ``limit_val_batches`` allows (as Lightning counts them).

    Example:
        >>> _batch_limit(2, range(10)), _batch_limit(0.25, range(10)), _batch_limit(1.0, range(10))
        (2, 2, inf)
    """
    if limit is None or (isinstance(limit, float) and limit >= 1.0):
        return float("inf")
    if isinstance(limit, int):
        return limit
    try:
        return max(int(len(loader) * limit), 1)
    except TypeError:  # an iterable without a length: as many as it yields
        return float("inf")


def _gather(trainer: pl.Trainer, values: Tensor) -> Tensor:
    """Concatenate ``values`` of every process along dim 0 (each may hold a different number of rows)."""
    size = torch.tensor([values.shape[0]], device=values.device)
    sizes = trainer.strategy.all_gather(size).reshape(-1).tolist()
    padding = [0, 0] * (values.ndim - 1) + [0, int(max(sizes)) - values.shape[0]]
    gathered = trainer.strategy.all_gather(torch.nn.functional.pad(values, padding))
    return torch.cat([gathered[rank, : int(count)] for rank, count in enumerate(sizes)])
