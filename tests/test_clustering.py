"""skptm.cluster_images on the sample photos, called as a notebook would."""

import numpy as np
import pytest
from PIL import Image

import skptm
from skptm.datasets import load_sample_photos

from .conftest import LIGHT

PARAMS = {"backbone": LIGHT, "weights": None, "input_size": 32}


@pytest.fixture(scope="module")
def photos():
    return [str(path) for path in load_sample_photos().paths]


def test_cluster_images_without_files(photos):
    result = skptm.cluster_images(photos, 4, **PARAMS)
    table = result.table
    assert list(table["path"]) == photos  # one row per image, in input order
    assert table["cluster"].shape == (len(photos),) and set(table["cluster"]) == {0, 1, 2, 3}
    assert np.all(table["distance"] >= 0)
    assert result.features.shape == (len(photos), 1280)
    assert result.files == [] and result.map_method is None and result.unreadable == []

    # Members: every image once, cluster 0 the largest, nearest to the centre first.
    assert sorted(np.concatenate(result.members)) == list(range(len(photos)))
    assert [len(m) for m in result.members] == sorted((len(m) for m in result.members), reverse=True)
    for cluster, members in enumerate(result.members):
        assert np.all(table["cluster"][members] == cluster)
        assert np.all(np.diff(table["distance"][members]) >= 0)


def test_cluster_images_writes_sheets_and_map(photos, tmp_path):
    pytest.importorskip("matplotlib")
    bad = tmp_path / "broken.jpg"
    bad.write_text("not a JPEG")
    paths = [*photos[:7], str(bad)]
    with pytest.warns(skptm.ImageReadWarning):
        result = skptm.cluster_images(paths, 3, output_dir=tmp_path / "out", max_per_sheet=2, **PARAMS)

    assert result.unreadable == [str(bad)]
    assert result.table["cluster"][-1] == -1 and np.isnan(result.table["distance"][-1])
    assert set(result.table["cluster"][:-1]) == {0, 1, 2}
    names = ["clusters.csv", "cluster_00.png", "cluster_01.png", "cluster_02.png", "overview.png"]
    assert [path.name for path in result.files] == names
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == sorted(names)
    for path in result.files[1:]:
        with Image.open(path) as picture:
            assert picture.width >= 200 and picture.height >= 150
    assert result.map_method.startswith("t-SNE, perplexity 2")  # 7 images: perplexity 2
    rows = (tmp_path / "out" / "clusters.csv").read_text().splitlines()
    assert rows[0] == "path,cluster,distance" and len(rows) == 1 + len(paths)
    assert rows[-1] == f"{bad},,"

    # Again into the same folder with fewer clusters: the earlier third sheet goes.
    again = skptm.cluster_images(photos[:7], 2, output_dir=tmp_path / "out", max_per_sheet=2, **PARAMS)
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == sorted(p.name for p in again.files)


def test_tiny_features_are_still_made_unit_length(photos):
    """A random network's features can be 1e-10 long, where scikit-learn's
    normalize leaves float32 rows as they are (every distance came out 0):
    clustering works in float64."""
    import keras

    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(8, 3, activation="relu", kernel_initializer=keras.initializers.HeNormal(seed=0))(inputs)
    tiny = keras.Model(inputs, keras.layers.Rescaling(1e-12)(x), name="tiny_features")
    result = skptm.cluster_images(photos, 3, backbone=tiny, input_size=32)
    assert np.linalg.norm(result.features, axis=1).max() < 1e-6
    assert result.table["distance"].max() > 1e-3


def test_cluster_images_user_errors(photos, tmp_path):
    with pytest.raises(ValueError, match="at least 2"):
        skptm.cluster_images(photos, 1, **PARAMS)
    with pytest.raises(ValueError, match=r"more clusters than there are images \(3\)"):
        skptm.cluster_images(photos[:3], 4, **PARAMS)
    (tmp_path / "file").write_text("")
    with pytest.raises(NotADirectoryError, match="must be a folder"):
        skptm.cluster_images(photos, 2, output_dir=tmp_path / "file", **PARAMS)
    for bad in ({"n_clusters": 2.5}, {"n_clusters": True}, {"max_per_sheet": 0}):
        with pytest.raises(ValueError, match="must be an int"):
            skptm.cluster_images(photos, **{"n_clusters": 2, **bad}, **PARAMS)
    with pytest.raises(TypeError, match="single path"):
        skptm.cluster_images(str(tmp_path), 2, **PARAMS)
    with pytest.raises(TypeError, match="item 1 is a ndarray"):
        skptm.cluster_images([photos[0], np.zeros((8, 8, 3), np.uint8)], 2, **PARAMS)


def test_copies_of_one_image_are_one_cluster_not_a_crash(photos, tmp_path):
    """Four files of two distinct images cannot make three clusters: said
    before anything is written, not by a failed contact sheet."""
    with pytest.raises(ValueError, match="found only 2 distinct groups.*at most 2 clusters"):
        skptm.cluster_images([photos[0]] * 3 + [photos[1]], 3, output_dir=tmp_path / "out", **PARAMS)
    assert not (tmp_path / "out").exists()
    result = skptm.cluster_images([photos[0]] * 3 + [photos[1]], 2, **PARAMS)
    assert sorted(len(members) for members in result.members) == [1, 3]
