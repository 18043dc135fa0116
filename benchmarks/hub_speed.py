"""How fast the KerasHub vision transformers run here, beside ResNet50 and
EfficientNetB0, on every engine and precision this machine offers.

Each network is skptm's own feature network (preprocessing and pooling
inside; random weights: speed does not depend on the values) at its native
224 px, measured by :func:`skptm.engines.calibration.measure` on the 16
sample photos: configurations alternate round by round, each rate is the
median of the rounds (with the slowest and fastest), and the features of
every engine and precision are compared with TensorFlow float32's by their
lowest per-image cosine.

    python benchmarks/hub_speed.py                      # the default list, prints the table
    python benchmarks/hub_speed.py --save               # and writes docs/figures/hub_speed.json
    python benchmarks/hub_speed.py --backbones dinov2_small resnet50
    ONEDNN_MAX_CPU_ISA=AVX2 python benchmarks/hub_speed.py --save --figure hub_speed_avx2_kernels
                                                        # an AVX-512 machine running AVX2 kernels

Each network's measurement is appended to ``--log`` (JSON lines, the format
of ``benchmarks/engine_table.py``'s log) as soon as it is done; ``--resume``
takes the networks already there from it. The same log then gives this
machine kind's table of the prior without measuring again:

    python benchmarks/engine_table.py --size 224 --rounds 5 --log hub_speed.jsonl --resume --backbones ...
"""

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

DEFAULT = [
    "resnet50",
    "efficientnet_b0",
    "dinov2_small",
    "dinov2_with_registers_small",
    "dinov3_vit_small_lvd1689m",
    "dinov2_base",
    "dinov3_vit_base_lvd1689m",
    "vit_base_patch16_224_imagenet",
    "clip_vit_base_patch32",
    "clip_vit_base_patch16",
    "siglip_base_patch16_224",
    "siglip2_base_patch16_224",
    "dinov2_with_registers_base",
    "dinov2_large",
    "dinov2_with_registers_large",
    "siglip_so400m_patch14_224",
    "siglip2_so400m_patch14_224",
]
SHORT = {"tensorflow": "TF", "openvino": "OV"}


def short(config):
    engine, precision = config.split("/")
    return f"{SHORT.get(engine, engine)} {precision.replace('float', 'f')}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", nargs="+", default=DEFAULT)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--round-seconds", type=float, default=1.0)
    parser.add_argument("--save", action="store_true", help="write docs/figures/<--figure>.json")
    parser.add_argument(
        "--figure",
        default="hub_speed",
        help="the figure --save writes (default hub_speed; hub_speed_avx2_kernels for a run under "
        "ONEDNN_MAX_CPU_ISA=AVX2)",
    )
    parser.add_argument("--log", type=Path, default=Path("hub_speed.jsonl"))
    parser.add_argument("--resume", action="store_true", help="take networks already in --log from it")
    args = parser.parse_args()
    logged = {}
    if args.resume and args.log.exists():
        logged = {row["backbone"]: row for row in map(json.loads, args.log.read_text().splitlines())}
    elif args.log.exists():
        args.log.unlink()

    import tempfile

    os.environ["SKPTM_CACHE_DIR"] = tempfile.mkdtemp(prefix="skptm-hub-speed-")  # conversions measured cold
    import keras

    from skptm.engines import calibration, openvino
    from skptm.engines.machine import this_machine
    from skptm.networks import clear_network_cache, get_feature_network

    machine = this_machine()
    configs = calibration.configurations(machine)
    reference = "tensorflow/float32"
    others = [config for config in configs if config != reference]
    columns = ["network", "parameters", short(reference)] + [short(c) for c in others]
    columns += [f"best / {short(reference)}", "lowest cosine"]
    rows = []
    print(f"machine: {machine.describe()}")
    for name in args.backbones:
        network = get_feature_network(name, weights=None)
        parameters = f"{network.base.count_params() / 1e6:.1f} M"
        size = network.input_size[0]
        row = logged.get(name)
        if row is None or row["rounds"] != args.rounds or row["batch_size"] != args.batch_size:
            row = calibration.measure(
                name,
                weights=None,
                input_size=size,
                rounds=args.rounds,
                round_seconds=args.round_seconds,
                batch_size=args.batch_size,
                configs=configs,
            )
            with args.log.open("a") as log:
                log.write(json.dumps(row) + "\n")
        rates = {config: row["rates"][config]["median"] for config in row["rates"]}
        base = rates[reference]
        best = max(rates.values())
        cells = [name, parameters, f"{base:.1f}"] + [f"{rates[c]:.1f}" if c in rates else "—" for c in others]
        cells += [f"{best / base:.2f}×", f"{min(row['cosine'].values()):.5f}" if row["cosine"] else "—"]
        rows.append(cells)
        print(" | ".join(cells), flush=True)
        clear_network_cache()
        keras.backend.clear_session()
    if args.save:
        import sys

        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from _figures import save_figure

        save_figure(
            args.figure,
            conditions=(
                f"skptm's feature network at 224 px (preprocessing and pooling inside), random weights, batch "
                f"{args.batch_size}, the 16 sample photos; images per second, median of {args.rounds} alternating "
                f"rounds of at least {args.round_seconds} s; best / TF f32: the fastest configuration over "
                f"TensorFlow float32; lowest cosine: of any configuration's features to TensorFlow float32's, per "
                f"image; OpenVINO {openvino.version() or 'not installed'}"
                + (
                    f"; TensorFlow's and OpenVINO's kernels kept to {machine.isa_cap} by ONEDNN_MAX_CPU_ISA "
                    "(no bfloat16 there)"
                    if machine.isa_cap
                    else ""
                )
            ),
            columns=columns,
            rows=rows,
        )


if __name__ == "__main__":
    main()
