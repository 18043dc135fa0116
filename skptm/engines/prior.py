"""The prior: engine speeds measured on the machines skptm was developed on.

``prior.json`` beside this module holds one table per machine kind, written
by ``benchmarks/engine_table.py``, each with the machine (CPU model,
instruction set, cores) and the conditions it was measured under. It is
read for two things only: what to expect of each configuration on a machine
of the same instruction set (``skptm backbones --engines``), and how long a
job will take on TensorFlow before this machine is measured (whether
measuring is worth it). What runs is decided from measurements made here
(:mod:`.decision`).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

PRIOR_FILE = Path(__file__).with_name("prior.json")

#: The input size the prior tables were measured at (pixels, square). A
#: network that runs at one size only (CLIP, SigLIP, ViT) or rounds it to its
#: patch size (DINO) was measured at the size it runs at, which its table
#: records under ``"input_size"``.
PRIOR_SIZE = 160


@functools.cache
def tables() -> tuple:
    """Every machine's table, as stored."""
    return tuple(json.loads(PRIOR_FILE.read_text())["machines"])


def table_for(machine) -> dict | None:
    """The table of a machine with ``machine``'s instruction set and architecture, if
    any (one with the same number of cores first)."""
    same_kind = [
        table
        for table in tables()
        if (table["machine"]["instruction_set"], table["machine"]["architecture"])
        == (machine.instruction_set, machine.architecture)
    ]
    same_kind.sort(key=lambda table: table["machine"].get("cores") != machine.cores)
    return same_kind[0] if same_kind else None


def measured_size(table: dict, name: str) -> tuple[int, int]:
    """The input size ``name`` was measured at in ``table``."""
    return tuple(table.get("input_size", {}).get(name, (PRIOR_SIZE, PRIOR_SIZE)))


def table_rate(table: dict, name: str, input_size) -> float | None:
    """``table``'s TensorFlow float32 rate (images/s) for ``name``, scaled from
    the size it was measured at to ``input_size`` by the number of pixels."""
    rate = table["images_per_second"].get(name, {}).get("tensorflow/float32")
    if not rate:
        return None
    measured_height, measured_width = measured_size(table, name)
    height, width = input_size
    return rate["median"] * measured_height * measured_width / (height * width)


#: The network every table holds: how much slower one machine is than another
#: is read from it, for networks a table lacks.
ANCHOR = "resnet50"


def tensorflow_rate(name: str, input_size) -> float | None:
    """A cautious TensorFlow float32 rate (images/s) for ``name`` at ``input_size``:
    the lowest over the prior's machines, scaled by the input's pixels.

    A machine whose table lacks ``name`` still counts: its rate is estimated
    from a table that has it, scaled by the two machines' rates for
    :data:`ANCHOR` (a network measured only on a fast CPU is not taken to run
    as fast on a slow one).
    """
    rates = [_rate_or_estimate(table, name, input_size) for table in tables()]
    rates = [rate for rate in rates if rate]
    return min(rates) if rates else None


def _rate_or_estimate(table, name, input_size):
    rate = table_rate(table, name, input_size)
    anchor_here = table_rate(table, ANCHOR, (PRIOR_SIZE, PRIOR_SIZE))
    if rate is not None or not anchor_here:
        return rate
    estimates = []
    for other in tables():
        theirs, anchor_there = table_rate(other, name, input_size), table_rate(other, ANCHOR, (PRIOR_SIZE, PRIOR_SIZE))
        if theirs and anchor_there:
            estimates.append(theirs * anchor_here / anchor_there)
    return min(estimates, default=None)


def expected_speedups(name: str, machine) -> dict | None:
    """Each configuration's speed relative to TensorFlow float32 on a machine like
    ``machine`` (same instruction set), with that machine's description; ``None``
    when no such machine was measured."""
    table = table_for(machine)
    if table is None:
        return None
    rates = table["images_per_second"].get(name)
    if not rates:
        return None
    base = rates["tensorflow/float32"]["median"]
    return {
        "machine": table["machine"],
        "speedups": {config: rate["median"] / base for config, rate in rates.items()},
    }
