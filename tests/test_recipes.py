"""The user guide's recipes, run as written there: near-duplicate search,
an image column beside tabular columns, several labels per image, and the
worst errors of a classifier. Real JPEG files, real scikit-learn estimators."""

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_predict
from sklearn.multiclass import OneVsRestClassifier
from sklearn.neighbors import NearestNeighbors
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skptm import PretrainedFeatureTransformer
from skptm.datasets import load_sample_photos

from .conftest import LIGHT, SIZE


def extractor():
    return PretrainedFeatureTransformer(LIGHT, weights=None, input_size=SIZE)


@pytest.fixture(scope="module")
def photos(tmp_path_factory, image_set):
    """The image set as JPEG files."""
    X, y = image_set
    root = tmp_path_factory.mktemp("recipes")
    paths = []
    for i, image in enumerate(X):
        paths.append(str(root / f"{i:02d}.jpg"))
        Image.fromarray(image).save(paths[-1], quality=95)
    return paths, y


def test_near_duplicates_are_found_among_the_sample_photos(tmp_path):
    """Re-saved, slightly cropped and shrunk copies of four of the sixteen
    sample photos find their originals (even on random weights)."""
    catalogue = load_sample_photos().paths
    queries = []
    for i in (0, 5, 10, 15):
        with Image.open(catalogue[i]) as photo:
            width, height = photo.size
            copy = photo.convert("RGB").crop((width // 20, height // 20, width, height))
            copy = copy.resize((copy.width * 3 // 4, copy.height * 3 // 4))
            queries.append(str(tmp_path / f"copy_{i}.jpg"))
            copy.save(queries[-1], quality=80)
    features = make_pipeline(extractor(), StandardScaler()).fit(catalogue)
    index = NearestNeighbors(n_neighbors=1, metric="cosine").fit(features.transform(catalogue))
    distances, neighbours = index.kneighbors(features.transform(queries))
    assert neighbours[:, 0].tolist() == [0, 5, 10, 15]


def test_an_image_column_beside_tabular_columns(photos):
    paths, y = photos
    table = pd.DataFrame({"photo": paths, "price": np.linspace(1, 50, len(paths)), "stock": np.arange(len(paths))})
    model = make_pipeline(
        ColumnTransformer(
            [
                ("photo", make_pipeline(extractor(), StandardScaler()), "photo"),
                ("numbers", StandardScaler(), ["price", "stock"]),
            ]
        ),
        LogisticRegression(max_iter=1000),
    )
    model.fit(table, y)
    assert model.score(table, y) >= 0.9
    assert model[0].transform(table).shape == (len(paths), 1280 + 2)


def test_several_labels_per_image_on_the_transformers_features(image_set):
    X, y = image_set
    labels = np.column_stack([y == 0, y == 1, np.arange(len(y)) % 3 == 0]).astype(int)  # 3 labels, any number each
    model = make_pipeline(extractor(), StandardScaler(), OneVsRestClassifier(LogisticRegression(max_iter=1000)))
    model.fit(X, labels)
    assert model.predict(X).shape == labels.shape
    assert (model.predict(X)[:, :2] == labels[:, :2]).mean() >= 0.9  # the colours; the third is noise


def test_the_worst_errors_are_the_least_probable_true_labels(photos):
    import matplotlib

    import skptm  # as the user guide's recipe: skptm.plot loads on first use

    matplotlib.use("agg")

    paths, colour = photos
    y = np.where(colour == 0, "red", "blue")
    y[:3] = np.where(y[:3] == "red", "blue", "red")  # three mislabelled images
    pipe = make_pipeline(extractor(), StandardScaler(), LogisticRegression(max_iter=1000))
    proba = cross_val_predict(pipe, paths, y, cv=3, method="predict_proba")
    codes = np.searchsorted(np.unique(y), y)
    worst = np.argsort(proba[np.arange(len(y)), codes])[:3]
    assert sorted(worst.tolist()) == [0, 1, 2]
    figure = skptm.plot.montage([paths[i] for i in worst], [f"{y[i]}: {proba[i, codes[i]]:.2f}" for i in worst])
    assert len(figure.axes) >= 3


def test_the_submodules_with_optional_dependencies_load_on_first_use():
    """``import skptm`` alone, then ``skptm.plot`` and ``skptm.dask``, as the
    recipes write them (a fresh process: here another test imported them)."""
    import subprocess
    import sys

    script = (
        "import sys, skptm; assert 'skptm.plot' not in sys.modules; print(skptm.plot.montage, skptm.dask.transform)"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "function montage" in out.stdout, out.stderr
