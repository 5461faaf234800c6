"""InputNoise: scheduled noise on the model's inputs while fitting."""

from __future__ import annotations

from typing_extensions import override

from lit_noise.callbacks.batch_noise import BatchNoise
from lit_noise.errors import ConfigurationError
from lit_noise.noise.base import Noise

__all__ = ["InputNoise"]


class InputNoise(BatchNoise):
    """Add noise to the inputs of every training batch, on the batch's device.

    The noisy inputs replace the clean ones in the batch container (out of place, so the dataset
    is never modified) before ``training_step``; validation, test, predict and sanity checking see
    clean inputs. The current strengths are logged as ``noise/<name>/<param>`` at the trainer's
    logging interval (and kept in ``last_values``).

    Lightning hands ``training_step`` the very batch object the callbacks see, so the batch must be
    a list or a dict (torch's default collate turns tuple samples into lists); a tuple batch is
    refused with a :class:`~lit_noise.ConfigurationError` at the first batch, before any step. Bad
    keys, integer inputs (but for ``Mask`` and the token noises, which only set values), float
    inputs to the token noises and 'progress' schedules on an unbounded trainer are refused likewise.
    With ``p < 1`` each sample is noised (and clamped) with probability ``p``; the others are left
    exactly as they were. Noise is drawn from a generator seeded from (seed, name, epoch, batch
    index, rank): the same seed gives the same noise, a resumed run continues the same stream, and
    the number of data-loader workers plays no part.

    Args:
        noise: what noise (``Gaussian``, ``Uniform``, ``Laplace``, ``SaltAndPepper``, ``Speckle``,
            ``SNR``, ``Mask``; for token ids ``TokenMask``, ``TokenSubstitute``, ``TokenDrop``); its
            parameters may be schedules.
        key: where the inputs are: an index for list batches, a key for dict batches, a path
            (``"inputs.image"`` or ``["inputs", "image"]``) for nested ones, ``None`` for a bare
            tensor batch (noised in place; refused when it may be the dataset's own storage: a
            view of other storage, or any batch of a loader with ``batch_size=None``).
        p: per-sample probability of being noised, a number or a schedule.
        clamp: ``(low, high)`` to clip the noisy inputs to, e.g. ``(0, 1)`` for images.
        seed: base seed of the noise stream (``None``: drawn from torch's RNG at setup).
        name: name in logged keys (``noise/<name>/<param>``), logged settings
            (``lit_noise/<name>/...``) and checkpoint state; ``None``: ``"input"``, or
            ``"input_<noise>"`` (``"input_gaussian"``) when several unnamed InputNoise share the
            Trainer (see :class:`~lit_noise.NoiseCallback`).
        scale: multiplier on the noise strength (the controller's knob).
        mask_key: where the batch's attention mask is (as ``key``; 1 or true on real tokens, the
            leading shape of the inputs: ``(B, L)`` for ids ``(B, L)`` or embeddings ``(B, L, d)``);
            ``None``: no mask. When set, padded positions come back unchanged, for every noise;
            :class:`~lit_noise.TokenDrop` sets the mask of the tokens it drops to 0 and writes the
            mask back. A missing key, a float mask or a mask of another shape is an error at the
            first batch.

    Example:
        >>> import lightning.pytorch as pl
        >>> from lit_noise import Gaussian, InputNoise, Linear
        >>> from lit_noise.examples import Classifier, DigitsDataModule
        >>> noise = InputNoise(Gaussian(std=Linear(start=0.0, end=0.3, until=1.0)), clamp=(0, 1), seed=0)
        >>> trainer = pl.Trainer(max_epochs=1, callbacks=[noise], logger=False,
        ...                      enable_checkpointing=False, enable_progress_bar=False,
        ...                      enable_model_summary=False, limit_train_batches=4, limit_val_batches=0)
        >>> trainer.fit(Classifier(), DigitsDataModule())
        >>> round(noise.last_values["std"], 3)  # last of 4 steps: progress 3/4 of the ramp
        0.225

        Token ids with an attention mask (:class:`~lit_noise.examples.TokenDataModule`'s batches):

        >>> from lit_noise import TokenMask
        >>> from lit_noise.examples import TokenClassifier, TokenDataModule
        >>> masking = InputNoise(TokenMask(p=0.15, mask_id=1), key="input_ids", mask_key="attention_mask")
        >>> trainer = pl.Trainer(max_epochs=1, callbacks=[masking], logger=False,
        ...                      enable_checkpointing=False, enable_progress_bar=False,
        ...                      enable_model_summary=False, limit_train_batches=2, limit_val_batches=0)
        >>> trainer.fit(TokenClassifier(), TokenDataModule())
        >>> masking.last_values
        {'p': 0.15}
    """

    role = "input"

    @override
    def _check_noise(self, noise: Noise) -> None:
        if noise.applies_to == "labels":
            raise ConfigurationError(
                f"InputNoise: `noise` must be an input noise, got the label noise {type(noise).__name__};"
                " use TargetNoise for targets."
            )
