"""A corpus of odd and bad input, written here, each kind with its defined behaviour.

Valid items give finite features; invalid ones raise ImageReadError naming
the index, the path and the cause, or, with on_error="nan", give a NaN row
and one summarising warning. Nothing crashes the process or exhausts memory.
"""

import struct
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image

from skptm import (
    FineTunedClassifier,
    FineTunedRegressor,
    ImageReadError,
    ImageReadWarning,
    PretrainedFeatureTransformer,
)

from .conftest import LIGHT, SIZE, pattern


def png_declaring(width, height):
    """A valid little PNG whose header declares ``width`` x ``height`` pixels."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit grayscale
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """name -> path of every kind of file, good or bad."""
    root = tmp_path_factory.mktemp("corpus")
    rgb = Image.fromarray(pattern())
    files = {}

    def save(name, image, **kwargs):
        files[name] = root / name
        image.save(files[name], **kwargs)

    save("rgb.jpg", rgb, quality=95)
    save("rgb.png", rgb)
    save("cmyk.jpg", rgb.convert("CMYK"), quality=95)
    save("gray16.png", Image.fromarray((np.asarray(rgb.convert("L"), np.uint16) * 257).astype(np.uint16)))
    save("float32.tiff", Image.fromarray(np.asarray(rgb.convert("L"), np.float32), "F"))
    palette = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    palette.info["transparency"] = 0
    save("palette_transparent.png", palette, transparency=0)
    rgba = rgb.convert("RGBA")
    save("rgba.png", rgba)
    save("la.png", rgba.convert("LA"))
    save("one_bit.png", rgb.convert("1"))
    frames = [Image.new("RGB", (40, 30), c) for c in ((250, 0, 0), (0, 0, 250))]
    save("animated.gif", frames[0], save_all=True, append_images=frames[1:], duration=50)
    save("multipage.tiff", frames[0], save_all=True, append_images=frames[1:])
    save("one_pixel.png", Image.new("RGB", (1, 1), (10, 200, 30)))
    save("one_by_4000.png", Image.fromarray(np.tile(np.arange(250, dtype=np.uint8), 16)[None, :4000]))
    save("rgb.webp", rgb, lossless=True)
    save("rgb.bmp", rgb)
    save("name with spaces ünïcødé 写真.jpg", rgb, quality=95)
    for orientation in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = orientation
        save(f"exif_{orientation}.jpg", rgb, exif=exif, quality=95)

    good = files["rgb.jpg"].read_bytes()
    png = files["rgb.png"].read_bytes()
    for name, data in {
        "zero_bytes.jpg": b"",
        "text.jpg": b"this is text, not a JPEG",
        "half.jpg": good[: len(good) // 2],
        "half.png": png[: len(png) // 2],
        "bomb.png": png_declaring(30000, 30000),
    }.items():
        files[name] = root / name
        files[name].write_bytes(data)
    files["missing.jpg"] = root / "missing.jpg"
    files["a_directory"] = root / "a_directory"
    files["a_directory"].mkdir()
    return files


GOOD = [
    "rgb.jpg",
    "rgb.png",
    "cmyk.jpg",
    "gray16.png",
    "float32.tiff",
    "palette_transparent.png",
    "rgba.png",
    "la.png",
    "one_bit.png",
    "animated.gif",
    "multipage.tiff",
    "one_pixel.png",
    "one_by_4000.png",
    "rgb.webp",
    "rgb.bmp",
    "name with spaces ünïcødé 写真.jpg",
] + [f"exif_{k}.jpg" for k in range(1, 9)]

#: Bad files and the cause their error must name.
BAD = {
    "missing.jpg": "FileNotFoundError",
    "a_directory": "IsADirectoryError",
    "zero_bytes.jpg": "UnidentifiedImageError",
    "text.jpg": "UnidentifiedImageError",
    "half.jpg": "[Tt]runcated",
    "half.png": "truncated|Truncated|broken",
    "bomb.png": "DecompressionBomb",
}


@pytest.fixture(scope="module")
def extractor():
    return PretrainedFeatureTransformer(LIGHT, weights=None, input_size=SIZE, batch_size=8)


def test_every_valid_kind_gives_finite_features(extractor, corpus):
    features = extractor.transform([corpus[name] for name in GOOD])
    assert features.shape == (len(GOOD), 1280)
    assert np.isfinite(features).all()


@pytest.mark.parametrize("name", sorted(BAD))
def test_every_invalid_file_is_named_with_its_index_path_and_cause(extractor, corpus, name):
    X = [corpus["rgb.jpg"], corpus["rgb.png"], corpus[name]]
    with pytest.raises(ImageReadError, match=BAD[name]) as caught:
        extractor.transform(X)
    assert caught.value.index == 2
    assert caught.value.path == str(corpus[name])
    assert "index 2" in str(caught.value) and str(corpus[name]) in str(caught.value)
    assert "on_error='nan'" in str(caught.value)  # says what to do


def test_on_error_nan_gives_nan_rows_and_one_warning_listing_all(extractor, corpus):
    names = ["rgb.jpg", *sorted(BAD), "rgb.png"]
    with pytest.warns(ImageReadWarning) as caught:
        features = PretrainedFeatureTransformer(
            LIGHT, weights=None, input_size=SIZE, batch_size=4, on_error="nan"
        ).transform([corpus[name] for name in names])
    assert len(caught) == 1
    message = str(caught[0].message)
    assert f"{len(BAD)} of {len(names)} images" in message
    for name in BAD:
        assert str(corpus[name]) in message
    assert np.isfinite(features[[0, -1]]).all()
    assert np.isnan(features[1:-1]).all()


@pytest.mark.parametrize("orientation", range(2, 9))
def test_exif_orientations_equal_the_image_transposed_by_hand(extractor, corpus, orientation):
    turn = {
        2: Image.Transpose.FLIP_LEFT_RIGHT,
        3: Image.Transpose.ROTATE_180,
        4: Image.Transpose.FLIP_TOP_BOTTOM,
        5: Image.Transpose.TRANSPOSE,
        6: Image.Transpose.ROTATE_270,
        7: Image.Transpose.TRANSVERSE,
        8: Image.Transpose.ROTATE_90,
    }[orientation]
    with Image.open(corpus[f"exif_{orientation}.jpg"]) as stored:  # pixels as stored, turned by hand
        by_hand = np.asarray(stored.convert("RGB").transpose(turn))
    np.testing.assert_array_equal(
        extractor.transform([corpus[f"exif_{orientation}.jpg"]]), extractor.transform(by_hand[None])
    )


def test_the_decompression_bomb_is_refused_without_decoding(extractor, corpus):
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ImageReadError, match="DecompressionBomb"):
        extractor.transform([corpus["bomb.png"]])
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KB: nothing near 900 MB


@pytest.mark.parametrize(
    ("X", "message"),
    [
        (np.full((1, SIZE, SIZE, 3), np.nan, np.float32), "NaN or infinite"),
        (np.full((1, SIZE, SIZE, 3), np.inf, np.float64), "NaN or infinite"),
        (np.full((2, SIZE, SIZE, 3), 300, np.int32), r"\[0, 255\]"),
        (np.full((2, SIZE, SIZE, 3), -1, np.int16), r"\[0, 255\]"),
    ],
    ids=["nan", "inf", "above 255", "negative"],
)
def test_bad_array_values_name_the_index(extractor, X, message):
    with pytest.raises(ImageReadError, match=message) as caught:
        extractor.transform(X)
    assert caught.value.index == 0


@pytest.mark.parametrize(
    "X",
    [
        np.zeros((2, SIZE, SIZE, 2), np.uint8),
        np.zeros((2, SIZE, SIZE, 5), np.uint8),
        np.zeros((2, 3, SIZE, SIZE, 3)),
        np.zeros((SIZE,)),
        np.zeros(()),
    ],
    ids=["2 channels", "5 channels", "rank 5", "rank 1 numbers", "rank 0"],
)
def test_arrays_of_the_wrong_shape_are_a_value_error(extractor, X):
    with pytest.raises(ValueError, match="shape|Expected"):
        extractor.transform(X)


@pytest.mark.parametrize(
    ("item", "message"),
    [(None, "NoneType"), ("https://example.org/cat.jpg", "URL"), (np.zeros((4, 4, 2)), "shape")],
    ids=["None", "URL", "2-channel image in a list"],
)
def test_bad_items_in_a_list_are_named(extractor, corpus, item, message):
    with pytest.raises(ImageReadError, match=message) as caught:
        extractor.transform([corpus["rgb.jpg"], item])
    assert caught.value.index == 1


def test_a_1d_array_of_bytes_strings_is_encoded_images(extractor, corpus):
    data = np.array([corpus["rgb.jpg"].read_bytes(), corpus["rgb.png"].read_bytes()])
    assert data.dtype.kind == "S"
    np.testing.assert_array_equal(
        extractor.transform(data), extractor.transform([corpus["rgb.jpg"], corpus["rgb.png"]])
    )


@pytest.mark.parametrize("empty", [[], np.empty((0, SIZE, SIZE, 3), np.uint8)], ids=["list", "array"])
def test_empty_input_is_a_value_error(extractor, empty):
    with pytest.raises(ValueError, match="0 images"):
        extractor.transform(empty)


@pytest.fixture(scope="module")
def fitted(colours):
    X, y = colours
    params = {"backbone": LIGHT, "weights": None, "input_size": 32, "unfreeze": 0, "random_state": 0}
    return FineTunedClassifier(**params).fit(X, y), FineTunedRegressor(**params).fit(X, np.arange(len(y), dtype=float))


def test_finetuned_estimators_follow_on_error(fitted, corpus):
    X = [corpus["rgb.jpg"], corpus["half.jpg"], corpus["rgb.png"]]
    for estimator in fitted:
        with pytest.raises(ImageReadError, match="index 1"):
            estimator.predict(X)
        with pytest.raises(ImageReadError, match="index 1"):
            estimator.transform(X)
    classifier, regressor = (estimator.set_params(on_error="nan") for estimator in fitted)
    try:
        with pytest.warns(ImageReadWarning, match="1 of 3"):
            proba = classifier.predict_proba(X)
        assert np.isnan(proba[1]).all() and np.isfinite(proba[[0, 2]]).all()
        with pytest.warns(ImageReadWarning):
            labels = classifier.predict(X)
        assert labels[1] is None and labels[0] in classifier.classes_
        with pytest.warns(ImageReadWarning):
            assert np.isnan(regressor.predict(X)[1])
        with pytest.warns(ImageReadWarning):
            features = classifier.transform(X)
        assert np.isnan(features[1]).all() and np.isfinite(features[0]).all()
        # score needs every image: named, without the on_error advice that cannot help it.
        for estimator, y in ((classifier, classifier.classes_[[0, 0, 0]]), (regressor, [0.0, 1.0, 2.0])):
            with pytest.raises(ImageReadError, match="index 1.*Scoring needs every image") as caught:
                estimator.score(X, y)
            assert "on_error" not in str(caught.value) and caught.value.path == str(corpus["half.jpg"])
        assert 0.0 <= classifier.score([X[0], X[2]], classifier.classes_[[0, 0]]) <= 1.0
    finally:
        for estimator in fitted:
            estimator.set_params(on_error="raise")


def test_fit_always_raises_on_an_unreadable_image(corpus):
    clf = FineTunedClassifier(LIGHT, weights=None, input_size=32, unfreeze=0, on_error="nan")
    with pytest.raises(ImageReadError, match="index 1") as caught:
        clf.fit([corpus["rgb.jpg"], corpus["text.jpg"]], [0, 1])
    assert not hasattr(clf, "classes_")
    # on_error='nan' cannot help fit: the message says what can.
    assert "Training cannot use an unreadable image" in str(caught.value) and "on_error" not in str(caught.value)
    assert caught.value.path == str(corpus["text.jpg"]) and caught.value.training


def test_valid_input_gives_no_warning(extractor, corpus):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        extractor.transform([corpus[name] for name in GOOD[:4]])
