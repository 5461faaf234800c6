"""GradientNoise: annealed Gaussian noise on the gradients, identical on every rank."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal, Union

import lightning.pytorch as pl
import torch
from torch.optim import Optimizer
from typing_extensions import override

from lit_noise._validation import check_int, fail
from lit_noise.callbacks._parameter_selection import FollowsFreezing, ParameterSelection
from lit_noise.callbacks.weight_noise import refuse_manual_optimization
from lit_noise.errors import ConfigurationError
from lit_noise.functional.params import FlatLayout, Patterns, gaussian_, normalize_patterns
from lit_noise.schedules import Schedule, ScheduleLike, as_schedule

__all__ = ["GradientNoise", "Relative"]

#: ``GradientNoise(relative=...)``: ``False`` (absolute), ``"tensor"`` (or ``True``) or ``"global"``.
Relative = Union[bool, Literal["tensor", "global"]]
_Mode = Literal[False, "tensor", "global"]
_RELATIVE: dict[bool | str, _Mode] = {False: False, True: "tensor", "tensor": "tensor", "global": "global"}


class GradientNoise(FollowsFreezing):
    """Add Gaussian noise ``std * N(0, 1)`` (or ``std * RMS(grad) * N(0, 1)``) to the gradients.

    The noise goes in ``on_before_optimizer_step``: once per optimizer step (not per micro-batch
    under gradient accumulation), after mixed precision has unscaled the gradients and before
    gradient clipping, so the clipping threshold bounds the noisy gradient. Parameters without a
    gradient are skipped; a sparse gradient (``nn.Embedding(sparse=True)``) is refused at the first
    step (or the first one where it appears, or the first after its parameter was unfrozen): leave
    it out with ``exclude``. Gradient noise changes the weights for good, so it is the same on
    every DDP rank: the generator is seeded from (seed, optimizer step) only, never the rank. Same
    seed, same run; a resumed run continues the same noise.

    For the annealed noise of Neelakantan et al. (2015), "Adding Gradient Noise Improves Learning
    for Very Deep Networks", whose *variance* is ``eta / (1 + t) ** gamma`` at step ``t``, pass
    ``std=AnnealedStd(eta, gamma)`` (its square root).

    Absolute noise does not suit adaptive optimizers: Adam divides each coordinate by its running
    RMS, so noise much larger than the gradient becomes a random walk of step ``lr`` (the small
    gradients of a BatchNorm CNN drown in ``std=0.1``). ``relative="tensor"`` multiplies each
    tensor's noise by that gradient's root mean square ``sqrt(mean(g ** 2))``, so ``std`` is a
    signal-to-noise ratio: the expected squared norm of the noise is ``std ** 2 * ||g||^2`` for
    every tensor, and a tensor whose gradient is zero gets none. ``relative="global"`` uses one RMS
    over all the selected gradients (the global norm divided by the square root of their number of
    elements): the same ratio for the whole model. The RMS is taken from the gradients the step
    uses (after unscaling, identical on every DDP rank), one fused norm per chunk.

    Args:
        std: standard deviation (>= 0), a number or a schedule (``AnnealedStd``, ``Linear``, ...);
            with ``relative``, a fraction of the gradients' RMS.
        relative: ``False`` (absolute noise), ``"tensor"`` (or ``True``; scaled to each tensor's
            gradient RMS) or ``"global"`` (scaled to the RMS of all the selected gradients).
        seed: base seed (``None``: drawn from torch's RNG at setup and shared from rank 0).
        include: glob patterns or ``re:`` regexes selecting parameters by name; ``None``: every
            parameter. Of those, the trainable ones get noise, checked again at the first optimizer
            step of each epoch: a parameter unfrozen in ``on_train_epoch_start`` (Lightning's
            ``BackboneFinetuning``) gets noise from that step on (see :class:`~lit_noise.WeightNoise`).
        exclude: patterns of parameters whose gradients stay clean.
        name: name in logged keys (``noise/<name>/std``) and checkpoint state; ``None``:
            ``"gradient"`` (two GradientNoise in one Trainer need distinct names).
        scale: multiplier on ``std`` (the controller's knob).
        chunk_size: elements per random draw (default ``2**18`` on CPU, ``2**24`` on GPUs).

    Example:
        >>> import lightning.pytorch as pl
        >>> from lit_noise import AnnealedStd, GradientNoise
        >>> from lit_noise.examples import Classifier, DigitsDataModule
        >>> noise = GradientNoise(std=AnnealedStd(eta=0.01, gamma=0.55), seed=0)
        >>> trainer = pl.Trainer(max_epochs=1, callbacks=[noise], logger=False,
        ...                      enable_checkpointing=False, enable_progress_bar=False,
        ...                      enable_model_summary=False, limit_train_batches=4, limit_val_batches=0)
        >>> trainer.fit(Classifier(), DigitsDataModule())
        >>> round(noise.last_values["std"] ** 2, 6) == round(0.01 / (1 + 3) ** 0.55, 6)  # step t = 3
        True
        >>> GradientNoise(std=0.1, relative=True).relative  # noise of 10 % of each gradient's RMS
        'tensor'
    """

    def __init__(
        self,
        std: ScheduleLike,
        relative: Relative = False,
        seed: int | None = None,
        include: Patterns = None,
        exclude: Patterns = None,
        name: str | None = None,
        scale: float = 1.0,
        chunk_size: int | None = None,
    ) -> None:
        owner = "GradientNoise"
        if not isinstance(std, (Schedule, int, float)) or isinstance(std, bool):
            raise fail(owner, "std", std, "a standard deviation >= 0 or a schedule")
        super().__init__(name, seed, scale, default_name="gradient")
        if not isinstance(relative, (bool, str)) or relative not in _RELATIVE:
            raise fail(owner, "relative", relative, "False, 'tensor' (or True) or 'global'")
        self.relative: _Mode = _RELATIVE[relative]
        self.std = as_schedule(std, owner, "std")
        low, _ = self.std.min_max()
        if low < 0.0:
            raise fail(owner, "std", std, f"a standard deviation >= 0 (this one reaches {low:g})")
        self.include = normalize_patterns(owner, "include", include)
        self.exclude = normalize_patterns(owner, "exclude", exclude)
        self.chunk_size = None if chunk_size is None else check_int(owner, "chunk_size", chunk_size, 1)
        self._layout: FlatLayout | None = None
        self._params: list[torch.nn.Parameter] = []
        self._names: list[str] = []
        self._grads_checked = False

    @override
    def _schedules(self) -> Iterable[Schedule]:
        return [self.std]

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit":
            refuse_manual_optimization(
                "GradientNoise",
                pl_module,
                "it adds the noise in `on_before_optimizer_step`, seeded by the optimizer step, once"
                " per step that Lightning's loop takes; a module that steps its optimizers itself is"
                " not supported yet.",
            )
        super().setup(trainer, pl_module, stage)

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start_selection(ParameterSelection("GradientNoise", pl_module, self.include, self.exclude))

    @override
    def _select(self, selection: ParameterSelection) -> None:
        self._params, aliases = selection.pick()
        self._names = [names[0] for names in aliases]
        self._layout = None  # the old layout's buffers go before the new ones are allocated
        self._layout = FlatLayout(self._params, self.chunk_size)
        self._grads_checked = False  # the sparse check covers the new selection at its first step

    @override
    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Optimizer
    ) -> None:
        if self._recheck:  # the epoch's first step, after every on_train_epoch_start (unfreezing)
            self._reselect(trainer)
        layout = self._layout
        if layout is None:
            raise RuntimeError("GradientNoise: on_fit_start did not run before the first step.")
        if not self._grads_checked:  # once: the gradients of the first step, before any noise
            self._refuse_sparse([p.grad for p in self._params])
            self._grads_checked = True
        std = self.std(self._clock(trainer)) * self.scale
        self._log(trainer, pl_module, {"std": std})
        if std == 0.0 or not self._params:
            return
        # Seeded from the optimizer step (and epoch), never the rank: the same noise on every replica.
        step = trainer.global_step
        generators = {d: self._generator(d, trainer, step, per_rank=False) for d in layout.devices}
        grads = [p.grad for p in self._params]
        try:
            factors = layout.rms(grads, per_tensor=self.relative == "tensor") if self.relative else None
            layout.add_(
                lambda out, generator: gaussian_(out, std, 0.0, generator),
                generators,
                targets=grads,
                factors=factors,
            )
        except (RuntimeError, NotImplementedError):
            # A sparse gradient first seen after the first step: say so rather than torch's error.
            self._refuse_sparse(grads)
            raise

    def _refuse_sparse(self, grads: Sequence[torch.Tensor | None]) -> None:
        """Raise :class:`ConfigurationError` if one of ``grads`` is not a dense (strided) tensor."""
        sparse = [
            f"{name} ({grad.layout})"
            for name, grad in zip(self._names, grads, strict=True)
            if grad is not None and grad.layout != torch.strided
        ]
        if sparse:
            raise ConfigurationError(
                f"GradientNoise: these parameters have sparse gradients: {', '.join(sparse)}. Gradient"
                " noise is dense (one draw per element), so it cannot go into a sparse gradient (from"
                " nn.Embedding or nn.EmbeddingBag with sparse=True, ...). Leave those parameters out"
                " with `exclude=` (their names or a pattern), or use dense gradients (sparse=False)."
            )

    @override
    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit":
            self._layout, self._selection, self._params, self._names = None, None, [], []
