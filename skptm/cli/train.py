"""``skptm train``: fine-tune a classifier on a folder of class sub-folders,
score it on a held-out split, save it as a skops file."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np

from .._classifier import FineTunedClassifier
from ..exceptions import ImageReadError, ImageReadWarning
from . import UserError, start_tensorflow
from ._arguments import (
    HelpFormatter,
    add_network_options,
    add_quiet_option,
    choices,
    examples,
    params_for,
)
from ._common import listing, output_file, require
from ._types import fraction, non_negative_int, unfreeze_depth


def add_parser(subparsers):
    """Add ``train`` to ``subparsers``; returns its parser."""
    command = subparsers.add_parser(
        "train",
        help="fine-tune a classifier on a folder of class sub-folders",
        description=(
            "Fine-tune a pretrained network as a classifier (skptm.FineTunedClassifier) on "
            "SRC, a folder holding one sub-folder of images per class. A stratified "
            "--test-size share of the images is held out: the model is trained on the rest "
            "and scored on it (accuracy, balanced accuracy, per-class report). The model is "
            'saved as a pickle-free skops file (needs skops: pip install "skptm[skops]"); '
            "'skptm predict' and skptm.load read it. It holds what training changed: the "
            "base weights come from --weights where it is loaded."
        ),
        epilog=examples("skptm train photos/ -o model.skops --backbone efficientnet_b0 --augment light"),
        formatter_class=HelpFormatter,
    )
    command.add_argument("source", metavar="SRC", help="a folder holding one sub-folder of images per class")
    command.add_argument(
        "-o", "--output", metavar="MODEL", required=True, help="the model file to write, e.g. model.skops"
    )
    command.add_argument("--force", action="store_true", help="overwrite MODEL if it exists")
    add_network_options(command, backbone="efficientnet_b0")
    command.add_argument(
        "--unfreeze",
        type=unfreeze_depth,
        default=8,
        metavar="N",
        help="backbone layers to fine-tune: a count of the top layers with weights, "
        "'all', or the name of the lowest layer to train; 0 trains the head "
        "only (default: %(default)s)",
    )
    command.add_argument(
        "--head-epochs",
        type=non_negative_int,
        default=200,
        metavar="N",
        help="at most N epochs for a head with hidden layers (phase 1); the default "
        "linear head is solved exactly; 0 skips phase 1 (default: %(default)s)",
    )
    command.add_argument(
        "--finetune-epochs",
        type=non_negative_int,
        default=10,
        metavar="N",
        help="epochs of fine-tuning (phase 2); 0 skips it (default: %(default)s)",
    )
    command.add_argument(
        "--augment",
        choices=choices(FineTunedClassifier, "augment"),
        default="none",
        help="data augmentation while fine-tuning: 'light' flips, rotates, zooms "
        "and changes contrast a little (default: %(default)s)",
    )
    command.add_argument(
        "--test-size",
        type=fraction,
        default=0.2,
        metavar="FRACTION",
        help="share of the images held out to score the model (default: %(default)s)",
    )
    command.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seeds the split, the initialisation and the training (default: %(default)s)",
    )
    add_quiet_option(command, "no progress bars")
    return command


def run(args, parser):
    """Train on ``args.source``, print the held-out scores, save the model."""
    model_path = Path(args.output)
    require("skops", "reading and writing models", 'pip install "skptm[skops]"')
    if model_path.is_dir():
        raise UserError(f"the output must be a file; {str(model_path)!r} is a folder.")
    if model_path.exists() and not args.force:
        raise UserError(f"{str(model_path)!r} exists; pass --force to overwrite it.")
    output_file(model_path)
    from .._finetuned_base import holdout_split
    from ..datasets import load_image_folder

    data = load_image_folder(args.source, random_state=args.seed)
    y = np.asarray(data.target_names)[data.target]
    _check_classes(data, args.test_size)
    try:
        train, test = holdout_split(len(y), args.test_size, args.seed, stratify=y)
    except ValueError as exc:
        raise UserError(
            f"cannot hold out --test-size {args.test_size:g} of {len(y)} images stratified by class: "
            f"{exc.__cause__} Use a larger --test-size, or more images per class."
        ) from None
    _print_class_counts(data.target_names, y, train, test)

    start_tensorflow()
    from .._persistence import save

    model = FineTunedClassifier(**params_for(FineTunedClassifier, args))
    try:
        model.fit(data.paths[train], y[train])
    except ImageReadError as exc:
        raise UserError(
            f"could not read the image {exc.path!r} ({exc.cause}): training cannot use an unreadable "
            "image. Fix or remove the file, then run again."
        ) from None
    proba, test = _held_out_proba(model, data.paths, test)
    predicted = model.classes_[np.argmax(proba, axis=1)]
    _print_scores(y[test], predicted, model.classes_, args.test_size)
    save(model, model_path)
    print(f"wrote {model_path} (use it with: skptm predict {model_path} IMAGES -o predictions.csv)")
    return 0


def _held_out_proba(model, paths, test):
    """``(proba, test)``: the probabilities of the held-out images that can be
    read, and their indices; the others are named on stderr (a model trained
    for minutes is not thrown away for one file)."""
    model.set_params(on_error="nan")
    try:
        with warnings.catch_warnings():  # named below, by path
            warnings.simplefilter("ignore", ImageReadWarning)
            proba = model.predict_proba(paths[test])
    finally:
        model.set_params(on_error="raise")
    failed = np.isnan(proba).any(axis=1)
    if failed.all():
        raise UserError("no held-out image could be read: nothing to score the model on. Fix or remove those files.")
    if failed.any():
        print(
            f"skptm train: {failed.sum()} of {len(test)} held-out images could not be read and are not "
            f"scored: {listing(list(paths[test][failed]))}",
            file=sys.stderr,
        )
    return proba[~failed], test[~failed]


def _check_classes(data, test_size):
    """A :class:`UserError` naming a class too small for a stratified split."""
    names = data.target_names
    if len(names) < 2:
        raise UserError(f"training needs at least 2 class sub-folders; found {names}.")
    for name, count in zip(names, np.bincount(data.target, minlength=len(names))):
        if count < 2:
            raise UserError(
                f"class {name!r} has {count} image{'' if count == 1 else 's'}: holding out a stratified "
                f"test split (--test-size {test_size:g}) needs at least 2 images per class. Add images "
                "to its folder, or remove the folder."
            )


def _print_class_counts(names, y, train, test):
    """Images per class: total, trained on, held out."""
    header = ("class", "images", "train", "test")
    rows = [
        (name, str((y == name).sum()), str((y[train] == name).sum()), str((y[test] == name).sum())) for name in names
    ]
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(4)]
    for row in (header, *rows):
        print("  ".join([row[0].ljust(widths[0]), *(cell.rjust(w) for cell, w in zip(row[1:], widths[1:]))]))
    print()


def _print_scores(y_true, y_pred, classes, test_size):
    """Accuracy, balanced accuracy and the classification report of the held-out split."""
    from sklearn import metrics

    missing = [c for c in classes if c not in set(y_true)]
    print(f"held-out test split ({len(y_true)} images, --test-size {test_size:g}):")
    print(f"accuracy           {metrics.accuracy_score(y_true, y_pred):.3f}")
    with warnings.catch_warnings():  # said below, in words
        warnings.filterwarnings("ignore", "y_pred contains classes not in y_true", UserWarning)
        print(f"balanced accuracy  {metrics.balanced_accuracy_score(y_true, y_pred):.3f}")
    print()
    print(metrics.classification_report(y_true, y_pred, labels=list(classes), zero_division=0))
    if missing:
        print(
            f"note: no test image of class {listing([repr(str(c)) for c in missing])}, so its "
            "scores are not measured: use a larger --test-size, or more images."
        )
