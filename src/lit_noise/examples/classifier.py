"""Classifier: a small LightningModule (MLP or CNN) that takes hard or soft targets."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy

from lit_noise._validation import check_choice, check_int, check_range
from lit_noise.layers import GaussianDropout, GaussianNoise
from lit_noise.soft_labels import hard

__all__ = ["ClassificationSteps", "Classifier", "build_backbone"]


def build_backbone(kind: str, input_shape: Sequence[int], num_classes: int, hidden: int) -> nn.Module:
    """An MLP (flatten, two hidden layers) or a small CNN (two conv blocks) producing logits.

    ``kind`` is ``"mlp"`` or ``"cnn"`` (another name is a :class:`~lit_noise.ConfigurationError`).

    Example:
        >>> build_backbone("cnn", (1, 8, 8), 10, 32)(torch.zeros(2, 1, 8, 8)).shape
        torch.Size([2, 10])
    """
    check_choice("build_backbone", "kind", kind, ("mlp", "cnn"))
    channels, *spatial = input_shape
    features = channels
    for size in spatial:
        features *= size
    if kind == "mlp":
        return nn.Sequential(
            nn.Flatten(),
            nn.Linear(features, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, num_classes),
        )
    return nn.Sequential(
        nn.Conv2d(channels, hidden, 3, padding=1),
        nn.BatchNorm2d(hidden),
        nn.ReLU(),
        nn.Conv2d(hidden, hidden, 3, padding=1),
        nn.BatchNorm2d(hidden),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(hidden * 4, num_classes),
    )


class ClassificationSteps(pl.LightningModule):
    """The steps the example classifiers share: cross-entropy, accuracy, logging, Adam.

    Subclasses set ``lr`` and ``weight_decay``, call :meth:`_accuracies` in ``__init__`` and
    implement :meth:`_logits_and_targets`. Training minimises ``F.cross_entropy`` on the (possibly
    soft) targets and scores accuracy on their hard labels; validation and test log
    ``<stage>/loss`` and ``<stage>/acc`` and return the logits (for the monitors).

    Example:
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> class Identity(ClassificationSteps):  # the inputs are the logits
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.lr, self.weight_decay = 0.1, 0.0
        ...         self._accuracies(num_classes=2)
        ...     def _logits_and_targets(self, batch, stage):
        ...         x, y = batch
        ...         return x, y
        >>> data = DataLoader(TensorDataset(torch.tensor([[2.0, 0.0], [0.0, 3.0]]), torch.tensor([0, 1])))
        >>> trainer = pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False)
        >>> (metrics,) = trainer.validate(Identity(), data, verbose=False)
        >>> metrics["val/acc"], round(metrics["val/loss"], 4)  # mean of log(1 + e^-2), log(1 + e^-3)
        (1.0, 0.0878)
    """

    lr: float
    weight_decay: float

    def _accuracies(self, num_classes: int) -> None:
        self.train_acc = MulticlassAccuracy(num_classes=num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes=num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes=num_classes, average="micro")

    def _logits_and_targets(self, batch: Any, stage: str) -> tuple[Tensor, Any]:
        """The logits of ``batch`` and its targets, at ``stage`` (``"train"``, ``"val"``, ``"test"``)."""
        raise NotImplementedError

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        """Cross-entropy on the (possibly soft) targets; accuracy on their hard labels."""
        logits, y = self._logits_and_targets(batch, "train")
        loss = F.cross_entropy(logits, y)
        self.train_acc(logits, hard(y))
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True)
        return loss

    def _evaluate(self, batch: Any, stage: str, metric: MulticlassAccuracy) -> Tensor:
        logits, y = self._logits_and_targets(batch, stage)
        self.log(f"{stage}/loss", F.cross_entropy(logits, y), prog_bar=stage == "val")
        metric(logits, hard(y))
        self.log(f"{stage}/acc", metric, prog_bar=stage == "val")
        return logits

    def validation_step(self, batch: Any, batch_idx: int) -> Tensor:
        """Validation loss and accuracy; returns the logits for monitors."""
        return self._evaluate(batch, "val", self.val_acc)

    def test_step(self, batch: Any, batch_idx: int) -> Tensor:
        """Test loss and accuracy."""
        return self._evaluate(batch, "test", self.test_acc)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """Adam."""
        return torch.optim.Adam(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)


class Classifier(ClassificationSteps):
    """A classifier whose ``training_step`` is plain ``cross_entropy`` plus a torchmetrics accuracy.

    It is the model a user has before adding lit_noise: targets may be class indices,
    :class:`~lit_noise.SoftLabels` (cross-entropy sees the distribution, the accuracy the hard
    labels) or ``(B, C)`` probabilities. Logs ``train/loss``, ``train/acc``, ``val/loss``,
    ``val/acc``, ``test/loss`` and ``test/acc``; ``validation_step`` returns the logits.

    Args:
        backbone: ``"mlp"`` or ``"cnn"``.
        num_classes: number of classes.
        input_shape: ``(C, H, W)`` of one input.
        hidden: hidden width (MLP units or CNN channels).
        lr: Adam's learning rate.
        weight_decay: Adam's weight decay.
        input_noise_std: with ``> 0``, a :class:`~lit_noise.GaussianNoise` layer of this std on the
            inputs (driven by :class:`~lit_noise.NoiseLayerSchedule`; a no-op outside training).
        gaussian_dropout: with ``> 0``, a :class:`~lit_noise.GaussianDropout` layer of this rate
            before the output layer.

    Example:
        >>> model = Classifier(backbone="mlp")
        >>> model(torch.zeros(4, 1, 8, 8)).shape
        torch.Size([4, 10])
    """

    def __init__(
        self,
        backbone: Literal["mlp", "cnn"] = "mlp",
        num_classes: int = 10,
        input_shape: Sequence[int] = (1, 8, 8),
        hidden: int = 64,
        lr: float = 1e-2,
        weight_decay: float = 0.0,
        input_noise_std: float = 0.0,
        gaussian_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        # Plain values in the saved hyperparameters (a Hydra ListConfig would not load with
        # torch.load's weights_only=True).
        input_shape = tuple(int(size) for size in input_shape)
        check_choice("Classifier", "backbone", backbone, ("mlp", "cnn"))
        check_int("Classifier", "num_classes", num_classes, 2)
        check_int("Classifier", "hidden", hidden, 1)
        self.lr = check_range("Classifier", "lr", lr, 0.0, low_open=True)
        self.weight_decay = check_range("Classifier", "weight_decay", weight_decay, 0.0)
        check_range("Classifier", "input_noise_std", input_noise_std, 0.0)
        check_range("Classifier", "gaussian_dropout", gaussian_dropout, 0.0, 1.0, high_open=True)
        self.save_hyperparameters()
        layers = list(build_backbone(backbone, input_shape, num_classes, hidden).children())
        if gaussian_dropout > 0:
            layers.insert(len(layers) - 1, GaussianDropout(rate=gaussian_dropout))
        if input_noise_std > 0:
            layers.insert(0, GaussianNoise(std=input_noise_std))
        self.net = nn.Sequential(*layers)
        self._accuracies(num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """Logits for inputs ``x``."""
        logits: Tensor = self.net(x)
        return logits

    def _logits_and_targets(self, batch: Sequence[Tensor], stage: str) -> tuple[Tensor, Any]:
        x, y = batch[0], batch[1]
        return (self(x) if stage == "train" else self.forward(x)), y

    def predict_step(self, batch: Any, batch_idx: int) -> Tensor:
        """Class probabilities."""
        x = batch[0] if isinstance(batch, (list, tuple)) else batch
        return self.forward(x).softmax(dim=1)
