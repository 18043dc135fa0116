"""Phase 1 on features computed once vs running the frozen backbone every epoch.

Both runs use the same estimator, data, head, seed and epochs; the baseline
only differs by an identity "augmentation" layer, which sends phase 1 down
the path that runs the backbone on every batch of every epoch (as training
with augmentation must). Prints both times, their ratio and the validation
accuracy of each.

    python benchmarks/head_phase.py                 # densenet121, 96 px, 240 images
    python benchmarks/head_phase.py --backbone resnet50 --weights imagenet
"""

import argparse
import time

import keras
import numpy as np

from skptm import FineTunedClassifier


def make_images(n, size, seed=0):
    """Two classes that differ slightly in colour balance, under heavy noise
    and a random brightness per image, so that accuracy is not trivially 1."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    X = rng.integers(0, 200, (n, size, size, 3)).astype(np.int16)
    X += rng.integers(0, 40, (n, 1, 1, 1))
    X[y == 0, :, :, 0] += 6
    X[y == 1, :, :, 2] += 6
    return X.clip(0, 255).astype(np.uint8), y


def run(X_train, y_train, X_val, y_val, augment, args):
    weights = None if args.weights == "none" else args.weights
    clf = FineTunedClassifier(
        args.backbone, weights=weights, input_size=args.size, head_epochs=args.epochs,
        unfreeze=0, augment=augment, batch_size=32, random_state=0,
    )
    clf.fit(X_train[:8], y_train[:8])  # build and cache the network outside the timing
    start = time.perf_counter()
    clf.fit(X_train, y_train)
    elapsed = time.perf_counter() - start
    return elapsed, clf.score(X_val, y_val), clf.n_epochs_["head"]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--backbone", default="densenet121")
    parser.add_argument("--weights", default="none")
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--images", type=int, default=240)
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()

    X, y = make_images(args.images, args.size)
    X_val, y_val = make_images(args.images // 3, args.size, seed=1)
    once, once_acc, once_epochs = run(X, y, X_val, y_val, None, args)
    every, every_acc, every_epochs = run(X, y, X_val, y_val, keras.layers.Identity(), args)
    print(f"{args.backbone} ({args.weights} weights), {args.images} images at {args.size} px, "
          f"{args.epochs} head epochs")
    print(f"  features computed once : {once:7.1f} s  ({once_epochs} epochs)  val accuracy {once_acc:.3f}")
    print(f"  backbone every epoch   : {every:7.1f} s  ({every_epochs} epochs)  val accuracy {every_acc:.3f}")
    print(f"  speed-up               : {every / once:7.1f}x")


if __name__ == "__main__":
    main()
