"""``skptm predict``: a saved classifier's labels and class probabilities for
every image, as CSV."""

from __future__ import annotations

import sys
from pathlib import Path

from . import UserError, start_tensorflow
from ._arguments import (
    SOURCE_HELP,
    HelpFormatter,
    add_batch_options,
    add_on_error_option,
    add_quiet_option,
    examples,
    params_for,
)
from ._common import collect, listing, load_classifier, naming_unreadable_ourselves, require, unreadable


def add_parser(subparsers):
    """Add ``predict`` to ``subparsers``; returns its parser."""
    command = subparsers.add_parser(
        "predict",
        help="apply a trained model to images, write labels and probabilities",
        description=(
            "Load a model written by 'skptm train' (or skptm.save) and write, for every "
            "image, its predicted label and one probability per class, as CSV: "
            "path,label,proba_<class>..., one row per image in input order. Needs skops: "
            'pip install "skptm[skops]".'
        ),
        epilog=examples("skptm predict model.skops new_photos/ -o predictions.csv"),
        formatter_class=HelpFormatter,
    )
    command.add_argument("model", metavar="MODEL", help="a model file written by 'skptm train'")
    command.add_argument("source", metavar="SRC", help=SOURCE_HELP)
    command.add_argument("-o", "--output", metavar="OUT", required=True, help="the CSV file to write")
    add_batch_options(command)
    add_on_error_option(command)
    add_quiet_option(command)
    return command


def run(args, parser):
    """Predict the images of ``args.source`` with ``args.model``; write the CSV."""
    output = Path(args.output)
    require("skops", "reading and writing models", 'pip install "skptm[skops]"')
    if not output.parent.is_dir():
        raise UserError(f"the output's folder does not exist: {str(output.parent)!r}")
    if not Path(args.model).is_file():
        raise FileNotFoundError(2, "No such model file", str(args.model))
    paths = collect("predict", args.source)
    if paths is None:
        return 2

    start_tensorflow()
    from .._writers import write_predictions

    model = load_classifier(args.model)
    model.set_params(**params_for(model, args))
    with naming_unreadable_ourselves():
        proba = model.predict_proba(paths)
    labels = write_predictions(output, paths, list(model.classes_), proba)
    failed = unreadable(paths, proba)
    if failed:
        print(
            f"skptm predict: {len(failed)} of {len(paths)} images could not be read; their label is "
            f"empty and their probabilities NaN: {listing(failed)}",
            file=sys.stderr,
        )
    if not args.quiet:
        counts = ", ".join(f"{c}: {sum(label == c for label in labels)}" for c in model.classes_)
        print(f"skptm predict: wrote {len(paths)} predictions ({counts}) to {output}", file=sys.stderr)
    return 0
