"""Addressing one tensor inside a batch and writing a replacement back out of place."""

from __future__ import annotations

from collections.abc import MutableMapping, MutableSequence, Sequence
from typing import Any, Union

from torch import Tensor

from lit_noise._validation import fail
from lit_noise.errors import ConfigurationError

__all__ = ["BatchKey", "KeyPath", "normalize_key", "read", "read_mask", "write"]

#: An index (list batches), a key (dict batches), a path of those, a dotted string, or None.
BatchKey = Union[int, str, Sequence[Union[int, str]], None]


class KeyPath(tuple[Union[int, str], ...]):
    """A normalised path that remembers the argument it came from, for error messages.

    It is a plain tuple of indices and keys (``KeyPath(("a", 0)) == ("a", 0)``) with two extra
    attributes: ``name``, the argument's name (``"key"``, ``"target_key"`` ...), and ``key``, the
    value as the user gave it.

    Example:
        >>> path = KeyPath(("inputs", 0), name="input_key", key="inputs.0")
        >>> path == ("inputs", 0), path.name, path.key
        (True, 'input_key', 'inputs.0')
        >>> KeyPath(("x",)).key  # the parts themselves when no key is given
        ('x',)
    """

    name: str
    key: Any

    def __new__(cls, parts: Sequence[int | str], name: str = "key", key: Any = None) -> KeyPath:  # noqa: D102
        path = super().__new__(cls, parts)
        path.name = name
        path.key = tuple(parts) if key is None else key
        return path


def _argument(path: Sequence[int | str]) -> tuple[str, Any]:
    """The argument's name and the key as given (``'a.b'`` for a bare tuple path ``("a", "b")``)."""
    if isinstance(path, KeyPath):
        return path.name, path.key
    return "key", path[0] if len(path) == 1 else ".".join(map(str, path))


def normalize_key(key: BatchKey, owner: str, name: str = "key") -> KeyPath | None:
    """The path to a tensor as a tuple: ``"a.b"`` -> ``("a", "b")``, ``1`` -> ``(1,)``.

    The tuple is a :class:`KeyPath`: errors of :func:`read` and :func:`write` name the argument
    (``name``) and show the key as it was given.

    Example:
        >>> normalize_key("inputs.image", "InputNoise"), normalize_key([0, "x"], "InputNoise")
        (('inputs', 'image'), (0, 'x'))
    """
    if key is None:
        return None
    if isinstance(key, bool):
        raise fail(owner, name, key, "an int, a str, a path of those or None")
    if isinstance(key, int):
        return KeyPath((key,), name, key)
    if isinstance(key, str):
        return KeyPath(tuple(int(p) if p.lstrip("-").isdigit() else p for p in key.split(".")), name, key)
    if (
        isinstance(key, Sequence)
        and len(key) > 0
        and all(isinstance(p, (int, str)) and not isinstance(p, bool) for p in key)
    ):
        return KeyPath(tuple(key), name, list(key))
    raise fail(owner, name, key, "an int, a str, a path of those or None")


def _step(container: Any, part: int | str, path: Sequence[int | str], owner: str) -> Any:
    name, key = _argument(path)
    if isinstance(container, Tensor):
        # Indexing would silently pick one sample (or row) of the tensor.
        raise ConfigurationError(
            f"{owner}: `{name}` {key!r} indexes into a tensor (at {part!r}); for a bare tensor batch"
            f" pass `{name}=None`."
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
            f"{owner}: `{name}` {key!r} is not in the batch (at {part!r}; available: {shown})."
        ) from None


def _bare_tensor_error(owner: str, batch: Any) -> ConfigurationError:
    return ConfigurationError(
        f"{owner}: the key is None, so the batch itself must be a tensor, got {type(batch).__name__}."
    )


def read(batch: Any, path: Sequence[int | str] | None, owner: str) -> Tensor:
    """The tensor at ``path`` in ``batch`` (the batch itself for ``None``).

    Example:
        >>> import torch
        >>> batch = {"inputs": [torch.zeros(2), torch.ones(2)], "label": torch.tensor([3])}
        >>> read(batch, ("inputs", 1), "InputNoise")
        tensor([1., 1.])
        >>> try:
        ...     read(batch, normalize_key("label.0", "InputNoise"), "InputNoise")
        ... except ConfigurationError as err:
        ...     print(err)
        InputNoise: `key` 'label.0' indexes into a tensor (at 0); for a bare tensor batch pass `key=None`.
    """
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
        if path is None:
            raise _bare_tensor_error(owner, batch)
        name, key = _argument(path)
        raise ConfigurationError(
            f"{owner}: `{name}` {key!r} must address a tensor, found {type(node).__name__}."
        )
    return node


def write(batch: Any, path: Sequence[int | str] | None, value: Tensor, owner: str) -> None:
    """Put ``value`` at ``path``, replacing the container's entry (never writing into a tensor).

    A bare tensor batch (``path=None``) is updated in place, which is refused for a tensor that
    is a view of other storage (a loader with ``batch_size=None`` over slices of a dataset).

    Example:
        >>> import torch
        >>> clean = torch.zeros(2)
        >>> batch = {"inputs": [clean, torch.tensor([1])]}
        >>> write(batch, ("inputs", 0), torch.ones(2), "InputNoise")
        >>> batch["inputs"][0], clean  # the list entry is replaced, the old tensor is untouched
        (tensor([1., 1.]), tensor([0., 0.]))
    """
    if path is None:
        if not isinstance(batch, Tensor):
            raise _bare_tensor_error(owner, batch)
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


def read_mask(batch: Any, path: tuple[int | str, ...] | None, owner: str, mask_key: BatchKey) -> Tensor:
    """The attention mask at ``path`` of ``batch``, checked to be boolean or 0/1 integers (1 = real token).

    Raises:
        ConfigurationError: a float or complex mask, whose additive 0 / -inf form would be read
            the wrong way round.

    Example:
        >>> import torch
        >>> read_mask({"mask": torch.tensor([[1, 0]])}, ("mask",), "InputNoise", "mask").tolist()
        [[1, 0]]
    """
    mask = read(batch, path, owner)
    if mask.is_floating_point() or mask.is_complex():
        raise ConfigurationError(
            f"{owner}: `mask_key` {mask_key!r} must address a boolean or 0/1 integer mask (1 = real"
            f" token), got dtype {mask.dtype}; an additive float mask (0 / -inf) would be read the wrong"
            " way round."
        )
    return mask
