"""The documentation site's build hook (docs/hooks.py): the README's performance summary on the site.

The site itself is built by `make docs` (`mkdocs build --strict`, the `docs` extra); these tests need
no mkdocs: they check the hook's pure functions against the README and the pages in docs/.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

import lit_noise
from _markdown import heading_anchors
from _scripts import loaded_script

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def hooks() -> Iterator[ModuleType]:
    with loaded_script(ROOT / "docs" / "hooks.py", "lit_noise_docs_hooks") as module:
        yield module


def test_every_link_of_the_readme_summary_lands_on_a_page_section(hooks) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme[readme.index("<!-- perf-summary:start -->") : readme.index("<!-- perf-summary:end -->")]
    links = set(re.findall(r"\]\(([^)\s]+)\)", block))
    assert len(links) >= 5, "the README's performance summary links to (almost) no section"
    for link in links:
        assert link.startswith("docs/"), link
        page, _, section = link.partition("#")
        path = ROOT / page
        assert path.is_file(), link
        assert not section or section in heading_anchors(path), link
    # Rows of different benchmarks land in different places, not all on one page.
    assert len({link.partition("#")[0] for link in links}) >= 5


def test_the_summary_is_included_with_its_links_rewritten(hooks) -> None:
    readme = (
        "# x\n<!-- perf-summary:start -->\n| what | measured |\n| --- | --- |\n"
        "| a ([details](docs/token-noise.md)) | b ([details](docs/robustness.md#performance)) |\n"
        "<!-- perf-summary:end -->\nrest\n"
    )
    assert hooks.perf_summary(readme) == (
        "| what | measured |\n| --- | --- |\n"
        "| a ([details](token-noise.md)) | b ([details](robustness.md#performance)) |"
    )


def test_a_link_outside_the_pages_and_a_missing_block_warn(hooks, caplog: pytest.LogCaptureFixture) -> None:
    readme = "<!-- perf-summary:start -->\n| [d](#no-such-section) |\n<!-- perf-summary:end -->"
    with caplog.at_level(logging.WARNING, logger="mkdocs.hooks.lit_noise"):
        assert hooks.perf_summary(readme) == "| [d](#no-such-section) |"
        assert hooks.perf_summary("no block here") == ""
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 2
    assert "#no-such-section" in messages[0]
    assert "perf-summary:start" in messages[1]


def test_the_page_marker_is_replaced_by_the_readme_block(hooks, tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("<!-- perf-summary:start -->\n| t |\n<!-- perf-summary:end -->\n")
    config = {"config_file_path": str(tmp_path / "mkdocs.yml")}
    page = f"# Performance\n\n{hooks.MARKER}\n\nafter\n"
    assert hooks.on_page_markdown(page, page="performance.md", config=config, files=None) == (
        "# Performance\n\n| t |\n\nafter\n"
    )
    assert hooks.on_page_markdown("no marker", page="x.md", config=config, files=None) == "no marker"


def test_undocumented_names_the_public_objects_no_anchor_resolves_to(hooks) -> None:
    public = hooks.public_objects()
    assert len(public) >= 200
    assert public["lit_noise.noise.input.Gaussian"] is lit_noise.Gaussian
    # Anchors name objects by their public paths; a re-export documents the object it names.
    every = [f"lit_noise.{name.rsplit('.', 1)[-1]}" for name in public]
    every += list(public)
    assert hooks.undocumented(every) == []
    without = [a for a in every if not a.endswith((".Gaussian", ".check_in_range"))]
    assert hooks.undocumented(without) == [
        "lit_noise.corruptions.suite.check_in_range",
        "lit_noise.noise.input.Gaussian",
    ]
    assert hooks.undocumented(["not.a.module", "lit_noise.no_such_name", "", "lit_noise"]) == sorted(public)
