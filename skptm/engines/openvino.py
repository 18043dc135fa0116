"""The OpenVINO engine: conversion, a bounded disk cache, compiled models.

The network is the one skptm builds for TensorFlow (preprocessing inside,
pooling, chosen layers), converted in-process from a ``tf.function`` with a
dynamic batch dimension by ``openvino.convert_model``; nothing is downloaded.

Converting takes seconds (ResNet50 about 2 s, ConvNeXtTiny about 10 s), so
the converted model is stored on disk under a key of the network's
architecture and weights: another process, a ``GridSearchCV`` or Dask worker,
reads it back and compiles it in a fraction of a second. OpenVINO's own
compiled-model cache (``CACHE_DIR``) sits beside it. Both live in
:func:`cache_dir`; deleting that folder is always safe. The folder is kept
under :data:`DEFAULT_CACHE_MB` megabytes (``$SKPTM_OPENVINO_CACHE_MB``): each
new entry evicts the least recently used ones beyond it.

Nothing here is pickled with an estimator: the compiled models are kept per
process, keyed by the Keras model object they were converted from.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import threading
import warnings
import weakref
from pathlib import Path

import numpy as np

from .. import _threads as threads
from .._io import atomic_path, atomic_write_bytes, cache_root, content_hash, evict_least_recently_used, mark_used
from ..exceptions import OpenVINOCacheWarning

#: The engine's name, as ``engine=`` takes it.
NAME = "openvino"

#: Default bound of :func:`cache_dir`, in megabytes (``$SKPTM_OPENVINO_CACHE_MB``).
DEFAULT_CACHE_MB = 2048

#: Bumped when the conversion changes, so that old disk entries are not used.
FORMAT_VERSION = 1

#: OpenVINO's name for each precision skptm knows.
_INFERENCE_PRECISION = {"float32": "f32", "bfloat16": "bf16", "float16": "f16"}

INSTALL_HINT = (
    'OpenVINO is not installed. Install it with: pip install "skptm[openvino]" '
    '(or pip install openvino), or use engine="tensorflow".'
)


def is_available() -> bool:
    """Whether the ``openvino`` package can be imported (without importing it)."""
    import importlib.util
    import sys

    if "openvino" in sys.modules:
        return sys.modules["openvino"] is not None  # None: blocked, as if not installed
    return importlib.util.find_spec("openvino") is not None


def require_openvino():
    """The ``openvino`` module, or an ImportError that says how to install it."""
    try:
        import openvino
    except ImportError as exc:
        raise ImportError(INSTALL_HINT) from exc
    return openvino


def version() -> str | None:
    """OpenVINO's version, or ``None`` when it is not installed (read from the
    package's metadata: importing OpenVINO takes a second)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as package_version

    if not is_available():
        return None
    try:
        return package_version("openvino").split("-")[0]
    except PackageNotFoundError:
        import openvino

        return openvino.__version__.split("-")[0]


def cache_dir() -> Path:
    """Where converted models are kept: ``<skptm cache>/openvino`` (see
    :func:`skptm._io.cache_root`)."""
    return cache_root() / "openvino"


def cache_limit_bytes() -> int:
    """The bound of :func:`cache_dir`: ``$SKPTM_OPENVINO_CACHE_MB`` megabytes, else
    :data:`DEFAULT_CACHE_MB`."""
    value = os.environ.get("SKPTM_OPENVINO_CACHE_MB")
    try:
        megabytes = float(value) if value else DEFAULT_CACHE_MB
    except ValueError:
        megabytes = DEFAULT_CACHE_MB
    return int(megabytes * 2**20)


def evict(max_bytes: int | None = None) -> int:
    """Drop the least recently used converted models (and OpenVINO's compiled
    blobs) until :func:`cache_dir` holds at most ``max_bytes``; returns bytes freed."""
    folder = cache_dir()
    if not folder.is_dir():
        return 0
    groups = [[xml, *_companions(xml)] for xml in folder.glob("*.xml") if ".tmp" not in xml.name]
    blobs = folder / "compiled"
    if blobs.is_dir():
        groups.extend([blob] for blob in blobs.iterdir() if blob.is_file())
    return evict_least_recently_used(groups, cache_limit_bytes() if max_bytes is None else max_bytes)


class CompiledNetwork:
    """A feature network compiled by OpenVINO for one precision.

    ``predict(batch)`` is safe to call from several threads: each thread has
    its own infer request.
    """

    def __init__(self, compiled, precision):
        self.compiled = compiled
        self.precision = precision
        self._local = threading.local()

    def predict(self, batch: np.ndarray) -> np.ndarray:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        result = request.infer({0: np.ascontiguousarray(batch)})
        # A copy: the request's output buffer is overwritten by its next call.
        return np.array(result[0], dtype=np.float32, copy=True)


# Per Keras model object: {precision: CompiledNetwork}. A model that is
# garbage-collected (a dropped fine-tuned estimator) takes its entries along.
_compiled: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_locks: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_lock = threading.Lock()
_stats = {"conversions": 0, "disk_hits": 0, "compilations": 0}
#: Converted models whose checksum this process checked: (path, checksum, files' identity).
_verified: set = set()


def cache_info() -> dict:
    """Counters: ``conversions`` (Keras to OpenVINO), ``disk_hits``, ``compilations``."""
    with _lock:
        return dict(_stats)


def is_compiled(model, precision: str, takes_images: bool = True) -> bool:
    """Whether ``model`` was compiled for ``precision`` (and 8-bit images) in this process."""
    with _lock:
        return (precision, input_dtype(takes_images, np.uint8)) in _compiled.get(model, {})


def is_on_disk(model, takes_images: bool) -> bool:
    """Whether ``model``'s converted form is in the disk cache (no conversion needed)."""
    path = _disk_path(model, takes_images, input_dtype(takes_images, np.uint8), cache_dir())
    return path is not None and all(file.is_file() for file in (path, *_companions(path)))


def input_dtype(takes_images: bool, batch_dtype) -> str:
    """The input type of the converted network that takes a batch of ``batch_dtype``.

    8-bit images travel as uint8 (4x fewer bytes than float32) and are cast
    inside, as the Keras network's input layer does; other images (16-bit
    or float ones, resized from float) as float32, which a uint8 input
    would truncate; tables as float32.
    """
    return "uint8" if takes_images and np.dtype(batch_dtype) == np.uint8 else "float32"


def compiled_network(model, precision: str, *, takes_images: bool, dtype: str = "uint8") -> CompiledNetwork:
    """``model`` (a float32 Keras feature network) compiled by OpenVINO.

    Converted once per process, model object and input type, read from the
    disk cache when another process converted it before; compiled once per
    precision.

    Parameters
    ----------
    model : keras.Model
        Input ``(batch, height, width, 3)`` of 0-255 values, or
        ``(batch, n_columns)`` for a tabular network.
    precision : {"float32", "bfloat16", "float16"}
        OpenVINO's inference precision hint.
    takes_images : bool
    dtype : {"uint8", "float32"}, default="uint8"
        The input type, from :func:`input_dtype` (a table's is float32).
    """
    dtype = dtype if takes_images else "float32"
    with _lock:
        compiled = _compiled.setdefault(model, {})
        found = compiled.get((precision, dtype))
        if found is not None:
            return found
        model_lock = _locks.setdefault(model, threading.Lock())
    with model_lock:  # one conversion per model, even from several threads
        found = compiled.get((precision, dtype))
        if found is None:
            found = compiled[precision, dtype] = _compile(model, precision, takes_images, dtype)
        return found


def _compile(model, precision, takes_images, dtype):
    ov = require_openvino()
    core = ov.Core()
    folder = cache_dir()
    config = _compile_config(precision)
    path = _disk_path(model, takes_images, dtype, folder)
    if path is not None and path.is_file() and not path.with_suffix(".blake2b").is_file():
        _remove(path)  # stored before entries had checksums: converted again, quietly
    if path is not None and path.is_file() and path.with_suffix(".bin").is_file():
        try:
            _check_digest(path)
            compiled = _compile_file(core, path, config, folder / "compiled")
        except Exception as exc:  # noqa: BLE001 - any damage to the entry: convert again
            warnings.warn(
                f"The converted model {path} could not be read ({type(exc).__name__}: {exc}); "
                "converting the network again.",
                OpenVINOCacheWarning,
                stacklevel=4,
            )
            _remove(path)
        else:
            _touch(path)
            with _lock:
                _stats["disk_hits"] += 1
                _stats["compilations"] += 1
            return CompiledNetwork(compiled, precision)
    # The converted model is not kept: the compiled one holds its own copy
    # of the weights; another precision reads it back from disk.
    converted = _convert(model, takes_images, dtype)
    if path is not None:
        _store(converted, path)
    return _compile_converted(core, converted, config, precision)


def _compile_config(precision) -> dict:
    config = {
        "INFERENCE_PRECISION_HINT": _INFERENCE_PRECISION[precision],
        # One stream on every core: each call is one large batch, and skptm's
        # decoding threads fill the next batch meanwhile.
        "PERFORMANCE_HINT": "LATENCY",
    }
    share = threads.process_share()
    if share is not None:  # a joblib or Dask worker: its share of the cores, not all of them
        config["INFERENCE_NUM_THREADS"] = share
    return config


def _digest(path) -> str:
    """BLAKE2b of a converted model's ``.xml`` and ``.bin``."""
    digest = hashlib.blake2b(digest_size=16)
    for file in (path, path.with_suffix(".bin")):
        with open(file, "rb") as stream:
            digest.update(hashlib.file_digest(stream, "blake2b").digest())
    return digest.hexdigest()


def _check_digest(path) -> None:
    """Raise ``ValueError`` unless the entry at ``path`` is the one stored:
    damage that keeps a file readable (changed bytes, the same size) would
    otherwise compile, and give wrong features."""
    try:
        stored = path.with_suffix(".blake2b").read_text(encoding="ascii").strip()
        identity = tuple((s.st_ino, s.st_size, s.st_mtime_ns) for s in map(os.stat, (path, path.with_suffix(".bin"))))
    except (OSError, ValueError) as exc:
        raise ValueError("its checksum file cannot be read") from exc
    key = (str(path), stored, identity)
    with _lock:
        if key in _verified:  # read before in this process (another precision, another call)
            return
    if _digest(path) != stored:
        raise ValueError("its files do not match their checksum (changed since they were written)")
    with _lock:
        _verified.add(key)


def _companions(path) -> tuple:
    """The files stored with the converted model ``path`` (its ``.xml``)."""
    return path.with_suffix(".bin"), path.with_suffix(".blake2b")


def _compile_file(core, path, config, blob_folder):
    """Compile the converted model at ``path``, through OpenVINO's blob cache.

    Processes that compile the same model at once (the workers of a grid
    search) race on that cache's files, and the loser's compilation fails;
    it then compiles without the cache. Only a failure without it means a
    damaged entry.
    """
    try:
        return core.compile_model(str(path), "CPU", {**config, "CACHE_DIR": str(blob_folder)})
    except Exception:  # noqa: BLE001 - retried below; raises there if the entry is damaged
        return core.compile_model(str(path), "CPU", config)


def _compile_converted(core, converted, config, precision):
    compiled = core.compile_model(converted, "CPU", config)
    with _lock:
        _stats["compilations"] += 1
    return CompiledNetwork(compiled, precision)


def _convert(model, takes_images, dtype):
    import openvino as ov
    import tensorflow as tf

    from ..networks import quiet_retracing_warnings

    spec = tf.TensorSpec([None, *model.inputs[0].shape[1:]], getattr(tf, dtype))
    if takes_images:  # cast inside, as the Keras network's input layer does
        function = tf.function(lambda x: model(tf.cast(x, tf.float32), training=False))
    else:
        function = tf.function(lambda x: model(x, training=False))
    with quiet_retracing_warnings():
        converted = ov.convert_model(function.get_concrete_function(spec))
    with _lock:
        _stats["conversions"] += 1
    return converted


def _disk_key(model, takes_images, dtype="uint8") -> str:
    """A key of everything the converted model depends on."""
    import keras
    import openvino as ov
    import tensorflow as tf

    from ..networks import fingerprint

    return content_hash(
        (
            str(FORMAT_VERSION),
            _canonical_architecture(model),
            fingerprint(model),
            # "images" alone: 8-bit images, the key of every earlier entry.
            ("images" if dtype == "uint8" else f"images-{dtype}") if takes_images else "table",
            ov.__version__,
            tf.__version__,
            keras.__version__,
        )
    )


def _canonical_architecture(model) -> str:
    """``model``'s JSON with its layer names replaced by their order of appearance.

    Keras numbers unnamed layers per process (``rescaling_3``), so the same
    network built in two processes has different names; the wiring, which
    the names encode, is kept.
    """
    import json

    config = json.loads(model.to_json())
    names = {}

    def collect(node):
        if isinstance(node, dict):
            if isinstance(node.get("name"), str):
                names.setdefault(node["name"], f"layer{len(names)}")
            for value in node.values():
                collect(value)
        elif isinstance(node, list):
            for value in node:
                collect(value)

    def rename(node):
        if isinstance(node, dict):
            return {key: rename(value) for key, value in node.items()}
        if isinstance(node, list):
            return [rename(value) for value in node]
        return names.get(node, node) if isinstance(node, str) else node

    collect(config)
    return json.dumps(rename(config), sort_keys=True)


def _disk_path(model, takes_images, dtype, folder):
    """Where ``model``'s converted form for input ``dtype`` is kept (``None``: not cacheable)."""
    try:
        return folder / f"{model.name}-{_disk_key(model, takes_images, dtype)}.xml"
    except Exception:  # noqa: BLE001 - a model without a JSON config: no disk cache
        return None


def _store(converted, path):
    """Write the converted model atomically (``.bin`` first, then ``.xml``).

    A folder that cannot be written only costs the next process a conversion.
    """
    import openvino as ov

    folder = path.parent
    try:
        # The .bin lands first, then the .xml that names it: a reader that
        # finds the .xml finds its weights.
        with atomic_path(path, suffix=".xml") as temporary:
            temporary = Path(temporary)
            try:
                ov.save_model(converted, str(temporary), compress_to_fp16=False)
                checksum = _digest(temporary)
                os.replace(temporary.with_suffix(".bin"), path.with_suffix(".bin"))
                atomic_write_bytes(path.with_suffix(".blake2b"), checksum.encode("ascii"))
            finally:
                _remove_file(temporary.with_suffix(".bin"))
    except OSError as exc:
        warnings.warn(
            f"The converted model could not be stored in {folder} ({exc}); each process "
            "will convert it again. Set SKPTM_CACHE_DIR to a writable folder.",
            OpenVINOCacheWarning,
            stacklevel=5,
        )
        return
    try:
        evict()
    except OSError:  # eviction is housekeeping: never fail a transform over it
        pass


def _touch(path):
    """Mark ``path``'s entry as just used, for least-recently-used eviction."""
    for file in (path, *_companions(path)):
        mark_used(file)


def _remove_file(file):
    try:
        file.unlink()
    except OSError:
        pass


def _remove(path):
    for file in (path, *_companions(path)):
        try:
            file.unlink()
        except OSError:
            pass


class OpenVINOEngine:
    """Runs the float32 Keras network converted to OpenVINO, in OpenVINO's precision."""

    name = NAME

    def is_available(self) -> bool:
        return is_available()

    def require(self) -> None:
        require_openvino()

    def version(self) -> str | None:
        return version()

    def precisions(self, machine) -> tuple:
        """OpenVINO runs here on the CPU only; bfloat16 where the CPU computes it."""
        if machine.gpu or not self.is_available():
            return ()
        return ("float32", "bfloat16") if machine.native_bfloat16 else ("float32",)

    def network_precision(self, precision: str) -> str:
        return "float32"  # the float32 network is converted; OpenVINO computes in `precision`

    def conversion_seconds(self, network, precision: str) -> float:
        """Seconds to convert and compile ``network`` with no cache of any
        kind: what a fitted model, whose weights no cache holds, costs."""
        import time

        ov = require_openvino()
        start = time.perf_counter()
        converted = _convert(network.model, network.takes_images, "uint8" if network.takes_images else "float32")
        ov.Core().compile_model(converted, "CPU", _compile_config(precision))
        return time.perf_counter() - start

    def prepare(self, network, precision: str):
        from ..networks import NETWORKS

        if network.precision != "float32":
            raise ValueError("OpenVINO converts the float32 network; build it with precision='float32'.")

        def make():
            def run(batch):
                dtype = input_dtype(network.takes_images, batch.dtype)
                compiled = compiled_network(network.model, precision, takes_images=network.takes_images, dtype=dtype)
                return compiled.predict(batch.astype(dtype, copy=False))

            return dataclasses.replace(network, engine=NAME, precision=precision, runner=run)

        return NETWORKS.variant(network, (NAME, precision), make)

    def is_prepared(self, network, precision: str) -> bool:
        return is_compiled(network.model, precision, network.takes_images) or is_on_disk(
            network.model, network.takes_images
        )


ENGINE = OpenVINOEngine()
