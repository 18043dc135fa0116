"""Measure every (engine, precision) for every network, and write the table
that ``engine="auto"`` reads (``skptm/_engine_table.py``).

For each network of the registry, skptm's own feature network (random
weights, average pooling) runs four ways on the same uint8 batch:
TensorFlow float32, TensorFlow ``mixed_bfloat16``, OpenVINO f32 and OpenVINO
bf16 (converted from the float32 network in this process). Batches of the
four alternate, so that load from elsewhere on the machine slows all alike.
Features are compared to TensorFlow float32 by cosine similarity; the
conversion time is the first ``compiled_network`` call with an empty disk
cache.

    python benchmarks/engine_table.py                    # every network, 160 px, batch 16; writes the table
    python benchmarks/engine_table.py --backbones convnext_tiny resnet50 --no-write
    python benchmarks/engine_table.py --markdown         # print the shipped table for docs/performance.md

Rows are appended to ``--log`` (JSON lines) as they are measured; ``--resume``
skips networks already there, and the table is written from the log.
Run it on the kind of machine the table is for.
"""

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["SKPTM_CACHE_DIR"] = tempfile.mkdtemp(prefix="skptm-engine-table-")  # conversions measured cold

import keras
import numpy as np
import openvino as ov
import tensorflow as tf

from skptm import list_backbones
from skptm._networks import clear_network_cache, get_feature_network
from skptm._openvino import compiled_network
from skptm._precision import cpu_flags

TABLE = Path(__file__).resolve().parent.parent / "skptm" / "_engine_table.py"
CONFIGURATIONS = ("tensorflow/float32", "tensorflow/bfloat16", "openvino/float32", "openvino/bfloat16")


def measure(name, size, batch_size, batches):
    x = np.random.default_rng(0).integers(0, 256, (batch_size, size, size, 3), dtype=np.uint8)
    tf32 = get_feature_network(name, weights=None, input_size=size, precision="float32")
    tfbf = get_feature_network(name, weights=None, input_size=size, precision="bfloat16")
    start = time.perf_counter()
    ov32 = compiled_network(tf32.model, "float32", takes_images=True)
    conversion = time.perf_counter() - start
    ovbf = compiled_network(tf32.model, "bfloat16", takes_images=True)
    calls = dict(zip(CONFIGURATIONS, (tf32.predict, tfbf.predict, ov32.predict, ovbf.predict), strict=True))
    outputs = {key: call(x) for key, call in calls.items()}  # traces and warms up
    seconds = dict.fromkeys(calls, 0.0)
    for _ in range(batches):
        for key, call in calls.items():
            start = time.perf_counter()
            call(x)
            seconds[key] += time.perf_counter() - start
    reference = outputs["tensorflow/float32"]
    cosine = {}
    for key in CONFIGURATIONS[1:]:
        other = outputs[key]
        norms = np.maximum(np.linalg.norm(reference, axis=1) * np.linalg.norm(other, axis=1), 1e-30)
        cosine[key] = float(np.min(np.sum(reference * other, axis=1) / norms))
    rates = {key: batches * batch_size / seconds[key] for key in CONFIGURATIONS}
    return {"backbone": name, "rates": rates, "cosine": cosine, "conversion_seconds": conversion}


def write_table(rows, size, batch_size):
    flags = sorted(cpu_flags() & {"avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx2", "avx512_vnni"})

    def mapping(title, values, digits):
        out = [title]
        for name, entry in values:
            items = ", ".join(f"{key!r}: {value:.{digits}f}" for key, value in entry.items())
            out.append(f"    {name!r}: {{{items}}},")
        return [*out, "}", ""]

    lines = [
        '"""Measured speed of each (engine, precision), written by ``benchmarks/engine_table.py``.',
        "",
        f"skptm's feature network, random weights, {size} px, batch {batch_size}, uint8 input,",
        f"{platform.machine()} with {os.cpu_count()} cores, TensorFlow {tf.__version__}, Keras {keras.__version__},",
        f"OpenVINO {ov.__version__.split('-')[0]}; batches of the four configurations alternating.",
        '"""',
        "",
        "#: CPU feature flags of the machine the table was measured on.",
        f"MEASURED_ON = {tuple(flags)!r}",
        "",
        "#: Images per second, per backbone name and ``engine/precision``.",
        *mapping("IMAGES_PER_SECOND: dict[str, dict[str, float]] = {",
                 [(r["backbone"], r["rates"]) for r in rows], 1),
        "#: Lowest cosine similarity of the features to TensorFlow float32 ones (random",
        "#: weights, a pessimistic case: errors grow through deep random networks).",
        *mapping("COSINE: dict[str, dict[str, float]] = {", [(r["backbone"], r["cosine"]) for r in rows], 6),
        "#: Seconds to convert the Keras network to OpenVINO (once per network, then cached on disk).",
        "CONVERSION_SECONDS: dict[str, float] = {",
        *(f"    {r['backbone']!r}: {r['conversion_seconds']:.1f}," for r in rows),
        "}",
        "",
    ]
    TABLE.write_text("\n".join(lines))


def print_markdown():
    """The shipped table as Markdown, with what ``auto`` picks on this machine."""
    from skptm._engine_table import CONVERSION_SECONDS, COSINE, IMAGES_PER_SECOND
    from skptm._engines import resolve_engine

    print("| network | TF f32 | TF bf16 | OV f32 | OV bf16 | OV bf16 cosine | convert s "
          "| auto (float32) | auto (auto) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, rates in IMAGES_PER_SECOND.items():
        cells = [f"{rates[key]:.1f}" for key in CONFIGURATIONS]
        picks = []
        for precision in ("float32", "auto"):
            engine, chosen = resolve_engine("auto", precision, name)
            gain = rates[f"{engine}/{chosen}"] / rates["tensorflow/float32"]
            picks.append(f"{'OV' if engine == 'openvino' else 'TF'} {chosen.replace('float', 'f').replace('bf', 'bf')} "
                         f"({gain:.1f}x)")
        print(f"| {name} | " + " | ".join(cells) + f" | {COSINE[name]['openvino/bfloat16']:.5f} | "
              f"{CONVERSION_SECONDS[name]:.0f} | " + " | ".join(picks) + " |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", nargs="+", default=[b["name"] for b in list_backbones()])
    parser.add_argument("--size", type=int, default=160)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--log", type=Path, default=Path("engine_table.jsonl"))
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    if args.markdown:
        print_markdown()
        return
    done = {}
    if args.resume and args.log.exists():
        done = {row["backbone"]: row for row in map(json.loads, args.log.read_text().splitlines())}
    elif args.log.exists():
        args.log.unlink()
    print(f"{platform.machine()}, {os.cpu_count()} cores, bf16 flags: "
          f"{sorted(cpu_flags() & {'avx512_bf16', 'amx_bf16'}) or 'none'}; {args.size} px, batch {args.batch_size}")
    print(f"{'backbone':<22}" + "".join(f"{key:>22}" for key in CONFIGURATIONS) + f"{'convert s':>11}")
    for name in args.backbones:
        if name in done:
            continue
        row = measure(name, args.size, args.batch_size, args.batches)
        with args.log.open("a") as log:
            log.write(json.dumps(row) + "\n")
        done[name] = row
        rates = row["rates"]
        print(f"{name:<22}" + "".join(f"{rates[key]:>22.1f}" for key in CONFIGURATIONS)
              + f"{row['conversion_seconds']:>11.1f}  cos " + " ".join(f"{c:.5f}" for c in row["cosine"].values()),
              flush=True)
        clear_network_cache()
        keras.backend.clear_session()
    if not args.no_write:
        order = [b["name"] for b in list_backbones()]
        write_table(sorted(done.values(), key=lambda r: order.index(r["backbone"])), args.size, args.batch_size)
        print(f"wrote {TABLE}")


if __name__ == "__main__":
    main()
