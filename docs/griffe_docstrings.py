"""A griffe extension that lets mkdocstrings render lit_noise's docstrings as they are written.

The docstrings follow the Google style as Napoleon reads it, which griffe's Google parser differs
from in two places; this extension bridges them when the docstrings are loaded, without touching
``src/``:

- ``Example:`` opens an examples section (griffe knows only ``Examples:``; it would render the
  doctest as Markdown, a ``>>>`` line as a block quote);
- Sphinx roles (``:class:`~lit_noise.InputNoise```, ``:func:``, ``:mod:`` ...) become links into the
  API reference for public ``lit_noise`` objects (a link that finds no target fails the strict
  build; for ``:data:`` and ``:attr:`` it is optional), and inline code for everything else.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_EXAMPLE_HEADER = re.compile(r"^(?P<indent>[ \t]*)Example:[ \t]*$", re.MULTILINE)
_ROLE = re.compile(r":(?:py:)?(?P<role>class|func|meth|mod|attr|data|exc|obj|const):`(?P<target>[^`]+)`")
#: Roles whose targets (module constants, attributes) may have no docstring and so no entry in the
#: reference: their links are optional (plain code when there is nothing to link to).
_OPTIONAL_ROLES = frozenset({"attr", "data", "const"})


def _role_to_markdown(match: re.Match[str]) -> str:
    target = match.group("target").strip()
    title = None
    explicit = re.fullmatch(r"(?P<title>.+?)\s*<(?P<path>[^>]+)>", target)
    if explicit:
        title, target = explicit.group("title"), explicit.group("path")
    short = target.startswith("~")
    path = target.lstrip("~.")
    if title is None:
        title = path.rsplit(".", 1)[-1] if short else path
    parts = path.split(".")
    if parts[0] != "lit_noise" or any(part.startswith("_") for part in parts):
        return f"`{title}`"  # outside the reference: another package's object, or a private one
    if match.group("role") in _OPTIONAL_ROLES:
        return f'<autoref identifier="{path}" optional><code>{title}</code></autoref>'
    return f"[`{title}`][{path}]"


def rewrite(text: str) -> str:
    """The docstring ``text`` with ``Example:`` headers and Sphinx roles rewritten for griffe."""
    return _ROLE.sub(_role_to_markdown, _EXAMPLE_HEADER.sub(r"\g<indent>Examples:", text))


class NapoleonDocstrings(griffe.Extension):
    """Rewrites each loaded docstring (see the module docstring)."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        """Rewrite ``obj``'s docstring before it is parsed."""
        if obj.docstring is not None:
            obj.docstring.value = rewrite(obj.docstring.value)
