"""Size of a fitted FineTunedClassifier's pickle next to its network's weights.

python benchmarks/pickle_size.py                # resnet50, unfreeze=10
"""

import argparse
import pickle

import numpy as np

from skptm import FineTunedClassifier


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--unfreeze", type=int, default=10)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (16, 64, 64, 3), dtype=np.uint8)
    y = np.arange(16) % 2
    clf = FineTunedClassifier(
        args.backbone,
        weights=None,
        input_size=64,
        head_epochs=1,
        unfreeze=args.unfreeze,
        finetune_epochs=1,
        random_state=0,
    ).fit(X, y)
    blob = pickle.dumps(clf)
    full = sum(w.nbytes for w in clf.model_.get_weights())
    restored = pickle.loads(blob)
    assert np.array_equal(restored.predict_proba(X), clf.predict_proba(X))
    print(f"{args.backbone}, unfreeze={args.unfreeze} ({len(clf.unfrozen_layers_)} layers trained)")
    print(f"  pickle            : {len(blob) / 1e6:8.2f} MB")
    print(f"  full weights      : {full / 1e6:8.2f} MB")
    print(f"  ratio             : {len(blob) / full:8.3f}")


if __name__ == "__main__":
    main()
