"""``skptm cluster``: k-means on the images' features, a contact sheet per
cluster, a map of all of them, and ``clusters.csv`` (:func:`skptm.cluster_images`)."""

from __future__ import annotations

import sys
from pathlib import Path

from .._clustering import MAP_METHODS, MIN_TSNE_IMAGES, RANDOM_WEIGHTS_NOTE
from . import start_tensorflow
from ._arguments import SOURCE_HELP, HelpFormatter, add_feature_options, add_if_offline_option, examples, params_for
from ._common import collect, listing, naming_unreadable_ourselves, print_table, require, run_offline_aware
from ._types import at_least, positive_int


def add_parser(subparsers):
    """Add ``cluster`` to ``subparsers``; returns its parser."""
    command = subparsers.add_parser(
        "cluster",
        help="group images by their features (k-means), with contact sheets",
        description=(
            "Compute every image's features as 'embed' does, L2-normalise them and group "
            "them with k-means. Writes into DIR (created if needed): clusters.csv (path, "
            "cluster, distance to the cluster's centre; one row per image in input order, "
            "cluster 0 the largest), cluster_00.png, cluster_01.png, ... (a contact sheet "
            "per cluster, nearest to its centre first) and overview.png (every image on a "
            "2-D map, badged with its cluster), then prints a summary. Needs matplotlib: "
            'pip install "skptm[plot]". In Python: skptm.cluster_images.'
        ),
        epilog=examples(
            "skptm cluster photos/ -k 4 -o clusters",
            "skptm cluster skptm/datasets/photos -k 4 -o clusters --if-offline random-weights",
        ),
        formatter_class=HelpFormatter,
    )
    command.add_argument("source", metavar="SRC", help=SOURCE_HELP)
    command.add_argument(
        "-k",
        "--clusters",
        dest="n_clusters",
        type=at_least(2),
        required=True,
        metavar="N",
        help="number of clusters (at least 2, at most the number of images)",
    )
    command.add_argument(
        "-o",
        "--output",
        dest="output_dir",
        metavar="DIR",
        required=True,
        help="folder to write into (created if needed)",
    )
    add_feature_options(command)
    command.add_argument(
        "--map",
        dest="map_method",
        choices=MAP_METHODS,
        default="tsne",
        help=f"how overview.png places the images (default: %(default)s; PCA for fewer than {MIN_TSNE_IMAGES} images)",
    )
    command.add_argument(
        "--max-per-sheet",
        type=positive_int,
        default=48,
        metavar="N",
        help="images per contact sheet at most, nearest to the centre first (default: %(default)s)",
    )
    command.add_argument("--seed", type=int, default=0, help="seeds k-means and t-SNE (default: %(default)s)")
    add_if_offline_option(command)
    return command


def run(args, parser):
    """Cluster the images of ``args.source`` and print a summary of the clusters."""
    require("matplotlib", "drawing the contact sheets", 'pip install "skptm[plot]"')
    paths = collect("cluster", args.source)
    if paths is None:
        return 2

    start_tensorflow()
    from .._clustering import cluster_images

    params = params_for(cluster_images, args)
    _draw_into_files_only()
    with naming_unreadable_ourselves():
        result = run_offline_aware(
            "cluster",
            args,
            params,
            lambda **params: cluster_images(paths, **params),
            "the results show the pipeline working, not what the images show.",
        )

    if result.unreadable:
        print(
            f"skptm cluster: {len(result.unreadable)} of {len(paths)} images could not be read and are left "
            f"out of the clusters: {listing(result.unreadable)}",
            file=sys.stderr,
        )
    if args.map_method == "tsne" and result.map_method == "PCA":
        print(
            f"skptm cluster: note: {len(paths) - len(result.unreadable)} images are too few for a t-SNE map "
            f"(it needs {MIN_TSNE_IMAGES}); overview.png uses PCA.",
            file=sys.stderr,
        )
    rows = [
        (cluster, len(members), ", ".join(Path(paths[i]).name for i in members[:3]))
        for cluster, members in enumerate(result.members)
    ]
    print_table(("cluster", "size", "nearest to the centre"), rows, right=(0, 1))
    if params["weights"] is None:
        print(f"({RANDOM_WEIGHTS_NOTE}: these clusters show the pipeline working, not what the images show)")
    print("wrote:")
    for path in result.files:
        print(f"  {path}")
    return 0


def _draw_into_files_only():
    """matplotlib on its file-only Agg backend (no window, no display needed),
    unless a caller of :func:`~skptm.cli.main` already uses pyplot."""
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")
