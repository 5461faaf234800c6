"""Which parameters a parameter-noise callback noises: its name patterns, and who is trainable now.

Shared by :class:`~lit_noise.WeightNoise` and :class:`~lit_noise.GradientNoise`. A parameter may be
frozen or unfrozen during the fit (Lightning's ``BackboneFinetuning``), so the selection is re-picked
at the first batch or step of each fit and epoch.
"""

from __future__ import annotations

from collections.abc import Sequence

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch.nn.parameter import is_lazy
from typing_extensions import override

from lit_noise.callbacks.base import NoiseCallback
from lit_noise.errors import ConfigurationError
from lit_noise.functional.params import _matcher, _some, select_names


class ParameterSelection:
    """The parameters ``include`` / ``exclude`` select by name, and which of them are trainable now.

    Built at fit start. The patterns are checked against every parameter, trainable or frozen
    (``requires_grad=False``): a pattern that matches no parameter is refused, as before; one that
    matches only frozen ones is accepted with a warning, since a callback such as Lightning's
    ``BackboneFinetuning`` may unfreeze them later. :meth:`pick` returns the selected parameters
    that are trainable at the moment; :meth:`changed` tells, from one ``requires_grad`` flag per
    selected parameter, whether :meth:`pick` would now return another set.

    Args:
        owner: the callback's class name, for messages.
        pl_module: the module whose ``named_parameters()`` the patterns match.
        include: patterns of the parameters to select (``None``: every parameter).
        exclude: patterns of the parameters to leave out.

    Raises:
        ConfigurationError: a pattern matches no parameter, an ``exclude`` pattern removes nothing
            ``include`` selects, or nothing is selected (the message names the pattern and lists
            some parameters). The warnings name only the frozen parameters that an ``include``
            pattern matching no trainable parameter selects, or every candidate when none is
            trainable at fit start.

    Example:
        >>> import lightning.pytorch as pl
        >>> from torch import nn
        >>> module = pl.LightningModule()
        >>> module.backbone, module.head = nn.Linear(2, 2), nn.Linear(2, 1)
        >>> _ = module.backbone.requires_grad_(False)
        >>> selection = ParameterSelection("WeightNoise", module, None, None)
        >>> [names[0] for names in selection.pick()[1]]
        ['head.weight', 'head.bias']
        >>> _ = module.backbone.requires_grad_(True)
        >>> selection.changed(), len(selection.pick()[0]), selection.changed()
        (True, 4, False)
    """

    def __init__(
        self,
        owner: str,
        pl_module: pl.LightningModule,
        include: Sequence[str] | None,
        exclude: Sequence[str] | None,
    ) -> None:
        self.owner, self.include, self.exclude = owner, include, exclude
        named = list(pl_module.named_parameters())
        # Checked against every parameter, trainable or frozen: the error names the pattern at fault.
        chosen = [named[i] for i in select_names(owner, [n for n, _ in named], include, exclude)]
        trainable = [n for n, p in named if p.requires_grad]
        frozen_only = [m for m in map(_matcher, include or ()) if not any(m(n) for n in trainable)]
        if not any(p.requires_grad for _, p in chosen):
            frozen_only = [lambda _: True]  # nothing selected is trainable: every candidate waits
        aliases: dict[int, list[str]] = {}
        for alias, param in pl_module.named_parameters(remove_duplicate=False):
            aliases.setdefault(id(param), []).append(alias)
        #: Every selected parameter, trainable or frozen, in ``named_parameters`` order.
        self.candidates: list[torch.nn.Parameter] = [p for _, p in chosen]
        #: Every name (aliases included) of each candidate.
        self.aliases: list[list[str]] = [aliases[id(p)] for p in self.candidates]
        self._flags: tuple[bool, ...] | None = None
        self._empty_warned = False
        # The frozen parameters only an include pattern matching no trainable one selects (or every
        # candidate, when none is trainable), until one pick has them: the warnings below name them.
        self._waiting: dict[int, str] = {
            id(p): n for n, p in chosen if not p.requires_grad and any(m(n) for m in frozen_only)
        }
        if self._waiting:
            rank_zero_warn(
                f"{owner}: {self._patterns()} select parameters that are frozen (requires_grad=False)"
                f" as the fit starts: {_some(list(self._waiting.values()))}. They get no noise while"
                " frozen, and get it from the start of each epoch at which they are trainable"
                " (unfrozen in `on_train_epoch_start` or earlier, as Lightning's BackboneFinetuning"
                " does); a warning at the end of the fit says so if they never are.",
                category=UserWarning,
            )

    def _patterns(self) -> str:
        include = None if self.include is None else list(self.include)
        exclude = None if self.exclude is None else list(self.exclude)
        return f"include={include} and exclude={exclude}"

    def _trainable_flags(self) -> tuple[bool, ...]:
        return tuple(p.requires_grad for p in self.candidates)

    def changed(self) -> bool:
        """Whether a selected parameter was frozen or unfrozen since the last :meth:`pick`."""
        return self._trainable_flags() != self._flags

    def pick(self) -> tuple[list[torch.nn.Parameter], list[list[str]]]:
        """The selected parameters that are trainable and not empty now, and every name of each.

        Raises:
            ConfigurationError: one of them belongs to a lazy module (``nn.LazyLinear``, ...) and
                is not initialised yet: its size is unknown.
        """
        self._flags = self._trainable_flags()
        live = [(p, a) for p, a, on in zip(self.candidates, self.aliases, self._flags, strict=True) if on]
        lazy = [a[0] for p, a in live if is_lazy(p)]
        if lazy:
            raise ConfigurationError(
                f"{self.owner}: uninitialised parameters of a lazy module (nn.LazyLinear, nn.LazyConv2d,"
                " ...) when the fit starts (or, if they were frozen then, when they become"
                f" trainable): {_some(lazy)}; their sizes are unknown, so no noise can be laid out for"
                " them. Initialise lazy modules before `fit`: run one forward pass on a dummy"
                " batch in the LightningModule's `__init__` or `setup` (an `example_input_array` alone is"
                " not enough: the model summary's forward pass runs after this callback's `on_fit_start`),"
                " or leave those parameters out with `exclude=`."
            )
        live = [(p, a) for p, a in live if p.numel() > 0]
        for param, _ in live:
            self._waiting.pop(id(param), None)
        return [p for p, _ in live], [a for _, a in live]

    def warn_if_empty(self, params: Sequence[torch.nn.Parameter], epoch: int) -> None:
        """Warn once when a pick mid-fit found none of the selected parameters trainable."""
        if params or self._empty_warned:
            return
        self._empty_warned = True
        rank_zero_warn(
            f"{self.owner}: none of the parameters that {self._patterns()} select is trainable at the"
            f" start of epoch {epoch} (all have requires_grad=False): no noise until one is trainable"
            " again at the start of a later epoch.",
            category=UserWarning,
        )

    def warn_if_never_trainable(self, name: str) -> None:
        """At the end of a fit: warn if parameters the fit-start warning named are still not picked."""
        if self._waiting:
            rank_zero_warn(
                f"{self.owner}({name!r}): {self._patterns()} select parameters that stayed frozen"
                " (requires_grad=False) at the start of every epoch of this fit, so they got no noise:"
                f" {_some(list(self._waiting.values()))}.",
                category=UserWarning,
            )
            self._waiting = {}


class FollowsFreezing(NoiseCallback):
    """A parameter-noise callback whose :class:`ParameterSelection` is re-picked at each epoch start.

    ``on_fit_start`` and ``on_train_epoch_start`` only set ``_recheck``; the callback's hook of the
    fit's and each epoch's first batch or step tests it (one attribute read on every other step)
    and calls :meth:`_reselect`, after every callback's ``on_train_start`` and
    ``on_train_epoch_start`` have run (where Lightning's ``BackboneFinetuning`` unfreezes).
    """

    _selection: ParameterSelection | None = None
    _params: list[torch.nn.Parameter]
    #: Set at each epoch start: re-pick the trainable parameters at its first batch or step.
    _recheck: bool = False

    def _select(self, selection: ParameterSelection) -> None:
        """Lay the noise out over the selected parameters that are trainable now."""
        raise NotImplementedError

    def _start_selection(self, selection: ParameterSelection) -> None:
        """Lay the noise out over ``selection`` in ``on_fit_start``; re-picked at the first batch or step.

        A resumed fit skips that epoch's ``on_train_epoch_start``, and the module or a callback
        may freeze parameters in ``on_train_start``.
        """
        self._select(selection)
        self._selection, self._recheck = selection, True

    @override
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._recheck = True

    @override
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._selection is not None:
            self._selection.warn_if_never_trainable(self.name)

    def _reselect(self, trainer: pl.Trainer) -> None:
        """Lay the noise out afresh if a selected parameter was frozen or unfrozen since the last time.

        Called at the first batch or step after ``_recheck`` was set, which it clears.
        """
        self._recheck = False
        selection = self._selection
        if selection is not None and selection.changed():
            self._select(selection)
            selection.warn_if_empty(self._params, trainer.current_epoch)
