"""The parameter lists that are repeated on purpose stay the same list.

`duplicates` pairs a few public signatures that repeat another's parameters: a callback that lists a
rule's settings for Hydra and LightningCLI, a metric class and its functional form (torchmetrics'
convention), functions of one family. Each is commented where it stands. A repeated list can drift:
a default changed in one place and not the other gives the two forms of one thing different
behaviour. These tests read both signatures with ``inspect`` and compare every shared parameter's
name, position kind, annotation and default; the differences that are meant are typed in here.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest

from lit_noise import LabelSmoothing, NoiseController, PairFlip, SymmetricFlip, metrics
from lit_noise.control import ScaleControl
from lit_noise.examples import TokenDataModule, make_token_sequences
from lit_noise.functional import pair_flip, smooth_one_hot, symmetric_flip, transition_flip
from lit_noise.metrics.functional import hard_targets, soft_targets
from lit_noise.noise.target import LabelNoise

Described = tuple[str, Any, Any, Any]  # name, kind, annotation, default


def _parameters(function: Callable[..., Any], leave_out: tuple[str, ...] = ()) -> list[Described]:
    """Every parameter of ``function`` as (name, kind, annotation, default), in order."""
    return [
        (p.name, p.kind, p.annotation, p.default)
        for p in inspect.signature(function).parameters.values()
        if p.name not in ("self", *leave_out) and p.kind is not inspect.Parameter.VAR_KEYWORD
    ]


def _named(function: Callable[..., Any], names: tuple[str, ...]) -> list[Described]:
    """The parameters ``names`` of ``function``, in the order given (a missing one fails)."""
    by_name = {described[0]: described for described in _parameters(function)}
    missing = [name for name in names if name not in by_name]
    assert not missing, f"{function.__qualname__} has no parameter {missing}"
    return [by_name[name] for name in names]


def test_symmetric_and_pair_flip_take_one_parameter_list() -> None:
    assert _parameters(symmetric_flip) == _parameters(pair_flip)
    assert [p[0] for p in _parameters(pair_flip)] == ["y", "p", "num_classes", "generator", "ignore_index"]


def test_the_label_functions_share_their_common_parameters() -> None:
    """smooth_one_hot has `eps` and `dtype` where the flips have `p` and `generator`."""
    assert _named(smooth_one_hot, ("y", "num_classes", "ignore_index")) == _named(
        symmetric_flip, ("y", "num_classes", "ignore_index")
    )
    assert _named(transition_flip, ("y", "generator", "ignore_index")) == _named(
        symmetric_flip, ("y", "generator", "ignore_index")
    )


def test_hard_and_soft_targets_take_one_parameter_list() -> None:
    """The same list; `owner` defaults to each function's own name (it names it in errors)."""
    hard, soft = _parameters(hard_targets), _parameters(soft_targets)
    assert hard[:3] == soft[:3]
    assert hard[4] == soft[4] == ("validate", inspect.Parameter.POSITIONAL_OR_KEYWORD, "bool", True)
    assert (hard[3][:3], soft[3][:3]) == (("owner", inspect.Parameter.POSITIONAL_OR_KEYWORD, "str"),) * 2
    assert (hard[3][3], soft[3][3]) == ("hard_targets", "soft_targets")
    assert len(hard) == len(soft) == 5


@pytest.mark.parametrize("flip", [SymmetricFlip, PairFlip])
def test_label_smoothing_and_the_rate_flips_construct_alike_but_for_the_rates_name(flip: type) -> None:
    smoothing = _parameters(LabelSmoothing)
    flips = _parameters(flip)
    assert smoothing[0][0] == "eps"
    assert flips[0][0] == "p"
    assert smoothing[0][1:] == flips[0][1:]
    assert smoothing[1:] == flips[1:]
    assert [p[0] for p in flips[1:]] == ["num_classes", "target_format", "ignore_index"]


def test_label_smoothing_overrides_label_noise_with_its_parameter_list() -> None:
    assert _parameters(LabelSmoothing._noise) == _parameters(LabelNoise._noise)


# The shared settings of each pair; the rest are each one's own (the DataModule's split sizes and
# loader settings, the controller's metric names and figures, the rule's `scale` and `owner`).
_TOKEN_TASK = ("vocab_size", "num_classes", "group_size", "min_length", "max_length", "signal", "seed")
_CONTROL_RULE = (
    "mode",
    "tolerance",
    "decrease",
    "increase",
    "patience",
    "cooldown",
    "min_scale",
    "max_scale",
    "reference",
    "gap",
    "warmup",
)


def test_token_data_module_and_make_token_sequences_share_the_tasks_settings() -> None:
    assert _named(TokenDataModule, _TOKEN_TASK) == _named(make_token_sequences, _TOKEN_TASK)
    own = {p[0] for p in _parameters(make_token_sequences)} - set(_TOKEN_TASK)
    assert own == {"num_samples"}


def test_noise_controller_lists_scale_controls_settings_with_its_defaults() -> None:
    assert _named(NoiseController, _CONTROL_RULE) == _named(ScaleControl, _CONTROL_RULE)
    assert {p[0] for p in _parameters(ScaleControl)} - set(_CONTROL_RULE) == {"scale", "owner"}


def test_noise_controller_passes_every_rule_setting_to_its_scale_control() -> None:
    """A controller built with non-default settings holds a rule with exactly those settings."""
    settings: dict[str, Any] = {
        "mode": "min",
        "tolerance": 0.2,
        "decrease": 0.3,
        "increase": 1.5,
        "patience": 3,
        "cooldown": 2,
        "min_scale": 0.1,
        "max_scale": 2.5,
        "reference": 0.4,
        "gap": 0.05,
        "warmup": 4,
    }
    assert set(settings) == set(_CONTROL_RULE)
    defaults = {p[0]: p[3] for p in _parameters(ScaleControl)}
    assert all(settings[name] != defaults[name] for name in settings)
    controller = NoiseController(robust_monitor="val/robust", verbose=False, log_figures=False, **settings)
    assert {name: getattr(controller.control, name) for name in settings} == settings


# Each metric class takes its functional form's settings, in the same order (torchmetrics'
# convention); the functional form takes `preds` and `target` first, the class `**kwargs` last.
_METRICS = [
    (metrics.CalibrationError, metrics.calibration_error),
    (metrics.ReliabilityDiagram, metrics.reliability_diagram),
    (metrics.AdaptiveCalibrationError, metrics.adaptive_calibration_error),
    (metrics.BrierScore, metrics.brier_score),
    (metrics.NegativeLogLikelihood, metrics.negative_log_likelihood),
]


@pytest.mark.parametrize(("metric", "function"), _METRICS, ids=[m.__name__ for m, _ in _METRICS])
def test_each_metric_class_takes_its_functional_forms_settings(
    metric: type, function: Callable[..., Any]
) -> None:
    assert _parameters(metric) == _parameters(function, leave_out=("preds", "target"))
    assert [p[0] for p in _parameters(function)[:2]] == ["preds", "target"]
