"""``skptm embed``: one feature vector per image, written with its path."""

from __future__ import annotations

import sys
from pathlib import Path

from .._writers import FEATURE_SUFFIXES
from . import start_tensorflow
from ._arguments import SOURCE_HELP, HelpFormatter, add_feature_options, examples, params_for
from ._common import collect, listing, naming_unreadable_ourselves, output_file, require, unreadable


def add_parser(subparsers):
    """Add ``embed`` to ``subparsers``; returns its parser."""
    command = subparsers.add_parser(
        "embed",
        help="compute a feature vector for every image",
        description=(
            "Compute one feature vector per image with a pretrained network and write "
            "them, one row per image, with its path. A .npy output holds the features "
            "only; their images' paths go, one a line in the same order, to a text file "
            "beside it (features.npy -> features.paths.txt). A .csv output has a 'path' "
            "column, then one column per feature; .parquet the same (needs pandas and "
            "pyarrow)."
        ),
        epilog=examples("skptm embed photos/ -o features.parquet --backbone resnet50"),
        formatter_class=HelpFormatter,
    )
    command.add_argument("source", metavar="SRC", help=SOURCE_HELP)
    command.add_argument(
        "-o", "--output", metavar="OUT", required=True, help=f"where to write: a {', '.join(FEATURE_SUFFIXES)} file"
    )
    add_feature_options(command)
    return command


def run(args, parser):
    """Compute the features of the images of ``args.source`` and write them to ``args.output``."""
    output = Path(args.output)
    if output.suffix.lower() not in FEATURE_SUFFIXES:
        parser.error(f"cannot write {str(output)!r}: the output's suffix must be one of {', '.join(FEATURE_SUFFIXES)}.")
    if output.suffix.lower() == ".parquet":
        for module in ("pandas", "pyarrow"):
            require(module, "writing .parquet", "pip install pandas pyarrow, or write .npy or .csv instead")
    output_file(output)
    paths = collect("embed", args.source)
    if paths is None:
        return 2

    start_tensorflow()
    from .._transformer import PretrainedFeatureTransformer
    from .._writers import write_features

    transformer = PretrainedFeatureTransformer(**params_for(PretrainedFeatureTransformer, args))
    with naming_unreadable_ourselves():
        features = transformer.transform(paths)
    write_features(output, paths, features, [str(name) for name in transformer.get_feature_names_out()])
    failed = unreadable(paths, features)
    if failed:
        print(
            f"skptm embed: {len(failed)} of {len(paths)} images could not be read; their rows "
            f"are NaN: {listing(failed)}",
            file=sys.stderr,
        )
    print(f"skptm embed: wrote {len(paths)} x {features.shape[1]} features to {output}", file=sys.stderr)
    return 0
