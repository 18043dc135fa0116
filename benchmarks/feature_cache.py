"""The feature cache: a grid search and a repeated transform, with and without it.

1. ``GridSearchCV`` over ``PretrainedFeatureTransformer -> LogisticRegression``:
   3 backbones x 2 values of ``C``, 5-fold cross-validation, on JPEG files.
   Without a cache every fit and every score runs the network over its
   images (60 passes over the data, plus the refit); with ``cache=`` each
   image's features are computed once per backbone. Both searches must give
   identical ``cv_results_`` scores.
2. ``transform`` of the same files twice into an empty cache: the first
   computes and stores, the second only hashes the files and reads entries.

Side by side in one process; prints times and ratios.

    python benchmarks/feature_cache.py                # 200 JPEGs of 1920x1280, 96 px
    python benchmarks/feature_cache.py --size 224 --images 100
"""

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
from _photos import write_labelled_jpegs
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline

from skptm import PretrainedFeatureTransformer

BACKBONES = ["mobilenet_v2", "efficientnet_b0", "resnet50"]


def grid_search(paths, y, size, cache):
    pipeline = make_pipeline(
        PretrainedFeatureTransformer(BACKBONES[0], weights=None, input_size=size, cache=cache),
        LogisticRegression(max_iter=1000),
    )
    grid = {"pretrainedfeaturetransformer__backbone": BACKBONES, "logisticregression__C": [0.1, 1.0]}
    start = time.perf_counter()
    search = GridSearchCV(pipeline, grid, cv=5).fit(paths, y)
    return time.perf_counter() - start, search


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--size", type=int, default=96)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        paths, y = write_labelled_jpegs(folder, args.images, detail=(180, 120))
        for backbone in BACKBONES:  # build every network outside the timings
            PretrainedFeatureTransformer(backbone, weights=None, input_size=args.size).transform(paths[:2])

        plain_time, plain = grid_search(paths, y, args.size, None)
        cached_time, cached = grid_search(paths, y, args.size, Path(folder) / "grid-cache")
        same = all(
            np.array_equal(plain.cv_results_[key], cached.cv_results_[key])
            for key in plain.cv_results_
            if "test_score" in key
        )

        extractor = PretrainedFeatureTransformer(
            "resnet50", weights=None, input_size=args.size, cache=Path(folder) / "repeat-cache"
        )
        start = time.perf_counter()
        first = extractor.transform(paths)
        first_time = time.perf_counter() - start
        start = time.perf_counter()
        second = extractor.transform(paths)
        second_time = time.perf_counter() - start

    print(
        f"{args.images} JPEGs of 1920x1280 at {args.size} px, weights=None; {platform.machine()}, "
        f"{os.cpu_count()} cores"
    )
    print(f"GridSearchCV, {len(BACKBONES)} backbones x 2 C x 5 folds:")
    print(f"  without cache : {plain_time:7.1f} s")
    print(f"  with cache    : {cached_time:7.1f} s")
    print(f"  speed-up      : {plain_time / cached_time:7.2f}x   (identical cv_results_ scores: {same})")
    print("transform of the same files twice (resnet50):")
    print(f"  first (computes, stores) : {first_time:7.2f} s")
    print(f"  second (reads the cache) : {second_time:7.2f} s")
    print(f"  speed-up                 : {first_time / second_time:7.1f}x   (equal: {np.array_equal(first, second)})")


if __name__ == "__main__":
    main()
