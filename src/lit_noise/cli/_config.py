"""Checks and transformations of a composed config: callback nodes, secrets, flat hyperparameters."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, ListConfig, OmegaConf

from lit_noise.errors import ConfigurationError

__all__ = [
    "APP",
    "CALLBACK_GROUPS",
    "REDACTED",
    "callback_configs",
    "check_group_options",
    "flatten",
    "scrub",
]

APP = "lit-noise-train"

#: Config groups whose files land in ``callbacks`` (``# @package callbacks``).
CALLBACK_GROUPS = ("noise", "monitor")

REDACTED = "***"
# "token" only as a word of its own (`token`, `hf_token`, `HF_TOKEN`, `github_token_value`), not in
# `tokens`, `max_tokens`, `tokenizer` or the token noises' configs (`token_mask`, `token_drop`).
_SECRET_NAME = re.compile(
    r"api[_-]?key|(?<![a-z])token(?![a-z])(?![_.-](mask|drop|substitute))|secret|passw(or)?d|credential"
    r"|private[_-]?key",
    re.IGNORECASE,
)


def _is_callback_config(node: Any) -> bool:
    return isinstance(node, DictConfig) and "_target_" in node


def _callback_entries(node: DictConfig, path: str) -> Iterator[tuple[str, DictConfig]]:
    for key, value in node.items_ex(resolve=False):
        if value is None:
            continue
        if not _is_callback_config(value):
            raise ConfigurationError(
                f"{APP}: `{path}.{key!s}` must be a callback config (a mapping with `_target_`) or null,"
                f" got {_plain(value)!r}."
            )
        yield f"{path}.{key!s}", value


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=False) if isinstance(node, (DictConfig, ListConfig)) else node


def callback_configs(cfg: DictConfig) -> dict[str, DictConfig]:
    """Every callback config of ``cfg``, by its key path (``callbacks.input_noise``, ...).

    Entries come from ``callbacks`` and from ``noise`` / ``monitor`` nodes that are dicts of
    callback configs; null entries are skipped (``callbacks.input_noise=null`` removes one). A
    ``noise`` or ``monitor`` node of any other kind is refused: it is what Hydra leaves when the
    group was not found (``+noise=[input,target]`` without lit_noise's configs on the search path
    becomes the plain list ``noise: [input, target]``), and training without the noise asked for
    would be a silent failure.

    Example:
        >>> cfg = OmegaConf.create({"callbacks": {"a": {"_target_": "x.A"}, "b": None}})
        >>> list(callback_configs(cfg))
        ['callbacks.a']
        >>> try:
        ...     callback_configs(OmegaConf.create({"noise": ["input", "target"]}))
        ... except ConfigurationError as err:
        ...     print(err)
        lit-noise-train: `noise` must be a dict of callback configs ..., got ['input', 'target']. ...
    """
    found: dict[str, DictConfig] = {}
    for group in CALLBACK_GROUPS:
        node = cfg.get(group)
        if node is None:
            continue
        if not isinstance(node, DictConfig) or not all(
            value is None or _is_callback_config(value) for value in node.values()
        ):
            raise ConfigurationError(
                f"{APP}: `{group}` must be a dict of callback configs (name -> {{_target_: ...}}),"
                f" got {_plain(node)!r}. Hydra keeps a group override as a plain value when it cannot"
                f" find the `{group}` group, and no callback would be added: put lit_noise's configs"
                " on the search path (`hydra.searchpath=[pkg://lit_noise.conf]`) and check with"
                " `--cfg job` that `callbacks` holds them."
            )
        found.update(_callback_entries(node, group))
    callbacks = cfg.get("callbacks")
    if callbacks is not None:
        if not isinstance(callbacks, DictConfig):
            raise ConfigurationError(
                f"{APP}: `callbacks` must be a dict of callback configs, got {_plain(callbacks)!r}."
            )
        found.update(_callback_entries(callbacks, "callbacks"))
    return found


def _secret_values(environ: Mapping[str, str]) -> list[str]:
    return sorted(
        (value for name, value in environ.items() if _SECRET_NAME.search(name) and len(value) >= 6),
        key=len,
        reverse=True,
    )


def scrub(value: Any, environ: Mapping[str, str] | None = None) -> Any:
    """``value`` (plain containers) with secrets replaced by ``"***"``.

    A value is secret when its key looks like one (``api_key``, ``token``, ``hf_token``,
    ``password``, ...; not ``token_mask``) or when it contains the value of an environment variable
    whose name looks like one (``WANDB_API_KEY``, ``HF_TOKEN``, ...).

    Example:
        >>> scrub({"api_key": "abc", "url": "https://x?k=s3cr3t-value", "n": 1},
        ...       {"MY_TOKEN": "s3cr3t-value"})
        {'api_key': '***', 'url': 'https://x?k=***', 'n': 1}
        >>> scrub({"hf_token": "abc", "token_mask": {"p": 0.1}, "max_tokens": 512}, {})
        {'hf_token': '***', 'token_mask': {'p': 0.1}, 'max_tokens': 512}
    """
    secrets = _secret_values(os.environ if environ is None else environ)

    def clean(item: Any, key: str = "") -> Any:
        if key and _SECRET_NAME.search(key) and item is not None:
            return REDACTED
        if isinstance(item, Mapping):
            return {k: clean(v, str(k)) for k, v in item.items()}
        if isinstance(item, (list, tuple)):
            return [clean(v) for v in item]
        if isinstance(item, str):
            for secret in secrets:
                item = item.replace(secret, REDACTED)
        return item

    return clean(value)


def flatten(value: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as one flat dict with dotted keys, without Hydra's ``_target_``-style keys.

    Example:
        >>> flatten({"a": {"_target_": "X", "std": 0.1, "b": {"c": [1, 2]}}, "d": None})
        {'a.std': 0.1, 'a.b.c': [1, 2], 'd': None}
    """
    flat: dict[str, Any] = {}
    for key, item in value.items():
        name = str(key)
        if name.startswith("_") and name.endswith("_"):
            continue
        path = f"{prefix}{name}"
        if isinstance(item, Mapping) and item:
            flat.update(flatten(item, path + "."))
        else:
            flat[path] = item
    return flat


def _option_names(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def check_group_options(overrides: Sequence[str], conf_dir: Path) -> None:
    """Refuse a command-line override that picks an option a group of ``conf_dir`` does not have.

    Hydra names a missing option of a plain group, but for a list (``noise=[inptu]``) it only says
    it could not load the file; this check lists the available options in both cases. Overrides
    that extend the search path (``hydra.searchpath``) may bring more options: then nothing is
    checked here and Hydra's own error stands.

    Example:
        >>> import lit_noise.conf
        >>> conf = Path(lit_noise.conf.__file__).parent
        >>> check_group_options(["noise=[input,weight]", "trainer.max_epochs=3"], conf)
        >>> try:
        ...     check_group_options(["noise=[inptu]"], conf)
        ... except ConfigurationError as err:
        ...     print(err)
        lit-noise-train: `noise` must name options of the config group noise (activation, ...), got 'inptu'.
    """
    items = [item for item in overrides if "=" in item and not item.startswith("-")]
    if any(item.lstrip("+").startswith("hydra.searchpath") for item in items):
        return
    for override in OverridesParser.create().parse_overrides(items):
        if override.is_delete():
            continue
        group = override.key_or_group
        folder = conf_dir / group
        if "." in group or not folder.is_dir():
            continue
        available = sorted(p.stem for p in folder.glob("*.yaml"))
        try:
            values = list(override.sweep_iterator()) if override.is_sweep_override() else [override.value()]
        except Exception:  # interval and other sweeps over a group: Hydra reports those itself
            continue
        for value in values:
            for name in _option_names(value):
                if isinstance(name, str) and name not in available:
                    raise ConfigurationError(
                        f"{APP}: `{group}` must name options of the config group {group}"
                        f" ({', '.join(available)}), got {name!r}."
                    )
