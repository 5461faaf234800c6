"""WeightNoise: take each gradient at noisy weights, let the optimizer update the clean ones."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import lightning.pytorch as pl
import torch
from torch import Tensor
from torch.optim import Optimizer
from typing_extensions import override

from lit_noise._validation import check_choice, check_int, fail
from lit_noise.callbacks._parameter_selection import FollowsFreezing, ParameterSelection
from lit_noise.errors import ConfigurationError
from lit_noise.functional.params import (
    FlatLayout,
    Patterns,
    Sampler,
    gaussian_,
    laplace_,
    normalize_patterns,
    uniform_,
)
from lit_noise.noise import Gaussian, Laplace, Mask, Noise, Speckle, Uniform
from lit_noise.schedules import Schedule

__all__ = ["WeightNoise"]

RestoreMode = Literal["copy", "regenerate"]
_HALF = (torch.float16, torch.bfloat16)


def _additive_sampler(noise: Noise, params: Mapping[str, float]) -> Sampler | None:
    """The in-place sampler of an additive noise at resolved ``params``; ``None`` when it is zero."""
    if isinstance(noise, Gaussian):
        std, mean = params["std"], params["mean"]
        if std == 0.0 and mean == 0.0:
            return None
        return lambda out, generator: gaussian_(out, std, mean, generator)
    if isinstance(noise, Uniform):
        width = params["width"]
        return None if width == 0.0 else lambda out, generator: uniform_(out, width, generator)
    scale = params["scale"]
    return None if scale == 0.0 else lambda out, generator: laplace_(out, scale, generator)


_ADDITIVE: tuple[type[Noise], ...] = (Gaussian, Uniform, Laplace)
_ELEMENTWISE: tuple[type[Noise], ...] = (Speckle, Mask)


def refuse_manual_optimization(owner: str, pl_module: pl.LightningModule, reason: str) -> None:
    """Raise :class:`ConfigurationError` if ``pl_module`` optimises manually; ``reason`` says why."""
    if not pl_module.automatic_optimization:
        raise ConfigurationError(
            f"{owner} does not support manual optimisation (`automatic_optimization = False`): {reason}"
            " Use automatic optimisation."
        )


@dataclass
class _Pending:
    """What is needed to undo the current perturbation."""

    epoch: int
    batch_idx: int
    sample: Sampler | None
    factors: list[Tensor | None] = field(default_factory=list)


class WeightNoise(FollowsFreezing):
    """Compute every gradient at noisy weights while the optimizer updates the clean ones.

    For each training micro-batch the selected parameters are perturbed in ``on_train_batch_start``
    (after their clean values are saved), ``training_step`` and backward run at the noisy point,
    and the clean values come back in ``on_after_backward``, before the optimizer step, so the
    step applies the noisy-point gradient to the clean weights and the noise never stacks under
    gradient accumulation. Restoring is idempotent and is repeated at every later point where
    noisy weights could leak: ``on_before_optimizer_step`` (``training_step`` returned ``None``,
    so there was no backward), ``on_train_batch_end``, ``on_train_epoch_end`` (the module's
    ``on_train_batch_start`` returned -1), ``on_validation_start``, ``on_exception`` and
    ``teardown``; and a checkpoint saved while the weights are noisy (from inside
    ``training_step``) gets the clean values written into its ``state_dict``. Restoring is an
    in-place copy under ``torch.no_grad()``, which bumps the parameters' version counters: a
    restore before backward would make autograd raise rather than silently use wrong weights.

    Noise is drawn per micro-batch from a generator seeded by (seed, epoch, batch index, rank):
    the same seed gives the same run, a resumed run continues the same noise, and DDP ranks draw
    different noise (the clean copy goes back before the step, so replicas stay identical).

    Args:
        noise: ``Gaussian``, ``Uniform`` or ``Laplace`` (additive; any ``restore``, may be
            ``relative``), or ``Speckle`` (multiplicative) or ``Mask`` (DropConnect) with
            ``restore="copy"`` and ``relative=False``. Its parameters may be schedules.
        include: glob patterns (``"encoder.*"``, ``"*.weight"``) or regexes prefixed with ``re:``
            (matched against the whole name) selecting parameters by their ``named_parameters()``
            name; ``None``: every parameter. Of those, the trainable ones (``requires_grad``) get
            noise: which they are is checked again at the first training batch of each epoch,
            after every ``on_train_epoch_start``, so a parameter unfrozen there (Lightning's
            ``BackboneFinetuning``) gets noise from that epoch on and one frozen again stops
            getting it. Buffers (BatchNorm statistics) are never touched. Each pattern must match
            some parameter; one that matches only frozen ones is accepted with a warning (and
            another at the end of the fit if they never became trainable). Several WeightNoise may
            share a Trainer only if no parameter, trainable or frozen, is selected by two of them
            (refused at fit start: each undoes only its own noise). A parameter of a lazy module
            that is not initialised when it is to get noise is refused.
        exclude: patterns of parameters to leave clean.
        relative: multiply each tensor's noise by that tensor's population standard deviation,
            computed from its clean values at each micro-batch (Parametric Noise Injection);
            a tensor whose elements are all equal (a zero-initialised bias, a single number) then
            gets no noise. ``False``: absolute noise.
        restore: ``"copy"`` keeps a clean copy of the selected parameters (exact);
            ``"regenerate"`` keeps none: it replays the generator and subtracts the noise, which
            restores each element to within about 1 ulp of ``max(|w|, |w + noise|)`` (refused for
            float16/bfloat16 parameters, where that is far too coarse, and when
            ``trainer.world_size > 1``, where each rank's rounding residue would differ and the DDP
            replicas drift apart).
        seed: base seed (``None``: drawn from torch's RNG at setup and shared from rank 0).
        name: name in logged keys (``noise/<name>/<param>``), logged settings
            (``lit_noise/<name>/...``) and checkpoint state; ``None``: ``"weight"``, or
            ``"weight_<noise>"`` when several unnamed WeightNoise share the Trainer (see
            :class:`~lit_noise.NoiseCallback`).
        scale: multiplier on the noise strength (the controller's knob).
        closure_optimizers: class names of optimizers that re-evaluate the closure within one
            step (``LBFGS``, SAM-style): refused, since their re-evaluations would see clean weights.
        chunk_size: elements per random draw (default ``2**18`` on CPU, ``2**24`` on GPUs); the
            scratch memory is one chunk or the largest selected tensor, whichever is larger.

    Example:
        >>> import lightning.pytorch as pl
        >>> from lit_noise import Gaussian, WeightNoise
        >>> from lit_noise.examples import Classifier, DigitsDataModule
        >>> noise = WeightNoise(Gaussian(std=0.01), relative=True, exclude="*.bias", seed=0)
        >>> trainer = pl.Trainer(max_epochs=1, callbacks=[noise], logger=False,
        ...                      enable_checkpointing=False, enable_progress_bar=False,
        ...                      enable_model_summary=False, limit_train_batches=2, limit_val_batches=0)
        >>> trainer.fit(Classifier(), DigitsDataModule())
        >>> noise.last_values["std"], noise.is_noisy
        (0.01, False)
    """

    def __init__(
        self,
        noise: Noise,
        include: Patterns = None,
        exclude: Patterns = None,
        relative: bool = False,
        restore: RestoreMode = "copy",
        seed: int | None = None,
        name: str | None = None,
        scale: float = 1.0,
        closure_optimizers: Sequence[str] = ("LBFGS",),
        chunk_size: int | None = None,
    ) -> None:
        owner = "WeightNoise"
        if type(noise) not in _ADDITIVE + _ELEMENTWISE:  # exact types: each is sampled by its own code
            raise fail(
                owner,
                "noise",
                noise,
                "Gaussian, Uniform or Laplace (additive), or Speckle or Mask (with restore='copy'"
                " and relative=False)",
            )
        super().__init__(name, seed, scale, default_name="weight")
        self.noise = noise
        self.include = normalize_patterns(owner, "include", include)
        self.exclude = normalize_patterns(owner, "exclude", exclude)
        if not isinstance(relative, bool):
            raise fail(owner, "relative", relative, "True or False")
        self.relative = relative
        self.restore: RestoreMode = check_choice(owner, "restore", restore, ("copy", "regenerate"))
        self._additive = type(noise) in _ADDITIVE
        if not self._additive and (relative or restore != "copy"):
            raise fail(
                owner,
                "noise",
                noise,
                "an additive noise (Gaussian, Uniform, Laplace) when relative=True or"
                " restore='regenerate' (Speckle and Mask can only be undone from a copy)",
            )
        if isinstance(closure_optimizers, str) or not isinstance(closure_optimizers, Sequence):
            raise fail(owner, "closure_optimizers", closure_optimizers, "a sequence of optimizer class names")
        if not all(isinstance(c, str) and c for c in closure_optimizers):
            raise fail(owner, "closure_optimizers", closure_optimizers, "non-empty class name strings")
        self.closure_optimizers = tuple(str(c) for c in closure_optimizers)
        self.chunk_size = None if chunk_size is None else check_int(owner, "chunk_size", chunk_size, 1)
        self._layout: FlatLayout | None = None
        self._params: list[torch.nn.Parameter] = []
        self._aliases: list[list[str]] = []
        self._pending: _Pending | None = None

    @property
    def is_noisy(self) -> bool:
        """True between a perturbation and its restore."""
        return self._pending is not None

    @property
    def buffer_bytes(self) -> int:
        """Bytes of the buffers held while fitting: the clean copy (``"copy"``) and one scratch chunk."""
        return 0 if self._layout is None else self._layout.nbytes

    @override
    def _schedules(self) -> Iterable[Schedule]:
        return self.noise.schedules().values()

    # ---------------------------------------------------------------- checks before anything changes

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit":
            refuse_manual_optimization(
                "WeightNoise",
                pl_module,
                "it perturbs the weights when a training batch starts and restores them after its"
                " backward pass, which needs Lightning to run one forward/backward per micro-batch;"
                " a module that runs its own forward/backward passes and steps would train at noisy"
                " or half-restored weights.",
            )
            if self.restore == "regenerate" and trainer.world_size > 1:
                raise ConfigurationError(
                    "WeightNoise: `restore` must be 'copy' when training runs in several processes"
                    f" (world_size={trainer.world_size}), got 'regenerate'. Each rank draws its own"
                    " noise, and subtracting it again gives a weight back only to within rounding"
                    " (fl(fl(w + n) - n) is not always w), a residue that differs from rank to rank:"
                    " the replicas would drift apart. restore='copy' (the default) copies the clean"
                    " values back exactly and keeps every replica identical."
                )
        super().setup(trainer, pl_module, stage)

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._check_optimizers(trainer.optimizers)
        selection = ParameterSelection("WeightNoise", pl_module, self.include, self.exclude)
        self._refuse_overlap(trainer, selection)
        self._pending = None
        self._start_selection(selection)

    @override
    def _select(self, selection: ParameterSelection) -> None:
        """Lay the noise out over the selected parameters that are trainable now.

        Called at fit start and, when one was frozen or unfrozen, at the first batch of an epoch,
        before it perturbs anything: never while a perturbation is pending, so every restore undoes
        exactly what the layout it was made with perturbed.
        """
        assert self._pending is None
        params, aliases = selection.pick()
        if self.restore == "regenerate":
            half = sorted({str(p.dtype) for p in params if p.dtype in _HALF})
            if half:
                raise ConfigurationError(
                    f"WeightNoise: restore='regenerate' is refused for {', '.join(half)} parameters:"
                    " subtracting the replayed noise restores a weight only to within about one unit"
                    " in the last place of max(|w|, |w + noise|), too coarse at half precision. Use"
                    " restore='copy'."
                )
        self._params, self._aliases = params, aliases
        self._layout = None  # the old layout's buffers go before the new ones are allocated
        self._layout = FlatLayout(
            params, self.chunk_size, keep_copy=self.restore == "copy", stats=self.relative
        )

    def _refuse_overlap(self, trainer: pl.Trainer, selection: ParameterSelection) -> None:
        """Refuse a parameter that a WeightNoise listed before this one also selects, trainable or not.

        Those ran ``on_fit_start`` already in this fit, so their selection is this fit's; the ones
        listed after this one may still hold an earlier fit's (they compare with this one in turn).
        Frozen parameters count: once trainable, they would get both noises.
        """
        callbacks: list[pl.Callback] = trainer.callbacks  # type: ignore[attr-defined]
        for other in callbacks:
            if other is self:
                return
            if not isinstance(other, WeightNoise) or other._selection is None:
                continue
            theirs = {id(p) for p in other._selection.candidates}
            shared = next(
                (
                    (names[0], p.requires_grad)
                    for p, names in zip(selection.candidates, selection.aliases, strict=True)
                    if id(p) in theirs
                ),
                None,
            )
            if shared is not None:
                frozen = " (frozen now: it would get both noises once trainable)" if not shared[1] else ""
                raise ConfigurationError(
                    f"WeightNoise({self.name!r}) and WeightNoise({other.name!r}), listed before it, both"
                    f" select the parameter {shared[0]!r}{frozen}. Each undoes only its own perturbation,"
                    " one after the other, so together they would not give the clean weights back (with"
                    f" restore='copy', {self.name!r} restores values it saved after {other.name!r} had"
                    " added its noise) and noise would stay in the weights for good. Give them disjoint"
                    " parameters (`include` / `exclude` patterns), or use one WeightNoise."
                )

    def _check_optimizers(self, optimizers: Sequence[Optimizer]) -> None:
        for optimizer in optimizers:
            if any(cls.__name__ in self.closure_optimizers for cls in type(optimizer).__mro__):
                raise ConfigurationError(
                    f"WeightNoise does not support {type(optimizer).__name__}: it re-evaluates the"
                    " closure within one step, and those re-evaluations would run at the restored"
                    f" clean weights (closure_optimizers={list(self.closure_optimizers)})."
                )

    # ---------------------------------------------------------------- perturb

    def _replay(
        self, trainer: pl.Trainer, pending: _Pending
    ) -> tuple[Sampler, dict[torch.device, torch.Generator]]:
        """The sampler of the additive perturbation ``pending`` and generators in the state it drew from."""
        assert self._layout is not None
        assert pending.sample is not None
        if trainer.current_epoch != pending.epoch:  # never in Lightning's loops: restores precede epoch ends
            raise RuntimeError("WeightNoise: cannot replay the noise of an earlier epoch.")
        generators = {d: self._generator(d, trainer, pending.batch_idx) for d in self._layout.devices}
        return pending.sample, generators

    @override
    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._restore(trainer)
        if self._recheck:  # the epoch's first batch, after every on_train_epoch_start (unfreezing)
            self._reselect(trainer)
        layout = self._layout
        if layout is None:
            raise RuntimeError("WeightNoise: on_fit_start did not run before the first batch.")
        params = self.noise.resolve(self._clock(trainer), self.scale)
        self._log(trainer, pl_module, params)
        sample = _additive_sampler(self.noise, params) if self._additive else None
        if not self._params or (
            sample is None and (self._additive or all(params[k] == 0.0 for k in self.noise.strength))
        ):
            return  # nothing selected is trainable, or zero strength at this step: nothing to undo
        pending = _Pending(trainer.current_epoch, batch_idx, sample)
        generators = {d: self._generator(d, trainer, batch_idx) for d in layout.devices}
        if self.restore == "copy":
            layout.save_()
        self._pending = pending
        if sample is not None:
            layout.add_(sample, generators, relative=self.relative, done=pending.factors)
        else:
            noise = self.noise
            layout.replace_(lambda x, generator: noise.apply(x, params, generator), generators)

    # ---------------------------------------------------------------- restore

    def _restore(self, trainer: pl.Trainer) -> None:
        pending, self._pending = self._pending, None
        if pending is None or self._layout is None:
            return
        if self.restore == "copy":
            self._layout.restore_()
        else:
            self._layout.sub_(*self._replay(trainer, pending), pending.factors)

    @override
    def on_after_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._restore(trainer)

    @override
    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Optimizer
    ) -> None:
        self._restore(trainer)

    @override
    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._restore(trainer)

    @override
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._restore(trainer)

    @override
    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._restore(trainer)

    @override
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._restore(trainer)
        super().on_train_end(trainer, pl_module)

    @override
    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        self._restore(trainer)

    @override
    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._restore(trainer)
        if stage == "fit":
            self._layout, self._selection, self._params, self._aliases = None, None, [], []

    @override
    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        """Write the clean values into a checkpoint saved while the weights are noisy.

        The live weights stay noisy (backward may still be pending); only the ``state_dict``
        entries that are the live noisy parameters are replaced.
        """
        pending, layout, state = self._pending, self._layout, checkpoint.get("state_dict")
        if pending is None or layout is None or not isinstance(state, dict):
            return
        if self.restore == "copy":
            clean = layout.clean_copies()
        else:
            clean = layout.replayed_clean(*self._replay(trainer, pending), pending.factors)
        for param, value, aliases in zip(self._params, clean, self._aliases, strict=True):
            for alias in aliases:
                stored = state.get(alias)
                if isinstance(stored, Tensor) and _is_live(stored, param):
                    state[alias] = value.to(device=stored.device, dtype=stored.dtype)


def _is_live(stored: Tensor, param: Tensor) -> bool:
    """Whether ``stored`` is (a view or a copy of) the live parameter ``param``."""
    if stored.shape != param.shape:
        return False
    if stored.device == param.device and stored.data_ptr() == param.data_ptr():
        return True
    return bool(torch.equal(stored.detach().to(device=param.device, dtype=param.dtype), param.detach()))
