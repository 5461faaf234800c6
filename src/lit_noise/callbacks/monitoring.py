"""What the monitors share: a side-effect-free evaluation forward and the logits a step returned."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from lit_noise._validation import fail

__all__ = ["eval_forward", "step_logits"]


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


def eval_forward(pl_module: nn.Module, inputs: Tensor) -> Tensor:
    """``pl_module(inputs)`` under ``no_grad`` in eval mode, leaving modes and RNG states as they were.

    Every submodule's ``training`` flag is restored afterwards, and the global CPU RNG (and the
    module's CUDA device RNG) are forked, so a model that draws random numbers in its forward does
    not shift the rest of the run.

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
        output = pl_module(inputs)
    if not isinstance(output, Tensor):
        raise fail(
            type(pl_module).__name__, "forward", type(output).__name__, "a tensor of logits (N, C, ...)"
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
