"""Fine-tune a pretrained network on photo patches, and search its unfreeze depth.

Patches of scikit-learn's two sample photographs (a temple and a flower) are
written to disk as JPEGs; FineTunedClassifier trains a head on the frozen
network, then fine-tunes its top layers, inside a GridSearchCV.

    python examples/finetune_photos.py                         # EfficientNetB0, ImageNet weights
    python examples/finetune_photos.py --weights none --small  # offline, about a minute
"""

import argparse
import tempfile
import time
from pathlib import Path

from sklearn.model_selection import GridSearchCV, train_test_split

from skptm import FineTunedClassifier

from classify_photos import write_patches


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="efficientnet_b0")
    parser.add_argument("--weights", default="imagenet", help="'imagenet', 'none' or a weights file")
    parser.add_argument("--small", action="store_true", help="few images, a light network at 64 px")
    args = parser.parse_args()
    weights = None if args.weights.lower() == "none" else args.weights
    backbone, input_size, per_photo = (
        ("densenet121", 64, 24) if args.small else (args.backbone, None, 100)
    )

    with tempfile.TemporaryDirectory() as folder:
        paths, labels = write_patches(Path(folder), patch=160, per_photo=per_photo)
        train_paths, test_paths, y_train, y_test = train_test_split(
            paths, labels, test_size=0.3, stratify=labels, random_state=0
        )
        search = GridSearchCV(
            FineTunedClassifier(
                backbone, weights=weights, input_size=input_size,
                finetune_epochs=2, augment="light", random_state=0,
            ),
            {"unfreeze": [0, 10]},
            cv=2,
        )
        start = time.perf_counter()
        search.fit(train_paths, y_train)
        accuracy = search.score(test_paths, y_test)
        elapsed = time.perf_counter() - start
    best = search.best_estimator_
    print(f"{backbone}: best unfreeze={search.best_params_['unfreeze']} "
          f"(trained layers: {best.unfrozen_layers_[:3]}...), epochs {best.n_epochs_}")
    print(f"test accuracy {accuracy:.3f} on {len(test_paths)} patches, {elapsed:.1f}s")


if __name__ == "__main__":
    main()
