"""engine="openvino": the same features as TensorFlow, converted once, cached on disk."""

import os
import pickle
import re
import shutil
import subprocess
import sys
import textwrap
import threading
import warnings

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("openvino", reason="the test extra installs OpenVINO")

from skptm import FineTunedClassifier, OpenVINOCacheWarning, PretrainedFeatureTransformer
from skptm.engines import openvino as _openvino

from .conftest import LIGHT, SIZE, runs_in


def cosine(a, b):
    from skptm.engines.calibration import cosines

    return cosines(a, b)


def tiny_cnn():
    """A small backbone of any input size: converts in about a second, where
    a registry network takes several (the mechanics tests use it)."""
    import keras

    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu", name="conv_a")(inputs)
    x = keras.layers.Conv2D(16, 3, strides=2, activation="relu", name="conv_b")(x)
    return keras.Model(inputs, x, name="tiny_cnn")


TINY = tiny_cnn


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).integers(0, 256, (12, SIZE, SIZE, 3), dtype=np.uint8)


def features(engine, X, precision="float32", **params):
    params = {"weights": None, "input_size": SIZE, **params}
    backbone = params.pop("backbone", LIGHT)
    return PretrainedFeatureTransformer(backbone, engine=engine, precision=precision, **params).transform(X)


# -- the same features --------------------------------------------------------------------------


def test_same_features_for_a_registry_network(images):
    reference = features("tensorflow", images)
    converted = features("openvino", images)
    assert converted.shape == reference.shape and converted.dtype == np.float32
    assert cosine(reference, converted).min() >= 0.99999


def test_float_images_are_not_rounded(images, tmp_path):
    """Images that are not 8-bit (float arrays, 16-bit PNG files) reach the
    converted network as they are: a uint8 input would truncate them."""
    fractional = images.astype(np.float32) * 0.7 + 0.35
    reference = features("tensorflow", fractional, backbone=TINY)
    converted = features("openvino", fractional, backbone=TINY)
    scale = np.abs(reference).max()
    assert np.abs(converted - reference).max() <= 1e-5 * scale
    assert np.abs(features("openvino", np.floor(fractional), backbone=TINY) - converted).max() > 1e-3 * scale
    paths = []
    for i, image in enumerate(images[:4]):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(image[..., 0].astype(np.uint16) * 257 + i).save(paths[-1])  # 16-bit grey
    np.testing.assert_allclose(
        features("openvino", paths, backbone=TINY),
        features("tensorflow", paths, backbone=TINY),
        rtol=0,
        atol=1e-5 * scale,
    )
    assert (
        cosine(features("tensorflow", images, backbone=TINY), features("openvino", images, backbone=TINY)).min()
        >= 0.99999
    )


@pytest.mark.parametrize("family", ["caffe", "tf", "torch", "none"])
def test_same_features_for_every_preprocessing_family(family, images):
    """The preprocessing layer converts as it computes, for each family (every
    network's own conversion is measured by skptm calibrate, which refuses
    OpenVINO where its features are not within cosine 0.9999)."""
    reference = features("tensorflow", images, backbone=TINY, preprocessing=family)
    converted = features("openvino", images, backbone=TINY, preprocessing=family)
    assert converted.shape == reference.shape and converted.dtype == np.float32
    assert cosine(reference, converted).min() >= 0.99999


@pytest.mark.parametrize(
    "params",
    [{"pooling": "max"}, {"pooling": None}, {"layer": ["conv_a", "conv_b"]}],
    ids=["max", "flat", "layers"],
)
def test_same_features_for_layers_and_pooling(params, images):
    reference = features("tensorflow", images, backbone=TINY, **params)
    converted = features("openvino", images, backbone=TINY, **params)
    assert converted.shape == reference.shape
    assert cosine(reference, converted).min() >= 0.99999


@runs_in("bfloat16")
def test_bfloat16_is_close(images):
    reference = features("tensorflow", images)
    assert cosine(reference, features("openvino", images, precision="bfloat16")).min() >= 0.999


def test_one_row_per_item_in_order_nan_for_unreadable(tmp_path, images):
    paths = []
    for i, image in enumerate(images[:5]):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(image).save(paths[-1])
    broken = tmp_path / "broken.jpg"
    broken.write_text("not a JPEG")
    mixed = [paths[3], broken, paths[0], paths[4]]
    transformer = PretrainedFeatureTransformer(LIGHT, weights=None, input_size=SIZE, engine="openvino", on_error="nan")
    with pytest.warns(UserWarning, match="broken.jpg"):
        out = transformer.transform(mixed)
    whole = transformer.transform(paths)
    assert out.shape == (4, whole.shape[1])
    assert np.isnan(out[1]).all()
    np.testing.assert_allclose(out[[0, 2, 3]], whole[[3, 0, 4]], rtol=1e-5, atol=1e-6)


def test_fine_tuned_inference(images):
    y = np.arange(len(images)) % 2
    clf = FineTunedClassifier(
        LIGHT,
        weights=None,
        input_size=SIZE,
        head_epochs=2,
        unfreeze=1,
        finetune_epochs=1,
        random_state=0,
        engine="tensorflow",
    ).fit(images, y)
    size = len(pickle.dumps(clf))
    reference_proba, reference_features = clf.predict_proba(images), clf.transform(images)
    clf.set_params(engine="openvino")
    np.testing.assert_allclose(clf.predict_proba(images), reference_proba, atol=1e-5)
    assert cosine(clf.transform(images), reference_features).min() >= 0.99999
    np.testing.assert_array_equal(clf.predict(images), reference_proba.argmax(axis=1))
    clf.set_params(engine="tensorflow")
    assert len(pickle.dumps(clf)) == size  # nothing OpenVINO travels with it
    assert "openvino" not in pickle.dumps(clf).decode("latin-1").lower()


def test_auto_does_not_convert_a_fitted_model_for_a_small_call(images):
    y = np.arange(len(images)) % 2
    clf = FineTunedClassifier(
        LIGHT, weights=None, input_size=SIZE, head_epochs=2, unfreeze=0, random_state=0, engine="auto"
    ).fit(images, y)
    before = _openvino.cache_info()["conversions"]
    clf.predict(images)
    assert _openvino.cache_info()["conversions"] == before


@runs_in("bfloat16")
def test_a_model_trained_in_bfloat16_is_not_converted(images):
    y = np.arange(len(images)) % 2
    clf = FineTunedClassifier(
        LIGHT,
        weights=None,
        input_size=SIZE,
        head_epochs=1,
        unfreeze=0,
        random_state=0,
        precision="bfloat16",
        engine="openvino",
    )
    with pytest.raises(ValueError, match="trained in float32"):
        clf.fit(images, y)  # refused before training
    assert not hasattr(clf, "model_")


def test_threads_share_one_compiled_model(images):
    transformer = PretrainedFeatureTransformer(LIGHT, weights=None, input_size=SIZE, engine="openvino")
    expected = transformer.transform(images)
    results = [None] * 4

    def run(i):
        results[i] = transformer.transform(images)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for result in results:
        np.testing.assert_array_equal(result, expected)


def test_pickles_and_clones_stay_small(images):
    transformer = PretrainedFeatureTransformer(LIGHT, weights=None, input_size=SIZE, engine="openvino")
    size = len(pickle.dumps(transformer))
    transformer.transform(images)
    assert len(pickle.dumps(transformer)) == size < 1000


# -- the disk cache and other processes ----------------------------------------------------------


SECOND_PROCESS = """
import sys, time, numpy as np
from skptm import PretrainedFeatureTransformer
from skptm.engines import openvino as _openvino
from tests.test_openvino import tiny_cnn
X = np.load(sys.argv[1])
start = time.perf_counter()
out = PretrainedFeatureTransformer({backbone}, weights=None, input_size={size}, engine="openvino").transform(X)
print(time.perf_counter() - start, _openvino.cache_info()["conversions"], _openvino.cache_info()["disk_hits"])
np.save(sys.argv[2], out)
"""


def run_process(tmp_path, cache, images, backbone="tiny_cnn", size=SIZE):
    np.save(tmp_path / "x.npy", images)
    script = textwrap.dedent(SECOND_PROCESS.format(backbone=backbone, size=size))
    env = {**os.environ, "SKPTM_CACHE_DIR": str(cache), "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "x.npy"), str(tmp_path / "out.npy")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    seconds, conversions, hits = out.stdout.split()[-3:]
    return float(seconds), int(conversions), int(hits), np.load(tmp_path / "out.npy")


@pytest.mark.exhaustive  # slow (a real process pool or a fresh process): in the second tier, which .ci/run also runs
def test_a_second_process_reads_the_converted_model(tmp_path, images):
    cache = tmp_path / "cache"
    _, conversions, hits, first = run_process(tmp_path, cache, images)
    assert (conversions, hits) == (1, 0)
    assert list((cache / "openvino").glob("*.xml")) and not list((cache / "openvino").glob("*.tmp*"))
    _, conversions, hits, second = run_process(tmp_path, cache, images)
    assert (conversions, hits) == (0, 1)
    np.testing.assert_array_equal(first, second)


@pytest.mark.exhaustive  # slow (processes): in the second tier, which .ci/run also runs
def test_a_damaged_entry_is_converted_again(tmp_path, images, monkeypatch):
    cache = tmp_path / "cache"
    run_process(tmp_path, cache, images)
    for binary in (cache / "openvino").glob("*.bin"):
        binary.write_bytes(binary.read_bytes()[:100])
    for compiled in (cache / "openvino").rglob("*.blob"):
        compiled.unlink()
    monkeypatch.setenv("SKPTM_CACHE_DIR", str(cache))
    transformer = PretrainedFeatureTransformer(TINY, weights=None, input_size=SIZE + 8, engine="openvino")
    transformer.transform(images[:2])  # another network: converted and stored beside the damaged one
    _openvino._compiled.clear()
    reference = features("tensorflow", images, backbone=TINY)
    with pytest.warns(OpenVINOCacheWarning, match="could not be read"):
        out = features("openvino", images, backbone=TINY)
    assert cosine(reference, out).min() >= 0.99999
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _openvino._compiled.clear()
        features("openvino", images, backbone=TINY)  # the entry was replaced by a good one


def test_a_converted_model_changed_in_place_is_converted_again(tmp_path, images, monkeypatch):
    """Weights changed on disk at the same size still compile: the entry's
    checksum catches them, and an entry stored without one (an older skptm)
    is converted again quietly."""
    monkeypatch.setenv("SKPTM_CACHE_DIR", str(tmp_path))
    _openvino._compiled.clear()
    reference = features("tensorflow", images, backbone=TINY, input_size=SIZE + 16)
    features("openvino", images, backbone=TINY, input_size=SIZE + 16)
    [converted] = (tmp_path / "openvino").glob("*.xml")
    binary = converted.with_suffix(".bin")
    data = bytearray(binary.read_bytes())
    # Every float32 weight tensor's values reversed: the same size and shapes, so it still compiles.
    for match in re.finditer(r'element_type="f32" shape="[^"]*" offset="(\d+)" size="(\d+)"', converted.read_text()):
        start, size = int(match.group(1)), int(match.group(2))
        if size >= 256:
            data[start : start + size] = np.frombuffer(bytes(data[start : start + size]), "<f4")[::-1].tobytes()
    binary.write_bytes(bytes(data))
    shutil.rmtree(tmp_path / "openvino" / "compiled", ignore_errors=True)
    _openvino._compiled.clear()
    with pytest.warns(OpenVINOCacheWarning, match="do not match their checksum"):
        out = features("openvino", images, backbone=TINY, input_size=SIZE + 16)
    assert cosine(reference, out).min() >= 0.99999

    converted.with_suffix(".blake2b").unlink()
    network = PretrainedFeatureTransformer(TINY, weights=None, input_size=SIZE + 16)._network()
    assert not _openvino.is_on_disk(network.model, True)  # to be converted again: not counted as prepared
    _openvino._compiled.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error", OpenVINOCacheWarning)
        out = features("openvino", images, backbone=TINY, input_size=SIZE + 16)
    assert cosine(reference, out).min() >= 0.99999 and converted.with_suffix(".blake2b").is_file()


def test_an_unwritable_cache_only_warns(tmp_path, images, monkeypatch):
    blocked = tmp_path / "file"
    blocked.write_text("a file where the cache folder should be")
    monkeypatch.setenv("SKPTM_CACHE_DIR", str(blocked))
    with pytest.warns(OpenVINOCacheWarning, match="SKPTM_CACHE_DIR"):
        out = features("openvino", images, backbone=TINY, input_size=SIZE - 8)
    assert np.isfinite(out).all()


# -- without OpenVINO, and the choice of "auto" --------------------------------------------------


def test_without_openvino(tmp_path):
    script = textwrap.dedent("""
        import sys
        sys.modules["openvino"] = None  # as if it were not installed
        import numpy as np
        from skptm import PretrainedFeatureTransformer
        X = np.zeros((2, 32, 32, 3), np.uint8)
        auto = PretrainedFeatureTransformer("mobilenet_v2", weights=None, input_size=32)
        assert auto._network().engine == "tensorflow"
        auto.transform(X)
        try:
            PretrainedFeatureTransformer("mobilenet_v2", weights=None, input_size=32, engine="openvino").transform(X)
        except ImportError as exc:
            print(exc)
    """)
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert 'pip install "skptm[openvino]"' in out.stdout


@pytest.mark.exhaustive  # slow (processes): in the second tier, which .ci/run also runs
def test_grid_search_workers_read_the_converted_model(tmp_path, images, monkeypatch):
    """loky workers (other processes) read the model the parent converted."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline

    monkeypatch.setenv("SKPTM_CACHE_DIR", str(tmp_path))  # inherited by the workers
    _openvino._compiled.clear()
    y = np.arange(len(images)) % 2
    pipe = make_pipeline(
        PretrainedFeatureTransformer(TINY, weights=None, input_size=SIZE, engine="openvino"),
        LogisticRegression(max_iter=200),
    )
    in_process = cross_val_score(pipe, images, y, cv=2)
    [converted] = (tmp_path / "openvino").glob("*.xml")
    written = converted.stat().st_mtime_ns
    in_workers = cross_val_score(pipe, images, y, cv=2, n_jobs=2)
    np.testing.assert_array_equal(in_workers, in_process)
    assert converted.stat().st_mtime_ns == written  # read, not converted and stored again


def test_the_converted_model_cache_is_bounded(tmp_path, images, monkeypatch):
    """Least recently used converted models go first once the folder passes its limit."""
    monkeypatch.setenv("SKPTM_CACHE_DIR", str(tmp_path))
    _openvino._compiled.clear()
    features("openvino", images[:2], backbone=TINY, input_size=SIZE - 16)
    [first] = (tmp_path / "openvino").glob("*.xml")
    size = sum(path.stat().st_size for path in (tmp_path / "openvino").rglob("*") if path.is_file())
    monkeypatch.setenv("SKPTM_OPENVINO_CACHE_MB", str(1.5 * size / 2**20))  # room for one model
    features("openvino", images[:2], backbone=TINY, input_size=SIZE - 8)  # a second network: the first is evicted
    remaining = list((tmp_path / "openvino").glob("*.xml"))
    assert len(remaining) == 1 and remaining[0] != first
    assert not first.with_suffix(".bin").exists() and not first.with_suffix(".blake2b").exists()
    total = sum(path.stat().st_size for path in (tmp_path / "openvino").rglob("*") if path.is_file())
    assert total <= 1.5 * size
