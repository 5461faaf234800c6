"""Every argument check the docstrings promise, one row each: the error names the owner, the argument,
the bad value and what is allowed (``Owner: `arg` must be <allowed>, got <value>.``).

The expected fragments are typed here from the documented ranges, not read back from the code.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import lightning.pytorch as pl
import pytest
import torch

from _trainers import quiet_trainer
from lit_noise import (
    SNR,
    AdaptiveCalibrationError,
    AnnealedStd,
    BrierScore,
    CalibrationError,
    CalibrationMonitor,
    ConfigurationError,
    Constant,
    Cosine,
    Cyclic,
    Delay,
    Exponential,
    Gaussian,
    GaussianDropout,
    GaussianNoise,
    GradientNoise,
    InputNoise,
    Interval,
    InverseTime,
    LabelSmoothing,
    Laplace,
    Linear,
    Mask,
    MixupDataModule,
    NegativeLogLikelihood,
    NoiseController,
    NoiseLayerSchedule,
    PairFlip,
    Piecewise,
    Product,
    ReliabilityDiagram,
    RobustnessMonitor,
    SaltAndPepper,
    Speckle,
    Step,
    SymmetricFlip,
    TargetNoise,
    TransitionMatrix,
    Uniform,
    WeightNoise,
    corrupt,
)
from lit_noise.examples import DigitsDataModule, build_backbone
from lit_noise.functional import mix_batch, sample_mix_params
from lit_noise.metrics import (
    adaptive_calibration_error,
    brier_score,
    calibration_error,
    negative_log_likelihood,
    reliability_diagram,
)

Build = Callable[[], Any]

_P = torch.softmax(torch.randn(4, 3, generator=torch.Generator().manual_seed(0)), dim=1)
_Y = torch.tensor([0, 1, 2, 0])
_IMAGE = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))

#: (builder, owner, argument, the bad value as the message shows it)
CASES: list[tuple[str, Build, str, str, str]] = [
    # ---------------------------------------------------------------- schedules
    ("Constant nan", lambda: Constant(math.nan), "Constant", "constant", "nan"),
    ("Linear until>1 progress", lambda: Linear(0.0, 1.0, until=1.5), "Linear", "until", "1.5"),
    ("Linear until<=begin", lambda: Linear(0.0, 1.0, begin=3, until=3, unit="step"), "Linear", "until", "3"),
    ("Cosine begin<0", lambda: Cosine(1.0, 0.0, begin=-1, until=5, unit="step"), "Cosine", "begin", "-1"),
    ("Linear unit", lambda: Linear(0.0, 1.0, until=1.0, unit="steps"), "Linear", "unit", "'steps'"),  # type: ignore[arg-type]
    ("Step milestones", lambda: Step(1.0, milestones=[3, 1]), "Step", "milestones", "[3, 1]"),
    ("Step gamma", lambda: Step(1.0, milestones=[1], gamma=math.inf), "Step", "gamma", "inf"),
    ("Exponential gamma", lambda: Exponential(1.0, gamma=-0.5), "Exponential", "gamma", "-0.5"),
    ("InverseTime gamma", lambda: InverseTime(1.0, gamma=-1.0), "InverseTime", "gamma", "-1.0"),
    ("AnnealedStd eta", lambda: AnnealedStd(eta=-0.01), "AnnealedStd", "eta", "-0.01"),
    ("AnnealedStd gamma", lambda: AnnealedStd(eta=0.01, gamma=-0.55), "AnnealedStd", "gamma", "-0.55"),
    ("AnnealedStd unit", lambda: AnnealedStd(eta=0.01, unit="batch"), "AnnealedStd", "unit", "'batch'"),  # type: ignore[arg-type]
    ("Cyclic period", lambda: Cyclic(0.0, 1.0, period=-2), "Cyclic", "period", "-2"),
    ("Cyclic shape", lambda: Cyclic(0.0, 1.0, period=2, shape="square"), "Cyclic", "shape", "'square'"),  # type: ignore[arg-type]
    ("Interval every", lambda: Interval(0.1, every=0, duration=0), "Interval", "every", "0"),
    ("Interval duration>every", lambda: Interval(0.1, every=2, duration=3), "Interval", "duration", "3"),
    ("Interval duration 0", lambda: Interval(0.1, every=2, duration=0), "Interval", "duration", "0"),
    ("Interval offset<0", lambda: Interval(0.1, every=3, duration=1, offset=-1), "Interval", "offset", "-1"),
    (
        "Interval offset>1 progress",
        lambda: Interval(0.1, every=0.2, duration=0.1, offset=1.5, unit="progress"),
        "Interval",
        "offset",
        "1.5",
    ),
    ("Delay start", lambda: Delay(0.1, start=-2), "Delay", "start", "-2"),
    (
        "Piecewise points",
        lambda: Piecewise([(0, 1.0), (0, 2.0)]),
        "Piecewise",
        "points",
        "[[0, 1.0], [0, 2.0]]",
    ),
    ("Product empty", lambda: Product([]), "Product", "factors", "[]"),
    ("Product not a list", lambda: Product(2.0), "Product", "factors", "2.0"),  # type: ignore[arg-type]
    # ---------------------------------------------------------------- noises
    ("Gaussian std", lambda: Gaussian(std=-0.1), "Gaussian", "std", "-0.1"),
    ("Gaussian std schedule", lambda: Gaussian(std=Linear(-1.0, 1.0, until=1.0)), "Gaussian", "std", "-1"),
    ("Gaussian mean", lambda: Gaussian(std=0.1, mean="0"), "Gaussian", "mean", "'0'"),  # type: ignore[arg-type]
    ("Uniform width", lambda: Uniform(width=-1.0), "Uniform", "width", "-1.0"),
    ("Laplace scale", lambda: Laplace(scale=-1.0), "Laplace", "scale", "-1.0"),
    ("SaltAndPepper amount", lambda: SaltAndPepper(amount=1.5), "SaltAndPepper", "amount", "1.5"),
    (
        "SaltAndPepper salt_vs_pepper",
        lambda: SaltAndPepper(amount=0.1, salt_vs_pepper=2.0),
        "SaltAndPepper",
        "salt_vs_pepper",
        "2.0",
    ),
    ("SaltAndPepper high<low", lambda: SaltAndPepper(0.1, low=1.0, high=0.0), "SaltAndPepper", "high", "0.0"),
    ("Speckle std", lambda: Speckle(std=-0.2), "Speckle", "std", "-0.2"),
    ("SNR db", lambda: SNR(db=math.inf), "SNR", "db", "inf"),
    ("Mask p", lambda: Mask(p=1.5), "Mask", "p", "1.5"),
    ("LabelSmoothing eps", lambda: LabelSmoothing(eps=1.5), "LabelSmoothing", "eps", "1.5"),
    (
        "LabelSmoothing num_classes",
        lambda: LabelSmoothing(0.1, num_classes=1),
        "LabelSmoothing",
        "num_classes",
        "1",
    ),
    (
        "LabelSmoothing target_format",
        lambda: LabelSmoothing(0.1, target_format="onehot"),  # type: ignore[arg-type]
        "LabelSmoothing",
        "target_format",
        "'onehot'",
    ),
    ("SymmetricFlip p", lambda: SymmetricFlip(p=-0.1), "SymmetricFlip", "p", "-0.1"),
    ("PairFlip p", lambda: PairFlip(p=2.0), "PairFlip", "p", "2.0"),
    (
        "TransitionMatrix rows",
        lambda: TransitionMatrix([[0.5, 0.4], [0.0, 1.0]]),
        "TransitionMatrix",
        "matrix",
        "[[0.5, 0.4], [0.0, 1.0]]",
    ),
    ("TransitionMatrix size", lambda: TransitionMatrix([[1.0]]), "TransitionMatrix", "matrix", "[[1.0]]"),
    (
        "TransitionMatrix num_classes",
        lambda: TransitionMatrix([[1.0, 0.0], [0.0, 1.0]], num_classes=3),
        "TransitionMatrix",
        "num_classes",
        "3",
    ),
    # ---------------------------------------------------------------- callbacks
    ("InputNoise noise", lambda: InputNoise("gaussian"), "InputNoise", "noise", "'gaussian'"),  # type: ignore[arg-type]
    ("InputNoise p", lambda: InputNoise(Gaussian(0.1), p=1.5), "InputNoise", "p", "1.5"),
    (
        "InputNoise clamp order",
        lambda: InputNoise(Gaussian(0.1), clamp=(1, 0)),
        "InputNoise",
        "clamp",
        "[1, 0]",
    ),
    ("InputNoise clamp shape", lambda: InputNoise(Gaussian(0.1), clamp=(0,)), "InputNoise", "clamp", "(0,)"),
    ("InputNoise seed", lambda: InputNoise(Gaussian(0.1), seed=-1), "InputNoise", "seed", "-1"),
    (
        "WeightNoise restore under DDP",
        lambda: WeightNoise(Gaussian(0.1), restore="regenerate", seed=0).setup(
            quiet_trainer(devices=2, strategy="ddp_spawn"), pl.LightningModule(), "fit"
        ),
        "WeightNoise",
        "restore",
        "'regenerate'",
    ),
    # Seeds are hashed as 64 bits: 2**64 acted as seed 0.
    ("GradientNoise seed 2**64", lambda: GradientNoise(0.1, seed=2**64), "GradientNoise", "seed", str(2**64)),
    (
        "MixupDataModule seed 2**64",
        lambda: MixupDataModule(DigitsDataModule(), seed=2**64),
        "MixupDataModule",
        "seed",
        str(2**64),
    ),
    (
        "RobustnessMonitor seed 2**64",
        lambda: RobustnessMonitor(seed=2**64),
        "RobustnessMonitor",
        "seed",
        str(2**64),
    ),
    (
        "DigitsDataModule split_seed 2**64",
        lambda: DigitsDataModule(split_seed=2**64),
        "DigitsDataModule",
        "split_seed",
        str(2**64),
    ),
    ("InputNoise scale", lambda: InputNoise(Gaussian(0.1), scale=-1.0), "InputNoise", "scale", "-1.0"),
    ("InputNoise name", lambda: InputNoise(Gaussian(0.1), name=""), "InputNoise", "name", "''"),
    ("InputNoise key", lambda: InputNoise(Gaussian(0.1), key=1.5), "InputNoise", "key", "1.5"),  # type: ignore[arg-type]
    (
        "TargetNoise p",
        lambda: TargetNoise(SymmetricFlip(0.1), num_classes=3, p=-0.5),
        "TargetNoise",
        "p",
        "-0.5",
    ),
    ("TargetNoise key", lambda: TargetNoise(SymmetricFlip(0.1), key=True), "TargetNoise", "key", "True"),
    ("WeightNoise noise", lambda: WeightNoise(SNR(db=10.0)), "WeightNoise", "noise", "SNR"),
    ("WeightNoise relative", lambda: WeightNoise(Gaussian(0.1), relative=1), "WeightNoise", "relative", "1"),  # type: ignore[arg-type]
    (
        "WeightNoise restore",
        lambda: WeightNoise(Gaussian(0.1), restore="undo"),  # type: ignore[arg-type]
        "WeightNoise",
        "restore",
        "'undo'",
    ),
    (
        "WeightNoise chunk_size",
        lambda: WeightNoise(Gaussian(0.1), chunk_size=0),
        "WeightNoise",
        "chunk_size",
        "0",
    ),
    ("WeightNoise include", lambda: WeightNoise(Gaussian(0.1), include=[]), "WeightNoise", "include", "[]"),
    ("GradientNoise std", lambda: GradientNoise(std=-0.1), "GradientNoise", "std", "-0.1"),
    ("GradientNoise std type", lambda: GradientNoise(std="0.1"), "GradientNoise", "std", "'0.1'"),  # type: ignore[arg-type]
    (
        "GradientNoise chunk_size",
        lambda: GradientNoise(0.1, chunk_size=-4),
        "GradientNoise",
        "chunk_size",
        "-4",
    ),
    (
        "NoiseLayerSchedule scale",
        lambda: NoiseLayerSchedule(scale=-1.0),
        "NoiseLayerSchedule",
        "scale",
        "-1.0",
    ),
    (
        "CalibrationMonitor n_bins",
        lambda: CalibrationMonitor(num_classes=3, n_bins=0),
        "CalibrationMonitor",
        "n_bins",
        "0",
    ),
    (
        "CalibrationMonitor stages",
        lambda: CalibrationMonitor(num_classes=3, stages=["train"]),
        "CalibrationMonitor",
        "stages",
        "'train'",
    ),
    (
        "RobustnessMonitor corruptions",
        lambda: RobustnessMonitor(corruptions="gaussian_noise"),
        "RobustnessMonitor",
        "corruptions",
        "'gaussian_noise'",
    ),
    (
        "RobustnessMonitor corruptions unknown",
        lambda: RobustnessMonitor(corruptions=["fog"]),
        "RobustnessMonitor",
        "corruptions",
        "'fog'",
    ),
    (
        "RobustnessMonitor severities",
        lambda: RobustnessMonitor(severities=[0, 1]),
        "RobustnessMonitor",
        "severities",
        "0",
    ),
    (
        "RobustnessMonitor every_n_epochs",
        lambda: RobustnessMonitor(every_n_epochs=0),
        "RobustnessMonitor",
        "every_n_epochs",
        "0",
    ),
    (
        "RobustnessMonitor constants",
        lambda: RobustnessMonitor(constants="cifar100"),
        "RobustnessMonitor",
        "constants",
        "'cifar100'",
    ),
    # ---------------------------------------------------------------- layers
    ("GaussianNoise std", lambda: GaussianNoise(std=-1.0), "Gaussian", "std", "-1.0"),
    ("GaussianNoise scale", lambda: GaussianNoise(std=0.1, scale=-1.0), "GaussianNoise", "scale", "-1.0"),
    ("GaussianDropout rate", lambda: GaussianDropout(rate=1.0), "GaussianDropout", "rate", "1.0"),
    # ---------------------------------------------------------------- mixing
    (
        "MixupDataModule mixup_alpha",
        lambda: MixupDataModule(DigitsDataModule(), mixup_alpha=-1.0),
        "MixupDataModule",
        "mixup_alpha",
        "-1.0",
    ),
    (
        "MixupDataModule cutmix_alpha",
        lambda: MixupDataModule(DigitsDataModule(), cutmix_alpha=-0.5),
        "MixupDataModule",
        "cutmix_alpha",
        "-0.5",
    ),
    (
        "MixupDataModule prob",
        lambda: MixupDataModule(DigitsDataModule(), prob=1.5),
        "MixupDataModule",
        "prob",
        "1.5",
    ),
    (
        "MixupDataModule switch_prob",
        lambda: MixupDataModule(DigitsDataModule(), switch_prob=-0.1),
        "MixupDataModule",
        "switch_prob",
        "-0.1",
    ),
    (
        "MixupDataModule mode",
        lambda: MixupDataModule(DigitsDataModule(), mode="sample"),  # type: ignore[arg-type]
        "MixupDataModule",
        "mode",
        "'sample'",
    ),
    (
        "MixupDataModule cutmix_minmax",
        lambda: MixupDataModule(DigitsDataModule(), cutmix_minmax=(0.8, 0.2)),
        "MixupDataModule",
        "cutmix_minmax",
        "[0.8, 0.2]",
    ),
    (
        "MixupDataModule label_smoothing",
        lambda: MixupDataModule(DigitsDataModule(), label_smoothing=2.0),
        "MixupDataModule",
        "label_smoothing",
        "2.0",
    ),
    (
        "MixupDataModule correct_lam",
        lambda: MixupDataModule(DigitsDataModule(), correct_lam=1),  # type: ignore[arg-type]
        "MixupDataModule",
        "correct_lam",
        "1",
    ),
    (
        "MixupDataModule num_classes",
        lambda: MixupDataModule(DigitsDataModule(), num_classes=1),
        "MixupDataModule",
        "num_classes",
        "1",
    ),
    (
        "MixupDataModule input_key",
        lambda: MixupDataModule(DigitsDataModule(), input_key=None),
        "MixupDataModule",
        "input_key",
        "None",
    ),
    (
        "MixupDataModule scale",
        lambda: MixupDataModule(DigitsDataModule(), scale=-2.0),
        "MixupDataModule",
        "scale",
        "-2.0",
    ),
    # ---------------------------------------------------------------- metrics
    (
        "CalibrationError num_classes",
        lambda: CalibrationError(num_classes=1),
        "CalibrationError",
        "num_classes",
        "1",
    ),
    ("CalibrationError n_bins", lambda: CalibrationError(3, n_bins=0), "CalibrationError", "n_bins", "0"),
    ("CalibrationError norm", lambda: CalibrationError(3, norm="l3"), "CalibrationError", "norm", "'l3'"),  # type: ignore[arg-type]
    (
        "CalibrationError input_format",
        lambda: CalibrationError(3, input_format="softmax"),  # type: ignore[arg-type]
        "CalibrationError",
        "input_format",
        "'softmax'",
    ),
    (
        "AdaptiveCalibrationError n_fine_bins",
        lambda: AdaptiveCalibrationError(3, n_fine_bins=0),
        "AdaptiveCalibrationError",
        "n_fine_bins",
        "0",
    ),
    (
        "ReliabilityDiagram n_bins",
        lambda: ReliabilityDiagram(3, n_bins=-1),
        "ReliabilityDiagram",
        "n_bins",
        "-1",
    ),
    ("BrierScore num_classes", lambda: BrierScore(num_classes=2.0), "BrierScore", "num_classes", "2.0"),  # type: ignore[arg-type]
    (
        "NegativeLogLikelihood eps 0",
        lambda: NegativeLogLikelihood(3, eps=0.0),
        "NegativeLogLikelihood",
        "eps",
        "0.0",
    ),
    (
        "NegativeLogLikelihood eps 0.5",
        lambda: NegativeLogLikelihood(3, eps=0.5),
        "NegativeLogLikelihood",
        "eps",
        "0.5",
    ),
    (
        "NegativeLogLikelihood eps nan",
        lambda: NegativeLogLikelihood(3, eps=math.nan),
        "NegativeLogLikelihood",
        "eps",
        "nan",
    ),
    (
        "NegativeLogLikelihood eps with logits",
        lambda: NegativeLogLikelihood(3, eps=1e-6, input_format="logits"),
        "NegativeLogLikelihood",
        "eps",
        "1e-06",
    ),
    (
        "negative_log_likelihood eps",
        lambda: negative_log_likelihood(_P, _Y, 3, eps=-1e-3),
        "negative_log_likelihood",
        "eps",
        "-0.001",
    ),
    (
        "negative_log_likelihood eps with logits",
        lambda: negative_log_likelihood(_P, _Y, 3, eps=1e-3, input_format="logits"),
        "negative_log_likelihood",
        "eps",
        "0.001",
    ),
    (
        "calibration_error n_bins",
        lambda: calibration_error(_P, _Y, 3, n_bins=0),
        "calibration_error",
        "n_bins",
        "0",
    ),
    (
        "adaptive_calibration_error n_fine_bins",
        lambda: adaptive_calibration_error(_P, _Y, 3, n_fine_bins=0),
        "adaptive_calibration_error",
        "n_fine_bins",
        "0",
    ),
    ("brier_score num_classes", lambda: brier_score(_P, _Y, 1), "brier_score", "num_classes", "1"),
    (
        "reliability_diagram input_format",
        lambda: reliability_diagram(_P, _Y, 3, input_format="p"),  # type: ignore[arg-type]
        "reliability_diagram",
        "input_format",
        "'p'",
    ),
    # ---------------------------------------------------------------- corruptions
    ("corrupt name", lambda: corrupt(_IMAGE, "fog", 1), "corrupt", "name", "'fog'"),
    ("corrupt severity", lambda: corrupt(_IMAGE, "contrast", 6), "corrupt", "severity", "6"),
    ("corrupt severity bool", lambda: corrupt(_IMAGE, "contrast", True), "corrupt", "severity", "True"),
    ("corrupt constants", lambda: corrupt(_IMAGE, "contrast", 1, "svhn"), "corrupt", "constants", "'svhn'"),
    (
        "corrupt value_range",
        lambda: corrupt(_IMAGE, "contrast", 1, value_range=(1.0, 0.0)),
        "corrupt",
        "value_range",
        "(1.0, 0.0)",
    ),
    # Settings that could not take effect (each was silently unused).
    (
        "TargetNoise num_classes",
        lambda: TargetNoise(Gaussian(0.1), num_classes=10),
        "TargetNoise",
        "num_classes",
        "10",
    ),
    (
        "NoiseController gap",
        lambda: NoiseController(gap=0.1, log_figures=False),
        "NoiseController",
        "gap",
        "0.1",
    ),
    (
        "sample_mix_params cutmix_minmax",
        lambda: sample_mix_params(4, mode="elem", cutmix_minmax=(0.5, 1.5), spatial_size=(8, 8)),
        "sample_mix_params",
        "cutmix_minmax",
        "1.5",
    ),
    (
        "sample_mix_params host_generator",
        lambda: sample_mix_params(4, mode="elem", host_generator=torch.Generator()),
        "sample_mix_params",
        "host_generator",
        "'elem'",
    ),
    (
        "mix_batch use_cutmix",
        lambda: mix_batch(
            torch.zeros(2, 1, 4, 4), torch.eye(2), 0.5, torch.tensor([1, 0]), torch.tensor([True])
        ),
        "mix_batch",
        "use_cutmix",
        "`boxes` is None",
    ),
    (
        "build_backbone kind",
        lambda: build_backbone("resnet", (1, 8, 8), 10, 16),
        "build_backbone",
        "kind",
        "'resnet'",
    ),
]


@pytest.mark.parametrize(
    ("build", "owner", "argument", "shown"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_argument_names_owner_argument_value_and_what_is_allowed(
    build: Build, owner: str, argument: str, shown: str
) -> None:
    with pytest.raises(ConfigurationError) as info:
        build()
    message = str(info.value)
    assert message.startswith(owner), message
    assert f"`{argument}`" in message, message
    assert "must" in message, message  # says what is allowed
    assert shown in message, message


class _Manual(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.layer = torch.nn.Linear(2, 1)

    def training_step(self, batch: Any, batch_idx: int) -> None:
        return None

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.mark.parametrize(
    ("callback", "says"),
    [
        (lambda: WeightNoise(Gaussian(std=0.1)), "perturbs the weights when a training batch starts"),
        (lambda: GradientNoise(std=0.1), "adds the noise in `on_before_optimizer_step`"),
    ],
)
def test_manual_optimisation_is_refused_with_what_each_callback_does(callback: Build, says: str) -> None:
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.zeros(4, 2)), batch_size=2)
    with pytest.raises(ConfigurationError) as info:
        quiet_trainer(callbacks=[callback()], limit_val_batches=0).fit(_Manual(), loader)
    message = str(info.value)
    owner = type(callback()).__name__
    assert message.startswith(
        f"{owner} does not support manual optimisation (`automatic_optimization = False`)"
    )
    assert says in message
    assert message.endswith("Use automatic optimisation.")
    if owner == "GradientNoise":
        assert "perturb" not in message  # what WeightNoise does, not this
        assert "restore" not in message
