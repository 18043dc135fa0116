"""The per-image feature cache: hits, keys, damage, concurrency, interruption."""

import shutil
import warnings
from pathlib import Path

import joblib
import numpy as np
import pytest
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline

from skptm import FeatureCacheWarning, FineTunedClassifier, PretrainedFeatureTransformer

from .conftest import LIGHT, LIGHT_2, SIZE, assert_same_up_to_batching, runs_in


def make(cache, **params):
    params = {"backbone": LIGHT, "weights": None, "input_size": SIZE, "batch_size": 4, **params}
    return PretrainedFeatureTransformer(cache=cache, **params)


def entries(cache):
    return sorted(p for p in Path(cache).rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    paths = []
    for i in range(10):
        path = folder / f"photo {i}.jpg"
        Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(path, quality=90)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def plain(photos):
    return make(None).transform(photos)


def count_network_calls(monkeypatch):
    from skptm.networks import FeatureNetwork

    calls = []
    predict = FeatureNetwork.predict
    monkeypatch.setattr(FeatureNetwork, "predict", lambda self, batch: calls.append(len(batch)) or predict(self, batch))
    return calls


def test_second_transform_reads_the_cache_and_equals_the_first(tmp_path, photos, plain, monkeypatch):
    first = make(tmp_path).transform(photos)
    assert len(entries(tmp_path)) == len(photos)
    np.testing.assert_array_equal(first, plain)
    calls = count_network_calls(monkeypatch)
    second = make(tmp_path).transform(photos)
    assert calls == []
    np.testing.assert_array_equal(second, plain)


def test_only_new_items_are_computed_and_order_is_kept(tmp_path, photos, plain, monkeypatch):
    make(tmp_path).transform(photos[2:5])
    calls = count_network_calls(monkeypatch)
    mixed = make(tmp_path).transform(photos[::-1])
    assert sum(calls) == len(photos) - 3 + (-(len(photos) - 3)) % 4  # padded batches of 4
    np.testing.assert_array_equal(mixed, plain[::-1])


def test_keyed_by_content_not_by_path(tmp_path, photos, plain):
    from skptm._feature_cache import FORMAT_VERSION

    first = make(tmp_path).transform(photos[:1])
    copy = tmp_path / "elsewhere" / "renamed.jpg"
    copy.parent.mkdir()
    shutil.copy(photos[0], copy)
    assert len(entries(tmp_path / f"v{FORMAT_VERSION}")) == 1
    np.testing.assert_array_equal(make(tmp_path).transform([copy]), first)  # read from the cache
    assert len(entries(tmp_path / f"v{FORMAT_VERSION}")) == 1


def test_arrays_bytes_and_pil_images_are_cached(tmp_path, photos):
    images = [np.asarray(Image.open(p)) for p in photos[:3]]
    stack = np.stack(images)
    extractor = make(tmp_path)
    for X in (stack, images, [p.read_bytes() for p in photos[:3]], [Image.open(p) for p in photos[:3]]):
        first = extractor.transform(X)
        np.testing.assert_array_equal(extractor.transform(X), first)
    assert len(entries(tmp_path)) == 9  # arrays (stacked or listed: one key each), bytes, PIL images


@pytest.mark.parametrize(
    "change",
    [
        {"backbone": LIGHT_2},
        {"pooling": "max"},
        {"input_size": SIZE + 16},
        {"resize": "center_crop"},
        pytest.param({"precision": "bfloat16"}, marks=runs_in("bfloat16")),
    ],
    ids=lambda change: next(iter(change)),
)
def test_each_configuration_has_its_own_entries(tmp_path, photos, change):
    make(tmp_path).transform(photos[:2])
    changed = make(tmp_path, **change)
    np.testing.assert_array_equal(changed.transform(photos[:2]), make(None, **change).transform(photos[:2]))
    assert len(entries(tmp_path)) == 4


def test_weights_file_is_part_of_the_key(tmp_path, photos):
    import keras

    model = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(SIZE, SIZE, 3))
    model.save_weights(tmp_path / "a.weights.h5")
    model.set_weights([w * 1.5 for w in model.get_weights()])  # other weights, same architecture
    model.save_weights(tmp_path / "b.weights.h5")

    cache = tmp_path / "cache"
    a = make(cache, weights=tmp_path / "a.weights.h5").transform(photos[:2])
    b = make(cache, weights=tmp_path / "b.weights.h5").transform(photos[:2])
    assert not np.array_equal(a, b)
    assert len(entries(cache)) == 4


def test_damaged_entries_are_recomputed_with_a_warning(tmp_path, photos, plain):
    make(tmp_path).transform(photos[:3])
    truncated, corrupt, _ = entries(tmp_path)
    truncated.write_bytes(truncated.read_bytes()[:100])
    data = bytearray(corrupt.read_bytes())
    data[10] ^= 0xFF
    corrupt.write_bytes(bytes(data))
    with pytest.warns(FeatureCacheWarning, match="2 feature cache entries.*damaged.*damaged") as caught:
        again = make(tmp_path).transform(photos[:3])
    assert len(caught) == 1
    np.testing.assert_array_equal(again, plain[:3])
    with warnings.catch_warnings():
        warnings.simplefilter("error", FeatureCacheWarning)
        np.testing.assert_array_equal(make(tmp_path).transform(photos[:3]), plain[:3])  # rewritten


def test_write_failures_warn_once_and_compute(tmp_path, photos, plain):
    make(tmp_path).transform(photos[:1])
    (root,) = {path.parent.parent for path in entries(tmp_path)}
    shutil.rmtree(root)
    root.mkdir()
    for shard in range(256):  # every entry's folder is blocked by a file
        (root / f"{shard:02x}").write_text("")
    with pytest.warns(FeatureCacheWarning, match="cannot be written where they go.*skipped") as caught:
        features = make(tmp_path).transform(photos[:3])
    assert len(caught) == 1
    np.testing.assert_array_equal(features, plain[:3])
    shutil.rmtree(root)
    root.write_text("")  # a file where the configuration's folder goes: nothing can be cached
    with pytest.warns(FeatureCacheWarning, match="cannot be used") as caught:
        np.testing.assert_array_equal(make(tmp_path).transform(photos[:3]), plain[:3])
    assert len(caught) == 1


def test_one_blocked_entry_leaves_the_others_cached(tmp_path, photos, plain):
    """A folder where one entry's file goes skips that entry only: damaged
    entries beside it are still rewritten, and new ones written."""
    make(tmp_path).transform(photos[:3])
    blocked, damaged, _ = entries(tmp_path)
    blocked.unlink()
    blocked.mkdir()
    damaged.write_bytes(b"damaged")
    with pytest.warns(FeatureCacheWarning) as caught:
        np.testing.assert_array_equal(make(tmp_path).transform(photos[:5]), plain[:5])
    messages = " ".join(str(w.message) for w in caught)
    assert "cannot be written where they go" in messages and "not writable" not in messages
    assert len(entries(tmp_path)) == 4  # the damaged one rewritten, two new ones, the blocked one skipped
    with warnings.catch_warnings(record=True) as again:
        warnings.simplefilter("always", FeatureCacheWarning)
        make(tmp_path).transform([photos[i] for i in (1, 3, 4)])
    assert not again  # rewritten and written: read without a warning


def test_a_file_in_place_of_the_directory_warns(tmp_path, photos, plain):
    blocker = tmp_path / "cache"
    blocker.write_text("not a directory")
    with pytest.warns(FeatureCacheWarning, match="cannot be used"):
        np.testing.assert_array_equal(make(blocker).transform(photos[:2]), plain[:2])


def test_interrupted_write_leaves_no_entry_and_no_temporary_file(tmp_path, photos, monkeypatch):
    import skptm._feature_cache as feature_cache

    def interrupted(source, destination):
        raise KeyboardInterrupt

    monkeypatch.setattr(feature_cache.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        make(tmp_path).transform(photos[:2])
    assert entries(tmp_path) == []


def _transform_into(cache, paths):
    return make(cache).transform(paths)


@pytest.mark.exhaustive  # slow (a real process pool or a fresh process): in the second tier, which .ci/run also runs
def test_two_processes_writing_at_once(tmp_path, photos, plain):
    results = joblib.Parallel(n_jobs=2, backend="loky")(
        joblib.delayed(_transform_into)(tmp_path, photos) for _ in range(2)
    )
    for result in results:
        # Workers run TensorFlow on their share of the cores: other sums, within the bound.
        assert_same_up_to_batching(result, plain)
    assert len(entries(tmp_path)) == len(photos)  # no temporary file left behind
    with warnings.catch_warnings():
        warnings.simplefilter("error", FeatureCacheWarning)
        np.testing.assert_array_equal(make(tmp_path).transform(photos), results[0])  # the entries written


def test_unreadable_items_are_not_cached(tmp_path, photos, image_dir):
    X = [photos[0], image_dir / "truncated.jpg", image_dir / "missing.jpg"]
    with pytest.warns(UserWarning, match="2 of 3"):
        features = make(tmp_path, on_error="nan").transform(X)
    assert np.isnan(features[1:]).all() and np.isfinite(features[0]).all()
    assert len(entries(tmp_path)) == 1


def test_grid_search_computes_each_image_once_per_backbone(tmp_path, photos, monkeypatch):
    y = np.arange(len(photos)) % 2
    pipeline = make_pipeline(make(tmp_path), LogisticRegression())
    grid = {"pretrainedfeaturetransformer__backbone": [LIGHT, LIGHT_2], "logisticregression__C": [0.1, 1.0]}
    calls = count_network_calls(monkeypatch)
    cached = GridSearchCV(pipeline, grid, cv=2).fit(photos, y)
    images_computed = sum(calls)
    assert images_computed <= 2 * (len(photos) + 2 * 4)  # once per backbone (+ padding of each batch run)
    uncached = GridSearchCV(make_pipeline(make(None), LogisticRegression()), grid, cv=2).fit(photos, y)
    np.testing.assert_array_equal(cached.cv_results_["mean_test_score"], uncached.cv_results_["mean_test_score"])


def test_finetuning_head_phase_shares_the_transformers_entries(tmp_path, photos, monkeypatch):
    make(tmp_path, batch_size=32, engine="tensorflow").transform(photos)  # training's engine
    before = entries(tmp_path)
    calls = count_network_calls(monkeypatch)
    y = np.arange(len(photos)) % 2
    clf = FineTunedClassifier(LIGHT, weights=None, input_size=SIZE, unfreeze=0, cache=tmp_path, random_state=0).fit(
        photos, y
    )
    assert calls == []  # phase 1 read every feature from the cache
    assert entries(tmp_path) == before
    uncached = FineTunedClassifier(LIGHT, weights=None, input_size=SIZE, unfreeze=0, random_state=0).fit(photos, y)
    np.testing.assert_array_equal(clf.predict_proba(photos), uncached.predict_proba(photos))


def test_reduced_precision_entries_are_kept_apart_per_kind_of_kernel(monkeypatch):
    """float32 features agree across CPUs to about 5e-7 and share entries;
    bfloat16 rounds differently on AMX and on AVX-512 BF16 (about 1e-2), and
    a GPU's float32 may run in TF32: those are keyed by what computed them."""
    from skptm import _feature_cache
    from skptm.engines import machine

    def on(flags, gpu=None):
        here = machine.Machine("x86_64", "a CPU", tuple(flags), 2, gpu)
        monkeypatch.setattr(machine, "this_machine", lambda: here)
        return {precision: _feature_cache.kernel_kind(precision) for precision in ("float32", "bfloat16")}

    amx = on(("avx2", "avx512f", "avx512_bf16", "amx_bf16"))
    avx512_bf16 = on(("avx2", "avx512f", "avx512_bf16"))
    avx2 = on(("avx2",))
    assert amx["float32"] == avx512_bf16["float32"] == avx2["float32"] == ""
    assert len({amx["bfloat16"], avx512_bf16["bfloat16"], avx2["bfloat16"]}) == 3
    gpu = on(("avx2",), gpu="NVIDIA H200 (compute capability 9.0)")
    assert gpu["float32"] and "H200" in gpu["float32"]


def test_entries_of_an_earlier_decoding_are_not_read(tmp_path, photos, monkeypatch):
    """Decoding that gives other pixels for some items (a transparency key now
    white) leaves the file's bytes as they were: its version keys the entries."""
    from skptm import _feature_cache

    monkeypatch.setattr(_feature_cache, "DECODING_VERSION", _feature_cache.DECODING_VERSION - 1)
    make(tmp_path).transform(photos[:2])
    monkeypatch.undo()
    make(tmp_path).transform(photos[:2])
    assert len({path.parent.parent for path in entries(tmp_path)}) == 2  # two configurations


def test_a_full_disk_stops_caching_once(tmp_path, photos, plain, monkeypatch):
    """Out of space, every entry would fail: caching stops, with one warning."""
    import errno

    from skptm import _feature_cache

    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device", path)

    monkeypatch.setattr(_feature_cache, "atomic_write_bytes", full)
    with pytest.warns(FeatureCacheWarning, match="not writable.*No space left") as caught:
        np.testing.assert_array_equal(make(tmp_path).transform(photos[:4]), plain[:4])
    assert len(caught) == 1
