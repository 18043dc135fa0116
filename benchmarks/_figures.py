"""Write a benchmark's table as a figure file the docs include.

Every measured number quoted in the README, the docs, the examples and the
docstrings comes from one file in ``docs/figures/``: a JSON object with the
command that measured it, the machine (as
``skptm.engines.machine.this_machine().describe()`` reports it), the
conditions, the date, and the table itself as strings formatted the way the
pages show them. ``python benchmarks/figures.py`` renders each table into
the pages between ``<!-- figure: NAME -->`` and ``<!-- /figure -->``;
``tests/test_figures.py`` fails when a page's table differs from its file
or a page quotes a measured number that no figure file holds.
"""

from __future__ import annotations

import datetime
import json
import shlex
import sys
from pathlib import Path

FIGURES = Path(__file__).resolve().parents[1] / "docs" / "figures"


def machine() -> str:
    """This machine as the docs name it: CPU model, instruction set, cores."""
    from skptm.engines.machine import this_machine

    return this_machine().describe()


def versions() -> str:
    import keras
    import tensorflow as tf

    return f"TensorFlow {tf.__version__}, Keras {keras.__version__}"


def save_figure(name: str, *, conditions: str, columns: list[str], rows: list[list], notes: str = "") -> Path:
    """Write ``docs/figures/<name>.json`` from this run; returns its path.

    ``rows`` hold the cells as the pages show them (strings; numbers are
    formatted with ``str``).
    """
    FIGURES.mkdir(parents=True, exist_ok=True)
    figure = {
        "command": "python "
        + " ".join(_portable(arg) for arg in [f"benchmarks/{Path(sys.argv[0]).name}", *sys.argv[1:]]),
        "machine": machine(),
        "versions": versions(),
        "date": datetime.date.today().isoformat(),
        "conditions": conditions,
        "columns": columns,
        "rows": [[str(cell) for cell in row] for row in rows],
        "notes": notes,
    }
    path = FIGURES / f"{name}.json"
    path.write_text(json.dumps(figure, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {path}")
    return path


def _portable(arg: str) -> str:
    """``arg`` as a reader would type it: the home folder as ``~``, not this machine's path."""
    home = str(Path.home())
    if arg == home or arg.startswith(home + "/"):
        return "~" + shlex.quote(arg[len(home) :])
    return shlex.quote(arg)
