"""A per-image feature cache on disk, keyed by content and configuration.

``cache=<directory>`` on the estimators stores each image's feature vector in
its own small file::

    <directory>/v1/<configuration key>/<ab>/<item key>

* The **configuration key** hashes everything that determines the features
  besides the image: the feature network's architecture (backbone, input
  size, preprocessing, pooling, layers, precision), its weights (a
  fingerprint of every value), how images are resized, and the versions of
  the libraries that decode and compute (Pillow, Keras, TensorFlow).
  Networks of different precisions or weights never share an entry.
* The **item key** hashes the item's content: a file's bytes (not its path
  or modification time, so a copied or renamed file is still a hit), encoded
  bytes, an array's dtype, shape and values, a PIL image's pixels.

An entry is the float32 vector followed by a BLAKE2b digest of it, written to
a temporary file and renamed into place, so concurrent processes and an
interrupted write never leave a half-written entry under a real name. A
truncated or corrupt entry is recomputed with a :class:`FeatureCacheWarning`;
an unwritable directory gives one warning and no caching.
"""

from __future__ import annotations

import errno
import hashlib
import os
import tempfile
import warnings
import weakref
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image

from ._batches import TableSource, default_n_threads
from ._images import loaded
from ._io import atomic_write_bytes, content_hash
from .exceptions import FeatureCacheWarning

#: Bump when feature computation changes in a way that alters features for
#: the same configuration; old entries are then ignored.
FORMAT_VERSION = 2

#: Bump when decoding gives other pixels for some items (its entries are then
#: computed anew; a table's are not): 2 made transparency keys white, turned
#: TIFFs upright, and whole-valued arrays resize as 8-bit pictures.
DECODING_VERSION = 2

_DIGEST_SIZE = 16
_READ_CHUNK = 1 << 20


def open_cache(directory, network, source) -> FeatureCache | None:
    """The cache for ``network`` reading ``source`` under ``directory``, or
    ``None`` (with a warning) when it cannot be used."""
    try:
        configuration = configuration_key(network, source)
    except Exception as exc:  # noqa: BLE001 - any failure to key the cache: compute without it
        warnings.warn(
            f"The feature cache is not used: this network's configuration cannot be "
            f"serialised to key the cache ({type(exc).__name__}: {exc}).",
            FeatureCacheWarning,
            stacklevel=4,
        )
        return None
    root = os.path.join(os.fspath(directory), f"v{FORMAT_VERSION}", configuration)
    try:
        os.makedirs(root, exist_ok=True)
    except OSError as exc:
        warnings.warn(
            f"The feature cache directory {os.fspath(directory)!r} cannot be used "
            f"({exc}); features are computed without caching.",
            FeatureCacheWarning,
            stacklevel=4,
        )
        return None
    return FeatureCache(root, network.n_features)


class FeatureCache:
    """The entries of one configuration: ``load`` and ``store`` by item key."""

    def __init__(self, root, n_features):
        self.root = root
        self.n_features = n_features
        self.writable = True
        self.entries_skipped = False

    def _path(self, key):
        return os.path.join(self.root, key[:2], key[2:])

    def keys(self, source, n_jobs=None) -> list:
        """The content key of every item of ``source`` (``None`` where an item
        cannot be read: it is computed, and reported, as without a cache)."""
        with ThreadPoolExecutor(default_n_threads(n_jobs), thread_name_prefix="skptm-hash") as pool:
            return list(pool.map(lambda i: content_key(source, i), range(len(source)), chunksize=64))

    def load_into(self, keys, out, n_jobs=None) -> np.ndarray:
        """Fill the rows of ``out`` whose entries exist; returns the mask of hits.

        Damaged or unreadable entries count as misses, reported in one
        :class:`FeatureCacheWarning`.
        """
        problems = []

        def load(row):
            if keys[row] is None:
                return False
            vector, problem = self.load(keys[row])
            if problem is not None:
                problems.append(problem)
            if vector is None:
                return False
            out[row] = vector
            return True

        with ThreadPoolExecutor(default_n_threads(n_jobs), thread_name_prefix="skptm-cache") as pool:
            hits = np.fromiter(pool.map(load, range(len(keys)), chunksize=64), dtype=bool, count=len(keys))
        if problems:
            listing = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
            self._warn(
                f"{len(problems)} feature cache entries could not be used and are recomputed and rewritten: {listing}"
            )
        return hits

    def load(self, key):
        """``(vector, None)``, ``(None, None)`` for a miss, or ``(None, problem)``."""
        path = self._path(key)
        try:
            with open(path, "rb") as entry:
                data = entry.read()
        except (FileNotFoundError, NotADirectoryError):
            return None, None
        except OSError as exc:
            return None, f"{path!r} cannot be read ({exc})"
        size = self.n_features * 4
        body, digest = data[:size], data[size:]
        if len(data) != size + _DIGEST_SIZE or hashlib.blake2b(body, digest_size=_DIGEST_SIZE).digest() != digest:
            return None, f"{path!r} is damaged (truncated or corrupt)"
        return np.frombuffer(body, dtype="<f4"), None

    def store(self, key, vector) -> None:
        """Write one entry atomically (a temporary file, then a rename)."""
        if not self.writable or key is None:
            return
        body = np.ascontiguousarray(vector, dtype="<f4").tobytes()
        data = body + hashlib.blake2b(body, digest_size=_DIGEST_SIZE).digest()
        try:
            atomic_write_bytes(self._path(key), data)
        except OSError as exc:
            if exc.errno in (errno.EISDIR, errno.ENOTDIR, errno.EEXIST) and self._root_writable():
                # An entry's place is taken (a folder where its file goes):
                # the others are still written; one warning for them all.
                if not self.entries_skipped:
                    self._warn(
                        f"Feature cache entries cannot be written where they go (the first: {self._path(key)!r}: "
                        f"{exc}); they are skipped, the others written."
                    )
                self.entries_skipped = True
                return
            self.writable = False
            self._warn(f"The feature cache {self.root!r} is not writable ({exc}); features are not cached.")

    def _root_writable(self) -> bool:
        """Whether a file can be created in the configuration's folder."""
        try:
            os.makedirs(self.root, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.root, prefix=".probe-"):
                return True
        except OSError:
            return False

    @staticmethod
    def _warn(message):
        warnings.warn(message, FeatureCacheWarning, stacklevel=5)


# -- keys -----------------------------------------------------------------------------------

_configurations: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def configuration_key(network, source) -> str:
    """A hex key of everything besides the image that determines its features."""
    import keras
    import PIL
    import tensorflow as tf

    from .engines import get_engine
    from .networks import base_fingerprint

    architecture = _configurations.get(network.model)
    if architecture is None:
        architecture = _configurations[network.model] = network.model.to_json()
    reader = getattr(source, "reader", None)
    reading = (
        "table"
        if isinstance(source, TableSource) or reader is None
        else repr((tuple(reader.size), reader.resize, reader.interpolation, f"decoding {DECODING_VERSION}"))
    )
    parts = (
        str(FORMAT_VERSION),
        architecture,
        base_fingerprint(network.base),
        network.precision,
        network.engine,
        str(get_engine(network.engine).version()),
        reading,
        PIL.__version__,
        keras.__version__,
        tf.__version__,
    )
    kernels = kernel_kind(network.precision, network.engine)
    return content_hash((*parts, kernels) if kernels else parts)


def kernel_kind(precision, engine="tensorflow") -> str:
    """What, besides the configuration, the features depend on beyond the
    cache's tolerance: ``""`` for float32 on a CPU (any two CPUs agree to
    about 5e-7 relative, so machines sharing a cache share these entries);
    the instruction set for reduced precision, whose kernels round
    differently (AMX and AVX-512 BF16 differ by about 1e-2), or the CPU's
    model where its flags are not known; TensorFlow's GPU, whose float32
    may run in TF32 (OpenVINO runs on the CPU)."""
    from .engines.machine import this_machine

    machine = this_machine()
    if machine.gpu and engine == "tensorflow":
        return f"gpu {machine.gpu}"
    if precision == "float32":
        return ""
    if not machine.flags:  # no /proc/cpuinfo (macOS, Windows): the model says what the set would
        return f"{machine.architecture} {machine.cpu_model}"
    return f"{machine.architecture} {machine.instruction_set}"


def content_key(source, index) -> str | None:
    """A hex key of item ``index``'s content, or ``None`` if it has none."""
    source = getattr(source, "origin", source)  # decoded ahead: key the original item
    item = source.items[index]
    try:
        if not isinstance(item, (str, os.PathLike, bytes, bytearray, memoryview, Image.Image)):
            item = np.ascontiguousarray(np.asarray(item))
            if item.dtype == object:
                return None
        return content_hash(_content_parts(item), length=40, delimited=False)
    except (OSError, ValueError, TypeError):
        return None  # unreadable: computed (and reported) as without a cache


def _content_parts(item):
    """What decoding reads of ``item``, as a stream of bytes."""
    if isinstance(item, (str, os.PathLike)):
        yield b"file"
        with open(item, "rb") as file:
            while chunk := file.read(_READ_CHUNK):
                yield chunk
    elif isinstance(item, (bytes, bytearray, memoryview)):
        yield b"bytes"
        yield item
    elif isinstance(item, Image.Image):
        # Everything decoding reads: mode, size, orientation, the palette
        # a "P" image's indices point into, and its transparent colour.
        loaded(item)
        transparency = item.info.get("transparency")
        yield f"pil {item.mode} {item.size} {item.getexif().get(0x0112, 1)} {transparency!r}"
        palette = item.getpalette(rawmode="RGBA") if item.mode in ("P", "PA") else None
        if palette is not None:
            yield bytes(palette)
        yield item.tobytes()
    else:
        yield f"array {item.dtype.str} {item.shape}"
        yield memoryview(item).cast("B")
