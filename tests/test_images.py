"""One item to one RGB array: real files in real formats and modes."""

import numpy as np
import pytest
from PIL import Image, ImageOps

from skptm._images import ImageReader, array_to_rgb

from .conftest import pattern

NATIVE = (60, 80)  # the pattern's (height, width): no resampling


def read(item, size=NATIVE, resize="stretch"):
    return ImageReader(size, resize)(item)


def assert_looks_like_pattern(image, tolerance=12):
    expected = pattern(image.shape[1], image.shape[0]).astype(np.float32)
    assert np.abs(image.astype(np.float32) - expected).mean() < tolerance


@pytest.mark.parametrize(
    "name",
    ["rgb.jpg", "rgb.png", "rgb.bmp", "rgb.webp", "rgb.tiff", "cmyk.jpg", "exif_rotated.jpg"],
)
def test_colour_files_decode_to_the_same_picture(image_dir, name):
    image = read(image_dir / name)
    assert image.shape == (60, 80, 3)
    assert_looks_like_pattern(image)


def test_exif_orientation_is_applied(image_dir):
    with Image.open(image_dir / "exif_rotated.jpg") as raw:
        assert raw.size == (60, 80)  # stored as portrait
    image = read(image_dir / "exif_rotated.jpg")
    assert image.shape == (60, 80, 3)  # shown as landscape
    assert image[30, 5, 0] > 150 and image[30, 75, 2] > 150  # red left, blue right
    assert image[2, 40, 1] > 120  # the green stripe is on top


@pytest.mark.parametrize("name", ["gray.png", "gray.jpg", "bilevel.png", "gray16.png"])
def test_grayscale_files_become_equal_channels(image_dir, name):
    image = read(image_dir / name)
    assert image.shape == (60, 80, 3)
    np.testing.assert_array_equal(image[..., 0], image[..., 1])
    np.testing.assert_array_equal(image[..., 0], image[..., 2])


def test_sixteen_bit_is_scaled_not_clipped(image_dir):
    eight = read(image_dir / "gray.png").astype(np.float32)
    sixteen = read(image_dir / "gray16.png")
    assert sixteen.dtype == np.float32
    assert sixteen.max() <= 255.0
    np.testing.assert_allclose(sixteen, eight, atol=1.0)


def test_palette_image_keeps_its_colours(image_dir):
    assert_looks_like_pattern(read(image_dir / "palette.gif"), tolerance=25)


@pytest.mark.parametrize("name", ["rgba.png", "la.png"])
def test_alpha_is_composited_over_white(image_dir, name):
    image = read(image_dir / name)
    assert image.shape == (60, 80, 3)
    # The transparent strip stores black pixels; composited, they are white.
    assert (image[:, :20] == 255).all()
    assert image[30, 30:40].min() < 250  # opaque pixels keep their colour


def test_animated_image_gives_its_first_frame(image_dir):
    image = read(image_dir / "animated.gif", size=(30, 40))
    assert image[..., 0].min() > 200 and image[..., 2].max() < 50  # red, not blue


def test_large_jpeg_is_decoded_at_reduced_size(image_dir):
    reader = ImageReader((60, 80))
    decoded = reader.decode(image_dir / "large.jpg")
    assert decoded.size == (200, 150)  # 1600x1200 at DCT scale 1/8, still >= 80x60
    assert_looks_like_pattern(reader(image_dir / "large.jpg"))
    # A target larger than 1/8 of the photo gets a finer scale, never smaller.
    assert ImageReader((400, 500)).decode(image_dir / "large.jpg").size == (800, 600)


def test_draft_respects_exif_rotation(image_dir):
    # Stored 60x80 portrait, shown 80x60: the decoded, oriented image must
    # still cover the target in both directions.
    decoded = ImageReader((60, 80)).decode(image_dir / "exif_rotated.jpg")
    assert decoded.size == (80, 60)


def test_callers_pil_image_is_not_modified(image_dir):
    with Image.open(image_dir / "large.jpg") as image:
        ImageReader((60, 80))(image)
        assert image.size == (1600, 1200)
        assert np.asarray(image).shape == (1200, 1600, 3)  # no draft decoding


def test_bytes_are_decoded(image_dir):
    assert_looks_like_pattern(read((image_dir / "rgb.png").read_bytes()))


def test_stretch_ignores_the_aspect_ratio():
    image = read(pattern(), size=(30, 30))
    assert image.shape == (30, 30, 3)
    assert image[15, 2, 0] > 150 and image[15, 27, 2] > 150


def test_center_crop_keeps_the_middle():
    wide = pattern(120, 60)  # red | blue halves
    image = read(wide, size=(60, 60), resize="center_crop")
    assert image.shape == (60, 60, 3)
    # The centre 60 columns of 120: 30 red then 30 blue, undistorted.
    assert image[30, 25, 0] > 150 and image[30, 35, 2] > 150
    np.testing.assert_array_equal(image, wide[:, 30:90])  # same scale: an exact crop


def test_pad_letterboxes_with_black():
    image = read(pattern(80, 40), size=(80, 80), resize="pad")
    assert image.shape == (80, 80, 3)
    assert (image[:20] == 0).all() and (image[60:] == 0).all()
    np.testing.assert_array_equal(image[20:60], pattern(80, 40))


@pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.float64])
def test_arrays_at_target_size_are_not_resampled(dtype):
    array = np.random.default_rng(0).uniform(0, 255, (60, 80, 3)).astype(dtype)
    np.testing.assert_array_equal(read(array), array.astype(np.float32))


def test_float_arrays_are_resized_without_quantising():
    array = np.full((40, 40, 3), 100.25, dtype=np.float32)
    image = read(array, size=(20, 20))
    assert image.dtype == np.float32
    np.testing.assert_allclose(image, 100.25, rtol=1e-6)


def test_array_forms():
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    np.testing.assert_array_equal(array_to_rgb(gray), np.repeat(gray[..., None], 3, -1))
    np.testing.assert_array_equal(array_to_rgb(gray[..., None]), array_to_rgb(gray))
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (10, 20, 30, 255)  # opaque; the rest is transparent
    out = array_to_rgb(rgba)
    np.testing.assert_allclose(out[0, 0], (10, 20, 30))
    np.testing.assert_allclose(out[1, 1], (255, 255, 255))
    np.testing.assert_allclose(array_to_rgb(np.full((2, 2), 65535, np.uint16)), 255.0)
    np.testing.assert_allclose(array_to_rgb(np.ones((2, 2), bool)), 255.0)


@pytest.mark.parametrize(
    "array, message",
    [
        (np.full((4, 4, 3), 300.0), r"\[0, 255\]"),
        (np.full((4, 4, 3), -1.0), r"\[0, 255\]"),
        (np.full((4, 4, 3), np.nan), "NaN"),
        (np.zeros((4, 4, 2)), "shape"),
        (np.zeros((0, 4, 3)), "empty"),
        (np.array([["a"]]), "numeric"),
    ],
)
def test_bad_arrays_are_rejected(array, message):
    with pytest.raises(ValueError, match=message):
        read(array)


@pytest.mark.parametrize(
    "name, error",
    [
        ("truncated.jpg", OSError),
        ("not_an_image.jpg", OSError),
        ("missing.jpg", FileNotFoundError),
    ],
)
def test_unreadable_files_raise(image_dir, name, error):
    with pytest.raises(error):
        read(image_dir / name)


def test_unsupported_item_type():
    with pytest.raises(TypeError, match="unsupported item of type int"):
        read(3)


def test_a_transparency_key_in_rgb_and_sixteen_bit_files_is_white(tmp_path):
    """PNG's tRNS colour key makes one colour transparent in RGB and grey
    images too: those pixels come out white, as in RGBA files."""
    rgb = np.full((4, 4, 3), 40, np.uint8)
    rgb[0, 0] = (1, 2, 3)
    Image.fromarray(rgb).save(tmp_path / "key.png", transparency=(1, 2, 3))
    out = read(tmp_path / "key.png", size=(4, 4))
    np.testing.assert_array_equal(out[0, 0], (255, 255, 255))
    np.testing.assert_array_equal(out[1, 1], (40, 40, 40))

    gray = np.full((4, 4), 30000, np.uint16)
    gray[0, 0] = 7
    Image.fromarray(gray).save(tmp_path / "key16.png", transparency=7)
    out = read(tmp_path / "key16.png", size=(4, 4))
    np.testing.assert_allclose(out[0, 0], 255.0)
    np.testing.assert_allclose(out[1, 1], 30000 / 257, rtol=1e-6)


def test_a_turned_tiff_reports_its_upright_size(tmp_path):
    """Pillow turns TIFFs itself as it loads them: the size skptm reports (for
    Grad-CAM maps and overlays) is the upright picture's, as for JPEG."""
    from skptm._images import oriented_size

    picture = Image.fromarray(pattern(40, 24))  # 24 high, 40 wide
    exif = Image.Exif()
    exif[0x0112] = 6  # turned a quarter
    for suffix in ("tif", "jpg", "png"):
        picture.save(tmp_path / f"turned.{suffix}", exif=exif)
        with Image.open(tmp_path / f"turned.{suffix}") as image:
            upright = np.asarray(ImageOps.exif_transpose(image))
        assert oriented_size(tmp_path / f"turned.{suffix}") == upright.shape[:2] == (40, 24), suffix


def test_the_same_picture_in_any_array_form_reads_the_same():
    """Whole values in another dtype, and an opaque RGBA array, resize as the
    8-bit picture does (and as its file does): the same pixels exactly."""
    picture = pattern(50, 30)  # 30 high, 50 wide
    expected = read(picture, size=(16, 16))
    for form in (
        picture.astype(np.int64),
        picture.astype(np.float32),
        np.dstack([picture, np.full((30, 50), 255, np.uint8)]),
    ):
        np.testing.assert_array_equal(read(form, size=(16, 16)), expected)
    rgba = np.dstack([picture, np.arange(30 * 50, dtype=np.uint8).reshape(30, 50)])
    as_file = Image.alpha_composite(Image.new("RGBA", (50, 30), "white"), Image.fromarray(rgba, "RGBA"))
    np.testing.assert_array_equal(array_to_rgb(rgba), np.asarray(as_file.convert("RGB")))


def test_encoded_images_in_a_fixed_width_bytes_array_keep_their_trailing_zero_bytes():
    """NumPy drops an ``S`` item's trailing zero bytes; a BMP whose last row
    is black ends in them, and must still decode."""
    import io

    from skptm._batches import as_source

    picture = pattern(8, 8)
    picture[0] = 0  # BMP stores rows bottom-up: the top row comes last
    encoded = io.BytesIO()
    Image.fromarray(picture).save(encoded, "BMP")
    longer = io.BytesIO()
    Image.fromarray(pattern(12, 12)).save(longer, "PNG")
    array = np.array([encoded.getvalue(), longer.getvalue()])
    assert len(array[0]) < len(encoded.getvalue())  # what NumPy gives back
    source = as_source(array, ImageReader((8, 8)))
    np.testing.assert_array_equal(ImageReader((8, 8))(source.items[0]), picture)
