"""skptm._features: padded prediction, the extraction loop, bad items and the feature cache."""

import dataclasses
import warnings

import keras
import numpy as np
import pytest
from PIL import Image

import skptm
from skptm._batches import TableSource
from skptm._features import BATCHING_RTOL, extract_features, make_source, padded_rows, predict_padded
from skptm._images import ImageReader
from skptm.networks import get_feature_network

from .conftest import LIGHT, assert_same_up_to_batching

SIDE = 16


def small_backbone():
    """A few convolutions: 16 features, cheap at 16 px."""
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv_a")(x)
    x = keras.layers.Conv2D(16, 3, strides=2, activation="relu", name="conv_b")(x)
    return keras.Model(inputs, x, name="small_backbone")


def tabular_backbone():
    inputs = keras.Input((5,))
    return keras.Model(inputs, keras.layers.Dense(3, name="dense")(inputs), name="tabular_backbone")


@pytest.fixture(scope="module")
def network():
    return get_feature_network(small_backbone, input_size=SIDE)


class Recording:
    """A runner that runs ``network`` itself and keeps a copy of every batch it is given."""

    def __init__(self, network):
        self.network = network
        self.batches = []

    def __call__(self, batch):
        self.batches.append(np.array(batch))
        return self.network.predict(batch)

    def images_computed(self):
        """Rows that held an image, not padding (every test image has non-zero pixels)."""
        return sum(int(batch.reshape(len(batch), -1).any(axis=1).sum()) for batch in self.batches)


def recording(network):
    runner = Recording(network)
    return dataclasses.replace(network, runner=runner), runner


def images(n, seed=0):
    return np.random.default_rng(seed).integers(1, 256, (n, SIDE, SIDE, 3), dtype=np.uint8)


def one_by_one(network, X):
    return np.concatenate([network.predict(X[i : i + 1]) for i in range(len(X))])


def write_pngs(folder, X):
    paths = []
    for i, image in enumerate(X):
        paths.append(folder / f"{i}.png")
        Image.fromarray(image).save(paths[-1])
    return paths


def image_warnings(record):
    return [str(w.message) for w in record if issubclass(w.category, skptm.ImageReadWarning)]


# -- padded_rows and predict_padded ----------------------------------------------------------------


@pytest.mark.parametrize("batch_size", [1, 4, 8, 12, 32, 64])
def test_padded_rows_is_the_next_power_of_two_from_8_capped_at_the_batch_size(batch_size):
    for n in range(1, batch_size + 1):
        expected = min(batch_size, max(8, 1 << (n - 1).bit_length()))
        assert padded_rows(n, batch_size) == expected, n


def test_a_partial_batch_is_padded_with_zeros_and_only_its_own_rows_come_back(network):
    counted, runner = recording(network)
    X = images(5)
    features = predict_padded(counted, X, batch_size=32)
    (seen,) = runner.batches
    assert seen.shape == (8, SIDE, SIDE, 3) and seen.dtype == np.uint8
    np.testing.assert_array_equal(seen[:5], X)
    np.testing.assert_array_equal(seen[5:], 0)
    assert features.shape == (5, network.n_features)
    np.testing.assert_array_equal(features, network.predict(seen)[:5])
    full = images(8, seed=1)
    predict_padded(counted, full, batch_size=8)
    np.testing.assert_array_equal(runner.batches[-1], full)  # a full batch is not padded


def test_padded_rows_equal_the_rows_predicted_alone_and_the_same_call_the_same_bits():
    network = get_feature_network(LIGHT, weights=None, input_size=32)
    X = np.random.default_rng(2).integers(0, 256, (11, 32, 32, 3), dtype=np.uint8)
    alone = one_by_one(network, X)
    for n, batch_size in ((3, 32), (11, 16), (11, 12)):
        first = predict_padded(network, X[:n], batch_size)
        assert first.shape == (n, network.n_features) and first.dtype == np.float32
        assert_same_up_to_batching(first, alone[:n])
        np.testing.assert_array_equal(predict_padded(network, X[:n], batch_size), first)


# -- extract_features ------------------------------------------------------------------------------


def test_one_row_per_item_in_input_order(network):
    X = images(10)
    expected = one_by_one(network, X)
    features = extract_features(network, make_source(network, X), batch_size=4)
    assert features.dtype == np.float32
    assert_same_up_to_batching(features, expected)
    order = np.random.default_rng(0).permutation(10)
    assert_same_up_to_batching(extract_features(network, make_source(network, X[order]), batch_size=4), expected[order])


def test_files_give_the_features_of_their_pixels(network, tmp_path):
    X = images(6, seed=3)
    from_files = extract_features(network, make_source(network, write_pngs(tmp_path, X)), batch_size=4, n_jobs=2)
    assert_same_up_to_batching(from_files, one_by_one(network, X))


def test_make_source_reads_as_asked(network):
    source = make_source(network, [images(1)[0]], resize="pad", interpolation="nearest")
    assert source.reader == ImageReader((SIDE, SIDE), "pad", "nearest")
    wide = np.full((SIDE, 4 * SIDE, 3), 200, np.uint8)
    padded = extract_features(network, make_source(network, [wide], resize="pad"))
    stretched = extract_features(network, make_source(network, [wide]))
    assert_same_up_to_batching(stretched, network.predict(np.full((1, SIDE, SIDE, 3), 200, np.uint8)))
    letterbox = np.zeros((1, SIDE, SIDE, 3), np.uint8)
    letterbox[0, 6:10] = 200  # 16x64 fitted inside 16x16: 4 rows high, centred
    assert_same_up_to_batching(padded, network.predict(letterbox))


def test_a_tabular_network_gets_the_rows_of_the_table():
    network = get_feature_network(tabular_backbone)
    table = np.random.default_rng(4).normal(size=(9, 5))
    source = make_source(network, table)
    assert isinstance(source, TableSource)
    kernel, bias = network.base.get_layer("dense").get_weights()
    expected = table.astype(np.float32) @ kernel + bias
    np.testing.assert_allclose(extract_features(network, source, batch_size=4), expected, rtol=BATCHING_RTOL, atol=1e-6)


def test_on_error_nan_gives_nan_rows_and_one_warning_naming_every_failure(network, tmp_path, image_dir):
    X = images(6, seed=5)
    paths = write_pngs(tmp_path, X)
    paths[1], paths[4] = image_dir / "truncated.jpg", image_dir / "not_an_image.jpg"
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        features = extract_features(network, make_source(network, paths), batch_size=4, on_error="nan")
    assert np.isnan(features).all(axis=1).tolist() == [False, True, False, False, True, False]
    good = [0, 2, 3, 5]
    assert_same_up_to_batching(features[good], one_by_one(network, X[good]))
    (message,) = image_warnings(record)
    assert "2 of 6 images could not be read" in message
    assert f"1 ({paths[1]}): " in message and f"4 ({paths[4]}): UnidentifiedImageError" in message


def test_on_error_raise_names_the_first_unreadable_item(network, tmp_path, image_dir):
    paths = write_pngs(tmp_path, images(6, seed=6))
    paths[3] = image_dir / "not_an_image.jpg"
    paths[5] = image_dir / "truncated.jpg"
    with pytest.raises(skptm.ImageReadError, match="index 3") as raised:
        extract_features(network, make_source(network, paths), batch_size=2, on_error="raise")
    assert raised.value.index == 3 and raised.value.path == str(paths[3])


# -- the feature cache -----------------------------------------------------------------------------


def test_a_second_call_with_the_cache_computes_nothing_and_gives_the_same_rows(network, tmp_path):
    X = images(7, seed=7)
    counted, runner = recording(network)
    first = extract_features(counted, make_source(network, X), batch_size=4, cache=tmp_path)
    assert runner.images_computed() == 7
    runner.batches.clear()
    again = extract_features(counted, make_source(network, X), batch_size=4, cache=tmp_path)
    assert runner.batches == []
    np.testing.assert_array_equal(again, first)
    more = np.concatenate([X[:3], images(2, seed=8), X[3:]])
    grown = extract_features(counted, make_source(network, more), batch_size=4, cache=tmp_path)
    assert runner.images_computed() == 2  # only the new images
    np.testing.assert_array_equal(grown[[0, 1, 2, 5, 6, 7, 8]], first)
    assert_same_up_to_batching(grown[3:5], one_by_one(network, more[3:5]))


def test_a_failed_item_is_not_cached_and_fails_again(network, tmp_path, image_dir):
    X = images(3, seed=9)
    (tmp_path / "files").mkdir()
    paths = [*write_pngs(tmp_path / "files", X), image_dir / "truncated.jpg"]
    counted, runner = recording(network)
    cache = tmp_path / "cache"
    for _attempt in range(2):
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            features = extract_features(counted, make_source(network, paths), on_error="nan", cache=cache)
        assert np.isnan(features[3]).all() and np.isfinite(features[:3]).all()
        (message,) = image_warnings(record)
        assert message.startswith("1 of 4 images could not be read; their rows are NaN. ")
        assert f"Failed items (index (path): cause): 3 ({paths[3]}): " in message
        assert runner.images_computed() == 3  # the good files on the first attempt only
    with pytest.raises(skptm.ImageReadError) as raised:
        extract_features(counted, make_source(network, paths), on_error="raise", cache=cache)
    assert raised.value.index == 3
