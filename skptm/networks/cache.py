"""The process-wide network cache: one object owns every cached network, lock and counter.

Two levels, both keyed by everything that determines their contents:

* base networks, by (backbone, weights identity, input shape, image data
  format, precision): the costly part, since it holds the weights;
* feature networks, by (base key, preprocessing, pooling, layers): cheap
  wrappers that share their base's weights.

``GridSearchCV`` clones, repeated ``transform`` calls and unpickled
estimators therefore never rebuild a network or reload weights. The least
recently used base networks are dropped beyond :data:`MAX_CACHED_BACKBONES`.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections import OrderedDict

import keras

from .. import _threads
from .._backbones import get_backbone_spec, with_weights_folder
from .._tta import parse_tta
from .assembly import as_size, assemble, describe
from .building import build_backbone
from .fingerprints import model_identity
from .hub import PRESET_WEIGHTS_FILES, hub_input_size
from .precision import dtype_policy_scope, with_precision

MAX_CACHED_BACKBONES = 8


class NetworkCache:
    """Every network this process built, and the locks that build each once.

    Only threads that need the very base being built wait for it; cache hits
    of other networks go on meanwhile.
    """

    def __init__(self, max_backbones=MAX_CACHED_BACKBONES):
        self.max_backbones = max_backbones
        self._lock = threading.RLock()
        self._bases: OrderedDict = OrderedDict()  # base key -> (base, {feature key: FeatureNetwork})
        self._building: dict = {}  # base key -> the lock its builders hold, while they build
        self._stats = {"hits": 0, "misses": 0, "base_builds": 0}
        self._variants = weakref.WeakKeyDictionary()  # network -> {variant key: variant}, see variant()

    def info(self) -> dict:
        """Counters: ``hits``, ``misses``, ``base_builds``, and sizes."""
        with self._lock:
            return {
                **self._stats,
                "backbones": len(self._bases),
                "networks": sum(len(networks) for _, networks in self._bases.values()),
            }

    def clear(self) -> None:
        """Drop every cached network (they are rebuilt on demand)."""
        with self._lock:
            self._bases.clear()
            self._building.clear()
            self._variants.clear()

    def variant(self, network, key, make):
        """One object per ``(network, key)``: ``make()`` on the first request.

        Engines use it so that a network run by another engine is one object
        per process, as cached networks are for TensorFlow; variants go with
        their network when the cache drops it.
        """
        with self._lock:
            variants = self._variants.setdefault(network, {})
            if key not in variants:
                variants[key] = make()
            return variants[key]

    def get(self, backbone, *, weights, input_size, pooling, layers, preprocessing, precision, views=()):
        """The feature network for these parameters, from the cache or built."""
        spec = with_weights_folder(get_backbone_spec(backbone), weights) if isinstance(backbone, str) else None
        if spec is not None and spec.is_hub:
            input_size = hub_input_size(spec, as_size(input_size), weights)
        family = _preprocessing_family(spec, preprocessing)
        feature_key = (family, pooling, layers, views)
        base_key = (*_base_key(backbone, spec, weights, input_size), precision)
        network = self._cached(base_key, feature_key)
        if network is not None:
            return network
        with self._build_lock(base_key):
            entry = self._base_entry(base_key, backbone, spec, weights, input_size, precision)
            network = self._cached(base_key, feature_key)
            if network is not None:
                return network
            blueprint = describe(entry[0], spec, backbone, family, pooling, layers, input_size, precision, views)
            network = assemble(blueprint)
            with self._lock:
                self._stats["misses"] += 1
                entry[1][feature_key] = network
            return network

    def _cached(self, base_key, feature_key):
        with self._lock:
            entry = self._bases.get(base_key)
            network = entry[1].get(feature_key) if entry is not None else None
            if network is not None:
                self._bases.move_to_end(base_key)
                self._stats["hits"] += 1
            return network

    def _build_lock(self, base_key):
        with self._lock:
            return self._building.setdefault(base_key, threading.Lock())

    def _base_entry(self, base_key, backbone, spec, weights, input_size, precision):
        """The entry ``(base, {feature key: network})`` of ``base_key``, built on a
        miss; the caller holds ``base_key``'s build lock.

        A reduced-precision base is a copy of the float32 one (from the cache),
        so weights are loaded once whatever the precisions in use.
        """
        with self._lock:
            entry = self._bases.get(base_key)
        if entry is not None:
            return entry
        _threads.configure_tensorflow()
        if precision == "float32":
            with dtype_policy_scope("float32"):
                base = build_backbone(backbone, spec, weights, as_size(input_size))
        else:
            float32_key = (*base_key[:-1], "float32")
            with self._build_lock(float32_key):
                float32_base = self._base_entry(float32_key, backbone, spec, weights, input_size, "float32")[0]
            base = with_precision(float32_base, precision)
        with self._lock:
            self._stats["base_builds"] += 1
            entry = self._bases[base_key] = (base, {})
            # Built: later builders find the entry, so the lock can go (it
            # would otherwise keep the key, and a user's callable, alive).
            self._building.pop(base_key, None)
            while len(self._bases) > self.max_backbones:
                self._bases.popitem(last=False)
        return entry


#: The one network cache of this process.
NETWORKS = NetworkCache()


def get_feature_network(
    backbone,
    *,
    weights="imagenet",
    input_size=None,
    pooling="avg",
    layers=None,
    preprocessing=None,
    precision="float32",
    tta=None,
):
    """The feature network for these parameters, from :data:`NETWORKS` or built.

    Parameters are those of :class:`~skptm.PretrainedFeatureTransformer`;
    ``layers`` is ``None`` or a tuple of layer names, ``precision`` a concrete
    precision (``"auto"`` already resolved).
    """
    return NETWORKS.get(
        backbone,
        weights=weights,
        input_size=input_size,
        pooling=pooling,
        layers=layers,
        preprocessing=preprocessing,
        precision=precision,
        views=parse_tta(tta),
    )


def cache_info() -> dict:
    """Counters of the network cache: ``hits``, ``misses``, ``base_builds``, sizes."""
    return NETWORKS.info()


def clear_network_cache() -> None:
    """Drop every cached network of this process (they are rebuilt on demand)."""
    NETWORKS.clear()


def backbone_takes_table(backbone, *, weights, input_size) -> bool:
    """Whether ``backbone`` takes rows of a table (for the estimators' tags).

    Named backbones take images; a custom one is built (or taken from the
    cache) to look at its input. A backbone that cannot be built counts as
    taking images: ``fit`` reports the problem.
    """
    if isinstance(backbone, str):
        return False
    try:
        network = get_feature_network(backbone, weights=weights, input_size=input_size)
    except Exception:  # noqa: BLE001 - reported by fit, not by tags
        return False
    return not network.takes_images


def _preprocessing_family(spec, preprocessing):
    if preprocessing is not None:
        return preprocessing
    return spec.preprocessing if spec is not None else "none"


def _base_key(backbone, spec, weights, input_size):
    if spec is not None:
        backbone_id = (spec.source, spec.source_preset if spec.is_hub else spec.keras_name)
        input_size = input_size or spec.input_size
    elif isinstance(backbone, keras.Model):
        # By content, not id(): sklearn's clone deep-copies the model, and
        # the copies must share one cached network.
        backbone_id = ("model", model_identity(backbone))
    else:
        backbone_id = ("callable", _CallableKey(backbone))
    if spec is None and weights == "imagenet":
        weights = None  # both mean "the custom model's weights as they are"
    # Layers take Keras's global image data format when they are made: a
    # network built under another one is another network.
    return (backbone_id, _weights_identity(weights), as_size(input_size), keras.config.image_data_format())


class _CallableKey:
    """A cache key for a callable backbone that keeps the callable alive.

    Equal callables (by ``==``, e.g. two instances of a class that defines
    ``__eq__`` and ``__hash__``, or the same function) share one network.
    Unhashable ones are keyed by identity; holding the object means its
    ``id`` cannot be reused by another object while the entry exists.
    """

    __slots__ = ("callable", "_hash")

    def __init__(self, backbone):
        self.callable = backbone
        try:
            self._hash = hash(backbone)
        except TypeError:
            self._hash = None

    def __hash__(self):
        return self._hash if self._hash is not None else id(self.callable)

    def __eq__(self, other):
        if not isinstance(other, _CallableKey):
            return NotImplemented
        if self._hash is None or other._hash is None:
            return self.callable is other.callable
        return self.callable is other.callable or self.callable == other.callable


def _weights_identity(weights):
    if weights is None or (isinstance(weights, str) and weights == "imagenet"):
        return weights
    path = os.path.abspath(os.fspath(weights))
    content = path
    if os.path.isdir(path):  # a KerasHub preset directory changes with its weights file (or index)
        content = next(
            (os.path.join(path, name) for name in PRESET_WEIGHTS_FILES if os.path.isfile(os.path.join(path, name))),
            path,
        )
    try:
        stat = os.stat(content)
    except OSError:
        return ("file", path)  # the build will raise a clear error
    # The change time and inode as well as the modification time: a copy that
    # keeps the old file's mtime (cp -p, rsync, tar) is another file all the same.
    return ("file", path, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino, stat.st_size)
