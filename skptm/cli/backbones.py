"""``skptm backbones``: the networks skptm knows, and with ``--engines`` what
``engine="auto"`` runs each with on this machine."""

from __future__ import annotations

from . import start_tensorflow
from ._arguments import add_input_size_option
from ._common import print_table


def add_parser(subparsers):
    """Add ``backbones`` to ``subparsers``; returns its parser."""
    command = subparsers.add_parser(
        "backbones",
        help="list the available networks",
        description="List every network skptm knows, with its native input size, "
        "preprocessing family, pooled feature size, licence and resizing (what "
        "--resize auto does for it: policy/filter).",
    )
    command.add_argument(
        "--engines",
        action="store_true",
        help="add what engine='auto' runs each network with on this machine, and its "
        "measured speed-up over TensorFlow float32 (needs TensorFlow; OpenVINO "
        "counts only where installed)",
    )
    add_input_size_option(
        command,
        "with --engines: the input size to look up (224, or 224x192), as 'skptm calibrate "
        "--input-size' measured it; default: each network's own",
    )
    return command


def run(args, parser):
    """Print the table of networks."""
    from .._backbones import list_backbones

    header = ("name", "keras name", "input size", "preprocessing", "features", "source", "licence", "resizing")
    rows = [
        (
            b["name"],
            b["keras_name"],
            str(b["input_size"]),
            b["preprocessing"],
            str(b["feature_size"]),
            b["source"],
            b["licence"],
            f"{b['resize']}/{b['interpolation']}",
        )
        for b in list_backbones()
    ]
    if args.input_size is not None and not args.engines:
        parser.error("--input-size goes with --engines: it says which measurements to look up")
    if args.engines:
        start_tensorflow()  # "auto" asks TensorFlow whether there is a GPU
        size = args.input_size
        at = "" if size is None else f" at {size if isinstance(size, int) else '{}x{}'.format(*size)} px"
        header += (f"engine=auto{at}", "with precision=auto")
        rows = [(*row, *_engine_choices(row[0], args.input_size)) for row in rows]
    print_table(header, rows, right=(2, 4))
    return 0


def _engine_choices(name, size=None):
    """What ``engine="auto"`` runs ``name`` with here at ``size`` (``None``: its
    own), for precision float32 and auto: measured on this machine (with the
    measured speed-up), or not yet (with what the prior expects on a machine
    of this instruction set)."""
    from ..engines.decision import describe

    described = describe(name, size)
    entry, prior = described["measured"], described["prior"]
    cells = []
    for precision in ("float32", "auto"):
        choice = described["choices"][precision]
        label = choice.label.replace("/", " ")
        if entry is not None:
            rates = entry["rates"]
            label += f" ({rates[choice.label]['median'] / rates['tensorflow/float32']['median']:.1f}x, measured)"
        elif prior is not None:
            best = max(
                (config for config in prior["speedups"] if precision == "auto" or config.endswith("/float32")),
                key=prior["speedups"].get,
            )
            label += f" (not measured; prior: {best.replace('/', ' ')} {prior['speedups'][best]:.1f}x)"
        else:
            label += " (not measured)"
        cells.append(label)
    return cells
