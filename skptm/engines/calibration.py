"""Measure on this machine how fast each (engine, precision) runs a network, and
how close its features stay to TensorFlow float32.

One measurement is one network at one input size class, bounded to a few
seconds plus the conversion, and kept under skptm's cache directory
(``<cache>/calibration/<machine key>/``), keyed by what determines it: the
CPU model and instruction-set flags, the usable cores, the GPU, the
libraries' versions (:func:`~skptm.engines.machine.machine_key`), the
network and the size class. It is never repeated for the same key; run
:func:`calibrate` (or ``skptm calibrate``) to do it ahead, or let a large
job do it on its own (:mod:`.decision`).

How it measures:

* the input is real photographs (the sample photos shipped with skptm),
  decoded and resized by skptm's own reader, as uint8 in 0-255, so every
  network sees the input range its preprocessing expects;
* every configuration is warmed up (traced, converted, compiled), then the
  configurations run in alternating rounds, each round at least
  :data:`ROUND_SECONDS` per configuration, so load from elsewhere on the
  machine slows them all alike; each rate is reported as its median over
  the rounds with its lowest and highest round (the spread);
* features are compared with TensorFlow float32's by cosine similarity in
  float64, per image, with no floor on the norms: a network whose random
  features are tiny is compared as it is.
"""

from __future__ import annotations

import json
import os
import statistics
import time
import warnings

import numpy as np

from .._io import atomic_write_bytes, cache_root
from ..exceptions import CalibrationWarning
from . import get_engine
from .machine import machine_key, this_machine

#: Version of the stored measurements; a change makes skptm measure again.
FORMAT_VERSION = 2

#: Alternating rounds per measurement, and the least time each configuration
#: runs in one round.
ROUNDS = 5
ROUND_SECONDS = 0.25

#: Images per batch while measuring (the estimators' default batch size).
BATCH_SIZE = 32

#: Upper bounds of the input size classes, by the larger side in pixels:
#: measurements at one size stand for sizes of the same class.
SIZE_CLASSES = (96, 160, 256, 384)


def size_class(input_size) -> str:
    """The class of ``(height, width)``: ``"<=96"``, ``"<=160"``, ... ``">384"``."""
    side = max(input_size)
    for bound in SIZE_CLASSES:
        if side <= bound:
            return f"<={bound}"
    return f">{SIZE_CLASSES[-1]}"


def configurations(machine=None) -> list[str]:
    """``engine/precision`` pairs worth measuring here, TensorFlow float32 first."""
    from . import engine_names

    machine = machine or this_machine()
    found = []
    for name in engine_names():
        engine = get_engine(name)
        if engine.is_available():
            found.extend(f"{name}/{precision}" for precision in engine.precisions(machine))
    found.remove("tensorflow/float32")
    return ["tensorflow/float32", *found]


def store_dir():
    """Where this machine's measurements are kept."""
    return cache_root() / "calibration" / machine_key()


def _entry_path(name, klass):
    safe = klass.replace("<=", "le").replace(">", "gt")
    return store_dir() / f"{name}@{safe}.json"


def load(name: str, input_size) -> dict | None:
    """The measurement of backbone ``name`` at ``input_size``'s class here, or ``None``."""
    path = _entry_path(name, size_class(input_size))
    try:
        entry = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return entry if entry.get("format") == FORMAT_VERSION else None


def save(entry: dict) -> None:
    """Store ``entry`` (from :func:`measure`) for this machine, atomically."""
    path = _entry_path(entry["backbone"], entry["size_class"])
    atomic_write_bytes(path, json.dumps(entry, indent=1).encode())


def sample_batch(input_size, batch_size=BATCH_SIZE) -> np.ndarray:
    """``batch_size`` real photographs as uint8 ``(batch, height, width, 3)``."""
    from .._images import ImageReader
    from ..datasets import load_sample_photos

    reader = ImageReader(tuple(input_size))
    photos = [np.asarray(reader(path), dtype=np.uint8) for path in load_sample_photos().paths]
    return np.stack([photos[i % len(photos)] for i in range(batch_size)])


def cosines(reference: np.ndarray, other: np.ndarray) -> np.ndarray:
    """Per-row cosine similarity in float64, with no floor on the norms.

    Two zero rows count as equal (1.0), a zero row against a non-zero one as
    unrelated (0.0).
    """
    a = np.asarray(reference, dtype=np.float64)
    b = np.asarray(other, dtype=np.float64)
    scale = np.maximum(np.abs(a).max(axis=1, keepdims=True), np.abs(b).max(axis=1, keepdims=True))
    scale[scale == 0] = 1.0
    a, b = a / scale, b / scale  # tiny features are rescaled, not floored: no underflow in the norms
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    dots = np.sum(a * b, axis=1)
    both_zero = (np.linalg.norm(a, axis=1) == 0) & (np.linalg.norm(b, axis=1) == 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        result = np.where(norms > 0, dots / np.where(norms > 0, norms, 1.0), 0.0)
    return np.where(both_zero, 1.0, np.clip(result, -1.0, 1.0))


def measure(
    backbone: str,
    *,
    weights="imagenet",
    input_size=None,
    rounds: int | None = None,
    round_seconds: float | None = None,
    batch_size: int | None = None,
    configs=None,
) -> dict:
    """Measure every configuration of ``backbone`` here (see the module's docstring).

    Parameters
    ----------
    backbone : str
        A registry name.
    weights : "imagenet", None or path
        The weights the features are compared with (speed does not depend
        on them).
    input_size : int, (int, int) or None
        ``None``: the network's native size.
    rounds, round_seconds, batch_size : int, float, int or None
        ``None``: :data:`ROUNDS`, :data:`ROUND_SECONDS`, :data:`BATCH_SIZE`.
    configs : list of str or None
        ``engine/precision`` pairs; ``None``: :func:`configurations`.

    Returns
    -------
    entry : dict
        ``rates`` (images/s per configuration: ``median``, ``low``,
        ``high``), ``round_rates`` (each round's, in order: rounds
        alternate, so round ``i`` of two configurations ran under the same
        load), ``cosine`` (lowest per-image cosine to TensorFlow float32),
        ``failed`` (the configurations that could not run here, with their
        error: they are left out of the rest, so ``engine="auto"`` never
        chooses them), ``conversion_seconds`` (per engine that converts),
        ``seconds`` (the whole measurement), and what was measured.

    Raises
    ------
    Exception
        Whatever TensorFlow float32, the reference, raised. Another
        configuration's failure is recorded in ``failed``, with a
        :class:`~skptm.exceptions.CalibrationWarning`.
    """
    from .._backbones import get_backbone_spec
    from ..networks import as_size, get_feature_network

    started = time.perf_counter()
    rounds = ROUNDS if rounds is None else rounds
    round_seconds = ROUND_SECONDS if round_seconds is None else round_seconds
    batch_size = BATCH_SIZE if batch_size is None else batch_size
    spec = get_backbone_spec(backbone)
    size = as_size(input_size) or (spec.input_size, spec.input_size)
    configs = list(configs or configurations())
    batch = sample_batch(size, batch_size)
    runners, conversion, failed = {}, {}, {}
    for config in configs:
        engine_name, precision = config.split("/")
        start = time.perf_counter()
        try:
            engine = get_engine(engine_name)
            network = get_feature_network(
                spec.name, weights=weights, input_size=size, precision=engine.network_precision(precision)
            )
            runner = engine.prepare(network, precision)
            runner.predict(batch)  # traces, converts and compiles: not timed below
        except Exception as exc:
            if config == "tensorflow/float32":
                raise  # the reference: nothing to compare with without it
            failed[config] = _failure(exc)
            _warn_failed(spec.name, config, failed[config])
            continue
        if engine_name != "tensorflow":
            seconds = time.perf_counter() - start
            if hasattr(engine, "conversion_seconds") and engine_name not in conversion:
                # prepare may have read the converted model from disk or
                # memory; a fitted model's new weights are in no cache.
                seconds = engine.conversion_seconds(network, precision)
            conversion[engine_name] = max(conversion.get(engine_name, 0.0), seconds)
        runners[config] = runner
    configs = list(runners)
    reference = runners["tensorflow/float32"].predict(batch)
    rates = {config: [] for config in configs}
    for round_index in range(rounds):
        # A different configuration starts each round: none always runs first.
        order = configs[round_index % len(configs) :] + configs[: round_index % len(configs)]
        for config in order:
            runner, images, start = runners[config], 0, time.perf_counter()
            while True:
                runner.predict(batch)
                images += len(batch)
                elapsed = time.perf_counter() - start
                if elapsed >= round_seconds:
                    break
            rates[config].append(images / elapsed)
    cosine = {config: float(cosines(reference, runners[config].predict(batch)).min()) for config in configs}
    machine = this_machine()
    return {
        "format": FORMAT_VERSION,
        "backbone": spec.name,
        "size_class": size_class(size),
        "input_size": list(size),
        "weights": "random" if weights is None else ("imagenet" if weights == "imagenet" else "file"),
        "batch_size": batch_size,
        "rounds": rounds,
        "machine": machine.describe(),
        "rates": {
            config: {
                "median": statistics.median(values),
                "low": min(values),
                "high": max(values),
            }
            for config, values in rates.items()
        },
        "round_rates": rates,
        "cosine": cosine,
        "failed": failed,
        "conversion_seconds": conversion,
        "seconds": time.perf_counter() - started,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "pid": os.getpid(),
    }


def _failure(exc: BaseException) -> str:
    r"""``exc`` in one line: its type and the first line of its message that
    says what went wrong (TensorFlow's put a traceback of the graph first).

    Examples
    --------
    >>> _failure(RuntimeError("Graph execution error:\n\nDetected at node x defined at:\n  File 'a.py'\nno kernel"))
    'RuntimeError: no kernel'
    """
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    telling = [
        line for line in lines if not line.endswith(":") and not line.startswith(("File ", "Detected at node", "[["))
    ]
    found = (telling or lines)[:1]
    return f"{type(exc).__name__}: {found[0]}" if found else type(exc).__name__


def _warn_failed(name: str, config: str, failure: str) -> None:
    warnings.warn(
        f"{config} could not run {name!r} on this machine ({failure}); it is left out of the "
        "measurement, so engine='auto' and precision='auto' never choose it here.",
        CalibrationWarning,
        stacklevel=3,
    )


def calibrate(backbones=None, *, weights="imagenet", input_size=None, force=False, verbose=1) -> list[dict]:
    """Measure the engines and precisions of ``backbones`` on this machine, once.

    What ``engine="auto"`` and ``precision="auto"`` then choose for these
    networks comes from these measurements (see :mod:`skptm.engines.decision`);
    the converted models they leave in the cache make a later first call
    start warm. A network already measured here is skipped unless ``force``.

    Parameters
    ----------
    backbones : str, list of str or None, default=None
        Registry names; ``None`` measures every network of the registry
        (about a minute per network on two cores, more for the largest).
    weights : "imagenet", None or path, default="imagenet"
        The weights the estimators will use: the converted models are kept
        for them. ``None`` measures with random weights (same speed).
    input_size : int, (int, int) or None, default=None
        The size the estimators will use; ``None``: each network's native size.
    force : bool, default=False
        Measure again even where a measurement exists.
    verbose : int, default=1
        ``1`` shows a progress bar.

    Returns
    -------
    entries : list of dict
        One measurement per network (see :func:`measure`).

    Examples
    --------
    >>> import skptm
    >>> skptm.calibrate(["resnet50", "mobilenet_v2"])  # doctest: +SKIP
    """
    from tqdm.auto import tqdm

    from .._backbones import available_backbones, get_backbone_spec
    from .._validation import check_image_size
    from ..networks import as_size

    check_image_size(input_size)
    if backbones is None:
        backbones = available_backbones()
    elif isinstance(backbones, str):
        backbones = [backbones]
    specs = [get_backbone_spec(name) for name in backbones]  # every name checked first
    entries = []
    with tqdm(specs, unit=" networks", disable=not verbose) as progress:
        for spec in progress:
            progress.set_postfix_str(spec.name)
            size = as_size(input_size) or (spec.input_size, spec.input_size)
            entry = None if force else load(spec.name, size)
            if entry is None:
                entry = measure(spec.name, weights=weights, input_size=size)
                save(entry)
            entries.append(entry)
    return entries
