"""``skptm fetch-weights``: download ImageNet weights into Keras's cache."""

from __future__ import annotations

from . import start_tensorflow
from ._arguments import HelpFormatter, add_backbone_names, add_quiet_option, backbone_names, examples


def add_parser(subparsers):
    """Add ``fetch-weights`` to ``subparsers``; returns its parser."""
    command = subparsers.add_parser(
        "fetch-weights",
        help="download ImageNet weights into Keras's cache",
        description="Download the ImageNet weights of the named networks into Keras's "
        "cache ($KERAS_HOME/models, default ~/.keras/models) and print that "
        "folder: run it where there is internet access, then copy the folder "
        "to machines without.",
        epilog=examples("skptm fetch-weights resnet50 mobilenet_v2"),
        formatter_class=HelpFormatter,
    )
    add_backbone_names(command, "every network (several GB)")
    add_quiet_option(command)
    return command


def run(args, parser):
    """Fetch the weights and print the folder holding them."""
    names = backbone_names(args, parser)
    start_tensorflow()
    from ..networks import fetch_weights

    print(fetch_weights(names, verbose=0 if args.quiet else 1))
    return 0
