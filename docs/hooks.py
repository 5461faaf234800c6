"""MkDocs hooks for the lit_noise site (``hooks:`` in mkdocs.yml).

The performance summary table is generated into README.md by ``benchmarks/summary.py`` (``make
bench``), between ``<!-- perf-summary:start -->`` and ``<!-- perf-summary:end -->``. The
performance page includes it from there at build time, so the site never holds a stale copy: the
page's marker line ``<!-- perf-summary: README.md -->`` is replaced by the README's block, with its
links to README sections (``(#anchor)``) rewritten to the site pages that now hold those sections.
A link to a README section this map does not know fails the (strict) build with a warning.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

log = logging.getLogger("mkdocs.hooks.lit_noise")

MARKER = "<!-- perf-summary: README.md -->"
START, END = "<!-- perf-summary:start -->", "<!-- perf-summary:end -->"

#: Site page -> the README sections that became that page (a link to one goes to the page's top).
PAGE_SECTIONS = {
    "activation-noise.md": ("activation-noise-and-neftune",),
    "calibration.md": ("watching-calibration-lit_noisemetrics-calibrationmonitor",),
    "cli.md": ("run-it-from-the-command-line-hydra",),
    "concepts.md": ("architecture",),
    "controller.md": ("let-the-noise-find-its-level-the-noise-controller-experimentadaptive",),
    "development.md": ("development",),
    "input-target-noise.md": ("noise-on-inputs-and-targets",),
    "lightningcli.md": ("the-same-callbacks-from-lightningcli",),
    "mixup.md": ("mixup-and-cutmix-mixupdatamodule",),
    "own-hydra-app.md": ("lit_noises-configs-in-your-own-hydra-app",),
    "performance.md": ("performance-summary",),
    "robustness.md": ("watching-robustness-lit_noisecorruptions-robustnessmonitor",),
    "temperature-scaling.md": ("temperature-scaling-temperaturescaling",),
    "token-noise.md": ("token-models",),
    "weight-gradient-noise.md": ("noise-on-weights-and-gradients-weightnoise-gradientnoise",),
}
#: Site page -> the README sections that are sections of that page, under the same anchor.
#: (The README's section links are GitHub anchors; the pages use Python-Markdown's, which are equal
#: for every heading here.)
PAGE_SUBSECTIONS = {
    "calibration.md": ("the-metrics-lit_noisemetrics-no-lightning-needed",),
    "cli.md": (
        "evaluating-a-checkpoint-reports-of-any-sweep",
        "one-job-config-groups-overrides",
        "sweeps-launchers-optuna-resuming",
        "the-apps-overhead",
        "the-main-job-a-noise-sweep-and-its-report-make-train",
    ),
    "development.md": ("tests-with-independent-oracles",),
    "getting-started.md": (
        "installing-lit_noise-and-the-extras",
        "set-up-two-commands",
    ),
    "noise-and-schedules.md": (
        "what-noise-lit_noisenoise",
        "when-and-how-much-lit_noiseschedules",
    ),
    "performance.md": ("host-side-operations-per-batch",),
    "robustness.md": (
        "the-corruption-suite-lit_noisecorruptions-pure-tensor-code",
        "the-shapes-data-lit_noiseexamplesshapesdatamodule",
    ),
    "wandb.md": ("settings-as-hyperparameters",),
    "weight-gradient-noise.md": (
        "gradientnoise-gradient-noise-absolute-or-relative-to-the-gradients-identical-on-every-rank",
        "performance",
        "refused-with-a-configurationerror-before-any-weight-changes",
        "weightnoise-gradients-at-noisy-weights-updates-to-the-clean-ones",
    ),
}
#: README sections whose anchor on the site differs: the later "Performance" sections (GitHub numbers
#: repeated headings), and "Where" (its noise-layer part has a page of its own).
RENAMED = {
    "performance-1": "mixup.md#performance",
    "performance-2": "calibration.md#performance",
    "performance-3": "robustness.md#performance",
    "where-inputnoise-targetnoise-noise-layers": "input-target-noise.md#inputnoise-and-targetnoise",
}
README_ANCHORS = RENAMED | {anchor: page for page, anchors in PAGE_SECTIONS.items() for anchor in anchors}
README_ANCHORS |= {a: f"{page}#{a}" for page, anchors in PAGE_SUBSECTIONS.items() for a in anchors}


def _site_link(page: Any, anchor: str) -> str:
    target = README_ANCHORS.get(anchor)
    if target is None:
        log.warning("%s: the performance summary links to README section #%s, in no page", page, anchor)
        return f"#{anchor}"
    return target


def perf_summary(readme: str, page: Any = "performance.md") -> str:
    """The README's generated performance summary, its section links pointing into the site."""
    start, end = readme.find(START), readme.find(END)
    if start < 0 or end < start:
        log.warning("%s: README.md has no %s ... %s block to include", page, START, END)
        return ""
    block = readme[start + len(START) : end].strip("\n")
    return re.sub(r"\]\(#([^)\s]+)\)", lambda m: f"]({_site_link(page, m.group(1))})", block)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any, **kwargs: Any) -> str:
    """Replace the performance page's marker with the README's generated summary table."""
    if MARKER not in markdown:
        return markdown
    readme = Path(config["config_file_path"]).parent / "README.md"
    return markdown.replace(MARKER, perf_summary(readme.read_text(encoding="utf-8"), page))
