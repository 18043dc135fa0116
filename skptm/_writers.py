"""Per-image results written to files, one row per image with its path:
features (.npy, .csv, .parquet), cluster tables and class predictions."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

#: The formats :func:`write_features` writes, by suffix.
FEATURE_SUFFIXES = (".npy", ".csv", ".parquet")


def paths_sidecar(output):
    """The text file beside an ``.npy`` features file naming its rows' images.

    Examples
    --------
    >>> paths_sidecar("out/features.npy").as_posix()
    'out/features.paths.txt'
    """
    output = Path(output)
    return output.with_name(output.stem + ".paths.txt")


def write_features(output, paths, features, feature_names):
    """Write one row of features per image, in the format ``output``'s suffix names.

    Parameters
    ----------
    output : str or path
        ``.npy``: the features only, and their images' paths one a line in
        :func:`paths_sidecar`; ``.csv``: a ``path`` column, then one column
        per feature (9 significant digits: float32 round-trips);
        ``.parquet``: the same columns (needs pandas and pyarrow).
    paths : sequence of str
        The images, in row order.
    features : ndarray of shape (n_images, n_features)
    feature_names : sequence of str
        The column names (``get_feature_names_out()``).

    Raises
    ------
    ValueError
        If the suffix is not one of :data:`FEATURE_SUFFIXES`.
    """
    output = Path(output)
    suffix = output.suffix.lower()
    if len(paths) != len(features):
        raise ValueError(f"{len(paths)} paths for {len(features)} rows of features: they must match one to one.")
    if suffix == ".npy":
        with open(output, "wb") as file:  # np.save(name) would append ".npy" to "x.NPY"
            np.save(file, features)
        paths_sidecar(output).write_text("".join(f"{path}\n" for path in paths), encoding="utf-8")
    elif suffix == ".csv":
        with open(output, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["path", *feature_names])
            for path, row in zip(paths, features, strict=True):
                writer.writerow([path, *(f"{value:.9g}" for value in row)])
    elif suffix == ".parquet":
        import pandas as pd

        frame = pd.DataFrame(features, columns=list(feature_names))
        frame.insert(0, "path", list(paths))
        frame.to_parquet(output, index=False)
    else:
        raise ValueError(
            f"Cannot write features to {os.fspath(output)!r}: its suffix must be one of {', '.join(FEATURE_SUFFIXES)}."
        )


def write_cluster_table(output, paths, clusters, distances):
    """Write ``path,cluster,distance``, one row per image in input order.

    Parameters
    ----------
    output : str or path
        The CSV file to write.
    paths : sequence of str
    clusters : ndarray of int
        Each image's cluster; ``-1`` (written as an empty cell, as its
        distance) for an image that could not be read.
    distances : ndarray of float
        Each image's distance to its cluster's centre.
    """
    with open(output, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "cluster", "distance"])
        for path, cluster, distance in zip(paths, clusters, distances, strict=True):
            writer.writerow([path, *(("", "") if cluster < 0 else (int(cluster), f"{distance:.6f}"))])


def write_predictions(output, paths, classes, proba):
    """Write ``path,label,proba_<class>...``, one row per image in input order.

    Parameters
    ----------
    output : str or path
        The CSV file to write.
    paths : sequence of str
    classes : sequence
        The classifier's ``classes_``.
    proba : ndarray of shape (n_images, n_classes)
        ``predict_proba``'s rows; a row of NaN (an image that could not be
        read) gets an empty label.

    Returns
    -------
    labels : list
        Each image's most probable class, ``None`` where its row is NaN.
    """
    unreadable = np.isnan(proba).all(axis=1)
    best = np.argmax(np.nan_to_num(proba, nan=-1.0), axis=1)
    labels = [None if bad else classes[index] for bad, index in zip(unreadable, best, strict=True)]
    with open(output, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label", *(f"proba_{c}" for c in classes)])
        for path, label, row in zip(paths, labels, proba, strict=True):
            writer.writerow([path, "" if label is None else label, *(f"{p:.9g}" for p in row)])
    return labels
