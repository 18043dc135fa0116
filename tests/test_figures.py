"""Every measured number the docs quote comes from one generated figure file.

The figures live in ``docs/figures/*.json``, written by the benchmarks
(``--save``) with the machine, versions and conditions they were measured
under; ``python benchmarks/figures.py`` renders them into the pages. These
tests fail when a page's table is not its figure file's, when a figure file
lacks its machine or conditions, or when the README, a page, an example or
a docstring quotes a measured number (a rate, a ratio, a duration, a size,
points of accuracy) that no figure file holds.
"""

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("figures", ROOT / "benchmarks" / "figures.py")
figures = importlib.util.module_from_spec(spec)
spec.loader.exec_module(figures)

NUMBER = r"(?<![\w.,])[+−-]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?"
UNIT = (
    r"(?:[×x](?!\s?\d)(?!\w)|\s?images/s\b|\s(?:images|steps) per second"
    r"|\s?s\b(?!\w)|\s?ms\b|\s?min\b|\s?MB\b|\s?KB\b|\s?GB\b|\s(?:bytes|points)\b|%)"
)
#: A measured number: a value (or a range of two) with a unit of speed,
#: time, size or accuracy.
QUOTED = re.compile(rf"({NUMBER})(?:\s?(?:–|-|to|and|against)\s?({NUMBER}))?({UNIT})")

#: Numbers with such units that are settings or thresholds, not
#: measurements: the text they appear in, and why.
SETTINGS = {
    "5%": "the engine decision's margin (skptm/engines/decision.py)",
    "0.95×": "engine_speed.py's pass threshold",
    "1.5×": "first_call.py's pass threshold",
    "1.05": "grid_search_threads.py's noise threshold",
    "20%": "validation_fraction=0.2",
    "60-90%": "the crop of the examples' photo views",
    "0.25 s": "calibration's round length",
    "0.3 s": "the Zen 3 engine table's round length",
    "0.5 s": "engine_table.py's round length",
    "1 s": "engine_speed.py's round length",
    "100 images/s": "a CLI help example",
    "150 KB": "224 × 224 × 3 bytes, arithmetic",
    "87.5%": "the tta crop (skptm._tta.CROP_FRACTION)",
}


def sources():
    """The README, the pages, the examples and the package's docstrings and comments."""
    for path in figures.pages():
        yield path, figures.BLOCK.sub("", path.read_text(encoding="utf-8"))
    for path in [*sorted((ROOT / "examples").glob("*.py")), *sorted((ROOT / "skptm").rglob("*.py"))]:
        yield path, path.read_text(encoding="utf-8")


def numbers(text):
    return {token.replace(",", "").lstrip("+−-") for token in re.findall(NUMBER, text)}


def test_every_block_is_its_figure_file():
    stale = [str(page.relative_to(ROOT)) for page in figures.stale_pages()]
    assert not stale, f"pages differ from docs/figures: {stale}; run python benchmarks/figures.py"


@pytest.mark.parametrize("name", sorted(figures.all_figures()))
def test_figure_names_its_conditions(name):
    figure = figures.all_figures()[name]
    for field in ("command", "machine", "versions", "conditions"):
        assert figure.get(field), f"docs/figures/{name}.json has no {field}"
    assert figure["command"].startswith(("python benchmarks/", "bash .ci/run")), figure["command"]
    assert all(len(row) == len(figure["columns"]) for row in figure["rows"]), name
    assert re.search(r"\bcores\b|\d-core", figure["machine"]), "name the CPU and its cores"


def test_every_figure_file_is_quoted():
    used = {match.group("name") for page in figures.pages() for match in figures.BLOCK.finditer(page.read_text())}
    assert set(figures.all_figures()) <= used, f"figure files no page includes: {set(figures.all_figures()) - used}"


def test_quoted_numbers_come_from_figures():
    measured = set()
    for figure in figures.all_figures().values():
        for row in figure["rows"]:
            measured |= numbers(" ".join(row))
    unknown = []
    for path, text in sources():
        for line_number, line in enumerate(text.splitlines(), 1):
            for match in QUOTED.finditer(line):
                if match.group(0).strip() in SETTINGS:
                    continue
                unit = match.group(3).strip()
                for value in filter(None, match.group(1, 2)):
                    value = value.replace(",", "").lstrip("+−-")
                    # Points of accuracy are quoted from tables of accuracies.
                    as_fractions = (
                        {f"{float(value) / 100:.{digits}f}" for digits in (2, 3)} if unit == "points" else set()
                    )
                    if value not in measured and not as_fractions & measured:
                        unknown.append(f"{path.relative_to(ROOT)}:{line_number}: {match.group(0)!r}")
    assert not unknown, "measured numbers that no docs/figures file holds:\n" + "\n".join(unknown)
