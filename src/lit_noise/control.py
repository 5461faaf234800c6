"""The noise controller's decision rule: one validation's metrics in, the new noise scale out.

:class:`ScaleControl` is a small state machine with no torch or Lightning in it, so every rule can
be pinned on scripted metric sequences; :class:`~lit_noise.NoiseController` is the callback that
feeds it the logged metrics after each validation and applies its scale to the noise sources.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal, NamedTuple

from lit_noise._validation import check_choice, check_int, check_number, check_range, fail

__all__ = ["DECREASE", "HOLD", "INCREASE", "ControlState", "Decision", "ScaleControl"]

#: Decision codes (logged as ``noise/controller/decision``).
DECREASE, HOLD, INCREASE = -1, 0, 1


class Decision(NamedTuple):
    """What one validation decided: the scale from now on, the code and why.

    ``code`` is :data:`DECREASE` (-1: a decrease or a probe), :data:`HOLD` (0) or :data:`INCREASE`
    (+1: an increase, a reverted probe or the end of the warm-up). ``reason`` is one of ``"warm-up"``,
    ``"warm-up done"``, ``"hold"``, ``"cooldown"``,
    ``"below reference"``, ``"probe"``, ``"probe kept"``, ``"probe reverted"``,
    ``"robust improving"``, ``"gap"``.

    Example:
        >>> control = ScaleControl(patience=1, cooldown=0, warmup=0)
        >>> control.step(0.50), control.step(0.60)
        (Decision(scale=1.0, code=0, reason='hold'), Decision(scale=1.0, code=0, reason='hold'))
        >>> decision = control.step(0.60)  # no improvement for `patience` validations: probe lower
        >>> decision.scale, decision.code == DECREASE, decision.reason
        (0.5, True, 'probe')
    """

    scale: float
    code: int
    reason: str


@dataclass
class ControlState:
    """Everything :class:`ScaleControl` remembers between validations (saved in checkpoints).

    Metric values are stored as given (not sign-flipped for ``mode="min"``).

    Example:
        >>> control = ScaleControl(warmup=2)
        >>> control.state.scale, control.state.warmup  # scale 0 during the clean warm-up
        (0.0, 2)
        >>> _ = control.step(0.5, epoch=0)
        >>> control.state.warmup, control.state.best, control.state.history
        (1, 0.5, [(0, 0.0, 0.5, None, 0, 0.0)])
        >>> ControlState.from_dict(control.state.to_dict()) == control.state  # checkpoint round trip
        True
    """

    scale: float = 1.0
    #: Validations of the clean warm-up still to come (the scale is 0 until they are done).
    warmup: int = 0
    #: Best clean value so far (improvements by more than ``tolerance`` only); ``None`` before any.
    best: float | None = None
    #: Best robust value so far, likewise.
    robust_best: float | None = None
    #: Validations since the clean metric last improved on ``best`` by more than ``tolerance``.
    wait: int = 0
    #: Validations since the robust metric last improved, likewise.
    robust_wait: int = 0
    #: Consecutive validations more than ``tolerance`` below the reference.
    below: int = 0
    #: Consecutive validations that met the increase rule.
    up: int = 0
    #: Validations left in the cooldown after a change.
    cooldown: int = 0
    #: During a probe: the scale before it, the best clean value before it, validations left.
    probe_from: float | None = None
    probe_best: float | None = None
    probe_left: int = 0
    #: Whether increases are allowed (estimated reference: only after a probe was reverted).
    armed: bool = False
    #: The best clean value when the last probe was reverted: no new probe until it improves.
    reverted_at: float | None = None
    #: One row per validation: (epoch, scale it trained with, clean, robust, code, new scale).
    history: list[tuple[int, float, float, float | None, int, float]] = field(default_factory=list)

    def reference(self, fixed: float | None = None) -> float | None:
        """The reference in use: ``fixed`` when given, else the best clean value so far."""
        return self.best if fixed is None else fixed

    def to_dict(self) -> dict[str, Any]:
        """Plain values for a checkpoint."""
        state = asdict(self)
        state["history"] = [list(row) for row in self.history]
        return state

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> ControlState:
        """Rebuild from :meth:`to_dict`'s output; keys it lacks keep their defaults."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in state.items() if k in known}
        restored = cls(**values)
        restored.history = [
            (int(i), float(s), float(c), None if r is None else float(r), int(d), float(n))
            for i, s, c, r, d, n in state.get("history", [])
        ]
        return restored


class ScaleControl:
    """Turn the noise scale from the clean (and robust) metric of each validation.

    Every rule compares with a tolerance: an *improvement* is a value better than the best so far
    by more than ``tolerance`` (as EarlyStopping's ``min_delta``: the best is only moved by such
    improvements), and *below the reference* means worse than the reference by more than
    ``tolerance``. After each :meth:`step`, in this order:

    0. **Warm-up.** The first ``warmup`` validations train clean (scale 0) and give the first
       reference; after the last of them the scale becomes ``scale`` (``"warm-up done"``, code +1)
       and a cooldown starts.
    1. **Cooldown.** For ``cooldown`` validations after any change, no new change starts and the
       counters of rules 3-5 stay at 0 (as torch's ``ReduceLROnPlateau``); a probe's outcome
       (rule 2) is still judged.
    2. **Probe outcome** (estimated reference only). A probe is kept as soon as the clean metric
       improves on the best before the probe (the noise was hurting: ``"probe kept"``, the scale
       stays lower); when ``patience`` validations pass without that, the scale returns to the
       value before the probe (the noise was not hurting: ``"probe reverted"``, code +1) and
       increases are allowed from then on.
    3. **Decrease.** The last ``patience`` validations were all below the reference and none of
       them improved on the best: scale x ``decrease`` (``"below reference"``). With the estimated
       reference this disallows increases again until the next reverted probe.
    4. **Probe** (estimated reference only). ``patience`` validations without improvement (a
       plateau) but not below the reference: scale x ``decrease`` for a trial (``"probe"``). After
       a reverted probe, the next one waits until the clean metric has improved again.
    5. **Increase** (needs the robust metric; with the estimated reference only once a probe was
       reverted). For ``patience`` consecutive validations the clean metric was not below the
       reference and either the robust metric improved within the last ``patience`` validations
       (``"robust improving"``) or the clean-minus-robust gap (robust-minus-clean for
       ``mode="min"``) was wider than ``gap`` (``"gap"``): scale x ``increase``.

    The scale always stays in ``[min_scale, max_scale]``; a change that the bounds leave at the
    same value is a hold. The **reference** is ``reference`` when given, else the best clean value
    so far, the clean warm-up's at first: a run that starts far too noisy falls below the warm-up's
    value and is decreased; from there each probe that lifts the clean metric is kept until a
    probe no longer helps and is reverted, so the noise is pulled back to where less noise stops
    paying, and may then rise with the robust metric, instead of being driven to zero.
    A non-finite clean value counts as the worst possible value (below the reference, no
    improvement); a non-finite robust value as no improvement.

    Args:
        mode: ``"max"`` when higher values of the metrics are better, ``"min"`` when lower are.
        tolerance: the margin of every comparison (>= 0), in the clean metric's units.
        decrease: factor of a decrease or a probe, in (0, 1).
        increase: factor of an increase (>= 1).
        patience: validations a rule must hold before it acts (>= 1); also a probe's length.
        cooldown: validations after a change during which no new change starts (>= 0).
        min_scale: lowest scale (>= 0).
        max_scale: highest scale (>= ``min_scale``).
        reference: a fixed reference for the clean metric; ``None``: estimated (best so far).
        gap: the clean-minus-robust gap above which the scale may rise (>= 0); ``None``: rule off.
        scale: the starting scale (after the warm-up), clipped into ``[min_scale, max_scale]``.
        warmup: clean validations at the start (scale 0, whatever ``min_scale``); ``None``: 1
            without ``reference``, 0 with one.
        owner: the class named in error messages.

    Example:
        >>> control = ScaleControl(patience=1, cooldown=0, warmup=0)
        >>> [control.step(clean).reason for clean in (0.50, 0.60, 0.60, 0.70, 0.70, 0.70)]
        ['hold', 'hold', 'probe', 'probe kept', 'probe', 'probe reverted']
        >>> control.state.scale
        0.5
    """

    def __init__(
        self,
        mode: Literal["min", "max"] = "max",
        tolerance: float = 0.01,
        decrease: float = 0.5,
        increase: float = 1.25,
        patience: int = 2,
        cooldown: int = 1,
        min_scale: float = 0.0,
        max_scale: float = 4.0,
        reference: float | None = None,
        gap: float | None = None,
        scale: float = 1.0,
        warmup: int | None = None,
        owner: str = "ScaleControl",
    ) -> None:
        self.mode: str = check_choice(owner, "mode", mode, ("min", "max"))
        self.tolerance = check_range(owner, "tolerance", tolerance, 0.0)
        self.decrease = check_range(owner, "decrease", decrease, 0.0, 1.0, low_open=True, high_open=True)
        self.increase = check_range(owner, "increase", increase, 1.0)
        self.patience = check_int(owner, "patience", patience, 1)
        self.cooldown = check_int(owner, "cooldown", cooldown, 0)
        self.min_scale = check_range(owner, "min_scale", min_scale, 0.0)
        self.max_scale = check_range(owner, "max_scale", max_scale, 0.0)
        if self.min_scale > self.max_scale:
            raise fail(owner, "min_scale", min_scale, f"<= `max_scale` ({max_scale!r})")
        self.reference = None if reference is None else check_number(owner, "reference", reference)
        self.gap = None if gap is None else check_range(owner, "gap", gap, 0.0)
        # The starting scale (1 unless given) clipped into the bounds: `max_scale=0.5` starts at 0.5.
        self.start = min(max(check_range(owner, "scale", scale, 0.0), self.min_scale), self.max_scale)
        if warmup is None:
            warmup = 1 if self.reference is None else 0
        self.warmup = check_int(owner, "warmup", warmup, 0)
        self.state = ControlState(scale=0.0 if self.warmup else self.start, warmup=self.warmup)

    def _key(self, value: float) -> float:
        """``value`` with higher = better; non-finite as -inf."""
        if not math.isfinite(value):
            return -math.inf
        return value if self.mode == "max" else -value

    def _improves(self, value: float, best: float | None) -> bool:
        """Whether finite ``value`` beats ``best`` by more than ``tolerance`` (or ``best`` is ``None``)."""
        if not math.isfinite(value):
            return False
        return best is None or self._key(value) > self._key(best) + self.tolerance

    def _clip(self, scale: float) -> float:
        return min(max(scale, self.min_scale), self.max_scale)

    def step(self, clean: float, robust: float | None = None, epoch: int | None = None) -> Decision:
        """Take one validation's clean (and robust) metric; return the decision and apply its scale.

        ``epoch`` labels the history row (default: the number of validations before this one).
        """
        st = self.state
        used = st.scale
        if self._improves(clean, st.best):
            st.best, st.wait = clean, 0
        else:
            st.wait += 1
        if robust is not None:
            if self._improves(robust, st.robust_best):
                st.robust_best, st.robust_wait = robust, 0
            else:
                st.robust_wait += 1
        decision = self._decide(clean, robust)
        label = len(st.history) if epoch is None else epoch
        st.history.append((label, used, float(clean), robust, decision.code, decision.scale))
        return decision

    def _decide(self, clean: float, robust: float | None) -> Decision:
        st = self.state
        if st.warmup > 0:
            st.warmup -= 1
            if st.warmup > 0:
                return Decision(st.scale, HOLD, "warm-up")
            st.scale, st.cooldown = self.start, self.cooldown
            st.wait = st.below = st.up = 0
            return Decision(st.scale, INCREASE, "warm-up done")
        reference = st.reference(self.reference)
        if reference is None:  # no finite clean value yet
            return Decision(st.scale, HOLD, "hold")
        below = self._key(clean) < self._key(reference) - self.tolerance
        if st.probe_from is not None:
            outcome = self._judge_probe(clean)
            if outcome is not None:
                return outcome
        if st.cooldown > 0:
            st.cooldown -= 1
            st.wait = st.below = st.up = 0
            return Decision(st.scale, HOLD, "cooldown")
        if st.probe_from is not None:
            return Decision(st.scale, HOLD, "hold")
        st.below = st.below + 1 if below else 0
        if st.below >= self.patience and st.wait >= self.patience:
            st.armed = False
            return self._change(st.scale * self.decrease, DECREASE, "below reference")
        if self.reference is None and st.wait >= self.patience and not below and st.best != st.reverted_at:
            start = self._clip(st.scale * self.decrease)
            if start != st.scale:
                st.probe_from, st.probe_best, st.probe_left = st.scale, st.best, self.patience
                return self._change(start, DECREASE, "probe")
        up_reason = self._up_reason(clean, robust, below)
        st.up = st.up + 1 if up_reason else 0
        if up_reason and st.up >= self.patience:
            return self._change(st.scale * self.increase, INCREASE, up_reason)
        return Decision(st.scale, HOLD, "hold")

    def _judge_probe(self, clean: float) -> Decision | None:
        st = self.state
        if self._improves(clean, st.probe_best):
            st.probe_from = st.probe_best = None
            st.probe_left = st.wait = st.below = st.up = 0
            return Decision(st.scale, HOLD, "probe kept")
        st.probe_left -= 1
        if st.probe_left > 0:
            return None
        back = st.probe_from
        assert back is not None
        st.probe_from = st.probe_best = None
        st.armed, st.reverted_at = True, st.best
        return self._change(back, INCREASE, "probe reverted")

    def _up_reason(self, clean: float, robust: float | None, below: bool) -> str:
        if below or robust is None or (self.reference is None and not self.state.armed):
            return ""
        if self.state.robust_wait < self.patience:
            return "robust improving"
        if self.gap is not None and self._key(clean) - self._key(robust) > self.gap:
            return "gap"
        return ""

    def _change(self, scale: float, code: int, reason: str) -> Decision:
        st = self.state
        new = self._clip(scale)
        st.wait = st.below = st.up = 0
        if new == st.scale:
            return Decision(st.scale, HOLD, "hold")
        st.scale = new
        st.cooldown = self.cooldown
        return Decision(new, code, reason)
