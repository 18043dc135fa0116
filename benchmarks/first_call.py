"""The first-call cliff: a user's first ``transform`` with ``engine="auto"``
against ``engine="tensorflow"``, in fresh processes, side by side in one run.

For each backbone, in a fresh Python process each time, with an empty skptm
cache folder (``SKPTM_CACHE_DIR``, a new temporary folder per run) and
``TF_CPP_MIN_LOG_LEVEL=3``, the clock runs from before
``from skptm import PretrainedFeatureTransformer`` to after the first
``transform`` of 32 photos (the sample photos, uint8 in 0-255, at the
network's native size or ``--size``; random weights), so it includes
importing TensorFlow, building the network and any engine decision,
conversion or measurement:

* (a) ``engine="tensorflow"``;
* (b) ``engine="auto"`` (the default);

a and b alternate, ``--repeats`` runs each; the script prints the medians
(with the slowest and fastest run) and auto/tensorflow, which must be at
most 1.5 (PASS). Then:

* (c) ``engine="auto"`` in a cache folder where ``skptm.calibrate([name],
  weights=None)`` ran before, in another process (a deployment prepared
  ahead): its time, and the engine auto ran.

    python benchmarks/first_call.py                         # resnet50, mobilenet_v2, convnext_tiny, 3 runs each
    python benchmarks/first_call.py --backbones mobilenet_v2 --size 64 --repeats 1
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

BACKBONES = ["resnet50", "mobilenet_v2", "convnext_tiny"]
N_IMAGES = 32
LIMIT = 1.5

FIRST_CALL = """
import json, sys, time
import numpy as np
x = np.load(sys.argv[3])
start = time.perf_counter()
from skptm import PretrainedFeatureTransformer
size = int(sys.argv[4]) or None
transformer = PretrainedFeatureTransformer(sys.argv[1], weights=None, input_size=size, engine=sys.argv[2])
transformer.transform(x)
seconds = time.perf_counter() - start
network = transformer._network()
print(json.dumps({"seconds": seconds, "engine": network.engine, "precision": network.precision,
                  "reason": transformer._choice().reason}))
"""

CALIBRATE = """
import sys, time
start = time.perf_counter()
import skptm
skptm.calibrate([sys.argv[1]], weights=None, input_size=int(sys.argv[2]) or None, verbose=0)
print(time.perf_counter() - start)
"""


def environment(cache_dir):
    return {**os.environ, "SKPTM_CACHE_DIR": cache_dir, "TF_CPP_MIN_LOG_LEVEL": "3"}


def run(code, *arguments, cache_dir):
    """``code`` in a fresh Python process; its last line of output."""
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *map(str, arguments)],
        env=environment(cache_dir),
        capture_output=True,
        text=True,
    )
    if out.returncode:
        sys.exit(f"a subprocess failed ({' '.join(map(str, arguments))}):\n{out.stderr[-3000:]}")
    return out.stdout.strip().splitlines()[-1]


def first_call(backbone, engine, batch_file, size, cache_dir=None):
    """One fresh process; an empty cache folder unless ``cache_dir`` is given."""
    folder = cache_dir or tempfile.mkdtemp(prefix="skptm-first-call-")
    try:
        return json.loads(run(FIRST_CALL, backbone, engine, batch_file, size or 0, cache_dir=folder))
    finally:
        if cache_dir is None:
            shutil.rmtree(folder, ignore_errors=True)


def spread(values):
    return f"{statistics.median(values):.2f} s ({min(values):.2f}–{max(values):.2f})"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", nargs="+", default=BACKBONES)
    parser.add_argument("--size", type=int, default=None, help="input size in pixels (default: each native size)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-prepared", action="store_true", help="skip (c), the prepared deployment")
    args = parser.parse_args()

    import keras
    import tensorflow as tf

    from skptm._backbones import get_backbone_spec
    from skptm.engines import openvino
    from skptm.engines.calibration import sample_batch
    from skptm.engines.machine import this_machine

    print(f"machine: {this_machine().describe()}")
    print(
        f"conditions: a fresh process per run, empty SKPTM_CACHE_DIR, TF_CPP_MIN_LOG_LEVEL=3; from before "
        f"`from skptm import PretrainedFeatureTransformer` to after the first transform of {N_IMAGES} sample "
        f"photos (uint8 0-255, {f'{args.size} px' if args.size else 'native size'}), random weights, default "
        f"batch size; (a) and (b) alternating, {args.repeats} runs each; TensorFlow {tf.__version__}, "
        f"Keras {keras.__version__}, OpenVINO {openvino.version() or 'not installed'}"
    )
    all_pass = True
    with tempfile.TemporaryDirectory(prefix="skptm-first-call-input-") as work:
        for name in args.backbones:
            native = get_backbone_spec(name).input_size
            size = args.size or native
            batch_file = os.path.join(work, f"{name}.npy")
            np.save(batch_file, sample_batch((size, size), N_IMAGES))
            times = {"tensorflow": [], "auto": []}
            ran = set()
            for repeat in range(args.repeats):
                for engine in ("tensorflow", "auto") if repeat % 2 == 0 else ("auto", "tensorflow"):
                    result = first_call(name, engine, batch_file, args.size)
                    times[engine].append(result["seconds"])
                    if engine == "auto":
                        ran.add(f"{result['engine']}/{result['precision']}")
            ratio = statistics.median(times["auto"]) / statistics.median(times["tensorflow"])
            ok = ratio <= LIMIT
            all_pass &= ok
            print(
                f"{name} ({size} px): (a) tensorflow {spread(times['tensorflow'])}, (b) auto {spread(times['auto'])}"
                f" running {', '.join(sorted(ran))}; auto/tensorflow {ratio:.2f}x (target <= {LIMIT}) "
                f"-> {'PASS' if ok else 'FAIL'}",
                flush=True,
            )
            if args.no_prepared:
                continue
            prepared = tempfile.mkdtemp(prefix="skptm-first-call-prepared-")
            try:
                calibration_seconds = float(run(CALIBRATE, name, args.size or 0, cache_dir=prepared))
                prepared_times, prepared_ran = [], set()
                for _ in range(args.repeats):
                    result = first_call(name, "auto", batch_file, args.size, cache_dir=prepared)
                    prepared_times.append(result["seconds"])
                    prepared_ran.add(f"{result['engine']}/{result['precision']} ({result['reason']})")
            finally:
                shutil.rmtree(prepared, ignore_errors=True)
            print(
                f"{name} ({size} px): (c) auto after skptm.calibrate (which took {calibration_seconds:.0f} s, "
                f"ahead, in its own process): {spread(prepared_times)} running {', '.join(sorted(prepared_ran))}; "
                f"(c)/(a) {statistics.median(prepared_times) / statistics.median(times['tensorflow']):.2f}x",
                flush=True,
            )
    print(f"first-call target (auto <= {LIMIT}x tensorflow, empty cache): {'PASS' if all_pass else 'FAIL'}")


if __name__ == "__main__":
    main()
