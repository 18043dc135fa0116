"""
=====================================================
Featurising images on a Dask cluster
=====================================================

:func:`skptm.dask.transform` computes an estimator's features over a Dask
collection of images (an Array, a Bag, or a DataFrame column of paths),
block by block on the cluster's workers. Here a
:class:`distributed.LocalCluster` of two worker processes featurises the
sample photos, and the result is compared with the same transformer's
``transform`` in this process.

Dask is optional: ``pip install "skptm[dask]"``.
"""

# %%
# Dask, if it is installed
# ------------------------
# ImageNet weights come from Keras's cache, downloaded there once. Where they
# cannot be had (offline, as when these pages are built), the example runs
# on random weights at 64 px, and says so in its output
# and titles: it then shows the pipeline working, not what a pretrained
# network sees in the photos.
#
# Without Dask the example only says how to install it (no ``sys.exit``:
# that would end a documentation build that runs the example).
import time

import numpy as np

try:
    import dask.bag as db
    from distributed import Client, LocalCluster

    import skptm.dask
except ImportError:
    dask_installed = False
    print('This example needs Dask and distributed: pip install "skptm[dask]"')
else:
    dask_installed = True

# %%
# The images and the transformer
# ------------------------------
# The photos' paths will go into a Dask Bag of two partitions, each one
# task. On a real cluster the files must be readable by every worker (a
# shared disk or object store), and a Dask DataFrame column of paths, for
# instance ``dd.read_csv("images.csv")["path"]``, works the same way. A
# light network, MobileNetV2, keeps each worker's start-up short.
import skptm
from skptm import PretrainedFeatureTransformer
from skptm.datasets import load_sample_photos

try:
    skptm.fetch_weights(["mobilenet_v2"], verbose=0)
    WEIGHTS, INPUT_SIZE, OFFLINE = "imagenet", None, ""
except skptm.WeightsUnavailableError:
    WEIGHTS, INPUT_SIZE = None, 64
    OFFLINE = "\n(random weights: ImageNet weights could not be had here)"
print(f"weights={WEIGHTS}, input_size={INPUT_SIZE}{OFFLINE}")

photos = load_sample_photos()
extractor = PretrainedFeatureTransformer("mobilenet_v2", weights=WEIGHTS, input_size=INPUT_SIZE)

# %%
# On the cluster
# --------------
# The transformer travels to each worker once, as its parameters (a few
# hundred bytes, no weights); each worker process builds the network once
# and keeps it for all its tasks. Worker start-up, and TensorFlow's import
# in each worker, take seconds: a cluster pays off on many images, not
# sixteen. Both context managers close the cluster and its processes, even
# after an error.
#
# Worker processes start by importing this script again (Python's ``spawn``
# start method), so when it runs as a script the work sits under the usual
# ``if __name__ == "__main__":`` guard; a notebook needs no guard.
if __name__ == "__main__" and dask_installed:
    paths = db.from_sequence(photos.paths, npartitions=2)
    start = time.perf_counter()
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        started = time.perf_counter()
        on_cluster = skptm.dask.transform(extractor, paths).compute()
        computed = time.perf_counter()
    print(
        f"Cluster started in {started - start:.1f} s; features of {len(on_cluster)} photos "
        f"computed on it in {computed - started:.1f} s"
    )

# %%
# The same features in this process
# ---------------------------------
# The network is the same in every process (ImageNet weights from Keras's
# cache, or the same seeded random initialisation with ``weights=None``),
# and a row's features do not depend on the batch it was computed in.
if __name__ == "__main__" and dask_installed:
    start = time.perf_counter()
    in_process = extractor.transform(photos.paths)
    print(f"In this process: {time.perf_counter() - start:.1f} s (the network was already built here)")
    print(
        f"Same shape: {on_cluster.shape == in_process.shape}; "
        f"identical: {np.array_equal(on_cluster, in_process)}; "
        f"largest difference: {np.abs(on_cluster - in_process).max():.2g}"
    )

# %%
# What you see, and what to try
# -----------------------------
# The features agree (on the CPUs we tested, bit for bit), and sixteen
# photos are faster in this process than on a fresh cluster: the cluster's
# cost is fixed, its gain grows with the collection. With ImageNet weights,
# every worker reads the weights from its own Keras cache: on a cluster of
# several machines, fill each one's cache first with ``skptm fetch-weights``.
#
# Connect to a running cluster with ``Client("tcp://scheduler:8786")``
# instead of ``LocalCluster``; keep the lazy result of
# :func:`skptm.dask.transform` and write it straight to disk
# (``.to_zarr(...)``, or ``.to_parquet(...)`` for a DataFrame column) rather
# than ``compute()`` it into memory; and see ``docs/dask.md`` for grid
# searches on a cluster with joblib's Dask backend.
