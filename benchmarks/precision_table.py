"""Measure bfloat16 against float32 for every network, and write the table
that ``precision="auto"`` reads (``skptm/_precision_table.py``).

For each network of the registry, the raw compiled Keras forward pass (the
``keras.applications`` network with average pooling, called inside one
``tf.function``) is built twice, under the ``float32`` and the
``mixed_bfloat16`` policy, with the same random weights. Batches of the two
alternate, so that load from elsewhere on the machine slows both alike; the
speed-up is the ratio of their total times. Features are compared by cosine
similarity on the same inputs.

    python benchmarks/precision_table.py                   # every network, 160 px, batch 16; writes the table
    python benchmarks/precision_table.py --backbones vgg16 resnet50 --no-write

The size defaults to 160 px (not each network's native size) to keep the run
under half an hour on two cores; the ratio depends on the arithmetic, not on
the size. Run it on the kind of machine the table is for.
"""

import argparse
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
import tensorflow as tf

from skptm import list_backbones
from skptm._backbones import get_backbone_spec
from skptm._precision import cpu_flags, dtype_policy_scope

TABLE = Path(__file__).resolve().parent.parent / "skptm" / "_precision_table.py"


def build(spec, size, policy):
    with dtype_policy_scope(policy):
        keras.utils.set_random_seed(0)
        model = spec.constructor()(include_top=False, weights=None, pooling="avg", input_shape=(size, size, 3))
    return tf.function(lambda x: model(x, training=False))


def measure(spec, size, batch_size, batches):
    rng = np.random.default_rng(0)
    x = tf.constant(rng.uniform(-1, 1, (batch_size, size, size, 3)).astype(np.float32))
    calls = {"float32": build(spec, size, "float32"), "bfloat16": build(spec, size, "mixed_bfloat16")}
    outputs = {name: np.asarray(call(x), dtype=np.float32) for name, call in calls.items()}  # traces
    seconds = dict.fromkeys(calls, 0.0)
    for _ in range(batches):
        for name, call in calls.items():
            start = time.perf_counter()
            call(x).numpy()
            seconds[name] += time.perf_counter() - start
    a, b = outputs["float32"], outputs["bfloat16"]
    cosine = np.sum(a * b, axis=1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-30)
    return batches * batch_size / seconds["float32"], seconds["float32"] / seconds["bfloat16"], float(cosine.min())


def write_table(rows, size, batch_size):
    flags = sorted(cpu_flags() & {"avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx2", "avx512_vnni"})
    lines = [
        '"""Measured bfloat16 speed-ups, written by ``benchmarks/precision_table.py``.',
        "",
        f"Raw compiled Keras forward pass, random weights, {size} px, batch {batch_size},",
        f"{platform.machine()} with {os.cpu_count()} cores, TensorFlow {tf.__version__}: throughput under",
        "``mixed_bfloat16`` divided by float32, batches of the two alternating.",
        '"""',
        "",
        "#: CPU feature flags of the machine the table was measured on.",
        f"MEASURED_ON = {tuple(flags)!r}",
        "",
        "#: float32 images per second on that machine, for the performance guide.",
        "FLOAT32_IMAGES_PER_SECOND: dict[str, float] = {",
        *(f"    {name!r}: {rate:.1f}," for name, rate, _, _ in rows),
        "}",
        "",
        "#: bfloat16 throughput / float32 throughput, per backbone name.",
        "BFLOAT16_SPEEDUP: dict[str, float] = {",
        *(f"    {name!r}: {speedup:.2f}," for name, _, speedup, _ in rows),
        "}",
        "",
        "#: Lowest cosine similarity of bfloat16 features to float32 ones (random",
        "#: weights, a pessimistic case: errors grow through deep random networks).",
        "BFLOAT16_COSINE: dict[str, float] = {",
        *(f"    {name!r}: {cosine:.5f}," for name, _, _, cosine in rows),
        "}",
        "",
    ]
    TABLE.write_text("\n".join(lines))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", nargs="+", default=[b["name"] for b in list_backbones()])
    parser.add_argument("--size", type=int, default=160)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    print(f"{platform.machine()}, {os.cpu_count()} cores, bf16 flags: "
          f"{sorted(cpu_flags() & {'avx512_bf16', 'amx_bf16'}) or 'none'}; {args.size} px, batch {args.batch_size}")
    print(f"{'backbone':<22}{'float32 img/s':>14}{'bf16/f32':>10}{'cosine':>10}")
    rows = []
    for name in args.backbones:
        spec = get_backbone_spec(name)
        rate, speedup, cosine = measure(spec, args.size, args.batch_size, args.batches)
        rows.append((spec.name, rate, speedup, cosine))
        print(f"{spec.name:<22}{rate:>14.1f}{speedup:>9.2f}x{cosine:>10.5f}", flush=True)
        keras.backend.clear_session()
    if not args.no_write:
        write_table(rows, args.size, args.batch_size)
        print(f"wrote {TABLE}")


if __name__ == "__main__":
    main()
