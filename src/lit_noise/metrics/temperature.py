"""Temperature scaling (Guo et al., 2017) as pure tensor functions: fit one temperature on logits.

Temperature scaling divides every logit by one scalar ``T > 0`` fitted on held-out data by
minimising the negative log-likelihood (the mean cross-entropy of ``softmax(z / T)`` with the
labels). It leaves the argmax, so the accuracy, unchanged and only moves the confidences: ``T > 1``
softens an over-confident model, ``T < 1`` sharpens an under-confident one. The fit optimises
``log T`` (so that ``T`` stays positive without constraints) with L-BFGS and a strong-Wolfe line
search, in float64. Reference: C. Guo, G. Pleiss, Y. Sun, K. Q. Weinberger, "On Calibration of
Modern Neural Networks", ICML 2017.

No Lightning import: usable in any PyTorch loop
(:class:`~lit_noise.callbacks.temperature_scaling.TemperatureScaling` is the callback).

Example:
    >>> import torch
    >>> logits = torch.tensor([[4.0, 0.0], [0.0, 4.0], [4.0, 0.0], [0.0, 4.0]])
    >>> fit_temperature(logits, torch.tensor([0, 1, 1, 1])) > 1.0  # one confident mistake: soften
    True
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from lit_noise._validation import check_int, fail
from lit_noise.errors import ConfigurationError

__all__ = ["TEMPERATURE_RANGE", "check_logits", "fit_temperature", "temperature_nll"]

#: The fitted temperature is clamped into this range. A set the model classifies perfectly drives
#: ``T`` towards 0 (the NLL keeps falling), one where it is no better than uniform towards infinity.
TEMPERATURE_RANGE: tuple[float, float] = (1e-2, 1e2)


def check_logits(owner: str, logits: object, target: object) -> None:
    """Raise unless ``logits`` are finite floats ``(N, C)``, ``C >= 2``, and ``target`` ``(N,)`` classes.

    Example:
        >>> check_logits("fit_temperature", torch.zeros(3, 2), torch.tensor([0, 1, 1]))  # fine
        >>> try:
        ...     check_logits("fit_temperature", torch.zeros(3, 2, 5), torch.zeros(3, 5).long())
        ... except ConfigurationError as err:
        ...     print(err)
        fit_temperature: `logits` must be a floating (N, C) tensor with N >= 1 and C >= 2 classes, got
        shape (3, 2, 5) and dtype torch.float32.
    """
    if (
        not isinstance(logits, Tensor)
        or not logits.is_floating_point()
        or logits.ndim != 2
        or logits.shape[0] < 1
        or logits.shape[1] < 2
    ):
        shown = (
            f"shape {tuple(logits.shape)} and dtype {logits.dtype}" if isinstance(logits, Tensor) else logits
        )
        raise ConfigurationError(
            f"{owner}: `logits` must be a floating (N, C) tensor with N >= 1 and C >= 2 classes, got {shown}."
        )
    if not bool(torch.isfinite(logits).all()):
        raise fail(owner, "logits", f"{int((~torch.isfinite(logits)).sum())} non-finite values", "finite")
    if (
        not isinstance(target, Tensor)
        or target.is_floating_point()
        or target.dtype == torch.bool
        or target.shape != logits.shape[:1]
    ):
        shown = (
            f"shape {tuple(target.shape)} and dtype {target.dtype}" if isinstance(target, Tensor) else target
        )
        raise fail(owner, "target", shown, f"integer class indices of shape ({logits.shape[0]},)")
    if bool(((target < 0) | (target >= logits.shape[1])).any()):
        raise fail(
            owner,
            "target",
            f"indices in [{int(target.min())}, {int(target.max())}]",
            f"class indices in [0, {logits.shape[1] - 1}]",
        )


def temperature_nll(logits: Tensor, target: Tensor, temperature: float | Tensor) -> Tensor:
    """Mean negative log-likelihood of ``softmax(logits / temperature)``: what the fit minimises.

    Example:
        >>> logits, target = torch.tensor([[2.0, 0.0]]), torch.tensor([0])
        >>> round(temperature_nll(logits, target, 2.0).item(), 4) == round(math.log(1 + math.exp(-1)), 4)
        True
    """
    return F.cross_entropy(logits / temperature, target)


def fit_temperature(logits: Tensor, target: Tensor, max_iter: int = 50, init: float = 1.0) -> float:
    """The temperature ``T`` minimising the NLL of ``softmax(logits / T)`` on ``(logits, target)``.

    Optimises ``log T`` with :class:`torch.optim.LBFGS` (strong-Wolfe line search, up to
    ``max_iter`` iterations) in float64 on a copy of ``logits``, with gradients enabled whatever
    the caller's mode (also inside ``no_grad`` and ``inference_mode``). The NLL is convex in
    ``1 / T``, so the minimum found is the global one. The result is clamped into
    :data:`TEMPERATURE_RANGE`. When every sample's true class has the largest logit the NLL keeps
    falling as ``T -> 0``: the lower bound is returned exactly. Logits no better than uniform (the
    mean of ``mean_c z_c - z_y`` >= 0) drive ``T`` to the upper bound.

    Args:
        logits: ``(N, C)`` logits (not probabilities).
        target: ``(N,)`` class indices.
        max_iter: L-BFGS iterations (>= 1); 50 (the reference implementation's budget) is ample for
            a one-dimensional convex problem.
        init: starting temperature (> 0).

    Returns:
        The fitted temperature, a Python float.

    Raises:
        ConfigurationError: logits that are not ``(N, C)`` floats, targets that are not ``(N,)``
            class indices in range, ``max_iter`` < 1 or ``init`` <= 0.

    Example:
        >>> generator = torch.Generator().manual_seed(0)
        >>> z = 3 * torch.randn(4000, 5, generator=generator)
        >>> y = torch.multinomial((z / 2.0).softmax(1), 1, generator=generator).squeeze(1)
        >>> round(fit_temperature(z, y), 1)  # labels drawn at temperature 2
        2.0
    """
    owner = "fit_temperature"
    check_int(owner, "max_iter", max_iter, 1)
    if isinstance(init, bool) or not isinstance(init, (int, float)) or not math.isfinite(init) or init <= 0:
        raise fail(owner, "init", init, "a finite number > 0")
    check_logits(owner, logits, target)
    low, high = TEMPERATURE_RANGE
    with torch.inference_mode(False), torch.enable_grad():  # copies made here are ordinary tensors
        z = logits.detach().to(torch.float64, copy=True)
        labels = target.detach().to(device=z.device, dtype=torch.long, copy=True)
        true = z.gather(1, labels.unsqueeze(1)).squeeze(1)
        if bool((true > z.scatter(1, labels.unsqueeze(1), -math.inf).amax(1)).all()):
            return low  # every sample right: the NLL falls as T -> 0 (L-BFGS would stall on underflow)
        log_t = torch.tensor(math.log(init), dtype=torch.float64, device=z.device, requires_grad=True)
        optimizer = torch.optim.LBFGS(
            [log_t],
            lr=1.0,
            max_iter=max_iter,
            line_search_fn="strong_wolfe",
            tolerance_grad=1e-10,
            tolerance_change=1e-14,
        )

        def closure() -> Tensor:
            optimizer.zero_grad()
            loss = temperature_nll(z, labels, log_t.exp())
            loss.backward()  # type: ignore[no-untyped-call]
            return loss

        optimizer.step(closure)  # type: ignore[no-untyped-call]
    value = float(log_t.detach())
    if not value > math.log(low):  # also NaN (no finite minimum in reach)
        return low
    return high if value >= math.log(high) else math.exp(value)
