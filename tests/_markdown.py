"""Helpers of the documentation tests: the heading anchors of a Markdown page, slugged by hand."""

from __future__ import annotations

import re
from pathlib import Path


def heading_anchors(page: Path) -> set[str]:
    """The anchors of a page's headings as MkDocs and GitHub make them for this project's headings.

    Lower case, backticks dropped, characters other than word characters, spaces and hyphens
    removed, runs of spaces and hyphens made one hyphen; headings inside fenced code do not count.
    """
    anchors, fenced = set(), False
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fenced = not fenced
        match = None if fenced else re.match(r"^#{1,6} (.*)$", line)
        if match:
            text = re.sub(r"[^\w\s-]", "", match.group(1).replace("`", "").lower())
            anchors.add(re.sub(r"[-\s]+", "-", text).strip("-"))
    return anchors
