"""Pure tensor maths behind lit_noise: no Lightning, explicit ``torch.Generator`` arguments."""

from lit_noise.functional.embedding import neftune, neftune_padded
from lit_noise.functional.mix import (
    MixParams,
    box_lam,
    box_mask,
    cutmix,
    cutmix_boxes,
    mix_batch,
    mix_params,
    mixup,
    one_hot_smooth,
    partner_index,
    sample_lam,
    sample_mix_params,
)
from lit_noise.functional.noise import (
    gate_samples,
    gaussian,
    laplace,
    mask,
    salt_and_pepper,
    snr,
    speckle,
    uniform,
)
from lit_noise.functional.targets import (
    label_smoothing,
    pair_flip,
    smooth_one_hot,
    symmetric_flip,
    transition_flip,
)
from lit_noise.functional.tokens import substitute_candidates, token_drop, token_mask, token_substitute

__all__ = [
    "MixParams",
    "box_lam",
    "box_mask",
    "cutmix",
    "cutmix_boxes",
    "gate_samples",
    "gaussian",
    "label_smoothing",
    "laplace",
    "mask",
    "mix_batch",
    "mix_params",
    "mixup",
    "neftune",
    "neftune_padded",
    "one_hot_smooth",
    "pair_flip",
    "partner_index",
    "salt_and_pepper",
    "sample_lam",
    "sample_mix_params",
    "smooth_one_hot",
    "snr",
    "speckle",
    "substitute_candidates",
    "symmetric_flip",
    "token_drop",
    "token_mask",
    "token_substitute",
    "transition_flip",
    "uniform",
]
