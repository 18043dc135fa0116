"""Which engine runs a network's inference: TensorFlow or OpenVINO, and in which precision.

``engine="auto"`` reads a table measured over every network of the registry
(``skptm/_engine_table.py``, written by ``benchmarks/engine_table.py``) and
takes the fastest (engine, precision) among those the user's ``precision``
allows: ``"float32"`` allows float32 only, ``"bfloat16"`` bfloat16 only,
``"auto"`` both, bfloat16 only on a CPU that computes it natively. OpenVINO
is taken only when it is measured at least :data:`AUTO_MIN_SPEEDUP` times
faster than TensorFlow, which leaves room for noise and for the conversion a
switch costs once. Without OpenVINO installed, on a GPU, for a custom
backbone or a network not in the table, ``"auto"`` is TensorFlow.
"""

from __future__ import annotations

from ._engine_table import CONVERSION_SECONDS, COSINE, IMAGES_PER_SECOND
from ._precision import AUTO_MIN_COSINE, cpu_has_bfloat16, resolve_precision

ENGINES = ("auto", "tensorflow", "openvino")

#: OpenVINO must be measured this much faster than TensorFlow to be chosen.
AUTO_MIN_SPEEDUP = 1.1

#: Lowest measured feature cosine (to TensorFlow float32) ``auto`` accepts
#: for OpenVINO float32: it must compute the same function.
AUTO_MIN_COSINE_FLOAT32 = 0.9999


def resolve_engine(engine: str, precision: str, backbone) -> tuple[str, str]:
    """The concrete ``(engine, precision)`` for the user's parameters.

    Parameters
    ----------
    engine : {"auto", "tensorflow", "openvino"}
    precision : {"float32", "bfloat16", "float16", "auto"}
    backbone : str or callable

    Returns
    -------
    engine : {"tensorflow", "openvino"}
    precision : {"float32", "bfloat16", "float16"}
        For TensorFlow, the Keras policy the backbone computes in; for
        OpenVINO, its inference precision (the network converted is always
        the float32 one).

    Raises
    ------
    ImportError
        ``engine="openvino"`` without OpenVINO installed (says how to install it).
    """
    from . import _openvino

    if engine == "tensorflow":
        return "tensorflow", resolve_precision(precision, backbone)
    if engine == "openvino":
        _openvino.require_openvino()
        return "openvino", _openvino_precision(precision, _table_name(backbone))
    tensorflow = ("tensorflow", resolve_precision(precision, backbone))
    name = _table_name(backbone)
    if name is None or precision == "float16" or not _openvino.is_available() or _has_gpu():
        return tensorflow
    rates, cosines = _table_row(name)
    if rates is None:
        return tensorflow
    allowed = ["float32", "bfloat16"] if precision == "auto" else [precision]
    candidates = [
        ("openvino", choice)
        for choice in allowed
        if (choice != "bfloat16" or cpu_has_bfloat16()) and _accurate(cosines, choice)
    ]
    if not candidates:
        return tensorflow
    best = max(candidates, key=lambda candidate: rates.get("/".join(candidate), 0.0))
    tensorflow_rate = rates.get("/".join(tensorflow), 0.0)
    if rates.get("/".join(best), 0.0) >= AUTO_MIN_SPEEDUP * tensorflow_rate > 0:
        return best
    return tensorflow


def resolve_inference_engine(engine, precision, backbone, network, n_items) -> tuple[str, str]:
    """``(engine, precision)`` for predicting ``n_items`` with a fitted model.

    ``network`` is the fine-tuned model as a FeatureNetwork (its
    ``precision`` is the one it was trained in). A fitted model is converted
    on first use, so ``"auto"`` takes OpenVINO only where
    :func:`resolve_engine` would, the model computes in float32, and either
    it was converted already or the time the table says OpenVINO saves on
    ``n_items`` images exceeds the measured conversion time.
    """
    from . import _openvino

    if engine != "auto":
        chosen, chosen_precision = resolve_engine(engine, precision, backbone)
        if chosen == "openvino" and network.precision != "float32":
            raise ValueError(
                f"engine='openvino' runs a model trained in float32; this one was trained in "
                f"{network.precision!r}. Fit with precision='float32', or use engine='tensorflow'."
            )
        return chosen, chosen_precision
    tensorflow = ("tensorflow", network.precision)
    chosen, chosen_precision = resolve_engine("auto", precision, backbone)
    if chosen != "openvino" or network.precision != "float32":
        return tensorflow
    if _openvino.is_compiled(network.model, chosen_precision):
        return chosen, chosen_precision
    name = _table_name(backbone)
    rates, _ = _table_row(name)
    saved = n_items / rates["tensorflow/float32"] - n_items / rates[f"openvino/{chosen_precision}"]
    return (chosen, chosen_precision) if saved > CONVERSION_SECONDS.get(name, float("inf")) else tensorflow


def _openvino_precision(precision, name):
    """OpenVINO's precision for the user's: ``"auto"`` takes bfloat16 where the
    CPU has it and the table measures it faster and accurate enough."""
    if precision != "auto":
        return precision
    if name is None or not cpu_has_bfloat16():
        return "float32"
    rates, cosines = _table_row(name)
    if rates is None:
        return "float32"
    faster = rates.get("openvino/bfloat16", 0.0) >= AUTO_MIN_SPEEDUP * rates.get("openvino/float32", 0.0)
    return "bfloat16" if faster and _accurate(cosines, "bfloat16") else "float32"


def _accurate(cosines, precision):
    """Whether OpenVINO in ``precision`` was measured close enough to TensorFlow float32."""
    threshold = AUTO_MIN_COSINE if precision == "bfloat16" else AUTO_MIN_COSINE_FLOAT32
    return cosines.get(f"openvino/{precision}", 0.0) >= threshold


def _table_name(backbone):
    if not isinstance(backbone, str):
        return None
    from ._backbones import get_backbone_spec

    return get_backbone_spec(backbone).name


def _table_row(name):
    return IMAGES_PER_SECOND.get(name), COSINE.get(name, {})


def _has_gpu():
    from ._precision import _gpu_compute_capability

    return _gpu_compute_capability() is not None
