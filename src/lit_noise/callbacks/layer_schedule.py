"""NoiseLayerSchedule: drive the noise layers' schedules and generators from the trainer."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import lightning.pytorch as pl
from typing_extensions import override

from lit_noise._rng import _MAX_SEED, GeneratorCache, mix_state
from lit_noise.callbacks.base import NoiseCallback
from lit_noise.errors import ConfigurationError
from lit_noise.layers import NoiseLayer
from lit_noise.schedules import Schedule

__all__ = ["NoiseLayerSchedule"]


class NoiseLayerSchedule(NoiseCallback):
    """Give every :class:`~lit_noise.layers.NoiseLayer` of the model the training clock.

    Before each training batch, each noise layer gets the trainer's :class:`~lit_noise.Clock`, a
    generator seeded from (seed, layer index, epoch, batch index, rank) and this callback's
    ``scale`` (multiplied with the layer's own), and its strengths are logged as
    ``noise/<name>/<layer path>/<param>`` (a :class:`~lit_noise.GaussianDropout` as its ``rate``).
    At train start the callback's and each layer's settings are logged as hyperparameters
    ``lit_noise/<name>/<layer path>/<setting>``. The layers' own ``scale`` values are saved in the
    checkpoint and restored on resume. After fitting (also a fit that fails or is interrupted), the
    layers' clocks are cleared.

    Args:
        seed: base seed (``None``: drawn from torch's RNG at setup).
        name: name in logged keys and checkpoint state (default ``"layers"``).
        scale: multiplier on every layer's strength (the controller's knob).

    Example:
        >>> import torch
        >>> from lit_noise import GaussianNoise, Linear, NoiseLayerSchedule
        >>> model = torch.nn.Sequential(GaussianNoise(std=Linear(start=0.0, end=0.1, until=1.0)))
        >>> NoiseLayerSchedule().name
        'layers'
    """

    def __init__(self, seed: int | None = None, name: str = "layers", scale: float = 1.0) -> None:
        super().__init__(name, seed, scale)
        self._layers: list[tuple[str, NoiseLayer]] = []
        self._layer_generators: list[GeneratorCache] = []
        self._saved_layer_scales: dict[str, float] = {}

    @override
    def _schedules(self) -> Iterable[Schedule]:
        return [s for _, layer in self._layers for s in layer.schedules().values()]

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._layers = [(n, m) for n, m in pl_module.named_modules() if isinstance(m, NoiseLayer)]
        if not self._layers:
            raise ConfigurationError(
                f"NoiseLayerSchedule: {type(pl_module).__name__} has no lit_noise noise layer"
                " (GaussianNoise, GaussianDropout), so there is nothing to drive. Add one to the model"
                " (the example Classifier has `input_noise_std` and `gaussian_dropout`) or remove the"
                " callback."
            )
        self._layer_generators = [GeneratorCache() for _ in self._layers]
        for path, layer in self._layers:
            if path in self._saved_layer_scales:
                layer.scale = self._saved_layer_scales[path]
        self._saved_layer_scales = {}
        super().on_train_start(trainer, pl_module)

    @override
    def settings(self) -> dict[str, Any]:
        """The callback's settings, and every noise layer's under its module path (``dropout/rate``).

        Only known from train start on, when the layers have been found.
        """
        layers: dict[str, Any] = dict(self._layers)
        return {**super().settings(), **layers}

    @override
    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        clock = self._clock(trainer)
        # Layer i's seed is mix_seed(seed, stream, i, epoch, batch index, rank): the shared prefix
        # is hashed once per batch, and the loop reads nothing from the trainer or the module.
        prefix = mix_state(0, self.seed if self.seed is not None else 0, self._stream)
        device, epoch, rank, scale = pl_module.device, trainer.current_epoch, self._rank, self.scale
        values: dict[str, float] = {}
        for index, (path, layer) in enumerate(self._layers):
            seed = mix_state(prefix, index, epoch, batch_idx, rank) & _MAX_SEED
            layer._set_batch_state(clock, scale, self._layer_generators[index].seeded(device, seed))
            for param, value in layer.current().items():
                values[f"{path}/{param}"] = value
        self._log(trainer, pl_module, values)

    @override
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._release_layers()

    @override
    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        self._release_layers()  # a failed or interrupted fit leaves no clock behind either

    @override
    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        # After on_train_end this is a no-op; but a fit that a tuner ends early (Lightning's
        # _TunerExitException, e.g. LearningRateFinder) gets neither on_train_end nor on_exception.
        if stage == "fit":
            self._release_layers()

    def _release_layers(self) -> None:
        """Clear every layer's clock, generator and schedule scale (they need the trainer again)."""
        for _, layer in self._layers:
            layer.clock = None
            layer.generator = None
            layer.schedule_scale = 1.0

    @override
    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        layer_scales = {path: layer.scale for path, layer in self._layers} or dict(self._saved_layer_scales)
        state["layer_scales"] = layer_scales
        return state

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        saved = state_dict.get("layer_scales", {})
        self._saved_layer_scales = {str(path): float(value) for path, value in saved.items()}
        for path, layer in self._layers:
            if path in self._saved_layer_scales:
                layer.scale = self._saved_layer_scales[path]
