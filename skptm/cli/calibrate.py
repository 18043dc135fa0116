"""``skptm calibrate``: measure here how fast each engine and precision runs
networks, and how close their features stay (:func:`skptm.calibrate`)."""

from __future__ import annotations

from . import start_tensorflow
from ._arguments import (
    HelpFormatter,
    add_backbone_names,
    add_input_size_option,
    add_quiet_option,
    backbone_names,
    examples,
)
from ._types import weights


def add_parser(subparsers):
    """Add ``calibrate`` to ``subparsers``; returns its parser."""
    command = subparsers.add_parser(
        "calibrate",
        help="measure the engines and precisions on this machine",
        description="Measure, on this machine, how many images per second each engine and precision "
        "runs the named networks at, and how close their features stay to TensorFlow "
        "float32's (lowest cosine similarity over real photos); then print, per network, "
        "the measurements and what engine='auto' now chooses. Measurements are kept in "
        "skptm's cache ('skptm cache') and made once per network and size class: a "
        "network measured before is not measured again without --force.",
        epilog=examples("skptm calibrate resnet50 mobilenet_v2", "skptm calibrate --all --quiet"),
        formatter_class=HelpFormatter,
    )
    add_backbone_names(command, "every network (about a minute each)")
    command.add_argument(
        "-w",
        "--weights",
        type=weights,
        default="imagenet",
        help="the weights the estimators will use: 'imagenet' (default), 'none' or a path; "
        "the models converted for them stay in the cache",
    )
    add_input_size_option(command, "the size the estimators will use (224, or 224x192); default: each network's own")
    command.add_argument("--force", action="store_true", help="measure again networks measured before")
    add_quiet_option(command)
    return command


def run(args, parser):
    """Measure the networks and print one line per network."""
    names = backbone_names(args, parser)
    start_tensorflow()
    from ..engines.calibration import calibrate

    entries = calibrate(
        names,
        weights=args.weights,
        input_size=args.input_size,
        force=args.force,
        verbose=0 if args.quiet else 1,
    )
    for entry in entries:
        print(describe(entry))
    return 0


def describe(entry):
    """One line: what ``entry`` (a measurement) measured, and what ``engine="auto"`` chooses from it.

    Examples
    --------
    >>> entry = {"backbone": "vgg16", "input_size": [32, 32], "measured_at": "2025-01-01T12:00:00",
    ...          "rates": {"tensorflow/float32": {"median": 100.0, "low": 90.0, "high": 110.0}},
    ...          "cosine": {"tensorflow/float32": 1.0}, "conversion_seconds": {}}
    >>> print(describe(entry))  # doctest: +NORMALIZE_WHITESPACE
    vgg16 32x32 (measured 2025-01-01T12:00:00): tensorflow/float32 100 images/s (90–110) cosine 1.000000;
    engine=auto runs tensorflow/float32 for precision=float32 (measured here: nothing clearly faster),
    tensorflow/float32 for precision=auto (measured here: nothing clearly faster)
    """
    from ..engines.decision import best_measured

    parts = [
        f"{config} {rate['median']:.0f} images/s ({rate['low']:.0f}\N{EN DASH}{rate['high']:.0f}) "
        f"cosine {entry['cosine'][config]:.6f}"
        for config, rate in entry["rates"].items()
    ]
    parts += [f"{config} failed here ({failure})" for config, failure in entry.get("failed", {}).items()]
    if entry["conversion_seconds"]:
        parts.append(
            "conversion " + ", ".join(f"{engine} {s:.1f} s" for engine, s in entry["conversion_seconds"].items())
        )
    chosen = []
    for precision in ("float32", "auto"):
        choice = best_measured(entry, "auto", precision)
        chosen.append(f"{choice.label} for precision={precision} ({choice.reason})")
    size = "x".join(map(str, entry["input_size"]))
    return (
        f"{entry['backbone']} {size} (measured {entry['measured_at']}): "
        + "; ".join(parts)
        + "; engine=auto runs "
        + ", ".join(chosen)
    )
