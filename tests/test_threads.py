"""skptm._threads: a worker's share of the cores sizes every thread pool in it."""

import os

import numpy as np
from joblib import Parallel, delayed

from skptm._batches import default_n_threads
from skptm._threads import process_share, usable_cores


def test_the_share_follows_omp_num_threads(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert process_share() is None
    assert default_n_threads() == min(8, usable_cores())
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert process_share() == 1 and default_n_threads() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "999")
    assert process_share() == usable_cores()
    monkeypatch.setenv("OMP_NUM_THREADS", "not a number")
    assert process_share() is None


def _worker_threads():
    """What a loky worker's network runs with (called in the worker)."""
    import tensorflow as tf

    from skptm.networks import get_feature_network

    network = get_feature_network("mobilenet_v2", weights=None, input_size=32)
    network.predict(np.zeros((1, 32, 32, 3), np.uint8))
    return (
        os.environ.get("OMP_NUM_THREADS"),
        tf.config.threading.get_intra_op_parallelism_threads(),
        default_n_threads(),
    )


def test_loky_workers_use_their_share_of_the_cores():
    n_jobs = 2
    results = Parallel(n_jobs=n_jobs)(delayed(_worker_threads)() for _ in range(n_jobs))
    # joblib gives each worker cores // n_jobs, or the share this process already has.
    share = int(os.environ.get("OMP_NUM_THREADS", max(1, os.cpu_count() // n_jobs)))
    for omp, intra, decoding in results:
        assert omp == str(share)
        assert intra == share and decoding == share
