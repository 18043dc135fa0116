"""The engines side by side, and what ``engine="auto"`` gets, in one run.

First ``skptm.calibrate`` measures the backbones on this machine (in a fresh
cache folder), so that ``auto`` decides from measurements made here, as it
would after a user ran ``skptm calibrate``. Then, for each backbone, at its
native size (or ``--size``), random weights, batch 32, on real photographs
(the sample photos, uint8 in 0-255), images per second of:

* every configuration ``calibration.configurations()`` lists for this machine
  (``TF f32``, ``OV f32``, and ``TF bf16`` / ``OV bf16`` only where the CPU
  computes bfloat16 natively): skptm's feature network run by that engine;
* ``auto(f32)`` and ``auto(auto)``:
  ``PretrainedFeatureTransformer(engine="auto", precision=P).transform(X)``
  for ``P="float32"`` and ``P="auto"``, everything skptm does included.

The columns alternate round by round (a different one starts each round),
each round at least ``--round-seconds`` per column; each rate is the median
over the rounds, with the slowest and fastest round. Then ``auto(f32)`` over
the fastest float32 column, ``auto(auto)`` over the fastest column, both over
``TF f32``, and PASS/FAIL against the targets: ``auto`` at least 0.95x the
fastest configuration its precision allows (a configuration whose features
miss the decision's cosine threshold is not allowed), and at least 0.95x
TensorFlow float32.

Then, where OpenVINO is installed, for ResNet50 (``--startup-backbone``):

* start-up: a fresh process with the converted model already on disk, from
  the transformer's first call to its features (network built, converted
  model read and compiled, one batch of 8 photos run; the imports are done
  before the clock starts), against the same with ``engine="tensorflow"``;
  see ``first_call.py`` for the first call with the imports included;
* files: ``transform`` of camera-sized JPEGs (1920x1280) from disk with
  OpenVINO, against its in-memory rate on photos (decoding threads and
  OpenVINO's threads share the cores).

    python benchmarks/engine_speed.py
    python benchmarks/engine_speed.py --backbones mobilenet_v2 --size 64 --rounds 2 --no-startup --no-files
"""

import argparse
import atexit
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
if not os.environ.get("SKPTM_CACHE_DIR"):  # a fresh cache folder, removed at exit
    os.environ["SKPTM_CACHE_DIR"] = tempfile.mkdtemp(prefix="skptm-engine-speed-")
    atexit.register(shutil.rmtree, os.environ["SKPTM_CACHE_DIR"], ignore_errors=True)

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from _photos import write_labelled_jpegs

import skptm
from skptm import PretrainedFeatureTransformer
from skptm._backbones import get_backbone_spec
from skptm.engines import get_engine, openvino
from skptm.engines.calibration import configurations, cosines, sample_batch
from skptm.engines.decision import MIN_COSINE
from skptm.engines.machine import this_machine
from skptm.networks import get_feature_network

BACKBONES = [
    "convnext_tiny",
    "mobilenet_v2",
    "resnet50",
    "vgg16",
    "efficientnet_b0",
    "densenet121",
    "mobilenet_v3_large",
    "inception_v3",
]
REFERENCE = "tensorflow/float32"
TARGET = 0.95


def short(config):
    engine, precision = config.split("/")
    return {"tensorflow": "TF", "openvino": "OV"}.get(engine, engine) + " " + precision.replace("float", "f")


def spread(values):
    return {"median": statistics.median(values), "low": min(values), "high": max(values)}


def cell(rate):
    return f"{rate['median']:.1f} ({rate['low']:.1f}–{rate['high']:.1f})"


def alternating_rates(calls, x, rounds, round_seconds):
    """Images/s per call: rounds alternate, a different call starting each round."""
    names = list(calls)
    rates = {name: [] for name in names}
    for round_index in range(rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            call, images, start = calls[name], 0, time.perf_counter()
            while True:
                call(x)
                images += len(x)
                elapsed = time.perf_counter() - start
                if elapsed >= round_seconds:
                    break
            rates[name].append(images / elapsed)
    return {name: spread(values) for name, values in rates.items()}


def measure(name, size, batch_size, rounds, round_seconds, configs):
    native = get_backbone_spec(name).input_size
    x = sample_batch((size or native, size or native), batch_size)
    calls = {}
    for config in configs:
        engine_name, precision = config.split("/")
        engine = get_engine(engine_name)
        network = get_feature_network(
            name, weights=None, input_size=size, precision=engine.network_precision(precision)
        )
        calls[config] = engine.prepare(network, precision).predict
    transformers = {
        precision: PretrainedFeatureTransformer(
            name, weights=None, input_size=size, batch_size=batch_size, engine="auto", precision=precision
        )
        for precision in ("float32", "auto")
    }
    for precision, transformer in transformers.items():
        calls[f"auto({precision})"] = transformer.transform
    outputs = {column: call(x) for column, call in calls.items()}  # traces, converts, warms up
    rates = alternating_rates(calls, x, rounds, round_seconds)
    cosine = {column: float(cosines(outputs[REFERENCE], out).min()) for column, out in outputs.items()}
    picked = {}
    for precision, transformer in transformers.items():
        network = transformer._network()
        picked[precision] = f"{network.engine}/{network.precision}"
    return rates, cosine, picked


def report(name, rates, cosine, picked, configs):
    def allowed(config, precision):
        config_precision = config.split("/")[1]
        if precision != "auto" and config_precision != precision:
            return False
        return config == REFERENCE or cosine[config] >= MIN_COSINE[config_precision]

    tf32 = rates[REFERENCE]["median"]
    verdicts = []
    lines = []
    for precision in ("float32", "auto"):
        column = f"auto({precision})"
        candidates = [config for config in configs if allowed(config, precision)]
        best = max(candidates, key=lambda config: rates[config]["median"])
        auto = rates[column]["median"]
        over_best, over_tf = auto / rates[best]["median"], auto / tf32
        ok = over_best >= TARGET and over_tf >= TARGET
        verdicts.append(ok)
        lines.append(
            f"    {column}: runs {short(picked[precision])}; {over_best:.2f}x the fastest it allows "
            f"({short(best)}), {over_tf:.2f}x TF f32 -> {'PASS' if ok else 'FAIL'}"
        )
    excluded = [short(c) for c in configs if c != REFERENCE and cosine[c] < MIN_COSINE[c.split("/")[1]]]
    print(f"{name:<20}" + "".join(f"{cell(rates[c]):>24}" for c in rates), flush=True)
    for line in lines:
        print(line)
    print(
        "    lowest cosine to TF f32: "
        + ", ".join(f"{short(c) if '/' in c else c} {v:.7f}" for c, v in cosine.items() if c != REFERENCE)
        + (f"; below the decision's threshold (not allowed): {', '.join(excluded)}" if excluded else ""),
        flush=True,
    )
    return all(verdicts)


STARTUP = """
import os, sys, time
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import numpy as np
import keras, openvino, tensorflow  # every process using skptm pays these imports; not timed
from skptm import PretrainedFeatureTransformer
x = np.load(sys.argv[3])
start = time.perf_counter()
PretrainedFeatureTransformer(sys.argv[2], weights=None, engine=sys.argv[1], batch_size=8).transform(x)
print(time.perf_counter() - start)
"""


def startup(engine, backbone, batch_file):
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(STARTUP), engine, backbone, batch_file],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout.split()[-1])


def files_against_memory(backbone, batch_size, n_images, rounds):
    transformer = PretrainedFeatureTransformer(backbone, weights=None, batch_size=batch_size, engine="openvino")
    native = get_backbone_spec(backbone).input_size
    x = sample_batch((native, native), n_images)
    with tempfile.TemporaryDirectory() as folder:
        paths, _ = write_labelled_jpegs(folder, n_images)
        transformer.transform(x[:batch_size])
        rates = {"memory": [], "files": []}
        for round_index in range(rounds):
            kinds = [("memory", x), ("files", paths)]
            for kind, data in kinds[round_index % 2 :] + kinds[: round_index % 2]:
                start = time.perf_counter()
                transformer.transform(data)
                rates[kind].append(n_images / (time.perf_counter() - start))
    return {kind: spread(values) for kind, values in rates.items()}


def main():
    import keras
    import tensorflow as tf

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", nargs="*", default=BACKBONES)
    parser.add_argument("--size", type=int, default=None, help="input size in pixels (default: each native size)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--round-seconds", type=float, default=1.0)
    parser.add_argument("--no-startup", action="store_true", help="skip the start-up comparison")
    parser.add_argument("--no-files", action="store_true", help="skip files against memory")
    parser.add_argument("--startup-backbone", default="resnet50")
    parser.add_argument("--files-images", type=int, default=256)
    args = parser.parse_args()

    machine = this_machine()
    configs = configurations(machine)
    print(f"machine: {machine.describe()}")
    print(
        f"conditions: skptm's feature network (average pooling), random weights, "
        f"{f'{args.size} px' if args.size else 'native size'}, batch {args.batch_size}, input: the sample photos "
        f"as uint8 in 0-255; {args.rounds} alternating rounds of at least {args.round_seconds} s per column; "
        f"TensorFlow {tf.__version__}, Keras {keras.__version__}, OpenVINO {openvino.version() or 'not installed'}; "
        f"cache folder {os.environ['SKPTM_CACHE_DIR']}"
    )
    all_pass = True
    if args.backbones:
        start = time.perf_counter()
        skptm.calibrate(args.backbones, weights=None, input_size=args.size, verbose=0)
        print(
            f"calibrated {', '.join(args.backbones)} on this machine in {time.perf_counter() - start:.0f} s "
            "(what auto decides from)"
        )
        columns = [*configs, "auto(float32)", "auto(auto)"]
        print("images per second, median (low–high) over the rounds")
        print(f"{'backbone':<20}" + "".join(f"{short(c) if '/' in c else c:>24}" for c in columns), flush=True)
        for name in args.backbones:
            rates, cosine, picked = measure(name, args.size, args.batch_size, args.rounds, args.round_seconds, configs)
            all_pass &= report(name, rates, cosine, picked, configs)
        print(
            f"targets (auto >= {TARGET}x the fastest configuration its precision allows and >= {TARGET}x TF f32): "
            f"{'PASS' if all_pass else 'FAIL'}"
        )
    if (not args.no_startup or not args.no_files) and not openvino.is_available():
        print("OpenVINO is not installed: start-up and files comparisons skipped")
        return
    backbone = args.startup_backbone
    if not args.no_startup:
        os.environ["SKPTM_CACHE_DIR"] = tempfile.mkdtemp(prefix="skptm-engine-startup-")
        atexit.register(shutil.rmtree, os.environ["SKPTM_CACHE_DIR"], ignore_errors=True)
        native = get_backbone_spec(backbone).input_size
        batch_file = os.path.join(os.environ["SKPTM_CACHE_DIR"], "batch.npy")
        np.save(batch_file, sample_batch((native, native), 8))
        cold = startup("openvino", backbone, batch_file)  # converts and stores the model
        times = {"openvino": [], "tensorflow": []}
        for repeat in range(3):
            for engine in ("openvino", "tensorflow") if repeat % 2 == 0 else ("tensorflow", "openvino"):
                times[engine].append(startup(engine, backbone, batch_file))
        times = {engine: spread(values) for engine, values in times.items()}
        print(
            f"{backbone}, first transform in a fresh process (imports done before the clock; network built, "
            f"one batch of 8 photos), seconds, median (low–high) of 3 alternating: openvino {cold:.2f} converting, "
            f"openvino {times['openvino']['median']:.2f} ({times['openvino']['low']:.2f}–"
            f"{times['openvino']['high']:.2f}) with the converted model on disk, tensorflow "
            f"{times['tensorflow']['median']:.2f} ({times['tensorflow']['low']:.2f}–{times['tensorflow']['high']:.2f})"
            f"; openvino/tensorflow {times['openvino']['median'] / times['tensorflow']['median']:.2f}x"
        )
    if not args.no_files:
        rounds = max(2, args.rounds // 2)
        rates = files_against_memory(backbone, args.batch_size, args.files_images, rounds)
        print(
            f"{backbone} openvino, {args.files_images} images, median (low–high) of {rounds} alternating rounds: "
            f"sample photos in memory {cell(rates['memory'])} images/s, 1920x1280 JPEG files "
            f"{cell(rates['files'])} images/s, files/memory {rates['files']['median'] / rates['memory']['median']:.2f}x"
        )


if __name__ == "__main__":
    main()
