"""What the monitors share: the evaluation forward, the step's logits and the classification checks."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Union

import torch
from torch import Tensor, nn

from lit_noise._validation import fail
from lit_noise.batch import read
from lit_noise.errors import ConfigurationError
from lit_noise.soft_labels import SoftLabels

__all__ = [
    "require_validation",
    "ForwardFn",
    "check_classification",
    "check_forward_fn",
    "check_training_targets",
    "eval_forward",
    "regression_targets",
    "step_logits",
]

#: How a monitor runs the model on inputs: ``None`` (``module(inputs)``), the name of a method of
#: the module called with the inputs (``"predict_logits"``, buildable from YAML), or a callable
#: ``f(module, inputs) -> logits``.
ForwardFn = Union[str, Callable[[nn.Module, Tensor], Tensor], None]


@contextlib.contextmanager
def _eval_mode(module: nn.Module) -> Iterator[None]:
    """Put every submodule in eval mode and restore each one's own flag afterwards."""
    modes = [(m, m.training) for m in module.modules()]
    if not any(flag for _, flag in modes):
        yield
        return
    module.eval()
    try:
        yield
    finally:
        for submodule, flag in modes:
            submodule.training = flag


def check_forward_fn(owner: str, forward_fn: object) -> ForwardFn:
    """Return ``forward_fn`` if it is ``None``, a method name or a callable, else raise.

    Example:
        >>> check_forward_fn("Monitor", "predict_logits")
        'predict_logits'
    """
    if forward_fn is None or callable(forward_fn):
        return forward_fn
    if isinstance(forward_fn, str) and forward_fn.isidentifier():
        return forward_fn
    raise fail(
        owner,
        "forward_fn",
        forward_fn,
        "None, the name of a method of the module, or a callable f(module, x)",
    )


def _call(pl_module: nn.Module, inputs: Tensor, forward_fn: ForwardFn, owner: str, step_helps: bool) -> Any:
    if forward_fn is not None and not isinstance(forward_fn, str):
        return forward_fn(pl_module, inputs)
    name = "forward" if forward_fn is None else forward_fn
    method = getattr(pl_module, name, None)
    if not callable(method):
        raise fail(
            owner,
            "forward_fn",
            forward_fn,
            f"the name of a method of {type(pl_module).__name__} (it has no method {name!r})",
        )
    call = pl_module if forward_fn is None else method
    try:
        return call(inputs)
    except TypeError as err:  # most often: forward needs more than the input tensor
        step = "return the logits from the evaluation step (a tensor, or a dict with 'logits'), or "
        raise ConfigurationError(
            f"{owner}: running the model on the batch's input alone, {type(pl_module).__name__}.{name}(x)"
            f" with `x` the tensor at `input_key`, raised TypeError: {err}. If the model needs more than"
            f" that tensor, {step if step_helps else ''}pass `forward_fn`: the name of a method that takes"
            " the input tensor and returns logits, or a callable f(module, x) -> logits."
        ) from err


def eval_forward(
    pl_module: nn.Module,
    inputs: Tensor,
    forward_fn: ForwardFn = None,
    owner: str = "eval_forward",
    step_helps: bool = True,
) -> Tensor:
    """The model's logits for ``inputs`` under ``no_grad`` in eval mode, leaving modes and RNG states alone.

    Every submodule's ``training`` flag is restored afterwards, and the global CPU RNG (and the
    module's CUDA device RNG) are forked, so a model that draws random numbers in its forward does
    not shift the rest of the run.

    Args:
        pl_module: the model.
        inputs: the input tensor.
        forward_fn: ``None`` for ``pl_module(inputs)``, a method name, or ``f(pl_module, inputs)``
            (:data:`ForwardFn`).
        owner: who runs it, for the messages.
        step_helps: whether returning the logits from the evaluation step would spare this forward
            (said in the message when the call fails).

    Raises:
        ConfigurationError: the output is not a tensor, ``forward_fn`` names no method, or calling
            the module (or the named method) with the one tensor raised ``TypeError`` (the message
            says what to do; the original error is chained).

    Example:
        >>> net = nn.Sequential(nn.Linear(3, 3), nn.Dropout(0.5)).train()
        >>> state = torch.random.get_rng_state()
        >>> out = eval_forward(net, torch.ones(2, 3))
        >>> net.training, torch.equal(state, torch.random.get_rng_state())
        (True, True)
    """
    device = inputs.device
    devices = (
        [device.index if device.index is not None else torch.cuda.current_device()]
        if device.type == "cuda"
        else []
    )
    with torch.random.fork_rng(devices=devices), torch.no_grad(), _eval_mode(pl_module):
        output = _call(pl_module, inputs, forward_fn, owner, step_helps)
    if not isinstance(output, Tensor):
        raise fail(
            type(pl_module).__name__,
            "forward" if forward_fn is None else "forward_fn",
            type(output).__name__,
            "a tensor of logits (N, C, ...)",
        )
    return output


def step_logits(outputs: Any) -> Tensor | None:
    """The logits an evaluation step returned: a tensor, or the ``"logits"`` entry of a mapping; else None.

    Example:
        >>> step_logits({"logits": torch.zeros(2, 3), "loss": torch.tensor(0.0)}).shape
        torch.Size([2, 3])
        >>> step_logits(None) is None
        True
    """
    if isinstance(outputs, Tensor):
        return outputs
    if isinstance(outputs, Mapping) and isinstance(outputs.get("logits"), Tensor):
        return outputs["logits"]  # type: ignore[no-any-return]
    return None


def regression_targets(target: object) -> bool:
    """Whether ``target`` looks like regression targets: a float tensor of shape ``(N,)`` or ``(N, 1)``.

    Class indices are integers, :class:`~lit_noise.SoftLabels` and class distributions ``(N, C)``
    have ``C >= 2`` columns.

    Example:
        >>> regression_targets(torch.rand(8)), regression_targets(torch.rand(8, 1))
        (True, True)
        >>> regression_targets(torch.tensor([0, 2, 1])), regression_targets(torch.rand(8, 3))
        (False, False)
    """
    return (
        isinstance(target, Tensor)
        and not isinstance(target, SoftLabels)
        and target.is_floating_point()
        and (target.ndim == 1 or (target.ndim == 2 and target.shape[1] == 1))
    )


def check_classification(owner: str, logits: Tensor | None, target: object) -> None:
    """Refuse what looks like a regression model: an output of width 1, or float ``(N,)``/``(N, 1)`` targets.

    The monitors measure classification (the argmax of one output column per class); on a width-1
    output every prediction is class 0 and the accuracy would be 1.0 whatever the model does.
    ``logits=None`` checks the targets alone (before any forward).

    Raises:
        ConfigurationError: naming the model output's shape and the targets' dtype and shape.

    Example:
        >>> check_classification("Monitor", torch.zeros(4, 3), torch.tensor([0, 1, 2, 0]))  # fine
        >>> try:
        ...     check_classification("Monitor", torch.zeros(4, 1), torch.rand(4))
        ... except ConfigurationError as err:
        ...     print(err)
        Monitor measures classification accuracy (the argmax over one output column per class), but the
        model output has shape (4, 1) (width 1) and the targets are torch.float32 of shape (4,): this
        looks like a regression model, ...
    """
    narrow = logits is not None and (logits.ndim < 2 or logits.shape[1] < 2)
    if not (narrow or regression_targets(target)):
        return
    output = ""
    if logits is not None:
        width = int(logits.shape[1]) if logits.ndim >= 2 else "none: no class dimension"
        output = f" the model output has shape {tuple(logits.shape)} (width {width}) and"
    shown = (
        f"{target.dtype} of shape {tuple(target.shape)}"
        if isinstance(target, Tensor)
        else type(target).__name__
    )
    raise ConfigurationError(
        f"{owner} measures classification accuracy (the argmax over one output column per class),"
        f" but{output} the targets are {shown}: this looks like a regression model, on which accuracy"
        " means nothing (a width-1 output always predicts class 0). The monitors do not support"
        " regression: leave this monitor out for such a model. A classifier must return (N, C) logits"
        " with C >= 2, and class indices (integers), SoftLabels or (N, C) distributions as targets."
    )


def check_training_targets(owner: str, batch: Any, target_path: tuple[int | str, ...] | None) -> None:
    """Refuse regression targets in a training batch (for runs without a sanity check).

    Only the targets are looked at (no forward, nothing changed). A batch without a tensor at
    ``target_path`` passes: training batches laid out otherwise leave the decision to the first
    evaluation batch.

    Example:
        >>> check_training_targets("Monitor", [torch.zeros(2, 3), torch.tensor([0, 1])], (1,))  # classes
        >>> check_training_targets("Monitor", {"x": torch.zeros(2, 3)}, ("y",))  # no targets there
    """
    try:
        target = read(batch, target_path, owner)
    except ConfigurationError:
        return
    if regression_targets(target):
        check_classification(owner, None, target)


def require_validation(trainer: Any, pl_module: nn.Module, owner: str, why: str, runs: bool = True) -> None:
    """Raise :class:`ConfigurationError` (in ``on_fit_start``) when the fit has no validation to offer.

    ``why`` says what the callback needs validation for. There is none when ``limit_val_batches``
    is 0, no validation dataloader is given or the module has no ``validation_step``; with
    ``runs`` (the callback acts at validations, not only on the validation data), also when
    ``check_val_every_n_epoch`` is larger than ``max_epochs``.

    Example:
        >>> import lightning.pytorch as pl
        >>> trainer = pl.Trainer(logger=False, limit_val_batches=0, enable_checkpointing=False)
        >>> try:
        ...     require_validation(trainer, pl.LightningModule(), "RobustnessMonitor", "evaluates on it")
        ... except ConfigurationError as err:
        ...     print(err)
        RobustnessMonitor evaluates on it, but `limit_val_batches` is 0; LightningModule has no
        `validation_step`. Give the Trainer validation data, or leave the callback out.
    """
    from lightning.pytorch.utilities.model_helpers import is_overridden

    missing = []
    if trainer.limit_val_batches == 0:
        missing.append("`limit_val_batches` is 0")
    if not trainer.fit_loop.epoch_loop.val_loop._data_source.is_defined():
        missing.append("no `val_dataloader` is given (DataModule, module or `val_dataloaders`)")
    if not is_overridden("validation_step", pl_module):
        missing.append(f"{type(pl_module).__name__} has no `validation_step`")
    every, epochs = trainer.check_val_every_n_epoch, trainer.max_epochs
    if runs and every is not None and epochs is not None and 0 < epochs < every and trainer.max_steps == -1:
        missing.append(f"`check_val_every_n_epoch` ({every}) is larger than `max_epochs` ({epochs})")
    if missing:
        raise ConfigurationError(
            f"{owner} {why}, but " + "; ".join(missing) + ". Give the Trainer validation data, or leave"
            " the callback out."
        )
