"""Numeric precision of the Keras networks: float32, bfloat16 or float16.

``precision`` is an estimator parameter. Reduced precision uses Keras's
mixed-precision policies (``mixed_bfloat16``, ``mixed_float16``): weights stay
float32, the layers compute in 16 bits, and skptm's own layers around the
backbone (preprocessing, pooling, the head) stay in float32, so features and
predictions come back as float32.

Keras keeps its dtype policy per thread. skptm builds every network inside
:func:`dtype_policy_scope`, so a policy the user set globally neither leaks
into skptm's networks nor is left changed by them.

Which precision a network runs in (``precision="auto"``) is decided by
:mod:`skptm.engines.decision`, from what was measured on this machine.
"""

from __future__ import annotations

import contextlib

_KERAS_POLICY = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}


def keras_policy(precision: str) -> str:
    """The Keras dtype policy of a (resolved) precision."""
    return _KERAS_POLICY[precision]


@contextlib.contextmanager
def dtype_policy_scope(policy):
    """Set Keras's dtype policy for this thread inside the block, then restore it."""
    import keras

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def with_precision(model, precision: str):
    """A copy of ``model`` whose layers compute in ``precision`` (same weights).

    Every layer is rebuilt from its config with the mixed policy; the input
    layers keep their dtype. Raises ``ValueError`` for a model Keras cannot
    clone (a subclassed model): build it under the policy yourself instead.
    """
    import keras

    policy = keras.DTypePolicy(keras_policy(precision))

    from .._compat import layer_config

    def clone_layer(layer):
        config = layer_config(layer)
        if isinstance(layer, keras.layers.Layer) and not isinstance(layer, keras.layers.InputLayer):
            config["dtype"] = policy
        return layer.__class__.from_config(config)

    try:
        copy = keras.models.clone_model(model, clone_function=clone_layer, recursive=True)
    except Exception as exc:
        raise ValueError(
            f"precision={precision!r} needs a backbone Keras can clone layer by layer "
            f"(functional or sequential); {model.name!r} cannot be: {exc}. Use "
            "precision='float32', or build the model under "
            f"keras.config.set_dtype_policy({keras_policy(precision)!r}) and pass that."
        ) from exc
    copy.set_weights(model.get_weights())
    return copy
