"""Render the figure files of ``docs/figures/`` into the pages that quote them.

A page includes a figure as a block::

    <!-- figure: finetune_cost -->
    (the table and its caption, written by this script)
    <!-- /figure -->

which stays plain Markdown (the README and the docs read as Markdown on
any forge) and is rewritten from ``docs/figures/finetune_cost.json`` here.
A benchmark writes that file with ``--save`` (see ``_figures.py``).

    python benchmarks/figures.py           # rewrite every block from its figure file
    python benchmarks/figures.py --check   # exit 1 where a page differs from its figure files
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ROOT / "docs" / "figures"
BLOCK = re.compile(r"(<!-- figure: (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /figure -->)", re.S)
NUMERIC = re.compile(r"^[\s(]*[+−-]?[\d,.]+")


def pages() -> list[Path]:
    """The Markdown pages that may include figures."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def load(name: str) -> dict:
    path = FIGURES / f"{name}.json"
    if not path.is_file():
        raise FileNotFoundError(f"no figure file {path.relative_to(ROOT)}")
    return json.loads(path.read_text(encoding="utf-8"))


def all_figures() -> dict[str, dict]:
    return {path.stem: json.loads(path.read_text(encoding="utf-8")) for path in sorted(FIGURES.glob("*.json"))}


def render(figure: dict) -> str:
    """The table and its caption, as Markdown."""
    columns, rows = figure["columns"], figure["rows"]
    numeric = [all(NUMERIC.match(row[i]) or not row[i] for row in rows) for i in range(len(columns))]
    lines = [
        "| " + " | ".join(columns) + " |",
        "|" + "|".join("---:" if right and i else "---" for i, right in enumerate(numeric)) + "|",
        *("| " + " | ".join(row) + " |" for row in rows),
    ]
    when = f", {figure['date']}" if figure.get("date") else ""
    caption = (
        f"{figure['conditions']}. Measured on {figure['machine']}; {figure['versions']}{when}; `{figure['command']}`."
    )
    if figure.get("notes"):
        caption += f" {figure['notes']}"
    return "\n".join(lines) + "\n\n*" + caption + "*\n"


def rendered(text: str) -> str:
    """``text`` with every figure block rewritten from its file."""
    return BLOCK.sub(lambda m: m.group(1) + "\n" + render(load(m.group("name"))) + "\n" + m.group(4), text)


def stale_pages() -> list[Path]:
    return [page for page in pages() if rendered(page.read_text(encoding="utf-8")) != page.read_text(encoding="utf-8")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report pages that differ from their figure files")
    args = parser.parse_args()
    stale = stale_pages()
    if args.check:
        for page in stale:
            print(f"{page.relative_to(ROOT)} differs from its figure files: run python benchmarks/figures.py")
        return 1 if stale else 0
    for page in stale:
        page.write_text(rendered(page.read_text(encoding="utf-8")), encoding="utf-8")
        print(f"rewrote {page.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
