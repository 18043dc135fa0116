"""Run a feature network over any input, batch by batch: the one extraction loop.

Used by :class:`~skptm.PretrainedFeatureTransformer` and by the fine-tuning
estimators' head phase, so that both read images and handle bad items the
same way.
"""

from __future__ import annotations

import warnings

import numpy as np

from ._batches import as_source, stream_batches
from ._images import ImageReader
from ._progress import Progress


class ImageReadWarning(UserWarning):
    """Some items could not be read and were given rows of NaN."""


def make_source(network, X, *, resize="stretch", interpolation="bilinear"):
    """The batch source for ``X`` as ``network`` takes it."""
    if not network.takes_images:
        return as_source(X, None)
    return as_source(X, ImageReader(network.input_size, resize, interpolation))


def extract_features(
    network,
    source,
    *,
    batch_size=32,
    n_jobs=None,
    on_error="raise",
    verbose=0,
):
    """Features of every item of ``source``, one row per item, in order.

    Parameters
    ----------
    network : FeatureNetwork
    source : a source from :func:`make_source`
    batch_size : int
        Images decoded and run through the network at once.
    n_jobs : int or None
        Decoding threads.
    on_error : {"raise", "nan"}
        ``"raise"``: the first unreadable item raises
        :class:`~skptm.ImageReadError`, naming its index and path.
        ``"nan"``: its row is NaN, and one :class:`ImageReadWarning` lists
        every failed item at the end.
    verbose : int
        ``>= 1`` draws a progress bar with images per second on stderr.

    Returns
    -------
    features : ndarray of shape (n_items, n_features), float32
    """
    n = len(source)
    features = np.empty((n, network.n_features), dtype=np.float32)
    failures = []
    progress = Progress(n) if verbose and n else None
    for batch in stream_batches(source, batch_size, n_jobs):
        if batch.failures and on_error == "raise":
            raise batch.failures[0].error() from batch.failures[0].cause
        features[batch.start : batch.stop] = network.predict(batch.data)
        for failure in batch.failures:
            features[failure.index] = np.nan
        failures.extend(batch.failures)
        if progress is not None:
            progress.update(batch.stop - batch.start)
    if progress is not None:
        progress.close()
    if failures:
        listing = "; ".join(failure.summary() for failure in failures)
        warnings.warn(
            f"{len(failures)} of {n} images could not be read; their rows are NaN. "
            f"Failed items (index (path): cause): {listing}",
            ImageReadWarning,
            stacklevel=3,
        )
    return features
