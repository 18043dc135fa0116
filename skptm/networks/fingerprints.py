"""Content keys of networks: a hash of every weight, and of a user's model's architecture."""

from __future__ import annotations

import threading
import weakref

import numpy as np

from .._io import content_hash

_lock = threading.Lock()


def fingerprint(model) -> str:
    """A SHA-256 over every weight of ``model``, in order (its shape, then its bytes)."""
    return content_hash(_weight_parts(model), length=64, delimited=False)


def _weight_parts(model):
    for weight in model.weights:
        value = np.ascontiguousarray(weight.numpy())  # convert_to_numpy warns on NumPy 2
        yield str(value.shape)
        yield value.tobytes()


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
    return content_hash((type(model).__name__, architecture), length=64) + fingerprint(model)
