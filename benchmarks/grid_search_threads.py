"""Oversubscription check: ``GridSearchCV(n_jobs=2)`` against ``n_jobs=1``, side by side in one run.

On the sixteen sample photos (``skptm.datasets.load_sample_photos``, four
themes; the list is repeated ``--copies`` times), two searches with 3-fold
cross-validation, each timed with ``n_jobs=1`` and ``n_jobs=2``, alternating,
``--repeats`` runs each:

* (a) ``make_pipeline(PretrainedFeatureTransformer("mobilenet_v2",
  weights=None, input_size=96), LogisticRegression(max_iter=500))``,
  grid ``{"logisticregression__C": [0.1, 1.0]}``;
* (b) ``FineTunedClassifier("mobilenet_v2", weights=None, input_size=64,
  unfreeze=2, finetune_epochs=2, random_state=0)``, grid
  ``{"unfreeze": [0, 2]}``.

Two joblib workers on a machine whose cores TensorFlow and OpenVINO would
each fill on their own are oversubscribed unless skptm gives each worker
its share of the cores; then ``n_jobs=2`` must not be slower than
``n_jobs=1``: ratio n_jobs=2 / n_jobs=1 at most 1.0 (PASS; up to 1.05 is
within noise). Before the timed runs, one untimed run of each warms this
process and joblib's workers (networks built, TensorFlow imported; the
workers stay up between runs), so the comparison is of the searches, not of
start-up (``--no-warm-up`` to include it).

    python benchmarks/grid_search_threads.py                # 2 runs each
    python benchmarks/grid_search_threads.py --repeats 1 --small --searches a
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import make_pipeline

from skptm import FineTunedClassifier, PretrainedFeatureTransformer
from skptm.datasets import load_sample_photos

LIMIT, NOISE = 1.0, 1.05


def searches(small):
    return {
        "a": (
            "PretrainedFeatureTransformer(mobilenet_v2, 96 px) -> LogisticRegression",
            lambda: make_pipeline(
                PretrainedFeatureTransformer("mobilenet_v2", weights=None, input_size=96),
                LogisticRegression(max_iter=500),
            ),
            {"logisticregression__C": [1.0] if small else [0.1, 1.0]},
        ),
        "b": (
            "FineTunedClassifier(mobilenet_v2, 64 px, finetune_epochs=2)",
            lambda: FineTunedClassifier(
                "mobilenet_v2", weights=None, input_size=64, unfreeze=2, finetune_epochs=2, random_state=0
            ),
            {"unfreeze": [2] if small else [0, 2]},
        ),
    }


def timed_search(make, grid, n_jobs, X, y):
    search = GridSearchCV(make(), grid, cv=StratifiedKFold(3), n_jobs=n_jobs)
    start = time.perf_counter()
    search.fit(X, y)
    return time.perf_counter() - start


def spread(values):
    return f"{statistics.median(values):.1f} s ({min(values):.1f}–{max(values):.1f})"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--copies", type=int, default=1, help="repeat the 16 photos this many times")
    parser.add_argument("--searches", nargs="+", choices=["a", "b"], default=["a", "b"])
    parser.add_argument("--small", action="store_true", help="one grid point per search (a quicker smoke run)")
    parser.add_argument("--no-warm-up", action="store_true", help="time the first runs too (start-up included)")
    args = parser.parse_args()

    import keras
    import tensorflow as tf

    from skptm.engines import openvino
    from skptm.engines.machine import this_machine

    photos = load_sample_photos()
    X = list(photos.paths) * args.copies
    y = np.tile(np.asarray(photos.target), args.copies)
    print(f"machine: {this_machine().describe()}; os.cpu_count() = {os.cpu_count()}")
    print(
        f"conditions: {len(X)} sample photos (the 16 × {args.copies}, 4 themes), 3-fold stratified CV, "
        f"random weights, GridSearchCV n_jobs=1 and n_jobs=2 alternating, {args.repeats} timed runs each"
        f"{'' if args.no_warm_up else ' after one untimed warm-up run each'}; "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}; TensorFlow {tf.__version__}, "
        f"Keras {keras.__version__}, OpenVINO {openvino.version() or 'not installed'}"
    )
    all_pass = True
    for key in args.searches:
        title, make, grid = searches(args.small)[key]
        candidates = int(np.prod([len(values) for values in grid.values()]))
        if not args.no_warm_up:
            for n_jobs in (1, 2):
                timed_search(make, grid, n_jobs, X, y)
        times = {1: [], 2: []}
        for repeat in range(args.repeats):
            for n_jobs in (1, 2) if repeat % 2 == 0 else (2, 1):
                times[n_jobs].append(timed_search(make, grid, n_jobs, X, y))
        ratio = statistics.median(times[2]) / statistics.median(times[1])
        ok = ratio <= LIMIT
        all_pass &= ok
        verdict = "PASS" if ok else ("FAIL (within noise)" if ratio <= NOISE else "FAIL")
        print(
            f"({key}) {title}, grid {grid} ({candidates} candidates x 3 folds + refit): n_jobs=1 {spread(times[1])}, "
            f"n_jobs=2 {spread(times[2])}; n_jobs=2 / n_jobs=1 {ratio:.2f}x (target <= {LIMIT}; <= {NOISE} is "
            f"within noise) -> {verdict}",
            flush=True,
        )
    print(f"oversubscription target: {'PASS' if all_pass else 'FAIL'}")


if __name__ == "__main__":
    main()
