"""Shared fixtures: image files written here, light networks built once."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # test logs only; skptm sets nothing

if "PYTEST_XDIST_WORKER_COUNT" in os.environ and "OMP_NUM_THREADS" not in os.environ:
    # Each pytest-xdist worker is one of several processes sharing the cores,
    # as a joblib worker is: it gets its share (skptm sizes TensorFlow,
    # OpenVINO and decoding threads to it), so that two workers on two cores
    # run two busy threads, not four.
    os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))

import numpy as np
import pytest
from PIL import Image

#: Light backbones and a small size keep the suite fast on two cores.
LIGHT = "mobilenet_v2"
LIGHT_2 = "mobilenet_v3_small"
SIZE = 48


def runs_in(precision):
    """Skip a test that computes in ``precision`` where ``ONEDNN_MAX_CPU_ISA``
    hides it from a CPU that has it (a run imitating a smaller instruction
    set, e.g. AVX2 on an AVX-512 server): skptm refuses it there with a
    clear error, tested in test_engines.py. Everywhere else the test runs."""
    from skptm.engines.machine import isa_cap, precision_hidden_by_cap

    return pytest.mark.skipif(
        precision_hidden_by_cap(precision),
        reason=f"ONEDNN_MAX_CPU_ISA={isa_cap()} hides this CPU's {precision} from oneDNN",
    )


def assert_same_up_to_batching(actual, expected, *, probabilities=False):
    """``actual`` equals ``expected`` as far as skptm promises for rows computed
    in other batches (:data:`skptm._features.BATCHING_RTOL`): relative to each
    row's largest absolute value, or absolutely for probabilities in [0, 1]."""
    from skptm._features import BATCHING_RTOL

    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape
    scale = 1.0 if probabilities else np.abs(expected).max(axis=-1, keepdims=True)
    difference = np.abs(actual - expected).max()
    worst = (np.abs(actual - expected) / np.where(scale == 0, 1.0, scale)).max()
    assert worst <= BATCHING_RTOL, f"rows differ by {worst:.2e} of their scale ({difference:.2e} absolute)"


def pytest_configure(config):
    """Converted OpenVINO models go to one folder per test session (shared by
    the xdist workers, which inherit the environment), never to ~/.cache."""
    if "PYTEST_XDIST_WORKER" in os.environ:
        from skptm._threads import configure_tensorflow

        configure_tensorflow()  # before any test starts TensorFlow's runtime
    if "SKPTM_CACHE_DIR" not in os.environ:
        import tempfile

        os.environ["SKPTM_CACHE_DIR"] = tempfile.mkdtemp(prefix="skptm-tests-")


def pattern(width=80, height=60):
    """An RGB picture whose left half is red and right half blue, with a
    green stripe on top: orientation and channel order are visible in it."""
    image = np.zeros((height, width, 3), dtype=np.uint8)
    image[:, : width // 2, 0] = 220
    image[:, width // 2 :, 2] = 200
    image[: height // 6, :, 1] = 180
    return image


@pytest.fixture(scope="session")
def image_dir(tmp_path_factory):
    """A folder of real image files in many formats and modes."""
    root = tmp_path_factory.mktemp("images")
    rgb = Image.fromarray(pattern())
    rgb.save(root / "rgb.jpg", quality=95)
    rgb.save(root / "rgb.png")
    rgb.save(root / "rgb.bmp")
    rgb.save(root / "rgb.webp", lossless=True)
    rgb.save(root / "rgb.tiff")
    rgb.convert("L").save(root / "gray.png")
    rgb.convert("L").save(root / "gray.jpg")
    rgb.convert("1").save(root / "bilevel.png")
    rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=8).save(root / "palette.gif")
    rgb.convert("CMYK").save(root / "cmyk.jpg", quality=95)

    rgba = rgb.convert("RGBA")
    alpha = np.full((60, 80), 255, np.uint8)
    alpha[:, :20] = 0  # transparent left strip, which stores black
    rgba.putalpha(Image.fromarray(alpha))
    rgba.save(root / "rgba.png")
    rgba.convert("LA").save(root / "la.png")

    sixteen = (np.asarray(rgb.convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
    Image.fromarray(sixteen).save(root / "gray16.png")

    # Stored as portrait 60x80, with EXIF orientation 6: shown rotated 90°
    # clockwise, i.e. upright as the 80x60 landscape pattern.
    stored = rgb.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(root / "exif_rotated.jpg", exif=exif, quality=95)

    frames = [Image.new("RGB", (40, 30), colour) for colour in ((250, 0, 0), (0, 0, 250))]
    frames[0].save(root / "animated.gif", save_all=True, append_images=frames[1:], duration=50)

    Image.fromarray(pattern(1600, 1200)).save(root / "large.jpg", quality=90)

    good = (root / "rgb.jpg").read_bytes()
    (root / "truncated.jpg").write_bytes(good[: len(good) // 3])
    (root / "not_an_image.jpg").write_text("this is text, not a JPEG")
    return root


@pytest.fixture(scope="session")
def good_paths(image_dir):
    names = [
        "rgb.jpg",
        "rgb.png",
        "gray.png",
        "palette.gif",
        "cmyk.jpg",
        "rgba.png",
        "la.png",
        "gray16.png",
        "exif_rotated.jpg",
        "animated.gif",
        "large.jpg",
        "rgb.bmp",
        "rgb.webp",
        "rgb.tiff",
        "bilevel.png",
        "gray.jpg",
    ]
    return [image_dir / name for name in names]


@pytest.fixture(scope="session")
def image_set():
    """Small labelled uint8 images: two classes that differ in colour."""
    rng = np.random.default_rng(0)
    n = 24
    y = np.arange(n) % 2
    X = rng.integers(0, 60, size=(n, SIZE, SIZE, 3)).astype(np.uint8)
    X[y == 0, :, :, 0] += 180  # reddish
    X[y == 1, :, :, 2] += 180  # bluish
    return X, y


@pytest.fixture(scope="session")
def colours():
    """24 images, 32 px: 'red' or 'blue', easy for any working training loop."""
    rng = np.random.default_rng(0)
    y = np.array(["red", "blue"] * 12)
    X = rng.integers(0, 60, (24, 32, 32, 3)).astype(np.uint8)
    X[y == "red", :, :, 0] += 190
    X[y == "blue", :, :, 2] += 190
    return X, y
