"""lit_noise's Hydra config tree, shipped as the package ``lit_noise.conf`` (``pkg://lit_noise.conf``).

The YAML files under this package are the configs of ``lit-noise-train``; the ``noise`` and
``monitor`` groups (``# @package callbacks``) also serve any other Hydra app through
``hydra.searchpath=[pkg://lit_noise.conf]``.
"""
