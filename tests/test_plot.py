"""skptm.plot: each picture rendered to PNG and looked at."""

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
from PIL import Image

from skptm import FineTunedClassifier, PretrainedFeatureTransformer
from skptm import plot as skplot

from .conftest import LIGHT

RED, BLUE = (230, 20, 20), (20, 20, 230)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    root = tmp_path_factory.mktemp("plot")
    paths = []
    for i, colour in enumerate([RED, BLUE] * 3):
        paths.append(root / f"{i}.png")
        Image.new("RGB", (60, 40), colour).save(paths[-1])
    (root / "broken.jpg").write_bytes(b"not an image")
    return paths, root / "broken.jpg"


def rendered(fig, path):
    fig.savefig(path, dpi=60)
    matplotlib.pyplot.close(fig)
    assert path.stat().st_size > 2000
    pixels = np.asarray(Image.open(path).convert("RGB")).astype(int)
    assert pixels.std() > 5  # not blank
    return pixels


def count(pixels, colour, tolerance=30):
    return int((np.abs(pixels - np.array(colour)).max(axis=-1) < tolerance).sum())


def test_montage_shows_every_image_and_marks_unreadable_ones(photos, tmp_path):
    paths, broken = photos
    fig = skplot.montage([*paths, broken], labels=["red", "blue"] * 3 + ["?"], ncols=4)
    titles = [ax.get_title() for ax in fig.axes]
    assert "? (unreadable)" in titles and titles.count("red") == 3
    pixels = rendered(fig, tmp_path / "montage.png")
    assert count(pixels, RED) > 200 and count(pixels, BLUE) > 200


def test_embedding_places_thumbnails(photos, tmp_path):
    paths, _ = photos
    features = PretrainedFeatureTransformer(LIGHT, weights=None, input_size=32).transform(paths)
    for method in ("pca", "tsne"):
        pixels = rendered(skplot.embedding(features, paths, method=method), tmp_path / f"{method}.png")
        assert count(pixels, RED) > 200 and count(pixels, BLUE) > 200
    coordinates = np.array([[0, 0], [1, 1], [2, 0], [0, 2], [1, 0], [2, 2]], float)
    rendered(skplot.embedding(coordinates, paths), tmp_path / "given.png")
    with pytest.raises(ValueError, match="same order"):
        skplot.embedding(features[:3], paths)


def test_history_draws_both_phases_and_the_boundary(colours, tmp_path):
    X, y = colours
    clf = FineTunedClassifier(
        LIGHT, weights=None, input_size=32, unfreeze=1, finetune_epochs=2, validation_fraction=0.25, random_state=0
    ).fit(X, y)
    fig = skplot.history(clf)
    assert [ax.get_title() for ax in fig.axes] == ["loss", "accuracy"]
    labels = [line.get_label() for line in fig.axes[0].get_lines()]
    assert "phase boundary" in labels and "phase 2: fine-tuning (validation)" in labels
    rendered(fig, tmp_path / "history.png")
