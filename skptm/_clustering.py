"""Group a collection of images by their features: k-means on L2-normalised
pretrained features, with a contact sheet per cluster and a map of them all."""

from __future__ import annotations

import math
import os
import re
import warnings
from numbers import Integral
from pathlib import Path

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.preprocessing import normalize
from sklearn.utils import Bunch

from ._io import check_writable_folder
from ._validation import listing
from ._writers import write_cluster_table

#: How ``overview.png`` places the images in 2-D.
MAP_METHODS = ("tsne", "pca")

#: Fewer images than this are mapped with PCA: a t-SNE map of a handful shows nothing.
MIN_TSNE_IMAGES = 5

#: What the pictures drawn on random weights say about themselves.
RANDOM_WEIGHTS_NOTE = "random weights \N{EM DASH} not image content"


def cluster_images(
    paths,
    n_clusters,
    *,
    output_dir=None,
    backbone="resnet50",
    weights="imagenet",
    input_size=None,
    pooling="avg",
    layer=None,
    resize="auto",
    batch_size=32,
    precision="float32",
    engine="auto",
    cache=None,
    n_jobs=None,
    on_error="nan",
    map_method="tsne",
    max_per_sheet=48,
    random_state=0,
    verbose=0,
):
    """Group images by what a pretrained network sees in them (k-means).

    Each image's features (:class:`~skptm.PretrainedFeatureTransformer`) are
    scaled to unit length, then clustered with ``KMeans``. Unit length rather
    than standardised: the direction of a pooled feature vector carries what
    the image shows (its length mostly contrast and size), and on unit
    vectors Euclidean k-means is k-means on cosine distance. Clusters are
    numbered by size, cluster 0 the largest.

    Parameters
    ----------
    paths : sequence of str or path
        The image files.
    n_clusters : int
        Number of clusters, from 2 to the number of distinct readable images.
    output_dir : str, path or None, default=None
        Where to write (created if needed): ``clusters.csv`` (path,
        cluster, distance; one row per image in input order),
        ``cluster_00.png``... (a contact sheet per cluster, nearest to its
        centre first) and ``overview.png`` (every image on a 2-D map, badged
        with its cluster); an earlier run's sheets beyond this run's
        clusters are removed, and a folder that cannot be written is named
        before any work. Needs matplotlib. ``None`` writes nothing.
    backbone, weights, input_size, pooling, layer, resize, batch_size, \
precision, engine, cache, n_jobs
        The feature extractor's parameters, as for
        :class:`~skptm.PretrainedFeatureTransformer`.
    on_error : {"nan", "raise"}, default="nan"
        An unreadable image: ``"nan"`` leaves it out of the clusters (its
        cluster is -1, with an :class:`~skptm.ImageReadWarning`);
        ``"raise"`` raises :class:`~skptm.ImageReadError`.
    map_method : {"tsne", "pca"}, default="tsne"
        How ``overview.png`` places the images; PCA for fewer than
        :data:`MIN_TSNE_IMAGES` images.
    max_per_sheet : int, default=48
        Images per contact sheet at most, nearest to the centre first.
    random_state : int, default=0
        Seeds k-means and the map.
    verbose : int, default=0
        ``1`` shows a progress bar while computing features.

    Returns
    -------
    result : :class:`~sklearn.utils.Bunch`
        table : dict of ndarray
            Columns ``path``, ``cluster`` (-1 for an unreadable image) and
            ``distance`` (to its cluster's centre; NaN if unreadable), one
            row per image in input order: ``pandas.DataFrame(result.table)``.
        features : ndarray of shape (n_images, n_features)
            The features before normalising (rows of NaN if unreadable).
        members : list of ndarray
            For each cluster, the row indices of its images, nearest to its
            centre first.
        unreadable : list of str
            The images that could not be read.
        files : list of Path
            The files written, ``clusters.csv`` first.
        map_method : str or None
            How ``overview.png`` was made (``"t-SNE, perplexity 5"``,
            ``"PCA"``); ``None`` without ``output_dir``.

    Raises
    ------
    ValueError
        If ``n_clusters`` is below 2 or above the number of readable images.

    Examples
    --------
    >>> from skptm import cluster_images
    >>> from skptm.datasets import load_sample_photos
    >>> photos = load_sample_photos()
    >>> result = cluster_images(photos.paths, 4, output_dir="clusters")  # doctest: +SKIP
    >>> result.table["cluster"]  # doctest: +SKIP
    array([1, 2, 1, 0, ...])
    """
    from ._transformer import PretrainedFeatureTransformer

    # Checked before the network is built or any image decoded.
    paths = _checked_paths(paths)
    if not isinstance(n_clusters, Integral) or isinstance(n_clusters, bool) or n_clusters < 2:
        raise ValueError(f"n_clusters must be an int of at least 2. Received: n_clusters={n_clusters!r}")
    if not isinstance(max_per_sheet, Integral) or isinstance(max_per_sheet, bool) or max_per_sheet < 1:
        raise ValueError(f"max_per_sheet must be an int of at least 1. Received: max_per_sheet={max_per_sheet!r}")
    if n_clusters > len(paths):
        raise ValueError(f"{n_clusters} clusters asked for: more clusters than there are images ({len(paths)}).")
    if map_method not in MAP_METHODS:
        raise ValueError(f"map_method must be one of {MAP_METHODS}. Received: map_method={map_method!r}")
    folder = None if output_dir is None else Path(output_dir)
    if folder is not None:
        if folder.exists() and not folder.is_dir():
            raise NotADirectoryError(20, "The output must be a folder; this is a file", str(folder))
        check_writable_folder(folder)
        from . import plot  # noqa: F401 - fails now, with an install hint, if matplotlib is missing

    transformer = PretrainedFeatureTransformer(
        backbone=backbone,
        weights=weights,
        input_size=input_size,
        pooling=pooling,
        layer=layer,
        resize=resize,
        batch_size=batch_size,
        precision=precision,
        engine=engine,
        cache=cache,
        n_jobs=n_jobs,
        on_error=on_error,
        verbose=verbose,
    )
    transformer.fit(None)  # builds the network (or fails offline) before any image is decoded
    features = transformer.transform(paths)
    readable = np.flatnonzero(~np.isnan(features).all(axis=1))
    unreadable = [paths[i] for i in np.setdiff1d(np.arange(len(paths)), readable)]
    if n_clusters > len(readable):
        named = listing(unreadable)
        raise ValueError(
            f"{n_clusters} clusters asked for: more clusters than there are readable images ({len(readable)}); "
            f"{len(unreadable)} of {len(paths)} images could not be read and are left out of the clusters: {named}."
        )

    # float64: normalize leaves float32 rows shorter than about 1e-6 as they
    # are (a random network's features can be 1e-10 long).
    unit = normalize(features[readable].astype(np.float64))
    with warnings.catch_warnings():  # said below, in words
        warnings.filterwarnings("ignore", "Number of distinct clusters", ConvergenceWarning)
        labels, distances = _kmeans(unit, n_clusters, random_state)
    found = len(np.unique(labels))
    if found < n_clusters:
        raise ValueError(
            f"{n_clusters} clusters asked for, but k-means found only {found} distinct groups among the "
            f"{len(readable)} readable images (copies of one image fall together): ask for at most {found} clusters."
        )
    table = {
        "path": np.array(paths, dtype=object),
        "cluster": np.full(len(paths), -1),
        "distance": np.full(len(paths), np.nan),
    }
    table["cluster"][readable], table["distance"][readable] = labels, distances
    members = [readable[_nearest_first(labels, distances, cluster)] for cluster in range(n_clusters)]
    result = Bunch(table=table, features=features, members=members, unreadable=unreadable, files=[], map_method=None)
    if folder is None:
        return result

    folder.mkdir(parents=True, exist_ok=True)
    write_cluster_table(folder / "clusters.csv", paths, table["cluster"], table["distance"])
    result.files.append(folder / "clusters.csv")
    note = RANDOM_WEIGHTS_NOTE if weights is None else None
    result.files.extend(_write_sheets(folder, table, members, max_per_sheet, note))
    coordinates, result.map_method = _map_coordinates(unit, map_method, random_state)
    overview = folder / "overview.png"
    _write_overview(overview, coordinates, [paths[i] for i in readable], labels, n_clusters, result.map_method, note)
    result.files.append(overview)
    return result


def _checked_paths(paths) -> list:
    """``paths`` as a list of str: files, which the contact sheets show."""
    if isinstance(paths, (str, os.PathLike)):
        raise TypeError(
            f"Expected a collection of image paths, got the single path {os.fspath(paths)!r}. For a folder, "
            "pass skptm.load_image_folder(folder).paths or a list of its files; for one image, [path]."
        )
    paths = list(paths)
    for index, path in enumerate(paths):
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(
                f"cluster_images takes image files, whose contact sheets it draws; item {index} is a "
                f"{type(path).__name__}. Save the images as files, or cluster PretrainedFeatureTransformer's "
                "features with sklearn.cluster.KMeans."
            )
    return [os.fspath(path) for path in paths]


def _kmeans(features, n_clusters, random_state):
    """k-means labels, renumbered by size (cluster 0 the largest), and each
    row's distance to its cluster's centre."""
    from sklearn.cluster import KMeans

    model = KMeans(n_clusters=n_clusters, n_init=10, random_state=random_state).fit(features)
    distances = model.transform(features)[np.arange(len(features)), model.labels_]
    sizes = np.bincount(model.labels_, minlength=n_clusters)
    old_of_new = np.argsort(-sizes, kind="stable")
    renumber = np.empty(n_clusters, dtype=int)
    renumber[old_of_new] = np.arange(n_clusters)
    return renumber[model.labels_], distances


def _nearest_first(labels, distances, cluster):
    """Indices of ``cluster``'s rows, nearest to its centre first."""
    members = np.flatnonzero(labels == cluster)
    return members[np.argsort(distances[members], kind="stable")]


def _short(name, width=16):
    """A file name cut to ``width`` characters, keeping its suffix."""
    if len(name) <= width:
        return name
    stem, dot, suffix = name.rpartition(".")
    if not dot or len(suffix) > 5:
        return name[: width - 1] + "\N{HORIZONTAL ELLIPSIS}"
    return stem[: width - len(suffix) - 2] + "\N{HORIZONTAL ELLIPSIS}." + suffix


def _write_sheets(folder, table, members, max_per_sheet, note):
    """One contact sheet per cluster, ``cluster_00.png``...: its images nearest
    to the centre first, each captioned with its file name and distance."""
    import matplotlib.pyplot as plt

    from . import plot

    digits = max(2, len(str(len(members) - 1)))
    written = []
    for cluster, indices in enumerate(members):
        shown = indices[:max_per_sheet]
        title = f"cluster {cluster}: {len(indices)} image{'' if len(indices) == 1 else 's'}"
        if len(indices) > len(shown):
            title += f" ({len(shown)} shown, {len(indices) - len(shown)} left out)"
        title += "\nnearest to its centre first" + (f"\n{note}" if note else "")
        # One line per caption, so that neighbouring captions cannot overlap.
        captions = [f"{_short(Path(table['path'][i]).name)} {table['distance'][i]:.3f}" for i in shown]
        ncols = max(3, math.ceil(math.sqrt(len(shown))))  # wide enough for the title
        fig = plot.montage(list(table["path"][shown]), labels=captions, ncols=ncols, title=title)
        width, height = fig.get_size_inches()  # room for the title's lines and the captions
        fig.set_size_inches(width, height + 0.25 * title.count("\n") + 0.15 * math.ceil(len(shown) / ncols))
        fig.tight_layout()
        path = folder / f"cluster_{cluster:0{digits}d}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    for earlier in folder.glob("cluster_*.png"):  # an earlier run's sheets, beyond this run's clusters
        if re.fullmatch(r"cluster_\d+\.png", earlier.name) and earlier not in written:
            earlier.unlink()
    return written


def _map_coordinates(features, method, random_state):
    """2-D coordinates of the rows, and how they were made: t-SNE (with
    :func:`skptm.plot.tsne_perplexity`), or PCA for a set too small for it."""
    if method == "tsne" and len(features) >= MIN_TSNE_IMAGES:
        from sklearn.manifold import TSNE

        from .plot import tsne_perplexity

        perplexity = tsne_perplexity(len(features))
        tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=random_state)
        return tsne.fit_transform(features), f"t-SNE, perplexity {perplexity:.3g}"
    from sklearn.decomposition import PCA

    return PCA(n_components=2, random_state=random_state).fit_transform(features), "PCA"


def _write_overview(path, coordinates, paths, labels, n_clusters, how, note):
    """``overview.png``: every image's thumbnail on the 2-D map, with a badge
    in its cluster's colour."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    from . import plot

    fig = plot.embedding(coordinates, paths)
    ax = fig.axes[0]
    colours = plt.get_cmap("tab20" if n_clusters > 10 else "tab10")
    for (x, y), cluster in zip(coordinates, labels, strict=True):
        ax.annotate(
            str(cluster),
            (x, y),
            xytext=(-17, -17),
            textcoords="offset points",
            ha="center",
            va="center",
            fontsize=7,
            zorder=5,
            bbox={"boxstyle": "round,pad=0.2", "fc": colours(cluster % colours.N), "ec": "none"},
        )
    if n_clusters <= 20:
        ax.legend(
            handles=[Patch(color=colours(c % colours.N), label=f"cluster {c}") for c in range(n_clusters)],
            fontsize=7,
            loc="best",
        )
    ax.set_title(f"{len(paths)} images in {n_clusters} clusters ({how})" + (f"\n{note}" if note else ""))
    fig.savefig(path, dpi=100)
    plt.close(fig)
