"""How many cores this process may use: all of them, or a worker's share.

A ``GridSearchCV(n_jobs=2)`` on two cores starts two loky worker processes;
left alone, TensorFlow and OpenVINO in each would start one thread per core
of the machine, four busy threads on two cores. joblib tells its workers
their share through ``OMP_NUM_THREADS`` (``cpu_count() // n_jobs``), Dask
through the worker's thread count; skptm sizes TensorFlow's and OpenVINO's
thread pools and its own decoding threads to that share.
"""

from __future__ import annotations

import os
import sys
import threading


def usable_cores() -> int:
    """Cores this process may run on (CPU affinity and container limits)."""
    import joblib

    return max(1, joblib.cpu_count())


def process_share() -> int | None:
    """This process's share of the cores when it is one worker among several, else ``None``.

    A Dask worker's share is its thread count; any other process's is
    ``OMP_NUM_THREADS`` when set (joblib's loky workers get it from their
    parent, and a user who sets it asks every threaded library for that many
    threads).
    """
    if "distributed" in sys.modules:
        try:
            from distributed import get_worker

            return max(1, min(usable_cores(), int(get_worker().state.nthreads)))
        except (ImportError, ValueError, AttributeError):
            pass  # not inside a Dask worker
    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    try:
        share = int(value)
    except ValueError:
        return None
    return max(1, min(usable_cores(), share)) if share > 0 else None


_configured = threading.Lock()
_done = False


def configure_tensorflow() -> None:
    """Size TensorFlow's thread pools to :func:`process_share`, once, before it starts.

    Does nothing outside a worker, where the user set TensorFlow's threads
    themselves, or once TensorFlow's runtime has started (its pools are then
    fixed).
    """
    global _done
    if _done:
        return
    with _configured:
        if _done:
            return
        _done = True
        share = process_share()
        if share is None:
            return
        import tensorflow as tf

        threading_config = tf.config.threading
        try:
            if threading_config.get_intra_op_parallelism_threads() == 0:
                threading_config.set_intra_op_parallelism_threads(share)
            if threading_config.get_inter_op_parallelism_threads() == 0:
                threading_config.set_inter_op_parallelism_threads(share)
        except RuntimeError:
            pass  # the runtime already started: its pools stay as they are
