"""The one error type lit_noise raises for bad configuration."""

from __future__ import annotations

__all__ = ["ConfigurationError"]


class ConfigurationError(ValueError):
    """A lit_noise object was given an argument, a batch or a trainer it cannot work with.

    It is a ``ValueError`` so that generic handlers keep working; the message names the argument,
    the bad value and what is allowed.

    Example:
        >>> from lit_noise import Gaussian
        >>> try:
        ...     Gaussian(std=-1.0)
        ... except ConfigurationError as err:
        ...     print(err)
        Gaussian: `std` must be >= 0, got -1.0.
    """
