"""MkDocs hooks for the lit_noise site (``hooks:`` in mkdocs.yml).

The performance summary table is generated into README.md by ``benchmarks/summary.py`` (``make
bench``), between ``<!-- perf-summary:start -->`` and ``<!-- perf-summary:end -->``. The
performance page includes it from there at build time, so the site never holds a stale copy: the
page's marker line ``<!-- perf-summary: README.md -->`` is replaced by the README's block. The
block links to sections of the pages by their path in the repository (``docs/mixup.md#performance``,
which works on GitHub); on the site, which is built from ``docs/``, they become ``mixup.md#performance``,
and the strict build checks that each page and anchor exists. A link outside ``docs/`` is a warning
(so a failed build).

After the build, every public class and function (:func:`public_objects`) must have an entry in
the API reference: the site's search index must hold an anchor that resolves to that object (a
warning, so a failed strict build, names any that has none).
"""

from __future__ import annotations

import importlib
import inspect
import json
import logging
import pkgutil
import re
from collections.abc import Iterable
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


def public_objects() -> dict[str, Any]:
    """Every public class and function of lit_noise, by ``module.qualname`` of its definition.

    Public: listed in ``__all__`` of ``lit_noise`` or of a module or package whose dotted name has
    no part after ``lit_noise`` that starts with ``_``; each object once, where it is defined.
    """
    import lit_noise

    packages = pkgutil.walk_packages(lit_noise.__path__, "lit_noise.")
    modules = [
        "lit_noise",
        *(m.name for m in packages if not any(p.startswith("_") for p in m.name.split(".")[1:])),
    ]
    found: dict[str, Any] = {}
    for module_name in modules:
        module = importlib.import_module(module_name)
        for name in getattr(module, "__all__", ()):
            obj = getattr(module, name)
            if inspect.isclass(obj) or inspect.isfunction(obj):
                found.setdefault(f"{obj.__module__}.{obj.__qualname__}", obj)
    return found


def _resolve(path: str) -> Any:
    """The object a dotted path names (``lit_noise.noise.Gaussian``), or ``None``."""
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attribute in parts[cut:]:
            obj = getattr(obj, attribute, None)
        return obj
    return None


def undocumented(anchors: Iterable[str]) -> list[str]:
    """The public objects (:func:`public_objects`) that none of the site's ``anchors`` resolves to."""
    documented = {id(_resolve(anchor)) for anchor in anchors if anchor.startswith("lit_noise")}
    return sorted(name for name, obj in public_objects().items() if id(obj) not in documented)


def on_post_build(config: Any, **kwargs: Any) -> None:
    """Warn (a failed strict build) for each public object the API reference does not document."""
    index = json.loads(
        (Path(config["site_dir"]) / "search" / "search_index.json").read_text(encoding="utf-8")
    )
    anchors = (doc["location"].partition("#")[2] for doc in index["docs"])
    for name in undocumented(anchors):
        log.warning("the API reference has no entry for the public %s (add it to a page of docs/api/)", name)
