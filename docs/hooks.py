"""MkDocs hooks for the lit_noise site (``hooks:`` in mkdocs.yml).

The performance summary table is generated into README.md by ``benchmarks/summary.py`` (``make
bench``), between ``<!-- perf-summary:start -->`` and ``<!-- perf-summary:end -->``. The
performance page includes it from there at build time, so the site never holds a stale copy: the
page's marker line ``<!-- perf-summary: README.md -->`` is replaced by the README's block. The
block links to sections of the pages by their path in the repository (``docs/mixup.md#performance``,
which works on GitHub); on the site, which is built from ``docs/``, they become ``mixup.md#performance``,
and the strict build checks that each page and anchor exists. A link outside ``docs/`` is a warning
(so a failed build).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

log = logging.getLogger("mkdocs.hooks.lit_noise")

MARKER = "<!-- perf-summary: README.md -->"
START, END = "<!-- perf-summary:start -->", "<!-- perf-summary:end -->"
DOCS = "docs/"  # the README links to pages by their path in the repository


def _site_link(page: Any, target: str) -> str:
    if not target.startswith(DOCS):
        log.warning("%s: the performance summary links to %s, which is no page of docs/", page, target)
        return target
    return target[len(DOCS) :]


def perf_summary(readme: str, page: Any = "performance.md") -> str:
    """The README's generated performance summary, its section links pointing into the site."""
    start, end = readme.find(START), readme.find(END)
    if start < 0 or end < start:
        log.warning("%s: README.md has no %s ... %s block to include", page, START, END)
        return ""
    block = readme[start + len(START) : end].strip("\n")
    return re.sub(r"\]\(([^)\s]+)\)", lambda m: f"]({_site_link(page, m.group(1))})", block)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any, **kwargs: Any) -> str:
    """Replace the performance page's marker with the README's generated summary table."""
    if MARKER not in markdown:
        return markdown
    readme = Path(config["config_file_path"]).parent / "README.md"
    return markdown.replace(MARKER, perf_summary(readme.read_text(encoding="utf-8"), page))
