"""Featurise Dask collections of images across a cluster.

Plain Dask already does most of the work: ``map_blocks`` over a Dask array
of images and ``map_partitions`` over a Dask DataFrame column of paths both
run an skptm estimator's ``transform`` on the workers, and joblib's Dask
backend runs ``GridSearchCV`` there (see ``docs/dask.md``). What it leaves
awkward is the bookkeeping around that call, which :func:`transform` does:

* the output of a block has other axes than its input (``drop_axis``,
  ``chunks``, ``meta``), a Bag has no array form, a DataFrame wants the
  feature names as columns and its own index;
* an unreadable item is reported by its position in its block, not in the
  input;
* ``map_blocks(estimator.transform)`` puts the estimator into every task,
  and Dask unpickles a graph's objects in the scheduler and in each
  worker's event loop. A :class:`~skptm.PretrainedFeatureTransformer`
  pickles to a few hundred bytes and unpickles for free, but a fitted
  fine-tuned estimator carries the weights training changed (megabytes)
  and rebuilds its model when unpickled. Here it is pickled once and
  travels as bytes, one key of the graph: it reaches each worker once and
  is unpickled once per worker process, inside a task, so a worker that
  cannot restore it (other base weights on that machine) fails the
  computation with the reason.

No weights travel with the tasks: estimators pickle as their parameters
(plus, once fine-tuned, the weights training changed), and every worker
process builds a network once and keeps it in its own cache.
"""

from __future__ import annotations

import pickle
import threading
import warnings
from collections import OrderedDict

try:
    import cloudpickle
    import dask
    import dask.array as da
    import dask.bag as db
    import dask.dataframe as dd
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        'skptm.dask needs Dask with its array, bag and dataframe parts: pip install "skptm[dask]"'
    ) from exc

import numpy as np

from ._io import content_hash
from .exceptions import ImageReadError, ImageReadWarning

__all__ = ["transform"]

#: Estimators each worker process keeps unpickled, most recently used last.
MAX_CACHED_ESTIMATORS = 4


def transform(estimator, X):
    """Compute the features of every item of a Dask collection, lazily.

    Each task runs ``estimator.transform`` on one block or partition, on
    whichever scheduler computes the result (a ``distributed`` cluster, or
    Dask's local threads). The estimator is pickled once, here, and goes
    into the graph as one key: each worker receives it once, unpickles it
    once and reuses it for all its tasks, and builds the network once into
    its process cache.

    Parameters
    ----------
    estimator : skptm estimator
        A :class:`~skptm.PretrainedFeatureTransformer`, or a fitted
        :class:`~skptm.FineTunedClassifier` or
        :class:`~skptm.FineTunedRegressor` (their ``transform`` gives the
        fine-tuned backbone's features). Its ``on_error`` applies on the
        workers.
    X : dask Array, dask Bag, dask Series or single-column dask DataFrame
        The images, in any form the estimator takes:

        * an Array of images ``(N, H, W[, C])`` (rechunked so that only
          axis 0 is split), a 1-D Array of paths, or, for a tabular custom
          backbone, a 2-D table;
        * a Bag of paths, encoded bytes, PIL images or arrays;
        * a Series (or one-column DataFrame) of paths, bytes, PIL images
          or arrays.

    Returns
    -------
    features : dask Array or dask DataFrame
        One row per item, in input order, float32. A dask Array of shape
        ``(N, n_features)`` for Array and Bag input, with one block per
        input block or partition and known chunk sizes (for a Bag, the
        items of each partition are counted first: a quick pass over the
        Bag, which decodes no image). A dask DataFrame for Series and
        DataFrame input, with the estimator's ``get_feature_names_out()``
        as columns and the input's index and divisions.

    Raises
    ------
    TypeError
        If ``X`` is not one of the Dask collections above, or the estimator
        has no ``transform``.
    ImageReadError
        On compute, for an unreadable item with ``on_error="raise"``. Its
        ``index`` is the item's position in ``X`` for Array and Bag input,
        its index label for Series and DataFrame input. With
        ``on_error="nan"`` the item's row is NaN, and the
        :class:`~skptm.ImageReadWarning` goes to the worker's log.

    Notes
    -----
    The width of the output is read in the calling process with
    ``estimator.get_feature_names_out()``, which builds the network there
    too (once; it is cached), so ImageNet weights must be in this process's
    Keras cache as well as in every worker's.

    Examples
    --------
    >>> import dask.array as da
    >>> import numpy as np
    >>> import skptm.dask
    >>> from skptm import PretrainedFeatureTransformer
    >>> extractor = PretrainedFeatureTransformer("mobilenet_v2", weights=None, input_size=32)
    >>> images = da.from_array(np.zeros((10, 32, 32, 3), np.uint8), chunks=(4, 32, 32, 3))
    >>> features = skptm.dask.transform(extractor, images)
    >>> features.chunks
    ((4, 4, 2), (1280,))
    >>> features.compute().shape  # on Dask's local threads here
    (10, 1280)

    A column of paths, on a cluster:

    >>> import dask.dataframe as dd
    >>> from distributed import Client
    >>> client = Client("tcp://scheduler:8786")  # doctest: +SKIP
    >>> frame = dd.read_csv("images.csv")  # doctest: +SKIP
    >>> features = skptm.dask.transform(extractor, frame["path"])  # doctest: +SKIP
    >>> features.to_parquet("features/")  # doctest: +SKIP
    """
    if not callable(getattr(estimator, "transform", None)):
        raise TypeError(
            f"skptm.dask.transform needs an estimator with a transform method; got {type(estimator).__name__}."
        )
    if isinstance(X, da.Array):
        return _transform_array(estimator, X)
    if isinstance(X, db.Bag):
        return _transform_bag(estimator, X)
    if isinstance(X, (dd.Series, dd.DataFrame)):
        return _transform_frame(estimator, X)
    raise TypeError(
        "skptm.dask.transform takes a dask Array of images (N, H, W[, C]), a dask Bag "
        "of paths, bytes, PIL images or arrays, or a dask Series or single-column "
        f"DataFrame of them; got {type(X).__module__}.{type(X).__name__}. For data in "
        "memory, call estimator.transform(X)."
    )


# -- one graph per input type ----------------------------------------------------------


class _Pickled:
    """An estimator pickled once, in the calling process, with a content token.

    It travels as bytes: neither the scheduler nor a worker's network layer
    unpickles the estimator, only the tasks that use it (:func:`_load`), so
    one that cannot be restored on a worker (a fine-tuned one whose base
    weights differ on that machine) fails its tasks with the reason instead
    of breaking the worker's connection.
    """

    __slots__ = ("blob", "token")

    def __init__(self, estimator):
        self.blob = cloudpickle.dumps(estimator, protocol=pickle.HIGHEST_PROTOCOL)
        self.token = content_hash([self.blob], length=64, delimited=False)

    def __getstate__(self):
        return (self.token, self.blob)

    def __setstate__(self, state):
        self.token, self.blob = state


_lock = threading.Lock()
_unpickled: OrderedDict = OrderedDict()  # token -> estimator, in this process


def _load(pickled):
    """The estimator of ``pickled``, unpickled once per process."""
    with _lock:
        estimator = _unpickled.get(pickled.token)
        if estimator is None:
            estimator = _unpickled[pickled.token] = pickle.loads(pickled.blob)
            while len(_unpickled) > MAX_CACHED_ESTIMATORS:
                _unpickled.popitem(last=False)
        else:
            _unpickled.move_to_end(pickled.token)
        return estimator


def _shipped(estimator):
    """The pickled estimator as one key of the graph: sent to each worker once."""
    pickled = _Pickled(estimator)
    return dask.delayed(pickled, name=f"skptm-estimator-{pickled.token[:32]}", pure=True)


def _transform_array(estimator, X):
    if X.ndim > 1:
        X = X.rechunk(dict.fromkeys(range(1, X.ndim), -1))
    n_features = len(estimator.get_feature_names_out())
    return X.map_blocks(
        _transform_block,
        _shipped(estimator),
        drop_axis=list(range(2, X.ndim)),
        new_axis=[1] if X.ndim == 1 else None,
        chunks=(X.chunks[0], (n_features,)),
        dtype=np.float32,
        meta=np.empty((0, 0), dtype=np.float32),
        token="skptm-transform",
    )


def _transform_bag(estimator, X):
    n_features = len(estimator.get_feature_names_out())
    # A Bag computes on processes by default; counting is lighter on threads,
    # unless a scheduler (such as a distributed Client) has been chosen.
    scheduler = None if dask.config.get("scheduler", None) else "threads"
    lengths = X.map_partitions(_count).compute(scheduler=scheduler)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(int).tolist()
    shipped = _shipped(estimator)
    blocks = [
        da.from_delayed(
            dask.delayed(_transform_items, pure=True)(part, shipped, offset),
            shape=(length, n_features),
            dtype=np.float32,
            meta=np.empty((0, 0), dtype=np.float32),
        )
        for part, length, offset in zip(X.to_delayed(), lengths, offsets, strict=True)
    ]
    if not blocks:
        return da.empty((0, n_features), dtype=np.float32)
    return da.concatenate(blocks, axis=0)


def _transform_frame(estimator, X):
    if isinstance(X, dd.DataFrame):
        if len(X.columns) != 1:
            raise ValueError(
                "A DataFrame of images must have exactly one column (of paths, PIL "
                f"images or arrays); got {len(X.columns)} columns. Pass the column, "
                "e.g. X['path']."
            )
        X = X[X.columns[0]]
    names = [str(name) for name in estimator.get_feature_names_out()]
    meta = _features_frame(np.empty((0, len(names)), dtype=np.float32), X._meta.index, names)
    return X.map_partitions(_transform_partition, _shipped(estimator), names, meta=meta)


# -- what runs in the tasks -----------------------------------------------------------------


def _transform_block(block, pickled, block_info=None):
    offset = block_info[0]["array-location"][0][0] if block_info else 0
    return _transform_located(pickled, block, lambda index: offset + index)


def _transform_items(items, pickled, offset):
    return _transform_located(pickled, list(items), lambda index: offset + index)


def _transform_partition(series, pickled, names):
    features = _transform_located(pickled, series, lambda index: series.index[index])
    return _features_frame(features, series.index, names)


def _transform_located(pickled, items, locate):
    """Features of ``items``; an ImageReadError's index is mapped by ``locate``
    from the position in ``items`` to the item's place in the whole input."""
    estimator = _load(pickled)
    if len(items) == 0:  # an empty block or partition: no rows (transform rejects empty input)
        return np.empty((0, len(estimator.get_feature_names_out())), dtype=np.float32)
    try:
        with warnings.catch_warnings(record=True) as caught:
            features = np.asarray(estimator.transform(items), dtype=np.float32)
    except ImageReadError as error:
        raise ImageReadError(locate(error.index), error.path, error.cause) from error
    for warning in caught:  # again, an ImageReadWarning with the items' places in the whole input
        message = warning.message
        if isinstance(message, ImageReadWarning) and message.failures:
            part = f" in this part of the input (at {locate(0)} to {locate(len(items) - 1)})"
            warnings.warn(message.located(locate, len(items), part), stacklevel=2)
        else:
            warnings.warn_explicit(message, warning.category, warning.filename, warning.lineno)
    return features


def _features_frame(features, index, names):
    import pandas as pd

    return pd.DataFrame(features, index=index, columns=names)


def _count(partition):
    return [sum(1 for _ in partition)]
