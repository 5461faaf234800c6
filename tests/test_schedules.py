"""Schedules: documented values at boundaries and in between, errors, products, properties."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from lit_noise import ConfigurationError
from lit_noise.schedules import (
    AnnealedStd,
    Clock,
    Constant,
    Cosine,
    Cyclic,
    Delay,
    Exponential,
    Interval,
    InverseTime,
    Linear,
    Piecewise,
    Product,
    Schedule,
    Step,
    as_schedule,
)


def at(schedule: Schedule, t: float) -> float:
    """The schedule's value at time ``t`` in its own unit, read through a Clock."""
    unit = schedule.unit
    if unit == "progress":
        return schedule(Clock(progress=t))
    if unit == "epoch":
        return schedule(Clock(epoch=int(t)))
    return schedule(Clock(step=int(t)))


# --------------------------------------------------------------------------- clock and constants


def test_clock_reads_each_unit() -> None:
    clock = Clock(step=12, epoch=3, progress=0.25)
    assert (clock.time("step"), clock.time("epoch"), clock.time("progress")) == (12.0, 3.0, 0.25)


def test_constant_and_plain_numbers() -> None:
    constant = Constant(0.3)
    assert [constant(Clock(step=s, epoch=s, progress=s / 10)) for s in range(5)] == [0.3] * 5
    assert constant.is_constant
    assert constant.units() == set()
    assert constant.min_max() == (0.3, 0.3)
    assert isinstance(as_schedule(2), Constant)
    assert as_schedule(2)(Clock()) == 2.0
    linear = Linear(start=0.0, end=1.0, until=1.0)
    assert as_schedule(linear) is linear
    assert repr(as_schedule(0.3)) == "Constant(constant=0.3)"


# --------------------------------------------------------------------------- ramps


@pytest.mark.parametrize("unit", ["step", "epoch", "progress"])
def test_linear_boundaries_and_midpoints(unit: str) -> None:
    if unit == "progress":
        begin, until, times = 0.2, 0.6, [0.0, 0.2, 0.3, 0.4, 0.6, 0.9, 1.0]
    else:
        begin, until, times = 10, 30, [0, 10, 15, 20, 30, 45, 1000]
    schedule = Linear(start=1.0, end=3.0, begin=begin, until=until, unit=unit)  # type: ignore[arg-type]
    expected = [1.0, 1.0, 1.5, 2.0, 3.0, 3.0, 3.0]
    assert [at(schedule, t) for t in times] == pytest.approx(expected, abs=1e-12)
    assert schedule.units() == {unit}
    assert not schedule.is_constant
    assert schedule.min_max() == (1.0, 3.0)


def test_linear_decreasing_and_defaults() -> None:
    schedule = Linear(start=0.5, end=0.0, until=0.5)  # unit progress, begin 0
    assert [schedule(Clock(progress=p)) for p in (0.0, 0.25, 0.5, 0.75)] == pytest.approx(
        [0.5, 0.25, 0.0, 0.0]
    )
    assert schedule.min_max() == (0.0, 0.5)


def test_cosine_boundaries_and_shape() -> None:
    schedule = Cosine(start=2.0, end=0.0, begin=0, until=100, unit="step")
    assert at(schedule, 0) == 2.0
    assert at(schedule, 100) == 0.0
    assert at(schedule, 150) == 0.0
    assert at(schedule, 50) == pytest.approx(1.0)
    assert at(schedule, 25) == pytest.approx(2.0 - 2.0 * (1 - math.cos(math.pi / 4)) / 2)
    assert schedule.min_max() == (0.0, 2.0)


@given(
    start=st.floats(-10, 10),
    end=st.floats(-10, 10),
    begin=st.floats(0, 0.5),
    length=st.floats(1e-3, 0.5),
    t=st.floats(0, 1),
)
@settings(max_examples=200, deadline=None)
def test_ramps_stay_within_min_max(start: float, end: float, begin: float, length: float, t: float) -> None:
    for kind in (Linear, Cosine):
        schedule = kind(start=start, end=end, begin=begin, until=begin + length)
        low, high = schedule.min_max()
        value = schedule(Clock(progress=t))
        assert low - 1e-9 <= value <= high + 1e-9


@given(t1=st.integers(0, 200), t2=st.integers(0, 200))
@settings(max_examples=100, deadline=None)
def test_linear_is_monotone(t1: int, t2: int) -> None:
    schedule = Linear(start=0.0, end=1.0, begin=20, until=120, unit="step")
    a, b = sorted((t1, t2))
    assert at(schedule, a) <= at(schedule, b)


# --------------------------------------------------------------------------- decays


def test_step_milestones() -> None:
    schedule = Step(value=1.0, milestones=[2, 4], gamma=0.5, unit="epoch")
    assert [at(schedule, e) for e in range(7)] == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25, 0.25]
    assert schedule.min_max() == (0.25, 1.0)
    assert Step(value=3.0, milestones=[], gamma=0.5)(Clock(epoch=100)) == 3.0
    listconfig = OmegaConf.create({"m": [0.25, 0.5]}).m  # what Hydra passes
    progress = Step(value=1.0, milestones=listconfig, gamma=0.1, unit="progress")
    assert [progress(Clock(progress=p)) for p in (0.0, 0.25, 0.4, 0.5, 1.0)] == pytest.approx(
        [1.0, 0.1, 0.1, 0.01, 0.01]
    )


def test_exponential_inverse_time_annealed_std() -> None:
    exponential = Exponential(value=2.0, gamma=0.5, unit="epoch")
    assert [at(exponential, e) for e in range(4)] == [2.0, 1.0, 0.5, 0.25]
    assert exponential.min_max() == (0.0, 2.0)
    assert Exponential(value=1.0, gamma=2.0).min_max() == (1.0, math.inf)
    inverse = InverseTime(value=0.3, gamma=0.55, unit="step")
    for t in (0, 1, 10, 1000):
        assert at(inverse, t) == pytest.approx(0.3 * (1 + t) ** -0.55)
    assert inverse.min_max() == (0.0, 0.3)
    annealed = AnnealedStd(eta=0.3, gamma=0.55)
    for t in (0, 1, 10, 1000):
        assert at(annealed, t) ** 2 == pytest.approx(0.3 / (1 + t) ** 0.55)  # the variance anneals
    assert annealed.min_max() == (0.0, pytest.approx(math.sqrt(0.3)))


# --------------------------------------------------------------------------- periodic and windows


@pytest.mark.parametrize("shape", ["triangle", "cosine"])
def test_cyclic_key_points(shape: str) -> None:
    schedule = Cyclic(low=0.1, high=0.5, period=8, unit="step", shape=shape)  # type: ignore[arg-type]
    assert at(schedule, 0) == pytest.approx(0.1)
    assert at(schedule, 4) == pytest.approx(0.5)  # half a period: the top
    assert at(schedule, 8) == pytest.approx(0.1)
    assert at(schedule, 16) == pytest.approx(0.1)
    quarter = 0.3 if shape == "triangle" else 0.1 + 0.4 * (1 - math.cos(math.pi / 2)) / 2
    assert at(schedule, 2) == pytest.approx(quarter)
    assert at(schedule, 6) == pytest.approx(quarter)
    values = [at(schedule, t) for t in range(64)]
    assert min(values) >= 0.1 - 1e-12
    assert max(values) <= 0.5 + 1e-12
    assert schedule.min_max() == (0.1, 0.5)


def test_interval_windows_in_epochs() -> None:
    schedule = Interval(value=0.1, every=3, duration=1, unit="epoch")
    assert [at(schedule, e) for e in range(7)] == [0.1, 0.0, 0.0, 0.1, 0.0, 0.0, 0.1]
    shifted = Interval(value=0.2, every=4, duration=2, offset=3, unit="step")
    assert [at(shifted, t) for t in range(12)] == [0, 0, 0, 0.2, 0.2, 0, 0, 0.2, 0.2, 0, 0, 0.2]
    assert shifted.min_max() == (0.0, 0.2)
    assert shifted.units() == {"step"}


def test_interval_fractional_units_hit_every_window() -> None:
    # 0.3 % 0.1 == 0.0999... in floats: window 3 must still start at exactly 0.3.
    schedule = Interval(value=1.0, every=0.1, duration=0.05, unit="progress")
    for k in range(10):
        start = k * 0.1
        assert schedule(Clock(progress=start)) == 1.0, start
        assert schedule(Clock(progress=start + 0.049)) == 1.0
        assert schedule(Clock(progress=start + 0.05)) == 0.0
        assert schedule(Clock(progress=start + 0.099)) == 0.0


@given(every=st.integers(1, 20), duration_frac=st.floats(0, 1), offset=st.integers(0, 10))
@settings(max_examples=100, deadline=None)
def test_interval_on_fraction(every: int, duration_frac: float, offset: int) -> None:
    duration = max(1, round(duration_frac * every))
    schedule = Interval(value=0.5, every=every, duration=duration, offset=offset, unit="step")
    values = [at(schedule, offset + t) for t in range(every * 50)]
    assert set(values) <= {0.0, 0.5}
    assert values.count(0.5) == duration * 50
    assert all(at(schedule, t) == 0.0 for t in range(offset))


def test_interval_of_a_schedule_and_delay() -> None:
    inner = Linear(start=0.0, end=1.0, until=10, unit="epoch")
    schedule = Interval(value=inner, every=2, duration=1, unit="epoch")
    assert [at(schedule, e) for e in range(6)] == pytest.approx([0.0, 0.0, 0.2, 0.0, 0.4, 0.0])
    assert schedule.units() == {"epoch"}
    delayed = Delay(Linear(start=0.0, end=1.0, until=100, unit="step"), start=2, unit="epoch")
    # The inner schedule reads the unshifted clock, in its own unit.
    assert delayed(Clock(step=50, epoch=1)) == 0.0
    assert delayed(Clock(step=50, epoch=2)) == pytest.approx(0.5)
    assert delayed.units() == {"epoch", "step"}
    assert delayed.min_max() == (0.0, 1.0)
    assert [at(Delay(0.2, start=2), e) for e in range(4)] == [0.0, 0.0, 0.2, 0.2]


def test_piecewise_linear_and_constant() -> None:
    points = [(10, 1.0), (20, 3.0), (40, -1.0)]
    linear = Piecewise(points, unit="step")
    assert [at(linear, t) for t in (0, 10, 15, 20, 30, 40, 99)] == pytest.approx(
        [1.0, 1.0, 2.0, 3.0, 1.0, -1.0, -1.0]
    )
    constant = Piecewise(points, unit="step", interpolation="constant")
    assert [at(constant, t) for t in (0, 10, 15, 20, 39, 40)] == [1.0, 1.0, 1.0, 3.0, 3.0, -1.0]
    assert linear.min_max() == (-1.0, 3.0)
    hydra_points = OmegaConf.create({"p": [[0.0, 0.0], [0.5, 1.0]]}).p
    assert Piecewise(hydra_points, unit="progress")(Clock(progress=0.25)) == pytest.approx(0.5)


# --------------------------------------------------------------------------- products


def test_product_and_multiplication() -> None:
    ramp = Linear(start=0.0, end=1.0, until=1.0)
    decay = Exponential(value=1.0, gamma=0.5, unit="epoch")
    clock = Clock(step=0, epoch=2, progress=0.5)
    assert Product([0.5, ramp])(clock) == pytest.approx(0.25)
    assert (2 * ramp)(clock) == pytest.approx(1.0)
    assert (ramp * 2)(clock) == pytest.approx(1.0)
    both = ramp * decay
    assert isinstance(both, Product)
    assert both(clock) == pytest.approx(0.5 * 0.25)
    assert both.units() == {"progress", "epoch"}
    assert not both.is_constant
    assert Product([2, 3]).is_constant
    assert Product([2, 3])(Clock()) == 6.0
    signed = Product([Linear(start=-1.0, end=2.0, until=1.0), Cyclic(low=0.5, high=3.0, period=1)])
    assert signed.min_max() == (-3.0, 6.0)
    values = [signed(Clock(epoch=e, progress=p / 10)) for e in range(3) for p in range(11)]
    low, high = signed.min_max()
    assert all(low <= v <= high for v in values)


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("build", "fragments"),
    [
        (lambda: Step(1.0, milestones=[4, 2]), ["Step", "`milestones`", "[4, 2]", "strictly increasing"]),
        (lambda: Step(1.0, milestones=[2, 2]), ["Step", "strictly increasing"]),
        (lambda: Step(1.0, milestones=3), ["Step", "`milestones`", "list"]),
        (
            lambda: Piecewise([(0, 0.0), (5, 1.0), (3, 0.5)]),
            ["Piecewise", "`points`", "increasing time order"],
        ),
        (lambda: Piecewise([]), ["Piecewise", "`points`", "non-empty"]),
        (lambda: Piecewise([(0, 1.0, 2.0)]), ["Piecewise", "(time, value) pairs"]),
        (lambda: Piecewise([1.0, 2.0]), ["Piecewise", "(time, value) pairs"]),
        (lambda: Linear(0.0, 1.0, until=10, unit="epochs"), ["Linear", "`unit`", "'epochs'", "'step'"]),
        (lambda: Cyclic(0.0, 1.0, period=2, unit="batch"), ["Cyclic", "`unit`", "'batch'", "'progress'"]),
        (lambda: Linear(0.0, 1.0, begin=0.5, until=0.5), ["Linear", "`until`", "greater than `begin`"]),
        (lambda: Cosine(0.0, 1.0, begin=0.6, until=0.2), ["Cosine", "`until`", "0.2"]),
        (lambda: Linear(0.0, 1.0, until=1.5), ["Linear", "`until`", "1.5", "<= 1"]),
        (lambda: Linear(0.0, 1.0, begin=-1, until=5, unit="step"), ["Linear", "`begin`", ">= 0"]),
        (lambda: Linear(float("nan"), 1.0, until=1.0), ["Linear", "`start`", "finite number"]),
        (lambda: Linear(0.0, math.inf, until=1.0), ["Linear", "`end`", "finite number"]),
        (lambda: Linear("0", 1.0, until=1.0), ["Linear", "`start`", "'0'"]),
        (lambda: Constant(True), ["Constant", "`constant`", "True"]),
        (lambda: Exponential(1.0, gamma=0.0), ["Exponential", "`gamma`", "> 0"]),
        (lambda: InverseTime(1.0, gamma=-0.5), ["InverseTime", "`gamma`", ">= 0"]),
        (lambda: AnnealedStd(eta=-0.1), ["AnnealedStd", "`eta`", ">= 0"]),
        (lambda: AnnealedStd(eta=0.1, gamma=-0.55), ["AnnealedStd", "`gamma`", "-0.55", ">= 0"]),
        (lambda: Interval(0.1, every=3, duration=1, offset=-2), ["Interval", "`offset`", "-2", ">= 0"]),
        (
            lambda: Interval(0.1, every=0.5, duration=0.1, offset=1.2, unit="progress"),
            ["Interval", "`offset`", "1.2", "<= 1"],
        ),
        (lambda: Interval(0.1, every=3, duration=0), ["Interval", "`duration`", "got 0", "> 0"]),
        (lambda: Product(0.5), ["Product", "`factors`", "0.5", "non-empty list"]),  # type: ignore[arg-type]
        (lambda: Cyclic(0.0, 1.0, period=0), ["Cyclic", "`period`", "> 0"]),
        (lambda: Cyclic(0.0, 1.0, period=2, shape="saw"), ["Cyclic", "`shape`", "'triangle'"]),
        (lambda: Interval(0.1, every=2, duration=3), ["Interval", "`duration`", "<= 2"]),
        (lambda: Interval(0.1, every=0, duration=0), ["Interval", "`every`", "> 0"]),
        (lambda: Delay(0.1, start=-1), ["Delay", "`start`", ">= 0"]),
        (lambda: Delay(0.1, start=2.0, unit="progress"), ["Delay", "`start`", "<= 1"]),
        (lambda: Product([]), ["Product", "`factors`", "non-empty"]),
        (lambda: Product([0.5, "x"]), ["Product", "`factors`", "'x'"]),
        (lambda: Linear(0.0, 1.0, until=1.0) * None, ["`factors`", "None"]),
        (lambda: as_schedule(None), ["`value`", "None", "finite number"]),  # type: ignore[arg-type]
    ],
)
def test_bad_arguments_name_argument_value_and_allowed(build, fragments) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigurationError) as info:
        build()
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def test_configuration_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="unit"):
        Step(1.0, milestones=[1], unit="minutes")  # type: ignore[arg-type]
