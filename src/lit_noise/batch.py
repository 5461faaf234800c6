"""Addressing one tensor inside a batch and writing a replacement back out of place."""

from __future__ import annotations

from collections.abc import MutableMapping, MutableSequence, Sequence
from typing import Any, Union

from torch import Tensor

from lit_noise.errors import ConfigurationError

__all__ = ["BatchKey", "normalize_key", "read", "write"]

#: An index (list batches), a key (dict batches), a path of those, a dotted string, or None.
BatchKey = Union[int, str, Sequence[Union[int, str]], None]


def normalize_key(key: BatchKey, owner: str, name: str = "key") -> tuple[int | str, ...] | None:
    """The path to a tensor as a tuple: ``"a.b"`` -> ``("a", "b")``, ``1`` -> ``(1,)``.

    Example:
        >>> normalize_key("inputs.image", "InputNoise"), normalize_key([0, "x"], "InputNoise")
        (('inputs', 'image'), (0, 'x'))
    """
    if key is None:
        return None
    if isinstance(key, bool):
        raise ConfigurationError(
            f"{owner}: `{name}` must be an int, a str, a path of those or None, got {key!r}."
        )
    if isinstance(key, int):
        return (key,)
    if isinstance(key, str):
        return tuple(int(p) if p.lstrip("-").isdigit() else p for p in key.split("."))
    if (
        isinstance(key, Sequence)
        and len(key) > 0
        and all(isinstance(p, (int, str)) and not isinstance(p, bool) for p in key)
    ):
        return tuple(key)
    raise ConfigurationError(
        f"{owner}: `{name}` must be an int, a str, a path of those or None, got {key!r}."
    )


def _step(container: Any, part: int | str, path: tuple[int | str, ...], owner: str) -> Any:
    if isinstance(container, Tensor):
        # Indexing would silently pick one sample (or row) of the tensor.
        raise ConfigurationError(
            f"{owner}: `key` {'.'.join(map(str, path))!r} indexes into a tensor (at {part!r}); for a bare"
            " tensor batch pass `key=None`."
        )
    try:
        return container[part]
    except (KeyError, IndexError, TypeError):
        shown = (
            list(container.keys())
            if isinstance(container, MutableMapping)
            else (
                f"indices 0..{len(container) - 1}"
                if isinstance(container, Sequence)
                else type(container).__name__
            )
        )
        raise ConfigurationError(
            f"{owner}: `key` {'.'.join(map(str, path))!r} is not in the batch (at {part!r};"
            f" available: {shown})."
        ) from None


def read(batch: Any, path: tuple[int | str, ...] | None, owner: str) -> Tensor:
    """The tensor at ``path`` in ``batch`` (the batch itself for ``None``)."""
    if path is not None and len(path) == 1 and (type(batch) is list or type(batch) is dict):
        try:  # the common case, on every training batch: one index into a list or dict
            node = batch[path[0]]  # type: ignore[index]
        except (KeyError, IndexError, TypeError):
            node = _step(batch, path[0], path, owner)  # raises the descriptive error
    else:
        node = batch
        for part in path or ():
            node = _step(node, part, path or (), owner)
    if not isinstance(node, Tensor):
        where = "the batch" if path is None else f"`key` {'.'.join(map(str, path))!r}"
        raise ConfigurationError(f"{owner}: {where} must address a tensor, found {type(node).__name__}.")
    return node


def write(batch: Any, path: tuple[int | str, ...] | None, value: Tensor, owner: str) -> None:
    """Put ``value`` at ``path``, replacing the container's entry (never writing into a tensor).

    A bare tensor batch (``path=None``) is updated in place, which is refused for a tensor that
    is a view of other storage (a loader with ``batch_size=None`` over slices of a dataset).
    """
    if path is None:
        if not isinstance(batch, Tensor):
            raise ConfigurationError(
                f"{owner}: `key=None` needs a bare tensor batch, got {type(batch).__name__}."
            )
        if batch._base is not None:
            raise ConfigurationError(
                f"{owner}: the batch is a bare tensor that is a view of other storage (for example a"
                " dataset slice with `batch_size=None`); noising it in place would change the"
                " dataset. Return a list or dict batch, or copy the batch in the loader."
            )
        batch.copy_(value)
        return
    parent = batch
    if len(path) > 1:
        for part in path[:-1]:
            parent = _step(parent, part, path, owner)
    last = path[-1]
    if type(parent) is list or type(parent) is dict or isinstance(parent, (MutableSequence, MutableMapping)):
        parent[last] = value  # type: ignore[index]
        return
    raise ConfigurationError(
        f"{owner}: cannot write the noisy tensor back into a {type(parent).__name__} (immutable)."
        " Lightning passes the same batch object to training_step, so the container must be a list"
        " or dict: torch's default collate turns tuple samples into lists; a custom collate_fn"
        " should return a list or dict."
    )
