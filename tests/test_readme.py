"""The README as the front page: its quickstart runs, its links land, its copies agree with the site.

The README holds the overview (what and why, set-up, a quickstart, the CLI, the evidence and the
performance summary); the reference lives in the documentation pages under docs/. These tests keep
the two from drifting apart.
"""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

from _markdown import heading_anchors

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _section(text: str, heading: str) -> str:
    """The body of the ``## heading`` section of a Markdown text (up to the next ``## ``)."""
    start = text.index(f"\n{heading}\n") + len(heading) + 2
    end = text.find("\n## ", start)
    return text[start : end if end >= 0 else len(text)]


def _code_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.DOTALL)


def test_the_readme_is_a_front_page_with_the_sections_a_newcomer_needs() -> None:
    headings = re.findall(r"^## (.+)$", README, flags=re.MULTILINE)
    assert headings == [
        "Set-up (two commands)",
        "Quickstart: your own LightningModule",
        "The command line: a sweep and its report",
        "Evidence",
        "Performance summary",
        "Documentation",
        "Development",
    ]
    # The long reference sections moved to the site: the front page is a fraction of what it was
    # (155 KB before 0.5), and most of what is left is the two generated tables.
    assert len(README.encode()) < 40_000
    assert "python benchmarks/evidence.py" in _section(README, "## Evidence")
    assert "lit-noise-report" in _section(README, "## The command line: a sweep and its report")


def test_every_relative_link_of_the_readme_lands_on_a_file_and_a_heading() -> None:
    links = re.findall(r"\]\(([^)\s]+)\)", README)
    local = [link for link in links if not re.match(r"[a-z]+://", link)]
    assert len(local) > 30
    for link in local:
        path, _, anchor = link.partition("#")
        target = ROOT / path if path else ROOT / "README.md"
        assert target.is_file(), link
        if anchor and target.suffix == ".md":
            assert anchor in heading_anchors(target), link


def test_the_quickstart_is_the_getting_started_one_and_about_ten_lines() -> None:
    (quickstart,) = _code_blocks(_section(README, "## Quickstart: your own LightningModule"), "python")
    site = (ROOT / "docs" / "getting-started.md").read_text(encoding="utf-8")
    assert quickstart in _code_blocks(site, "python")
    assert len([line for line in quickstart.splitlines() if line.strip()]) <= 13


def test_the_evidence_tables_are_the_evidence_page_s() -> None:
    page = (ROOT / "docs" / "evidence.md").read_text(encoding="utf-8")
    rows = [line for line in _section(README, "## Evidence").splitlines() if line.startswith("| ")]
    assert len(rows) == 2 * (2 + 11)  # two data sets: header, rule and eleven methods each
    assert all(row in page.splitlines() for row in rows)


@pytest.mark.filterwarnings("ignore:.*`tensorboardX` has been removed as a dependency.*:UserWarning")
def test_the_quickstart_runs_and_prints_its_two_metrics(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (quickstart,) = _code_blocks(_section(README, "## Quickstart: your own LightningModule"), "python")
    assert "max_epochs=10" in quickstart
    code = quickstart.replace(
        "max_epochs=10", "max_epochs=1, enable_progress_bar=False, enable_model_summary=False"
    )
    monkeypatch.chdir(tmp_path)  # the Trainer's default logger and checkpoints go here
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md quickstart", "exec"), {"__name__": "quickstart"})
    values = [float(v) for v in re.findall(r"tensor\(([-0-9.e]+)\)", out.getvalue())]
    assert len(values) == 2, out.getvalue()
    accuracy, ece = values
    assert 0.1 < accuracy <= 1.0  # one epoch of the digits MLP is far above chance (0.1)
    assert 0.0 <= ece <= 1.0
