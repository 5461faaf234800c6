"""Helpers of the documentation tests: the heading anchors of a Markdown page, as MkDocs makes them.

The oracle is Python-Markdown's own ``toc`` extension (``slugify`` and ``unique``), which MkDocs
uses to give every heading its ``id``; only the heading's Markdown (code spans) is stripped here.
"""

from __future__ import annotations

import re
from pathlib import Path

from markdown.extensions.toc import slugify, unique


def headings(page: Path) -> list[str]:
    """The text of every heading of a page (code-span backticks dropped), fenced code left out."""
    found, fenced = [], False
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fenced = not fenced
        match = None if fenced else re.match(r"^#{1,6} +(.+?) *$", line)
        if match:
            found.append(match.group(1).replace("`", ""))
    return found


def heading_anchors(page: Path) -> set[str]:
    """The ``id`` of each heading of a page: toc's slug, made unique with ``_1``, ``_2``, ..."""
    ids: set[str] = set()
    for text in headings(page):
        ids.add(unique(slugify(text, "-"), ids))
    return ids
