"""ScaleControl on scripted metric sequences: every rule pinned by numbers typed here (no training)."""

from __future__ import annotations

import json
import math

import pytest

from lit_noise.control import ControlState, ScaleControl
from lit_noise.errors import ConfigurationError


def run(control: ScaleControl, cleans, robusts=None):
    """(scale, code, reason) of each step."""
    robusts = robusts if robusts is not None else [None] * len(cleans)
    return [tuple(control.step(c, r)) for c, r in zip(cleans, robusts, strict=True)]


def test_warm_up_trains_clean_then_starts_at_full_scale():
    control = ScaleControl(warmup=2, cooldown=0)
    assert control.state.scale == 0.0
    assert run(control, [0.5, 0.6]) == [(0.0, 0, "warm-up"), (1.0, 1, "warm-up done")]
    # Default: one clean validation without a reference, none with one.
    assert ScaleControl().state.scale == 0.0
    assert ScaleControl().state.warmup == 1
    assert ScaleControl(reference=0.9).state.scale == 1.0


def test_the_warm_up_value_is_the_first_reference():
    control = ScaleControl(patience=2, cooldown=0)
    # Warm-up 0.80; then 0.60 and 0.65 are below 0.80 - 0.01 twice without improving: decrease.
    assert run(control, [0.80, 0.60, 0.65]) == [
        (1.0, 1, "warm-up done"),
        (1.0, 0, "hold"),
        (0.5, -1, "below reference"),
    ]
    assert control.state.best == 0.80


def test_decrease_needs_patience_below_the_reference_and_no_improvement():
    control = ScaleControl(reference=0.9, patience=2, cooldown=0)
    # Improving while below the reference: no decrease (it is catching up).
    assert [d[0] for d in run(control, [0.5, 0.6, 0.7, 0.8])] == [1.0, 1.0, 1.0, 1.0]
    # 0.80 twice more: two validations without improvement, all below 0.89: x0.5.
    assert run(control, [0.80, 0.805]) == [(1.0, 0, "hold"), (0.5, -1, "below reference")]
    # Within the tolerance of the reference (0.895 >= 0.89): no decrease, whatever the wait.
    control = ScaleControl(reference=0.9, patience=1, cooldown=0)
    assert [d[1] for d in run(control, [0.895, 0.895, 0.895])] == [0, 0, 0]


def test_cooldown_holds_and_keeps_counters_at_zero():
    control = ScaleControl(reference=0.9, patience=1, cooldown=2, decrease=0.5)
    steps = run(control, [0.5, 0.5, 0.5, 0.5, 0.5])
    # 0.5 first: an improvement (nothing before it), so no decrease; then below without improving.
    assert steps == [
        (1.0, 0, "hold"),
        (0.5, -1, "below reference"),
        (0.5, 0, "cooldown"),
        (0.5, 0, "cooldown"),
        (0.25, -1, "below reference"),
    ]


def test_patience_counts_consecutive_validations():
    control = ScaleControl(reference=0.9, patience=3, cooldown=0)
    # Below, below, back within tolerance, below, below, below: only the 3rd run of three acts.
    steps = run(control, [0.5, 0.5, 0.95, 0.5, 0.5, 0.5])
    assert [s[0] for s in steps] == [1.0, 1.0, 1.0, 1.0, 1.0, 0.5]
    # Long without improvement (wait 2 at 0.85) but only once below 0.89: the 2nd below acts.
    control = ScaleControl(reference=0.9, patience=2, cooldown=0)
    assert [s[0] for s in run(control, [0.95, 0.92, 0.85, 0.85])] == [1.0, 1.0, 1.0, 0.5]


def test_bounds_clip_and_a_clipped_change_is_a_hold():
    control = ScaleControl(reference=0.9, patience=1, cooldown=0, min_scale=0.3)
    steps = run(control, [0.5, 0.5, 0.5, 0.5])
    assert [s[0] for s in steps] == [1.0, 0.5, 0.3, 0.3]
    assert steps[-1][1:] == (0, "hold")
    control = ScaleControl(reference=0.9, patience=1, cooldown=0, increase=1.25, max_scale=1.5)
    steps = run(control, [0.95] * 4, [0.1, 0.2, 0.3, 0.4])
    assert [s[0] for s in steps] == [1.25, 1.5, 1.5, 1.5]
    assert [s[1] for s in steps] == [1, 1, 0, 0]


def test_probe_kept_when_it_lifts_the_clean_metric():
    control = ScaleControl(patience=2, cooldown=0, warmup=0)
    steps = run(control, [0.70, 0.70, 0.70, 0.705, 0.72])
    assert steps == [
        (1.0, 0, "hold"),
        (1.0, 0, "hold"),
        (0.5, -1, "probe"),  # two validations without improving by more than 0.01: plateau
        (0.5, 0, "hold"),  # 0.705 is not more than 0.01 above 0.70: still probing
        (0.5, 0, "probe kept"),  # 0.72 > 0.71 within the probe's 2 validations
    ]
    assert control.state.probe_from is None
    assert not control.state.armed


def test_probe_reverted_when_it_does_not_help_then_increases_are_allowed():
    control = ScaleControl(patience=2, cooldown=0, warmup=0, increase=1.25)
    cleans = [0.70, 0.70, 0.70, 0.70, 0.70, 0.70, 0.70]
    robusts = [0.30, 0.30, 0.30, 0.30, 0.30, 0.35, 0.40]
    steps = run(control, cleans, robusts)
    assert steps[2] == (0.5, -1, "probe")
    assert steps[4] == (1.0, 1, "probe reverted")
    assert control.state.armed
    # Armed: clean holds and the robust metric improves (0.35, 0.40) for 2 validations: x1.25.
    assert steps[5] == (1.0, 0, "hold")
    assert steps[6] == (1.25, 1, "robust improving")


def test_no_increase_with_the_estimated_reference_before_a_reverted_probe():
    control = ScaleControl(patience=2, cooldown=0, warmup=0)
    steps = run(control, [0.70, 0.80, 0.90], [0.3, 0.4, 0.5])
    assert [s[1] for s in steps] == [0, 0, 0]


def test_gap_rule_and_its_default_off():
    cleans, robusts = [0.95] * 3, [0.60] * 3  # robust flat after its first value: only the gap acts
    control = ScaleControl(reference=0.9, patience=1, cooldown=0)
    assert run(control, cleans, robusts) == [
        (1.25, 1, "robust improving"),
        (1.25, 0, "hold"),
        (1.25, 0, "hold"),
    ]
    control = ScaleControl(reference=0.9, patience=1, cooldown=0, gap=0.2)  # gap 0.35 > 0.2
    assert run(control, cleans, robusts)[1:] == [(1.5625, 1, "gap"), (1.953125, 1, "gap")]
    control = ScaleControl(reference=0.9, patience=1, cooldown=0, gap=0.4)  # 0.35 is not wider
    assert [s[0] for s in run(control, cleans, robusts)] == [1.25, 1.25, 1.25]


def test_no_increase_while_the_clean_metric_is_below_the_reference():
    control = ScaleControl(reference=0.9, patience=1, cooldown=0)
    steps = run(control, [0.80, 0.83, 0.86], [0.3, 0.4, 0.5])  # improving, but below 0.89
    assert [s[0] for s in steps] == [1.0, 1.0, 1.0]


def test_mode_min_flips_every_comparison():
    control = ScaleControl(mode="min", reference=0.3, patience=2, cooldown=0)
    # A loss of 0.5 is worse than 0.3 + 0.01; flat, so no improvement: decrease at the 3rd.
    assert [s[0] for s in run(control, [0.5, 0.5, 0.5])] == [1.0, 1.0, 0.5]
    control = ScaleControl(mode="min", reference=0.3, patience=1, cooldown=0, gap=0.1)
    # Loss 0.2 holds; robust loss 0.6 - 0.2 = 0.4 > 0.1 wide; first robust an improvement.
    steps = run(control, [0.2, 0.2, 0.2], [0.6, 0.6, 0.6])
    assert [s[2] for s in steps] == ["robust improving", "gap", "gap"]


def test_non_finite_values():
    control = ScaleControl(reference=0.9, patience=1, cooldown=0)
    assert [s[0] for s in run(control, [math.nan, math.nan])] == [0.5, 0.25]
    assert control.state.best is None
    control = ScaleControl(patience=1, cooldown=0)  # estimated: nothing to compare with yet
    assert run(control, [math.nan]) == [(1.0, 1, "warm-up done")]
    assert run(control, [math.inf]) == [(1.0, 0, "hold")]
    control = ScaleControl(reference=0.9, patience=1, cooldown=0)
    run(control, [0.95], [0.5])
    control.step(0.95, math.nan)
    assert control.state.robust_wait == 1
    assert control.state.robust_best == 0.5


def test_history_rows():
    control = ScaleControl(reference=0.9, patience=1, cooldown=0)
    control.step(0.5, 0.2, epoch=3)
    control.step(0.5, None, epoch=4)
    assert control.state.history == [(3, 1.0, 0.5, 0.2, 0, 1.0), (4, 1.0, 0.5, None, -1, 0.5)]


SEQUENCE = [0.80, 0.60, 0.62, 0.65, 0.66, 0.82, 0.83, 0.83, 0.83, 0.835]
SEQUENCE += [0.83, 0.83, 0.84, 0.845, 0.845, 0.845, 0.845, 0.80, 0.80, 0.80]
ROBUST = [0.5, 0.3, 0.3, 0.35, 0.4, 0.4, 0.41, 0.42, 0.45, 0.46]
ROBUST += [0.47, 0.48, 0.49, 0.5, 0.52, 0.55, 0.56, 0.56, 0.56, 0.56]
# The defaults' decisions on SEQUENCE / ROBUST, worked out by hand from the documented rules.
EXPECTED = [
    (1.0, 1, "warm-up done"),  # reference 0.80
    (1.0, 0, "cooldown"),
    (1.0, 0, "hold"),  # 0.62 below 0.79 (1)
    (0.5, -1, "below reference"),  # 0.65 below (2), no improvement for 2
    (0.5, 0, "cooldown"),
    (0.5, 0, "hold"),  # 0.82 > 0.81: new best
    (0.5, 0, "hold"),  # 0.83 is not > 0.82 + 0.01
    (0.25, -1, "probe"),  # plateau of 2 at the reference
    (0.25, 0, "cooldown"),
    (0.25, 0, "probe kept"),  # 0.835 > 0.83
    (0.25, 0, "hold"),
    (0.125, -1, "probe"),
    (0.125, 0, "cooldown"),  # 0.84 is not > 0.845
    (0.25, 1, "probe reverted"),  # 0.845 neither: back, increases allowed
    (0.25, 0, "cooldown"),
    (0.25, 0, "hold"),  # robust 0.55 improved: up (1)
    (0.3125, 1, "robust improving"),  # up (2); no new probe: the best did not move since the revert
    (0.3125, 0, "cooldown"),
    (0.3125, 0, "hold"),  # 0.80 below 0.825 (1)
    (0.15625, -1, "below reference"),  # (2): x0.5, and no more increases until a reverted probe
]


def test_a_scripted_run_with_the_defaults():
    control = ScaleControl()
    assert run(control, SEQUENCE, ROBUST) == EXPECTED
    assert not control.state.armed


def test_resume_continues_exactly_through_a_json_round_trip():
    whole = ScaleControl()
    expected = run(whole, SEQUENCE, ROBUST)
    for cut in range(len(SEQUENCE)):
        first = ScaleControl()
        before = run(first, SEQUENCE[:cut], ROBUST[:cut])
        resumed = ScaleControl()
        resumed.state = ControlState.from_dict(json.loads(json.dumps(first.state.to_dict())))
        after = run(resumed, SEQUENCE[cut:], ROBUST[cut:])
        assert before + after == expected, cut
        assert resumed.state == whole.state


def test_state_from_an_older_checkpoint_gets_defaults():
    state = ControlState.from_dict({"scale": 0.25, "history": [[0, 1.0, 0.5, None, -1, 0.25]]})
    assert state.scale == 0.25
    assert (state.best, state.cooldown, state.warmup, state.armed) == (None, 0, 0, False)
    assert state.history == [(0, 1.0, 0.5, None, -1, 0.25)]


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"decrease": 0.0}, r"`decrease` must be > 0 and < 1, got 0.0"),
        ({"decrease": 1.0}, r"`decrease` must be > 0 and < 1, got 1.0"),
        ({"increase": 0.9}, r"`increase` must be >= 1, got 0.9"),
        ({"min_scale": 2.0, "max_scale": 1.0}, r"`min_scale` must be <= `max_scale` \(1.0\), got 2.0"),
        ({"min_scale": -1.0}, r"`min_scale` must be >= 0, got -1.0"),
        ({"patience": 0}, r"`patience` must be an integer >= 1, got 0"),
        ({"cooldown": -1}, r"`cooldown` must be an integer >= 0, got -1"),
        ({"tolerance": -0.1}, r"`tolerance` must be >= 0, got -0.1"),
        ({"mode": "avg"}, r"`mode` must be one of 'min', 'max', got 'avg'"),
        ({"gap": -0.1}, r"`gap` must be >= 0, got -0.1"),
        ({"warmup": -1}, r"`warmup` must be an integer >= 0, got -1"),
        ({"reference": "high"}, r"`reference` must be a finite number, got 'high'"),
        ({"scale": -1.0}, r"`scale` must be >= 0, got -1.0"),
    ],
)
def test_bad_arguments(kwargs, pattern):
    with pytest.raises(ConfigurationError, match=r"^ScaleControl: " + pattern):
        ScaleControl(**kwargs)


def test_the_starting_scale_is_clipped_into_the_bounds():
    # NoiseController has no `scale` argument: its start (1) must fit any bounds it is given.
    assert ScaleControl(max_scale=0.5, warmup=0).state.scale == 0.5
    assert ScaleControl(min_scale=2.0, warmup=0).state.scale == 2.0
    assert ScaleControl(scale=5.0, warmup=0).state.scale == 4.0
    assert ScaleControl(max_scale=0.5).start == 0.5  # after the warm-up
