"""Build feature networks and cache them per process.

A *feature network* maps raw RGB in 0-255 (or, for a tabular custom
backbone, rows of a table) to one feature vector per input. It is a Keras
model made of three parts: the preprocessing of the backbone's family, the
backbone itself (a ``keras.applications`` network or the user's model), and
the pooling of one or more of its layers.

Two caches, both per process and keyed by everything that determines their
contents:

* base networks, by (backbone, weights identity, input shape): the costly
  part, since it holds the weights;
* feature networks, by (base key, preprocessing, pooling, layers): cheap
  wrappers that share their base's weights.

``GridSearchCV`` clones, repeated ``transform`` calls and unpickled
estimators therefore never rebuild a network or reload weights. The least
recently used base networks are dropped beyond :data:`MAX_CACHED_BACKBONES`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import os
import re
import threading
import warnings
import weakref
import zlib
from collections import OrderedDict
from dataclasses import dataclass

import keras
import numpy as np

from ._backbones import BackboneSpec, get_backbone_spec
from ._precision import dtype_policy_scope, with_precision

MAX_CACHED_BACKBONES = 8

#: The seed of ``weights=None``: random initialisation is the same in every
#: process, so an unpickled or cloned estimator computes the same features.
RANDOM_WEIGHTS_SEED = 0

_PARTIAL_LOAD = re.compile(r"freshly-initialized|could not be loaded|Skipping|mismatch", re.I)

_IMAGENET_MEAN_BGR = (103.939, 116.779, 123.68)
_IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
_IMAGENET_STD_RGB = (0.229, 0.224, 0.225)


class WeightsUnavailableError(OSError):
    """The ImageNet weights are neither in Keras's cache nor downloadable."""


@keras.saving.register_keras_serializable(package="skptm")
class ImagePreprocessing(keras.layers.Layer):
    """Raw RGB in 0-255 to the input a ``keras.applications`` family expects.

    The same arithmetic, in the same order, as the family's
    ``preprocess_input``, but inside the graph, on a copy, for any batch.

    Parameters
    ----------
    family : {"caffe", "tf", "torch"}
        ``"caffe"``: RGB to BGR, subtract the ImageNet mean. ``"tf"``: scale
        to [-1, 1]. ``"torch"``: scale to [0, 1], normalise with the ImageNet
        mean and standard deviation.
    """

    def __init__(self, family, **kwargs):
        super().__init__(**kwargs)
        if family not in ("caffe", "tf", "torch"):
            raise ValueError(f"Unknown preprocessing family. Received: family={family!r}")
        self.family = family

    def call(self, inputs):
        x = keras.ops.cast(inputs, self.compute_dtype)
        if self.family == "tf":
            return x / 127.5 - 1.0
        if self.family == "torch":
            x = x / 255.0
            return (x - np.asarray(_IMAGENET_MEAN_RGB, "float32")) / np.asarray(
                _IMAGENET_STD_RGB, "float32"
            )
        return keras.ops.flip(x, axis=-1) - np.asarray(_IMAGENET_MEAN_BGR, "float32")

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "family": self.family}


@dataclass(frozen=True)
class FeatureNetwork:
    """A built feature network and what callers need to know about it.

    Attributes
    ----------
    model : keras.Model
        Raw input to features, ``(batch, n_features)``.
    base : keras.Model
        The backbone inside ``model`` (shared, never to be trained in place).
    takes_images : bool
        ``True`` for image input ``(batch, height, width, 3)``; ``False`` for
        rows of a table ``(batch, n_columns)``.
    input_size : tuple of int or None
        ``(height, width)`` of the image input.
    n_input_features : int or None
        The table width a tabular network requires, if fixed.
    feature_names : tuple of str
    preprocessing : str
        The preprocessing family inside ``model``.
    precision : str
        What the network computes in (``"float32"``, ``"bfloat16"`` or
        ``"float16"``); features are float32 in every case.
    engine : str
        What runs :meth:`predict`: ``"tensorflow"`` (``model`` itself) or
        ``"openvino"`` (``model`` converted, see :func:`with_engine`).
    """

    model: object
    base: object
    takes_images: bool
    input_size: tuple | None
    n_input_features: int | None
    feature_names: tuple
    preprocessing: str = "none"
    precision: str = "float32"
    engine: str = "tensorflow"

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Features of one batch, as a float32 array."""
        if self.engine == "openvino":
            from ._openvino import compiled_network

            return compiled_network(self.model, self.precision, takes_images=self.takes_images).predict(batch)
        with quiet_retracing_warnings():
            return np.asarray(self.model.predict_on_batch(batch), dtype=np.float32)


def with_engine(network: FeatureNetwork, engine: str, precision: str) -> FeatureNetwork:
    """``network`` run by ``engine`` in ``precision``.

    For OpenVINO, ``network`` must be the float32 one: it is converted as it
    is, and OpenVINO computes in ``precision`` (converted and compiled on the
    first :meth:`~FeatureNetwork.predict`, once per process).
    """
    if engine == "tensorflow":
        return network
    if network.precision != "float32":
        raise ValueError("OpenVINO converts the float32 network; build it with precision='float32'.")
    with _lock:  # one object per variant, as the cache gives for TensorFlow
        variants = _engine_variants.setdefault(network, {})
        variant = variants.get((engine, precision))
        if variant is None:
            variant = variants[(engine, precision)] = dataclasses.replace(network, engine=engine, precision=precision)
        return variant


class _RetracingFilter(logging.Filter):
    def filter(self, record):
        return "triggered tf.function retracing" not in record.getMessage()


@contextlib.contextmanager
def quiet_retracing_warnings():
    """Drop TensorFlow's "tf.function retracing" warning inside the block.

    Every network skptm builds gets its own predict and train functions, and
    TensorFlow warns once a few of them have been traced, which is expected
    here and says nothing to the user. Only that message is filtered, only
    while skptm runs; the filter is removed afterwards.
    """
    logger = logging.getLogger("tensorflow")
    log_filter = _RetracingFilter()
    logger.addFilter(log_filter)
    try:
        yield
    finally:
        logger.removeFilter(log_filter)


# -- the caches -----------------------------------------------------------------

_lock = threading.RLock()
_bases: OrderedDict = OrderedDict()  # base key -> (base model, {feature key: FeatureNetwork})
_building: dict = {}  # base key -> the lock its builders hold
_stats = {"hits": 0, "misses": 0, "base_builds": 0}
_engine_variants: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # network -> {(engine, precision): network}


def cache_info() -> dict:
    """Counters of the network cache: ``hits``, ``misses``, ``base_builds``, sizes."""
    with _lock:
        return {
            **_stats,
            "backbones": len(_bases),
            "networks": sum(len(networks) for _, networks in _bases.values()),
        }


def clear_network_cache() -> None:
    """Drop every cached network of this process (they are rebuilt on demand)."""
    with _lock:
        _bases.clear()


def get_feature_network(
    backbone,
    *,
    weights="imagenet",
    input_size=None,
    pooling="avg",
    layers=None,
    preprocessing=None,
    precision="float32",
) -> FeatureNetwork:
    """The feature network for these parameters, from the cache or built.

    Parameters are those of :class:`~skptm.PretrainedFeatureTransformer`;
    ``layers`` is ``None`` or a tuple of layer names, ``precision`` one of
    :data:`~skptm._precision.PRECISIONS` (``"auto"`` already resolved).
    """
    spec = get_backbone_spec(backbone) if isinstance(backbone, str) else None
    family = _preprocessing_family(spec, preprocessing)
    feature_key = (family, pooling, layers)
    base_key = (*_base_key(backbone, spec, weights, input_size), precision)
    network = _cached_network(base_key, feature_key)
    if network is not None:
        return network
    # Only threads that need this very base wait while it is built; cache
    # hits of other networks go on.
    with _build_lock(base_key):
        entry = _base_entry(base_key, backbone, spec, weights, input_size, precision)
        network = _cached_network(base_key, feature_key)
        if network is not None:
            return network
        # skptm's layers around the backbone (preprocessing, pooling) compute
        # in float32 whatever policy the user set for this thread.
        with dtype_policy_scope("float32"):
            network = _wrap(entry[0], spec, backbone, family, pooling, layers, input_size, precision)
        with _lock:
            _stats["misses"] += 1
            entry[1][feature_key] = network
        return network


def _cached_network(base_key, feature_key):
    with _lock:
        entry = _bases.get(base_key)
        network = entry[1].get(feature_key) if entry is not None else None
        if network is not None:
            _bases.move_to_end(base_key)
            _stats["hits"] += 1
        return network


def _build_lock(base_key):
    with _lock:
        return _building.setdefault(base_key, threading.Lock())


def _base_entry(base_key, backbone, spec, weights, input_size, precision):
    """The cache entry ``(base, {feature key: network})`` of ``base_key``,
    built on a miss; the caller holds ``base_key``'s build lock.

    A reduced-precision base is a copy of the float32 one (from the cache),
    so weights are loaded once whatever the precisions in use.
    """
    with _lock:
        entry = _bases.get(base_key)
    if entry is not None:
        return entry
    if precision == "float32":
        with dtype_policy_scope("float32"):
            base = _build_base(backbone, spec, weights, input_size)
    else:
        float32_key = (*base_key[:-1], "float32")
        with _build_lock(float32_key):
            float32_base = _base_entry(float32_key, backbone, spec, weights, input_size, "float32")[0]
        base = with_precision(float32_base, precision)
    with _lock:
        _stats["base_builds"] += 1
        entry = _bases[base_key] = (base, {})
        while len(_bases) > MAX_CACHED_BACKBONES:
            _bases.popitem(last=False)
    return entry


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
        backbone_id = ("keras.applications", spec.keras_name)
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
    return (backbone_id, _weights_identity(weights), _as_size(input_size), keras.config.image_data_format())


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


def fingerprint(model) -> str:
    """A SHA-256 over every weight of ``model``, in order."""
    digest = hashlib.sha256()
    for weight in model.weights:
        value = np.ascontiguousarray(weight.numpy())  # convert_to_numpy warns on NumPy 2
        digest.update(str(value.shape).encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


_fingerprints: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def base_fingerprint(base) -> str:
    """:func:`fingerprint` of a cached base network, computed once per model
    object (cached bases are never trained or changed)."""
    return _memoized(_fingerprints, base, fingerprint)


#: Identities of the user's models already hashed, per model object: hashing
#: every weight of a large model costs seconds, and tags, transform and
#: get_feature_names_out all need the key. Like the private copy the cache
#: holds, it is a snapshot: a model changed in place after first use keeps
#: its first identity (pass a new model object to use new weights).
_identities: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def model_identity(model) -> str:
    """A key for a user's ``keras.Model``: its architecture and its weights.

    Computed once per model object (see :data:`_identities`).
    """
    return _memoized(_identities, model, _hash_model)


def _memoized(table, model, compute):
    """``table[model]``, computed by ``compute(model)`` on first use.

    Computed outside the cache's lock (hashing a large model takes seconds):
    at worst twice, never holding up other threads.
    """
    value = table.get(model)
    if value is None:
        value = compute(model)
        with _lock:
            table[model] = value
    return value


def _hash_model(model) -> str:
    try:
        architecture = model.to_json()
    except Exception:  # noqa: BLE001 - a layer without a config
        architecture = repr([(layer.name, type(layer).__name__) for layer in model.layers])
    return hashlib.sha256(f"{type(model).__name__}{architecture}".encode()).hexdigest() + fingerprint(model)


def _weights_identity(weights):
    if weights is None or (isinstance(weights, str) and weights == "imagenet"):
        return weights
    path = os.path.abspath(os.fspath(weights))
    try:
        stat = os.stat(path)
    except OSError:
        return ("file", path)  # the build will raise a clear error
    return ("file", path, stat.st_mtime_ns, stat.st_size)


def _as_size(input_size):
    if input_size is None:
        return None
    if isinstance(input_size, int):
        return (input_size, input_size)
    return tuple(int(s) for s in input_size)


# -- building -------------------------------------------------------------------------


#: Initializer attributes of Keras layers and the weights they initialise
#: (the first that the layer has: DepthwiseConv2D keeps its depthwise kernel
#: as ``kernel``, SeparableConv2D as ``depthwise_kernel``).
_INITIALIZED_WEIGHTS = {
    "kernel_initializer": ("kernel",),
    "bias_initializer": ("bias",),
    "depthwise_initializer": ("depthwise_kernel", "kernel"),
    "pointwise_initializer": ("pointwise_kernel",),
    "embeddings_initializer": ("embeddings",),
    "recurrent_initializer": ("recurrent_kernel",),
    "gamma_initializer": ("gamma",),
    "beta_initializer": ("beta",),
}


def reinitialize_random_weights(model, seed) -> None:
    """Draw every randomly initialised weight of ``model`` again from seeds
    derived from ``seed`` and the layer's position.

    Keras gives an initializer without a seed one drawn from Python's global
    ``random`` when the layer is made. Reseeding that global state would
    change it under the feet of every other thread (and another thread,
    Dask's event loop for one, may draw from it during the build); seeds
    fixed per weight make the "same in every process" random network
    independent of whatever else the process does, without touching it.
    """
    for index, layer in enumerate(model._flatten_layers(include_self=False)):
        for attribute, weight_names in _INITIALIZED_WEIGHTS.items():
            initializer = getattr(layer, attribute, None)
            variable = next((getattr(layer, name) for name in weight_names if getattr(layer, name, None) is not None), None)
            if variable is None or getattr(initializer, "seed", None) is None:
                continue  # no such weight, or a constant initializer
            config = initializer.get_config()
            config["seed"] = zlib.crc32(f"{seed}/{index}/{attribute}".encode())
            fresh = type(initializer).from_config(config)
            variable.assign(fresh(tuple(variable.shape), dtype=variable.dtype))


def _build_base(backbone, spec, weights, input_size):
    if spec is not None:
        return _build_application(spec, weights, _as_size(input_size))
    return _build_custom(backbone, weights)


def _build_application(spec: BackboneSpec, weights, input_size):
    height, width = input_size or (spec.input_size, spec.input_size)
    input_shape = (height, width, 3)
    constructor = spec.constructor()
    if weights == "imagenet":
        try:
            return constructor(include_top=False, weights="imagenet", input_shape=input_shape)
        except Exception as exc:
            if "URL fetch failure" in str(exc):
                raise WeightsUnavailableError(_offline_message(spec, exc)) from exc
            damaged = _cached_weights_files(spec)
            if isinstance(exc, (OSError, ValueError)) and damaged:
                raise WeightsUnavailableError(_damaged_message(spec, damaged, exc)) from exc
            raise
    path = _check_weights_path(weights)
    model = constructor(include_top=False, weights=None, input_shape=input_shape)
    if path is not None:
        _load_weights(model, path, spec.name)
    else:
        reinitialize_random_weights(model, RANDOM_WEIGHTS_SEED)
    return model


def _build_custom(backbone, weights):
    path = _check_weights_path(None if weights == "imagenet" else weights)
    if isinstance(backbone, keras.Model):
        # A private copy: the cached network is frozen and shared, and the
        # caller's model must stay theirs to train or change.
        model = private_copy(backbone)
    else:
        model = backbone()
        if not isinstance(model, keras.Model):
            raise TypeError(
                "A callable backbone must return a keras.Model; "
                f"{getattr(backbone, '__name__', backbone)!r} returned "
                f"{type(model).__name__}."
            )
        reinitialize_random_weights(model, RANDOM_WEIGHTS_SEED)
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ValueError(
            "A custom backbone must have exactly one input and one output; "
            f"{model.name!r} has {len(model.inputs)} inputs and {len(model.outputs)} outputs."
        )
    if path is not None:
        _load_weights(model, path, model.name)
    return model


def private_copy(model):
    """A copy of ``model`` with equal weights that shares no variable with it."""
    try:
        copy = keras.models.clone_model(model)
        copy.set_weights(model.get_weights())
        return copy
    except Exception:  # noqa: BLE001 - e.g. a subclassed model clone_model cannot rebuild
        import copy as copying

        return copying.deepcopy(model)


def _check_weights_path(weights):
    if weights is None:
        return None
    path = os.fspath(weights)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"The weights file {path!r} does not exist. Pass weights='imagenet' for "
            "Keras's ImageNet weights, weights=None for a random initialisation, or "
            "the path of an existing weights file (.weights.h5, .h5 or .keras)."
        )
    return path


def _load_weights(model, path, name):
    # Keras only warns when parts of a file match no layer and keeps those
    # layers' random weights; for a feature extractor that is a wrong model.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model.load_weights(path)
            problem = next(
                (str(w.message) for w in caught if _PARTIAL_LOAD.search(str(w.message))), None
            )
        except Exception as exc:  # noqa: BLE001 - re-raised with the path
            problem, cause = str(exc), exc
        else:
            cause = None
    if problem is None:
        for w in caught:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        return
    if len(problem) > 600:
        problem = problem[:600] + " [...]"
    raise ValueError(
        f"The weights file {path!r} does not fit backbone {name!r} "
        f"(input shape {tuple(model.input_shape[1:])}, include_top=False): {problem} "
        "Save the weights of the same architecture without its classification "
        "top, e.g. keras.applications.X(include_top=False, weights=None)"
        ".save_weights('x.weights.h5')."
    ) from cause


def _offline_message(spec, exc):
    match = re.search(r"URL fetch failure on (\S+?)(?=: )", str(exc))
    filename = os.path.basename(match.group(1)) if match else "the ImageNet weights file"
    cache = os.path.join(_keras_home(), "models")
    return (
        f"Could not get the ImageNet weights of {spec.name!r}: Keras looked for "
        f"{filename!r} in its cache {cache!r} (set by the KERAS_HOME environment "
        "variable, default ~/.keras) and could not download it, so this machine "
        "seems to be offline. Two ways out: (1) run once on a machine with internet "
        f"access, or copy {filename!r} into {cache!r}, so that the cache is filled; "
        "or (2) pass weights='<path to a weights file>' for this architecture "
        f"(include_top=False). Cause: {exc}"
    )


def _cached_weights_files(spec):
    """The files in Keras's weights cache that may belong to ``spec``'s family."""
    family = spec.constructor().__module__.rsplit(".", 1)[-1].replace("_", "")
    folder = os.path.join(_keras_home(), "models")
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return []
    return [os.path.join(folder, name) for name in names if family in name.lower().replace("_", "")]


def _damaged_message(spec, files, exc):
    listing = ", ".join(repr(path) for path in files)
    return (
        f"The ImageNet weights of {spec.name!r} in Keras's cache could not be read: {exc}. "
        f"The cached file is probably partial or corrupt (an interrupted download or copy): "
        f"{listing}. Delete it and fetch it again, with skptm.fetch_weights([{spec.name!r}]) "
        "on a machine with internet access (then copy it into this cache if this one is "
        "offline)."
    )


def fetch_weights(names=None, *, verbose=1) -> str:
    """Download ImageNet weights into Keras's cache ahead of time.

    For a cluster without internet access or a container build: run this
    where there is a network, then ship the cache folder (``~/.keras/models``,
    or ``$KERAS_HOME/models``) with the machines or the image. The files come
    through Keras's own download, which checks each file's hash where Keras
    has one, and are the very files ``weights="imagenet"`` then reads.

    Parameters
    ----------
    names : str, list of str or None, default=None
        Backbone names (see :func:`skptm.list_backbones`); ``None`` fetches
        every network of the registry (several GB).
    verbose : int, default=1
        ``1`` shows a progress bar over the networks.

    Returns
    -------
    folder : str
        Keras's weights cache folder, which now holds the files.

    Raises
    ------
    WeightsUnavailableError
        Offline, or with a damaged file in the cache (named in the message).

    Notes
    -----
    Weights without their classification top are fetched at each network's
    native input size; the MobileNet families have separate files per input
    size, so fetch on the machine the size you will use, or copy those too.

    Examples
    --------
    >>> import skptm
    >>> skptm.fetch_weights(["resnet50", "mobilenet_v2"])  # doctest: +SKIP
    '/home/me/.keras/models'
    """
    from tqdm.auto import tqdm

    from ._backbones import list_backbones

    if names is None:
        names = [backbone["name"] for backbone in list_backbones()]
    elif isinstance(names, str):
        names = [names]
    specs = [get_backbone_spec(name) for name in names]  # every name checked before any download
    with tqdm(specs, unit=" networks", disable=not verbose) as progress:
        for spec in progress:
            progress.set_postfix_str(spec.name)
            with dtype_policy_scope("float32"):
                _build_application(spec, "imagenet", None)
    return os.path.join(_keras_home(), "models")


def _keras_home():
    """Where Keras keeps its cache: fixed when Keras was imported."""
    try:
        from keras.src.backend.config import keras_home

        return keras_home()
    except ImportError:  # a Keras without the private accessor
        pass
    home = os.environ.get("KERAS_HOME")
    if home:
        return home
    base = os.path.expanduser("~")
    if not os.access(base, os.W_OK):
        base = "/tmp"
    return os.path.join(base, ".keras")


# -- wrapping -------------------------------------------------------------------------


def _wrap(base, spec, backbone, family, pooling, layers, input_size, precision):
    base_shape = tuple(base.inputs[0].shape[1:])
    prefix = spec.name if spec is not None else _custom_name(backbone, base)
    if len(base_shape) == 1:
        return _wrap_tabular(base, prefix, base_shape[0], precision)
    if len(base_shape) != 3 or base_shape[-1] != 3:
        raise ValueError(
            "A custom backbone must take images (batch, height, width, 3) or rows of "
            f"a table (batch, n_features); {base.name!r} takes {base_shape}."
        )
    size = _image_size(base, base_shape, _as_size(input_size))
    inputs = keras.Input(shape=(*size, 3), name="rgb_0_255")
    x = inputs if family == "none" else ImagePreprocessing(family, name="preprocessing")(inputs)
    if layers:
        extractor = keras.Model(
            base.inputs, [get_layer(base, name).output for name in layers], name="layers"
        )
        outputs = extractor(x)
        parts = [(f"{prefix}_{name}", out) for name, out in zip(layers, outputs, strict=True)]
    else:
        parts = [(prefix, base(x))]
    pooled, names = [], []
    for part_prefix, tensor in parts:
        tensor, label = global_pool(tensor, pooling)
        pooled.append(tensor)
        names.extend(f"{part_prefix}_{label}_{i}" for i in range(tensor.shape[-1]))
    output = pooled[0] if len(pooled) == 1 else keras.layers.Concatenate(name="features")(pooled)
    model = keras.Model(inputs, output, name=f"skptm_{prefix}")
    return FeatureNetwork(model, base, True, size, None, tuple(names), family, precision)


def _wrap_tabular(base, prefix, n_columns, precision):
    if len(base.outputs[0].shape) != 2:
        raise ValueError(
            f"A tabular backbone must output (batch, n_features); {base.name!r} "
            f"outputs {tuple(base.outputs[0].shape)}."
        )
    names = tuple(f"{prefix}_{i}" for i in range(base.outputs[0].shape[-1]))
    return FeatureNetwork(base, base, False, None, n_columns, names, precision=precision)


def _custom_name(backbone, base):
    if isinstance(backbone, keras.Model):
        return backbone.name
    return getattr(backbone, "__name__", None) or base.name


def _image_size(base, base_shape, input_size):
    fixed = base_shape[:2]
    if None in fixed:
        if input_size is None:
            raise ValueError(
                f"Backbone {base.name!r} accepts any image size; pass input_size=(height, "
                "width) (or an int for a square) to choose one."
            )
        return input_size
    if input_size is not None and tuple(input_size) != tuple(fixed):
        raise ValueError(
            f"Backbone {base.name!r} takes images of size {tuple(fixed)}; got "
            f"input_size={input_size}. Leave input_size=None to use its own size."
        )
    return tuple(fixed)


def get_layer(base, name, parameter="layer"):
    """``base``'s layer ``name``, or a ``ValueError`` listing the closest names."""
    names = [layer.name for layer in base.layers]
    if name not in names:
        import difflib

        close = difflib.get_close_matches(name, names, n=5, cutoff=0.4)
        hint = f" Closest: {', '.join(map(repr, close))}." if close else ""
        raise ValueError(
            f"Backbone {base.name!r} has no layer named {name!r}.{hint} "
            f"See [layer.name for layer in model.layers]. Received: {parameter}={name!r}"
        )
    return base.get_layer(name)


def global_pool(tensor, pooling):
    """Pool a feature map to a vector: ``(pooled tensor, label for feature names)``."""
    if len(tensor.shape) == 2:
        return tensor, "out"
    if len(tensor.shape) != 4:
        return keras.layers.Flatten()(tensor), "flat"
    if pooling == "avg":
        return keras.layers.GlobalAveragePooling2D()(tensor), "avg"
    if pooling == "max":
        return keras.layers.GlobalMaxPooling2D()(tensor), "max"
    return keras.layers.Flatten()(tensor), "flat"
