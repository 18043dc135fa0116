"""Peak memory of transforming many JPEG files: flat in the number of images.

Writes N JPEGs of 320x240 (distinct content) to a temporary folder, then, in
a fresh process per measurement (so that peaks do not carry over), warms a
PretrainedFeatureTransformer on 32 images, takes the RSS as baseline, and
transforms the first n paths while a thread samples the RSS every 20 ms
(``ru_maxrss`` as a cross-check). Growth over the baseline must stay within
the output array's size plus 600 MB; the exit code is 1 if it does not.

    python benchmarks/memory_flat.py                         # 2,000 and 20,000 images, mobilenet_v2 at 96 px
    python benchmarks/memory_flat.py --sizes 500,5000 --form series
    python benchmarks/memory_flat.py --backbone resnet50 --size 224 --folder /tmp/jpegs   # keep the files
"""

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

MB = 1024**2
ALLOWANCE = 600 * MB
WIDTH, HEIGHT = 320, 240
PAGE = os.sysconf("SC_PAGE_SIZE")


# -- the files ----------------------------------------------------------------


def jpeg_path(folder, i):
    return str(Path(folder) / f"{i:06d}.jpg")


def write_chunk(folder, start, stop):
    """Write images ``start:stop``: a shared base upscaled, rolled by the index
    in both directions, with a random 24x24 patch of its own."""
    from PIL import Image

    base = np.random.default_rng(0).integers(0, 256, (HEIGHT // 8, WIDTH // 8, 3), dtype=np.uint8)
    base = np.asarray(Image.fromarray(base).resize((WIDTH, HEIGHT), Image.Resampling.BILINEAR))
    for i in range(start, stop):
        path = jpeg_path(folder, i)
        if os.path.exists(path):
            continue
        image = np.roll(base, (i // WIDTH, i % WIDTH), axis=(0, 1))
        rng = np.random.default_rng(i + 1)
        y, x = rng.integers(0, HEIGHT - 24), rng.integers(0, WIDTH - 24)
        image[y : y + 24, x : x + 24] = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
        Image.fromarray(image).save(path, quality=90)
    return stop - start


def write_jpegs(folder, n, processes):
    step = 500
    with ProcessPoolExecutor(processes) as pool:
        futures = [pool.submit(write_chunk, folder, s, min(s + step, n)) for s in range(0, n, step)]
        for future in futures:
            future.result()


# -- one measurement, in a child process ----------------------------------------


def current_rss():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE


def max_rss():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


class RssSampler(threading.Thread):
    """Reads the RSS every ``interval`` seconds until stopped; keeps the peak and
    a trace of about one sample a second."""

    def __init__(self, interval=0.02):
        super().__init__(daemon=True)
        self.interval = interval
        self.peak = current_rss()
        self.trace = []
        self._halt = threading.Event()

    def run(self):
        start = last = time.perf_counter()
        while not self._halt.wait(self.interval):
            rss = current_rss()
            self.peak = max(self.peak, rss)
            now = time.perf_counter()
            if now - last >= 1.0:
                self.trace.append((round(now - start, 1), rss))
                last = now

    def stop(self):
        self._halt.set()
        self.join()
        self.peak = max(self.peak, current_rss())


def measure(args):
    from skptm import PretrainedFeatureTransformer

    paths = [jpeg_path(args.folder, i) for i in range(args.n)]
    if args.form == "series":
        import pandas as pd

        paths = pd.Series(paths, name="path")
    extractor = PretrainedFeatureTransformer(
        args.backbone,
        weights=None,
        input_size=args.size,
        batch_size=args.batch_size,
    )
    extractor.transform(paths[:32])  # build the network and trace predict outside the measurement
    baseline = current_rss()
    maxrss_before = max_rss()
    sampler = RssSampler()
    sampler.start()
    start = time.perf_counter()
    features = extractor.transform(paths)
    elapsed = time.perf_counter() - start
    sampler.stop()
    maxrss_after = max_rss()
    print(
        json.dumps(
            {
                "n": args.n,
                "baseline": baseline,
                "peak": sampler.peak,
                # ru_maxrss is a lifetime peak: it tells about the transform only if it rose during it
                "maxrss_peak": maxrss_after if maxrss_after > maxrss_before else None,
                "maxrss_before": maxrss_before,
                "output_nbytes": features.nbytes,
                "elapsed": elapsed,
                "images_per_s": args.n / elapsed,
                "trace": sampler.trace,
            }
        )
    )


def run_child(args, n):
    command = [
        sys.executable,
        __file__,
        "--child",
        "--folder",
        args.folder,
        "--n",
        str(n),
        "--backbone",
        args.backbone,
        "--size",
        str(args.size),
        "--batch-size",
        str(args.batch_size),
        "--form",
        args.form,
    ]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run(command, check=False, env=env, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode or not lines:
        sys.exit(f"measurement of {n} images failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(lines[-1])


# -- the report -----------------------------------------------------------------


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="mobilenet_v2")
    parser.add_argument("--size", type=int, default=96, help="network input size in px")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--sizes", default="2000,20000", help="numbers of images to transform, one child each")
    parser.add_argument(
        "--form",
        choices=["list", "series"],
        default="list",
        help="X as a list of path strings, or a pandas Series of them",
    )
    parser.add_argument(
        "--folder", help="write the JPEGs here and keep them (existing ones are reused); default: a temporary folder"
    )
    parser.add_argument("--trace", action="store_true", help="also print the RSS about once a second")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return measure(args)

    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory() as scratch:
        args.folder = args.folder or scratch
        os.makedirs(args.folder, exist_ok=True)
        start = time.perf_counter()
        write_jpegs(args.folder, max(sizes), os.cpu_count() or 1)
        print(f"{max(sizes)} JPEGs of {WIDTH}x{HEIGHT} ready in {time.perf_counter() - start:.0f} s")
        results = [run_child(args, n) for n in sizes]

    print(
        f"{args.backbone}, {args.size} px, batch {args.batch_size}, X as a {args.form} of paths; "
        f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}, Python {platform.python_version()}"
    )
    print(
        f"  {'images':>7}  {'output MB':>9}  {'baseline MB':>11}  {'peak-base MB':>12}  "
        f"{'(ru_maxrss)':>11}  {'budget MB':>9}  {'result':>6}  {'images/s':>8}"
    )
    failed = False
    for r in results:
        peak = max(r["peak"], r["maxrss_peak"] or 0)
        growth = peak - r["baseline"]
        budget = r["output_nbytes"] + ALLOWANCE
        ok = growth <= budget
        failed |= not ok
        maxrss = f"{(r['maxrss_peak'] - r['baseline']) / MB:11.0f}" if r["maxrss_peak"] else f"{'-':>11}"
        print(
            f"  {r['n']:7d}  {r['output_nbytes'] / MB:9.1f}  {r['baseline'] / MB:11.0f}  {growth / MB:12.0f}  "
            f"{maxrss}  {budget / MB:9.0f}  {'PASS' if ok else 'FAIL':>6}  {r['images_per_s']:8.0f}"
        )
        if args.trace:
            print(
                "    RSS - baseline (s: MB): "
                + ", ".join(f"{t:.0f}: {(rss - r['baseline']) / MB:.0f}" for t, rss in r["trace"])
            )
    print(
        "  peak-base: highest RSS sampled every 20 ms (or ru_maxrss, if higher) minus the RSS after "
        "warm-up; budget: output + 600 MB"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
