"""Property-based tests: whatever X is, features or a clear error.

Hypothesis draws arrays of any shape (0 to 5 dimensions, sides of 0 to 40),
dtype and values (negative, above 255, NaN, infinite), and lists of such
arrays mixed with paths, bytes, PIL images and other objects. For each X,
``transform`` either returns one finite float32 row per item, or raises a
``ValueError`` or ``TypeError`` with a message; never another exception,
never a NaN with ``on_error="raise"``. With ``on_error="nan"``, exactly the
unreadable items get rows of NaN, with one ``ImageReadWarning``.
"""

import io
import warnings

import numpy as np
from hypothesis import event, given, reject, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image
from sklearn.base import clone

from skptm import ImageReadError, ImageReadWarning, PretrainedFeatureTransformer

from .conftest import LIGHT

SIZE = 32
N_FEATURES = 1280  # mobilenet_v2

#: Built once (the network is cached per process); Hypothesis calls the tests
#: many times, so they use no function-scoped fixture.
EXTRACTOR = PretrainedFeatureTransformer(LIGHT, weights=None, input_size=SIZE, batch_size=4)
EXTRACTOR_NAN = clone(EXTRACTOR).set_params(on_error="nan")

PROPERTIES = settings(max_examples=100, deadline=None)

# -- strategies -----------------------------------------------------------------

DTYPES = [
    "uint8",
    "uint16",
    "int8",
    "int32",
    "int64",
    "float16",
    "float32",
    "float64",
    "bool",
    "complex64",
    "object",
    "datetime64[s]",
    "U4",
]
SPECIAL = [0, 1, 254, 255, 256, -1, 0.5, 255.5, -0.0, np.nan, np.inf, -np.inf, 1e30]


def values(dtype, pixels):
    """Values for ``dtype``: valid pixels (0-255) only, or anything the dtype holds
    with the troublesome ones (negative, above 255, NaN, infinite) often."""
    dtype = np.dtype(dtype)
    if dtype.kind in "iuf":
        top = 255 if dtype.kind == "f" else min(255, int(np.iinfo(dtype).max))
        in_range = st.integers(0, top)
        if dtype.kind == "f":
            in_range = st.one_of(in_range, st.floats(0, 255, width=8 * min(dtype.itemsize, 8)))
        if pixels:
            return in_range
        specials = [v for v in SPECIAL if _representable(v, dtype)]
        return st.one_of(in_range, st.sampled_from(specials), hnp.from_dtype(dtype))
    if dtype.kind == "b":
        return st.booleans()
    if dtype.kind == "c" and pixels:
        return st.integers(0, 255).map(complex)
    if dtype.kind == "O":
        return (
            st.integers(0, 255)
            if pixels
            else st.one_of(st.none(), st.integers(-5, 300), st.floats(), st.text(max_size=3))
        )
    return hnp.from_dtype(dtype)


def _representable(value, dtype):
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            back = float(np.array(value).astype(dtype))
        except (OverflowError, ValueError):
            return False
    return back == value or (np.isnan(value) and np.isnan(back))


@st.composite
def shapes(draw, min_dims=0, max_dims=5, budget=4 * 40 * 40 * 4):
    """Any shape, small sides (0 and 1 included) and up to 40, at most ``budget`` values."""
    ndim = draw(st.integers(min_dims, max_dims))
    shape = []
    for _ in range(ndim):
        room = max(0, budget // max(1, int(np.prod(shape))))
        side = draw(st.one_of(st.integers(0, 4), st.sampled_from([SIZE, 40]), st.integers(0, 40)))
        shape.append(min(side, room))
    return tuple(shape)


@st.composite
def image_shapes(draw):
    """Shapes of stacks of images, ``(N, H, W[, C])``, near the valid ones."""
    n = draw(st.integers(0, 5))
    h, w = (draw(st.one_of(st.just(SIZE), st.integers(0, 40))) for _ in range(2))
    channels = draw(st.one_of(st.none(), st.sampled_from([1, 3, 4]), st.integers(0, 5)))
    return (n, h, w) if channels is None else (n, h, w, channels)


def arrays(shape_strategy):
    return st.tuples(st.sampled_from(DTYPES), st.booleans()).flatmap(
        lambda choice: hnp.arrays(choice[0], shape_strategy, elements=values(*choice))
    )


def valid_images():
    """Images skptm must read: uint8 RGB, grayscale or RGBA, any size."""
    return hnp.arrays(
        np.uint8,
        st.tuples(st.integers(1, 40), st.integers(1, 40), st.sampled_from([1, 3, 4])),
    )


def rgb_images():
    return hnp.arrays(np.uint8, st.tuples(st.integers(1, 40), st.integers(1, 40), st.just(3)))


#: Every Pillow mode an RGB image converts to: all must be readable.
PIL_MODES = [
    "RGB",
    "RGBA",
    "RGBa",
    "RGBX",
    "L",
    "LA",
    "La",
    "P",
    "PA",
    "1",
    "I",
    "I;16",
    "I;16B",
    "I;16L",
    "F",
    "CMYK",
    "YCbCr",
    "LAB",
    "HSV",
]


def readable_pil_images():
    return st.tuples(rgb_images(), st.sampled_from(PIL_MODES)).map(
        lambda pair: Image.fromarray(pair[0]).convert(pair[1])
    )


def pil_images():
    """PIL images in every mode, 32-bit and float ones with any values, empty ones."""
    wide = st.sampled_from(["uint16", "int32", "float32"]).flatmap(
        lambda dtype: hnp.arrays(dtype, shapes(2, 2), elements=values(dtype, pixels=False))
    )
    return st.one_of(readable_pil_images(), wide.map(Image.fromarray), empty_pil_images())


def empty_pil_images():
    sides = st.tuples(st.integers(0, 4), st.integers(0, 4)).filter(lambda size: 0 in size)
    return st.tuples(sides, st.sampled_from(["RGB", "L", "F", "RGBA"])).map(lambda pair: Image.new(pair[1], pair[0]))


def empty_arrays():
    """Image arrays with no pixels: a height or width of 0."""
    shape = st.tuples(st.integers(0, 3), st.integers(0, 3), st.sampled_from([1, 3, 4])).filter(
        lambda shape: 0 in shape[:2]
    )
    return hnp.arrays(np.uint8, shape)


@st.composite
def encoded(draw, image_format):
    """A PIL image saved as ``image_format``, when that format stores its mode."""
    image = draw(pil_images())
    buffer = io.BytesIO()
    try:
        image.save(buffer, format=image_format)
    except (OSError, ValueError, KeyError):
        reject()
    return buffer.getvalue()


def object_array(items):
    array = np.empty(len(items), dtype=object)
    for i, item in enumerate(items):
        array[i] = item
    return array


def items():
    """One item of a list: arrays of any shape and dtype, and other things."""
    return st.one_of(
        arrays(shapes(max_dims=4)),
        valid_images(),
        pil_images(),
        encoded("PNG"),
        encoded("TIFF"),
        encoded("JPEG").map(lambda data: data[: len(data) // 2]),  # truncated
        st.binary(max_size=20),
        st.text(max_size=8),  # a path that does not exist
        st.none(),
        st.integers(),
        st.lists(st.integers(0, 255), max_size=4),
    )


def inputs():
    """X: an array of any shape, a stack of images, or a list of items."""
    return st.one_of(
        arrays(shapes()),
        arrays(image_shapes()),
        st.lists(items(), max_size=5),
        st.lists(items(), max_size=5).map(object_array),
    )


# -- properties -----------------------------------------------------------------


def _transform(extractor, X):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        features = extractor.transform(X)
    read_warnings = [w for w in caught if issubclass(w.category, ImageReadWarning)]
    return features, read_warnings


def _check_error(exc):
    event(f"{type(exc).__name__}: {str(exc)[:90]}")
    assert isinstance(exc, (ValueError, TypeError)), f"{type(exc).__name__}: {exc}"
    assert str(exc).strip(), f"{type(exc).__name__} without a message"


@PROPERTIES
@given(X=inputs())
def test_features_or_a_clear_error(X):
    try:
        features, read_warnings = _transform(EXTRACTOR, X)
    except Exception as exc:
        _check_error(exc)
        raised = exc
    else:
        raised = None
        event(f"features from {type(X).__name__} {getattr(X, 'dtype', '')}")
        assert read_warnings == []
        assert features.dtype == np.float32
        assert features.shape == (len(X), N_FEATURES)
        assert np.isfinite(features).all()

    # The same X with on_error="nan": the same features, or NaN rows for
    # exactly the items that cannot be read, or the same error about X itself.
    try:
        lenient, read_warnings = _transform(EXTRACTOR_NAN, X)
    except Exception as exc:
        _check_error(exc)
        assert raised is not None and not isinstance(raised, ImageReadError), (
            f"on_error='nan' raised {exc!r} where on_error='raise' gave {raised!r}"
        )
        return
    assert raised is None or isinstance(raised, ImageReadError), raised
    assert lenient.shape == (len(X), N_FEATURES) and lenient.dtype == np.float32
    failed = np.isnan(lenient).all(axis=1)
    assert (failed | np.isfinite(lenient).all(axis=1)).all(), "a row is partly NaN"
    if raised is None:
        assert not failed.any() and read_warnings == []
        np.testing.assert_array_equal(lenient, features)
    else:
        assert failed[raised.index], "the item on_error='raise' named has features"
        assert len(read_warnings) == 1
        assert f"{failed.sum()} of {len(X)} images could not be read" in str(read_warnings[0].message)


def readable():
    return st.one_of(valid_images(), readable_pil_images(), encoded("PNG"))


def unreadable():
    return st.one_of(empty_arrays(), empty_pil_images(), st.none(), st.binary(max_size=8))


@PROPERTIES
@given(
    entries=st.lists(
        st.one_of(
            readable().map(lambda item: (item, True)),
            unreadable().map(lambda item: (item, False)),
            items().map(lambda item: (item, None)),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_nan_rows_for_exactly_the_unreadable_items(entries):
    X = [item for item, _ in entries]
    features, read_warnings = _transform(EXTRACTOR_NAN, X)
    assert features.shape == (len(X), N_FEATURES) and features.dtype == np.float32
    failed = np.isnan(features).all(axis=1)
    assert (failed | np.isfinite(features).all(axis=1)).all(), "a row is partly NaN"
    assert len(read_warnings) == int(failed.any())
    for row, (item, readable_item) in enumerate(entries):
        if readable_item is not None:
            assert failed[row] != readable_item, f"item {row} ({item!r})"
            continue
        # Each row is what the item gives alone: features, or an error.
        try:
            alone, _ = _transform(EXTRACTOR, [item])
        except Exception as exc:
            _check_error(exc)
            assert failed[row], f"item {row} has features, but alone it raises {exc!r}"
        else:
            assert not failed[row], f"item {row} is NaN, but alone it has features"
            np.testing.assert_allclose(features[row], alone[0], rtol=1e-5, atol=1e-5)
