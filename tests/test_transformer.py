"""PretrainedFeatureTransformer: every input form, bad input, output, pickling."""

import io
import pickle
import warnings

import joblib
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.base import clone

from skptm import ImageReadError, ImageReadWarning, PretrainedFeatureTransformer

from .conftest import LIGHT, SIZE, assert_same_up_to_batching, pattern


def make(**params):
    return PretrainedFeatureTransformer(**{"backbone": LIGHT, "weights": None, "input_size": SIZE, **params})


@pytest.fixture(scope="module")
def extractor():
    return make(batch_size=4)


@pytest.fixture(scope="module")
def rgb_stack():
    return np.random.default_rng(0).integers(0, 256, (5, SIZE, SIZE, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def reference(extractor, rgb_stack):
    return extractor.transform(rgb_stack)


def test_output_shape_and_dtype(reference):
    assert reference.shape == (5, 1280)
    assert reference.dtype == np.float32
    assert np.isfinite(reference).all()


def test_fit_learns_nothing(extractor, rgb_stack, reference):
    fresh = make(batch_size=4)
    np.testing.assert_array_equal(fresh.fit(rgb_stack).transform(rgb_stack), reference)
    np.testing.assert_array_equal(fresh.fit_transform(rgb_stack), reference)
    assert fresh.get_params() == make(batch_size=4).get_params()


def test_batch_size_does_not_change_features(rgb_stack, reference):
    for batch_size in (1, 2, 7):
        np.testing.assert_allclose(make(batch_size=batch_size).transform(rgb_stack), reference, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "as_input",
    [
        pytest.param(lambda s: list(s), id="list-of-arrays"),
        pytest.param(lambda s: tuple(s), id="tuple-of-arrays"),
        pytest.param(lambda s: [Image.fromarray(a) for a in s], id="pil-images"),
        pytest.param(lambda s: s.astype(np.float32), id="float32-stack"),
        pytest.param(lambda s: s.astype(np.float64), id="float64-stack"),
        pytest.param(lambda s: pd.Series(list(s)), id="series-of-arrays"),
        pytest.param(lambda s: _object_array(list(s)), id="object-array"),
        pytest.param(lambda s: [_png_bytes(a) for a in s], id="png-bytes"),
        pytest.param(lambda s: s.tolist(), id="nested-lists"),
    ],
)
def test_every_input_form_gives_the_same_features(extractor, rgb_stack, reference, as_input):
    np.testing.assert_allclose(extractor.transform(as_input(rgb_stack)), reference, rtol=1e-5, atol=1e-6)


def _object_array(items):
    array = np.empty(len(items), dtype=object)
    array[:] = items
    return array


def _png_bytes(array):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def test_paths_str_pathlib_and_series(extractor, tmp_path, rgb_stack, reference):
    paths = []
    for i, image in enumerate(rgb_stack):
        path = tmp_path / f"{i}.png"
        Image.fromarray(image).save(path)
        paths.append(path)
    for X in (
        paths,
        [str(p) for p in paths],
        pd.Series([str(p) for p in paths]),
        pd.DataFrame({"path": paths}),
        np.array([str(p) for p in paths]),
    ):
        np.testing.assert_allclose(extractor.transform(X), reference, rtol=1e-5, atol=1e-6)


def test_grayscale_and_alpha_stacks(extractor):
    gray = np.random.default_rng(1).integers(0, 256, (3, SIZE, SIZE), dtype=np.uint8)
    as_rgb = extractor.transform(np.repeat(gray[..., None], 3, axis=-1))
    np.testing.assert_allclose(extractor.transform(gray), as_rgb, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(extractor.transform(gray[..., None]), as_rgb, rtol=1e-5, atol=1e-6)
    opaque = np.concatenate([np.repeat(gray[..., None], 3, -1), np.full((3, SIZE, SIZE, 1), 255, np.uint8)], -1)
    np.testing.assert_allclose(extractor.transform(opaque), as_rgb, rtol=1e-5, atol=1e-6)


def test_differing_sizes_and_real_files(extractor, good_paths):
    mixed = [np.zeros((30, 50, 3), np.uint8), pattern(90, 20), *good_paths]
    features = extractor.transform(mixed)
    assert features.shape == (len(mixed), 1280)
    assert np.isfinite(features).all()


def test_callers_array_is_not_modified(extractor):
    X = np.random.default_rng(2).uniform(0, 255, (4, SIZE, SIZE, 3)).astype(np.float32)
    before = X.copy()
    for params in ({}, {"input_size": 32}):
        make(**params).transform(X)
        make(**params).transform(list(X))
    np.testing.assert_array_equal(X, before)


@pytest.mark.parametrize("resize", ["stretch", "center_crop", "pad"])
def test_resize_policies(resize):
    """Each policy sees another part of a non-square image; a square one at the
    input size is the same under all three."""
    wide = pattern(90, 40)
    others = [policy for policy in ("stretch", "center_crop", "pad") if policy != resize]
    features = make(resize=resize).transform([wide])
    for other in others:
        assert not np.allclose(features, make(resize=other).transform([wide]), rtol=1e-3, atol=0)
    square = pattern(SIZE, SIZE)
    np.testing.assert_array_equal(make(resize=resize).transform([square]), make(resize=others[0]).transform([square]))


def test_image_read_error_survives_pickling():
    error = pickle.loads(pickle.dumps(ImageReadError(3, "a.jpg", "OSError: truncated")))
    assert (error.index, error.path) == (3, "a.jpg") and "index 3 ('a.jpg')" in str(error)


def test_unreadable_item_names_index_and_path(extractor, image_dir, good_paths):
    bad = image_dir / "truncated.jpg"
    X = [good_paths[0], good_paths[1], bad, good_paths[2]]
    with pytest.raises(ImageReadError, match=r"index 2 \('.*truncated\.jpg'\).*on_error='nan'") as info:
        extractor.transform(X)
    assert info.value.index == 2 and info.value.path.endswith("truncated.jpg")


def test_on_error_nan_keeps_one_row_per_item(image_dir, good_paths):
    X = [
        good_paths[0],
        image_dir / "not_an_image.jpg",
        good_paths[1],
        image_dir / "missing.png",
        np.full((8, 8, 3), 999.0),
        good_paths[2],
    ]
    with pytest.warns(ImageReadWarning) as record:
        features = make(on_error="nan", batch_size=2).transform(X)
    assert features.shape == (6, 1280)
    assert np.isnan(features[[1, 3, 4]]).all()
    assert np.isfinite(features[[0, 2, 5]]).all()
    assert len(record) == 1
    message = str(record[0].message)
    assert "3 of 6 images" in message
    assert "1 (" in message and "not_an_image.jpg" in message
    assert "3 (" in message and "missing.png" in message
    assert "4: ValueError" in message


def test_bad_item_in_a_stack_is_named():
    X = np.zeros((4, SIZE, SIZE, 3), np.float32)
    X[3, 0, 0, 0] = np.nan
    with pytest.raises(ImageReadError, match="index 3: ValueError.*NaN"):
        make().transform(X)


@pytest.mark.parametrize(
    "X, message",
    [
        (np.zeros((4, 10)), "2-D table"),
        (np.zeros((2, 8, 8, 5)), "channels"),
        ("a.jpg", "single path"),
        (np.zeros((8, 8, 3), np.uint8), r"one RGB\(A\) image.*X\[None\]"),
        (42, "Unsupported input"),
    ],
)
def test_bad_input_containers(extractor, X, message):
    with pytest.raises((ValueError, TypeError), match=message):
        extractor.transform(X)


@pytest.mark.parametrize(
    "empty",
    [[], (), np.empty((0, SIZE, SIZE, 3), np.uint8), np.array([], dtype=object), pd.Series([], dtype=object)],
    ids=["list", "tuple", "array", "object array", "series"],
)
def test_empty_input_is_a_value_error_as_in_check_array(extractor, empty):
    with pytest.raises(ValueError, match="0 images, while a minimum of 1 is required"):
        extractor.transform(empty)


def test_layers_and_pooling():
    X = np.zeros((2, SIZE, SIZE, 3), np.uint8)
    assert make(pooling="max").transform(X).shape == (2, 1280)
    flat = make(pooling=None)
    assert flat.transform(X).shape == (2, 2 * 2 * 1280)
    assert flat.get_feature_names_out()[0] == "mobilenet_v2_flat_0"
    two = make(layer=["block_6_expand_relu", "out_relu"])
    features = two.transform(X)
    names = two.get_feature_names_out()
    assert features.shape == (2, 192 + 1280) == (2, len(names))
    assert names[0] == "mobilenet_v2_block_6_expand_relu_avg_0"
    assert names[-1] == "mobilenet_v2_out_relu_avg_1279"


def test_feature_names_and_pandas_output(extractor, rgb_stack, reference):
    names = extractor.get_feature_names_out()
    assert names.dtype == object and len(names) == 1280
    assert names[0] == "mobilenet_v2_avg_0" and names[-1] == "mobilenet_v2_avg_1279"
    frame = clone(extractor).set_output(transform="pandas").fit_transform(list(rgb_stack))
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.columns) == list(names)
    np.testing.assert_allclose(frame.to_numpy(), reference, rtol=1e-5, atol=1e-6)
    series = pd.Series(list(rgb_stack), index=[f"img{i}" for i in range(5)])
    indexed = clone(extractor).set_output(transform="pandas").transform(series)
    assert list(indexed.index) == list(series.index)


def test_verbose_shows_progress_with_rate(rgb_stack, capsys):
    make(verbose=1, batch_size=2).transform(rgb_stack)
    err = capsys.readouterr().err
    assert "5/5" in err and "images/s" in err


def test_pickle_holds_parameters_only(extractor, rgb_stack, reference, tmp_path):
    fitted = clone(extractor).fit(rgb_stack)
    blob = pickle.dumps(fitted)
    assert len(blob) < 4096, len(blob)
    restored = pickle.loads(blob)
    assert restored.get_params() == fitted.get_params()
    np.testing.assert_array_equal(restored.transform(rgb_stack), reference)
    joblib.dump(fitted, tmp_path / "t.joblib")
    np.testing.assert_array_equal(joblib.load(tmp_path / "t.joblib").transform(rgb_stack), reference)


def test_parameters_are_never_changed(extractor, rgb_stack):
    params = {"layer": ["out_relu"], "input_size": [SIZE, SIZE], "weights": None}
    transformer = PretrainedFeatureTransformer(LIGHT, **params)
    before = {k: (list(v) if isinstance(v, list) else v) for k, v in transformer.get_params().items()}
    transformer.fit(rgb_stack).transform(rgb_stack)
    transformer.get_feature_names_out()
    assert transformer.get_params() == before
    assert clone(transformer).get_params() == before


@pytest.mark.parametrize(
    "params, message",
    [
        ({"pooling": "mean"}, "pooling"),
        ({"resize": "crop"}, "resize"),
        ({"batch_size": 0}, "batch_size"),
        ({"on_error": "skip"}, "on_error"),
    ],
)
def test_invalid_parameters(params, message, rgb_stack):
    with pytest.raises(ValueError, match=message):
        make(**params).fit(rgb_stack)
    with pytest.raises(ValueError, match=message):
        make(**params).transform(rgb_stack)


def test_unknown_backbone_fails_in_fit():
    with pytest.raises(ValueError, match="Did you mean 'resnet50'"):
        PretrainedFeatureTransformer("resnet_50x").fit(None)


def test_images_scaled_to_unit_range_get_a_warning(extractor):
    with pytest.warns(UserWarning, match=r"\[0, 1\].*0-255"):
        extractor.transform(np.full((1, SIZE, SIZE, 3), 0.5, np.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        extractor.transform(np.full((1, SIZE, SIZE, 3), 0.5, np.uint8))


def test_memory_is_bounded_to_two_batches(tmp_path):
    """Items are decoded batch by batch: when batch k reaches the network,
    at most batches k and k+1 have been read, whatever the input's length."""
    from skptm._batches import ItemSource, stream_batches
    from skptm._images import ImageReader

    class CountingReader(ImageReader):
        reads = 0

        def __call__(self, item):
            CountingReader.reads += 1
            return super().__call__(item)

    path = tmp_path / "one.png"
    Image.fromarray(pattern()).save(path)
    source = ItemSource([path] * 100, CountingReader((SIZE, SIZE)))
    for k, batch in enumerate(stream_batches(source, batch_size=10, n_jobs=4)):
        assert batch.data.shape == (10, SIZE, SIZE, 3)
        assert CountingReader.reads <= (k + 2) * 10
    assert CountingReader.reads == 100


def test_partial_batches_are_padded_to_few_shapes_and_change_no_row(monkeypatch):
    from skptm._features import padded_rows
    from skptm.networks import FeatureNetwork

    assert [padded_rows(n, 32) for n in (1, 8, 9, 16, 17, 31, 32)] == [8, 8, 16, 16, 32, 32, 32]
    assert padded_rows(3, 4) == 4 and padded_rows(50, 48) == 48
    X = np.random.default_rng(3).integers(0, 256, (41, SIZE, SIZE, 3), dtype=np.uint8)
    extractor = make(batch_size=32)
    everything = extractor.transform(X)
    shapes = []
    predict = FeatureNetwork.predict
    monkeypatch.setattr(
        FeatureNetwork, "predict", lambda self, batch: shapes.append(len(batch)) or predict(self, batch)
    )
    for n in (1, 5, 9, 17, 33, 41):
        assert_same_up_to_batching(extractor.transform(X[:n]), everything[:n])
    assert set(shapes) == {8, 16, 32}
    np.testing.assert_array_equal(extractor.transform(X[:9]), extractor.transform(X[:9]))  # same call, same bits


def test_progress_bar_counts_each_image_once(capsys, rgb_stack, tmp_path):
    make(verbose=1).transform(rgb_stack)
    assert "5/5" in capsys.readouterr().err
    cached = make(verbose=1, cache=tmp_path)
    cached.transform(rgb_stack[:2])
    capsys.readouterr()
    cached.transform(rgb_stack)  # 2 from the cache, 3 computed
    err = capsys.readouterr().err
    assert "5/5" in err and "7/5" not in err


def test_html_repr_builds_no_network_and_links_to_the_api_page():
    """A notebook showing an estimator must not start a weights download."""
    from skptm.networks import cache_info, get_feature_network

    transformer = PretrainedFeatureTransformer("convnext_xlarge")  # never built by the tests
    before = cache_info()["base_builds"]
    html = transformer._repr_html_inner()
    assert cache_info()["base_builds"] == before
    assert "generated/skptm.PretrainedFeatureTransformer.html" in html
    built = get_feature_network(LIGHT, weights=None, input_size=SIZE, pooling="max").feature_names
    named = PretrainedFeatureTransformer(LIGHT, weights=None, input_size=SIZE, pooling="max").get_feature_names_out()
    assert list(named) == list(built)


@pytest.mark.parametrize("suffix", ["png", "jpg"])
def test_one_lazily_opened_pil_image_repeated_in_x(tmp_path, suffix):
    """The same ``Image.open`` object many times in X, decoded by several
    threads (and hashed for the cache): PIL's first load reads the file and
    must happen once, else rows come out wrong or unreadable."""
    path = tmp_path / f"big.{suffix}"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (600, 800, 3), dtype=np.uint8)).save(path)
    extractor = PretrainedFeatureTransformer(LIGHT, weights=None, input_size=SIZE, n_jobs=4)
    with Image.open(path) as alone:
        reference = extractor.transform([alone])
    for cache in (None, tmp_path / "cache"):
        with Image.open(path) as shared:
            features = extractor.set_params(cache=cache).transform([shared] * 12)
        np.testing.assert_allclose(features, np.repeat(reference, 12, axis=0), rtol=0, atol=1e-5)
