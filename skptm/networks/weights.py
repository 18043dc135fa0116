"""Building a backbone with its weights: Keras's ImageNet files, a weights file, or a
seeded random initialisation; and the messages that say what to do offline."""

from __future__ import annotations

import os
import warnings
import zlib

import keras

from .._backbones import BackboneSpec
from .._compat import (
    PARTIAL_LOAD_MESSAGE,
    all_layers,
    downloaded_file_name,
    is_download_failure,
    keras_home,
    layer_config,
)
from ..exceptions import WeightsUnavailableError

#: The seed of ``weights=None``: random initialisation is the same in every
#: process, so an unpickled or cloned estimator computes the same features.
RANDOM_WEIGHTS_SEED = 0


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
    for index, layer in enumerate(all_layers(model)):
        for attribute, weight_names in _INITIALIZED_WEIGHTS.items():
            initializer = getattr(layer, attribute, None)
            variable = next(
                (getattr(layer, name) for name in weight_names if getattr(layer, name, None) is not None), None
            )
            if variable is None or getattr(initializer, "seed", None) is None:
                continue  # no such weight, or a constant initializer
            config = initializer.get_config()
            config["seed"] = zlib.crc32(f"{seed}/{index}/{attribute}".encode())
            fresh = type(initializer).from_config(config)
            variable.assign(fresh(tuple(variable.shape), dtype=variable.dtype))


def build_base(backbone, spec, weights, input_size):
    """The backbone (without its classification top) with its weights.

    ``spec`` is the registry entry of a named backbone (``None`` for a
    custom one), ``input_size`` a ``(height, width)`` tuple or ``None``.
    """
    if spec is not None:
        return _build_application(spec, weights, input_size)
    return _build_custom(backbone, weights)


def _build_application(spec: BackboneSpec, weights, input_size):
    height, width = input_size or (spec.input_size, spec.input_size)
    input_shape = (height, width, 3)
    constructor = spec.constructor()
    if weights == "imagenet":
        try:
            return constructor(include_top=False, weights="imagenet", input_shape=input_shape)
        except Exception as exc:
            if is_download_failure(exc):
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
    """A copy of ``model`` with equal weights that shares no variable with it.

    Each layer is rebuilt from its config as :func:`~skptm._compat.layer_config`
    gives it (KerasHub 0.32's ViT embedding writes arguments its constructor
    refuses, and Keras's own cloning fails on it).
    """
    try:
        copy = keras.models.clone_model(model, clone_function=_rebuilt)
        copy.set_weights(model.get_weights())
        return copy
    except Exception:  # noqa: BLE001 - e.g. a subclassed model clone_model cannot rebuild
        import copy as copying

        return copying.deepcopy(model)


def _rebuilt(layer):
    return type(layer).from_config(layer_config(layer))


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
            problem = next((str(w.message) for w in caught if PARTIAL_LOAD_MESSAGE.search(str(w.message))), None)
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
    filename = downloaded_file_name(exc) or "the ImageNet weights file"
    cache = os.path.join(keras_home(), "models")
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
    folder = os.path.join(keras_home(), "models")
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
