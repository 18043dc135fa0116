"""``skptm predict``: a saved classifier's labels and class probabilities for
every image, as CSV."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np

from . import UserError, start_tensorflow
from ._arguments import (
    SOURCE_HELP,
    HelpFormatter,
    add_batch_options,
    add_on_error_option,
    add_quiet_option,
    examples,
)
from ._common import (
    collect,
    listing,
    load_classifier,
    naming_unreadable_ourselves,
    output_file,
    require,
    set_command_options,
    unreadable,
)


def add_parser(subparsers):
    """Add ``predict`` to ``subparsers``; returns its parser."""
    command = subparsers.add_parser(
        "predict",
        help="apply a trained model to images, write labels and probabilities",
        description=(
            "Load a model written by 'skptm train' (or skptm.save) and write, for every "
            "image, its predicted label and one probability per class, as CSV: "
            "path,label,proba_<class>..., one row per image in input order. Needs skops: "
            'pip install "skptm[skops]". With --classes, no model: the images are classified '
            "zero-shot by class names with an image-text backbone (CLIP, SigLIP; needs "
            'pip install "skptm[hub]").'
        ),
        epilog=examples(
            "skptm predict model.skops new_photos/ -o predictions.csv",
            "skptm predict --classes cat,dog,bird photos/ -o predictions.csv",
        ),
        formatter_class=HelpFormatter,
    )
    command.add_argument("model", metavar="MODEL", help="a model file written by 'skptm train' (not with --classes)")
    command.add_argument("source", metavar="SRC", nargs="?", help=SOURCE_HELP)
    command.add_argument(
        "--classes",
        metavar="NAMES",
        help="comma-separated class names for zero-shot classification (then SRC is the only "
        "positional argument), in quotes where a name holds a comma: '\"red, white\",blue'; "
        "skptm.ZeroShotClassifier",
    )
    command.add_argument(
        "--backbone",
        default="clip_vit_base_patch32",
        help="with --classes: the image-text backbone (CLIP or SigLIP) (default: %(default)s)",
    )
    command.add_argument(
        "--weights",
        default="imagenet",
        help="with --classes: 'imagenet' (the preset's weights) or a local KerasHub preset folder "
        "(default: %(default)s)",
    )
    command.add_argument("-o", "--output", metavar="OUT", required=True, help="the CSV file to write")
    add_batch_options(command)
    add_on_error_option(command)
    add_quiet_option(command)
    return command


def run(args, parser):
    """Predict the images of ``args.source`` with ``args.model``; write the CSV."""
    output = output_file(args.output)
    if args.classes is not None:
        if args.source is not None:
            raise UserError("with --classes there is no model: give only the images (SRC)")
        args.source = args.model
    else:
        require("skops", "reading and writing models", 'pip install "skptm[skops]"')
        if args.source is None:
            raise UserError("give a model file and the images (MODEL SRC), or --classes and the images")
        if not Path(args.model).is_file():
            raise FileNotFoundError(2, "No such model file", str(args.model))
    paths = collect("predict", args.source)
    if paths is None:
        return 2

    start_tensorflow()
    from .._writers import write_predictions

    model = _zero_shot(args) if args.classes is not None else load_classifier(args.model)
    set_command_options(model, args, keep=("classes", "backbone", "weights"))  # zero-shot's, set above
    with naming_unreadable_ourselves():
        proba = _predict_proba(model, paths)
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


def _predict_proba(model, paths):
    """``model.predict_proba(paths)``; for a Pipeline that starts with the
    transformer, its later steps see only the readable images' features
    (an unreadable one's row stays NaN, as a fine-tuned model gives it)."""
    from sklearn.pipeline import Pipeline

    from .._transformer import PretrainedFeatureTransformer

    if not (isinstance(model, Pipeline) and len(model) > 1 and isinstance(model[0], PretrainedFeatureTransformer)):
        return model.predict_proba(paths)
    features = np.asarray(model[:1].transform(paths), dtype=np.float64)
    readable = ~np.isnan(features).any(axis=1)
    proba = np.full((len(paths), len(model.classes_)), np.nan)
    if readable.any():
        proba[readable] = model[1:].predict_proba(features[readable])
    return proba


def _zero_shot(args):
    from .._zeroshot import ZeroShotClassifier

    return ZeroShotClassifier(args.backbone, classes=class_names(args.classes), weights=args.weights).fit(None)


def class_names(text):
    """The class names of ``--classes``: comma-separated, a name in double quotes
    where it holds a comma (as in a CSV row), spaces around each name dropped."""
    try:
        (names,) = csv.reader([text], skipinitialspace=True, strict=True)
    except (csv.Error, ValueError) as exc:
        raise UserError(f"--classes {text!r} is not a comma-separated list of names ({exc})") from exc
    names = [name.strip() for name in names]
    empty = [str(i + 1) for i, name in enumerate(names) if not name]
    if empty:
        raise UserError(
            f"--classes {text!r} has an empty name at position {', '.join(empty)}: give every class a "
            "name, separated by single commas"
        )
    return names
