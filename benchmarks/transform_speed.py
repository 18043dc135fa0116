"""Transform throughput against the network's own limit, side by side in one run.

For each backbone, at its native size with ``weights=None`` and batch 32:

* ``compiled``: the raw compiled Keras forward pass, the ``keras.applications``
  network with ``pooling="avg"`` called inside one ``tf.function`` on batches
  already preprocessed and already on the device (the network's limit:
  nothing around the arithmetic is timed);
* ``predict``: ``model.predict(preprocess_input(X))``, what most users write;
* ``skptm``: ``PretrainedFeatureTransformer.transform(X)`` on a uint8 array
  of ``--images`` images, a number that is not a multiple of the batch size,
  so a last partial batch is included;
* ``files``: ``transform`` of the same number of camera-sized JPEGs
  (1920x1280) on disk, decoded in parallel with the network (``--files``).

Every method runs ``--rounds`` times, interleaved, and the best round counts
(throughput benchmarks on a shared machine are noisy; the best round is the
closest to what the machine can do). With ``--precision bfloat16`` both the
baselines and skptm use bfloat16 (Keras's ``mixed_bfloat16`` policy for the
baselines), and the script also reports the cosine similarity of skptm's
bfloat16 features to its float32 ones.

    python benchmarks/transform_speed.py                        # resnet50 and mobilenet_v2, float32
    python benchmarks/transform_speed.py --precision bfloat16 --backbones vgg16 resnet50 mobilenet_v2
    python benchmarks/transform_speed.py --files                # add camera-sized JPEGs
"""

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
import tensorflow as tf
from PIL import Image

from skptm import PretrainedFeatureTransformer
from skptm._backbones import get_backbone_spec

PREPROCESS_MODE = {"caffe": "caffe", "tf": "tf", "torch": "torch"}


def machine():
    flags = set()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    bf16 = sorted(flags & {"avx512_bf16", "amx_bf16"})
    return f"{platform.machine()}, {os.cpu_count()} cores, BF16: {', '.join(bf16) or 'no'}, TF {tf.__version__}"


def keras_network(spec, size, policy):
    """The plain keras.applications network, built under ``policy``; the
    global policy is restored afterwards."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        keras.utils.set_random_seed(0)
        return spec.constructor()(include_top=False, weights=None, pooling="avg", input_shape=(size, size, 3))
    finally:
        keras.config.set_dtype_policy(previous)


def preprocess(spec, images):
    x = images.astype(np.float32)
    if spec.preprocessing == "none":
        return x
    return keras.applications.imagenet_utils.preprocess_input(x, mode=PREPROCESS_MODE[spec.preprocessing])


def write_photos(folder, images):
    """Camera-sized JPEGs (1920x1280) whose content is ``images`` upscaled."""
    paths = []
    for i, image in enumerate(images):
        path = Path(folder) / f"{i:05d}.jpg"
        Image.fromarray(image).resize((1920, 1280), Image.Resampling.BILINEAR).save(path, quality=90)
        paths.append(str(path))
    return paths


def best_rate(n, seconds):
    return n / min(seconds)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", nargs="+", default=["resnet50", "mobilenet_v2"])
    parser.add_argument(
        "--images",
        type=int,
        default=None,
        help="default: 104 for slow networks, 584 otherwise (the last batch has 8 images)",
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--precision", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--files", action="store_true", help="also transform camera-sized JPEGs from disk")
    args = parser.parse_args()
    policy = "float32" if args.precision == "float32" else "mixed_bfloat16"
    print(f"{machine()}; batch {args.batch_size}, weights=None, precision {args.precision}")
    header = f"{'backbone':<14}{'images':>7}{'compiled':>10}{'predict':>10}{'skptm':>10}"
    header += f"{'files':>10}" if args.files else ""
    header += f"{'skptm/compiled':>16}{'skptm/predict':>15}" + (f"{'files/skptm':>13}" if args.files else "")
    rows = []
    for name in args.backbones:
        spec = get_backbone_spec(name)
        size = spec.input_size
        model = keras_network(spec, size, policy)
        n = args.images or (104 if spec.name in {"resnet50", "vgg16", "vgg19"} else 584)
        rng = np.random.default_rng(0)
        images = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
        batches = [
            tf.constant(preprocess(spec, images[s : s + args.batch_size]))
            for s in range(0, n - n % args.batch_size, args.batch_size)
        ]
        compiled = tf.function(lambda x, model=model: model(x, training=False))
        extractor = PretrainedFeatureTransformer(
            name, weights=None, batch_size=args.batch_size, precision=args.precision
        )
        compiled(batches[0])
        model.predict(preprocess(spec, images[: args.batch_size]), batch_size=args.batch_size, verbose=0)
        extractor.transform(images[: args.batch_size + 1])
        folder = tempfile.TemporaryDirectory() if args.files else None
        paths = write_photos(folder.name, images) if args.files else None
        times = {"compiled": [], "predict": [], "skptm": [], "files": []}
        for _ in range(args.rounds):
            start = time.perf_counter()
            for batch in batches:
                compiled(batch).numpy()
            times["compiled"].append((time.perf_counter() - start) * n / (len(batches) * args.batch_size))
            start = time.perf_counter()
            model.predict(preprocess(spec, images), batch_size=args.batch_size, verbose=0)
            times["predict"].append(time.perf_counter() - start)
            start = time.perf_counter()
            ours = extractor.transform(images)
            times["skptm"].append(time.perf_counter() - start)
            if args.files:
                start = time.perf_counter()
                extractor.transform(paths)
                times["files"].append(time.perf_counter() - start)
        if folder is not None:
            folder.cleanup()
        rate = {key: best_rate(n, value) for key, value in times.items() if value}
        line = f"{spec.name:<14}{n:>7}{rate['compiled']:>10.1f}{rate['predict']:>10.1f}{rate['skptm']:>10.1f}"
        line += f"{rate['files']:>10.1f}" if args.files else ""
        line += f"{rate['skptm'] / rate['compiled']:>15.2f}x{rate['skptm'] / rate['predict']:>14.2f}x"
        line += f"{rate['files'] / rate['skptm']:>12.2f}x" if args.files else ""
        if args.precision != "float32":
            reference = PretrainedFeatureTransformer(name, weights=None, batch_size=args.batch_size)
            full = reference.transform(images[: args.batch_size])
            cosine = np.sum(full * ours[: args.batch_size], axis=1) / (
                np.linalg.norm(full, axis=1) * np.linalg.norm(ours[: args.batch_size], axis=1)
            )
            line += f"   cosine to float32: min {cosine.min():.5f}"
        rows.append(line)
        print(header if len(rows) == 1 else "", end="\n" if len(rows) == 1 else "")
        print(line, flush=True)
    print("images/s, best of", args.rounds, "rounds")


if __name__ == "__main__":
    main()
