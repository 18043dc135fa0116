"""Numeric precision of the networks: float32, bfloat16 or float16.

``precision`` is an estimator parameter. Reduced precision uses Keras's
mixed-precision policies (``mixed_bfloat16``, ``mixed_float16``): weights stay
float32, the layers compute in 16 bits, and skptm's own layers around the
backbone (preprocessing, pooling, the head) stay in float32, so features and
predictions come back as float32.

Keras keeps its dtype policy per thread. skptm builds every network inside
:func:`dtype_policy_scope`, so a policy the user set globally neither leaks
into skptm's networks nor is left changed by them.

``precision="auto"`` resolves, per network, to bfloat16 only where the
hardware computes it natively *and* it was measured faster than float32 for
that network (:data:`skptm._precision_table.BFLOAT16_SPEEDUP`, written by
``benchmarks/precision_table.py``); everywhere else to float32.
"""

from __future__ import annotations

import contextlib
import functools

PRECISIONS = ("float32", "bfloat16", "float16")

#: bfloat16 counts as faster for a network when it was measured at least this
#: much faster than float32; below it, float32 is kept (same speed, exact).
AUTO_MIN_SPEEDUP = 1.1

#: ... and as accurate enough when its features' cosine similarity to
#: float32 was measured at least this high.
AUTO_MIN_COSINE = 0.999

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

    def clone_layer(layer):
        config = layer.get_config()
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


# -- precision="auto" -------------------------------------------------------------------


@functools.cache
def cpu_flags() -> frozenset:
    """The CPU's feature flags (Linux ``/proc/cpuinfo``; empty elsewhere)."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_has_bfloat16() -> bool:
    """Whether the CPU computes bfloat16 natively (AVX-512 BF16 or AMX)."""
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


@functools.cache
def _gpu_compute_capability():
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return None
    details = tf.config.experimental.get_device_details(gpus[0])
    return details.get("compute_capability")


def resolve_precision(precision: str, backbone) -> str:
    """The concrete precision for ``precision`` (``"auto"`` resolved) and ``backbone``.

    On a GPU, ``"auto"`` follows Keras's mixed-precision guide: bfloat16
    from compute capability 8.0 (Ampere), float16 on 7.x, float32 before.
    On a CPU, bfloat16 needs native support, a measured speed-up of at
    least :data:`AUTO_MIN_SPEEDUP` for this network and a measured feature
    cosine similarity of at least :data:`AUTO_MIN_COSINE`; custom backbones
    and networks not in the table stay float32.
    """
    if precision != "auto":
        return precision
    capability = _gpu_compute_capability()
    if capability is not None:
        if capability >= (8, 0):
            return "bfloat16"
        return "float16" if capability >= (7, 0) else "float32"
    if not isinstance(backbone, str) or not cpu_has_bfloat16():
        return "float32"
    from ._backbones import get_backbone_spec
    from ._precision_table import BFLOAT16_COSINE, BFLOAT16_SPEEDUP

    name = get_backbone_spec(backbone).name
    faster = BFLOAT16_SPEEDUP.get(name, 0.0) >= AUTO_MIN_SPEEDUP
    accurate = BFLOAT16_COSINE.get(name, 0.0) >= AUTO_MIN_COSINE
    return "bfloat16" if faster and accurate else "float32"
