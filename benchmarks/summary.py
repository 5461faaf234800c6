"""Run every benchmark and regenerate the README's performance summary from their ``RESULT`` rows.

Run: ``python benchmarks/summary.py`` (``make bench``). Each ``benchmarks/bench_*.py`` runs as a
subprocess of this Python with its default arguments; its whole output (stdout and stderr) is
saved to ``benchmarks/results/<name>.txt`` under a first line ``# summary.py {json}`` that records
when, where (CPU model, CPU count, torch) and how long it ran. The ``RESULT {json}`` rows that the
benchmarks print (``_harness.result``) become the Markdown table between the README's
``<!-- perf-summary:start -->`` and ``<!-- perf-summary:end -->`` markers, one table row per
``RESULT`` row, benchmarks in file-name order, followed by a line naming the machine.

Options:
    --only NAME...   run only these benchmarks (``mixup``, ``bench_mixup`` or ``bench_mixup.py``); the
                     others' rows come from their saved results.
    --from-results   run nothing: rebuild the table from ``benchmarks/results/``.
    --check          write nothing to the README: exit 1 (printing a diff) if its table differs from
                     the one the results give. ``make bench-check`` runs ``--check --from-results``.
    --readme PATH    the README (default ``README.md`` next to ``benchmarks/``).
    --docs PATH      the documentation pages the rows' ``section`` names (default ``docs/``): each row
                     links to ``docs/<page>.md#<anchor>``, which the site's build rewrites to its page.

A benchmark that exits non-zero, runs past ``--timeout`` or prints no ``RESULT`` row is an error that
names it (its previous saved output is kept, the README is not touched); so is a saved result that
is missing or malformed, a ``section`` that is no heading of the documentation pages (``docs/``), or a
README without the markers.
Errors exit with status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import difflib
import json
import os
import platform
import re
import subprocess
import sys
import time
import unicodedata
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from _harness import RESULT_PREFIX

BENCH_DIR = Path(__file__).resolve().parent
START, END = "<!-- perf-summary:start -->", "<!-- perf-summary:end -->"
META_PREFIX = "# summary.py "
STATUSES = ("met", "missed", "info")
FIELDS = ("row", "measured", "target", "status", "floor", "section")
LIMIT_S = 120.0  # every benchmark should run in under 2 minutes


class SummaryError(Exception):
    """A benchmark, a saved result or the README is not what the summary needs."""


@dataclasses.dataclass(frozen=True)
class Output:
    """One benchmark's saved output: the run's metadata and its ``RESULT`` rows."""

    name: str
    meta: dict[str, Any]
    rows: list[dict[str, Any]]


def machine() -> dict[str, Any]:
    """The CPU model (``/proc/cpuinfo``), the CPU count, Python and platform of this machine."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": model, "cpus": os.cpu_count(), "python": platform.python_version()}


def benchmarks(bench_dir: Path) -> dict[str, Path]:
    """Every ``bench_*.py`` of ``bench_dir`` by name (the file's stem), in file-name order."""
    return {path.stem: path for path in sorted(bench_dir.glob("bench_*.py"))}


def select(names: Sequence[str], available: dict[str, Path]) -> list[str]:
    """The benchmarks ``--only`` names, accepting ``mixup``, ``bench_mixup`` and ``bench_mixup.py``."""
    chosen = []
    for name in names:
        stem = Path(name).name.removesuffix(".py")
        stem = stem if stem.startswith("bench_") else f"bench_{stem}"
        if stem not in available:
            raise SummaryError(f"--only: no benchmark {name!r}; the benchmarks are {', '.join(available)}")
        chosen.append(stem)
    return chosen


def parse(name: str, text: str) -> list[dict[str, Any]]:
    """The ``RESULT`` rows of a benchmark's output, each checked for the fields the table needs."""
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.startswith(RESULT_PREFIX):
            continue
        try:
            row = json.loads(line[len(RESULT_PREFIX) :])
        except json.JSONDecodeError as error:
            raise SummaryError(f"{name}: line {number}: a RESULT line that is not JSON ({error})") from None
        missing = [key for key in FIELDS if not isinstance(row, dict) or not isinstance(row.get(key), str)]
        if missing:
            raise SummaryError(f"{name}: line {number}: a RESULT row without the text fields {missing}")
        if row["status"] not in STATUSES:
            raise SummaryError(
                f"{name}: line {number}: status must be one of {', '.join(STATUSES)}, got {row['status']!r}"
            )
        rows.append(row)
    if not rows:
        raise SummaryError(f"{name}: printed no RESULT row (each benchmark prints one per summary row)")
    return rows


def run(name: str, script: Path, results: Path, timeout: float) -> Output:
    """Run one benchmark, save its output under ``results`` and return its rows."""
    print(f"== {script.name} ...", flush=True)
    started = time.perf_counter()
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    try:
        done = subprocess.run(
            [sys.executable, str(script)],
            cwd=script.parent.parent,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
            check=False,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},  # stdout and stderr lines in the order printed
        )
    except subprocess.TimeoutExpired:
        raise SummaryError(f"{name}: ran past --timeout {timeout:g} s and was stopped") from None
    seconds = time.perf_counter() - started
    tail = "\n".join(done.stdout.splitlines()[-15:])
    if done.returncode != 0:
        raise SummaryError(f"{name}: exited with status {done.returncode}; its last lines:\n{tail}")
    rows = parse(name, done.stdout)
    meta = {"script": script.name, "date": date, "seconds": round(seconds, 1), **machine()}
    results.mkdir(parents=True, exist_ok=True)
    (results / f"{name}.txt").write_text(META_PREFIX + json.dumps(meta) + "\n" + done.stdout)
    note = (
        f"  (over {LIMIT_S:.0f} s: every benchmark should run in under 2 minutes)"
        if seconds > LIMIT_S
        else ""
    )
    print(f"   {len(rows)} RESULT row(s) in {seconds:.1f} s{note}", flush=True)
    return Output(name, meta, rows)


def attempt(name: str, script: Path, results: Path, timeout: float) -> Output | str:
    """:func:`run`, or the error message when it fails."""
    try:
        return run(name, script, results, timeout)
    except SummaryError as error:
        return str(error)


def load(name: str, results: Path) -> Output:
    """A benchmark's saved output (written by :func:`run`)."""
    path = results / f"{name}.txt"
    if not path.is_file():
        raise SummaryError(
            f"{name}: no saved result {path}; run `python benchmarks/summary.py --only {name}`"
        )
    first, _, text = path.read_text().partition("\n")
    if not first.startswith(META_PREFIX):
        raise SummaryError(
            f"{name}: {path} does not start with the {META_PREFIX.strip()!r} line summary.py writes"
        )
    return Output(name, json.loads(first[len(META_PREFIX) :]), parse(name, text))


def slug(text: str) -> str:
    """A heading's anchor as MkDocs' Markdown (``toc``) makes it: ASCII, word characters and hyphens."""
    text = unicodedata.normalize("NFKD", text.replace("`", "")).encode("ascii", "ignore").decode("ascii")
    return re.sub(r"[-\s]+", "-", re.sub(r"[^\w\s-]", "", text).strip().lower())


def page_headings(page: str, markdown: str) -> dict[str, str]:
    """Every heading of a page by its text and by ``"Parent > Heading"``: ``page`` or ``page#anchor``.

    A page's first top-level heading is its title and links to the page itself; a repeated anchor
    gets ``_1``, ``_2``, ... as in MkDocs.
    """
    found: dict[str, str] = {}
    used: set[str] = set()
    parents: list[tuple[int, str]] = []
    fenced = False
    for line in markdown.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        match = None if fenced else re.match(r"(#{1,6}) +(.+?) *$", line)
        if match is None:
            continue
        level, text = len(match[1]), match[2]
        anchor, number = slug(text), 0
        while anchor in used:
            number += 1
            anchor = f"{slug(text)}_{number}"
        used.add(anchor)
        target = page if level == 1 and not found else f"{page}#{anchor}"
        parents = [(lvl, name) for lvl, name in parents if lvl < level]
        found.setdefault(text, target)
        for _, parent in parents:
            found.setdefault(f"{parent} > {text}", target)
        parents.append((level, text))
    return found


def doc_sections(docs: Path) -> dict[str, str]:
    """The sections a ``RESULT`` row may name: every heading of the site's pages in ``docs``.

    Maps a heading's text (or ``"Page title > Heading"``) to its link from the README,
    ``docs/<page>.md`` or ``docs/<page>.md#anchor``. A text that stands in more than one place maps
    to ``""`` (ambiguous: name it with its page title).
    """
    sections: dict[str, str] = {}
    for path in sorted(docs.rglob("*.md")):
        page = path.relative_to(docs.parent).as_posix()
        for text, target in page_headings(page, path.read_text(encoding="utf-8")).items():
            sections[text] = target if sections.get(text, target) == target else ""
    return sections


def cell(text: str) -> str:
    """``text`` as one Markdown table cell."""
    return " ".join(text.split()).replace("|", "\\|")


def span(values: Iterable[Any]) -> str:
    return ", ".join(sorted({str(v) for v in values}))


def table(outputs: Sequence[Output], docs: Path) -> str:
    """The summary block: the table, one row per ``RESULT`` row, and the machine line.

    A row's ``section`` becomes a link to that section of the documentation pages in ``docs``.
    """
    links = doc_sections(docs)
    lines = [
        "<!-- generated by benchmarks/summary.py from benchmarks/results/ (make bench): do not edit -->",
        "| what | measured | target | status | floor |",
        "| --- | --- | --- | --- | --- |",
    ]
    for output in outputs:
        for row in output.rows:
            what = cell(row["row"])
            if row["section"]:
                if not links.get(row["section"]):
                    where = "stands in several places" if row["section"] in links else "is no heading"
                    raise SummaryError(
                        f"{output.name}: section {row['section']!r} of row {row['row']!r} {where} of the"
                        f" pages in {docs} (give a heading's text, or 'Page title > Heading' where the text"
                        " repeats)"
                    )
                what += f" ([details]({links[row['section']]}))"
            fields = (what, *(cell(row[key]) for key in ("measured", "target", "status", "floor")))
            lines.append("| " + " | ".join(fields) + " |")
    metas = [output.meta for output in outputs]
    rows = [row for output in outputs for row in output.rows]
    days = sorted({meta["date"][:10] for meta in metas})
    threads = span(row.get("threads", "?") for row in rows)
    lines += [
        "",
        f"Measured on {span(m['cpu'] for m in metas)} ({span(m['cpus'] for m in metas)} CPUs),"
        f" torch {span(row.get('torch', '?') for row in rows)}, {threads} torch thread(s),"
        f" {days[0] if len(days) == 1 else days[0] + ' to ' + days[-1]}.",
    ]
    return "\n".join(lines)


def splice(readme: str, block: str, path: Path) -> tuple[str, str]:
    """``(the README's current block, the README with block in its place)``."""
    if readme.count(START) != 1 or readme.count(END) != 1 or readme.index(START) > readme.index(END):
        raise SummaryError(f"{path}: needs the markers {START} and {END}, once each and in that order")
    head, rest = readme.split(START)
    current, tail = rest.split(END)
    return current.strip("\n"), f"{head}{START}\n{block}\n{END}{tail}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readme", type=Path, default=BENCH_DIR.parent / "README.md")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these benchmarks")
    parser.add_argument("--from-results", action="store_true", help="run nothing: use the saved results")
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if the README's table is not the results'"
    )
    parser.add_argument(
        "--docs", type=Path, default=BENCH_DIR.parent / "docs", help="the site's pages (section links)"
    )
    parser.add_argument("--benchmarks", type=Path, default=BENCH_DIR, help="the folder of the bench_*.py")
    parser.add_argument("--results", type=Path, help="the saved outputs (default: <benchmarks>/results)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds one benchmark may run")
    args = parser.parse_args(argv)
    results = args.results or args.benchmarks / "results"
    try:
        if args.only and args.from_results:
            raise SummaryError(
                "--only selects benchmarks to run, and --from-results runs none: give one of them"
            )
        available = benchmarks(args.benchmarks)
        if not available:
            raise SummaryError(f"no bench_*.py in {args.benchmarks}")
        stale = sorted(p.stem for p in results.glob("bench_*.txt") if p.stem not in available)
        if stale:
            raise SummaryError(
                f"{results}: saved results of benchmarks that no longer exist: {', '.join(stale)}"
            )
        to_run = [] if args.from_results else select(args.only, available) if args.only else list(available)
        # Every benchmark runs, then the failures are reported together.
        attempts = {name: attempt(name, available[name], results, args.timeout) for name in to_run}
        fresh = {name: out for name, out in attempts.items() if isinstance(out, Output)}
        failed = [out for out in attempts.values() if isinstance(out, str)]
        if failed:
            raise SummaryError(f"{len(failed)} benchmark(s) failed:\n" + "\n".join(failed))
        outputs = [fresh[name] if name in fresh else load(name, results) for name in available]
        readme = args.readme.read_text()
        block = table(outputs, args.docs)
        current, updated = splice(readme, block, args.readme)
    except SummaryError as error:
        print(f"summary.py: error: {error}", file=sys.stderr)
        return 2
    if args.check:
        if current == block:
            print(f"{args.readme}: the performance summary is the one the results give")
            return 0
        diff = difflib.unified_diff(
            current.splitlines(), block.splitlines(), "README (now)", "from the results", lineterm=""
        )
        print(f"{args.readme}: the performance summary differs from the results:", *diff, sep="\n")
        return 1
    if updated != readme:
        args.readme.write_text(updated)
    print(f"{args.readme}: performance summary regenerated ({sum(len(o.rows) for o in outputs)} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
