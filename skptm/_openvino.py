"""Run a Keras feature network with OpenVINO: conversion, a disk cache, compiled models.

The network is the one skptm builds for TensorFlow (preprocessing inside,
pooling, chosen layers), converted in-process from a ``tf.function`` with a
dynamic batch dimension by ``openvino.convert_model``; nothing is downloaded.

Converting takes seconds (ResNet50 about 2 s, ConvNeXtTiny about 10 s), so
the converted model is stored on disk under a key of the network's
architecture and weights: another process, a ``GridSearchCV`` or Dask worker,
reads it back and compiles it in a fraction of a second. OpenVINO's own
compiled-model cache (``CACHE_DIR``) sits beside it. Both live in
:func:`cache_dir`; deleting that folder is always safe.

Nothing here is pickled with an estimator: the compiled models are kept per
process, keyed by the Keras model object they were converted from.
"""

from __future__ import annotations

import hashlib
import os
import threading
import warnings
import weakref
from pathlib import Path

import numpy as np

#: Bumped when the conversion changes, so that old disk entries are not used.
FORMAT_VERSION = 1

#: OpenVINO's name for each precision skptm knows.
_INFERENCE_PRECISION = {"float32": "f32", "bfloat16": "bf16", "float16": "f16"}

INSTALL_HINT = (
    "OpenVINO is not installed. Install it with: pip install \"skptm[openvino]\" "
    "(or pip install openvino), or use engine=\"tensorflow\"."
)


class OpenVINOCacheWarning(UserWarning):
    """A converted model on disk could not be used and was converted again."""


def is_available() -> bool:
    """Whether the ``openvino`` package can be imported."""
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


def require_openvino():
    """The ``openvino`` module, or an ImportError that says how to install it."""
    try:
        import openvino
    except ImportError as exc:
        raise ImportError(INSTALL_HINT) from exc
    return openvino


def cache_dir() -> Path:
    """Where converted models are kept: ``$SKPTM_CACHE_DIR/openvino``, else
    ``$XDG_CACHE_HOME/skptm/openvino``, else ``~/.cache/skptm/openvino``."""
    root = os.environ.get("SKPTM_CACHE_DIR")
    if not root:
        root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "skptm"
    return Path(root) / "openvino"


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


def cache_info() -> dict:
    """Counters: ``conversions`` (Keras to OpenVINO), ``disk_hits``, ``compilations``."""
    with _lock:
        return dict(_stats)


def is_compiled(model, precision: str) -> bool:
    """Whether ``model`` was compiled for ``precision`` in this process."""
    with _lock:
        return precision in _compiled.get(model, {})


def compiled_network(model, precision: str, *, takes_images: bool) -> CompiledNetwork:
    """``model`` (a float32 Keras feature network) compiled by OpenVINO.

    Converted once per process and model object, read from the disk cache
    when another process converted it before; compiled once per precision.

    Parameters
    ----------
    model : keras.Model
        Input ``(batch, height, width, 3)`` of 0-255 values (fed as uint8),
        or ``(batch, n_columns)`` float32 for a tabular network.
    precision : {"float32", "bfloat16", "float16"}
        OpenVINO's inference precision hint.
    takes_images : bool
    """
    with _lock:
        compiled = _compiled.setdefault(model, {})
        found = compiled.get(precision)
        if found is not None:
            return found
        model_lock = _locks.setdefault(model, threading.Lock())
    with model_lock:  # one conversion per model, even from several threads
        found = compiled.get(precision)
        if found is None:
            found = compiled[precision] = _compile(model, precision, takes_images)
        return found


def _compile(model, precision, takes_images):
    ov = require_openvino()
    core = ov.Core()
    folder = cache_dir()
    config = {
        "INFERENCE_PRECISION_HINT": _INFERENCE_PRECISION[precision],
        # One stream on every core: each call is one large batch, and skptm's
        # decoding threads fill the next batch meanwhile.
        "PERFORMANCE_HINT": "LATENCY",
    }
    path = _disk_path(model, takes_images, folder)
    if path is not None and path.is_file() and path.with_suffix(".bin").is_file():
        try:
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
            with _lock:
                _stats["disk_hits"] += 1
                _stats["compilations"] += 1
            return CompiledNetwork(compiled, precision)
    # The converted model is not kept: the compiled one holds its own copy
    # of the weights; another precision reads it back from disk.
    converted = _convert(model, takes_images)
    if path is not None:
        _store(converted, path)
    return _compile_converted(core, converted, config, precision)


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


def _convert(model, takes_images):
    import openvino as ov
    import tensorflow as tf

    from ._networks import quiet_retracing_warnings

    if takes_images:
        # Images travel as uint8 (4x fewer bytes than float32) and are cast
        # inside, as the Keras network's input layer does.
        spec = tf.TensorSpec([None, *model.inputs[0].shape[1:]], tf.uint8)
        function = tf.function(lambda x: model(tf.cast(x, tf.float32), training=False))
    else:
        spec = tf.TensorSpec([None, *model.inputs[0].shape[1:]], tf.float32)
        function = tf.function(lambda x: model(x, training=False))
    with quiet_retracing_warnings():
        converted = ov.convert_model(function.get_concrete_function(spec))
    with _lock:
        _stats["conversions"] += 1
    return converted


def _disk_key(model, takes_images) -> str:
    """A key of everything the converted model depends on."""
    import keras
    import openvino as ov
    import tensorflow as tf

    from ._networks import fingerprint

    digest = hashlib.sha256()
    for part in (
        str(FORMAT_VERSION),
        _canonical_architecture(model),
        fingerprint(model),
        "images" if takes_images else "table",
        ov.__version__,
        tf.__version__,
        keras.__version__,
    ):
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()[:32]


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


def _disk_path(model, takes_images, folder):
    """Where ``model``'s converted form is kept (``None``: not cacheable)."""
    try:
        return folder / f"{model.name}-{_disk_key(model, takes_images)}.xml"
    except Exception:  # noqa: BLE001 - a model without a JSON config: no disk cache
        return None


def _store(converted, path):
    """Write the converted model atomically (``.bin`` first, then ``.xml``).

    A folder that cannot be written only costs the next process a conversion.
    """
    import openvino as ov

    folder = path.parent
    temporary = path.with_name(f"{path.stem}.{os.getpid()}.{threading.get_ident()}.tmp.xml")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        ov.save_model(converted, str(temporary), compress_to_fp16=False)
        os.replace(temporary.with_suffix(".bin"), path.with_suffix(".bin"))
        os.replace(temporary, path)
    except OSError as exc:
        warnings.warn(
            f"The converted model could not be stored in {folder} ({exc}); each process "
            "will convert it again. Set SKPTM_CACHE_DIR to a writable folder.",
            OpenVINOCacheWarning,
            stacklevel=5,
        )
        _remove(temporary)


def _remove(path):
    for file in (path, path.with_suffix(".bin")):
        try:
            file.unlink()
        except OSError:
            pass
