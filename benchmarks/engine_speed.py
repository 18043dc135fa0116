"""TensorFlow against OpenVINO, and what ``engine="auto"`` gets, side by side in one run.

For each backbone, at its native size (224 px for the five below), batch 32,
random weights, images per second of:

* ``TF f32`` / ``TF bf16``: the raw compiled Keras call (skptm's feature
  network inside one ``tf.function``) under float32 and ``mixed_bfloat16``;
* ``OV f32`` / ``OV bf16``: the same network converted to OpenVINO, as
  ``engine="openvino"`` runs it;
* ``auto``: ``PretrainedFeatureTransformer(engine="auto", precision="auto")
  .transform(X)`` on a uint8 array, everything skptm does included.

Rounds alternate between the five, and the best round counts. The script
prints each rate, ``auto`` over the best of the four columns, and the
OpenVINO speed-ups the issue asks for. Then, for ResNet50:

* start-up: a fresh process with the converted model already on disk, from
  the transformer's first call to its features (network built, converted
  model read and compiled, one batch run), against the same with
  ``engine="tensorflow"``;
* files: ``transform`` of camera-sized JPEGs (1920x1280) from disk with
  OpenVINO, against its in-memory rate (decoding threads and OpenVINO's
  threads share the cores).

    python benchmarks/engine_speed.py
    python benchmarks/engine_speed.py --backbones convnext_tiny --rounds 3 --no-startup --no-files
"""

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("SKPTM_CACHE_DIR", tempfile.mkdtemp(prefix="skptm-engine-speed-"))

import numpy as np
import tensorflow as tf

sys.path.insert(0, os.path.dirname(__file__))
from _photos import write_labelled_jpegs  # noqa: E402

from skptm import PretrainedFeatureTransformer  # noqa: E402
from skptm._networks import get_feature_network  # noqa: E402
from skptm._openvino import compiled_network  # noqa: E402

BACKBONES = ["convnext_tiny", "mobilenet_v2", "resnet50", "vgg16", "efficientnet_b0"]
COLUMNS = ("TF f32", "TF bf16", "OV f32", "OV bf16", "auto")


def cosine(a, b):
    return float(np.min(np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))))


def compiled_keras_call(network):
    model = network.model
    call = tf.function(lambda x: model(tf.cast(x, tf.float32), training=False))
    return lambda x: call(x).numpy()


def measure(name, batch_size, rounds):
    size = get_feature_network(name, weights=None).input_size[0]
    x = np.random.default_rng(0).integers(0, 256, (batch_size, size, size, 3), dtype=np.uint8)
    float32 = get_feature_network(name, weights=None, precision="float32")
    bfloat16 = get_feature_network(name, weights=None, precision="bfloat16")
    auto = PretrainedFeatureTransformer(name, weights=None, batch_size=batch_size, engine="auto", precision="auto")
    calls = {
        "TF f32": compiled_keras_call(float32),
        "TF bf16": compiled_keras_call(bfloat16),
        "OV f32": compiled_network(float32.model, "float32", takes_images=True).predict,
        "OV bf16": compiled_network(float32.model, "bfloat16", takes_images=True).predict,
        "auto": auto.transform,
    }
    outputs = {column: call(x) for column, call in calls.items()}  # traces, converts, warms up
    best = dict.fromkeys(calls, float("inf"))
    for _ in range(rounds):
        for column, call in calls.items():
            start = time.perf_counter()
            call(x)
            best[column] = min(best[column], time.perf_counter() - start)
    rates = {column: batch_size / seconds for column, seconds in best.items()}
    network = auto._network()
    return rates, {c: cosine(outputs["TF f32"], outputs[c]) for c in COLUMNS[1:]}, (network.engine, network.precision)


STARTUP = """
import os, sys, time
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import numpy as np
import keras, openvino, tensorflow  # every process using skptm pays these imports; not timed
from skptm import PretrainedFeatureTransformer
x = np.zeros((8, 224, 224, 3), np.uint8)
start = time.perf_counter()
PretrainedFeatureTransformer("resnet50", weights=None, engine=sys.argv[1], batch_size=8).transform(x)
print(time.perf_counter() - start)
"""


def startup(engine):
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(STARTUP), engine], capture_output=True, text=True,
                         check=True)
    return float(out.stdout.split()[-1])


def files_against_memory(batch_size, n_images, rounds):
    transformer = PretrainedFeatureTransformer("resnet50", weights=None, batch_size=batch_size, engine="openvino")
    x = np.random.default_rng(0).integers(0, 256, (n_images, 224, 224, 3), dtype=np.uint8)
    with tempfile.TemporaryDirectory() as folder:
        paths, _ = write_labelled_jpegs(folder, n_images)
        transformer.transform(x[:batch_size])
        best = {"memory": float("inf"), "files": float("inf")}
        for _ in range(rounds):
            for kind, data in (("memory", x), ("files", paths)):
                start = time.perf_counter()
                transformer.transform(data)
                best[kind] = min(best[kind], time.perf_counter() - start)
    return n_images / best["memory"], n_images / best["files"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", nargs="*", default=BACKBONES)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-startup", action="store_true")
    parser.add_argument("--no-files", action="store_true")
    args = parser.parse_args()
    print(f"images per second, batch {args.batch_size}, best of {args.rounds} alternating rounds")
    print(f"{'backbone':<16}" + "".join(f"{c:>9}" for c in COLUMNS)
          + f"{'auto picks':>20}{'auto/best':>10}{'OVf32/TF':>9}{'OVbf16/TF':>10}{'OVbf16/bestTF':>14}")
    for name in args.backbones:
        rates, cosines, picked = measure(name, args.batch_size, args.rounds)
        best = max(rates[c] for c in COLUMNS[:4])
        print(f"{name:<16}" + "".join(f"{rates[c]:>9.1f}" for c in COLUMNS) + f"{'/'.join(picked):>20}"
              f"{rates['auto'] / best:>9.2f}x{rates['OV f32'] / rates['TF f32']:>8.2f}x"
              f"{rates['OV bf16'] / rates['TF f32']:>9.2f}x"
              f"{rates['OV bf16'] / max(rates['TF f32'], rates['TF bf16']):>13.2f}x", flush=True)
        print(f"{'':<16}cosine to TF f32: " + ", ".join(f"{c} {v:.6f}" for c, v in cosines.items()), flush=True)
    if not args.no_startup:
        os.environ["SKPTM_CACHE_DIR"] = tempfile.mkdtemp(prefix="skptm-engine-startup-")
        cold = startup("openvino")  # converts and stores the model
        times = {engine: min(startup(engine) for _ in range(3)) for engine in ("openvino", "tensorflow")}
        print(f"resnet50, first transform in a fresh process (imports done; network built, one batch of 8): "
              f"openvino {cold:.2f} s converting, {times['openvino']:.2f} s with the converted model on disk; "
              f"tensorflow {times['tensorflow']:.2f} s")
    if not args.no_files:
        memory, files = files_against_memory(args.batch_size, 256, max(2, args.rounds // 2))
        print(f"resnet50 openvino: in memory {memory:.1f} images/s, JPEG files {files:.1f} images/s, "
              f"files/memory {files / memory:.2f}x")


if __name__ == "__main__":
    main()
