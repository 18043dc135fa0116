"""Measure every (engine, precision) for every network, and write this machine's
table of the prior (``skptm/engines/prior.json``).

For each network of the registry, :func:`skptm.engines.calibration.measure`
runs skptm's own feature network (random weights, average pooling) in every
configuration this machine offers (``calibration.configurations()``:
TensorFlow and OpenVINO, float32, and bfloat16 where the CPU computes it
natively) on the same batch of real photographs (the sample photos, uint8 in
0-255). Configurations alternate round by round, so that load from elsewhere
on the machine slows them all alike; each rate is the median of the rounds,
with the slowest and fastest round (the spread). Features are compared with
TensorFlow float32's by per-image cosine (no floor on the norms). The cache
folder is a fresh temporary one, so conversions are timed cold.

    python benchmarks/engine_table.py                    # every network, 160 px, batch 16; writes this machine's table
    python benchmarks/engine_table.py --backbones convnext_tiny resnet50 --no-write
    python benchmarks/engine_table.py --markdown         # every table of prior.json, for docs/performance.md

Each network's measurement is appended to ``--log`` (JSON lines) as soon as it
is done; ``--resume`` skips networks already there, and the table is written
from the log. Writing replaces the table of this machine kind (same
instruction set, architecture and cores) and keeps the others. Run it on the
kind of machine the table is for, with nothing else running.
"""

import argparse
import atexit
import json
import math
import os
import shutil
import sys
import tempfile
from pathlib import Path

from skptm.engines.prior import PRIOR_SIZE  # imports neither TensorFlow nor Keras

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

PRIOR = Path(__file__).resolve().parent.parent / "skptm" / "engines" / "prior.json"
REFERENCE = "tensorflow/float32"
SPREAD = "low/high are the slowest/fastest rounds"


def machine_dict(machine):
    return {
        "architecture": machine.architecture,
        "cpu_model": machine.cpu_model,
        "instruction_set": machine.instruction_set,
        "flags": list(machine.flags),
        "cores": machine.cores,
    }


def table_identity(machine: dict) -> tuple:
    return (machine["instruction_set"], machine["architecture"], machine["cores"])


def describe_machine(machine: dict) -> str:
    """The same line as ``Machine.describe()``, from a table's ``machine`` dict."""
    return f"{machine['cpu_model']} ({machine['architecture']}, {machine['instruction_set']}), {machine['cores']} cores"


def conditions(args) -> str:
    import keras
    import tensorflow as tf

    from skptm.engines import openvino

    return (
        f"skptm's feature network (average pooling), random weights, {args.size} px (a network that runs at "
        f"one size only, or rounds to its patch size, at the size it runs at: input_size), batch {args.batch_size}, "
        f"input: the 16 sample photos (skptm.datasets.load_sample_photos) as uint8 in 0-255; "
        f"{args.rounds} alternating rounds of at least {args.round_seconds} s per configuration; "
        f"TensorFlow {tf.__version__}, Keras {keras.__version__}, OpenVINO {openvino.version() or 'not installed'}"
    )


def running_size(name: str, size: int) -> tuple[int, int]:
    """The size ``name`` runs at when asked for ``size`` px: KerasHub's CLIP,
    SigLIP and ViT run at their native size only, DINO rounds to its patch."""
    from skptm._backbones import get_backbone_spec
    from skptm.networks.hub import hub_input_size

    spec = get_backbone_spec(name)
    if not spec.is_hub:
        return (size, size)
    try:
        return hub_input_size(spec, (size, size))
    except ValueError:  # fixed position embeddings
        return (spec.input_size, spec.input_size)


def floor(value, digits=7):
    """Round a cosine down, so that a stored value never passes a threshold the measured
    one missed (within float error: a cosine of 1 - 1e-15 stays 1.0)."""
    scale = 10**digits
    return math.floor(value * scale + 1e-6) / scale


def build_table(rows, args, machine) -> dict:
    return {
        "machine": machine_dict(machine),
        "conditions": conditions(args),
        "spread": SPREAD,
        "input_size": {
            row["backbone"]: row["input_size"] for row in rows if row["input_size"] != [PRIOR_SIZE, PRIOR_SIZE]
        },
        "images_per_second": {
            row["backbone"]: {
                config: {key: round(rate[key], 2) for key in ("median", "low", "high")}
                for config, rate in row["rates"].items()
            }
            for row in rows
        },
        "cosine": {row["backbone"]: {config: floor(c) for config, c in row["cosine"].items()} for row in rows},
        "conversion_seconds": {
            row["backbone"]: round(max(row["conversion_seconds"].values()), 2) if row["conversion_seconds"] else None
            for row in rows
        },
    }


def write_table(table: dict) -> None:
    document = json.loads(PRIOR.read_text()) if PRIOR.exists() else {"format": 1, "machines": []}
    identity = table_identity(table["machine"])
    kept = [old for old in document["machines"] if table_identity(old["machine"]) != identity]
    replaced = [old for old in document["machines"] if table_identity(old["machine"]) == identity]
    for old in replaced:
        dropped = sorted(set(old["images_per_second"]) - set(table["images_per_second"]))
        if dropped:
            print(
                f"note: the replaced table of this machine kind also held {', '.join(dropped)}; "
                "they are not in the new one"
            )
    document["machines"] = [*kept, table]
    with PRIOR.open("w") as out:
        json.dump(document, out, indent=1)
        out.write("\n")
    print(
        f"wrote this machine's table ({len(table['images_per_second'])} networks) to {PRIOR}; "
        f"{len(kept)} other machine table(s) kept"
    )


# -- Markdown ---------------------------------------------------------------------------------


def short(config: str) -> str:
    engine, precision = config.split("/")
    return {"tensorflow": "TF", "openvino": "OV"}.get(engine, engine) + " " + precision.replace("float", "f")


def rate_cell(rate: dict) -> str:
    if "low" in rate and "high" in rate:
        return f"{rate['median']:.1f} ({rate['low']:.1f}–{rate['high']:.1f})"
    return f"{rate['median']:.1f} (no spread)"


def choice_cell(entry: dict, precision: str) -> str:
    from skptm.engines.decision import best_measured

    complete = entry["cosine"] is not None and all("low" in rate and "high" in rate for rate in entry["rates"].values())
    if not complete:
        return "— (row lacks spread or cosine)"
    choice = best_measured(entry, "auto", precision)
    return f"{short(choice.label)} ({choice.reason.removeprefix('measured here: ')})"


def print_markdown() -> None:
    """Every table of prior.json as Markdown, with what ``auto`` would choose from each row."""
    document = json.loads(PRIOR.read_text())
    for table in document["machines"]:
        rates = table["images_per_second"]
        cosine = table.get("cosine")
        conversion = table.get("conversion_seconds") or {}
        configs = []
        for row in rates.values():
            configs.extend(config for config in row if config not in configs)
        configs.sort(key=lambda config: config != REFERENCE)  # TensorFlow float32 first
        others = configs[1:]
        print(f"#### {describe_machine(table['machine'])}")
        print()
        print(
            f"Conditions: {table['conditions']}. Images per second, median (low–high): "
            f"{table.get('spread') or 'no spread recorded'}. Speed-up: median over {short(REFERENCE)}'s median, "
            "same run. Cosine: lowest per-image cosine to TF f32's features. "
            "auto: what `best_measured` chooses from the row, for precision float32 and auto."
        )
        print()
        header = (
            ["network"]
            + [short(c) for c in configs]
            + [f"{short(c)} / TF f32" for c in others]
            + [f"cosine {short(c)}" for c in others]
            + ["conversion s", "auto (float32)", "auto (auto)"]
        )
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        sizes = table.get("input_size", {})
        for name, row in rates.items():
            cells = [f"{name} ({sizes[name][0]} px)" if name in sizes else name]
            cells += [rate_cell(row[c]) if c in row else "—" for c in configs]
            base = row.get(REFERENCE, {}).get("median")
            cells += [f"{row[c]['median'] / base:.2f}x" if c in row and base else "—" for c in others]
            row_cosine = cosine.get(name) if cosine else None
            cells += [f"{row_cosine[c]:.7f}" if row_cosine and c in row_cosine else "—" for c in others]
            seconds = conversion.get(name)
            cells.append(f"{seconds:.1f}" if seconds is not None else "—")
            entry = {"rates": row, "cosine": row_cosine}
            cells += [choice_cell(entry, precision) for precision in ("float32", "auto")]
            print("| " + " | ".join(cells) + " |")
        print()


# -- measuring ---------------------------------------------------------------------------------


def read_log(args, machine) -> dict:
    done = {}
    for line in args.log.read_text().splitlines():
        row = json.loads(line)
        expected = {
            "input_size": list(running_size(row["backbone"], args.size)),
            "batch_size": args.batch_size,
            "rounds": args.rounds,
            "weights": "random",
            "machine": machine.describe(),
        }
        found = {key: row.get(key) for key in expected}
        if found != expected:
            sys.exit(
                f"{args.log}: {row['backbone']} was measured with {found}, not {expected}; "
                "resume with the same settings or start a new log"
            )
        done[row["backbone"]] = row
    return done


def main():
    from skptm import list_backbones

    registry = [b["name"] for b in list_backbones()]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", nargs="+", default=registry)
    parser.add_argument("--size", type=int, default=160)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--round-seconds", type=float, default=0.5)
    parser.add_argument("--log", type=Path, default=Path("engine_table.jsonl"))
    parser.add_argument("--resume", action="store_true", help="skip networks already in --log")
    parser.add_argument("--no-write", action="store_true", help="do not touch prior.json")
    parser.add_argument("--markdown", action="store_true", help="print every table of prior.json and exit")
    args = parser.parse_args()
    if args.markdown:
        print_markdown()
        return

    os.environ["SKPTM_CACHE_DIR"] = tempfile.mkdtemp(prefix="skptm-engine-table-")  # conversions measured cold
    atexit.register(shutil.rmtree, os.environ["SKPTM_CACHE_DIR"], ignore_errors=True)
    import keras

    from skptm.engines import calibration
    from skptm.engines.machine import this_machine
    from skptm.networks import clear_network_cache

    machine = this_machine()
    if machine.isa_cap and not args.no_write:
        parser.error(
            f"ONEDNN_MAX_CPU_ISA={machine.isa_cap} imitates a smaller instruction set on this machine's cores: "
            "the prior's tables are for machines that have it. Unset it, or add --no-write."
        )
    done = read_log(args, machine) if args.resume and args.log.exists() else {}
    if not args.resume and args.log.exists():
        args.log.unlink()
    configs = calibration.configurations(machine)
    print(f"machine: {machine.describe()}")
    print(f"conditions: {conditions(args)}")
    print(f"rates in images/s, median (low–high) over the rounds; cosine: lowest per image to {REFERENCE}")
    for name in args.backbones:
        if name in done:
            continue
        row = calibration.measure(
            name,
            weights=None,
            input_size=running_size(name, args.size),
            rounds=args.rounds,
            round_seconds=args.round_seconds,
            batch_size=args.batch_size,
            configs=configs,
        )
        with args.log.open("a") as log:
            log.write(json.dumps(row) + "\n")
        done[row["backbone"]] = row
        base = row["rates"][REFERENCE]["median"]
        cells = []
        for config, rate in row["rates"].items():
            cell = f"{short(config)} {rate['median']:.1f} ({rate['low']:.1f}–{rate['high']:.1f})"
            if config != REFERENCE:
                cell += f" {rate['median'] / base:.2f}x cos {row['cosine'][config]:.7f}"
            cells.append(cell)
        convert = ", ".join(f"{engine} {s:.1f} s" for engine, s in row["conversion_seconds"].items()) or "none"
        print(f"{row['backbone']:<20} " + " | ".join(cells) + f" | conversion {convert}", flush=True)
        clear_network_cache()
        keras.backend.clear_session()
    if not args.no_write:
        rows = sorted(done.values(), key=lambda r: registry.index(r["backbone"]) if r["backbone"] in registry else 0)
        write_table(build_table(rows, args, machine))


if __name__ == "__main__":
    main()
