"""LightningCLI: a YAML of trainer.callbacks (class_path, init_args) builds the Hydra configs' callbacks."""

from __future__ import annotations

import math
import sys

import pytest
from hydra.utils import instantiate
from lightning.pytorch.cli import LightningCLI

import lit_noise
from _cli import compose_train, lit_noise_configs
from lit_noise.examples import Classifier, DigitsDataModule

CONFIG = """
trainer:
  max_epochs: 1
  limit_train_batches: 4
  limit_val_batches: 0
  logger: false
  enable_checkpointing: false
  enable_progress_bar: false
  enable_model_summary: false
  callbacks:
    - class_path: lit_noise.InputNoise
      init_args:
        noise:
          class_path: lit_noise.Gaussian
          init_args:
            std:
              class_path: lit_noise.Linear
              init_args: {start: 0.0, end: 0.2, until: 0.5}
        clamp: [0.0, 1.0]
        seed: 0
    - class_path: lit_noise.TargetNoise
      init_args:
        noise: {class_path: lit_noise.LabelSmoothing, init_args: {eps: 0.1}}
        num_classes: 10
    - class_path: lit_noise.GradientNoise
      init_args:
        std: {class_path: lit_noise.AnnealedStd, init_args: {eta: 0.01, gamma: 0.55}}
model:
  backbone: mlp
"""


@pytest.fixture(scope="module")
def cli(tmp_path_factory):
    path = tmp_path_factory.mktemp("lightningcli") / "config.yaml"
    path.write_text(CONFIG)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "argv", ["train.py"])  # as a user's script would start
        return LightningCLI(
            Classifier,
            DigitsDataModule,
            run=False,
            args=["--config", str(path)],
            save_config_callback=None,
            seed_everything_default=0,
        )


def test_lightningcli_builds_the_hydra_configs_callbacks(cli, tmp_path):
    built = {type(cb): cb for cb in cli.trainer.callbacks if type(cb).__module__.startswith("lit_noise")}
    with lit_noise_configs():
        cfg = compose_train(
            tmp_path,
            ["noise=[input,target,gradient]", "+schedule@callbacks.input_noise.noise.std=linear_ramp"],
        )
    hydra_built = {
        type(cb): cb
        for cb in (instantiate(cfg.callbacks[k]) for k in ("input_noise", "target_noise", "gradient_noise"))
    }
    assert (
        set(built)
        == set(hydra_built)
        == {lit_noise.InputNoise, lit_noise.TargetNoise, lit_noise.GradientNoise}
    )
    clocks = [lit_noise.Clock(step=s, progress=p) for s, p in ((0, 0.0), (3, 0.25), (9, 0.75))]
    ours, theirs = built[lit_noise.InputNoise], hydra_built[lit_noise.InputNoise]
    assert ours.clamp == theirs.clamp == (0.0, 1.0)
    for clock in clocks:
        assert ours.noise.resolve(clock) == theirs.noise.resolve(clock)
        assert built[lit_noise.GradientNoise].std(clock) == hydra_built[lit_noise.GradientNoise].std(clock)
    assert built[lit_noise.TargetNoise].noise.resolve() == hydra_built[lit_noise.TargetNoise].noise.resolve()


def test_the_lightningcli_callbacks_train(cli):
    cli.trainer.fit(cli.model, cli.datamodule)
    noise = next(cb for cb in cli.trainer.callbacks if isinstance(cb, lit_noise.InputNoise))
    # Linear 0 -> 0.2 over the first half of 4 steps, read at step 3 (progress 3/4): 0.2.
    assert math.isclose(noise.last_values["std"], 0.2)
