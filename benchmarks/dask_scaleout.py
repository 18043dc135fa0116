"""Featurising JPEG files on a Dask cluster against featurising them in-process.

Writes ``--n`` JPEGs, computes their MobileNetV2 features with
``PretrainedFeatureTransformer.transform`` in this process, then with
:func:`skptm.dask.transform` over a Bag of their paths on a
``LocalCluster`` of ``--workers`` processes (one thread each), and prints
images per second for each, their ratio, the machine, and what travels per
task. Each configuration is timed warm (networks already built: a warm-up
pass builds them first), best of ``--repeat`` runs, in-process and cluster
runs alternating so that other load on the machine hits both alike; the
features are checked to be equal.

The weights are a file this script writes (a random initialisation):
every process loads the same file, so the results can be compared exactly.

Two cluster runs: the workers as Dask starts them, and with each worker's
TensorFlow limited to one thread (``TF_NUM_INTRAOP_THREADS=1``), since on
one machine the workers share its cores with each other.

    python benchmarks/dask_scaleout.py                  # 2,000 JPEGs of 320x240, 96 px
    python benchmarks/dask_scaleout.py --n 500 --size 64
"""

import argparse
import os
import pickle
import platform
import tempfile
import time
from pathlib import Path

import cloudpickle
import dask
import dask.bag as db
import distributed
import numpy as np
from distributed import Client, LocalCluster
from PIL import Image

import skptm.dask
from skptm import FineTunedClassifier, PretrainedFeatureTransformer


def write_jpegs(folder, n, width=320, height=240):
    """``n`` distinct, photo-like (smooth) JPEGs."""
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (height // 16, width // 16, 3), dtype=np.uint8)
    paths = []
    for i in range(n):
        tile = np.roll(base, (i // base.shape[1], i), axis=(0, 1))
        path = Path(folder) / f"{i:05d}.jpg"
        Image.fromarray(tile).resize((width, height), Image.Resampling.BILINEAR).save(path, quality=90)
        paths.append(str(path))
    return paths


def write_weights(folder, size):
    import keras

    path = Path(folder) / f"mobilenet_v2_{size}.weights.h5"
    keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(size, size, 3)).save_weights(path)
    return str(path)


def timed(function):
    start = time.perf_counter()
    result = function()
    return result, time.perf_counter() - start


def task_bytes(collection, prefix):
    """Pickled size of each task whose key starts with ``prefix``, inputs excluded."""
    graph = dict(collection.__dask_graph__())
    return [len(cloudpickle.dumps(graph[key])) for key in graph if _name(key).startswith(prefix)]


def _name(key):
    return key[0] if isinstance(key, tuple) else str(key)


def on_cluster(extractor, paths, partitions, workers, env, repeat):
    """Best seconds in-process and on a cluster, timed alternately (so that a
    change of load on the machine hits both), with the cluster's features,
    its start-up and warm-up time, and the base networks each worker built."""
    start = time.perf_counter()
    cluster = LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        env=env,
    )
    with cluster, Client(cluster) as client:
        warm_up = db.from_sequence(paths[: 4 * workers * extractor.batch_size], npartitions=4 * workers)
        skptm.dask.transform(extractor, warm_up).compute()
        started = time.perf_counter() - start
        bag = db.from_sequence(paths, npartitions=partitions)
        local_seconds, cluster_seconds = [], []
        for _ in range(repeat):
            local_seconds.append(timed(lambda: extractor.transform(paths))[1])
            features, seconds = timed(lambda: skptm.dask.transform(extractor, bag).compute())
            cluster_seconds.append(seconds)
        builds = [info["base_builds"] for info in client.run(skptm.network_cache_info).values()]
    return min(local_seconds), min(cluster_seconds), features, started, builds


def payloads(extractor, paths, partitions, size, weights):
    """What travels: per task, and once per worker, for skptm.dask and a plain map_partitions."""
    bag = db.from_sequence(paths, npartitions=partitions)
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (16, size, size, 3), dtype=np.uint8)
    classifier = FineTunedClassifier(
        "mobilenet_v2", weights=weights, input_size=size, unfreeze=2, finetune_epochs=1, random_state=0
    ).fit(X, np.arange(16) % 2)
    rows = []
    for name, estimator in (
        ("PretrainedFeatureTransformer", extractor),
        ("FineTunedClassifier, unfreeze=2", classifier),
    ):
        ours = task_bytes(skptm.dask.transform(estimator, bag), "_transform_items")
        plain = task_bytes(bag.map_partitions(estimator.transform), "transform")
        rows.append((name, len(pickle.dumps(estimator)), max(ours), max(plain)))
    partition = len(cloudpickle.dumps(paths[: -(-len(paths) // partitions)]))
    return rows, partition


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="number of JPEGs")
    parser.add_argument("--size", type=int, default=96, help="network input size")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--partitions", type=int, default=32, help="Bag partitions (tasks)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=3, help="timed runs; the best counts")
    args = parser.parse_args()
    load = os.getloadavg()[0]

    with tempfile.TemporaryDirectory() as folder:
        paths = write_jpegs(folder, args.n)
        weights = write_weights(folder, args.size)
        extractor = PretrainedFeatureTransformer(
            "mobilenet_v2", weights=weights, input_size=args.size, batch_size=args.batch_size
        )
        local = extractor.transform(paths)  # builds the network; the reference features
        runs = {
            label: on_cluster(extractor, paths, args.partitions, args.workers, env, args.repeat)
            for label, env in (("dask defaults", {}), ("TF 1 thread/worker", {"TF_NUM_INTRAOP_THREADS": "1"}))
        }
        rows, partition = payloads(extractor, paths, args.partitions, args.size, weights)

    print(
        f"machine: {platform.platform()}, {platform.machine()}, os.cpu_count()={os.cpu_count()}, "
        f"load average at start: {load:.2f}"
    )
    print(f"dask {dask.__version__}, distributed {distributed.__version__}, skptm {skptm.__version__}")
    print(
        f"{args.n} JPEGs of 320x240, mobilenet_v2 at {args.size} px, batch_size={args.batch_size}, "
        f"Bag of {args.partitions} partitions, LocalCluster of {args.workers} processes x 1 thread, "
        f"best of {args.repeat} warm runs, in-process and cluster timed alternately\n"
    )
    print(f"{'':34s}{'images/s':>10s}{'seconds':>9s}{'vs in-process':>15s}{'start+warm-up':>15s}  base builds/worker")
    for label, (local_seconds, cluster_seconds, features, started, builds) in runs.items():
        local_rate, rate = args.n / local_seconds, args.n / cluster_seconds
        print(f"{'in-process transform':34s}{local_rate:10.1f}{local_seconds:9.2f}{1.0:14.2f}x")
        print(
            f"{'cluster, ' + label:34s}{rate:10.1f}{cluster_seconds:9.2f}{rate / local_rate:14.2f}x"
            f"{started:14.1f}s  {builds}"
        )
        np.testing.assert_allclose(features, local, rtol=1e-5, atol=1e-5 * np.abs(local).max())
    print("features equal to in-process: yes (rtol 1e-5)\n")

    print("bytes shipped per task (pickled task, inputs excluded) and once per worker (the estimator):")
    print(f"{'':34s}{'estimator':>10s}{'skptm.dask task':>17s}{'plain map_partitions task':>27s}")
    for name, estimator_bytes, ours, plain in rows:
        print(f"{name:34s}{estimator_bytes:10d}{ours:17d}{plain:27d}")
    print(f"plus each task's input: a partition of paths, {partition} bytes pickled")


if __name__ == "__main__":
    main()
