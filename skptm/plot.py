"""Pictures of images, feature maps and training: montage, embedding, history,
compare, and where a model looked (Grad-CAM heat maps).

Needs matplotlib (``pip install matplotlib``, or the ``plot`` extra). Each function returns the
matplotlib ``Figure`` it drew on, as scikit-learn's displays do, so it can be
shown in a notebook, changed, or saved with ``fig.savefig("sheet.png")``.
Images are read as the estimators read them (EXIF orientation, colour modes,
any input form); an unreadable one is drawn as a grey tile marked
"unreadable", never dropped.
"""

from __future__ import annotations

import math

import numpy as np

try:
    import matplotlib
    import matplotlib.pyplot as plt
    from matplotlib.offsetbox import AnnotationBbox, OffsetImage
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError('skptm.plot needs matplotlib: pip install "skptm[plot]"') from exc

from ._batches import as_source
from ._images import ImageReader, oriented_size

__all__ = ["compare", "embedding", "explain", "history", "montage", "overlay"]

_UNREADABLE_GREY = 200


def thumbnails(images_or_paths, size):
    """Square RGB uint8 thumbnails ``(n, size, size, 3)`` (letterboxed), and
    the indices of items that could not be read (grey)."""
    source = as_source(images_or_paths, ImageReader((size, size), resize="pad"))
    tiles = np.full((len(source), size, size, 3), _UNREADABLE_GREY, dtype=np.uint8)
    failed = []
    for index in range(len(source)):
        image, failure = source.read_one(index)
        if failure is not None:
            failed.append(index)
        else:
            tiles[index] = np.clip(np.round(image), 0, 255).astype(np.uint8)
    return tiles, failed


def montage(images_or_paths, labels=None, *, ncols=None, thumbnail_size=128, title=None):
    """A contact sheet: the images in a grid, each with its label.

    Parameters
    ----------
    images_or_paths : images
        Any form the estimators take: paths, PIL images, arrays.
    labels : sequence or None, default=None
        One caption per image (class, cluster, distance, ...).
    ncols : int or None, default=None
        Images per row; ``None`` makes the grid about square.
    thumbnail_size : int, default=128
        Side of each thumbnail in pixels (the image fits inside it).
    title : str or None, default=None

    Returns
    -------
    fig : matplotlib.figure.Figure
    """
    tiles, failed = thumbnails(images_or_paths, thumbnail_size)
    n = len(tiles)
    ncols = ncols or max(1, math.ceil(math.sqrt(n)))
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.6 * ncols, 1.75 * nrows + (0.4 if title else 0)), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k >= n:
            continue
        ax.imshow(tiles[k])
        caption = "" if labels is None else str(labels[k])
        if k in failed:
            caption = (caption + " " if caption else "") + "(unreadable)"
        ax.set_title(caption, fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def embedding(features, images_or_paths, *, method="pca", thumbnail_size=48, random_state=0, ax=None):
    """A 2-D map of a collection: each image's thumbnail at its coordinates.

    Parameters
    ----------
    features : array-like of shape (n_images, n_features)
        Feature vectors (e.g. from ``PretrainedFeatureTransformer``), or
        coordinates already in 2-D (two columns: used as they are).
    images_or_paths : images
        The images, in the same order.
    method : {"pca", "tsne"}, default="pca"
        How features become 2-D: scikit-learn's ``PCA``, or ``TSNE``
        (slower; neighbourhoods rather than directions).
    thumbnail_size : int, default=48
    random_state : int, default=0
        Seeds t-SNE.
    ax : matplotlib Axes or None, default=None
        Where to draw; ``None`` makes a new figure.

    Returns
    -------
    fig : matplotlib.figure.Figure
    """
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2:
        raise ValueError(f"features must be 2-D (n_images, n_features); got shape {features.shape}.")
    coordinates = _two_dimensional(features, method, random_state)
    tiles, _ = thumbnails(images_or_paths, thumbnail_size)
    if len(tiles) != len(coordinates):
        raise ValueError(f"{len(coordinates)} feature rows but {len(tiles)} images: pass them in the same order.")
    if ax is None:
        _, ax = plt.subplots(figsize=(9, 9))
    ax.scatter(coordinates[:, 0], coordinates[:, 1], s=2, alpha=0)  # sets the limits
    for tile, (x, y) in zip(tiles, coordinates, strict=True):
        ax.add_artist(AnnotationBbox(OffsetImage(tile, zoom=1.0), (x, y), frameon=False))
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"{len(tiles)} images, {'given coordinates' if features.shape[1] == 2 else method.upper()}")
    return ax.figure


def _two_dimensional(features, method, random_state):
    if features.shape[1] == 2:
        return features
    if method == "pca":
        from sklearn.decomposition import PCA

        return PCA(n_components=2, random_state=random_state).fit_transform(features)
    if method == "tsne":
        from sklearn.manifold import TSNE

        perplexity = tsne_perplexity(len(features))
        return TSNE(n_components=2, perplexity=perplexity, random_state=random_state).fit_transform(features)
    raise ValueError(f"method must be 'pca' or 'tsne'. Received: method={method!r}")


def tsne_perplexity(n_images):
    """The t-SNE perplexity for a map of ``n_images`` points.

    Perplexity is about the number of neighbours each point keeps close: a
    third of the other points, at most 30 (scikit-learn's default), at least
    1, and so always below ``n_images`` as ``TSNE`` requires.

    Examples
    --------
    >>> tsne_perplexity(16)
    5.0
    >>> tsne_perplexity(1000)
    30.0
    """
    return max(1.0, min(30.0, (n_images - 1) / 3))


def history(estimator):
    """Loss (and accuracy) of both training phases of a fitted fine-tuning estimator.

    Phase 1 (the head) and phase 2 (fine-tuning) are drawn one after the
    other on one epoch axis, the boundary marked; validation curves are
    dashed where a hold-out was used.

    Parameters
    ----------
    estimator : FineTunedClassifier or FineTunedRegressor
        Fitted (reads ``history_``).

    Returns
    -------
    fig : matplotlib.figure.Figure
    """
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(estimator, "history_")
    phases = [(name, estimator.history_.get(name) or {}) for name in ("head", "finetune")]
    metrics = [m for m in ("loss", "accuracy", "mean_absolute_error") if any(m in h for _, h in phases)]
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 3.6), squeeze=False)
    for ax, metric in zip(axes.flat, metrics, strict=True):
        start = 0
        for (name, values), colour in zip(phases, ("tab:blue", "tab:orange"), strict=True):
            train = values.get(metric, [])
            epochs = np.arange(start + 1, start + len(train) + 1)
            label = "phase 1: head" if name == "head" else "phase 2: fine-tuning"
            if len(train):
                ax.plot(epochs, train, "o-" if len(train) < 3 else "-", color=colour, label=label)
            validation = values.get(f"val_{metric}", [])
            if len(validation):
                ax.plot(epochs[: len(validation)], validation, "--", color=colour, label=f"{label} (validation)")
            if name == "head" and len(train) and any(h for n, h in phases if n == "finetune"):
                ax.axvline(start + len(train) + 0.5, color="grey", linestyle=":", label="phase boundary")
            start += len(train)
        ax.set_xlabel("epoch")
        ax.set_title(metric.replace("_", " "))
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


#: Bar colours by approach, as :func:`history` colours the phases: the linear
#: probe is phase 1's blue, fine-tuning phase 2's orange.
_APPROACH_COLOURS = {"raw pixels": "tab:grey", "linear probe": "tab:blue", "fine-tuning": "tab:orange"}


def compare(result, *, ax=None):
    """What :func:`skptm.compare` found: a horizontal bar per approach.

    Each bar is an approach's mean score over the folds, with its standard
    deviation as an error bar; its numbers and time are written right of
    the plot. A skipped approach keeps its row, marked as skipped. The
    dotted line is raw pixels' mean, the reference every other bar is
    measured against.

    Parameters
    ----------
    result : ComparisonResult
        What :func:`skptm.compare` returned.
    ax : matplotlib Axes or None, default=None
        Where to draw; ``None`` makes a new figure.

    Returns
    -------
    fig : matplotlib.figure.Figure
    """
    rows = list(result.table)
    if ax is None:
        _, ax = plt.subplots(figsize=(9, 1.4 + 0.45 * len(rows)))
    positions = np.arange(len(rows))[::-1]  # the first row on top
    ran = [row for row in rows if row.ran]
    low = min(0.0, *(row.mean - row.std for row in ran))
    high = max(row.mean + row.std for row in ran)
    margin = 0.03 * ((high - low) or 1.0)
    low = low - margin if low < 0 else low
    numbers = []  # right of the plot, as tick labels of a twin axis so that the layout makes room for them
    for position, row in zip(positions, rows, strict=True):
        if row.ran:
            colour = _APPROACH_COLOURS.get(row.approach, "tab:green")
            ax.barh(position, row.mean, xerr=row.std, color=colour, capsize=3, height=0.6)  # from 0
            seconds = "" if row.seconds is None else f", {row.seconds:.0f} s"
            words, colour = f"{row.mean:.3f} \N{PLUS-MINUS SIGN} {row.std:.3f}{seconds}", "black"
        else:
            words, colour = f"skipped ({row.skipped})", "grey"
        numbers.append((words, colour))
    ax.axvline(result.baseline.mean, color="black", linestyle=":", linewidth=1)
    if low < 0:
        ax.axvline(0, color="grey", linewidth=0.5)
    ax.set_yticks(positions)
    ax.set_yticklabels([row.label for row in rows], fontsize=8)
    ax.set_ylim(positions[-1] - 0.6, positions[0] + 0.6)
    beside = ax.twinx()
    beside.set_ylim(ax.get_ylim())
    beside.set_yticks(positions)
    beside.set_yticklabels([words for words, _ in numbers], fontsize=8)
    for label, (_, colour) in zip(beside.get_yticklabels(), numbers, strict=True):
        label.set_color(colour)
    beside.tick_params(axis="y", length=0)
    ax.set_xlim(low, high + margin)
    ax.set_xlabel(
        f"{result.scoring}: mean \N{PLUS-MINUS SIGN} std over {result.n_splits} folds (dotted: raw pixels' mean)"
    )
    title = "Which approach suits these images"
    if result.random_weights:
        title += "\nrandom weights \N{EM DASH} not image content"
    ax.set_title(title)
    ax.figure.tight_layout()
    return ax.figure


def explain(
    estimator, images, *, target=None, layer=None, ncols=None, alpha=0.5, cmap="inferno", thumbnail_size=128, title=None
):
    """Where a fitted model looked: each image with its Grad-CAM heat map overlaid.

    The maps of :func:`skptm.explain`, drawn over the images as
    :func:`montage` draws them, each titled with the class explained and
    its predicted probability (a regressor's: its prediction).

    Parameters
    ----------
    estimator : FineTunedClassifier or FineTunedRegressor
        Fitted.
    images : images
        Any form the estimators take: paths, PIL images, arrays.
    target : label, int, sequence or None, default=None
        What to explain, as for :func:`skptm.explain`: ``None`` is each
        image's predicted class.
    layer : str or None, default=None
        The backbone layer whose feature map is used, as for
        :func:`skptm.explain`; ``None`` is the backbone's output.
    ncols : int or None, default=None
        Images per row; ``None`` makes the grid about square.
    alpha : float, default=0.5
        Opacity of the heat map over the image.
    cmap : str, default="inferno"
        A matplotlib colormap; a perceptually uniform one ("inferno",
        "magma", "viridis", "turbo") reads as heat without inventing edges.
    thumbnail_size : int, default=128
        Side of each thumbnail in pixels (the image fits inside it).
    title : str or None, default=None

    Returns
    -------
    fig : matplotlib.figure.Figure

    Examples
    --------
    >>> import numpy as np
    >>> from skptm import FineTunedClassifier
    >>> from skptm import plot
    >>> rng = np.random.default_rng(0)
    >>> X = rng.integers(0, 256, (8, 48, 48, 3), dtype=np.uint8)
    >>> clf = FineTunedClassifier("mobilenet_v2", weights=None, input_size=48,
    ...                           unfreeze=0, random_state=0).fit(X, ["cat", "dog"] * 4)
    >>> fig = plot.explain(clf, X[:4], ncols=4)
    >>> len(fig.axes)
    4
    >>> fig.savefig("where_it_looked.png")  # doctest: +SKIP
    """
    from ._classifier import FineTunedClassifier
    from ._explain import grad_cam

    result = grad_cam(estimator, images, target=target, layer=layer)
    if isinstance(estimator, FineTunedClassifier):
        captions = [f"{label} ({score:.2f})" for label, score in zip(result.targets, result.scores, strict=True)]
    else:
        several = estimator._n_outputs > 1
        captions = [
            (f"output {output}: " if several else "") + f"{score:.3g}"
            for output, score in zip(result.targets, result.scores, strict=True)
        ]
    overlays = [overlay(result.items[k], heat_map, alpha=alpha, cmap=cmap) for k, heat_map in enumerate(result.maps)]
    return montage(overlays, captions, ncols=ncols, thumbnail_size=thumbnail_size, title=title)


def overlay(image, heat_map, *, alpha=0.5, cmap="inferno"):
    """An image with a heat map blended over it, at the image's own size.

    Parameters
    ----------
    image : path, PIL image or array
        One image, in any form the estimators take; read as they read it
        (EXIF orientation, colour modes), at its own size.
    heat_map : ndarray of shape (height, width)
        Values in [0, 1] (e.g. from :func:`skptm.explain`), the image's size.
    alpha : float, default=0.5
        Opacity of the coloured map.
    cmap : str, default="inferno"
        A matplotlib colormap.

    Returns
    -------
    rgb : ndarray of shape (height, width, 3), uint8
        ``(1 - alpha) * image + alpha * cmap(heat_map)``.

    Examples
    --------
    >>> import numpy as np
    >>> heat = np.zeros((20, 30), np.float32)
    >>> overlay(np.full((20, 30, 3), 255, np.uint8), heat).shape
    (20, 30, 3)
    """
    heat_map = np.asarray(heat_map, dtype=np.float32)
    if heat_map.ndim != 2:
        raise ValueError(f"heat_map must be 2-D (height, width); got shape {heat_map.shape}.")
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must lie in [0, 1]. Received: alpha={alpha!r}")
    size = oriented_size(image)
    if size != heat_map.shape:
        raise ValueError(
            f"heat_map has shape {heat_map.shape} but the image is {size[0]}x{size[1]} (height x width): "
            "pass the map skptm.explain gave for this image."
        )
    rgb = ImageReader(size)(image)  # at its own size: nothing is resampled
    colours = matplotlib.colormaps[cmap](np.clip(heat_map, 0.0, 1.0))[..., :3] * 255.0
    blended = (1.0 - alpha) * rgb.astype(np.float32) + alpha * colours
    return np.clip(np.round(blended), 0, 255).astype(np.uint8)
