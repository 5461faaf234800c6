"""InputNoise: scheduled noise on the model's inputs while fitting."""

from __future__ import annotations

from collections.abc import Sequence

from lit_noise.batch import BatchKey
from lit_noise.callbacks.batch_noise import BatchNoise
from lit_noise.errors import ConfigurationError
from lit_noise.noise.base import Noise
from lit_noise.schedules import ScheduleLike

__all__ = ["InputNoise"]


class InputNoise(BatchNoise):
    """Add noise to the inputs of every training batch, on the batch's device.

    The noisy inputs replace the clean ones in the batch container (out of place, so the dataset
    is never modified) before ``training_step``; validation, test, predict and sanity checking see
    clean inputs. The current strengths are logged as ``noise/<name>/<param>``.

    Args:
        noise: what noise (``Gaussian``, ``Uniform``, ``Laplace``, ``SaltAndPepper``, ``Speckle``,
            ``SNR``, ``Mask``); its parameters may be schedules.
        key: where the inputs are: an index for list batches, a key for dict batches, a path
            (``"inputs.image"`` or ``["inputs", "image"]``) for nested ones, ``None`` for a bare
            tensor batch (noised in place; refused when it is a view of other storage).
        p: per-sample probability of being noised, a number or a schedule.
        clamp: ``(low, high)`` to clip the noisy inputs to, e.g. ``(0, 1)`` for images.
        seed: base seed of the noise stream (``None``: drawn from torch's RNG at setup).
        name: name in logged keys and checkpoint state (default ``"input"``).
        scale: multiplier on the noise strength (the controller's knob).

    Example:
        >>> import lightning.pytorch as pl
        >>> from lit_noise import Gaussian, InputNoise, Linear
        >>> from lit_noise.examples import Classifier, DigitsDataModule
        >>> noise = InputNoise(Gaussian(std=Linear(start=0.0, end=0.3, until=0.5)), clamp=(0, 1), seed=0)
        >>> trainer = pl.Trainer(max_epochs=1, callbacks=[noise], logger=False,
        ...                      enable_checkpointing=False, enable_progress_bar=False,
        ...                      enable_model_summary=False, limit_train_batches=4, limit_val_batches=0)
        >>> trainer.fit(Classifier(), DigitsDataModule())
        >>> round(noise.last_values["std"], 3)
        0.225
    """

    role = "input"

    def __init__(
        self,
        noise: Noise,
        key: BatchKey = 0,
        p: ScheduleLike = 1.0,
        clamp: Sequence[float] | None = None,
        seed: int | None = None,
        name: str | None = None,
        scale: float = 1.0,
    ) -> None:
        super().__init__(noise, key, p, clamp, seed, name, scale)
        if noise.applies_to != "float":
            raise ConfigurationError(
                f"InputNoise: `noise` must be an input noise, got the label noise {type(noise).__name__};"
                " use TargetNoise for targets."
            )
