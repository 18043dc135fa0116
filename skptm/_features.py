"""Run a feature network over any input, batch by batch: the one extraction loop.

Used by :class:`~skptm.PretrainedFeatureTransformer` and by the fine-tuning
estimators' head phase, so that both read images and handle bad items the
same way.
"""

from __future__ import annotations

import warnings

import numpy as np

from ._batches import as_source, stream_batches
from ._images import AUTO, ImageReader
from .exceptions import ImageReadWarning


def make_source(network, X, *, resize="auto", interpolation="auto"):
    """The batch source for ``X`` as ``network`` takes it: images resized as
    ``resize`` and ``interpolation`` say, ``"auto"`` standing for the
    backbone's own (:attr:`FeatureNetwork.resizing
    <skptm.networks.FeatureNetwork.resizing>`)."""
    if not network.takes_images:
        return as_source(X, None)
    own_resize, own_interpolation = network.resizing
    resize = own_resize if resize == AUTO else resize
    interpolation = own_interpolation if interpolation == AUTO else interpolation
    return as_source(X, ImageReader(network.input_size, resize, interpolation))


def extract_features(
    network,
    source,
    *,
    batch_size=32,
    n_jobs=None,
    on_error="raise",
    verbose=0,
    cache=None,
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
    cache : str, path or None
        A feature cache directory (:mod:`skptm._feature_cache`): items whose
        features it holds are not computed again; new ones are stored.
    verbose : int
        ``>= 1`` draws a progress bar with images per second (``tqdm``: a
        widget in notebooks, text on a terminal).

    Returns
    -------
    features : ndarray of shape (n_items, n_features), float32
    """
    from tqdm.auto import tqdm

    n = len(source)
    features = np.empty((n, network.n_features), dtype=np.float32)
    failures = []
    todo, keys, store = None, None, None
    if cache is not None and n:
        from ._feature_cache import open_cache

        store = open_cache(cache, network, source)
    if store is not None:
        keys = store.keys(source, n_jobs)
        todo = np.flatnonzero(~store.load_into(keys, features, n_jobs))
    done = 0 if todo is None else n - len(todo)
    with tqdm(total=n, initial=done, unit=" images", disable=not (verbose and n)) as progress:
        for batch in stream_batches(source, batch_size, n_jobs, indices=todo):
            if on_error == "raise":
                batch.raise_first_failure()
            rows = _rows(batch.indices)
            features[rows] = predict_padded(network, batch.data, batch_size)
            for failure in batch.failures:
                features[failure.index] = np.nan
            failures.extend(batch.failures)
            if store is not None:
                failed = {failure.index for failure in batch.failures}
                for index in batch.indices:
                    if index not in failed:
                        store.store(keys[index], features[index])
            progress.update(len(batch.indices))
    if failures:
        described = [(failure.index, failure.path, failure.described_cause) for failure in failures]
        warnings.warn(ImageReadWarning.about(described, n), stacklevel=3)
    return features


def _rows(indices):
    return slice(indices.start, indices.stop) if isinstance(indices, range) else indices


#: The smallest padded batch: a last partial batch is padded to 8, 16, 32, ...
#: rows, so that a few compiled shapes serve every call.
MIN_PADDED_ROWS = 8

#: How far a row's features may move when it is computed in another batch
#: (another size, other rows beside it, another position): relative to the
#: row's largest absolute feature. oneDNN's kernels block and order their
#: sums by batch layout, so the last bits of a float32 sum can differ:
#: measured at most 5e-7 on AMD Zen 3 (AVX2), bit-identical on AMD Zen 4
#: (AVX-512) for batches of 8 to 64. The same batch always gives the same bits.
BATCHING_RTOL = 1e-5


def padded_rows(n, batch_size):
    """Rows a batch of ``n`` items is padded to: ``batch_size`` for a full
    batch; for a last partial one, the next power of two from
    :data:`MIN_PADDED_ROWS` (at most ``batch_size``)."""
    rows = MIN_PADDED_ROWS
    while rows < n:
        rows *= 2
    return min(rows, batch_size)


def predict_padded(network, data, batch_size):
    """``network.predict`` on a batch padded with zeros to :func:`padded_rows` rows.

    A few shapes serve every call (``batch_size``, and 8, 16, 32, ... below
    it), so a last partial batch or a new fold size never compiles a new
    function, and a partial batch costs less than twice its own size. A row's
    output is the same, within :data:`BATCHING_RTOL`, whichever rows it was
    computed with; the same call always gives the same bits.
    """
    n = len(data)
    rows = padded_rows(n, batch_size)
    if n < rows:
        padding = np.zeros((rows - n, *data.shape[1:]), dtype=data.dtype)
        data = np.concatenate([data, padding])
    return network.predict(data)[:n]
