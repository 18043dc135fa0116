"""The one place that decides which engine and precision run a network.

The rules, for ``engine="auto"`` and ``precision="auto"``:

1. **Measured where it runs.** A configuration other than TensorFlow
   float32 (OpenVINO, bfloat16, float16) is chosen only from a measurement
   made on this machine (:mod:`.calibration`): the fastest configuration the
   user's ``precision`` allows, if it beat TensorFlow in all alternating
   rounds but one and by at least :data:`MIN_SPEEDUP` in the median of the
   rounds' paired ratios (the margin the measurement's own spread calls
   for; see :func:`_clearly_faster`), and if its features stayed within
   :data:`MIN_COSINE` of TensorFlow float32's. Without a measurement here,
   it is TensorFlow float32 (or the precision the user named). The shipped
   table (:mod:`.prior`) is the prior: it says what to expect on a machine
   like the one it was measured on, and whether measuring is worth it,
   never what to run on another instruction set. The same holds on a GPU.
2. **Once per process, then fixed.** The first decision for a network in a
   process is kept for the process's life, whatever the calls that follow;
   fitted estimators keep theirs in their fitted state (``engine_``,
   ``precision_``), so a model's numbers never depend on the size of a
   call, its other rows or what it predicted before, in this process or
   after a pickle round trip.
3. **No first-call cliff.** Without a measurement nothing is converted; a
   first job large enough for a measurement and a conversion to pay for
   themselves many times over (:data:`AUTO_CALIBRATION_SECONDS` of
   TensorFlow time, estimated from the prior) measures this machine first.
"""

from __future__ import annotations

import statistics
import threading
import warnings
from dataclasses import dataclass

from ..exceptions import CalibrationWarning
from . import get_engine
from .machine import isa_cap, precision_hidden_by_cap, this_machine

#: A configuration is chosen over TensorFlow only when measured at least this
#: much faster (median), and with rounds that do not overlap TensorFlow's.
MIN_SPEEDUP = 1.05

#: Lowest per-image cosine similarity to TensorFlow float32 accepted, by precision.
MIN_COSINE = {"float32": 0.9999, "bfloat16": 0.999, "float16": 0.999}

#: A first job estimated to take at least this long on TensorFlow float32
#: measures this machine before it starts (a measurement costs seconds).
AUTO_CALIBRATION_SECONDS = 300.0


@dataclass(frozen=True)
class Choice:
    """What runs a network: ``engine`` in ``precision``, and why (``reason``)."""

    engine: str
    precision: str
    reason: str

    @property
    def label(self) -> str:
        return f"{self.engine}/{self.precision}"


_lock = threading.Lock()
_decided: dict = {}  # (engine, precision, backbone name, size class) -> Choice, for this process


def clear() -> None:
    """Forget this process's decisions (tests; a new measurement then applies)."""
    with _lock:
        _decided.clear()


def choose(
    engine: str, precision: str, backbone, input_size=None, *, weights="imagenet", n_items: int | None = None
) -> Choice:
    """The engine and precision for these parameters, decided once per process.

    Parameters
    ----------
    engine : {"auto", "tensorflow", "openvino", ...}
    precision : {"auto", "float32", "bfloat16", "float16"}
    backbone : str, keras.Model or callable
        Custom backbones run on TensorFlow in the precision asked
        (``"auto"``: float32): nothing is measured for them.
    input_size : (int, int) or None
        The network's input size (``None``: the registry's native size).
    weights : "imagenet", None or path
        The network's weights: a measurement made for a large job converts
        the network with them, so that the job reuses the conversion.
    n_items : int or None
        The size of the job asking, when known: a first large job on an
        unmeasured machine measures it first (see the module's docstring).

    Raises
    ------
    ImportError
        A named engine that is not installed (the message says how to install it).
    ValueError
        A named reduced precision this CPU computes natively but that
        ``ONEDNN_MAX_CPU_ISA`` hides (the message says what to change).
    """
    if engine != "auto":
        get_engine(engine).require()
    if precision_hidden_by_cap(precision) and not this_machine().gpu:
        raise ValueError(
            f"precision={precision!r} cannot run on this CPU while ONEDNN_MAX_CPU_ISA={isa_cap()} hides "
            f"its {precision} instructions from oneDNN: TensorFlow and OpenVINO would fail inside the "
            "network. Unset ONEDNN_MAX_CPU_ISA, or use precision='float32'."
        )
    if not isinstance(backbone, str):
        if engine not in ("auto", "tensorflow"):
            return Choice(engine, _named_precision(precision), "asked")
        return Choice("tensorflow", _named_precision(precision), "custom backbone")
    from .._backbones import get_backbone_spec
    from ..networks import as_size
    from .calibration import size_class

    spec = get_backbone_spec(backbone)
    size = as_size(input_size) or (spec.input_size, spec.input_size)
    key = (engine, precision, spec.name, size_class(size))
    with _lock:
        found = _decided.get(key)
    if found is not None:
        return found
    decided = _decide(engine, precision, spec.name, size, weights, n_items)
    with _lock:
        return _decided.setdefault(key, decided)


def choose_for_fitted(engine: str, precision: str, backbone, input_size, *, trained_precision: str, n_items: int):
    """The engine and precision a fitted fine-tuned model predicts with.

    Its weights are its own, so another engine means converting it (seconds):
    ``"auto"`` takes the engine :func:`choose` takes for its backbone only if
    the model computes in float32 and predicting as many images as it was
    trained on (``n_items``) saves more than the measured conversion time.
    """
    if engine == "tensorflow" or (engine == "auto" and not isinstance(backbone, str)):
        return Choice("tensorflow", trained_precision, "trained in this precision")
    if engine != "auto":
        if trained_precision != "float32":
            raise ValueError(
                f"engine={engine!r} runs a model trained in float32; this one was trained in "
                f"{trained_precision!r}. Fit with precision='float32', or use engine='tensorflow'."
            )
        chosen = choose(engine, precision, backbone, input_size)
        return Choice(engine, chosen.precision, "asked")
    chosen = choose("auto", precision, backbone, input_size)
    tensorflow = Choice("tensorflow", trained_precision, "trained in this precision")
    if chosen.engine == "tensorflow" or trained_precision != "float32":
        return tensorflow
    from ..networks import as_size
    from . import calibration

    entry = calibration.load(_name(backbone), as_size(input_size) or _native_size(backbone))
    if entry is None:
        return tensorflow
    rates = entry["rates"]
    saved = n_items / rates["tensorflow/float32"]["median"] - n_items / rates[chosen.label]["median"]
    if saved > entry["conversion_seconds"].get(chosen.engine, float("inf")):
        return Choice(chosen.engine, chosen.precision, f"measured here; pays for its conversion on {n_items} images")
    return tensorflow


# -- the rules -----------------------------------------------------------------------------


def _named_precision(precision):
    return "float32" if precision == "auto" else precision


def _decide(engine, precision, name, size, weights, n_items) -> Choice:
    from . import calibration

    entry = calibration.load(name, size)
    if entry is None and n_items is not None and _worth_measuring(name, size, n_items):
        entry = _measure_now(name, size, weights)
    if entry is None:
        fallback = "tensorflow" if engine == "auto" else engine
        return Choice(fallback, _named_precision(precision), "not measured on this machine")
    return best_measured(entry, engine, precision)


def allowed(configs, engine, precision) -> list[str]:
    """The measured ``engine/precision`` pairs the user's parameters allow."""
    found = []
    for config in configs:
        config_engine, config_precision = config.split("/")
        if engine != "auto" and config_engine != engine:
            continue
        if precision != "auto" and config_precision != precision:
            continue
        found.append(config)
    return found


def best_measured(entry: dict, engine: str, precision: str) -> Choice:
    """The configuration ``entry`` (a measurement) makes the best for these parameters."""
    rates, cosine = entry["rates"], entry["cosine"]
    candidates = [
        config
        for config in allowed(rates, engine, precision)
        if cosine.get(config, 0.0) >= MIN_COSINE[config.split("/")[1]] or config == "tensorflow/float32"
    ]
    baseline_engine = "tensorflow" if engine == "auto" else engine
    baseline_precision = _named_precision(precision)
    baseline = f"{baseline_engine}/{baseline_precision}"
    if baseline not in rates:  # e.g. bfloat16 asked on a CPU without it: not measured here
        return Choice(baseline_engine, baseline_precision, "asked; not measured on this machine")
    best = max(candidates, key=lambda config: rates[config]["median"], default=baseline)
    if best != baseline and _clearly_faster(entry, best, baseline):
        ratio = rates[best]["median"] / rates[baseline]["median"]
        return Choice(*best.split("/"), f"measured here: {ratio:.2f}x {baseline}")
    return Choice(baseline_engine, baseline_precision, "measured here: nothing clearly faster")


def _clearly_faster(entry: dict, candidate: str, baseline: str) -> bool:
    """Whether ``candidate`` beat ``baseline`` beyond the measurement's noise.

    Rounds alternate, so each round compares the two under the same load:
    the candidate must be at least :data:`MIN_SPEEDUP` faster in the median
    of those paired ratios, and faster in all rounds but one. A measurement
    without its rounds (the prior's format) asks for non-overlapping ranges.
    """
    paired = entry.get("round_rates", {})
    if candidate in paired and baseline in paired:
        ratios = sorted(c / b for c, b in zip(paired[candidate], paired[baseline], strict=True))
        return statistics.median(ratios) >= MIN_SPEEDUP and ratios[min(1, len(ratios) - 1)] > 1.0
    rates = entry["rates"]
    return (
        rates[candidate]["low"] > rates[baseline]["high"]
        and rates[candidate]["median"] >= MIN_SPEEDUP * rates[baseline]["median"]
    )


def _worth_measuring(name, size, n_items) -> bool:
    """Whether a job of ``n_items`` images would take long enough on TensorFlow
    float32 for a measurement to pay for itself (estimated from the prior)."""
    from .prior import tensorflow_rate

    rate = tensorflow_rate(name, size)
    return rate is not None and n_items / rate >= AUTO_CALIBRATION_SECONDS


def _measure_now(name, size, weights):
    from . import calibration

    try:
        entry = calibration.measure(name, weights=weights, input_size=size)
        calibration.save(entry)
    except Exception as exc:  # noqa: BLE001 - measuring is an optimisation: never fail the job for it
        warnings.warn(
            f"Could not measure the engines for {name!r} on this machine ({type(exc).__name__}: {exc}); "
            "running on TensorFlow float32.",
            CalibrationWarning,
            stacklevel=5,
        )
        return None
    return entry


def _name(backbone):
    from .._backbones import get_backbone_spec

    return get_backbone_spec(backbone).name


def _native_size(backbone):
    from .._backbones import get_backbone_spec

    spec = get_backbone_spec(backbone)
    return (spec.input_size, spec.input_size)


def expected_rate(backbone: str, input_size=None, *, engine: str = "auto"):
    """What is known here of how fast ``backbone`` computes features, and from where.

    In order: a measurement made on this machine (:mod:`.calibration`), the
    rate of what ``engine`` would run in float32; else the prior's TensorFlow
    float32 rate on a machine of this instruction set and architecture
    (:func:`.prior.table_for`), scaled from the size it was measured at to
    ``input_size`` by the number of pixels; else nothing. A rate measured on another kind
    of machine is never used.

    Parameters
    ----------
    backbone : str
        A registry name.
    input_size : int, (int, int) or None
        ``None``: the network's native size.
    engine : {"auto", "tensorflow", "openvino", ...}
        The engine asked for.

    Returns
    -------
    rate : (float, str) or None
        Images per second and its source, ``"measured here"`` or ``"prior"``;
        ``None`` when neither knows this network.
    """
    from ..networks import as_size
    from . import calibration
    from .prior import table_for, table_rate

    size = as_size(input_size) or _native_size(backbone)
    entry = calibration.load(_name(backbone), size)
    if entry is not None:
        choice = best_measured(entry, engine, "float32")
        measured = entry["rates"].get(choice.label)
        if measured:
            return measured["median"], "measured here"
    table = table_for(this_machine())
    rate = table_rate(table, _name(backbone), size) if table else None
    return (rate, "prior") if rate else None


def describe(backbone: str, input_size=None) -> dict:
    """What ``auto`` runs ``backbone`` with here, for ``skptm backbones --engines``:
    the choices for ``precision="float32"`` and ``"auto"``, the measurement
    they rest on (or ``None``), and the prior's expectation for this kind of machine."""
    from ..networks import as_size
    from . import calibration
    from .prior import expected_speedups

    size = as_size(input_size) or _native_size(backbone)
    entry = calibration.load(_name(backbone), size)
    machine = this_machine()
    choices = {}
    for precision in ("float32", "auto"):
        if entry is None:
            choices[precision] = Choice("tensorflow", "float32", "not measured on this machine")
        else:
            choices[precision] = best_measured(entry, "auto", precision)
    return {
        "backbone": _name(backbone),
        "choices": choices,
        "measured": entry,
        "prior": expected_speedups(_name(backbone), machine),
    }


def fitted_choice(engine: str, precision: str) -> Choice:
    """The choice a fitted estimator recorded (``engine_``, ``precision_``), to run now.

    An estimator fitted where OpenVINO was installed and loaded where it is
    not runs on TensorFlow, with a warning: its outputs then differ by up to
    the engines' tolerance (see the reliability guide).
    """
    if get_engine(engine).is_available():
        return Choice(engine, precision, "fitted")
    warnings.warn(
        f"This estimator was fitted to predict with {engine} ({precision}), which is not installed "
        "here; predicting with TensorFlow float32, whose outputs may differ slightly. Install "
        f"{engine} to get the fitted estimator's exact numbers.",
        UserWarning,
        stacklevel=4,
    )
    return Choice("tensorflow", "float32", "fitted engine not installed")
