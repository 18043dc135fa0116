"""skptm._batches: input forms to sources, batch streaming, per-item failures, decoding ahead, thread counts."""

import time
import warnings

import joblib
import numpy as np
import pytest
from PIL import Image

import skptm
import skptm._batches as batches
from skptm._batches import (
    ArraySource,
    ItemSource,
    TableSource,
    as_source,
    decode_once,
    default_n_threads,
    stream_batches,
)
from skptm._images import ImageReader
from skptm._threads import usable_cores

#: The reader's target (height, width): small, and not square, so that a transposed axis shows.
TARGET = (12, 16)


def random_images(n, height=TARGET[0], width=TARGET[1], seed=0):
    return np.random.default_rng(seed).integers(1, 256, (n, height, width, 3), dtype=np.uint8)


def resized(image, size=TARGET):
    """What Pillow's bilinear resize makes of one uint8 RGB array (the reader's default)."""
    height, width = size
    return np.asarray(Image.fromarray(image, "RGB").resize((width, height), Image.Resampling.BILINEAR))


def write_pngs(folder, images):
    paths = []
    for i, image in enumerate(images):
        paths.append(folder / f"{i}.png")
        Image.fromarray(image).save(paths[-1])
    return paths


def stacked(source, batch_size=4, **kwargs):
    """Every batch of ``source``, concatenated, and the batches themselves."""
    parts = list(stream_batches(source, batch_size, **kwargs))
    return np.concatenate([batch.data for batch in parts]), parts


# -- as_source: every input form -----------------------------------------------------------------


def test_a_uint8_stack_at_the_target_size_is_streamed_as_views_of_itself():
    X = random_images(10)
    source = as_source(X, ImageReader(TARGET))
    assert isinstance(source, ArraySource) and len(source) == 10
    data, parts = stacked(source)
    np.testing.assert_array_equal(data, X)
    assert [batch.indices for batch in parts] == [range(4), range(4, 8), range(8, 10)]
    assert all(batch.data.dtype == np.uint8 and np.shares_memory(batch.data, X) for batch in parts)
    assert all(batch.failures == [] for batch in parts)


def test_a_float_stack_keeps_its_values_as_float32():
    X = np.random.default_rng(1).uniform(0, 255, (5, *TARGET, 3))  # float64
    data, _ = stacked(as_source(X, ImageReader(TARGET)))
    assert data.dtype == np.float32
    np.testing.assert_array_equal(data, X.astype(np.float32))


def test_a_float_stack_in_unit_range_warns_that_0_255_is_expected():
    X = np.full((2, *TARGET, 3), 0.5)
    with pytest.warns(UserWarning, match=r"All image values lie in \[0, 1\]"):
        as_source(X, ImageReader(TARGET))


@pytest.mark.parametrize("form", [list, tuple, lambda X: np.array(list(X) + [None], dtype=object)[:-1]])
def test_float_images_in_unit_range_warn_in_a_collection_too(form):
    X = np.full((2, *TARGET, 3), 0.5)
    with pytest.warns(UserWarning, match=r"All image values lie in \[0, 1\]"):
        as_source(form(X), ImageReader(TARGET))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        as_source(form(X * 255), ImageReader(TARGET))


def test_a_grayscale_stack_is_repeated_into_three_channels():
    gray = random_images(3)[..., 0]
    data, _ = stacked(as_source(gray, ImageReader(TARGET)))
    np.testing.assert_array_equal(data, np.repeat(gray[..., None], 3, axis=-1))


def test_a_stack_of_another_size_is_resized_item_by_item():
    X = random_images(5, height=20, width=30)
    source = as_source(X, ImageReader(TARGET))
    data, _ = stacked(source, batch_size=2)
    np.testing.assert_array_equal(data, np.stack([resized(image) for image in X]))


def test_paths_bytes_and_pil_images_give_the_pixels_of_the_files(tmp_path):
    X = random_images(5)
    paths = write_pngs(tmp_path, X)
    encoded = [path.read_bytes() for path in paths]
    opened = [Image.open(path) for path in paths]
    for items in (paths, [str(path) for path in paths], tuple(paths), np.array(encoded, dtype=object), encoded, opened):
        source = as_source(items, ImageReader(TARGET))
        assert isinstance(source, ItemSource) and len(source) == 5
        data, _ = stacked(source, batch_size=2)
        assert data.dtype == np.uint8
        np.testing.assert_array_equal(data, X)
    for image in opened:
        image.close()


def test_files_of_other_sizes_are_resized_with_pillow(tmp_path):
    X = random_images(3, height=40, width=25, seed=2)
    data, _ = stacked(as_source(write_pngs(tmp_path, X), ImageReader(TARGET)))
    np.testing.assert_array_equal(data, np.stack([resized(image) for image in X]))


def test_a_ragged_list_of_arrays_is_read_item_by_item():
    rng = np.random.default_rng(3)
    items = [
        rng.integers(0, 256, (*TARGET, 3), dtype=np.uint8),  # at size: returned as it is
        rng.integers(0, 256, (30, 17, 3), dtype=np.uint8),  # resized
        rng.integers(0, 256, TARGET, dtype=np.uint8),  # grayscale
    ]
    data, parts = stacked(as_source(items, ImageReader(TARGET)), batch_size=2)
    assert [batch.data.dtype for batch in parts] == [np.uint8, np.uint8]
    np.testing.assert_array_equal(data[0], items[0])
    np.testing.assert_array_equal(data[1], resized(items[1]))
    np.testing.assert_array_equal(data[2], np.repeat(items[2][..., None], 3, axis=-1))


def test_a_batch_holding_one_float_image_is_float32_with_every_value_kept():
    uint8 = random_images(1)[0]
    floats = np.random.default_rng(4).uniform(0, 255, (*TARGET, 3)).astype(np.float32)
    (batch,) = stream_batches(as_source([uint8, floats], ImageReader(TARGET)), 2)
    assert batch.data.dtype == np.float32
    np.testing.assert_array_equal(batch.data, np.stack([uint8.astype(np.float32), floats]))


def test_a_table_without_a_reader_gives_its_rows_as_float32():
    table = np.arange(35, dtype=np.int64).reshape(7, 5)
    source = as_source(table, None)
    assert isinstance(source, TableSource) and len(source) == 7 and source.path(3) is None
    data, parts = stacked(source, batch_size=3)
    assert [batch.indices for batch in parts] == [range(3), range(3, 6), range(6, 7)]
    assert data.dtype == np.float32
    np.testing.assert_array_equal(data, table)


@pytest.mark.parametrize("X", [np.zeros((0, *TARGET, 3), np.uint8), []], ids=["array", "list"])
def test_no_items_is_a_value_error(X):
    with pytest.raises(ValueError, match="0 images"):
        as_source(X, ImageReader(TARGET))


# -- stream_batches --------------------------------------------------------------------------------


class SlowFirstReader(ImageReader):
    """Takes longer on earlier items, so their threads finish last."""

    def __call__(self, item):
        time.sleep(0.002 * (20 - int(item[0, 0, 0])))
        return super().__call__(item)


def test_batches_come_in_input_order_whatever_order_threads_finish_in():
    items = [np.full((*TARGET, 3), i, np.uint8) for i in range(20)]
    data, parts = stacked(ItemSource(items, SlowFirstReader(TARGET)), batch_size=6, n_jobs=4)
    np.testing.assert_array_equal(data[:, 0, 0, 0], np.arange(20))
    assert [batch.indices for batch in parts] == [range(6), range(6, 12), range(12, 18), range(18, 20)]


def test_indices_restrict_the_stream_to_those_items():
    X = random_images(10)
    for source in (as_source(X, ImageReader(TARGET)), as_source(list(X), ImageReader(TARGET))):
        parts = list(stream_batches(source, 3, indices=[1, 5, 6, 9]))
        assert [list(batch.indices) for batch in parts] == [[1, 5, 6], [9]]
        np.testing.assert_array_equal(np.concatenate([batch.data for batch in parts]), X[[1, 5, 6, 9]])
    assert list(stream_batches(as_source(X, ImageReader(TARGET)), 3, indices=[])) == []


def test_a_broken_file_is_a_failure_naming_its_index_and_path(tmp_path, image_dir):
    X = random_images(7)
    paths = write_pngs(tmp_path, X)
    paths[5] = image_dir / "truncated.jpg"
    parts = list(stream_batches(as_source(paths, ImageReader(TARGET)), 4))
    assert parts[0].failures == []
    parts[0].raise_first_failure()  # nothing to raise
    (failure,) = parts[1].failures
    assert failure.index == 5 and failure.path == str(paths[5])
    assert failure.summary().startswith(f"5 ({paths[5]}): ")
    np.testing.assert_array_equal(parts[1].data[1], 0)  # the failed row is zeros
    np.testing.assert_array_equal(parts[1].data[[0, 2]], X[[4, 6]])
    with pytest.raises(skptm.ImageReadError, match="index 5") as raised:
        parts[1].raise_first_failure()
    assert raised.value.index == 5 and raised.value.path == str(paths[5])
    assert raised.value.__cause__ is failure.cause


def test_a_failed_item_without_a_path_names_its_index_only():
    X = random_images(3)
    items = [Image.fromarray(X[0]), b"not an image", X[2]]
    (batch,) = stream_batches(as_source(items, ImageReader(TARGET)), 3)
    (failure,) = batch.failures
    assert failure.index == 1 and failure.path is None
    with pytest.raises(skptm.ImageReadError) as raised:
        batch.raise_first_failure()
    assert raised.value.index == 1 and raised.value.path is None
    np.testing.assert_array_equal(batch.data[[0, 2]], X[[0, 2]])


def test_an_invalid_image_in_a_stack_at_the_target_size_is_named_by_its_index():
    X = np.random.default_rng(5).uniform(0, 255, (6, *TARGET, 3)).astype(np.float32)
    X[4, 3, 2, 1] = np.nan
    parts = list(stream_batches(as_source(X, ImageReader(TARGET)), 3))
    assert parts[0].failures == []
    assert [failure.index for failure in parts[1].failures] == [4]
    np.testing.assert_array_equal(parts[1].data[[0, 2]], X[[3, 5]])
    np.testing.assert_array_equal(parts[1].data[1], 0)


# -- decode_once -----------------------------------------------------------------------------------


def test_decoding_ahead_gives_the_values_of_the_stream_and_keeps_the_paths(tmp_path):
    X = random_images(9, height=20, width=14)
    paths = write_pngs(tmp_path, X)
    source = as_source(paths, ImageReader(TARGET))
    decoded = decode_once(source, batch_size=4)
    assert decoded is not source and len(decoded) == 9
    assert decoded.items.dtype == np.uint8
    np.testing.assert_array_equal(decoded.items, stacked(source)[0])
    np.testing.assert_array_equal(stacked(decoded, batch_size=4)[0], np.stack([resized(image) for image in X]))
    assert decoded.path(7) == str(paths[7])
    shuffled = [5, 0, 8]
    (batch,) = stream_batches(decoded, 3, indices=shuffled)
    np.testing.assert_array_equal(batch.data, decoded.items[shuffled])


def test_sources_that_need_no_decoding_are_returned_as_they_are():
    for source in (as_source(random_images(3), ImageReader(TARGET)), as_source(np.ones((3, 4)), None)):
        assert decode_once(source, batch_size=2) is source


def test_a_16_bit_file_makes_the_decoded_images_float32(image_dir):
    paths = [image_dir / "rgb.png", image_dir / "gray16.png", image_dir / "rgb.png"]
    source = as_source(paths, ImageReader(TARGET))
    decoded = decode_once(source, batch_size=1)
    assert decoded.items.dtype == np.float32
    np.testing.assert_array_equal(decoded.items, stacked(source, batch_size=1)[0].astype(np.float32))


def test_the_budget_bounds_what_is_decoded_ahead(image_dir, monkeypatch):
    eight_bit = as_source([image_dir / "rgb.png"] * 4, ImageReader(TARGET))
    n_values = 4 * TARGET[0] * TARGET[1] * 3
    monkeypatch.setattr(batches, "DECODED_IMAGES_BUDGET", n_values)
    assert decode_once(eight_bit, batch_size=2) is not eight_bit  # exactly fits
    sixteen_bit = as_source([image_dir / "rgb.png", image_dir / "gray16.png"] * 2, ImageReader(TARGET))
    assert decode_once(sixteen_bit, batch_size=2) is sixteen_bit  # float32 takes four times as much
    monkeypatch.setattr(batches, "DECODED_IMAGES_BUDGET", n_values - 1)
    assert decode_once(eight_bit, batch_size=2) is eight_bit
    monkeypatch.setattr(batches, "DECODED_IMAGES_BUDGET", 0)
    assert decode_once(eight_bit, batch_size=2) is eight_bit


def test_decoding_ahead_raises_for_an_unreadable_item(image_dir):
    paths = [image_dir / "rgb.png", image_dir / "rgb.jpg", image_dir / "not_an_image.jpg"]
    with pytest.raises(skptm.ImageReadError) as raised:
        decode_once(as_source(paths, ImageReader(TARGET)), batch_size=2)
    assert raised.value.index == 2 and raised.value.path == str(paths[2])


# -- default_n_threads -----------------------------------------------------------------------------


def test_decoding_threads_follow_n_jobs_then_parallel_config_then_the_worker_share(monkeypatch):
    cores = usable_cores()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert default_n_threads() == min(8, cores)
    assert default_n_threads(5) == 5
    assert default_n_threads(-1) == cores
    assert default_n_threads(-2) == max(1, cores - 1)
    assert default_n_threads(-(cores + 10)) == 1  # never below one thread
    with pytest.raises(ValueError, match="n_jobs=0"):
        default_n_threads(0)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # a worker's share
    assert default_n_threads() == 1
    assert default_n_threads(4) == 4  # an explicit count wins
    with joblib.parallel_config(n_jobs=3):
        assert default_n_threads() == 3  # so does an active parallel_config
    with joblib.parallel_config(n_jobs=-1):
        assert default_n_threads() == cores
