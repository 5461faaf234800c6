"""Where noise goes, data side: DataModules that perturb the batches they hand out."""

from lit_noise.data.mixup import MixupDataModule

__all__ = ["MixupDataModule"]
