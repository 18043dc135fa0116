"""X to a stream of batches: any accepted input form, decoded in parallel.

:func:`as_source` turns what the user passed (a 4-D or 3-D array, a list,
tuple, 1-D object array or pandas Series of paths, bytes, PIL images or
arrays, or a 2-D table for tabular backbones) into a *source*: something with
a length that can fill a batch buffer for the rows ``start:stop``.
:func:`stream_batches` walks a source batch by batch, decoding the next batch
on a thread pool while the caller runs the network on the current one. At
most two batches are in memory at any time, whatever the number of items.

Failures are kept per item, with the item's index and path, so the caller
decides whether to raise or to fill that row with NaN.
"""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from ._images import ImageReader, array_to_rgb, check_value_range, describe_item
from .exceptions import ImageReadError


@dataclass
class Failure:
    """One item that could not be read."""

    index: int
    path: str | None
    cause: BaseException

    def error(self) -> ImageReadError:
        return ImageReadError(self.index, self.path, _describe_cause(self.cause))

    @property
    def described_cause(self) -> str:
        """``"OSError: broken data stream"``."""
        return _describe_cause(self.cause)

    def summary(self) -> str:
        where = f"{self.index}" + (f" ({self.path})" if self.path else "")
        return f"{where}: {self.described_cause}"


def _describe_cause(cause: BaseException) -> str:
    text = str(cause)
    return f"{type(cause).__name__}: {text}" if text else type(cause).__name__


@dataclass
class Batch:
    """The items of the input at ``indices``, decoded.

    ``data`` holds one row per item, ``uint8`` when every item is 8-bit RGB
    (the network's first layer casts it, so it crosses to the device at a
    quarter of the bytes) and ``float32`` otherwise; rows of failed items are
    zeros and are listed in ``failures``.
    """

    indices: range | np.ndarray
    data: np.ndarray
    failures: list[Failure] = field(default_factory=list)

    def raise_first_failure(self) -> None:
        """Raise :class:`ImageReadError` for the first failed item, if any."""
        if self.failures:
            raise self.failures[0].error() from self.failures[0].cause


# -- sources ------------------------------------------------------------------
#
# A source reads the items at given indices into one Batch: ``submit(pool,
# indices)`` starts the reading on a thread pool and returns a function that
# waits for it. Streaming (transform, the head phase) asks for consecutive
# ranges; phase 2 of fine-tuning asks for shuffled rows. Both go through here.


class ItemSource:
    """A sequence of heterogeneous items, each read by ``reader`` on its own thread."""

    def __init__(self, items, reader: ImageReader):
        self.items = items
        self.reader = reader

    def __len__(self):
        return len(self.items)

    def path(self, index):
        return describe_item(self.items[index])

    def batch_shape(self, n):
        return (n, *self.reader.size, 3)

    def read_one(self, index):
        """``(image, None)``, or ``(None, Failure)`` when the item cannot be read."""
        try:
            return self.reader(self.items[index]), None
        except Exception as exc:  # noqa: BLE001 - reported per item
            return None, Failure(int(index), self.path(index), exc)

    def submit(self, pool, indices):
        futures = [pool.submit(self.read_one, index) for index in indices]
        return lambda: self._assemble(indices, [future.result() for future in futures])

    def _assemble(self, indices, results):
        images = [image for image, _ in results if image is not None]
        dtype = np.uint8 if all(image.dtype == np.uint8 for image in images) else np.float32
        data = np.zeros(self.batch_shape(len(results)), dtype=dtype)
        for row, (image, _) in enumerate(results):
            if image is not None:
                data[row] = image
        return Batch(indices, data, [failure for _, failure in results if failure is not None])


class ArraySource(ItemSource):
    """A stacked array of images ``(N, H, W[, C])``.

    When the images are already at the target size and valid, a batch is a
    view or one vectorised conversion of the array (uint8 RGB stays uint8,
    uncopied); otherwise items are read one by one, in parallel, so that a
    bad image is reported with its own index.
    """

    def submit(self, pool, indices):
        chunk = self.items[_as_slice(indices)]
        if chunk.shape[1:3] != tuple(self.reader.size):
            return super().submit(pool, indices)  # resized item by item, in parallel
        stacked = pool.submit(self.read_stack, chunk)  # checked and converted off the caller's thread

        def result():
            data = stacked.result()
            if data is None:  # an invalid image: read item by item to name it
                return super(ArraySource, self).submit(pool, indices)()
            return Batch(indices, data)

        return result

    def read_stack(self, chunk):
        """Convert a stack of images in one vectorised step, or return ``None``
        when they are not at the target size or one is invalid (reading item by
        item then names it)."""
        if chunk.shape[1:3] != tuple(self.reader.size):
            return None
        try:
            if chunk.dtype != np.uint8:
                check_value_range(chunk)
            stack = array_to_rgb_batch(chunk)
        except ValueError:
            return None
        return stack if stack.dtype == np.uint8 else stack.astype(np.float32, copy=False)


def _as_slice(indices):
    """A slice for a range of step 1 (NumPy then returns a view), else the indices."""
    if isinstance(indices, range) and indices.step == 1:
        return slice(indices.start, indices.stop)
    return indices


def array_to_rgb_batch(images: np.ndarray) -> np.ndarray:
    """Vectorised :func:`array_to_rgb` over a stack ``(N, H, W[, C])``."""
    if images.ndim == 3:
        images = images[..., None]
    if images.dtype in (np.uint16, np.bool_) or images.shape[-1] == 4:
        return np.stack([array_to_rgb(image) for image in images])
    if images.shape[-1] == 1:
        return np.repeat(images, 3, axis=-1)
    return images


class TableSource:
    """Rows of a 2-D numeric table, for backbones that take tabular input."""

    def __init__(self, table: np.ndarray):
        self.items = table

    def __len__(self):
        return len(self.items)

    def path(self, index):
        return None

    def submit(self, pool, indices):
        data = np.asarray(self.items[_as_slice(indices)], dtype=np.float32)
        return lambda: Batch(indices, data)


def as_source(X, reader: ImageReader | None):
    """Wrap any accepted input form in a source.

    ``reader=None`` means the network takes 2-D tabular input. An input with
    no items raises ``ValueError``, as scikit-learn's ``check_array`` does.
    """
    source = _as_source(X, reader)
    if len(source) == 0:
        raise ValueError("Found an input with 0 images, while a minimum of 1 is required: pass at least one image.")
    return source


def _as_source(X, reader: ImageReader | None):
    if reader is None:
        return TableSource(X)
    if hasattr(X, "iloc") and getattr(X, "ndim", 1) == 2:  # pandas DataFrame
        if X.shape[1] != 1:
            raise ValueError(
                "A DataFrame of images must have exactly one column (of paths, "
                f"PIL images or arrays); got {X.shape[1]} columns. Pass the column, "
                "e.g. X['path']."
            )
        X = X.iloc[:, 0]
    if hasattr(X, "iloc"):  # pandas Series
        X = X.to_numpy(dtype=object)
    if isinstance(X, np.ndarray) and X.dtype != object:
        if X.ndim == 3 and X.shape[-1] in (3, 4):
            raise ValueError(
                f"A 3-D array of shape {X.shape} looks like one RGB(A) image, but X "
                "must be a collection of images. Pass X[None] (or [X]) for a single "
                "image; for grayscale images of width 3 or 4, pass X[..., None]."
            )
        if X.ndim in (3, 4):
            if X.dtype.kind not in "biuf":  # e.g. complex, datetime, str: once for all
                raise ValueError(
                    f"An array of images must hold numbers (bool, integers or floats in 0-255); got dtype {X.dtype}."
                )
            if X.ndim == 4 and X.shape[-1] not in (1, 3, 4):
                raise ValueError(
                    f"A 4-D image array must be (N, H, W, C) with C in 1, 3 or 4 channels; got shape {X.shape}."
                )
            _warn_if_unit_range(X)
            return ArraySource(X, reader)
        if X.ndim == 1 and X.dtype.kind == "U":
            return ItemSource(X.tolist(), reader)
        if X.ndim == 1 and X.dtype.kind == "S":
            # Each item's full width: NumPy drops an item's trailing zero bytes,
            # which an encoded image may end with (a BMP's black last row).
            return ItemSource([bytes(X[i : i + 1].data) for i in range(len(X))], reader)
        raise ValueError(
            f"Expected images: an array of shape (N, H, W, 3), (N, H, W, 4), "
            f"(N, H, W, 1) or (N, H, W), or a list of paths, PIL images or arrays; "
            f"got an array of shape {X.shape}. (A 2-D table is only accepted by a "
            "custom backbone that takes tabular input.)"
        )
    if isinstance(X, np.ndarray):
        if X.ndim != 1:
            raise ValueError(f"An object array of images must be 1-D; got shape {X.shape}.")
        _warn_if_unit_range_items(X)
        return ItemSource(X, reader)
    if isinstance(X, (list, tuple)):
        _warn_if_unit_range_items(X)
        return ItemSource(X, reader)
    if isinstance(X, (str, os.PathLike)):
        raise TypeError(
            f"Expected a collection of images, got a single path {os.fspath(X)!r}. Wrap it in a list: [path]."
        )
    raise TypeError(
        f"Unsupported input of type {type(X).__name__}: pass a 4-D array of images, "
        "or a list, tuple, 1-D array or pandas Series of paths, PIL images or arrays."
    )


def _warn_if_unit_range_items(items):
    """:func:`_warn_if_unit_range` for a collection of items, where every one
    is a float array (a stack passed as a list or a pandas column)."""
    if len(items) and all(isinstance(item, np.ndarray) and item.dtype.kind == "f" for item in items):
        _warn_if_unit_range(items, stacklevel=6)


def _warn_if_unit_range(images, stacklevel=5):
    stacked = isinstance(images, np.ndarray) and images.dtype != object
    if not len(images) or (stacked and (images.dtype.kind != "f" or not images.size)):
        return
    # Image by image, so that memory never grows with the number of images;
    # NaN and inf are left out here (reported per item, later).
    largest = -np.inf
    for image in images:
        finite = image[np.isfinite(image)]
        if finite.size:
            largest = max(largest, float(finite.max()))
            if largest > 1.0:
                return
    if 0.0 < largest <= 1.0:
        warnings.warn(
            "All image values lie in [0, 1], but skptm expects raw RGB in 0-255 "
            "(each network applies its own preprocessing). Multiply by 255 unless "
            "the images really are this dark.",
            UserWarning,
            stacklevel=stacklevel,
        )


# -- streaming ----------------------------------------------------------------


def default_n_threads(n_jobs=None) -> int:
    """Decoding threads for ``n_jobs``.

    ``None``: the ``n_jobs`` of an active ``joblib.parallel_config``, if one
    sets it; else one per usable core (``joblib.cpu_count``, which respects
    container CPU limits), at most 8. Otherwise joblib's meaning (``-1`` all
    cores, ``-2`` all but one, ...), counted here rather than by joblib's
    backend: these are threads, which loky's rules for nested processes
    (one job inside a daemon process or below a thread) do not concern.
    Inside a joblib or Dask worker, ``None`` means the worker's share of
    the cores (:func:`skptm._threads.process_share`).
    """
    from joblib.parallel import get_active_backend

    from ._threads import process_share, usable_cores

    if n_jobs is None:
        n_jobs = get_active_backend()[1]  # set by joblib.parallel_config(n_jobs=...)
        if n_jobs is None:
            # In a worker (loky, Dask), its share of the cores, not all of them.
            return max(1, min(8, process_share() or usable_cores()))
    if n_jobs == 0:
        raise ValueError("n_jobs=0 has no meaning; pass a positive count, -1 for all cores, or None.")
    return n_jobs if n_jobs > 0 else max(1, usable_cores() + 1 + n_jobs)


def stream_batches(source, batch_size: int, n_jobs=None, indices=None):
    """Yield the :class:`Batch` es of ``source`` in order.

    ``indices`` (increasing) restricts the stream to those items, e.g. those
    the feature cache does not hold. The next batch is decoded on a thread
    pool while the caller works on the current one; at most two batches
    exist at once.
    """
    if indices is None:
        n = len(source)
        chunks = [range(start, min(start + batch_size, n)) for start in range(0, n, batch_size)]
    else:
        indices = np.asarray(indices)
        chunks = [indices[start : start + batch_size] for start in range(0, len(indices), batch_size)]
    if not chunks:
        return
    with ThreadPoolExecutor(default_n_threads(n_jobs), thread_name_prefix="skptm-read") as pool:
        try:
            pending = source.submit(pool, chunks[0])
            for following in [*chunks[1:], None]:
                batch = pending()
                if following is not None:
                    pending = source.submit(pool, following)
                yield batch
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


#: Most bytes of decoded images that fine-tuning keeps in memory, at the
#: network's input size: one byte a value for 8-bit images (about 150 KB an
#: image at 224 px, so some 14,000 images), four for 16-bit or float ones.
#: Within it, files are read once per fit instead of once per epoch; beyond
#: it, they are streamed from disk every epoch.
DECODED_IMAGES_BUDGET = 2 * 1024**3


def decode_once(source, batch_size: int, n_jobs=None):
    """``source`` decoded into memory, when reading it again would decode again.

    Items that need decoding (paths, bytes, PIL images, arrays of other
    sizes) are read once, in parallel, into one array at the target size
    (``uint8`` when every image is 8-bit, else ``float32``), as long as it
    fits :data:`DECODED_IMAGES_BUDGET`; the result is an :class:`ArraySource`
    whose batches are the very values a stream of ``source`` gives. Arrays
    already at the target size, tables and sources over budget are returned
    as they are. An unreadable item raises :class:`ImageReadError`.
    """
    if not isinstance(source, ItemSource) or (
        isinstance(source, ArraySource) and source.items.shape[1:3] == tuple(source.reader.size)
    ):
        return source
    shape = source.batch_shape(len(source))
    n_values = int(np.prod(shape, dtype=np.int64))
    if n_values > DECODED_IMAGES_BUDGET:
        return source
    images = np.empty(shape, dtype=np.uint8)
    for batch in stream_batches(source, batch_size, n_jobs):
        batch.raise_first_failure()
        if batch.data.dtype != images.dtype:
            if n_values * 4 > DECODED_IMAGES_BUDGET:
                return source
            images = images.astype(np.float32)
        images[batch.indices.start : batch.indices.stop] = batch.data
    return DecodedSource(images, source)


class DecodedSource(ArraySource):
    """The images of ``origin`` decoded at the target size, in memory.

    Paths in error messages and the feature cache's content keys are those
    of the original items (a file's bytes, not its decoded pixels), so
    decoding ahead changes nothing the user sees.
    """

    def __init__(self, images, origin):
        super().__init__(images, origin.reader)
        self.origin = origin

    def path(self, index):
        return self.origin.path(index)
