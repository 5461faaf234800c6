"""A minimal lightning-hydra-template-style app that knows nothing of lit_noise's configs.

It instantiates every entry of ``cfg.callbacks`` (as the template's ``instantiate_callbacks``
does), fits, and writes what it ran with to ``<output dir>/callbacks.json``. The tests add
lit_noise's callbacks to it with ``hydra.searchpath=[pkg://lit_noise.conf]`` and
``+noise=[input,target]`` only.
"""

from __future__ import annotations

import json
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig


def instantiate_callbacks(callbacks_cfg: DictConfig | None) -> list:
    """The template's helper: every entry with a ``_target_``."""
    callbacks = []
    for cb_conf in (callbacks_cfg or {}).values():
        if isinstance(cb_conf, DictConfig) and "_target_" in cb_conf:
            callbacks.append(hydra.utils.instantiate(cb_conf))  # noqa: PERF401 (the template's own loop)
    return callbacks


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float:
    datamodule = hydra.utils.instantiate(cfg.data)
    model = hydra.utils.instantiate(cfg.model)
    callbacks = instantiate_callbacks(cfg.get("callbacks"))
    trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=False)
    trainer.fit(model=model, datamodule=datamodule)
    ran = {
        type(cb).__name__: getattr(cb, "last_values", None)
        for cb in trainer.callbacks
        if type(cb).__module__.startswith(("lit_noise", "lightning.pytorch.callbacks.early_stopping"))
    }
    out = Path(HydraConfig.get().runtime.output_dir) / "callbacks.json"
    out.write_text(json.dumps(ran, sort_keys=True))
    return float(trainer.callback_metrics["val/acc"])


if __name__ == "__main__":
    main()
