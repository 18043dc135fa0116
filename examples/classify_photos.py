"""Classify photo patches with pretrained features and a linear model.

The data are patches cut from the two photographs that scikit-learn ships
(a temple in China and a flower), written to disk as JPEG files, so the
script reads real image files exactly as it would read yours.

    python examples/classify_photos.py                    # ResNet50, ImageNet weights
    python examples/classify_photos.py --weights none --small   # offline, seconds

With ``--weights none`` the network is randomly initialised: the pipeline
runs end to end, but the features are far weaker than ImageNet's.
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_sample_images
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skptm import PretrainedFeatureTransformer


def write_patches(folder: Path, patch: int, per_photo: int, seed: int = 0):
    """Cut random patches from each sample photo and save them as JPEGs."""
    rng = np.random.default_rng(seed)
    paths, labels = [], []
    for label, photo in enumerate(load_sample_images().images):
        height, width, _ = photo.shape
        for i in range(per_photo):
            top = rng.integers(0, height - patch)
            left = rng.integers(0, width - patch)
            path = folder / f"{label}_{i}.jpg"
            Image.fromarray(photo[top : top + patch, left : left + patch]).save(path, quality=90)
            paths.append(path)
            labels.append(("china", "flower")[label])
    return paths, np.array(labels)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--weights", default="imagenet", help="'imagenet', 'none' or a weights file")
    parser.add_argument("--small", action="store_true", help="few images, a light network at 96 px")
    args = parser.parse_args()
    weights = None if args.weights.lower() == "none" else args.weights
    backbone, input_size, per_photo = (
        ("mobilenet_v2", 96, 40) if args.small else (args.backbone, None, 100)
    )

    with tempfile.TemporaryDirectory() as folder:
        paths, labels = write_patches(Path(folder), patch=160, per_photo=per_photo)
        train_paths, test_paths, y_train, y_test = train_test_split(
            paths, labels, test_size=0.3, stratify=labels, random_state=0
        )
        pipe = make_pipeline(
            PretrainedFeatureTransformer(backbone, weights=weights, input_size=input_size, verbose=1),
            StandardScaler(),
            LogisticRegression(max_iter=1000),
        )
        start = time.perf_counter()
        pipe.fit(train_paths, y_train)
        accuracy = pipe.score(test_paths, y_test)
        elapsed = time.perf_counter() - start
    print(
        f"{backbone} ({'random' if weights is None else weights} weights): "
        f"test accuracy {accuracy:.3f} on {len(test_paths)} patches, {elapsed:.1f}s"
    )


if __name__ == "__main__":
    main()
