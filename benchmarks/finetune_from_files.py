"""Fine-tuning from JPEG files: decoded once per fit vs decoded every epoch.

Same estimator, files, seed and epochs, side by side in one process; the
baseline only sets the in-memory budget to 0, which streams every file from
disk in phase 1 and again in every epoch of phase 2 (what fit did before).
Prints both times, their ratio, and checks that the predictions are equal.

    python benchmarks/finetune_from_files.py                  # mobilenet_v2, 96 px, 200 JPEGs of 1600x1200
    python benchmarks/finetune_from_files.py --backbone resnet50 --size 224
"""

import argparse
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

import skptm._batches as batches
from skptm import FineTunedClassifier


def write_jpegs(folder, n, width, height, seed=0):
    rng = np.random.default_rng(seed)
    paths, labels = [], []
    for i in range(n):
        image = rng.integers(0, 200, (height // 8, width // 8, 3), dtype=np.uint8)
        image[..., i % 2 * 2] += 50
        path = Path(folder) / f"{i}.jpg"
        Image.fromarray(image).resize((width, height), Image.BILINEAR).save(path, quality=90)
        paths.append(path)
        labels.append(i % 2)
    return paths, np.array(labels)


def fit_time(paths, y, args):
    clf = FineTunedClassifier(
        args.backbone,
        weights=None,
        input_size=args.size,
        unfreeze=8,
        finetune_epochs=args.epochs,
        random_state=0,
    )
    start = time.perf_counter()
    clf.fit(paths, y)
    return time.perf_counter() - start, clf


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="mobilenet_v2")
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        paths, y = write_jpegs(folder, args.images, 1600, 1200)
        fit_time(paths[:16], y[:16], args)  # build and cache the network outside the timing
        once, cached = fit_time(paths, y, args)
        budget, batches.DECODED_IMAGES_BUDGET = batches.DECODED_IMAGES_BUDGET, 0
        try:
            every, streamed = fit_time(paths, y, args)
        finally:
            batches.DECODED_IMAGES_BUDGET = budget
        same = np.array_equal(cached.predict_proba(paths[:32]), streamed.predict_proba(paths[:32]))
    print(
        f"{args.backbone}, {args.size} px, {args.images} JPEGs of 1600x1200, {args.epochs} epochs of "
        f"phase 2; {platform.machine()}"
    )
    print(f"  decoded once per fit   : {once:7.1f} s")
    print(f"  decoded every epoch    : {every:7.1f} s")
    print(f"  speed-up               : {every / once:7.2f}x   (equal predictions: {same})")


if __name__ == "__main__":
    main()
