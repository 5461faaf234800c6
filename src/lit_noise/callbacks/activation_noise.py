"""ActivationNoise: noise on the outputs of chosen submodules, through hooks active only in training steps."""

from __future__ import annotations

import importlib
import re
import weakref
from collections.abc import Iterable, Sequence
from typing import Any, Literal, Union

import lightning.pytorch as pl
import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle
from typing_extensions import override

from lit_noise._validation import fail
from lit_noise.batch import BatchKey, normalize_key, read_mask
from lit_noise.callbacks.base import NoiseCallback
from lit_noise.errors import ConfigurationError
from lit_noise.functional.params import _matcher, normalize_patterns
from lit_noise.noise.base import Noise
from lit_noise.noise.neftune import NEFTune
from lit_noise.schedules import Clock, Schedule

__all__ = ["ActivationNoise", "ModuleSpec"]

#: What ``modules`` accepts: a module class, a pattern or class path string, or a sequence of those.
ModuleSpec = Union[str, type[nn.Module], Sequence[Union[str, type[nn.Module]]]]

_CLASS_PATH = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*\.[A-Z]\w*")


def _class_path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _import_class(path: str) -> tuple[type[nn.Module] | None, str]:
    """The ``nn.Module`` subclass a dotted ``path`` names, else ``None`` and why not."""
    if not _CLASS_PATH.fullmatch(path):
        return None, "not a dotted class path"
    module_name, _, attr = path.rpartition(".")
    try:
        found = getattr(importlib.import_module(module_name), attr, None)
    except ImportError as err:
        return None, f"not importable ({err})"
    if isinstance(found, type) and issubclass(found, nn.Module):
        return found, ""
    return None, f"{module_name!r} has no torch.nn.Module subclass {attr!r}"


def _some(items: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items)} in all)" if len(items) > limit else "")


class ActivationNoise(NoiseCallback):
    """Add noise to the outputs of chosen submodules while training (NEFTune on embeddings, ...).

    Forward hooks are registered on the chosen modules when a training batch starts
    (``on_train_batch_start``) and removed when it ends (``on_train_batch_end``), and also on every
    path out of a training step (``on_train_epoch_end``, ``on_validation_start``,
    ``on_train_end``, ``on_exception``, ``teardown``), so sanity checking, validation, test and
    predict never see them and no hook is left on the model after ``fit``, also when ``fit``
    raises. Each hooked output (a tensor, or the first element of a tuple output such as an RNN's
    or ``nn.MultiheadAttention``'s) is replaced by ``noise``'s noisy copy; ``training_step`` and
    backward run through it. A copy of a hooked module (an EMA model or a teacher made with
    ``copy.deepcopy`` during the fit) gets no noise. The strengths (parameters that are numbers or
    schedules, times ``scale``) are logged as ``noise/<name>/<param>`` at the trainer's logging
    interval.

    Randomness is counter-based: one generator per training batch and device, seeded from (seed,
    name, epoch, batch index, rank), from which the hooked modules draw in call order, so the same
    seed gives the same run and a resumed run continues the same noise. Every forward pass inside
    the window draws anew: each micro-batch of gradient accumulation has its own batch index and
    noise, and an optimizer that re-evaluates the closure (LBFGS) gets fresh noise per
    evaluation. Activation checkpointing re-runs checkpointed forwards during backward; a hooked
    module re-run there gets back exactly the noise of its forward call (the generator state is
    replayed), so gradients match the forward pass; a module called more than once in the step
    and re-run in backward is refused, since which call is replayed is then ambiguous.

    Padding: positions marked as padding come back exactly as they were (through
    :meth:`~lit_noise.noise.Noise.apply_where` with ``keep`` of shape ``(B, L)``, so NEFTune's
    per-sample form scales by each sample's own length). They come from ``mask_key`` (the batch's
    attention mask, 1 = real token, for every hooked module whose output is ``(B, L, ...)``) and,
    for hooked ``nn.Embedding`` modules, from the input ids (``pad_id``). NEFTune's
    ``form="padded"`` (TRL's form) noises every position and takes no padding information.

    Args:
        modules: which submodules' outputs get noise: module classes (``torch.nn.Embedding``:
            every instance, subclasses included), class paths as strings (``"torch.nn.Embedding"``:
            a dotted path whose last part starts with a capital letter and that imports to a
            ``torch.nn.Module`` subclass; the form for YAML), and name patterns on the
            ``named_modules()`` names (globs such as ``"encoder.layers.*.linear2"``, ``*``
            matching dots too, or regexes prefixed with ``re:``); one or a list. Every entry must
            match some module (else a :class:`~lit_noise.ConfigurationError` listing module names
            and types, at fit start). The LightningModule itself is never hooked. A module matched
            twice is hooked once; nested matches are each noised. A class matches every instance:
            ``torch.nn.Embedding`` also hooks a positional embedding, so NEFTune usually goes on
            the token embedding by name (``"embedding"``, ``"*.embed_tokens"``).
        noise: any input noise of :mod:`lit_noise.noise` (``Gaussian``, ``Uniform``,
            ``Laplace``, ``Speckle``, ``Mask``, ``SaltAndPepper``, ``NEFTune``...); its parameters
            may be schedules. Label and token-id noises are refused.
        mask_key: batch key (as ``InputNoise``'s ``key``: ``"attention_mask"``, a path) of an
            attention mask ``(B, L)`` (1 or True = real token), read at each training batch; a mask
            whose shape is not the leading shape of a hooked output is an error.
        pad_id: for hooked ``nn.Embedding`` modules, an id whose positions are padding;
            ``"auto"`` (default): each embedding's own ``padding_idx`` when it has one;
            ``None``: the ids mark no padding.
        seed: base seed (``None``: drawn from torch's RNG at setup, shared from rank 0).
        name: name in logged keys (``noise/<name>/<param>``), logged settings
            (``lit_noise/<name>/...``) and checkpoint state; ``None``: ``"activation"``, or
            ``"activation_<noise>"`` when several unnamed ActivationNoise share the Trainer.
        scale: multiplier on the noise strength (the controller's knob).

    Example:
        >>> import lightning.pytorch as pl
        >>> from lit_noise import ActivationNoise, NEFTune
        >>> from lit_noise.examples import TokenClassifier, TokenDataModule
        >>> noise = ActivationNoise("embedding", NEFTune(alpha=5.0), mask_key="attention_mask", seed=0)
        >>> trainer = pl.Trainer(max_epochs=1, callbacks=[noise], logger=False,
        ...                      enable_checkpointing=False, enable_progress_bar=False,
        ...                      enable_model_summary=False, limit_train_batches=2, limit_val_batches=0)
        >>> trainer.fit(TokenClassifier(), TokenDataModule())
        >>> noise.last_values, noise.hooked
        ({'alpha': 5.0}, ['embedding'])
    """

    _identity_fields = ("modules", "mask_key")

    def __init__(
        self,
        modules: ModuleSpec,
        noise: Noise,
        mask_key: BatchKey = None,
        pad_id: int | Literal["auto"] | None = "auto",
        seed: int | None = None,
        name: str | None = None,
        scale: float = 1.0,
    ) -> None:
        owner = "ActivationNoise"
        if not isinstance(noise, Noise):
            raise fail(owner, "noise", noise, "a lit_noise.noise.Noise (Gaussian, NEFTune, ...)")
        if noise.applies_to != "float":
            raise fail(
                owner,
                "noise",
                noise,
                "an input noise for float activations (Gaussian, NEFTune, ...), not a label noise",
            )
        super().__init__(name, seed, scale, default_name="activation")
        self.noise = noise
        self.modules, self._types, self._patterns, self._why_not = self._parse_modules(modules)
        self.mask_key = mask_key
        self._mask_path = None if mask_key is None else normalize_key(mask_key, owner, "mask_key")
        if (
            pad_id != "auto"
            and pad_id is not None
            and (isinstance(pad_id, bool) or not isinstance(pad_id, int))
        ):
            raise fail(owner, "pad_id", pad_id, "an integer token id, 'auto' or None")
        self.pad_id = pad_id
        self._takes_keep = not (isinstance(noise, NEFTune) and noise.form == "padded")
        if not self._takes_keep and (mask_key is not None or isinstance(pad_id, int)):
            raise ConfigurationError(
                "ActivationNoise: NEFTune(form='padded') noises every position (TRL's form), so"
                f" `mask_key` ({mask_key!r}) and `pad_id` ({pad_id!r}) could not take effect; use"
                " NEFTune(form='per_sample') to leave padding untouched, or drop them."
            )
        # Filled at fit start: the hooked modules and their hooks, and per batch the window.
        self._targets: list[tuple[nn.Module, Any]] = []
        self._hooked: list[str] = []
        self._handles: list[RemovableHandle] = []
        self._window: _Window | None = None

    @staticmethod
    def _parse_modules(
        modules: ModuleSpec,
    ) -> tuple[tuple[str, ...], list[type[nn.Module]], list[str], dict[str, str]]:
        owner = "ActivationNoise"
        allowed = "a module class, a class path or name pattern string, or a non-empty list of those"
        items: Sequence[Any]
        if isinstance(modules, (str, type)):
            items = [modules]
        elif isinstance(modules, Sequence) and not isinstance(modules, (bytes, bytearray)) and modules:
            items = list(modules)
        else:
            raise fail(owner, "modules", modules, allowed)
        shown: list[str] = []
        types: list[type[nn.Module]] = []
        patterns: list[str] = []
        why_not: dict[str, str] = {}
        for item in items:
            if isinstance(item, type):
                if not issubclass(item, nn.Module):
                    raise fail(owner, "modules", item, "torch.nn.Module subclasses (or patterns)")
                types.append(item)
                shown.append(_class_path(item))
            elif isinstance(item, str):
                cls, reason = _import_class(item)
                if cls is not None:
                    types.append(cls)
                else:
                    normalize_patterns(owner, "modules", item)
                    patterns.append(item)
                    why_not[item] = reason
                shown.append(item)
            else:
                raise fail(owner, "modules", modules, allowed)
        return tuple(shown), types, patterns, why_not

    @property
    def hooked(self) -> list[str]:
        """The ``named_modules()`` names of the modules whose outputs get noise (from fit start on)."""
        return list(self._hooked)

    @property
    def active(self) -> bool:
        """Whether the forward hooks are registered (only inside a training step)."""
        return bool(self._handles)

    @override
    def _schedules(self) -> Iterable[Schedule]:
        return self.noise.schedules().values()

    # ---------------------------------------------------------------- resolve the modules

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._remove()
        named = [(n, m) for n, m in pl_module.named_modules() if m is not pl_module]
        matchers = [(p, _matcher(p)) for p in self._patterns]
        chosen = [
            (n, m)
            for n, m in named
            if isinstance(m, tuple(self._types)) or any(match(n) for _, match in matchers)
        ]
        for cls in self._types:
            if not any(isinstance(m, cls) for _, m in named):
                self._no_match(f"module class {_class_path(cls)}", named)
        for pattern, match in matchers:
            if not any(match(n) for n, _ in named):
                reason = self._why_not[pattern]
                note = f" (as a class path it is {reason})" if reason != "not a dotted class path" else ""
                self._no_match(f"pattern {pattern!r}{note}", named)
        if isinstance(self.pad_id, int) and not any(isinstance(m, nn.Embedding) for _, m in chosen):
            raise ConfigurationError(
                f"ActivationNoise: `pad_id` {self.pad_id} marks padding in the input ids of hooked"
                " nn.Embedding modules, but none is hooked"
                f" ({_some([n for n, _ in chosen])}); use `mask_key` for other modules."
            )
        self._targets = [(m, _forward_hook(self, n, m, self._pad_for(m))) for n, m in chosen]
        self._hooked = [n for n, _ in chosen]

    def _no_match(self, what: str, named: Sequence[tuple[str, nn.Module]]) -> None:
        names = _some([n for n, _ in named])
        kinds = _some(sorted({type(m).__name__ for _, m in named}))
        raise ConfigurationError(
            f"ActivationNoise: `modules` {what} matches no submodule of the model. Patterns are globs"
            " on the named_modules() names ('encoder.*') or regexes prefixed with 're:'; classes"
            f" match instances. Modules: {names or 'none'}. Types: {kinds or 'none'}."
        )

    def _pad_for(self, module: nn.Module) -> int | None:
        if not self._takes_keep or not isinstance(module, nn.Embedding):
            return None
        if self.pad_id == "auto":
            return module.padding_idx
        return self.pad_id

    # ---------------------------------------------------------------- the training-step window

    def _resolve(self, clock: Clock) -> dict[str, float]:
        return self.noise.resolve(clock, self.scale)

    @override
    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._remove()
        params, fresh = self._strengths(trainer, self._resolve)
        if fresh or self._should_log(trainer):  # unchanged values need no `last_values` update
            self._log(trainer, pl_module, params)
        mask = None
        if self._mask_path is not None:
            mask = read_mask(batch, self._mask_path, "ActivationNoise", self.mask_key) != 0
        self._window = _Window(self, trainer, batch_idx, params, mask)
        self._handles = [
            module.register_forward_hook(hook, with_kwargs=True) for module, hook in self._targets
        ]

    def _remove(self, *_: Any, **__: Any) -> None:
        """Remove the forward hooks (idempotent); as a hook, whatever the hook's arguments."""
        handles, self._handles, self._window = self._handles, [], None
        for handle in handles:
            handle.remove()

    # The window closes at the end of the batch, and on every way out of it: at the epoch's end (the
    # module's on_train_batch_start returned -1: no on_train_batch_end), before validation, at the
    # end of training and on an exception. One method serves all these hooks.
    on_train_batch_end = on_train_epoch_end = on_validation_start = on_train_end = on_exception = _remove

    def __getstate__(self) -> dict[str, Any]:
        """The callback's state without its per-fit hooks, so that it pickles at any time.

        The hooks are closures, rebuilt at every fit start.
        """
        state = self.__dict__.copy()
        state["_targets"] = []
        return state

    @override
    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._remove()
        if stage == "fit":
            self._targets = []  # no reference to the model's modules after fit (`hooked` keeps the names)


class _Window:
    """One training step: the resolved strengths, the mask, the generators and the replay states."""

    __slots__ = ("batch_idx", "generators", "mask", "owner", "params", "states", "trainer")

    def __init__(
        self,
        owner: ActivationNoise,
        trainer: pl.Trainer,
        batch_idx: int,
        params: dict[str, float],
        mask: Tensor | None,
    ) -> None:
        self.owner = owner
        self.trainer = trainer
        self.batch_idx = batch_idx
        self.params = params
        self.mask = mask
        self.generators: dict[torch.device, torch.Generator] = {}
        # Generator state before each forward call of each hooked module, to replay a call that
        # activation checkpointing re-runs during backward.
        self.states: dict[str, list[Tensor]] = {}

    def new_generator(self, device: torch.device) -> torch.Generator:
        """The step's generator on ``device``, seeded on first use (the hooked modules share it)."""
        generator = self.generators[device] = self.owner._generator(device, self.trainer, self.batch_idx)
        return generator


def _forward_hook(owner: ActivationNoise, name: str, module: nn.Module, pad: int | None) -> Any:
    """The forward hook of ``module`` (named ``name``) for a whole fit: the open window's noise.

    Built once at fit start and registered for each training step. A plain function, as a closure
    over the callback: copying the model inside a step (``copy.deepcopy``, as an EMA or a teacher
    does) shares it, as it shares any function, instead of copying the callback; the copy's
    modules then call it too, and get no noise: it noises the module it was built for only.
    """
    role = f"output of module {name!r}"
    target = weakref.ref(module)  # no reference that keeps the model alive after fit

    def hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> Any:
        window = owner._window
        if module is not target() or window is None:  # a copy of the module, or outside a step
            return None
        x = output if isinstance(output, Tensor) else output[0] if isinstance(output, (tuple, list)) else None
        if not isinstance(x, Tensor):
            raise ConfigurationError(
                f"ActivationNoise: module {name!r} returned a {type(output).__name__}; only tensor outputs"
                " (or tuples whose first element is a tensor) can be noised. Hook a submodule instead."
            )
        noise = owner.noise
        noise.check(x, role)
        keep = window.mask
        if keep is not None and tuple(keep.shape) != tuple(x.shape[: keep.ndim]):
            raise ConfigurationError(
                f"ActivationNoise: the mask at `mask_key` {owner.mask_key!r} has shape"
                f" {tuple(keep.shape)}, which is not the leading shape of the output of module"
                f" {name!r} {tuple(x.shape)}; hook modules whose outputs are (batch, length, ...)."
            )
        if pad is not None:
            # The ids an embedding was called with: `embedding(ids)` or `embedding(input=ids)`.
            ids = args[0] if args else kwargs.get("input")
            if not isinstance(ids, Tensor):
                raise ConfigurationError(
                    f"ActivationNoise: module {name!r} should have its padding (id {pad}) left alone, but"
                    " it was called without an ids tensor to find it in; pass `mask_key`, or"
                    " `pad_id=None`."
                )
            real = ids != pad
            keep = real if keep is None else keep & real
        generator = window.generators.get(x.device) or window.new_generator(x.device)
        states = window.states.setdefault(name, [])
        if torch._C._current_graph_task_id() != -1:  # re-run inside backward: activation checkpointing
            if len(states) != 1:
                raise ConfigurationError(
                    f"ActivationNoise: module {name!r} is re-run during backward (activation"
                    f" checkpointing) after {len(states)} forward calls in this step, so which call's"
                    " noise to replay is ambiguous; hook modules that run once per step, or keep them"
                    " outside checkpointed segments."
                )
            generator.set_state(states[0])
        else:
            states.append(generator.get_state())
        params = window.params
        noisy = (
            noise.apply(x, params, generator)
            if keep is None
            else noise.apply_where(x, params, generator, keep)
        )
        if x is output:
            return noisy
        return type(output)([noisy, *output[1:]]) if isinstance(output, list) else (noisy, *output[1:])

    return hook
