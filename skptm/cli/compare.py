"""``skptm compare``: cross-validate raw pixels, linear probes and fine-tuning
on a folder of class sub-folders, and say which suits it (:func:`skptm.compare`)."""

from __future__ import annotations

import sys

from . import UserError, start_tensorflow
from ._arguments import (
    HelpFormatter,
    add_batch_options,
    add_if_offline_option,
    add_input_size_option,
    add_quiet_option,
    examples,
    params_for,
)
from ._common import output_file, require, run_offline_aware
from ._types import at_least, positive_int, positive_number, unfreeze_depth, weights


def add_parser(subparsers):
    """Add ``compare`` to ``subparsers``; returns its parser."""
    command = subparsers.add_parser(
        "compare",
        help="which approach suits these images: raw pixels, linear probes or fine-tuning",
        description=(
            "Cross-validate, on the same folds, a linear model on raw pixels (16x16), a linear "
            "probe (features, StandardScaler, logistic regression) on each of a few networks, "
            "and fine-tuning of the best probe's network at a few depths; print a table of "
            "their scores and times and a recommendation that follows from them. SRC is a "
            "folder holding one sub-folder of images per class. In Python: skptm.compare."
        ),
        epilog=examples(
            "skptm compare photos/ --time-budget 600 -o report.png",
            "skptm compare photos/ --backbones mobilenet_v2 efficientnet_b0 --unfreeze 8 --cv 3",
        ),
        formatter_class=HelpFormatter,
    )
    command.add_argument("source", metavar="SRC", help="a folder holding one sub-folder of images per class")
    command.add_argument(
        "--backbones",
        nargs="+",
        metavar="NAME",
        default=None,
        help="networks for the linear probes (default: three light ones of different families, "
        "the fastest known on this machine; see 'skptm calibrate')",
    )
    finetuning = command.add_mutually_exclusive_group()
    finetuning.add_argument(
        "--unfreeze",
        nargs="+",
        type=unfreeze_depth,
        default=[8, 20],
        metavar="N",
        help="depths fine-tuning tries: counts of top layers with weights, 'all', or the "
        "name of the lowest layer to train (default: 8 20)",
    )
    finetuning.add_argument(
        "--no-finetune",
        dest="unfreeze",
        action="store_const",
        const=[],
        help="compare raw pixels and linear probes only",
    )
    command.add_argument(
        "--finetune-epochs",
        type=positive_int,
        default=10,
        metavar="N",
        help="epochs of fine-tuning per depth and fold (default: %(default)s)",
    )
    command.add_argument("--cv", type=at_least(2), default=5, metavar="K", help="folds (default: %(default)s)")
    command.add_argument(
        "--time-budget",
        type=positive_number,
        default=None,
        metavar="SECONDS",
        help="approaches run cheapest first; those that would start after SECONDS are "
        "skipped and listed as skipped (default: no limit)",
    )
    command.add_argument(
        "-w",
        "--weights",
        type=weights,
        default="imagenet",
        help="'imagenet' (default), 'none' for random weights, or the path of a weights file",
    )
    add_input_size_option(command, "resize images to SIZE (224, or 224x192); default: each network's own size")
    command.add_argument(
        "--cache",
        metavar="DIR",
        default=None,
        help="keep features per image in DIR for later runs (default: a temporary folder, removed at the end)",
    )
    add_batch_options(command)
    command.add_argument(
        "-o",
        "--output",
        metavar="PNG",
        default=None,
        help="also draw the scores as a bar chart into this file (needs matplotlib)",
    )
    command.add_argument("--seed", type=int, default=0, help="seeds the folds and fine-tuning (default: %(default)s)")
    add_if_offline_option(command)
    add_quiet_option(command, "no progress bar")
    return command


def run(args, parser):
    """Compare the approaches on ``args.source``; print the table and the recommendation."""
    if args.output is not None:
        require("matplotlib", "drawing the chart (-o)", 'pip install "skptm[plot]"')
        output_file(args.output)
    from .._backbones import get_backbone_spec
    from ..datasets import load_image_folder

    for name in args.backbones or ():
        get_backbone_spec(name)  # a misspelt name fails before TensorFlow starts
    data = load_image_folder(args.source, random_state=args.seed)
    if len(data.target_names) < 2:
        raise UserError(f"comparing needs at least 2 class sub-folders; found {data.target_names}.")

    start_tensorflow()
    from .._compare import compare

    params = params_for(compare, args)
    labels = [data.target_names[i] for i in data.target]
    result = run_offline_aware(
        "compare",
        args,
        params,
        lambda **params: compare(data.paths, labels, **params),
        "the scores show the pipeline working, not what pretrained networks make of the images.",
    )

    print(result.format_table())
    print()
    print(result.recommendation)
    if args.output is not None:
        _draw(result, args.output)
        print(f"wrote {args.output}")
    return 0


def _draw(result, path):
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:  # no window, no display needed
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = result.plot()
    fig.savefig(path, dpi=100)
    plt.close(fig)
